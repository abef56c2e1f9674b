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
import pyarrow.compute as pc
from pyspark import TaskContext
from pyspark.sql import types as T

from knnspark._faults import maybe_fail
from knnspark.arrow_columns import (
    LIST_F64,
    LIST_F64_NULLS,
    LIST_I64,
    combined,
    list_array,
    list_lengths,
    list_matrix,
    padded_matrix,
    scalar_array,
)
from knnspark.errors import InvalidInputError
from knnspark.kernels.distances import get_metric
from knnspark.kernels.kinds import shard_kind
from knnspark.kernels.predict import classify_neighbors, weighted_average
from knnspark.kernels.routed import routed_search
from knnspark.kernels.routing import Router
from knnspark.kernels.shard import SearchOptions, Shard
from knnspark.kernels.topk import PAD_ID, drop_duplicate_ids, select_topk
from knnspark.shard_codec import shard_from_blob, shard_from_rows
from knnspark.timing import TaskTimer

__all__ = [
    "CLASSIFICATION",
    "FEATURES_TMP",
    "KEY_HI",
    "KEY_LO",
    "NEIGHBORS",
    "NEIGHBOR_LABELS",
    "REGRESSION",
    "ROUTED_SCHEMA",
    "ROUTE_KEY",
    "Routing",
    "SearchSettings",
    "broadcast_search_fn",
    "distinct_keys",
    "merge_partials_fn",
    "output_fields",
    "route_queries_fn",
    "shard_from_table",
    "shard_search_fn",
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
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """Search the shards a batch must visit; also returns the shards each query visited.

    With a router (``partitioning="kmeans"``) queries visit their routed shards
    (:func:`knnspark.kernels.routed.routed_search`); otherwise every shard.
    """
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
    """
    columns: dict[str, pa.Array] = {}
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
        columns[NIDS_TMP] = list_array(ids, valid, LIST_I64)
        columns[NDIST_TMP] = list_array(dist, valid, LIST_F64)
    if settings.task == NEIGHBOR_LABELS:
        columns[NLAB_TMP] = list_array(labels, valid, LIST_F64)
        columns[NDIST_TMP] = list_array(dist, valid, LIST_F64)
    if settings.task in (CLASSIFICATION, REGRESSION) and settings.with_neighbors:
        columns[NLAB_TMP] = list_array(labels, valid, LIST_F64)
    if settings.shards_visited:
        counts = np.zeros(valid.shape[0], dtype=np.int32)
        if visited is not None:
            counts[valid] = visited
        columns[SHARDS_TMP] = pa.array(counts, type=pa.int32(), mask=~valid)
    return columns


def _with_columns(batch: pa.RecordBatch, columns: dict[str, pa.Array]) -> pa.RecordBatch:
    for name, array in columns.items():
        batch = batch.append_column(pa.field(name, array.type, nullable=True), array)
    return batch


# ---------------------------------------------------------------- broadcast path


def broadcast_search_fn(
    shards_broadcast: Any, settings: SearchSettings
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """mapInArrow function: search all broadcast shards, merge inside the task."""

    def search(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        maybe_fail("search")
        timer = TaskTimer("broadcast_search")
        with timer.stage("load"):
            shards = shards_broadcast.value  # loaded once per Python worker, then cached
        for batch in batches:
            timer.count(batch.num_rows)
            with timer.stage("decode"):
                queries, valid = query_matrix(batch.column(FEATURES_TMP), settings)
            dist, ids, labels, visited = search_batch(shards, queries, settings, timer)
            with timer.stage("encode"):
                out = output_arrays(dist, ids, labels, valid, settings, visited)
                batch = _with_columns(batch.drop_columns([FEATURES_TMP]), out)
            yield batch
        timer.flush()

    return search


# ------------------------------------------------------------- shard-major path
#
# Queries travel, shards stay: each query row is routed to the shards it must visit,
# shuffled to the partition holding that shard (the index side is persisted partitioned
# one shard per partition, so Spark's cogroup leaves it in place), searched there, and the
# partial top-k lists are merged by query.  One row layout (ROUTED_SCHEMA) carries both
# queries on their way to a shard (features set) and partial lists on their way to the
# merge (ids set), so pruned exact search can pass its first round's lists through the
# second round's shuffle instead of computing the first round twice.

#: The partition key of the shard a routed row goes to (see ``index.shard_partition_keys``).
ROUTE_KEY = "__knn_route"

#: A query on its way to a shard (features set), or a partial list on its way to the merge.
ROUTED_SCHEMA = T.StructType(
    [
        T.StructField(KEY_HI, T.LongType(), False),
        T.StructField(KEY_LO, T.IntegerType(), False),
        T.StructField(ROUTE_KEY, T.IntegerType(), False),
        # Null entries are missing coordinates (nan_euclidean): they read as NaN.
        T.StructField(FEATURES_TMP, T.ArrayType(T.FloatType(), True), True),
        T.StructField("ids", T.ArrayType(T.LongType(), False), True),
        T.StructField("dist", T.ArrayType(T.DoubleType(), False), True),
        T.StructField("labels", T.ArrayType(T.DoubleType(), True), True),
    ]
)
_ROUTED_ARROW = pa.schema(
    [
        pa.field(KEY_HI, pa.int64()),
        pa.field(KEY_LO, pa.int32()),
        pa.field(ROUTE_KEY, pa.int32()),
        pa.field(FEATURES_TMP, pa.list_(pa.float32())),
        pa.field("ids", LIST_I64),
        pa.field("dist", LIST_F64),
        pa.field("labels", LIST_F64_NULLS),
    ]
)


@dataclass(frozen=True)
class Routing:
    """Where the shard-major path sends each query, as plain values.

    ``shards`` are the index's shard numbers (all searched when ``settings.router`` is
    None), ``sizes[s]`` the rows of shard ``s`` and ``partition_keys[s]`` the key that
    lands in shard ``s``'s partition.
    """

    shards: tuple[int, ...]
    sizes: tuple[int, ...]
    partition_keys: tuple[int, ...]

    def first_round(self, queries: np.ndarray, settings: SearchSettings) -> np.ndarray:
        """(n_queries, m) shard numbers each query visits first (or only); -1 for none."""
        router = settings.router
        if router is None:
            return np.broadcast_to(np.asarray(self.shards), (queries.shape[0], len(self.shards)))
        if settings.nprobe is None:
            return router.nearest(queries, 1 if router.can_prune else router.num_shards)
        # The nprobe nearest shards, and the next nearest while they hold fewer than k rows
        # (as the broadcast path's kernels.routed does).
        order = router.nearest(queries, router.num_shards)
        rows_before = (
            np.cumsum(np.asarray(self.sizes)[order], axis=1) - np.asarray(self.sizes)[order]
        )
        keep = (np.arange(order.shape[1])[None, :] < settings.nprobe) | (rows_before < settings.k)
        return np.where(keep, order, -1)

    def pruned(self, settings: SearchSettings) -> bool:
        """Whether a second round visits the shards the first one's k-th distance keeps."""
        router = settings.router
        return router is not None and settings.nprobe is None and router.can_prune


