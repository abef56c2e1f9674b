"""Wrong answers and unusable errors at the edges (issue 15), end to end on both search paths.

Each case compares with scikit-learn or a numpy reference: cosine rounding with distance
weights, inner product with distance weights, a user id equal to the internal padding id,
values that overflow float32, numpy integers as params, and a nondeterministic input.
"""

from __future__ import annotations

import random
import re

import numpy as np
import pytest
from py4j.protocol import Py4JJavaError
from pyspark.errors import PythonException
from pyspark.ml.evaluation import MulticlassClassificationEvaluator
from pyspark.ml.linalg import Vectors
from pyspark.ml.tuning import ParamGridBuilder
from pyspark.sql import functions as F
from pyspark.sql import types as T
from scipy.spatial.distance import cdist
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from spark_jobs import no_spark_job

from knnspark import InvalidInputError, KNNClassifier, KNNRegressor, NearestNeighbors
from knnspark.kernels.distances import METRICS
from knnspark.kernels.topk import PAD_ID
from knnspark.tuning import KNNCrossValidator

SPARK_JOB_ERRORS = (PythonException, Py4JJavaError)
PATHS = [pytest.param({}, id="broadcast"), pytest.param({"maxBroadcastBytes": 0}, id="distributed")]


# ---------------------------------------------------------------- 1. cosine + distance weights


@pytest.mark.parametrize("path", PATHS)
def test_cosine_distance_weighting_matches_sklearn(spark, path):
    # The repro: the query is training row 0; row 1 is 3x it (parallel), k=2.
    x = np.array([1.304, 0.94708, -0.70373])
    train = np.array([x, 3 * x, [-1.0, 0.0, 0.0]]).astype(np.float32).astype(np.float64)
    labels = np.array([0.0, 1.0, 1.0])
    df = spark.createDataFrame(
        [(Vectors.dense(f), float(y)) for f, y in zip(train, labels, strict=True)],
        ["features", "label"],
    )
    queries = spark.createDataFrame([(Vectors.dense(train[0]),)], ["features"])
    params = dict(k=2, metric="cosine", weights="distance", numShards=2, **path)
    clf = KNNClassifier(**params).fit(df)
    reg = KNNRegressor(**params).fit(df)
    sk = dict(n_neighbors=2, metric="cosine", weights="distance", algorithm="brute")
    expected_proba = KNeighborsClassifier(**sk).fit(train, labels).predict_proba(train[:1])
    expected = KNeighborsRegressor(**sk).fit(train, labels).predict(train[:1])
    got = clf.transform(queries).first()
    np.testing.assert_allclose(got["probability"].toArray(), expected_proba[0])  # [1, 0]
    assert got["prediction"] == 0.0
    np.testing.assert_allclose(reg.transform(queries).first()["prediction"], expected[0])  # 0.0


# ---------------------------------------------------------------- 2. inner product + distance

IP_MESSAGE = r"weights='distance'.*metric='inner_product' gives distances that can be negative"


def _ip_train(spark):
    return spark.createDataFrame(
        [([2.0, 0.0], 0.0), ([0.0, 0.0], 1.0), ([0.0, 5.0], 1.0)], ["features", "label"]
    )


def test_inner_product_refuses_distance_weights_on_setters(spark):
    model = KNNClassifier(k=2, metric="inner_product").fit(_ip_train(spark))
    with no_spark_job(spark):
        with pytest.raises(ValueError, match=IP_MESSAGE):
            model.setWeights("distance")
        assert model.getWeights() == "uniform"
        with pytest.raises(ValueError, match=IP_MESSAGE):
            KNNRegressor(weights="distance").setMetric("inner_product")
        with pytest.raises(ValueError, match=IP_MESSAGE):
            KNNClassifier(metric="inner_product", weights="distance")._check_params()
    probability = model.transform(spark.createDataFrame([([1.0, 0.0],)], ["features"]))
    assert probability.first()["probability"].toArray().tolist() == [0.5, 0.5]


def test_inner_product_refuses_distance_weights_at_fit_and_transform(spark):
    train = _ip_train(spark)
    with no_spark_job(spark):
        with pytest.raises(ValueError, match=IP_MESSAGE):
            KNNClassifier(k=2, metric="inner_product", weights="distance").fit(train)
    model = KNNClassifier(k=2, metric="inner_product").fit(train)
    model._set(weights="distance")  # as a param map or an old saved model would
    with no_spark_job(spark):
        with pytest.raises(ValueError, match=IP_MESSAGE):
            model.transform(train)


