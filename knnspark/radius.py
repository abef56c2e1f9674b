"""``model.radius_neighbors``: every training row within a distance of each query row.

Exact search only (:mod:`knnspark.kernels.radius`).  Both storages serve it, as they serve
``kneighbors``: a broadcast index is searched inside one ``mapInArrow`` pass (lists merged
in the task); a distributed one on the shard-major layout (:mod:`knnspark.search`): each
query is routed to the shards it must visit, a ``cogroup`` meets each persisted shard with
its queries without moving the shard, and each query's partial lists are gathered by a hash
of its features, merged and joined back, so no query row is lost.  Past
``spark.knnspark.search.queryBytesPerTask`` the queries are split into rounds by the rule
``kneighbors`` uses (:func:`knnspark.search.search_rounds`, with ``k = maxNeighbors``).

A query visits every shard, unless the model was fitted with ``partitioning="kmeans"`` and
searches with a true metric: then it skips each shard whose lower bound exceeds the radius
(:func:`knnspark.kernels.radius.shards_within_radius`), on both paths alike.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from knnspark._faults import check_routed
from knnspark.arrow_columns import padded_matrix
from knnspark.converters import int_at_least, positive_float
from knnspark.errors import InvalidInputError
from knnspark.index import EXACT_KIND
from knnspark.kernels.radius import (
    RadiusLists,
    merge_radius_lists,
    radius_search,
    shards_within_radius,
)
from knnspark.kernels.topk import PAD_ID
from knnspark.kmeans_sharding import search_router
from knnspark.partition import (
    FEATURES_TMP,
    KEY_HI,
    KEY_LO,
    NEIGHBORS,
    SearchSettings,
    map_query_batches,
    query_matrix,
    with_columns,
)
from knnspark.schema import check_output_columns, column, feature_array_expr
from knnspark.search import search_rounds, shard_cogroup, shard_routing
from knnspark.shard_major import (
    ROUTE_KEY,
    ROUTED_SCHEMA,
    Routing,
    distinct_keys,
    route_queries_fn,
    shard_from_table,
)
from knnspark.timing import TaskTimer

__all__ = ["RadiusNeighborsMixin", "search_radius"]

_IDS = "__knn_r_ids"
_DIST = "__knn_r_dist"
_COUNT = "__knn_r_count"
_SHARDS = "__knn_r_shards"
_PASS_THROUGH = "__knn_r_in_"

_LIST_I64 = pa.list_(pa.int64())
_LIST_F64 = pa.list_(pa.float64())
_OUTPUT_FIELDS = [
    T.StructField(_IDS, T.ArrayType(T.LongType(), True), True),
    T.StructField(_DIST, T.ArrayType(T.DoubleType(), True), True),
    T.StructField(_COUNT, T.LongType(), True),
]
_SHARDS_FIELD = T.StructField(_SHARDS, T.IntegerType(), True)
_PARTIAL_SCHEMA = T.StructType(
    [
        T.StructField(KEY_HI, T.LongType(), False),
        T.StructField(KEY_LO, T.IntegerType(), False),
        *_OUTPUT_FIELDS,
    ]
)


@dataclass(frozen=True)
class RadiusSettings:
    """A radius search task's plain values."""

    search: SearchSettings  # metric, p, features, handleInvalid, router (k unused)
    radius: float
    limit: int | None

    @property
    def output_fields(self) -> list[T.StructField]:
        """The temporary output columns, with the shards visited when asked for."""
        return _OUTPUT_FIELDS + ([_SHARDS_FIELD] if self.search.shards_visited else [])


@dataclass(frozen=True)
class _RadiusRouting(Routing):
    """The shard-major routing of a radius search: each query to the shards it must visit."""

    radius: float = 0.0

    def first_round(self, queries: np.ndarray, settings: SearchSettings) -> np.ndarray:
        router = settings.router
        if router is None:  # hash partitioning: every shard
            return super().first_round(queries, settings)
        todo = shards_within_radius(router, queries, self.radius)
        return np.where(todo, np.arange(router.num_shards)[None, :], -1)


