"""Group the param maps of a grid by the neighbor search they need.

For KNN, ``k``, ``weights``, ``bandwidth`` and ``classWeights`` change only how the neighbor
lists become predictions (:data:`SCORING_PARAMS`). Param maps that differ only in those share
one fit and one neighbor search per fold, at the group's largest ``k``; each map of a group is
then a :class:`Candidate` scored from the group's neighbor lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyspark.ml import Estimator
from pyspark.ml.param import Param

from knnspark.classification import KNNClassifier
from knnspark.kernels.distances import get_metric

__all__ = ["SCORING_PARAMS", "Candidate", "SearchGroup", "describe_param_map", "group_param_maps"]

#: Params that change how neighbor lists are scored, not which neighbors are found.
SCORING_PARAMS = frozenset({"k", "weights", "bandwidth", "classWeights"})


@dataclass
class Candidate:
    """One param map, as the scoring of a group's neighbor lists sees it."""

    index: int  # position in estimatorParamMaps
    k: int
    weights: str
    class_weights: Any  # the param value; resolved once the fit knows the classes
    bandwidth: float | None = None  # the kernel weightings' h


@dataclass
class SearchGroup:
    """Param maps that share one fit and one neighbor search per fold."""

    fit_map: dict[Param, Any]  # estimator params of the group's fit, k = the largest k
    features_col: str
    outputs: dict[str, str]  # model output column -> kind ("prediction", ...)
    candidates: list[Candidate]

    @property
    def max_k(self) -> int:
        return max(c.k for c in self.candidates)


def describe_param_map(param_map: dict[Param, Any]) -> str:
    """A param map by param name, for messages: ``{k=3, weights='uniform'}``."""
    return "{" + ", ".join(f"{p.name}={_plain(v)!r}" for p, v in param_map.items()) + "}"


def _plain(value: Any) -> Any:
    """A numpy scalar (a grid from ``np.arange``) as the Python value it holds."""
    return value.item() if isinstance(value, np.generic) else value


def group_param_maps(estimator: Estimator, param_maps: Sequence[dict]) -> list[SearchGroup]:
    """Group the param maps that differ only in :data:`SCORING_PARAMS`.

    Two maps share a group when every other param of the estimator resolves to the same value;
    the group's fit uses those values with ``k`` set to the group's largest ``k`` (and no
    ``classWeights``, which are applied when scoring).
    """
    groups: dict[tuple[tuple[str, str], ...], SearchGroup] = {}
    for index, param_map in enumerate(param_maps):
        resolved = estimator.copy(param_map)
        try:
            resolved._check_params()
        except ValueError as exc:
            raise ValueError(
                f"estimatorParamMaps[{index}] {describe_param_map(param_map)}: {exc}"
            ) from None
        key = _search_key(resolved)
        candidate = Candidate(
            index=index,
            k=resolved.getK(),
            weights=resolved.getOrDefault("weights"),
            class_weights=(
                resolved.getOrDefault("classWeights") if resolved.hasParam("classWeights") else None
            ),
            bandwidth=resolved.getOrDefault("bandwidth"),
        )
        group = groups.get(key)
        if group is None:
            group = _new_group(resolved, param_map)
            groups[key] = group
        group.candidates.append(candidate)
    for group in groups.values():
        group.fit_map[estimator.getParam("k")] = group.max_k
        if estimator.hasParam("classWeights"):
            group.fit_map[estimator.getParam("classWeights")] = None
    return list(groups.values())


def _search_key(resolved: Estimator) -> tuple[tuple[str, str], ...]:
    """The params that decide the fit and the search: all but the scoring ones (and ``p``
    for a metric that does not read it)."""
    ignored = set(SCORING_PARAMS)
    if not get_metric(resolved.getMetric()).uses_p:
        ignored.add("p")
    return tuple(
        (p.name, repr(resolved.getOrDefault(p)))
        for p in resolved.params
        if p.name not in ignored and resolved.isDefined(p)
    )


def _new_group(resolved: Estimator, param_map: dict[Param, Any]) -> SearchGroup:
    """An empty group for the first map of its kind (``resolved``: the estimator with it)."""
    outputs = {resolved.getPredictionCol(): "prediction"}
    if isinstance(resolved, KNNClassifier):
        outputs[resolved.getRawPredictionCol()] = "rawPrediction"
        outputs[resolved.getProbabilityCol()] = "probability"
    fit_map = {p: v for p, v in param_map.items() if p.name not in SCORING_PARAMS}
    return SearchGroup(fit_map, resolved.getFeaturesCol(), outputs, [])
