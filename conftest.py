"""Shared pytest fixtures: one local[2] SparkSession for Spark tests and doctests."""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from contextlib import contextmanager

import numpy as np
import pytest

#: Session settings the Spark Connect fixture repeats (a Connect session has its own SQL conf).
_SQL_CONF = {
    "spark.sql.shuffle.partitions": "4",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # Small Arrow batches: every partition reaches the UDFs in several batches.
    "spark.sql.execution.arrow.maxRecordsPerBatch": "64",
    "spark.sql.adaptive.enabled": "false",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _make_spark():
    # Spark's Python workers must run this interpreter (it has pyarrow and knnspark).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    spark = (
        # Two attempts per task, so fault-injection tests can see retries succeed.
        SparkSession.builder.master("local[2,2]")
        .appName("knnspark-tests")
        # The same JVM serves Spark Connect clients (the `connect` fixture), so both kinds of
        # session share one process, and models pass between them.
        .config("spark.plugins", "org.apache.spark.sql.connect.SparkConnectPlugin")
        .config("spark.connect.grpc.binding.port", str(_free_port()))
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.default.parallelism", "2")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        # Small Arrow batches: every partition reaches the UDFs in several batches.
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "64")
        .config("spark.ui.enabled", "false")
        # Keep table tests from leaving spark-warehouse/ in the repository.
        .config("spark.sql.warehouse.dir", tempfile.mkdtemp(prefix="knnspark-warehouse-"))
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", "2g")
        .config("spark.sql.adaptive.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


@pytest.fixture(scope="session")
def spark():
    session = _make_spark()
    yield session
    session.stop()


def _connect_to(spark):
    # The Connect client's own class: pyspark.sql.SparkSession.builder.remote refuses to start
    # while a classic session runs in the process.
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    port = spark.conf.get("spark.connect.grpc.binding.port")
    session = ConnectSession.builder.remote(f"sc://localhost:{port}").getOrCreate()
    for key, value in _SQL_CONF.items():
        session.conf.set(key, value)
    return session


#: pyspark.sql.functions (and pyspark.ml.functions) build Connect columns when this variable
#: is set, as `SparkSession.builder.remote` sets it; classic columns otherwise.  The choice is
#: per process, so a test switches it to use one session or the other (`classic_mode`).
CONNECT_MODE_VAR = "SPARK_CONNECT_MODE_ENABLED"


@contextmanager
def session_mode(connect: bool):
    """Build columns for a Connect session (``connect``) or a classic one, inside the block."""
    previous = os.environ.pop(CONNECT_MODE_VAR, None)
    if connect:
        os.environ[CONNECT_MODE_VAR] = "1"
    try:
        yield
    finally:
        os.environ.pop(CONNECT_MODE_VAR, None)
        if previous is not None:
            os.environ[CONNECT_MODE_VAR] = previous


@pytest.fixture(scope="session")
def _connect_session(spark):
    pytest.importorskip("grpc", reason="Spark Connect tests need pyspark[connect]")
    session = _connect_to(spark)
    yield session
    session.stop()


@pytest.fixture
def connect(_connect_session):
    """A Spark Connect session on the local server the classic `spark` session runs.

    The test runs in Connect mode (`session_mode`); a test that also uses the classic
    session wraps that part in ``with mode(connect=False):`` (the `mode` fixture).
    """
    with session_mode(True):
        yield _connect_session


@pytest.fixture
def mode():
    """`session_mode`, for tests that use both sessions: ``with mode(connect=False): ...``."""
    return session_mode


@pytest.fixture(params=["classic", "connect"])
def any_spark(request):
    """The classic session, then the Connect one: for tests that run in both modes."""
    return request.getfixturevalue("spark" if request.param == "classic" else "connect")


@pytest.fixture(autouse=True)
def _doctest_globals(request, doctest_namespace):
    doctest_namespace["np"] = np
    if isinstance(request.node, pytest.DoctestItem) and "spark" in request.node.dtest.docstring:
        doctest_namespace["spark"] = request.getfixturevalue("spark")
