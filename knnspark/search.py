"""Plan the search of a query DataFrame against a fitted index.

Two plans give identical results:

* **broadcast** — the shards are broadcast once; one ``mapInArrow`` pass
  searches every shard for each Arrow batch and merges inside the task.  The
  query DataFrame keeps its partitioning and row order.
* **distributed reduce** — for training sets past ``maxBroadcastBytes``.  Each
  block of queries (one input partition) meets one shard in a ``cogroup``,
  every pair emits partial top-k lists, a ``groupBy`` on the query's row key
  gathers them, and the same numpy merge runs in a final ``mapInArrow``.
  The result is joined back to the queries on a hash of their features, so
  no row is lost: rows without neighbors (invalid input under
  ``handleInvalid='keep'``) get nulls, and equal queries are searched once.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from knnspark.index import TrainingIndex
from knnspark.partition import (
    BLOCK_KEY,
    FEATURES_TMP,
    KEY_HI,
    KEY_LO,
    PARTIAL_SCHEMA,
    SHARD_KEY,
    SHARDS_TMP,
    SearchSettings,
    broadcast_search_fn,
    merge_partials_fn,
    output_fields,
    pair_search_fn,
)
from knnspark.schema import column

__all__ = ["search_dataframe"]

#: Prefix of the plain names the query columns pass through ``mapInArrow`` under.
_PASS_THROUGH = "__knn_in_"


def search_dataframe(
    df: DataFrame,
    index: TrainingIndex,
    settings: SearchSettings,
    shards_broadcast: Any,
    features: Column,
) -> DataFrame:
    """Every column of ``df`` plus the temporary output columns of ``settings.task``.

    ``shards_broadcast`` is the broadcast of the shards (broadcast storage)
    and is ignored for distributed storage; ``features`` is the query
    features as ``array<float>``, already imputed and standardized.
    """
    _check_no_reserved_columns(df)
    if index.storage == "broadcast":
        return _broadcast_plan(df, features, settings, shards_broadcast)
    return _reduce_plan(df, features, index, settings)


def _check_no_reserved_columns(df: DataFrame) -> None:
    for name in df.columns:
        if name.startswith("__knn_"):
            raise ValueError(
                f"Column '{name}' uses the prefix '__knn_', which knnspark reserves for its "
                "temporary columns; rename it."
            )


def _broadcast_plan(
    df: DataFrame, features: Any, settings: SearchSettings, shards_broadcast: Any
) -> DataFrame:
    schema = T.StructType(df.schema.fields + output_fields(settings))
    fn = broadcast_search_fn(shards_broadcast, settings)
    # mapInArrow resolves each input column by its unquoted name, which fails for a name
    # holding a dot or a backtick; the columns go in under plain names (by position, which
    # is how the output schema gives them their own names back).
    plain = [f"{_PASS_THROUGH}{i}" for i in range(len(df.columns))]
    searched = df.withColumn(FEATURES_TMP, features).toDF(*plain, FEATURES_TMP)
    return searched.mapInArrow(fn, schema)


def _reduce_plan(
    df: DataFrame, features: Any, index: TrainingIndex, settings: SearchSettings
) -> DataFrame:
    spark = df.sparkSession
    # Keys from the features' content: every evaluation of the plan agrees on them.
    keyed = df.withColumn(FEATURES_TMP, features).select(
        "*",
        F.xxhash64(FEATURES_TMP).alias(KEY_HI),
        F.hash(FEATURES_TMP).alias(KEY_LO),
    )
    n_blocks = max(1, df.rdd.getNumPartitions())
    queries = keyed.select(
        KEY_HI,
        KEY_LO,
        FEATURES_TMP,
        F.spark_partition_id().alias(BLOCK_KEY),
    )
    shard_keys = spark.createDataFrame(
        [(int(s),) for s in index.shard_sizes],
        T.StructType([T.StructField(SHARD_KEY, T.IntegerType())]),
    )
    block_keys = spark.range(n_blocks).select(F.col("id").cast("int").alias(BLOCK_KEY))
    query_side = queries.crossJoin(F.broadcast(shard_keys))
    shard_data = index.distributed_data(settings.kind)
    shard_side = shard_data.withColumnRenamed("shard", SHARD_KEY).crossJoin(F.broadcast(block_keys))
    partials = (
        query_side.groupBy(SHARD_KEY, BLOCK_KEY)
        .cogroup(shard_side.groupBy(SHARD_KEY, BLOCK_KEY))
        .applyInArrow(pair_search_fn(settings), PARTIAL_SCHEMA)
    )
    gathered = partials.groupBy(KEY_HI, KEY_LO).agg(
        F.collect_list(F.struct("ids", "dist", "labels")).alias("parts")
    )
    gathered = gathered.select(
        KEY_HI,
        KEY_LO,
        F.flatten(F.transform("parts", lambda x: x["ids"])).alias("ids"),
        F.flatten(F.transform("parts", lambda x: x["dist"])).alias("dist"),
        F.flatten(F.transform("parts", lambda x: x["labels"])).alias("labels"),
        *([F.size("parts").cast("int").alias(SHARDS_TMP)] if settings.shards_visited else []),
    )
    key_fields = [f for f in PARTIAL_SCHEMA.fields if f.name in (KEY_HI, KEY_LO)]
    merged_schema = T.StructType(key_fields + output_fields(settings))
    merged = gathered.mapInArrow(merge_partials_fn(settings), merged_schema)
    joined = keyed.join(merged, on=[KEY_HI, KEY_LO], how="left")
    return joined.select(*[column(c) for c in df.columns], *merged.columns[2:])
