"""Where a Spark job's time goes, from outside the library: CPU per process and Spark's
own Python metrics.

:class:`JobMeter` wraps one call (a ``transform`` to the noop sink) and reports

- wall seconds, and CPU seconds of the driver's Python process, the JVM and the Python
  workers (from ``/proc``, :mod:`.procfs`): CPU does not grow with other processes' load;
- the SQL metrics Spark keeps for every Python stage, summed over the call's queries
  (REST API of the Spark UI, so the session needs ``spark.ui.enabled``): time to start
  Python workers (``boot``), the Python side's total and processing time, and the bytes
  sent to and returned from Python. Spark's "time to initialize Python workers" is left
  out: a reused worker starts that clock when it begins waiting for its next task, so it
  counts idle time in the pool (it exceeds the task's own duration);
- the call's jobs: tasks, the slowest task and the job's time outside it (scheduling,
  task start, the driver's side).
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime

from pyspark.sql import SparkSession

from .procfs import descendants_cpu, process_tree

#: Spark's names of the Python SQL metrics (PythonSQLMetrics) -> ours.
PYTHON_METRICS = {
    "time to start Python workers": "boot_s",
    "time to run Python workers": "python_total_s",
    "time to execute Python code": "python_processing_s",
    "data sent to Python workers": "sent_mib",
    "data returned from Python workers": "returned_mib",
}
_UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_BYTES = {"B": 2.0**-20, "KiB": 2.0**-10, "MiB": 1.0, "GiB": 2.0**10, "TiB": 2.0**20}
_TOTAL = re.compile(r"([0-9.,]+)\s*([A-Za-z]+)")


def metric_total(text: str) -> float:
    """The total of a SQL metric's text (``'total (min, med, max ...)\\n19.5 s (...)'``):
    seconds for times, MiB for sizes."""
    line = text.split("\n")[-1]
    number, unit = _TOTAL.match(line.strip()).groups()
    return float(number.replace(",", "")) * {**_UNITS, **_BYTES}[unit]


def _when(stamp: str) -> float:
    return datetime.strptime(stamp.replace("GMT", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


class JobMeter:
    """Measures calls in one classic local session (its UI on)."""

    def __init__(self, spark: SparkSession) -> None:
        sc = spark.sparkContext
        if not sc.uiWebUrl:
            raise RuntimeError("JobMeter reads the Spark UI's REST API: enable spark.ui.enabled")
        self.base = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}"

    def _get(self, path: str) -> object:
        with urllib.request.urlopen(f"{self.base}/{path}") as response:
            return json.load(response)

    def _executions(self) -> list[dict]:
        return self._get("sql?details=true&planDescription=false&offset=0&length=100000")

    def measure(self, fn: Callable[[], object]) -> dict:
        seen = max((e["id"] for e in self._executions()), default=-1)
        before, cpu0 = descendants_cpu(), time.process_time()
        start = time.perf_counter()
        fn()
        wall = time.perf_counter() - start
        driver_cpu = time.process_time() - cpu0
        after, tree = descendants_cpu(), process_tree(os.getpid())
        cpu = {"driver_python": driver_cpu, "jvm": 0.0, "python_workers": 0.0}
        for pid, seconds in after.items():
            kind = "jvm" if "java" in tree.get(pid, (0, ""))[1] else "python_workers"
            cpu[kind] += seconds - before.get(pid, 0.0)
        executions = [e for e in self._executions() if e["id"] > seen]
        python = dict.fromkeys(PYTHON_METRICS.values(), 0.0)
        for node in (n for e in executions for n in e["nodes"]):
            for metric in node.get("metrics", []):
                name = PYTHON_METRICS.get(metric["name"])
                if name is not None:
                    python[name] += metric_total(metric["value"])
        job_ids = [j for e in executions for j in e.get("successJobIds", [])]
        return {
            "wall_s": wall,
            "cpu_s": cpu,
            "python_sql_metrics": python,
            "jobs": [self._job(j) for j in job_ids],
        }

    def _job(self, job_id: int) -> dict:
        job = self._get(f"jobs/{job_id}")
        tasks = []
        for stage_id in job["stageIds"]:
            for stage in self._get(f"stages/{stage_id}?details=true"):
                tasks += [t for t in stage.get("tasks", {}).values() if t["status"] == "SUCCESS"]
        job_s = _when(job["completionTime"]) - _when(job["submissionTime"])
        slowest = max((t["duration"] / 1000 for t in tasks), default=0.0)
        metrics = [t.get("taskMetrics", {}) for t in tasks]
        return {
            "job_s": job_s,
            "tasks": len(tasks),
            "slowest_task_s": slowest,
            "outside_slowest_task_s": job_s - slowest,
            "tasks_run_s": sum(m.get("executorRunTime", 0) for m in metrics) / 1000,
            "tasks_jvm_cpu_s": sum(m.get("executorCpuTime", 0) for m in metrics) / 1e9,
        }
