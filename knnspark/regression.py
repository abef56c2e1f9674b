"""k-nearest-neighbor regression."""

from __future__ import annotations

from typing import Any

from pyspark import keyword_only
from pyspark.sql import DataFrame

from knnspark.base import _KNNEstimator, _KNNModel
from knnspark.index import TrainingIndex
from knnspark.params import (
    DEFAULT_MAX_BROADCAST_BYTES,
    DEFAULT_MAX_SHARD_BYTES,
    _KNNRegressorParams,
)
from knnspark.partition import REGRESSION

__all__ = ["KNNRegressionModel", "KNNRegressor"]


class KNNRegressor(_KNNEstimator, _KNNRegressorParams):
    """k-nearest-neighbor regressor: the (weighted) mean label of the ``k`` nearest rows.

    Examples
    --------
    >>> train = spark.createDataFrame(
    ...     [([0.0], 1.0), ([1.0], 3.0), ([10.0], 100.0)], ["features", "label"])
    >>> model = KNNRegressor(k=2).fit(train)
    >>> model.transform(spark.createDataFrame([([0.4],)], ["features"])).first()["prediction"]
    2.0
    """

    _task = REGRESSION

    @keyword_only
    def __init__(
        self,
        *,
        k: int = 5,
        featuresCol: str = "features",
        labelCol: str = "label",
        predictionCol: str = "prediction",
        weights: str = "uniform",
        bandwidth: float | None = None,
        metric: str = "euclidean",
        p: float = 2.0,
        algorithm: str = "auto",
        numShards: int | None = None,
        seed: int = 0,
        handleInvalid: str = "error",
        idCol: str | None = None,
        groupCol: str | None = None,
        neighborsCol: str | None = None,
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
    def setParams(self, **kwargs: Any) -> KNNRegressor:
        """Set any of the constructor's params; returns ``self``."""
        return self._set(**self._input_kwargs)

    def _create_model(self, index: TrainingIndex) -> KNNRegressionModel:
        return KNNRegressionModel(index)


class KNNRegressionModel(_KNNModel, _KNNRegressorParams):
    """A fitted :class:`KNNRegressor`; ``transform`` adds ``predictionCol`` (double)."""

    _task = REGRESSION

    def _transform(self, dataset: DataFrame) -> DataFrame:
        return self._supervised_transform(dataset, classify=False)
