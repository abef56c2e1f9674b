"""Plan the search of a query DataFrame against a fitted index.

Two plans give identical results:

* **broadcast** — the shards are broadcast once; one ``mapInArrow`` pass
  searches every shard for each Arrow batch and merges inside the task.  The
  query DataFrame keeps its partitioning and row order.
* **shard-major** — for indexes past ``maxBroadcastBytes``.  The shards stay
  where ``fit`` persisted them, one per partition (hash partitioned on a key
  chosen per shard); only queries travel.  Each query is routed to the shards
  it must visit: every shard (an ``explode`` in Spark, no Python pass), or,
  with k-means routing, a ``mapInArrow`` picks its ``nprobe`` nearest or, for
  pruned exact search, its nearest and then those its k-th distance cannot
  exclude.  A ``cogroup`` per round meets each shard with all queries routed
  to it (Spark shuffles only the query side); with k-means routing or groups
  the shard side is first restricted to the shards some query is routed to (a
  broadcast left-semi join on keys read from the routed queries' exchange,
  which Spark reuses), so an unvisited shard never reaches Python.  The
  partial top-k lists are repartitioned and sorted on the query's key, so that
  a ``mapInArrow`` merges
  each query's consecutive lists with the same numpy merge (no aggregate).
  Shuffle bytes grow with queries x shards visited, not with the query
  DataFrame's partitioning.  The result is joined back to the queries on a
  hash of their features, so no row is lost: rows without neighbors (invalid
  input under ``handleInvalid='keep'``) get nulls, and equal queries are
  searched once per shard.  A small result (the query count, from the one
  count job, under ``spark.sql.autoBroadcastJoinThreshold``) is broadcast to
  the queries, which then keep their partitions and order.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from knnspark.index import TrainingIndex
from knnspark.partition import (
    FEATURES_TMP,
    KEY_HI,
    KEY_LO,
    SearchSettings,
    broadcast_search_fn,
    output_fields,
)
from knnspark.schema import column
from knnspark.shard_layout import PARTITION_KEY, shard_partition_keys
from knnspark.shard_major import (
    ROUTE_KEY,
    ROUTED_SCHEMA,
    Routing,
    merge_partials_fn,
    route_queries_fn,
    shard_search_fn,
)

__all__ = [
    "QUERY_BYTES_CONF",
    "QUERY_BYTES_PER_TASK",
    "rounds_for",
    "routed_row_bytes",
    "search_dataframe",
    "routed_shards",
    "search_rounds",
    "shard_cogroup",
    "shard_routing",
]

#: Bytes of routed queries one search task may hold at once (the shard-major path).
QUERY_BYTES_PER_TASK = 512 << 20
#: Spark conf that overrides :data:`QUERY_BYTES_PER_TASK` for a session.
QUERY_BYTES_CONF = "spark.knnspark.search.queryBytesPerTask"

#: Prefix of the plain names the query columns pass through ``mapInArrow`` under.
_PASS_THROUGH = "__knn_in_"


def search_dataframe(
    df: DataFrame,
    index: TrainingIndex,
    settings: SearchSettings,
    shards_broadcast: Any,
    features: Column,
    group_columns: dict[str, Column] | None = None,
    features_column: str | None = None,
) -> DataFrame:
    """Every column of ``df`` plus the temporary output columns of ``settings.task``.

    ``shards_broadcast`` is the broadcast of the shards (broadcast storage)
    and is ignored for distributed storage; ``features`` is the query
    features as ``array<float>``, already imputed and standardized;
    ``group_columns`` the query's group key and home shard (``groupCol``);
    ``features_column`` names a column of ``df`` that ``features`` merely reads (an
    ``array<float>`` column, no preprocessing), which the broadcast plan then decodes
    instead of sending a copy of it to Python next to it.
    """
    _check_no_reserved_columns(df)
    extra = group_columns or {}
    if index.storage == "broadcast":
        return _broadcast_plan(df, features, settings, shards_broadcast, extra, features_column)
    return _shard_major_plan(df, features, index, settings, extra)


def _check_no_reserved_columns(df: DataFrame) -> None:
    for name in df.columns:
        if name.startswith("__knn_"):
            raise ValueError(
                f"Column '{name}' uses the prefix '__knn_', which knnspark reserves for its "
                "temporary columns; rename it."
            )


def _broadcast_plan(
    df: DataFrame,
    features: Any,
    settings: SearchSettings,
    shards_broadcast: Any,
    extra: dict[str, Column],
    features_column: str | None = None,
) -> DataFrame:
    schema = T.StructType(df.schema.fields + output_fields(settings))
    # mapInArrow resolves each input column by its unquoted name, which fails for a name
    # holding a dot or a backtick; the columns go in under plain names (by position, which
    # is how the output schema gives them their own names back).
    plain = [f"{_PASS_THROUGH}{i}" for i in range(len(df.columns))]
    if features_column is not None and df.columns.count(features_column) == 1:
        # The query vectors cross to Python once (each copy is 4 bytes a value both ways
        # through Arrow): the function decodes the passed-through column itself.
        position = df.columns.index(features_column)
        settings = dataclasses.replace(settings, query_column=plain[position])
        searched = (df.withColumns(extra) if extra else df).toDF(*plain, *extra)
    else:
        searched = df.withColumns({FEATURES_TMP: features, **extra})
        searched = searched.toDF(*plain, FEATURES_TMP, *extra)
    return searched.mapInArrow(broadcast_search_fn(shards_broadcast, settings), schema)


def _shard_major_plan(
    df: DataFrame,
    features: Any,
    index: TrainingIndex,
    settings: SearchSettings,
    extra: dict[str, Column],
) -> DataFrame:
    # Keys from the features' content (and group): every evaluation of the plan agrees on them.
    content = [FEATURES_TMP, *[c for name in extra for c in (F.col(name), F.isnull(name))]]
    keyed = df.withColumns({FEATURES_TMP: features, **extra}).select(
        "*",
        F.xxhash64(*content).alias(KEY_HI),
        F.hash(*content).alias(KEY_LO),
    )
    queries = keyed.select(KEY_HI, KEY_LO, FEATURES_TMP, *extra)
    routing = shard_routing(index)
    n_queries = df.count()  # the one job before the search: rounds and the join's side
    rounds = rounds_for(n_queries, settings.n_features, settings.k, _query_budget(df))

    shard_data = index.distributed_data(settings.kind)
    every_shard = routing.visits_every_shard(settings)
    partitions = index.shard_partitions

    def search(routed: DataFrame, route_next: bool) -> DataFrame:
        fn = shard_search_fn(settings, routing, route_next)
        cogrouped = shard_cogroup(routed, shard_data, partitions, every_shard)
        return cogrouped.applyInArrow(fn, ROUTED_SCHEMA)

    partials = []
    for r in range(rounds):
        part = queries if rounds == 1 else queries.filter(F.pmod(KEY_LO, rounds) == r)
        if settings.router is None and settings.groups is None:
            routed = route_all(part, routing)  # every shard, in Spark
        else:
            routed = part.mapInArrow(route_queries_fn(settings, routing), ROUTED_SCHEMA)
        if routing.pruned(settings):
            routed = search(routed, route_next=True)  # lists, and queries for round two
        partials.append(search(routed, route_next=False))
    # Each query's partial lists meet in one partition, consecutive: one sort, no aggregate.
    gathered = (
        functools.reduce(DataFrame.unionAll, partials)
        .repartition(KEY_HI, KEY_LO)
        .sortWithinPartitions(KEY_HI, KEY_LO)
    )
    key_fields = [f for f in ROUTED_SCHEMA.fields if f.name in (KEY_HI, KEY_LO)]
    merged_schema = T.StructType(key_fields + output_fields(settings))
    merged = gathered.mapInArrow(merge_partials_fn(settings), merged_schema)
    if n_queries * merged_row_bytes(settings) <= _broadcast_threshold(df):
        # Small results go to the queries, which then keep their partitions and order.
        merged = F.broadcast(merged)
    joined = keyed.join(merged, on=[KEY_HI, KEY_LO], how="left")
    return joined.select(*[column(c) for c in df.columns], *merged.columns[2:])


def shard_cogroup(routed: DataFrame, shard_data: DataFrame, partitions: int, every_shard: bool):
    """``routed`` (by :data:`ROUTE_KEY`) cogrouped with the persisted shards they visit.

    The shard side is persisted hash partitioned on ``PARTITION_KEY``, one shard per
    partition: the cogroup shuffles the routed rows to it and leaves it in place.  Unless
    ``every_shard`` (each query visits every shard: nothing to leave out), the shard side is
    first restricted to the shards some query is routed to (:func:`routed_shards`), so an
    unvisited shard never reaches Python.
    """
    if every_shard:
        shards = shard_data.groupBy(PARTITION_KEY)
    else:
        routed = routed.repartition(partitions, ROUTE_KEY)
        shards = routed_shards(shard_data, routed).groupBy(PARTITION_KEY)
    return routed.groupBy(ROUTE_KEY).cogroup(shards)


def routed_shards(shard_data: DataFrame, routed: DataFrame) -> DataFrame:
    """The rows of the shards that ``routed`` sends at least one query to.

    A cogroup hands every shard's rows to a Python task, queries or not; this keeps only
    the shards some query visits, by a broadcast left-semi join, which leaves the persisted
    side's partitioning and order as they are.  ``routed`` must be the very DataFrame the
    cogroup reads, repartitioned on :data:`ROUTE_KEY`: the keys are taken from that
    exchange, which Spark then reuses, so the routing pass (or pruned search's first round)
    runs once.  A key that only carries partial lists (rows with ``ids`` set, passed through
    pruned search's second round) needs no shard: the cogroup passes them on without one.
    The hash reads every column so that the optimizer cannot prune the keys' side to
    :data:`ROUTE_KEY` below the exchange (which would make it another exchange, and the
    routing run twice).
    """
    everything = F.xxhash64(*routed.columns)
    is_query = F.col("ids").isNull() if "ids" in routed.columns else F.lit(True)
    keys = (
        routed.groupBy(ROUTE_KEY)
        .agg(
            F.max(is_query).alias("__knn_has_query"),
            F.max(everything).alias("__knn_reads_all"),
        )
        .filter(F.col("__knn_has_query") & F.col("__knn_reads_all").isNotNull())
        .select(F.col(ROUTE_KEY).alias(PARTITION_KEY))
    )
    return shard_data.join(F.broadcast(keys), on=PARTITION_KEY, how="left_semi")


def route_all(queries: DataFrame, routing: Routing) -> DataFrame:
    """Every query to every shard (no router, no groups), in Spark: ROUTED_SCHEMA rows.

    The shard search checks the queries (:func:`~knnspark.partition.query_matrix`); a null
    vector travels as an empty one so that it still reads as a query there.
    """
    keys = F.array(*[F.lit(routing.partition_keys[s]) for s in routing.shards])
    nulls = {f.name: F.lit(None).cast(f.dataType) for f in ROUTED_SCHEMA.fields[4:]}
    features_type = ROUTED_SCHEMA[FEATURES_TMP].dataType
    return queries.select(
        KEY_HI,
        KEY_LO,
        F.explode(keys).alias(ROUTE_KEY),
        F.coalesce(F.col(FEATURES_TMP).cast(features_type), F.array().cast(features_type)).alias(
            FEATURES_TMP
        ),
        *[value.alias(name) for name, value in nulls.items()],
    )


def merged_row_bytes(settings: SearchSettings) -> int:
    """Bytes of one query's merged outputs (the side of the join back): lists and keys."""
    return 24 * int(settings.k) + 16 * len(settings.classes or ()) + 64


def _broadcast_threshold(df: DataFrame) -> int:
    """``spark.sql.autoBroadcastJoinThreshold``: Spark cannot size a Python function's output."""
    value = df.sparkSession.conf.get("spark.sql.autoBroadcastJoinThreshold", None) or "10485760"
    return _conf_bytes(value)


_BYTE_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "p": 2**50}


def _conf_bytes(value: str) -> int:
    """A Spark bytes conf (``10485760``, ``10MB``, ``-1``) in bytes; negative means off.

    Examples
    --------
    >>> _conf_bytes("10MB"), _conf_bytes("2g"), _conf_bytes("-1")
    (10485760, 2147483648, -1)
    """
    text = value.strip().lower().removesuffix("b")
    number = text.rstrip("kmgtp")
    return int(number) * _BYTE_UNITS[text[len(number) :]]


def _query_budget(df: DataFrame) -> int:
    return int(df.sparkSession.conf.get(QUERY_BYTES_CONF, None) or QUERY_BYTES_PER_TASK)


def shard_routing(index: TrainingIndex) -> Routing:
    """Where the shard-major path finds each shard of a distributed ``index``."""
    return Routing(
        shards=tuple(index.shard_sizes),
        sizes=tuple(index.shard_sizes.get(s, 0) for s in range(index.shard_partitions)),
        partition_keys=tuple(shard_partition_keys(index.shard_partitions)),
    )


def search_rounds(df: DataFrame, settings: SearchSettings) -> int:
    """Rounds that keep one task's queries within :data:`QUERY_BYTES_PER_TASK` (a count job).

    A cogroup hands one shard's queries to one Python task at once; past the budget the
    queries are split by key into rounds, each a cogroup of its own against the same
    persisted shards (the query DataFrame is then read once per round: cache it).
    Counting every query row bounds the rows routed to any one shard.
    """
    return rounds_for(df.count(), settings.n_features, settings.k, _query_budget(df))


def routed_row_bytes(n_features: int, k: int) -> int:
    """Bytes the shard-major path shuffles per shard a query visits (one way).

    A routed query (float32 features, keys) or a partial list (k ids, distances and labels),
    with Arrow's offsets and validity; the size model of rounds and ``scripts/scale_model.py``.
    """
    return 4 * int(n_features) + 24 * int(k) + 64


def rounds_for(n_queries: int, n_features: int, k: int, budget: int) -> int:
    """Rounds that keep ``n_queries`` routed rows of one shard within ``budget`` bytes."""
    return max(1, math.ceil(int(n_queries) * routed_row_bytes(n_features, k) / max(1, budget)))
