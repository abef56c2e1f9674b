"""Shards that travel inside the search function: the broadcast path on Spark Connect.

Spark Connect has no broadcast variables.  An index small enough
(:data:`knnspark.sizing.CONNECT_SHIPPED_BYTES`, well below Connect's 128 MiB message limit)
is pickled once on the driver into the ``mapInArrow`` function itself; every task receives
those bytes, and each Python worker unpickles them once per model and kind, then keeps the
shards (and what they cache: GEMM norms, loaded HNSW graphs) for the next tasks, as a
broadcast variable's ``.value`` would.
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from typing import Any

__all__ = ["ShippedShards"]

#: Per-worker cache: (model id, kind) -> unpickled shards, most recently used last.
_LOADED: OrderedDict[tuple[str, str], Any] = OrderedDict()
#: How many indexes a worker keeps unpickled (a pipeline may search two models in a task).
_CACHE_ENTRIES = 2


class ShippedShards:
    """The shards of one kind of one fitted index, as pickled bytes with a broadcast's API.

    Parameters
    ----------
    model_id, kind : str
        Name the index and the kind searched; they key the per-worker cache.
    shards : list of Shard
        The shards, pickled here, once, on the driver.
    """

    def __init__(self, model_id: str, kind: str, shards: list[Any]) -> None:
        self.key = (model_id, kind)
        self.payload = pickle.dumps(shards, protocol=pickle.HIGHEST_PROTOCOL)

    @property
    def size_bytes(self) -> int:
        return len(self.payload)

    @property
    def value(self) -> Any:
        """The shards, unpickled on the first call in this process for this model and kind."""
        shards = _LOADED.get(self.key)
        if shards is None:
            shards = pickle.loads(self.payload)
            _LOADED[self.key] = shards
            while len(_LOADED) > _CACHE_ENTRIES:
                _LOADED.popitem(last=False)
        _LOADED.move_to_end(self.key)
        return shards
