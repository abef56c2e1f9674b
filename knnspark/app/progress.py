"""Progress lines for the jobs' long steps, read from Spark's status tracker.

:func:`step` logs when a step starts and ends, names the step in the Spark UI (the job
description), and every ``interval`` seconds logs how many tasks of each running stage are
done, e.g. ``score: stage 7: 3/8 tasks done`` — the driver's view of shards being built or
batches of rows being scored, whatever runs on the executors.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from pyspark.sql import SparkSession

__all__ = ["rate", "step"]

logger = logging.getLogger(__name__)

#: Seconds between two progress lines of a running step.
DEFAULT_INTERVAL = 10.0


def rate(rows: int, seconds: float) -> float:
    """Rows per second, 0 when no time was measured.

    Examples
    --------
    >>> rate(300, 1.5), rate(5, 0.0)
    (200.0, 0.0)
    """
    return rows / seconds if seconds > 0 else 0.0


def _report_tasks(spark: SparkSession, name: str, interval: float, done: threading.Event) -> None:
    tracker = spark.sparkContext.statusTracker()
    last: dict[int, int] = {}
    while not done.wait(interval):
        try:
            for stage_id in sorted(tracker.getActiveStageIds()):
                info = tracker.getStageInfo(stage_id)
                if info is None or last.get(stage_id) == info.numCompletedTasks:
                    continue
                last[stage_id] = info.numCompletedTasks
                logger.info(
                    "%s: stage %d: %d/%d tasks done",
                    name,
                    stage_id,
                    info.numCompletedTasks,
                    info.numTasks,
                )
        except Exception:  # the context stopping under us ends the reports, not the job
            return


@contextmanager
def step(spark: SparkSession, name: str, interval: float = DEFAULT_INTERVAL) -> Iterator[None]:
    """Log the start, the task progress and the duration of one step of a job.

    Parameters
    ----------
    spark : SparkSession
        Session whose jobs the step runs.
    name : str
        What the step does, e.g. ``"fit: build the index"``.
    interval : float, default 10
        Seconds between progress lines.
    """
    sc = spark.sparkContext
    sc.setJobDescription(name)
    logger.info("%s ...", name)
    done = threading.Event()
    reporter = threading.Thread(
        target=_report_tasks, args=(spark, name, interval, done), daemon=True
    )
    start = time.perf_counter()
    reporter.start()
    try:
        yield
    finally:
        done.set()
        reporter.join()
        sc.setJobDescription(None)  # type: ignore[arg-type]
    logger.info("%s: done in %.1fs", name, time.perf_counter() - start)
