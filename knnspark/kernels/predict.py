"""Turn neighbor lists into votes (classification) and averages (regression).

The weighting follows scikit-learn's ``weights`` parameter: ``"uniform"``
gives every neighbor weight 1; ``"distance"`` gives weight ``1 / distance``,
and a query with an exact match (distance 0) gives all of its weight to the
exact matches.  ``"distance"`` needs distances >= 0: metrics whose distances can be
negative (``inner_product``, a similarity) are refused by :func:`check_weighting`.
"""

from __future__ import annotations

import numpy as np

from knnspark.kernels.distances import METRICS, get_metric

__all__ = [
    "WEIGHTINGS",
    "check_weighting",
    "class_probabilities",
    "class_votes",
    "classify_neighbors",
    "probabilities_from_votes",
    "resolve_class_weights",
    "neighbor_weights",
    "predict_from_probabilities",
    "weighted_average",
]

#: Valid values of the ``weights`` param.
WEIGHTINGS = ("uniform", "distance")


def check_weighting(metric: str, weights: str) -> None:
    """Raise a ValueError when ``weights`` cannot be used with ``metric``.

    ``weights="distance"`` weighs a neighbor by ``1 / distance``, which means something only
    for distances >= 0; a metric whose distances can be negative (``nonnegative=False`` in
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
    if weights != "distance" or get_metric(metric).nonnegative:
        return
    allowed = [name for name, m in METRICS.items() if m.nonnegative]
    raise ValueError(
        f"Param weights='distance' weighs neighbors by 1/distance, which needs distances "
        f">= 0; metric={metric!r} gives distances that can be negative. Use "
        f"weights='uniform', or one of the metrics {', '.join(allowed)} (for normalized "
        "embeddings, metric='cosine' ranks neighbors as inner_product does)."
    )


def neighbor_weights(dist: np.ndarray, weights: str) -> np.ndarray:
    """Weight of each neighbor.

    Parameters
    ----------
    dist : ndarray of shape (n_queries, k)
    weights : {"uniform", "distance"}

    Returns
    -------
    ndarray of shape (n_queries, k), float64

    Examples
    --------
    >>> neighbor_weights(np.array([[0.0, 2.0], [1.0, 4.0]]), "distance")
    array([[1.  , 0.  ],
           [1.  , 0.25]])
    """
    dist = np.asarray(dist, dtype=np.float64)
    if weights == "uniform":
        return np.ones_like(dist)
    if weights != "distance":
        raise ValueError(f"Unknown weights {weights!r}; expected one of {WEIGHTINGS}")
    if np.any(dist < 0.0):
        # check_weighting refuses such metrics on the driver; never weigh by 1/negative.
        raise ValueError(
            f"weights='distance' needs distances >= 0; got {float(dist.min())!r}. Use "
            "weights='uniform' with a metric whose distances can be negative."
        )
    exact = dist == 0.0
    with np.errstate(divide="ignore"):
        w = 1.0 / dist
    rows = exact.any(axis=1)
    w[rows] = exact[rows]
    return w


def class_votes(
    neighbor_labels: np.ndarray,
    dist: np.ndarray,
    classes: np.ndarray,
    weights: str,
    class_weights: np.ndarray | None = None,
) -> np.ndarray:
    """Weighted votes of the neighbors for each class (the raw prediction).

    Parameters
    ----------
    neighbor_labels : ndarray of shape (n_queries, k)
        Label of each neighbor; every value must be in ``classes``.
    dist : ndarray of shape (n_queries, k)
    classes : ndarray of shape (n_classes,), sorted ascending
    weights : {"uniform", "distance"}
    class_weights : ndarray of shape (n_classes,), optional
        Multiplies the vote of each neighbor of that class.

    Returns
    -------
    ndarray of shape (n_queries, n_classes)
        Columns follow ``classes``.
    """
    n_queries, _ = neighbor_labels.shape
    n_classes = classes.shape[0]
    class_index = _class_index(neighbor_labels, classes)
    w = neighbor_weights(dist, weights)
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
) -> np.ndarray:
    """Weighted share of each class among the neighbors: votes normalized per row.

    Returns
    -------
    ndarray of shape (n_queries, n_classes)
        Rows sum to 1 (a row whose votes are all 0 stays 0); columns follow ``classes``.
    """
    return probabilities_from_votes(
        class_votes(neighbor_labels, dist, classes, weights, class_weights)
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
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A classifier's outputs from neighbor lists: votes, then probabilities, then the class.

    The one path from neighbors to a classification, shared by the models' search and the
    cross-validator's scoring, so both give the same answer.

    Parameters
    ----------
    neighbor_labels, dist : ndarray of shape (n_queries, k)
        Label (in ``classes``) and distance of each neighbor.
    classes : ndarray of shape (n_classes,), sorted ascending
    weights : {"uniform", "distance"}
    class_weights : ndarray of shape (n_classes,), optional
        Multiplies the vote of each neighbor of that class.

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
    votes = class_votes(neighbor_labels, dist, classes, weights, class_weights)
    proba = probabilities_from_votes(votes)
    return votes, proba, predict_from_probabilities(proba, classes)


def weighted_average(neighbor_labels: np.ndarray, dist: np.ndarray, weights: str) -> np.ndarray:
    """Weighted mean of the neighbors' labels (regression).

    Parameters
    ----------
    neighbor_labels, dist : ndarray of shape (n_queries, k)
    weights : {"uniform", "distance"}

    Returns
    -------
    ndarray of shape (n_queries,)

    Examples
    --------
    >>> weighted_average(np.array([[1.0, 3.0]]), np.array([[1.0, 1.0]]), "uniform")
    array([2.])
    """
    w = neighbor_weights(dist, weights)
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
