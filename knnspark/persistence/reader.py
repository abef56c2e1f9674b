"""Loading a model folder: the manifest first, then metadata, then the index, each checked."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from pyspark import StorageLevel
from pyspark.ml.util import MLReader
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.utils import AnalysisException

from knnspark._version import __version__
from knnspark.classic import is_connect
from knnspark.errors import ModelLoadError
from knnspark.group_pieces import GROUP_KEY, grouped_exact_shards, shards_from_pieces
from knnspark.index import EXACT_KIND, TrainingIndex
from knnspark.kernels.exact import ExactShard
from knnspark.kernels.grouped import GroupRouting
from knnspark.kernels.kinds import shard_kind
from knnspark.kmeans_sharding import routing_from_json
from knnspark.persistence.layout import (
    FORMAT_VERSION,
    class_name,
    data_path,
    error_line,
    metadata_path,
    payloads_path,
)
from knnspark.persistence.manifest import read_manifest, verify_manifest
from knnspark.preprocessing import Preprocessing
from knnspark.shard_codec import (
    PAYLOAD_COLUMNS,
    SHARD_BLOB_SCHEMA,
    SHARD_ROWS_SCHEMA,
    shard_from_blob,
)
from knnspark.shard_layout import shard_major_layout
from knnspark.sizing import broadcast_bytes, choose_storage

__all__ = ["KNNModelReader"]

logger = logging.getLogger("knnspark")

_SPARK_ML_PREFIX = "org.apache.spark.ml."


class KNNModelReader(MLReader):
    """Loads a model written by :class:`~knnspark.persistence.KNNModelWriter`, checking it.

    Every file is checked against the manifest before any is read as part of the model; a
    folder saved before manifests loads with a warning, one whose save was interrupted does
    not load.
    """

    def __init__(self, cls: type) -> None:
        super().__init__()
        self.cls = cls

    def load(self, path: str) -> Any:
        spark = self.sparkSession
        manifest = read_manifest(spark, path)
        if manifest is not None:
            verify_manifest(spark, path, manifest)
        metadata = _read_metadata(spark, path)
        if manifest is None:
            _check_unmanifested(path, metadata)
        expected = class_name(self.cls)
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
        state = metadata.get("fitted_state") or {}
        if not isinstance(state, dict):
            raise _damaged_metadata(path, TypeError(f"fitted_state is {state!r}, not an object"))
        model._restore_fitted_state(state, path)
        model._index = _read_index(spark, path, metadata, model.getMaxBroadcastBytes())
        return model


def _check_unmanifested(path: str, metadata: dict) -> None:
    """A folder without a manifest: an interrupted save, or one from before manifests."""
    saved_by = metadata.get("knnspark_version", "an unknown version")
    if "manifest_version" in metadata:
        raise ModelLoadError(
            f"The model at '{path}' is an incomplete save: it has no manifest, which "
            f"knnspark {saved_by} writes last, once every other file is in place (the save "
            "was interrupted, or the manifest removed). Save or fit the model again."
        )
    logger.warning(
        "The model at '%s' has no integrity manifest (saved by knnspark %s, before "
        "manifests): its files cannot be checked for damage or edits. Save it again to add one.",
        path,
        saved_by,
    )


def _read_metadata(spark: SparkSession, path: str) -> dict:
    try:
        lines = [r["value"] for r in spark.read.text(metadata_path(path)).collect()]
    except AnalysisException as exc:
        raise ModelLoadError(
            f"No knnspark model at '{path}': its metadata folder is missing or unreadable "
            f"({error_line(exc)})."
        ) from None
    except Exception as exc:  # a damaged file (e.g. a checksum mismatch) fails in the read job
        raise ModelLoadError(
            f"The model at '{path}' has unreadable metadata: {error_line(exc)}"
        ) from None
    try:
        metadata = json.loads("\n".join(lines))
        if not isinstance(metadata, dict):
            raise TypeError(f"a JSON {type(metadata).__name__}, not an object")
    except (ValueError, TypeError) as exc:
        raise _damaged_metadata(path, exc) from None
    _check_foreign_class(path, metadata.get("class"), metadata)
    try:
        index = metadata["index"]
        for key in ("n_features", "n_rows", "shard_sizes"):
            index[key]
    except (KeyError, TypeError) as exc:
        raise _damaged_metadata(path, exc) from None
    _check_index_metadata(path, metadata["index"])
    return metadata


def _damaged_metadata(path: str, exc: Exception) -> ModelLoadError:
    return ModelLoadError(
        f"The model at '{path}' has damaged metadata ({type(exc).__name__}: {exc})."
    )


def _check_foreign_class(path: str, saved_class: Any, metadata: dict) -> None:
    """Another library's model (Spark ML's own, for one): name it and its loader."""
    if not isinstance(saved_class, str) or saved_class.startswith("knnspark."):
        return
    if saved_class.startswith(_SPARK_ML_PREFIX):
        loader = "pyspark.ml." + saved_class[len(_SPARK_ML_PREFIX) :]
        spark_version = metadata.get("sparkVersion")
        saved_by = f" saved by Spark {spark_version}" if spark_version else " saved by Spark"
    else:
        loader, saved_by = saved_class, ""
    raise ModelLoadError(
        f"The folder at '{path}' holds a {saved_class}{saved_by}, not a knnspark model; "
        f"load it with {loader}.load."
    )


def _check_index_metadata(path: str, info: dict) -> None:
    """Cheap consistency checks of the index description, before any data is read."""

    def damaged(what: str) -> ModelLoadError:
        return ModelLoadError(f"The model at '{path}' has damaged metadata: {what}.")

    try:
        numbers = [int(info["n_rows"]), int(info["n_features"])]
        numbers += [int(v) for v in info["shard_sizes"].values()]
    except (ValueError, TypeError, AttributeError) as exc:
        raise damaged(f"{type(exc).__name__}: {exc}") from None
    if min(numbers) < 0:
        raise damaged("a negative number of rows or features")
    classes, counts = info.get("classes"), info.get("class_counts")
    if classes is None:
        return
    valid = isinstance(classes, list) and all(
        isinstance(c, int | float) and not isinstance(c, bool) and math.isfinite(c) for c in classes
    )
    if not valid or any(b <= a for a, b in zip(classes, classes[1:], strict=False)):
        raise damaged(f"classes {classes!r} are not finite numbers in increasing order")
    if counts is not None and (not isinstance(counts, list) or len(counts) != len(classes)):
        raise damaged(f"class_counts {counts!r} do not match classes {classes!r}")


def _read_index(
    spark: SparkSession, path: str, metadata: dict, max_broadcast_bytes: int
) -> TrainingIndex:
    info = metadata["index"]
    groups = None if info.get("groups") is None else GroupRouting.from_json(info["groups"])
    row_schema = SHARD_ROWS_SCHEMA
    if groups is not None:
        row_schema = T.StructType([*row_schema.fields, T.StructField(GROUP_KEY, T.StringType())])
    try:
        rows = spark.read.schema(row_schema).parquet(data_path(path))
    except AnalysisException as exc:
        raise ModelLoadError(
            f"The model at '{path}' has no training data folder ({error_line(exc)})."
        ) from None
    # In shard order (JSON sorts the keys as text): the shard lists follow it.
    sizes = dict(sorted((int(k), int(v)) for k, v in info["shard_sizes"].items()))
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
        router=_read_router(path, info, n_features, sizes),
        groups=groups,
    )
    payloads = None
    if not shard_kind(kind).stores_features:
        payloads = _read_payloads(spark, path, sizes, grouped=groups is not None)
    size = broadcast_bytes(n_rows, n_features, common["payload_bytes"])
    if choose_storage(size, max_broadcast_bytes, is_connect(spark)) == "distributed":
        _check_distributed_rows(rows, path, n_rows, n_features)
        shard_rows = rows.select(*row_schema.fieldNames()).filter(F.lit(True))
        # Placed one shard per partition and persisted: the first search moves the index
        # there, later searches find it in place.
        partitions = max(sizes, default=0) + 1
        level = StorageLevel.MEMORY_AND_DISK
        return TrainingIndex(
            shard_rows=shard_major_layout(shard_rows, partitions).persist(level),
            shard_blobs=(
                None
                if payloads is None
                else shard_major_layout(payloads, partitions).persist(level)
            ),
            shard_partitions=partitions,
            **common,
        )
    index = TrainingIndex(**common)
    if groups is not None:
        return _read_grouped(index, rows, payloads, path)
    exact = _exact_shards(rows, path, sizes, n_rows, n_features, has_labels)
    _check_labels(path, exact, index.classes)
    index.shards = {EXACT_KIND: exact}
    if payloads is not None:
        by_shard = {int(r["shard"]): r.asDict() for r in payloads.collect()}
        _check_payload_bytes(path, by_shard, index.payload_bytes)
        index.shards[kind] = [
            shard_from_blob(by_shard[s], kind, index.kind_params, index.model_id) for s in sizes
        ]
    return index


def _read_grouped(
    index: TrainingIndex, rows: DataFrame, payloads: DataFrame | None, path: str
) -> TrainingIndex:
    """A grouped index (``groupCol``) kept on the driver: one piece per (shard, group)."""
    with _reading_training_data(path):
        table = rows.toArrow()
    _check_rows(path, table.num_rows, index.n_rows)
    exact = grouped_exact_shards(table, index.n_features, index.model_id)
    _check_labels(path, exact, index.classes)
    index.shards = {EXACT_KIND: exact}
    if payloads is not None:
        blobs = [r.asDict() for r in payloads.collect()]
        _check_payload_bytes(path, dict(enumerate(blobs)), index.payload_bytes)
        index.shards[index.kind] = shards_from_pieces(
            blobs, index.kind, index.kind_params, index.model_id
        )
    return index


def _read_router(path: str, info: dict, n_features: int, sizes: dict[int, int]) -> Any:
    """The k-means router saved in the metadata (None for hash partitioning)."""
    try:
        return routing_from_json(info.get("routing"), n_features, sizes)
    except (ValueError, TypeError, KeyError) as exc:
        raise ModelLoadError(
            f"The model at '{path}' has damaged metadata: {type(exc).__name__}: {exc}."
        ) from None


def _check_distributed_rows(rows: DataFrame, path: str, n_rows: int, n_features: int) -> None:
    """Row count (Parquet footers) and the length of one feature vector, without a full read."""
    with _reading_training_data(path):
        counted = rows.count()
        first = rows.select(F.size("features").alias("n")).first()
    _check_rows(path, counted, n_rows)
    if first is not None and first["n"] != n_features:
        raise ModelLoadError(
            f"The model at '{path}' is damaged: features of length {first['n']}, "
            f"its metadata says {n_features}."
        )


def _exact_shards(
    rows: DataFrame,
    path: str,
    sizes: dict[int, int],
    n_rows: int,
    n_features: int,
    has_labels: bool,
) -> list[ExactShard]:
    """The saved training rows as exact blocks, one per shard, checked against the metadata."""
    with _reading_training_data(path):
        pdf = rows.toPandas()
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


def _check_labels(path: str, shards: list[ExactShard], classes: np.ndarray | None) -> None:
    """Every training label of a classifier is one of its classes (votes index by class)."""
    if classes is None:
        return
    labels = np.concatenate([s.labels for s in shards if s.labels is not None] or [np.empty(0)])
    unknown = np.setdiff1d(labels, classes)
    if unknown.size:
        raise ModelLoadError(
            f"The model at '{path}' is damaged: training labels {unknown[:5].tolist()} are not "
            f"among its classes {classes.tolist()}."
        )


def _check_payload_bytes(path: str, by_shard: dict[int, dict], expected: int) -> None:
    found = sum(len(b["payload"] or b"") for b in by_shard.values())
    if expected and found != expected:
        raise ModelLoadError(
            f"The model at '{path}' is damaged: its index folder holds {found} payload bytes, "
            f"its metadata says {expected}."
        )


def _read_payloads(
    spark: SparkSession, path: str, sizes: dict[int, int], grouped: bool = False
) -> DataFrame:
    """The ``index/`` folder: one row per shard in the layout of PAYLOAD_COLUMNS.

    A ``grouped`` index has one row per (shard, group), with a ``group`` column.
    """
    try:
        payloads = spark.read.parquet(payloads_path(path))
        if "payload" not in payloads.columns and "graph" in payloads.columns:
            payloads = payloads.withColumnRenamed("graph", "payload")  # an older layout
        payloads = payloads.select(
            *[F.col(c).cast(SHARD_BLOB_SCHEMA[c].dataType) for c in PAYLOAD_COLUMNS],
            *([F.col(GROUP_KEY).cast("string")] if grouped else []),
        )
        found: dict[int, int] = {}
        for r in payloads.select("shard", "n_rows").collect():
            found[int(r["shard"])] = found.get(int(r["shard"]), 0) + int(r["n_rows"])
    except Exception as exc:  # a missing or damaged folder surfaces as a Java error
        raise ModelLoadError(
            f"The model at '{path}' has no readable index folder ({error_line(exc)})."
        ) from None
    if found != sizes:
        raise ModelLoadError(
            f"The model at '{path}' is damaged: its index folder holds {found} rows per shard, "
            f"its metadata says {sizes}."
        )
    return payloads


@contextmanager
def _reading_training_data(path: str) -> Iterator[None]:
    """A failed read of the saved training rows is a ModelLoadError naming the model."""
    try:
        yield
    except Exception as exc:  # a damaged Parquet file surfaces as a Java error
        raise ModelLoadError(
            f"The model at '{path}' has unreadable training data: {error_line(exc)}"
        ) from None


def _check_rows(path: str, found: int, expected: int) -> None:
    if found != expected:
        raise ModelLoadError(
            f"The model at '{path}' is damaged: its data folder holds {found} training rows, "
            f"its metadata says {expected}."
        )
