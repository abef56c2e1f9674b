"""knnspark's timing hook (:mod:`knnspark.timing`) as the benchmark reads it.

The library writes one JSON line per search or build task to the directory named by
``KNNSPARK_TIMINGS`` (seconds per stage, rows, batches, and the task's wall time inside
knnspark's function). :class:`TimingHook` names that directory for the whole run before the
SparkSession starts, so the JVM and every Python worker it forks inherit it, and empties it
around each timed call so the lines read afterwards are that call's. Nothing here knows how
a search works: the stages are whatever the library reports.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from knnspark.timing import TIMINGS_ENV, read_timings

#: The ``fn`` of the library's build-task lines (``knnspark.index``); every other line is a
#: search task's.
BUILD_FN = "build"


class TimingHook:
    """The directory knnspark's tasks write their timing lines to, for this run."""

    def __init__(self) -> None:
        if TIMINGS_ENV in os.environ:
            raise RuntimeError(f"{TIMINGS_ENV} is already set; the benchmark sets its own.")
        self.directory = Path(tempfile.mkdtemp(prefix="knnspark-bench-timings-"))
        # Before the SparkSession starts: the JVM, and the workers it forks, inherit it.
        os.environ[TIMINGS_ENV] = str(self.directory)

    def clear(self) -> None:
        """Forget the lines written so far (the library appends; a new file follows)."""
        for path in self.directory.iterdir():
            path.unlink()

    def records(self) -> list[dict]:
        """The lines written since :meth:`clear`."""
        return read_timings(self.directory)

    def close(self) -> None:
        os.environ.pop(TIMINGS_ENV, None)
        shutil.rmtree(self.directory, ignore_errors=True)


def _stage_names(records: list[dict]) -> list[str]:
    """Every stage the records name, in the order they first appear."""
    return list(dict.fromkeys(name for r in records for name in r["seconds"]))


def tasks_summary(records: list[dict]) -> dict:
    """One job's tasks, from their timing lines: the slowest task and the sum over all.

    ``slowest_task`` is the task with the longest ``wall`` (with as many tasks as cores, the
    one the job waits for); ``outside_stages`` is its wall time in none of the stages: the
    waits for input batches and the writes of output batches between the stages.
    """
    names = _stage_names(records)
    slowest = max(records, key=lambda r: r["wall"])
    stages = {name: slowest["seconds"].get(name, 0.0) for name in names}
    return {
        "tasks": len(records),
        "rows": sum(r["rows"] for r in records),
        "batches": sum(r["batches"] for r in records),
        "worker_pids": sorted({r["pid"] for r in records}),
        "slowest_task": {
            "rows": slowest["rows"],
            "wall_s": slowest["wall"],
            "stages_s": stages,
            "outside_stages_s": slowest["wall"] - sum(stages.values()),
        },
        "all_tasks": {
            "wall_s": sum(r["wall"] for r in records),
            "stages_s": {n: sum(r["seconds"].get(n, 0.0) for r in records) for n in names},
        },
        "busy_s": sum(sum(r["seconds"].values()) for r in records),
    }


def search_records(records: list[dict]) -> list[dict]:
    return [r for r in records if r["fn"] != BUILD_FN]


def build_records(records: list[dict]) -> list[dict]:
    return [r for r in records if r["fn"] == BUILD_FN]
