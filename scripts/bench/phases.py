"""The phases of a run after the per-size comparisons: growth, many queries, digits, and
where the time goes."""

from __future__ import annotations

from dataclasses import dataclass, field

from pyspark.sql import DataFrame

from .baselines import bench_lsh
from .compare import EXACT, FLOOR, bench_exact, bench_hnsw
from .context import Setup
from .data import Data, digits_data
from .sparkjobs import import_search_code, noop, release_model, spark_floor, udf_profile
from .targets import TARGET_RECALL, best_at_recall, exact_checks, hook_saw_every_query
from .timing import rounds, summary


@dataclass
class Run:
    """What the phases of one benchmark run share and accumulate."""

    setup: Setup
    data: Data  # all training rows, every query drawn
    queries: Data  # all training rows, the first --n-queries queries
    queries_df: DataFrame
    results: dict = field(default_factory=lambda: {"sizes": {}, "profiles": {}})
    checks: dict = field(default_factory=dict)
    expected_memory: dict = field(default_factory=dict)
    live: dict = field(default_factory=dict)


def public(result: dict) -> dict:
    """A result without its live objects (keys starting with '_')."""
    return {k: v for k, v in result.items() if not k.startswith("_")}


def worker_baseline(run: Run) -> None:
    """Start the Python workers and load knnspark in them: their RSS before any index."""
    df = run.queries_df
    with run.setup.memory.phase_of("baseline: identity mapInArrow"):
        noop(df.mapInArrow(import_search_code, df.schema))


def bench_size(run: Run, n: int) -> None:
    """Exact and HNSW comparisons at one training size."""
    args = run.setup.args
    print(f"== {n} training rows x {args.n_queries} queries", flush=True)
    sized = run.queries.with_train_prefix(n)
    train_df = run.setup.frames.rows(f"train-{n}", sized.train, sized.train_labels, "id")
    exact = bench_exact(run.setup, str(n), sized, train_df, run.queries_df)
    qps = [exact["methods"][m]["queries_per_s"] for m in (EXACT, "faiss IndexFlatL2")]
    qps.append(exact["methods"]["sklearn brute"]["queries_per_s"])
    print("  exact: knnspark {:,.0f} q/s, faiss {:,.0f}, sklearn {:,.0f}".format(*qps), flush=True)
    refs = {"ref_ids": exact["_ref_ids"], "knn_ref_ids": exact["_knn_ref_ids"]}
    hnsw = bench_hnsw(run.setup, str(n), sized, train_df, run.queries_df, refs)
    run.live[n] = {"exact": exact, "hnsw": hnsw, "train_df": train_df}
    run.results["sizes"][n] = {"exact": public(exact), "hnsw": public(hnsw)}
    batch_bytes = 2 * min(args.batch_size, args.n_queries) * args.n_features * 4
    for kind, res in (("exact", exact), ("hnsw", hnsw)):
        run.expected_memory[f"{n}: {kind}"] = {
            "index_bytes": res["index_bytes"],
            "batch_bytes": batch_bytes,
        }
    run.checks.update(exact_checks(str(n), exact))
    run.checks[f"{n}: hnsw timing hook saw every query once"] = all(
        hook_saw_every_query(p["knnspark"], args.n_queries) for p in hnsw["sweep"]
    )


def release_size(run: Run, n: int) -> None:
    for kind in ("exact", "hnsw"):
        release_model(run.live[n][kind]["_model"])


def best_ef(run: Run) -> int:
    """The fastest ef of the largest size's sweep reaching TARGET_RECALL, else the largest."""
    sweep = run.live[max(run.live)]["hnsw"]["sweep"]
    point = best_at_recall(sweep, "knnspark", TARGET_RECALL)
    return point["ef"] if point else max(p["ef"] for p in sweep)


def _sweep_at(hnsw: dict, ef: int) -> dict:
    return next(p for p in hnsw["sweep"] if p["ef"] == ef)


# ---------------------------------------------------------------- growth


