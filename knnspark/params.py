"""Spark ML Params shared by the knnspark estimators and models.

Each Estimator/Model pair shares one params mixin, as ``pyspark.ml`` does
(``_LogisticRegressionParams``): the Estimator sets them, ``fit`` copies them to
the Model, and the Model can still change the search-time ones (``k``,
``weights``, output columns) without refitting.
"""

from __future__ import annotations

from typing import Any

from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import (
    HasFeaturesCol,
    HasHandleInvalid,
    HasLabelCol,
    HasPredictionCol,
    HasProbabilityCol,
    HasRawPredictionCol,
    HasSeed,
)

from knnspark import converters as conv
from knnspark.kernels.distances import EXACT_METRICS, get_metric, hnsw_metrics
from knnspark.kernels.kinds import SHARD_KINDS
from knnspark.kernels.predict import WEIGHTINGS, check_bandwidth, check_weighting
from knnspark.preprocessing import IMPUTE_STRATEGIES, STANDARDIZATIONS

__all__ = [
    "ALGORITHMS",
    "DEFAULT_MAX_BROADCAST_BYTES",
    "HANDLE_INVALID_OPTIONS",
    "METRICS",
    "PARTITIONINGS",
]

#: Valid values of ``algorithm``: "auto" or an index kind.
ALGORITHMS = ("auto", *SHARD_KINDS)
#: Valid values of ``metric``.
METRICS = EXACT_METRICS
#: Valid values of ``handleInvalid``.
HANDLE_INVALID_OPTIONS = ("error", "skip", "keep")
#: Default of ``maxBroadcastBytes``: 256 MiB of training features, ids, labels and graphs.
DEFAULT_MAX_BROADCAST_BYTES = 256 * 1024 * 1024
#: Valid values of ``partitioning``: how ``fit`` assigns training rows to shards.
PARTITIONINGS = ("hash", "kmeans")
#: Default of ``maxShardBytes``: 1 GiB of HNSW graph per shard.
DEFAULT_MAX_SHARD_BYTES = 1024 * 1024 * 1024


