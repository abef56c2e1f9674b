"""Balanced k-means and routed search (numpy kernels), against numpy brute force."""

from __future__ import annotations

import numpy as np
import pytest
import threadpoolctl
from sklearn.metrics import pairwise_distances

from knnspark.kernels.exact import ExactShard
from knnspark.kernels.kmeans import (
    _squared_distances,
    assign_shards,
    fit_balanced_kmeans,
    fit_sub_centroids,
)
from knnspark.kernels.routed import routed_search
from knnspark.kernels.routing import Router, shard_radius
from knnspark.kernels.shard import SearchOptions
from knnspark.kmeans_sharding import ShardRouting, one_blas_thread

K = 5


def clustered(n, d, centers, seed, spread=1.0):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centers, d)) * 6
    x = c[rng.integers(centers, size=n)] + rng.normal(size=(n, d)) * spread
    return x.astype(np.float32)


def routed_index(x, n_shards, metric="euclidean", p=2.0, seed=0):
    """Shards, router and ids as fit makes them (ids 0..n-1, shards in shard order)."""
    centroids, offsets = fit_balanced_kmeans(x.astype(np.float64), n_shards, seed)
    shard_of = assign_shards(x, centroids, offsets)
    radii = np.full(n_shards, -np.inf)
    shards = []
    for s in range(n_shards):
        rows = np.flatnonzero(shard_of == s)
        if rows.size:
            radii[s] = shard_radius(x[rows], centroids[s], metric, p)
            shards.append(ExactShard(x[rows], rows.astype(np.int64), (rows % 3).astype(float)))
    return shards, Router(centroids, radii, metric, p), shard_of


def brute(x, q, metric, p, k=K, allowed=None):
    kwargs = {"p": p} if metric == "minkowski" else {}
    dist = pairwise_distances(q.astype(np.float64), x.astype(np.float64), metric=metric, **kwargs)
    if allowed is not None:
        dist = np.where(allowed, dist, np.inf)
    order = np.lexsort((np.broadcast_to(np.arange(x.shape[0]), dist.shape), dist), axis=1)
    return order[:, :k], np.take_along_axis(dist, order[:, :k], axis=1)


def test_balanced_kmeans_caps_shards_of_skewed_data_and_is_deterministic():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(size=(3000, 4)), rng.normal(size=(500, 4)) + 8])
    first = fit_balanced_kmeans(x, 8, seed=3)
    again = fit_balanced_kmeans(x, 8, seed=3)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    counts = np.bincount(assign_shards(x, *first), minlength=8)
    assert counts.max() <= 1.5 * counts.mean()


def test_assignment_does_not_depend_on_the_batch():
    x = clustered(500, 6, 4, seed=2)
    centroids, offsets = fit_balanced_kmeans(x.astype(np.float64), 4, seed=0)
    whole = assign_shards(x, centroids, offsets)
    pieces = np.concatenate(
        [assign_shards(x[i : i + 7], centroids, offsets) for i in range(0, 500, 7)]
    )
    np.testing.assert_array_equal(whole, pieces)


@pytest.mark.parametrize("scale", [1e-5, 1.0, 1e5])
def test_assignment_is_the_exact_rule_near_ties_included(scale):
    """The GEMM-ranked assignment equals argmin of the float64 rule, one centroid at a time.

    Midpoints tie exactly, so only the rule's own rounding (``_squared_distances``) can
    referee them.
    """
    rng = np.random.default_rng(7)
    centroids = rng.normal(size=(6, 5)) * scale
    offsets = rng.normal(size=6) * scale**2
    midpoints = (centroids[:, None, :] + centroids[None, :, :]).reshape(-1, 5) / 2
    rows = np.concatenate([rng.normal(size=(300, 5)) * scale, centroids, midpoints])
    for b in (offsets, np.zeros(6)):
        cost = _squared_distances(rows, centroids) + b
        np.testing.assert_array_equal(assign_shards(rows, centroids, b), np.argmin(cost, axis=1))
    nearest = np.sort(cost, axis=1)
    assert (nearest[:, 1] - nearest[:, 0] <= 1e-9 * nearest[:, 1]).sum() >= 5  # ties were met


def test_identical_rows_fill_one_shard_and_the_others_stay_empty():
    x = np.ones((50, 3), dtype=np.float32)
    shards, router, shard_of = routed_index(x, 4)
    assert len(np.unique(shard_of)) == 1
    assert router.nonempty.sum() == 1 and len(shards) == 1
    dist, ids, _, visited = routed_search(shards, x[:3], K, SearchOptions(), router)
    np.testing.assert_array_equal(ids, np.tile(np.arange(K), (3, 1)))
    np.testing.assert_array_equal(dist, 0.0)
    np.testing.assert_array_equal(visited, 1)


@pytest.mark.parametrize(
    ("metric", "p"), [("euclidean", 2.0), ("manhattan", 1.0), ("minkowski", 3.0)]
)
def test_pruned_exact_search_equals_brute_force(metric, p):
    x = clustered(1200, 8, 6, seed=4)
    q = clustered(150, 8, 6, seed=4)[:150] + np.float32(0.3)
    shards, router, _ = routed_index(x, 6, metric, p)
    options = SearchOptions(metric=metric, p=p)
    dist, ids, labels, visited = routed_search(shards, q, K, options, router)
    ref_ids, ref_dist = brute(x, q, metric, p)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-9)
    np.testing.assert_array_equal(labels, ref_ids % 3)
    assert visited.mean() < 6  # pruning skipped shards
    assert visited.min() >= 1


