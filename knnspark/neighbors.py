"""k-nearest-neighbor search without labels."""

from __future__ import annotations

from typing import Any

from pyspark import keyword_only
from pyspark.sql import DataFrame

from knnspark.base import _KNNEstimator, _KNNModel
from knnspark.index import TrainingIndex
from knnspark.params import (
    DEFAULT_MAX_BROADCAST_BYTES,
    DEFAULT_MAX_SHARD_BYTES,
    _NearestNeighborsParams,
)
from knnspark.partition import NEIGHBORS

__all__ = ["NearestNeighbors", "NearestNeighborsModel"]


class NearestNeighbors(_KNNEstimator, _NearestNeighborsParams):
    """Index items for exact k-nearest-neighbor search.

    ``fit(items).kneighbors(queries)`` returns every column of ``queries`` plus
    ``neighbor_ids`` (``array<long>``) and ``distances`` (``array<double>``),
    nearest first.  Ids come from ``idCol`` (unique integers) or, when it is
    unset, number the items 0..n-1 in DataFrame order.

    Examples
    --------
    >>> items = spark.createDataFrame([(7, [0.0, 0.0]), (8, [5.0, 5.0])], ["id", "features"])
    >>> model = NearestNeighbors(k=1, idCol="id").fit(items)
    >>> queries = spark.createDataFrame([([4.0, 4.0],)], ["features"])
    >>> model.kneighbors(queries).first()["neighbor_ids"]
    [8]
    """

    _task = NEIGHBORS

    @keyword_only
    def __init__(
        self,
        *,
        k: int = 10,
        featuresCol: str = "features",
        idCol: str | None = None,
        groupCol: str | None = None,
        metric: str = "euclidean",
        p: float = 2.0,
        algorithm: str = "auto",
        numShards: int | None = None,
        seed: int = 0,
        handleInvalid: str = "error",
        neighborIdsCol: str = "neighbor_ids",
        distancesCol: str = "distances",
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
    def setParams(self, **kwargs: Any) -> NearestNeighbors:
        """Set any of the constructor's params; returns ``self``."""
        return self._set(**self._input_kwargs)

    def _create_model(self, index: TrainingIndex) -> NearestNeighborsModel:
        return NearestNeighborsModel(index)


class NearestNeighborsModel(_KNNModel, _NearestNeighborsParams):
    """A fitted :class:`NearestNeighbors`; ``transform`` is :meth:`kneighbors`."""

    def kneighbors(
        self,
        dataset: DataFrame,
        neighborIdsCol: str | None = None,
        distancesCol: str | None = None,
        excludeSelf: bool = False,
    ) -> DataFrame:
        return super().kneighbors(
            dataset,
            neighborIdsCol or self.getNeighborIdsCol(),
            distancesCol or self.getDistancesCol(),
            excludeSelf=excludeSelf,
        )

    def _transform(self, dataset: DataFrame) -> DataFrame:
        return self.kneighbors(dataset)
