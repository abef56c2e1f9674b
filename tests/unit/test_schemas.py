"""The jobs' schemas: model keys derived from the estimators' Params (no Spark session)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
from pyspark.ml import Estimator

import knnspark
from knnspark.app.config import ConfigError, ParamField, load_config, validate
from knnspark.app.schemas import (
    ESTIMATORS,
    FIT_SCHEMA,
    JOB_KEYS,
    SCORE_SCHEMA,
    SEARCH_PARAMS,
    TUNE_SCHEMA,
    estimator_params,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
FIT_TOML = REPO_ROOT / "conf" / "fit.toml"

#: Every public estimator class, found rather than listed, so a new one is checked too.
ESTIMATOR_CLASSES = [
    obj
    for obj in (getattr(knnspark, name) for name in knnspark.__all__)
    if isinstance(obj, type) and issubclass(obj, Estimator)
]
TASK_OF = {cls: task for task, cls in ESTIMATORS.items()}
# A valid value for the Params whose default is None.
SAMPLES = {
    "numShards": 3,
    "idCol": "id",
    "imputeStrategy": "median",
    "neighborsCol": "neighbors",
    "classWeights": "balanced",
    "bandwidth": 0.5,
    "nprobe": 2,
    "shardsVisitedCol": "shards_visited",
    "groupCol": "country",
}


def toml_value(value):
    if isinstance(value, bool):
        return str(value).lower()
    return json.dumps(value)  # JSON strings and numbers are TOML values


def estimator_param_cases():
    cases = []
    for cls in ESTIMATOR_CLASSES:
        estimator = cls()
        for param in estimator.params:
            default = estimator.getOrDefault(param) if estimator.hasDefault(param) else None
            value = SAMPLES.get(param.name) if default is None else default
            cases.append(pytest.param(cls, param.name, value, id=f"{cls.__name__}.{param.name}"))
    return cases


def test_every_public_estimator_is_a_fit_task():
    assert sorted(c.__name__ for c in ESTIMATOR_CLASSES) == sorted(
        c.__name__ for c in ESTIMATORS.values()
    )


@pytest.mark.parametrize(("cls", "name", "value"), estimator_param_cases())
def test_every_estimator_param_is_accepted_by_the_fit_config(cls, name, value):
    assert isinstance(FIT_SCHEMA["model"][name], ParamField)
    if value is None:
        pytest.fail(f"add a valid sample value of Param {name} to SAMPLES")
    task = TASK_OF[cls]
    config = load_config(
        FIT_TOML, FIT_SCHEMA, [f"model.task={task}", f"model.{name}={toml_value(value)}"]
    )
    estimator = cls(**estimator_params(config["model"], task))
    param = estimator.getParam(name)
    assert estimator.isSet(param)
    assert estimator.getOrDefault(param) == value


@pytest.mark.parametrize("name", [n for n, f in FIT_SCHEMA["model"].items() if n not in JOB_KEYS])
@pytest.mark.parametrize("value", [[1, 2], True])
def test_a_param_of_the_wrong_type_is_refused_naming_the_key(name, value):
    config = {"input": {"path": "d"}, "model": {"path": "m", name: value}}
    with pytest.raises(ConfigError, match=rf"^model\.{name}: .*{re.escape(repr(value))}"):
        validate(config, FIT_SCHEMA)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.k=seven", r"^model\.k: must be an integer >= 1; got 'seven'$"),
        ("model.k=2.5", r"^model\.k: must be an integer >= 1; got 2\.5$"),
        ("model.M=1", r"^model\.M: must be an integer >= 2; got 1$"),
        ("model.algorithm=kdtree", r"^model\.algorithm: must be one of 'auto', 'brute', 'hnsw'"),
        ("model.seed=x", r"^model\.seed: expected random seed, got 'x' \(string\)$"),
        ("model.seed=true", r"^model\.seed: expected random seed, got True \(boolean\)$"),
        ("model.classWeights=[1]", r"^model\.classWeights: must be 'balanced', a mapping"),
    ],
)
def test_fit_config_checks_values_with_the_param_rule(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(FIT_TOML, FIT_SCHEMA, [override])


def test_fit_config_accepts_the_keys_it_used_to_refuse():
    config = load_config(
        FIT_TOML,
        FIT_SCHEMA,
        ["model.M=8", "model.efConstruction=100", "model.classWeights.1=2.5"],
    )
    assert estimator_params(config["model"], "classification") == {
        "idCol": "id",
        "M": 8,
        "efConstruction": 100,
        "classWeights": {1.0: 2.5},
    }


def test_string_params_keep_the_raw_text_of_an_override():
    config = load_config(FIT_TOML, FIT_SCHEMA, ["model.idCol=2024", "model.labelCol=true"])
    assert (config["model"]["idCol"], config["model"]["labelCol"]) == ("2024", "true")


def test_a_param_of_another_task_is_refused_before_the_fit():
    config = load_config(
        FIT_TOML, FIT_SCHEMA, ["model.task=regression", "model.classWeights=balanced"]
    )
    with pytest.raises(
        ConfigError,
        match=r"^model\.classWeights: a param of KNNClassifier, not of KNNRegressor "
        r"\(model\.task = 'regression'\); leave it out$",
    ):
        estimator_params(config["model"], "regression")


def test_job_keys_are_no_param_names():
    params = {p.name for cls in ESTIMATOR_CLASSES for p in cls().params}
    assert not params & set(JOB_KEYS)


def test_tune_takes_the_supervised_params_less_the_grid():
    keys = set(TUNE_SCHEMA["model"]) - {"task"}
    supervised = {p.name for t in ("classification", "regression") for p in ESTIMATORS[t]().params}
    assert keys == supervised - {"k", "weights"}


def test_search_time_params_are_params_of_the_saved_models():
    for model_class in (knnspark.KNNClassificationModel, knnspark.KNNRegressionModel):
        assert all(model_class().hasParam(name) for name in SEARCH_PARAMS)
    assert set(SCORE_SCHEMA["model"]) == {"task", "path", *SEARCH_PARAMS}


def shown_defaults(path):
    """The ``# key = value`` lines of a config's [model] table, as {key: value}."""
    text = path.read_text()
    table = text.split("\n[model]\n", 1)[1].split("\n[", 1)[0]
    shown = {}
    for line in table.splitlines():
        match = re.match(r"^# (\w+) = (.+?)(?:\s+#.*)?$", line)
        if match:
            shown[match[1]] = tomllib.loads(f"v = {match[2]}")["v"]
    return shown


