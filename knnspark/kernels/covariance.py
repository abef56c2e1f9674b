"""Sample covariance from partial sums, and the whitening that turns Mahalanobis into L2.

``metric="mahalanobis"`` measures ``sqrt((q - x)^T VI (q - x))`` with ``VI`` the inverse of the
training rows' sample covariance. Writing ``VI = W^T W``, that is the euclidean distance between
``W q`` and ``W x``: knnspark whitens training and query rows once (``x -> W (x - mean)``; the
shift changes no distance and keeps the float32 storage accurate), and every euclidean path,
GEMM candidates and HNSW graphs included, then serves the metric.

Covariance comes from per-partition partials (rows, mean, centred scatter matrix) merged with
the pairwise update of Chan, Golub and LeVeque, which stays accurate on data far from the
origin. ``W`` comes from the eigen-decomposition of the correlation matrix (scale-free, so
features of very different magnitudes do not count as near-singular); a covariance that is
singular, or as good as singular, is an error: knnspark does not silently use a
pseudo-inverse, which would ignore the directions in which the training rows do not vary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CovariancePartial", "merge_covariance_partials", "whitening"]

#: Smallest eigenvalue of the correlation matrix, relative to the largest, that counts as
#: invertible: below it, float32 features could not carry the whitened coordinates.
SINGULAR_RTOL = 1e-7


@dataclass(frozen=True)
class CovariancePartial:
    """Rows, mean and centred scatter matrix ``sum((x - mean)(x - mean)^T)`` of a block."""

    n: int
    mean: np.ndarray  # (d,)
    scatter: np.ndarray  # (d, d)

    @classmethod
    def of(cls, block: np.ndarray) -> CovariancePartial:
        """The partial of ``block`` of shape (n_rows, d), computed in float64.

        Examples
        --------
        >>> part = CovariancePartial.of(np.array([[0.0, 1.0], [2.0, 3.0]]))
        >>> part.n, part.mean, part.scatter
        (2, array([1., 2.]), array([[2., 2.],
               [2., 2.]]))
        """
        block = np.asarray(block, dtype=np.float64)
        mean = block.mean(axis=0) if len(block) else np.zeros(block.shape[1])
        centred = block - mean
        return cls(int(len(block)), mean, centred.T @ centred)


def merge_covariance_partials(parts: list[CovariancePartial]) -> CovariancePartial:
    """One partial for the union of the blocks (Chan et al.'s pairwise update).

    Examples
    --------
    >>> x = np.arange(12.0).reshape(6, 2) ** 2
    >>> parts = [CovariancePartial.of(x[:2]), CovariancePartial.of(x[2:])]
    >>> merged = merge_covariance_partials(parts)
    >>> bool(np.allclose(merged.scatter / 5, np.cov(x.T)))
    True
    """
    total = None
    for part in parts:
        if part.n == 0:
            continue
        if total is None:
            total = part
            continue
        n = total.n + part.n
        delta = part.mean - total.mean
        mean = total.mean + delta * (part.n / n)
        scatter = total.scatter + part.scatter + np.outer(delta, delta) * (total.n * part.n / n)
        total = CovariancePartial(n, mean, scatter)
    if total is None:
        raise ValueError("no rows to compute a covariance from")
    return total


def whitening(partial: CovariancePartial, features_col: str = "features") -> np.ndarray:
    """``W`` with ``W^T W`` = the inverse of the sample covariance of the merged rows.

    Parameters
    ----------
    partial : CovariancePartial
        All training rows, merged.
    features_col : str
        Named in the error messages.

    Returns
    -------
    ndarray of shape (d, d)

    Raises
    ------
    ValueError
        With fewer than ``d + 1`` rows, a constant feature, or a (numerically) singular
        covariance: the message names the features or the rank.

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(50, 3))
    >>> w = whitening(CovariancePartial.of(x))
    >>> bool(np.allclose(w.T @ w, np.linalg.inv(np.cov(x.T))))
    True
    """
    d = partial.scatter.shape[0]
    if partial.n <= d:
        raise ValueError(
            f"metric='mahalanobis' needs more training rows than features to invert their "
            f"covariance: column '{features_col}' (param featuresCol) has {d} features but "
            f"only {partial.n} valid training rows (at least {d + 1} needed)."
        )
    cov = partial.scatter / (partial.n - 1)
    var = np.diag(cov).copy()
    constant = np.flatnonzero(~(var > 0.0))
    if constant.size:
        raise ValueError(
            f"metric='mahalanobis': the covariance of column '{features_col}' (param "
            f"featuresCol) is singular: feature(s) {constant[:10].tolist()} are constant in "
            "the training rows. Drop them (knnspark does not use a pseudo-inverse)."
        )
    scale = 1.0 / np.sqrt(var)
    corr = cov * np.outer(scale, scale)
    eigval, eigvec = np.linalg.eigh(corr)
    if not eigval[0] > SINGULAR_RTOL * eigval[-1]:
        rank = int(np.sum(eigval > SINGULAR_RTOL * eigval[-1]))
        raise ValueError(
            f"metric='mahalanobis': the covariance of column '{features_col}' (param "
            f"featuresCol) is singular or nearly so (numerical rank {rank} of {d}: some "
            "features are linear combinations of others). Drop or combine them, e.g. with "
            "pyspark.ml.feature.PCA (knnspark does not use a pseudo-inverse)."
        )
    # VI = D^-1/2 corr^-1 D^-1/2 = W^T W with W = diag(eigval^-1/2) U^T D^-1/2.
    return (eigvec / np.sqrt(eigval)).T * scale[None, :]
