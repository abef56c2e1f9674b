"""The table of index kinds: the ``algorithm`` value -> the :class:`Shard` class building it."""

from __future__ import annotations

from knnspark.kernels.exact import ExactShard
from knnspark.kernels.hnsw import HnswShard
from knnspark.kernels.shard import Shard

__all__ = ["SHARD_KINDS", "shard_kind"]

#: Every index kind, by the ``algorithm`` value that builds it.
SHARD_KINDS: dict[str, type[Shard]] = {cls.kind: cls for cls in (ExactShard, HnswShard)}


def shard_kind(name: str) -> type[Shard]:
    """The shard class of an index kind; a ValueError naming the known kinds otherwise."""
    try:
        return SHARD_KINDS[name]
    except KeyError:
        raise ValueError(
            f"Unknown index kind {name!r}; expected one of {', '.join(map(repr, SHARD_KINDS))}"
        ) from None
