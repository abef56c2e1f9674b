"""metric='nan_euclidean' in the exact kernel against scikit-learn's nan_euclidean_distances."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import datasets
from sklearn.metrics.pairwise import nan_euclidean_distances
from sklearn.neighbors import NearestNeighbors

from knnspark.kernels.distances import get_metric, pair_distances
from knnspark.kernels.exact import ExactShard, exact_search
from knnspark.kernels.hnsw import HnswShard


def with_nans(loader, share=0.2, seed=0):
    x = loader(return_X_y=True)[0].astype(np.float32)
    x[np.random.default_rng(seed).random(x.shape) < share] = np.nan
    return x


@pytest.mark.parametrize("loader", [datasets.load_iris, datasets.load_breast_cancer])
def test_exact_search_matches_sklearn(loader):
    x = with_nans(loader)
    train, query = x[::2], x[1::2]
    k = 6
    dist, pos = exact_search(ExactShard(train, np.arange(len(train))), query, k, "nan_euclidean")
    ref = NearestNeighbors(n_neighbors=k + 1, metric="nan_euclidean", algorithm="brute")
    ref_dist, ref_pos = ref.fit(train.astype(np.float64)).kneighbors(query.astype(np.float64))
    np.testing.assert_allclose(dist, ref_dist[:, :k], rtol=1e-6, atol=1e-6)
    clear = ref_dist[:, k] - ref_dist[:, k - 1] > 1e-6 * ref_dist[:, k]
    assert clear.mean() > 0.5
    for row in np.flatnonzero(clear):
        assert set(pos[row]) == set(ref_pos[row, :k])


def test_pair_distances_equal_sklearn_and_complete_rows_are_euclidean():
    x = with_nans(datasets.load_wine).astype(np.float64)
    ours = pair_distances(x[:20], x, "nan_euclidean")
    np.testing.assert_allclose(
        ours, nan_euclidean_distances(x[:20], x), rtol=1e-9, atol=1e-4
    )  # sklearn: X.Y cancellation
    full = np.random.default_rng(1).normal(size=(5, 4))
    np.testing.assert_allclose(
        pair_distances(full, full, "nan_euclidean"), pair_distances(full, full, "euclidean")
    )


def test_rows_without_a_shared_coordinate_are_infinitely_far_and_sort_last():
    nan = np.nan
    train = np.array([[nan, 1.0], [5.0, 5.0], [nan, 9.0]], dtype=np.float32)
    query = np.array([[0.0, nan]], dtype=np.float32)
    dist, pos = exact_search(ExactShard(train, np.arange(3)), query, 3, "nan_euclidean")
    np.testing.assert_allclose(dist, [[np.sqrt(2 * 25.0), np.inf, np.inf]])
    np.testing.assert_array_equal(pos, [[1, 0, 2]])


def test_table_entry():
    entry = get_metric("nan_euclidean")
    assert entry.allows_nan and entry.gemm is None and entry.hnsw_space is None
    assert not HnswShard.supports_metric("nan_euclidean")
    assert not get_metric("euclidean").allows_nan
