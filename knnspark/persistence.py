"""Save and load fitted models without pickle.

A model folder holds:

* ``metadata/`` — one JSON document (written by Spark as a text file, so any
  Hadoop file system works): class, format version, params, classes, number
  of features and rows, rows per shard;
* ``data/`` — the training rows as Parquet written by Spark, with columns
  ``shard, id, features (array<float>), label``;
* ``index/`` — HNSW models only: one Parquet row per shard with its ids,
  labels and graph in hnswlib's own file format.

Loading reads JSON, Parquet and hnswlib files only.  The shard of every row is stored, so a
loaded model searches exactly the shards the saved one did and predicts the
same values.
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

import numpy as np
import pyspark
from pyspark.ml.util import MLReader, MLWriter
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.utils import AnalysisException

from knnspark._version import __version__
from knnspark.errors import ModelLoadError
from knnspark.index import (
    SHARD_BLOB_SCHEMA,
    SHARD_ROWS_SCHEMA,
    TrainingIndex,
    estimate_index_bytes,
    graph_from_blob,
)
from knnspark.kernels.exact import ExactShard
from knnspark.preprocessing import Preprocessing

__all__ = ["FORMAT_VERSION", "KNNModelReader", "KNNModelWriter"]

#: Version of the folder layout; a loader refuses newer versions.
FORMAT_VERSION = 1


def _metadata_path(path: str) -> str:
    return path.rstrip("/") + "/metadata"


def _data_path(path: str) -> str:
    return path.rstrip("/") + "/data"


def _graphs_path(path: str) -> str:
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
                "has_labels": model._task != "neighbors",
                "algorithm": index.algorithm,
                "token": index.token,
                "hnsw_params": index.hnsw_params,
                "graph_bytes": index.graph_bytes,
                "preprocessing": index.preprocessing.to_json(),
            },
        }
        text = json.dumps(metadata, sort_keys=True)
        spark.createDataFrame([(text,)], "value string").coalesce(1).write.text(
            _metadata_path(path)
        )
        _training_rows(spark, index).write.parquet(_data_path(path))
        if index.algorithm == "hnsw":
            _graph_rows(spark, index).write.parquet(_graphs_path(path))


_GRAPH_COLUMNS = ["shard", "n_rows", "n_features", "ids", "labels", "graph"]


def _graph_rows(spark: SparkSession, index: TrainingIndex) -> DataFrame:
    """One row per shard: ids, labels and the graph in hnswlib's file format."""
    if index.shard_blobs is not None:
        return index.shard_blobs.select(*_GRAPH_COLUMNS)
    schema = T.StructType([SHARD_BLOB_SCHEMA[c] for c in _GRAPH_COLUMNS])
    rows = [
        (
            g.shard,
            g.n_rows,
            g.n_features,
            g.ids.astype(np.int64).tobytes(),
            None if g.labels is None else g.labels.astype(np.float64).tobytes(),
            g.index_bytes,
        )
        for g in index.graphs
    ]
    return spark.createDataFrame(rows, schema)


def _training_rows(spark: SparkSession, index: TrainingIndex) -> DataFrame:
    if index.shard_rows is not None:
        return index.shard_rows.select(*SHARD_ROWS_SCHEMA.fieldNames())
    import pyarrow as pa

    tables = []
    for shard_id, shard in zip(index.shard_sizes, index.shards, strict=True):
        n_rows, n_features = shard.features.shape
        values = pa.array(shard.features.reshape(-1), type=pa.float32())
        offsets = pa.array(np.arange(0, n_rows * n_features + 1, n_features, dtype=np.int32))
        labels = shard.labels if shard.labels is not None else np.full(n_rows, np.nan)
        tables.append(
            pa.table(
                {
                    "shard": pa.array(np.full(n_rows, shard_id, dtype=np.int32)),
                    "id": pa.array(shard.ids),
                    "features": pa.ListArray.from_arrays(offsets, values),
                    "label": pa.array(labels, type=pa.float64()),
                }
            )
        )
    pdf = pa.concat_tables(tables).to_pandas()
    return spark.createDataFrame(pdf, SHARD_ROWS_SCHEMA)


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
    algorithm = info.get("algorithm", "brute")
    common.update(
        algorithm=algorithm,
        token=info.get("token") or "",
        hnsw_params=info.get("hnsw_params"),
        graph_bytes=int(info.get("graph_bytes") or 0),
        preprocessing=Preprocessing.from_json(info.get("preprocessing")),
    )
    graphs = _read_graphs(spark, path, sizes) if algorithm == "hnsw" else None
    broadcast = estimate_index_bytes(n_rows, n_features) + common["graph_bytes"]
    if broadcast <= max_broadcast_bytes:
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
            features = (
                np.stack(part["features"].to_numpy()) if len(part) else np.empty((0, n_features))
            )
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
        index = TrainingIndex(shards=shards, **common)
        if graphs is not None:
            metric = common["hnsw_params"]["metric"]
            rows_by_shard = {int(r["shard"]): r for r in graphs.collect()}
            index.graphs = [
                graph_from_blob(rows_by_shard[s], metric, common["token"]) for s in sizes
            ]
        return index
    try:
        counted = rows.count()
    except Exception as exc:
        raise ModelLoadError(
            f"The model at '{path}' has unreadable training data: {str(exc).splitlines()[0]}"
        ) from None
    _check_rows(path, counted, n_rows)
    shard_rows = rows.select(*SHARD_ROWS_SCHEMA.fieldNames()).filter(F.lit(True))
    return TrainingIndex(shard_rows=shard_rows, shard_blobs=graphs, **common)


def _read_graphs(spark: SparkSession, path: str, sizes: dict[int, int]) -> DataFrame:
    schema = T.StructType([SHARD_BLOB_SCHEMA[c] for c in _GRAPH_COLUMNS])
    try:
        graphs = spark.read.schema(schema).parquet(_graphs_path(path))
        found = {
            int(r["shard"]): int(r["n_rows"]) for r in graphs.select("shard", "n_rows").collect()
        }
    except Exception as exc:  # a missing or damaged folder surfaces as a Java error
        raise ModelLoadError(
            f"The model at '{path}' has no readable HNSW index folder ({str(exc).splitlines()[0]})."
        ) from None
    if found != sizes:
        raise ModelLoadError(
            f"The model at '{path}' is damaged: its index folder holds graphs of {found} rows "
            f"per shard, its metadata says {sizes}."
        )
    return graphs


def _check_rows(path: str, found: int, expected: int) -> None:
    if found != expected:
        raise ModelLoadError(
            f"The model at '{path}' is damaged: its data folder holds {found} training rows, "
            f"its metadata says {expected}."
        )
