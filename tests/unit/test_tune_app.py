"""The tune job's config schema and plot (no Spark)."""

from __future__ import annotations

import struct
from pathlib import Path

import pandas as pd
import pytest

from knnspark import KNNClassifier
from knnspark.app.config import ConfigError, load_config, validate
from knnspark.app.schemas import TUNE_SCHEMA
from knnspark.app.tune import plot_metric_vs_k, tune_grid

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_shipped_tune_config_is_valid_and_holds_the_digits_grid():
    config = load_config(REPO_ROOT / "conf/tune.toml", TUNE_SCHEMA)
    assert config["input"]["path"] == "data/digits/train.parquet"
    assert config["output"]["path"] == "output/digits-tuning"
    assert len(config["tune"]["k"]) == 16
    assert config["tune"]["weights"] == ["uniform", "distance"]


def test_tune_grid_overrides_are_read_as_toml_lists():
    config = load_config(
        REPO_ROOT / "conf/tune.toml",
        TUNE_SCHEMA,
        ["tune.k=[1, 3, 5]", 'tune.weights=["distance"]', "tune.foldCol=fold"],
    )
    assert config["tune"]["k"] == [1, 3, 5]
    assert config["tune"]["weights"] == ["distance"]
    assert config["tune"]["foldCol"] == "fold"


@pytest.mark.parametrize(
    ("k", "message"),
    [
        (["1", "3"], r"^tune\.k: expected list of integers, got \['1', '3'\] \(list\)$"),
        ([1, True], r"^tune\.k: expected list of integers, got \[1, True\] \(list\)$"),
        ([1.5], r"^tune\.k: expected list of integers, got \[1\.5\] \(list\)$"),
        (3, r"^tune\.k: expected list of integers, got 3 \(integer\)$"),
    ],
)
def test_tune_k_must_be_a_list_of_integers(k, message):
    config = {"input": {"path": "d"}, "tune": {"k": k}, "output": {"path": "o"}}
    with pytest.raises(ConfigError, match=message):
        validate(config, TUNE_SCHEMA)


def test_tune_k_is_required():
    with pytest.raises(ConfigError, match=r"^tune\.k: required list of integers is missing$"):
        validate({"input": {"path": "d"}, "output": {"path": "o"}}, TUNE_SCHEMA)


def test_plot_metric_vs_k_writes_a_png(tmp_path):
    summary = pd.DataFrame(
        {
            "k": [1, 3, 5, 1, 3, 5],
            "weights": ["uniform"] * 3 + ["distance"] * 3,
            "metricName": "accuracy",
            "mean": [0.90, 0.93, 0.92, 0.90, 0.94, 0.93],
            "std": [0.01, 0.02, 0.01, 0.01, 0.015, 0.02],
            "rank": [5, 2, 3, 5, 1, 2],
        }
    )
    path = tmp_path / "plot.png"
    plot_metric_vs_k(summary, "accuracy", path, title="accuracy against k")
    png = path.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (880, 550)


def test_plot_metric_vs_k_draws_a_line_per_metric_and_weighting(tmp_path):
    summary = pd.DataFrame(
        {
            "k": [1, 3] * 4,
            "metric": ["euclidean"] * 4 + ["mahalanobis"] * 4,
            "weights": (["uniform"] * 2 + ["gaussian"] * 2) * 2,
            "bandwidth": 1.0,
            "metricName": "accuracy",
            "mean": [0.90, 0.93, 0.91, 0.94, 0.92, 0.95, 0.93, 0.96],
            "std": 0.01,
            "rank": [8, 4, 7, 2, 6, 3, 5, 1],
        }
    )
    path = tmp_path / "plot.png"
    plot_metric_vs_k(summary, "accuracy", path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tune_grids_over_metric_p_standardization_and_bandwidth():
    config = load_config(
        REPO_ROOT / "conf/tune.toml",
        TUNE_SCHEMA,
        [
            'tune.metric=["euclidean", "mahalanobis"]',
            "tune.p=[1, 2.5]",
            'tune.standardization=["none", "zscore"]',
            "tune.bandwidth=[2]",
        ],
    )
    assert config["tune"]["p"] == [1.0, 2.5] and config["tune"]["bandwidth"] == [2.0]
    clf = KNNClassifier()
    grid = tune_grid(clf, {}, config["tune"])
    assert len(grid) == 16 * 2 * 2 * 2 * 2 * 1
    assert {m[clf.metric] for m in grid} == {"euclidean", "mahalanobis"}


def test_tune_grid_values_are_checked_by_the_params():
    base = load_config(REPO_ROOT / "conf/tune.toml", TUNE_SCHEMA)["tune"]
    with pytest.raises(ValueError, match=r"Param metric must be one of .*; got 'l2'"):
        tune_grid(KNNClassifier(), {}, {**base, "metric": ["l2"]})
    with pytest.raises(ValueError, match=r"Param bandwidth must be a finite number > 0; got 0.0"):
        tune_grid(KNNClassifier(), {}, {**base, "bandwidth": [0.0]})
    with pytest.raises(ValueError, match=r"model.metric and tune.metric both set it"):
        tune_grid(KNNClassifier(), {"metric": "cosine"}, {**base, "metric": ["cosine"]})
