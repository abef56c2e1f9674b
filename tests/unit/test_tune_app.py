"""The tune job's config schema and plot (no Spark)."""

from __future__ import annotations

import struct
from pathlib import Path

import pandas as pd
import pytest

from knnspark.app.config import ConfigError, load_config, validate
from knnspark.app.schemas import TUNE_SCHEMA
from knnspark.app.tune import plot_metric_vs_k

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
            "metric": "accuracy",
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
