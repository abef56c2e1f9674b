"""metric='mahalanobis' end to end: whitened at fit, searched by every euclidean path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import datasets
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neighbors import NearestNeighbors as SkNearestNeighbors
from spark_jobs import no_spark_job

from knnspark import (
    InvalidInputError,
    KNNClassificationModel,
    KNNClassifier,
    NearestNeighbors,
)

K = 5


def load(loader):
    x, y = loader(return_X_y=True)
    x = x.astype(np.float32).astype(np.float64)
    test = np.arange(len(x)) % 4 == 0
    return x[~test], y[~test].astype(np.float64), x[test], y[test].astype(np.float64)


def frame(spark, x, y=None):
    data = {"id": np.arange(len(x)), "features": list(x)}
    if y is not None:
        data["label"] = y
    return spark.createDataFrame(pd.DataFrame(data))


def reference(x_train, x_test, k=K + 1):
    vi = np.linalg.inv(np.cov(x_train.T))
    ref = SkNearestNeighbors(
        n_neighbors=k, metric="mahalanobis", metric_params={"VI": vi}, algorithm="brute"
    )
    return ref.fit(x_train).kneighbors(x_test)


@pytest.mark.parametrize("loader", [datasets.load_wine, datasets.load_breast_cancer])
def test_nearest_neighbors_match_sklearn(spark, loader):
    x_train, _, x_test, _ = load(loader)
    model = NearestNeighbors(k=K, metric="mahalanobis", numShards=3, algorithm="brute")
    out = model.fit(frame(spark, x_train)).kneighbors(frame(spark, x_test)).toPandas()
    out = out.sort_values("id")
    ref_dist, ref_ids = reference(x_train, x_test)
    dist = np.stack(out["distances"].to_numpy())
    ids = np.stack(out["neighbor_ids"].to_numpy())
    np.testing.assert_allclose(dist, ref_dist[:, :K], rtol=1e-5)
    clear = ref_dist[:, K] - ref_dist[:, K - 1] > 1e-5 * ref_dist[:, K]
    assert clear.mean() > 0.8
    for row in np.flatnonzero(clear):
        assert set(ids[row]) == set(ref_ids[row, :K])


def test_classifier_hnsw_zscore_and_a_saved_model_agree_with_sklearn(spark, tmp_path):
    x_train, y_train, x_test, _ = load(datasets.load_wine)
    vi = np.linalg.inv(np.cov(x_train.T))
    ref = KNeighborsClassifier(
        n_neighbors=K, metric="mahalanobis", metric_params={"VI": vi}, algorithm="brute"
    ).fit(x_train, y_train)
    ref_pred = ref.predict(x_test)
    train_df, test_df = frame(spark, x_train, y_train), frame(spark, x_test)
    # Mahalanobis does not change under per-feature scaling: zscore first gives the same.
    exact = KNNClassifier(k=K, metric="mahalanobis", standardization="zscore", numShards=2)
    model = exact.fit(train_df)
    pred = model.transform(test_df).toPandas().sort_values("id")["prediction"].to_numpy()
    np.testing.assert_array_equal(pred, ref_pred)
    model.write().overwrite().save(str(tmp_path / "m"))
    loaded = KNNClassificationModel.load(str(tmp_path / "m"))
    again = loaded.transform(test_df).toPandas().sort_values("id")["prediction"].to_numpy()
    np.testing.assert_array_equal(again, pred)
    hnsw = KNNClassifier(k=K, metric="mahalanobis", algorithm="hnsw", numShards=2).fit(train_df)
    approx = hnsw.transform(test_df).toPandas().sort_values("id")["prediction"].to_numpy()
    assert np.mean(approx == ref_pred) >= 0.95


def test_bad_input(spark):
    rng = np.random.default_rng(0)
    few = frame(spark, rng.normal(size=(4, 6)))
    with pytest.raises(
        InvalidInputError,
        match=r"Param metric='mahalanobis' needs more training rows than features to invert "
        r"their covariance: column 'features' \(param featuresCol\) has 6 features but only 4 "
        r"valid training rows \(at least 7\)",
    ):
        NearestNeighbors(k=1, metric="mahalanobis").fit(few)
    x = rng.normal(size=(30, 3))
    x[:, 2] = x[:, 0] + x[:, 1]
    with pytest.raises(InvalidInputError, match=r"singular or nearly so \(numerical rank 2 of 3"):
        NearestNeighbors(k=1, metric="mahalanobis").fit(frame(spark, x))
    x = rng.normal(size=(30, 3))
    model = NearestNeighbors(k=1, metric="mahalanobis").fit(frame(spark, x))
    with no_spark_job(spark), pytest.raises(ValueError, match=r"Param metric is 'euclidean', but"):
        model.setMetric("euclidean").kneighbors(frame(spark, x))
    plain = NearestNeighbors(k=1).fit(frame(spark, x))
    with no_spark_job(spark), pytest.raises(ValueError, match=r"refit with metric='mahalanobis'"):
        plain.setMetric("mahalanobis").kneighbors(frame(spark, x))
