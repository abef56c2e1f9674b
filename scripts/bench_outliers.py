"""Cost of KNNOutlierDetector and EditedNearestNeighbors against a plain kneighbors, same run.

    .venv/bin/python scripts/bench_outliers.py [--rows 20000] [--dim 16] [--k 5] [--repeats 2]

Every path is exact (algorithm="brute") on the same cached, clustered data in local[2];
each is forced with a noop write and timed best of ``--repeats``:

* plain: ``NearestNeighbors(k).fit(df)`` then ``kneighbors(df)`` (k neighbors per row), and
  the search alone with a fitted model;
* outliers fit: ``KNNOutlierDetector(k).fit(df)`` (index + training scores + threshold);
* outliers transform: scoring ``df`` with ``idCol`` (k + 1 searched, self left out);
* editing: ``EditedNearestNeighbors(k).transform(df)`` (index + k + 1 search + filter).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts.bench

from knnspark import EditedNearestNeighbors, KNNOutlierDetector, NearestNeighbors  # noqa: E402
from scripts.bench.cli import script_parser  # noqa: E402
from scripts.bench.sparkjobs import local_session, noop  # noqa: E402
from scripts.bench.timing import best_of  # noqa: E402


def _best(fn, repeats: int) -> float:
    return best_of(fn, repeats)[0]


def main() -> None:
    args = script_parser(__doc__, rows=20_000, dim=16, k=5, repeats=2).parse_args()
    spark = local_session("local[2]", 4, "2g")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=args.rows)
    centers = rng.normal(scale=3.0, size=(3, args.dim))
    x = centers[labels] + rng.normal(size=(args.rows, args.dim))
    pdf = pd.DataFrame({"id": np.arange(args.rows), "features": list(x), "label": labels * 1.0})
    df = spark.createDataFrame(pdf).repartition(2).cache()
    df.count()
    k = args.k

    def plain():
        noop(NearestNeighbors(k=k, algorithm="brute").fit(df).kneighbors(df))

    fitted = NearestNeighbors(k=k, algorithm="brute").fit(df)
    detector = KNNOutlierDetector(k=k, algorithm="brute", idCol="id")
    model = detector.fit(df)

    results = {
        "plain kneighbors (fit + search)": _best(plain, args.repeats),
        "plain kneighbors (search only)": _best(lambda: noop(fitted.kneighbors(df)), args.repeats),
        "KNNOutlierDetector.fit": _best(lambda: detector.fit(df), args.repeats),
        "KNNOutlierModel.transform (idCol)": _best(lambda: noop(model.transform(df)), args.repeats),
        "EditedNearestNeighbors.transform": _best(
            lambda: noop(EditedNearestNeighbors(k=k).transform(df)), args.repeats
        ),
    }
    base = results["plain kneighbors (fit + search)"]
    print(f"{args.rows} rows x {args.dim} dims, k={k}, local[2], best of {args.repeats}")
    print("| path | seconds | / plain |")
    print("| --- | ---: | ---: |")
    for name, seconds in results.items():
        print(f"| {name} | {seconds:.2f} | {seconds / base:.2f} |")
    spark.stop()


if __name__ == "__main__":
    main()
