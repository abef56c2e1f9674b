"""Partition functions: adapt the numpy kernels to Arrow batches of queries.

Everything here runs on the executors.  The factories take plain values (a
:class:`SearchSettings`, a broadcast) and return the function Spark ships, so
no closure ever captures a model, a DataFrame or the SparkSession.

The functions work on Arrow record batches (``mapInArrow`` /
``applyInArrow``) rather than pandas frames: a list column becomes one
contiguous numpy matrix without a Python loop over rows, and the query's
other columns pass through untouched.  That matters for ML vector columns:
through pandas they would be rebuilt row by row, and a NaN inside a vector
would turn into a null on the way back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark import TaskContext
from pyspark.sql import types as T

from knnspark._faults import maybe_fail
from knnspark.arrow_columns import (
    LIST_F64,
    LIST_I64,
    combined,
    list_array,
    list_lengths,
    list_matrix,
    scalar_array,
)
from knnspark.errors import InvalidInputError
from knnspark.kernels.distances import get_metric
from knnspark.kernels.grouped import GroupRouting, grouped_search
from knnspark.kernels.predict import classify_neighbors, weighted_average
from knnspark.kernels.routed import routed_search
from knnspark.kernels.routing import Router
from knnspark.kernels.shard import SearchOptions, Shard
from knnspark.kernels.topk import PAD_ID, select_topk
from knnspark.timing import TaskTimer

__all__ = [
    "CLASSIFICATION",
    "FEATURES_TMP",
    "KEY_HI",
    "KEY_LO",
    "NEIGHBORS",
    "NEIGHBOR_LABELS",
    "REGRESSION",
    "SearchSettings",
    "broadcast_search_fn",
    "map_query_batches",
    "output_arrays",
    "output_fields",
    "query_matrix",
    "with_columns",
]

#: The tasks a search serves: what a model (or the tuning path) computes from the neighbors.
CLASSIFICATION = "classification"
REGRESSION = "regression"
NEIGHBORS = "neighbors"
#: Neighbor labels and distances, for tuning (every k scored from one search).
NEIGHBOR_LABELS = "neighbor_labels"

#: Temporary columns added to the query DataFrame.
FEATURES_TMP = "__knn_features"
# The shard-major path keys each query by two hashes of its features
# (96 bits): a key that depends on content only, so every evaluation of the
# plan agrees on it, and queries with equal features share one search.
KEY_HI = "__knn_key_hi"
KEY_LO = "__knn_key_lo"

PRED_TMP = "__knn_pred"
PROBA_TMP = "__knn_proba"
RAW_TMP = "__knn_raw"
NIDS_TMP = "__knn_nids"
NDIST_TMP = "__knn_ndist"
NLAB_TMP = "__knn_nlab"
#: Number of shards each query visited (``shardsVisitedCol``).
SHARDS_TMP = "__knn_shards"
#: groupCol: each query's group key and its home shard (see knnspark.groups).
GROUP_TMP = "__knn_group"
GROUP_HOME_TMP = "__knn_group_home"


@dataclass(frozen=True)
class SearchSettings:
    """Everything a search task needs, as plain picklable values."""

    task: str  # CLASSIFICATION, REGRESSION, NEIGHBORS or NEIGHBOR_LABELS
    k: int
    metric: str
    p: float
    n_features: int
    features_col: str
    handle_invalid: str
    weights: str = "uniform"
    bandwidth: float | None = None  # the kernel weightings' h
    classes: tuple[float, ...] = ()
    with_neighbors: bool = False
    kind: str = "brute"  # the index kind searched (a key of SHARD_KINDS)
    ef: int = 64
    model_id: str = ""  # names the fitted index, for per-worker caches
    class_weights: tuple[float, ...] = ()  # aligned with classes; () means all 1
    kind_params: dict = field(default_factory=dict)  # the kind's build params
    # k-means routing (kernels/routing.py): None searches every shard of the index.
    router: Router | None = None
    nprobe: int | None = None  # with a router: visit only the nprobe nearest shards
    shards_visited: bool = False  # add SHARDS_TMP, the shards each query visited
    # groupCol (kernels/grouped.py): queries carry GROUP_TMP and GROUP_HOME_TMP columns.
    groups: GroupRouting | None = None
    # The input column the broadcast path decodes the queries from: FEATURES_TMP, or one of
    # the passed-through columns when that already is the features (see search.py).
    query_column: str = FEATURES_TMP

    @property
    def search_options(self) -> SearchOptions:
        """The kernels' options; read inside a task, it carries the task's cores."""
        return SearchOptions(metric=self.metric, p=self.p, ef=self.ef, threads=task_cpus())


def task_cpus() -> int:
    """Cores Spark gives the running task (``spark.task.cpus``); 1 outside a task."""
    context = TaskContext.get()
    return max(1, int(context.cpus())) if context is not None else 1


def output_fields(settings: SearchSettings) -> list[T.StructField]:
    """Temporary output columns the partition functions add, by task."""
    arr_d = T.ArrayType(T.DoubleType(), False)
    fields = []
    if settings.task in (CLASSIFICATION, REGRESSION):
        fields.append(T.StructField(PRED_TMP, T.DoubleType(), True))
    if settings.task == CLASSIFICATION:
        fields.append(T.StructField(RAW_TMP, arr_d, True))
        fields.append(T.StructField(PROBA_TMP, arr_d, True))
    if settings.task == NEIGHBOR_LABELS:
        fields.append(T.StructField(NLAB_TMP, arr_d, True))
        fields.append(T.StructField(NDIST_TMP, arr_d, True))
    if settings.task == NEIGHBORS or settings.with_neighbors:
        fields.append(T.StructField(NIDS_TMP, T.ArrayType(T.LongType(), False), True))
        fields.append(T.StructField(NDIST_TMP, arr_d, True))
    if settings.task in (CLASSIFICATION, REGRESSION) and settings.with_neighbors:
        fields.append(T.StructField(NLAB_TMP, arr_d, True))
    if settings.shards_visited:
        fields.append(T.StructField(SHARDS_TMP, T.IntegerType(), True))
    return fields


# ---------------------------------------------------------------- query batches


def query_matrix(
    features: pa.Array | pa.ChunkedArray, settings: SearchSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Valid query rows as one float32 matrix, and the mask of valid rows.

    Raises a clear error for invalid rows when ``handleInvalid='error'``;
    otherwise invalid rows are left out of the matrix (they get null outputs).
    """
    matrix, right_length = list_matrix(features, settings.n_features)
    if get_metric(settings.metric).allows_nan:
        # NaN is a missing coordinate; a row needs one present, and nothing infinite.
        usable = ~np.isinf(matrix).any(axis=1) & ~np.isnan(matrix).all(axis=1)
    else:
        usable = np.isfinite(matrix).all(axis=1)
    valid = right_length.copy()
    valid[right_length] = usable
    if settings.handle_invalid == "error" and not valid.all():
        _raise_invalid_query(list_lengths(combined(features)), right_length, settings)
    return matrix[usable], valid


