"""metric='nan_euclidean' end to end: NaN inside vectors is valid input, compared with sklearn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from py4j.protocol import Py4JJavaError
from pyspark.errors import PythonException
from pyspark.sql import types as T
from sklearn import datasets
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neighbors import NearestNeighbors as SkNearestNeighbors
from spark_jobs import no_spark_job

from knnspark import InvalidInputError, KNNClassifier, NearestNeighbors

K = 5
NAN = float("nan")


def with_nans(loader, share=0.2, seed=0):
    x, y = loader(return_X_y=True)
    x = x.astype(np.float32).astype(np.float64)
    x[np.random.default_rng(seed).random(x.shape) < share] = np.nan
    test = np.arange(len(x)) % 4 == 0
    return x[~test], y[~test].astype(np.float64), x[test], y[test].astype(np.float64)


def frame(spark, x, y=None):
    data = {"id": np.arange(len(x)), "features": list(x)}
    if y is not None:
        data["label"] = y
    return spark.createDataFrame(pd.DataFrame(data))


def clear_rows(ref_dist):
    return ref_dist[:, K] - ref_dist[:, K - 1] > 1e-6 * np.maximum(ref_dist[:, K], 1e-12)


@pytest.mark.parametrize("loader", [datasets.load_wine, datasets.load_diabetes])
def test_nearest_neighbors_match_sklearn(spark, loader):
    x_train, _, x_test, _ = with_nans(loader)
    model = NearestNeighbors(k=K, metric="nan_euclidean", numShards=3).fit(frame(spark, x_train))
    assert model.algorithmUsed == "brute"
    out = model.kneighbors(frame(spark, x_test)).toPandas().sort_values("id")
    ref = SkNearestNeighbors(n_neighbors=K + 1, metric="nan_euclidean", algorithm="brute")
    ref_dist, ref_ids = ref.fit(x_train).kneighbors(x_test)
    dist = np.stack(out["distances"].to_numpy())
    ids = np.stack(out["neighbor_ids"].to_numpy())
    np.testing.assert_allclose(dist, ref_dist[:, :K], rtol=1e-5, atol=1e-5)
    clear = clear_rows(ref_dist)
    assert clear.mean() > 0.5
    for row in np.flatnonzero(clear):
        assert set(ids[row]) == set(ref_ids[row, :K])


def test_classifier_with_zscore_and_both_search_paths_match_sklearn(spark):
    x_train, y_train, x_test, _ = with_nans(datasets.load_iris, share=0.25)
    # Scaling statistics over the present entries only, as knnspark fits them.
    mean, std = np.nanmean(x_train, axis=0), np.nanstd(x_train, axis=0, ddof=1)
    ref = KNeighborsClassifier(n_neighbors=K + 1, metric="nan_euclidean", algorithm="brute")
    ref.fit((x_train - mean) / std, y_train)
    ref_dist, _ = ref.kneighbors((x_test - mean) / std)
    ref.set_params(n_neighbors=K)
    clear = clear_rows(ref_dist)
    train_df, test_df = frame(spark, x_train, y_train), frame(spark, x_test)
    for extra in ({}, {"maxBroadcastBytes": 0}):
        clf = KNNClassifier(
            k=K, metric="nan_euclidean", standardization="zscore", numShards=2, **extra
        )
        out = clf.fit(train_df).transform(test_df).toPandas().sort_values("id")
        pred = out["prediction"].to_numpy()
        np.testing.assert_array_equal(pred[clear], ref.predict((x_test - mean) / std)[clear])


def test_null_entries_of_arrays_are_missing_coordinates(spark):
    schema = T.StructType(
        [
            T.StructField("id", T.LongType()),
            T.StructField("features", T.ArrayType(T.DoubleType())),
        ]
    )
    rows = [(0, [0.0, None]), (1, [3.0, 4.0]), (2, [None, 9.0])]
    df = spark.createDataFrame(rows, schema)
    out = NearestNeighbors(k=3, metric="nan_euclidean", idCol="id").fit(df).kneighbors(df)
    got = {r["id"]: (r["neighbor_ids"], r["distances"]) for r in out.collect()}
    assert got[0][0] == [0, 1, 2]
    np.testing.assert_allclose(got[0][1], [0.0, 3.0 * np.sqrt(2.0), np.inf])


def test_rows_with_no_present_coordinate(spark):
    schema = "id long, features array<double>"
    train = spark.createDataFrame([(0, [1.0, NAN]), (1, [NAN, NAN]), (2, [2.0, 2.0])], schema)
    message = (
        r"1 feature vectors with no present \(non-NaN\) coordinate, which "
        r"metric='nan_euclidean' cannot compare with any row"
    )
    with pytest.raises(InvalidInputError, match=message):
        NearestNeighbors(k=1, metric="nan_euclidean").fit(train)
    model = NearestNeighbors(k=1, metric="nan_euclidean", handleInvalid="skip").fit(train)
    assert model.numTrainingRows == 2
    queries = spark.createDataFrame([(7, [NAN, NAN]), (8, [NAN, 1.5])], schema)
    with pytest.raises((PythonException, Py4JJavaError), match="no present \\(non-NaN\\)"):
        model.setHandleInvalid("error").kneighbors(queries).collect()
    kept = {
        r["id"]: r["neighbor_ids"]
        for r in model.setHandleInvalid("keep").kneighbors(queries).collect()
    }
    assert kept == {7: None, 8: [2]}


def test_a_nan_model_refuses_other_metrics_and_hnsw_before_any_job(spark):
    train = spark.createDataFrame([(0, [1.0, NAN]), (1, [2.0, 2.0])], "id long, f array<double>")
    model = NearestNeighbors(k=1, metric="nan_euclidean", featuresCol="f").fit(train)
    with no_spark_job(spark), pytest.raises(ValueError, match="Param metric is 'euclidean', but"):
        model.setMetric("euclidean").kneighbors(train)
    with no_spark_job(spark), pytest.raises(ValueError, match="not supported by algorithm='hnsw'"):
        NearestNeighbors(k=1, metric="nan_euclidean", algorithm="hnsw", featuresCol="f").fit(train)
