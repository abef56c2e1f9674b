"""Fit-time work: choose the index kind and storage, and build every shard on the executors.

The training rows (see :mod:`knnspark.training`) are grouped by shard and each group is
built in its own task (``groupBy(shard).applyInArrow``) into the kind's
:class:`~knnspark.kernels.shard.Shard`, returned as one row of plain buffers
(:mod:`knnspark.shard_codec`).  An index that fits ``maxBroadcastBytes`` comes back to
the driver and is broadcast at search time; a larger one stays in Spark as persisted
DataFrames, one shard per partition, that the shard-major path searches in place
(:func:`knnspark.sizing.choose_storage`, the one place that rule lives).
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from knnspark._faults import maybe_fail
from knnspark.errors import InvalidInputError
from knnspark.group_pieces import GROUPED_BLOB_SCHEMA, build_pieces, shards_from_pieces
from knnspark.kernels.grouped import GroupRouting
from knnspark.kernels.kinds import SHARD_KINDS, shard_kind
from knnspark.kernels.routing import Router
from knnspark.kernels.shard import Shard
from knnspark.kmeans_sharding import (
    RADII_FIELDS,
    RADIUS,
    Radii,
    ShardRouting,
    built_radii,
    fold_radii,
    radii_maxima,
    row_distances,
    with_radii,
)
from knnspark.preprocessing import Preprocessing
from knnspark.shard_codec import (
    SHARD_BLOB_SCHEMA,
    build_blob_table,
    repeated_id_message,
    shard_from_blob,
)
from knnspark.shard_layout import (
    PARTITION_KEY,
    shard_major_layout,
    with_partition_key,
)
from knnspark.sizing import (
    EXACT_KIND,
    broadcast_bytes,
    check_blob_row,
    check_shard_memory,
    choose_algorithm,
    choose_storage,
    index_size_bytes,
    metric_message,
)
from knnspark.timing import TaskTimer
from knnspark.training import check_unique_ids, prepare_training

__all__ = [
    "EXACT_KIND",
    "IndexSpec",
    "TrainingIndex",
    "build_index",
    "kind_param_names",
]

logger = logging.getLogger("knnspark")


def kind_param_names() -> tuple[str, ...]:
    """Names of the estimator Params any index kind reads at build time."""
    return tuple(dict.fromkeys(n for cls in SHARD_KINDS.values() for n in cls.param_names))


@dataclass(frozen=True)
class IndexSpec:
    """Everything ``fit`` needs to build an index, read from the estimator's params.

    ``kind_values`` holds the estimator's value of every Param an index kind reads
    (:func:`kind_param_names`), by Param name.
    """

    features_col: str
    label_col: str | None
    id_col: str | None
    classifier: bool
    num_shards: int
    k: int
    handle_invalid: str
    max_broadcast_bytes: int
    algorithm: str = "brute"
    metric: str = "euclidean"
    ef: int = 64
    kind_values: dict[str, Any] = field(default_factory=dict)
    max_shard_bytes: int = 1 << 30
    impute_strategy: str | None = None
    standardization: str = "none"
    p: float = 2.0
    partitioning: str = "hash"
    seed: int = 0
    nprobe: int | None = None
    connect: bool = False  # fit runs on Spark Connect: see choose_storage
    group_col: str | None = None


@dataclass
class TrainingIndex:
    """What a fitted model knows about its training data.

    ``kind`` is the index kind ``fit`` built (``algorithmUsed``); ``kind_params`` its
    build params (e.g. an HNSW graph's metric and ``M``), saved with the model.
    Broadcast storage keeps ``shards`` on the driver: for each searchable kind (the
    built one, and :data:`EXACT_KIND`), one :class:`Shard` per shard number.
    Distributed storage keeps ``shard_rows`` (a DataFrame of
    :data:`~knnspark.shard_codec.SHARD_ROWS_SCHEMA`) and, for kinds with a payload,
    ``shard_blobs`` (:data:`~knnspark.shard_codec.SHARD_BLOB_SCHEMA`), both persisted in
    :func:`shard_major_layout` over ``shard_partitions`` partitions.
    ``router`` holds the centroids and radii of a ``partitioning="kmeans"`` index (None
    for hash partitioning).  ``groups`` says which shards hold each group of a ``groupCol``
    index, whose shards are :class:`~knnspark.kernels.grouped.GroupedShard` (one piece per
    group) and whose distributed rows and blobs carry a ``group`` column.
    """

    n_features: int
    n_rows: int
    shard_sizes: dict[int, int]
    classes: np.ndarray | None
    generated_ids: bool
    class_counts: np.ndarray | None = None
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    kind: str = EXACT_KIND
    model_id: str = ""
    kind_params: dict[str, Any] = field(default_factory=dict)
    payload_bytes: int = 0
    shards: dict[str, list[Shard]] | None = None
    shard_rows: DataFrame | None = None
    shard_blobs: DataFrame | None = None
    shard_partitions: int = 0
    router: Router | None = None
    groups: GroupRouting | None = None

    @property
    def partitioning(self) -> str:
        return "hash" if self.router is None else "kmeans"

    @property
    def storage(self) -> str:
        return "broadcast" if self.shards is not None else "distributed"

    @property
    def num_shards(self) -> int:
        return len(self.shard_sizes)

    @property
    def size_bytes(self) -> int:
        """Bytes of the searchable index: the exact rows, plus any payloads (graphs)."""
        return index_size_bytes(self.n_rows, self.n_features, self.payload_bytes)

    def distributed_data(self, kind: str) -> DataFrame:
        """What the distributed path groups by shard to search as ``kind``."""
        return self.shard_rows if shard_kind(kind).stores_features else self.shard_blobs


def build_index(df: DataFrame, spec: IndexSpec) -> TrainingIndex:
    """Validate, number and shard the training data, then build every shard."""
    if spec.algorithm != "auto" and not shard_kind(spec.algorithm).supports_metric(spec.metric):
        raise ValueError(metric_message(spec.algorithm, spec.metric))
    prepared = prepare_training(
        df,
        features_col=spec.features_col,
        label_col=spec.label_col,
        id_col=spec.id_col,
        classifier=spec.classifier,
        num_shards=spec.num_shards,
        k=spec.k,
        handle_invalid=spec.handle_invalid,
        impute_strategy=spec.impute_strategy,
        standardization=spec.standardization,
        metric=spec.metric,
        partitioning=spec.partitioning,
        seed=spec.seed,
        group_col=spec.group_col,
    )
    n_rows, n_features = prepared.n_rows, prepared.n_features
    values = spec.kind_values
    kind = choose_algorithm(
        spec.algorithm,
        spec.metric,
        n_rows,
        spec.num_shards,
        values.get("efConstruction", 200),
        spec.ef,
        values.get("M", 16),
        spec.nprobe,
    )
    kind_cls = shard_kind(kind)
    params = kind_cls.build_params(spec.metric, values)
    payload_estimate = check_shard_memory(
        kind_cls,
        params,
        n_rows,
        n_features,
        num_shards=spec.num_shards,
        partitioning=spec.partitioning,
        max_shard_bytes=spec.max_shard_bytes,
    )
    index = TrainingIndex(
        n_features=n_features,
        n_rows=n_rows,
        shard_sizes={},
        classes=prepared.classes,
        class_counts=prepared.class_counts,
        preprocessing=prepared.preprocessing,
        generated_ids=spec.id_col is None,
        kind=kind,
        model_id=uuid.uuid4().hex,
        kind_params=params,
        groups=prepared.groups,
    )
    routing = None
    if prepared.routing is not None:  # radii measured with the model's metric
        routing = dataclasses.replace(prepared.routing, metric=spec.metric, p=spec.p)
    blobs = _shard_blobs(
        prepared.rows,
        spec.label_col is not None,
        kind,
        params,
        spec.num_shards,
        routing,
        grouped=prepared.groups is not None,
    )
    size = broadcast_bytes(n_rows, n_features, payload_estimate)
    storage = choose_storage(size, spec.max_broadcast_bytes, spec.connect)
    if not kind_cls.stores_features or storage == "broadcast":
        check_blob_row(
            kind_cls, params, n_rows, n_features, spec.num_shards, partitioning=spec.partitioning
        )
    try:
        if storage == "broadcast":
            radii = _collect_shards(index, blobs)
        else:
            radii = _keep_distributed(index, prepared.rows, blobs, spec.num_shards, routing)
    except Exception:
        # The build (or the shard count) fails on repeated ids; only then does a job look
        # for one, so that the message names it (a fit without them runs no extra job).
        if spec.id_col is not None:
            check_unique_ids(prepared.rows, spec.id_col)
        raise
    if routing is not None:
        index.router = routing.router(*radii)
    _check_row_count(index)
    logger.info(
        "indexed %d training rows x %d features in %d shards (%s, %s, %.1f MiB)",
        n_rows,
        n_features,
        index.num_shards,
        kind,
        index.storage,
        index.size_bytes / 2**20,
    )
    return index


def _collect_shards(index: TrainingIndex, blobs: DataFrame) -> Radii:
    """Broadcast storage: every built shard comes to the driver (through Arrow).

    Returns each shard's radius and its balls' radii (k-means partitioning; empty otherwise).
    """
    collected = blobs.toArrow().sort_by("shard").to_pylist()
    index.shard_sizes = {}
    for b in collected:  # a grouped index has one blob per (shard, group)
        index.shard_sizes[int(b["shard"])] = index.shard_sizes.get(int(b["shard"]), 0) + b["n_rows"]
    kinds = dict.fromkeys([EXACT_KIND, index.kind])
    if index.groups is not None:
        index.shards = {
            kind: shards_from_pieces(collected, kind, index.kind_params, index.model_id)
            for kind in kinds
        }
    else:
        index.shards = {
            kind: [shard_from_blob(b, kind, index.kind_params, index.model_id) for b in collected]
            for kind in kinds
        }
    if index.kind != EXACT_KIND:
        index.payload_bytes = sum(s.size_bytes for s in index.shards[index.kind])
    return built_radii([b for b in collected if RADIUS in b])


def _keep_distributed(
    index: TrainingIndex,
    rows: DataFrame,
    blobs: DataFrame,
    num_shards: int,
    routing: ShardRouting | None = None,
) -> Radii:
    """Distributed storage: rows (and payload blobs) stay in Spark, persisted.

    Returns each shard's radius and its balls' radii (k-means partitioning; empty
    otherwise), measured in the job that counts the shards.
    """
    index.shard_partitions = num_shards
    radii: Radii = ({}, {})
    level = StorageLevel.MEMORY_AND_DISK
    index.shard_rows = shard_major_layout(rows, num_shards).persist(level)
    if shard_kind(index.kind).stores_features:
        measured, keys = index.shard_rows, ["shard"]
        aggs = [F.count(F.lit(1)).alias("count"), F.count_distinct("id").alias("ids")]
        if routing is not None:  # per (shard, ball): the largest distances, then folded
            measured = row_distances(measured, routing, index.n_features)
            keys, aggs = ["shard", "sub"], aggs + radii_maxima()
        counts = measured.groupBy(*keys).agg(*aggs).collect()
        repeated = [int(r["shard"]) for r in counts if r["count"] != r["ids"]]
        if repeated:
            # With an idCol, build_index's handler names the id first.
            raise InvalidInputError(repeated_id_message(f"A training id of shard {repeated[0]}"))
        sizes: dict[int, int] = {}
        for r in counts:
            sizes[int(r["shard"])] = sizes.get(int(r["shard"]), 0) + int(r["count"])
        if routing is not None:
            radii = fold_radii(routing, counts)
    else:
        index.shard_blobs = shard_major_layout(blobs.drop("features"), num_shards).persist(level)
        columns = ["shard", "n_rows", F.length("payload").alias("payload_bytes")]
        if routing is not None:
            columns += [field.name for field in RADII_FIELDS]
        built = index.shard_blobs.select(*columns).collect()
        sizes = {}
        for r in built:  # a grouped index has one blob per (shard, group)
            sizes[int(r["shard"])] = sizes.get(int(r["shard"]), 0) + int(r["n_rows"])
        index.payload_bytes = sum(int(r["payload_bytes"]) for r in built)
        if routing is not None:
            radii = built_radii(built)
    index.shard_sizes = dict(sorted(sizes.items()))
    return radii


def _check_row_count(index: TrainingIndex) -> None:
    """The shards hold the rows the training checks counted, or the input changed between."""
    built = sum(index.shard_sizes.values())
    if built != index.n_rows:
        for persisted in (index.shard_rows, index.shard_blobs):
            if persisted is not None:
                persisted.unpersist()
        raise InvalidInputError(
            f"fit counted {index.n_rows} valid training rows but its shards hold {built}: the "
            "training DataFrame gave different rows when fit evaluated it again (a "
            "nondeterministic input, e.g. filtered, sampled or ordered by rand()). Cache or "
            "checkpoint the DataFrame before fit (df.cache(), df.localCheckpoint())."
        )


def _shard_blobs(
    rows: DataFrame,
    has_labels: bool,
    kind: str,
    params: dict,
    num_shards: int,
    routing: ShardRouting | None = None,
    grouped: bool = False,
) -> DataFrame:
    """One row per shard, built on the executors, each shard in a task of its own.

    Grouping by shard alone hashes shard numbers into partitions, and shards that share a
    partition are built one after the other (HNSW builds take long). So the rows are hash
    partitioned on a key chosen per shard to land in partition ``shard``
    (:func:`shard_partition_keys`), which the grouping reuses without a second shuffle.
    With ``routing`` (k-means partitioning) each task also measures its shard's radii.
    A ``grouped`` index (``groupCol``) gives one row per (shard, group) instead.
    """
    if grouped:
        keyed = with_partition_key(rows, num_shards).repartition(num_shards, PARTITION_KEY)
        grouped_build = build_pieces(has_labels, kind, params)
        return keyed.groupBy(PARTITION_KEY, "shard").applyInArrow(
            grouped_build, GROUPED_BLOB_SCHEMA
        )

    def build(table: pa.Table) -> pa.Table:
        maybe_fail("build")
        timer = TaskTimer("build")
        timer.count(table.num_rows)
        with timer.stage("build"):
            out = build_blob_table(table, has_labels, kind, params)
        if routing is not None:
            with timer.stage("radii"):
                out = with_radii(routing, table, out)
        timer.flush()
        return out

    keyed = with_partition_key(rows, num_shards).repartition(num_shards, PARTITION_KEY)
    schema = SHARD_BLOB_SCHEMA
    if routing is not None:
        schema = T.StructType([*schema.fields, *RADII_FIELDS])
    return keyed.groupBy(PARTITION_KEY, "shard").applyInArrow(build, schema)
