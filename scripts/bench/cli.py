"""Command-line flags: the end-to-end benchmark's and its two profiles (``--quick`` and the
full run), and the parser every standalone ``scripts/bench_*.py`` starts from."""

from __future__ import annotations

import argparse
from pathlib import Path

QUICK = {
    "sizes": [5_000, 20_000],
    "n_queries": 5_000,
    "repeats": 3,
    "ef": "10,16,24,32,64,128",
    "lsh": "4:1,4:3,8:3",
}
#: Real-dimension data sets (``--data``): their width and the sizes each profile runs.
DATA_SETS = {
    "clustered": {"n_features": None, "quick": None, "full": None},
    "mnist": {"n_features": 784, "quick": ([20_000], 2_000), "full": ([60_000], 10_000)},
    "embedding": {"n_features": 384, "quick": ([20_000], 2_000), "full": ([100_000], 10_000)},
}
FULL = {
    "sizes": [50_000, 200_000],
    "n_queries": 10_000,
    "repeats": 3,
    "ef": "10,16,24,32,48,64,96,128",
    "lsh": "2:3,4:1,4:3,4:6,8:3",
}


def _parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench", description=description)
    add = parser.add_argument
    add("--quick", action="store_true", help="5k/20k train x 5k queries")
    add(
        "--data",
        choices=sorted(DATA_SETS),
        default="clustered",
        help="clustered (--n-features wide), mnist (784-d MNIST-like images, default 60k x 10k; "
        "quick 20k x 2k) or embedding (unit 384-d Gaussian mixture, 100k x 10k; quick 20k x 2k)",
    )
    add("--first-ef", type=int, default=64, help="ef of the first HNSW search of a model")
    add("--sizes", help="training sizes, comma-separated (default 50000,200000)")
    add("--n-queries", type=int, help="queries (default 10000; quick 5000)")
    add("--n-features", type=int, default=64)
    add("--n-clusters", type=int, default=100)
    add("--n-classes", type=int, default=10)
    add("--k", type=int, default=10, help="neighbors, >= 1")
    add("--cores", type=int, default=2, help="Spark local[C] and threads, >= 1")
    add("--batch-size", type=int, default=10_000, help="Arrow maxRecordsPerBatch")
    add("--repeats", type=int, help="timed rounds of every search (default 3)")
    add("--build-repeats", type=int, default=2, help="timed rounds of builds")
    add("--ef", help=f"ef values (default {FULL['ef']}; quick {QUICK['ef']})")
    add("--M", type=int, default=16)
    add("--ef-construction", type=int, default=200)
    add(
        "--lsh",
        help=f"bucketLength:numHashTables list (default {FULL['lsh']}; quick {QUICK['lsh']})",
    )
    add("--lsh-queries", type=int, default=500, help="queries LSH searches")
    add(
        "--many-queries",
        type=int,
        help="queries of the one-big-job HNSW comparison (default 10 x --n-queries; 0: skip)",
    )
    add(
        "--lsh-n-train",
        type=int,
        help="size LSH runs at (default: smallest size >= 20000, else the largest)",
    )
    add("--no-lsh", action="store_true")
    add("--no-digits", action="store_true")
    add("--profile", action="store_true", help="Spark's UDF profiler over one search job per kind")
    add("--driver-memory", default="6g")
    add("--seed", type=int, default=0)
    add("--out", type=Path, default=Path("bench-results/bench.json"))
    add("--plot", type=Path, default=Path("bench-results/recall_vs_qps.png"))
    return parser


def parse_args(argv: list[str] | None = None, description: str = "") -> argparse.Namespace:
    parser = _parser(description)
    args = parser.parse_args(argv)
    profile = dict(QUICK if args.quick else FULL)
    data_set = DATA_SETS[args.data]
    if data_set["n_features"]:
        args.n_features = data_set["n_features"]
        profile["sizes"], profile["n_queries"] = data_set["quick" if args.quick else "full"]
    args.sizes = sorted(int(s) for s in args.sizes.split(",")) if args.sizes else profile["sizes"]
    args.n_queries = args.n_queries or profile["n_queries"]
    args.repeats = args.repeats or profile["repeats"]
    if args.many_queries is None:
        args.many_queries = 10 * args.n_queries
    args.ef = sorted(int(e) for e in (args.ef or profile["ef"]).split(","))
    args.lsh = [
        (float(b), int(t))
        for b, t in (x.split(":") for x in (args.lsh or profile["lsh"]).split(","))
    ]
    require_positive(
        parser, args, ("k", "cores", "batch_size", "repeats", "build_repeats", "n_queries")
    )
    if args.lsh_n_train is None:
        big = [s for s in args.sizes if s >= 20_000]
        args.lsh_n_train = min(big) if big else max(args.sizes)
    if args.lsh_n_train not in args.sizes:
        parser.error(f"--lsh-n-train must be one of --sizes {args.sizes}; got {args.lsh_n_train}")
    return args


# ----------------------------------------------------------------- standalone scripts


def script_parser(doc: str, **int_flags: int) -> argparse.ArgumentParser:
    """A standalone script's parser: the first line of its docstring, then ``int_flags``.

    >>> script_parser("Bench.", rows=20_000, n_queries=500).parse_args(["--n-queries", "9"])
    Namespace(rows=20000, n_queries=9)
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    add_int_flags(parser, **int_flags)
    return parser


def add_int_flags(parser: argparse.ArgumentParser, **defaults: int) -> None:
    """An integer flag per keyword, with its default: ``n_queries=500`` is ``--n-queries``."""
    for name, default in defaults.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=default)


def require_positive(
    parser: argparse.ArgumentParser, args: argparse.Namespace, names: tuple[str, ...]
) -> None:
    """Exit through ``parser.error`` when one of the flags ``names`` is below 1."""
    for name in names:
        if getattr(args, name) < 1:
            parser.error(f"Expected --{name.replace('_', '-')} >= 1. Got {getattr(args, name)}")
