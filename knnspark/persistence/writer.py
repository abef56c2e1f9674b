"""Writing a fitted model's folder: metadata, training rows, payloads, and the manifest last."""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

import pyarrow as pa
import pyspark
from pyspark.ml.util import MLWriter
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from knnspark._version import __version__
from knnspark.classic import is_connect
from knnspark.group_pieces import GROUP_KEY, GROUPED_BLOB_SCHEMA, grouped_rows_table
from knnspark.index import EXACT_KIND, TrainingIndex
from knnspark.kernels.kinds import shard_kind
from knnspark.kmeans_sharding import routing_to_json
from knnspark.partition import NEIGHBORS
from knnspark.persistence.layout import (
    FORMAT_VERSION,
    MANIFEST_VERSION,
    class_name,
    data_path,
    metadata_path,
    payloads_path,
)
from knnspark.persistence.manifest import write_manifest
from knnspark.shard_codec import (
    PAYLOAD_COLUMNS,
    SHARD_BLOB_SCHEMA,
    SHARD_ROWS_SCHEMA,
    blob_row,
    shard_rows_table,
)

__all__ = ["KNNModelWriter"]


class KNNModelWriter(MLWriter):
    """Writes a fitted knnspark model; see :mod:`knnspark.persistence` for the layout.

    The manifest is written last, once every other file is in place: a folder whose save
    was interrupted has none and does not load.
    """

    def __init__(self, instance: Any) -> None:
        super().__init__()
        self.instance = instance

    def _handleOverwrite(self, path: str) -> None:
        if not is_connect(self.sparkSession):
            super()._handleOverwrite(path)
            return
        # pyspark's own removal goes through the JVM, which a Connect client cannot reach: an
        # overwriting write of no rows has the server replace the folder by an empty one.
        empty = self.sparkSession.createDataFrame([], "value string")
        empty.write.mode("overwrite").text(path)

    def saveImpl(self, path: str) -> None:
        model = self.instance
        index: TrainingIndex = model.index
        spark = self.sparkSession
        text = json.dumps(_metadata(model, index), sort_keys=True)
        spark.createDataFrame([(text,)], "value string").coalesce(1).write.text(metadata_path(path))
        _training_rows(spark, index).write.parquet(data_path(path))
        if not shard_kind(index.kind).stores_features:
            _payload_rows(spark, index).write.parquet(payloads_path(path))
        write_manifest(spark, path)


def _metadata(model: Any, index: TrainingIndex) -> dict[str, Any]:
    return {
        "class": class_name(type(model)),
        "format_version": FORMAT_VERSION,
        # Promises a manifest: without one, this folder is an interrupted save.
        "manifest_version": MANIFEST_VERSION,
        "knnspark_version": __version__,
        "spark_version": pyspark.__version__,
        "timestamp": _dt.datetime.now(_dt.UTC).isoformat(),
        "uid": model.uid,
        "params": {p.name: v for p, v in model._paramMap.items()},
        "default_params": {p.name: v for p, v in model._defaultParamMap.items()},
        # Fitted values besides the index (an outlier model's threshold); {} for most models.
        "fitted_state": model._fitted_state(),
        "index": {
            "n_features": index.n_features,
            "n_rows": index.n_rows,
            "shard_sizes": {str(k): v for k, v in index.shard_sizes.items()},
            "classes": None if index.classes is None else [float(c) for c in index.classes],
            "class_counts": (
                None if index.class_counts is None else [int(c) for c in index.class_counts]
            ),
            "generated_ids": index.generated_ids,
            "has_labels": model._task != NEIGHBORS,
            "algorithm": index.kind,
            "model_id": index.model_id,
            "index_params": index.kind_params,
            "payload_bytes": index.payload_bytes,
            "preprocessing": index.preprocessing.to_json(),
            "routing": routing_to_json(index.router),
            # groupCol: which shards hold each group (rows and payloads carry a group column).
            "groups": None if index.groups is None else index.groups.to_json(),
        },
    }


def _payload_rows(spark: SparkSession, index: TrainingIndex) -> DataFrame:
    """One row per shard: ids, labels and the kind's payload (e.g. an hnswlib file).

    A grouped index (``groupCol``) has one row per (shard, group), with a ``group`` column.
    """
    if index.groups is not None:
        return _grouped_payload_rows(spark, index)
    if index.shard_blobs is not None:
        return index.shard_blobs.select(*PAYLOAD_COLUMNS)
    schema = T.StructType([SHARD_BLOB_SCHEMA[c] for c in PAYLOAD_COLUMNS])
    rows = []
    for shard_no, shard in zip(index.shard_sizes, index.shards[index.kind], strict=True):
        row = blob_row(shard_no, shard)
        rows.append(tuple(row[c] for c in PAYLOAD_COLUMNS))
    return spark.createDataFrame(rows, schema)


def _grouped_payload_rows(spark: SparkSession, index: TrainingIndex) -> DataFrame:
    columns = [*PAYLOAD_COLUMNS, GROUP_KEY]
    if index.shard_blobs is not None:
        return index.shard_blobs.select(*columns)
    rows = []
    for shard in index.shards[index.kind]:
        for key, piece in sorted(shard.pieces.items()):
            row = {**blob_row(shard.number, piece), GROUP_KEY: key}
            rows.append(tuple(row[c] for c in columns))
    return spark.createDataFrame(rows, T.StructType([GROUPED_BLOB_SCHEMA[c] for c in columns]))


def _training_rows(spark: SparkSession, index: TrainingIndex) -> DataFrame:
    if index.groups is not None:
        schema = T.StructType([*SHARD_ROWS_SCHEMA.fields, T.StructField(GROUP_KEY, T.StringType())])
        if index.shard_rows is not None:
            return index.shard_rows.select(*schema.fieldNames())
        tables = [grouped_rows_table(s) for s in index.shards[EXACT_KIND]]
        return spark.createDataFrame(pa.concat_tables(tables).to_pandas(), schema)
    if index.shard_rows is not None:
        return index.shard_rows.select(*SHARD_ROWS_SCHEMA.fieldNames())
    exact = index.shards[EXACT_KIND]
    tables = [shard_rows_table(no, s) for no, s in zip(index.shard_sizes, exact, strict=True)]
    return spark.createDataFrame(pa.concat_tables(tables).to_pandas(), SHARD_ROWS_SCHEMA)
