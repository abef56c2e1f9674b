"""Blocked exact (brute-force) k-nearest-neighbor search over one shard.

For the metrics with a matrix-product form in the metric table (see
:mod:`knnspark.kernels.gemm`) the candidates come from the form's compiled float32
inner-product search (faiss-cpu, which blocks its own memory); a few extra
candidates are kept and their distances recomputed exactly in float64 before the
final selection.  The other metrics are computed exactly in float64, in blocks of
queries x training rows so that memory stays bounded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from knnspark.kernels.distances import METRICS, get_metric, pair_distances
from knnspark.kernels.shard import SearchOptions, ShardParts
from knnspark.kernels.topk import select_topk, smallest_k_columns

__all__ = ["ExactShard", "exact_search", "float32_rounding_eps"]


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

    kind: ClassVar[str] = "brute"
    stores_features: ClassVar[bool] = True
    param_names: ClassVar[tuple[str, ...]] = ()
    size_params: ClassVar[tuple[str, ...]] = ()
    max_shard_bytes_applies: ClassVar[bool] = False

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
            repeated = self.ids[1:][np.diff(self.ids) == 0]
            if repeated.size:
                raise ValueError(
                    f"ids within a shard must be unique; id {int(repeated[0])} appears more "
                    "than once (rows that changed between evaluations of the training data?)"
                )

    @property
    def n_rows(self) -> int:
        return int(self.ids.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.features.shape[1])

    @property
    def size_bytes(self) -> int:
        """Bytes of the float32 features, int64 ids and float64 labels."""
        return self.n_rows * (4 * self.n_features + 16)

    def prepared(self, metric: str) -> dict:
        """Per-metric GEMM precomputation, done once per shard and cached."""
        if metric not in self._prepared:
            form = get_metric(metric).gemm
            self._prepared[metric] = form.prepare(self.features) if form is not None else {}
        return self._prepared[metric]

    # ---------------------------------------------------------------- Shard interface

    @classmethod
    def supports_metric(cls, metric: str) -> bool:
        return metric in METRICS

    @classmethod
    def build_params(cls, metric: str, values: dict[str, Any]) -> dict[str, Any]:
        return {}

    @classmethod
    def estimate_bytes(cls, n_rows: int, n_features: int, params: dict[str, Any]) -> int:
        """Bytes an exact shard holds: float32 features, int64 ids, float64 labels."""
        return int(n_rows) * (4 * int(n_features) + 16)

    @classmethod
    def build(
        cls, features: np.ndarray, ids: np.ndarray, labels: np.ndarray | None, params: dict
    ) -> ExactShard:
        return cls(features, ids, labels)

    @classmethod
    def load(cls, parts: ShardParts, params: dict[str, Any], key: tuple[str, int]) -> ExactShard:
        return cls(parts.features, parts.ids, parts.labels)

    def parts(self) -> ShardParts:
        return ShardParts(self.ids, self.labels, self.n_features, features=self.features)

    def search(
        self, queries: np.ndarray, k: int, options: SearchOptions
    ) -> tuple[np.ndarray, np.ndarray]:
        return exact_search(self, queries, k, options.metric, options.p, options.threads)


def exact_search(
    shard: ExactShard,
    queries: np.ndarray,
    k: int,
    metric: str = "euclidean",
    p: float = 2.0,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest training rows of one shard for each query.

    Parameters
    ----------
    shard : ExactShard
    queries : ndarray of shape (n_queries, n_features)
    k : int
        Neighbors wanted; a shard with fewer rows returns all of them.
    metric : str
        A name in :data:`knnspark.kernels.distances.METRICS`.
    p : float
        Power of the Minkowski metric.
    threads : int
        Threads of the candidate search (a search task's cores).

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
    form = get_metric(metric).gemm
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    n_queries = queries.shape[0]
    keep = min(k, shard.n_rows)
    if n_queries == 0 or keep == 0:
        return np.empty((n_queries, keep)), np.empty((n_queries, keep), dtype=np.int64)
    if form is None:
        dist, cand = _direct_topk(shard, queries, keep, metric, p)
        out_dist, _, pos = select_topk(dist, shard.ids[cand], keep)
        return out_dist, np.take_along_axis(cand, pos, axis=1)
    n_cand = min(shard.n_rows, keep + _extra_candidates(keep))
    cand = form.candidates(queries, shard.prepared(metric), n_cand, threads)
    # faiss pads with -1 when a score is not finite (float32 overflow on huge values).
    unsure = (cand < 0).any(axis=1)
    cand[unsure] = np.arange(n_cand)
    dist = pair_distances(queries, shard.features, metric, p, index=cand)
    out_dist, _, pos = select_topk(dist, shard.ids[cand], keep)
    out_pos = np.take_along_axis(cand, pos, axis=1)
    if n_cand < shard.n_rows:
        # Rows the float32 pass may have settled wrongly: their last candidate is
        # within rounding error of the k-th neighbor, so a row left out could tie
        # or beat it.  Search those exactly in float64 over the whole shard.
        unsure |= _near_boundary(shard, queries, metric, out_dist[:, -1], dist.max(axis=1))
    if unsure.any():
        redo_dist, redo_pos = _direct_topk(shard, queries[unsure], keep, metric, p)
        out_dist[unsure] = redo_dist
        out_pos[unsure] = redo_pos
    return out_dist, out_pos


def float32_rounding_eps(n_features: int) -> float:
    """Relative error bound of a float32 product over ``n_features`` terms (with slack)."""
    return float(np.finfo(np.float32).eps * (8.0 * np.sqrt(n_features) + 32.0))


def _near_boundary(
    shard: ExactShard, queries: np.ndarray, metric: str, kth: np.ndarray, last: np.ndarray
) -> np.ndarray:
    """Queries whose candidate list may miss a row tied with (or nearer than) the k-th."""
    eps = float32_rounding_eps(shard.n_features)
    form = get_metric(metric).gemm
    return form.near_boundary(queries, shard.prepared(metric), kth, last, eps)


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
