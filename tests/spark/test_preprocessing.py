"""Standardization, imputation and class weights against scikit-learn references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import StandardScaler as SparkStandardScaler
from pyspark.ml.feature import VectorAssembler
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.impute import SimpleImputer
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neighbors import NearestNeighbors as SkNearestNeighbors
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from knnspark import (
    InvalidInputError,
    KNNClassificationModel,
    KNNClassifier,
    NearestNeighbors,
)


def _wine():
    x, y = load_wine(return_X_y=True)
    return x[::2], y[::2].astype(float), x[1::2], y[1::2].astype(float)


def _frame(spark, x, y=None):
    data = {"qid": np.arange(len(x)), "features": list(x)}
    if y is not None:
        data["label"] = y
    return spark.createDataFrame(pd.DataFrame(data))


def _zscore(x_train):
    # Spark's Summarizer (and StandardScaler) use the sample standard deviation.
    scaler = StandardScaler().fit(x_train)
    scaler.scale_ = x_train.std(axis=0, ddof=1)
    return scaler


@pytest.mark.parametrize("standardization", ["zscore", "minmax"])
def test_standardization_matches_sklearn_pipeline(spark, standardization):
    x_train, y_train, x_test, _ = _wine()
    scaler = _zscore(x_train) if standardization == "zscore" else MinMaxScaler().fit(x_train)
    ref = KNeighborsClassifier(n_neighbors=5, weights="distance")
    ref.fit(scaler.transform(x_train), y_train)
    model = KNNClassifier(k=5, weights="distance", standardization=standardization, numShards=2)
    model = model.fit(_frame(spark, x_train, y_train))
    out = model.transform(_frame(spark, x_test)).orderBy("qid").toPandas()
    np.testing.assert_array_equal(out["prediction"], ref.predict(scaler.transform(x_test)))
    proba = np.stack([v.toArray() for v in out["probability"]])
    np.testing.assert_allclose(proba, ref.predict_proba(scaler.transform(x_test)), atol=1e-5)
    # Scaling without it changes the answer on wine (features span 0.1 to 1000).
    plain = KNNClassifier(k=5, weights="distance").fit(_frame(spark, x_train, y_train))
    plain_pred = plain.transform(_frame(spark, x_test)).orderBy("qid").toPandas()["prediction"]
    assert (plain_pred != out["prediction"]).any()


def test_kneighbors_applies_the_same_scaling(spark, tmp_path):
    x_train, _, x_test, _ = _wine()
    scaler = _zscore(x_train)
    ref_dist, ref_idx = (
        SkNearestNeighbors(n_neighbors=4)
        .fit(scaler.transform(x_train))
        .kneighbors(scaler.transform(x_test))
    )
    model = NearestNeighbors(k=4, standardization="zscore").fit(_frame(spark, x_train))
    model.write().save(str(tmp_path / "m"))
    for m in (model, type(model).load(str(tmp_path / "m"))):
        out = m.kneighbors(_frame(spark, x_test)).orderBy("qid").toPandas()
        np.testing.assert_array_equal(np.stack(out["neighbor_ids"]), ref_idx)
        np.testing.assert_allclose(np.stack(out["distances"]), ref_dist, rtol=1e-5)


def test_constant_feature_does_not_divide_by_zero(spark):
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(size=60), np.full(60, 7.0), rng.normal(size=60)])
    y = (x[:, 0] > 0).astype(float)
    for standardization in ("zscore", "minmax"):
        model = KNNClassifier(k=3, standardization=standardization).fit(_frame(spark, x, y))
        assert model.index.preprocessing.scale[1] == 1.0
        out = model.transform(_frame(spark, x)).toPandas()
        assert out["prediction"].notna().all()
        assert (out["prediction"] == y).mean() > 0.9


@pytest.mark.parametrize("strategy", ["mean", "median"])
def test_imputation_matches_simple_imputer(spark, strategy, tmp_path):
    x_train, y_train, x_test, _ = _wine()
    rng = np.random.default_rng(1)
    x_missing = x_train.copy()
    x_missing[rng.random(x_missing.shape) < 0.1] = np.nan
    q_missing = x_test.copy()
    q_missing[rng.random(q_missing.shape) < 0.1] = np.nan
    imputer = SimpleImputer(strategy=strategy).fit(x_missing)
    scaler = _zscore(imputer.transform(x_missing))
    ref = KNeighborsClassifier(n_neighbors=5).fit(
        scaler.transform(imputer.transform(x_missing)), y_train
    )
    expected = ref.predict(scaler.transform(imputer.transform(q_missing)))
    est = KNNClassifier(k=5, imputeStrategy=strategy, standardization="zscore", numShards=3)
    model = est.fit(_frame(spark, x_missing, y_train))
    assert model.numTrainingRows == len(x_missing)  # NaN entries are imputed, not invalid
    np.testing.assert_allclose(model.index.preprocessing.fill, imputer.statistics_, rtol=1e-5)
    out = model.transform(_frame(spark, q_missing)).orderBy("qid").toPandas()
    np.testing.assert_array_equal(out["prediction"], expected)
    model.write().save(str(tmp_path / "m"))
    loaded = KNNClassificationModel.load(str(tmp_path / "m"))
    again = loaded.transform(_frame(spark, q_missing)).orderBy("qid").toPandas()
    np.testing.assert_array_equal(again["prediction"], out["prediction"])


def test_imputation_leaves_null_vectors_to_handle_invalid(spark):
    train = spark.createDataFrame(
        [([1.0, float("nan")], 0.0), ([2.0, 1.0], 0.0), ([9.0, 9.0], 1.0), (None, 1.0)],
        "features array<double>, label double",
    )
    with pytest.raises(InvalidInputError, match="1 null or empty feature vectors"):
        KNNClassifier(k=1, imputeStrategy="mean").fit(train)
    model = KNNClassifier(k=1, imputeStrategy="mean", handleInvalid="skip").fit(train)
    assert model.numTrainingRows == 3
    queries = spark.createDataFrame(
        [(0, [float("nan"), 9.5]), (1, None)], "qid int, features array<double>"
    )
    out = model.setHandleInvalid("keep").transform(queries).orderBy("qid").collect()
    assert out[0]["prediction"] == 1.0 and out[1]["prediction"] is None


def test_all_nan_feature_cannot_be_imputed(spark):
    train = spark.createDataFrame(
        [([1.0, float("nan")], 0.0), ([2.0, float("nan")], 1.0)],
        "features array<double>, label double",
    )
    with pytest.raises(InvalidInputError, match="feature 1 is NaN in every training row"):
        KNNClassifier(k=1, imputeStrategy="median").fit(train)


def test_class_weights_reweigh_the_votes(spark):
    x, y = load_breast_cancer(return_X_y=True)
    keep = np.flatnonzero((y == 1) | (np.arange(len(y)) % 4 == 0))  # fewer class-0 rows
    x, y = x[keep], y[keep].astype(float)
    x_train, y_train, x_test = x[::2], y[::2], x[1::2]
    scaler = _zscore(x_train)
    dist, idx = (
        SkNearestNeighbors(n_neighbors=9)
        .fit(scaler.transform(x_train))
        .kneighbors(scaler.transform(x_test))
    )
    counts = np.bincount(y_train.astype(int))
    for class_weights, w in (
        ("balanced", len(y_train) / (2 * counts)),
        ({0: 3.0}, np.array([3.0, 1.0])),
    ):
        # Reference: numpy votes over scikit-learn's neighbor lists.
        votes = np.zeros((len(x_test), 2))
        for row in range(len(x_test)):
            for j in idx[row]:
                votes[row, int(y_train[j])] += w[int(y_train[j])]
        expected_proba = votes / votes.sum(axis=1, keepdims=True)
        model = KNNClassifier(k=9, standardization="zscore", classWeights=class_weights).fit(
            _frame(spark, x_train, y_train)
        )
        out = model.transform(_frame(spark, x_test)).orderBy("qid").toPandas()
        proba = np.stack([v.toArray() for v in out["probability"]])
        np.testing.assert_allclose(proba, expected_proba, atol=1e-9)
        np.testing.assert_allclose(np.stack([v.toArray() for v in out["rawPrediction"]]), votes)
        np.testing.assert_array_equal(out["prediction"], np.argmax(expected_proba, axis=1))
    assert model.classCounts.tolist() == counts.tolist()


def test_class_weights_must_name_training_classes(spark):
    train = _frame(spark, np.eye(3), np.array([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"classWeights names class 5.0"):
        KNNClassifier(k=1, classWeights={5: 2.0}).fit(train)
    with pytest.raises(ValueError, match="finite weight > 0"):
        KNNClassifier(classWeights={0: 0.0})


def test_spark_native_pipeline_from_readme(spark, tmp_path):
    x_train, y_train, x_test, y_test = _wine()
    names = [f"x{i}" for i in range(x_train.shape[1])]
    train = spark.createDataFrame(pd.DataFrame(x_train, columns=names).assign(label=y_train))
    test = spark.createDataFrame(pd.DataFrame(x_test, columns=names).assign(label=y_test))
    pipeline = Pipeline(
        stages=[
            VectorAssembler(inputCols=names, outputCol="raw"),
            SparkStandardScaler(inputCol="raw", outputCol="features", withMean=True),
            KNNClassifier(k=5),
        ]
    )
    model = pipeline.fit(train)
    model.write().overwrite().save(str(tmp_path / "pipe"))
    loaded = PipelineModel.load(str(tmp_path / "pipe"))
    got = loaded.transform(test).select("prediction").toPandas()["prediction"]
    ref = KNeighborsClassifier(5).fit(_zscore(x_train).transform(x_train), y_train)
    np.testing.assert_array_equal(got, ref.predict(_zscore(x_train).transform(x_test)))
