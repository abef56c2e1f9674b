"""First and warm searches of a fresh model on 784-d MNIST-like data, against faiss and hnswlib.

A nightly job fits or loads a model and searches it once, so the first search of a model in a
fresh SparkSession (new Python workers, the broadcast created and read, each shard prepared
once per worker) is what it pays. This script measures it end to end, apart from the warm
searches that follow, in one process and on the same cores as the references:

- knnspark exact (``algorithm="brute"``) against faiss ``IndexFlatL2`` (``--cores`` threads);
- knnspark HNSW (hash partitioning with the default shards and each ``--hash-shards``, and
  ``partitioning="kmeans"`` with each ``--nprobe``)
  against raw hnswlib built with the same ``M``/``efConstruction`` and searched at the same
  ``ef``, with recall@k of both against faiss's exact neighbors.

Every knnspark search is a ``transform`` of a cached query DataFrame to Spark's ``noop``
sink. Before them, the **floor**: a fresh session, an exact model fitted on the same
training rows (or the first ``--floor-rows``) whose shards are then swapped for null shards
(:mod:`.bench.null_shard`: same ids and labels, a search that returns at once), and its first
and warm ``transform`` of the same queries to the same sink; then, warm, Spark's own floor
(an identity ``mapInArrow`` with the same input and output columns, nothing of knnspark).
The floor is every step of a real first search but the search: no search of ours can beat
it, so reference time / floor time is the highest first-search ratio this machine allows.
Each first job is broken down (:mod:`.bench.first_job`): CPU of the driver, the JVM and the
Python workers; Spark's Python metrics (worker start, Python time, bytes sent and
returned); the job's time outside its slowest task; the library's task stages.

faiss and hnswlib are timed ``--repeats`` times and their best is kept (a generous
baseline). Each knnspark model is fitted in its own fresh session (the JVM and Python workers
started anew) so that its first search is a real first one. Run from the repository root::

    .venv/bin/python -m scripts.bench_first_search                 # exact and HNSW, 60k x 10k
    .venv/bin/python -m scripts.bench_first_search --kinds brute --rows 20000 --queries 2000

It prints a markdown table and writes JSON to ``--out`` (default
``bench-results/first_search.json``, git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import faiss
import hnswlib
import numpy as np
from pyspark.sql import functions as F

from knnspark import KNNClassifier

from .bench.data import Frames, mnist_like_data, rows_table
from .bench.first_job import JobMeter
from .bench.hook import TimingHook, search_records, tasks_summary
from .bench.null_shard import null_model
from .bench.sparkjobs import build_spark, noop, spark_floor


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    add = parser.add_argument
    add("--rows", type=int, default=60_000, help="training rows")
    add("--queries", type=int, default=10_000)
    add("--k", type=int, default=10)
    add("--cores", type=int, default=2, help="local[C] and the references' threads")
    add("--kinds", default="brute,hnsw", help="brute and/or hnsw")
    add("--ef", type=int, default=64, help="HNSW search ef (knnspark and hnswlib)")
    add("--M", type=int, default=16)
    add("--ef-construction", type=int, default=200)
    add("--nprobe", default="2", help="kmeans-partitioned HNSW runs, comma-separated ('' skips)")
    add("--kmeans-shards", type=int, default=8, help="numShards of the kmeans-partitioned runs")
    add(
        "--hash-shards",
        default="",
        help="numShards of extra hash-partitioned HNSW runs, comma-separated ('' adds none)",
    )
    add("--warm", type=int, default=2, help="warm searches after the first")
    add("--repeats", type=int, default=3, help="timed rounds of faiss / hnswlib (best kept)")
    add(
        "--floor-rows",
        type=int,
        default=0,
        help="training rows the floor's model is fitted on (0: all, as the others: the fit "
        "warms the JVM and starts the workers the first search then finds)",
    )
    add("--no-floor", action="store_true", help="skip the floor (null-search) session")
    add("--seed", type=int, default=0)
    add("--out", type=Path, default=Path("bench-results/first_search.json"))
    return parser.parse_args(argv)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(set(a) & set(b)) for a, b in zip(found.tolist(), truth.tolist(), strict=True))
    return hits / truth.size


def knnspark_run(
    args, data, estimator: KNNClassifier, hook: TimingHook, floor: bool = False
) -> dict:
    """Fit in a fresh session, then the first and the warm searches; ids for recall.

    With ``floor``, the model's shards become null shards before its first search, no ids
    are collected, and Spark's identity floor runs after the warm searches.
    """
    spark = build_spark(args.cores, 10_000, "6g", ui=True)
    frames = Frames(spark, args.cores)
    meter = JobMeter(spark)
    try:
        train = frames.frame("train", rows_table(data.train, data.train_labels, "id"))
        queries = frames.frame("queries", rows_table(data.queries, data.query_labels, "qid"))
        start = time.perf_counter()
        model = estimator.fit(train)
        fit_s = time.perf_counter() - start
        if floor:
            null_model(model)
        searches, tasks, jobs = [], [], []
        for _ in range(1 + args.warm):
            hook.clear()
            job = meter.measure(lambda: noop(model.transform(queries)))
            searches.append(job["wall_s"])
            jobs.append(job)
            records = search_records(hook.records())
            tasks.append(tasks_summary(records) if records else None)
        run = {
            "fit_s": fit_s,
            "first_s": searches[0],
            "warm_s": searches[1:],
            "tasks": tasks,
            "jobs": jobs,
            "shards": model.shardSizes,
        }
        if floor:
            n_classes = len(np.unique(data.train_labels))
            identity = lambda: noop(spark_floor(queries, n_classes))  # noqa: E731
            run["spark_identity"] = [meter.measure(identity) for _ in range(1 + args.warm)]
            return run
        found = model.kneighbors(queries).orderBy("qid").select(F.col("neighbor_ids"))
        run["_ids"] = np.array([r[0] for r in found.collect()], dtype=np.int64)
        return run
    finally:
        spark.stop()
        frames.close()


def breakdown_lines(name: str, job: dict, tasks: dict | None) -> list[str]:
    """One first job, where its time went (a markdown row)."""
    cpu, py = job["cpu_s"], job["python_sql_metrics"]
    outside = max((j["outside_slowest_task_s"] for j in job["jobs"]), default=float("nan"))
    stages = ""
    if tasks:
        slow = tasks["slowest_task"]
        parts = [f"{k} {v:.2f}" for k, v in slow["stages_s"].items()]
        stages = ", ".join(parts + [f"outside {slow['outside_stages_s']:.2f}"])
    return [
        f"| {name} | {job['wall_s']:.2f} | {cpu['driver_python']:.2f} / {cpu['jvm']:.2f} / "
        f"{cpu['python_workers']:.2f} | {py['boot_s']:.2f} | "
        f"{py['python_total_s']:.2f} / {py['python_processing_s']:.2f} | "
        f"{py['sent_mib']:.1f} / {py['returned_mib']:.1f} | {len(job['jobs'])} | "
        f"{outside:.2f} | {stages} |"
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    load_start = os.getloadavg()
    data = mnist_like_data(args.rows, args.queries, args.seed)
    nq, k = args.queries, args.k
    hook = TimingHook()
    faiss.omp_set_num_threads(args.cores)
    flat = faiss.IndexFlatL2(data.train.shape[1])
    flat.add(data.train)
    faiss_s = [timed(lambda: flat.search(data.queries, k)) for _ in range(args.repeats)]
    _, truth = flat.search(data.queries, k)
    results: dict = {"faiss_s": faiss_s, "rows": args.rows, "queries": nq, "k": k}
    table = []

    def line(name: str, run: dict, ref_name: str, ref_s: float, rec: float | None) -> None:
        first_qps, warm_qps = nq / run["first_s"], nq / min(run["warm_s"] or [run["first_s"]])
        ref_qps = nq / ref_s
        table.append(
            f"| {name} | {run['fit_s']:.1f} | {first_qps:,.0f} | {warm_qps:,.0f} | "
            f"{ref_name} {ref_qps:,.0f} | **{first_qps / ref_qps:.2f}** | "
            f"{warm_qps / ref_qps:.2f} | {'' if rec is None else f'{rec:.3f}'} |"
        )

    breakdown: list[str] = []
    try:
        if not args.no_floor:
            run = knnspark_run(
                args,
                data.with_train_prefix(args.floor_rows or args.rows),
                KNNClassifier(k=k, algorithm="brute", idCol="id"),
                hook,
                floor=True,
            )
            results["floor"] = run
            breakdown += breakdown_lines(
                "floor (null search), first", run["jobs"][0], run["tasks"][0]
            )
            if args.warm:
                warm = min(range(1, len(run["jobs"])), key=lambda i: run["jobs"][i]["wall_s"])
                breakdown += breakdown_lines(
                    "floor (null search), warm", run["jobs"][warm], run["tasks"][warm]
                )
            ident = min(run["spark_identity"], key=lambda j: j["wall_s"])
            breakdown += breakdown_lines("Spark identity mapInArrow, best", ident, None)
        if "brute" in kinds:
            run = knnspark_run(args, data, KNNClassifier(k=k, algorithm="brute", idCol="id"), hook)
            run["recall"] = recall(run.pop("_ids"), truth)
            results["brute"] = run
            breakdown += breakdown_lines("exact, first", run["jobs"][0], run["tasks"][0])
            line("exact", run, "faiss IndexFlatL2", min(faiss_s), run["recall"])
        if "hnsw" in kinds:
            build = time.perf_counter()
            index = hnswlib.Index(space="l2", dim=data.train.shape[1])
            index.init_index(args.rows, ef_construction=args.ef_construction, M=args.M)
            index.add_items(data.train, np.arange(args.rows), num_threads=args.cores)
            index.set_ef(args.ef)
            index.set_num_threads(args.cores)
            results["hnswlib_build_s"] = time.perf_counter() - build
            hnsw_s = [timed(lambda: index.knn_query(data.queries, k)) for _ in range(args.repeats)]
            raw_recall = recall(index.knn_query(data.queries, k)[0], truth)
            results["hnswlib"] = {"search_s": hnsw_s, "recall": raw_recall}
            hnsw = {"algorithm": "hnsw", "M": args.M, "efConstruction": args.ef_construction}
            variants = [("HNSW hash", {})]
            variants += [
                (f"HNSW hash numShards={n}", {"numShards": int(n)})
                for n in args.hash_shards.split(",")
                if n
            ]
            variants += [
                (
                    f"HNSW kmeans nprobe={p}",
                    {"partitioning": "kmeans", "numShards": args.kmeans_shards, "nprobe": int(p)},
                )
                for p in args.nprobe.split(",")
                if p
            ]
            for name, extra in variants:
                est = KNNClassifier(k=k, ef=args.ef, idCol="id", **hnsw, **extra)
                run = knnspark_run(args, data, est, hook)
                run["recall"] = recall(run.pop("_ids"), truth)
                results[name] = run
                breakdown += breakdown_lines(f"{name}, first", run["jobs"][0], run["tasks"][0])
                line(name, run, f"hnswlib (recall {raw_recall:.3f})", min(hnsw_s), run["recall"])
    finally:
        hook.close()
    results["loadavg"] = [load_start, os.getloadavg()]
    header = (
        f"{args.rows} x 784 MNIST-like, {nq} queries, k={k}, local[{args.cores}] vs "
        f"{args.cores} threads; load average {load_start[0]:.1f} -> {os.getloadavg()[0]:.1f}\n\n"
        "| knnspark | fit s | first q/s | warm q/s (best) | reference q/s (best) "
        "| first ratio | warm ratio | recall@k |\n|---|---:|---:|---:|---|---:|---:|---:|"
    )
    print(header + "\n" + "\n".join(table))
    if "floor" in results:
        print("\n" + floor_text(results, nq))
    print(
        "\nWhere the first jobs' time went (seconds; CPU from /proc; Spark's Python metrics "
        "summed over tasks; the library's stages of the slowest task)\n\n"
        "| job | wall | CPU driver / JVM / workers | worker start | Python total / "
        "processing | MiB sent / returned | jobs | job outside slowest task | slowest task's "
        "stages |\n|---|---:|---|---|---|---|---:|---:|---|"
    )
    print("\n".join(breakdown))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=str))
    return 0


def floor_text(results: dict, nq: int) -> str:
    """The floor's seconds and the ceiling ratios they imply for each reference."""
    floor = results["floor"]
    first, warm = floor["first_s"], min(floor["warm_s"] or [floor["first_s"]])
    ident = min(j["wall_s"] for j in floor["spark_identity"])
    lines = [
        f"Floor (a model of {sum(floor['shards'].values())} rows, null search): first "
        f"{first:.2f} s ({nq / first:,.0f} q/s), warm {warm:.2f} s; Spark identity "
        f"mapInArrow (warm, best) {ident:.2f} s."
    ]
    refs = {"faiss IndexFlatL2": min(results["faiss_s"])}
    if "hnswlib" in results:
        refs["hnswlib"] = min(results["hnswlib"]["search_s"])
    for name, ref in refs.items():
        lines.append(
            f"- {name} {ref:.2f} s: ceiling first ratio {ref / first:.2f} (warm {ref / warm:.2f})"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
