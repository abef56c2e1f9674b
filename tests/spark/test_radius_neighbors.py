"""radius_neighbors against scikit-learn's radius_neighbors(sort_results=True)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import datasets
from sklearn.neighbors import NearestNeighbors as SkNearestNeighbors

from knnspark import NearestNeighbors
from knnspark.kernels.radius import shards_within_radius
from knnspark.search import QUERY_BYTES_CONF

# Radii that hold a few to a few dozen rows; none lies on a distance of the data.
RADII = {"iris": 0.45, "wine": 25.0, "digits": 22.5}


def _data(name):
    x = getattr(datasets, f"load_{name}")(return_X_y=True)[0].astype(np.float32)
    test = np.arange(len(x)) % 4 == 0
    return x[~test], x[test]


def _check_equal(got, x_train, x_test, radius, metric="euclidean", cap=None, boundary=False):
    ref = SkNearestNeighbors(algorithm="brute", metric=metric).fit(x_train.astype(np.float64))
    ref_dist, ref_pos = ref.radius_neighbors(x_test.astype(np.float64), radius, sort_results=True)
    for (ids, dist, truncated), r_dist, r_pos in zip(got, ref_dist, ref_pos, strict=True):
        # Away from the boundary both libraries decide every row the same way; on it, only
        # with distances both compute exactly (``boundary``).
        assert boundary or not np.any(np.isclose(r_dist, radius, rtol=1e-6))
        keep = len(r_pos) if cap is None else min(cap, len(r_pos))
        assert truncated == (keep < len(r_pos))
        np.testing.assert_allclose(dist, r_dist[:keep], rtol=1e-6, atol=1e-9)
        if cap is None:
            assert sorted(ids) == sorted(r_pos)
        assert np.all(np.lexsort((ids, dist)) == np.arange(len(ids)))


@pytest.mark.parametrize(
    "dataset",
    [
        "iris",
        pytest.param("wine", marks=pytest.mark.slow),
        pytest.param("digits", marks=pytest.mark.slow),
    ],
)
def test_radius_neighbors_equal_sklearn(spark, dataset):
    x_train, x_test = _data(dataset)
    train = spark.createDataFrame(pd.DataFrame({"features": list(x_train)}))
    queries = spark.createDataFrame(
        pd.DataFrame({"q": np.arange(len(x_test)), "features": list(x_test)})
    )
    radius = RADII[dataset]
    for extra in ({}, {"maxBroadcastBytes": 0}):
        model = NearestNeighbors(numShards=3, **extra).fit(train)
        out = model.radius_neighbors(queries, radius).toPandas().sort_values("q")
        assert list(out.columns) == ["q", "features", "neighbor_ids", "distances", "truncated"]
        got = zip(out["neighbor_ids"], out["distances"], out["truncated"], strict=True)
        _check_equal(got, x_train, x_test, radius)
        assert sum(len(ids) for ids in out["neighbor_ids"]) > len(x_test)


def test_cap_and_cosine(spark):
    x_train, x_test = _data("wine")
    train = spark.createDataFrame(pd.DataFrame({"features": list(x_train)}))
    queries = spark.createDataFrame(
        pd.DataFrame({"q": np.arange(len(x_test)), "features": list(x_test)})
    )
    model = NearestNeighbors(metric="cosine", numShards=2).fit(train)
    out = model.radius_neighbors(queries, 1e-4, maxNeighbors=3, truncatedCol="cut")
    pdf = out.toPandas().sort_values("q")
    got = zip(pdf["neighbor_ids"], pdf["distances"], pdf["cut"], strict=True)
    _check_equal(got, x_train, x_test, 1e-4, metric="cosine", cap=3)
    assert pdf["cut"].any() and not pdf["cut"].all()


@pytest.mark.parametrize("extra", [{}, {"maxBroadcastBytes": 0}], ids=["broadcast", "distributed"])
def test_invalid_rows_get_nulls(spark, extra):
    train = spark.createDataFrame([([0.0],), ([1.0],)], ["features"])
    queries = spark.createDataFrame(
        [(0, [0.2]), (1, [float("nan")]), (2, [50.0])], ["q", "features"]
    )
    model = NearestNeighbors(k=1, handleInvalid="keep", shardsVisitedCol="visited", **extra)
    model = model.fit(train)
    rows = model.radius_neighbors(queries, 1.0).orderBy("q").collect()
    assert [r["neighbor_ids"] for r in rows] == [[0, 1], None, []]
    assert [r["truncated"] for r in rows] == [False, None, False]
    shards = len(model.shardSizes)  # hash partitioning: every shard
    assert [r["visited"] for r in rows] == [shards, None, shards]


def test_radius_bad_input(spark):
    train = spark.createDataFrame([([float(i), 0.0],) for i in range(30)], ["features"])
    model = NearestNeighbors(k=2).fit(train)
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"Param radius must be a finite number > 0; got"):
            model.radius_neighbors(train, bad)
    with pytest.raises(ValueError, match=r"Param maxNeighbors must be an integer >= 1; got 0"):
        model.radius_neighbors(train, 1.0, maxNeighbors=0)
    with pytest.raises(ValueError, match=r"Output column 'features' \(param distancesCol\)"):
        model.radius_neighbors(train, 1.0, distancesCol="features")
    hnsw = NearestNeighbors(k=2, algorithm="hnsw").fit(train)
    with pytest.raises(
        ValueError,
        match=r"radius_neighbors searches exactly, but this model searches its 'hnsw' index .* "
        r"call model.setAlgorithm\('brute'\) first",
    ):
        hnsw.radius_neighbors(train, 1.0)
    assert hnsw.setAlgorithm("brute").radius_neighbors(train, 1.5).count() == 30


# ------------------------------------------------------------ k-means routing

SHARDS = 6


@pytest.fixture(scope="module")
def grid(spark):
    """Clustered integer points: distances are square roots of integers, computed exactly
    by both libraries, so a radius can sit exactly on row distances (ties at the boundary)."""
    rng = np.random.default_rng(5)
    centers = rng.integers(-12, 13, size=(SHARDS, 3))
    x = (centers[rng.integers(SHARDS, size=360)] + rng.integers(-3, 4, size=(360, 3))) * 1.0
    q = (centers[rng.integers(SHARDS, size=30)] + rng.integers(-4, 5, size=(30, 3))) * 1.0
    train = spark.createDataFrame(pd.DataFrame({"id": np.arange(len(x)), "features": list(x)}))
    queries = spark.createDataFrame(pd.DataFrame({"q": np.arange(len(q)), "features": list(q)}))
    return x, q, train.cache(), queries.cache()


def _kmeans_model(train, **params):
    return NearestNeighbors(
        numShards=SHARDS, idCol="id", partitioning="kmeans", shardsVisitedCol="visited", seed=3,
        **params,
    ).fit(train)  # fmt: skip


@pytest.fixture(scope="module")
def kmeans_models(grid):
    """The euclidean k-means model of each storage, fitted once for the module's cases."""
    train = grid[2]
    cache = {}

    def get(storage):
        if storage not in cache:
            extra = {"maxBroadcastBytes": 0} if storage == "distributed" else {}
            cache[storage] = _kmeans_model(train, **extra)
        return cache[storage]

    return get


