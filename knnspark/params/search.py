"""Params of what a search finds: ``k``, the metric, the algorithm, how neighbors weigh."""

from __future__ import annotations

from typing import Any

from pyspark.ml.param import Param, Params

from knnspark import converters as conv
from knnspark.kernels.distances import EXACT_METRICS, get_metric, hnsw_metrics
from knnspark.kernels.kinds import SHARD_KINDS
from knnspark.kernels.predict import WEIGHTINGS, check_weighting

__all__ = ["ALGORITHMS", "METRICS"]

#: Valid values of ``algorithm``: "auto" or an index kind.
ALGORITHMS = ("auto", *SHARD_KINDS)
#: Valid values of ``metric``.
METRICS = EXACT_METRICS


class _SearchParams(Params):
    """``k``, ``metric``, ``p`` and ``algorithm``: every estimator and model has them."""

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

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._setDefault(k=5, metric="euclidean", p=2.0, algorithm="auto")

    def getK(self) -> int:
        return self.getOrDefault(self.k)

    def setK(self, value: int) -> Any:
        return self._set(k=value)

    def getMetric(self) -> str:
        return self.getOrDefault(self.metric)

    def setMetric(self, value: str) -> Any:
        return self._set(metric=value)

    def getP(self) -> float:
        return self.getOrDefault(self.p)

    def setP(self, value: float) -> Any:
        return self._set(p=value)

    def getAlgorithm(self) -> str:
        return self.getOrDefault(self.algorithm)

    def setAlgorithm(self, value: str) -> Any:
        return self._set(algorithm=value)


class _WeightingParams(Params):
    """``weights`` and ``bandwidth``: how the classifier's and regressor's neighbors weigh.

    Listed before :class:`_SearchParams` among a class's bases, so its ``setMetric`` (which
    checks the metric against the weighting) is the one used.
    """

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

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._setDefault(weights="uniform", bandwidth=None)

    def getWeights(self) -> str:
        return self.getOrDefault(self.weights)

    def setWeights(self, value: str) -> Any:
        if value in WEIGHTINGS:
            check_weighting(self.getOrDefault("metric"), value)
        return self._set(weights=value)

    def getBandwidth(self) -> float | None:
        return self.getOrDefault(self.bandwidth)

    def setBandwidth(self, value: float | None) -> Any:
        return self._set(bandwidth=value)

    def setMetric(self, value: str) -> Any:
        if value in METRICS:
            check_weighting(value, self.getWeights())
        return self._set(metric=value)


class _ClassWeightParams(Params):
    """``classWeights``: the classifier's vote weight per class."""

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
