"""How many Spark jobs fit, transform and kneighbors run (counted, never timed).

A small scoring job pays 0.1-0.3 s per Spark job before any search, so the counts are pinned:
at most two jobs per ``fit`` (the checks and numbering, then the shard builds), one more with
``partitioning="kmeans"`` (the sample the centroids are fitted on), and one per
broadcast-path ``transform`` / ``kneighbors``, routed or not.  Jobs are counted with a job
group and the status tracker (tests may use ``sparkContext``; the library does not).  The test
session runs without adaptive query execution; with it, Spark runs each shuffle's map stage as
a job of its own.
"""

from __future__ import annotations

import itertools
import uuid

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from knnspark import InvalidInputError, KNNClassifier, KNNRegressor, NearestNeighbors

_GROUPS = itertools.count()


def count_jobs(spark, action) -> tuple[int, object]:
    """The Spark jobs ``action()`` ran in this thread, and what it returned."""
    sc = spark.sparkContext
    group = f"knnspark-job-count-{next(_GROUPS)}-{uuid.uuid4().hex}"
    sc.setJobGroup(group, "counting jobs")
    try:
        out = action()
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)
    return len(sc.statusTracker().getJobIdsForGroup(group)), out


@pytest.fixture(scope="module")
def frames(spark):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(240, 4))
    train = pd.DataFrame(
        {"id": np.arange(240) * 3, "features": list(x), "label": (np.arange(240) % 3) * 1.0}
    )
    queries = pd.DataFrame({"qid": np.arange(40), "features": list(x[:40] + 0.01)})
    train_df = spark.createDataFrame(train).repartition(3).cache()
    queries_df = spark.createDataFrame(queries).repartition(2).cache()
    train_df.count(), queries_df.count()
    yield train_df, queries_df
    train_df.unpersist(), queries_df.unpersist()


ESTIMATORS = {
    "classifier brute": lambda: KNNClassifier(k=3, numShards=2),
    "classifier hnsw": lambda: KNNClassifier(k=3, numShards=2, algorithm="hnsw"),
    "classifier idCol": lambda: KNNClassifier(k=3, numShards=2, idCol="id"),
    "regressor": lambda: KNNRegressor(k=3, numShards=2),
    "neighbors idCol": lambda: NearestNeighbors(k=3, numShards=2, idCol="id"),
}


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_fit_runs_two_jobs(spark, frames, name):
    train, _ = frames
    jobs, model = count_jobs(spark, lambda: ESTIMATORS[name]().fit(train))
    assert model.storage == "broadcast"
    assert jobs == 2


@pytest.mark.parametrize("name", ["classifier brute", "classifier hnsw", "regressor"])
def test_broadcast_transform_runs_one_job(spark, frames, name):
    train, queries = frames
    model = ESTIMATORS[name]().fit(train)
    assert count_jobs(spark, lambda: model.transform(queries))[0] == 0  # a plan, no job
    jobs, rows = count_jobs(spark, lambda: model.transform(queries).collect())
    assert len(rows) == 40
    assert jobs == 1


@pytest.mark.parametrize(
    ("algorithm", "id_col"), [("brute", None), ("hnsw", None), ("brute", "id")]
)
def test_kmeans_fit_runs_one_more_job_and_search_one(spark, frames, algorithm, id_col):
    # With an idCol the checks job also looks for repeated ids: the sample is one more job.
    train, queries = frames
    estimator = KNNClassifier(
        k=3, numShards=3, partitioning="kmeans", algorithm=algorithm, idCol=id_col
    )
    jobs, model = count_jobs(spark, lambda: estimator.fit(train))
    assert model.index.router is not None
    assert jobs == 3
    model.setShardsVisitedCol("visited")
    for nprobe in (None, 2):
        model.setNprobe(nprobe)
        jobs, rows = count_jobs(spark, lambda: model.transform(queries).collect())
        assert len(rows) == 40
        assert jobs == 1


def test_kmeans_fit_adds_one_job_without_a_shuffle_under_aqe(spark, frames):
    # With adaptive execution each shuffle's map stage is a job: the sample (no shuffle) is
    # the one job a k-means fit adds to a hash fit, repeated ids looked for or not.
    train, _ = frames
    spark.conf.set("spark.sql.adaptive.enabled", "true")
    try:
        jobs = {
            (partitioning, id_col): count_jobs(
                spark,
                lambda p=partitioning, i=id_col: NearestNeighbors(
                    k=3, numShards=3, partitioning=p, idCol=i
                ).fit(train),
            )[0]
            for partitioning in ("hash", "kmeans")
            for id_col in (None, "id")
        }
    finally:
        spark.conf.set("spark.sql.adaptive.enabled", "false")
    assert jobs[("kmeans", None)] == jobs[("hash", None)] + 1
    assert jobs[("kmeans", "id")] == jobs[("hash", "id")] + 1


