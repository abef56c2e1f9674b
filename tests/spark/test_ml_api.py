"""The estimators and models behave as Spark ML stages: Pipeline, tuning, copy, params, I/O."""

from __future__ import annotations

import math

import numpy as np
import pytest
from chispa import assert_df_equality
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.ml.linalg import DenseVector, SparseVector, Vectors, VectorUDT
from pyspark.ml.tuning import ParamGridBuilder
from pyspark.sql import types as T
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

from knnspark import (
    KNNClassificationModel,
    KNNClassifier,
    KNNRegressionModel,
    KNNRegressor,
    NearestNeighbors,
    NearestNeighborsModel,
)
from knnspark.params import METRICS

N_TRAIN = 80
N_TEST = 30
DIM = 4
NUM_SHARDS = 3
COLUMNS = ["a", "b", "c", "d"]
CLASSES = [1.0, 3.0, 7.0]

ESTIMATORS = [KNNClassifier, KNNRegressor, NearestNeighbors]
ISSUE_2_METRICS = ("euclidean", "manhattan", "chebyshev", "minkowski", "cosine", "hamming")


# ---------------------------------------------------------------- data


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(21)
    x = rng.normal(size=(N_TRAIN + N_TEST, DIM))
    labels = rng.choice(CLASSES, size=N_TRAIN + N_TEST)
    target = x @ np.array([1.0, -2.0, 0.5, 3.0]) + rng.normal(scale=0.2, size=len(x))
    return x, labels, target


def column_frame(spark, x, labels, target, offset=0):
    rows = [
        (offset + i, *map(float, xi), float(yi), float(ti))
        for i, (xi, yi, ti) in enumerate(zip(x, labels, target, strict=True))
    ]
    return spark.createDataFrame(rows, ["id", *COLUMNS, "label", "target"])


@pytest.fixture(scope="module")
def train_cols(spark, data):
    x, labels, target = data
    return column_frame(spark, x[:N_TRAIN], labels[:N_TRAIN], target[:N_TRAIN])


@pytest.fixture(scope="module")
def test_cols(spark, data):
    x, labels, target = data
    return column_frame(spark, x[N_TRAIN:], labels[N_TRAIN:], target[N_TRAIN:], offset=N_TRAIN)


def assemble(df):
    return VectorAssembler(inputCols=COLUMNS, outputCol="features").transform(df)


@pytest.fixture(scope="module")
def train_df(train_cols):
    return assemble(train_cols)


@pytest.fixture(scope="module")
def test_df(test_cols):
    return assemble(test_cols)


@pytest.fixture(scope="module")
def clf_model(train_df):
    return KNNClassifier(numShards=NUM_SHARDS).fit(train_df)


def by_id(df, *columns):
    return {r["id"]: tuple(r[c] for c in columns) for r in df.collect()}


def sklearn_classifier(data, k, weights="uniform"):
    x, labels, _ = data
    return KNeighborsClassifier(n_neighbors=k, weights=weights).fit(x[:N_TRAIN], labels[:N_TRAIN])


# ---------------------------------------------------------------- Pipeline


def test_pipeline_classifier_matches_sklearn(data, train_cols, test_cols):
    pipeline = Pipeline(
        stages=[
            VectorAssembler(inputCols=COLUMNS, outputCol="features"),
            KNNClassifier(k=5, numShards=NUM_SHARDS),
        ]
    )
    fitted = pipeline.fit(train_cols)
    assert isinstance(fitted.stages[-1], KNNClassificationModel)
    out = fitted.transform(test_cols)
    assert out.columns[: len(test_cols.columns) + 1] == test_cols.columns + ["features"]
    assert {"prediction", "probability"} <= set(out.columns)

    reference = sklearn_classifier(data, k=5)
    x_test = data[0][N_TRAIN:]
    got = by_id(out, "prediction", "probability")
    ids = sorted(got)
    np.testing.assert_array_equal([got[i][0] for i in ids], reference.predict(x_test))
    np.testing.assert_allclose(
        [got[i][1].toArray() for i in ids], reference.predict_proba(x_test), atol=1e-12
    )


def test_pipeline_regressor_matches_sklearn(data, train_cols, test_cols):
    pipeline = Pipeline(
        stages=[
            VectorAssembler(inputCols=COLUMNS, outputCol="features"),
            KNNRegressor(k=4, labelCol="target", weights="distance", numShards=NUM_SHARDS),
        ]
    )
    out = pipeline.fit(train_cols).transform(test_cols)
    x, _, target = data
    reference = KNeighborsRegressor(n_neighbors=4, weights="distance").fit(
        x[:N_TRAIN], target[:N_TRAIN]
    )
    got = by_id(out, "prediction")
    np.testing.assert_allclose(
        [got[i][0] for i in sorted(got)], reference.predict(x[N_TRAIN:]), rtol=1e-6
    )


