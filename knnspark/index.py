"""Fit-time work: choose the index kind and storage, and build every shard on the executors.

The training rows (see :mod:`knnspark.training`) are grouped by shard and each group is
built in its own task (``groupBy(shard).applyInArrow``) into the kind's
:class:`~knnspark.kernels.shard.Shard`, returned as one row of plain buffers
(:mod:`knnspark.shard_codec`).  An index that fits ``maxBroadcastBytes`` comes back to
the driver and is broadcast at search time; a larger one stays in Spark as persisted
DataFrames, one shard per partition, that the shard-major path searches in place
(:func:`choose_storage`, the one place that rule lives).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from knnspark import classic
from knnspark._faults import maybe_fail
from knnspark.arrow_columns import LIST_F64, list_matrix
from knnspark.classic import is_connect
from knnspark.errors import InvalidInputError
from knnspark.kernels.distances import METRICS
from knnspark.kernels.exact import ExactShard
from knnspark.kernels.hnsw import HnswShard
from knnspark.kernels.kinds import SHARD_KINDS, shard_kind
from knnspark.kernels.routing import Router
from knnspark.kernels.shard import Shard
from knnspark.kmeans_sharding import ShardRouting
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
from knnspark.timing import TaskTimer
from knnspark.training import check_unique_ids, prepare_training

__all__ = [
    "CONNECT_SHIPPED_BYTES",
    "EXACT_KIND",
    "IndexSpec",
    "TrainingIndex",
    "MAX_ROW_BYTES",
    "blob_row_bytes",
    "broadcast_bytes",
    "build_index",
    "check_blob_row",
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

#: The column the build and the persisted distributed index are hash partitioned on.

# Hash sharding is uneven: the size rules allow the largest shard 20% above the mean.
_UNEVEN_SHARDS = 1.2

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
    p: float = 2.0
    partitioning: str = "hash"
    seed: int = 0
    nprobe: int | None = None
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
    ``shard_blobs`` (:data:`~knnspark.shard_codec.SHARD_BLOB_SCHEMA`), both persisted in
    :func:`shard_major_layout` over ``shard_partitions`` partitions.
    ``router`` holds the centroids and radii of a ``partitioning="kmeans"`` index (None
    for hash partitioning).
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


def choose_algorithm(
    requested: str,
    metric: str,
    n_rows: int,
    num_shards: int,
    ef_construction: int,
    ef: int,
    m: int,
    visited_shards: int | None = None,
) -> str:
    """The index kind ``fit`` builds.  ``"auto"`` weighs build cost against search savings.

    A query visits ``v = visited_shards`` of the ``S = num_shards`` shards (``nprobe`` with
    ``partitioning="kmeans"``; all of them otherwise).  Exact search costs about
    ``n_rows * v / S`` distance evaluations per query (done by BLAS, ``_BLAS_ADVANTAGE`` =
    10 times cheaper each).  HNSW costs about ``ef_construction`` evaluations per row to
    build and ``ef * M`` per query and visited shard to search.  Assuming a model scores at
    least as many rows as it was trained on, HNSW pays off when
    ``n_rows > 10 * (ef_construction * S / v + S * ef * M)`` — with the defaults, every
    shard visited and 2 shards, from about 22,500 training rows; with 16 shards and
    ``nprobe=4``, from about 139,000.  Metrics HNSW cannot serve (no hnswlib space in the
    metric table) always use exact search.

    Examples
    --------
    >>> choose_algorithm("auto", "euclidean", 30_000, 2, 200, 64, 16)
    'hnsw'
    >>> choose_algorithm("auto", "euclidean", 100_000, 16, 200, 64, 16, visited_shards=4)
    'brute'
    """
    if requested != "auto":
        return requested
    if not HnswShard.supports_metric(metric):
        return EXACT_KIND
    visited = num_shards if visited_shards is None else max(1, min(visited_shards, num_shards))
    threshold = _BLAS_ADVANTAGE * (ef_construction * num_shards / visited + num_shards * ef * m)
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
        partitioning=spec.partitioning,
        seed=spec.seed,
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
    routing = None
    if prepared.routing is not None:  # radii measured with the model's metric
        routing = dataclasses.replace(prepared.routing, metric=spec.metric, p=spec.p)
    blobs = _shard_blobs(
        prepared.rows, spec.label_col is not None, kind, params, spec.num_shards, routing
    )
    size = broadcast_bytes(n_rows, n_features, payload_estimate)
    storage = choose_storage(size, spec.max_broadcast_bytes, spec.connect)
    if not kind_cls.stores_features or storage == "broadcast":
        check_blob_row(kind_cls, params, n_rows, n_features, spec.num_shards)
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


def _collect_shards(index: TrainingIndex, blobs: DataFrame) -> _Radii:
    """Broadcast storage: every built shard comes to the driver (through Arrow).

    Returns each shard's radius and its balls' radii (k-means partitioning; empty otherwise).
    """
    collected = blobs.toArrow().sort_by("shard").to_pylist()
    index.shard_sizes = {int(b["shard"]): int(b["n_rows"]) for b in collected}
    kinds = dict.fromkeys([EXACT_KIND, index.kind])
    index.shards = {
        kind: [shard_from_blob(b, kind, index.kind_params, index.model_id) for b in collected]
        for kind in kinds
    }
    if index.kind != EXACT_KIND:
        index.payload_bytes = sum(s.size_bytes for s in index.shards[index.kind])
    routed = [b for b in collected if RADIUS in b]
    return (
        {int(b["shard"]): float(b[RADIUS]) for b in routed},
        {int(b["shard"]): list(b[SUB_RADII]) for b in routed},
    )


def _keep_distributed(
    index: TrainingIndex,
    rows: DataFrame,
    blobs: DataFrame,
    num_shards: int,
    routing: ShardRouting | None = None,
) -> _Radii:
    """Distributed storage: rows (and payload blobs) stay in Spark, persisted.

    Returns each shard's radius and its balls' radii (k-means partitioning; empty
    otherwise), measured in the job that counts the shards.
    """
    index.shard_partitions = num_shards
    radii: _Radii = ({}, {})
    level = StorageLevel.MEMORY_AND_DISK
    index.shard_rows = shard_major_layout(rows, num_shards).persist(level)
    if shard_kind(index.kind).stores_features:
        measured, keys = index.shard_rows, ["shard"]
        aggs = [F.count(F.lit(1)).alias("count"), F.count_distinct("id").alias("ids")]
        if routing is not None:
            measured = measured.select("shard", "id", "features").mapInArrow(
                _distance_fn(routing, index.n_features), _DISTANCE_SCHEMA
            )
            keys = ["shard", "sub"]
            aggs += [F.max(RADIUS).alias(RADIUS), F.max(SUB_RADII).alias(SUB_RADII)]
        counts = measured.groupBy(*keys).agg(*aggs).collect()
        repeated = [int(r["shard"]) for r in counts if r["count"] != r["ids"]]
        if repeated:
            # With an idCol, build_index's handler names the id first.
            raise InvalidInputError(repeated_id_message(f"A training id of shard {repeated[0]}"))
        sizes: dict[int, int] = {}
        for r in counts:
            sizes[int(r["shard"])] = sizes.get(int(r["shard"]), 0) + int(r["count"])
        if routing is not None:
            radii = _fold_radii(routing, counts)
    else:
        index.shard_blobs = shard_major_layout(blobs.drop("features"), num_shards).persist(level)
        columns = ["shard", "n_rows", F.length("payload").alias("payload_bytes")]
        if routing is not None:
            columns += [RADIUS, SUB_RADII]
        built = index.shard_blobs.select(*columns).collect()
        sizes = {int(r["shard"]): int(r["n_rows"]) for r in built}
        index.payload_bytes = sum(int(r["payload_bytes"]) for r in built)
        if routing is not None:
            radii = (
                {int(r["shard"]): float(r[RADIUS]) for r in built},
                {int(r["shard"]): list(r[SUB_RADII]) for r in built},
            )
    index.shard_sizes = dict(sorted(sizes.items()))
    return radii


def _fold_radii(routing: ShardRouting, counts: list) -> _Radii:
    """Per-(shard, ball) maxima -> each shard's radius and its balls' radii."""
    radius: dict[int, float] = {}
    balls: dict[int, list[float]] = {}
    for r in counts:
        shard = int(r["shard"])
        radius[shard] = max(radius.get(shard, -math.inf), float(r[RADIUS]))
        subs = routing.subs_of(shard).tolist()
        mine = balls.setdefault(shard, [-math.inf] * len(subs))
        mine[subs.index(int(r["sub"]))] = float(r[SUB_RADII])
    return radius, balls


#: Columns of a shard's radius and its balls' radii (k-means partitioning); per row of the
#: distributed measurement, the row's distance to its shard's centroid and to its ball's.
RADIUS = "radius"
SUB_RADII = "sub_radii"
_Radii = tuple[dict[int, float], dict[int, list[float]]]
_DISTANCE_SCHEMA = T.StructType(
    [
        T.StructField("shard", T.IntegerType(), False),
        T.StructField("sub", T.IntegerType(), False),
        T.StructField("id", T.LongType(), True),
        T.StructField(RADIUS, T.DoubleType(), False),
        T.StructField(SUB_RADII, T.DoubleType(), False),
    ]
)


def _distance_fn(
    routing: ShardRouting, n_features: int
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """mapInArrow function: each training row's distances to its centroid and its ball."""

    def measure(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            shard = batch.column("shard").to_numpy(zero_copy_only=False)
            features, _ = list_matrix(batch.column("features"), n_features, np.float32)
            to_centroid, ball, to_ball = routing.row_distances(shard, features)
            yield pa.RecordBatch.from_arrays(
                [batch.column("shard"), pa.array(ball), batch.column("id")]
                + [pa.array(to_centroid), pa.array(to_ball)],
                names=["shard", "sub", "id", RADIUS, SUB_RADII],
            )

    return measure


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
    # Balanced k-means caps shards at about 1.5 times the mean.
    skew = 1.5 if spec.partitioning == "kmeans" else _UNEVEN_SHARDS
    rows_per_shard = math.ceil(skew * n_rows / spec.num_shards)
    per_shard = kind_cls.estimate_bytes(rows_per_shard, n_features, params)
    if per_shard > spec.max_shard_bytes:
        per_row = max(1.0, per_shard / max(1, rows_per_shard))
        rows_that_fit = max(1, int(spec.max_shard_bytes // per_row))
        needed = math.ceil(skew * n_rows / rows_that_fit)
        size_params = " or ".join(f"a smaller {name}" for name in kind_cls.size_params)
        raise InvalidInputError(
            f"An {kind_cls.kind.upper()} shard would take about {per_shard / 2**20:.0f} MiB "
            f"({rows_per_shard} rows x about {per_row:.0f} bytes for {n_features} features), "
            f"over maxShardBytes={spec.max_shard_bytes} "
            f"({spec.max_shard_bytes / 2**20:.0f} MiB). Use more shards (numShards >= "
            f"{needed}), {size_params}, or raise maxShardBytes if the Python workers have the "
            "memory. An index over maxBroadcastBytes is not broadcast: the shard-major "
            "path searches it shard by shard."
        )
    return kind_cls.estimate_bytes(n_rows, n_features, params)


#: Spark's limit on one row (a Java byte array); a built shard is one row of binary cells.
MAX_ROW_BYTES = (1 << 31) - 1


def blob_row_bytes(
    kind_cls: type[Shard], params: dict, n_rows: int, n_features: int, num_shards: int
) -> int:
    """Bytes of the largest built shard's row: its exact rows plus the kind's payload."""
    rows = math.ceil(_UNEVEN_SHARDS * n_rows / num_shards)
    payload = 0 if kind_cls is ExactShard else kind_cls.estimate_bytes(rows, n_features, params)
    return ExactShard.estimate_bytes(rows, n_features, {}) + payload


def check_blob_row(
    kind_cls: type[Shard], params: dict, n_rows: int, n_features: int, num_shards: int
) -> None:
    """Fail before building when a built shard's row would pass :data:`MAX_ROW_BYTES`."""
    row = blob_row_bytes(kind_cls, params, n_rows, n_features, num_shards)
    if row <= MAX_ROW_BYTES:
        return
    needed = math.ceil(num_shards * row / MAX_ROW_BYTES)
    raise InvalidInputError(
        f"A built {kind_cls.kind.upper()} shard would be one Spark row of about "
        f"{row / 2**20:.0f} MiB ({math.ceil(_UNEVEN_SHARDS * n_rows / num_shards)} rows of "
        f"{n_features} features, with ids, labels and the kind's payload), over Spark's "
        f"2 GiB limit on a row. Use more shards (numShards >= {needed})."
    )


def _shard_blobs(
    rows: DataFrame,
    has_labels: bool,
    kind: str,
    params: dict,
    num_shards: int,
    routing: ShardRouting | None = None,
) -> DataFrame:
    """One row per shard, built on the executors, each shard in a task of its own.

    Grouping by shard alone hashes shard numbers into partitions, and shards that share a
    partition are built one after the other (HNSW builds take long). So the rows are hash
    partitioned on a key chosen per shard to land in partition ``shard``
    (:func:`shard_partition_keys`), which the grouping reuses without a second shuffle.
    With ``routing`` (k-means partitioning) each task also measures its shard's radii.
    """

    def build(table: pa.Table) -> pa.Table:
        maybe_fail("build")
        timer = TaskTimer("build")
        timer.count(table.num_rows)
        with timer.stage("build"):
            out = build_blob_table(table, has_labels, kind, params)
            if routing is not None:
                shard = int(table.column("shard")[0].as_py())
                features = np.frombuffer(out.column("features")[0].as_py(), dtype=np.float32)
                radius, balls = routing.measure(shard, features.reshape(table.num_rows, -1))
                out = out.append_column(RADIUS, pa.array([radius], type=pa.float64()))
                out = out.append_column(SUB_RADII, pa.array([balls], LIST_F64))
        timer.flush()
        return out

    keyed = with_partition_key(rows, num_shards).repartition(num_shards, PARTITION_KEY)
    schema = SHARD_BLOB_SCHEMA
    if routing is not None:
        schema = T.StructType(
            [
                *schema.fields,
                T.StructField(RADIUS, T.DoubleType(), False),
                T.StructField(SUB_RADII, T.ArrayType(T.DoubleType(), False), False),
            ]
        )
    return keyed.groupBy(PARTITION_KEY, "shard").applyInArrow(build, schema)
