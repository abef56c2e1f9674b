"""Grouped shards on the executors: build one piece per group, load them, save them.

The task side of :mod:`knnspark.groups` (``groupCol``), kept free of the Spark ML API so
that build and search tasks import little.  Grouped training rows carry a ``group`` column
(:data:`GROUP_KEY`); a built piece is one :data:`GROUPED_BLOB_SCHEMA` row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import types as T

from knnspark.kernels.exact import ExactShard
from knnspark.kernels.grouped import GroupedShard, piece_number
from knnspark.kernels.kinds import shard_kind
from knnspark.shard_codec import (
    SHARD_BLOB_SCHEMA,
    build_blob_table,
    shard_from_blob,
    shard_from_rows,
    shard_rows_table,
)

__all__ = [
    "GROUPED_BLOB_SCHEMA",
    "GROUP_KEY",
    "build_pieces",
    "grouped_exact_shards",
    "grouped_rows_table",
    "shard_from_group_table",
    "shards_from_pieces",
]

#: The column of grouped training rows (and of built pieces) holding the group key.
GROUP_KEY = "group"

#: One built piece (one group of one shard).
GROUPED_BLOB_SCHEMA = T.StructType(
    [*SHARD_BLOB_SCHEMA.fields, T.StructField(GROUP_KEY, T.StringType(), False)]
)


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
