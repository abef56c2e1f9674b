"""Imputation and standardization fitted on the training data, stored in the model.

Both are computed in distributed passes on the valid training rows — the
imputation statistics with Spark SQL aggregates over the exploded vectors
(NaN entries ignored), the scaling statistics with Spark's own
``Summarizer`` — and applied as one Spark SQL expression, identically to the
training rows and to every query (``transform`` and ``kneighbors``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pyspark.ml.functions import array_to_vector
from pyspark.ml.stat import Summarizer
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from knnspark.errors import InvalidInputError

__all__ = ["IMPUTE_STRATEGIES", "STANDARDIZATIONS", "Preprocessing", "fit_preprocessing"]

#: Valid values of ``standardization``.
STANDARDIZATIONS = ("none", "zscore", "minmax")
#: Valid values of ``imputeStrategy`` (besides None).
IMPUTE_STRATEGIES = ("mean", "median")


@dataclass(frozen=True)
class Preprocessing:
    """Fitted per-feature statistics; the identity when nothing is configured.

    ``fill`` replaces NaN (and null) entries; then each feature becomes
    ``(x - shift) / scale``.  ``zscore`` uses the mean and the sample standard
    deviation (as Spark's ``StandardScaler``), ``minmax`` the minimum and the
    range; a constant feature gets scale 1, so it maps to 0 instead of
    dividing by zero.
    """

    impute_strategy: str | None = None
    fill: tuple[float, ...] = field(default=())
    standardization: str = "none"
    shift: tuple[float, ...] = field(default=())
    scale: tuple[float, ...] = field(default=())

    @property
    def imputes(self) -> bool:
        return self.impute_strategy is not None

    @property
    def is_identity(self) -> bool:
        return not self.imputes and self.standardization == "none"

    def apply(self, features: Column) -> Column:
        """An ``array<float>`` expression: ``features`` imputed and scaled."""
        if self.is_identity:
            return features
        fill = F.array(*[F.lit(float(v)) for v in self.fill]) if self.imputes else None
        shift = F.array(*[F.lit(float(v)) for v in self.shift]) if self.shift else None
        scale = F.array(*[F.lit(float(v)) for v in self.scale]) if self.scale else None

        def one(x: Column, i: Column) -> Column:
            value = x.cast("double")
            if fill is not None:
                value = F.when(x.isNull() | F.isnan(x), fill[i]).otherwise(value)
            if shift is not None:
                value = (value - shift[i]) / scale[i]
            return value

        # Rows of another length are left alone: the search reports them.
        return F.transform(features, one).cast(T.ArrayType(T.FloatType()))

    def to_json(self) -> dict:
        return {
            "impute_strategy": self.impute_strategy,
            "fill": list(self.fill),
            "standardization": self.standardization,
            "shift": list(self.shift),
            "scale": list(self.scale),
        }

    @classmethod
    def from_json(cls, data: dict | None) -> Preprocessing:
        if not data:
            return cls()
        return cls(
            impute_strategy=data.get("impute_strategy"),
            fill=tuple(float(v) for v in data.get("fill", ())),
            standardization=data.get("standardization", "none"),
            shift=tuple(float(v) for v in data.get("shift", ())),
            scale=tuple(float(v) for v in data.get("scale", ())),
        )


def fit_preprocessing(
    rows: DataFrame,
    features_col: str,
    n_features: int,
    impute_strategy: str | None,
    standardization: str,
) -> Preprocessing:
    """Statistics of the valid training rows (column ``features``, ``array<float>``)."""
    fill: tuple[float, ...] = ()
    if impute_strategy is not None:
        fill = _imputation_values(rows, features_col, n_features, impute_strategy)
    partial = Preprocessing(impute_strategy=impute_strategy, fill=fill)
    if standardization == "none":
        return partial
    vectors = rows.select(array_to_vector(partial.apply(F.col("features"))).alias("v"))
    metrics = ["mean", "std"] if standardization == "zscore" else ["min", "max"]
    summary = vectors.select(Summarizer.metrics(*metrics).summary(F.col("v")).alias("s"))
    stats = summary.first()["s"]
    if standardization == "zscore":
        shift = [float(v) for v in stats["mean"]]
        scale = [_safe_scale(float(v)) for v in stats["std"]]
    else:
        shift = [float(v) for v in stats["min"]]
        scale = [
            _safe_scale(float(hi) - float(lo))
            for lo, hi in zip(stats["min"], stats["max"], strict=True)
        ]
    return Preprocessing(impute_strategy, fill, standardization, tuple(shift), tuple(scale))


def _safe_scale(value: float) -> float:
    # A constant feature (scale 0), or one row only (no sample deviation): keep it as is.
    return value if math.isfinite(value) and value > 0 else 1.0


def _imputation_values(
    rows: DataFrame, features_col: str, n_features: int, strategy: str
) -> tuple[float, ...]:
    entries = rows.select(F.posexplode("features").alias("pos", "x")).filter(
        F.col("x").isNotNull() & ~F.isnan("x")
    )
    agg = F.mean("x") if strategy == "mean" else F.median("x")
    found = {
        int(r["pos"]): float(r["v"]) for r in entries.groupBy("pos").agg(agg.alias("v")).collect()
    }
    missing = [i for i in range(n_features) if i not in found]
    if missing:
        raise InvalidInputError(
            f"Column '{features_col}' (param featuresCol): feature {missing[0]} is NaN in every "
            f"training row, so imputeStrategy={strategy!r} has no value to fill it with."
        )
    return tuple(found[i] for i in range(n_features))