class RadiusNeighborsMixin:
    """``radius_neighbors`` of a fitted model (:class:`knnspark.base._KNNModel`)."""

    def radius_neighbors(
        self,
        dataset: DataFrame,
        radius: float,
        maxNeighbors: int | None = None,
        neighborIdsCol: str = "neighbor_ids",
        distancesCol: str = "distances",
        truncatedCol: str = "truncated",
    ) -> DataFrame:
        """Every column of ``dataset`` plus every training row within ``radius``, nearest first.

        As scikit-learn's ``radius_neighbors(X, radius, sort_results=True)``: a training row
        is a neighbor when its distance is ``<= radius``; ties go to the smaller id.  Exact
        search only: a model that searches an HNSW index raises (``setAlgorithm('brute')``
        searches its rows exactly).  Lists are built block by block on the executors.  With
        ``partitioning="kmeans"`` and a true metric a query skips the shards that cannot hold
        a row within ``radius``; a set ``shardsVisitedCol`` adds the shards each row searched.

        Parameters
        ----------
        radius : float
            A finite number > 0.
        maxNeighbors : int, optional
            Keep at most this many (the nearest) per row; ``truncatedCol`` says which rows
            lost some.  None keeps them all: a radius holding most training rows then gives
            lists as long as the training set.

        Returns
        -------
        DataFrame
            ``neighborIdsCol`` (``array<long>``), ``distancesCol`` (``array<double>``) and
            ``truncatedCol`` (boolean: more rows were within ``radius`` than
            ``maxNeighbors``); all null for invalid rows under ``handleInvalid='keep'``.
        """
        if self.index.groups is not None:
            raise InvalidInputError(
                "radius_neighbors does not support a model fitted with groupCol yet "
                f"(groupCol={self.getGroupCol()!r}); fit a model without groupCol, or use "
                "kneighbors, which searches within groups."
            )
        return search_radius(
            self, dataset, radius, maxNeighbors, neighborIdsCol, distancesCol, truncatedCol
        )


def search_radius(
    model: Any,
    dataset: DataFrame,
    radius: float,
    max_neighbors: int | None,
    ids_col: str,
    dist_col: str,
    truncated_col: str,
) -> DataFrame:
    """What :meth:`RadiusNeighborsMixin.radius_neighbors` returns; see there."""
    radius = positive_float("radius")(radius)
    if max_neighbors is not None:
        max_neighbors = int_at_least("maxNeighbors", 1)(max_neighbors)
    outputs = {"neighborIdsCol": ids_col, "distancesCol": dist_col, "truncatedCol": truncated_col}
    visited_col = model.getShardsVisitedCol()
    if visited_col is not None:
        outputs["shardsVisitedCol"] = visited_col
    check_output_columns(dataset.schema, outputs)
    kind = model._search_kind()
    if kind != EXACT_KIND:
        raise ValueError(
            f"radius_neighbors searches exactly, but this model searches its {kind!r} index "
            f"(algorithmUsed={model.algorithmUsed!r}, algorithm={model.getAlgorithm()!r}); "
            f"call model.setAlgorithm({EXACT_KIND!r}) first: every model keeps its rows for "
            "exact search."
        )
    index = model.index
    index.preprocessing.check_metric(model.getMetric())
    for name in dataset.columns:
        if name.startswith("__knn_"):
            raise ValueError(
                f"Column '{name}' uses the prefix '__knn_', which knnspark reserves for its "
                "temporary columns; rename it."
            )
    features = index.preprocessing.apply(feature_array_expr(dataset.schema, model.getFeaturesCol()))
    settings = RadiusSettings(
        SearchSettings(
            task=NEIGHBORS,
            k=1,
            metric=model.getMetric(),
            p=float(model.getP()),
            n_features=index.n_features,
            features_col=model.getFeaturesCol(),
            handle_invalid=model.getHandleInvalid(),
            model_id=index.model_id,
            # Exact search: nprobe does not apply, the router only skips shards it can bound.
            router=search_router(index.router, None, model.getMetric(), model.getP()),
            shards_visited=visited_col is not None,
        ),
        radius,
        max_neighbors,
    )
    if index.storage == "broadcast":
        searched = _broadcast_plan(
            dataset, features, settings, model._shipped_shards(dataset.sparkSession, kind)
        )
    else:
        searched = _reduce_plan(dataset, features, index, settings)
    count = F.col(_COUNT)
    return searched.select(
        *[column(c) for c in dataset.columns],
        F.col(_IDS).alias(ids_col),
        F.col(_DIST).alias(dist_col),
        F.when(count.isNotNull(), count > F.size(_IDS)).alias(truncated_col),
        *([F.col(_SHARDS).alias(visited_col)] if visited_col is not None else []),
    )


# ---------------------------------------------------------------- executor side


