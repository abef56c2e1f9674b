"""Route queries to the shards they must visit (``partitioning="kmeans"``).

A k-means partitioned index keeps one centroid per shard and the shard's radius: the
largest distance, under the index's metric, from the centroid to a row of the shard.
For a true metric the triangle inequality gives every row ``x`` of shard ``j``
``d(q, x) >= d(q, c_j) - r_j``: a shard whose lower bound exceeds a query's current
k-th distance cannot hold a closer row and is skipped (pruned exact search).  With
``nprobe`` a query visits only its ``nprobe`` nearest shards (approximate search).

:class:`Router` is the one place these rules live; the broadcast path applies them
inside a task, the shard-major distributed path before shipping queries to shards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from knnspark.kernels.distances import get_metric, pair_distances

__all__ = ["BOUND_SLACK", "Router", "shard_radius"]

#: Relative slack on the lower bound: a shard is skipped only when its bound exceeds the
#: k-th distance by more than float64 rounding of the centroid distance and the radius
#: could explain, so a row tied with the k-th neighbor is never pruned.
BOUND_SLACK = 1e-9
# Rows of a shard compared with its centroid at a time (float64 copies), by bytes.
_RADIUS_BLOCK_BYTES = 32 * 2**20


@dataclass(frozen=True)
class Router:
    """Centroids and radii of a k-means partitioned index, in the index's feature space.

    Attributes
    ----------
    centroids : ndarray of shape (num_shards, n_features), float64
        Row ``j`` is shard ``j``'s centroid (after imputation, scaling and whitening).
    radii : ndarray of shape (num_shards,), float64
        Largest metric distance from a shard's centroid to one of its rows; ``-inf`` for
        an empty shard, which no query visits.
    metric, p : str, float
        The metric and Minkowski power the radii were measured with.
    sub_centroids : ndarray of shape (n_sub, n_features), float64, optional
        Finer balls inside the shards (several k-means centroids per shard): every row of
        shard ``sub_shards[s]`` lies within ``sub_radii[s]`` of some ``sub_centroids[s]`` of
        its shard, so the nearest of a shard's balls bounds it too.  A shard made of several
        far-apart clusters gets a tight bound this way where its one ball is loose.
    sub_radii : ndarray of shape (n_sub,), float64, optional
        ``-inf`` for a ball without rows.
    sub_shards : ndarray of shape (n_sub,), int, optional
        The shard of each ball; every non-empty shard has at least one.
    """

    centroids: np.ndarray
    radii: np.ndarray
    metric: str
    p: float = 2.0
    sub_centroids: np.ndarray | None = None
    sub_radii: np.ndarray | None = None
    sub_shards: np.ndarray | None = None

    @property
    def num_shards(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def can_prune(self) -> bool:
        """Whether lower bounds are valid: the metric obeys the triangle inequality."""
        return get_metric(self.metric).is_true_metric(self.p)

    @property
    def nonempty(self) -> np.ndarray:
        """Boolean mask of the shards that hold rows."""
        return np.isfinite(self.radii)

    def centroid_distances(self, queries: np.ndarray) -> np.ndarray:
        """(n_queries, num_shards) float64 metric distances; +inf for empty shards."""
        dist = pair_distances(queries, self.centroids, self.metric, self.p)
        dist[:, ~self.nonempty] = np.inf
        return dist

    def nearest(self, queries: np.ndarray, n: int) -> np.ndarray:
        """(n_queries, m) shard numbers, nearest centroid first (ties: smaller shard).

        ``m = min(n, number of non-empty shards)``: empty shards are never listed.
        """
        dist = self.centroid_distances(queries)
        m = max(1, min(int(n), int(self.nonempty.sum())))
        return np.argsort(dist, axis=1, kind="stable")[:, :m]

    def lower_bounds(self, queries: np.ndarray) -> np.ndarray:
        """(n_queries, num_shards): no row of shard j is nearer query i than ``[i, j]``.

        Only meaningful when :attr:`can_prune`; +inf for empty shards.  With sub-centroids,
        the larger of the shard's ball bound and the smallest bound of its finer balls.
        """
        bound = self.centroid_distances(queries) - self.radii[None, :]
        if self.sub_centroids is None:
            return bound
        sub = pair_distances(queries, self.sub_centroids, self.metric, self.p)
        sub = sub - self.sub_radii[None, :]  # a ball without rows: +inf
        finer = np.full_like(bound, -np.inf)  # a shard without balls keeps its own bound
        for shard in np.unique(self.sub_shards):
            finer[:, shard] = sub[:, self.sub_shards == shard].min(axis=1)
        return np.maximum(bound, finer)

    def must_visit(self, queries: np.ndarray, kth: np.ndarray, visited: np.ndarray) -> np.ndarray:
        """(n_queries, num_shards) mask of the shards still to search exactly.

        ``kth`` is each query's current k-th distance (+inf when it has fewer than k
        neighbors yet) and ``visited`` the mask of shards already searched.  A shard is
        left out when it is visited, empty, or (true metrics only) its lower bound
        exceeds ``kth``; for other metrics every unvisited non-empty shard is listed.
        """
        todo = ~visited & self.nonempty[None, :]
        if not self.can_prune:
            return todo
        bound = self.lower_bounds(queries)
        kth = np.asarray(kth, dtype=np.float64)[:, None]
        # inf - inf (an empty shard, a query short of k neighbors) is NaN: never "exceeds".
        with np.errstate(invalid="ignore"):
            slack = BOUND_SLACK * (np.abs(kth) + np.abs(bound) + 1.0)
            return todo & ~(bound - slack > kth)


def shard_radius(rows: np.ndarray, centroid: np.ndarray, metric: str, p: float = 2.0) -> float:
    """Largest ``metric`` distance from ``centroid`` to one of ``rows``; -inf with no rows.

    Examples
    --------
    >>> shard_radius(np.array([[0.0, 0.0], [3.0, 4.0]]), np.zeros(2), "euclidean")
    5.0
    """
    radius = float("-inf")
    centroid = np.asarray(centroid, dtype=np.float64)[None, :]
    block = max(1, _RADIUS_BLOCK_BYTES // (8 * max(1, rows.shape[1])))
    for start in range(0, rows.shape[0], block):
        dist = pair_distances(centroid, rows[start : start + block], metric, p)
        radius = max(radius, float(dist.max()))
    return radius
