"""Wall and CPU time of calls, rounds in which methods take turns, and their summaries."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .hook import TimingHook, search_records, tasks_summary
from .memory import sampler_cpu_seconds
from .procfs import descendants_cpu

#: Within one turn of rounds(), calls shorter than this are repeated (fastest one kept).
MIN_TURN_SECONDS = 0.5
MAX_CALLS_PER_TURN = 5


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def best_of(fn: Callable[..., object], repeats: int, *args: object) -> tuple[float, object]:
    """The fastest wall seconds of ``repeats`` calls of ``fn(*args)``, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn(*args)
        times.append(time.perf_counter() - start)
    return min(times), result


def measured(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall seconds and CPU seconds of one call, CPU over this process and its descendants.

    CPU time does not grow when other processes take the cores, so ratios of it stay
    comparable on a busy machine; it leaves out time spent waiting (scheduling, I/O).
    """
    before = descendants_cpu()
    cpu0, sampler0 = time.process_time(), sampler_cpu_seconds()
    start = time.perf_counter()
    fn()
    wall = time.perf_counter() - start
    own = time.process_time() - cpu0 - (sampler_cpu_seconds() - sampler0)
    after = descendants_cpu()
    children = sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())
    return wall, own + children


def hooked(fn: Callable[[], object], hook: TimingHook | None) -> tuple[float, float, list[dict]]:
    """:func:`measured`, plus the timing lines knnspark's tasks wrote during the call."""
    if hook is None:
        return (*measured(fn), [])
    hook.clear()
    wall, cpu = measured(fn)
    return wall, cpu, hook.records()


@dataclass
class Timings:
    """Wall and CPU seconds of the kept call of every round, with its timing lines."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    records: list[list[dict]] = field(default_factory=list)

    def best_records(self) -> list[dict]:
        """The timing lines of the round with the shortest wall time."""
        return self.records[self.wall.index(min(self.wall))]


def rounds(
    fns: dict[str, Callable[[], object]], repeats: int, hook: TimingHook | None = None
) -> dict[str, Timings]:
    """The functions take turns, ``repeats`` rounds; the fastest call of each turn is kept.

    A turn calls its function again while the turn has taken under MIN_TURN_SECONDS (at most
    MAX_CALLS_PER_TURN calls), so that quick calls get as many chances as slow ones to run
    while the shared machine is quiet. With ``hook``, each kept call keeps the timing lines
    knnspark's tasks wrote during it (none for the other methods).
    """
    out = {name: Timings() for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            calls = [hooked(fn, hook)]
            while sum(c[0] for c in calls) < MIN_TURN_SECONDS and len(calls) < MAX_CALLS_PER_TURN:
                calls.append(hooked(fn, hook))
            wall, cpu, records = min(calls, key=lambda c: c[0])
            out[name].wall.append(wall)
            out[name].cpu.append(cpu)
            out[name].records.append(records)
    return out


def summary(timings: Timings, n_queries: int) -> dict:
    """Best wall time and queries/s; best CPU time and queries per CPU second.

    ``tasks`` summarizes the search tasks' timing lines of the fastest round, when it has any
    (:func:`~scripts.bench.hook.tasks_summary`).
    """
    best, cpu = min(timings.wall), min(timings.cpu)
    out = {
        "seconds_best": best,
        "seconds_all": timings.wall,
        "queries_per_s": n_queries / best,
        "cpu_s_best": cpu,
        "cpu_s_all": timings.cpu,
        "queries_per_cpu_s": n_queries / cpu,
    }
    records = search_records(timings.best_records())
    if records:
        out["tasks"] = tasks_summary(records)
    return out


def build_summary(timings: Timings) -> dict:
    return {
        "seconds_best": min(timings.wall),
        "seconds_all": timings.wall,
        "cpu_s_best": min(timings.cpu),
    }
