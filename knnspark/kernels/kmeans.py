"""Balanced k-means for ``partitioning="kmeans"``: fitted on a driver sample, applied per row.

The driver fits centroids on a bounded sample of the training rows (in the space the index
searches) and one additive offset per centroid, so that the row rule

    shard(x) = argmin_j ( ||x - c_j||^2 + b_j )     (ties: the smaller j)

puts at most about ``cap_ratio`` times the mean number of rows in any shard of the sample.
The rule is a plain function of one row, evaluated in float64 one centroid at a time (no
BLAS blocking) wherever a GEMM's ranking of the centroids could be off by its rounding, so
a retried task or a second evaluation of the plan assigns every row to the same shard.
Equal rows always share a shard, so a training set of identical rows fills one shard
whatever the offsets: the cap holds for distinct rows only.
"""

from __future__ import annotations

import math

import numpy as np

from knnspark.kernels.routing import shard_radius

__all__ = [
    "SUBS_PER_SHARD",
    "assign_shards",
    "fit_balanced_kmeans",
    "fit_sub_centroids",
    "kmeans_sample_size",
    "sub_radii",
]

#: Rows of the driver sample per shard, at least ``_MIN_SAMPLE`` and at most about 64 MiB.
_SAMPLE_PER_SHARD = 100
_MIN_SAMPLE = 10_000
_MAX_SAMPLE_BYTES = 64 * 2**20
#: Shard sizes on the sample are capped below the promised 1.5x the mean: the full data
#: spreads a little differently from its sample.
CAP_RATIO = 1.25
#: Relative gap under which two centroids' GEMM costs count as a near tie (see
#: :func:`assign_shards`); the float64 rounding of both evaluations is below 1e-13.
_ASSIGN_TOLERANCE = 1e-8
#: Finer centroids per shard (plain k-means on the shard's part of the sample): their balls
#: bound a shard made of several clusters much more tightly than its one ball.
SUBS_PER_SHARD = 8


def kmeans_sample_size(n_rows: int, n_clusters: int, n_features: int) -> int:
    """Rows of the driver sample: ``100 * numShards`` (at least 10,000), at most 64 MiB.

    Examples
    --------
    >>> kmeans_sample_size(200_000, 16, 64)
    10000
    >>> kmeans_sample_size(5_000, 16, 64)
    5000
    """
    by_bytes = _MAX_SAMPLE_BYTES // (8 * max(1, n_features))
    wanted = max(_MIN_SAMPLE, _SAMPLE_PER_SHARD * n_clusters)
    return int(min(n_rows, max(n_clusters, min(wanted, by_bytes))))


