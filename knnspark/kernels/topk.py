"""Top-k selection and merging of partial neighbor lists.

Every path that combines neighbor lists (blocks of one shard, shards inside a
task, partial lists gathered by a distributed reduce) goes through
:func:`select_topk`, so the ordering rule is the same everywhere: ascending
distance, ties broken by the smaller id.  Results therefore never depend on
how rows were split into shards, partitions or batches.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "PAD_ID",
    "drop_duplicate_ids",
    "merge_topk",
    "pad_ragged",
    "select_topk",
    "smallest_k_columns",
]

#: Id used to pad lists that hold fewer than ``k`` candidates; pairs with an
#: infinite distance so that padding always sorts last.  It is also a valid user id
#: (``idCol`` takes any long), so padding is recognised by its infinite distance, never
#: by its id: real distances are always finite.
PAD_ID = np.iinfo(np.int64).max

# Columns per group in the one-pass narrowing of smallest_k_columns.
_GROUP_SIZE = 32


def select_topk(
    dist: np.ndarray, ids: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep the ``k`` best candidates of each row, ordered by (distance, id).

    Parameters
    ----------
    dist : ndarray of shape (n_queries, n_candidates)
        Candidate distances.
    ids : ndarray of shape (n_queries, n_candidates)
        Candidate ids (int64), used to break distance ties.
    k : int
        Number of candidates to keep; rows keep ``min(k, n_candidates)``.

    Returns
    -------
    dist : ndarray of shape (n_queries, min(k, n_candidates))
    ids : ndarray of shape (n_queries, min(k, n_candidates))
    positions : ndarray of shape (n_queries, min(k, n_candidates))
        Column of each kept candidate in the input, to gather any payload
        (labels, for example) that travels with the candidates.

    Examples
    --------
    >>> d = np.array([[0.5, 0.1, 0.5]])
    >>> i = np.array([[7, 3, 2]])
    >>> select_topk(d, i, 2)[1]
    array([[3, 2]])
    """
    dist = np.asarray(dist)
    ids = np.asarray(ids)
    if dist.shape != ids.shape or dist.ndim != 2:
        raise ValueError(
            f"dist and ids must be 2-D arrays of one shape; got {dist.shape} and {ids.shape}"
        )
    keep = min(k, dist.shape[1])
    if dist.shape[1] > 4 * keep + 16:
        # Narrow the candidates first so the full sort below stays small.
        cand = smallest_k_columns_by_key(dist, ids, keep)
        cdist = np.take_along_axis(dist, cand, axis=1)
        cids = np.take_along_axis(ids, cand, axis=1)
    else:
        cand, cdist, cids = None, dist, ids
    order = np.lexsort((cids, cdist), axis=-1)[:, :keep]
    out_dist = np.take_along_axis(cdist, order, axis=1)
    out_ids = np.take_along_axis(cids, order, axis=1)
    positions = order if cand is None else np.take_along_axis(cand, order, axis=1)
    return out_dist, out_ids, positions


