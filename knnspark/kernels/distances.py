"""The metric table, and distance functions with the meanings scikit-learn gives them.

:data:`METRICS` is the one place a metric is declared: its exact distance, its
matrix-product candidate form (if any), its hnswlib space (if any), whether it is a
true metric, the range its distances are clipped to, whether they can be negative (what
``weights="distance"`` needs), and the words the docs use.  Validation, error messages,
``algorithm="auto"`` and the README's metric table all read it, so a new metric is one
entry here plus its distance function and tests.

Final distances are always computed in float64 from the stored float32 features, one
(query, training row) pair at a time, so a distance does not depend on which other
rows shared its batch.  The fast float32 matrix-product forms
(:mod:`knnspark.kernels.gemm`) only pick candidates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from knnspark.kernels import gemm
from knnspark.kernels.gemm import GemmForm

__all__ = [
    "EXACT_METRICS",
    "METRICS",
    "Metric",
    "get_metric",
    "hnsw_metrics",
    "metric_table_markdown",
    "pair_distances",
]

# Bytes of float64 scratch space one pair_distances call may use.
_SCRATCH_BYTES = 8 * 1024 * 1024

#: (queries of shape (n, 1, d), rows of shape (n or 1, m, d), p) -> distances (n, m).
DistanceFn = Callable[[np.ndarray, np.ndarray, float], np.ndarray]


@dataclass(frozen=True)
class Metric:
    """One distance metric, as every layer of knnspark sees it.

    Attributes
    ----------
    name : str
        The value of the ``metric`` param.
    meaning : str
        The formula or reference, as the docs show it.
    distance : callable
        Exact float64 distances, see :data:`DistanceFn`.
    gemm : GemmForm or None
        Matrix-product candidate form; None computes every block exactly.
    hnsw_space : str or None
        hnswlib's space for this metric; None when HNSW cannot serve it.
    true_metric : bool
        Whether the triangle inequality holds (what shard pruning needs).
    min_p : float
        The triangle inequality holds only for ``p >= min_p`` (Minkowski).
    bounds : tuple of float or None
        The range the distances lie in; values rounding pushed outside it are clipped back
        on every path (exact, GEMM refinement, HNSW), as scikit-learn clips cosine distances
        to [0, 2].
    nonnegative : bool
        Whether every distance is >= 0, so ``weights="distance"`` (weight 1 / distance) and
        the kernel weightings are meaningful; False for similarities turned into distances,
        such as ``1 - q.x``.
    allows_nan : bool
        Whether NaN entries inside vectors are valid input (missing coordinates the distance
        skips); the training checks, the query checks and the scaling statistics read it.
    uses_p : bool
        Whether the distance reads the param ``p`` (param maps that differ only in ``p`` share
        one search otherwise).
    whitens : bool
        Whether ``fit`` whitens the rows with the training covariance
        (:mod:`knnspark.kernels.covariance`) so that :attr:`distance` and :attr:`gemm`, applied
        to the whitened rows, give this metric (Mahalanobis as euclidean).
    """

    name: str
    meaning: str
    distance: DistanceFn
    gemm: GemmForm | None = None
    hnsw_space: str | None = None
    true_metric: bool = False
    min_p: float = 0.0
    bounds: tuple[float, float] | None = None
    nonnegative: bool = True
    allows_nan: bool = False
    whitens: bool = False
    uses_p: bool = False

    def clip(self, dist: np.ndarray) -> np.ndarray:
        """``dist`` clipped to :attr:`bounds` (in place when it is a float64 array)."""
        if self.bounds is None:
            return dist
        return np.clip(dist, *self.bounds, out=dist if dist.dtype == np.float64 else None)

    def is_true_metric(self, p: float = 2.0) -> bool:
        """Whether the triangle inequality holds for this metric at power ``p``."""
        return self.true_metric and p >= self.min_p


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot products along the last axis, broadcasting the first two."""
    a, b = np.broadcast_arrays(a, b)
    return np.einsum("ijk,ijk->ij", a, b)


def _euclidean(q: np.ndarray, r: np.ndarray, p: float) -> np.ndarray:
    # einsum: no |q - r| and no squared copy (about half the time of the refinement).
    diff = q - r
    return np.sqrt(_dot(diff, diff))


def _manhattan(q: np.ndarray, r: np.ndarray, p: float) -> np.ndarray:
    return np.abs(q - r).sum(axis=2)


def _chebyshev(q: np.ndarray, r: np.ndarray, p: float) -> np.ndarray:
    diff = np.abs(q - r)
    return diff.max(axis=2) if diff.shape[2] else np.zeros(diff.shape[:2])


def _minkowski(q: np.ndarray, r: np.ndarray, p: float) -> np.ndarray:
    if p == 2:
        return _euclidean(q, r, p)
    if p == 1:
        return _manhattan(q, r, p)
    # Scaled by the largest |q - x| of each pair, m * sum((|q - x| / m)^p)^(1/p): every
    # ratio is <= 1 and one is exactly 1, so no power overflows (huge values, large p) or
    # underflows the whole sum (small differences, large p); p -> inf tends to chebyshev.
    diff = np.abs(q - r)
    if not diff.shape[2]:
        return np.zeros(diff.shape[:2])
    largest = diff.max(axis=2)
    scale = np.where(largest > 0.0, largest, 1.0)
    np.divide(diff, scale[:, :, None], out=diff)
    np.power(diff, p, out=diff)
    return largest * np.power(diff.sum(axis=2), 1.0 / p)


