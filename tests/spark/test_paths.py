"""The broadcast and shard-major paths give identical output.

Also: the number of shards and the query partitioning change nothing, and
no query row is ever lost or duplicated.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from chispa import assert_df_equality
from pyspark.ml.linalg import Vectors
from pyspark.sql import functions as F

from knnspark import KNNClassifier, KNNRegressor, NearestNeighbors


@pytest.fixture(scope="module")
def data(spark):
    rng = np.random.default_rng(11)
    centres = rng.normal(scale=6.0, size=(6, 5))
    cluster = rng.integers(0, 6, size=400)
    x = centres[cluster] + rng.normal(size=(400, 5))
    # Rounded coordinates create exact distance ties, so the id tie rule matters.
    x = np.round(x, 1)
    train = pd.DataFrame(
        {"features": list(x[:300]), "label": (cluster[:300] % 3).astype(float), "y": x[:300, 0]}
    )
    queries = pd.DataFrame({"qid": np.arange(100), "features": list(x[300:])})
    return (
        spark.createDataFrame(train).repartition(3),
        spark.createDataFrame(queries).repartition(4),
    )


def _sorted(df):
    return df.orderBy("qid")


@pytest.mark.parametrize("metric", ["euclidean", "manhattan", "cosine"])
def test_classifier_paths_identical(data, metric):
    train, queries = data
    est = KNNClassifier(k=7, metric=metric, numShards=3, weights="distance", neighborsCol="nb")
    broadcast = est.fit(train)
    reduce = est.copy({est.maxBroadcastBytes: 0}).fit(train)
    assert broadcast.storage == "broadcast" and reduce.storage == "distributed"
    a = broadcast.transform(queries)
    b = reduce.transform(queries)
    expected = ["qid", "features", "prediction", "rawPrediction", "probability", "nb"]
    assert a.columns == b.columns == expected
    assert_df_equality(_sorted(a), _sorted(b))
    assert b.count() == queries.count()


def test_regressor_and_neighbors_paths_identical(data):
    train, queries = data
    for est in (
        KNNRegressor(k=4, labelCol="y", numShards=2),
        NearestNeighbors(k=6, numShards=5),
    ):
        a = est.fit(train).transform(queries)
        b = est.copy({est.maxBroadcastBytes: 0}).fit(train).transform(queries)
        assert_df_equality(_sorted(a), _sorted(b))


def test_shard_count_and_partitioning_change_nothing(data, spark):
    train, queries = data
    reference = NearestNeighbors(k=8, numShards=1).fit(train.coalesce(1))
    expected = _sorted(reference.kneighbors(queries.coalesce(1)))
    for shards in (2, 3, 7):
        model = NearestNeighbors(k=8, numShards=shards).fit(train.coalesce(1))
        for n_parts in (1, 5):
            got = _sorted(model.kneighbors(queries.repartition(n_parts)))
            assert_df_equality(got, expected)


def test_shard_smaller_than_k(spark):
    # 10 rows in 7 shards: most shards hold fewer than k rows.
    items = spark.createDataFrame([(float(i), [float(i)]) for i in range(10)], ["v", "features"])
    queries = spark.createDataFrame([(0, [2.2]), (1, [9.9])], ["qid", "features"])
    for budget in (None, 0):
        est = NearestNeighbors(k=4, numShards=7)
        if budget is not None:
            est.setMaxBroadcastBytes(budget)
        rows = est.fit(items).kneighbors(queries).orderBy("qid").collect()
        assert rows[0]["neighbor_ids"] == [2, 3, 1, 4]
        assert rows[1]["neighbor_ids"] == [9, 8, 7, 6]


def test_invalid_queries_kept_in_both_paths(spark):
    train = spark.createDataFrame(
        [(Vectors.dense([float(i), 0.0]), float(i % 2)) for i in range(20)], ["features", "label"]
    )
    queries = spark.createDataFrame(
        [
            (0, Vectors.dense([1.0, 0.0])),
            (1, None),
            (2, Vectors.dense([float("nan"), 0.0])),
            (3, Vectors.sparse(2, [0], [3.0])),
            (4, Vectors.dense([1.0, 2.0, 3.0])),
        ],
        ["qid", "features"],
    )
    for budget in (None, 0):
        est = KNNClassifier(k=3, handleInvalid="keep", numShards=3)
        if budget is not None:
            est.setMaxBroadcastBytes(budget)
        out = est.fit(train).transform(queries).orderBy("qid").collect()
        assert [r["qid"] for r in out] == [0, 1, 2, 3, 4]
        assert [r["prediction"] is None for r in out] == [False, True, True, False, True]
        assert [r["probability"] is None for r in out] == [False, True, True, False, True]
        # Vector columns pass through untouched, sparse ones stay sparse.
        assert out[3]["features"] == Vectors.sparse(2, [0], [3.0])


def test_many_batches_keep_every_row_once(spark):
    rng = np.random.default_rng(3)
    n = 1000  # 64-row Arrow batches: each partition arrives in many batches
    items = spark.createDataFrame(pd.DataFrame({"features": list(rng.normal(size=(300, 4)))}))
    queries = spark.createDataFrame(
        pd.DataFrame({"qid": np.arange(n), "features": list(rng.normal(size=(n, 4)))})
    ).repartition(3)
    for budget in (None, 0):
        est = NearestNeighbors(k=3, numShards=2)
        if budget is not None:
            est.setMaxBroadcastBytes(budget)
        out = est.fit(items).kneighbors(queries)
        stats = out.agg(F.count("*").alias("n"), F.countDistinct("qid").alias("d")).first()
        assert (stats["n"], stats["d"]) == (n, n)
