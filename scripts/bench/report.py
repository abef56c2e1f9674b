"""The run's results as markdown tables, JSON and a plot; the exit status from the checks."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

from .plot import plot
from .tables import fmt, line, mib, row, table
from .targets import TARGET_RECALL


def markdown(results: dict) -> str:
    meta = results["meta"]
    lines = [
        f"knnspark {meta['knnspark_version']}, local[{meta['cores']}] vs {meta['cores']} threads, "
        f"k={meta['k']}, Arrow batch {meta['batch_size']}, {meta['n_features']}-dim "
        f"{_data_name(meta)} data; best of "
        f"{meta['repeats']} rounds; load average {meta['loadavg_start']} -> "
        f"{meta['loadavg_end']} on {meta['cpu_count']} CPUs; run took {meta['wall_s']:.0f} s.",
        "Ratios from wall time decide; 'CPU' ratios use CPU seconds of the whole process tree "
        "(robust to other load, blind to waiting).",
    ]
    lines += table(
        "### Targets",
        ["train rows", "target", "measured", "CPU-time ratio", "met"],
        "llrrl",
        [
            line([r["size"], r["target"], fmt(r["value"]), fmt(r.get("value_cpu")), fmt(r["met"])])
            for r in results["targets"]
        ],
    )
    sections = (
        exact_section, first_warm_section, hnsw_section, many_section, lsh_section, growth_section
    )  # fmt: skip
    for section in (*sections, where_time_goes, fit_section, memory_section):
        lines += section(results)
    return "\n".join(lines)


def _data_name(meta: dict) -> str:
    data = meta.get("data", "clustered")
    if data == "clustered":
        return f"clustered ({meta['n_clusters']} clusters, {meta['n_classes']} classes)"
    return {"mnist": "MNIST-like (pixels 0..255)", "embedding": "embedding-like (unit)"}[data]


def first_warm_section(results: dict) -> list[str]:
    """The first search of a freshly fitted model (a nightly job) apart from warm searches."""
    rows = []
    for n, res in results["sizes"].items():
        ex, hn = res["exact"], res["hnsw"]
        nq = ex["n_queries"]
        ours = ex["methods"]["knnspark exact (Spark)"]
        ref = ex["methods"]["faiss IndexFlatL2"]["queries_per_s"]
        first = nq / ours["first_query_job_s"]
        warm = ours["queries_per_s"]
        rows.append(line([n, "exact", *_first_warm(first, warm, ref)]))
        point = next((p for p in hn["sweep"] if p["ef"] == hn["first_query_ef"]), None)
        if point is None:
            continue
        ref = point["hnswlib"]["queries_per_s"]
        first = hn["n_queries"] / hn["first_query_job_s"]
        warm = point["knnspark"]["queries_per_s"]
        kind = (
            f"hnsw ef={point['ef']} (recall {point['knnspark_recall']:.3f}; hnswlib "
            f"{point['hnswlib_recall']:.3f})"
        )
        rows.append(line([n, kind, *_first_warm(first, warm, ref)]))
    return table(
        "### First and warm search (queries/s; ratio to faiss IndexFlatL2 / raw hnswlib)",
        [
            *("train rows", "kind", "first job q/s", "first / ref", "warm q/s (best)"),
            *("warm / ref", "ref q/s (best)"),
        ],
        "llr",
        rows,
    )


def _first_warm(first: float, warm: float, ref: float) -> list[str]:
    return [
        f"{first:,.0f}",
        f"{first / ref:.3f}",
        f"{warm:,.0f}",
        f"{warm / ref:.3f}",
        f"{ref:,.0f}",
    ]


def exact_section(results: dict) -> list[str]:
    rows = []
    data = results["meta"].get("data", "clustered")
    runs = [(f"{data} {n}", r["exact"]) for n, r in results["sizes"].items()]
    if results.get("digits"):
        runs.append(("digits", results["digits"]))
    for label, ex in runs:
        flat = ex["methods"]["faiss IndexFlatL2"]
        for name, m in ex["methods"].items():
            recall = ex["recall_vs_faiss"] if name.startswith("knnspark") else None
            recall = 1.0 if name.startswith(("faiss", "sklearn")) else recall
            rows.append(
                line(
                    [
                        f"{label} ({ex['n_train']} x {ex['n_queries']})",
                        name,
                        fmt(m.get("build_s")),
                        f"{m['seconds_best']:.3f}",
                        f"{m['queries_per_s']:,.0f}",
                        f"{m['queries_per_s'] / flat['queries_per_s']:.3f}",
                        f"{m['queries_per_cpu_s']:,.0f}",
                        f"{m['queries_per_cpu_s'] / flat['queries_per_cpu_s']:.3f}",
                        fmt(recall, ".4f"),
                        fmt(ex["accuracy"].get(name), ".4f"),
                    ]
                )
            )
    return table(
        "### Exact search (knnspark: cached DataFrame in, predictions to the noop sink)",
        [
            *("data", "method", "build (s)", "search (s)", "queries/s", "/ faiss", "q/CPU-s"),
            *("/ faiss (CPU)", "recall@10", "accuracy"),
        ],
        "llr",
        rows,
    )


def _sweep_line(n: int, nq: int, p: dict) -> str:
    ours, theirs = p["knnspark"], p["hnswlib"]
    tasks = ours.get("tasks")
    per_core = nq / tasks["busy_s"] if tasks else None
    return line(
        [
            n,
            p["ef"],
            f"{p['knnspark_recall']:.4f}",
            f"{ours['queries_per_s']:,.0f}",
            f"{ours['queries_per_cpu_s']:,.0f}",
            fmt(per_core, ",.0f"),
            f"{p['hnswlib_recall']:.4f}",
            f"{theirs['queries_per_s']:,.0f}",
            f"{theirs['queries_per_cpu_s']:,.0f}",
            f"{ours['queries_per_s'] / theirs['queries_per_s']:.3f}",
            f"{ours['queries_per_cpu_s'] / theirs['queries_per_cpu_s']:.3f}",
        ]
    )


def _build_line(n: int, hn: dict) -> str:
    fit, raw = hn["build"]["knnspark fit"], hn["build"]["hnswlib add_items"]
    return line(
        [
            n,
            f"{fit['seconds_best']:.2f}",
            f"{raw['seconds_best']:.2f}",
            f"{fit['seconds_best'] / raw['seconds_best']:.2f}",
            f"{fit['cpu_s_best'] / raw['cpu_s_best']:.2f}",
            f"{hn['first_query_job_s']:.2f}",
            f"{hn['load']['first_search_s']:.3f}",
            mib(hn["index_bytes"]),
        ]
    )


def hnsw_section(results: dict) -> list[str]:
    sizes = results["sizes"]
    sweep = [
        _sweep_line(n, res["hnsw"]["n_queries"], p)
        for n, res in sizes.items()
        for p in res["hnsw"]["sweep"]
    ]
    return [
        *table(
            "### HNSW: ef sweep (same M/efConstruction; knnspark's ef is per shard)",
            [
                *("train rows", "ef", "knnspark recall", "knnspark q/s", "knnspark q/CPU-s"),
                "knnspark tasks' work q/s per core (timing hook)",
                *("hnswlib recall", "hnswlib q/s", "hnswlib q/CPU-s", "ratio q/s", "ratio CPU"),
            ],
            "lr",
            sweep,
        ),
        *table(
            None,
            [
                *("train rows", "knnspark fit (s)", "hnswlib add_items (s)", "ratio"),
                *("CPU ratio", "first query job (s)"),
                *("first search of fresh shards, in-process (s)", "index MiB"),
            ],
            "lr",
            [_build_line(n, res["hnsw"]) for n, res in sizes.items()],
        ),
    ]


def many_section(results: dict) -> list[str]:
    many = results.get("many_queries")
    if not many:
        return []
    return table(
        f"### HNSW with {many['n_queries']} queries in one job ({many['n_train']} train rows; "
        f"knnspark ef={many['knnspark_ef']} recall {many['knnspark_recall']:.4f}, hnswlib "
        f"ef={many['hnswlib_ef']} recall {many['hnswlib_recall']:.4f}, recall from the sweep)",
        ["method", "search (s)", "queries/s", "q/CPU-s"],
        "lr",
        [
            line(
                [
                    name,
                    f"{m['seconds_best']:.3f}",
                    f"{m['queries_per_s']:,.0f}",
                    f"{m['queries_per_cpu_s']:,.0f}",
                ]
            )
            for name, m in many["methods"].items()
        ],
    )


def lsh_section(results: dict) -> list[str]:
    lsh = results.get("lsh")
    if not lsh:
        return []
    return table(
        f"### Spark BRP-LSH ({lsh['n_train']} train rows, {lsh['n_queries']} queries only; "
        f"throughput = {lsh['n_queries']} / time; oracle join threshold {lsh['threshold']:.2f})",
        [
            *("bucketLength", "numHashTables", "hash train (s)", "join + top-k (s)"),
            *("queries/s", "q/CPU-s", "recall@10"),
        ],
        "r",
        [
            line(
                [
                    r["bucketLength"],
                    r["numHashTables"],
                    f"{r['build_s']:.2f}",
                    f"{r['seconds']:.2f}",
                    f"{r['queries_per_s']:,.1f}",
                    f"{r['queries_per_cpu_s']:,.1f}",
                    f"{r['recall']:.4f}",
                ]
            )
            for r in lsh["sweep"]
        ],
    )


def growth_section(results: dict) -> list[str]:
    growth = results.get("growth")
    if not growth:
        return []
    q, train = growth["queries"], growth["train"]
    rows = [
        line(
            [
                method,
                f"{q[f'{method}: time ratio 2x/1x']:.2f}",
                f"{q[f'{method}: CPU ratio 2x/1x']:.2f}",
                f"{q[f'{method}: marginal queries/s']:,.0f}",
                fmt(train.get(method)),
            ]
        )
        for method in ("knnspark exact", "knnspark hnsw", "faiss", "hnswlib", "Spark floor")
    ]
    rows += [
        line([f"{method} (timing hook)", "", "", "", fmt(train.get(method))])
        for method in ("knnspark exact task work", "knnspark hnsw task work")
    ]
    return table(
        f"### Growth (queries {q['n_queries'][0]} -> {q['n_queries'][1]} at "
        f"{growth['queries_at']} rows, HNSW ef={q['ef']}; training "
        f"{train['sizes'][0]} -> {train['sizes'][1]})",
        [
            *("method", "2x queries: time ratio", "CPU ratio", "marginal queries/s"),
            f"training x{train['factor']:.0f}: time ratio",
        ],
        "lr",
        rows,
    )


def _job_column(job: dict, names: list[str], floor: float, plan: float) -> list[object]:
    tasks = job.get("tasks")
    if not tasks:
        return [None] * (len(names) + 3) + [job["job_s"], floor, plan, None, None]
    slowest = tasks["slowest_task"]
    return [
        *(slowest["stages_s"].get(name) for name in names),
        slowest["outside_stages_s"],
        slowest["wall_s"],
        job["job_s"] - slowest["wall_s"],
        job["job_s"],
        floor,
        plan,
        f"{tasks['tasks']} / {tasks['rows']}",
        sum(tasks["all_tasks"]["stages_s"].values()),
    ]


def where_time_goes(results: dict) -> list[str]:
    """Markdown: each search job's slowest task, stage by stage, from knnspark's timing hook."""
    breakdown = results["breakdown"]
    columns, cells = [], []
    for kind, entry in breakdown.items():
        for label, job in entry["jobs"].items():
            columns.append(f"{kind}: {label} (s)")
            cells.append((job, entry["spark_floor_s"], entry["transform_plan_s"]))
    names = list(
        dict.fromkeys(
            name
            for job, _, _ in cells
            for name in ((job.get("tasks") or {}).get("slowest_task", {}).get("stages_s", {}))
        )
    )
    labels = [
        *(f"task stage: {name}" for name in names),
        "task: between stages (waiting for input batches, handing output back)",
        "**slowest task, inside knnspark's search function**",
        "job: outside it (scheduling, task launch, JVM rows <-> Arrow, sink)",
        "**job wall time, end to end**",
        "Spark floor: identity mapInArrow, same input and output (fastest round)",
        "knnspark transform() plan construction on the driver",
        "tasks / query rows in the timing lines",
        "all tasks: sum of stage seconds",
    ]
    values = [_job_column(job, names, floor, plan) for job, floor, plan in cells]
    return table(
        f"### Where a search job's time goes ({max(results['sizes'])} training rows; knnspark's "
        "timing hook, KNNSPARK_TIMINGS: the slowest task of each job)",
        ["part", *columns],
        "lr",
        [row(label, [column[i] for column in values]) for i, label in enumerate(labels)],
    )


def fit_section(results: dict) -> list[str]:
    """Markdown: knnspark's HNSW fit against its build tasks' timing lines."""
    sizes = results["sizes"]
    parts = {n: r["hnsw"]["knnspark_fit_parts"] for n, r in sizes.items()}
    if not all("build_tasks" in p for p in parts.values()):
        return []
    slowest = {n: p["build_tasks"]["slowest_task"] for n, p in parts.items()}
    raw = [sizes[n]["hnsw"]["build"]["hnswlib add_items"]["seconds_best"] for n in sizes]
    return table(
        "knnspark HNSW fit (fastest build round), from its build tasks' timing lines:",
        ["part", *(f"{n} rows (s)" for n in sizes)],
        "lr",
        [
            row(
                "slowest build task: build (Arrow -> numpy, sort by id, graph, serialize)",
                [s["stages_s"].get("build") for s in slowest.values()],
                ".2f",
            ),
            row(
                "slowest build task: rest", [s["outside_stages_s"] for s in slowest.values()], ".2f"
            ),
            row(
                "outside the build tasks (validation jobs, shuffle, launch, collect, decode)",
                [p["outside_build_tasks_s"] for p in parts.values()],
                ".2f",
            ),
            row("**fit**", [p["fit_s"] for p in parts.values()], ".2f"),
            row(
                "build tasks in distinct Python workers",
                [p["builds_in_distinct_workers"] for p in parts.values()],
            ),
            row("hnswlib add_items, one index, same threads", raw, ".2f"),
        ],
    )


def memory_section(results: dict) -> list[str]:
    rows = []
    for phase, p in results["memory"].items():
        extra = results["memory_expected"].get(phase, {})
        rss = ("driver_python_rss", "driver_jvm_rss", "daemon_rss", "worker_rss_max")
        rows.append(
            line(
                [
                    phase,
                    *(mib(p.get(key, 0)) for key in (*rss, "workers_rss_sum")),
                    *(mib(extra[key]) if extra else "" for key in ("index_bytes", "batch_bytes")),
                ]
            )
        )
    return table(
        "### Peak memory (MiB; RSS sampled every 0.2 s; workers are reused across phases)",
        [
            *("phase", "driver Python", "driver JVM", "daemon", "largest worker"),
            *("all workers", "index", "Arrow batch in+out"),
        ],
        "lr",
        rows,
    )


def report(results: dict, args: argparse.Namespace) -> int:
    """Write the JSON, the markdown and the plot; print the tables; 1 if a check failed."""
    tables_md = markdown(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=_json_default))
    args.out.with_suffix(".md").write_text(tables_md + "\n")
    plot(results, args.plot, TARGET_RECALL)
    print(tables_md)
    for kind, text in results["profiles"].items():
        print(f"\n### Spark UDF profiler: {kind} search job, in the Python workers\n\n{text}")
    failed = [name for name, ok in results["checks"].items() if not ok]
    print(f"\nchecks: {'all passed' if not failed else 'FAILED: ' + ', '.join(failed)}")
    print(
        f"wrote {args.out}, {args.out.with_suffix('.md')}, {args.plot} "
        f"in {results['meta']['wall_s']:.0f}s"
    )
    return 1 if failed else 0


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