def _cosine(q: np.ndarray, r: np.ndarray, p: float) -> np.ndarray:
    # 1 - q.x / sqrt(|q|^2 |x|^2): sqrt(fl(a * a)) == a in IEEE arithmetic, so a vector and
    # itself are exactly 0 apart (1 - q.x / (|q| |x|) gives them +-2e-16). Rounding can still
    # leave other pairs just outside [0, 2]; the table's bounds clip them, as scikit-learn does.
    sq = _dot(q, q) * _dot(r, r)
    # scikit-learn leaves zero vectors at zero when normalizing: similarity 0, distance 1.
    return 1.0 - _dot(q, r) / np.sqrt(np.where(sq == 0.0, 1.0, sq))


def _hamming(q: np.ndarray, r: np.ndarray, p: float) -> np.ndarray:
    return np.mean(q != r, axis=2)


def _inner_product(q: np.ndarray, r: np.ndarray, p: float) -> np.ndarray:
    return 1.0 - _dot(q, r)


def _nan_euclidean(q: np.ndarray, r: np.ndarray, p: float) -> np.ndarray:
    # scikit-learn's nan_euclidean_distances: sqrt(n_features / n_present * sum over the
    # coordinates present in both of (q - x)^2). A pair with no coordinate present in both
    # has no distance (scikit-learn: NaN, which its sort puts last); here +inf, so the
    # selection and the merge order it last too.
    diff = q - r
    missing = np.isnan(diff)
    np.copyto(diff, 0.0, where=missing)  # twice as fast as diff[missing] = 0.0
    present = diff.shape[2] - np.count_nonzero(missing, axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = np.sqrt(_dot(diff, diff) * (diff.shape[2] / present))
    dist[present == 0] = np.inf
    return dist


#: Every metric knnspark supports, by name (the order the docs list them in).
METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("euclidean", "`sqrt(sum((q - x)^2))`", _euclidean, gemm.SQUARED_L2, "l2", True),
        Metric("manhattan", "`sum(abs(q - x))`", _manhattan, true_metric=True),
        Metric("chebyshev", "`max(abs(q - x))`", _chebyshev, true_metric=True),
        Metric(
            "minkowski",
            "`sum(abs(q - x)^p)^(1/p)`, with param `p`",
            _minkowski,
            true_metric=True,
            min_p=1.0,
            uses_p=True,
        ),
        Metric(
            "cosine",
            "`1 - q.x / (norm(q) norm(x))` in [0, 2] (zero vectors: 1)",
            _cosine,
            gemm.COSINE,
            "cosine",
            bounds=(0.0, 2.0),
        ),
        Metric("hamming", "share of coordinates that differ", _hamming, true_metric=True),
        Metric(
            "inner_product",
            "`1 - q.x` (hnswlib's `ip`; for normalized embeddings)",
            _inner_product,
            gemm.INNER_PRODUCT,
            "ip",
            nonnegative=False,
        ),
        Metric(
            "mahalanobis",
            "`sqrt((q - x)^T VI (q - x))`, VI the inverse of the training rows' sample "
            "covariance; euclidean on rows whitened at fit",
            _euclidean,
            gemm.SQUARED_L2,
            "l2",
            True,
            whitens=True,
        ),
        Metric(
            "nan_euclidean",
            "`sqrt(d / n_present * sum((q - x)^2))` over the coordinates present (not NaN) in "
            "both, as scikit-learn's `nan_euclidean_distances`; none in common: +inf",
            _nan_euclidean,
            allows_nan=True,
        ),
    )
}

#: Names of every supported metric (exact search serves them all).
EXACT_METRICS: tuple[str, ...] = tuple(METRICS)


def get_metric(name: str) -> Metric:
    """The table entry of ``name``; a ValueError naming the valid metrics otherwise.

    Examples
    --------
    >>> get_metric("cosine").hnsw_space
    'cosine'
    """
    try:
        return METRICS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown metric {name!r}; expected one of {', '.join(repr(m) for m in METRICS)}"
        ) from None


def hnsw_metrics() -> tuple[str, ...]:
    """Metrics that hnswlib can serve (they have an hnswlib space)."""
    return tuple(name for name, m in METRICS.items() if m.hnsw_space is not None)


def metric_table_markdown() -> str:
    """The README's metric table, made from :data:`METRICS`."""
    lines = [
        "| `metric` | distance | exact candidates | HNSW | true metric | weights but uniform "
        "| NaN entries |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for m in METRICS.values():
        candidates = "float32 GEMM, float64 refinement" if m.gemm else "float64 blocks"
        hnsw = f"yes (`{m.hnsw_space}`)" if m.hnsw_space else "no"
        true = ("yes" if not m.min_p else f"for p >= {m.min_p:g}") if m.true_metric else "no"
        weighting = "yes" if m.nonnegative else "no (distances can be negative)"
        nan = "missing coordinates" if m.allows_nan else "invalid"
        lines.append(
            f"| `{m.name}` | {m.meaning} | {candidates} | {hnsw} | {true} | {weighting} | {nan} |"
        )
    return "\n".join(lines)


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
        A name in :data:`METRICS`.
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
    entry = get_metric(metric)
    distance = entry.distance
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
        out[start:stop] = distance(q, r.astype(np.float64, copy=False), p)
    return entry.clip(out)
