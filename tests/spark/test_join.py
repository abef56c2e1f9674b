"""knn_join against scikit-learn, Spark's own nearestByJoin, and its bad-input rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyspark.ml.linalg import Vectors
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from sklearn.neighbors import NearestNeighbors as SkNearestNeighbors

from knnspark import knn_join
from knnspark.errors import InvalidInputError, reraise_worker_errors

K = 4


@pytest.fixture(scope="module")
def sides(spark):
    rng = np.random.default_rng(5)
    centres = rng.normal(scale=4.0, size=(6, 6))
    x = (centres[rng.integers(0, 6, 400)] + rng.normal(size=(400, 6))).astype(np.float32)
    q = (centres[rng.integers(0, 6, 60)] + rng.normal(size=(60, 6))).astype(np.float32)
    right = spark.createDataFrame(
        pd.DataFrame({"item": np.arange(400) * 3 + 7, "features": list(x), "name": "r"})
    ).repartition(3)
    left = spark.createDataFrame(
        pd.DataFrame({"qid": np.arange(60), "features": list(q), "tag": "l"})
    ).repartition(4)
    return left, right, x, q


def _neighbors(out: DataFrame, id_col: str, n_left: int, k: int = K):
    pdf = out.toPandas().sort_values(["qid", "rank"])
    assert pdf.groupby("qid")["rank"].apply(list).tolist() == [list(range(1, k + 1))] * n_left
    return pdf[id_col].to_numpy().reshape(n_left, k), pdf["distance"].to_numpy().reshape(n_left, k)


@pytest.mark.parametrize(
    "metric",
    [
        "euclidean",
        pytest.param("cosine", marks=pytest.mark.slow),
        pytest.param("manhattan", marks=pytest.mark.slow),
    ],
)
@pytest.mark.parametrize("max_broadcast", [None, 0])
def test_exact_join_equals_sklearn(sides, metric, max_broadcast):
    left, right, x, q = sides
    extra = {} if max_broadcast is None else {"maxBroadcastBytes": max_broadcast}
    out = knn_join(left, right, K, metric=metric, idCol="item", numShards=3, **extra)
    assert out.columns == ["qid", "features", "tag", "item", "name", "rank", "distance"]
    assert dict(out.dtypes)["rank"] == "int" and dict(out.dtypes)["distance"] == "double"
    ids, dist = _neighbors(out, "item", len(q))
    ref = SkNearestNeighbors(n_neighbors=K, algorithm="brute", metric=metric)
    ref_dist, ref_pos = ref.fit(x.astype(np.float64)).kneighbors(q.astype(np.float64))
    assert np.array_equal(ids, ref_pos * 3 + 7)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-9, atol=1e-12)


def test_generated_ids_join_the_right_rows(spark, sides):
    left, right, x, q = sides
    # No idCol: the right rows are numbered internally; the output has only their columns.
    out = knn_join(left, right.withColumnRenamed("item", "code"), K)
    assert out.columns == ["qid", "features", "tag", "code", "name", "rank", "distance"]
    codes, _ = _neighbors(out, "code", len(q))
    ref = SkNearestNeighbors(n_neighbors=K).fit(x.astype(np.float64))
    assert np.array_equal(codes, ref.kneighbors(q.astype(np.float64))[1] * 3 + 7)


@pytest.mark.skipif(
    not hasattr(DataFrame, "nearestByJoin") or not hasattr(F, "vector_l2_distance"),
    reason="Spark's DataFrame.nearestByJoin (4.2) and vector_l2_distance (4.3) are missing",
)
def test_exact_join_returns_what_nearest_by_join_returns(sides):
    left, right, _, q = sides
    floats = F.col("features").cast("array<float>")
    lf = left.withColumn("features", floats)
    rf = right.withColumn("features", floats).withColumnRenamed("features", "rfeatures")
    expected = lf.nearestByJoin(
        rf, F.vector_l2_distance(lf["features"], rf["rfeatures"]), K, "exact", "distance"
    )
    spark_pairs = expected.select("qid", "item").toPandas()
    ours = knn_join(left, right, K, idCol="item").select("qid", "item", "rank").toPandas()
    # Spark gives no order or rank; the same (query, item) pairs, and K per query.
    key = ["qid", "item"]
    assert len(spark_pairs) == len(ours) == K * len(q)
    pd.testing.assert_frame_equal(
        spark_pairs.sort_values(key).reset_index(drop=True),
        ours[key].sort_values(key).reset_index(drop=True),
    )


def test_approx_join_recall(sides):
    left, right, x, q = sides
    out = knn_join(left, right, K, mode="approx", idCol="item", numShards=2, ef=32)
    ids, _ = _neighbors(out, "item", len(q))
    ref = SkNearestNeighbors(n_neighbors=K).fit(x.astype(np.float64))
    truth = ref.kneighbors(q.astype(np.float64))[1] * 3 + 7
    recall = np.mean([len(set(a) & set(b)) / K for a, b in zip(ids, truth, strict=True)])
    assert recall >= 0.95


def test_leftouter_keeps_left_rows_without_neighbors(spark):
    right = spark.createDataFrame([(1, [0.0, 0.0]), (2, [1.0, 1.0]), (3, [9.0, 9.0])], ["id", "f"])
    left = spark.createDataFrame(
        [
            ("ok", Vectors.dense([0.1, 0.1])),
            ("nan", Vectors.dense([float("nan"), 0.0])),
            ("null", None),
        ],
        ["q", "f"],
    )
    kwargs = {"featuresCol": "f", "idCol": "id", "handleInvalid": "skip"}
    outer = knn_join(left, right, 2, joinType="leftouter", **kwargs).orderBy("q", "rank")
    rows = [(r["q"], r["id"], r["rank"]) for r in outer.collect()]
    assert rows == [("nan", None, None), ("null", None, None), ("ok", 1, 1), ("ok", 2, 2)]
    inner = knn_join(left, right, 2, **kwargs)
    assert sorted(r["q"] for r in inner.collect()) == ["ok", "ok"]
    with pytest.raises(InvalidInputError, match="holds NaN or infinite values in a query row"):
        with reraise_worker_errors():
            knn_join(left.where("q = 'nan'"), right, 2, featuresCol="f").collect()


def test_self_join_excludes_self(spark, sides):
    _, right, x, _ = sides
    out = knn_join(right, right, K, idCol="item", excludeSelf=True, rightPrefix="nb_", numShards=2)
    assert out.columns == ["item", "features", "name", "nb_item", "nb_name", "rank", "distance"]
    pdf = out.toPandas().sort_values(["item", "rank"])
    ref_dist, ref_pos = SkNearestNeighbors(n_neighbors=K).fit(x.astype(np.float64)).kneighbors()
    order = np.argsort(np.arange(400) * 3 + 7)
    assert np.array_equal(pdf["nb_item"].to_numpy().reshape(400, K), (ref_pos * 3 + 7)[order])
    np.testing.assert_allclose(pdf["distance"].to_numpy().reshape(400, K), ref_dist[order])


# ---------------------------------------------------------------- bad input


def test_bad_params_fail_before_any_job(sides):
    left, right, _, _ = sides
    with pytest.raises(ValueError, match=r"Param k must be an integer >= 1; got 0"):
        knn_join(left, right, 0)
    with pytest.raises(ValueError, match=r"Param mode must be one of 'exact', 'approx'; got 'x'"):
        knn_join(left, right, 2, mode="x")
    with pytest.raises(ValueError, match=r"Param joinType must be one of 'inner', 'leftouter'"):
        knn_join(left, right, 2, joinType="left")
    with pytest.raises(ValueError, match=r"Param metric must be one of"):
        knn_join(left, right, 2, metric="jaccard")
    with pytest.raises(InvalidInputError, match=r"Column 'vec' \(param featuresCol\) does not"):
        knn_join(left, right, 2, featuresCol="vec")


def test_k_above_right_rows(spark):
    right = spark.createDataFrame([([0.0],), ([1.0],)], ["features"])
    with pytest.raises(
        InvalidInputError, match=r"Param k must be <= the number of training rows \(2\); got 3"
    ):
        knn_join(right, right, 3)
    right = right.withColumn("id", F.monotonically_increasing_id())
    with pytest.raises(
        InvalidInputError,
        match=r"Param k must be < the number of training rows \(2\) with excludeSelf=True",
    ):
        knn_join(right, right, 2, idCol="id", excludeSelf=True, rightPrefix="r_")


def test_colliding_columns_are_named(sides):
    left, right, _, _ = sides
    clash = right.withColumnRenamed("name", "tag")
    with pytest.raises(
        InvalidInputError,
        match=r"Column 'tag' of the right DataFrame would be output as 'tag', which the left "
        r"DataFrame already has; set rightPrefix",
    ):
        knn_join(left, clash, 2)
    with pytest.raises(InvalidInputError, match=r"Column 'rank' of the left DataFrame clashes"):
        knn_join(left.withColumn("rank", F.lit(1)), right, 2)
    with pytest.raises(InvalidInputError, match=r"output as 'distance', which knn_join's output"):
        knn_join(left, right.withColumn("distance", F.lit(1.0)), 2)
    out = knn_join(left, clash, 2, rightPrefix="r_")
    assert out.columns[3:] == ["r_item", "r_tag", "rank", "distance"]


def test_exclude_self_needs_id_columns(sides):
    left, right, _, _ = sides
    with pytest.raises(InvalidInputError, match=r"excludeSelf=True needs param idCol"):
        knn_join(left, right, 2, excludeSelf=True)
    with pytest.raises(
        InvalidInputError,
        match=r"excludeSelf=True needs column 'item' \(param idCol\) in the left DataFrame",
    ):
        knn_join(left, right, 2, idCol="item", excludeSelf=True)


def test_feature_lengths_must_match(spark, sides):
    _, right, _, _ = sides
    left = spark.createDataFrame([(0, [1.0, 2.0, 3.0])], ["qid", "features"])
    with pytest.raises(
        InvalidInputError,
        match=r"holds vectors of length 3 in 1 left rows, but the right rows' vectors have "
        r"length 6",
    ):
        knn_join(left, right, 2)


def test_right_side_of_ids_and_features_only(sides):
    left, right, x, q = sides
    # Nothing to join back: the neighbor lists carry the ids (keeping the column's type).
    out = knn_join(left, right.select(F.col("item").cast("int"), "features"), K, idCol="item")
    assert out.dtypes[3:] == [("item", "int"), ("rank", "int"), ("distance", "double")]
    ids, _ = _neighbors(out, "item", len(q))
    ref = SkNearestNeighbors(n_neighbors=K).fit(x.astype(np.float64))
    assert np.array_equal(ids, ref.kneighbors(q.astype(np.float64))[1] * 3 + 7)
    bare = knn_join(left, right.select("features"), K)
    assert bare.columns == ["qid", "features", "tag", "rank", "distance"]
    assert bare.count() == K * len(q)
