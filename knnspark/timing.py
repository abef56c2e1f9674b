"""A timing hook: where a search or build task's time goes, stage by stage.

Off by default.  Set the environment variable ``KNNSPARK_TIMINGS`` to a directory on the
Python workers (in local mode, the driver's environment; on a cluster,
``spark.executorEnv.KNNSPARK_TIMINGS``) and every search task appends one JSON line to
``<dir>/timings-<pid>.jsonl`` when it ends::

    {"fn": "broadcast_search", "pid": 123, "batches": 4, "rows": 1000,
     "seconds": {"load": 0.01, "decode": 0.002, "search": 0.31, "merge": 0.004, "encode": 0.01},
     "wall": 0.35}

Stages: ``load`` (reaching the shards: the broadcast value, or decoding the shard a
distributed task received), ``decode`` (Arrow -> numpy, validity), ``search`` (the
per-shard kernels), ``merge`` (partial top-k lists merged), ``encode`` (votes or
averages, numpy -> Arrow).  An HNSW graph is deserialized inside its first search, once
per worker, so that cost is in ``search`` of the first task a worker runs.  The build
task of ``fit`` writes a line with ``fn`` "build" and one stage, ``build``.  ``wall``
runs from the function's first call to its last batch, so it also holds the time Spark
spends feeding batches in and taking results out (the gap between ``wall`` and the sum of
the stages).  Benchmarks read the lines with :func:`read_timings`; nothing in the library
reads them.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["TIMINGS_ENV", "TaskTimer", "read_timings"]

#: The environment variable naming the directory timing lines go to.
TIMINGS_ENV = "KNNSPARK_TIMINGS"


class TaskTimer:
    """Seconds per stage of one task; writes one JSON line at :meth:`flush` when enabled."""

    def __init__(self, fn: str) -> None:
        self.fn = fn
        self.directory = os.environ.get(TIMINGS_ENV)
        self.seconds: dict[str, float] = defaultdict(float)
        self.batches = 0
        self.rows = 0
        self._start = time.perf_counter()

    @property
    def enabled(self) -> bool:
        return bool(self.directory)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Add the block's time to stage ``name`` (a no-op when the hook is off)."""
        if not self.directory:
            yield
            return
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def count(self, rows: int) -> None:
        self.batches += 1
        self.rows += int(rows)

    def flush(self) -> None:
        if not self.directory:
            return
        record = {
            "fn": self.fn,
            "pid": os.getpid(),
            "batches": self.batches,
            "rows": self.rows,
            "seconds": dict(self.seconds),
            "wall": time.perf_counter() - self._start,
        }
        path = Path(self.directory) / f"timings-{os.getpid()}.jsonl"
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def read_timings(directory: str | os.PathLike) -> list[dict]:
    """Every timing line written under ``directory``, in no particular order."""
    records = []
    for path in sorted(Path(directory).glob("timings-*.jsonl")):
        with open(path, encoding="utf-8") as f:
            records += [json.loads(line) for line in f if line.strip()]
    return records