def test_pipeline_model_save_and_load(train_cols, test_cols, tmp_path):
    pipeline = Pipeline(
        stages=[
            VectorAssembler(inputCols=COLUMNS, outputCol="features"),
            KNNClassifier(k=3, numShards=NUM_SHARDS, probabilityCol="proba"),
        ]
    )
    fitted = pipeline.fit(train_cols)
    fitted.write().save(str(tmp_path / "pipeline-model"))
    loaded = PipelineModel.load(str(tmp_path / "pipeline-model"))
    assert isinstance(loaded.stages[-1], KNNClassificationModel)
    assert loaded.stages[-1].getK() == 3

    def plain(df):
        return df.withColumn("features", vector_to_array("features")).withColumn(
            "proba", vector_to_array("proba")
        )

    assert_df_equality(
        plain(loaded.transform(test_cols)),
        plain(fitted.transform(test_cols)),
        ignore_row_order=True,
    )

    pipeline.write().save(str(tmp_path / "pipeline"))
    stages = Pipeline.load(str(tmp_path / "pipeline")).getStages()
    assert isinstance(stages[-1], KNNClassifier)
    assert (stages[-1].getK(), stages[-1].getProbabilityCol()) == (3, "proba")


# ---------------------------------------------------------------- tuning


def test_param_grid_over_k_and_weights(data, train_df, test_df):
    clf = KNNClassifier(numShards=NUM_SHARDS)
    grid = (
        ParamGridBuilder()
        .addGrid(clf.k, [1, 4])
        .addGrid(clf.weights, ["uniform", "distance"])
        .build()
    )
    assert len(grid) == 4
    x_test = data[0][N_TRAIN:]
    for param_map in grid:
        k, weights = param_map[clf.k], param_map[clf.weights]
        model = clf.fit(train_df, param_map)
        assert isinstance(model, KNNClassificationModel)
        assert (model.getK(), model.getWeights()) == (k, weights)
        got = by_id(model.transform(test_df), "prediction")
        reference = sklearn_classifier(data, k=k, weights=weights).predict(x_test)
        np.testing.assert_array_equal([got[i][0] for i in sorted(got)], reference)
    # Fitting with a param map leaves the estimator as it was.
    assert not clf.isSet(clf.k)
    assert (clf.getK(), clf.getWeights()) == (5, "uniform")


def test_fit_multiple_returns_one_model_per_param_map(train_df):
    reg = KNNRegressor(labelCol="target", numShards=NUM_SHARDS)
    grid = ParamGridBuilder().addGrid(reg.k, [2, 3, 6]).build()
    fitted = dict(reg.fitMultiple(train_df, grid))
    assert sorted(fitted) == [0, 1, 2]
    assert [fitted[i].getK() for i in range(3)] == [2, 3, 6]


# ---------------------------------------------------------------- copy


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_estimator_copy_with_extra_params(cls):
    estimator = cls(k=3, metric="manhattan")
    copied = estimator.copy({estimator.k: 9, estimator.metric: "cosine"})
    assert copied is not estimator
    assert type(copied) is cls
    assert copied.uid == estimator.uid
    assert (copied.getK(), copied.getMetric()) == (9, "cosine")
    assert (estimator.getK(), estimator.getMetric()) == (3, "manhattan")
    plain = estimator.copy()
    assert (plain.getK(), plain.getMetric()) == (3, "manhattan")


def test_model_copy_with_extra_params(clf_model, train_df):
    copied = clf_model.copy({clf_model.k: 1, clf_model.predictionCol: "nearest_label"})
    assert type(copied) is KNNClassificationModel
    assert copied.getK() == 1 and clf_model.getK() == 5
    assert copied.numTrainingRows == clf_model.numTrainingRows == N_TRAIN
    np.testing.assert_array_equal(copied.classes, clf_model.classes)

    out = copied.transform(train_df)
    assert "nearest_label" in out.columns and "prediction" not in out.columns
    # k=1 on the training rows: every row is its own nearest neighbor.
    for row in out.collect():
        assert row["nearest_label"] == row["label"]
    assert "prediction" in clf_model.transform(train_df).columns


def test_transform_with_param_map(clf_model, train_df):
    out = clf_model.transform(train_df, {clf_model.k: 1})
    assert all(r["prediction"] == r["label"] for r in out.collect())
    assert clf_model.getK() == 5