@pytest.mark.parametrize(
    ("storage", "radii"),
    [
        pytest.param("broadcast", (2.0, "at_row", 9.0), id="broadcast"),
        pytest.param("distributed", ("at_row",), id="distributed"),
        pytest.param("distributed", (2.0, 9.0), id="distributed-more", marks=pytest.mark.slow),
    ],
)
def test_kmeans_routing_skips_shards_and_equals_sklearn(grid, kmeans_models, storage, radii):
    x, q, train, queries = grid
    model = kmeans_models(storage)
    assert model.storage == storage and model.index.router.can_prune
    dist = np.sqrt(((q[:, None, :] - x[None, :, :]) ** 2).sum(axis=2))
    at_row = np.sort(dist[0])[7]  # the distance of rows: 45 (query, row) pairs lie on it
    for radius in radii:
        radius = at_row if radius == "at_row" else radius
        out = model.radius_neighbors(queries, radius).orderBy("q").toPandas()
        got = zip(out["neighbor_ids"], out["distances"], out["truncated"], strict=True)
        _check_equal(got, x, q, radius, boundary=True)
        # Both paths visit the shards the kernel lists (tested there against brute force).
        todo = shards_within_radius(model.index.router, q.astype(np.float32), radius)
        np.testing.assert_array_equal(out["visited"], todo.sum(axis=1))
        assert 1 <= out["visited"].mean() < SHARDS / 2  # most shards are skipped


def test_distributed_rounds_cap_and_a_metric_without_bounds(spark, grid):
    x, q, train, queries = grid
    model = _kmeans_model(train, metric="cosine", maxBroadcastBytes=0)
    spark.conf.set(QUERY_BYTES_CONF, "1500")  # 30 queries of 3 features, maxNeighbors=3
    try:
        capped = model.radius_neighbors(queries, 0.002, maxNeighbors=3)
        uncapped = model.radius_neighbors(queries, 0.002)
        # Rounds follow kneighbors' size model with k = maxNeighbors: one cogroup each.
        assert _cogroups(capped) == 3 and _cogroups(uncapped) == 2
        out = capped.orderBy("q").toPandas()
    finally:
        spark.conf.unset(QUERY_BYTES_CONF)
    got = zip(out["neighbor_ids"], out["distances"], out["truncated"], strict=True)
    _check_equal(got, x, q, 0.002, metric="cosine", cap=3)
    assert out["truncated"].any() and not out["truncated"].all()
    # Not a true metric: no lower bound holds, so every query searches every shard.
    assert (out["visited"] == len(model.shardSizes)).all()


def _cogroups(df):
    return df._jdf.queryExecution().executedPlan().toString().count("FlatMapCoGroupsInArrow")
