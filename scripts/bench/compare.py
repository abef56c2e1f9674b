"""knnspark against the single-machine libraries at one training size: exact, then HNSW.

knnspark is timed end to end (a cached query DataFrame in, predictions out through Spark's
``noop`` sink); the timing lines its tasks write (:mod:`.hook`) say where each job's time
went.
"""

from __future__ import annotations

import pickle
import time
import uuid

import numpy as np
from pyspark.sql import DataFrame

from knnspark import KNNClassifier
from knnspark.kernels.shard import SearchOptions

from .baselines import faiss_flat, hnswlib_index, sklearn_brute
from .context import Setup
from .data import Data
from .hook import TimingHook, build_records, search_records, tasks_summary
from .sparkjobs import knnspark_numbering, noop, spark_floor, spark_neighbors, spark_predictions
from .targets import hook_saw_every_query, recall_at_k
from .timing import build_summary, hooked, rounds, summary, timed

EXACT = "knnspark exact (Spark)"
FLOOR = "Spark floor (identity mapInArrow)"


def fitted(clf: KNNClassifier, train_df: DataFrame, hook: TimingHook) -> tuple[object, dict]:
    """The model, and its fit's wall time with its build tasks' timing lines."""
    holder: dict = {}
    wall, _, records = hooked(lambda: holder.setdefault("model", clf.fit(train_df)), hook)
    return holder["model"], fit_breakdown(wall, records)


def fit_breakdown(fit_s: float, records: list[dict]) -> dict:
    """One fit's wall time, and what its build tasks (timing hook) took of it."""
    builds = build_records(records)
    if not builds:
        return {"fit_s": fit_s}
    tasks = tasks_summary(builds)
    return {
        "fit_s": fit_s,
        "build_tasks": tasks,
        "rows_per_task": [r["rows"] for r in builds],
        # Tasks in distinct Python workers could run at the same time; in one, they did not.
        "builds_in_distinct_workers": len(tasks["worker_pids"]) == tasks["tasks"],
        "outside_build_tasks_s": fit_s - tasks["slowest_task"]["wall_s"],
    }


def job(model: object, queries: DataFrame, hook: TimingHook) -> dict:
    """One ``transform`` job: its wall time and its tasks' timing lines."""
    wall, _, records = hooked(lambda: noop(model.transform(queries)), hook)
    records = search_records(records)
    return {"job_s": wall, "tasks": tasks_summary(records) if records else None}


def transform_plan_s(model: object, queries: DataFrame, repeats: int) -> float:
    """Best time of ``model.transform`` building its plan on the driver (no job runs)."""
    return min(timed(lambda: model.transform(queries)) for _ in range(repeats))


def first_search_costs(model: object) -> dict:
    """What a Python worker pays once per model, measured in this process.

    The broadcast's pickled size and unpickling time, and the first search (one query) of
    each shard reloaded through the shard interface under a fresh model id, so that a kind's
    lazy work (an HNSW graph deserialized, exact norms prepared) really happens.
    """
    index = model.index
    shards = index.shards[index.kind]
    blob = pickle.dumps(shards, protocol=pickle.HIGHEST_PROTOCOL)
    start = time.perf_counter()
    pickle.loads(blob)
    unpickle_s = time.perf_counter() - start
    model_id = f"bench-{uuid.uuid4().hex}"
    fresh = [
        type(s).load(s.parts(), index.kind_params, (model_id, i)) for i, s in enumerate(shards)
    ]
    query = np.zeros((1, index.n_features), dtype=np.float32)
    start = time.perf_counter()
    for shard in fresh:
        shard.search(query, 1, SearchOptions(metric=index.kind_params.get("metric", "euclidean")))
    first_s = time.perf_counter() - start
    return {"broadcast_bytes": len(blob), "unpickle_s": unpickle_s, "first_search_s": first_s}