def query_growth(run: Run, ef: int, q2_df: DataFrame, q2) -> dict:
    """Time of 1x and 2x queries for knnspark exact and HNSW, faiss and hnswlib."""
    args = run.setup.args
    k, q1, q1_df = args.k, run.queries.queries, run.queries_df
    top = run.live[max(run.live)]
    exact_model, hnsw_model = top["exact"]["_model"], top["hnsw"]["_model"]
    raw, flat = top["hnsw"]["_raw"], top["exact"]["_flat"]
    hnsw_model.setEf(ef)
    raw.set_ef(ef)
    noop(hnsw_model.transform(q2_df))  # the first job with new data pays extra; not timed
    calls = {
        "knnspark exact": lambda q, df: noop(exact_model.transform(df)),
        "knnspark hnsw": lambda q, df: noop(hnsw_model.transform(df)),
        "faiss": lambda q, df: flat.search(q, k),
        "hnswlib": lambda q, df: raw.knn_query(q, k=k, num_threads=args.cores),
        "Spark floor": lambda q, df: noop(spark_floor(df, args.n_classes)),
    }
    fns = {}
    for method, call in calls.items():
        fns[f"{method} 1x"] = lambda call=call: call(q1, q1_df)
        fns[f"{method} 2x"] = lambda call=call: call(q2, q2_df)
    seconds = rounds(fns, args.repeats, run.setup.hook)
    best = {name: min(t.wall) for name, t in seconds.items()}
    cpu = {name: min(t.cpu) for name, t in seconds.items()}
    out = {"ef": ef, "n_queries": [len(q1), len(q2)], "seconds_best": best, "cpu_s_best": cpu}
    for method in calls:
        one, two = best[f"{method} 1x"], best[f"{method} 2x"]
        out[f"{method}: time ratio 2x/1x"] = two / one
        out[f"{method}: CPU ratio 2x/1x"] = cpu[f"{method} 2x"] / cpu[f"{method} 1x"]
        # Per-query cost once the fixed cost of a job is paid.
        out[f"{method}: marginal queries/s"] = (len(q2) - len(q1)) / max(two - one, 1e-9)
    return out


def train_growth(run: Run, ef: int) -> dict:
    """Smallest vs largest training size: end-to-end times, and the tasks' work (hook)."""
    small, largest = min(run.live), max(run.live)
    train = {"sizes": [small, largest], "factor": largest / small, "ef": ef}
    if small == largest:
        return train

    def method_of(n: int, kind: str, method: str) -> dict:
        res = run.live[n][kind]
        return res["methods"][method] if kind == "exact" else _sweep_at(res, ef)[method]

    for label, kind, method in (
        ("knnspark exact", "exact", EXACT),
        ("faiss", "exact", "faiss IndexFlatL2"),
        ("knnspark hnsw", "hnsw", "knnspark"),
        ("hnswlib", "hnsw", "hnswlib"),
    ):
        seconds = [method_of(n, kind, method)["seconds_best"] for n in (largest, small)]
        train[label] = seconds[0] / seconds[1]
    # The tasks' own work (timing hook), free of the fixed cost of a job.
    for kind, method in (("exact", EXACT), ("hnsw", "knnspark")):
        busy = [method_of(n, kind, method)["tasks"]["busy_s"] for n in (largest, small)]
        train[f"knnspark {kind} task work"] = busy[0] / busy[1]
    return train


def bench_growth(run: Run, ef: int) -> dict:
    """2x queries at the largest size; smallest vs largest training size at one ef."""
    largest = max(run.live)
    print("== growth", flush=True)
    n2 = 2 * run.queries.queries.shape[0]
    q2 = run.data.queries[:n2]
    q2_df = run.setup.frames.rows("queries-2x", q2, run.data.query_labels[:n2], "qid")
    with run.setup.memory.phase_of(f"{largest}: growth"):
        queries = query_growth(run, ef, q2_df, q2)
    run.setup.frames.release(q2_df)
    return {"queries_at": largest, "queries": queries, "train": train_growth(run, ef)}


# ---------------------------------------------------------------- other phases


