"""The exact radius kernel against scikit-learn's brute-force radius_neighbors."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import pairwise_distances
from sklearn.neighbors import NearestNeighbors as SkNearestNeighbors

from knnspark.kernels import radius as radius_module
from knnspark.kernels.exact import ExactShard
from knnspark.kernels.kmeans import assign_shards, fit_balanced_kmeans
from knnspark.kernels.radius import merge_radius_lists, radius_search, shards_within_radius
from knnspark.kernels.routing import Router, shard_radius


def _data(n=3000, d=8, seed=3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(5, d))
    x = (centres[rng.integers(0, 5, n)] + rng.normal(size=(n, d))).astype(np.float32)
    q = (centres[rng.integers(0, 5, 200)] + rng.normal(size=(200, d))).astype(np.float32)
    return x, q


def _lists(found, i):
    part = slice(found.offsets[i], found.offsets[i + 1])
    return found.ids[part], found.dist[part]


@pytest.mark.parametrize(
    "metric, radius",
    [
        ("euclidean", 2.5),
        ("cosine", 0.05),
        ("manhattan", 5.0),
        ("chebyshev", 1.2),
        ("minkowski", 2.0),
    ],
)
def test_radius_search_equals_sklearn(metric, radius):
    x, q = _data()
    kwargs = {"p": 3.0} if metric == "minkowski" else {}
    ref = SkNearestNeighbors(algorithm="brute", metric=metric, **kwargs).fit(x.astype(np.float64))
    ref_dist, ref_ids = ref.radius_neighbors(q.astype(np.float64), radius, sort_results=True)
    found = radius_search(ExactShard(x, np.arange(len(x))), q, radius, metric, p=3.0)
    assert found.ids.size > len(q)  # the radius holds something to compare
    for i in range(len(q)):
        ids, dist = _lists(found, i)
        np.testing.assert_allclose(dist, ref_dist[i], rtol=1e-9, atol=1e-12)
        assert sorted(ids) == sorted(ref_ids[i])
        # Nearest first, ties to the smaller id.
        assert np.all(np.lexsort((ids, dist)) == np.arange(len(ids)))
    assert np.array_equal(found.counts, [len(r) for r in ref_ids])


def test_boundary_is_inclusive():
    # Distance exactly 1.0 (representable): inside, as scikit-learn's `<= radius`.
    shard = ExactShard(np.array([[0.0], [1.0], [2.0]], dtype=np.float32), np.array([4, 5, 6]))
    found = radius_search(shard, np.array([[0.0]], dtype=np.float32), 1.0)
    assert found.ids.tolist() == [0, 1] and found.dist.tolist() == [0.0, 1.0]
    ref = SkNearestNeighbors(radius=1.0).fit([[0.0], [1.0], [2.0]])
    assert ref.radius_neighbors([[0.0]], sort_results=True)[1][0].tolist() == [0, 1]


def test_limit_keeps_the_nearest_and_flags_truncation(monkeypatch):
    # Small row blocks: the running lists are folded to the limit after every block.
    monkeypatch.setattr(radius_module, "ROW_BLOCK", 97)
    monkeypatch.setattr(radius_module, "QUERY_BLOCK", 33)
    x, q = _data()
    ref = SkNearestNeighbors(n_neighbors=6, algorithm="brute").fit(x.astype(np.float64))
    ref_dist, ref_ids = ref.kneighbors(q.astype(np.float64))
    found = radius_search(ExactShard(x, np.arange(len(x))), q, 1e6, limit=6)
    assert np.array_equal(found.ids.reshape(-1, 6), ref_ids)
    np.testing.assert_allclose(found.dist.reshape(-1, 6), ref_dist, rtol=1e-9)
    assert found.truncated.all() and (found.counts == len(x)).all()
    small = radius_search(ExactShard(x, np.arange(len(x))), q, 0.5, limit=6)
    assert np.array_equal(small.truncated, small.counts > 6)


def test_no_neighbors_and_no_queries():
    shard = ExactShard(np.zeros((3, 2), dtype=np.float32), np.arange(3))
    far = radius_search(shard, np.full((2, 2), 9.0, dtype=np.float32), 1.0)
    assert far.offsets.tolist() == [0, 0, 0] and far.counts.tolist() == [0, 0]
    none = radius_search(shard, np.empty((0, 2), dtype=np.float32), 1.0)
    assert none.offsets.tolist() == [0] and none.ids.size == 0


def test_merge_orders_by_distance_then_id():
    lists = merge_radius_lists(
        np.array([0, 0, 0, 1]),
        np.array([9, 2, 5, 1]),
        np.array([0.3, 0.3, 0.1, 0.0]),
        np.array([3, 1]),
        limit=None,
    )
    assert lists.offsets.tolist() == [0, 3, 4]
    assert lists.ids.tolist() == [5, 2, 9, 1]
    assert not lists.truncated.any()


def test_shards_within_radius_keep_every_shard_with_a_row_within():
    x, q = _data(n=1200, d=4)
    centroids, offsets = fit_balanced_kmeans(x.astype(np.float64), 8, seed=0)
    shard_of = assign_shards(x, centroids, offsets)
    radii = [shard_radius(x[shard_of == s], centroids[s], "euclidean") for s in range(8)]
    router = Router(centroids, np.array(radii), "euclidean")
    dist = pairwise_distances(q.astype(np.float64), x.astype(np.float64))
    # One radius per query at the exact distance of a row: that row's shard must be kept.
    at_row = np.sort(dist, axis=1)[:, 5]
    for radius in (0.5, 2.0, at_row[0], 6.0):
        todo = shards_within_radius(router, q, radius)
        holds = np.zeros_like(todo)
        rows_q, rows_x = np.nonzero(dist <= radius)
        holds[rows_q, shard_of[rows_x]] = True
        assert not (holds & ~todo).any()
        assert todo[np.arange(len(q)), router.nearest(q, 1)[:, 0]].all()  # at least one
        assert (todo[:, router.nonempty].sum(axis=1) >= 1).all()
    assert shards_within_radius(router, q, 0.5).sum(axis=1).mean() < 3  # most are skipped
    # Not a true metric: no bound holds, every shard is searched.
    cosine = Router(router.centroids, router.radii, "cosine")
    assert shards_within_radius(cosine, q, 1e-3).all()


def test_shards_within_radius_never_lists_an_empty_shard():
    router = Router(np.array([[0.0], [5.0], [9.0]]), np.array([1.0, -np.inf, 1.0]), "euclidean")
    todo = shards_within_radius(router, np.array([[5.0], [4.0]]), 100.0)
    assert todo.tolist() == [[True, False, True], [True, False, True]]
