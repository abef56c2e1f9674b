"""partitioning='kmeans', nprobe and shardsVisitedCol end to end, against scikit-learn."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neighbors import NearestNeighbors as SkNearestNeighbors
from spark_jobs import no_spark_job

from knnspark import (
    InvalidInputError,
    KNNClassifier,
    KNNRegressor,
    NearestNeighbors,
    NearestNeighborsModel,
)

K = 5
SHARDS = 6


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    centers = rng.normal(size=(8, 6)) * 5
    which = rng.integers(8, size=700)
    x = (centers[which] + rng.normal(size=(700, 6))).astype(np.float32).astype(np.float64)
    y = (which % 3).astype(np.float64)
    q = x[:80] + rng.normal(size=(80, 6)).astype(np.float32) * 0.5
    return x, y, q.astype(np.float32).astype(np.float64)


@pytest.fixture(scope="module")
def frames(spark, data):
    x, y, q = data
    train = spark.createDataFrame(
        pd.DataFrame({"id": np.arange(len(x)), "features": list(x), "label": y})
    ).cache()
    queries = spark.createDataFrame(pd.DataFrame({"qid": np.arange(len(q)), "features": list(q)}))
    return train, queries.repartition(3).cache()


def reference(x, q, metric, p=2.0, k=K):
    params = {"VI": np.linalg.inv(np.cov(x.T))} if metric == "mahalanobis" else None
    ref = SkNearestNeighbors(n_neighbors=k, metric=metric, p=p, metric_params=params)
    dist, ids = ref.fit(x).kneighbors(q)
    return dist, ids


def neighbors(model, queries):
    out = model.kneighbors(queries).orderBy("qid").toPandas()
    return np.stack(out["distances"]), np.stack(out["neighbor_ids"]), out


@pytest.mark.parametrize(
    ("metric", "p"),
    [("euclidean", 2.0), ("manhattan", 1.0), ("minkowski", 3.0), ("mahalanobis", 2.0)],
)
def test_pruned_exact_search_equals_brute_force(frames, data, metric, p):
    x, _, q = data
    train, queries = frames
    model = NearestNeighbors(
        k=K, idCol="id", metric=metric, p=p, numShards=SHARDS, partitioning="kmeans",
        algorithm="brute", shardsVisitedCol="visited",
    ).fit(train)  # fmt: skip
    assert model.index.router.num_shards == SHARDS
    assert max(model.shardSizes.values()) <= 1.5 * len(x) / SHARDS
    dist, ids, out = neighbors(model, queries)
    ref_dist, ref_ids = reference(x, q, metric, p)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-6, atol=1e-6)
    visited = out["visited"].to_numpy()
    assert visited.min() >= 1 and visited.mean() < SHARDS  # shards were skipped


@pytest.mark.parametrize("metric", ["euclidean", "mahalanobis"])
def test_classifier_with_pruned_exact_search_matches_scikit_learn(frames, data, metric):
    x, y, q = data
    train, queries = frames
    model = KNNClassifier(
        k=K, metric=metric, numShards=SHARDS, partitioning="kmeans", algorithm="brute",
        shardsVisitedCol="visited",
    ).fit(train)  # fmt: skip
    out = model.transform(queries.select("qid", "features")).orderBy("qid").toPandas()
    params = {"VI": np.linalg.inv(np.cov(x.T))} if metric == "mahalanobis" else None
    ref = KNeighborsClassifier(
        n_neighbors=K, metric=metric, metric_params=params, algorithm="brute"
    )
    np.testing.assert_array_equal(out["prediction"], ref.fit(x, y).predict(q))
    assert out["visited"].dtype.kind == "i"


def shard_members(model):
    """Shard number of every training id, read from the fitted shards."""
    members = {}
    shard_numbers = np.flatnonzero(model.index.router.nonempty)
    for shard_no, shard in zip(shard_numbers, model.index.shards["brute"], strict=True):
        members.update({int(i): int(shard_no) for i in shard.ids})
    return members


@pytest.mark.parametrize("nprobe", [1, 3])
def test_nprobe_equals_brute_force_over_the_visited_shards(frames, data, nprobe):
    x, _, q = data
    train, queries = frames
    model = NearestNeighbors(
        k=K, idCol="id", numShards=SHARDS, partitioning="kmeans", algorithm="brute",
        nprobe=nprobe, shardsVisitedCol="visited",
    ).fit(train)  # fmt: skip
    dist, ids, out = neighbors(model, queries)
    np.testing.assert_array_equal(out["visited"], nprobe)
    members = shard_members(model)
    shard_of = np.array([members[i] for i in range(len(x))])
    probed = model.index.router.nearest(q.astype(np.float32), nprobe)
    full = np.sqrt(((q[:, None, :] - x[None, :, :]) ** 2).sum(axis=2))
    allowed = (shard_of[None, :, None] == probed[:, None, :]).any(axis=2)
    restricted = np.where(allowed, full, np.inf)
    ref_ids = np.lexsort((np.broadcast_to(np.arange(len(x)), full.shape), restricted), axis=1)
    np.testing.assert_array_equal(ids, ref_ids[:, :K])


def test_metrics_that_cannot_prune_visit_every_shard_with_a_note(frames, data, caplog):
    x, _, q = data
    train, queries = frames
    model = NearestNeighbors(
        k=K, idCol="id", metric="cosine", numShards=SHARDS, partitioning="kmeans",
        algorithm="brute", shardsVisitedCol="visited",
    ).fit(train)  # fmt: skip
    with caplog.at_level(logging.INFO, logger="knnspark"):
        dist, ids, out = neighbors(model, queries)
    assert "not a true metric" in caplog.text
    np.testing.assert_array_equal(out["visited"], len(model.shardSizes))
    ref_dist, ref_ids = reference(x, q, "cosine")
    np.testing.assert_array_equal(ids, ref_ids)


def test_hnsw_with_nprobe_keeps_recall(frames, data):
    x, _, q = data
    train, queries = frames
    model = NearestNeighbors(
        k=K, idCol="id", numShards=SHARDS, partitioning="kmeans", algorithm="hnsw", nprobe=3,
        shardsVisitedCol="visited",
    ).fit(train)  # fmt: skip
    _, ids, out = neighbors(model, queries)
    _, ref_ids = reference(x, q, "euclidean")
    recall = np.mean([len(set(a) & set(b)) / K for a, b in zip(ids, ref_ids, strict=True)])
    assert recall >= 0.9
    np.testing.assert_array_equal(out["visited"], 3)
    model.setNprobe(None)  # exact over shards, HNSW within them
    _, ids, out = neighbors(model, queries)
    assert np.mean([len(set(a) & set(b)) / K for a, b in zip(ids, ref_ids, strict=True)]) >= 0.95


def test_save_and_load_keep_the_routing_and_the_results(spark, frames, tmp_path):
    train, queries = frames
    model = NearestNeighbors(
        k=K, idCol="id", numShards=SHARDS, partitioning="kmeans", algorithm="hnsw",
        shardsVisitedCol="visited", nprobe=2,
    ).fit(train)  # fmt: skip
    path = str(tmp_path / "routed")
    model.write().save(path)
    loaded = NearestNeighborsModel.load(path)
    np.testing.assert_array_equal(loaded.index.router.centroids, model.index.router.centroids)
    np.testing.assert_array_equal(loaded.index.router.radii, model.index.router.radii)
    np.testing.assert_array_equal(loaded.index.router.sub_radii, model.index.router.sub_radii)
    np.testing.assert_array_equal(loaded.index.router.sub_shards, model.index.router.sub_shards)
    assert loaded.getNprobe() == 2 and loaded.getPartitioning() == "kmeans"
    before, after = neighbors(model, queries), neighbors(loaded, queries)
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_array_equal(before[2]["visited"], after[2]["visited"])


def test_distributed_storage_measures_the_same_radii(frames, data):
    x, _, q = data
    train, queries = frames
    params = dict(k=K, idCol="id", numShards=SHARDS, partitioning="kmeans", algorithm="brute")
    broadcast = NearestNeighbors(**params).fit(train)
    distributed = NearestNeighbors(**params, maxBroadcastBytes=0).fit(train)
    assert distributed.storage == "distributed"
    assert distributed.shardSizes == broadcast.shardSizes
    np.testing.assert_allclose(distributed.index.router.radii, broadcast.index.router.radii)
    np.testing.assert_allclose(distributed.index.router.sub_radii, broadcast.index.router.sub_radii)
    distributed.setShardsVisitedCol("visited")
    _, ids, out = neighbors(distributed, queries)
    np.testing.assert_array_equal(ids, reference(x, q, "euclidean")[1])
    assert out["visited"].notna().all()


def test_fit_is_deterministic_under_seed(frames):
    train, queries = frames
    params = dict(k=K, numShards=SHARDS, partitioning="kmeans", algorithm="brute", seed=7)
    first, second = KNNRegressor(**params).fit(train), KNNRegressor(**params).fit(train)
    assert first.shardSizes == second.shardSizes
    np.testing.assert_array_equal(first.index.router.centroids, second.index.router.centroids)
    a = first.transform(queries).orderBy("qid").toPandas()["prediction"]
    b = second.transform(queries).orderBy("qid").toPandas()["prediction"]
    np.testing.assert_array_equal(a, b)


def test_invalid_query_rows_get_a_null_shard_count(spark, frames):
    train, _ = frames
    model = NearestNeighbors(
        k=2, numShards=3, partitioning="kmeans", handleInvalid="keep", shardsVisitedCol="n"
    ).fit(train)  # fmt: skip
    queries = spark.createDataFrame(
        [(0, [0.0] * 6), (1, [float("nan")] * 6), (2, [1.0])], ["qid", "features"]
    )
    out = {r["qid"]: r["n"] for r in model.kneighbors(queries).collect()}
    assert out[1] is None and out[2] is None and out[0] >= 1


def test_hash_partitioning_counts_every_shard(frames):
    train, queries = frames
    model = KNNClassifier(k=K, numShards=3, shardsVisitedCol="visited").fit(train)
    assert model.index.router is None
    out = model.transform(queries).toPandas()
    np.testing.assert_array_equal(out["visited"], 3)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (dict(nprobe=2), r"Param nprobe=2 needs partitioning='kmeans'.*got partitioning='hash'"),
        (
            dict(partitioning="kmeans", nprobe=4, numShards=3),
            r"Param nprobe must be <= numShards \(3\); got 4",
        ),
        (
            dict(partitioning="kmeans", metric="nan_euclidean"),
            r"partitioning='kmeans' cannot place rows with missing \(NaN\) coordinates.*"
            r"imputeStrategy",
        ),
    ],
)
def test_bad_routing_params_fail_before_any_job(spark, frames, params, message):
    train, _ = frames
    with no_spark_job(spark), pytest.raises(ValueError, match=message):
        NearestNeighbors(k=2, **params).fit(train)


def test_nprobe_below_one_is_refused_by_the_param():
    with pytest.raises((ValueError, TypeError), match="nprobe"):
        NearestNeighbors(nprobe=0)


def test_nprobe_on_a_hash_model_fails_before_any_job(spark, frames):
    train, queries = frames
    model = NearestNeighbors(k=2, numShards=2).fit(train)
    model.setNprobe(1)
    with no_spark_job(spark), pytest.raises(ValueError, match=r"fitted with partitioning='hash'"):
        model.kneighbors(queries)
    routed = NearestNeighbors(k=2, numShards=2, partitioning="kmeans").fit(train)
    routed.setNprobe(3)
    with no_spark_job(spark), pytest.raises(ValueError, match=r"nprobe must be <= numShards \(2\)"):
        routed.kneighbors(queries)


def test_more_shards_than_rows_fails_before_the_build(spark):
    small = spark.createDataFrame([([float(i)],) for i in range(4)], ["features"])
    with pytest.raises(InvalidInputError, match=r"numShards=5 is more than the 4 valid training"):
        NearestNeighbors(k=1, numShards=5, partitioning="kmeans").fit(small)


def test_identical_training_rows_share_one_shard(spark):
    rows = spark.createDataFrame([(i, [1.0, 2.0]) for i in range(30)], ["id", "features"])
    model = NearestNeighbors(
        k=3, idCol="id", numShards=4, partitioning="kmeans", shardsVisitedCol="n"
    ).fit(rows)  # fmt: skip
    assert list(model.shardSizes.values()) == [30]
    assert int(np.isfinite(model.index.router.radii).sum()) == 1
    out = model.kneighbors(spark.createDataFrame([([1.0, 2.0],)], ["features"])).first()
    assert out["neighbor_ids"] == [0, 1, 2] and out["n"] == 1


def test_repeated_ids_are_named_by_the_checks_job(spark, frames):
    # Rows go to shards by content: the build cannot see a repeated id meet itself.
    train, _ = frames
    moved = train.filter("id = 3").selectExpr("id", "transform(features, x -> x + 50)", "label")
    repeated = train.union(moved).union(moved).union(moved.withColumn("id", F.lit(7)))
    with pytest.raises(InvalidInputError, match=r"must hold unique ids; id 3 appears 3 times"):
        NearestNeighbors(k=2, idCol="id", numShards=3, partitioning="kmeans").fit(repeated)


def test_an_id_repeated_by_a_skipped_row_is_not_a_repeat(spark, frames):
    # handleInvalid="skip" drops the invalid copy before the rows are numbered and sharded.
    train, _ = frames
    broken = train.filter("id = 3").selectExpr(
        "id", "transform(features, x -> double('NaN'))", "label"
    )
    estimator = NearestNeighbors(
        k=2, idCol="id", numShards=3, partitioning="kmeans", handleInvalid="skip"
    )
    assert sum(estimator.fit(train.union(broken)).shardSizes.values()) == train.count()


def test_a_search_with_another_metric_than_the_radii_visits_every_shard(frames, data):
    # The radii bound euclidean distances only: a manhattan search must not prune with them.
    x, _, q = data
    train, queries = frames
    model = NearestNeighbors(
        k=K, idCol="id", numShards=SHARDS, partitioning="kmeans", algorithm="brute",
        shardsVisitedCol="visited",
    ).fit(train)  # fmt: skip
    model.setMetric("manhattan")
    _, ids, out = neighbors(model, queries)
    np.testing.assert_array_equal(ids, reference(x, q, "manhattan")[1])
    np.testing.assert_array_equal(out["visited"], len(model.shardSizes))


def test_cross_validation_names_a_repeated_id(spark, frames):
    # Tuning counts the folds' checks beforehand, without ids: each fold fit looks for them.
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from pyspark.ml.tuning import ParamGridBuilder

    from knnspark.tuning import KNNCrossValidator

    train, _ = frames
    moved = train.filter("id = 3").selectExpr("id", "transform(features, x -> x + 50)", "label")
    clf = KNNClassifier(numShards=3, partitioning="kmeans", idCol="id")
    validator = KNNCrossValidator(
        estimator=clf,
        estimatorParamMaps=ParamGridBuilder().addGrid(clf.k, [3]).build(),
        evaluator=MulticlassClassificationEvaluator(metricName="accuracy"),
        numFolds=3,
        seed=1,
    )
    with pytest.raises(InvalidInputError, match=r"must hold unique ids; id 3 appears 2 times"):
        validator.fit(train.union(moved))
