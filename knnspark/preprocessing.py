"""Imputation and standardization fitted on the training data, stored in the model.

Both are computed in distributed passes on the valid training rows — the
imputation statistics with Spark SQL aggregates over the exploded vectors
(NaN entries ignored), the scaling statistics with Spark's own
``Summarizer`` — and applied as one Spark SQL expression, identically to the
training rows and to every query (``transform`` and ``kneighbors``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from pyspark.ml.functions import array_to_vector
from pyspark.ml.stat import Summarizer
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from knnspark.errors import InvalidInputError
from knnspark.kernels.distances import METRICS, get_metric
from knnspark.whitening import fit_whitening, whitening_expr

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
    dividing by zero.  Last, for ``metric="mahalanobis"``, rows become
    ``whiten @ x - bias`` (:mod:`knnspark.whitening`).
    """

    impute_strategy: str | None = None
    fill: tuple[float, ...] = field(default=())
    standardization: str = "none"
    shift: tuple[float, ...] = field(default=())
    scale: tuple[float, ...] = field(default=())
    #: Fitted for a metric that skips missing coordinates: training rows may hold NaN, and
    #: only such a metric may search them.
    keeps_nan: bool = False
    #: Whitening matrix W (rows of floats) and bias W @ mean, for metric="mahalanobis".
    whiten: tuple[tuple[float, ...], ...] = field(default=())
    bias: tuple[float, ...] = field(default=())

    @property
    def imputes(self) -> bool:
        return self.impute_strategy is not None

    @property
    def is_identity(self) -> bool:
        return not self.imputes and self.standardization == "none" and not self.whiten

    def apply(self, features: Column) -> Column:
        """An ``array<float>`` expression: ``features`` imputed, scaled and whitened."""
        if self.is_identity:
            return features
        if not self.imputes and not self.shift:
            matrix = [list(row) for row in self.whiten]
            whitened = whitening_expr(features, matrix, list(self.bias))
            return whitened.cast(T.ArrayType(T.FloatType()))
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
        values = F.transform(features, one)
        if self.whiten:
            values = whitening_expr(values, [list(row) for row in self.whiten], list(self.bias))
        return values.cast(T.ArrayType(T.FloatType()))

    def to_json(self) -> dict:
        return {
            "impute_strategy": self.impute_strategy,
            "fill": list(self.fill),
            "standardization": self.standardization,
            "shift": list(self.shift),
            "scale": list(self.scale),
            "keeps_nan": self.keeps_nan,
            "whiten": [list(row) for row in self.whiten],
            "bias": list(self.bias),
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
            keeps_nan=bool(data.get("keeps_nan", False)),
            whiten=tuple(tuple(float(v) for v in row) for row in data.get("whiten", ())),
            bias=tuple(float(v) for v in data.get("bias", ())),
        )

    def check_metric(self, metric: str) -> None:
        """Raise a ValueError when the index these statistics built cannot serve ``metric``."""
        if self.keeps_nan and not get_metric(metric).allows_nan:
            allowed = [name for name, m in METRICS.items() if m.allows_nan]
            raise ValueError(
                f"Param metric is {metric!r}, but this model was fitted for a metric that "
                f"skips missing coordinates, so its training rows may hold NaN; search it with "
                f"metric {' or '.join(repr(m) for m in allowed)}, or refit."
            )
        whitens = get_metric(metric).whitens
        if whitens != bool(self.whiten):
            fitted = "whitened with" if self.whiten else "not whitened with"
            raise ValueError(
                f"Param metric is {metric!r}, but this model's training rows were {fitted} "
                "the training covariance (metric 'mahalanobis' is fitted, not only searched); "
                f"refit with metric={metric!r}."
            )


def fit_preprocessing(
    rows: DataFrame,
    features_col: str,
    n_features: int,
    impute_strategy: str | None,
    standardization: str,
    keeps_nan: bool = False,
    whiten: bool = False,
) -> Preprocessing:
    """Statistics of the valid training rows (column ``features``, ``array<float>``).

    With ``keeps_nan`` (a metric that skips missing coordinates, no imputation) the scaling
    statistics skip NaN entries too; a feature missing in every row keeps shift 0, scale 1.
    """
    fill: tuple[float, ...] = ()
    if impute_strategy is not None:
        fill = _imputation_values(rows, features_col, n_features, impute_strategy)
    partial = Preprocessing(impute_strategy=impute_strategy, fill=fill, keeps_nan=keeps_nan)
    if standardization != "none":
        partial = _scaling(rows, partial, n_features, standardization)
    if not whiten:
        return partial
    scaled = rows.select(partial.apply(F.col("features")).alias("features"))
    matrix, bias = fit_whitening(scaled, n_features, features_col)
    return replace(
        partial, whiten=tuple(tuple(float(v) for v in r) for r in matrix), bias=tuple(bias)
    )


def _scaling(
    rows: DataFrame, partial: Preprocessing, n_features: int, standardization: str
) -> Preprocessing:
    """``partial`` plus the shift and scale of ``standardization``, fitted on ``rows``."""
    keeps_nan = partial.keeps_nan
    metrics = ["mean", "std"] if standardization == "zscore" else ["min", "max"]
    if keeps_nan:
        stats = _present_entry_stats(rows, n_features)
    else:
        vectors = rows.select(array_to_vector(partial.apply(F.col("features"))).alias("v"))
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
    return replace(partial, standardization=standardization, shift=tuple(shift), scale=tuple(scale))


def _present_entry_stats(rows: DataFrame, n_features: int) -> dict[str, list[float]]:
    """Per-feature mean, sample std, min and max over the entries that are not NaN or null."""
    entries = rows.select(F.posexplode("features").alias("pos", "x")).filter(
        F.col("x").isNotNull() & ~F.isnan("x")
    )
    found = {
        int(r["pos"]): r
        for r in entries.groupBy("pos")
        .agg(
            F.mean("x").alias("mean"),
            F.stddev_samp("x").alias("std"),
            F.min("x").alias("min"),
            F.max("x").alias("max"),
        )
        .collect()
    }
    stats: dict[str, list[float]] = {"mean": [], "std": [], "min": [], "max": []}
    for i in range(n_features):
        row = found.get(i)
        for key in stats:
            value = row[key] if row is not None else None
            stats[key].append(float(value) if value is not None else math.nan)
    for i, (lo, hi) in enumerate(zip(stats["min"], stats["max"], strict=True)):
        if math.isnan(lo) or math.isnan(hi):  # missing everywhere: leave the feature as is
            stats["mean"][i], stats["min"][i], stats["max"][i] = 0.0, 0.0, 0.0
    return stats


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
