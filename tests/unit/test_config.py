"""Job config loading, --set overrides and validation (no Spark)."""

from __future__ import annotations

from pathlib import Path

import pytest

from knnspark.app.config import (
    ConfigError,
    Field,
    OpenTable,
    ParamField,
    apply_overrides,
    load_config,
    parse_override,
    validate,
)

SCHEMA = {
    "spark": {"master": Field(str, default="local[*]"), "conf": OpenTable()},
    "model": {
        "task": Field(str, default="classification", choices=("classification", "regression")),
        "path": Field(str),
        "k": Field(int, default=None),
        "p": Field(float, default=None),
        "overwrite": Field(bool, default=True),
        "columns": Field(list, default=[]),
    },
}


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("model.k=7", ("model.k", 7)),
        ("model.p=2.5", ("model.p", 2.5)),
        ("model.overwrite=false", ("model.overwrite", False)),
        ('model.path="out dir"', ("model.path", "out dir")),
        ("model.path=bare", ("model.path", "bare")),
        ("spark.master=local[2]", ("spark.master", "local[2]")),
        ('model.columns=["a", "b"]', ("model.columns", ["a", "b"])),
        ("model.path=a=b", ("model.path", "a=b")),
        (" model.k = 3 ", ("model.k", 3)),
    ],
)
def test_parse_override_reads_toml_values_or_keeps_text(text, expected):
    assert parse_override(text) == expected


@pytest.mark.parametrize("text", ["model.k", "=7", ""])
def test_parse_override_rejects_text_without_key_and_value(text):
    with pytest.raises(ConfigError, match=r"--set expects key=value, got"):
        parse_override(text)


def test_validate_fills_defaults_and_converts_integers_to_float():
    config = validate({"model": {"path": "m", "p": 3}}, SCHEMA)
    assert config == {
        "spark": {"master": "local[*]", "conf": {}},
        "model": {
            "task": "classification",
            "path": "m",
            "k": None,
            "p": 3.0,
            "overwrite": True,
            "columns": [],
        },
    }
    assert isinstance(config["model"]["p"], float)


def test_validate_does_not_share_mutable_defaults():
    first = validate({"model": {"path": "m"}}, SCHEMA)
    first["model"]["columns"].append("x")
    assert validate({"model": {"path": "m"}}, SCHEMA)["model"]["columns"] == []


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            {"path": "m", "k": "seven"},
            r"^model\.k: expected integer or absent, got 'seven' \(string\)$",
        ),
        ({"path": "m", "k": 2.5}, r"^model\.k: expected integer or absent, got 2\.5 \(number\)$"),
        ({"path": "m", "k": True}, r"^model\.k: expected integer or absent, got True \(boolean\)$"),
        ({"path": "m", "p": "x"}, r"^model\.p: expected number or absent, got 'x' \(string\)$"),
        ({"path": 3}, r"^model\.path: expected string, got 3 \(integer\)$"),
        ({"path": "m", "overwrite": "yes"}, r"^model\.overwrite: expected boolean, got 'yes'"),
        ({"path": "m", "columns": "a"}, r"^model\.columns: expected list of strings, got 'a'"),
        ({"path": "m", "columns": [1]}, r"^model\.columns: expected list of strings, got \[1\]"),
        ({"path": {"a": 1}}, r"^model\.path: expected string, got \{'a': 1\} \(table\)$"),
    ],
)
def test_validate_names_key_expected_type_and_value(model, message):
    with pytest.raises(ConfigError, match=message):
        validate({"model": model}, SCHEMA)


def test_validate_rejects_value_outside_choices():
    with pytest.raises(
        ConfigError,
        match=r"^model\.task: expected one of 'classification', 'regression', got 'clustering'$",
    ):
        validate({"model": {"path": "m", "task": "clustering"}}, SCHEMA)


def test_validate_rejects_unknown_key_and_suggests_the_close_one():
    with pytest.raises(
        ConfigError,
        match=r"^unknown key model\.kk \(did you mean model\.k\?\); valid keys in \[model\]: ",
    ):
        validate({"model": {"path": "m", "kk": 3}}, SCHEMA)


def test_validate_rejects_unknown_top_level_table():
    with pytest.raises(ConfigError, match=r"^unknown key outptu; valid keys in the top level: "):
        validate({"model": {"path": "m"}, "outptu": {}}, SCHEMA)


def test_validate_rejects_missing_required_key():
    with pytest.raises(ConfigError, match=r"^model\.path: required string is missing$"):
        validate({"model": {}}, SCHEMA)


def test_validate_rejects_value_where_table_expected():
    with pytest.raises(ConfigError, match=r"^model: expected table, got 5 \(integer\)$"):
        validate({"model": 5}, SCHEMA)


