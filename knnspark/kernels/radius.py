"""Exact radius search over one shard: every row within a distance, nearest first.

Work goes block by block (``QUERY_BLOCK`` queries x ``ROW_BLOCK`` training rows), so the
scratch memory is bounded whatever share of the rows a radius holds.  For the metrics with
a matrix-product form (:mod:`knnspark.kernels.gemm`) a float32 product picks the candidates
(every row whose product is within the form's rounding bound of the radius), whose
distances are then computed in float64; the other metrics are computed in float64 directly.
A row is kept when its float64 distance is ``<= radius`` (scikit-learn's
``radius_neighbors`` rule).  With a ``limit`` only the ``limit`` nearest rows of each query
are kept, folded in after every block, so memory stays bounded by the limit too; the number
of rows within the radius is counted either way.

With k-means partitioning (:class:`~knnspark.kernels.routing.Router`),
:func:`shards_within_radius` lists the shards a query must search: those whose lower bound
does not exceed the radius, by the rule (and slack) pruned k-nearest search uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from knnspark.kernels.distances import get_metric, pair_distances
from knnspark.kernels.exact import ExactShard, float32_rounding_eps
from knnspark.kernels.routing import Router
from knnspark.kernels.topk import smallest_k_columns

__all__ = [
    "QUERY_BLOCK",
    "ROW_BLOCK",
    "RadiusLists",
    "merge_radius_lists",
    "radius_search",
    "shards_within_radius",
]

#: Queries and training rows per block: a block's scores take 256 x 4096 x 8 bytes (8 MiB).
QUERY_BLOCK = 256
ROW_BLOCK = 4096
# Candidate pairs whose features are gathered at once for the float64 refinement.
_PAIR_CHUNK = 16384
# A block with more than 1/_DENSE_SHARE of its pairs as candidates is computed densely.
_DENSE_SHARE = 8


@dataclass
class RadiusLists:
    """Ragged neighbor lists of ``n_queries`` queries, query by query, nearest first.

    Attributes
    ----------
    offsets : ndarray of shape (n_queries + 1,), int64
        Query ``i``'s neighbors are ``ids[offsets[i]:offsets[i + 1]]``.
    ids : ndarray of shape (n_kept,), int64
        Neighbor ids (shard positions straight out of :func:`radius_search`).
    dist : ndarray of shape (n_kept,), float64
    counts : ndarray of shape (n_queries,), int64
        Rows within the radius before ``limit`` cut the lists (>= the list lengths).
    """

    offsets: np.ndarray
    ids: np.ndarray
    dist: np.ndarray
    counts: np.ndarray

    @property
    def truncated(self) -> np.ndarray:
        """Queries whose list lost rows to the limit."""
        return self.counts > np.diff(self.offsets)


def merge_radius_lists(
    query: np.ndarray,
    ids: np.ndarray,
    dist: np.ndarray,
    counts: np.ndarray,
    limit: int | None,
) -> RadiusLists:
    """Sort flat (query, id, distance) triples by (query, distance, id) and cut each query.

    Parameters
    ----------
    query, ids, dist : ndarray of shape (n,)
        One entry per (query, neighbor) pair, in any order; ``query`` indexes ``counts``.
    counts : ndarray of shape (n_queries,)
        Rows within the radius per query (carried through).
    limit : int or None
        Keep at most this many neighbors per query, the nearest.

    Examples
    --------
    >>> lists = merge_radius_lists(np.array([1, 0, 1]), np.array([5, 7, 3]),
    ...                            np.array([0.5, 0.2, 0.5]), np.array([1, 2]), limit=1)
    >>> lists.offsets.tolist(), lists.ids.tolist(), lists.truncated.tolist()
    ([0, 1, 2], [7, 3], [False, True])
    """
    order = np.lexsort((ids, dist, query))
    query, ids, dist = query[order], ids[order], dist[order]
    n_queries = counts.shape[0]
    starts = np.searchsorted(query, np.arange(n_queries + 1))
    if limit is not None and query.size:
        rank = np.arange(query.size) - starts[query]
        keep = rank < limit
        query, ids, dist = query[keep], ids[keep], dist[keep]
        starts = np.searchsorted(query, np.arange(n_queries + 1))
    return RadiusLists(starts.astype(np.int64), ids, dist, counts.astype(np.int64))


def radius_search(
    shard: ExactShard,
    queries: np.ndarray,
    radius: float,
    metric: str = "euclidean",
    p: float = 2.0,
    limit: int | None = None,
) -> RadiusLists:
    """Every training row of ``shard`` within ``radius`` of each query, nearest first.

    Parameters
    ----------
    shard : ExactShard
    queries : ndarray of shape (n_queries, n_features)
    radius : float
        Rows at distance ``<= radius`` are neighbors.
    metric, p : str, float
        A metric of :data:`knnspark.kernels.distances.METRICS` and the Minkowski power.
    limit : int or None
        Keep only the ``limit`` nearest rows per query (``counts`` still counts them all).

    Returns
    -------
    RadiusLists
        ``ids`` are row positions in the shard (ascending ids, so ties go to the smaller id).

    Examples
    --------
    >>> shard = ExactShard(np.array([[0.0], [1.0], [5.0]]), np.array([0, 1, 2]))
    >>> found = radius_search(shard, np.array([[0.9]], dtype=np.float32), 1.0)
    >>> found.ids.tolist(), found.dist.round(2).tolist()
    ([1, 0], [0.1, 0.9])
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    n_queries = queries.shape[0]
    counts = np.zeros(n_queries, dtype=np.int64)
    # Each block of queries is sorted on its own: the sort's scratch follows one block's lists.
    blocks = []
    for qs in range(0, n_queries, QUERY_BLOCK):
        block = queries[qs : qs + QUERY_BLOCK]
        found = _block_search(shard, block, radius, metric, p, limit, counts[qs:])
        blocks.append(merge_radius_lists(*found, counts[qs : qs + QUERY_BLOCK], limit))
    if not blocks:
        empty = np.empty(0, dtype=np.int64)
        return merge_radius_lists(empty, empty, np.empty(0), counts, limit)
    starts = np.cumsum([0] + [b.offsets[-1] for b in blocks[:-1]])
    offsets = [b.offsets[:-1] + start for b, start in zip(blocks, starts, strict=True)]
    return RadiusLists(
        np.concatenate([*offsets, [starts[-1] + blocks[-1].offsets[-1]]]).astype(np.int64),
        np.concatenate([b.ids for b in blocks]),
        np.concatenate([b.dist for b in blocks]),
        counts,
    )


