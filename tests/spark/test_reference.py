"""knnspark against scikit-learn's brute-force estimators on real datasets.

For every dataset, metric and weighting: the neighbor distances agree on every
row; the neighbor ids, predictions and probabilities agree on every row whose
k-th and (k+1)-th distances are not tied (a tie at that boundary lets either
library pick a different, equally valid, neighbor — scikit-learn's pick is
arbitrary, knnspark's goes to the smaller id).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import datasets
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neighbors import NearestNeighbors as SkNearestNeighbors

from knnspark import KNNClassifier, KNNRegressor, NearestNeighbors

METRICS = ["euclidean", "manhattan", "chebyshev", "minkowski", "cosine", "hamming"]
K = 5
P = 3.0
# Relative gap under which two distances count as tied (float32 features).
TIE_RTOL = 1e-5


def _load(name):
    loader = {
        "iris": datasets.load_iris,
        "wine": datasets.load_wine,
        "breast_cancer": datasets.load_breast_cancer,
        "digits": datasets.load_digits,
        "diabetes": datasets.load_diabetes,
    }[name]
    x, y = loader(return_X_y=True)
    test = np.arange(len(x)) % 5 == 0
    return x[~test], y[~test].astype(np.float64), x[test], y[test].astype(np.float64)


def _for_metric(x_train, x_test, metric):
    if metric != "hamming":
        return x_train, x_test
    # Hamming compares coordinates for equality: binarize at the training median.
    median = np.median(x_train, axis=0)
    return (x_train > median).astype(np.float64), (x_test > median).astype(np.float64)


def _sk_kwargs(metric):
    return {"metric": metric, "p": P} if metric == "minkowski" else {"metric": metric}


def _frame(spark, x, y=None):
    data = {"features": [row.astype(np.float64) for row in x]}
    if y is not None:
        data["label"] = y
    return spark.createDataFrame(pd.DataFrame(data))


def _unambiguous(x_train, x_test, metric):
    """Rows whose k-th and (k+1)-th reference distances differ."""
    ref = SkNearestNeighbors(n_neighbors=K + 1, algorithm="brute", **_sk_kwargs(metric))
    dist, _ = ref.fit(x_train).kneighbors(x_test)
    gap = dist[:, K] - dist[:, K - 1]
    return gap > TIE_RTOL * np.maximum(dist[:, K], 1e-12)


def _neighbors(pdf, col="neighbors"):
    ids = np.array([[n["id"] for n in row] for row in pdf[col]])
    dist = np.array([[n["distance"] for n in row] for row in pdf[col]])
    return ids, dist


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["iris", "wine", "breast_cancer", "digits"])
@pytest.mark.parametrize("metric", METRICS)
def test_classifier_matches_sklearn(spark, dataset, metric):
    x_train, y_train, x_test, y_test = _load(dataset)
    x_train, x_test = _for_metric(x_train, x_test, metric)
    model = KNNClassifier(k=K, metric=metric, p=P, numShards=3, neighborsCol="neighbors").fit(
        _frame(spark, x_train, y_train)
    )
    np.testing.assert_array_equal(model.classes, np.unique(y_train))
    clear = _unambiguous(x_train, x_test, metric)
    test_df = _frame(spark, x_test, y_test)
    for weights in ("uniform", "distance"):
        ref = KNeighborsClassifier(
            n_neighbors=K, weights=weights, algorithm="brute", **_sk_kwargs(metric)
        ).fit(x_train, y_train)
        ref_dist, ref_ids = ref.kneighbors(x_test)
        out = model.setWeights(weights).transform(test_df).toPandas()
        ids, dist = _neighbors(out)
        np.testing.assert_allclose(dist, ref_dist, rtol=1e-5, atol=1e-5)
        assert np.all(np.diff(dist, axis=1) >= 0)
        for row in np.flatnonzero(clear):
            assert set(ids[row]) == set(ref_ids[row]), f"row {row}"
        pred = out["prediction"].to_numpy()
        ref_pred = ref.predict(x_test)
        np.testing.assert_array_equal(pred[clear], ref_pred[clear])
        proba = np.stack([v.toArray() for v in out["probability"]])
        np.testing.assert_allclose(proba[clear], ref.predict_proba(x_test)[clear], atol=1e-5)
        # Overall error rates agree within the rows that boundary ties make ambiguous.
        ours_err = np.mean(pred != y_test)
        ref_err = np.mean(ref_pred != y_test)
        assert abs(ours_err - ref_err) <= max(0.0005, np.mean(~clear))
    # Most rows are unambiguous for continuous metrics, so the comparison has teeth.
    if metric in ("euclidean", "minkowski", "cosine"):
        assert clear.mean() > 0.3


@pytest.mark.slow
@pytest.mark.parametrize("metric", METRICS)
def test_regressor_matches_sklearn(spark, metric):
    x_train, y_train, x_test, _ = _load("diabetes")
    x_train, x_test = _for_metric(x_train, x_test, metric)
    model = KNNRegressor(k=K, metric=metric, p=P, numShards=3).fit(_frame(spark, x_train, y_train))
    clear = _unambiguous(x_train, x_test, metric)
    test_df = _frame(spark, x_test)
    for weights in ("uniform", "distance"):
        ref = KNeighborsRegressor(
            n_neighbors=K, weights=weights, algorithm="brute", **_sk_kwargs(metric)
        ).fit(x_train, y_train)
        pred = model.setWeights(weights).transform(test_df).toPandas()["prediction"]
        np.testing.assert_allclose(pred.to_numpy()[clear], ref.predict(x_test)[clear], rtol=1e-5)


@pytest.mark.parametrize("metric", METRICS)
def test_nearest_neighbors_matches_sklearn_with_user_ids(spark, metric):
    x_train, _, x_test, _ = _load("digits")
    x_train, x_test = _for_metric(x_train, x_test, metric)
    user_ids = 1000 + 7 * np.arange(len(x_train))
    items = spark.createDataFrame(
        pd.DataFrame({"id": user_ids, "features": [row for row in x_train]})
    )
    queries = spark.createDataFrame(
        pd.DataFrame({"qid": np.arange(len(x_test)), "features": [row for row in x_test]})
    )
    model = NearestNeighbors(k=K, idCol="id", metric=metric, p=P, numShards=4).fit(items)
    out = model.kneighbors(queries).toPandas().sort_values("qid")
    assert list(out.columns) == ["qid", "features", "neighbor_ids", "distances"]
    ref_dist, ref_idx = (
        SkNearestNeighbors(n_neighbors=K, algorithm="brute", **_sk_kwargs(metric))
        .fit(x_train)
        .kneighbors(x_test)
    )
    dist = np.stack(out["distances"].to_numpy())
    ids = np.stack(out["neighbor_ids"].to_numpy())
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-5, atol=1e-5)
    clear = _unambiguous(x_train, x_test, metric)
    for row in np.flatnonzero(clear):
        assert set(ids[row]) == set(user_ids[ref_idx[row]])


def test_classifier_with_arbitrary_class_values(spark):
    x_train, y_train, x_test, _ = _load("wine")
    y_train = y_train * 10 - 5  # classes -5, 5, 15
    model = KNNClassifier(k=7, weights="distance", numShards=2).fit(_frame(spark, x_train, y_train))
    np.testing.assert_array_equal(model.classes, [-5.0, 5.0, 15.0])
    out = model.transform(_frame(spark, x_test)).toPandas()
    ref = KNeighborsClassifier(n_neighbors=7, weights="distance").fit(x_train, y_train)
    np.testing.assert_array_equal(out["prediction"], ref.predict(x_test))
    proba = np.stack([v.toArray() for v in out["probability"]])
    np.testing.assert_allclose(proba, ref.predict_proba(x_test), atol=1e-6)
