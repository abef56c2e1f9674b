"""The size and limit rules of an index: what it weighs, where it is stored, which kind is built.

Every number a fit checks before building lives here: the bytes a search broadcasts and
where the index is kept (:func:`choose_storage`, the one place that rule lives), the shard
count ``numShards=None`` gives, ``algorithm="auto"``'s cost rule, ``maxShardBytes`` and
Spark's 2 GiB limit on one built shard's row.  ``scripts/scale_model.py`` computes its
tables from the same functions.
"""

from __future__ import annotations

import math
from typing import Any

from knnspark import classic
from knnspark.classic import is_connect
from knnspark.errors import InvalidInputError
from knnspark.kernels.distances import METRICS
from knnspark.kernels.exact import ExactShard
from knnspark.kernels.hnsw import HnswShard
from knnspark.kernels.kinds import shard_kind
from knnspark.kernels.shard import Shard

__all__ = [
    "CONNECT_MAX_DEFAULT_SHARDS",
    "CONNECT_SHIPPED_BYTES",
    "EXACT_KIND",
    "MAX_ROW_BYTES",
    "SHARD_SKEW",
    "blob_row_bytes",
    "broadcast_bytes",
    "check_blob_row",
    "check_shard_memory",
    "choose_algorithm",
    "choose_storage",
    "default_num_shards",
    "index_size_bytes",
    "largest_shard_rows",
    "metric_message",
]

#: The kind every index keeps besides its own: its rows as exact blocks, so any model
#: can be searched exactly (``algorithm='brute'`` on a fitted model).
EXACT_KIND = ExactShard.kind

#: The largest shard over the mean shard that every size rule assumes, by ``partitioning``:
#: hash sharding is uneven by chance (20% above the mean); balanced k-means caps its shards
#: at ``kernels.kmeans.CAP_RATIO`` (1.25) of the mean on its sample, about 1.5 on all the rows.
SHARD_SKEW = {"hash": 1.2, "kmeans": 1.5}

# Exact search uses BLAS, which evaluates a distance about this many times
# faster than HNSW's scattered memory reads; see choose_algorithm.
_BLAS_ADVANTAGE = 10


def largest_shard_rows(n_rows: int, num_shards: int, partitioning: str) -> int:
    """Rows of the largest shard the size rules plan for (:data:`SHARD_SKEW` times the mean).

    Examples
    --------
    >>> largest_shard_rows(1_000_000, 16, "hash"), largest_shard_rows(1_000_000, 16, "kmeans")
    (75000, 93750)
    """
    return math.ceil(SHARD_SKEW[partitioning] * int(n_rows) / int(num_shards))


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


def metric_message(kind: str, metric: str) -> str:
    cls = shard_kind(kind)
    served = [m for m in METRICS if cls.supports_metric(m)]
    others = [m for m in METRICS if m not in served]
    listed = ", ".join(others[:-1]) + " and " + others[-1] if len(others) > 1 else others[0]
    return (
        f"Param metric {metric!r} is not supported by algorithm={kind!r}, which supports "
        f"{', '.join(served)}; the metrics {listed} need algorithm={EXACT_KIND!r}."
    )


def check_shard_memory(
    kind_cls: type[Shard],
    params: dict,
    n_rows: int,
    n_features: int,
    *,
    num_shards: int,
    partitioning: str,
    max_shard_bytes: int,
) -> int:
    """Fail before building when a shard would not fit ``maxShardBytes``.

    Returns the estimated payload bytes of the whole index (0 for kinds whose shards are
    the exact rows themselves).
    """
    if not kind_cls.max_shard_bytes_applies:
        return 0
    skew = SHARD_SKEW[partitioning]
    rows_per_shard = largest_shard_rows(n_rows, num_shards, partitioning)
    per_shard = kind_cls.estimate_bytes(rows_per_shard, n_features, params)
    if per_shard > max_shard_bytes:
        per_row = max(1.0, per_shard / max(1, rows_per_shard))
        rows_that_fit = max(1, int(max_shard_bytes // per_row))
        needed = math.ceil(skew * n_rows / rows_that_fit)
        size_params = " or ".join(f"a smaller {name}" for name in kind_cls.size_params)
        raise InvalidInputError(
            f"An {kind_cls.kind.upper()} shard would take about {per_shard / 2**20:.0f} MiB "
            f"({rows_per_shard} rows x about {per_row:.0f} bytes for {n_features} features), "
            f"over maxShardBytes={max_shard_bytes} "
            f"({max_shard_bytes / 2**20:.0f} MiB). Use more shards (numShards >= "
            f"{needed}), {size_params}, or raise maxShardBytes if the Python workers have the "
            "memory. An index over maxBroadcastBytes is not broadcast: the shard-major "
            "path searches it shard by shard."
        )
    return kind_cls.estimate_bytes(n_rows, n_features, params)


#: Spark's limit on one row (a Java byte array); a built shard is one row of binary cells.
MAX_ROW_BYTES = (1 << 31) - 1


def blob_row_bytes(
    kind_cls: type[Shard],
    params: dict,
    n_rows: int,
    n_features: int,
    num_shards: int,
    *,
    partitioning: str,
) -> int:
    """Bytes of the largest built shard's row: its exact rows plus the kind's payload."""
    rows = largest_shard_rows(n_rows, num_shards, partitioning)
    payload = 0 if kind_cls is ExactShard else kind_cls.estimate_bytes(rows, n_features, params)
    return ExactShard.estimate_bytes(rows, n_features, {}) + payload


def check_blob_row(
    kind_cls: type[Shard],
    params: dict,
    n_rows: int,
    n_features: int,
    num_shards: int,
    *,
    partitioning: str,
) -> None:
    """Fail before building when a built shard's row would pass :data:`MAX_ROW_BYTES`."""
    row = blob_row_bytes(
        kind_cls, params, n_rows, n_features, num_shards, partitioning=partitioning
    )
    if row <= MAX_ROW_BYTES:
        return
    needed = math.ceil(num_shards * row / MAX_ROW_BYTES)
    raise InvalidInputError(
        f"A built {kind_cls.kind.upper()} shard would be one Spark row of about "
        f"{row / 2**20:.0f} MiB ({largest_shard_rows(n_rows, num_shards, partitioning)} rows of "
        f"{n_features} features, with ids, labels and the kind's payload), over Spark's "
        f"2 GiB limit on a row. Use more shards (numShards >= {needed})."
    )