def merge_topk(
    dist_a: np.ndarray,
    ids_a: np.ndarray,
    dist_b: np.ndarray,
    ids_b: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Merge two partial top-k lists of the same queries into one.

    Parameters
    ----------
    dist_a, ids_a : ndarray of shape (n_queries, k_a)
    dist_b, ids_b : ndarray of shape (n_queries, k_b)
    k : int

    Returns
    -------
    dist, ids : ndarray of shape (n_queries, min(k, k_a + k_b))
        Ordered by (distance, id).

    Examples
    --------
    >>> merge_topk(np.array([[1.0, 3.0]]), np.array([[10, 11]]),
    ...            np.array([[2.0, 3.0]]), np.array([[4, 5]]), 3)[1]
    array([[10,  4,  5]])
    """
    dist = np.concatenate([dist_a, dist_b], axis=1)
    ids = np.concatenate([ids_a, ids_b], axis=1)
    out_dist, out_ids, _ = select_topk(dist, ids, k)
    return out_dist, out_ids


def smallest_k_columns(dist: np.ndarray, k: int) -> np.ndarray:
    """Columns of the ``k`` smallest values per row, ties to the lower column.

    The returned columns are in ascending column order, not sorted by value.
    Used inside one shard, where column order equals id order, so the tie rule
    is the (distance, id) rule.

    Parameters
    ----------
    dist : ndarray of shape (n_rows, n_cols)
    k : int, 1 <= k <= n_cols

    Returns
    -------
    ndarray of shape (n_rows, k), int64
    """
    n_rows, n_cols = dist.shape
    if k >= n_cols:
        return np.broadcast_to(np.arange(n_cols), (n_rows, n_cols)).copy()
    n_groups = n_cols // _GROUP_SIZE
    if n_groups <= 4 * k:
        return _smallest_k_columns_full(dist, k)
    # Group g holds columns g, g + n_groups, g + 2 * n_groups, ...: with this strided
    # layout the group minima are an elementwise minimum of contiguous slices, the only
    # pass over the whole matrix.  The k-th smallest group minimum bounds the k-th
    # smallest value, so the k best groups (plus the leftover tail columns) hold the
    # answer, unless another group's minimum ties that bound: such rows are redone.
    body = n_groups * _GROUP_SIZE
    mins = dist[:, :body].reshape(n_rows, _GROUP_SIZE, n_groups).min(axis=1)
    groups = np.argpartition(mins, k - 1, axis=1)[:, :k]
    bound = np.take_along_axis(mins, groups[:, k - 1 :], axis=1)
    groups.sort(axis=1)
    # Column g + i * n_groups laid out by (i, g) is ascending, which keeps the tie
    # rule (lower column first) in the exact pass below.
    cols = (groups[:, None, :] + n_groups * np.arange(_GROUP_SIZE)[:, None]).reshape(n_rows, -1)
    if body < n_cols:
        tail = np.broadcast_to(np.arange(body, n_cols), (n_rows, n_cols - body))
        cols = np.concatenate([cols, tail], axis=1)
    picked = _smallest_k_columns_full(np.take_along_axis(dist, cols, axis=1), k)
    out = np.take_along_axis(cols, picked, axis=1)
    tied = np.flatnonzero((mins <= bound).sum(axis=1) > k)
    if tied.size:
        out[tied] = _smallest_k_columns_full(dist[tied], k)
    return out


def _smallest_k_columns_full(dist: np.ndarray, k: int) -> np.ndarray:
    """:func:`smallest_k_columns` by a partition of every full row."""
    n_rows, n_cols = dist.shape
    if k >= n_cols:
        return np.broadcast_to(np.arange(n_cols), (n_rows, n_cols)).copy()
    kth = np.partition(dist, k - 1, axis=1)[:, k - 1 : k]
    selected = dist <= kth
    counts = selected.sum(axis=1)
    over = np.flatnonzero(counts > k)
    if over.size:
        # Ties at the boundary: drop the highest columns among those equal to kth.
        equal = dist[over] == kth[over]
        excess = (counts[over] - k)[:, None]
        from_right = np.cumsum(equal[:, ::-1], axis=1)[:, ::-1]
        selected[over] &= ~(equal & (from_right <= excess))
    return np.nonzero(selected)[1].reshape(n_rows, k)


def smallest_k_columns_by_key(dist: np.ndarray, keys: np.ndarray, k: int) -> np.ndarray:
    """Like :func:`smallest_k_columns` but ties at the boundary go to the smaller key."""
    n_rows, n_cols = dist.shape
    kth = np.partition(dist, k - 1, axis=1)[:, k - 1 : k]
    selected = dist <= kth
    counts = selected.sum(axis=1)
    over = np.flatnonzero(counts > k)
    for row in over:
        # Rare (exact distance ties at the boundary): resolve row by row.
        cols = np.flatnonzero(selected[row])
        order = np.lexsort((keys[row, cols], dist[row, cols]))
        selected[row] = False
        selected[row, cols[order[:k]]] = True
    return np.nonzero(selected)[1].reshape(n_rows, k)


def pad_ragged(
    dist_lists: list[np.ndarray], id_lists: list[np.ndarray], width: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stack variable-length candidate lists into padded 2-D arrays.

    Padding uses an infinite distance and :data:`PAD_ID`, so it sorts last in
    :func:`select_topk`.

    Returns
    -------
    dist : ndarray of shape (n_lists, width), float64
    ids : ndarray of shape (n_lists, width), int64
    lengths : ndarray of shape (n_lists,), int64
    """
    lengths = np.fromiter((len(x) for x in id_lists), dtype=np.int64, count=len(id_lists))
    if width is None:
        width = int(lengths.max()) if lengths.size else 0
    dist = np.full((len(id_lists), width), np.inf)
    ids = np.full((len(id_lists), width), PAD_ID, dtype=np.int64)
    if lengths.size and width:
        mask = np.arange(width)[None, :] < lengths[:, None]
        if int(lengths.sum()):
            dist[mask] = np.concatenate(dist_lists).astype(np.float64, copy=False)
            ids[mask] = np.concatenate(id_lists).astype(np.int64, copy=False)
    return dist, ids, lengths


def drop_duplicate_ids(dist: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Replace repeated ids within a row by padding, keeping the smallest distance.

    Padding (infinite distance) is never a repeat, whatever its id; a real candidate whose
    id equals :data:`PAD_ID` is deduplicated like any other.

    Returns
    -------
    dist, ids : ndarray of shape (n_rows, n_candidates)

    Examples
    --------
    >>> drop_duplicate_ids(np.array([[1.0, 1.0, 2.0]]), np.array([[4, 4, 5]]))[1]
    array([[                  4, 9223372036854775807,                   5]])
    """
    order = np.lexsort((dist, ids), axis=-1)
    sorted_ids = np.take_along_axis(ids, order, axis=1)
    sorted_dist = np.take_along_axis(dist, order, axis=1)
    repeat = np.zeros(ids.shape, dtype=bool)
    # Within one id the finite distances sort first, so a finite entry after an equal id
    # follows a real candidate: a true repeat.
    repeat[:, 1:] = (sorted_ids[:, 1:] == sorted_ids[:, :-1]) & np.isfinite(sorted_dist[:, 1:])
    if not repeat.any():
        return dist, ids
    dist, ids = dist.copy(), ids.copy()
    rows = np.nonzero(repeat)[0]
    cols = order[repeat]
    dist[rows, cols] = np.inf
    ids[rows, cols] = PAD_ID
    return dist, ids