def _squared_distances(rows: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """(n_rows, n_centroids) float64 squared euclidean distances, one centroid at a time."""
    rows = np.asarray(rows, dtype=np.float64)
    out = np.empty((rows.shape[0], centroids.shape[0]), dtype=np.float64)
    for j, centroid in enumerate(centroids):
        diff = rows - centroid
        out[:, j] = np.einsum("ij,ij->i", diff, diff)
    return out


def _gemm_squared_distances(rows: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Like :func:`_squared_distances` through one GEMM: fast, for the driver's fit only.

    Its rounding depends on BLAS blocking, so the row rule never uses it.
    """
    rows = np.asarray(rows, dtype=np.float64)
    sq = (rows * rows).sum(axis=1)[:, None] - 2.0 * rows @ centroids.T
    return np.maximum(sq + (centroids * centroids).sum(axis=1)[None, :], 0.0)


def assign_shards(rows: np.ndarray, centroids: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Shard of each row: ``argmin_j ||x - c_j||^2 + b_j`` (ties: the smaller j), int32.

    The rule is evaluated exactly (:func:`_squared_distances`) only where it must be: one
    GEMM ranks the centroids, and a row whose runner-up is farther from its best than the
    GEMM's rounding could be (a bound with a margin of about ``10**5``) keeps that best.
    The others (near ties) take the exact rule, so the result never depends on the batch.

    Examples
    --------
    >>> c = np.array([[0.0], [10.0]])
    >>> assign_shards(np.array([[1.0], [9.0], [5.0]]), c, np.zeros(2)).tolist()
    [0, 1, 0]
    """
    rows = np.asarray(rows, dtype=np.float64)
    centroids = np.asarray(centroids, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.float64)
    approx = _gemm_squared_distances(rows, centroids) + offsets[None, :]
    # Every rounding error of both evaluations is below ~1e-13 of this scale per row.
    scale = (rows * rows).sum(axis=1) + float(((centroids * centroids).sum(axis=1)).max())
    tolerance = _ASSIGN_TOLERANCE * (scale + float(np.abs(offsets).max(initial=0.0)))
    best = approx.argmin(axis=1)
    near = approx <= (approx[np.arange(rows.shape[0]), best] + tolerance)[:, None]
    tied = np.flatnonzero(near.sum(axis=1) > 1)
    if tied.size:
        exact = _squared_distances(rows[tied], centroids) + offsets[None, :]
        best[tied] = np.argmin(exact, axis=1)
    return best.astype(np.int32)


def fit_balanced_kmeans(
    sample: np.ndarray, n_clusters: int, seed: int, n_iter: int = 14
) -> tuple[np.ndarray, np.ndarray]:
    """Centroids and offsets of a balanced k-means fitted on ``sample``.

    k-means++ seeding (deterministic under ``seed``), Lloyd iterations, then balanced
    iterations: offsets fitted so no cluster holds more than ``CAP_RATIO`` times the mean,
    centroids moved to the mean of the rows the offset rule gives them.

    Returns
    -------
    centroids : ndarray of shape (n_clusters, n_features), float64
    offsets : ndarray of shape (n_clusters,), float64
    """
    sample = np.asarray(sample, dtype=np.float64)
    rng = np.random.default_rng(seed)
    centroids = _kmeans_plus_plus(sample, n_clusters, rng)
    offsets = np.zeros(n_clusters)
    cap = math.ceil(CAP_RATIO * sample.shape[0] / n_clusters)
    for it in range(n_iter):
        balanced = it >= n_iter // 2
        d2 = _gemm_squared_distances(sample, centroids)
        if balanced:
            offsets = _balance_offsets(d2, offsets, cap)
        labels = np.argmin(d2 + offsets[None, :], axis=1)
        moved = _move_centroids(sample, labels, centroids)
        if np.array_equal(moved, centroids) and balanced:
            break
        centroids = moved
    # The final offsets balance the row rule's own distances.
    offsets = _balance_offsets(_squared_distances(sample, centroids), offsets, cap)
    return centroids, offsets


def _kmeans_plus_plus(sample: np.ndarray, n_clusters: int, rng: np.random.Generator) -> np.ndarray:
    n = sample.shape[0]
    chosen = [int(rng.integers(n))]
    closest = _squared_distances(sample, sample[chosen])[:, 0]
    for _ in range(1, n_clusters):
        total = closest.sum()
        # All rows already sit on a centroid (fewer distinct rows than clusters): repeat one.
        pick = int(rng.integers(n)) if total <= 0 else int(rng.choice(n, p=closest / total))
        chosen.append(pick)
        closest = np.minimum(closest, _squared_distances(sample, sample[[pick]])[:, 0])
    return sample[chosen].copy()


def _move_centroids(sample: np.ndarray, labels: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Mean of each cluster's rows; a cluster with no row keeps its centroid."""
    k = centroids.shape[0]
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    order = np.argsort(labels, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    sums = np.zeros_like(centroids)
    filled = counts > 0
    sums[filled] = np.add.reduceat(sample[order], starts[filled], axis=0)
    moved = centroids.copy()
    moved[filled] = sums[filled] / counts[filled, None]
    return moved


def _balance_offsets(d2: np.ndarray, offsets: np.ndarray, cap: int) -> np.ndarray:
    """Raise the offsets of over-full clusters until each holds at most ``cap`` rows.

    Each step takes the fullest cluster and raises its offset just past the margin of its
    ``excess``-th most movable row (the gap to that row's next best cluster).  Equal rows
    cannot be split, so the loop stops after a bounded number of steps.  Raising cluster
    ``j``'s offset can only move rows out of ``j``, so each step re-labels ``j``'s rows
    alone (the labels are those of a full ``argmin`` over every row, ties included).
    """
    k = d2.shape[1]
    offsets = offsets.copy()
    cost = d2 + offsets[None, :]
    labels = np.argmin(cost, axis=1)
    counts = np.bincount(labels, minlength=k)
    for _ in range(max(100, 4 * k)):
        j = int(np.argmax(counts))
        excess = int(counts[j]) - cap
        if excess <= 0:
            break
        mine = np.flatnonzero(labels == j)
        members = cost[mine]
        other = members.copy()
        other[:, j] = np.inf
        margin = other.min(axis=1) - members[:, j]
        step = float(np.partition(margin, excess - 1)[excess - 1])
        if not np.isfinite(step):
            break
        offsets[j] += step + 1e-9 * (1.0 + abs(step) + abs(offsets[j]))
        cost[:, j] = d2[:, j] + offsets[j]
        labels[mine] = np.argmin(cost[mine], axis=1)
        counts = np.bincount(labels, minlength=k)
    return offsets


def fit_sub_centroids(
    sample: np.ndarray, centroids: np.ndarray, offsets: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``SUBS_PER_SHARD`` k-means centroids inside each shard, fitted on its sample rows.

    A shard without sample rows gets its own centroid as its one sub-centroid, so every
    shard has at least one.

    Returns
    -------
    sub_centroids : ndarray of shape (n_sub, n_features), float64
    sub_shards : ndarray of shape (n_sub,), int32, sorted
    """
    sample = np.asarray(sample, dtype=np.float64)
    labels = assign_shards(sample, centroids, offsets)
    subs, shards = [], []
    for shard in range(centroids.shape[0]):
        rows = sample[labels == shard]
        n_sub = min(SUBS_PER_SHARD, rows.shape[0])
        if n_sub == 0:
            found = centroids[shard : shard + 1]
        else:
            rng = np.random.default_rng([seed, shard])
            found = _kmeans_plus_plus(rows, n_sub, rng)
            for _ in range(10):
                nearest = _gemm_squared_distances(rows, found).argmin(1)
                found = _move_centroids(rows, nearest, found)
        subs.append(found)
        shards.append(np.full(found.shape[0], shard, dtype=np.int32))
    return np.concatenate(subs), np.concatenate(shards)


def sub_radii(
    rows: np.ndarray, sub_centroids: np.ndarray, metric: str, p: float = 2.0
) -> np.ndarray:
    """Radius of each of one shard's balls over its rows (nearest ball by squared euclidean).

    -inf for a ball no row is nearest to.  Any assignment of rows to balls gives valid
    bounds; the nearest keeps them tight.
    """
    nearest = assign_shards(rows, sub_centroids, np.zeros(sub_centroids.shape[0]))
    return np.array(
        [
            shard_radius(rows[nearest == s], sub_centroids[s], metric, p)
            for s in range(len(sub_centroids))
        ]
    )
