"""TOML job configs: load, apply ``--set key=value`` overrides, validate against a schema.

A schema is a plain dict: each key maps to a :class:`Field` (one value of a TOML type), a
:class:`ParamField` (one value checked by a converter, such as an estimator Param's), a nested
dict (a TOML table with fixed keys) or an :class:`OpenTable` (a table whose keys are free, such
as Spark settings). Validation rejects unknown keys, wrong types and values outside
``choices`` with a :class:`ConfigError` that names the dotted key, the rule and the value, and
fills in defaults, so jobs read a complete nested dict. This module imports neither pyspark nor
knnspark, so it is tested without Spark; the jobs' schemas, whose model keys are derived from
the estimators' Params, live in :mod:`knnspark.app.schemas`.

Examples
--------
>>> schema = {"model": {"k": Field(int, default=5), "path": Field(str)}}
>>> apply_overrides({"model": {"path": "out"}}, ["model.k=7"], schema)
{'model': {'path': 'out', 'k': 7}}
>>> validate({"model": {"path": "out"}}, schema)
{'model': {'k': 5, 'path': 'out'}}
"""

from __future__ import annotations

import copy
import difflib
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

__all__ = [
    "PROFILE_SCHEMA",
    "REQUIRED",
    "ConfigError",
    "Field",
    "OpenTable",
    "ParamField",
    "apply_overrides",
    "load_config",
    "parse_override",
    "validate",
]


class ConfigError(ValueError):
    """A job config that cannot be used: bad TOML, unknown key, wrong type or value."""


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: Default of a :class:`Field` that must be given.
REQUIRED: Any = _Required()

# Human names of the accepted value types, for error messages.
_TYPE_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean"}


@dataclass(frozen=True)
class Field:
    """One config value.

    Parameters
    ----------
    type : {str, int, float, bool, list}
        Expected type. ``float`` also accepts integers; ``list`` means a list of
        ``item_type`` values.
    default : object, default REQUIRED
        Value used when the key is absent; ``None`` makes the key optional (TOML has no null,
        so leaving the key out is how a user asks for the library default).
    choices : tuple of str, optional
        Allowed values, checked after the type.
    item_type : {str, int, float}, default str
        Type of the items of a ``list``.
    """

    type: type
    default: Any = REQUIRED
    choices: tuple[str, ...] | None = None
    item_type: type = str

    def describe(self) -> str:
        """Name of the expected type, as error messages print it."""
        if self.type is list:
            return f"list of {_TYPE_NAMES[self.item_type]}s"
        name = _TYPE_NAMES[self.type]
        return f"{name} or absent" if self.default is None else name


@dataclass(frozen=True)
class OpenTable:
    """A table with free keys whose values are strings, numbers or booleans (``[spark.conf]``)."""


@dataclass(frozen=True)
class ParamField:
    """One optional value checked by a converter: how an estimator Param becomes a config key.

    Absent, it is ``default`` (None): the job leaves the param unset and the library's default
    applies.

    Parameters
    ----------
    name : str
        The param's name, as the converter's messages start (``"Param k must be ..."``).
    convert : callable
        Returns the value to use or raises ``TypeError`` / ``ValueError``: a Spark ML Param's
        ``typeConverter``.
    doc : str
        What the value is, and its rule (the Param's doc), for messages.
    boolean : bool, default False
        Whether a TOML boolean is a value of this key. Python counts ``True`` as the integer 1,
        and some converters accept it, but ``seed = true`` is a typo.
    default : object, default None
        Value of an absent key.
    """

    name: str
    convert: Callable[[Any], Any]
    doc: str
    boolean: bool = False
    default: Any = None

    def describe(self) -> str:
        """What the key takes, as error messages print it."""
        return self.doc

    def check(self, key: str, value: Any) -> Any:
        """The converted value of ``key``, or a :class:`ConfigError` naming the key and rule."""
        try:
            converted = self.convert(value)
        except (TypeError, ValueError) as exc:
            message = str(exc)
            prefix = f"Param {self.name} "
            if message.startswith(prefix):  # knnspark's converters state the rule and the value
                raise ConfigError(f"{key}: {message[len(prefix) :]}") from None
            raise _wrong(key, self.doc.rstrip("."), value) from None
        if isinstance(value, bool) and not self.boolean:
            raise _wrong(key, self.doc.rstrip("."), value)
        return converted

    def accepts(self, value: Any) -> bool:
        """Whether :meth:`check` takes ``value``."""
        try:
            self.check("", value)
        except ConfigError:
            return False
        return True


