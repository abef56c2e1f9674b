"""Fit-time work: choose the index kind and storage, and build every shard on the executors.

The training rows (see :mod:`knnspark.training`) are grouped by shard and each group is
built in its own task (``groupBy(shard).applyInArrow``) into the kind's
:class:`~knnspark.kernels.shard.Shard`, returned as one row of plain buffers
(:mod:`knnspark.shard_codec`).  An index that fits ``maxBroadcastBytes`` comes back to
the driver and is broadcast at search time; a larger one stays in Spark as persisted
DataFrames that the distributed-reduce path joins against (:func:`choose_storage`, the
one place that rule lives).
"""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from knnspark import classic
from knnspark._faults import maybe_fail
from knnspark.classic import is_connect
from knnspark.errors import InvalidInputError
from knnspark.kernels.distances import METRICS
from knnspark.kernels.exact import ExactShard
from knnspark.kernels.hnsw import HnswShard
from knnspark.kernels.kinds import SHARD_KINDS, shard_kind
from knnspark.kernels.shard import Shard
from knnspark.preprocessing import Preprocessing
from knnspark.shard_codec import (
    SHARD_BLOB_SCHEMA,
    build_blob_table,
    repeated_id_message,
    shard_from_blob,
)
from knnspark.timing import TaskTimer
from knnspark.training import check_unique_ids, prepare_training

__all__ = [
    "CONNECT_SHIPPED_BYTES",
    "EXACT_KIND",
    "IndexSpec",
    "TrainingIndex",
    "broadcast_bytes",
    "build_index",
    "choose_algorithm",
    "choose_storage",
    "default_num_shards",
    "index_size_bytes",
    "kind_param_names",
]

logger = logging.getLogger("knnspark")

#: The kind every index keeps besides its own: its rows as exact blocks, so any model
#: can be searched exactly (``algorithm='brute'`` on a fitted model).
EXACT_KIND = ExactShard.kind

# Exact search uses BLAS, which evaluates a distance about this many times
# faster than HNSW's scattered memory reads; see choose_algorithm.
_BLAS_ADVANTAGE = 10


def kind_param_names() -> tuple[str, ...]:
    """Names of the estimator Params any index kind reads at build time."""
    return tuple(dict.fromkeys(n for cls in SHARD_KINDS.values() for n in cls.param_names))


def index_size_bytes(n_rows: int, n_features: int, payload_bytes: int = 0) -> int:
    """Bytes of a searchable index: its exact rows plus any kind's payloads (graphs)."""
    return ExactShard.estimate_bytes(n_rows, n_features, {}) + int(payload_bytes)


def broadcast_bytes(n_rows: int, n_features: int, payload_bytes: int = 0) -> int:
    """Bytes a search broadcasts: the shards of one kind, the largest kind of the index.

    A search ships only the kind it searches: exact shards (features, ids, labels), or a
    payload kind's shards (HNSW graphs, which hold the vectors, with ids and labels).  The
    sum of both (``indexSizeBytes``) would send a 60k x 784 HNSW model (190 MB of rows, 190
    MB of graphs) down the distributed path although each broadcast is half of it.

    Examples
    --------
    >>> broadcast_bytes(60_000, 784) == 60_000 * (4 * 784 + 16)
    True
    >>> broadcast_bytes(60_000, 784, payload_bytes=197_000_000) == 197_000_000 + 16 * 60_000
    True
    """
    exact = ExactShard.estimate_bytes(n_rows, n_features, {})
    if not payload_bytes:
        return exact
    return max(exact, int(payload_bytes) + 16 * int(n_rows))


#: Spark Connect's budget for the shards a search ships inside its function (Connect has no
#: broadcast variables; see :mod:`knnspark.shipped`).  The function travels in the query plan,
#: a gRPC message of at most ``spark.connect.grpc.maxInboundMessageSize`` (128 MiB by
#: default), and reaches every task, so the budget stays well below that limit.
CONNECT_SHIPPED_BYTES = 32 * 1024 * 1024


