"""Test helpers that watch Spark jobs (importable from every test: ``pythonpath`` has tests/)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from pyspark.sql import SparkSession


@contextmanager
def no_spark_job(spark: SparkSession) -> Iterator[None]:
    """Fail if any Spark job starts inside the block (the block may raise).

    Proves that a check runs on the driver before any job: the block runs in a job group
    of its own, and the status tracker must know no job of that group afterwards.
    """
    sc = spark.sparkContext
    group = f"knnspark-no-job-{uuid.uuid4().hex}"
    sc.setJobGroup(group, "must not start a Spark job")
    try:
        yield
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
        sc.setLocalProperty("spark.job.description", None)
    # The status tracker learns of jobs through the listener bus; let it catch up.
    sc._jsc.sc().listenerBus().waitUntilEmpty()
    jobs = sc.statusTracker().getJobIdsForGroup(group)
    assert list(jobs) == [], f"expected no Spark job, but jobs {list(jobs)} ran"
