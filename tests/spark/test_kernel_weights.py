"""Kernel weights end to end: the models against scikit-learn with callable ``weights``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyspark.ml.evaluation import MulticlassClassificationEvaluator
from pyspark.ml.tuning import ParamGridBuilder
from sklearn import datasets
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from spark_jobs import no_spark_job

from knnspark import KNNClassifier, KNNRegressor
from knnspark.tuning import KNNCrossValidator


def kernel(name, h):
    if name == "gaussian":
        return lambda d: np.exp(-(d**2) / (2.0 * h**2))
    if name == "tricube":
        return lambda d: np.where(d < h, (1.0 - np.clip(d / h, 0, 1) ** 3) ** 3, 0.0)
    return lambda d: np.where(d < h, 1.0 - np.clip(d / h, 0, 1) ** 2, 0.0)


def load(loader):
    x, y = loader(return_X_y=True)
    x = ((x - x.mean(axis=0)) / x.std(axis=0)).astype(np.float32).astype(np.float64)
    test = np.arange(len(x)) % 4 == 0
    return x[~test], y[~test].astype(np.float64), x[test], y[test].astype(np.float64)


def frame(spark, x, y=None):
    data = {"features": list(x)}
    if y is not None:
        data["label"] = y
    return spark.createDataFrame(pd.DataFrame(data))


@pytest.mark.parametrize("loader", [datasets.load_iris, datasets.load_wine])
def test_classifier_kernels_match_sklearn(spark, loader):
    x_train, y_train, x_test, _ = load(loader)
    k = 7
    near = KNeighborsClassifier(n_neighbors=1).fit(x_train, y_train)
    h = float(1.2 * near.kneighbors(x_test)[0].max())  # no row falls back to uniform
    model = KNNClassifier(k=k, numShards=3, weights="gaussian", bandwidth=h)
    model = model.fit(frame(spark, x_train, y_train))
    test_df = frame(spark, x_test)
    for name in ("gaussian", "tricube", "epanechnikov"):
        ref = KNeighborsClassifier(n_neighbors=k, weights=kernel(name, h), algorithm="brute")
        ref.fit(x_train, y_train)
        out = model.setWeights(name).transform(test_df).toPandas()
        np.testing.assert_array_equal(out["prediction"], ref.predict(x_test))
        proba = np.stack([v.toArray() for v in out["probability"]])
        np.testing.assert_allclose(proba, ref.predict_proba(x_test), atol=1e-6)


def test_regressor_kernels_match_sklearn_and_fall_back_to_uniform(spark):
    x_train, y_train, x_test, _ = load(datasets.load_diabetes)
    k = 9
    nearest = KNeighborsRegressor(n_neighbors=k + 1).fit(x_train, y_train).kneighbors(x_test)[0]
    h = float(np.median(nearest[:, 0])) + 1e-6  # about half the rows have no neighbor within h
    # Rows whose k-th and (k+1)-th neighbors tie may pick either (knnspark: the smaller id).
    clear = nearest[:, k] - nearest[:, k - 1] > 1e-5
    fallback = nearest[:, 0] >= h
    assert clear.mean() > 0.8 and 0.3 < fallback.mean() < 0.7
    model = KNNRegressor(k=k, numShards=2, weights="tricube", bandwidth=h)
    pred = model.fit(frame(spark, x_train, y_train)).transform(frame(spark, x_test)).toPandas()
    pred = pred["prediction"].to_numpy()
    ref = KNeighborsRegressor(n_neighbors=k, weights=kernel("tricube", h), algorithm="brute")
    ref.fit(x_train, y_train)
    rows = clear & ~fallback
    np.testing.assert_allclose(pred[rows], ref.predict(x_test[rows]), rtol=1e-6)
    uniform = KNeighborsRegressor(n_neighbors=k, algorithm="brute").fit(x_train, y_train)
    rows = clear & fallback
    np.testing.assert_allclose(pred[rows], uniform.predict(x_test[rows]), rtol=1e-6)


def test_bandwidth_errors_come_before_any_spark_job(spark):
    train = frame(spark, np.arange(12.0).reshape(6, 2), np.array([0, 1] * 3, dtype=float))
    message = r"Param bandwidth must be set to a finite number > 0 when weights='gaussian'; got No"
    with no_spark_job(spark), pytest.raises(ValueError, match=message):
        KNNClassifier(k=3, weights="gaussian").fit(train)
    with pytest.raises(ValueError, match=r"Param bandwidth must be a finite number > 0; got 0.0"):
        KNNRegressor(bandwidth=0.0)
    with pytest.raises(ValueError, match=r"Param bandwidth must be a finite number > 0; got -1.0"):
        KNNClassifier().setBandwidth(-1.0)
    model = KNNClassifier(k=3).fit(train)
    with no_spark_job(spark), pytest.raises(ValueError, match="when weights='tricube'; got None"):
        model.setWeights("tricube").transform(train)
    with pytest.raises(ValueError, match=r"Param weights='epanechnikov' weighs neighbors by"):
        KNNClassifier(metric="inner_product", weights="epanechnikov", bandwidth=1.0).fit(train)


def test_a_grid_with_a_kernel_but_no_bandwidth_names_the_map(spark):
    train = frame(spark, np.arange(24.0).reshape(12, 2), np.array([0, 1] * 6, dtype=float))
    clf = KNNClassifier()
    grid = ParamGridBuilder().addGrid(clf.weights, ["uniform", "gaussian"]).build()
    cv = KNNCrossValidator(
        estimator=clf, estimatorParamMaps=grid, evaluator=MulticlassClassificationEvaluator()
    )
    message = r"estimatorParamMaps\[1\] \{weights='gaussian'\}: Param bandwidth must be set"
    with no_spark_job(spark), pytest.raises(ValueError, match=message):
        cv.fit(train)
