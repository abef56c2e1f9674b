"""Spark ML Params shared by the knnspark estimators and models.

Each Estimator/Model pair shares one params mixin, as ``pyspark.ml`` does
(``_LogisticRegressionParams``): the Estimator sets them, ``fit`` copies them to
the Model, and the Model can still change the search-time ones (``k``,
``weights``, output columns) without refitting.

The mixins here compose the Params declared by concern in this package's modules:
:mod:`~knnspark.params.search` (``k``, ``metric``, ``p``, ``algorithm``, weighting),
:mod:`~knnspark.params.index` (shards, partitioning, HNSW graphs),
:mod:`~knnspark.params.preprocessing` (invalid rows, NaN, scaling) and
:mod:`~knnspark.params.columns` (input and output columns).
"""

from __future__ import annotations

from typing import Any

from pyspark.ml.param.shared import (
    HasLabelCol,
    HasPredictionCol,
    HasProbabilityCol,
    HasRawPredictionCol,
    HasSeed,
)

from knnspark.kernels.predict import check_bandwidth, check_weighting
from knnspark.params.columns import (
    _InputColumnParams,
    _NeighborListColParams,
    _NeighborsColParams,
    _ShardsVisitedColParams,
)
from knnspark.params.index import (
    DEFAULT_MAX_BROADCAST_BYTES,
    DEFAULT_MAX_SHARD_BYTES,
    PARTITIONINGS,
    _HNSWParams,
    _ShardingParams,
)
from knnspark.params.preprocessing import HANDLE_INVALID_OPTIONS, _PreprocessingParams
from knnspark.params.search import (
    ALGORITHMS,
    METRICS,
    _ClassWeightParams,
    _SearchParams,
    _WeightingParams,
)

__all__ = [
    "ALGORITHMS",
    "DEFAULT_MAX_BROADCAST_BYTES",
    "DEFAULT_MAX_SHARD_BYTES",
    "HANDLE_INVALID_OPTIONS",
    "METRICS",
    "PARTITIONINGS",
]


class _KNNSharedParams(
    _SearchParams,
    _ShardingParams,
    _HNSWParams,
    _PreprocessingParams,
    _InputColumnParams,
    _ShardsVisitedColParams,
    HasSeed,
):
    """Params common to every knnspark estimator and model."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._setDefault(seed=0)

    def _check_params(self) -> None:
        """Rules that tie params together (weights, bandwidth and metric), before any job."""
        if self.hasParam("weights"):
            check_weighting(self.getMetric(), self.getOrDefault("weights"))
            check_bandwidth(self.getOrDefault("weights"), self.getOrDefault("bandwidth"))

    def setSeed(self, value: int) -> Any:
        return self._set(seed=value)


class _KNNSupervisedParams(
    _WeightingParams, _KNNSharedParams, _NeighborsColParams, HasLabelCol, HasPredictionCol
):
    """Params of the classifier and the regressor."""

    def setLabelCol(self, value: str) -> Any:
        return self._set(labelCol=value)

    def setPredictionCol(self, value: str) -> Any:
        return self._set(predictionCol=value)


class _KNNClassifierParams(
    _KNNSupervisedParams, _ClassWeightParams, HasProbabilityCol, HasRawPredictionCol
):
    """Params of :class:`KNNClassifier` and :class:`KNNClassificationModel`."""

    def setRawPredictionCol(self, value: str) -> Any:
        return self._set(rawPredictionCol=value)

    def setProbabilityCol(self, value: str) -> Any:
        return self._set(probabilityCol=value)


class _KNNRegressorParams(_KNNSupervisedParams):
    """Params of :class:`KNNRegressor` and :class:`KNNRegressionModel`."""


class _NearestNeighborsParams(_KNNSharedParams, _NeighborListColParams):
    """Params of :class:`NearestNeighbors` and :class:`NearestNeighborsModel`."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._setDefault(k=10)
