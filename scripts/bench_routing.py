"""k-means routing against hash partitioning and faiss, in one run (issue 11's targets).

On clustered data (``scripts/bench/data.py``), ``numShards`` shards:

* fit time, ``partitioning="kmeans"`` against ``"hash"`` (exact shards; target <= 1.5x),
  and the CPU seconds of the fits (driver, JVM and Python workers: steadier under load);
* pruned exact search (``nprobe=None``): shards visited per query (target <= half), its
  neighbors against faiss ``IndexFlatL2`` and its end-to-end throughput against faiss with
  the same threads (target >= 1.0x);
* ``nprobe`` sweeps of IVF-Flat (``brute``) and IVF-HNSW (``hnsw``): recall@k against exact,
  throughput (target: ``nprobe=4`` HNSW recall@10 >= 0.95).

Every time is the best of ``--repeats`` runs after a warm-up; searches are full
``kneighbors`` jobs collected to Arrow. Prints markdown, writes JSON.

    .venv/bin/python scripts/bench_routing.py --rows 200000 --queries 10000 --shards 16
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.bench.data import clustered_data, rows_table  # noqa: E402
from scripts.bench.targets import recall_at_k  # noqa: E402


def _tree_cpu_seconds() -> float:
    """CPU seconds of this process and every descendant (the JVM, its Python workers).

    Linux only (``/proc``; 0 elsewhere).  On a shared machine the wall time of a fit
    stretches with the load; its CPU time much less.
    """
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        # utime, stime, and those of reaped children (finished Python workers)
        times[int(entry.name)] = sum(int(v) for v in fields[11:15]) / tick
    total, todo = 0.0, [os.getpid()]
    while todo:
        pid = todo.pop()
        total += times.get(pid, 0.0)
        todo += [child for child, parent in parents.items() if parent == pid]
    return total


def _best(fn, repeats: int):
    """(fastest seconds of ``repeats`` calls after one warm-up, the last result)."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def _search(model, queries):
    """Neighbor ids (n_queries, k) in query order, and the shards each query visited."""
    table = model.kneighbors(queries).select("qid", "neighbor_ids", "visited").toArrow()
    table = table.sort_by("qid")
    k = model.getK()
    ids = table.column("neighbor_ids").combine_chunks().flatten().to_numpy().reshape(-1, k)
    return ids, table.column("visited").to_numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--nprobes", default="1,2,4,8")
    parser.add_argument("--fits-only", action="store_true", help="fit times, exact shards only")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench-results/routing.json"))
    args = parser.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    import faiss
    from pyspark.sql import SparkSession

    from knnspark import NearestNeighbors

    spark = (
        SparkSession.builder.master(f"local[{args.cores}]")
        .config("spark.sql.shuffle.partitions", str(args.cores * 2))
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "10000")
        .config("spark.driver.memory", "6g")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    data = clustered_data(args.rows, args.queries, args.dim, args.clusters, 10, seed=0)
    folder = Path(tempfile.mkdtemp(prefix="bench-routing-"))
    pq.write_table(rows_table(data.train, data.train_labels, "id"), folder / "train.parquet")
    pq.write_table(rows_table(data.queries, data.query_labels, "qid"), folder / "q.parquet")
    train = spark.read.parquet(str(folder / "train.parquet")).repartition(args.cores).cache()
    queries = spark.read.parquet(str(folder / "q.parquet")).repartition(args.cores).cache()
    train.count(), queries.count()
    results: dict = {"args": {k: str(v) for k, v in vars(args).items()}}

    def estimator(partitioning: str, algorithm: str) -> NearestNeighbors:
        return NearestNeighbors(
            k=args.k, idCol="id", numShards=args.shards, partitioning=partitioning,
            algorithm=algorithm, shardsVisitedCol="visited",
        )  # fmt: skip

    fits = {}
    plans = [("hash_brute", "hash", "brute"), ("kmeans_brute", "kmeans", "brute")]
    if not args.fits_only:
        plans += [("hash_hnsw", "hash", "hnsw"), ("kmeans_hnsw", "kmeans", "hnsw")]
    for name, part, algo in plans * (3 if args.fits_only else 1):
        cpu = _tree_cpu_seconds()
        fit_s, fits[name] = _best(lambda p=part, a=algo: estimator(p, a).fit(train), args.repeats)
        cpu_s = (_tree_cpu_seconds() - cpu) / (args.repeats + 1)  # warm-up included
        results[f"fit_s_{name}"] = min(fit_s, results.get(f"fit_s_{name}", float("inf")))
        results[f"fit_cpu_s_{name}"] = min(cpu_s, results.get(f"fit_cpu_s_{name}", float("inf")))
        load = os.getloadavg()[0]
        print(f"fit {name}: {fit_s:.1f} s, {cpu_s:.1f} CPU s, load {load:.1f}", file=sys.stderr)
    if args.fits_only:  # interleaved hash, kmeans, hash, ...: the best of each
        ratio = results["fit_s_kmeans_brute"] / results["fit_s_hash_brute"]
        cpu_ratio = results["fit_cpu_s_kmeans_brute"] / results["fit_cpu_s_hash_brute"]
        print(f"| fit kmeans / hash (brute, best of 3 interleaved) | {ratio:.2f} |")
        print(f"| fit CPU s kmeans / hash (brute, best of 3 rounds) | {cpu_ratio:.2f} |")
        return
    faiss.omp_set_num_threads(args.cores)
    index = faiss.IndexFlatL2(args.dim)
    index.add(data.train)
    faiss_s, (_, ref_ids) = _best(lambda: index.search(data.queries, args.k), args.repeats)
    results["faiss_flat_qps"] = args.queries / faiss_s

    sizes = list(fits["kmeans_brute"].shardSizes.values())
    results["kmeans_shard_sizes"] = sizes
    results["kmeans_largest_over_mean"] = max(sizes) / (args.rows / args.shards)

    exact_ids = {}
    for name in ("hash_brute", "kmeans_brute"):
        seconds, (ids, visited) = _best(lambda m=fits[name]: _search(m, queries), args.repeats)
        exact_ids[name] = ids
        results[f"exact_{name}"] = {
            "qps": args.queries / seconds,
            "vs_faiss": faiss_s / seconds,
            "mean_shards_visited": float(visited.mean()),
            # faiss ranks in float32: near-ties may swap; knnspark refines in float64.
            "same_ids_as_faiss": float((ids == ref_ids).all(axis=1).mean()),
            "same_ids_as_hash_exact": float((ids == exact_ids["hash_brute"]).all(axis=1).mean()),
            "recall": recall_at_k(ids, ref_ids),
        }
        print(f"{name}: {results[f'exact_{name}']}", file=sys.stderr)
    for name in ("kmeans_brute", "kmeans_hnsw"):
        model = fits[name]
        for nprobe in [int(n) for n in args.nprobes.split(",")]:
            model.setNprobe(nprobe)
            seconds, (ids, visited) = _best(lambda m=model: _search(m, queries), args.repeats)
            results[f"nprobe_{name}_{nprobe}"] = {
                "qps": args.queries / seconds,
                "recall": recall_at_k(ids, ref_ids),
                "mean_shards_visited": float(visited.mean()),
            }
            print(f"nprobe {name} {nprobe}: {results[f'nprobe_{name}_{nprobe}']}", file=sys.stderr)
        model.setNprobe(None)
    spark.stop()

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    ratio_brute = results["fit_s_kmeans_brute"] / results["fit_s_hash_brute"]
    ratio_hnsw = results["fit_s_kmeans_hnsw"] / results["fit_s_hash_hnsw"]
    print("| measure | value |\n| --- | --- |")
    print(f"| faiss IndexFlatL2 q/s ({args.cores} threads) | {results['faiss_flat_qps']:.0f} |")
    for key, value in results.items():
        if key.startswith("fit_s_"):
            print(f"| fit s {key[6:]} | {value:.1f} |")
        elif key.startswith("fit_cpu_s_"):
            print(f"| fit CPU s {key[10:]} | {value:.1f} |")
    print(f"| fit kmeans / hash (brute) | {ratio_brute:.2f} |")
    print(f"| fit kmeans / hash (hnsw) | {ratio_hnsw:.2f} |")
    print(f"| largest kmeans shard / mean | {results['kmeans_largest_over_mean']:.2f} |")
    for key, value in results.items():
        if isinstance(value, dict) and key != "args":
            cells = ", ".join(f"{k}={v:.3g}" for k, v in value.items())
            print(f"| {key} | {cells} |")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