def shards_within_radius(router: Router, queries: np.ndarray, radius: float) -> np.ndarray:
    """(n_queries, num_shards) mask of the shards that may hold a row within ``radius``.

    :meth:`Router.must_visit` with the radius as every query's k-th distance: a shard is
    left out only when it is empty or (true metrics only) its lower bound exceeds the radius
    by more than :data:`~knnspark.kernels.routing.BOUND_SLACK` allows, so a row at exactly
    the radius is never lost; other metrics list every non-empty shard.  Each query also
    searches its nearest shard, so every valid query searches at least one shard (both
    search paths then agree on the shards visited, and a query none could serve still gets
    its empty list from a search).

    Examples
    --------
    >>> router = Router(np.array([[0.0], [10.0]]), np.array([1.0, 1.0]), "euclidean")
    >>> shards_within_radius(router, np.array([[0.5], [5.0], [30.0]]), 4.0).tolist()
    [[True, False], [True, True], [False, True]]
    """
    n = queries.shape[0]
    unvisited = np.zeros((n, router.num_shards), dtype=bool)
    todo = router.must_visit(queries, np.full(n, float(radius)), unvisited)
    todo[np.arange(n), router.nearest(queries, 1)[:, 0]] = True
    return todo


def _block_search(
    shard: ExactShard,
    queries: np.ndarray,
    radius: float,
    metric: str,
    p: float,
    limit: int | None,
    counts: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One block of queries against every row block; counts[:n] gets the rows within."""
    form = get_metric(metric).gemm
    if form is not None:
        prep = shard.prepared(metric)
        operand = np.ascontiguousarray(form.query_operand(queries, prep), dtype=np.float32)
        bound = form.score_bound(queries, prep, radius, float32_rounding_eps(shard.n_features))
    found_q, found_p, found_d = [], [], []
    for ts in range(0, shard.n_rows, ROW_BLOCK):
        rows = shard.features[ts : ts + ROW_BLOCK]
        block = None
        if form is not None:
            scores = operand @ prep["rows"][ts : ts + ROW_BLOCK].T
            near = scores <= bound[:, None]
            if np.count_nonzero(near) * _DENSE_SHARE < near.size:
                q_idx, cols = np.nonzero(near)
                dist = _pair_distances(queries, shard.features[ts:], q_idx, cols, metric, p)
            else:  # most pairs are candidates: one dense float64 block is cheaper
                block = pair_distances(queries, rows, metric, p)
        else:
            block = pair_distances(queries, rows, metric, p)
        if block is not None:
            q_idx, cols, dist = _dense_within(block, radius, limit)
            counts[: len(queries)] += np.count_nonzero(block <= radius, axis=1)
        else:
            within = dist <= radius
            q_idx, cols, dist = q_idx[within], cols[within], dist[within]
            counts[: len(queries)] += np.bincount(q_idx, minlength=len(queries))
        found_q.append(q_idx)
        found_p.append(cols + ts)
        found_d.append(dist)
        if limit is not None and len(found_q) > 1:
            # Fold in now: the kept rows never exceed limit per query plus one row block.
            q_all, p_all, d_all = (np.concatenate(x) for x in (found_q, found_p, found_d))
            kept = merge_radius_lists(q_all, p_all, d_all, np.zeros(len(queries)), limit)
            found_q = [np.repeat(np.arange(len(queries)), np.diff(kept.offsets))]
            found_p, found_d = [kept.ids], [kept.dist]
    if not found_q:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0)
    return np.concatenate(found_q), np.concatenate(found_p), np.concatenate(found_d)


def _dense_within(
    block: np.ndarray, radius: float, limit: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query, column, distance) of a dense block's pairs within ``radius``.

    With a ``limit``, at most the ``limit`` nearest per query (ties to the lower column),
    chosen by partial selection instead of sorting every pair.
    """
    if limit is not None and limit < block.shape[1]:
        masked = np.where(block <= radius, block, np.inf)
        cols = smallest_k_columns(masked, limit)
        dist = np.take_along_axis(masked, cols, axis=1)
        q_idx = np.repeat(np.arange(block.shape[0]), limit)
        cols, dist = cols.reshape(-1), dist.reshape(-1)
        keep = np.isfinite(dist)
        return q_idx[keep], cols[keep], dist[keep]
    q_idx, cols = np.nonzero(block <= radius)
    return q_idx, cols, block[q_idx, cols]


def _pair_distances(
    queries: np.ndarray,
    rows: np.ndarray,
    q_idx: np.ndarray,
    cols: np.ndarray,
    metric: str,
    p: float,
) -> np.ndarray:
    """float64 distances of the pairs (queries[q_idx[j]], rows[cols[j]]), chunk by chunk."""
    out = np.empty(q_idx.shape[0])
    for start in range(0, q_idx.shape[0], _PAIR_CHUNK):
        part = slice(start, start + _PAIR_CHUNK)
        gathered = rows[cols[part]][:, None, :]
        out[part] = pair_distances(queries[q_idx[part]], gathered, metric, p)[:, 0]
    return out
