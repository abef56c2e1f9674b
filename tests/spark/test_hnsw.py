"""HNSW models on Spark: recall against exact search, determinism, small shards, persistence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from knnspark import (
    InvalidInputError,
    KNNClassifier,
    NearestNeighbors,
    NearestNeighborsModel,
)


@pytest.fixture(scope="module")
def clustered(spark):
    rng = np.random.default_rng(5)
    centres = rng.normal(scale=8.0, size=(60, 24))
    cluster = rng.integers(0, 60, 6000)
    x = centres[cluster] + rng.normal(size=(6000, 24))
    items = spark.createDataFrame(
        pd.DataFrame({"features": list(x[:5000]), "label": (cluster[:5000] % 10).astype(float)})
    ).repartition(3)
    queries = spark.createDataFrame(
        pd.DataFrame({"qid": np.arange(1000), "features": list(x[5000:])})
    ).repartition(2)
    exact = NearestNeighbors(k=10, algorithm="brute", numShards=2).fit(items)
    truth = exact.kneighbors(queries).orderBy("qid").toPandas()
    return items, queries, truth


def _recall(out, truth):
    out = out.orderBy("qid").toPandas()
    assert list(out["qid"]) == list(truth["qid"])  # every query exactly once
    pairs = zip(out["neighbor_ids"], truth["neighbor_ids"], strict=True)
    return np.mean([len(set(a) & set(b)) / 10 for a, b in pairs])


@pytest.mark.parametrize("shards", [1, 3, 6])
def test_recall_at_defaults(clustered, shards):
    items, queries, truth = clustered
    model = NearestNeighbors(k=10, algorithm="hnsw", numShards=shards).fit(items)
    assert model.algorithmUsed == "hnsw"
    assert model.getEf() == 64 and model.getM() == 16
    assert _recall(model.kneighbors(queries), truth) >= 0.95


def test_distributed_reduce_gives_the_broadcast_result(clustered):
    items, queries, _ = clustered
    est = NearestNeighbors(k=10, algorithm="hnsw", numShards=3)
    broadcast = est.fit(items)
    reduce = est.copy({est.maxBroadcastBytes: 0}).fit(items)
    assert (broadcast.storage, reduce.storage) == ("broadcast", "distributed")
    assert_df_equality(
        broadcast.kneighbors(queries).orderBy("qid"), reduce.kneighbors(queries).orderBy("qid")
    )


def test_builds_are_deterministic(clustered):
    items, queries, _ = clustered
    est = NearestNeighbors(k=10, algorithm="hnsw", numShards=3, seed=11)
    a, b = est.fit(items), est.fit(items)
    graphs_a, graphs_b = a.index.shards["hnsw"], b.index.shards["hnsw"]
    assert [g.index_bytes for g in graphs_a] == [g.index_bytes for g in graphs_b]
    assert a.index.model_id != b.index.model_id  # separate models, separate worker caches
    assert_df_equality(a.kneighbors(queries).orderBy("qid"), b.kneighbors(queries).orderBy("qid"))


def test_set_ef_changes_breadth_without_rebuilding(clustered):
    items, queries, truth = clustered
    model = NearestNeighbors(k=10, algorithm="hnsw", numShards=2, M=4, efConstruction=20).fit(items)
    graphs = [g.index_bytes for g in model.index.shards["hnsw"]]
    narrow = _recall(model.setEf(1).kneighbors(queries), truth)
    wide = _recall(model.setEf(400).kneighbors(queries), truth)
    assert wide > narrow and wide >= 0.99
    assert [g.index_bytes for g in model.index.shards["hnsw"]] == graphs


def test_tiny_and_empty_shards(spark):
    # 12 rows hashed into 9 shards: some shards are empty, most hold fewer than k rows.
    items = spark.createDataFrame(
        [(100 + i, [float(i), float(i % 3)]) for i in range(12)], ["id", "features"]
    )
    queries = spark.createDataFrame([(q, [q * 1.1, 0.5]) for q in range(6)], ["qid", "features"])
    for budget in (None, 0):
        est = NearestNeighbors(k=5, algorithm="hnsw", numShards=9, idCol="id", ef=1)
        if budget is not None:
            est.setMaxBroadcastBytes(budget)
        model = est.fit(items)
        assert len(model.shardSizes) < 9  # empty shards exist
        exact = NearestNeighbors(k=5, algorithm="brute", idCol="id").fit(items)
        got = model.kneighbors(queries).orderBy("qid").toPandas()
        want = exact.kneighbors(queries).orderBy("qid").toPandas()
        assert list(got["qid"]) == list(range(6))
        np.testing.assert_array_equal(np.stack(got["neighbor_ids"]), np.stack(want["neighbor_ids"]))
        # hnswlib computes distances in float32.
        np.testing.assert_allclose(
            np.stack(got["distances"]), np.stack(want["distances"]), rtol=1e-6
        )


def test_save_and_load_hnsw(clustered, tmp_path):
    items, queries, _ = clustered
    for budget in (None, 0):
        est = NearestNeighbors(k=10, algorithm="hnsw", numShards=3)
        if budget is not None:
            est.setMaxBroadcastBytes(budget)
        model = est.fit(items)
        path = str(tmp_path / f"model-{budget}")
        model.write().save(path)
        loaded = NearestNeighborsModel.load(path)
        assert loaded.algorithmUsed == "hnsw" and loaded.storage == model.storage
        assert loaded.indexSizeBytes == model.indexSizeBytes
        assert_df_equality(
            loaded.kneighbors(queries).orderBy("qid"), model.kneighbors(queries).orderBy("qid")
        )


def test_auto_picks_brute_for_tiny_jobs_and_hnsw_for_large(spark, clustered):
    items, _, _ = clustered
    tiny = items.limit(100)
    assert NearestNeighbors(k=5).fit(tiny).algorithmUsed == "brute"
    # Cheap graphs lower the threshold: 10 * (10 + 1 * 4 * 4) = 260 rows.
    cheap = NearestNeighbors(k=5, numShards=1, efConstruction=10, ef=4, M=4)
    assert cheap.fit(items).algorithmUsed == "hnsw"
    assert cheap.copy({cheap.metric: "manhattan"}).fit(items).algorithmUsed == "brute"


def test_hnsw_classifier_matches_brute_on_clustered_data(clustered):
    items, queries, _ = clustered
    hnsw = KNNClassifier(k=10, algorithm="hnsw", numShards=3).fit(items)
    brute = KNNClassifier(k=10, algorithm="brute", numShards=3).fit(items)
    a = hnsw.transform(queries).select("qid", F.col("prediction").alias("a"))
    b = brute.transform(queries).select("qid", F.col("prediction").alias("b"))
    agree = a.join(b, "qid").agg(F.avg((F.col("a") == F.col("b")).cast("double"))).first()[0]
    assert agree >= 0.98
    # A fitted HNSW model can still be searched exactly.
    exact_again = hnsw.copy({hnsw.algorithm: "brute"}).transform(queries)
    assert_df_equality(exact_again.orderBy("qid"), brute.transform(queries).orderBy("qid"))


def test_hnsw_metric_and_memory_errors(clustered):
    items, _, _ = clustered
    message = "manhattan, chebyshev, minkowski, hamming and nan_euclidean need"
    with pytest.raises(ValueError, match=message):
        NearestNeighbors(algorithm="hnsw", metric="manhattan").fit(items)
    with pytest.raises(InvalidInputError, match=r"Use more shards \(numShards >= \d+\)"):
        NearestNeighbors(algorithm="hnsw", numShards=1, maxShardBytes=100_000).fit(items)
    brute = NearestNeighbors(k=3, algorithm="brute").fit(items.limit(50))
    with pytest.raises(ValueError, match="refit with algorithm='hnsw'"):
        brute.setAlgorithm("hnsw").kneighbors(items)


def test_partition_keys_follow_sparks_hash_partitioning(spark):
    from knnspark.shard_layout import shard_partition_keys, spark_hash_partition

    keys = spark.range(-50, 300).select(F.col("id").cast("int").alias("k"))
    for n in (1, 2, 3, 7, 64):
        expected = keys.select("k", F.pmod(F.hash("k"), F.lit(n)).alias("p")).collect()
        assert [spark_hash_partition(r.k, n) for r in expected] == [r.p for r in expected]
        assert [spark_hash_partition(k, n) for k in shard_partition_keys(n)] == list(range(n))


@pytest.mark.parametrize("num_shards", [2, 3, 5])
def test_each_shard_is_built_in_a_task_of_its_own(spark, num_shards):
    # Grouping by shard alone hashed shards 0 and 1 of 2 into one task, built one after the
    # other; range partitioning, sampled, could still merge uneven neighbours. The builds
    # must spread over num_shards tasks whatever the shard sizes.
    from knnspark.index import _shard_blobs
    from knnspark.shard_codec import SHARD_ROWS_SCHEMA

    rng = np.random.default_rng(num_shards)
    sizes = rng.integers(5, 400, num_shards)  # uneven, and more rows than a range sample
    shard_of_row = np.repeat(np.arange(num_shards), sizes)
    rows = spark.createDataFrame(
        [
            (int(s), i, [float(v) for v in rng.normal(size=4)], 0.0)
            for i, s in enumerate(rng.permutation(shard_of_row))
        ],
        SHARD_ROWS_SCHEMA,
    ).repartition(3)
    graph = {"metric": "euclidean", "M": 4, "efConstruction": 8, "seed": 0}
    for kind, params in (("hnsw", graph), ("brute", {})):
        blobs = _shard_blobs(rows, True, kind, params, num_shards)
        per_task = blobs.rdd.glom().map(lambda part: sorted(r.shard for r in part)).collect()
        assert per_task == [[s] for s in range(num_shards)]
        built = {r.shard: r.n_rows for r in blobs.collect()}
        assert built == {s: int(n) for s, n in enumerate(sizes)}
