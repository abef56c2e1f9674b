"""Shared pytest fixtures: one local[2] SparkSession for Spark tests and doctests."""

from __future__ import annotations

import os
import sys
import tempfile

import numpy as np
import pytest


def _make_spark():
    # Spark's Python workers must run this interpreter (it has pyarrow and knnspark).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    spark = (
        # Two attempts per task, so fault-injection tests can see retries succeed.
        SparkSession.builder.master("local[2,2]")
        .appName("knnspark-tests")
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


@pytest.fixture(autouse=True)
def _doctest_globals(request, doctest_namespace):
    doctest_namespace["np"] = np
    if isinstance(request.node, pytest.DoctestItem) and "spark" in request.node.dtest.docstring:
        doctest_namespace["spark"] = request.getfixturevalue("spark")
