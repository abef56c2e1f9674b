"""Matrix-product (GEMM) candidate forms of the metrics that have one.

A form turns a shard's rows and a block of queries into float32 operands whose
product ranks rows by a score that differs from the distance only by a per-query
constant and factor, so a compiled maximum-inner-product search (faiss-cpu's
``knn``: BLAS or SIMD dot products with the top-k selection fused in C++) picks
candidates; the float64 refinement in :mod:`knnspark.kernels.exact` then settles
them.  faiss only ranks: no distance it returns reaches a result.  Each form also says which queries
sit so close to the candidate boundary that float32 rounding may have reordered it.

A metric declares its form in :data:`knnspark.kernels.distances.METRICS`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

__all__ = ["COSINE", "INNER_PRODUCT", "SQUARED_L2", "GemmForm"]


class GemmForm(ABC):
    """How one metric's candidates come from a float32 matrix product."""

    @abstractmethod
    def prepare(self, features: np.ndarray) -> dict:
        """Per-shard precomputation; ``rows`` is the right-hand operand (n_rows, width)."""

    @abstractmethod
    def query_operand(self, queries: np.ndarray, prep: dict) -> np.ndarray:
        """Left-hand operand (n_queries, width): smaller product = nearer row."""

    @abstractmethod
    def near_boundary(
        self, queries: np.ndarray, prep: dict, kth: np.ndarray, last: np.ndarray, eps: float
    ) -> np.ndarray:
        """Queries whose k-th distance ``kth`` is within rounding of the last candidate's."""

    @abstractmethod
    def score_bound(
        self, queries: np.ndarray, prep: dict, distance: float, eps: float
    ) -> np.ndarray:
        """Per query, the largest product a row within ``distance`` can get, rounding included.

        Radius search keeps the rows whose float32 product is at most this bound as
        candidates; their float64 distances decide.
        """

    def candidates(
        self, queries: np.ndarray, prep: dict, n_cand: int, threads: int = 1
    ) -> np.ndarray:
        """Positions of the ``n_cand`` rows with the smallest product, per query.

        Parameters
        ----------
        queries : ndarray of shape (n_queries, n_features), float32
        prep : dict
            What :meth:`prepare` returned for the shard.
        n_cand : int, 1 <= n_cand <= n_rows
        threads : int
            faiss's OpenMP threads (and its BLAS's): the task's cores, so that concurrent
            tasks do not oversubscribe them.

        Returns
        -------
        ndarray of shape (n_queries, n_cand), int64, in no guaranteed order among ties
            (the refinement re-sorts, and redoes queries tied at the boundary).
        """
        import faiss  # here, not at the top: HNSW and tuning workers never load it

        # Smallest product = largest inner product with the negated query operand.
        operand = np.ascontiguousarray(-self.query_operand(queries, prep), dtype=np.float32)
        faiss.omp_set_num_threads(max(1, int(threads)))
        _, positions = faiss.knn(operand, prep["rows"], n_cand, metric=faiss.METRIC_INNER_PRODUCT)
        return positions.astype(np.int64, copy=False)


class _SquaredL2(GemmForm):
    """``|x|^2 - 2 q.x`` on features centred on the shard mean (accurate on offset data)."""

    def prepare(self, features: np.ndarray) -> dict:
        n_rows, width = features.shape
        mean = features.mean(axis=0, dtype=np.float64).astype(np.float32)
        # |x|^2 as a last column: the matrix product adds it (q gets a 1 there), sparing a
        # pass over every block of scores. Written in place: one copy of the shard, not two
        # (the first search of a model pays for this preparation in every worker).
        rows = np.empty((n_rows, width + 1), dtype=np.float32)
        centred = rows[:, :width]
        np.subtract(features, mean, out=centred)
        sq_norms = np.einsum("ij,ij->i", centred, centred)
        rows[:, width] = sq_norms
        return {
            "mean": mean,
            "rows": rows,
            "max_sq_norm": float(sq_norms.max()) if sq_norms.size else 0.0,
        }

    def query_operand(self, queries: np.ndarray, prep: dict) -> np.ndarray:
        ones = np.ones((len(queries), 1), np.float32)
        return np.hstack([-2.0 * (queries - prep["mean"]), ones])

    def near_boundary(self, queries, prep, kth, last, eps):
        centred = queries.astype(np.float64) - prep["mean"]
        scale = np.einsum("ij,ij->i", centred, centred) + prep["max_sq_norm"]
        return last**2 - kth**2 <= 2.0 * eps * scale

    def score_bound(self, queries, prep, distance, eps):
        # product = |q - x|^2 - |q|^2 on centred features.
        centred = queries.astype(np.float64) - prep["mean"]
        sq_norms = np.einsum("ij,ij->i", centred, centred)
        return distance**2 - sq_norms + 2.0 * eps * (sq_norms + prep["max_sq_norm"])


class _Angular(GemmForm):
    """``-q.x`` on unit vectors (zero vectors left at zero, as scikit-learn does)."""

    def prepare(self, features: np.ndarray) -> dict:
        norms = np.linalg.norm(features.astype(np.float64), axis=1)
        norms[norms == 0.0] = 1.0
        return {"rows": (features / norms[:, None]).astype(np.float32)}

    def query_operand(self, queries: np.ndarray, prep: dict) -> np.ndarray:
        norms = np.linalg.norm(queries, axis=1, keepdims=True)
        norms[norms == 0.0] = 1.0
        return -(queries / norms)

    def near_boundary(self, queries, prep, kth, last, eps):
        return last - kth <= 4.0 * eps

    def score_bound(self, queries, prep, distance, eps):
        # product = cosine distance - 1.
        return np.full(len(queries), distance - 1.0 + 4.0 * eps)


class _Dot(GemmForm):
    """``-q.x`` on the raw features."""

    def prepare(self, features: np.ndarray) -> dict:
        norms = np.linalg.norm(features.astype(np.float64), axis=1)
        return {
            "rows": np.ascontiguousarray(features, dtype=np.float32),
            "max_norm": float(norms.max()) if norms.size else 0.0,
        }

    def query_operand(self, queries: np.ndarray, prep: dict) -> np.ndarray:
        return -queries

    def near_boundary(self, queries, prep, kth, last, eps):
        norms = np.linalg.norm(queries.astype(np.float64), axis=1)
        return last - kth <= 2.0 * eps * norms * prep["max_norm"]

    def score_bound(self, queries, prep, distance, eps):
        # product = inner-product distance - 1.
        norms = np.linalg.norm(queries.astype(np.float64), axis=1)
        return distance - 1.0 + 2.0 * eps * (norms * prep["max_norm"] + 1.0)


SQUARED_L2: GemmForm = _SquaredL2()
COSINE: GemmForm = _Angular()
INNER_PRODUCT: GemmForm = _Dot()