def _search_shards(
    shards: list, queries: np.ndarray, settings: RadiusSettings, plan: np.ndarray | None = None
) -> RadiusLists:
    """The shards' lists for a block of queries, merged.

    ``plan[i, j]`` says whether query ``i`` searches ``shards[j]`` (None: every shard).
    """
    opts = settings.search
    searched = [j for j in range(len(shards)) if plan is None or plan[:, j].any()]
    if len(searched) == 1 and (plan is None or plan[:, searched[0]].all()):
        # One shard for every query (always so on the distributed path): its lists are
        # final, since a shard's ids ascend with its positions; no merge, no copies.
        shard = shards[searched[0]]
        found = radius_search(shard, queries, settings.radius, opts.metric, opts.p, settings.limit)
        return dataclasses.replace(found, ids=shard.ids[found.ids])
    query, ids, dist = [np.empty(0, np.int64)], [np.empty(0, np.int64)], [np.empty(0)]
    counts = np.zeros(queries.shape[0], dtype=np.int64)
    for j, shard in enumerate(shards):
        rows = np.arange(queries.shape[0]) if plan is None else np.flatnonzero(plan[:, j])
        if rows.size == 0:
            continue
        found = radius_search(
            shard, queries[rows], settings.radius, opts.metric, opts.p, settings.limit
        )
        query.append(np.repeat(rows, np.diff(found.offsets)))
        ids.append(shard.ids[found.ids])
        dist.append(found.dist)
        counts[rows] += found.counts
    flat = (np.concatenate(x) for x in (query, ids, dist))
    return merge_radius_lists(*flat, counts, settings.limit)


def _broadcast_plan_of(shards: list, queries: np.ndarray, settings: RadiusSettings) -> np.ndarray:
    """(n_queries, len(shards)) mask of the broadcast shards each query searches.

    The broadcast list holds the non-empty shards in shard order (what ``fit`` collects).
    """
    router = settings.search.router
    if router is None:
        return np.ones((queries.shape[0], len(shards)), dtype=bool)
    return shards_within_radius(router, queries, settings.radius)[:, router.nonempty]


def _output_arrays(
    lists: RadiusLists, valid: np.ndarray, visited: np.ndarray | None = None
) -> dict[str, pa.Array]:
    """The output columns; rows where ``valid`` is False get nulls.

    ``visited`` (shards searched per valid row) adds the shards-visited column.
    """
    lengths = np.zeros(valid.shape[0], dtype=np.int64)
    lengths[valid] = np.diff(lists.offsets)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    mask = pa.array(~valid)
    counts = np.zeros(valid.shape[0], dtype=np.int64)
    counts[valid] = lists.counts
    out = {
        _IDS: pa.ListArray.from_arrays(offsets, pa.array(lists.ids, pa.int64()), mask=mask),
        _DIST: pa.ListArray.from_arrays(offsets, pa.array(lists.dist, pa.float64()), mask=mask),
        _COUNT: pa.array(counts, pa.int64(), mask=~valid),
    }
    if visited is not None:
        shards = np.zeros(valid.shape[0], dtype=np.int32)
        shards[valid] = visited
        out[_SHARDS] = pa.array(shards, pa.int32(), mask=~valid)
    return out


