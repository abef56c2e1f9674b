"""Search at scale: throughput and shuffle bytes against query partitions, in one run (issue 11).

On clustered data (``scripts/bench/data.py``), ``--shards`` hash shards, ``local[2]``:

* **paths**: for exact (``brute``) and HNSW models, the broadcast path and the shard-major
  path (``maxBroadcastBytes=0``) search the same queries split in 2, 8 and 32 partitions;
  throughput (best of ``--repeats`` after a warm-up) and shuffle bytes (``shuffleWriteBytes``
  of every stage the search ran, from Spark's REST API). Targets: shard-major shuffle bytes
  at 32 partitions within 1.25x of those at 2, and its throughput at 32 >= 0.7x broadcast's.
* **kmeans** (``--kmeans-shards``; skipped with ``--no-kmeans``): the shard-major path of
  ``partitioning="kmeans"`` models: recall@10 (against faiss ``IndexFlatL2``), throughput,
  shards visited and shuffle bytes against ``nprobe``, for ``brute`` and ``hnsw``, with the
  pruned exact search (``nprobe=None``) against faiss's throughput (2 threads).
* **routed** (``--sections routed``): k-means shards on the shard-major path, by ``nprobe``,
  with the shard side restricted to the routed shards (the plan) and unrestricted (the plan
  before, every persisted shard handed to a task), for all the queries and for a batch from
  one cluster: q/s, shuffle bytes, executor run and CPU time.

A section is a function ``(Bench) -> dict`` in :data:`SECTIONS` with a markdown renderer;
add one there. Writes JSON, markdown and a plot.

    .venv/bin/python scripts/bench_scale.py            # 100k x 64, 20k queries, 4 shards
    .venv/bin/python scripts/bench_scale.py --quick    # 20k x 32, 4k queries
    .venv/bin/python scripts/bench_scale.py --full     # 1M x 64, 500 queries (PROFILES)
    .venv/bin/python scripts/bench_scale.py --rows 200000 --queries 2000 --partitions 8 \
        --repeats 1 --sections routed --out bench-results/routed.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from knnspark import NearestNeighbors  # noqa: E402
from scripts.bench.baselines import faiss_flat  # noqa: E402
from scripts.bench.cli import script_parser  # noqa: E402
from scripts.bench.data import Data, Frames, clustered_data  # noqa: E402
from scripts.bench.sparkjobs import build_spark, noop, release_model  # noqa: E402
from scripts.bench.tables import mib  # noqa: E402
from scripts.bench.targets import recall_at_k  # noqa: E402

K = 10
_GROUPS = itertools.count()
#: What :meth:`Bench.stage_metrics` sums over a search's stages (run and CPU time in ms
#: and ns, as Spark reports them).
STAGE_METRICS = ("shuffleWriteBytes", "executorRunTime", "executorCpuTime")


@dataclass
class Bench:
    args: argparse.Namespace
    spark: object
    data: Data
    train: object
    queries: dict[int, object]  # query DataFrames by partition count, cached
    results: dict = field(default_factory=dict)

    def stage_metrics(self, stage_ids: list[int]) -> dict[str, int]:
        """:data:`STAGE_METRICS` summed over the stages' attempts (Spark's REST API)."""
        sc = self.spark.sparkContext
        base = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/stages"
        total = dict.fromkeys(STAGE_METRICS, 0)
        for stage in stage_ids:
            with urllib.request.urlopen(f"{base}/{stage}") as reply:
                for attempt in json.load(reply):
                    for name in STAGE_METRICS:
                        total[name] += int(attempt.get(name, 0))
        return total

    def stage_shuffle_bytes(self, stage_ids: list[int]) -> int:
        """shuffleWriteBytes summed over the stages' attempts (Spark's REST API)."""
        return self.stage_metrics(stage_ids)["shuffleWriteBytes"]

    def run(self, action: Callable[[], object]) -> tuple[float, int, object]:
        """Wall seconds, shuffle bytes written and the result of one ``action``."""
        wall, metrics, out = self.run_metrics(action)
        return wall, metrics["shuffleWriteBytes"], out

    def run_metrics(self, action: Callable[[], object]) -> tuple[float, dict, object]:
        """Wall seconds, :data:`STAGE_METRICS` and the result of one ``action``."""
        sc = self.spark.sparkContext
        group = f"bench-scale-{next(_GROUPS)}"
        sc.setJobGroup(group, "bench_scale")
        start = time.perf_counter()
        try:
            out = action()
        finally:
            wall = time.perf_counter() - start
            sc.setLocalProperty("spark.jobGroup.id", None)
        tracker = sc.statusTracker()
        stages = [
            s for j in tracker.getJobIdsForGroup(group) for s in tracker.getJobInfo(j).stageIds
        ]
        time.sleep(0.5)  # the UI's listener catches up with the finished stages
        return wall, self.stage_metrics(sorted(set(stages))), out

    def best(self, action: Callable[[], object]) -> dict:
        """Best wall time of ``--repeats`` runs after a warm-up, and the shuffle bytes."""
        self.run(action)
        runs = [self.run(action) for _ in range(self.args.repeats)]
        wall = min(r[0] for r in runs)
        return {"wall_s": wall, "shuffle_bytes": runs[0][1], "out": runs[0][2]}


# ----------------------------------------------------------------------------- sections


def release(model: object) -> None:
    """Free a model's broadcast or persisted shards before the next one is fitted."""
    release_model(model)
    for persisted in (model.index.shard_rows, model.index.shard_blobs):
        if persisted is not None:
            persisted.unpersist()