def test_inner_product_distance_weights_in_a_grid_fail_before_any_job(spark):
    clf = KNNClassifier(metric="inner_product")
    grid = ParamGridBuilder().addGrid(clf.weights, ["uniform", "distance"]).build()
    cv = KNNCrossValidator(
        estimator=clf, estimatorParamMaps=grid, evaluator=MulticlassClassificationEvaluator()
    )
    with no_spark_job(spark):
        with pytest.raises(ValueError, match=r"estimatorParamMaps\[1\] \{weights='distance'\}"):
            cv.fit(_ip_train(spark))


# ---------------------------------------------------------------- 3. the padding id


@pytest.mark.parametrize("path", PATHS)
def test_a_user_id_equal_to_the_padding_id_is_an_ordinary_id(spark, path):
    ids = np.array([0, PAD_ID, 5, 6, 7])
    train = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [10.0, 0.0]])
    labels = [0.0, 1.0, 0.0, 1.0, 1.0]
    df = spark.createDataFrame(
        [(int(i), f.tolist(), y) for i, f, y in zip(ids, train, labels, strict=True)],
        "id long, features array<double>, label double",
    )
    # Equal queries in several partitions: the distributed path searches a shard twice.
    query = np.array([1.1, 0.0])
    queries = spark.createDataFrame(
        [(q, query.tolist()) for q in range(8)], "qid int, features array<double>"
    ).repartition(4)
    model = NearestNeighbors(k=2, idCol="id", numShards=2, **path).fit(df)
    dist = np.linalg.norm(train - query, axis=1)
    expected = ids[np.lexsort((ids, dist))[:2]].tolist()  # [PAD_ID, 5]
    rows = model.kneighbors(queries).collect()
    assert len(rows) == 8
    assert all(r["neighbor_ids"] == expected for r in rows)
    clf = KNNClassifier(k=2, idCol="id", numShards=2, **path).fit(df)
    # Neighbors PAD_ID (label 1) and 5 (label 0): a tie that goes to class 0 either way, so
    # check the votes: one each, never the PAD_ID row twice.
    votes = {tuple(r["rawPrediction"].toArray()) for r in clf.transform(queries).collect()}
    assert votes == {(1.0, 1.0)}


# ---------------------------------------------------------------- 5. float32 overflow


def test_fit_says_a_finite_huge_value_overflows_float32(spark):
    df = spark.createDataFrame(
        [(Vectors.dense([0.1 * i, 1.0]), 0.0) for i in range(5)]
        + [(Vectors.dense([1e308, 1.0]), 1.0), (Vectors.dense([-4e38, 0.0]), 1.0)]
        + [(Vectors.dense([float("nan"), 0.0]), 1.0)],
        ["features", "label"],
    )
    message = (
        "1 feature vectors with NaN or infinite values; 2 feature vectors with finite values "
        "beyond +-3.4e38, which overflow the float32 storage of features"
    )
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        KNNClassifier(k=2).fit(df)
    arrays = df.select(F.col("label"), F.array(F.lit(3e300), F.lit(0.0)).alias("features"))
    with pytest.raises(InvalidInputError, match="2 feature vectors with finite values beyond"):
        NearestNeighbors(k=1).fit(arrays.limit(2))


@pytest.mark.parametrize("path", PATHS)
def test_transform_says_a_finite_huge_query_value_overflows_float32(spark, path):
    train = spark.createDataFrame([([float(i), 0.0],) for i in range(6)], ["features"])
    model = NearestNeighbors(k=2, numShards=2, **path).fit(train)
    queries = spark.createDataFrame([([1e308, 0.0],)], "features array<double>")
    with pytest.raises(SPARK_JOB_ERRORS, match="overflows the float32 storage of features"):
        model.kneighbors(queries).collect()


# ---------------------------------------------------------------- 6. numpy params


