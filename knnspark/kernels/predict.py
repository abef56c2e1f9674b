"""Turn neighbor lists into votes (classification) and averages (regression).

The weighting follows scikit-learn's ``weights`` parameter, extended with the kernels of
nonparametric regression. :data:`WEIGHTINGS` is the one table of them (name -> function,
whether it needs the ``bandwidth`` h):

* ``"uniform"``: every neighbor weighs 1;
* ``"distance"``: ``1 / distance``; a query with an exact match (distance 0) gives all of its
  weight to the exact matches;
* ``"gaussian"``: ``exp(-d^2 / (2 h^2))``;
* ``"tricube"``: ``(1 - (d/h)^3)^3`` for ``d < h``, else 0;
* ``"epanechnikov"``: ``1 - (d/h)^2`` for ``d < h``, else 0.

A query whose neighbors all weigh 0 (every neighbor at ``d >= h`` under a compact kernel, a
gaussian that underflows, infinite distances) falls back to uniform weights, so it still gets
a prediction and probabilities that sum to 1. Every weighting but ``"uniform"`` needs
distances >= 0: metrics whose distances can be negative (``inner_product``, a similarity) are
refused by :func:`check_weighting`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from knnspark.kernels.distances import METRICS, get_metric

__all__ = [
    "WEIGHTINGS",
    "Weighting",
    "check_bandwidth",
    "check_weighting",
    "class_probabilities",
    "class_votes",
    "classify_neighbors",
    "get_weighting",
    "probabilities_from_votes",
    "resolve_class_weights",
    "neighbor_weights",
    "predict_from_probabilities",
    "weighted_average",
]


@dataclass(frozen=True)
class Weighting:
    """One value of the ``weights`` param.

    Attributes
    ----------
    name : str
    meaning : str
        The formula, as the docs show it.
    weigh : callable
        ``(dist of shape (n_queries, k), float64 >= 0, bandwidth or None) -> weights`` of
        the same shape; all-zero rows are handled by :func:`neighbor_weights`.
    needs_bandwidth : bool
        Whether the param ``bandwidth`` (h > 0) must be set.
    """

    name: str
    meaning: str
    weigh: Callable[[np.ndarray, float | None], np.ndarray]
    needs_bandwidth: bool = False

    @property
    def needs_nonnegative(self) -> bool:
        """Whether the weights mean anything only for distances >= 0 (all but uniform)."""
        return self.name != "uniform"


def _uniform(dist: np.ndarray, h: float | None) -> np.ndarray:
    return np.ones_like(dist)


def _inverse_distance(dist: np.ndarray, h: float | None) -> np.ndarray:
    exact = dist == 0.0
    with np.errstate(divide="ignore"):
        w = 1.0 / dist
    rows = exact.any(axis=1)
    w[rows] = exact[rows]
    return w


def _gaussian(dist: np.ndarray, h: float | None) -> np.ndarray:
    u = dist / h
    return np.exp(-0.5 * u * u)


def _tricube(dist: np.ndarray, h: float | None) -> np.ndarray:
    u = dist / h
    return np.where(u < 1.0, (1.0 - np.minimum(u, 1.0) ** 3) ** 3, 0.0)


def _epanechnikov(dist: np.ndarray, h: float | None) -> np.ndarray:
    u = dist / h
    return np.where(u < 1.0, 1.0 - np.minimum(u, 1.0) ** 2, 0.0)


#: Every value of the ``weights`` param, by name (the order the docs list them in).
WEIGHTINGS: dict[str, Weighting] = {
    w.name: w
    for w in (
        Weighting("uniform", "every neighbor weighs 1", _uniform),
        Weighting(
            "distance",
            "`1 / d`; an exact match (d = 0) takes all the weight",
            _inverse_distance,
        ),
        Weighting("gaussian", "`exp(-d^2 / (2 h^2))`", _gaussian, needs_bandwidth=True),
        Weighting("tricube", "`(1 - (d/h)^3)^3` for d < h, else 0", _tricube, needs_bandwidth=True),
        Weighting(
            "epanechnikov", "`1 - (d/h)^2` for d < h, else 0", _epanechnikov, needs_bandwidth=True
        ),
    )
}


def get_weighting(name: str) -> Weighting:
    """The table entry of ``name``; a ValueError naming the valid weightings otherwise."""
    try:
        return WEIGHTINGS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown weights {name!r}; expected one of {', '.join(repr(w) for w in WEIGHTINGS)}"
        ) from None


def check_bandwidth(weights: str, bandwidth: float | None) -> None:
    """Raise a ValueError when ``weights`` is a kernel and ``bandwidth`` is not set.

    Examples
    --------
    >>> check_bandwidth("gaussian", 0.5)
    >>> check_bandwidth("gaussian", None)
    Traceback (most recent call last):
    ...
    ValueError: Param bandwidth must be set to a finite number > 0 when weights='gaussian'; got None
    """
    if get_weighting(weights).needs_bandwidth and bandwidth is None:
        raise ValueError(
            f"Param bandwidth must be set to a finite number > 0 when weights={weights!r}; got None"
        )
    if bandwidth is not None and not (np.isfinite(bandwidth) and bandwidth > 0):
        raise ValueError(f"Param bandwidth must be a finite number > 0; got {bandwidth!r}")


def check_weighting(metric: str, weights: str) -> None:
    """Raise a ValueError when ``weights`` cannot be used with ``metric``.

    Every weighting but ``"uniform"`` is a function of a distance >= 0 (``1 / d``, or a
    kernel of ``d / h``); a metric whose distances can be negative (``nonnegative=False`` in
    :data:`knnspark.kernels.distances.METRICS`) would give negative weights and
    probabilities outside [0, 1].

    Examples
    --------
    >>> check_weighting("cosine", "distance")
    >>> check_weighting("inner_product", "distance")
    Traceback (most recent call last):
    ...
    ValueError: Param weights='distance' weighs neighbors by 1/distance, ...
    """
    weighting = get_weighting(weights)
    if not weighting.needs_nonnegative or get_metric(metric).nonnegative:
        return
    allowed = [name for name, m in METRICS.items() if m.nonnegative]
    how = "1/distance" if weights == "distance" else "a kernel of distance/bandwidth"
    raise ValueError(
        f"Param weights={weights!r} weighs neighbors by {how}, which needs distances "
        f">= 0; metric={metric!r} gives distances that can be negative. Use "
        f"weights='uniform', or one of the metrics {', '.join(allowed)} (for normalized "
        "embeddings, metric='cosine' ranks neighbors as inner_product does)."
    )


def neighbor_weights(dist: np.ndarray, weights: str, bandwidth: float | None = None) -> np.ndarray:
    """Weight of each neighbor; a row whose weights are all 0 gets uniform weights.

    Parameters
    ----------
    dist : ndarray of shape (n_queries, k)
    weights : str
        A name in :data:`WEIGHTINGS`.
    bandwidth : float, optional
        The kernels' h > 0 (required by the weightings that need it).

    Returns
    -------
    ndarray of shape (n_queries, k), float64

    Examples
    --------
    >>> neighbor_weights(np.array([[0.0, 2.0], [1.0, 4.0]]), "distance")
    array([[1.  , 0.  ],
           [1.  , 0.25]])
    >>> neighbor_weights(np.array([[0.5, 2.0], [3.0, 4.0]]), "epanechnikov", bandwidth=1.0)
    array([[0.75, 0.  ],
           [1.  , 1.  ]])
    """
    weighting = get_weighting(weights)
    check_bandwidth(weights, bandwidth)
    dist = np.asarray(dist, dtype=np.float64)
    if weighting.needs_nonnegative and np.any(dist < 0.0):
        # check_weighting refuses such metrics on the driver; never weigh a negative distance.
        raise ValueError(
            f"weights={weights!r} needs distances >= 0; got {float(dist.min())!r}. Use "
            "weights='uniform' with a metric whose distances can be negative."
        )
    w = weighting.weigh(dist, bandwidth)
    empty = ~(w > 0.0).any(axis=1)
    if empty.any():
        w[empty] = 1.0
    return w


def class_votes(
    neighbor_labels: np.ndarray,
    dist: np.ndarray,
    classes: np.ndarray,
    weights: str,
    class_weights: np.ndarray | None = None,
    bandwidth: float | None = None,
) -> np.ndarray:
    """Weighted votes of the neighbors for each class (the raw prediction).

    Parameters
    ----------
    neighbor_labels : ndarray of shape (n_queries, k)
        Label of each neighbor; every value must be in ``classes``.
    dist : ndarray of shape (n_queries, k)
    classes : ndarray of shape (n_classes,), sorted ascending
    weights : str
        A name in :data:`WEIGHTINGS`.
    class_weights : ndarray of shape (n_classes,), optional
        Multiplies the vote of each neighbor of that class.
    bandwidth : float, optional
        The kernel weightings' h.

    Returns
    -------
    ndarray of shape (n_queries, n_classes)
        Columns follow ``classes``.
    """
    n_queries, _ = neighbor_labels.shape
    n_classes = classes.shape[0]
    class_index = _class_index(neighbor_labels, classes)
    w = neighbor_weights(dist, weights, bandwidth)
    if class_weights is not None:
        w = w * np.asarray(class_weights, dtype=np.float64)[class_index]
    flat = (np.arange(n_queries)[:, None] * n_classes + class_index).ravel()
    totals = np.bincount(flat, weights=w.ravel(), minlength=n_queries * n_classes)
    return totals.reshape(n_queries, n_classes)


def _class_index(neighbor_labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Position of each label in ``classes``; a ValueError for a label not among them.

    Without the check, ``searchsorted`` would send a label past the last class to column
    ``n_classes``, which the flat bincount in :func:`class_votes` counts in the next row.
    """
    index = np.searchsorted(classes, neighbor_labels)
    found = index < classes.shape[0]
    found[found] = classes[index[found]] == neighbor_labels[found]
    if not found.all():
        bad = np.asarray(neighbor_labels)[~found]
        raise ValueError(
            f"Neighbor label {float(bad[0])!r} is not among the model's classes "
            f"{[float(c) for c in classes]} ({bad.size} such labels): the model's classes do "
            "not match its training labels (an edited or damaged model?)."
        )
    return index


