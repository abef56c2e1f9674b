"""The shipped nightly anomaly-scoring config is a valid score-job config for outlier models."""

from __future__ import annotations

from pathlib import Path

from knnspark.app.config import load_config
from knnspark.app.schemas import ESTIMATORS, SCORE_SCHEMA

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_outliers_config_is_a_valid_score_config():
    config = load_config(REPO_ROOT / "conf" / "outliers.toml", SCORE_SCHEMA)
    assert config["model"]["task"] == "outliers"
    assert config["model"]["path"] == "output/digits-outliers"
    assert config["input"]["path"] == "data/digits/test.parquet"


def test_outlier_detector_is_a_fit_task():
    assert ESTIMATORS["outliers"].__name__ == "KNNOutlierDetector"