def test_numpy_numbers_are_accepted_as_params(spark):
    train = spark.createDataFrame(
        [([float(i), float(i % 3)], float(i % 2)) for i in range(12)], ["features", "label"]
    )
    clf = KNNClassifier(k=np.int64(3), p=np.float32(3.0), metric="minkowski", numShards=np.int32(2))
    assert (clf.getK(), clf.getNumShards(), clf.getP()) == (3, 2, 3.0)
    assert type(clf.getK()) is int
    model = clf.fit(train, {clf.k: np.int16(4)})
    assert model.getK() == 4 and model.setK(np.uint8(5)).getK() == 5
    assert model.transform(train).count() == 12
    with pytest.raises(TypeError, match="Param k must be an integer >= 1; got np.float64"):
        KNNClassifier(k=np.float64(2.5))
    with pytest.raises(TypeError, match="Param k must be an integer >= 1; got np.True_"):
        KNNClassifier(k=np.bool_(True))


def test_cross_validator_takes_a_grid_from_np_arange(spark):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    y = (x[:, 0] > 0).astype(float)
    df = spark.createDataFrame(
        [(xi.tolist(), float(yi)) for xi, yi in zip(x, y, strict=True)], ["features", "label"]
    )
    clf = KNNClassifier(numShards=2)
    grid = (
        ParamGridBuilder()
        .addGrid(clf.k, np.arange(1, 8, 3))
        .addGrid(clf.p, np.linspace(1.0, 2.0, 2))
        .build()
    )
    cv = KNNCrossValidator(
        estimator=clf,
        estimatorParamMaps=grid,
        evaluator=MulticlassClassificationEvaluator(metricName="accuracy"),
        numFolds=2,
        seed=1,
    ).fit(df)
    assert len(cv.avgMetrics) == 6
    assert type(cv.bestParams["k"]) is int and cv.bestParams["k"] in (1, 4, 7)
    assert cv.bestModel.getK() == cv.bestParams["k"]


# ---------------------------------------------------------------- 7. nondeterministic input


def test_fit_on_an_input_that_changes_between_evaluations_says_so(spark):
    keep = F.udf(lambda i: random.random() < 0.5, T.BooleanType()).asNondeterministic()
    df = (
        spark.range(0, 4000, numPartitions=4)
        .filter(keep(F.col("id")))
        .select(F.array(F.col("id").cast("double"), F.lit(0.0)).alias("features"))
    )
    message = r"the training DataFrame gave different rows when fit evaluated it again.*[Cc]ache"
    for kind in PATHS:
        with pytest.raises((InvalidInputError, *SPARK_JOB_ERRORS), match=message):
            NearestNeighbors(k=1, numShards=2, algorithm="brute", **kind.values[0]).fit(df)


# ---------------------------------------------------------------- 9. property-style check

#: (metric, p): every metric a plain model can be searched with (mahalanobis whitens the
#: rows at fit, tests/spark/test_mahalanobis.py), and Minkowski at a p whose plain powers
#: overflow float64 here.
_CASES = [(m, 3.0) for m, e in METRICS.items() if not e.whitens] + [("minkowski", 60.0)]


