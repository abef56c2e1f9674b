"""Where the shards of a distributed index live: one shard per Spark partition.

Spark hash partitions an ``int`` key with Murmur3; :func:`shard_partition_keys` picks, for
each shard, a key that lands in the partition of the same number, so that grouping by that key
builds each shard in a task of its own (fit) and a persisted index keeps one shard per
partition, which the shard-major search's ``cogroup`` reuses without moving it.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

__all__ = [
    "PARTITION_KEY",
    "shard_major_layout",
    "shard_partition_keys",
    "spark_hash_partition",
    "with_partition_key",
]

#: The column holding a row's partition key (see :func:`shard_partition_keys`).
PARTITION_KEY = "__knnspark_partition_key"


def shard_major_layout(data: DataFrame, partitions: int) -> DataFrame:
    """``data`` (a ``shard`` column) placed one shard per partition, for the shard-major path.

    Hash partitioned on :data:`PARTITION_KEY`, the key :func:`shard_partition_keys` picks
    to land shard ``s`` in partition ``s``, and sorted by it. Persisted, the DataFrame keeps
    that partitioning and order in its plan, so the search's ``cogroup`` on the key
    neither shuffles nor sorts this side again: the index stays where it is.
    """
    keyed = with_partition_key(data, partitions).repartition(partitions, PARTITION_KEY)
    return keyed.sortWithinPartitions(PARTITION_KEY)


def with_partition_key(data: DataFrame, partitions: int) -> DataFrame:
    """``data`` with :data:`PARTITION_KEY`: the key that lands its ``shard`` in that partition."""
    keys = F.array(*[F.lit(k) for k in shard_partition_keys(partitions)])
    return data.withColumn(PARTITION_KEY, F.element_at(keys, F.col("shard") + 1))


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
