"""Fit-time work: validate the training data, number it, split it into shards.

One aggregation job checks the whole training set (row counts, invalid rows,
vector lengths, classes) before anything is built, so bad data fails with a
clear message on the driver.  The shards are then built on the executors
(``groupBy(shard).applyInArrow``); a training set that fits the broadcast
budget comes back to the driver as numpy blocks, a larger one stays in Spark
as a persisted DataFrame that the distributed-reduce path joins against.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from knnspark.errors import InvalidInputError
from knnspark.kernels.exact import ExactShard
from knnspark.schema import (
    check_id_column,
    check_label_column,
    feature_array_expr,
    invalid_features_expr,
)

__all__ = [
    "SHARD_BLOB_SCHEMA",
    "SHARD_ROWS_SCHEMA",
    "TrainingIndex",
    "build_index",
    "estimate_index_bytes",
]

logger = logging.getLogger("knnspark")

#: Training rows of a distributed-storage index (also the Parquet layout of saved models).
SHARD_ROWS_SCHEMA = T.StructType(
    [
        T.StructField("shard", T.IntegerType(), False),
        T.StructField("id", T.LongType(), False),
        T.StructField("features", T.ArrayType(T.FloatType(), False), False),
        T.StructField("label", T.DoubleType(), True),
    ]
)

#: One built shard, as returned by the executors (numpy buffers, never pickles).
SHARD_BLOB_SCHEMA = T.StructType(
    [
        T.StructField("shard", T.IntegerType(), False),
        T.StructField("n_rows", T.LongType(), False),
        T.StructField("n_features", T.IntegerType(), False),
        T.StructField("ids", T.BinaryType(), False),
        T.StructField("features", T.BinaryType(), False),
        T.StructField("labels", T.BinaryType(), True),
    ]
)

# Bits of monotonically_increasing_id() that count rows within a partition.
_ROW_BITS = 33


def estimate_index_bytes(n_rows: int, n_features: int) -> int:
    """Bytes an exact index holds: float32 features, int64 ids, float64 labels."""
    return int(n_rows) * (4 * int(n_features) + 16)


@dataclass
class TrainingIndex:
    """What a fitted model knows about its training data.

    Exactly one of ``shards`` (numpy blocks on the driver, broadcast at search
    time) and ``shard_rows`` (a DataFrame with :data:`SHARD_ROWS_SCHEMA`,
    searched by a distributed reduce) is set.
    """

    n_features: int
    n_rows: int
    shard_sizes: dict[int, int]
    classes: np.ndarray | None
    generated_ids: bool
    shards: list[ExactShard] | None = None
    shard_rows: DataFrame | None = None

    @property
    def storage(self) -> str:
        return "broadcast" if self.shards is not None else "distributed"

    @property
    def num_shards(self) -> int:
        return len(self.shard_sizes)

    @property
    def size_bytes(self) -> int:
        return estimate_index_bytes(self.n_rows, self.n_features)


def build_index(
    df: DataFrame,
    *,
    features_col: str,
    label_col: str | None,
    id_col: str | None,
    classifier: bool,
    num_shards: int,
    k: int,
    handle_invalid: str,
    max_broadcast_bytes: int,
) -> TrainingIndex:
    """Validate, number and shard the training data; see the module docstring."""
    schema = df.schema
    feature_expr = feature_array_expr(schema, features_col)
    if label_col is not None:
        check_label_column(schema, label_col, classifier)
    if id_col is not None:
        check_id_column(schema, id_col)

    columns = [
        F.spark_partition_id().alias("pid"),
        F.monotonically_increasing_id().alias("mono"),
        feature_expr.alias("features"),
        (F.col(f"`{id_col}`").cast("long") if id_col else F.lit(0).cast("long")).alias("id"),
        (F.col(f"`{label_col}`").cast("double") if label_col else F.lit(None).cast("double")).alias(
            "label"
        ),
    ]
    base = df.select(*columns)
    bad_features = invalid_features_expr(F.col("features"))
    bad_label = F.col("label").isNull() | F.isnan(F.col("label")) if label_col else F.lit(False)
    invalid = bad_features | bad_label

    stats = _collect_stats(base, bad_features, bad_label, invalid, classifier)
    n_valid = _check_stats(stats, features_col, label_col, id_col, handle_invalid, k)
    n_features = int(stats["min_len"])

    if id_col is None:
        ids = _generated_ids(stats["partition_rows"])
        shard = F.pmod(ids, F.lit(num_shards))
    else:
        ids = F.col("id")
        shard = F.pmod(F.xxhash64(F.col("id")), F.lit(num_shards))
    rows = base.filter(~invalid).select(
        shard.cast("int").alias("shard"),
        ids.alias("id"),
        F.col("features"),
        F.col("label"),
    )
    if id_col is not None:
        _check_unique_ids(rows, id_col)

    classes = np.array(sorted(stats["classes"]), dtype=np.float64) if classifier else None
    index_bytes = estimate_index_bytes(n_valid, n_features)
    common = dict(
        n_features=n_features,
        n_rows=n_valid,
        classes=classes,
        generated_ids=id_col is None,
    )
    if index_bytes <= max_broadcast_bytes:
        shards = build_exact_shards(rows, has_labels=label_col is not None)
        sizes = {sid: shard.n_rows for sid, shard in sorted(shards.items())}
        index = TrainingIndex(shard_sizes=sizes, shards=[shards[s] for s in sizes], **common)
    else:
        shard_rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
        counts = shard_rows.groupBy("shard").count().collect()
        sizes = {int(r["shard"]): int(r["count"]) for r in sorted(counts)}
        index = TrainingIndex(shard_sizes=sizes, shard_rows=shard_rows, **common)
    logger.info(
        "indexed %d training rows x %d features in %d shards (%s, %.1f MiB)",
        n_valid,
        n_features,
        len(sizes),
        index.storage,
        index_bytes / 2**20,
    )
    return index


def _collect_stats(
    base: DataFrame, bad_features: Column, bad_label: Column, invalid: Column, classifier: bool
) -> dict:
    """One job: per-partition counts and checks, combined on the driver."""
    null_or_empty = F.col("features").isNull() | (F.size("features") == 0)
    valid_len = F.when(~invalid, F.size("features"))
    aggs = [
        F.count(F.lit(1)).alias("n"),
        F.sum(null_or_empty.cast("long")).alias("n_null_empty"),
        F.sum((bad_features & ~null_or_empty).cast("long")).alias("n_nonfinite"),
        F.sum(bad_label.cast("long")).alias("n_bad_label"),
        F.sum(invalid.cast("long")).alias("n_invalid"),
        F.sum(F.col("id").isNull().cast("long")).alias("n_null_id"),
        F.min(valid_len).alias("min_len"),
        F.max(valid_len).alias("max_len"),
    ]
    if classifier:
        label = F.col("label")
        aggs.append(F.sum((~invalid & (label != F.floor(label))).cast("long")).alias("n_nonint"))
        aggs.append(
            F.first(F.when(~invalid & (label != F.floor(label)), label), True).alias(
                "nonint_example"
            )
        )
        aggs.append(F.collect_set(F.when(~invalid, label)).alias("classes"))
    per_partition = base.groupBy("pid").agg(*aggs).collect()

    total = {
        key: sum(int(r[key] or 0) for r in per_partition)
        for key in ("n", "n_null_empty", "n_nonfinite", "n_bad_label", "n_invalid", "n_null_id")
    }
    lengths = [r["min_len"] for r in per_partition if r["min_len"] is not None]
    lengths += [r["max_len"] for r in per_partition if r["max_len"] is not None]
    total["min_len"] = min(lengths) if lengths else None
    total["max_len"] = max(lengths) if lengths else None
    total["partition_rows"] = {int(r["pid"]): int(r["n"]) for r in per_partition}
    if classifier:
        total["n_nonint"] = sum(int(r["n_nonint"] or 0) for r in per_partition)
        examples = [r["nonint_example"] for r in per_partition if r["nonint_example"] is not None]
        total["nonint_example"] = examples[0] if examples else None
        total["classes"] = {float(c) for r in per_partition for c in r["classes"]}
    return total


def _check_stats(
    stats: dict,
    features_col: str,
    label_col: str | None,
    id_col: str | None,
    handle_invalid: str,
    k: int,
) -> int:
    """Raise the first rule the training data breaks; return the number of usable rows."""
    if stats["n"] == 0:
        raise InvalidInputError(f"The training DataFrame is empty; fit needs at least k={k} rows.")
    if id_col is not None and stats["n_null_id"]:
        raise InvalidInputError(
            f"Column '{id_col}' (param idCol) holds {stats['n_null_id']} null ids; every "
            "training row needs a unique id."
        )
    if stats["n_invalid"] and handle_invalid == "error":
        parts = []
        if stats["n_null_empty"]:
            parts.append(f"{stats['n_null_empty']} null or empty feature vectors")
        if stats["n_nonfinite"]:
            parts.append(f"{stats['n_nonfinite']} feature vectors with NaN or infinite values")
        if stats["n_bad_label"]:
            parts.append(f"{stats['n_bad_label']} null or NaN labels in column '{label_col}'")
        raise InvalidInputError(
            f"Invalid training rows in column '{features_col}' (param featuresCol)"
            + (f" or '{label_col}' (param labelCol)" if label_col else "")
            + f": {'; '.join(parts)}. Set handleInvalid='skip' to drop such rows."
        )
    n_valid = stats["n"] - stats["n_invalid"]
    if n_valid == 0:
        raise InvalidInputError(
            f"No valid training rows: all {stats['n']} rows have null, empty or non-finite "
            f"features in column '{features_col}'" + (" or null labels." if label_col else ".")
        )
    if stats["min_len"] != stats["max_len"]:
        raise InvalidInputError(
            f"Column '{features_col}' (param featuresCol) holds vectors of different lengths "
            f"in the training data: {stats['min_len']} and {stats['max_len']}."
        )
    if stats.get("n_nonint"):
        raise InvalidInputError(
            f"Column '{label_col}' (param labelCol) must hold integer class values for "
            f"KNNClassifier; got {stats['n_nonint']} non-integer labels such as "
            f"{stats['nonint_example']!r}. Use KNNRegressor for continuous targets."
        )
    if k > n_valid:
        raise InvalidInputError(
            f"Param k must be <= the number of training rows ({n_valid}); got {k}."
        )
    return n_valid


def _generated_ids(partition_rows: dict[int, int]) -> Column:
    """Ids 0..n-1 in the order of the training DataFrame, without a shuffle.

    ``monotonically_increasing_id`` puts the partition index in the upper bits
    and the row's position within its partition in the lower 33 bits; adding
    the number of rows in earlier partitions gives the row's global position.
    """
    n_partitions = max(partition_rows) + 1 if partition_rows else 1
    offsets = np.zeros(n_partitions, dtype=np.int64)
    for pid, count in partition_rows.items():
        if pid + 1 < n_partitions:
            offsets[pid + 1] = count
    offsets = np.cumsum(offsets)
    offset = F.element_at(F.array(*[F.lit(int(o)) for o in offsets]), F.col("pid") + 1)
    position = F.col("mono") - F.shiftleft(F.col("pid").cast("long"), _ROW_BITS)
    return (offset + position).cast("long")


def _check_unique_ids(rows: DataFrame, id_col: str) -> None:
    duplicate = rows.groupBy("id").count().filter(F.col("count") > 1).limit(1).collect()
    if duplicate:
        raise InvalidInputError(
            f"Column '{id_col}' (param idCol) must hold unique ids; id {duplicate[0]['id']} "
            f"appears {duplicate[0]['count']} times."
        )


def build_exact_shards(rows: DataFrame, has_labels: bool) -> dict[int, ExactShard]:
    """Build every shard on the executors and bring the blocks back to the driver."""

    def build(table: pa.Table) -> pa.Table:
        return shard_blob_table(table, has_labels)

    blobs = rows.groupBy("shard").applyInArrow(build, SHARD_BLOB_SCHEMA).collect()
    return {int(b["shard"]): shard_from_blob(b) for b in blobs}


def shard_blob_table(table: pa.Table, has_labels: bool) -> pa.Table:
    """Partition function: the rows of one shard -> one row of numpy buffers."""
    ids = table.column("id").to_numpy()
    order = np.argsort(ids, kind="stable")
    lengths = pc.list_value_length(table.column("features")).to_numpy()
    n_features = int(lengths[0]) if len(lengths) else 0
    features = table.column("features").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    features = features.astype(np.float32).reshape(len(ids), n_features)[order]
    labels = (
        table.column("label").to_numpy(zero_copy_only=False)[order].astype(np.float64).tobytes()
        if has_labels
        else None
    )
    return pa.table(
        {
            "shard": pa.array([table.column("shard")[0].as_py()], type=pa.int32()),
            "n_rows": pa.array([len(ids)], type=pa.int64()),
            "n_features": pa.array([n_features], type=pa.int32()),
            "ids": pa.array([ids[order].astype(np.int64).tobytes()], type=pa.binary()),
            "features": pa.array([np.ascontiguousarray(features).tobytes()], type=pa.binary()),
            "labels": pa.array([labels], type=pa.binary()),
        }
    )


def shard_from_blob(blob: dict | object) -> ExactShard:
    """Rebuild an :class:`ExactShard` from a :data:`SHARD_BLOB_SCHEMA` row."""
    n_rows, n_features = int(blob["n_rows"]), int(blob["n_features"])
    features = np.frombuffer(blob["features"], dtype=np.float32).reshape(n_rows, n_features)
    labels = blob["labels"]
    return ExactShard(
        features=features,
        ids=np.frombuffer(blob["ids"], dtype=np.int64),
        labels=None if labels is None else np.frombuffer(labels, dtype=np.float64),
    )
