"""``groupCol``: neighbors only from training rows of the query's own group.

The Spark side of :mod:`knnspark.kernels.grouped`.  At fit, a group's key is its value as
text (exact; the column's type is checked first: string, integral, boolean or date), its
home shard ``pmod(xxhash64(key), numShards)``, computed in Spark SQL for training and query
rows alike.  One job after the training checks counts the rows per group: a group larger
than the mean shard (``ceil(n_rows / numShards)`` rows) is spread over
``ceil(n_g / mean)`` consecutive shards from its home, its rows split by a hash of their
id, so one group holding most rows still gives shards of bounded size; the same job finds
the smallest group (``k`` must not exceed it) and, with an ``idCol``, an id repeated across
groups (which group sharding would otherwise put in two shards).  Each shard is built as
one piece per group (:class:`~knnspark.kernels.grouped.GroupedShard`); the grouped rows
carry a ``group`` column, and built pieces one row each in :data:`GROUPED_BLOB_SCHEMA`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from knnspark.errors import InvalidInputError
from knnspark.kernels.exact import ExactShard
from knnspark.kernels.grouped import GroupedShard, GroupRouting, piece_number, spread_of
from knnspark.kernels.kinds import shard_kind
from knnspark.partition import GROUP_HOME_TMP, GROUP_TMP
from knnspark.schema import column
from knnspark.shard_codec import (
    SHARD_BLOB_SCHEMA,
    build_blob_table,
    shard_from_blob,
    shard_from_rows,
    shard_rows_table,
)

__all__ = [
    "GROUPED_BLOB_SCHEMA",
    "GROUP_HOME_TMP",
    "GROUP_KEY",
    "GROUP_TMP",
    "build_pieces",
    "check_group_params",
    "group_category",
    "layout_groups",
    "query_group_columns",
    "shard_expr",
    "shard_from_group_table",
    "shards_from_pieces",
]

#: The column of grouped training rows (and of built pieces) holding the group key.
GROUP_KEY = "group"

#: One built piece (one group of one shard).
GROUPED_BLOB_SCHEMA = T.StructType(
    [*SHARD_BLOB_SCHEMA.fields, T.StructField(GROUP_KEY, T.StringType(), False)]
)

_CATEGORIES: dict[type, str] = {
    T.StringType: "string",
    T.VarcharType: "string",
    T.CharType: "string",
    T.ByteType: "integral",
    T.ShortType: "integral",
    T.IntegerType: "integral",
    T.LongType: "integral",
    T.BooleanType: "boolean",
    T.DateType: "date",
}


def group_category(schema: T.StructType, group_col: str, where: str) -> str:
    """The kind of the group column's type, or a clear error naming column and type."""
    if group_col not in schema.fieldNames():
        available = ", ".join(schema.fieldNames()) or "(none)"
        raise InvalidInputError(
            f"Column '{group_col}' (param groupCol) does not exist in {where}. Available "
            f"columns: {available}."
        )
    data_type = schema[group_col].dataType
    category = _CATEGORIES.get(type(data_type))
    if category is None:
        raise TypeError(
            f"Column '{group_col}' (param groupCol) must be a string, integral, boolean or "
            f"date column; got {data_type.simpleString()} in {where}."
        )
    return category


def check_group_params(
    group_col: str | None,
    features_col: str,
    label_col: str | None,
    id_col: str | None,
    partitioning: str,
) -> None:
    """Param rules of ``groupCol``, before any job."""
    if group_col is None:
        return
    for name, value in (("featuresCol", features_col), ("labelCol", label_col), ("idCol", id_col)):
        if group_col == value:
            raise InvalidInputError(
                f"Param groupCol must name a column of its own; got '{group_col}', which is "
                f"also param {name}."
            )
    if partitioning != "hash":
        raise InvalidInputError(
            f"Param groupCol cannot be combined with partitioning={partitioning!r} yet: groups "
            "are the shard key; use partitioning='hash' (the default)."
        )


def key_expr(group_col: str) -> Column:
    """A group's exact key: its value as text (null for a null group)."""
    return column(group_col).cast("string")


def home_expr(key: Column, num_shards: int) -> Column:
    """A group's home shard, ``pmod(xxhash64(key), numShards)``, for training and queries."""
    return F.pmod(F.xxhash64(key), F.lit(num_shards)).cast("int")