def library_default(name):
    """The default of Param ``name`` in the first estimator (by task) that has it."""
    for cls in ESTIMATORS.values():
        estimator = cls()
        if estimator.hasParam(name):
            return estimator.getOrDefault(name)
    raise AssertionError(f"no estimator has a Param {name}")


@pytest.mark.parametrize("name", ["fit.toml", "tune.toml"])
def test_defaults_shown_in_the_configs_are_the_library_defaults(name):
    shown = shown_defaults(REPO_ROOT / "conf" / name)
    assert shown  # the pattern still matches the file's layout
    assert {key: library_default(key) for key in shown} == shown


def test_fit_config_shows_every_estimator_param():
    text = FIT_TOML.read_text().split("\n[model]\n", 1)[1]
    params = {p.name for cls in ESTIMATOR_CLASSES for p in cls().params}
    missing = [name for name in sorted(params) if not re.search(rf"^#? ?{name}\b", text, re.M)]
    assert missing == []


@pytest.mark.parametrize(
    ("name", "schema"), [("fit.toml", FIT_SCHEMA), ("score.toml", SCORE_SCHEMA)]
)
def test_shipped_configs_are_valid(name, schema):
    config = load_config(REPO_ROOT / "conf" / name, schema)
    assert config["spark"]["master"] == "local[*]"
    assert config["model"]["path"] == "output/digits-model"
    assert config["model"]["task"] == "classification"


def test_shipped_configs_read_the_digits_data():
    fit = load_config(REPO_ROOT / "conf" / "fit.toml", FIT_SCHEMA)
    score = load_config(REPO_ROOT / "conf" / "score.toml", SCORE_SCHEMA)
    assert fit["input"]["path"] == "data/digits/train.parquet"
    assert score["input"]["path"] == "data/digits/test.parquet"
    assert score["output"]["path"] == "output/digits-predictions"
    for config in (fit, score):
        assert (REPO_ROOT / config["input"]["path"]).is_file()


def test_fit_schema_rejects_unknown_model_param():
    with pytest.raises(
        ConfigError, match=r"^unknown key model\.kNeighbors; valid keys in \[model\]: algorithm, "
    ):
        load_config(REPO_ROOT / "conf" / "fit.toml", FIT_SCHEMA, ["model.kNeighbors=3"])


def test_fit_schema_suggests_the_param_a_misspelled_key_meant():
    with pytest.raises(
        ConfigError, match=r"^unknown key model\.numshards \(did you mean model\.numShards\?\)"
    ):
        load_config(REPO_ROOT / "conf" / "fit.toml", FIT_SCHEMA, ["model.numshards=4"])


def test_score_schema_accepts_search_time_params_only():
    config = load_config(
        REPO_ROOT / "conf" / "score.toml", SCORE_SCHEMA, ["model.k=3", "model.weights=distance"]
    )
    assert (config["model"]["k"], config["model"]["weights"]) == (3, "distance")
    with pytest.raises(ConfigError, match=r"^unknown key model\.metric; "):
        load_config(REPO_ROOT / "conf" / "score.toml", SCORE_SCHEMA, ["model.metric=cosine"])