# ---------------------------------------------------------------- explainParams


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_explain_params_documents_the_rules(cls, clf_model):
    text = cls(k=7).explainParams()
    default_k = 10 if cls is NearestNeighbors else 5
    assert (
        "k: number of neighbors, an integer >= 1 and <= the number of training rows "
        f"(default: {default_k}, current: 7)"
    ) in text
    assert (
        f"metric: distance metric, one of {', '.join(METRICS)} (as scikit-learn defines them) "
        "(default: euclidean)"
    ) in text
    assert set(ISSUE_2_METRICS) <= set(METRICS)
    assert "algorithm: search algorithm" in text and "'brute' (exact)" in text
    assert "maxBroadcastBytes: largest training set" in text
    if cls is NearestNeighbors:
        assert "weights:" not in text
    else:
        assert "weights: neighbor weighting, one of uniform, distance" in text
        assert "(default: uniform)" in cls().explainParam("weights")


def test_model_explain_params(clf_model):
    text = clf_model.explainParams()
    assert "k: number of neighbors" in text
    assert "weights: neighbor weighting, one of uniform, distance" in text
    assert "numShards: number of training shards" in text


# ---------------------------------------------------------------- estimator persistence


ESTIMATOR_PARAMS = {
    KNNClassifier: dict(k=7, weights="distance", metric="cosine", idCol="id", numShards=3),
    KNNRegressor: dict(k=2, labelCol="target", metric="minkowski", p=1.5, neighborsCol="nb"),
    NearestNeighbors: dict(k=4, idCol="id", metric="hamming", distancesCol="d", numShards=2),
}


def set_params(stage) -> dict:
    return {p.name: stage.getOrDefault(p) for p in stage.params if stage.isSet(p)}


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_estimator_save_and_load(spark, cls, tmp_path):
    estimator = cls(**ESTIMATOR_PARAMS[cls])
    path = str(tmp_path / cls.__name__)
    estimator.write().save(path)
    loaded = cls.load(path)
    assert type(loaded) is cls
    assert loaded.uid == estimator.uid
    assert set_params(loaded) == set_params(estimator)
    assert {p.name: v for p, v in loaded.extractParamMap().items()} == {
        p.name: v for p, v in estimator.extractParamMap().items()
    }
    estimator.copy({estimator.k: 1}).write().overwrite().save(path)
    assert cls.load(path).getK() == 1


def test_loaded_estimator_fits_the_same_model(train_df, test_df, tmp_path):
    estimator = KNNClassifier(k=3, weights="distance", numShards=NUM_SHARDS)
    estimator.save(str(tmp_path / "clf"))
    loaded = KNNClassifier.load(str(tmp_path / "clf"))
    expected = by_id(estimator.fit(train_df).transform(test_df), "prediction", "probability")
    assert by_id(loaded.fit(train_df).transform(test_df), "prediction", "probability") == expected


# ---------------------------------------------------------------- fitted attributes


def test_classes_order_the_probability_vector(clf_model, train_df):
    np.testing.assert_array_equal(clf_model.classes, CLASSES)
    assert clf_model.numClasses == 3
    assert clf_model.numFeatures == DIM
    # The property hands out a copy: callers cannot change the model.
    clf_model.classes[0] = 99.0
    np.testing.assert_array_equal(clf_model.classes, CLASSES)

    for row in clf_model.transform(train_df, {clf_model.k: 1}).collect():
        one_hot = np.zeros(len(CLASSES))
        one_hot[CLASSES.index(row["label"])] = 1.0
        np.testing.assert_array_equal(row["probability"].toArray(), one_hot)


def test_num_features_for_every_model(spark, train_df):
    reg = KNNRegressor(k=2, labelCol="target", numShards=NUM_SHARDS).fit(train_df)
    nn = NearestNeighbors(k=2, numShards=NUM_SHARDS).fit(train_df)
    assert reg.numFeatures == nn.numFeatures == DIM
    assert isinstance(reg, KNNRegressionModel) and isinstance(nn, NearestNeighborsModel)

    sparse = spark.createDataFrame(
        [(Vectors.sparse(7, [i % 7], [1.0 + i]), float(i % 2)) for i in range(10)],
        T.StructType(
            [T.StructField("features", VectorUDT()), T.StructField("label", T.DoubleType())]
        ),
    )
    model = KNNClassifier(k=1, numShards=NUM_SHARDS).fit(sparse)
    assert model.numFeatures == 7
    np.testing.assert_array_equal(model.classes, [0.0, 1.0])


# ---------------------------------------------------------------- transform keeps the input


