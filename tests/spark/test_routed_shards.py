"""The shard-major search hands a Python task only the shards some query is routed to.

A cogroup would give every persisted shard to a task, queries or not; the plan keeps only the
routed shards (a broadcast left-semi join on the keys of the routed queries' own exchange).
The proof is a test hook, not timing: with the local property
``knnspark.test.failOnUnroutedShard`` set, a search task that receives a shard's rows without
a query for it raises (``knnspark._faults.check_routed``). Results are still compared with
numpy brute force.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from py4j.protocol import Py4JJavaError
from pyspark.sql import functions as F

from knnspark import NearestNeighbors
from knnspark._faults import UNROUTED_PROPERTY
from knnspark.kernels.distances import pair_distances

SHARDS = 4
K = 3


def _searched(spark, action):
    """``action()`` with unrouted shard reads failing the job."""
    sc = spark.sparkContext
    sc.setLocalProperty(UNROUTED_PROPERTY, "1")
    try:
        return action()
    finally:
        sc.setLocalProperty(UNROUTED_PROPERTY, None)


@pytest.fixture(scope="module")
def clusters(spark):
    """Four far-apart clusters of 50 rows (k-means gives each a shard), and group labels."""
    rng = np.random.default_rng(8)
    centres = np.array([[0.0, 0.0], [50.0, 0.0], [0.0, 50.0], [50.0, 50.0]])
    cluster = np.repeat(np.arange(SHARDS), 50)
    x = centres[cluster] + rng.normal(size=(cluster.size, 2))
    train = spark.createDataFrame(
        pd.DataFrame(
            {"id": np.arange(x.shape[0]), "features": list(x), "g": [f"g{c}" for c in cluster]}
        )
    )
    near = centres[0] + rng.normal(size=(12, 2))  # every query near cluster 0
    queries = spark.createDataFrame(
        pd.DataFrame({"qid": np.arange(len(near)), "features": list(near), "g": "g0"})
    ).repartition(3)
    return x, cluster, train, near, queries


def _no_queries(spark):
    """An empty query DataFrame the optimizer cannot see is empty (a filtered range)."""
    features = F.array(F.col("id").cast("double"), F.lit(0.0)).alias("features")
    return spark.range(12).filter("id < 0").select(F.col("id").alias("qid"), features)


def _brute_ids(q, x, allowed=None):
    dist = pair_distances(q.astype(np.float32), x.astype(np.float32), "euclidean")
    if allowed is not None:
        dist = np.where(allowed[None, :], dist, np.inf)
    return np.argsort(dist, axis=1, kind="stable")[:, :K]


@pytest.fixture(scope="module")
def kmeans_models(clusters):
    """Shard-major k-means models by algorithm, fitted once (nprobe is a search-time param)."""
    train = clusters[2]
    models = {}

    def model(algorithm):
        if algorithm not in models:
            models[algorithm] = NearestNeighbors(
                k=K,
                numShards=SHARDS,
                idCol="id",
                partitioning="kmeans",
                algorithm=algorithm,
                maxBroadcastBytes=0,
                shardsVisitedCol="visited",
            ).fit(train)
            assert models[algorithm].storage == "distributed"
        return models[algorithm]

    return model


@pytest.mark.parametrize(("algorithm", "nprobe"), [("brute", 1), ("brute", None), ("hnsw", 2)])
def test_kmeans_search_reads_only_routed_shards(spark, clusters, kmeans_models, algorithm, nprobe):
    x, _, _, near, queries = clusters
    model = kmeans_models(algorithm).setNprobe(nprobe)
    got = _searched(spark, lambda: model.kneighbors(queries).orderBy("qid").toPandas())
    np.testing.assert_array_equal(np.stack(got["neighbor_ids"]), _brute_ids(near, x))
    # nprobe 2 visits two shards, pruned exact search one: never all four.
    assert (got["visited"] == (nprobe or 1)).all()


def test_grouped_search_reads_only_the_groups_shards(spark, clusters):
    x, cluster, train, near, queries = clusters
    est = NearestNeighbors(k=K, numShards=SHARDS, idCol="id", groupCol="g", maxBroadcastBytes=0)
    model = est.fit(train)
    assert model.storage == "distributed"
    got = _searched(spark, lambda: model.kneighbors(queries).orderBy("qid").toPandas())
    np.testing.assert_array_equal(np.stack(got["neighbor_ids"]), _brute_ids(near, x, cluster == 0))


def test_no_query_reads_no_shard(spark, kmeans_models):
    model = kmeans_models("brute").setNprobe(1)
    assert _searched(spark, lambda: model.kneighbors(_no_queries(spark)).collect()) == []


def test_the_hook_sees_a_shard_read_without_queries(spark, clusters):
    """Hash partitioning visits every shard, unfiltered: with no queries, every shard is read."""
    _, _, train, _, queries = clusters
    model = NearestNeighbors(k=K, numShards=SHARDS, maxBroadcastBytes=0).fit(train)
    with pytest.raises(Py4JJavaError, match="rows of an unrouted shard were read"):
        _searched(spark, lambda: model.kneighbors(_no_queries(spark)).collect())
    assert model.kneighbors(queries).count() == 12


def test_radius_search_reads_only_routed_shards(spark, clusters, kmeans_models):
    x, _, _, near, queries = clusters
    model = kmeans_models("brute").setNprobe(None)
    radius = 2.5
    got = _searched(
        spark, lambda: model.radius_neighbors(queries, radius).orderBy("qid").toPandas()
    )
    dist = pair_distances(near.astype(np.float32), x.astype(np.float32), "euclidean")
    for ids, distances, row in zip(got["neighbor_ids"], got["distances"], dist, strict=True):
        want = np.flatnonzero(row <= radius)
        want = want[np.argsort(row[want], kind="stable")]
        assert len(want) > 0
        np.testing.assert_array_equal(ids, want)
        np.testing.assert_allclose(distances, row[want], rtol=1e-6)
    assert (got["visited"] == 1).all()  # the bound leaves every query one shard of four