def _raise_invalid_query(
    lengths: np.ndarray, right_length: np.ndarray, settings: SearchSettings
) -> None:
    col = settings.features_col
    hint = "Set handleInvalid='keep' to return null outputs for such rows instead."
    if np.any(lengths <= 0):
        raise InvalidInputError(
            f"Column '{col}' (param featuresCol) holds a null or empty vector in a query "
            f"row. {hint}"
        )
    if not right_length.all():
        bad = int(lengths[~right_length][0])
        raise InvalidInputError(
            f"Column '{col}' (param featuresCol) holds a query vector of length {bad}, but "
            f"the model was trained on vectors of length {settings.n_features}. {hint}"
        )
    if get_metric(settings.metric).allows_nan:
        raise InvalidInputError(
            f"Column '{col}' (param featuresCol) holds a query vector with infinite values or "
            f"with no present (non-NaN) coordinate, which metric={settings.metric!r} cannot "
            f"compare with any row. {hint}"
        )
    raise InvalidInputError(
        f"Column '{col}' (param featuresCol) holds NaN or infinite values in a query row (a "
        f"finite value beyond +-3.4e38 counts too: it overflows the float32 storage of "
        f"features; rescale such data). {hint}"
    )


def search_batch(
    shards: list[Shard],
    queries: np.ndarray,
    settings: SearchSettings,
    timer: TaskTimer | None = None,
    groups: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """Search the shards a batch must visit; also returns the shards each query visited.

    With a router (``partitioning="kmeans"``) queries visit their routed shards
    (:func:`knnspark.kernels.routed.routed_search`); with groups (``groupCol``: the valid
    queries' group keys and home shards) their group's shards; otherwise every shard.
    """
    if settings.groups is not None and groups is not None:
        timer = timer or TaskTimer("search_shards")
        with timer.stage("search"):
            plan = settings.groups.plan(*groups)
            return grouped_search(
                shards, plan, queries, groups[0], settings.k, settings.search_options
            )
    if settings.router is None:
        dist, ids, labels = search_shards(shards, queries, settings, timer)
        return dist, ids, labels, np.full(queries.shape[0], len(shards), dtype=np.int32)
    timer = timer or TaskTimer("search_shards")
    with timer.stage("search"):
        return routed_search(
            shards, queries, settings.k, settings.search_options, settings.router, settings.nprobe
        )


def search_shards(
    shards: list[Shard],
    queries: np.ndarray,
    settings: SearchSettings,
    timer: TaskTimer | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Search every shard and merge the partial lists inside the task."""
    timer = timer or TaskTimer("search_shards")
    dists, ids, labels = [], [], []
    options = settings.search_options
    with timer.stage("search"):
        for shard in shards:
            dist, pos = shard.search(queries, settings.k, options)
            dists.append(dist)
            ids.append(shard.ids[pos])
            if shard.labels is not None:
                labels.append(shard.labels[pos])
    with timer.stage("merge"):
        dist, out_ids, pos = select_topk(
            np.concatenate(dists, axis=1), np.concatenate(ids, axis=1), settings.k
        )
        out_labels = (
            np.take_along_axis(np.concatenate(labels, axis=1), pos, axis=1) if labels else None
        )
    return dist, out_ids, out_labels


def output_arrays(
    dist: np.ndarray,
    ids: np.ndarray,
    labels: np.ndarray | None,
    valid: np.ndarray,
    settings: SearchSettings,
    visited: np.ndarray | None = None,
) -> dict[str, pa.Array]:
    """Temporary output columns for a batch; rows where ``valid`` is False get nulls.

    ``visited`` is the number of shards each valid row searched (``shardsVisitedCol``).
    With groups, a valid row whose list is all padding (its group has no training rows)
    gets a null prediction and empty neighbor lists.
    """
    columns: dict[str, pa.Array] = {}
    found = valid.copy()
    if settings.groups is not None:  # padding is (PAD_ID, +inf); a real id may be PAD_ID
        padding = (ids[:, 0] == PAD_ID) & np.isinf(dist[:, 0]) if ids.shape[1] else True
        found[valid] = ~padding
    empty = valid & ~found
    if empty.any():
        keep = found[valid]
        dist, ids = dist[keep], ids[keep]
        labels = labels[keep] if labels is not None else None
        visited = visited[keep] if visited is not None else None
        valid = found
    if settings.task == CLASSIFICATION:
        classes = np.asarray(settings.classes, dtype=np.float64)
        class_weights = np.asarray(settings.class_weights) if settings.class_weights else None
        votes, proba, prediction = classify_neighbors(
            labels, dist, classes, settings.weights, class_weights, settings.bandwidth
        )
        columns[PRED_TMP] = scalar_array(prediction, valid)
        columns[RAW_TMP] = list_array(votes, valid, LIST_F64)
        columns[PROBA_TMP] = list_array(proba, valid, LIST_F64)
    elif settings.task == REGRESSION:
        average = weighted_average(labels, dist, settings.weights, settings.bandwidth)
        columns[PRED_TMP] = scalar_array(average, valid)
    if settings.task == NEIGHBORS or settings.with_neighbors:
        columns[NIDS_TMP] = list_array(ids, valid, LIST_I64, empty)
        columns[NDIST_TMP] = list_array(dist, valid, LIST_F64, empty)
    if settings.task == NEIGHBOR_LABELS:
        columns[NLAB_TMP] = list_array(labels, valid, LIST_F64, empty)
        columns[NDIST_TMP] = list_array(dist, valid, LIST_F64, empty)
    if settings.task in (CLASSIFICATION, REGRESSION) and settings.with_neighbors:
        columns[NLAB_TMP] = list_array(labels, valid, LIST_F64, empty)
    if settings.shards_visited:
        counts = np.zeros(valid.shape[0], dtype=np.int32)
        if visited is not None:
            counts[valid] = visited
        columns[SHARDS_TMP] = pa.array(counts, type=pa.int32(), mask=~(valid | empty))
    return columns


def batch_groups(
    batch: pa.RecordBatch | pa.Table, valid: np.ndarray, settings: SearchSettings
) -> tuple[np.ndarray, np.ndarray] | None:
    """The valid rows' group keys and home shards (``groupCol``), or None without groups."""
    if settings.groups is None:
        return None
    keys = np.asarray(batch.column(GROUP_TMP).to_pylist(), dtype=object)[valid]
    homes = batch.column(GROUP_HOME_TMP).to_numpy(zero_copy_only=False)[valid]
    return keys, homes


def with_columns(batch: pa.RecordBatch, columns: dict[str, pa.Array]) -> pa.RecordBatch:
    for name, array in columns.items():
        batch = batch.append_column(pa.field(name, array.type, nullable=True), array)
    return batch


# ---------------------------------------------------------------- broadcast path


def broadcast_search_fn(
    shards_broadcast: Any, settings: SearchSettings
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """mapInArrow function: search all broadcast shards, merge inside the task."""

    def search(
        shards: list[Shard],
        batch: pa.RecordBatch,
        queries: np.ndarray,
        valid: np.ndarray,
        timer: TaskTimer,
    ) -> pa.RecordBatch:
        with timer.stage("decode"):
            groups = batch_groups(batch, valid, settings)
        dist, ids, labels, visited = search_batch(shards, queries, settings, timer, groups)
        with timer.stage("encode"):
            out = output_arrays(dist, ids, labels, valid, settings, visited)
            temporary = [GROUP_TMP, GROUP_HOME_TMP] if groups else []
            if settings.query_column == FEATURES_TMP:
                temporary.append(FEATURES_TMP)
            return with_columns(batch.drop_columns(temporary), out)

    return map_query_batches(shards_broadcast, settings, search)


#: One batch's search on the broadcast path: (shards, batch, queries, valid, timer) -> batch.
BatchSearch = Callable[
    [list[Shard], pa.RecordBatch, np.ndarray, np.ndarray, TaskTimer], pa.RecordBatch
]


def map_query_batches(
    shards_broadcast: Any,
    settings: SearchSettings,
    search: BatchSearch,
    name: str = "broadcast_search",
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """mapInArrow function: the broadcast path's loop over query batches.

    Loads the shards once per task, decodes each batch's ``settings.query_column`` (invalid rows
    raise or are masked, by ``settings.handle_invalid``) and yields what ``search(shards,
    batch, queries, valid, timer)`` makes of the batch.  :func:`broadcast_search_fn` and
    ``radius_neighbors`` (:mod:`knnspark.radius`) differ only in ``search``.
    """

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        maybe_fail("search")
        timer = TaskTimer(name)
        with timer.stage("load"):
            shards = shards_broadcast.value  # loaded once per Python worker, then cached
        for batch in batches:
            timer.count(batch.num_rows)
            with timer.stage("decode"):
                queries, valid = query_matrix(batch.column(settings.query_column), settings)
            yield search(shards, batch, queries, valid, timer)
        timer.flush()

    return run
