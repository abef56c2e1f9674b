"""Params of how ``fit`` builds the index: shards, their partitioning and HNSW graphs."""

from __future__ import annotations

from typing import Any

from pyspark.ml.param import Param, Params

from knnspark import converters as conv

__all__ = ["DEFAULT_MAX_BROADCAST_BYTES", "DEFAULT_MAX_SHARD_BYTES", "PARTITIONINGS"]

#: Default of ``maxBroadcastBytes``: 256 MiB of training features, ids, labels and graphs.
DEFAULT_MAX_BROADCAST_BYTES = 256 * 1024 * 1024
#: Valid values of ``partitioning``: how ``fit`` assigns training rows to shards.
PARTITIONINGS = ("hash", "kmeans")
#: Default of ``maxShardBytes``: 1 GiB of HNSW graph per shard.
DEFAULT_MAX_SHARD_BYTES = 1024 * 1024 * 1024


class _ShardingParams(Params):
    """How many shards, how rows reach them, how queries reach them."""

    numShards: Param[int] = Param(
        Params._dummy(),
        "numShards",
        "number of training shards, an integer >= 1, or None for the cluster's default "
        "parallelism (on Spark Connect: spark.default.parallelism if set, else "
        "spark.sql.shuffle.partitions capped at 32)",
        typeConverter=conv.int_at_least("numShards", 1, optional=True),
    )
    maxBroadcastBytes: Param[int] = Param(
        Params._dummy(),
        "maxBroadcastBytes",
        "largest training set (features, ids and labels, in bytes, an integer >= 0) that is "
        "broadcast to every executor; a larger one is searched by the shard-major path. "
        f"Default {DEFAULT_MAX_BROADCAST_BYTES} (256 MiB)",
        typeConverter=conv.int_at_least("maxBroadcastBytes", 0),
    )
    partitioning: Param[str] = Param(
        Params._dummy(),
        "partitioning",
        "how fit assigns training rows to shards: 'hash' (by id, even sizes) or 'kmeans' "
        "(balanced k-means on a sample: each shard holds nearby rows, so a search can skip "
        "shards, see nprobe)",
        typeConverter=conv.one_of("partitioning", PARTITIONINGS),
    )
    nprobe: Param[Any] = Param(
        Params._dummy(),
        "nprobe",
        "partitioning='kmeans' only: each query searches its nprobe nearest shards "
        "(approximate), an integer >= 1 and <= numShards; None (default) searches exactly, "
        "skipping the shards that cannot hold a neighbor (true metrics; other metrics visit "
        "every shard)",
        typeConverter=conv.int_at_least("nprobe", 1, optional=True),
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._setDefault(
            numShards=None,
            maxBroadcastBytes=DEFAULT_MAX_BROADCAST_BYTES,
            partitioning="hash",
            nprobe=None,
        )

    def getNumShards(self) -> int | None:
        return self.getOrDefault(self.numShards)

    def setNumShards(self, value: int | None) -> Any:
        return self._set(numShards=value)

    def getMaxBroadcastBytes(self) -> int:
        return self.getOrDefault(self.maxBroadcastBytes)

    def setMaxBroadcastBytes(self, value: int) -> Any:
        return self._set(maxBroadcastBytes=value)

    def getPartitioning(self) -> str:
        return self.getOrDefault(self.partitioning)

    def setPartitioning(self, value: str) -> Any:
        return self._set(partitioning=value)

    def getNprobe(self) -> int | None:
        return self.getOrDefault(self.nprobe)

    def setNprobe(self, value: int | None) -> Any:
        return self._set(nprobe=value)


class _HNSWParams(Params):
    """The HNSW graphs' settings: ``M``, ``efConstruction``, ``ef``, ``maxShardBytes``."""

    M: Param[int] = Param(
        Params._dummy(),
        "M",
        "HNSW: links per node, an integer >= 2 (hnswlib's M); more links, better recall, "
        "more memory",
        typeConverter=conv.int_at_least("M", 2),
    )
    efConstruction: Param[int] = Param(
        Params._dummy(),
        "efConstruction",
        "HNSW: search breadth while building, an integer >= 1",
        typeConverter=conv.int_at_least("efConstruction", 1),
    )
    ef: Param[int] = Param(
        Params._dummy(),
        "ef",
        "HNSW: search breadth per shard, an integer >= 1 (max(ef, k) is used); can be changed "
        "on a fitted model without rebuilding",
        typeConverter=conv.int_at_least("ef", 1),
    )
    maxShardBytes: Param[int] = Param(
        Params._dummy(),
        "maxShardBytes",
        "HNSW: largest graph one shard may take, in bytes (an integer >= 1); fit fails early "
        f"when a shard would not fit. Default {DEFAULT_MAX_SHARD_BYTES} (1 GiB)",
        typeConverter=conv.int_at_least("maxShardBytes", 1),
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._setDefault(M=16, efConstruction=200, ef=64, maxShardBytes=DEFAULT_MAX_SHARD_BYTES)

    def getM(self) -> int:
        return self.getOrDefault(self.M)

    def setM(self, value: int) -> Any:
        return self._set(M=value)

    def getEfConstruction(self) -> int:
        return self.getOrDefault(self.efConstruction)

    def setEfConstruction(self, value: int) -> Any:
        return self._set(efConstruction=value)

    def getEf(self) -> int:
        return self.getOrDefault(self.ef)

    def setEf(self, value: int) -> Any:
        return self._set(ef=value)

    def getMaxShardBytes(self) -> int:
        return self.getOrDefault(self.maxShardBytes)

    def setMaxShardBytes(self, value: int) -> Any:
        return self._set(maxShardBytes=value)