def test_open_table_accepts_any_key_with_scalar_values():
    config = validate({"model": {"path": "m"}, "spark": {"conf": {"spark.a.b": 4}}}, SCHEMA)
    assert config["spark"]["conf"] == {"spark.a.b": 4}
    with pytest.raises(
        ConfigError, match=r"^spark\.conf\.spark\.x: expected string, number or boolean, got \[1\]"
    ):
        validate({"model": {"path": "m"}, "spark": {"conf": {"spark.x": [1]}}}, SCHEMA)


def test_apply_overrides_sets_nested_keys_in_order_without_touching_input():
    raw = {"model": {"path": "m", "k": 3}}
    result = apply_overrides(raw, ["model.k=5", "model.k=7", "spark.master=local[2]"], SCHEMA)
    assert result == {"model": {"path": "m", "k": 7}, "spark": {"master": "local[2]"}}
    assert raw == {"model": {"path": "m", "k": 3}}


def test_apply_overrides_keeps_dotted_keys_of_open_tables_whole():
    result = apply_overrides({}, ["spark.conf.spark.sql.shuffle.partitions=4"], SCHEMA)
    assert result == {"spark": {"conf": {"spark.sql.shuffle.partitions": 4}}}


def test_apply_overrides_keeps_raw_text_for_string_fields():
    # "2024" and "true" parse as TOML, but model.path is a string field.
    result = apply_overrides({}, ["model.path=2024", "model.task=true"], SCHEMA)
    assert result == {"model": {"path": "2024", "task": "true"}}


def test_apply_overrides_rejects_key_below_a_value():
    with pytest.raises(
        ConfigError, match=r"^--set model\.k\.x=1: model\.k is a value, not a table$"
    ):
        apply_overrides({"model": {"k": 3}}, ["model.k.x=1"], SCHEMA)


def test_override_of_wrong_type_fails_validation_with_the_key():
    with pytest.raises(ConfigError, match=r"^model\.k: expected integer or absent, got 'seven'"):
        validate(apply_overrides({"model": {"path": "m"}}, ["model.k=seven"], SCHEMA), SCHEMA)


def test_override_of_unknown_key_fails_validation():
    with pytest.raises(ConfigError, match=r"^unknown key model\.neighbours; valid keys in"):
        validate(apply_overrides({"model": {"path": "m"}}, ["model.neighbours=3"], SCHEMA), SCHEMA)


def test_load_config_reads_file_then_overrides(tmp_path):
    path = write_toml(tmp_path, '[model]\npath = "m"\nk = 3\n')
    config = load_config(path, SCHEMA, ["model.k=9"])
    assert config["model"]["k"] == 9
    assert config["model"]["path"] == "m"


def test_load_config_reports_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"^config file not found: .*nope\.toml$"):
        load_config(tmp_path / "nope.toml", SCHEMA)


def test_load_config_reports_invalid_toml_with_the_path(tmp_path):
    path = write_toml(tmp_path, "[model\npath = 1\n")
    with pytest.raises(ConfigError, match=r"job\.toml: invalid TOML: "):
        load_config(path, SCHEMA)


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def _int_at_least_one(value):
    # A converter in the style of knnspark's Params: its message names the param.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Param k must be an integer >= 1; got {value!r}")
    return value


def _column(value):
    if not isinstance(value, str):
        raise TypeError(f"Could not convert {value} to string")
    return value


PARAM_SCHEMA = {
    "model": {
        "path": Field(str),
        "k": ParamField("k", _int_at_least_one, "number of neighbors, >= 1"),
        "seed": ParamField("seed", int, "random seed."),
        "col": ParamField("col", _column, "a column"),
    }
}


def test_param_field_converts_and_is_none_when_absent():
    config = validate({"model": {"path": "m", "k": 3}}, PARAM_SCHEMA)
    assert config == {"model": {"path": "m", "k": 3, "seed": None, "col": None}}


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"k": 0}, r"^model\.k: must be an integer >= 1; got 0$"),
        ({"k": True}, r"^model\.k: must be an integer >= 1; got True$"),
        ({"seed": "x"}, r"^model\.seed: expected random seed, got 'x' \(string\)$"),
        # int(True) is 1, but a boolean is no seed.
        ({"seed": True}, r"^model\.seed: expected random seed, got True \(boolean\)$"),
    ],
)
def test_param_field_refuses_with_the_key_and_the_rule(model, message):
    with pytest.raises(ConfigError, match=message):
        validate({"model": {"path": "m", **model}}, PARAM_SCHEMA)


def test_param_field_override_keeps_raw_text_only_where_the_value_is_refused():
    result = apply_overrides({}, ["model.col=2024", "model.k=7", "model.seed=x"], PARAM_SCHEMA)
    assert result == {"model": {"col": "2024", "k": 7, "seed": "x"}}
