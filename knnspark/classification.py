"""k-nearest-neighbor classification."""

from __future__ import annotations

from typing import Any

import numpy as np
from pyspark import keyword_only
from pyspark.sql import DataFrame

from knnspark.base import _KNNEstimator, _KNNModel, classes_array
from knnspark.index import TrainingIndex
from knnspark.kernels.predict import resolve_class_weights
from knnspark.params import (
    DEFAULT_MAX_BROADCAST_BYTES,
    DEFAULT_MAX_SHARD_BYTES,
    _KNNClassifierParams,
)
from knnspark.partition import CLASSIFICATION

__all__ = ["KNNClassificationModel", "KNNClassifier"]


class KNNClassifier(_KNNEstimator, _KNNClassifierParams):
    """k-nearest-neighbor classifier: exact distributed search on Spark.

    Labels must be numeric with integer values (index string labels with
    ``StringIndexer`` first).  The model predicts the label value held by the
    weighted majority of the ``k`` nearest training rows; ``probability`` holds
    the weighted class shares, ordered by the sorted class values
    (``model.classes``).  Vote ties go to the smallest class value; distance
    ties to the smaller id.

    Examples
    --------
    >>> from pyspark.ml.linalg import Vectors
    >>> train = spark.createDataFrame(
    ...     [(Vectors.dense([0.0]), 0.0), (Vectors.dense([1.0]), 0.0),
    ...      (Vectors.dense([9.0]), 1.0), (Vectors.dense([10.0]), 1.0)],
    ...     ["features", "label"])
    >>> model = KNNClassifier(k=3).fit(train)
    >>> model.transform(train.limit(1)).select("prediction").first()[0]
    0.0
    """

    _task = CLASSIFICATION

    @keyword_only
    def __init__(
        self,
        *,
        k: int = 5,
        featuresCol: str = "features",
        labelCol: str = "label",
        predictionCol: str = "prediction",
        probabilityCol: str = "probability",
        rawPredictionCol: str = "rawPrediction",
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
        classWeights: dict | str | None = None,
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
    def setParams(self, **kwargs: Any) -> KNNClassifier:
        """Set any of the constructor's params; returns ``self``."""
        return self._set(**self._input_kwargs)

    def _create_model(self, index: TrainingIndex) -> KNNClassificationModel:
        return KNNClassificationModel(index)


class KNNClassificationModel(_KNNModel, _KNNClassifierParams):
    """A fitted :class:`KNNClassifier`.

    ``transform`` adds ``predictionCol`` (double), ``rawPredictionCol`` (vector
    of weighted votes) and ``probabilityCol`` (vector of the votes normalized),
    both ordered like :attr:`classes`, and, when ``neighborsCol`` is set, each row's
    neighbors as ``array<struct<id: long, distance: double, label: double>>``.
    Rows with invalid features under ``handleInvalid='keep'`` (or ``'skip'``)
    keep their place with null outputs: ``transform`` never drops a row.
    """

    _task = CLASSIFICATION

    @property
    def classes(self) -> np.ndarray:
        """Sorted class values; the order of the probability vector."""
        return classes_array(self.index)

    @property
    def numClasses(self) -> int:
        return int(self.index.classes.shape[0])

    @property
    def classCounts(self) -> np.ndarray:
        """Training rows per class, aligned with :attr:`classes`."""
        return self.index.class_counts.copy()

    def _class_weights(self) -> tuple[float, ...]:
        weights = resolve_class_weights(
            self.getClassWeights(), self.index.classes, self.index.class_counts
        )
        return () if weights is None else tuple(float(w) for w in weights)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        return self._supervised_transform(dataset, classify=True)