def route_queries_fn(
    settings: SearchSettings, routing: Routing
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """mapInArrow function: keyed queries -> one ROUTED_SCHEMA row per shard to visit.

    Invalid rows raise under ``handleInvalid='error'`` and are dropped otherwise (the
    join back gives them null outputs).
    """

    def route(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        maybe_fail("search")
        for batch in batches:
            queries, valid = query_matrix(batch.column(FEATURES_TMP), settings)
            shards = routing.first_round(queries, settings)
            rows = pa.Table.from_batches([batch]).take(pa.array(np.flatnonzero(valid)))
            yield from _query_rows(rows, shards, routing).to_batches()

    return route


def _query_rows(rows: pa.Table, shards: np.ndarray, routing: Routing) -> pa.Table:
    """Row ``i`` of ``rows`` once for each shard number in ``shards[i]`` (-1: none)."""
    which, col = np.nonzero(shards >= 0)
    keys = np.asarray(routing.partition_keys, dtype=np.int32)[shards[which, col]]
    taken = rows.take(pa.array(which, type=pa.int64()))
    n = taken.num_rows
    return pa.table(
        {
            KEY_HI: taken.column(KEY_HI),
            KEY_LO: taken.column(KEY_LO),
            ROUTE_KEY: pa.array(keys, type=pa.int32()),
            FEATURES_TMP: taken.column(FEATURES_TMP).cast(_ROUTED_ARROW.field(FEATURES_TMP).type),
            "ids": pa.nulls(n, LIST_I64),
            "dist": pa.nulls(n, LIST_F64),
            "labels": pa.nulls(n, LIST_F64_NULLS),
        },
        schema=_ROUTED_ARROW,
    )


def shard_search_fn(
    settings: SearchSettings, routing: Routing, route_next: bool
) -> Callable[[pa.Table, pa.Table], pa.Table]:
    """cogroup function: the queries routed to one shard meet the shard.

    Emits each distinct query's partial list from this shard and passes on the partial
    lists that arrived with the queries.  With ``route_next`` (the first round of pruned
    exact search) it also emits the query once for every further shard the router cannot
    exclude given this shard's k-th distance.
    """

    def search(routed: pa.Table, shard_rows: pa.Table) -> pa.Table:
        maybe_fail("search")
        routed = routed.cast(_ROUTED_ARROW)
        is_query = routed.column(FEATURES_TMP).is_valid()
        passed = routed.filter(pc.invert(is_query))
        queries = distinct_keys(routed.filter(is_query))
        if queries.num_rows == 0 or shard_rows.num_rows == 0:
            return passed
        timer = TaskTimer("shard_search")
        timer.count(queries.num_rows)
        with timer.stage("load"):
            shard_no = int(shard_rows.column("shard")[0].as_py())
            shard = shard_from_table(shard_rows, shard_no, settings)
        with timer.stage("decode"):
            matrix, _ = list_matrix(queries.column(FEATURES_TMP), settings.n_features)
        with timer.stage("search"):
            dist, pos = shard.search(matrix, settings.k, settings.search_options)
        with timer.stage("encode"):
            labels = shard.labels if shard.labels is not None else np.full(shard.n_rows, np.nan)
            out = [passed, _partial_rows(queries, shard.ids[pos], dist, labels[pos])]
            if route_next:
                out.append(_next_round(queries, matrix, dist, shard_no, settings, routing))
        timer.flush()
        return pa.concat_tables(out)

    return search


def _next_round(
    queries: pa.Table,
    matrix: np.ndarray,
    dist: np.ndarray,
    shard_no: int,
    settings: SearchSettings,
    routing: Routing,
) -> pa.Table:
    """Query rows for the shards still to search after this one (pruned exact search)."""
    router = settings.router
    k = settings.k
    kth = dist[:, k - 1] if dist.shape[1] >= k else np.full(matrix.shape[0], np.inf)
    visited = np.zeros((matrix.shape[0], router.num_shards), dtype=bool)
    visited[:, shard_no] = True
    todo = router.must_visit(matrix, kth, visited)
    shards = np.where(todo, np.arange(router.num_shards)[None, :], -1)
    return _query_rows(queries, shards, routing)


def _partial_rows(
    queries: pa.Table, ids: np.ndarray, dist: np.ndarray, labels: np.ndarray
) -> pa.Table:
    every = np.ones(queries.num_rows, dtype=bool)
    return pa.table(
        {
            KEY_HI: queries.column(KEY_HI),
            KEY_LO: queries.column(KEY_LO),
            ROUTE_KEY: queries.column(ROUTE_KEY),
            FEATURES_TMP: pa.nulls(queries.num_rows, _ROUTED_ARROW.field(FEATURES_TMP).type),
            "ids": list_array(ids, every, LIST_I64),
            "dist": list_array(dist, every, LIST_F64),
            "labels": list_array(labels, every, LIST_F64_NULLS),
        },
        schema=_ROUTED_ARROW,
    )


def shard_from_table(table: pa.Table, shard_no: int, settings: SearchSettings) -> Shard:
    """The shard side of a cogroup: its training rows, or its one built-shard row."""
    if shard_kind(settings.kind).stores_features:
        key = (settings.model_id, shard_no)
        return shard_from_rows(table, settings.n_features, settings.kind, settings.kind_params, key)
    blob = {name: table.column(name)[0].as_py() for name in table.column_names}
    blob["n_features"] = settings.n_features
    return shard_from_blob(blob, settings.kind, settings.kind_params, settings.model_id)


def distinct_keys(queries: pa.Table) -> pa.Table:
    """Equal queries (equal keys) routed to one shard are searched once."""
    hi = queries.column(KEY_HI).to_numpy()
    lo = queries.column(KEY_LO).to_numpy()
    keys = np.stack([hi, lo.astype(np.int64)], axis=1)
    _, first = np.unique(keys, axis=0, return_index=True)
    if first.size == queries.num_rows:
        return queries
    return queries.take(pa.array(np.sort(first)))


def merge_partials_fn(
    settings: SearchSettings,
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """mapInArrow function over rows that hold all partial lists of one query.

    A row's ``SHARDS_TMP`` (the number of lists, one per shard searched) passes through.
    """

    def merge(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        maybe_fail("search")
        for batch in batches:
            dist = padded_matrix(batch.column("dist"), np.inf, np.float64)
            ids = padded_matrix(batch.column("ids"), PAD_ID, np.int64)
            labels = padded_matrix(batch.column("labels"), np.nan, np.float64)
            # A retried or repeated search of one shard must not count a row twice.
            dist, ids = drop_duplicate_ids(dist, ids)
            dist, ids, pos = select_topk(dist, ids, settings.k)
            labels = np.take_along_axis(labels, pos, axis=1)
            valid = np.ones(batch.num_rows, dtype=bool)
            visited = None
            if SHARDS_TMP in batch.schema.names:  # the plan counted each query's partial lists
                visited = batch.column(SHARDS_TMP).to_numpy(zero_copy_only=False)
            out = output_arrays(dist, ids, labels, valid, settings, visited)
            keys = batch.select([KEY_HI, KEY_LO])
            yield _with_columns(keys, out)

    return merge