Schema = Mapping[str, Union[Field, ParamField, OpenTable, "Schema"]]


def _type_name(value: Any) -> str:
    if isinstance(value, dict):
        return "table"
    if isinstance(value, list):
        return "list"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _wrong(key: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"{key}: expected {expected}, got {value!r} ({_type_name(value)})")


def _check_field(key: str, field: Field, value: Any) -> Any:
    # bool is a subclass of int in Python, but `k = true` is a typo, not the number 1.
    is_bool = isinstance(value, bool)
    if field.type is list:
        # A list of numbers takes integers too (TOML's 1 for 1.0).
        item_types = (int, float) if field.item_type is float else field.item_type
        if not isinstance(value, list) or not all(
            isinstance(v, item_types) and not isinstance(v, bool) for v in value
        ):
            raise _wrong(key, field.describe(), value)
        if field.item_type is float:
            value = [float(v) for v in value]
    elif field.type is float:
        if is_bool or not isinstance(value, (int, float)):
            raise _wrong(key, field.describe(), value)
        value = float(value)
    elif field.type is int:
        if is_bool or not isinstance(value, int):
            raise _wrong(key, field.describe(), value)
    elif not isinstance(value, field.type):
        raise _wrong(key, field.describe(), value)
    if field.choices is not None and value not in field.choices:
        options = ", ".join(repr(c) for c in field.choices)
        raise ConfigError(f"{key}: expected one of {options}, got {value!r}")
    return value


