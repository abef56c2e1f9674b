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
sink. faiss and hnswlib are timed ``--repeats`` times and their best is kept (a generous
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
from .bench.hook import TimingHook, search_records, tasks_summary
from .bench.sparkjobs import build_spark, noop


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


def knnspark_run(args, data, estimator: KNNClassifier, hook: TimingHook) -> dict:
    """Fit in a fresh session, then the first and the warm searches; ids for recall."""
    spark = build_spark(args.cores, 10_000, "6g")
    frames = Frames(spark, args.cores)
    try:
        train = frames.frame("train", rows_table(data.train, data.train_labels, "id"))
        queries = frames.frame("queries", rows_table(data.queries, data.query_labels, "qid"))
        start = time.perf_counter()
        model = estimator.fit(train)
        fit_s = time.perf_counter() - start
        searches, tasks = [], []
        for _ in range(1 + args.warm):
            hook.clear()
            searches.append(timed(lambda: noop(model.transform(queries))))
            records = search_records(hook.records())
            tasks.append(tasks_summary(records) if records else None)
        found = model.kneighbors(queries).orderBy("qid").select(F.col("neighbor_ids"))
        ids = np.array([r[0] for r in found.collect()], dtype=np.int64)
        return {
            "fit_s": fit_s,
            "first_s": searches[0],
            "warm_s": searches[1:],
            "tasks": tasks,
            "shards": model.shardSizes,
            "_ids": ids,
        }
    finally:
        spark.stop()
        frames.close()


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

    try:
        if "brute" in kinds:
            run = knnspark_run(args, data, KNNClassifier(k=k, algorithm="brute", idCol="id"), hook)
            run["recall"] = recall(run.pop("_ids"), truth)
            results["brute"] = run
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
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
