"""Save and load fitted models without pickle.

A model folder holds:

* ``metadata/`` — one JSON document (written by Spark as a text file, so any
  Hadoop file system works): class, format version, params, classes, number
  of features and rows, rows per shard;
* ``data/`` — the training rows as Parquet written by Spark, with columns
  ``shard, id, features (array<float>), label``;
* ``index/`` — models whose index kind has a payload (HNSW): one Parquet row per
  shard with its ids, labels and payload (for HNSW, the graph in hnswlib's own file
  format), in the layout of :data:`knnspark.shard_codec.PAYLOAD_COLUMNS`.

Loading reads JSON, Parquet and the kinds' own files only.  The shard of every row is stored, so a
loaded model searches exactly the shards the saved one did and predicts the
same values.
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyspark
from pyspark.ml.util import MLReader, MLWriter
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.utils import AnalysisException

from knnspark._version import __version__
from knnspark.errors import ModelLoadError
from knnspark.index import (
    EXACT_KIND,
    TrainingIndex,
    broadcast_bytes,
    choose_storage,
)
from knnspark.kernels.exact import ExactShard
from knnspark.kernels.kinds import shard_kind
from knnspark.partition import NEIGHBORS
from knnspark.preprocessing import Preprocessing
from knnspark.shard_codec import (
    PAYLOAD_COLUMNS,
    SHARD_BLOB_SCHEMA,
    SHARD_ROWS_SCHEMA,
    blob_row,
    shard_from_blob,
    shard_rows_table,
)

__all__ = ["FORMAT_VERSION", "KNNModelReader", "KNNModelWriter"]

#: Version of the folder layout; a loader refuses newer versions.
FORMAT_VERSION = 1


def _metadata_path(path: str) -> str:
    return path.rstrip("/") + "/metadata"


def _data_path(path: str) -> str:
    return path.rstrip("/") + "/data"


def _payloads_path(path: str) -> str:
    return path.rstrip("/") + "/index"


def _class_name(cls: type) -> str:
    return f"knnspark.{cls.__name__}"


class KNNModelWriter(MLWriter):
    """Writes a fitted knnspark model; see the module docstring for the layout."""

    def __init__(self, instance: Any) -> None:
        super().__init__()
        self.instance = instance

    def saveImpl(self, path: str) -> None:
        model = self.instance
        index: TrainingIndex = model.index
        spark = self.sparkSession
        params = {p.name: v for p, v in model._paramMap.items()}
        defaults = {p.name: v for p, v in model._defaultParamMap.items()}
        metadata = {
            "class": _class_name(type(model)),
            "format_version": FORMAT_VERSION,
            "knnspark_version": __version__,
            "spark_version": pyspark.__version__,
            "timestamp": _dt.datetime.now(_dt.UTC).isoformat(),
            "uid": model.uid,
            "params": params,
            "default_params": defaults,
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
            },
        }
        text = json.dumps(metadata, sort_keys=True)
        spark.createDataFrame([(text,)], "value string").coalesce(1).write.text(
            _metadata_path(path)
        )
        _training_rows(spark, index).write.parquet(_data_path(path))
        if not shard_kind(index.kind).stores_features:
            _payload_rows(spark, index).write.parquet(_payloads_path(path))


def _payload_rows(spark: SparkSession, index: TrainingIndex) -> DataFrame:
    """One row per shard: ids, labels and the kind's payload (e.g. an hnswlib file)."""
    if index.shard_blobs is not None:
        return index.shard_blobs.select(*PAYLOAD_COLUMNS)
    schema = T.StructType([SHARD_BLOB_SCHEMA[c] for c in PAYLOAD_COLUMNS])
    rows = []
    for shard_no, shard in zip(index.shard_sizes, index.shards[index.kind], strict=True):
        row = blob_row(shard_no, shard)
        rows.append(tuple(row[c] for c in PAYLOAD_COLUMNS))
    return spark.createDataFrame(rows, schema)


