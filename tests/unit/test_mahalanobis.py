"""Covariance partials and the whitening behind metric='mahalanobis', against numpy/sklearn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import datasets
from sklearn.neighbors import NearestNeighbors

from knnspark.kernels.covariance import (
    CovariancePartial,
    merge_covariance_partials,
    whitening,
)
from knnspark.kernels.distances import get_metric
from knnspark.kernels.exact import ExactShard, exact_search


def test_merged_partials_give_numpy_covariance_on_offset_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 4)) * [1.0, 5.0, 0.1, 2.0] + 1e6
    blocks = np.array_split(x, [3, 250, 251, 700])
    merged = merge_covariance_partials([CovariancePartial.of(b) for b in blocks])
    assert merged.n == 1000
    np.testing.assert_allclose(merged.mean, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(merged.scatter / 999, np.cov(x.T), rtol=1e-8)


@pytest.mark.parametrize("loader", [datasets.load_iris, datasets.load_wine])
def test_whitened_euclidean_search_equals_sklearn_mahalanobis(loader):
    x = loader(return_X_y=True)[0].astype(np.float32).astype(np.float64)
    train, query = x[::2], x[1::2]
    w = whitening(CovariancePartial.of(train))
    vi = np.linalg.inv(np.cov(train.T))
    np.testing.assert_allclose(w.T @ w, vi, rtol=1e-8, atol=1e-10 * np.abs(vi).max())
    bias = w @ train.mean(axis=0)
    shard = ExactShard((train @ w.T - bias).astype(np.float32), np.arange(len(train)))
    k = 5
    dist, pos = exact_search(shard, (query @ w.T - bias).astype(np.float32), k, "mahalanobis")
    ref = NearestNeighbors(
        n_neighbors=k + 1, metric="mahalanobis", metric_params={"VI": vi}, algorithm="brute"
    )
    ref_dist, ref_pos = ref.fit(train).kneighbors(query)
    np.testing.assert_allclose(dist, ref_dist[:, :k], rtol=1e-5)
    clear = ref_dist[:, k] - ref_dist[:, k - 1] > 1e-5 * ref_dist[:, k]
    for row in np.flatnonzero(clear):
        assert set(pos[row]) == set(ref_pos[row, :k])


def test_too_few_rows_constant_and_collinear_features_are_refused():
    rng = np.random.default_rng(1)
    with pytest.raises(ValueError, match=r"has 3 features but only 3 valid training rows"):
        whitening(CovariancePartial.of(rng.normal(size=(3, 3))))
    x = rng.normal(size=(20, 3))
    x[:, 1] = 7.0
    with pytest.raises(ValueError, match=r"feature\(s\) \[1\] are constant"):
        whitening(CovariancePartial.of(x))
    x[:, 1] = 2 * x[:, 0] - x[:, 2]
    with pytest.raises(ValueError, match=r"singular or nearly so \(numerical rank 2 of 3"):
        whitening(CovariancePartial.of(x))


def test_table_entry_reuses_the_euclidean_paths():
    entry, euclidean = get_metric("mahalanobis"), get_metric("euclidean")
    assert entry.whitens and entry.gemm is euclidean.gemm
    assert entry.hnsw_space == "l2" and entry.distance is euclidean.distance
