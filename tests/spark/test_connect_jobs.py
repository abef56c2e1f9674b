"""The four jobs run with ``--remote`` against a Spark Connect server.

The server is the one the classic `spark` fixture's JVM runs (conftest.py); the jobs run
in-process as its Connect clients, and their outputs are compared with what the same model
computes on the classic session.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score

from knnspark import KNNClassificationModel
from knnspark.app.jobs import run_job

pytest.importorskip("grpc", reason="Spark Connect jobs need pyspark[connect]")

K = 5


def _write_config(path: Path, tables: dict) -> Path:
    lines = []
    for table, keys in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in keys.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _rows(rng, n, start):
    centers = np.array([[0.0, 0.0, 0.0], [3.0, 3.0, 0.0], [0.0, 3.0, 3.0]])
    labels = rng.integers(0, 3, size=n)
    x = centers[labels] + rng.normal(scale=1.2, size=(n, 3))
    return pd.DataFrame(
        {"id": np.arange(start, start + n), "features": list(x), "label": labels.astype(float)}
    )


def test_fit_score_evaluate_and_tune_run_on_connect(spark, tmp_path, capsys):
    rng = np.random.default_rng(5)
    spark.createDataFrame(_rows(rng, 150, 0)).write.parquet(str(tmp_path / "train.parquet"))
    queries = tmp_path / "queries.parquet"
    spark.createDataFrame(_rows(rng, 60, 1000)).repartition(2).write.parquet(str(queries))
    remote = ["--remote", f"sc://localhost:{spark.conf.get('spark.connect.grpc.binding.port')}"]
    model_path = tmp_path / "model"

    fit = {
        "input": {"path": str(tmp_path / "train.parquet")},
        "model": {"path": str(model_path), "k": K, "idCol": "id", "numShards": 2},
    }
    assert (
        run_job("fit", ["--config", str(_write_config(tmp_path / "fit.toml", fit)), *remote]) == 0
    )
    score = {
        "input": {"path": str(queries)},
        "model": {"path": str(model_path)},
        "output": {"path": str(tmp_path / "scores")},
    }
    config = _write_config(tmp_path / "score.toml", score)
    assert run_job("score", ["--config", str(config), "--run-date", "2026-12-01", *remote]) == 0
    evaluate = {
        "input": {"path": str(queries)},
        "model": {"path": str(model_path)},
        "output": {"path": str(tmp_path / "metrics.json")},
    }
    config = _write_config(tmp_path / "evaluate.toml", evaluate)
    assert run_job("evaluate", ["--config", str(config), *remote]) == 0
    tune = {
        "input": {"path": str(tmp_path / "train.parquet")},
        "tune": {"k": [1, 5], "numFolds": 2},
        "output": {"path": str(tmp_path / "tuning")},
    }
    config = _write_config(tmp_path / "tune.toml", tune)
    assert run_job("tune", ["--config", str(config), *remote]) == 0
    capsys.readouterr()

    # The classic session reads what the Connect jobs wrote, and agrees with it.
    model = KNNClassificationModel.load(str(model_path))
    expected = model.transform(spark.read.parquet(str(queries))).select("id", "prediction")
    expected = dict(expected.toPandas().itertuples(index=False))
    scored = spark.read.parquet(str(tmp_path / "scores")).select("id", "prediction", "run_date")
    scored = scored.toPandas()
    assert set(scored["run_date"].astype(str)) == {"2026-12-01"}
    assert dict(zip(scored["id"], scored["prediction"], strict=True)) == expected
    report = json.loads((tmp_path / "metrics.json").read_text())
    labels = spark.read.parquet(str(queries)).select("id", "label").toPandas()
    want = accuracy_score(labels["label"], [expected[i] for i in labels["id"]])
    assert report["metrics"]["accuracy"] == pytest.approx(want, rel=1e-12)
    assert (tmp_path / "tuning" / "report.csv").is_file()
    assert (tmp_path / "tuning" / "best_model").is_dir()


def test_remote_is_a_config_key_too(spark, tmp_path, capsys):
    # A bad Connect URL fails as a job error, not at import (the key reaches the session).
    config = _write_config(
        tmp_path / "fit.toml",
        {
            "input": {"path": str(tmp_path / "missing.parquet")},
            "model": {"path": str(tmp_path / "model")},
            "spark": {"remote": "nonsense://x"},
        },
    )
    assert run_job("fit", ["--config", str(config)]) != 0
    assert "error" in capsys.readouterr().err
