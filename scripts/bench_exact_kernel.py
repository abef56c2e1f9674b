"""Benchmark knnspark's exact k-NN kernel against faiss-cpu and scikit-learn brute force.

Everything runs in one process, on the same float32 data, with the same thread count for every
method, and the methods take turns inside each repetition so that a noisy machine slows them
alike; each method's time is the best of ``--repeats`` repetitions. Compared, per dataset:

- ``knnspark 1 shard``: :func:`knnspark.kernels.exact.exact_search` on one shard of all rows;
- ``knnspark 4 shards``: :func:`knnspark.partition.search_shards` over S contiguous shards (each
  shard's ``exact_search``, then the merge of the partial lists), the call a search task makes;
- ``faiss.knn``: ``faiss.knn(xq, xb, k)`` (BLAS brute force, no index);
- ``faiss IndexFlatL2``: ``IndexFlatL2.search``;
- ``sklearn brute``: ``NearestNeighbors(algorithm="brute").kneighbors``.

Building (``ExactShard`` with its per-metric preparation, ``IndexFlatL2.add``,
``NearestNeighbors.fit``) is timed apart from searching. The script also checks knnspark against
faiss (distances within 1e-3 relative of the square root of faiss's squared L2, id recall of at
least 0.999) and against itself (the sharded search returns what the single shard does), and exits
with status 1 when a check fails.

Threads: every BLAS and OpenMP pool loaded in the process (numpy's and scipy's OpenBLAS, faiss's
OpenBLAS and libgomp) is limited with ``threadpoolctl.threadpool_limits`` once each method has run
once (so that its libraries are loaded), and faiss also through ``faiss.omp_set_num_threads``.
The JSON records the pools and their thread counts, so no environment variable is needed.

Run from the repository root::

    .venv/bin/python scripts/bench_exact_kernel.py --quick        # under 2 minutes
    .venv/bin/python scripts/bench_exact_kernel.py                # 50k x 10k, k=10
    .venv/bin/python scripts/bench_exact_kernel.py --threads 2 --profile
    .venv/bin/python scripts/bench_exact_kernel.py --n-train 200000 --mnist 60000 2000

Results go to ``--out`` (default ``bench-results/exact_kernel.json``, git-ignored) and a markdown
table is printed.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import sklearn
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_info, threadpool_limits

# Benchmark the checkout this script belongs to, installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import knnspark  # noqa: E402
from knnspark.kernels.exact import ExactShard, exact_search  # noqa: E402
from knnspark.partition import NEIGHBORS, SearchSettings, search_shards  # noqa: E402
from scripts.bench.cli import require_positive, script_parser  # noqa: E402
from scripts.bench.data import mnist_like_data  # noqa: E402

#: Largest relative difference allowed between knnspark's and faiss's neighbor distances.
DIST_RTOL = 1e-3
#: Smallest mean id recall of knnspark against faiss.
MIN_RECALL = 0.999
#: A call faster than this is repeated and averaged, so tiny datasets time reliably.
MIN_TIMED_SECONDS = 0.2

#: A search takes the queries and k, and returns (distances, ids), each of shape (n_queries, k).
SearchFn = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


@dataclass
class Dataset:
    """One benchmark input: training rows and queries, float32."""

    name: str
    train: np.ndarray
    queries: np.ndarray


def clustered_data(
    n_train: int, n_queries: int, n_features: int, n_clusters: int, seed: int
) -> Dataset:
    """Gaussian clusters: centres ~ N(0, 10^2) per coordinate, unit spread within a cluster.

    Centres lie about ``10 * sqrt(2 * n_features)`` apart (113 in 64 dimensions) while a cluster's
    radius is about ``sqrt(n_features)`` (8), so the spread is well below the centre distance.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 10.0, (n_clusters, n_features))

    def draw(n: int) -> np.ndarray:
        members = rng.integers(0, n_clusters, n)
        return (centres[members] + rng.normal(0.0, 1.0, (n, n_features))).astype(np.float32)

    train = draw(n_train)
    return Dataset("clustered", train, draw(n_queries))


