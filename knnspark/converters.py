"""Type converters of the knnspark Params: each checks one rule and names the param.

A converter raises ``TypeError`` for a value of the wrong type and ``ValueError`` for one
that breaks the rule, with a message that names the param, the rule and the value received
(``Param k must be an integer >= 1; got 0``). Spark ML runs them in setters, constructors and
``copy(extra)``, so a bad value fails before any Spark job.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "class_weights",
    "int_at_least",
    "is_number",
    "one_of",
    "optional_one_of",
    "optional_positive_float",
    "optional_string",
    "positive_float",
]


def is_number(value: Any) -> bool:
    """Python and numpy reals (``np.int64(3)``, ``np.float32(0.5)``), not booleans."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def int_at_least(name: str, low: int, optional: bool = False) -> Callable[[Any], Any]:
    """A type converter that accepts integers (or integral floats) >= low, numpy's too."""

    def convert(value: Any) -> Any:
        if value is None and optional:
            return None
        if not is_number(value) or (
            not isinstance(value, numbers.Integral) and not float(value).is_integer()
        ):
            raise TypeError(f"Param {name} must be an integer >= {low}; got {value!r}")
        value = int(value)
        if value < low:
            raise ValueError(f"Param {name} must be an integer >= {low}; got {value}")
        return value

    return convert


def one_of(name: str, options: tuple[str, ...]) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if not isinstance(value, str) or value not in options:
            raise ValueError(
                f"Param {name} must be one of {', '.join(repr(o) for o in options)}; got {value!r}"
            )
        return value

    return convert


def optional_one_of(name: str, options: tuple[str, ...]) -> Callable[[Any], Any]:
    check = one_of(name, options)

    def convert(value: Any) -> Any:
        return None if value is None else check(value)

    return convert


def positive_float(name: str) -> Callable[[Any], float]:
    def convert(value: Any) -> float:
        if not is_number(value):
            raise TypeError(f"Param {name} must be a finite number > 0; got {value!r}")
        value = float(value)
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"Param {name} must be a finite number > 0; got {value!r}")
        return value

    return convert


def optional_positive_float(name: str) -> Callable[[Any], Any]:
    """Like :func:`positive_float`, with None allowed (the param is unset)."""
    check = positive_float(name)

    def convert(value: Any) -> Any:
        return None if value is None else check(value)

    return convert


def optional_string(name: str) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise TypeError(f"Param {name} must be a non-empty column name or None; got {value!r}")
        return value

    return convert


def class_weights(value: Any) -> Any:
    """None, "balanced", or a mapping class value -> weight (> 0, finite)."""
    if value is None or value == "balanced":
        return value
    if not isinstance(value, dict):
        raise TypeError(
            f"Param classWeights must be 'balanced', a mapping class value -> weight, or None; "
            f"got {value!r}"
        )
    converted = {}
    for key, weight in value.items():
        try:
            cls, w = float(key), float(weight)
        except (TypeError, ValueError):
            raise TypeError(
                f"Param classWeights must map numeric class values to numeric weights; "
                f"got {key!r}: {weight!r}"
            ) from None
        if not math.isfinite(w) or w <= 0:
            raise ValueError(
                f"Param classWeights must give every class a finite weight > 0; "
                f"got {key!r}: {weight!r}"
            )
        converted[cls] = w
    return converted