def fit(bench: Bench, est: object, what: str) -> object:
    """``est`` fitted to the training rows; its seconds and the load go to ``results["fits"]``."""
    start = time.perf_counter()
    model = est.fit(bench.train)
    row = {"what": what, "fit_s": time.perf_counter() - start, "loadavg": os.getloadavg()[0]}
    print(row, flush=True)
    bench.results.setdefault("fits", []).append(row)
    return model


def section_paths(bench: Bench) -> dict:
    args, n_queries = bench.args, bench.data.queries.shape[0]
    rows = []
    for kind, path in itertools.product(args.kinds, ("broadcast", "shard-major")):
        est = NearestNeighbors(k=K, numShards=args.shards, algorithm=kind, idCol="id")
        if path == "shard-major":
            est.setMaxBroadcastBytes(0)
        elif args.broadcast_bytes is not None:
            est.setMaxBroadcastBytes(args.broadcast_bytes)
        model = fit(bench, est, f"{kind} {path}")
        assert model.storage == ("broadcast" if path == "broadcast" else "distributed")
        for parts, queries in bench.queries.items():
            m = bench.best(lambda model=model, queries=queries: noop(model.kneighbors(queries)))
            row = {"kind": kind, "path": path, "partitions": parts, "wall_s": m["wall_s"]}
            row |= {"queries_per_s": n_queries / m["wall_s"], "shuffle_bytes": m["shuffle_bytes"]}
            row |= {"loadavg": os.getloadavg()[0]}
            print(row, flush=True)
            rows.append(row)
        release(model)
    lo, hi = min(bench.queries), max(bench.queries)
    at = {(r["kind"], r["path"], r["partitions"]): r for r in rows}
    targets = []
    for kind in args.kinds:
        sm_lo, sm_hi = at[(kind, "shard-major", lo)], at[(kind, "shard-major", hi)]
        shuffle = sm_hi["shuffle_bytes"] / max(1, sm_lo["shuffle_bytes"])
        speed = sm_hi["queries_per_s"] / at[(kind, "broadcast", hi)]["queries_per_s"]
        targets += [
            {"what": f"{kind}: shard-major shuffle bytes, {hi} / {lo} partitions", "value": shuffle}
            | {"target": "<= 1.25", "met": shuffle <= 1.25},
            {"what": f"{kind}: shard-major / broadcast q/s at {hi} partitions", "value": speed}
            | {"target": ">= 0.7", "met": speed >= 0.7},
        ]
    return {"rows": rows, "targets": targets}


def markdown_paths(result: dict) -> list[str]:
    lines = ["| index | path | query partitions | q/s | MiB shuffled |", "|---|---|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(
            f"| {r['kind']} | {r['path']} | {r['partitions']} | {r['queries_per_s']:,.0f} "
            f"| {mib(r['shuffle_bytes'])} |"
        )
    return lines + ["", *_targets_table(result["targets"])]


