"""Turn neighbor lists into votes (classification) and averages (regression).

The weighting follows scikit-learn's ``weights`` parameter: ``"uniform"``
gives every neighbor weight 1; ``"distance"`` gives weight ``1 / distance``,
and a query with an exact match (distance 0) gives all of its weight to the
exact matches.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "WEIGHTINGS",
    "class_probabilities",
    "neighbor_weights",
    "predict_from_probabilities",
    "weighted_average",
]

#: Valid values of the ``weights`` param.
WEIGHTINGS = ("uniform", "distance")


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
    exact = dist == 0.0
    with np.errstate(divide="ignore"):
        w = 1.0 / dist
    rows = exact.any(axis=1)
    w[rows] = exact[rows]
    return w


def class_probabilities(
    neighbor_labels: np.ndarray, dist: np.ndarray, classes: np.ndarray, weights: str
) -> np.ndarray:
    """Weighted share of each class among the neighbors.

    Parameters
    ----------
    neighbor_labels : ndarray of shape (n_queries, k)
        Label of each neighbor; every value must be in ``classes``.
    dist : ndarray of shape (n_queries, k)
    classes : ndarray of shape (n_classes,), sorted ascending
    weights : {"uniform", "distance"}

    Returns
    -------
    ndarray of shape (n_queries, n_classes)
        Rows sum to 1; columns follow ``classes``.
    """
    n_queries, k = neighbor_labels.shape
    n_classes = classes.shape[0]
    class_index = np.searchsorted(classes, neighbor_labels)
    w = neighbor_weights(dist, weights)
    flat = (np.arange(n_queries)[:, None] * n_classes + class_index).ravel()
    totals = np.bincount(flat, weights=w.ravel(), minlength=n_queries * n_classes)
    proba = totals.reshape(n_queries, n_classes)
    norm = proba.sum(axis=1, keepdims=True)
    norm[norm == 0.0] = 1.0
    return proba / norm


def predict_from_probabilities(proba: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Most probable class per row; a tie goes to the smallest class value.

    Examples
    --------
    >>> predict_from_probabilities(np.array([[0.5, 0.5]]), np.array([3.0, 7.0]))
    array([3.])
    """
    return classes[np.argmax(proba, axis=1)].astype(np.float64)


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
