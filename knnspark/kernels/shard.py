"""The one interface every index kind implements, and the table of kinds.

A shard is a slice of the training rows made searchable: it builds from rows, hands
out its parts as plain buffers (ids, labels, features, and a kind-specific payload
such as an hnswlib graph file), loads back from those parts, searches a block of
queries for k, and reports its size.  Everything above it (broadcast, the
distributed reduce, persistence, the codec in :mod:`knnspark.shard_codec`) talks to
this interface and to :data:`knnspark.kernels.kinds.SHARD_KINDS`, never to a
particular kind.  A new index kind is one module implementing :class:`Shard` plus one
entry in that table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

__all__ = ["SearchOptions", "Shard", "ShardParts"]


@dataclass(frozen=True)
class SearchOptions:
    """Search-time settings a shard may read (each kind reads what it needs)."""

    metric: str = "euclidean"
    p: float = 2.0
    ef: int = 64
    #: Threads one search may use: the task's cores (``spark.task.cpus``), 1 by default.
    threads: int = 1


@dataclass
class ShardParts:
    """A shard as plain buffers: what the codec stores and ships.

    ``features`` is None for kinds whose payload holds the vectors (HNSW).
    """

    ids: np.ndarray
    labels: np.ndarray | None
    n_features: int
    features: np.ndarray | None = None
    payload: bytes | None = None


class Shard(Protocol):
    """A searchable shard of training rows."""

    #: The value of the ``algorithm`` param that builds this kind.
    kind: ClassVar[str]
    #: Whether the kind's parts include the float32 features (else the payload has them).
    stores_features: ClassVar[bool]
    #: Names of the estimator Params the kind's build reads (see ``build_params``).
    param_names: ClassVar[tuple[str, ...]]
    #: Params that grow a shard, named when one would exceed ``maxShardBytes``.
    size_params: ClassVar[tuple[str, ...]]
    #: Whether ``fit`` checks the kind's estimated shard size against ``maxShardBytes``.
    max_shard_bytes_applies: ClassVar[bool]
    ids: np.ndarray
    labels: np.ndarray | None

    @property
    def n_rows(self) -> int: ...

    @property
    def size_bytes(self) -> int: ...

    @classmethod
    def supports_metric(cls, metric: str) -> bool: ...

    @classmethod
    def build_params(cls, metric: str, values: dict[str, Any]) -> dict[str, Any]:
        """Build params (saved with the model) from the estimator's Param values by name."""
        ...

    @classmethod
    def estimate_bytes(cls, n_rows: int, n_features: int, params: dict[str, Any]) -> int: ...

    @classmethod
    def build(
        cls, features: np.ndarray, ids: np.ndarray, labels: np.ndarray | None, params: dict
    ) -> Shard: ...

    @classmethod
    def load(cls, parts: ShardParts, params: dict[str, Any], key: tuple[str, int]) -> Shard: ...

    def parts(self) -> ShardParts: ...

    def search(
        self, queries: np.ndarray, k: int, options: SearchOptions
    ) -> tuple[np.ndarray, np.ndarray]: ...