def class_probabilities(
    neighbor_labels: np.ndarray,
    dist: np.ndarray,
    classes: np.ndarray,
    weights: str,
    class_weights: np.ndarray | None = None,
    bandwidth: float | None = None,
) -> np.ndarray:
    """Weighted share of each class among the neighbors: votes normalized per row.

    Returns
    -------
    ndarray of shape (n_queries, n_classes)
        Rows sum to 1 (a row whose votes are all 0 stays 0); columns follow ``classes``.
    """
    return probabilities_from_votes(
        class_votes(neighbor_labels, dist, classes, weights, class_weights, bandwidth)
    )


def probabilities_from_votes(votes: np.ndarray) -> np.ndarray:
    """Normalize raw votes into probabilities, as scikit-learn's ``predict_proba`` does."""
    norm = votes.sum(axis=1, keepdims=True)
    norm[norm == 0.0] = 1.0
    return votes / norm


def predict_from_probabilities(proba: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Most probable class per row; a tie goes to the smallest class value.

    Examples
    --------
    >>> predict_from_probabilities(np.array([[0.5, 0.5]]), np.array([3.0, 7.0]))
    array([3.])
    """
    return classes[np.argmax(proba, axis=1)].astype(np.float64)


def classify_neighbors(
    neighbor_labels: np.ndarray,
    dist: np.ndarray,
    classes: np.ndarray,
    weights: str,
    class_weights: np.ndarray | None = None,
    bandwidth: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A classifier's outputs from neighbor lists: votes, then probabilities, then the class.

    The one path from neighbors to a classification, shared by the models' search and the
    cross-validator's scoring, so both give the same answer.

    Parameters
    ----------
    neighbor_labels, dist : ndarray of shape (n_queries, k)
        Label (in ``classes``) and distance of each neighbor.
    classes : ndarray of shape (n_classes,), sorted ascending
    weights : str
        A name in :data:`WEIGHTINGS`.
    class_weights : ndarray of shape (n_classes,), optional
        Multiplies the vote of each neighbor of that class.
    bandwidth : float, optional
        The kernel weightings' h.

    Returns
    -------
    votes : ndarray of shape (n_queries, n_classes)
        Weighted votes per class (the raw prediction), see :func:`class_votes`.
    proba : ndarray of shape (n_queries, n_classes)
        ``votes`` normalized per row, see :func:`probabilities_from_votes`.
    prediction : ndarray of shape (n_queries,)
        The most probable class, see :func:`predict_from_probabilities`.

    Examples
    --------
    >>> votes, proba, prediction = classify_neighbors(
    ...     np.array([[1.0, 0.0, 1.0]]), np.ones((1, 3)), np.array([0.0, 1.0]), "uniform")
    >>> votes, prediction
    (array([[1., 2.]]), array([1.]))
    """
    votes = class_votes(neighbor_labels, dist, classes, weights, class_weights, bandwidth)
    proba = probabilities_from_votes(votes)
    return votes, proba, predict_from_probabilities(proba, classes)


def weighted_average(
    neighbor_labels: np.ndarray, dist: np.ndarray, weights: str, bandwidth: float | None = None
) -> np.ndarray:
    """Weighted mean of the neighbors' labels (regression).

    Parameters
    ----------
    neighbor_labels, dist : ndarray of shape (n_queries, k)
    weights : str
        A name in :data:`WEIGHTINGS`.

    Returns
    -------
    ndarray of shape (n_queries,)

    Examples
    --------
    >>> weighted_average(np.array([[1.0, 3.0]]), np.array([[1.0, 1.0]]), "uniform")
    array([2.])
    """
    w = neighbor_weights(dist, weights, bandwidth)
    return (neighbor_labels * w).sum(axis=1) / w.sum(axis=1)


def resolve_class_weights(
    class_weights: dict | str | None, classes: np.ndarray, counts: np.ndarray
) -> np.ndarray | None:
    """Per-class vote weights aligned with ``classes``.

    Parameters
    ----------
    class_weights : dict, "balanced" or None
        A mapping class value -> weight (classes left out weigh 1), or
        ``"balanced"``: ``n_samples / (n_classes * count)``, as scikit-learn
        defines it.  None means unweighted.
    classes : ndarray of shape (n_classes,)
    counts : ndarray of shape (n_classes,)
        Training rows per class.

    Returns
    -------
    ndarray of shape (n_classes,) or None

    Examples
    --------
    >>> resolve_class_weights("balanced", np.array([0.0, 1.0]), np.array([3, 1]))
    array([0.66666667, 2.        ])
    """
    if class_weights is None:
        return None
    if isinstance(class_weights, str):
        if class_weights != "balanced":
            raise ValueError(
                f"Param classWeights must be 'balanced' or a mapping; got {class_weights!r}"
            )
        counts = np.asarray(counts, dtype=np.float64)
        return counts.sum() / (len(classes) * counts)
    weights = np.ones(len(classes))
    index = {float(c): i for i, c in enumerate(classes)}
    for value, weight in class_weights.items():
        if float(value) not in index:
            raise ValueError(
                f"Param classWeights names class {value!r}, which is not among the training "
                f"classes {[float(c) for c in classes]}"
            )
        weights[index[float(value)]] = float(weight)
    return weights