class _KNNSharedParams(HasFeaturesCol, HasSeed, HasHandleInvalid):
    """Params common to every knnspark estimator and model."""

    k: Param[int] = Param(
        Params._dummy(),
        "k",
        "number of neighbors, an integer >= 1 and <= the number of training rows",
        typeConverter=conv.int_at_least("k", 1),
    )
    metric: Param[str] = Param(
        Params._dummy(),
        "metric",
        "distance metric, one of " + ", ".join(METRICS) + " (as scikit-learn defines them)",
        typeConverter=conv.one_of("metric", METRICS),
    )
    p: Param[float] = Param(
        Params._dummy(),
        "p",
        "power of the minkowski metric, a finite number > 0 (used only when metric='minkowski')",
        typeConverter=conv.positive_float("p"),
    )
    algorithm: Param[str] = Param(
        Params._dummy(),
        "algorithm",
        "search algorithm: 'brute' (exact), 'hnsw' (approximate, per-shard HNSW graphs; "
        "metrics " + ", ".join(hnsw_metrics()) + ") or 'auto' (HNSW when the training set is "
        "large enough for the graphs to pay off, see knnspark.sizing.choose_algorithm)",
        typeConverter=conv.one_of("algorithm", ALGORITHMS),
    )
    numShards: Param[int] = Param(
        Params._dummy(),
        "numShards",
        "number of training shards, an integer >= 1, or None for the cluster's default "
        "parallelism (on Spark Connect: spark.default.parallelism if set, else "
        "spark.sql.shuffle.partitions capped at 32)",
        typeConverter=conv.int_at_least("numShards", 1, optional=True),
    )
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
    maxBroadcastBytes: Param[int] = Param(
        Params._dummy(),
        "maxBroadcastBytes",
        "largest training set (features, ids and labels, in bytes, an integer >= 0) that is "
        "broadcast to every executor; a larger one is searched by the shard-major path. "
        f"Default {DEFAULT_MAX_BROADCAST_BYTES} (256 MiB)",
        typeConverter=conv.int_at_least("maxBroadcastBytes", 0),
    )

    M: Param[int] = Param(
        Params._dummy(),
        "M",
        "HNSW: links per node, an integer >= 2 (hnswlib's M); more links, better recall, "
        "more memory",
        typeConverter=conv.int_at_least("M", 2),
    )
    efConstruction: Param[int] = Param(
        Params._dummy(),
        "efConstruction",
        "HNSW: search breadth while building, an integer >= 1",
        typeConverter=conv.int_at_least("efConstruction", 1),
    )
    ef: Param[int] = Param(
        Params._dummy(),
        "ef",
        "HNSW: search breadth per shard, an integer >= 1 (max(ef, k) is used); can be changed "
        "on a fitted model without rebuilding",
        typeConverter=conv.int_at_least("ef", 1),
    )
    standardization: Param[str] = Param(
        Params._dummy(),
        "standardization",
        "feature scaling fitted on the training data and applied to every query: 'none', "
        "'zscore' (mean 0, sample standard deviation 1) or 'minmax' (0..1); a constant "
        "feature maps to 0",
        typeConverter=conv.one_of("standardization", STANDARDIZATIONS),
    )
    imputeStrategy: Param[Any] = Param(
        Params._dummy(),
        "imputeStrategy",
        "NaN entries inside vectors: None (invalid input, see handleInvalid, except for "
        "metric='nan_euclidean', which skips them), 'mean' or 'median' (of the training rows, "
        "per feature, applied to training and query rows)",
        typeConverter=conv.optional_one_of("imputeStrategy", IMPUTE_STRATEGIES),
    )
    handleInvalid: Param[str] = Param(
        Params._dummy(),
        "handleInvalid",
        "invalid rows (null, empty, wrong-length or non-finite features; null labels): "
        "'error' raises, 'skip' drops training rows, 'keep' (or 'skip') at search time gives "
        "query rows null outputs",
        typeConverter=conv.one_of("handleInvalid", HANDLE_INVALID_OPTIONS),
    )
    maxShardBytes: Param[int] = Param(
        Params._dummy(),
        "maxShardBytes",
        "HNSW: largest graph one shard may take, in bytes (an integer >= 1); fit fails early "
        f"when a shard would not fit. Default {DEFAULT_MAX_SHARD_BYTES} (1 GiB)",
        typeConverter=conv.int_at_least("maxShardBytes", 1),
    )

    partitioning: Param[str] = Param(
        Params._dummy(),
        "partitioning",
        "how fit assigns training rows to shards: 'hash' (by id, even sizes) or 'kmeans' "
        "(balanced k-means on a sample: each shard holds nearby rows, so a search can skip "
        "shards, see nprobe)",
        typeConverter=conv.one_of("partitioning", PARTITIONINGS),
    )
    nprobe: Param[Any] = Param(
        Params._dummy(),
        "nprobe",
        "partitioning='kmeans' only: each query searches its nprobe nearest shards "
        "(approximate), an integer >= 1 and <= numShards; None (default) searches exactly, "
        "skipping the shards that cannot hold a neighbor (true metrics; other metrics visit "
        "every shard)",
        typeConverter=conv.int_at_least("nprobe", 1, optional=True),
    )
    shardsVisitedCol: Param[Any] = Param(
        Params._dummy(),
        "shardsVisitedCol",
        "optional output column (int): the number of shards each query searched (null for "
        "invalid rows); None (default) leaves it out",
        typeConverter=conv.optional_string("shardsVisitedCol"),
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._setDefault(
            k=5,
            partitioning="hash",
            nprobe=None,
            shardsVisitedCol=None,
            metric="euclidean",
            p=2.0,
            algorithm="auto",
            M=16,
            efConstruction=200,
            ef=64,
            maxShardBytes=DEFAULT_MAX_SHARD_BYTES,
            standardization="none",
            imputeStrategy=None,
            numShards=None,
            seed=0,
            handleInvalid="error",
            idCol=None,
            groupCol=None,
            maxBroadcastBytes=DEFAULT_MAX_BROADCAST_BYTES,
        )

    def _check_params(self) -> None:
        """Rules that tie params together (weights, bandwidth and metric), before any job."""
        if self.hasParam("weights"):
            check_weighting(self.getMetric(), self.getOrDefault("weights"))
            check_bandwidth(self.getOrDefault("weights"), self.getOrDefault("bandwidth"))

    def getK(self) -> int:
        return self.getOrDefault(self.k)

    def getPartitioning(self) -> str:
        return self.getOrDefault(self.partitioning)

    def setPartitioning(self, value: str) -> Any:
        return self._set(partitioning=value)

    def getNprobe(self) -> int | None:
        return self.getOrDefault(self.nprobe)

    def setNprobe(self, value: int | None) -> Any:
        return self._set(nprobe=value)

    def getShardsVisitedCol(self) -> str | None:
        return self.getOrDefault(self.shardsVisitedCol)

    def setShardsVisitedCol(self, value: str | None) -> Any:
        return self._set(shardsVisitedCol=value)

    def getMetric(self) -> str:
        return self.getOrDefault(self.metric)

    def getP(self) -> float:
        return self.getOrDefault(self.p)

    def getAlgorithm(self) -> str:
        return self.getOrDefault(self.algorithm)

    def getM(self) -> int:
        return self.getOrDefault(self.M)

    def getEfConstruction(self) -> int:
        return self.getOrDefault(self.efConstruction)

    def getEf(self) -> int:
        return self.getOrDefault(self.ef)

    def getStandardization(self) -> str:
        return self.getOrDefault(self.standardization)

    def getImputeStrategy(self) -> str | None:
        return self.getOrDefault(self.imputeStrategy)

    def setStandardization(self, value: str) -> Any:
        return self._set(standardization=value)

    def setImputeStrategy(self, value: str | None) -> Any:
        return self._set(imputeStrategy=value)

    def getMaxShardBytes(self) -> int:
        return self.getOrDefault(self.maxShardBytes)

    def setM(self, value: int) -> Any:
        return self._set(M=value)

    def setEfConstruction(self, value: int) -> Any:
        return self._set(efConstruction=value)

    def setEf(self, value: int) -> Any:
        return self._set(ef=value)

    def setMaxShardBytes(self, value: int) -> Any:
        return self._set(maxShardBytes=value)

    def getNumShards(self) -> int | None:
        return self.getOrDefault(self.numShards)

    def getIdCol(self) -> str | None:
        return self.getOrDefault(self.idCol)

    def getGroupCol(self) -> str | None:
        return self.getOrDefault(self.groupCol)

    def setGroupCol(self, value: str | None) -> Any:
        return self._set(groupCol=value)

    def getMaxBroadcastBytes(self) -> int:
        return self.getOrDefault(self.maxBroadcastBytes)

    def setK(self, value: int) -> Any:
        return self._set(k=value)

    def setFeaturesCol(self, value: str) -> Any:
        return self._set(featuresCol=value)

    def setMetric(self, value: str) -> Any:
        return self._set(metric=value)

    def setP(self, value: float) -> Any:
        return self._set(p=value)

    def setAlgorithm(self, value: str) -> Any:
        return self._set(algorithm=value)

    def setNumShards(self, value: int | None) -> Any:
        return self._set(numShards=value)

    def setSeed(self, value: int) -> Any:
        return self._set(seed=value)

    def setHandleInvalid(self, value: str) -> Any:
        return self._set(handleInvalid=value)

    def setIdCol(self, value: str | None) -> Any:
        return self._set(idCol=value)

    def setMaxBroadcastBytes(self, value: int) -> Any:
        return self._set(maxBroadcastBytes=value)


class _KNNSupervisedParams(_KNNSharedParams, HasLabelCol, HasPredictionCol):
    """Params of the classifier and the regressor."""

    weights: Param[str] = Param(
        Params._dummy(),
        "weights",
        "neighbor weighting, one of " + ", ".join(WEIGHTINGS) + " ('distance' weighs by "
        "1/distance, an exact match takes all the weight; the kernels gaussian, tricube and "
        "epanechnikov weigh by a function of distance/bandwidth and need the param bandwidth; "
        "a row whose neighbors all weigh 0 falls back to uniform weights; all but uniform need "
        "distances >= 0, so not "
        + " or ".join(m for m in METRICS if not get_metric(m).nonnegative)
        + ")",
        typeConverter=conv.one_of("weights", tuple(WEIGHTINGS)),
    )
    bandwidth: Param[Any] = Param(
        Params._dummy(),
        "bandwidth",
        "kernel bandwidth h of weights 'gaussian' (exp(-d^2 / (2 h^2))), 'tricube' "
        "((1 - (d/h)^3)^3 for d < h) and 'epanechnikov' (1 - (d/h)^2 for d < h): a finite "
        "number > 0, required by those weightings; None (default) otherwise",
        typeConverter=conv.optional_positive_float("bandwidth"),
    )
    neighborsCol: Param[str] = Param(
        Params._dummy(),
        "neighborsCol",
        "optional output column: each row's neighbors as array<struct<id, distance, label>>, "
        "nearest first; None (default) leaves it out",
        typeConverter=conv.optional_string("neighborsCol"),
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._setDefault(weights="uniform", bandwidth=None, neighborsCol=None)

    def getWeights(self) -> str:
        return self.getOrDefault(self.weights)

    def getBandwidth(self) -> float | None:
        return self.getOrDefault(self.bandwidth)

    def setBandwidth(self, value: float | None) -> Any:
        return self._set(bandwidth=value)

    def getNeighborsCol(self) -> str | None:
        return self.getOrDefault(self.neighborsCol)

    def setWeights(self, value: str) -> Any:
        if value in WEIGHTINGS:
            check_weighting(self.getMetric(), value)
        return self._set(weights=value)

    def setMetric(self, value: str) -> Any:
        if value in METRICS:
            check_weighting(value, self.getWeights())
        return self._set(metric=value)

    def setNeighborsCol(self, value: str | None) -> Any:
        return self._set(neighborsCol=value)

    def setLabelCol(self, value: str) -> Any:
        return self._set(labelCol=value)

    def setPredictionCol(self, value: str) -> Any:
        return self._set(predictionCol=value)


class _KNNClassifierParams(_KNNSupervisedParams, HasProbabilityCol, HasRawPredictionCol):
    """Params of :class:`KNNClassifier` and :class:`KNNClassificationModel`."""

    classWeights: Param[Any] = Param(
        Params._dummy(),
        "classWeights",
        "vote weight per class: a mapping class value -> weight > 0 (classes left out weigh "
        "1), 'balanced' (n_samples / (n_classes * class count), as in scikit-learn), or None "
        "(default, unweighted)",
        typeConverter=conv.class_weights,
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._setDefault(classWeights=None)

    def getClassWeights(self) -> Any:
        return self.getOrDefault(self.classWeights)

    def setClassWeights(self, value: Any) -> Any:
        return self._set(classWeights=value)

    def setRawPredictionCol(self, value: str) -> Any:
        return self._set(rawPredictionCol=value)

    def setProbabilityCol(self, value: str) -> Any:
        return self._set(probabilityCol=value)


class _KNNRegressorParams(_KNNSupervisedParams):
    """Params of :class:`KNNRegressor` and :class:`KNNRegressionModel`."""


class _NearestNeighborsParams(_KNNSharedParams):
    """Params of :class:`NearestNeighbors` and :class:`NearestNeighborsModel`."""

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
        self._setDefault(k=10, neighborIdsCol="neighbor_ids", distancesCol="distances")

    def getNeighborIdsCol(self) -> str:
        return self.getOrDefault(self.neighborIdsCol)

    def getDistancesCol(self) -> str:
        return self.getOrDefault(self.distancesCol)

    def setNeighborIdsCol(self, value: str) -> Any:
        return self._set(neighborIdsCol=value)

    def setDistancesCol(self, value: str) -> Any:
        return self._set(distancesCol=value)