@pytest.mark.parametrize("nprobe", [1, 2, 4])
def test_nprobe_equals_brute_force_restricted_to_the_nearest_shards(nprobe):
    x = clustered(900, 5, 8, seed=6, spread=2.0)
    q = clustered(100, 5, 8, seed=7, spread=2.0)
    shards, router, shard_of = routed_index(x, 6)
    dist, ids, _, visited = routed_search(shards, q, K, SearchOptions(), router, nprobe)
    probed = router.nearest(q, nprobe)
    allowed = (shard_of[None, :, None] == probed[:, None, :]).any(axis=2)
    ref_ids, ref_dist = brute(x, q, "euclidean", 2.0, allowed=allowed)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-9)
    np.testing.assert_array_equal(visited, nprobe)


def test_nprobe_tops_up_when_the_probed_shards_hold_fewer_than_k_rows():
    x = np.array([[0.0], [0.1], [10.0], [10.1], [10.2], [10.3], [10.4]], dtype=np.float32)
    router = Router(np.array([[0.05], [10.2]]), np.array([0.05, 0.2]), "euclidean")
    shards = [ExactShard(x[:2], np.arange(2), None), ExactShard(x[2:], np.arange(2, 7), None)]
    dist, ids, labels, visited = routed_search(
        shards, np.array([[0.0]], np.float32), 3, SearchOptions(), router, nprobe=1
    )
    assert ids.tolist() == [[0, 1, 2]] and labels is None
    assert visited.tolist() == [2]


def test_a_query_equidistant_from_two_centroids_goes_to_the_smaller_shard_first():
    x = np.array([[-2.0], [-1.0], [1.0], [2.0]], dtype=np.float32)
    router = Router(np.array([[-1.5], [1.5]]), np.array([0.5, 0.5]), "euclidean")
    shards = [ExactShard(x[:2], np.array([0, 1]), None), ExactShard(x[2:], np.array([2, 3]), None)]
    q = np.zeros((1, 1), dtype=np.float32)
    assert router.nearest(q, 1).tolist() == [[0]]
    _, ids, _, visited = routed_search(shards, q, 1, SearchOptions(), router, nprobe=1)
    assert ids.tolist() == [[1]] and visited.tolist() == [1]
    # Exact: the tie at distance 1 is broken by id, whichever shard holds it.
    dist, ids, _, visited = routed_search(shards, q, 2, SearchOptions(), router)
    assert ids.tolist() == [[1, 2]] and dist.tolist() == [[1.0, 1.0]]
    assert visited.tolist() == [2]


def test_empty_shards_are_never_visited():
    x = clustered(300, 4, 3, seed=8)
    shards, router, _ = routed_index(x, 3)
    # Shard 1 emptied: the list of shards skips it, and so does every plan.
    centroids = np.insert(router.centroids, 1, 1e6, axis=0)
    radii = np.insert(router.radii, 1, -np.inf)
    gapped = Router(centroids, radii, "euclidean")
    dist, ids, _, visited = routed_search(shards, x[:20], K, SearchOptions(), gapped)
    ref_ids, _ = brute(x, x[:20], "euclidean", 2.0)
    np.testing.assert_array_equal(ids, ref_ids)
    assert visited.max() <= 3
    _, _, _, visited = routed_search(shards, x[:20], K, SearchOptions(), gapped, nprobe=4)
    np.testing.assert_array_equal(visited, 3)


@pytest.mark.parametrize("metric", ["cosine", "inner_product"])
def test_metrics_that_cannot_prune_visit_every_shard(metric):
    x = clustered(400, 6, 4, seed=9)
    shards, router, _ = routed_index(x, 4, metric)
    assert not router.can_prune
    options = SearchOptions(metric=metric)
    dist, ids, _, visited = routed_search(shards, x[:30], K, options, router)
    np.testing.assert_array_equal(visited, 4)
    if metric == "cosine":
        ref_ids, _ = brute(x, x[:30], "cosine", 2.0)
        np.testing.assert_array_equal(ids, ref_ids)


def test_finer_balls_give_valid_and_tighter_bounds():
    x = clustered(2000, 8, 24, seed=12)  # several clusters per shard
    centroids, offsets = fit_balanced_kmeans(x.astype(np.float64), 4, seed=0)
    subs, sub_shards = fit_sub_centroids(x, centroids, offsets, seed=0)
    routing = ShardRouting(centroids, subs, sub_shards)
    shard_of = assign_shards(x, centroids, offsets)
    measured = {s: routing.measure(s, x[shard_of == s]) for s in np.unique(shard_of)}
    router = routing.router(
        {s: m[0] for s, m in measured.items()}, {s: m[1] for s, m in measured.items()}
    )
    q = clustered(200, 8, 24, seed=13)
    bounds = router.lower_bounds(q)
    coarse = router.centroid_distances(q) - router.radii
    full = pairwise_distances(q.astype(np.float64), x.astype(np.float64))
    for s in np.unique(shard_of):
        true_min = full[:, shard_of == s].min(axis=1)
        assert np.all(bounds[:, s] <= true_min + 1e-9)
    assert np.mean(bounds > coarse + 1e-9) > 0.5  # the balls tighten most bounds
    # The distributed measurement (per row) agrees with the build's (per shard).
    to_centroid, ball, to_ball = routing.row_distances(shard_of, x)
    for s, (radius, balls) in measured.items():
        assert np.isclose(to_centroid[shard_of == s].max(), radius)
        for i, sub in enumerate(routing.subs_of(s)):
            inside = to_ball[ball == sub]
            assert (inside.max() if inside.size else -np.inf) == pytest.approx(balls[i])


def test_the_driver_fit_runs_numpy_blas_on_one_thread():
    # More BLAS threads spin between the fit's small products, on cores Spark's tasks need.
    def blas_threads():
        return {
            p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"
        }

    before = blas_threads()
    with one_blas_thread():
        assert blas_threads() == {1}
    assert blas_threads() == before