PASSTHROUGH_SCHEMA = T.StructType(
    [
        T.StructField("id", T.LongType()),
        T.StructField("features", VectorUDT()),
        T.StructField("sparse", VectorUDT()),
        T.StructField("other_vector", VectorUDT()),
        T.StructField("text", T.StringType()),
        T.StructField("score", T.DoubleType()),
        T.StructField("numbers", T.ArrayType(T.DoubleType())),
        T.StructField(
            "pair",
            T.StructType([T.StructField("x", T.IntegerType()), T.StructField("y", T.StringType())]),
        ),
        T.StructField("tags", T.MapType(T.StringType(), T.IntegerType())),
    ]
)


def sparsified(x):
    """Queries with one zero per row, so the sparse copy really leaves an entry out."""
    x = x.copy()
    x[np.arange(len(x)), np.arange(len(x)) % DIM] = 0.0
    return x


def passthrough_rows(x):
    rows = []
    for i, xi in enumerate(x):
        nonzero = [j for j in range(DIM) if xi[j] != 0.0]
        assert len(nonzero) < DIM
        other_vector = Vectors.sparse(5, [1], [float(i)]) if i % 2 else DenseVector([i, math.nan])
        rows.append(
            (
                i,
                DenseVector(xi),
                Vectors.sparse(DIM, nonzero, [float(xi[j]) for j in nonzero]),
                None if i == 2 else other_vector,
                None if i == 1 else f"row {i}",
                [math.nan, None, 1.5, float(i)][i % 4],
                None if i == 3 else [float(i), math.nan, -math.inf],
                (i, f"y{i}"),
                {"i": i},
            )
        )
    return rows


def normalized(value):
    """Comparable form: vectors keep their type, NaN equals NaN."""
    if isinstance(value, DenseVector):
        return ("dense", [normalized(v) for v in value.toArray().tolist()])
    if isinstance(value, SparseVector):
        return ("sparse", value.size, value.indices.tolist(), normalized(value.values.tolist()))
    if isinstance(value, (list, tuple)):  # a struct arrives as a Row, a tuple
        return [normalized(v) for v in value]
    if isinstance(value, dict):
        return {k: normalized(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return value


@pytest.mark.parametrize("max_broadcast_bytes", [None, 0], ids=["broadcast", "distributed"])
def test_transform_keeps_every_input_column(spark, data, train_df, max_broadcast_bytes):
    params = {} if max_broadcast_bytes is None else {"maxBroadcastBytes": max_broadcast_bytes}
    model = KNNClassifier(k=3, numShards=NUM_SHARDS, **params).fit(train_df)
    assert model.storage == ("broadcast" if max_broadcast_bytes is None else "distributed")
    x_test = sparsified(data[0][N_TRAIN:])
    rows = passthrough_rows(x_test)
    queries = spark.createDataFrame(rows, PASSTHROUGH_SCHEMA)

    out = model.transform(queries)
    # The input columns come first, unchanged; the model's outputs follow.
    assert out.columns[: len(queries.columns)] == queries.columns
    assert {"prediction", "probability"} <= set(out.columns[len(queries.columns) :])
    assert out.schema.fields[: len(queries.columns)] == queries.schema.fields
    collected = out.collect()
    assert len(collected) == len(rows)

    expected = {row[0]: normalized(list(row)) for row in rows}
    got = {row["id"]: normalized(list(row[: len(queries.columns)])) for row in collected}
    assert got == expected

    reference = sklearn_classifier(data, k=3).predict(x_test)
    predictions = {row["id"]: row["prediction"] for row in collected}
    np.testing.assert_array_equal([predictions[i] for i in range(len(rows))], reference)

    # The sparse copy of the features, used as the features column, predicts the same.
    sparse_out = model.copy({model.featuresCol: "sparse"}).transform(queries)
    sparse_predictions = {row["id"]: row["prediction"] for row in sparse_out.collect()}
    assert sparse_predictions == predictions


def test_kneighbors_keeps_every_input_column(spark, data, train_df):
    model = NearestNeighbors(k=2, numShards=NUM_SHARDS).fit(train_df)
    rows = passthrough_rows(sparsified(data[0][N_TRAIN:]))
    queries = spark.createDataFrame(rows, PASSTHROUGH_SCHEMA)
    out = model.kneighbors(queries)
    assert out.columns == queries.columns + ["neighbor_ids", "distances"]
    collected = out.collect()
    assert len(collected) == len(rows)
    expected = {row[0]: normalized(list(row)) for row in rows}
    assert {r["id"]: normalized(list(r[: len(queries.columns)])) for r in collected} == expected
    assert all(len(r["neighbor_ids"]) == 2 for r in collected)
