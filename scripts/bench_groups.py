"""Shard sizes and per-task memory when one group holds most rows (``groupCol``).

    .venv/bin/python scripts/bench_groups.py --rows 200000 --features 16 --shards 16

Fits a grouped ``NearestNeighbors`` (shard-major storage, exact) where one group holds
``--share`` of the rows and the rest are small groups of 20 rows, prints the shard sizes,
then measures with ``tracemalloc`` what one search task holds: loading the largest shard
from its rows and searching 1,000 queries of the big group in it, against the same for one
shard holding the whole big group (the layout without spreading big groups).
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import functions as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts.bench

from knnspark import NearestNeighbors  # noqa: E402
from knnspark.group_pieces import shard_from_group_table  # noqa: E402
from knnspark.kernels.exact import ExactShard  # noqa: E402
from knnspark.kernels.shard import SearchOptions  # noqa: E402
from scripts.bench.cli import add_int_flags, script_parser  # noqa: E402
from scripts.bench.sparkjobs import local_session  # noqa: E402


def peak_mib(action) -> float:
    tracemalloc.start()
    action()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    parser = script_parser(__doc__, rows=200_000, features=16, shards=16)
    parser.add_argument("--share", type=float, default=0.9)
    add_int_flags(parser, k=10)
    args = parser.parse_args()
    spark = local_session("local[2]", 8, "3g")
    rng = np.random.default_rng(0)
    n, f = args.rows, args.features
    n_big = int(n * args.share)
    groups = np.array(["big"] * n_big + [f"g{i // 20}" for i in range(n - n_big)])
    x = rng.normal(size=(n, f)).astype(np.float32)
    frame = pd.DataFrame({"id": np.arange(n), "features": list(x), "country": groups})
    train = spark.createDataFrame(frame).cache()
    train.count()
    start = time.perf_counter()
    model = NearestNeighbors(
        k=args.k, idCol="id", groupCol="country", numShards=args.shards, algorithm="brute",
        maxBroadcastBytes=0,
    ).fit(train)  # fmt: skip
    fit_s = time.perf_counter() - start
    sizes = model.shardSizes
    mean = n / args.shards
    print(f"{n} rows x {f} features, {args.shards} shards, group 'big' holds {n_big} rows")
    print(f"fit {fit_s:.1f} s; big group spread over {model.index.groups.big['big']} shards")
    print(
        f"shard rows: max {max(sizes.values())}, mean {mean:.0f}, min {min(sizes.values())} "
        f"(max / mean = {max(sizes.values()) / mean:.2f})"
    )
    largest = max(sizes, key=sizes.get)
    table = model.index.shard_rows.filter(F.col("shard") == largest).toArrow()
    queries = rng.normal(size=(1000, f)).astype(np.float32)
    q_groups = np.array(["big"] * 1000, dtype=object)
    options = SearchOptions()

    def spread_task() -> None:
        shard = shard_from_group_table(table, largest, "brute", {}, f, model.modelId)
        shard.search_groups(queries, q_groups, args.k, options)

    big_rows = x[:n_big]

    def unspread_task() -> None:
        ExactShard(big_rows.copy(), np.arange(n_big)).search(queries, args.k, options)

    print(
        f"one search task, largest shard ({sizes[largest]} rows): {peak_mib(spread_task):.0f} MiB"
    )
    print(
        f"one shard holding the whole big group ({n_big} rows): {peak_mib(unspread_task):.0f} MiB"
    )
    start = time.perf_counter()
    searched = model.kneighbors(spark.createDataFrame(
        pd.DataFrame({"features": list(queries), "country": ["big"] * 1000})
    ))  # fmt: skip
    searched.count()
    print(f"search of 1,000 big-group queries: {time.perf_counter() - start:.1f} s")
    spark.stop()


if __name__ == "__main__":
    main()
