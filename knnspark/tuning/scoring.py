"""Score neighbor lists for many param maps at once: the executor side of the cross-validator.

:func:`score_neighbor_lists` (pure numpy) turns the first ``k`` columns of a neighbor list into
the outputs a model with that ``k``, ``weights`` and ``classWeights`` would give, with the same
kernels the models use; :func:`score_batches_fn` adapts it to the Arrow batches of
``model.neighborLabels`` (``mapInArrow``), adding one set of output columns per param map, and
:func:`metric_partials_fn` reduces a partition to each map's metric sums
(:mod:`knnspark.kernels.metric_sums`) instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from pyspark.sql import types as T

from knnspark.arrow_columns import LIST_F64, list_array, list_matrix, scalar_array
from knnspark.kernels.metric_sums import Partials, merge_partials, partial_sums
from knnspark.kernels.predict import classify_neighbors, weighted_average

__all__ = [
    "METRIC_PARTIALS_SCHEMA",
    "NEIGHBOR_DISTANCES",
    "NEIGHBOR_LABELS",
    "SCORE_TYPES",
    "Scoring",
    "metric_partials_fn",
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

#: Output of :func:`metric_partials_fn`: one row per param map and key of its partial sums
#: (:class:`knnspark.kernels.metric_sums.Partials`); ``map`` is the map's position in the
#: scorings. A row with ``map = -1`` counts rows the sums cannot represent (``a``), and one
#: with ``overflow`` marks a map with too many distinct scores.
METRIC_PARTIALS_SCHEMA = T.StructType(
    [
        T.StructField("map", T.IntegerType(), False),
        T.StructField("a", T.DoubleType(), False),
        T.StructField("b", T.DoubleType(), False),
        T.StructField("sums", T.ArrayType(T.DoubleType(), False), False),
        T.StructField("overflow", T.BooleanType(), False),
    ]
)


@dataclass(frozen=True)
class Scoring:
    """The search-time params of one param map, as plain values.

    ``class_weights`` is aligned with the model's classes (None: unweighted).
    """

    k: int
    weights: str
    class_weights: tuple[float, ...] | None = None
    bandwidth: float | None = None


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
        return {"prediction": weighted_average(labels, dist, scoring.weights, scoring.bandwidth)}
    class_weights = None
    if scoring.class_weights is not None:
        class_weights = np.asarray(scoring.class_weights, dtype=np.float64)
    votes, proba, prediction = classify_neighbors(
        labels, dist, classes, scoring.weights, class_weights, scoring.bandwidth
    )
    return {"prediction": prediction, "rawPrediction": votes, "probability": proba}


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
                        array = list_array(values, valid, LIST_F64)
                    field = pa.field(f"{column_prefix}{index}_{kind}", array.type, nullable=True)
                    out = out.append_column(field, array)
            yield out

    return score


def _scored_values(scores: dict[str, np.ndarray], kind: str) -> np.ndarray | None:
    """What an evaluator reading output ``kind`` sees, as Spark's evaluators read it.

    A vector output (binary evaluators) is read at index 1; None if it has no index 1.
    """
    values = scores[kind]
    if values.ndim == 1:
        return values
    return values[:, 1] if values.shape[1] > 1 else None


def metric_partials_fn(
    scorings: tuple[Scoring, ...],
    classes: tuple[float, ...] | None,
    width: int,
    family: str,
    kind: str,
    max_keys: int | None,
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The ``mapInArrow`` function that reduces a partition to each map's metric partial sums.

    Parameters
    ----------
    scorings : tuple of Scoring
        The param maps of a group.
    classes : tuple of float or None
        The classifier's classes; None for regression.
    width : int
        Length of the neighbor lists (the group's largest ``k``).
    family : str
        The evaluator's family (see :func:`knnspark.kernels.metric_sums.partial_sums`).
    kind : str
        The model output the evaluator reads (a key of :data:`SCORE_TYPES`).
    max_keys : int or None
        Distinct scores at which a binary map overflows (see ``merge_partials``).

    Returns
    -------
    callable
        Record batches with columns ``label`` and ``weight`` (doubles) and the two neighbor
        columns -> one batch of :data:`METRIC_PARTIALS_SCHEMA` rows for the whole partition.
        Rows with a null, NaN or infinite label, a null, NaN, negative or infinite weight, or
        no neighbor list are not summed but counted (``map = -1``): Spark's evaluator decides
        what they mean.
    """
    class_array = None if classes is None else np.asarray(classes, dtype=np.float64)

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        parts: list[list[Partials]] = [[] for _ in scorings]
        unusable = 0
        for batch in batches:
            labels, valid = list_matrix(batch.column(NEIGHBOR_LABELS), width, np.float64)
            dist, _ = list_matrix(batch.column(NEIGHBOR_DISTANCES), width, np.float64)
            y = batch.column("label").to_numpy(zero_copy_only=False).astype(np.float64)
            w = batch.column("weight").to_numpy(zero_copy_only=False).astype(np.float64)
            with np.errstate(invalid="ignore"):
                usable = valid & np.isfinite(y) & np.isfinite(w) & (w >= 0)
            unusable += int((~usable).sum())
            if not usable.any():
                continue
            keep = usable[valid]  # rows of the neighbor matrices to sum
            labels, dist = labels[keep], dist[keep]
            y, w = y[usable], w[usable]
            for position, scoring in enumerate(scorings):
                if parts[position] and parts[position][-1].overflow:
                    continue  # already too many distinct scores: Spark's evaluator decides
                values = _scored_values(
                    score_neighbor_lists(labels, dist, scoring, class_array), kind
                )
                if values is None:
                    unusable += len(y)
                    continue
                parts[position].append(partial_sums(family, y, w, values))
            if max_keys is not None:
                parts = [[merge_partials(family, p, max_keys)] for p in parts]
        yield _partials_batch(family, parts, unusable, max_keys)

    return run


def _partials_batch(
    family: str, parts: list[list[Partials]], unusable: int, max_keys: int | None
) -> pa.RecordBatch:
    maps, a, b, sums, overflow = [], [], [], [], []
    for position, map_parts in enumerate(parts):
        merged = merge_partials(family, map_parts, max_keys)
        n = max(len(merged.a), 1) if merged.overflow else len(merged.a)
        maps.append(np.full(n, position, dtype=np.int32))
        a.append(merged.a if not merged.overflow else np.zeros(n))
        b.append(merged.b if not merged.overflow else np.zeros(n))
        sums.extend(merged.sums.tolist() if not merged.overflow else [[] for _ in range(n)])
        overflow.append(np.full(n, merged.overflow))
    maps.append(np.array([-1], dtype=np.int32))
    a.append(np.array([float(unusable)]))
    b.append(np.zeros(1))
    sums.append([])
    overflow.append(np.zeros(1, dtype=bool))
    return pa.RecordBatch.from_arrays(
        [
            pa.array(np.concatenate(maps), type=pa.int32()),
            pa.array(np.concatenate(a), type=pa.float64()),
            pa.array(np.concatenate(b), type=pa.float64()),
            pa.array(sums, type=LIST_F64),
            pa.array(np.concatenate(overflow), type=pa.bool_()),
        ],
        schema=METRIC_PARTIALS_SCHEMA_ARROW,
    )


METRIC_PARTIALS_SCHEMA_ARROW = pa.schema(
    [
        pa.field("map", pa.int32(), False),
        pa.field("a", pa.float64(), False),
        pa.field("b", pa.float64(), False),
        pa.field("sums", LIST_F64, False),
        pa.field("overflow", pa.bool_(), False),
    ]
)
