"""Partition functions of the shard-major path (indexes past ``maxBroadcastBytes``).

Queries travel, shards stay: each query row is routed to the shards it must visit,
shuffled to the partition holding that shard (the index side is persisted partitioned
one shard per partition, so Spark's cogroup leaves it in place), searched there, and the
partial top-k lists are merged by query.  One row layout (:data:`ROUTED_SCHEMA`) carries
both queries on their way to a shard (features set) and partial lists on their way to the
merge (ids set), so pruned exact search can pass its first round's lists through the
second round's shuffle instead of computing the first round twice.  The plan is
:func:`knnspark.search._shard_major_plan`; the per-batch query handling it shares with the
broadcast path is in :mod:`knnspark.partition`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import types as T

from knnspark._faults import check_routed, maybe_fail
from knnspark.arrow_columns import (
    LIST_F64,
    LIST_F64_NULLS,
    LIST_I64,
    list_array,
    list_matrix,
    padded_matrix,
)
from knnspark.group_pieces import shard_from_group_table
from knnspark.kernels.kinds import shard_kind
from knnspark.kernels.shard import Shard
from knnspark.kernels.topk import PAD_ID, drop_duplicate_ids, select_topk
from knnspark.partition import (
    FEATURES_TMP,
    GROUP_TMP,
    KEY_HI,
    KEY_LO,
    SearchSettings,
    batch_groups,
    output_arrays,
    query_matrix,
    with_columns,
)
from knnspark.shard_codec import shard_from_blob, shard_from_rows
from knnspark.timing import TaskTimer

__all__ = [
    "ROUTED_SCHEMA",
    "ROUTE_KEY",
    "Routing",
    "distinct_keys",
    "merge_partials_fn",
    "route_queries_fn",
    "shard_from_table",
    "shard_search_fn",
]

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
        T.StructField(GROUP_TMP, T.StringType(), True),  # groupCol: the query's group key
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
        pa.field(GROUP_TMP, pa.string()),
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

    def visits_every_shard(self, settings: SearchSettings) -> bool:
        """Whether the first round sends every query to every shard (nothing to filter)."""
        router = settings.router
        if settings.groups is not None:
            return False
        if router is None:
            return True
        if settings.nprobe is None:
            return not router.can_prune
        return settings.nprobe >= router.num_shards

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
            groups = batch_groups(batch, valid, settings)
            if groups is not None:  # groupCol: its group's shards (a null group: its home)
                shards = settings.groups.plan(*groups)
            else:
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
            GROUP_TMP: (
                taken.column(GROUP_TMP)
                if GROUP_TMP in taken.column_names
                else pa.nulls(n, pa.string())
            ),
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
        # A query row has no list yet (its features may be null: an invalid query).
        is_query = routed.column("ids").is_null()
        passed = routed.filter(pc.invert(is_query))
        queries = distinct_keys(routed.filter(is_query))
        check_routed(queries.num_rows, shard_rows.num_rows)
        if settings.groups is not None:
            return pa.concat_tables([passed, grouped_partials(queries, shard_rows, settings)])
        if queries.num_rows == 0 or shard_rows.num_rows == 0:
            return passed
        timer = TaskTimer("shard_search")
        timer.count(queries.num_rows)
        with timer.stage("decode"):
            # Queries routed in Spark (route_all) arrive unchecked: invalid ones raise under
            # handleInvalid='error' and are dropped otherwise, as route_queries_fn does.
            matrix, valid = query_matrix(queries.column(FEATURES_TMP), settings)
            if not valid.all():
                queries = queries.filter(pa.array(valid))
            if queries.num_rows == 0:
                return passed
        with timer.stage("load"):
            shard_no = int(shard_rows.column("shard")[0].as_py())
            shard = shard_from_table(shard_rows, shard_no, settings)
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
            GROUP_TMP: pa.nulls(queries.num_rows, pa.string()),
        },
        schema=_ROUTED_ARROW,
    )


def grouped_partials(queries: pa.Table, shard_rows: pa.Table, settings: SearchSettings) -> pa.Table:
    """groupCol: each query's partial list from its group's piece of this shard.

    A query whose group this shard lacks (or a shard without rows) gets a padded list, so
    that it reaches the merge and comes out with empty neighbors rather than nulls.
    """
    n, k = queries.num_rows, settings.k
    dist, ids, labels = np.full((n, k), np.inf), np.full((n, k), PAD_ID), np.full((n, k), np.nan)
    if n and shard_rows.num_rows:
        shard_no = int(shard_rows.column("shard")[0].as_py())
        shard = shard_from_group_table(
            shard_rows, shard_no, settings.kind, settings.kind_params, settings.n_features,
            settings.model_id,
        )  # fmt: skip
        matrix, _ = list_matrix(queries.column(FEATURES_TMP), settings.n_features)
        groups = np.asarray(queries.column(GROUP_TMP).to_pylist(), dtype=object)
        dist, ids, labels = shard.search_groups(matrix, groups, k, settings.search_options)
    return _partial_rows(queries, ids, dist, labels)


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
    """mapInArrow function over partial lists (ROUTED_SCHEMA rows) sorted by query key.

    Each partition holds every partial list of its queries, sorted so that a query's lists
    are consecutive rows; the last query of a batch is held back until the next batch (or
    the end) shows it complete.  Emits one row per query: its keys and the outputs of
    ``settings.task`` (with ``SHARDS_TMP``, the number of lists merged: one per shard searched).
    """

    def merge(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        maybe_fail("search")
        held: pa.Table | None = None
        for batch in batches:
            table = pa.Table.from_batches([batch])
            if held is not None and held.num_rows:
                table = pa.concat_tables([held, table])
            starts = _key_starts(table)
            if starts.size == 0:
                continue
            held = table.slice(int(starts[-1]))
            if starts.size > 1:
                yield _merge_sorted(table.slice(0, int(starts[-1])), settings)
        if held is not None and held.num_rows:
            yield _merge_sorted(held, settings)

    return merge


def _key_starts(table: pa.Table) -> np.ndarray:
    """Row numbers where a new query key begins in key-sorted ``table``."""
    hi = table.column(KEY_HI).to_numpy()
    lo = table.column(KEY_LO).to_numpy()
    if hi.size == 0:
        return np.zeros(0, dtype=np.int64)
    new = np.ones(hi.size, dtype=bool)
    new[1:] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])
    return np.flatnonzero(new)


def _merge_sorted(table: pa.Table, settings: SearchSettings) -> pa.RecordBatch:
    """One output row per query key of key-sorted ``table``: its lists merged to the top k."""
    starts = _key_starts(table)
    groups = starts.size
    lists = np.diff(np.append(starts, table.num_rows))  # per query: one per shard searched
    group = np.repeat(np.arange(groups), lists)
    slot = np.arange(table.num_rows) - starts[group]
    width = int(lists.max())

    def gathered(name: str, fill: float | int, dtype: type) -> np.ndarray:
        rows = padded_matrix(table.column(name), fill, dtype)
        out = np.full((groups, width, rows.shape[1]), fill, dtype=dtype)
        out[group, slot] = rows
        return out.reshape(groups, -1)

    dist = gathered("dist", np.inf, np.float64)
    ids = gathered("ids", PAD_ID, np.int64)
    labels = gathered("labels", np.nan, np.float64)
    # A retried or repeated search of one shard must not count a row twice.
    dist, ids = drop_duplicate_ids(dist, ids)
    dist, ids, pos = select_topk(dist, ids, settings.k)
    labels = np.take_along_axis(labels, pos, axis=1)
    valid = np.ones(groups, dtype=bool)
    out = output_arrays(dist, ids, labels, valid, settings, lists.astype(np.int32))
    index = pa.array(starts)
    keys = pa.RecordBatch.from_arrays(
        [table.column(KEY_HI).take(index).combine_chunks(),
         table.column(KEY_LO).take(index).combine_chunks()],
        names=[KEY_HI, KEY_LO],
    )  # fmt: skip
    return with_columns(keys, out)
