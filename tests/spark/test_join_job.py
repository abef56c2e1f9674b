"""The join job end to end: one run-dated partition per run, re-runs, the row check, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F
from sklearn.neighbors import NearestNeighbors as SkNearestNeighbors

from knnspark.app.jobs import run_job

K = 3
DAY_1, DAY_2 = "2026-11-20", "2026-11-21"


def write_config(path: Path, tables: dict) -> Path:
    lines = []
    for table, keys in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in keys.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def inputs(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("join")
    rng = np.random.default_rng(2)
    items = rng.normal(size=(150, 4))
    queries = rng.normal(size=(40, 4))
    right = pd.DataFrame({"id": np.arange(150) + 1000, "features": list(items), "kind": "item"})
    left = pd.DataFrame({"id": np.arange(40), "features": list(queries), "kind": "query"})
    spark.createDataFrame(right).repartition(2).write.parquet(str(root / "right.parquet"))
    spark.createDataFrame(left).repartition(3).write.parquet(str(root / "left.parquet"))
    return {"root": root, "items": items, "queries": queries}


def config(inputs, tmp_path, **join):
    root = inputs["root"]
    return write_config(
        tmp_path / "join.toml",
        {
            "left": {"path": str(root / "left.parquet")},
            "right": {"path": str(root / "right.parquet")},
            "join": {"k": K, "idCol": "id", "rightPrefix": "m_", "numShards": 2, **join},
            "output": {"path": str(tmp_path / "matches")},
        },
    )


def join(path, *args):
    return run_job("join", ["--config", str(path), *args])


def test_join_job_writes_the_neighbors_into_one_partition(spark, inputs, tmp_path, capsys):
    path = config(inputs, tmp_path)
    assert join(path, "--run-date", DAY_1) == 0
    assert f"join: 40 left rows x 150 right rows, {40 * K} rows out" in capsys.readouterr().out
    out = spark.read.parquet(str(tmp_path / "matches"))
    assert out.columns == [
        "id",
        "features",
        "kind",
        "m_id",
        "m_kind",
        "rank",
        "distance",
        "joined_at",
        "run_date",
    ]
    pdf = out.toPandas().sort_values(["id", "rank"])
    ref = SkNearestNeighbors(n_neighbors=K).fit(inputs["items"].astype(np.float32))
    dist, pos = ref.kneighbors(inputs["queries"].astype(np.float32))
    assert np.array_equal(pdf["m_id"].to_numpy().reshape(40, K), pos + 1000)
    np.testing.assert_allclose(pdf["distance"].to_numpy().reshape(40, K), dist, rtol=1e-5)
    # A re-run of the date replaces its partition; another date is added beside it.
    assert join(path, "--run-date", DAY_1) == 0
    assert join(path, "--run-date", DAY_2, "--set", "join.k=1") == 0
    counts = spark.read.parquet(str(tmp_path / "matches")).groupBy("run_date").count()
    assert {str(r["run_date"]): r["count"] for r in counts.collect()} == {DAY_1: 40 * K, DAY_2: 40}


def test_leftouter_keeps_invalid_left_rows(spark, inputs, tmp_path, capsys):
    left = spark.read.parquet(str(inputs["root"] / "left.parquet"))
    broken = left.withColumn(
        "features",
        F.when(F.col("id") < 5, F.array(F.lit(float("nan")))).otherwise(F.col("features")),
    )
    broken.write.parquet(str(tmp_path / "broken.parquet"))
    path = config(inputs, tmp_path, joinType="leftouter", handleInvalid="skip")
    text = path.read_text().replace(
        str(inputs["root"] / "left.parquet"), str(tmp_path / "broken.parquet")
    )
    path.write_text(text)
    assert join(path, "--run-date", DAY_1) == 0
    out = capsys.readouterr().out
    assert f"{35 * K + 5} rows out" in out and "5 left rows had invalid features" in out
    rows = spark.read.parquet(str(tmp_path / "matches")).where("id < 5").collect()
    assert len(rows) == 5 and all(r["m_id"] is None and r["rank"] is None for r in rows)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"join": {"k": 0}}, "error: Param k must be an integer >= 1; got 0"),
        ({"join": {"mode": "fast"}}, "join.mode"),
        ({"join": {"rightPrefix": None}}, "Column 'id' of the right DataFrame would be output"),
        ({"output": "left"}, "output.path: must differ from left.path"),
        ({"right": "missing"}, "input.path: no such file or directory"),
    ],
)
def test_bad_config_or_input_exits_2(spark, inputs, tmp_path, capfd, change, message):
    path = config(inputs, tmp_path)
    text = path.read_text()
    if change == {"output": "left"}:
        text = text.replace(str(tmp_path / "matches"), str(inputs["root"] / "left.parquet"))
    elif change == {"right": "missing"}:
        text = text.replace("right.parquet", "nowhere.parquet")
    elif change["join"].get("rightPrefix", 1) is None:
        text = text.replace('rightPrefix = "m_"\n', "")
    else:
        key, value = next(iter(change["join"].items()))
        text = text.replace("[join]\n", f"[join]\n{key} = {json.dumps(value)}\n")
        text = text.replace(f"k = {K}\n", "") if key == "k" else text
    path.write_text(text)
    assert join(path, "--run-date", DAY_1) == 2
    err = capfd.readouterr().err
    assert message in err
    assert not (tmp_path / "matches" / f"run_date={DAY_1}").exists()