def section_kmeans(bench: Bench) -> dict:
    args, data = bench.args, bench.data
    queries = bench.queries[max(bench.queries)]
    build_s, flat = faiss_flat(data.train)
    faiss.omp_set_num_threads(args.cores)
    start = time.perf_counter()
    ref_dist, ref_ids = flat.search(data.queries, K)
    faiss_qps = data.queries.shape[0] / (time.perf_counter() - start)
    rows = []
    for kind in args.kmeans_kinds:
        est = NearestNeighbors(
            k=K,
            numShards=args.kmeans_shards,
            algorithm=kind,
            idCol="id",
            partitioning="kmeans",
            maxBroadcastBytes=0,
            shardsVisitedCol="visited",
        )
        model = fit(bench, est, f"{kind} kmeans")
        for nprobe in [*args.nprobe, None]:
            model.setNprobe(nprobe)

            def search(model=model):
                table = model.kneighbors(queries).select("id", "neighbor_ids", "visited")
                return table.toArrow().sort_by("id")

            m = bench.best(search)
            table = m["out"]
            ids = table.column("neighbor_ids").combine_chunks().flatten().to_numpy()
            found = ids.reshape(-1, K)
            row = {"kind": kind, "nprobe": nprobe, "recall": recall_at_k(found, ref_ids)}
            row |= {"queries_per_s": data.queries.shape[0] / m["wall_s"]}
            row |= {"visited": float(np.mean(table.column("visited").to_numpy()))}
            row |= {"shuffle_bytes": m["shuffle_bytes"], "loadavg": os.getloadavg()[0]}
            print(row, flush=True)
            rows.append(row)
        release(model)
    return {"rows": rows, "faiss_flat_qps": faiss_qps, "faiss_build_s": build_s}


