"""The one place the jobs build their SparkSession."""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path

from pyspark.sql import SparkSession

from knnspark import classic
from knnspark.classic import CONNECT_MODE_VAR

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_LOG_CONFIG", "build_session", "session_running"]

#: log4j2 config applied when the job itself starts the JVM (plain ``python jobs/...``):
#: ``conf/log4j2.properties`` of the working directory, else of the checkout this package
#: was installed from (an editable install run from elsewhere, e.g. the ``knnspark`` command).
DEFAULT_LOG_CONFIG = Path("conf/log4j2.properties")
_CHECKOUT_LOG_CONFIG = Path(__file__).resolve().parents[2] / "conf" / "log4j2.properties"


def _submitted_master() -> str | None:
    """The master chosen outside the job config, or None if nobody chose one."""
    if classic.jvm_running():
        return classic.jvm_master()
    # pyspark passes PYSPARK_SUBMIT_ARGS to the spark-submit that launches the JVM.
    args = shlex.split(os.environ.get("PYSPARK_SUBMIT_ARGS", ""))
    for position, arg in enumerate(args):
        if arg == "--master" and position + 1 < len(args):
            return args[position + 1]
        if arg.startswith("--master="):
            return arg.partition("=")[2]
    return None


def _spark_string(value: object) -> str:
    # Spark reads booleans as "true"/"false"; str(True) would give "True".
    return str(value).lower() if isinstance(value, bool) else str(value)


def session_running(remote: str | None) -> bool:
    """Whether a session of the kind ``remote`` asks for (Connect or classic) already runs."""
    if remote:
        from pyspark.sql.connect.session import SparkSession as ConnectSession

        return ConnectSession.getActiveSession() is not None
    return classic.context_running()


def _connect_session(app_name: str, conf: Mapping[str, str], remote: str) -> SparkSession:
    # The Connect client's own builder: pyspark.sql.SparkSession.builder.remote refuses to
    # start while a classic session runs in the process (a test's, a notebook's).
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    os.environ[CONNECT_MODE_VAR] = "1"
    spark = ConnectSession.builder.remote(remote).getOrCreate()
    for key, value in {"spark.app.name": app_name, **conf}.items():
        try:
            spark.conf.set(key, value)
        except Exception as exc:  # a static setting: the server's own configuration applies
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            logger.warning("spark.conf.%s is not set on the Connect session: %s", key, first)
    return spark


def build_session(
    app_name: str,
    spark_conf: Mapping[str, object],
    master: str | None,
    log_config: str | Path | None = DEFAULT_LOG_CONFIG,
    remote: str | None = None,
) -> SparkSession:
    """Build (or get) the SparkSession of a job.

    A master set by spark-submit or by an already running SparkContext wins over ``master``.
    Arrow is always enabled, since the library's partition functions exchange Arrow batches.
    In local mode the Python workers run ``sys.executable`` unless ``PYSPARK_PYTHON`` or
    ``spark.pyspark.python`` says otherwise: Spark's default, ``python3`` on the PATH, is often
    an interpreter without pyarrow or knnspark.

    Parameters
    ----------
    app_name : str
        Spark application name.
    spark_conf : mapping of str to object
        Extra Spark settings (``[spark.conf]``); values are passed as strings.
    master : str or None
        Master used when none was given outside the config; None means ``local[*]``.
    log_config : str, Path or None, default ``conf/log4j2.properties``
        log4j2 file, applied only when this call starts the driver JVM in local mode (under
        spark-submit the JVM is already running, and its own options apply). Ignored if missing.

    remote : str or None
        Spark Connect URL (``sc://host:port``); the job then runs as a Connect client, with
        ``spark_conf``'s runtime settings applied to its session (``master`` and
        ``log_config`` do not apply).

    Returns
    -------
    SparkSession
        The session; one this call started logs at WARN, and an existing one (a test's, a
        notebook's) keeps its log level.
    """
    conf = {key: _spark_string(value) for key, value in spark_conf.items()}
    conf["spark.sql.execution.arrow.pyspark.enabled"] = "true"
    if remote:
        return _connect_session(app_name, conf, remote)
    submitted = _submitted_master()
    effective_master = submitted or master or "local[*]"
    # Under spark-submit, or with a SparkContext already running, the JVM exists already.
    launches_jvm = not classic.jvm_running()
    if effective_master.startswith("local"):
        python = conf.get("spark.pyspark.python") or os.environ.get("PYSPARK_PYTHON")
        python = python or sys.executable
        # The Python side reads the env var when the SparkContext starts.
        os.environ["PYSPARK_PYTHON"] = python
        # JVM-level settings count only when this call launches the JVM.
        if launches_jvm:
            conf["spark.pyspark.python"] = python
            if log_config == DEFAULT_LOG_CONFIG and not Path(log_config).is_file():
                log_config = _CHECKOUT_LOG_CONFIG
            if log_config is not None and Path(log_config).is_file():
                option = f"-Dlog4j2.configurationFile={Path(log_config).resolve().as_uri()}"
                extra = conf.get("spark.driver.extraJavaOptions")
                conf["spark.driver.extraJavaOptions"] = f"{extra} {option}" if extra else option

    builder = SparkSession.builder.appName(app_name)
    if submitted is None:
        builder = builder.master(effective_master)
    for key, value in conf.items():
        builder = builder.config(key, value)
    started = not classic.context_running()
    spark = builder.getOrCreate()
    if started:
        classic.set_log_level(spark, "WARN")
    return spark