def _references(data: Data, train_df: DataFrame, k: int) -> dict:
    build_faiss, flat = faiss_flat(data.train)
    ref_dist, ref_ids = flat.search(data.queries, k)
    build_skl, skl = sklearn_brute(data, k)
    return {
        "faiss_build_s": build_faiss,
        "flat": flat,
        "ref_dist": ref_dist,
        "ref_ids": ref_ids,
        "knn_ref_ids": knnspark_numbering(train_df)[ref_ids],
        "sklearn_build_s": build_skl,
        "sklearn": skl,
        "sklearn_pred": skl.predict(data.queries),
    }


def _exact_quality(data: Data, ref: dict, knn_pred, knn_ids, knn_dist) -> dict:
    true_dist = np.sqrt(np.maximum(ref["ref_dist"], 0.0))
    return {
        "accuracy": {
            EXACT: float(np.mean(knn_pred == data.query_labels)),
            "sklearn brute": float(np.mean(ref["sklearn_pred"] == data.query_labels)),
        },
        "recall_vs_faiss": recall_at_k(knn_ids, ref["knn_ref_ids"]),
        # Ties (digits has many equal distances) may pick other ids; distances must agree.
        "max_rel_distance_error_vs_faiss": float(
            np.max(np.abs(knn_dist - true_dist) / np.maximum(knn_dist, 1e-6))
        ),
        "prediction_agreement_vs_sklearn": float(np.mean(knn_pred == ref["sklearn_pred"])),
    }


def bench_exact(
    setup: Setup, name: str, data: Data, train_df: DataFrame, query_df: DataFrame
) -> dict:
    """knnspark exact vs faiss IndexFlatL2 vs sklearn brute, plus the Spark floor."""
    args, hook = setup.args, setup.hook
    k, nq = args.k, data.queries.shape[0]
    n_classes = int(np.unique(data.train_labels).size)
    ref = _references(data, train_df, k)
    with setup.memory.phase_of(f"{name}: exact"):
        model, fit = fitted(KNNClassifier(k=k, algorithm="brute"), train_df, hook)
        first = job(model, query_df, hook)
        knn_pred = spark_predictions(model, query_df)
        knn_ids, knn_dist = spark_neighbors(model, query_df)
        seconds = rounds(
            {
                EXACT: lambda: noop(model.transform(query_df)),
                "faiss IndexFlatL2": lambda: ref["flat"].search(data.queries, k),
                "sklearn brute": lambda: ref["sklearn"].predict(data.queries),
                FLOOR: lambda: noop(spark_floor(query_df, n_classes)),
            },
            args.repeats,
            hook,
        )
        plan_s = transform_plan_s(model, query_df, args.repeats)
    methods = {n: summary(s, nq) for n, s in seconds.items()}
    methods[EXACT].update(build_s=fit["fit_s"], first_query_job_s=first["job_s"])
    methods["faiss IndexFlatL2"]["build_s"] = ref["faiss_build_s"]
    methods["sklearn brute"]["build_s"] = ref["sklearn_build_s"]
    return {
        "n_train": int(data.train.shape[0]),
        "n_queries": nq,
        "methods": methods,
        **_exact_quality(data, ref, knn_pred, knn_ids, knn_dist),
        "hook_saw_every_query": hook_saw_every_query(methods[EXACT], nq),
        "first_query_job": first,
        "transform_plan_s": plan_s,
        "knnspark_fit": fit,
        "load": first_search_costs(model),
        "index_bytes": int(model.indexSizeBytes),
        "shard_sizes": model.shardSizes,
        "_model": model,
        **{f"_{key}": ref[key] for key in ("ref_ids", "knn_ref_ids", "ref_dist", "flat")},
    }


