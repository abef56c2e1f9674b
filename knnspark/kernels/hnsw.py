"""HNSW graphs (hnswlib) for approximate search over one shard.

Graphs are built single-threaded with a fixed seed and rows inserted in id
order, so the same shard gives byte-identical index files run after run
(hnswlib's multi-threaded inserts are not deterministic; knnspark's
parallelism comes from building shards in parallel tasks).  Indexes travel
as hnswlib's own file format, never as pickles, and each Python worker
deserializes a given index once and keeps it in :data:`_LOADED` (other models'
graphs are evicted past :data:`GRAPH_CACHE_BYTES`).
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar

import hnswlib
import numpy as np

from knnspark.kernels.distances import METRICS, get_metric, hnsw_metrics
from knnspark.kernels.exact import ExactShard, exact_search
from knnspark.kernels.shard import SearchOptions, ShardParts
from knnspark.kernels.topk import select_topk

__all__ = [
    "HNSW_METRICS",
    "HnswShard",
    "build_hnsw",
    "estimate_hnsw_bytes",
    "hnsw_params",
    "hnsw_search",
    "load_count",
]

#: Metrics HNSW supports: those with an hnswlib space in the metric table.
HNSW_METRICS = hnsw_metrics()
# hnswlib's "l2" space returns squared distances.
_FROM_SPACE = {"l2": lambda d: np.sqrt(np.maximum(d, 0.0))}

#: Bytes of deserialized graphs a Python worker keeps from models other than the one it
#: searches (least recently used go first); the environment variable
#: ``KNNSPARK_GRAPH_CACHE_BYTES`` (set on executors with
#: ``spark.executorEnv.KNNSPARK_GRAPH_CACHE_BYTES``) overrides it. The graphs of the model
#: being searched always stay, whatever their size.
GRAPH_CACHE_BYTES = int(os.environ.get("KNNSPARK_GRAPH_CACHE_BYTES", 4 << 30))

# Per-worker cache of deserialized graphs: (model id, shard) -> (hnswlib.Index, bytes), in order
# of last use; models fitted since the worker started share it, so it must evict.
_LOADED: OrderedDict[tuple[str, int], tuple[hnswlib.Index, int]] = OrderedDict()
_LOCK = threading.Lock()
_LOADS = {"count": 0}


def estimate_hnsw_bytes(n_rows: int, n_features: int, m: int) -> int:
    """Bytes of one shard's HNSW index, from hnswlib's layout.

    Per row: the vector (``4 * n_features``), level-0 links (``2 * M`` 4-byte
    ids plus a count), the 8-byte label, and on average ``1 / (M - 1)`` upper
    levels of ``M`` links each; ``24`` covers the counts, the upper-level
    pointers and that average.  Total: ``n_rows * (4 * n_features + 8 * M + 24)``
    plus a small header.
    """
    return int(n_rows) * (4 * int(n_features) + 8 * int(m) + 24) + 1024


def hnsw_params(metric: str, m: int, ef_construction: int, seed: int) -> dict[str, Any]:
    """The build params of an HNSW index, as saved in a model's metadata."""
    return {
        "M": int(m),
        "efConstruction": int(ef_construction),
        "seed": int(seed),
        "metric": metric,
    }


def build_hnsw(features: np.ndarray, metric: str, m: int, ef_construction: int, seed: int) -> bytes:
    """Build one shard's graph; row ``i`` gets label ``i`` (its position in the shard).

    Parameters
    ----------
    features : ndarray of shape (n_rows, n_features), float32, rows in id order
    metric : str
        A metric of :data:`HNSW_METRICS`.
    m, ef_construction, seed : int
        hnswlib's ``M``, ``ef_construction`` and ``random_seed``.

    Returns
    -------
    bytes
        The index in hnswlib's file format.
    """
    if metric not in HNSW_METRICS:
        raise ValueError(f"HNSW supports the metrics {HNSW_METRICS}; got {metric!r}")
    n_rows, n_features = features.shape
    index = hnswlib.Index(space=METRICS[metric].hnsw_space, dim=n_features)
    index.init_index(
        max_elements=max(1, n_rows), ef_construction=ef_construction, M=m, random_seed=seed
    )
    index.set_num_threads(1)
    if n_rows:
        index.add_items(np.ascontiguousarray(features, dtype=np.float32), np.arange(n_rows), 1)
    with tempfile.TemporaryDirectory(prefix="knnspark-hnsw-", dir=_scratch_dir()) as tmp:
        path = os.path.join(tmp, "index.bin")
        index.save_index(path)
        with open(path, "rb") as f:
            return f.read()


def _scratch_dir() -> str | None:
    """A memory-backed directory for graph files when there is one (Linux's /dev/shm).

    hnswlib reads and writes graphs only through files; on a busy local disk writing a
    100 MiB graph took 0.2-0.5 s of a first search, on tmpfs it is a memory copy.
    """
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


def _load(data: bytes | memoryview, metric: str, n_features: int, n_rows: int) -> hnswlib.Index:
    index = hnswlib.Index(space=METRICS[metric].hnsw_space, dim=n_features)
    with tempfile.TemporaryDirectory(prefix="knnspark-hnsw-", dir=_scratch_dir()) as tmp:
        path = os.path.join(tmp, "index.bin")
        with open(path, "wb") as f:
            f.write(data)
        index.load_index(path, max_elements=max(1, n_rows))
    index.set_num_threads(1)
    _LOADS["count"] += 1
    return index


def load_count() -> int:
    """How many graphs this process has deserialized (for tests of the cache)."""
    return _LOADS["count"]