def _check_open_table(key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _wrong(key, "table", value)
    for name, item in value.items():
        if not isinstance(item, (str, int, float, bool)):
            raise _wrong(f"{key}.{name}", "string, number or boolean", item)
    return dict(value)


def _unknown_key(prefix: str, name: str, schema: Schema) -> ConfigError:
    key = f"{prefix}{name}"
    # A typo seldom changes the first letter; without this rule kNeighbors would be offered
    # neighborsCol, a param of another meaning.
    same_start = [key for key in schema if key[:1].lower() == name[:1].lower()]
    hint = difflib.get_close_matches(name, same_start, n=1)
    did_you_mean = f" (did you mean {prefix}{hint[0]}?)" if hint else ""
    where = f"[{prefix[:-1]}]" if prefix else "the top level"
    # Case-blind order, so the Param M sits among the m's rather than before every key.
    valid = ", ".join(sorted(schema, key=str.lower))
    return ConfigError(f"unknown key {key}{did_you_mean}; valid keys in {where}: {valid}")


def validate(config: Mapping[str, Any], schema: Schema, _prefix: str = "") -> dict[str, Any]:
    """Check a config against a schema and fill in defaults.

    Parameters
    ----------
    config : mapping
        Parsed TOML (nested dicts).
    schema : mapping
        Declared keys, see the module docstring.

    Returns
    -------
    dict
        A new nested dict with every declared key; absent optional keys hold their default.

    Raises
    ------
    ConfigError
        If a key is unknown or required and missing, or a value has the wrong type, is not
        one of the field's choices or is refused by a :class:`ParamField`'s converter.
    """
    for name in config:
        if name not in schema:
            raise _unknown_key(_prefix, name, schema)
    result: dict[str, Any] = {}
    for name, spec in schema.items():
        key = f"{_prefix}{name}"
        if isinstance(spec, Field):
            if name in config:
                result[name] = _check_field(key, spec, config[name])
            elif spec.default is REQUIRED:
                raise ConfigError(f"{key}: required {spec.describe()} is missing")
            else:
                result[name] = copy.deepcopy(spec.default)
        elif isinstance(spec, ParamField):
            value = config.get(name)
            result[name] = spec.default if value is None else spec.check(key, value)
        elif isinstance(spec, OpenTable):
            result[name] = _check_open_table(key, config.get(name, {}))
        else:
            table = config.get(name, {})
            if not isinstance(table, dict):
                raise _wrong(key, "table", table)
            result[name] = validate(table, spec, f"{key}.")
    return result


def parse_override(text: str) -> tuple[str, Any]:
    """Split one ``--set key=value`` into the dotted key and its value.

    The value is read as a TOML value when it is one (``7`` is an integer, ``true`` a boolean,
    ``"x"`` a string, ``["a", "b"]`` a list); anything else, such as ``local[2]`` or a bare
    word, is kept as a string.

    Parameters
    ----------
    text : str
        ``key=value``; only the first ``=`` separates them.

    Returns
    -------
    tuple of (str, object)
        The dotted key and the parsed value.

    Examples
    --------
    >>> parse_override("model.k=7"), parse_override("spark.master=local[2]")
    (('model.k', 7), ('spark.master', 'local[2]'))
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    try:
        return key, tomllib.loads(f"value = {raw.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        return key, raw.strip()


def _key_path(key: str, schema: Schema) -> list[str]:
    """Split a dotted key, keeping what follows an OpenTable whole (``spark.conf.spark.x.y``)."""
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        spec = schema.get(part) if isinstance(schema, Mapping) else None
        if isinstance(spec, OpenTable):
            return [*parts[: i + 1], ".".join(parts[i + 1 :])]
        if not isinstance(spec, Mapping):
            break
        schema = spec
    return parts


def apply_overrides(
    config: Mapping[str, Any], overrides: Iterable[str], schema: Schema
) -> dict[str, Any]:
    """Return a copy of ``config`` with ``--set key=value`` overrides applied, in order.

    Parameters
    ----------
    config : mapping
        Parsed TOML.
    overrides : iterable of str
        ``key=value`` strings, see :func:`parse_override`.
    schema : mapping
        Used to split keys of open tables, and to keep the raw text of a value meant for a
        string (``--set input.path=2024`` is the path "2024", not an integer; so is
        ``--set model.idCol=2024``, since the param ``idCol`` takes no integer).

    Returns
    -------
    dict
        The updated config, not yet validated.
    """
    result = copy.deepcopy(dict(config))
    for text in overrides:
        key, value = parse_override(text)
        *parents, leaf = _key_path(key, schema)
        table, spec = result, schema
        for depth, part in enumerate(parents):
            if not isinstance(table.setdefault(part, {}), dict):
                prefix = ".".join(parents[: depth + 1])
                raise ConfigError(f"--set {text}: {prefix} is a value, not a table")
            table = table[part]
            spec = spec.get(part, {}) if isinstance(spec, Mapping) else {}
        field = spec.get(leaf) if isinstance(spec, Mapping) else None
        raw = text.partition("=")[2].strip()
        if isinstance(field, Field) and field.type is str and not isinstance(value, str):
            value = raw
        elif isinstance(field, ParamField) and not field.accepts(value) and field.accepts(raw):
            value = raw
        table[leaf] = value
    return result


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc


def _merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with the values of ``top`` laid over it, table by table."""
    result = copy.deepcopy(dict(base))
    for name, value in top.items():
        if isinstance(value, dict) and isinstance(result.get(name), dict):
            result[name] = _merge(result[name], value)
        else:
            result[name] = copy.deepcopy(value)
    return result


def load_config(
    path: str | Path,
    schema: Schema,
    overrides: Iterable[str] = (),
    profile: str | Path | None = None,
) -> dict[str, Any]:
    """Read a TOML config, lay a Spark profile over it, apply overrides and validate it.

    Parameters
    ----------
    path : str or Path
        TOML file.
    schema : mapping
        The job's schema, e.g. :data:`knnspark.app.schemas.FIT_SCHEMA`.
    overrides : iterable of str, default ()
        ``key=value`` strings from ``--set``, applied after the file and the profile.
    profile : str or Path, optional
        TOML file with only a ``[spark]`` table (see :data:`PROFILE_SCHEMA`), such as
        ``conf/spark-cluster.toml``; its values replace the job file's, key by key.

    Returns
    -------
    dict
        The validated config with defaults filled in.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ConfigError
        If a file is not valid TOML or the config does not match the schema.
    """
    raw = _read_toml(Path(path))
    if profile is not None:
        layer = _read_toml(Path(profile))
        try:
            validate(layer, PROFILE_SCHEMA)
        except ConfigError as exc:
            raise ConfigError(f"profile {profile}: {exc}") from None
        raw = _merge(raw, layer)
    return validate(apply_overrides(raw, overrides, schema), schema)


#: Schema of a Spark profile (``conf/spark-local.toml``, ``conf/spark-cluster.toml``): a
#: ``[spark]`` table laid over a job config's by ``load_config(..., profile=...)``.
PROFILE_SCHEMA: Schema = {
    "spark": {
        "app_name": Field(str, default=None),
        "master": Field(str, default=None),
        "remote": Field(str, default=None),
        "conf": OpenTable(),
    },
}