def _training_rows(spark: SparkSession, index: TrainingIndex) -> DataFrame:
    if index.shard_rows is not None:
        return index.shard_rows.select(*SHARD_ROWS_SCHEMA.fieldNames())
    exact = index.shards[EXACT_KIND]
    tables = [shard_rows_table(no, s) for no, s in zip(index.shard_sizes, exact, strict=True)]
    return spark.createDataFrame(pa.concat_tables(tables).to_pandas(), SHARD_ROWS_SCHEMA)


class KNNModelReader(MLReader):
    """Loads a model written by :class:`KNNModelWriter`, checking it on the way."""

    def __init__(self, cls: type) -> None:
        super().__init__()
        self.cls = cls

    def load(self, path: str) -> Any:
        spark = self.sparkSession
        metadata = _read_metadata(spark, path)
        expected = _class_name(self.cls)
        if metadata.get("class") != expected:
            raise ModelLoadError(
                f"The model at '{path}' is a {metadata.get('class')}, not a {expected}; "
                f"load it with {str(metadata.get('class')).split('.')[-1]}.load."
            )
        version = metadata.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ModelLoadError(
                f"The model at '{path}' has format version {version!r}; this knnspark "
                f"({__version__}) reads versions up to {FORMAT_VERSION}."
            )
        model = self.cls()
        model._resetUid(metadata["uid"])
        for name, value in metadata.get("default_params", {}).items():
            if model.hasParam(name):
                model._setDefault(**{name: value})
        for name, value in metadata.get("params", {}).items():
            if not model.hasParam(name):
                raise ModelLoadError(f"The model at '{path}' has an unknown param {name!r}.")
            model._set(**{name: value})
        model._index = _read_index(spark, path, metadata, model.getMaxBroadcastBytes())
        return model


def _read_metadata(spark: SparkSession, path: str) -> dict:
    try:
        lines = [r["value"] for r in spark.read.text(_metadata_path(path)).collect()]
    except AnalysisException as exc:
        raise ModelLoadError(
            f"No knnspark model at '{path}': its metadata folder is missing or unreadable "
            f"({str(exc).splitlines()[0]})."
        ) from None
    except Exception as exc:  # a damaged file (e.g. a checksum mismatch) fails in the read job
        raise ModelLoadError(
            f"The model at '{path}' has unreadable metadata: {str(exc).splitlines()[0]}"
        ) from None
    try:
        metadata = json.loads("\n".join(lines))
        index = metadata["index"]
        for key in ("n_features", "n_rows", "shard_sizes"):
            index[key]
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(
            f"The model at '{path}' has damaged metadata ({type(exc).__name__}: {exc})."
        ) from None
    return metadata


def _read_index(
    spark: SparkSession, path: str, metadata: dict, max_broadcast_bytes: int
) -> TrainingIndex:
    info = metadata["index"]
    try:
        rows = spark.read.schema(SHARD_ROWS_SCHEMA).parquet(_data_path(path))
    except AnalysisException as exc:
        raise ModelLoadError(
            f"The model at '{path}' has no training data folder ({str(exc).splitlines()[0]})."
        ) from None
    sizes = {int(k): int(v) for k, v in info["shard_sizes"].items()}
    n_rows, n_features = int(info["n_rows"]), int(info["n_features"])
    classes = info.get("classes")
    common = dict(
        n_features=n_features,
        n_rows=n_rows,
        shard_sizes=sizes,
        classes=None if classes is None else np.array(classes, dtype=np.float64),
        class_counts=(
            None if info.get("class_counts") is None else np.array(info["class_counts"], np.int64)
        ),
        generated_ids=bool(info.get("generated_ids")),
    )
    has_labels = info.get("has_labels", True)
    kind = info.get("algorithm", EXACT_KIND)
    # Models saved before the shard interface named these token, hnsw_params, graph_bytes.
    common.update(
        kind=kind,
        model_id=info.get("model_id") or info.get("token") or "",
        kind_params=info.get("index_params") or info.get("hnsw_params") or {},
        payload_bytes=int(info.get("payload_bytes") or info.get("graph_bytes") or 0),
        preprocessing=Preprocessing.from_json(info.get("preprocessing")),
    )
    payloads = None if shard_kind(kind).stores_features else _read_payloads(spark, path, sizes)
    size = broadcast_bytes(n_rows, n_features, common["payload_bytes"])
    if choose_storage(size, max_broadcast_bytes) == "distributed":
        try:
            counted = rows.count()
        except Exception as exc:
            raise ModelLoadError(
                f"The model at '{path}' has unreadable training data: {str(exc).splitlines()[0]}"
            ) from None
        _check_rows(path, counted, n_rows)
        shard_rows = rows.select(*SHARD_ROWS_SCHEMA.fieldNames()).filter(F.lit(True))
        return TrainingIndex(shard_rows=shard_rows, shard_blobs=payloads, **common)
    index = TrainingIndex(**common)
    index.shards = {EXACT_KIND: _exact_shards(rows, path, sizes, n_rows, n_features, has_labels)}
    if payloads is not None:
        by_shard = {int(r["shard"]): r.asDict() for r in payloads.collect()}
        index.shards[kind] = [
            shard_from_blob(by_shard[s], kind, index.kind_params, index.model_id) for s in sizes
        ]
    return index


