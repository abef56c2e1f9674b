"""knn_join against Spark's own exact DataFrame.nearestByJoin, same run, same neighbors.

    .venv/bin/python scripts/bench_join.py            # 20k x 64 items, 2k queries, k=10
    .venv/bin/python scripts/bench_join.py --quick    # 5k items, 500 queries

Both sides are clustered float32 data, cached before timing, in local[2]. Each path is
forced with a noop write of its whole output and timed end to end from the two DataFrames
(knn_join's time includes indexing the right side): Spark's ``nearestByJoin(..., "exact",
"distance")`` ranked by ``vector_l2_distance`` once (it is slow), knn_join exact best of
``--repeats``. The (query, item) pairs of both are then compared. Prints a markdown table and
writes ``bench-results/bench_join.json``. Needs Spark >= 4.3 (``vector_l2_distance``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import functions as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts.bench

from knnspark import knn_join  # noqa: E402
from scripts.bench.cli import script_parser  # noqa: E402
from scripts.bench.sparkjobs import local_session, noop  # noqa: E402
from scripts.bench.timing import timed  # noqa: E402


def main() -> None:
    parser = script_parser(__doc__, items=20_000, queries=2_000, dim=64, k=10, repeats=3)
    parser.add_argument("--quick", action="store_true", help="5k items, 500 queries")
    args = parser.parse_args()
    if args.quick:
        args.items, args.queries = 5_000, 500
    spark = local_session("local[2]", 4, "4g")
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=3.0, size=(20, args.dim))

    def rows(n):
        return (centres[rng.integers(0, 20, n)] + rng.normal(size=(n, args.dim))).astype(np.float32)

    items = pd.DataFrame({"item": np.arange(args.items), "features": list(rows(args.items))})
    queries = pd.DataFrame({"qid": np.arange(args.queries), "features": list(rows(args.queries))})
    floats = F.col("features").cast("array<float>")
    right = spark.createDataFrame(items).withColumn("features", floats).repartition(2).cache()
    left = spark.createDataFrame(queries).withColumn("features", floats).repartition(2).cache()
    right.count(), left.count()
    k = args.k
    base = right.withColumnRenamed("features", "item_features")
    ranking = F.vector_l2_distance(left["features"], base["item_features"])
    spark_join = left.nearestByJoin(base, ranking, k, "exact", "distance")
    ours = knn_join(left, right, k, idCol="item")
    spark_seconds = timed(lambda: noop(spark_join))
    ours_seconds = min(
        timed(lambda: noop(knn_join(left, right, k, idCol="item"))) for _ in range(args.repeats)
    )
    expected = {(r["qid"], r["item"]) for r in spark_join.select("qid", "item").collect()}
    got = {(r["qid"], r["item"]) for r in ours.select("qid", "item").collect()}
    result = {
        "items": args.items,
        "queries": args.queries,
        "dim": args.dim,
        "k": k,
        "spark_nearest_by_join_seconds": round(spark_seconds, 2),
        "knn_join_seconds": round(ours_seconds, 2),
        "speedup": round(spark_seconds / ours_seconds, 1),
        "same_pairs": expected == got,
        "pairs_in_common": len(expected & got) / max(1, len(expected)),
    }
    print(f"{args.items} items x {args.dim} dims, {args.queries} queries, k={k}, local[2]")
    print("| path | seconds | queries/s |")
    print("| --- | ---: | ---: |")
    for name, seconds in (
        ("Spark nearestByJoin exact (1 run)", spark_seconds),
        (f"knn_join exact (best of {args.repeats})", ours_seconds),
    ):
        print(f"| {name} | {seconds:.2f} | {args.queries / seconds:.0f} |")
    print(f"speedup {result['speedup']}x; same (query, item) pairs: {result['same_pairs']}")
    out = Path("bench-results")
    out.mkdir(exist_ok=True)
    (out / "bench_join.json").write_text(json.dumps(result, indent=2) + "\n")
    spark.stop()


if __name__ == "__main__":
    main()
