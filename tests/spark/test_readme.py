"""Every Python block in the README runs as written and does what it says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _block_after(heading: str) -> str:
    section = README.read_text().split(heading, 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _run(code: str) -> dict:
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    return namespace


def test_quick_start_runs(spark):
    code = _block_after("## Quick start")
    assert len(code.strip().splitlines()) <= 16
    namespace = _run(code)
    scored = namespace["scored"].orderBy("label").collect()
    assert [r["prediction"] for r in scored] == [0.0, 0.0, 1.0, 1.0, 1.0]
    assert scored[0]["probability"].toArray().tolist() == [1.0, 0.0]
    reloaded = namespace["same"].transform(namespace["train"]).orderBy("label").collect()
    assert [r["prediction"] for r in reloaded] == [r["prediction"] for r in scored]
    neighbors = namespace["neighbors"]
    assert neighbors.columns == ["features", "label", "neighbor_ids", "distances"]
    assert neighbors.first()["distances"][0] == 0.0


def test_spark_native_pipeline_runs(spark):
    namespace = _run(_block_after("### Scaling, missing values and class imbalance"))
    rows = namespace["predictions"].collect()
    assert [r["prediction"] for r in rows] == [r["label"] for r in rows]


def test_api_imports_run():
    namespace = _run(_block_after("## The API"))
    assert "NearestNeighborsModel" in namespace


def test_worker_error_block_runs(spark):
    namespace = _run(_block_after("### Bad input"))
    assert namespace["message"].startswith(
        "Column 'features' (param featuresCol) holds NaN or infinite values in a query row"
    )


def test_outlier_and_editing_block_runs(spark):
    namespace = _run(_block_after("### Outlier scores and noise editing"))
    scores = namespace["scores"].orderBy("id").collect()
    assert [r["prediction"] for r in scores] == [0.0] * 9 + [1.0]
    assert namespace["fitted"].stages[1].numTrainingRows == 9  # row 5 was edited out
    assert namespace["predictions"].count() == 10


def test_join_block_runs(spark):
    namespace = _run(_block_after("### Joins, kNN graphs and radius search"))
    pairs = namespace["pairs"].orderBy("query", "rank").collect()
    assert [(r["query"], r["name"], r["rank"]) for r in pairs] == [
        ("q1", "a", 1),
        ("q1", "b", 2),
        ("q2", "c", 1),
        ("q2", "b", 2),
    ]
    graph = namespace["graph"].orderBy("id").collect()
    assert [(r["id"], r["nb_id"]) for r in graph] == [(1, 2), (2, 1), (3, 2)]
    others = namespace["others"].orderBy("id").collect()
    assert [r["neighbor_ids"] for r in others] == [[2, 3], [1, 3], [2, 1]]
    near = namespace["near"].orderBy("query").collect()
    assert [r["neighbor_ids"] for r in near] == [[1, 2], []]
    assert [r["truncated"] for r in near] == [False, False]


def test_groups_block_runs(spark):
    namespace = _run(_block_after("### Search within groups"))
    scored = {r["country"]: r for r in namespace["scored"].collect()}
    assert scored["fr"]["prediction"] == 0.0 and scored["de"]["prediction"] == 1.0
    assert scored["it"]["prediction"] is None and scored["it"]["probability"] is None
    pairs = namespace["pairs"].orderBy("country").collect()
    assert namespace["pairs"].columns == ["country", "features", "item_label", "rank", "distance"]
    assert [(r["country"], r["item_label"], r["rank"]) for r in pairs] == [
        ("de", 1.0, 1),
        ("fr", 0.0, 1),
    ]
    assert [round(r["distance"], 6) for r in pairs] == [0.8, 0.1]


def test_every_python_block_is_tested():
    assert README.read_text().count("```python") == 8


@pytest.mark.slow
def test_connect_quick_start_runs_in_a_process_of_its_own():
    # builder.remote("local[2]") starts its own Connect server, which a process already running
    # a classic session (this one) refuses; a fresh interpreter runs the block as written.
    pytest.importorskip("grpc", reason="the Connect example needs pyspark[connect]")
    code = _block_after("### On Spark Connect")
    check = (
        "\nrows = scored.orderBy('label').collect()\n"
        "assert [r['prediction'] for r in rows] == [0.0, 0.0, 1.0, 1.0], rows\n"
        "assert type(spark).__module__.startswith('pyspark.sql.connect'), type(spark)\n"
        "spark.stop()\n"
    )
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    env.pop("SPARK_CONNECT_MODE_ENABLED", None)
    done = subprocess.run(
        [sys.executable, "-c", code + check], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
