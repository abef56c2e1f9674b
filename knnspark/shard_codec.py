"""The one codec for shards: training rows <-> built shards <-> Arrow/Parquet rows.

Two layouts, both plain buffers (numpy bytes and each kind's own payload format, never
pickles):

* :data:`SHARD_ROWS_SCHEMA` — one row per training row (``shard, id, features, label``):
  what ``fit`` shards, the ``data/`` folder of a saved model, and what the distributed
  path groups for kinds that search the rows themselves (exact blocks).
* :data:`SHARD_BLOB_SCHEMA` — one row per built shard (ids, labels, features and the
  kind's payload): what the build tasks return, the ``index/`` folder of a saved model
  for kinds with a payload, and what the distributed path ships for those kinds.

Everything here speaks the :class:`knnspark.kernels.shard.Shard` interface and looks
kinds up in :data:`knnspark.kernels.kinds.SHARD_KINDS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import types as T

from knnspark.errors import InvalidInputError
from knnspark.kernels.kinds import shard_kind
from knnspark.kernels.shard import Shard, ShardParts

__all__ = [
    "PAYLOAD_COLUMNS",
    "SHARD_BLOB_SCHEMA",
    "SHARD_ROWS_SCHEMA",
    "blob_row",
    "build_blob_table",
    "shard_from_blob",
    "shard_from_rows",
    "shard_rows_table",
]

#: Training rows (also the Parquet layout of ``data/`` in saved models).
SHARD_ROWS_SCHEMA = T.StructType(
    [
        T.StructField("shard", T.IntegerType(), False),
        T.StructField("id", T.LongType(), False),
        T.StructField("features", T.ArrayType(T.FloatType(), False), False),
        T.StructField("label", T.DoubleType(), True),
    ]
)

#: One built shard: numpy buffers plus the kind's payload (e.g. an hnswlib index file).
SHARD_BLOB_SCHEMA = T.StructType(
    [
        T.StructField("shard", T.IntegerType(), False),
        T.StructField("n_rows", T.LongType(), False),
        T.StructField("n_features", T.IntegerType(), False),
        T.StructField("ids", T.BinaryType(), False),
        T.StructField("features", T.BinaryType(), True),
        T.StructField("labels", T.BinaryType(), True),
        T.StructField("payload", T.BinaryType(), True),
    ]
)

#: The blob columns a saved model's ``index/`` folder keeps (features live in ``data/``).
PAYLOAD_COLUMNS = ["shard", "n_rows", "n_features", "ids", "labels", "payload"]


def _bytes_or_none(array: np.ndarray | None, dtype: Any) -> bytes | None:
    return None if array is None else np.ascontiguousarray(array, dtype=dtype).tobytes()


def blob_row(shard_no: int, shard: Shard) -> dict[str, Any]:
    """A shard as one :data:`SHARD_BLOB_SCHEMA` row (a dict of column -> value)."""
    parts = shard.parts()
    return {
        "shard": int(shard_no),
        "n_rows": int(parts.ids.shape[0]),
        "n_features": int(parts.n_features),
        "ids": _bytes_or_none(parts.ids, np.int64),
        "features": _bytes_or_none(parts.features, np.float32),
        "labels": _bytes_or_none(parts.labels, np.float64),
        "payload": parts.payload,
    }


def shard_from_blob(
    blob: Mapping[str, Any], kind: str, params: dict[str, Any], model_id: str
) -> Shard:
    """Rebuild a shard of ``kind`` from a :data:`SHARD_BLOB_SCHEMA` row.

    The buffers are wrapped, not copied; a payload is deserialized by its kind when first
    searched.
    """
    n_rows, n_features = int(blob["n_rows"]), int(blob["n_features"])
    features, labels = blob.get("features"), blob["labels"]
    parts = ShardParts(
        ids=np.frombuffer(blob["ids"], dtype=np.int64),
        labels=None if labels is None else np.frombuffer(labels, dtype=np.float64),
        n_features=n_features,
        features=(
            None
            if features is None
            else np.frombuffer(features, dtype=np.float32).reshape(n_rows, n_features)
        ),
        payload=None if blob.get("payload") is None else bytes(blob["payload"]),
    )
    return shard_kind(kind).load(parts, params, (model_id, int(blob["shard"])))


def _rows_matrix(table: pa.Table, n_features: int | None = None) -> np.ndarray:
    column = table.column("features").combine_chunks()
    if n_features is None:
        lengths = pc.list_value_length(column).to_numpy()
        n_features = int(lengths[0]) if len(lengths) else 0
    flat = column.flatten().to_numpy(zero_copy_only=False)
    return np.ascontiguousarray(flat, dtype=np.float32).reshape(table.num_rows, n_features)


def build_blob_table(
    table: pa.Table, has_labels: bool, kind: str, params: dict[str, Any]
) -> pa.Table:
    """Partition function: the training rows of one shard -> one built-shard row.

    Rows are put in id order first, so a shard builds the same whatever order its rows
    arrived in.
    """
    ids = table.column("id").to_numpy()
    order = np.argsort(ids, kind="stable")
    _check_unique(ids[order])
    features = np.ascontiguousarray(_rows_matrix(table)[order])
    labels = None
    if has_labels:
        labels = table.column("label").to_numpy(zero_copy_only=False)[order].astype(np.float64)
    built = shard_kind(kind).build(features, ids[order].astype(np.int64), labels, params)
    row = blob_row(table.column("shard")[0].as_py(), built)
    # Every index keeps its rows as exact blocks (a model can always search exactly).
    row["features"] = features.tobytes()
    return pa.Table.from_pylist([row], schema=_BLOB_ARROW_SCHEMA)


def _check_unique(sorted_ids: np.ndarray) -> None:
    """Fail the build with what to do when one id reaches a shard twice.

    ``fit`` checks an ``idCol`` for duplicates and numbers rows itself otherwise, both from
    an earlier evaluation of the training DataFrame; a repeat here means the DataFrame gave
    other rows when evaluated again. One line: the jobs re-raise it from the last line.
    """
    repeated = sorted_ids[1:][sorted_ids[1:] == sorted_ids[:-1]]
    if repeated.size:
        raise InvalidInputError(repeated_id_message(f"Training id {int(repeated[0])}"))


def repeated_id_message(what: str) -> str:
    """What to do when ``what`` (e.g. "Training id 7") reached its shard twice."""
    return (
        f"{what} reached its shard twice: the training DataFrame gave different rows when fit "
        "evaluated it again (a nondeterministic input, e.g. filtered, sampled or ordered by "
        "rand(), or a shuffle without a total order). Cache or checkpoint the DataFrame "
        "before fit (df.cache(), df.localCheckpoint()), or set idCol to a column of unique "
        "ids computed deterministically."
    )


_BLOB_ARROW_SCHEMA = pa.schema(
    [
        pa.field("shard", pa.int32(), False),
        pa.field("n_rows", pa.int64(), False),
        pa.field("n_features", pa.int32(), False),
        pa.field("ids", pa.binary(), False),
        pa.field("features", pa.binary()),
        pa.field("labels", pa.binary()),
        pa.field("payload", pa.binary()),
    ]
)


def shard_from_rows(
    table: pa.Table, n_features: int, kind: str, params: dict[str, Any], key: tuple[str, int]
) -> Shard:
    """A shard of a kind that stores its features, from its :data:`SHARD_ROWS_SCHEMA` rows."""
    parts = ShardParts(
        ids=table.column("id").to_numpy(),
        labels=table.column("label").to_numpy(zero_copy_only=False),
        n_features=n_features,
        features=_rows_matrix(table, n_features),
    )
    return shard_kind(kind).load(parts, params, key)


def shard_rows_table(shard_no: int, shard: Shard) -> pa.Table:
    """A shard that stores its features as :data:`SHARD_ROWS_SCHEMA` rows (Arrow)."""
    parts = shard.parts()
    n_rows, n_features = parts.features.shape
    values = pa.array(parts.features.reshape(-1), type=pa.float32())
    offsets = pa.array(np.arange(0, n_rows * n_features + 1, n_features, dtype=np.int32))
    labels = parts.labels if parts.labels is not None else np.full(n_rows, np.nan)
    return pa.table(
        {
            "shard": pa.array(np.full(n_rows, shard_no, dtype=np.int32)),
            "id": pa.array(parts.ids),
            "features": pa.ListArray.from_arrays(offsets, values),
            "label": pa.array(labels, type=pa.float64()),
        }
    )
