"""Fit-time work: choose the algorithm and build every shard on the executors.

The training rows (see :mod:`knnspark.training`) are grouped by shard and
each group is built in its own task (``groupBy(shard).applyInArrow``): an
exact block (sorted float32 rows) and, for HNSW, a graph.  An index that
fits ``maxBroadcastBytes`` comes back to the driver and is broadcast at
search time; a larger one stays in Spark as persisted DataFrames that the
distributed-reduce path joins against.
"""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from knnspark._faults import maybe_fail
from knnspark.errors import InvalidInputError
from knnspark.kernels.exact import ExactShard
from knnspark.kernels.hnsw import HNSW_METRICS, HnswShard, build_hnsw, estimate_hnsw_bytes
from knnspark.preprocessing import Preprocessing
from knnspark.training import prepare_training

__all__ = [
    "SHARD_BLOB_SCHEMA",
    "SHARD_ROWS_SCHEMA",
    "IndexSpec",
    "TrainingIndex",
    "build_index",
    "choose_algorithm",
    "estimate_index_bytes",
]

logger = logging.getLogger("knnspark")

#: Training rows (also the Parquet layout of ``data/`` in saved models).
SHARD_ROWS_SCHEMA = T.StructType(
    [
        T.StructField("shard", T.IntegerType(), False),
        T.StructField("id", T.LongType(), False),
        T.StructField("features", T.ArrayType(T.FloatType(), False), False),
        T.StructField("label", T.DoubleType(), True),
    ]
)

#: One built shard, as returned by the executors (numpy buffers and hnswlib's
#: file format, never pickles); also the Parquet layout of ``index/``.
SHARD_BLOB_SCHEMA = T.StructType(
    [
        T.StructField("shard", T.IntegerType(), False),
        T.StructField("n_rows", T.LongType(), False),
        T.StructField("n_features", T.IntegerType(), False),
        T.StructField("ids", T.BinaryType(), False),
        T.StructField("features", T.BinaryType(), True),
        T.StructField("labels", T.BinaryType(), True),
        T.StructField("graph", T.BinaryType(), True),
    ]
)

# Exact search uses BLAS, which evaluates a distance about this many times
# faster than HNSW's scattered memory reads; see choose_algorithm.
_BLAS_ADVANTAGE = 10


def estimate_index_bytes(n_rows: int, n_features: int) -> int:
    """Bytes an exact index holds: float32 features, int64 ids, float64 labels."""
    return int(n_rows) * (4 * int(n_features) + 16)


@dataclass(frozen=True)
class IndexSpec:
    """Everything ``fit`` needs to build an index, read from the estimator's params."""

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
    m: int = 16
    ef_construction: int = 200
    ef: int = 64
    seed: int = 0
    max_shard_bytes: int = 1 << 30
    impute_strategy: str | None = None
    standardization: str = "none"


@dataclass
class TrainingIndex:
    """What a fitted model knows about its training data.

    Broadcast storage keeps ``shards`` (exact blocks) and, for HNSW,
    ``graphs`` on the driver.  Distributed storage keeps ``shard_rows`` (a
    DataFrame with :data:`SHARD_ROWS_SCHEMA`) and, for HNSW, ``shard_blobs``
    (:data:`SHARD_BLOB_SCHEMA`).
    """

    n_features: int
    n_rows: int
    shard_sizes: dict[int, int]
    classes: np.ndarray | None
    generated_ids: bool
    class_counts: np.ndarray | None = None
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    algorithm: str = "brute"
    token: str = ""
    hnsw_params: dict | None = None
    graph_bytes: int = 0
    shards: list[ExactShard] | None = None
    graphs: list[HnswShard] | None = None
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
        """Bytes of the searchable index: the exact block, plus the HNSW graphs."""
        return estimate_index_bytes(self.n_rows, self.n_features) + self.graph_bytes


def choose_algorithm(
    requested: str, metric: str, n_rows: int, num_shards: int, ef_construction: int, ef: int, m: int
) -> str:
    """The algorithm ``fit`` uses.  ``"auto"`` weighs build cost against search savings.

    Exact search costs about ``n_rows`` distance evaluations per query (done by
    BLAS, ``_BLAS_ADVANTAGE`` = 10 times cheaper each).  HNSW costs about
    ``ef_construction`` evaluations per row to build and ``ef * M`` per query
    and shard to search.  Assuming a model scores at least as many rows as it
    was trained on, HNSW pays off when
    ``n_rows > 10 * (ef_construction + num_shards * ef * M)`` — with the
    defaults and 2 shards, from about 22,500 training rows.  Metrics HNSW
    cannot serve always use exact search.
    """
    if requested != "auto":
        return requested
    if metric not in HNSW_METRICS:
        return "brute"
    threshold = _BLAS_ADVANTAGE * (ef_construction + num_shards * ef * m)
    return "hnsw" if n_rows > threshold else "brute"