def markdown_kmeans(result: dict) -> list[str]:
    lines = [
        f"faiss `IndexFlatL2` ({result['faiss_flat_qps']:,.0f} q/s) is the recall reference.",
        "",
        "| index | nprobe | recall@10 | q/s | / faiss | shards visited | MiB shuffled |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        nprobe = "pruned exact" if r["nprobe"] is None else r["nprobe"]
        lines.append(
            f"| {r['kind']} | {nprobe} | {r['recall']:.3f} | {r['queries_per_s']:,.0f} "
            f"| {r['queries_per_s'] / result['faiss_flat_qps']:.2f} | {r['visited']:.2f} "
            f"| {mib(r['shuffle_bytes'])} |"
        )
    return lines


def section_routed(bench: Bench) -> dict:
    """Only the routed shards reach a search task: k-means shards, shard-major, by nprobe.

    Each search runs twice in turn, with the shard side restricted to the routed shards (the
    plan) and unrestricted ("every shard": ``Routing.visits_every_shard`` patched to say so,
    the plan before the restriction), for two query sets: all the queries, spread over every
    cluster, and ``--local-queries`` of them from one cluster (the queries nearest the
    first), as a small batch against a large index is.
    """
    from knnspark import shard_major

    args, data = bench.args, bench.data
    queries = bench.queries[max(bench.queries)]
    first = data.queries[0]
    near = np.argsort(((data.queries - first) ** 2).sum(axis=1))[: args.local_queries]
    local = queries.filter(queries["id"].isin([int(i) for i in near])).cache()
    local.count()
    sets = {"all": (queries, data.queries.shape[0]), "one cluster": (local, near.size)}
    sets = {name: sets[name] for name in args.routed_sets}
    est = NearestNeighbors(
        k=K,
        numShards=args.kmeans_shards,
        algorithm="brute",
        idCol="id",
        partitioning="kmeans",
        maxBroadcastBytes=0,
        shardsVisitedCol="visited",
    )
    model = fit(bench, est, "brute kmeans (routed)")
    restricted = shard_major.Routing.visits_every_shard
    rows = []
    for (name, (frame, n)), nprobe in itertools.product(sets.items(), [*args.nprobe, None]):
        model.setNprobe(nprobe)
        for plan in ("routed shards", "every shard"):
            if plan == "every shard":
                shard_major.Routing.visits_every_shard = lambda self, settings: True
            try:
                bench.run_metrics(lambda m=model, f=frame: noop(m.kneighbors(f)))  # warm-up
                runs = [
                    bench.run_metrics(lambda m=model, f=frame: noop(m.kneighbors(f)))
                    for _ in range(args.repeats)
                ]
            finally:
                shard_major.Routing.visits_every_shard = restricted
            wall, metrics, _ = min(runs, key=lambda r: r[0])
            row = {"queries": name, "n": n, "nprobe": nprobe, "plan": plan, "wall_s": wall}
            row |= {"queries_per_s": n / wall, "shuffle_bytes": metrics["shuffleWriteBytes"]}
            row |= {"executor_s": metrics["executorRunTime"] / 1e3}
            row |= {"executor_cpu_s": metrics["executorCpuTime"] / 1e9}
            row |= {"loadavg": os.getloadavg()[0]}
            print(row, flush=True)
            rows.append(row)
    local.unpersist()
    release(model)
    return {"rows": rows}


def markdown_routed(result: dict) -> list[str]:
    lines = [
        "| queries | nprobe | plan | q/s | MiB shuffled | executor s | executor CPU s | load |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        nprobe = "pruned exact" if r["nprobe"] is None else r["nprobe"]
        lines.append(
            f"| {r['queries']} ({r['n']}) | {nprobe} | {r['plan']} | {r['queries_per_s']:,.0f} "
            f"| {mib(r['shuffle_bytes'])} | {r['executor_s']:.1f} | {r['executor_cpu_s']:.1f} "
            f"| {r['loadavg']:.1f} |"
        )
    return lines


#: Each section: (title, run, markdown).
SECTIONS: dict[str, tuple[str, Callable, Callable]] = {
    "paths": ("Throughput and shuffle against query partitions", section_paths, markdown_paths),
    "kmeans": ("k-means shards on the shard-major path", section_kmeans, markdown_kmeans),
    "routed": (
        "Only routed shards are read (k-means, shard-major)",
        section_routed,
        markdown_routed,
    ),
}


def _targets_table(targets: list[dict]) -> list[str]:
    lines = ["| target | value | wanted | met |", "|---|---:|---:|---|"]
    for t in targets:
        lines.append(f"| {t['what']} | {t['value']:.2f} | {t['target']} | {t['met']} |")
    return lines


def plot(result: dict, path: Path) -> None:
    fig, (speed, shuffled) = plt.subplots(1, 2, figsize=(10, 4))
    rows = result["rows"]
    for kind, way in sorted({(r["kind"], r["path"]) for r in rows}):
        line = [r for r in rows if (r["kind"], r["path"]) == (kind, way)]
        parts = [r["partitions"] for r in line]
        style = "o-" if way == "broadcast" else "s--"
        speed.plot(parts, [r["queries_per_s"] for r in line], style, label=f"{kind} {way}")
        shuffled.plot(
            parts, [r["shuffle_bytes"] / 2**20 for r in line], style, label=f"{kind} {way}"
        )
    for ax, label in ((speed, "queries/s"), (shuffled, "MiB shuffled per search")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("query partitions")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


#: What each profile runs; a flag given on the command line overrides its profile's value.
PROFILES = {
    "quick": dict(rows=20_000, queries=4_000, dim=32),
    "default": dict(rows=100_000, queries=20_000, dim=64),
    # 1M x 64 (past the default 256 MiB maxBroadcastBytes): 500 queries, 2 and 32 partitions,
    # one timed round after the warm-up; the broadcast path is forced by a 2 GiB budget.
    # Exact search only on both paths; HNSW (a 1M-row build takes 10-20 minutes on 2 busy
    # cores) only with k-means shards.
    "full": dict(
        rows=1_000_000,
        queries=500,
        dim=64,
        partitions=[2, 32],
        repeats=1,
        kinds=["brute"],
        kmeans_kinds=["brute", "hnsw"],
        broadcast_bytes=2 << 30,
        driver_memory="8g",
        out=Path("bench-results/scale-1m.json"),
    ),
}
_DEFAULTS = dict(
    partitions=[2, 8, 32],
    kinds=["brute", "hnsw"],
    repeats=2,
    broadcast_bytes=None,
    driver_memory="4g",
    out=Path("bench-results/scale.json"),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = script_parser(__doc__)
    ints = lambda s: [int(v) for v in s.split(",")]  # noqa: E731
    words = lambda s: s.split(",")  # noqa: E731
    profile = parser.add_mutually_exclusive_group()
    profile.add_argument("--quick", action="store_true", help="20k x 32, 4k queries")
    profile.add_argument(
        "--full",
        action="store_true",
        help="1M x 64, 500 queries, partitions 2,32, 1 repeat, exact on both paths (broadcast "
        "at 2 GiB), exact and HNSW with k-means shards",
    )
    parser.add_argument("--rows", type=int, help="training rows (default 100000)")
    parser.add_argument("--queries", type=int, help="queries (default 20000)")
    parser.add_argument("--dim", type=int, help="features (default 64)")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--partitions", type=ints, help="query partitions (default 2,8,32)")
    parser.add_argument("--kinds", type=words, help="index kinds (default brute,hnsw)")
    parser.add_argument("--kmeans-kinds", type=words, help="kmeans section (default --kinds)")
    parser.add_argument("--kmeans-shards", type=int, default=16)
    parser.add_argument("--nprobe", type=ints, default=[1, 2, 4])
    parser.add_argument("--no-kmeans", action="store_true")
    parser.add_argument(
        "--sections",
        type=words,
        help=f"sections to run (default paths,kmeans; of {','.join(SECTIONS)})",
    )
    parser.add_argument(
        "--local-queries", type=int, default=100, help="the routed section's one-cluster batch"
    )
    parser.add_argument(
        "--routed-sets",
        type=lambda s: s.split(","),
        default=["all", "one cluster"],
        help="the routed section's query sets (default 'all,one cluster')",
    )
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--repeats", type=int, help="timed rounds after a warm-up (default 2)")
    parser.add_argument(
        "--broadcast-bytes",
        type=int,
        help="maxBroadcastBytes of the broadcast path's models (default: the Param's default)",
    )
    parser.add_argument("--driver-memory", help="spark.driver.memory (default 4g)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="JSON path (default bench-results/scale.json)")
    args = parser.parse_args(argv)
    args.profile = "quick" if args.quick else "full" if args.full else "default"
    for name, value in (_DEFAULTS | PROFILES[args.profile]).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.kmeans_kinds is None:
        args.kmeans_kinds = args.kinds
    return args


def write(bench: Bench, lines: list[str], started: float) -> None:
    """JSON and markdown of the sections run so far (after each one: a long run keeps them)."""
    args = bench.args
    bench.results["meta"] = vars(args) | {
        "wall_s": time.perf_counter() - started,
        "loadavg": os.getloadavg(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(bench.results, indent=2, default=str))
    args.out.with_suffix(".md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    # A broadcast model's built shards reach the driver in one collect (toArrow): at 1M x 64
    # with HNSW graphs that is about 0.7 GB, near Spark's 1g default maxResultSize.
    spark = build_spark(
        args.cores,
        batch_size=10_000,
        driver_memory=args.driver_memory,
        ui=True,
        conf={"spark.driver.maxResultSize": "4g"},
    )
    data = clustered_data(args.rows, args.queries, args.dim, 64, 10, args.seed)
    frames = Frames(spark, partitions=args.cores)
    train = frames.rows("train", data.train, data.train_labels, "id")
    base = frames.rows("queries", data.queries, data.query_labels, "id")
    queries = {}
    for parts in args.partitions:
        queries[parts] = base.repartition(parts).cache()
        queries[parts].count()
    bench = Bench(args, spark, data, train, queries)
    names = args.sections or ["paths", "kmeans"]
    names = [n for n in names if not (n == "kmeans" and args.no_kmeans)]
    lines = [
        f"# Search at scale ({args.rows:,} x {args.dim} clustered rows, {args.queries:,} "
        f"queries, k={K}, local[{args.cores}])",
        "",
    ]
    for name in names:
        title, run, render = SECTIONS[name]
        load = os.getloadavg()
        bench.results[name] = run(bench)
        bench.results[name]["loadavg"] = [load, os.getloadavg()]
        lines += [f"## {title}", "", *render(bench.results[name]), ""]
        write(bench, lines, started)
    written = [args.out, args.out.with_suffix(".md")]
    if "paths" in bench.results:
        plot(bench.results["paths"], args.out.with_suffix(".png"))
        written.append(args.out.with_suffix(".png"))
    print("\n".join(lines))
    print("wrote " + ", ".join(str(path) for path in written))
    frames.close()
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
