"""k-nearest-neighbor outlier scores, as PyOD's ``KNN`` detector computes them.

A row's outlier score is its distance to its ``k`` nearest training rows, summarized by
``method``: the largest of the k distances, their mean or their median.  ``fit`` scores every
training row against the other training rows (each row left out of its own neighbors, matched
by id) in one distributed search, and keeps the ``(1 - contamination)`` quantile of those
scores as the threshold: a row whose score is above it is an outlier.
"""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa
from pyspark import keyword_only
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasPredictionCol
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from knnspark.base import _KNNEstimator, _KNNModel
from knnspark.converters import is_number, one_of
from knnspark.errors import InvalidInputError, ModelLoadError
from knnspark.index import EXACT_KIND, TrainingIndex
from knnspark.leave_out import leave_query_out
from knnspark.params import (
    DEFAULT_MAX_BROADCAST_BYTES,
    DEFAULT_MAX_SHARD_BYTES,
    _KNNSharedParams,
)
from knnspark.partition import NDIST_TMP, NEIGHBORS, NIDS_TMP
from knnspark.schema import check_id_column, check_output_columns, column
from knnspark.shard_codec import SHARD_ROWS_SCHEMA, shard_rows_table

__all__ = ["OUTLIER_METHODS", "KNNOutlierDetector", "KNNOutlierModel"]

#: Valid values of ``method``: how the k neighbor distances become one score (PyOD's names).
OUTLIER_METHODS = ("largest", "mean", "median")

#: The params the threshold depends on: a fitted model refuses to score with other values.
_FITTED_PARAMS = ("k", "method", "contamination", "metric", "p", "nprobe")


def _contamination(value: Any) -> float:
    """Share of outliers in the training data: a number in (0, 0.5], as in PyOD."""
    if not is_number(value):
        raise TypeError(f"Param contamination must be a number in (0, 0.5]; got {value!r}")
    value = float(value)
    if not (0.0 < value <= 0.5):
        raise ValueError(f"Param contamination must be a number in (0, 0.5]; got {value!r}")
    return value


