"""An ``array<float>`` features column crosses to Python once (issue 16).

Without preprocessing, the broadcast plan's search function decodes the queries from the
passed-through features column itself instead of a copy of it sent alongside; results
must be those of the copy path (``array<double>`` input, same values) and of scikit-learn.
"""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.sql import types as T
from sklearn.neighbors import NearestNeighbors as SkNearestNeighbors

from knnspark import KNNClassifier, NearestNeighbors

DIM = 5
FEATURES = "f.x"  # a dotted name: the plan passes columns under plain names


def _frame(spark, x: list, element: T.DataType, labels: list | None = None):
    fields = [T.StructField("id", T.LongType()), T.StructField(FEATURES, T.ArrayType(element))]
    rows = [(i, v) for i, v in enumerate(x)]
    if labels is not None:
        fields.append(T.StructField("label", T.DoubleType()))
        rows = [(*row, float(y)) for row, y in zip(rows, labels, strict=True)]
    return spark.createDataFrame(rows, T.StructType(fields))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(16)
    train = rng.normal(size=(60, DIM)).astype(np.float32)
    labels = rng.integers(0, 3, 60).astype(float)
    queries = rng.normal(size=(25, DIM)).astype(np.float32)
    rows = [[float(v) for v in q] for q in queries]
    # Invalid rows: a null vector, a NaN, the wrong length; handleInvalid='keep' gives nulls.
    rows += [None, [float("nan")] * DIM, [1.0] * (DIM - 1)]
    return train, labels, queries, rows


def _neighbors(spark, data, element, capsys):
    train, labels, _, rows = data
    train_df = _frame(spark, [[float(v) for v in t] for t in train], element, labels.tolist())
    model = NearestNeighbors(
        k=4, featuresCol=FEATURES, idCol="id", numShards=3, handleInvalid="keep"
    ).fit(train_df)
    out = model.kneighbors(_frame(spark, rows, element))
    capsys.readouterr()
    out.explain()
    plan = capsys.readouterr().out
    found = {r["id"]: (r["neighbor_ids"], r["distances"]) for r in out.collect()}
    return found, plan


def test_float_features_cross_once_with_the_copy_paths_results(any_spark, data, capsys):
    once, plan_once = _neighbors(any_spark, data, T.FloatType(), capsys)
    copied, plan_copied = _neighbors(any_spark, data, T.DoubleType(), capsys)
    assert "__knn_features" not in plan_once
    assert "__knn_features" in plan_copied
    assert once == copied
    train, _, queries, _ = data
    dist, ids = (
        SkNearestNeighbors(n_neighbors=4)
        .fit(train.astype(np.float64))
        .kneighbors(queries.astype(np.float64))
    )
    for i in range(len(queries)):
        assert once[i][0] == ids[i].tolist()
        np.testing.assert_allclose(once[i][1], dist[i], rtol=1e-12)
    assert [once[i] for i in range(len(queries), len(queries) + 3)] == [(None, None)] * 3


def test_float_features_predictions_keep_the_features_column(spark, data):
    train, labels, queries, _ = data
    rows = [[float(v) for v in t] for t in train]
    train_df = _frame(spark, rows, T.FloatType(), labels.tolist())
    model = KNNClassifier(k=3, featuresCol=FEATURES, numShards=2).fit(train_df)
    query_rows = [[float(v) for v in q] for q in queries]
    out = model.transform(_frame(spark, query_rows, T.FloatType())).orderBy("id").collect()
    assert [r[FEATURES] for r in out] == [
        pytest.approx(q) for q in query_rows
    ]  # the column passes through untouched
    expected = (
        KNNClassifier(k=3, featuresCol=FEATURES, numShards=2)
        .fit(_frame(spark, rows, T.DoubleType(), labels.tolist()))
        .transform(_frame(spark, query_rows, T.DoubleType()))
        .orderBy("id")
        .collect()
    )
    assert [(r["prediction"], r["probability"]) for r in out] == [
        (r["prediction"], r["probability"]) for r in expected
    ]