def build_index(df: DataFrame, spec: IndexSpec) -> TrainingIndex:
    """Validate, number and shard the training data, then build every shard."""
    if spec.algorithm == "hnsw" and spec.metric not in HNSW_METRICS:
        raise ValueError(_hnsw_metric_message(spec.metric))
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
    )
    n_rows, n_features = prepared.n_rows, prepared.n_features
    algorithm = choose_algorithm(
        spec.algorithm, spec.metric, n_rows, spec.num_shards, spec.ef_construction, spec.ef, spec.m
    )
    graph_bytes = 0
    if algorithm == "hnsw":
        graph_bytes = _check_shard_memory(spec, n_rows, n_features)
    common = dict(
        n_features=n_features,
        n_rows=n_rows,
        classes=prepared.classes,
        class_counts=prepared.class_counts,
        preprocessing=prepared.preprocessing,
        generated_ids=spec.id_col is None,
        algorithm=algorithm,
        token=uuid.uuid4().hex,
        hnsw_params=(
            {
                "M": spec.m,
                "efConstruction": spec.ef_construction,
                "seed": spec.seed,
                "metric": spec.metric,
            }
            if algorithm == "hnsw"
            else None
        ),
    )
    has_labels = spec.label_col is not None
    build_graph = _graph_settings(spec) if algorithm == "hnsw" else None
    blobs = _shard_blobs(prepared.rows, has_labels, build_graph, spec.num_shards)
    total_bytes = estimate_index_bytes(n_rows, n_features) + graph_bytes
    if total_bytes <= spec.max_broadcast_bytes:
        # Through Arrow: the buffers arrive without a Row object per field.
        collected = blobs.toArrow().sort_by("shard").to_pylist()
        sizes = {int(b["shard"]): int(b["n_rows"]) for b in collected}
        index = TrainingIndex(
            shard_sizes=sizes, shards=[shard_from_blob(b) for b in collected], **common
        )
        if algorithm == "hnsw":
            index.graphs = [graph_from_blob(b, spec.metric, index.token) for b in collected]
            index.graph_bytes = sum(len(b["graph"]) for b in collected)
    else:
        shard_rows = prepared.rows.persist(StorageLevel.MEMORY_AND_DISK)
        shard_blobs = None
        if algorithm == "hnsw":
            shard_blobs = blobs.drop("features").persist(StorageLevel.MEMORY_AND_DISK)
            built = shard_blobs.select(
                "shard", "n_rows", F.length("graph").alias("graph_bytes")
            ).collect()
            sizes = {int(r["shard"]): int(r["n_rows"]) for r in built}
            common["graph_bytes"] = sum(int(r["graph_bytes"]) for r in built)
        else:
            counts = shard_rows.groupBy("shard").count().collect()
            sizes = {int(r["shard"]): int(r["count"]) for r in counts}
        sizes = dict(sorted(sizes.items()))
        index = TrainingIndex(
            shard_sizes=sizes, shard_rows=shard_rows, shard_blobs=shard_blobs, **common
        )
    logger.info(
        "indexed %d training rows x %d features in %d shards (%s, %s, %.1f MiB)",
        n_rows,
        n_features,
        len(sizes),
        algorithm,
        index.storage,
        index.size_bytes / 2**20,
    )
    return index


def _hnsw_metric_message(metric: str) -> str:
    return (
        f"Param metric {metric!r} is not supported by algorithm='hnsw', which supports "
        f"{', '.join(HNSW_METRICS)}; the metrics manhattan, chebyshev, minkowski and hamming "
        "need algorithm='brute'."
    )


