"""Everything that needs a classic (JVM-backed) SparkSession, and the one test for it.

Spark Connect sessions (``SparkSession.builder.remote(...)``, ``spark.api.mode=connect``,
Databricks serverless and shared clusters) have no SparkContext, RDDs, broadcast variables
or py4j gateway.  The rest of knnspark speaks DataFrames only; where a classic session has
something better (a broadcast variable for the shards, the status tracker for progress
lines, the Hadoop file system of the session), it is used from here, chosen by
:func:`is_connect`.  ``tests/unit/test_connect_rules.py`` fails if any other module of
``knnspark/`` touches those APIs.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from typing import Any

__all__ = [
    "CONNECT_MODE_VAR",
    "LOCAL_MAPPED_BYTES",
    "broadcast",
    "default_parallelism",
    "hadoop_file_system",
    "is_alive",
    "context_running",
    "is_connect",
    "jvm_master",
    "jvm_running",
    "set_job_description",
    "set_local_property",
    "set_log_level",
    "shard_handle",
    "stage_progress",
]


#: Set in a process whose DataFrame functions (``pyspark.sql.functions``) build Spark Connect
#: columns; pyspark's ``SparkSession.builder.remote`` sets it, the functions read it at each call.
CONNECT_MODE_VAR = "SPARK_CONNECT_MODE_ENABLED"


def is_connect(session: Any) -> bool:
    """Whether ``session`` is a Spark Connect session (the one place knnspark decides it).

    Decided by the session's type, not by the process: a classic session and a Connect one
    can live in one process (a test's, a notebook's), so ``pyspark.sql.utils.is_remote()``
    cannot tell them apart.  A process that never imported the Connect client has no
    Connect session.
    """
    connect = sys.modules.get("pyspark.sql.connect.session")
    return connect is not None and isinstance(session, connect.SparkSession)


def context_running() -> bool:
    """Whether this process has a SparkContext (a classic session's) running."""
    from pyspark import SparkContext

    return SparkContext._active_spark_context is not None


def jvm_running() -> bool:
    """Whether this process already talks to a JVM: a SparkContext, or spark-submit's gateway."""
    return context_running() or "PYSPARK_GATEWAY_PORT" in os.environ


def jvm_master() -> str | None:
    """The running SparkContext's master, or the one spark-submit gave the JVM it started.

    None when no JVM runs (see :func:`jvm_running`) or spark-submit set no master.
    """
    from pyspark import SparkConf, SparkContext

    active = SparkContext._active_spark_context
    if active is not None:
        return active.master
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        return None
    # spark-submit started the JVM and put --master (default local[*]) in its properties.
    SparkContext._ensure_initialized()
    return SparkConf().get("spark.master", None)


def default_parallelism(session: Any) -> int:
    """The SparkContext's default parallelism (total executor cores, or ``local[N]``'s N)."""
    return int(session.sparkContext.defaultParallelism)


def broadcast(session: Any, value: Any) -> Any:
    """A broadcast variable holding ``value``; its ``.value`` is read once per Python worker."""
    return session.sparkContext.broadcast(value)


#: Bytes of shards a local session may keep in mapped files (:func:`shard_handle`); past it,
#: searches of further models broadcast their shards.  The files stay until the JVM exits.
LOCAL_MAPPED_BYTES = 8 << 30
# Bytes written so far, per SparkContext (its temporary directory names it).
_MAPPED: dict[str, int] = {}


def shard_handle(session: Any, shards: list[Any]) -> Any:
    """How search tasks reach ``shards``: a mapped file in local mode, else a broadcast.

    Either has ``.value``, the shards, read once per Python worker.  A ``local[N]`` session
    runs its Python workers on the driver's machine, where a broadcast only copies the
    shards (driver pickle, JVM blocks, one unpickled copy per worker):
    :class:`knnspark.shipped.MappedShards` writes them once to the session's temporary
    directory, which Spark deletes when the JVM exits, and the workers map that file.  Not
    with I/O encryption on (the file would hold the rows in clear), and not past
    :data:`LOCAL_MAPPED_BYTES` per session (the files outlive the model: a DataFrame made
    by its ``transform`` may run after the model is gone).
    """
    from knnspark.shipped import MappedShards

    sc = session.sparkContext
    master = sc.master
    local = master == "local" or master.startswith("local[")
    if local and not sc._encryption_enabled:
        directory = sc._temp_dir
        size = sum(s.size_bytes for s in shards)
        if _MAPPED.get(directory, 0) + size <= LOCAL_MAPPED_BYTES:
            _MAPPED[directory] = _MAPPED.get(directory, 0) + size
            fd, path = tempfile.mkstemp(prefix="knnspark-shards-", dir=directory)
            os.close(fd)
            return MappedShards(path, shards)
    return broadcast(session, shards)


def is_alive(session: Any) -> bool:
    """Whether the session's SparkContext still runs (a broadcast of a stopped one is dead)."""
    return session.sparkContext._jsc is not None


def set_local_property(session: Any, key: str, value: str | None) -> None:
    """Set (or, with None, clear) a local property the session's next tasks inherit."""
    session.sparkContext.setLocalProperty(key, value)  # type: ignore[arg-type]


def set_job_description(session: Any, text: str | None) -> None:
    """Name the next jobs in the Spark UI (None clears it)."""
    session.sparkContext.setJobDescription(text)  # type: ignore[arg-type]


def set_log_level(session: Any, level: str) -> None:
    session.sparkContext.setLogLevel(level)


def stage_progress(session: Any) -> Callable[[], list[tuple[int, int, int]]]:
    """A function returning ``(stage id, completed tasks, tasks)`` of each running stage."""
    tracker = session.sparkContext.statusTracker()

    def running() -> list[tuple[int, int, int]]:
        stages = []
        for stage_id in sorted(tracker.getActiveStageIds()):
            info = tracker.getStageInfo(stage_id)
            if info is not None:
                stages.append((stage_id, info.numCompletedTasks, info.numTasks))
        return stages

    return running


def hadoop_file_system(session: Any, path: str) -> tuple[Any, Any]:
    """The session's Hadoop ``FileSystem`` for ``path``, and ``path`` as a Hadoop ``Path``."""
    sc = session.sparkContext
    hadoop_path = sc._jvm.org.apache.hadoop.fs.Path(path)
    return hadoop_path.getFileSystem(sc._jsc.hadoopConfiguration()), hadoop_path
