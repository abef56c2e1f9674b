"""Distance functions with the meanings scikit-learn gives them.

Final distances are always computed in float64 from the stored float32
features, one (query, training row) pair at a time, so a distance does not
depend on which other rows shared its batch.  The fast float32 matrix-product
forms in :mod:`knnspark.kernels.exact` only pick candidates.
"""

from __future__ import annotations

import numpy as np

__all__ = ["EXACT_METRICS", "GEMM_METRICS", "pair_distances"]

#: Metrics supported by exact (brute-force) search.
EXACT_METRICS = (
    "euclidean",
    "manhattan",
    "chebyshev",
    "minkowski",
    "cosine",
    "hamming",
    "inner_product",
)

#: Metrics whose candidates are picked with a float32 matrix product, then refined.
GEMM_METRICS = ("euclidean", "cosine", "inner_product")

# Bytes of float64 scratch space one pair_distances call may use.
_SCRATCH_BYTES = 8 * 1024 * 1024


def pair_distances(
    queries: np.ndarray,
    rows: np.ndarray,
    metric: str,
    p: float = 2.0,
    index: np.ndarray | None = None,
) -> np.ndarray:
    """Distances between each query and its own set of rows.

    Parameters
    ----------
    queries : ndarray of shape (n_queries, n_features)
    rows : ndarray of shape (n_queries, n_rows, n_features) or (n_rows, n_features)
        Per-query rows, or one set of rows shared by every query; with ``index``, the rows
        the index points into.
    metric : str
        One of :data:`EXACT_METRICS`.
    p : float
        Power of the Minkowski metric.
    index : ndarray of shape (n_queries, n_rows), int, optional
        Per-query positions in ``rows``: query ``i`` is compared with ``rows[index[i]]``.
        The rows are gathered block by block, never all at once.

    Returns
    -------
    ndarray of shape (n_queries, n_rows), float64

    Examples
    --------
    >>> pair_distances(np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]]), "euclidean")
    array([[5.]])
    >>> pair_distances(np.zeros((1, 2)), np.array([[3.0, 4.0], [0.0, 1.0]]), "euclidean",
    ...                index=np.array([[1, 0]]))
    array([[1., 5.]])
    """
    shared = rows.ndim == 2 and index is None
    n_queries, n_features = queries.shape
    if index is not None:
        n_rows = index.shape[1]
    else:
        n_rows = rows.shape[0] if shared else rows.shape[1]
    out = np.empty((n_queries, n_rows), dtype=np.float64)
    per_query = max(1, n_rows * max(1, n_features) * 8)
    step = max(1, _SCRATCH_BYTES // per_query)
    for start in range(0, n_queries, step):
        stop = min(n_queries, start + step)
        q = queries[start:stop, None, :].astype(np.float64)
        if index is not None:
            r = rows[index[start:stop]]
        else:
            r = rows[None, :, :] if shared else rows[start:stop]
        out[start:stop] = _distances_3d(q, r.astype(np.float64, copy=False), metric, p)
    return out


def _distances_3d(q: np.ndarray, r: np.ndarray, metric: str, p: float) -> np.ndarray:
    if metric == "cosine":
        dot = _dot(q, r)
        qn = _safe_norm(np.sqrt(_dot(q, q)))
        rn = _safe_norm(np.sqrt(_dot(r, r)))
        return 1.0 - dot / (qn * rn)
    if metric == "hamming":
        return np.mean(q != r, axis=2)
    if metric == "inner_product":
        # hnswlib's "ip" space: 1 - <q, r> (not a metric; for normalized embeddings).
        return 1.0 - _dot(q, r)
    if metric == "euclidean" or (metric == "minkowski" and p == 2):
        # einsum: no |q - r| and no squared copy (about half the time of the refinement).
        diff = q - r
        return np.sqrt(_dot(diff, diff))
    diff = np.abs(q - r)
    if metric == "manhattan":
        return diff.sum(axis=2)
    if metric == "chebyshev":
        return diff.max(axis=2) if diff.shape[2] else np.zeros(diff.shape[:2])
    if metric == "minkowski":
        if p == 1:
            return diff.sum(axis=2)
        return np.power(np.power(diff, p).sum(axis=2), 1.0 / p)
    raise ValueError(f"Unknown metric {metric!r}; expected one of {EXACT_METRICS}")


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot products along the last axis, broadcasting the first two."""
    a, b = np.broadcast_arrays(a, b)
    return np.einsum("ijk,ijk->ij", a, b)


def _safe_norm(norm: np.ndarray) -> np.ndarray:
    # scikit-learn leaves zero vectors at zero when normalizing, which makes
    # their cosine similarity 0 (distance 1) to everything.
    return np.where(norm == 0.0, 1.0, norm)
