"""One benchmark run: the phases in order, then the report."""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import pyspark
import sklearn
from threadpoolctl import threadpool_info, threadpool_limits

import knnspark

from . import __doc__ as package_doc
from .baselines import warm_thread_pools
from .cli import parse_args
from .context import Setup
from .data import Frames, bench_data
from .hook import TimingHook
from .memory import MemorySampler
from .phases import (
    Run,
    bench_digits,
    bench_growth,
    bench_many_queries,
    bench_size,
    best_ef,
    breakdown,
    profiles,
    release_size,
    run_lsh,
    worker_baseline,
)
from .report import report
from .sparkjobs import build_spark
from .targets import memory_targets, ratio_targets

#: The flags the JSON's ``meta`` repeats.
RUN_FLAGS = (
    "data", "cores", "k", "batch_size", "n_features", "n_clusters", "n_classes", "sizes",
    "n_queries", "repeats", "build_repeats", "seed",
)  # fmt: skip


def run_meta(args: argparse.Namespace, started: float, load_start: tuple, pools: list) -> dict:
    return {
        "command": shlex.join([sys.executable, "-m", "scripts.bench", *sys.argv[1:]]),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "wall_s": time.perf_counter() - started,
        **{name: getattr(args, name) for name in RUN_FLAGS},
        "thread_pools": pools,
        "faiss_omp_threads": args.cores,
        "worker_omp_num_threads": "1 (Spark sets OMP_NUM_THREADS=spark.task.cpus)",
        "timing_hook": "knnspark.timing (KNNSPARK_TIMINGS), on for the whole run",
        "cpu_count": os.cpu_count(),
        "loadavg_start": [round(x, 2) for x in load_start],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "pyspark": pyspark.__version__,
        "numpy": np.__version__,
        "faiss": faiss.__version__,
        "sklearn": sklearn.__version__,
        "knnspark_version": knnspark.__version__,
        "knnspark_path": str(Path(knnspark.__file__).parent),
    }


def run_phases(run: Run) -> None:
    """Every measurement, in order; models are released once no later phase needs them."""
    args, results = run.setup.args, run.results
    worker_baseline(run)
    for n in args.sizes:
        bench_size(run, n)
        if n not in (max(args.sizes), args.lsh_n_train):
            release_size(run, n)
    ef = best_ef(run)
    results["growth"] = bench_growth(run, ef)
    if args.many_queries:
        results["many_queries"] = bench_many_queries(run)
    if not args.no_lsh:
        results["lsh"] = run_lsh(run)
    print("== where the time goes", flush=True)
    results["breakdown"] = breakdown(run, ef)
    if args.profile:
        results["profiles"] = profiles(run, ef)
    for n in run.live:
        release_size(run, n)
    if not args.no_digits:
        bench_digits(run)


def finish(run: Run, memory: MemorySampler, meta: dict) -> dict:
    results = run.results
    results["memory"] = memory.report()
    results["memory_expected"] = run.expected_memory
    results["targets"] = ratio_targets(
        results["sizes"], results.get("lsh"), results["growth"], results.get("many_queries")
    )
    largest = max(run.setup.args.sizes)
    results["targets"] += memory_targets(results["memory"], run.expected_memory, largest)
    results["checks"] = run.checks
    results["meta"] = meta
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, (package_doc or "").split("\n", 1)[0])
    started, load_start = time.perf_counter(), os.getloadavg()
    nq = args.n_queries
    data = bench_data(args, max(args.sizes), max(2 * nq, args.many_queries))
    hook = TimingHook()  # before the session: its workers inherit the directory
    spark = build_spark(args.cores, args.batch_size, args.driver_memory)
    frames = Frames(spark, args.cores)
    warm_thread_pools(data)  # loaded first, so that threadpool_limits reaches them all
    try:
        with MemorySampler() as memory, threadpool_limits(limits=args.cores):
            faiss.omp_set_num_threads(args.cores)
            pools = [
                {key: pool.get(key) for key in ("internal_api", "prefix", "num_threads")}
                for pool in threadpool_info()
            ]
            queries = data.with_query_prefix(nq)
            queries_df = frames.rows("queries", queries.queries, queries.query_labels, "qid")
            run = Run(Setup(spark, frames, args, memory, hook), data, queries, queries_df)
            run_phases(run)
        results = finish(run, memory, run_meta(args, started, load_start, pools))
    finally:
        spark.stop()
        frames.close()
        hook.close()
    return report(results, args)