def _check_shard_memory(spec: IndexSpec, n_rows: int, n_features: int) -> int:
    """Fail before building when a shard's graph would not fit ``maxShardBytes``."""
    # Hash sharding is uneven; allow the largest shard 20% above the mean.
    rows_per_shard = math.ceil(1.2 * n_rows / spec.num_shards)
    per_shard = estimate_hnsw_bytes(rows_per_shard, n_features, spec.m)
    if per_shard > spec.max_shard_bytes:
        rows_that_fit = max(1, (spec.max_shard_bytes - 1024) // (4 * n_features + 8 * spec.m + 24))
        needed = math.ceil(1.2 * n_rows / rows_that_fit)
        raise InvalidInputError(
            f"An HNSW shard would take about {per_shard / 2**20:.0f} MiB "
            f"({rows_per_shard} rows x (4 x {n_features} features + 8 x M={spec.m} + 24) "
            f"bytes), over maxShardBytes={spec.max_shard_bytes} "
            f"({spec.max_shard_bytes / 2**20:.0f} MiB). Use more shards (numShards >= "
            f"{needed}), a smaller M, or raise maxShardBytes if the Python workers have the "
            "memory. An index over maxBroadcastBytes is not broadcast: the distributed-reduce "
            "path searches it shard by shard."
        )
    return estimate_hnsw_bytes(n_rows, n_features, spec.m)


def _graph_settings(spec: IndexSpec) -> dict:
    return {
        "metric": spec.metric,
        "m": spec.m,
        "ef_construction": spec.ef_construction,
        "seed": spec.seed,
    }


def _shard_blobs(
    rows: DataFrame, has_labels: bool, build_graph: dict | None, num_shards: int
) -> DataFrame:
    """One row per shard, built on the executors, each shard in a task of its own.

    Grouping by shard alone hashes shard numbers into partitions, and shards that share a
    partition are built one after the other (HNSW builds take long). So the rows are hash
    partitioned on a key chosen per shard to land in partition ``shard``
    (:func:`shard_partition_keys`), which the grouping reuses without a second shuffle.
    """

    def build(table: pa.Table) -> pa.Table:
        maybe_fail("build")
        return shard_blob_table(table, has_labels, build_graph)

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


def shard_blob_table(table: pa.Table, has_labels: bool, build_graph: dict | None) -> pa.Table:
    """Partition function: the rows of one shard -> one row of numpy buffers (and graph)."""
    ids = table.column("id").to_numpy()
    order = np.argsort(ids, kind="stable")
    lengths = pc.list_value_length(table.column("features")).to_numpy()
    n_features = int(lengths[0]) if len(lengths) else 0
    flat = table.column("features").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    features = np.ascontiguousarray(flat.astype(np.float32).reshape(len(ids), n_features)[order])
    labels = None
    if has_labels:
        label_values = table.column("label").to_numpy(zero_copy_only=False)
        labels = label_values[order].astype(np.float64).tobytes()
    graph = build_hnsw(features, **build_graph) if build_graph else None
    return pa.table(
        {
            "shard": pa.array([table.column("shard")[0].as_py()], type=pa.int32()),
            "n_rows": pa.array([len(ids)], type=pa.int64()),
            "n_features": pa.array([n_features], type=pa.int32()),
            "ids": pa.array([ids[order].astype(np.int64).tobytes()], type=pa.binary()),
            "features": pa.array([features.tobytes()], type=pa.binary()),
            "labels": pa.array([labels], type=pa.binary()),
            "graph": pa.array([graph], type=pa.binary()),
        }
    )


def shard_from_blob(blob: object) -> ExactShard:
    """Rebuild an :class:`ExactShard` from a :data:`SHARD_BLOB_SCHEMA` row."""
    n_rows, n_features = int(blob["n_rows"]), int(blob["n_features"])
    features = np.frombuffer(blob["features"], dtype=np.float32).reshape(n_rows, n_features)
    labels = blob["labels"]
    return ExactShard(
        features=features,
        ids=np.frombuffer(blob["ids"], dtype=np.int64),
        labels=None if labels is None else np.frombuffer(labels, dtype=np.float64),
    )


def graph_from_blob(blob: object, metric: str, token: str) -> HnswShard:
    """Wrap a :data:`SHARD_BLOB_SCHEMA` row's graph (not deserialized until searched)."""
    labels = blob["labels"]
    return HnswShard(
        index_bytes=bytes(blob["graph"]),
        ids=np.frombuffer(blob["ids"], dtype=np.int64),
        labels=None if labels is None else np.frombuffer(labels, dtype=np.float64),
        n_features=int(blob["n_features"]),
        metric=metric,
        token=token,
        shard=int(blob["shard"]),
    )
