"""Exact search and distances against scikit-learn's brute force."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import pairwise_distances
from sklearn.neighbors import NearestNeighbors as SkNearestNeighbors

from knnspark.kernels import exact as exact_module
from knnspark.kernels.distances import EXACT_METRICS, get_metric, pair_distances
from knnspark.kernels.exact import ExactShard, exact_search

# Mahalanobis is euclidean on rows whitened at fit: tests/unit/test_mahalanobis.py.
SKLEARN_METRICS = [m for m in EXACT_METRICS if m != "inner_product" and not get_metric(m).whitens]


def _data(metric, n_train=300, n_query=40, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    train = rng.normal(size=(n_train, dim)).astype(np.float32)
    query = rng.normal(size=(n_query, dim)).astype(np.float32)
    if metric == "hamming":
        train, query = (train > 0).astype(np.float32), (query > 0).astype(np.float32)
    return train, query


def _sk_params(metric):
    return {"metric": metric, "p": 3} if metric == "minkowski" else {"metric": metric}


@pytest.mark.parametrize("metric", SKLEARN_METRICS)
def test_pair_distances_match_sklearn(metric):
    train, query = _data(metric)
    ours = pair_distances(query, train, metric, p=3)
    ref = pairwise_distances(
        query.astype(np.float64), train.astype(np.float64), **_sk_params(metric)
    )
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("metric", SKLEARN_METRICS)
def test_exact_search_matches_sklearn(metric):
    train, query = _data(metric)
    k = 7
    dist, pos = exact_search(ExactShard(train, np.arange(len(train))), query, k, metric, p=3)
    ref = SkNearestNeighbors(n_neighbors=k, algorithm="brute", **_sk_params(metric))
    ref_dist, ref_idx = ref.fit(train.astype(np.float64)).kneighbors(query.astype(np.float64))
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-6, atol=1e-6)
    # Ids follow the (distance, id) rule, which settles hamming's many exact ties.
    full = np.round(pairwise_distances(query, train, **_sk_params(metric)), 9)
    expected = np.array([np.lexsort((np.arange(len(train)), row))[:k] for row in full])
    np.testing.assert_array_equal(pos, expected)
    if metric != "hamming":  # continuous data has no ties: sklearn's ids agree too
        np.testing.assert_array_equal(pos, ref_idx)


def test_inner_product_is_one_minus_dot():
    train, query = _data("euclidean")
    ref = 1.0 - query.astype(np.float64) @ train.astype(np.float64).T
    np.testing.assert_allclose(pair_distances(query, train, "inner_product"), ref, atol=1e-9)
    dist, pos = exact_search(ExactShard(train, np.arange(len(train))), query, 5, "inner_product")
    np.testing.assert_array_equal(pos, np.argsort(ref, axis=1, kind="stable")[:, :5])
    np.testing.assert_allclose(dist, np.sort(ref, axis=1)[:, :5], atol=1e-9)


def test_exact_search_ties_go_to_smaller_id():
    # Four identical training rows: every query ties on all of them.
    train = np.ones((4, 3), dtype=np.float32)
    shard = ExactShard(train, np.array([40, 10, 30, 20]))
    dist, pos = exact_search(shard, np.zeros((2, 3), dtype=np.float32), 2)
    np.testing.assert_array_equal(shard.ids[pos], [[10, 20], [10, 20]])


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "inner_product"])
@pytest.mark.parametrize("threads", [1, 2])
def test_gemm_candidates_agree_with_float64_blocks(metric, threads):
    # The compiled candidate search (faiss) plus refinement gives what exact float64
    # blocks over the whole shard give, whatever its thread count.
    train, query = _data(metric, n_train=2000, n_query=300, dim=16, seed=3)
    shard = ExactShard(train, np.arange(len(train)))
    dist, pos = exact_search(shard, query, 10, metric, threads=threads)
    ref_dist, ref_pos = exact_module._direct_topk(shard, query, 10, metric, 2.0)
    np.testing.assert_array_equal(pos, ref_pos)
    np.testing.assert_array_equal(dist, ref_dist)


def test_exact_search_survives_float32_overflow_of_scores():
    # |x|^2 overflows float32 in the candidate scores; the neighbors must still be exact.
    train = np.array([[3e19, 0.0], [-3e19, 0.0], [1.0, 1.0], [2.0, 2.0], [5.0, 5.0]] * 4)
    shard = ExactShard(train.astype(np.float32), np.arange(len(train)))
    query = np.array([[1.0, 1.0], [3e19, 1.0]], dtype=np.float32)
    dist, pos = exact_search(shard, query, 2)
    ref = np.linalg.norm(train[None, :, :] - query[:, None, :].astype(np.float64), axis=2)
    np.testing.assert_array_equal(pos, np.argsort(ref, axis=1, kind="stable")[:, :2])


def test_exact_search_small_shard_returns_all_rows():
    shard = ExactShard(np.array([[0.0], [2.0]], dtype=np.float32), np.array([5, 6]))
    dist, pos = exact_search(shard, np.array([[1.9]], dtype=np.float32), 5)
    assert dist.shape == (1, 2)
    np.testing.assert_array_equal(shard.ids[pos], [[6, 5]])


def test_exact_match_distance_is_exactly_zero():
    rng = np.random.default_rng(4)
    train = (rng.normal(size=(500, 32)) * 1000 + 5000).astype(np.float32)
    dist, pos = exact_search(ExactShard(train, np.arange(500)), train[:50], 1)
    np.testing.assert_array_equal(dist[:, 0], 0.0)
    np.testing.assert_array_equal(pos[:, 0], np.arange(50))


def test_exact_search_rejects_unknown_metric():
    shard = ExactShard(np.zeros((2, 2), dtype=np.float32), np.arange(2))
    with pytest.raises(ValueError, match="Unknown metric 'cityblock'"):
        exact_search(shard, np.zeros((1, 2), dtype=np.float32), 1, "cityblock")


def test_shard_rejects_duplicate_ids():
    with pytest.raises(ValueError, match="ids within a shard must be unique"):
        ExactShard(np.zeros((3, 2), dtype=np.float32), np.array([2, 1, 2]))


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "inner_product"])
def test_exact_ties_follow_ids_whatever_the_sharding(metric):
    # Integer grid: thousands of exact distance ties, more than the float32 pass keeps.
    rng = np.random.default_rng(8)
    train = rng.integers(0, 3, size=(9000, 8)).astype(np.float32)
    query = rng.integers(0, 3, size=(300, 8)).astype(np.float32)
    ids = rng.permutation(9000) * 2
    k = 5
    dist, pos = exact_search(ExactShard(train, ids), query, k, metric)
    order = np.argsort(ids)
    ref = pair_distances(query, train[order], metric)
    ref_idx = np.array([np.lexsort((ids[order], np.round(row, 9)))[:k] for row in ref])
    np.testing.assert_array_equal(ExactShard(train, ids).ids[pos], ids[order][ref_idx])
    # Four shards merged give the same lists.
    parts = [ExactShard(train[s::4], ids[s::4]) for s in range(4)]
    lists = [(exact_search(sh, query, k, metric), sh) for sh in parts]
    merged_d = np.concatenate([d for (d, _), _ in lists], axis=1)
    merged_i = np.concatenate([sh.ids[p] for (_, p), sh in lists], axis=1)
    from knnspark.kernels.topk import select_topk

    _, merged_ids, _ = select_topk(merged_d, merged_i, k)
    np.testing.assert_array_equal(merged_ids, ids[order][ref_idx])
