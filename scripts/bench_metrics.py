"""Cost of the toolbox paths against plain euclidean search on the same data, in one run.

Times ``fit`` and a full ``transform`` (classifier, k=10) for: euclidean (uniform and gaussian
weights), nan_euclidean (complete data, and with 10% NaN), and mahalanobis (exact and HNSW
against euclidean HNSW); manhattan, another float64-block metric, for scale. Prints a
markdown table; every row is the best of ``--repeats`` runs, after one warm-up.

    .venv/bin/python scripts/bench_metrics.py --rows 20000 --queries 5000 --dim 32
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts.bench

from knnspark import KNNClassifier  # noqa: E402
from scripts.bench.cli import script_parser  # noqa: E402
from scripts.bench.sparkjobs import local_session, noop  # noqa: E402
from scripts.bench.timing import best_of  # noqa: E402


def _data(rows: int, queries: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(20, dim))
    mix = rng.normal(size=(dim, dim)) / np.sqrt(dim) + np.eye(dim)  # correlated features
    labels = rng.integers(0, 20, size=rows + queries)
    x = (centres[labels] + rng.normal(size=(rows + queries, dim))) @ mix
    return x[:rows], labels[:rows].astype(float), x[rows:]


def _score(model, queries) -> None:
    noop(model.transform(queries))


def main() -> None:
    args = script_parser(__doc__, rows=20000, queries=5000, dim=32, repeats=2).parse_args()
    spark = local_session("local[2]", 4)
    x, y, q = _data(args.rows, args.queries, args.dim)
    holes = x.copy()
    holes[np.random.default_rng(1).random(x.shape) < 0.1] = np.nan
    qholes = q.copy()
    qholes[np.random.default_rng(2).random(q.shape) < 0.1] = np.nan

    def frame(a, labels=None):
        data = {"features": list(a)}
        if labels is not None:
            data["label"] = labels
        return spark.createDataFrame(pd.DataFrame(data)).cache()

    train, queries = frame(x, y), frame(q)
    train_nan, queries_nan = frame(holes, y), frame(qholes)
    for df in (train, queries, train_nan, queries_nan):
        df.count()
    gaussian = {"weights": "gaussian", "bandwidth": 2.0}
    cases = [
        ("euclidean, brute, uniform", {}, train, queries),
        ("euclidean, brute, gaussian h=2", gaussian, train, queries),
        ("manhattan, brute (float64 blocks, for scale)", {"metric": "manhattan"}, train, queries),
        ("nan_euclidean, brute, no NaN", {"metric": "nan_euclidean"}, train, queries),
        ("nan_euclidean, brute, 10% NaN", {"metric": "nan_euclidean"}, train_nan, queries_nan),
        ("mahalanobis, brute", {"metric": "mahalanobis"}, train, queries),
        ("euclidean, hnsw", {"algorithm": "hnsw"}, train, queries),
        ("mahalanobis, hnsw", {"metric": "mahalanobis", "algorithm": "hnsw"}, train, queries),
    ]
    # Warm-up: the first fit and search of a session pay for JVM and worker start-up.
    _score(KNNClassifier(k=10, numShards=2).fit(train), queries)
    rows = []
    for name, params, tr, qu in cases:
        estimator = KNNClassifier(k=10, numShards=2, algorithm="brute").setParams(**params)
        fit_s, model = best_of(estimator.fit, args.repeats, tr)
        search_s, _ = best_of(_score, args.repeats, model, qu)
        rows.append((name, fit_s, search_s))
    base_fit, base_search = rows[0][1], rows[0][2]
    hnsw_fit, hnsw_search = rows[6][1], rows[6][2]
    print(f"{args.rows} rows x {args.dim} features, {args.queries} queries, k=10, local[2]\n")
    print("| path | fit s | transform s | fit / baseline | transform / baseline |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, fit_s, search_s in rows:
        bf, bs = (hnsw_fit, hnsw_search) if "hnsw" in name else (base_fit, base_search)
        print(f"| {name} | {fit_s:.2f} | {search_s:.2f} | {fit_s / bf:.2f} | {search_s / bs:.2f} |")
    print("\nbaseline: euclidean brute uniform (hnsw rows: euclidean hnsw)")
    spark.stop()


if __name__ == "__main__":
    main()