def _reference_distances(metric: str, p: float, q: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Brute force in numpy/scipy; Minkowski and cosine in extended precision."""
    wide_q, wide_x = q.astype(np.longdouble)[:, None, :], x.astype(np.longdouble)[None, :, :]
    if metric == "inner_product":
        return 1.0 - q @ x.T
    if metric == "minkowski":
        dist = (np.abs(wide_q - wide_x) ** p).sum(axis=2) ** (np.longdouble(1) / p)
    elif metric == "cosine":
        dot = (wide_q * wide_x).sum(axis=2)
        norms = np.sqrt((wide_q**2).sum(axis=2)) * np.sqrt((wide_x**2).sum(axis=2))
        dist = np.clip(1 - dot / norms, 0, 2)
    else:
        # Without missing values nan_euclidean is euclidean.
        scipy_name = {"manhattan": "cityblock", "nan_euclidean": "euclidean"}.get(metric, metric)
        dist = cdist(q, x, scipy_name)
    # A vector and itself are 0 apart (the extended-precision cosine leaves 1e-19).
    same = (q[:, None, :] == x[None, :, :]).all(axis=2)
    return np.where(same, 0.0, dist.astype(np.float64))


def _reference_proba(dist, labels, classes, weights):
    if weights == "uniform":
        w = np.ones_like(dist)
    else:
        exact = dist == 0.0
        with np.errstate(divide="ignore"):
            w = np.where(exact.any(axis=1, keepdims=True), exact.astype(float), 1.0 / dist)
    votes = np.stack([(w * (labels == c)).sum(axis=1) for c in classes], axis=1)
    return votes / votes.sum(axis=1, keepdims=True)


@pytest.mark.slow
@pytest.mark.skipif(np.finfo(np.longdouble).maxexp <= 1024, reason="needs an extended longdouble")
def test_every_metric_and_weighting_matches_numpy_on_both_paths(spark):
    rng = np.random.default_rng(15)
    n_train, n_queries, k, scale = 80, 24, 5, 1e6

    # Four continuous coordinates and two from {0, 1, 2}: hamming ties, broken by id.
    def draw(n):
        return np.hstack([rng.normal(size=(n, 4)), rng.integers(0, 3, size=(n, 2))]) * scale

    train = draw(n_train).astype(np.float32).astype(np.float64)
    queries = draw(n_queries).astype(np.float32).astype(np.float64)
    queries[:4] = train[[3, 17, 40, 79]]  # exact matches: distance 0 takes all the weight
    ids = rng.permutation(n_train) * 3 + 1
    ids[3] = PAD_ID  # a valid id; query 0 (and its copies below) has this row nearest
    labels = rng.integers(0, 3, size=n_train).astype(float)
    classes = np.array([0.0, 1.0, 2.0])
    df = spark.createDataFrame(
        [(int(i), f.tolist(), float(y)) for i, f, y in zip(ids, train, labels, strict=True)],
        "id long, features array<double>, label double",
    )
    # Copies of query 0 in other partitions: the distributed path searches a shard twice.
    queries = np.vstack([queries, queries[[0, 0, 0]]])
    # Cached: the 34 cases (and the distributed path's query counts) read the same three
    # partitions instead of shuffling the queries again for each.
    qdf = (
        spark.createDataFrame(
            [(q, f.tolist()) for q, f in enumerate(queries)], "qid int, features array<double>"
        )
        .repartition(3)
        .cache()
    )
    est = KNNClassifier(k=k, idCol="id", numShards=3, algorithm="brute", neighborsCol="nb")
    models = [est.fit(df), est.copy({est.maxBroadcastBytes: 0}).fit(df)]
    assert [m.storage for m in models] == ["broadcast", "distributed"]
    cases = [
        (metric, p, weights, model)
        for metric, p in _CASES
        for weights in (("uniform", "distance") if METRICS[metric].nonnegative else ("uniform",))
        for model in models
    ]
    # Every case in one union: one Spark job.
    scored = [
        model.copy({model.metric: metric, model.p: p, model.weights: weights})
        .transform(qdf)
        .withColumn("case", F.lit(i))
        for i, (metric, p, weights, model) in enumerate(cases)
    ]
    union = scored[0]
    for frame in scored[1:]:
        union = union.unionByName(frame)
    collected = sorted(union.collect(), key=lambda r: (r["case"], r["qid"]))
    qdf.unpersist()
    for i, (metric, p, weights, model) in enumerate(cases):
        rows = [r for r in collected if r["case"] == i]
        ref_dist = _reference_distances(metric, p, queries, train)
        order = np.array([np.lexsort((ids, row))[:k] for row in ref_dist])
        ref_k_dist = np.take_along_axis(ref_dist, order, axis=1)
        expected = _reference_proba(ref_k_dist, labels[order], classes, weights)
        where = f"{metric}, p={p}, {weights}, {model.storage}"
        proba = np.array([r["probability"].toArray() for r in rows])
        assert proba.min() >= 0.0 and proba.max() <= 1.0, where
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12, err_msg=where)
        got_ids = np.array([[n["id"] for n in r["nb"]] for r in rows])
        got_dist = np.array([[n["distance"] for n in r["nb"]] for r in rows])
        np.testing.assert_array_equal(got_ids, ids[order], err_msg=where)
        np.testing.assert_allclose(got_dist, ref_k_dist, rtol=1e-9, atol=1e-12, err_msg=where)
        np.testing.assert_allclose(proba, expected, rtol=1e-9, atol=1e-15, err_msg=where)
