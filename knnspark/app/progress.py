"""Progress lines for the jobs' long steps, from Spark's status tracker or Connect's reports.

:func:`step` logs when a step starts and ends, names the step in the Spark UI (the job
description), and every ``interval`` seconds logs how many tasks of each running stage are
done, e.g. ``score: stage 7: 3/8 tasks done`` — the driver's view of shards being built or
batches of rows being scored, whatever runs on the executors.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pyspark.sql import SparkSession

from knnspark import classic
from knnspark.classic import is_connect

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


def _stage_progress(spark: SparkSession) -> tuple[Callable[[], list[tuple[int, int, int]]], Any]:
    """A function giving ``(stage id, completed tasks, tasks)`` of each running stage.

    Classic sessions read Spark's status tracker; Spark Connect reports the progress of each
    operation to the client's progress handlers, and the latest report is what is running.
    Also returns the Connect handler to remove when the step ends (None on classic).
    """
    if not is_connect(spark):
        return classic.stage_progress(spark), None
    latest: dict[int, tuple[int, int, int]] = {}

    def handler(stages: Any = None, done: bool = False, **_: Any) -> None:
        for info in stages or ():
            if info.done or done:
                latest.pop(info.stage_id, None)
            else:
                latest[info.stage_id] = (info.stage_id, info.num_completed_tasks, info.num_tasks)

    spark.registerProgressHandler(handler)
    return (lambda: [latest[k] for k in sorted(latest)]), handler


def _report_tasks(
    running: Callable[[], list[tuple[int, int, int]]],
    name: str,
    interval: float,
    done: threading.Event,
) -> None:
    last: dict[int, int] = {}
    while not done.wait(interval):
        try:
            for stage_id, completed, total in running():
                if last.get(stage_id) == completed:
                    continue
                last[stage_id] = completed
                logger.info("%s: stage %d: %d/%d tasks done", name, stage_id, completed, total)
        except Exception:  # the context stopping under us ends the reports, not the job
            return


@contextmanager
def step(spark: SparkSession, name: str, interval: float = DEFAULT_INTERVAL) -> Iterator[None]:
    """Log the start, the task progress and the duration of one step of a job.

    On a classic session the step also names its jobs in the Spark UI.

    Parameters
    ----------
    spark : SparkSession
        Session whose jobs the step runs (classic or Spark Connect).
    name : str
        What the step does, e.g. ``"fit: build the index"``.
    interval : float, default 10
        Seconds between progress lines.
    """
    connect = is_connect(spark)
    if not connect:
        classic.set_job_description(spark, name)
    logger.info("%s ...", name)
    running, handler = _stage_progress(spark)
    done = threading.Event()
    reporter = threading.Thread(
        target=_report_tasks, args=(running, name, interval, done), daemon=True
    )
    start = time.perf_counter()
    reporter.start()
    try:
        yield
    finally:
        done.set()
        reporter.join()
        if connect:
            spark.removeProgressHandler(handler)
        else:
            classic.set_job_description(spark, None)
    logger.info("%s: done in %.1fs", name, time.perf_counter() - start)