class _KNNOutlierParams(_KNNSharedParams, HasPredictionCol):
    """Params of :class:`KNNOutlierDetector` and :class:`KNNOutlierModel`."""

    method: Param[str] = Param(
        Params._dummy(),
        "method",
        "outlier score from the k neighbor distances: 'largest' (the k-th distance), 'mean' "
        "or 'median' (as PyOD's KNN detector)",
        typeConverter=one_of("method", OUTLIER_METHODS),
    )
    contamination: Param[float] = Param(
        Params._dummy(),
        "contamination",
        "share of outliers in the training data, a number in (0, 0.5]: the threshold is the "
        "training scores' (1 - contamination) quantile (as PyOD's threshold_)",
        typeConverter=_contamination,
    )
    outlierScoreCol: Param[str] = Param(
        Params._dummy(),
        "outlierScoreCol",
        "output column of the outlier score (double; larger is more anomalous)",
        typeConverter=TypeConverters.toString,
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._setDefault(method="largest", contamination=0.1, outlierScoreCol="outlierScore")

    def getMethod(self) -> str:
        return self.getOrDefault(self.method)

    def getContamination(self) -> float:
        return self.getOrDefault(self.contamination)

    def getOutlierScoreCol(self) -> str:
        return self.getOrDefault(self.outlierScoreCol)

    def setMethod(self, value: str) -> Any:
        return self._set(method=value)

    def setContamination(self, value: float) -> Any:
        return self._set(contamination=value)

    def setOutlierScoreCol(self, value: str) -> Any:
        return self._set(outlierScoreCol=value)

    def setPredictionCol(self, value: str) -> Any:
        return self._set(predictionCol=value)


class KNNOutlierDetector(_KNNEstimator, _KNNOutlierParams):
    """Distance-based outlier detection with k nearest neighbors (PyOD's ``KNN``).

    ``fit`` indexes the training rows, scores each against its ``k`` nearest *other*
    training rows, and stores the threshold: the training scores' ``(1 - contamination)``
    quantile (linear interpolation, as ``numpy.percentile``).  The model's ``transform``
    adds ``outlierScoreCol`` (double) and ``predictionCol`` (1.0 when the score is above
    the threshold, else 0.0).  ``model.trainingScores()`` gives the training rows' own
    scores (PyOD's ``decision_scores_`` and ``labels_``) by id.

    Training rows are left out of their own neighbors by id: ``trainingScores`` always, and
    ``transform`` when ``idCol`` is set and the scored DataFrame has that column — a row whose
    id is a training row's id is taken to be that row and scored against the other rows.
    Without ``idCol`` the training rows are numbered 0..n-1 in DataFrame order, and
    ``transform`` scores every row against its k nearest training rows (a training row is
    then its own nearest neighbor, as with PyOD's ``decision_function``).

    Examples
    --------
    >>> train = spark.createDataFrame(
    ...     [([0.0],), ([0.1],), ([0.2],), ([0.3],), ([9.0],)], ["features"])
    >>> model = KNNOutlierDetector(k=2, contamination=0.2).fit(train)
    >>> [r["prediction"] for r in model.trainingScores().orderBy("id").collect()]
    [0.0, 0.0, 0.0, 0.0, 1.0]
    """

    _task = NEIGHBORS

    @keyword_only
    def __init__(
        self,
        *,
        k: int = 5,
        method: str = "largest",
        contamination: float = 0.1,
        featuresCol: str = "features",
        idCol: str | None = None,
        groupCol: str | None = None,
        outlierScoreCol: str = "outlierScore",
        predictionCol: str = "prediction",
        metric: str = "euclidean",
        p: float = 2.0,
        algorithm: str = "auto",
        numShards: int | None = None,
        seed: int = 0,
        handleInvalid: str = "error",
        maxBroadcastBytes: int = DEFAULT_MAX_BROADCAST_BYTES,
        M: int = 16,
        efConstruction: int = 200,
        ef: int = 64,
        maxShardBytes: int = DEFAULT_MAX_SHARD_BYTES,
        standardization: str = "none",
        imputeStrategy: str | None = None,
        partitioning: str = "hash",
        nprobe: int | None = None,
        shardsVisitedCol: str | None = None,
    ) -> None:
        super().__init__()
        self._set(**self._input_kwargs)

    @keyword_only
    def setParams(self, **kwargs: Any) -> KNNOutlierDetector:
        """Set any of the constructor's params; returns ``self``."""
        return self._set(**self._input_kwargs)

    def _create_model(self, index: TrainingIndex) -> KNNOutlierModel:
        return KNNOutlierModel(index)

    def _fit(self, dataset: DataFrame) -> KNNOutlierModel:
        if self.getGroupCol() is not None:
            raise InvalidInputError(
                f"KNNOutlierDetector does not support groupCol yet (got "
                f"{self.getGroupCol()!r}); score each group with a model of its own."
            )
        model = super()._fit(dataset)
        k, n_rows = model.getK(), model.numTrainingRows
        if k >= n_rows:
            raise InvalidInputError(
                f"Param k must be < the number of training rows ({n_rows}) for "
                f"KNNOutlierDetector, which scores each training row by its k nearest other "
                f"rows; got {k}."
            )
        scores = model._score_training_rows(dataset.sparkSession)
        quantile = 1.0 - model.getContamination()
        threshold = scores.agg(F.percentile("score", F.lit(quantile))).first()[0]
        model._state = {
            "threshold": float(threshold),
            **{name: model.getOrDefault(name) for name in _FITTED_PARAMS},
        }
        return model


class KNNOutlierModel(_KNNModel, _KNNOutlierParams):
    """A fitted :class:`KNNOutlierDetector`: its index and the outlier threshold.

    ``transform`` adds ``outlierScoreCol`` (double) and ``predictionCol`` (1.0 outlier,
    0.0 inlier); both are null for invalid rows under ``handleInvalid='keep'``.  ``k``,
    ``method``, ``contamination``, ``metric``, ``p`` and ``nprobe`` are fixed by the fit (the
    threshold depends on them): scoring with other values raises ``ValueError``; refit instead.
    """

    _task = NEIGHBORS

    def __init__(self, index: TrainingIndex | None = None) -> None:
        super().__init__(index)
        self._state: dict[str, Any] = {}

    @property
    def threshold(self) -> float:
        """Scores above this are outliers: the training scores' (1 - contamination) quantile."""
        if "threshold" not in self._state:
            raise ValueError("KNNOutlierModel has no threshold; fit or load it first.")
        return float(self._state["threshold"])

    def trainingScores(self) -> DataFrame:
        """The training rows' scores, each row left out of its own neighbors.

        Returns
        -------
        DataFrame
            ``id`` (long: ``idCol``'s values, or 0..n-1 in the training DataFrame's order),
            ``outlierScoreCol`` and ``predictionCol`` (PyOD's ``decision_scores_`` and
            ``labels_``), one row per training row.
        """
        spark = SparkSession.active()
        scored = self._score_training_rows(spark)
        return scored.select(
            "id",
            F.col("score").alias(self.getOutlierScoreCol()),
            self._label(F.col("score")).alias(self.getPredictionCol()),
        )

    def _transform(self, dataset: DataFrame) -> DataFrame:
        self._check_fitted_params()
        score_col, prediction_col = self.getOutlierScoreCol(), self.getPredictionCol()
        check_output_columns(
            dataset.schema, {"outlierScoreCol": score_col, "predictionCol": prediction_col}
        )
        id_col, k = self.getIdCol(), self.getK()
        leave_out = id_col is not None and id_col in dataset.columns
        if leave_out:
            check_id_column(dataset.schema, id_col)
        searched = self._search(dataset, NEIGHBORS, with_neighbors=False, k=k + leave_out)
        distances = F.col(NDIST_TMP)
        if leave_out:
            distances = leave_query_out(F.col(NIDS_TMP), distances, column(id_col), k)
        scored = searched.withColumn(score_col, _score(distances, self.getMethod(), k))
        return scored.withColumn(prediction_col, self._label(column(score_col))).drop(
            NIDS_TMP, NDIST_TMP
        )

    # ------------------------------------------------------------ internals

    def _label(self, score: Column) -> Column:
        return F.when(score.isNull(), F.lit(None).cast("double")).otherwise(
            (score > F.lit(self.threshold)).cast("double")
        )

    def _score_training_rows(self, spark: SparkSession) -> DataFrame:
        """``id, score`` of every training row, left out of its own neighbors, lazily."""
        k = self.getK()
        rows = _indexed_rows(spark, self.index)
        searched = self._search(
            rows, NEIGHBORS, with_neighbors=False, k=k + 1, features=F.col("features")
        )
        distances = leave_query_out(F.col(NIDS_TMP), F.col(NDIST_TMP), F.col("id"), k)
        return searched.select("id", _score(distances, self.getMethod(), k).alias("score"))

    def _check_fitted_params(self) -> None:
        fitted = self._state
        if "threshold" not in fitted:
            raise ValueError("KNNOutlierModel has no threshold; fit or load it first.")
        for name in _FITTED_PARAMS:
            value = self.getOrDefault(name)
            if name == "p" and self.getMetric() != "minkowski":
                continue
            if value != fitted[name]:
                raise ValueError(
                    f"Param {name} is {value!r} but this model's threshold was fitted with "
                    f"{name}={fitted[name]!r}; refit to change {', '.join(_FITTED_PARAMS)}."
                )

    def _fitted_state(self) -> dict[str, Any]:
        return dict(self._state)

    def _restore_fitted_state(self, state: dict[str, Any], path: str) -> None:
        state = {"nprobe": None, **state}  # saved before nprobe existed: fitted without it
        threshold = state.get("threshold")
        missing = [name for name in _FITTED_PARAMS if name not in state]
        if not is_number(threshold) or not math.isfinite(threshold) or missing:
            raise ModelLoadError(
                f"The model at '{path}' has damaged metadata: its fitted_state {state!r} lacks "
                "a finite outlier threshold or the params it was fitted with."
            )
        self._state = dict(state)


def _indexed_rows(spark: SparkSession, index: TrainingIndex) -> DataFrame:
    """``id`` and the indexed (already preprocessed) features of every training row."""
    if index.shard_rows is not None:
        rows = index.shard_rows
    else:
        tables = [
            shard_rows_table(no, shard)
            for no, shard in zip(index.shard_sizes, index.shards[EXACT_KIND], strict=True)
        ]
        rows = spark.createDataFrame(pa.concat_tables(tables).to_pandas(), SHARD_ROWS_SCHEMA)
    return rows.select("id", "features")


def _score(distances: Column, method: str, k: int) -> Column:
    """One score from k ascending distances: PyOD's ``_get_dist_by_method``."""
    if method == "largest":
        return F.element_at(distances, k)
    if method == "mean":
        return F.aggregate(distances, F.lit(0.0), lambda acc, d: acc + d) / F.lit(float(k))
    upper = F.element_at(distances, k // 2 + 1)
    if k % 2:
        return upper
    return (F.element_at(distances, k // 2) + upper) / F.lit(2.0)
