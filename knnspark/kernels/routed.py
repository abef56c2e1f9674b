"""Search a block of queries against routed shards: nprobe, or pruned exact search.

The shards come as a list aligned with the non-empty shards of the :class:`Router`, in
shard order (what ``fit`` builds and broadcasts).  Each round plans which queries visit
which shards, then searches each shard once with all the queries routed to it, and merges
the partial lists into each query's running top-k (ties by (distance, id), as everywhere).

* ``nprobe``: one round over each query's ``nprobe`` nearest shards (approximate); a query
  whose shards hold fewer than ``k`` rows visits the next nearest until it has ``k``.
* exact (``nprobe=None``): two rounds, the nearest shard first, then every shard
  :meth:`Router.must_visit` lists given the first round's k-th distance, the schedule the
  shard-major path follows (one shuffle per round there), so both paths visit the same
  shards. A shard is left out only when its lower bound exceeds the query's k-th distance:
  the result equals a search of every shard.  For metrics that are not true
  metrics ``must_visit`` lists every shard.
"""

from __future__ import annotations

import numpy as np

from knnspark.kernels.routing import Router
from knnspark.kernels.shard import SearchOptions, Shard
from knnspark.kernels.topk import PAD_ID, select_topk

__all__ = ["routed_search"]


class _RunningTopk:
    """Each query's best ``k`` so far, padded with (+inf, PAD_ID, NaN)."""

    def __init__(self, n: int, k: int, with_labels: bool) -> None:
        self.k = k
        self.dist = np.full((n, k), np.inf)
        self.ids = np.full((n, k), PAD_ID, dtype=np.int64)
        self.labels = np.full((n, k), np.nan) if with_labels else None

    def merge(self, rows: np.ndarray, dist: np.ndarray, ids: np.ndarray, labels: np.ndarray | None):
        cat_dist = np.concatenate([self.dist[rows], dist], axis=1)
        cat_ids = np.concatenate([self.ids[rows], ids], axis=1)
        kept_dist, kept_ids, pos = select_topk(cat_dist, cat_ids, self.k)
        self.dist[rows], self.ids[rows] = kept_dist, kept_ids
        if self.labels is not None:
            cat_labels = np.concatenate([self.labels[rows], labels], axis=1)
            self.labels[rows] = np.take_along_axis(cat_labels, pos, axis=1)

    @property
    def kth(self) -> np.ndarray:
        return self.dist[:, -1]

    @property
    def short(self) -> np.ndarray:
        """Queries with fewer than ``k`` neighbors so far."""
        return self.ids[:, -1] == PAD_ID


def routed_search(
    shards: list[Shard],
    queries: np.ndarray,
    k: int,
    options: SearchOptions,
    router: Router,
    nprobe: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """The k nearest rows of the routed shards for each query, and the shards visited.

    Returns
    -------
    dist : ndarray of shape (n_queries, k), float64
    ids : ndarray of shape (n_queries, k), int64
    labels : ndarray of shape (n_queries, k) or None (shards without labels)
    visited : ndarray of shape (n_queries,), int32
        Number of shards each query searched.
    """
    n, n_shards = queries.shape[0], router.num_shards
    position = np.cumsum(router.nonempty) - 1  # shard number -> place in ``shards``
    best = _RunningTopk(n, k, shards[0].labels is not None)
    visited = np.zeros((n, n_shards), dtype=bool)
    if n == 0:
        return best.dist, best.ids, best.labels, np.zeros(0, np.int32)

    def visit(plan: np.ndarray) -> None:
        for shard_no in np.flatnonzero(plan.any(axis=0)):
            rows = np.flatnonzero(plan[:, shard_no])
            shard = shards[position[shard_no]]
            dist, pos = shard.search(queries[rows], k, options)
            labels = shard.labels[pos] if shard.labels is not None else None
            best.merge(rows, dist, shard.ids[pos], labels)
            visited[rows, shard_no] = True

    centroid_dist = router.centroid_distances(queries)
    if nprobe is not None:
        plan = np.zeros((n, n_shards), dtype=bool)
        np.put_along_axis(plan, router.nearest(queries, nprobe), True, axis=1)
        visit(plan)
        while best.short.any():  # the probed shards hold fewer than k rows
            todo = ~visited & router.nonempty[None, :] & best.short[:, None]
            if not todo.any():
                break
            visit(_nearest_of(todo, centroid_dist))
    else:
        visit(_nearest_of(np.broadcast_to(router.nonempty, (n, n_shards)), centroid_dist))
        visit(router.must_visit(queries, best.kth, visited))
    return best.dist, best.ids, best.labels, visited.sum(axis=1).astype(np.int32)


def _nearest_of(todo: np.ndarray, centroid_dist: np.ndarray) -> np.ndarray:
    """Plan: each query with a shard in ``todo`` visits the nearest of them (ties: smaller)."""
    masked = np.where(todo, centroid_dist, np.inf)
    # A query whose listed shards are all at +inf takes the first listed one.
    nearest = np.where(np.isinf(masked.min(axis=1)), np.argmax(todo, axis=1), masked.argmin(1))
    plan = np.zeros(todo.shape, dtype=bool)
    rows = np.flatnonzero(todo.any(axis=1))
    plan[rows, nearest[rows]] = True
    return plan
