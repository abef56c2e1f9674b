"""The Spark side of ``metric="mahalanobis"``: fit the whitening, apply it as one expression.

:func:`fit_whitening` computes the training rows' covariance in one distributed pass (each
partition reduces its rows to a :class:`~knnspark.kernels.covariance.CovariancePartial` in a
``mapInArrow``; the driver merges one small row per partition) and returns the whitening
``x -> W x - b`` (``b = W mean``) of :func:`knnspark.kernels.covariance.whitening`.
:func:`whitening_expr` applies it to a features column in Spark SQL, computed in double, for
training rows and every query alike.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from knnspark.errors import InvalidInputError
from knnspark.kernels.covariance import (
    CovariancePartial,
    merge_covariance_partials,
    whitening,
)

__all__ = ["COVARIANCE_PARTIAL_SCHEMA", "fit_whitening", "whitening_expr"]

#: One row per partition: its rows, their mean and centred scatter matrix (row-major, d * d).
COVARIANCE_PARTIAL_SCHEMA = T.StructType(
    [
        T.StructField("n", T.LongType(), False),
        T.StructField("mean", T.ArrayType(T.DoubleType(), False), False),
        T.StructField("scatter", T.ArrayType(T.DoubleType(), False), False),
    ]
)
_ARROW_SCHEMA = pa.schema(
    [
        pa.field("n", pa.int64(), False),
        pa.field("mean", pa.list_(pa.field("element", pa.float64(), False)), False),
        pa.field("scatter", pa.list_(pa.field("element", pa.float64(), False)), False),
    ]
)


def _partials_fn(n_features: int):
    """mapInArrow function: a partition's rows (column ``features``) -> one partial row."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        parts = []
        for batch in batches:
            values = batch.column("features").flatten().to_numpy(zero_copy_only=False)
            block = np.asarray(values, dtype=np.float64).reshape(batch.num_rows, n_features)
            parts.append(CovariancePartial.of(block))
        parts = [p for p in parts if p.n]
        if not parts:
            return
        merged = merge_covariance_partials(parts)
        yield pa.RecordBatch.from_arrays(
            [
                pa.array([merged.n], pa.int64()),
                pa.array([merged.mean.tolist()], _ARROW_SCHEMA.field("mean").type),
                pa.array([merged.scatter.ravel().tolist()], _ARROW_SCHEMA.field("scatter").type),
            ],
            schema=_ARROW_SCHEMA,
        )

    return run


def fit_whitening(
    features: DataFrame, n_features: int, features_col: str
) -> tuple[np.ndarray, np.ndarray]:
    """``(W, b)`` of the rows of ``features`` (one ``array<float>`` column ``features``).

    Raises
    ------
    InvalidInputError
        When the covariance cannot be inverted (see :func:`whitening`).
    """
    rows = features.mapInArrow(_partials_fn(n_features), COVARIANCE_PARTIAL_SCHEMA).collect()
    parts = [
        CovariancePartial(
            int(r["n"]),
            np.asarray(r["mean"], dtype=np.float64),
            np.asarray(r["scatter"], dtype=np.float64).reshape(n_features, n_features),
        )
        for r in rows
    ]
    merged = merge_covariance_partials(parts)
    try:
        matrix = whitening(merged, features_col)
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from None
    return matrix, matrix @ merged.mean


def whitening_expr(values: Column, matrix: list[list[float]], bias: list[float]) -> Column:
    """``W x - b`` of each row of ``values`` (an array column), as ``array<double>``.

    Rows of another length than ``W``'s are left alone: the search reports them.
    """
    w = F.lit(matrix)
    b = F.lit(bias)
    x = values.cast(T.ArrayType(T.DoubleType()))

    def coordinate(row: Column, i: Column) -> Column:
        dot = F.aggregate(F.zip_with(row, x, lambda a, v: a * v), F.lit(0.0), lambda s, t: s + t)
        return dot - b[i]

    return F.when(F.size(x) == len(bias), F.transform(w, coordinate)).otherwise(x)
