"""Blocked exact (brute-force) k-nearest-neighbor search over one shard.

Memory stays bounded by working on blocks of queries x training rows.  For
``euclidean`` and ``cosine`` the candidates of each block come from a float32
matrix product (on features centred on the shard mean, which keeps the
``|q|^2 + |x|^2 - 2 q.x`` expansion accurate); a few extra candidates are kept
and their distances recomputed exactly in float64 before the final
selection.  The other metrics are computed exactly block by block.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from knnspark.kernels.distances import EXACT_METRICS, GEMM_METRICS, pair_distances
from knnspark.kernels.topk import select_topk, smallest_k_columns

__all__ = ["ExactShard", "exact_search"]

# Scratch memory for one block of float32 distances (queries x training rows).
_BLOCK_BYTES = 64 * 1024 * 1024
# Training rows per block.
_TRAIN_BLOCK = 65536
# Queries per block, at most: more gains no speed on small shards, only scratch memory.
_MAX_QUERY_BLOCK = 512


def _extra_candidates(k: int) -> int:
    # Candidates beyond k kept from the float32 pass, so that near-ties that
    # float32 rounding reorders are settled by the float64 refinement.
    return max(4, k // 2)


@dataclass
class ExactShard:
    """One shard of training rows, ready to be searched.

    Parameters
    ----------
    features : ndarray of shape (n_rows, n_features), float32
    ids : ndarray of shape (n_rows,), int64, ascending
    labels : ndarray of shape (n_rows,), float64, or None
    """

    features: np.ndarray
    ids: np.ndarray
    labels: np.ndarray | None = None
    _prepared: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.features = np.ascontiguousarray(self.features, dtype=np.float32)
        self.ids = np.ascontiguousarray(self.ids, dtype=np.int64)
        if self.features.ndim != 2 or self.features.shape[0] != self.ids.shape[0]:
            raise ValueError(
                f"features must be (n_rows, n_features) with one id per row; got "
                f"{self.features.shape} and {self.ids.shape}"
            )
        if self.ids.size > 1 and np.any(np.diff(self.ids) <= 0):
            order = np.argsort(self.ids, kind="stable")
            self.ids = self.ids[order]
            self.features = self.features[order]
            if self.labels is not None:
                self.labels = np.asarray(self.labels)[order]
            if np.any(np.diff(self.ids) == 0):
                raise ValueError("ids within a shard must be unique")

    @property
    def n_rows(self) -> int:
        return int(self.ids.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.features.shape[1])

    def prepared(self, metric: str) -> dict:
        """Per-metric precomputation, done once per shard and cached."""
        if metric not in self._prepared:
            if metric == "euclidean":
                mean = self.features.mean(axis=0, dtype=np.float64).astype(np.float32)
                centred = self.features - mean
                sq_norms = np.einsum("ij,ij->i", centred, centred)
                self._prepared[metric] = {
                    "mean": mean,
                    # |x|^2 as a last column: the matrix product adds it (q gets a 1 there),
                    # sparing a pass over every block of scores.
                    "rows": np.ascontiguousarray(np.hstack([centred, sq_norms[:, None]])),
                    "max_sq_norm": float(sq_norms.max()) if sq_norms.size else 0.0,
                }
            elif metric == "cosine":
                norms = np.linalg.norm(self.features.astype(np.float64), axis=1)
                norms[norms == 0.0] = 1.0
                self._prepared[metric] = {
                    "rows": (self.features / norms[:, None]).astype(np.float32)
                }
            elif metric == "inner_product":
                norms = np.linalg.norm(self.features.astype(np.float64), axis=1)
                self._prepared[metric] = {
                    "rows": self.features,
                    "max_norm": float(norms.max()) if norms.size else 0.0,
                }
            else:
                self._prepared[metric] = {}
        return self._prepared[metric]


def exact_search(
    shard: ExactShard,
    queries: np.ndarray,
    k: int,
    metric: str = "euclidean",
    p: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest training rows of one shard for each query.

    Parameters
    ----------
    shard : ExactShard
    queries : ndarray of shape (n_queries, n_features)
    k : int
        Neighbors wanted; a shard with fewer rows returns all of them.
    metric : str
        One of :data:`knnspark.kernels.distances.EXACT_METRICS`.
    p : float
        Power of the Minkowski metric.

    Returns
    -------
    distances : ndarray of shape (n_queries, min(k, n_rows)), float64
    positions : ndarray of shape (n_queries, min(k, n_rows)), int64
        Row positions in the shard, ordered by (distance, id).

    Examples
    --------
    >>> shard = ExactShard(np.array([[0.0], [1.0], [5.0]]), np.array([0, 1, 2]))
    >>> exact_search(shard, np.array([[0.9]], dtype=np.float32), 2)[1]
    array([[1, 0]])
    """
    if metric not in EXACT_METRICS:
        raise ValueError(f"Unknown metric {metric!r}; expected one of {EXACT_METRICS}")
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    n_queries = queries.shape[0]
    keep = min(k, shard.n_rows)
    if n_queries == 0 or keep == 0:
        return np.empty((n_queries, keep)), np.empty((n_queries, keep), dtype=np.int64)
    if metric not in GEMM_METRICS:
        dist, cand = _direct_topk(shard, queries, keep, metric, p)
        out_dist, _, pos = select_topk(dist, shard.ids[cand], keep)
        return out_dist, np.take_along_axis(cand, pos, axis=1)
    n_cand = min(shard.n_rows, keep + _extra_candidates(keep))
    cand = _gemm_candidates(shard, queries, n_cand, metric)
    dist = pair_distances(queries, shard.features, metric, p, index=cand)
    out_dist, _, pos = select_topk(dist, shard.ids[cand], keep)
    out_pos = np.take_along_axis(cand, pos, axis=1)
    if n_cand < shard.n_rows:
        # Rows the float32 pass may have settled wrongly: their last candidate is
        # within rounding error of the k-th neighbor, so a row left out could tie
        # or beat it.  Search those exactly in float64 over the whole shard.
        unsure = _near_boundary(shard, queries, metric, out_dist[:, -1], dist.max(axis=1))
        if unsure.any():
            redo_dist, redo_pos = _direct_topk(shard, queries[unsure], keep, metric, p)
            out_dist[unsure] = redo_dist
            out_pos[unsure] = redo_pos
    return out_dist, out_pos