def _sweep_point(setup: Setup, model, raw, data: Data, query_df, ef: int, refs) -> dict:
    """knnspark and hnswlib at one ``ef``: recall (untimed jobs), then timed rounds."""
    args, nq = setup.args, data.queries.shape[0]
    model.setEf(ef)
    raw.set_ef(ef)
    raw_ids = raw.knn_query(data.queries, k=args.k, num_threads=args.cores)[0]
    spark_ids = spark_neighbors(model, query_df)[0]
    seconds = rounds(
        {
            "knnspark": lambda: noop(model.transform(query_df)),
            "hnswlib": lambda: raw.knn_query(data.queries, k=args.k, num_threads=args.cores),
        },
        args.repeats,
        setup.hook,
    )
    return {
        "ef": ef,
        "knnspark_recall": recall_at_k(spark_ids, refs["knn_ref_ids"]),
        "knnspark": summary(seconds["knnspark"], nq),
        "hnswlib_recall": recall_at_k(raw_ids.astype(np.int64), refs["ref_ids"]),
        "hnswlib": summary(seconds["hnswlib"], nq),
    }


def _print_point(name: str, p: dict) -> None:
    print(
        f"  {name} ef={p['ef']}: knnspark recall {p['knnspark_recall']:.3f} "
        f"{p['knnspark']['queries_per_s']:,.0f} q/s; hnswlib recall "
        f"{p['hnswlib_recall']:.3f} {p['hnswlib']['queries_per_s']:,.0f} q/s",
        flush=True,
    )


def _hnsw_builds(setup: Setup, data: Data, train_df: DataFrame) -> tuple[object, object, dict]:
    """knnspark's fit and hnswlib's build take turns; the fastest fit's build tasks kept."""
    args = setup.args
    clf = KNNClassifier(k=args.k, algorithm="hnsw", M=args.M, efConstruction=args.ef_construction)
    holder: dict = {}
    builds = rounds(
        {
            "knnspark fit": lambda: holder.__setitem__("model", clf.fit(train_df)),
            "hnswlib add_items": lambda: holder.__setitem__(
                "raw",
                hnswlib_index(data.train, args.M, args.ef_construction, args.seed, args.cores),
            ),
        },
        args.build_repeats,
        setup.hook,
    )
    fit = builds["knnspark fit"]
    parts = fit_breakdown(min(fit.wall), fit.best_records())
    summaries = {name: build_summary(t) for name, t in builds.items()}
    return holder["model"], holder["raw"], {"build": summaries, "knnspark_fit_parts": parts}


def bench_hnsw(
    setup: Setup, name: str, data: Data, train_df: DataFrame, query_df: DataFrame, refs: dict
) -> dict:
    """knnspark HNSW vs one raw hnswlib index with the same params and threads, ef swept.

    ``refs`` holds the exact neighbors (``ref_ids`` in row order, ``knn_ref_ids`` in
    knnspark's numbering).
    """
    args = setup.args
    with setup.memory.phase_of(f"{name}: hnsw"):
        model, raw, builds = _hnsw_builds(setup, data, train_df)
        efs = [ef for ef in args.ef if ef >= args.k] or [args.k]
        # The first search of the model (what a nightly job pays), at --first-ef when swept.
        first_ef = args.first_ef if args.first_ef in efs else efs[0]
        model.setEf(first_ef)
        first = job(model, query_df, setup.hook)
        sweep = []
        for ef in efs:
            sweep.append(_sweep_point(setup, model, raw, data, query_df, ef, refs))
            _print_point(name, sweep[-1])
        plan_s = transform_plan_s(model, query_df, args.repeats)
    return {
        "n_train": int(data.train.shape[0]),
        "n_queries": int(data.queries.shape[0]),
        "M": args.M,
        "efConstruction": args.ef_construction,
        **builds,
        "first_query_job_s": first["job_s"],
        "first_query_job": first,
        "first_query_ef": first_ef,
        "transform_plan_s": plan_s,
        "sweep": sweep,
        "load": first_search_costs(model),
        "index_bytes": int(model.indexSizeBytes),
        "shard_sizes": model.shardSizes,
        "_model": model,
        "_raw": raw,
    }