def choose_storage(size_bytes: int, max_broadcast_bytes: int, connect: bool = False) -> str:
    """``"broadcast"`` when ``size_bytes`` (:func:`broadcast_bytes`) fits ``maxBroadcastBytes``.

    On Spark Connect (``connect``) the shards must also fit :data:`CONNECT_SHIPPED_BYTES`.
    Otherwise ``"distributed"``.

    Examples
    --------
    >>> choose_storage(50 * 2**20, 256 * 2**20), choose_storage(50 * 2**20, 256 * 2**20, True)
    ('broadcast', 'distributed')
    """
    limit = min(max_broadcast_bytes, CONNECT_SHIPPED_BYTES) if connect else max_broadcast_bytes
    return "broadcast" if size_bytes <= limit else "distributed"


#: On Spark Connect, the most shards ``numShards=None`` gives (see default_num_shards).
CONNECT_MAX_DEFAULT_SHARDS = 32


def default_num_shards(session: Any) -> int:
    """The shard count of ``numShards=None``.

    A classic session: the SparkContext's default parallelism (its executors' cores).  Spark
    Connect, which does not expose it: ``spark.default.parallelism`` when the server sets
    it, else ``spark.sql.shuffle.partitions`` capped at :data:`CONNECT_MAX_DEFAULT_SHARDS`
    (32), both read through ``spark.conf``.
    """
    if not is_connect(session):
        return classic.default_parallelism(session)
    configured = session.conf.get("spark.default.parallelism", None)
    if configured:
        return max(1, int(configured))
    shuffle = int(session.conf.get("spark.sql.shuffle.partitions"))
    return max(1, min(shuffle, CONNECT_MAX_DEFAULT_SHARDS))


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
    connect: bool = False  # fit runs on Spark Connect: see choose_storage