def _near_boundary(
    shard: ExactShard, queries: np.ndarray, metric: str, kth: np.ndarray, last: np.ndarray
) -> np.ndarray:
    """Queries whose candidate list may miss a row tied with (or nearer than) the k-th."""
    prep = shard.prepared(metric)
    eps = np.finfo(np.float32).eps * (8.0 * np.sqrt(shard.n_features) + 32.0)
    if metric == "euclidean":
        centred = queries.astype(np.float64) - prep["mean"]
        scale = np.einsum("ij,ij->i", centred, centred) + prep["max_sq_norm"]
        return last**2 - kth**2 <= 2.0 * eps * scale
    if metric == "cosine":
        return last - kth <= 4.0 * eps
    norms = np.linalg.norm(queries.astype(np.float64), axis=1)
    return last - kth <= 2.0 * eps * norms * prep["max_norm"]


def _query_block(n_train_block: int) -> int:
    return max(16, min(_MAX_QUERY_BLOCK, _BLOCK_BYTES // (4 * max(1, n_train_block))))


def _gemm_candidates(
    shard: ExactShard, queries: np.ndarray, n_cand: int, metric: str
) -> np.ndarray:
    """Candidate positions from float32 matrix products, block by block.

    Candidates are ranked by a score that differs from the distance by a
    per-query constant and factor (``|x|^2 - 2 q.x`` for euclidean, ``-q.x``
    otherwise), written in place into one reused buffer: no temporary
    matrices, and no page faults from allocating a fresh one per block.
    """
    prep = shard.prepared(metric)
    rows = prep["rows"]
    if metric == "euclidean":
        q_all = np.hstack([-2.0 * (queries - prep["mean"]), np.ones((len(queries), 1), np.float32)])
    elif metric == "inner_product":
        q_all = -queries
    else:
        norms = np.linalg.norm(queries, axis=1, keepdims=True)
        norms[norms == 0.0] = 1.0
        q_all = -(queries / norms)
    n_train = rows.shape[0]
    train_block = min(n_train, _TRAIN_BLOCK)
    q_block = _query_block(train_block)
    out = np.empty((queries.shape[0], n_cand), dtype=np.int64)
    scratch = np.empty(min(q_block, queries.shape[0]) * train_block, dtype=np.float32)
    for qs in range(0, queries.shape[0], q_block):
        q = q_all[qs : qs + q_block]
        best_d = best_p = None
        for ts in range(0, n_train, train_block):
            block = rows[ts : ts + train_block]
            d = scratch[: q.shape[0] * block.shape[0]].reshape(q.shape[0], block.shape[0])
            np.matmul(q, block.T, out=d)
            best_d, best_p = _fold_block(best_d, best_p, d, ts, n_cand)
        out[qs : qs + q_block] = best_p
    return out


def _fold_block(
    best_d: np.ndarray | None,
    best_p: np.ndarray | None,
    block: np.ndarray,
    offset: int,
    keep: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Merge one block of scores (columns from ``offset``) into the running top ``keep``."""
    cols = smallest_k_columns(block, min(keep, block.shape[1]))
    cand_d = np.take_along_axis(block, cols, axis=1)
    cand_p = cols + offset
    if best_d is not None:
        cand_d = np.concatenate([best_d, cand_d], axis=1)
        cand_p = np.concatenate([best_p, cand_p], axis=1)
    best_d, _, pos = select_topk(cand_d, cand_p, keep)
    return best_d, np.take_along_axis(cand_p, pos, axis=1)


def _direct_topk(
    shard: ExactShard, queries: np.ndarray, keep: int, metric: str, p: float
) -> tuple[np.ndarray, np.ndarray]:
    """Exact float64 distances block by block, keeping the running top-k."""
    n_train = shard.n_rows
    train_block = min(n_train, 4096)
    n_queries = queries.shape[0]
    out_d = np.empty((n_queries, keep))
    out_p = np.empty((n_queries, keep), dtype=np.int64)
    q_block = 256
    for qs in range(0, n_queries, q_block):
        q = queries[qs : qs + q_block]
        best_d = best_p = None
        for ts in range(0, n_train, train_block):
            d = pair_distances(q, shard.features[ts : ts + train_block], metric, p)
            best_d, best_p = _fold_block(best_d, best_p, d, ts, keep)
        out_d[qs : qs + q_block] = best_d
        out_p[qs : qs + q_block] = best_p
    return out_d, out_p
