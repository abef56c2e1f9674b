"""Score neighbor lists for many param maps at once: the executor side of the cross-validator.

:func:`score_neighbor_lists` (pure numpy) turns the first ``k`` columns of a neighbor list into
the outputs a model with that ``k``, ``weights`` and ``classWeights`` would give, with the same
kernels the models use; :func:`score_batches_fn` adapts it to the Arrow batches of
``model.neighborLabels`` (``mapInArrow``), adding one set of output columns per param map.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from pyspark.sql import types as T

from knnspark.kernels.predict import (
    class_votes,
    predict_from_probabilities,
    probabilities_from_votes,
    weighted_average,
)
from knnspark.partition import list_array, list_matrix, scalar_array

__all__ = [
    "NEIGHBOR_DISTANCES",
    "NEIGHBOR_LABELS",
    "SCORE_TYPES",
    "Scoring",
    "score_batches_fn",
    "score_neighbor_lists",
]

#: Columns that ``model.neighborLabels`` adds.
NEIGHBOR_LABELS = "neighbor_labels"
NEIGHBOR_DISTANCES = "neighbor_distances"

#: Spark type of each output kind, as the ``mapInArrow`` of the cross-validator emits it
#: (vectors leave as arrays and become ML vectors in a later projection).
SCORE_TYPES = {
    "prediction": T.DoubleType(),
    "rawPrediction": T.ArrayType(T.DoubleType(), False),
    "probability": T.ArrayType(T.DoubleType(), False),
}

_LIST_F64 = pa.list_(pa.field("element", pa.float64(), nullable=False))


@dataclass(frozen=True)
class Scoring:
    """The search-time params of one param map, as plain values.

    ``class_weights`` is aligned with the model's classes (None: unweighted).
    """

    k: int
    weights: str
    class_weights: tuple[float, ...] | None = None


def score_neighbor_lists(
    labels: np.ndarray,
    dist: np.ndarray,
    scoring: Scoring,
    classes: np.ndarray | None,
) -> dict[str, np.ndarray]:
    """Outputs of a model with ``scoring``'s params, from longer neighbor lists.

    Parameters
    ----------
    labels, dist : ndarray of shape (n_queries, width)
        Neighbor labels and distances, nearest first, ``width >= scoring.k``.
    scoring : Scoring
    classes : ndarray of shape (n_classes,) or None
        Sorted class values of a classifier; None for regression.

    Returns
    -------
    dict of str to ndarray
        ``"prediction"`` of shape (n_queries,); for a classifier also ``"rawPrediction"``
        (weighted votes) and ``"probability"``, of shape (n_queries, n_classes).

    Examples
    --------
    >>> labels = np.array([[1.0, 0.0, 0.0]])
    >>> dist = np.array([[1.0, 2.0, 3.0]])
    >>> scores = score_neighbor_lists(labels, dist, Scoring(1, "uniform"), np.array([0.0, 1.0]))
    >>> scores["prediction"], scores["rawPrediction"]
    (array([1.]), array([[0., 1.]]))
    >>> score_neighbor_lists(labels, dist, Scoring(3, "uniform"), None)
    {'prediction': array([0.33333333])}
    """
    labels, dist = labels[:, : scoring.k], dist[:, : scoring.k]
    if classes is None:
        return {"prediction": weighted_average(labels, dist, scoring.weights)}
    class_weights = None
    if scoring.class_weights is not None:
        class_weights = np.asarray(scoring.class_weights, dtype=np.float64)
    votes = class_votes(labels, dist, classes, scoring.weights, class_weights)
    proba = probabilities_from_votes(votes)
    return {
        "prediction": predict_from_probabilities(proba, classes),
        "rawPrediction": votes,
        "probability": proba,
    }


def score_batches_fn(
    scorings: tuple[tuple[int, Scoring], ...],
    classes: tuple[float, ...] | None,
    width: int,
    kinds: tuple[str, ...],
    column_prefix: str,
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The ``mapInArrow`` function that scores every param map of a group.

    Parameters
    ----------
    scorings : tuple of (int, Scoring)
        Each param map's index in ``estimatorParamMaps`` and its params.
    classes : tuple of float or None
        The classifier's classes; None for regression.
    width : int
        Length of the neighbor lists (the group's largest ``k``).
    kinds : tuple of str
        Outputs to emit per map, among the keys of :data:`SCORE_TYPES`.
    column_prefix : str
        Output column of map ``i`` and kind ``kind``: ``f"{column_prefix}{i}_{kind}"``.

    Returns
    -------
    callable
        Iterator of record batches (every input column, the two neighbor columns last) to
        record batches without the neighbor columns plus the output columns, in the order of
        ``scorings`` then ``kinds``. Rows without neighbors (invalid input kept by
        ``handleInvalid``) get null outputs.
    """
    class_array = None if classes is None else np.asarray(classes, dtype=np.float64)

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            labels, valid = list_matrix(batch.column(NEIGHBOR_LABELS), width, np.float64)
            dist, _ = list_matrix(batch.column(NEIGHBOR_DISTANCES), width, np.float64)
            out = batch.drop_columns([NEIGHBOR_LABELS, NEIGHBOR_DISTANCES])
            for index, scoring in scorings:
                scores = score_neighbor_lists(labels, dist, scoring, class_array)
                for kind in kinds:
                    values = scores[kind]
                    if values.ndim == 1:
                        array = scalar_array(values, valid)
                    else:
                        array = list_array(values, valid, _LIST_F64)
                    field = pa.field(f"{column_prefix}{index}_{kind}", array.type, nullable=True)
                    out = out.append_column(field, array)
            yield out

    return score