@dataclass
class TrainingIndex:
    """What a fitted model knows about its training data.

    ``kind`` is the index kind ``fit`` built (``algorithmUsed``); ``kind_params`` its
    build params (e.g. an HNSW graph's metric and ``M``), saved with the model.
    Broadcast storage keeps ``shards`` on the driver: for each searchable kind (the
    built one, and :data:`EXACT_KIND`), one :class:`Shard` per shard number.
    Distributed storage keeps ``shard_rows`` (a DataFrame of
    :data:`~knnspark.shard_codec.SHARD_ROWS_SCHEMA`) and, for kinds with a payload,
    ``shard_blobs`` (:data:`~knnspark.shard_codec.SHARD_BLOB_SCHEMA`).
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


def choose_algorithm(
    requested: str, metric: str, n_rows: int, num_shards: int, ef_construction: int, ef: int, m: int
) -> str:
    """The index kind ``fit`` builds.  ``"auto"`` weighs build cost against search savings.

    Exact search costs about ``n_rows`` distance evaluations per query (done by
    BLAS, ``_BLAS_ADVANTAGE`` = 10 times cheaper each).  HNSW costs about
    ``ef_construction`` evaluations per row to build and ``ef * M`` per query
    and shard to search.  Assuming a model scores at least as many rows as it
    was trained on, HNSW pays off when
    ``n_rows > 10 * (ef_construction + num_shards * ef * M)`` — with the
    defaults and 2 shards, from about 22,500 training rows.  Metrics HNSW
    cannot serve (no hnswlib space in the metric table) always use exact search.
    """
    if requested != "auto":
        return requested
    if not HnswShard.supports_metric(metric):
        return EXACT_KIND
    threshold = _BLAS_ADVANTAGE * (ef_construction + num_shards * ef * m)
    return HnswShard.kind if n_rows > threshold else EXACT_KIND


def build_index(df: DataFrame, spec: IndexSpec) -> TrainingIndex:
    """Validate, number and shard the training data, then build every shard."""
    if spec.algorithm != "auto" and not shard_kind(spec.algorithm).supports_metric(spec.metric):
        raise ValueError(_metric_message(spec.algorithm, spec.metric))
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
    )
    kind_cls = shard_kind(kind)
    params = kind_cls.build_params(spec.metric, values)
    payload_estimate = _check_shard_memory(spec, kind_cls, params, n_rows, n_features)
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
    )
    blobs = _shard_blobs(prepared.rows, spec.label_col is not None, kind, params, spec.num_shards)
    size = broadcast_bytes(n_rows, n_features, payload_estimate)
    try:
        if choose_storage(size, spec.max_broadcast_bytes, spec.connect) == "broadcast":
            _collect_shards(index, blobs)
        else:
            _keep_distributed(index, prepared.rows, blobs)
    except Exception:
        # The build (or the shard count) fails on repeated ids; only then does a job look
        # for one, so that the message names it (a fit without them runs no extra job).
        if spec.id_col is not None:
            check_unique_ids(prepared.rows, spec.id_col)
        raise
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


def _collect_shards(index: TrainingIndex, blobs: DataFrame) -> None:
    """Broadcast storage: every built shard comes to the driver (through Arrow)."""
    collected = blobs.toArrow().sort_by("shard").to_pylist()
    index.shard_sizes = {int(b["shard"]): int(b["n_rows"]) for b in collected}
    kinds = dict.fromkeys([EXACT_KIND, index.kind])
    index.shards = {
        kind: [shard_from_blob(b, kind, index.kind_params, index.model_id) for b in collected]
        for kind in kinds
    }
    if index.kind != EXACT_KIND:
        index.payload_bytes = sum(s.size_bytes for s in index.shards[index.kind])


def _keep_distributed(index: TrainingIndex, rows: DataFrame, blobs: DataFrame) -> None:
    """Distributed storage: rows (and payload blobs) stay in Spark, persisted."""
    index.shard_rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
    if shard_kind(index.kind).stores_features:
        counts = index.shard_rows.groupBy("shard").agg(
            F.count(F.lit(1)).alias("count"), F.count_distinct("id").alias("ids")
        )
        counts = counts.collect()
        repeated = [int(r["shard"]) for r in counts if r["count"] != r["ids"]]
        if repeated:
            # With an idCol, build_index's handler names the id first.
            raise InvalidInputError(repeated_id_message(f"A training id of shard {repeated[0]}"))
        sizes = {int(r["shard"]): int(r["count"]) for r in counts}
    else:
        index.shard_blobs = blobs.drop("features").persist(StorageLevel.MEMORY_AND_DISK)
        built = index.shard_blobs.select(
            "shard", "n_rows", F.length("payload").alias("payload_bytes")
        ).collect()
        sizes = {int(r["shard"]): int(r["n_rows"]) for r in built}
        index.payload_bytes = sum(int(r["payload_bytes"]) for r in built)
    index.shard_sizes = dict(sorted(sizes.items()))


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


def _metric_message(kind: str, metric: str) -> str:
    cls = shard_kind(kind)
    served = [m for m in METRICS if cls.supports_metric(m)]
    others = [m for m in METRICS if m not in served]
    listed = ", ".join(others[:-1]) + " and " + others[-1] if len(others) > 1 else others[0]
    return (
        f"Param metric {metric!r} is not supported by algorithm={kind!r}, which supports "
        f"{', '.join(served)}; the metrics {listed} need algorithm={EXACT_KIND!r}."
    )


def _check_shard_memory(
    spec: IndexSpec, kind_cls: type[Shard], params: dict, n_rows: int, n_features: int
) -> int:
    """Fail before building when a shard would not fit ``maxShardBytes``.

    Returns the estimated payload bytes of the whole index (0 for kinds whose shards are
    the exact rows themselves).
    """
    if not kind_cls.max_shard_bytes_applies:
        return 0
    # Hash sharding is uneven; allow the largest shard 20% above the mean.
    rows_per_shard = math.ceil(1.2 * n_rows / spec.num_shards)
    per_shard = kind_cls.estimate_bytes(rows_per_shard, n_features, params)
    if per_shard > spec.max_shard_bytes:
        per_row = max(1.0, per_shard / max(1, rows_per_shard))
        rows_that_fit = max(1, int(spec.max_shard_bytes // per_row))
        needed = math.ceil(1.2 * n_rows / rows_that_fit)
        size_params = " or ".join(f"a smaller {name}" for name in kind_cls.size_params)
        raise InvalidInputError(
            f"An {kind_cls.kind.upper()} shard would take about {per_shard / 2**20:.0f} MiB "
            f"({rows_per_shard} rows x about {per_row:.0f} bytes for {n_features} features), "
            f"over maxShardBytes={spec.max_shard_bytes} "
            f"({spec.max_shard_bytes / 2**20:.0f} MiB). Use more shards (numShards >= "
            f"{needed}), {size_params}, or raise maxShardBytes if the Python workers have the "
            "memory. An index over maxBroadcastBytes is not broadcast: the distributed-reduce "
            "path searches it shard by shard."
        )
    return kind_cls.estimate_bytes(n_rows, n_features, params)


def _shard_blobs(
    rows: DataFrame, has_labels: bool, kind: str, params: dict, num_shards: int
) -> DataFrame:
    """One row per shard, built on the executors, each shard in a task of its own.

    Grouping by shard alone hashes shard numbers into partitions, and shards that share a
    partition are built one after the other (HNSW builds take long). So the rows are hash
    partitioned on a key chosen per shard to land in partition ``shard``
    (:func:`shard_partition_keys`), which the grouping reuses without a second shuffle.
    """

    def build(table: pa.Table) -> pa.Table:
        maybe_fail("build")
        timer = TaskTimer("build")
        timer.count(table.num_rows)
        with timer.stage("build"):
            out = build_blob_table(table, has_labels, kind, params)
        timer.flush()
        return out

    keys = F.array(*[F.lit(k) for k in shard_partition_keys(num_shards)])
    keyed = rows.withColumn(_PARTITION_KEY, F.element_at(keys, F.col("shard") + 1))
    keyed = keyed.repartition(num_shards, _PARTITION_KEY)
    return keyed.groupBy(_PARTITION_KEY, "shard").applyInArrow(build, SHARD_BLOB_SCHEMA)


_PARTITION_KEY = "__knnspark_partition_key"


def spark_hash_partition(key: int, num_partitions: int) -> int:
    """The partition Spark's hash partitioning gives an ``int`` key.

    Spark hashes with Murmur3 (x86, 32 bits, seed 42) and takes the non-negative remainder.

    Examples
    --------
    >>> [spark_hash_partition(k, 4) for k in range(6)]
    [3, 3, 2, 3, 2, 2]
    """

    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (32 - r))) & 0xFFFFFFFF

    k1 = (key & 0xFFFFFFFF) * 0xCC9E2D51 & 0xFFFFFFFF
    k1 = rotl(k1, 15) * 0x1B873593 & 0xFFFFFFFF
    h1 = rotl(42 ^ k1, 13)
    h1 = (h1 * 5 + 0xE6546B64) & 0xFFFFFFFF
    h1 ^= 4
    h1 ^= h1 >> 16
    h1 = h1 * 0x85EBCA6B & 0xFFFFFFFF
    h1 ^= h1 >> 13
    h1 = h1 * 0xC2B2AE35 & 0xFFFFFFFF
    h1 ^= h1 >> 16
    signed = h1 - (1 << 32) if h1 & 0x80000000 else h1
    return signed % num_partitions


def shard_partition_keys(num_shards: int) -> list[int]:
    """For each shard, the smallest non-negative int key Spark hash-partitions into it."""
    keys: list[int | None] = [None] * num_shards
    missing, key = num_shards, 0
    while missing:
        part = spark_hash_partition(key, num_shards)
        if keys[part] is None:
            keys[part] = key
            missing -= 1
        key += 1
    return [int(k) for k in keys if k is not None]
