"""Peak memory per phase of the driver, its JVM and the Python workers, sampled from /proc."""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

from .procfs import process_tree, read_status

# CPU seconds the sampler threads have used (subtracted from the driver's CPU time).
_SAMPLER_CPU = [0.0]


def sampler_cpu_seconds() -> float:
    """CPU seconds every :class:`MemorySampler` thread has used so far."""
    return _SAMPLER_CPU[0]


class MemorySampler:
    """Peak RSS per phase of the driver, its JVM and the Python workers.

    The Python workers are the ``pyspark.daemon`` processes forked by the daemon (itself a
    child of the JVM); the daemon's own RSS is the baseline a fresh worker starts from.
    """

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.phase = "between phases"
        self.peaks: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @contextmanager
    def phase_of(self, name: str) -> Iterator[None]:
        previous, self.phase = self.phase, name
        try:
            yield
        finally:
            self.sample()
            self.phase = previous

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            start = time.thread_time()
            self.sample()
            _SAMPLER_CPU[0] += time.thread_time() - start

    def sample(self) -> None:
        tree = process_tree(os.getpid())
        daemons = {pid for pid, (ppid, cmd) in tree.items() if "pyspark.daemon" in cmd}
        workers = [pid for pid in daemons if tree[pid][0] in daemons]
        roots = [pid for pid in daemons if tree[pid][0] not in daemons]
        jvms = [pid for pid, (_, cmd) in tree.items() if cmd.split(" ", 1)[0].endswith("java")]
        worker_rss = [read_status(pid).get("VmRSS", 0) for pid in workers]
        now = {
            "driver_python_rss": read_status(os.getpid()).get("VmRSS", 0),
            "driver_jvm_rss": sum(read_status(pid).get("VmRSS", 0) for pid in jvms),
            "daemon_rss": max((read_status(pid).get("VmRSS", 0) for pid in roots), default=0),
            "worker_rss_max": max(worker_rss, default=0),
            "workers_rss_sum": sum(worker_rss),
            "workers": len(workers),
        }
        peaks = self.peaks[self.phase]
        for key, value in now.items():
            peaks[key] = max(peaks[key], value)

    def report(self) -> dict[str, dict[str, int]]:
        return {phase: dict(values) for phase, values in self.peaks.items()}
