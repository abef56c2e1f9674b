"""A shard that answers any search at once: the Spark floor of knnspark's own transform.

:func:`null_model` swaps a fitted model's shards for :class:`NullShard` s holding the same
ids and labels, so its ``transform`` runs every step of a real search (the shards reaching
the workers, the queries decoded into numpy, the partial lists merged, votes encoded,
the sink) except the search itself. This module imports numpy only: the Python workers
load it by reference when they unpickle the shards (the repository root is on their
``PYTHONPATH``, see :func:`.sparkjobs.local_session`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

__all__ = ["NullShard", "null_model"]


@dataclass
class NullShard:
    """The first ``k`` rows of a shard at distance 0 for every query (no distance computed)."""

    kind: ClassVar[str] = "null"
    ids: np.ndarray
    labels: np.ndarray | None

    @property
    def n_rows(self) -> int:
        return int(self.ids.shape[0])

    @property
    def size_bytes(self) -> int:
        return int(self.ids.nbytes + (0 if self.labels is None else self.labels.nbytes))

    def search(self, queries: np.ndarray, k: int, options: Any) -> tuple[np.ndarray, np.ndarray]:
        keep = min(k, self.n_rows)
        positions = np.broadcast_to(np.arange(keep, dtype=np.int64), (queries.shape[0], keep))
        return np.zeros((queries.shape[0], keep)), positions


def null_model(model: Any) -> Any:
    """``model`` with each searchable kind's shards replaced by null shards, before any search.

    Reaches into the fitted index (the benchmark's business only): the first ``transform``
    then ships these shards the way it would have shipped the real ones.
    """
    if model._broadcast is not None:
        raise RuntimeError("null_model needs a model that has not been searched yet")
    shards = model.index.shards
    for kind in shards:
        shards[kind] = [NullShard(np.asarray(s.ids), s.labels) for s in shards[kind]]
    return model