@pytest.mark.parametrize("id_col", [None, "id"])
def test_group_fit_runs_one_more_job_and_search_one(spark, frames, id_col):
    # The group counts (big groups, the smallest group, ids repeated across groups): one job.
    train, queries = frames
    grouped = train.withColumn("country", (F.col("label") * 2).cast("int"))
    estimator = KNNClassifier(k=3, numShards=2, groupCol="country", idCol=id_col)
    jobs, model = count_jobs(spark, lambda: estimator.fit(grouped))
    assert model.storage == "broadcast" and model.index.groups is not None
    assert jobs == 3
    searched = queries.withColumn("country", F.lit(2))
    jobs, rows = count_jobs(spark, lambda: model.transform(searched).collect())
    assert len(rows) == 40
    assert jobs == 1


def test_broadcast_kneighbors_runs_one_job(spark, frames):
    train, queries = frames
    model = NearestNeighbors(k=3, numShards=2, idCol="id").fit(train)
    jobs, rows = count_jobs(spark, lambda: model.kneighbors(queries).collect())
    assert len(rows) == 40
    assert jobs == 1


def test_repeated_ids_are_named_after_the_failed_build(spark, frames):
    # No job looks for repeated ids up front: the build finds them, then one job names one.
    train, _ = frames
    repeated = train.unionByName(train.filter("id = 0"))
    with pytest.raises(InvalidInputError, match=r"must hold unique ids; id 0 appears 2 times"):
        KNNClassifier(k=3, numShards=2, idCol="id").fit(repeated)
    with pytest.raises(InvalidInputError, match=r"must hold unique ids; id 0 appears 2 times"):
        KNNClassifier(k=3, numShards=2, idCol="id", maxBroadcastBytes=0).fit(repeated)


@pytest.mark.parametrize("fold_col", [None, "fold"])
def test_cross_validation_counts_every_fold_in_one_job(spark, frames, fold_col):
    # One job counts the rows and the training checks of every fold; then per fold a build
    # and a search-and-score job; then the best model's build (its checks are counted).
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from pyspark.ml.tuning import ParamGridBuilder
    from pyspark.sql import functions as F

    from knnspark.tuning import KNNCrossValidator

    train, _ = frames
    data = train.withColumn("fold", (F.col("id") % 9 / 3).cast("int")) if fold_col else train
    clf = KNNClassifier(numShards=2)
    grid = ParamGridBuilder().addGrid(clf.k, [1, 5]).addGrid(clf.weights, ["uniform"]).build()
    validator = KNNCrossValidator(
        estimator=clf,
        estimatorParamMaps=grid,
        evaluator=MulticlassClassificationEvaluator(metricName="accuracy"),
        numFolds=3,
        seed=1,
        foldCol=fold_col or "",
    )
    jobs, model = count_jobs(spark, lambda: validator.fit(data))
    assert len(model.avgMetrics) == 2
    assert jobs == 1 + 3 * 2 + 1


@pytest.mark.parametrize(
    ("partitioning", "nprobe", "expected"),
    [("hash", None, 3), ("kmeans", 1, 4), ("kmeans", None, 5), ("kmeans", 3, 3)],
)
def test_shard_major_kneighbors_jobs(spark, frames, partitioning, nprobe, expected):
    # The query count, the search, and the broadcast of its merged result: three jobs. Each
    # cogroup that does not visit every shard adds one: the keys of the shards its queries
    # are routed to, broadcast to filter the shard side (taken from the routed queries' own
    # exchange, which the search then reuses: the routing runs once). Pruned exact search
    # has two such rounds; hash partitioning and nprobe = numShards visit every shard.
    train, queries = frames
    model = NearestNeighbors(k=3, numShards=3, partitioning=partitioning, maxBroadcastBytes=0).fit(
        train
    )
    model.setNprobe(nprobe)
    jobs, rows = count_jobs(spark, lambda: model.kneighbors(queries).collect())
    assert len(rows) == 40
    assert jobs == expected