def bench_many_queries(run: Run) -> dict:
    """HNSW with many queries in one job (largest size), each library at its own fastest ef
    reaching TARGET_RECALL in the sweep: the fixed cost of a Spark job, amortized."""
    args, frames = run.setup.args, run.setup.frames
    largest = max(run.live)
    hnsw = run.live[largest]["hnsw"]
    model, raw = hnsw["_model"], hnsw["_raw"]
    ours = best_at_recall(hnsw["sweep"], "knnspark", TARGET_RECALL)
    theirs = best_at_recall(hnsw["sweep"], "hnswlib", TARGET_RECALL)
    if not ours or not theirs:
        return {}
    m = args.many_queries
    print(f"== HNSW, {m} queries in one job", flush=True)
    queries = run.data.queries[:m]
    df = frames.rows(f"queries-{m}", queries, run.data.query_labels[:m], "qid")
    model.setEf(ours["ef"])
    raw.set_ef(theirs["ef"])
    noop(model.transform(df))  # the first job with new data pays extra; not timed
    with run.setup.memory.phase_of(f"{largest}: HNSW, {m} queries"):
        seconds = rounds(
            {
                "knnspark hnsw": lambda: noop(model.transform(df)),
                "hnswlib": lambda: raw.knn_query(queries, k=args.k, num_threads=args.cores),
                "Spark floor": lambda: noop(spark_floor(df, args.n_classes)),
            },
            max(2, args.repeats - 1),
            run.setup.hook,
        )
    frames.release(df)
    return {
        "n_train": largest,
        "n_queries": m,
        "knnspark_ef": ours["ef"],
        "knnspark_recall": ours["recall"],
        "hnswlib_ef": theirs["ef"],
        "hnswlib_recall": theirs["recall"],
        "methods": {name: summary(t, m) for name, t in seconds.items()},
    }


def run_lsh(run: Run) -> dict:
    n = run.setup.args.lsh_n_train
    print(f"== BRP-LSH at {n} rows", flush=True)
    at = run.live[n]
    ref = at["exact"]
    data = run.queries.with_train_prefix(n)
    return bench_lsh(run.setup, data, at["train_df"], ref["_ref_ids"], ref["_ref_dist"])


def bench_digits(run: Run) -> None:
    print("== digits", flush=True)
    frames = run.setup.frames
    digits = digits_data()
    d_train = frames.rows("digits-train", digits.train, digits.train_labels, "id")
    d_query = frames.rows("digits-test", digits.queries, digits.query_labels, "qid")
    res = bench_exact(run.setup, "digits", digits, d_train, d_query)
    release_model(res["_model"])
    run.results["digits"] = public(res)
    run.expected_memory["digits: exact"] = {
        "index_bytes": res["index_bytes"],
        "batch_bytes": 2 * digits.queries.shape[0] * digits.queries.shape[1] * 4,
    }
    run.checks.update(exact_checks("digits", res))


# ---------------------------------------------------------------- where the time goes


def _first_label(first_ef: int, ef: int) -> str:
    return "first job" if first_ef == ef else f"first job at ef={first_ef}"


def breakdown(run: Run, ef: int) -> dict:
    """Where the largest size's search jobs spent their time, per kind.

    From the jobs already timed: the first job after fit, and the fastest round (the one the
    tables report), each with its tasks' timing lines; beside them the Spark floor of the
    same rounds and ``transform``'s plan construction on the driver.
    """
    top = run.live[max(run.live)]
    exact, hnsw = top["exact"], top["hnsw"]
    floor = exact["methods"][FLOOR]["seconds_best"]
    point = _sweep_at(hnsw, ef)["knnspark"]
    entries = {
        "exact": (exact, exact["methods"][EXACT], "first job"),
        f"hnsw ef={ef}": (hnsw, point, _first_label(hnsw["first_query_ef"], ef)),
    }
    out = {}
    for kind, (res, best, first_label) in entries.items():
        out[kind] = {
            "jobs": {
                first_label: res["first_query_job"],
                "fastest round": {"job_s": best["seconds_best"], "tasks": best.get("tasks")},
            },
            "spark_floor_s": floor,
            "transform_plan_s": res["transform_plan_s"],
        }
    return out


def profiles(run: Run, ef: int) -> dict[str, str]:
    """Spark's Python UDF profiler over one search job of each kind (largest size)."""
    top = run.live[max(run.live)]
    top["hnsw"]["_model"].setEf(ef)
    return {
        kind: udf_profile(
            run.setup.spark,
            lambda kind=kind: noop(top[kind]["_model"].transform(run.queries_df)),
            25,
        )
        for kind in ("exact", "hnsw")
    }
