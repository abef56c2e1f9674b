"""Nightly anomaly scoring: the fit job with model.task = "outliers", then the score job with
the shipped conf/outliers.toml, against PyOD's KNN detector on the digits sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyod.models.knn import KNN

from knnspark import KNNOutlierModel
from knnspark.app.jobs import run_job

REPO = Path(__file__).resolve().parents[2]
DAY = "2026-11-21"


@pytest.mark.slow
def test_fit_and_score_outliers_with_the_shipped_configs(spark, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)  # the shipped configs' paths are relative to the repository
    model_path, output_path = tmp_path / "outliers", tmp_path / "scores"
    fit_args = ["--config", "conf/fit.toml", "--set", "model.task=outliers"]
    fit_args += ["--set", f"model.path={model_path}", "--set", "model.k=5"]
    fit_args += ["--set", 'model.method="mean"', "--set", "model.contamination=0.05"]
    assert run_job("fit", fit_args) == 0
    score_args = ["--config", "conf/outliers.toml", "--run-date", DAY]
    score_args += ["--set", f"model.path={model_path}", "--set", f"output.path={output_path}"]
    assert run_job("score", score_args) == 0
    out = capsys.readouterr().out
    assert "score: 360 rows in, 360 rows out" in out

    train = pd.read_parquet(REPO / "data/digits/train.parquet")
    test = pd.read_parquet(REPO / "data/digits/test.parquet").sort_values("id")
    reference = KNN(n_neighbors=5, method="mean", contamination=0.05)
    reference.fit(np.stack(train["features"]).astype(np.float64))
    x_test = np.stack(test["features"]).astype(np.float64)
    scored = spark.read.parquet(str(output_path)).orderBy("id").toPandas()
    np.testing.assert_allclose(scored["outlierScore"], reference.decision_function(x_test))
    np.testing.assert_array_equal(scored["prediction"], reference.predict(x_test))
    assert f"outlier_share: {scored['prediction'].mean():.4f}" in out
    assert KNNOutlierModel.load(str(model_path)).threshold == pytest.approx(reference.threshold_)


def test_score_job_refuses_a_param_the_outlier_model_lacks(spark, tmp_path, capfd):
    df = spark.createDataFrame([([float(i)],) for i in range(6)], ["features"])
    from knnspark import KNNOutlierDetector

    KNNOutlierDetector(k=2).fit(df).write().save(str(tmp_path / "m"))
    df.write.parquet(str(tmp_path / "in.parquet"))
    args = ["--config", str(REPO / "conf/outliers.toml"), "--set", f"model.path={tmp_path / 'm'}"]
    args += ["--set", f"input.path={tmp_path / 'in.parquet'}"]
    args += ["--set", f"output.path={tmp_path / 'out'}", "--set", 'model.weights="distance"']
    assert run_job("score", args) == 2
    err = capfd.readouterr().err
    assert "error: model.weights: not a param of KNNOutlierModel (model.task = 'outliers')" in err
    assert (
        run_job(
            "evaluate",
            ["--config", str(REPO / "conf/evaluate.toml"), "--set", f"model.path={tmp_path / 'm'}"],
        )
        == 2
    )
    assert "holds a knnspark.KNNOutlierModel (task 'outliers'); this job takes" in (
        capfd.readouterr().err
    )