@dataclass
class HnswShard:
    """One shard's HNSW graph with the ids and labels of its rows.

    ``model_id`` names the fitted model the graph belongs to; with ``shard`` it
    keys the per-worker cache.  The graph file holds the vectors, so the shard's
    parts carry no separate features.
    """

    kind: ClassVar[str] = "hnsw"
    stores_features: ClassVar[bool] = False
    param_names: ClassVar[tuple[str, ...]] = ("M", "efConstruction", "seed")
    size_params: ClassVar[tuple[str, ...]] = ("M",)
    max_shard_bytes_applies: ClassVar[bool] = True

    #: hnswlib's file; a read-only ``memoryview`` of the file a local session maps.
    index_bytes: bytes | memoryview
    ids: np.ndarray
    labels: np.ndarray | None
    n_features: int
    metric: str
    model_id: str
    shard: int

    @property
    def n_rows(self) -> int:
        return int(self.ids.shape[0])

    @property
    def size_bytes(self) -> int:
        """Bytes of the graph file (it holds the vectors and row labels)."""
        return len(self.index_bytes)

    # ---------------------------------------------------------------- Shard interface

    @classmethod
    def supports_metric(cls, metric: str) -> bool:
        return metric in HNSW_METRICS

    @classmethod
    def build_params(cls, metric: str, values: dict[str, Any]) -> dict[str, Any]:
        return hnsw_params(metric, values["M"], values["efConstruction"], values["seed"])

    @classmethod
    def estimate_bytes(cls, n_rows: int, n_features: int, params: dict[str, Any]) -> int:
        """Bytes of the graph file, see :func:`estimate_hnsw_bytes`."""
        return estimate_hnsw_bytes(n_rows, n_features, params["M"])

    @classmethod
    def build(
        cls, features: np.ndarray, ids: np.ndarray, labels: np.ndarray | None, params: dict
    ) -> HnswShard:
        """Build the graph of rows in id order; ``params`` as :func:`hnsw_params` makes them."""
        graph = build_hnsw(
            features, params["metric"], params["M"], params["efConstruction"], params["seed"]
        )
        return cls(graph, ids, labels, features.shape[1], params["metric"], "", -1)

    @classmethod
    def load(cls, parts: ShardParts, params: dict[str, Any], key: tuple[str, int]) -> HnswShard:
        """Wrap a stored graph; it is deserialized on first search, once per worker."""
        model_id, shard = key
        return cls(
            parts.payload, parts.ids, parts.labels, parts.n_features, params["metric"],
            model_id, shard,
        )  # fmt: skip

    def parts(self) -> ShardParts:
        return ShardParts(self.ids, self.labels, self.n_features, payload=self.index_bytes)

    def search(
        self, queries: np.ndarray, k: int, options: SearchOptions
    ) -> tuple[np.ndarray, np.ndarray]:
        return hnsw_search(self, queries, k, options.ef, options.threads)

    def graph(self) -> hnswlib.Index:
        """The deserialized graph, loaded once per process while it stays cached."""
        key = (self.model_id, self.shard)
        with _LOCK:
            entry = _LOADED.get(key)
            if entry is not None:
                _LOADED.move_to_end(key)
                return entry[0]
            index = _load(self.index_bytes, self.metric, self.n_features, self.n_rows)
            _LOADED[key] = (index, len(self.index_bytes))
            # Evict other models' graphs, least recently used first, never this model's: a
            # search reads every shard of its model for each batch, and evicting one for
            # another would reload them all, batch after batch.
            cached = sum(size for _, size in _LOADED.values())
            for other in [k for k in _LOADED if k[0] != self.model_id]:
                if cached <= GRAPH_CACHE_BYTES:
                    break
                cached -= _LOADED.pop(other)[1]
        return index


def hnsw_search(
    shard: HnswShard, queries: np.ndarray, k: int, ef: int, threads: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Approximate k nearest rows of one shard for each query (``threads``: the task's cores).

    Returns
    -------
    distances : ndarray of shape (n_queries, min(k, n_rows)), float64
        Euclidean distance, cosine distance or ``1 - inner product``.
    positions : ndarray of shape (n_queries, min(k, n_rows)), int64
        Row positions in the shard, ordered by (distance, id).
    """
    keep = min(k, shard.n_rows)
    n_queries = queries.shape[0]
    if n_queries == 0 or keep == 0:
        return np.empty((n_queries, keep)), np.empty((n_queries, keep), dtype=np.int64)
    index = shard.graph()
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    labels = dist = None
    # hnswlib raises when it finds fewer than k rows (a small ef on a sparse graph);
    # widen the search up to the whole shard before giving up.
    for breadth in (max(ef, keep), max(4 * ef, 2 * keep), shard.n_rows):
        index.set_ef(breadth)
        try:
            labels, dist = index.knn_query(queries, k=keep, num_threads=threads)
            break
        except RuntimeError:
            continue
    if labels is None:
        # A graph too sparse to reach k rows (tiny M on odd data): search the shard's
        # vectors exactly rather than lose neighbors.
        vectors = np.asarray(index.get_items(np.arange(shard.n_rows)), dtype=np.float32)
        return exact_search(
            ExactShard(vectors, shard.ids), queries, keep, shard.metric, threads=threads
        )
    pos = labels.astype(np.int64)
    dist = dist.astype(np.float64)
    metric = get_metric(shard.metric)
    to_distance = _FROM_SPACE.get(metric.hnsw_space)
    if to_distance is not None:
        dist = to_distance(dist)
    # hnswlib's float32 "cosine" gives a vector and itself about +-1e-7: clip as exact search does.
    dist = metric.clip(dist)
    out_dist, _, order = select_topk(dist, shard.ids[pos], keep)
    return out_dist, np.take_along_axis(pos, order, axis=1)