def digits_data(seed: int = 0) -> Dataset:
    """scikit-learn's digits, split 80/20 as ``scripts/export_digits.py`` writes them."""
    digits = load_digits()
    train_ids, test_ids = train_test_split(
        np.arange(len(digits.target)), test_size=0.2, random_state=seed, stratify=digits.target
    )
    train = digits.data[np.sort(train_ids)].astype(np.float32)
    return Dataset("digits", train, digits.data[np.sort(test_ids)].astype(np.float32))


def mnist_like(n_train: int, n_queries: int, seed: int) -> Dataset:
    """784-d MNIST-like images (see :func:`scripts.bench.data.mnist_like_data`)."""
    data = mnist_like_data(n_train, n_queries, seed)
    return Dataset("mnist-like", data.train, data.queries)


def knnspark_searches(train: np.ndarray, n_shards: int) -> dict[str, tuple[float, SearchFn]]:
    """knnspark on one shard and on ``n_shards`` shards, with their build times."""
    ids = np.arange(train.shape[0], dtype=np.int64)

    start = time.perf_counter()
    whole = ExactShard(train, ids)
    whole.prepared("euclidean")
    build_whole = time.perf_counter() - start

    start = time.perf_counter()
    shards = [ExactShard(train[part], ids[part]) for part in np.array_split(ids, n_shards)]
    for shard in shards:
        shard.prepared("euclidean")
    build_shards = time.perf_counter() - start

    def one_shard(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        dist, pos = exact_search(whole, queries, k)
        return dist, whole.ids[pos]

    def many_shards(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        settings = SearchSettings(
            task=NEIGHBORS,
            k=k,
            metric="euclidean",
            p=2.0,
            n_features=train.shape[1],
            features_col="features",
            handle_invalid="error",
        )
        dist, out_ids, _ = search_shards(shards, queries, settings)
        return dist, out_ids

    return {
        "knnspark 1 shard": (build_whole, one_shard),
        f"knnspark {n_shards} shards": (build_shards, many_shards),
    }


def reference_searches(train: np.ndarray) -> dict[str, tuple[float, SearchFn]]:
    """faiss and scikit-learn brute force, with their build times; distances are L2, not squared."""

    def faiss_knn(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        sq_dist, ids = faiss.knn(queries, train, k)
        return np.sqrt(np.maximum(sq_dist, 0.0)), ids

    start = time.perf_counter()
    index = faiss.IndexFlatL2(train.shape[1])
    index.add(train)
    build_index = time.perf_counter() - start

    def faiss_flat(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        sq_dist, ids = index.search(queries, k)
        return np.sqrt(np.maximum(sq_dist, 0.0)), ids

    start = time.perf_counter()
    model = NearestNeighbors(algorithm="brute", metric="euclidean").fit(train)
    build_model = time.perf_counter() - start

    def sklearn_brute(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return model.kneighbors(queries, n_neighbors=k)

    return {
        "faiss.knn": (0.0, faiss_knn),
        "faiss IndexFlatL2": (build_index, faiss_flat),
        "sklearn brute": (build_model, sklearn_brute),
    }


def time_call(search: SearchFn, queries: np.ndarray, k: int) -> float:
    """Seconds of one search; calls under MIN_TIMED_SECONDS are repeated and averaged."""
    calls = 0
    start = time.perf_counter()
    while True:
        search(queries, k)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= MIN_TIMED_SECONDS:
            return elapsed / calls


def id_recall(found: np.ndarray, reference: np.ndarray) -> float:
    """Mean fraction of each row's reference ids that ``found`` also holds."""
    hits = sum(np.intersect1d(a, b).size for a, b in zip(found, reference, strict=True))
    return hits / reference.size


def check_against_faiss(
    results: dict[str, tuple[np.ndarray, np.ndarray]], n_shards: int
) -> dict[str, float | bool]:
    """knnspark vs faiss.knn (distances, id recall) and knnspark sharded vs single shard."""
    ref_dist, ref_ids = results["faiss.knn"]
    checks: dict[str, float | bool] = {}
    for name in ("knnspark 1 shard", f"knnspark {n_shards} shards"):
        dist, ids = results[name]
        # Distances are compared sorted by rank; an exact zero on both sides is a match.
        rel = np.abs(dist - ref_dist) / np.maximum(ref_dist, np.finfo(np.float32).tiny)
        rel[(dist == 0.0) & (ref_dist == 0.0)] = 0.0
        checks[f"{name}: max relative distance error"] = float(rel.max())
        checks[f"{name}: id recall vs faiss"] = id_recall(ids, ref_ids)
    sk_dist, sk_ids = results["sklearn brute"]
    checks["sklearn brute: id recall vs faiss"] = id_recall(sk_ids, ref_ids)
    one_d, one_i = results["knnspark 1 shard"]
    many_d, many_i = results[f"knnspark {n_shards} shards"]
    checks["knnspark shards identical to 1 shard"] = bool(
        np.array_equal(one_i, many_i) and np.array_equal(one_d, many_d)
    )
    checks["passed"] = bool(
        all(
            checks[f"{name}: max relative distance error"] <= DIST_RTOL
            and checks[f"{name}: id recall vs faiss"] >= MIN_RECALL
            for name in ("knnspark 1 shard", f"knnspark {n_shards} shards")
        )
        and checks["knnspark shards identical to 1 shard"]
    )
    return checks


def bench_dataset(data: Dataset, k: int, n_shards: int, repeats: int) -> dict:
    """Time every method on one dataset (turn by turn, best of ``repeats``) and check results."""
    searches = {**knnspark_searches(data.train, n_shards), **reference_searches(data.train)}
    results = {name: search(data.queries, k) for name, (_, search) in searches.items()}
    times: dict[str, list[float]] = {name: [] for name in searches}
    for _ in range(repeats):
        for name, (_, search) in searches.items():
            times[name].append(time_call(search, data.queries, k))
    n_queries = data.queries.shape[0]
    methods = {
        name: {
            "build_s": build,
            "search_s_best": min(times[name]),
            "search_s_all": times[name],
            "queries_per_s": n_queries / min(times[name]),
        }
        for name, (build, _) in searches.items()
    }
    ratios = {
        f"{name} / {ref}": methods[name]["queries_per_s"] / methods[ref]["queries_per_s"]
        for name in searches
        if name.startswith("knnspark")
        for ref in ("faiss.knn", "faiss IndexFlatL2")
    }
    return {
        "dataset": data.name,
        "n_train": int(data.train.shape[0]),
        "n_queries": n_queries,
        "n_features": int(data.train.shape[1]),
        "k": k,
        "methods": methods,
        "ratios_qps": ratios,
        "checks": check_against_faiss(results, n_shards),
    }


def profile_knnspark(data: Dataset, k: int, top: int = 15) -> str:
    """cProfile of one single-shard knnspark search, top functions by own time."""
    shard = ExactShard(data.train, np.arange(data.train.shape[0]))
    shard.prepared("euclidean")
    profiler = cProfile.Profile()
    profiler.enable()
    exact_search(shard, data.queries, k)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def warm_up(n_shards: int) -> None:
    """Run every method once on tiny data so that all their thread pools are loaded."""
    tiny = clustered_data(256, 32, 8, 4, seed=1)
    searches = {**knnspark_searches(tiny.train, n_shards), **reference_searches(tiny.train)}
    for _, search in searches.values():
        search(tiny.queries, 3)


def markdown_table(runs: list[dict]) -> str:
    lines = [
        "| dataset | method | build (s) | search (s, best) | queries/s | qps / faiss.knn "
        "| qps / IndexFlatL2 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        knn_qps = run["methods"]["faiss.knn"]["queries_per_s"]
        flat_qps = run["methods"]["faiss IndexFlatL2"]["queries_per_s"]
        label = (
            f"{run['dataset']} ({run['n_train']} train x {run['n_queries']} queries, "
            f"{run['n_features']} dims, k={run['k']})"
        )
        for name, m in run["methods"].items():
            lines.append(
                f"| {label} | {name} | {m['build_s']:.3f} | {m['search_s_best']:.4f} "
                f"| {m['queries_per_s']:,.0f} | {m['queries_per_s'] / knn_qps:.2f} "
                f"| {m['queries_per_s'] / flat_qps:.2f} |"
            )
    lines += ["", "| dataset | check | value |", "|---|---|---|"]
    for run in runs:
        for name, value in run["checks"].items():
            shown = f"{value:.3g}" if isinstance(value, float) else str(value)
            lines.append(f"| {run['dataset']} | {name} | {shown} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = script_parser(__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="20000 x 2000 clustered rows (under 2 minutes)"
    )
    parser.add_argument("--n-train", type=int, help="clustered training rows (default 50000)")
    parser.add_argument("--n-queries", type=int, help="clustered queries (default 10000)")
    parser.add_argument("--n-features", type=int, default=64)
    parser.add_argument("--n-clusters", type=int, default=100)
    parser.add_argument("--k", type=int, default=10, help="neighbors per query, >= 1")
    parser.add_argument("--shards", type=int, default=4, help="shards of the sharded run, >= 1")
    parser.add_argument("--threads", type=int, default=1, help="threads of every pool, >= 1")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions, >= 1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-digits", action="store_true", help="skip the digits dataset")
    parser.add_argument(
        "--mnist",
        type=int,
        nargs=2,
        metavar=("N_TRAIN", "N_QUERIES"),
        help="also 784-d MNIST-like data of this size (e.g. 60000 2000)",
    )
    parser.add_argument("--profile", action="store_true", help="also cProfile one knnspark search")
    parser.add_argument("--out", type=Path, default=Path("bench-results/exact_kernel.json"))
    args = parser.parse_args(argv)
    require_positive(parser, args, ("k", "shards", "threads", "repeats"))
    if args.n_train is None:
        args.n_train = 20_000 if args.quick else 50_000
    if args.n_queries is None:
        args.n_queries = 2_000 if args.quick else 10_000
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    datasets = [
        clustered_data(args.n_train, args.n_queries, args.n_features, args.n_clusters, args.seed)
    ]
    if not args.no_digits:
        datasets.append(digits_data())
    if args.mnist:
        datasets.append(mnist_like(*args.mnist, seed=args.seed))
    warm_up(args.shards)
    load_start = os.getloadavg()
    with threadpool_limits(limits=args.threads):
        faiss.omp_set_num_threads(args.threads)
        faiss_threads = faiss.omp_get_max_threads()
        pools = [
            {key: pool.get(key) for key in ("internal_api", "prefix", "filepath", "num_threads")}
            for pool in threadpool_info()
        ]
        runs = [bench_dataset(data, args.k, args.shards, args.repeats) for data in datasets]
        profile = profile_knnspark(datasets[0], args.k) if args.profile else None
    meta = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "threads": args.threads,
        "faiss_omp_max_threads": faiss_threads,
        "thread_pools": pools,
        "repeats": args.repeats,
        "seed": args.seed,
        "cpu_count": os.cpu_count(),
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "faiss": faiss.__version__,
        "sklearn": sklearn.__version__,
        "knnspark_path": str(Path(knnspark.__file__).parent),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "runs": runs, "profile": profile}, indent=2))
    print(markdown_table(runs))
    if profile:
        print("\n" + profile)
    print(f"\nthreads={args.threads}, load average {load_start} -> {meta['loadavg_end']}")
    print(f"wrote {args.out}")
    return 0 if all(run["checks"]["passed"] for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