def _exact_shards(
    rows: DataFrame,
    path: str,
    sizes: dict[int, int],
    n_rows: int,
    n_features: int,
    has_labels: bool,
) -> list[ExactShard]:
    """The saved training rows as exact blocks, one per shard, checked against the metadata."""
    try:
        pdf = rows.toPandas()
    except Exception as exc:  # a damaged Parquet file surfaces as a Java error
        raise ModelLoadError(
            f"The model at '{path}' has unreadable training data: {str(exc).splitlines()[0]}"
        ) from None
    _check_rows(path, len(pdf), n_rows)
    shards = []
    for shard_id in sizes:
        part = pdf[pdf["shard"] == shard_id]
        if len(part) != sizes[shard_id]:
            raise ModelLoadError(
                f"The model at '{path}' is damaged: shard {shard_id} has {len(part)} rows, "
                f"its metadata says {sizes[shard_id]}."
            )
        features = np.stack(part["features"].to_numpy()) if len(part) else np.empty((0, n_features))
        if features.shape[1] != n_features:
            raise ModelLoadError(
                f"The model at '{path}' is damaged: features of length {features.shape[1]}, "
                f"its metadata says {n_features}."
            )
        shards.append(
            ExactShard(
                features=features,
                ids=part["id"].to_numpy(np.int64),
                labels=part["label"].to_numpy(np.float64) if has_labels else None,
            )
        )
    return shards


def _read_payloads(spark: SparkSession, path: str, sizes: dict[int, int]) -> DataFrame:
    """The ``index/`` folder: one row per shard in the layout of PAYLOAD_COLUMNS."""
    try:
        payloads = spark.read.parquet(_payloads_path(path))
        if "payload" not in payloads.columns and "graph" in payloads.columns:
            payloads = payloads.withColumnRenamed("graph", "payload")  # an older layout
        payloads = payloads.select(
            *[F.col(c).cast(SHARD_BLOB_SCHEMA[c].dataType) for c in PAYLOAD_COLUMNS]
        )
        found = {
            int(r["shard"]): int(r["n_rows"]) for r in payloads.select("shard", "n_rows").collect()
        }
    except Exception as exc:  # a missing or damaged folder surfaces as a Java error
        raise ModelLoadError(
            f"The model at '{path}' has no readable index folder ({str(exc).splitlines()[0]})."
        ) from None
    if found != sizes:
        raise ModelLoadError(
            f"The model at '{path}' is damaged: its index folder holds {found} rows per shard, "
            f"its metadata says {sizes}."
        )
    return payloads


def _check_rows(path: str, found: int, expected: int) -> None:
    if found != expected:
        raise ModelLoadError(
            f"The model at '{path}' is damaged: its data folder holds {found} training rows, "
            f"its metadata says {expected}."
        )
