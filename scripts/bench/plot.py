"""Recall@10 against queries/s, one panel per training size."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

EXACT_MARKERS = (
    ("knnspark exact (Spark)", "*", "tab:blue"),
    ("faiss IndexFlatL2", "D", "tab:green"),
    ("sklearn brute", "v", "tab:purple"),
)


def _hnsw_lines(ax, sweep: list[dict], nq: int, cores: int) -> None:
    recall = [p["knnspark_recall"] for p in sweep]
    ax.plot(
        recall,
        [p["knnspark"]["queries_per_s"] for p in sweep],
        "o-",
        color="tab:blue",
        label="knnspark HNSW (Spark, end to end)",
    )
    work = [
        (r, cores * nq / p["knnspark"]["tasks"]["busy_s"])
        for r, p in zip(recall, sweep, strict=True)
        if p["knnspark"].get("tasks")
    ]
    if work:
        ax.plot(
            *zip(*work, strict=True),
            "o:",
            color="tab:blue",
            alpha=0.5,
            label="knnspark HNSW tasks' work only (timing hook stage seconds, x cores)",
        )
    ax.plot(
        [p["hnswlib_recall"] for p in sweep],
        [p["hnswlib"]["queries_per_s"] for p in sweep],
        "s-",
        color="tab:orange",
        label="hnswlib (one index)",
    )
    for p in sweep[:: max(1, len(sweep) // 4)]:
        ax.annotate(
            f"ef={p['ef']}",
            (p["knnspark_recall"], p["knnspark"]["queries_per_s"]),
            textcoords="offset points",
            xytext=(4, -10),
            fontsize=7,
            color="tab:blue",
        )


def _panel(ax, results: dict, n: int, target_recall: float) -> None:
    res, lsh, cores = results["sizes"][n], results.get("lsh"), results["meta"]["cores"]
    sweep, nq = res["hnsw"]["sweep"], res["hnsw"]["n_queries"]
    _hnsw_lines(ax, sweep, nq, cores)
    for name, marker, color in EXACT_MARKERS:
        recall = res["exact"]["recall_vs_faiss"] if name.startswith("knnspark") else 1.0
        qps = res["exact"]["methods"][name]["queries_per_s"]
        ax.plot(recall, qps, marker, color=color, ms=10, label=name)
    lsh_recalls = []
    if lsh and lsh["n_train"] == n:
        lsh_recalls = [r["recall"] for r in lsh["sweep"]]
        ax.plot(
            lsh_recalls,
            [r["queries_per_s"] for r in lsh["sweep"]],
            "x",
            color="tab:red",
            ms=9,
            label=f"Spark BRP-LSH ({lsh['n_queries']} queries)",
        )
    ax.axvline(target_recall, color="grey", ls="--", lw=0.8)
    recalls = [p["knnspark_recall"] for p in sweep] + [p["hnswlib_recall"] for p in sweep]
    ax.set_xlim(min(*recalls, *lsh_recalls, 0.94) - 0.01, 1.005)
    ax.set_yscale("log")
    ax.set_xlabel("recall@10 vs exact")
    ax.set_ylabel("queries / s")
    ax.set_title(f"{n:,} train rows x {nq:,} queries, {cores} cores")
    ax.grid(True, which="both", alpha=0.3)


def plot(results: dict, path: Path, target_recall: float) -> None:
    """Recall@10 vs queries/s, one panel per training size; one legend under the panels."""
    sizes = list(results["sizes"])
    fig, axes = plt.subplots(1, len(sizes), figsize=(6.5 * len(sizes), 5.6), squeeze=False)
    for ax, n in zip(axes[0], sizes, strict=True):
        _panel(ax, results, n, target_recall)
    entries = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    fig.legend(entries.values(), entries.keys(), loc="lower center", ncol=4, fontsize=8)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