def _broadcast_fn(
    shards_broadcast: Any, settings: RadiusSettings
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    def search(
        shards: list,
        batch: pa.RecordBatch,
        queries: np.ndarray,
        valid: np.ndarray,
        timer: TaskTimer,
    ) -> pa.RecordBatch:
        with timer.stage("search"):
            plan = _broadcast_plan_of(shards, queries, settings)
            lists = _search_shards(shards, queries, settings, plan)
        with timer.stage("encode"):
            visited = plan.sum(axis=1) if settings.search.shards_visited else None
            out = _output_arrays(lists, valid, visited)
            return with_columns(batch.drop_columns([FEATURES_TMP]), out)

    return map_query_batches(shards_broadcast, settings.search, search, "radius_search")


def _shard_fn(settings: RadiusSettings) -> Callable[[pa.Table, pa.Table], pa.Table]:
    """cogroup function: the queries routed to one shard meet the shard's rows."""
    opts = settings.search

    def search(routed: pa.Table, shard_rows: pa.Table) -> pa.Table:
        check_routed(routed.num_rows, shard_rows.num_rows)
        if routed.num_rows == 0 or shard_rows.num_rows == 0:
            return _PARTIAL_SCHEMA_ARROW.empty_table()
        queries = distinct_keys(routed)
        shard = shard_from_table(shard_rows, int(shard_rows.column("shard")[0].as_py()), opts)
        matrix, valid = query_matrix(queries.column(FEATURES_TMP), opts)
        lists = _search_shards([shard], matrix, settings)
        out = _output_arrays(lists, np.ones(matrix.shape[0], dtype=bool))
        keys = queries.select([KEY_HI, KEY_LO]).filter(pa.array(valid))
        return pa.table({**{n: keys.column(n) for n in (KEY_HI, KEY_LO)}, **out})

    return search


def _merge_fn(
    settings: RadiusSettings,
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """mapInArrow function over rows holding every shard's partial lists of one query."""

    def merge(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            ids = padded_matrix(batch.column(_IDS), PAD_ID, np.int64)
            dist = padded_matrix(batch.column(_DIST), np.inf, np.float64)
            query = np.repeat(np.arange(batch.num_rows), ids.shape[1])
            real = ids.reshape(-1) != PAD_ID
            counts = batch.column(_COUNT).to_numpy()
            lists = merge_radius_lists(
                query[real], ids.reshape(-1)[real], dist.reshape(-1)[real], counts, settings.limit
            )
            out = _output_arrays(lists, np.ones(batch.num_rows, dtype=bool))
            passed = [KEY_HI, KEY_LO, *([_SHARDS] if _SHARDS in batch.schema.names else [])]
            yield with_columns(batch.select(passed), out)

    return merge


_PARTIAL_SCHEMA_ARROW = pa.schema(
    [
        pa.field(KEY_HI, pa.int64(), False),
        pa.field(KEY_LO, pa.int32(), False),
        pa.field(_IDS, _LIST_I64),
        pa.field(_DIST, _LIST_F64),
        pa.field(_COUNT, pa.int64()),
    ]
)


# ---------------------------------------------------------------- plans


def _broadcast_plan(
    df: DataFrame, features: Any, settings: RadiusSettings, shards_broadcast: Any
) -> DataFrame:
    schema = T.StructType(df.schema.fields + settings.output_fields)
    # Plain names through mapInArrow (a name holding a dot or a backtick would not resolve).
    plain = [f"{_PASS_THROUGH}{i}" for i in range(len(df.columns))]
    searched = df.withColumn(FEATURES_TMP, features).toDF(*plain, FEATURES_TMP)
    return searched.mapInArrow(_broadcast_fn(shards_broadcast, settings), schema)


def _reduce_plan(df: DataFrame, features: Any, index: Any, settings: RadiusSettings) -> DataFrame:
    keyed = df.withColumn(FEATURES_TMP, features).select(
        "*", F.xxhash64(FEATURES_TMP).alias(KEY_HI), F.hash(FEATURES_TMP).alias(KEY_LO)
    )
    queries = keyed.select(KEY_HI, KEY_LO, FEATURES_TMP)
    # Each query goes to the shards it must visit; the shards stay where fit persisted them.
    plain = shard_routing(index)
    routing = _RadiusRouting(
        **{f.name: getattr(plain, f.name) for f in dataclasses.fields(plain)},
        radius=settings.radius,
    )
    shard_data = index.distributed_data(EXACT_KIND)
    every_shard = routing.visits_every_shard(settings.search)
    # kneighbors' size model with k = maxNeighbors bounds what a task holds: its routed
    # queries and, with a cap, their lists.  Without a cap the lists are not bounded.
    rounds = search_rounds(df, dataclasses.replace(settings.search, k=settings.limit or 0))
    partials = []
    for r in range(rounds):
        part = queries if rounds == 1 else queries.filter(F.pmod(KEY_LO, rounds) == r)
        routed = part.mapInArrow(route_queries_fn(settings.search, routing), ROUTED_SCHEMA)
        routed = routed.select(KEY_HI, KEY_LO, ROUTE_KEY, FEATURES_TMP)
        cogrouped = shard_cogroup(routed, shard_data, index.shard_partitions, every_shard)
        partials.append(cogrouped.applyInArrow(_shard_fn(settings), _PARTIAL_SCHEMA))
    gathered = (
        functools.reduce(DataFrame.unionAll, partials)
        .groupBy(KEY_HI, KEY_LO)
        .agg(
            F.flatten(F.collect_list(_IDS)).alias(_IDS),
            F.flatten(F.collect_list(_DIST)).alias(_DIST),
            F.sum(_COUNT).alias(_COUNT),
            F.count(F.lit(1)).cast("int").alias(_SHARDS),  # one partial list per shard
        )
    )
    merged_schema = T.StructType(_PARTIAL_SCHEMA.fields[:2] + [_SHARDS_FIELD, *_OUTPUT_FIELDS])
    merged = gathered.mapInArrow(_merge_fn(settings), merged_schema)
    joined = keyed.join(merged, on=[KEY_HI, KEY_LO], how="left")
    outputs = [f.name for f in settings.output_fields]
    return joined.select(*[column(c) for c in df.columns], *outputs)
