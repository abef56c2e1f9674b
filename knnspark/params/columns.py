"""Params that name columns: the training rows' ids and groups, and optional outputs."""

from __future__ import annotations

from typing import Any

from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasFeaturesCol

from knnspark import converters as conv

__all__: list[str] = []


class _InputColumnParams(HasFeaturesCol):
    """``featuresCol``, ``idCol`` and ``groupCol``: what ``fit`` and a search read."""

    idCol: Param[str] = Param(
        Params._dummy(),
        "idCol",
        "column of unique integer ids of the training rows, or None to number the rows "
        "0..n-1 in the order of the training DataFrame",
        typeConverter=conv.optional_string("idCol"),
    )
    groupCol: Param[str] = Param(
        Params._dummy(),
        "groupCol",
        "column of group values (string, integral, boolean or date): neighbors come only "
        "from training rows of the query's group; a query whose group has no training rows "
        "(or is null) gets no neighbors and a null prediction. None (default): no groups",
        typeConverter=conv.optional_string("groupCol"),
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._setDefault(idCol=None, groupCol=None)

    def setFeaturesCol(self, value: str) -> Any:
        return self._set(featuresCol=value)

    def getIdCol(self) -> str | None:
        return self.getOrDefault(self.idCol)

    def setIdCol(self, value: str | None) -> Any:
        return self._set(idCol=value)

    def getGroupCol(self) -> str | None:
        return self.getOrDefault(self.groupCol)

    def setGroupCol(self, value: str | None) -> Any:
        return self._set(groupCol=value)


class _ShardsVisitedColParams(Params):
    """``shardsVisitedCol``: every model's optional count of the shards a query searched."""

    shardsVisitedCol: Param[Any] = Param(
        Params._dummy(),
        "shardsVisitedCol",
        "optional output column (int): the number of shards each query searched (null for "
        "invalid rows); None (default) leaves it out",
        typeConverter=conv.optional_string("shardsVisitedCol"),
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._setDefault(shardsVisitedCol=None)

    def getShardsVisitedCol(self) -> str | None:
        return self.getOrDefault(self.shardsVisitedCol)

    def setShardsVisitedCol(self, value: str | None) -> Any:
        return self._set(shardsVisitedCol=value)


class _NeighborsColParams(Params):
    """``neighborsCol``: the classifier's and regressor's optional neighbor lists."""

    neighborsCol: Param[str] = Param(
        Params._dummy(),
        "neighborsCol",
        "optional output column: each row's neighbors as array<struct<id, distance, label>>, "
        "nearest first; None (default) leaves it out",
        typeConverter=conv.optional_string("neighborsCol"),
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._setDefault(neighborsCol=None)

    def getNeighborsCol(self) -> str | None:
        return self.getOrDefault(self.neighborsCol)

    def setNeighborsCol(self, value: str | None) -> Any:
        return self._set(neighborsCol=value)


class _NeighborListColParams(Params):
    """``neighborIdsCol`` and ``distancesCol``: the output columns of neighbor search."""

    neighborIdsCol: Param[str] = Param(
        Params._dummy(),
        "neighborIdsCol",
        "output column of neighbor ids, array<long>, nearest first",
        typeConverter=TypeConverters.toString,
    )
    distancesCol: Param[str] = Param(
        Params._dummy(),
        "distancesCol",
        "output column of neighbor distances, array<double>, ascending",
        typeConverter=TypeConverters.toString,
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._setDefault(neighborIdsCol="neighbor_ids", distancesCol="distances")

    def getNeighborIdsCol(self) -> str:
        return self.getOrDefault(self.neighborIdsCol)

    def setNeighborIdsCol(self, value: str) -> Any:
        return self._set(neighborIdsCol=value)

    def getDistancesCol(self) -> str:
        return self.getOrDefault(self.distancesCol)

    def setDistancesCol(self, value: str) -> Any:
        return self._set(distancesCol=value)