def layout_groups(
    valid: DataFrame,
    *,
    n_rows: int,
    num_shards: int,
    k: int,
    group_col: str,
    id_col: str | None,
    category: str,
) -> GroupRouting:
    """One job: the groups larger than the mean shard, the smallest group, a repeated id.

    ``valid`` holds the valid training rows with ``group`` (the key) and ``id`` columns.
    Raises when ``k`` exceeds the smallest group's rows, or (with ``id_col``) when an id
    appears twice.
    """
    mean = -(-n_rows // num_shards)
    sets = [[GROUP_KEY], ["id"]] if id_col is not None else [[GROUP_KEY]]
    counted = valid.select(GROUP_KEY, "id").groupingSets(sets, GROUP_KEY, "id")
    counted = counted.agg(F.count(F.lit(1)).alias("n"), F.grouping_id().alias("set"))
    is_group = F.col("set") == 1  # grouping_id: 1 = by group, 2 = by id
    n, key = F.col("n"), F.col(GROUP_KEY)
    row = counted.agg(
        F.min_by(F.when(is_group, key), F.when(is_group, n)).alias("smallest"),
        F.min(F.when(is_group, n)).alias("smallest_n"),
        F.collect_list(F.when(is_group & (n > mean), F.struct(key.alias("g"), n))).alias("big"),
        F.min_by(F.when(~is_group & (n > 1), F.col("id")), F.when(~is_group & (n > 1), n)).alias(
            "repeated"
        ),
        F.max(F.when(~is_group, n)).alias("repeated_n"),
    ).first()
    if row["repeated"] is not None:
        raise InvalidInputError(
            f"Column '{id_col}' (param idCol) must hold unique ids; id {row['repeated']} "
            f"appears {row['repeated_n']} times."
        )
    if row["smallest_n"] is not None and k > row["smallest_n"]:
        raise InvalidInputError(
            f"Param k must be <= the rows of every group of column '{group_col}' (param "
            f"groupCol); group {row['smallest']!r} has {row['smallest_n']} valid training "
            f"rows, k is {k}."
        )
    big = {str(r["g"]): spread_of(int(r["n"]), mean) for r in row["big"]}
    return GroupRouting(num_shards, {g: min(s, num_shards) for g, s in big.items()}, category)


def shard_expr(routing: GroupRouting, key: Column, ids: Column) -> Column:
    """A training row's shard: its group's home, or, for a big group, one of its shards."""
    home = home_expr(key, routing.num_shards)
    if not routing.big:
        return home
    pairs = [x for g, s in sorted(routing.big.items()) for x in (F.lit(g), F.lit(s))]
    spread = F.coalesce(F.element_at(F.create_map(*pairs), key), F.lit(1))
    step = F.pmod(F.xxhash64(ids), spread)
    return F.pmod(home + step, F.lit(routing.num_shards)).cast("int")


def query_group_columns(
    schema: T.StructType, group_col: str, routing: GroupRouting, where: str
) -> dict[str, Column]:
    """The temporary query columns: group key and home shard (checked before any job)."""
    category = group_category(schema, group_col, where)
    if category != routing.category:
        raise TypeError(
            f"Column '{group_col}' (param groupCol) holds {category} values in {where}, but "
            f"the model was fitted on {routing.category} groups; cast it to match."
        )
    key = key_expr(group_col)
    return {GROUP_TMP: key, GROUP_HOME_TMP: home_expr(key, routing.num_shards)}


def group_keys(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An Arrow string column as an object array of keys (None for null)."""
    return np.asarray(array.to_pylist(), dtype=object)


# ---------------------------------------------------------------- build and load


def _split_by_group(table: pa.Table) -> list[tuple[str, pa.Table]]:
    """``(key, rows)`` per group of ``table``, in key order (a piece's fixed position)."""
    keys = table.column(GROUP_KEY)
    out = []
    for key in sorted(pc.unique(keys).to_pylist()):
        out.append((key, table.filter(pc.equal(keys, key))))
    return out


def build_pieces(
    has_labels: bool, kind: str, params: dict[str, Any]
) -> Callable[[pa.Table], pa.Table]:
    """Build function of one shard's rows (``group`` column): one blob row per group."""

    def build(table: pa.Table) -> pa.Table:
        parts = []
        for key, rows in _split_by_group(table):
            built = build_blob_table(rows.drop_columns([GROUP_KEY]), has_labels, kind, params)
            parts.append(built.append_column(GROUP_KEY, pa.array([key], pa.string())))
        return pa.concat_tables(parts)

    return build


def shards_from_pieces(
    blobs: list[Mapping[str, Any]], kind: str, params: dict[str, Any], model_id: str
) -> list[GroupedShard]:
    """Built pieces (blob rows with ``group``) -> one grouped shard per shard number, in order."""
    by_shard: dict[int, list[Mapping[str, Any]]] = {}
    for blob in blobs:
        by_shard.setdefault(int(blob["shard"]), []).append(blob)
    return [_grouped(no, by_shard[no], kind, params, model_id) for no in sorted(by_shard)]


def _grouped(
    shard_no: int, blobs: list[Mapping[str, Any]], kind: str, params: dict, model_id: str
) -> GroupedShard:
    pieces = {}
    for position, blob in enumerate(sorted(blobs, key=lambda b: b[GROUP_KEY])):
        keyed = {**blob, "shard": piece_number(shard_no, position)}
        pieces[blob[GROUP_KEY]] = shard_from_blob(keyed, kind, params, model_id)
    return GroupedShard(shard_no, pieces)


def shard_from_group_table(
    table: pa.Table, shard_no: int, kind: str, params: dict, n_features: int, model_id: str
) -> GroupedShard:
    """The shard side of a shard-major cogroup: grouped training rows, or built pieces."""
    if shard_kind(kind).stores_features:
        pieces = {
            key: shard_from_rows(rows, n_features, kind, params, (model_id, shard_no))
            for key, rows in _split_by_group(table)
        }
        return GroupedShard(shard_no, pieces)
    blobs = table.to_pylist()
    for blob in blobs:
        blob["n_features"] = n_features
    return _grouped(shard_no, blobs, kind, params, model_id)


def grouped_exact_shards(table: pa.Table, n_features: int, model_id: str) -> list[GroupedShard]:
    """Saved grouped training rows (``shard, id, features, label, group``) -> exact shards."""
    shards = []
    numbers = table.column("shard")
    for shard_no in sorted(pc.unique(numbers).to_pylist()):
        rows = table.filter(pc.equal(numbers, shard_no))
        shards.append(
            shard_from_group_table(rows, shard_no, ExactShard.kind, {}, n_features, model_id)
        )
    return shards


def grouped_rows_table(shard: GroupedShard) -> pa.Table:
    """A grouped exact shard as training rows with their ``group`` column (saving a model)."""
    tables = []
    for key, piece in sorted(shard.pieces.items()):
        rows = shard_rows_table(shard.number, piece)
        tables.append(rows.append_column(GROUP_KEY, pa.array([key] * rows.num_rows, pa.string())))
    return pa.concat_tables(tables)
