"""kneighbors(excludeSelf=True) against scikit-learn's kneighbors() without X."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import datasets
from sklearn.neighbors import NearestNeighbors as SkNearestNeighbors

from knnspark import KNNClassifier, NearestNeighbors
from knnspark.errors import InvalidInputError

K = 5
# Relative gap under which two distances count as tied (float32 features).
TIE_RTOL = 1e-5


def _frame(spark, x, ids):
    return spark.createDataFrame(pd.DataFrame({"id": ids, "features": list(x)})).repartition(3)


@pytest.mark.parametrize(
    "dataset",
    [
        "iris",
        pytest.param("wine", marks=pytest.mark.slow),
        pytest.param("digits", marks=pytest.mark.slow),
    ],
)
@pytest.mark.parametrize("max_broadcast", [None, 0])
def test_exclude_self_equals_sklearn(spark, dataset, max_broadcast):
    x = getattr(datasets, f"load_{dataset}")(return_X_y=True)[0].astype(np.float32)
    ids = np.arange(len(x)) * 2 + 1  # not positions: the match is by id
    df = _frame(spark, x, ids)
    extra = {} if max_broadcast is None else {"maxBroadcastBytes": max_broadcast}
    model = NearestNeighbors(k=K, idCol="id", numShards=3, **extra).fit(df)
    got = model.kneighbors(df, excludeSelf=True).toPandas().sort_values("id")
    got_ids = np.stack(got["neighbor_ids"].to_numpy())
    got_dist = np.stack(got["distances"].to_numpy())
    ref = SkNearestNeighbors(n_neighbors=K, algorithm="brute").fit(x.astype(np.float64))
    ref_dist, ref_pos = ref.kneighbors()
    np.testing.assert_allclose(got_dist, ref_dist, rtol=1e-6, atol=1e-9)
    assert not (got_ids == ids[:, None]).any()  # no row is its own neighbor
    # Ids agree wherever no two of the K + 1 nearest distances tie (either pick is valid).
    full = np.sort(ref.kneighbors(n_neighbors=K + 1)[0], axis=1)
    gaps = np.diff(np.hstack([np.zeros((len(x), 1)), full]), axis=1)
    clear = (gaps > TIE_RTOL * np.maximum(full, 1e-12)).all(axis=1)
    assert clear.sum() > len(x) // 3
    assert np.array_equal(got_ids[clear], ids[ref_pos[clear]])


def test_new_rows_keep_all_k_neighbors(spark):
    train = spark.createDataFrame([(i, [float(i)]) for i in range(6)], ["id", "features"])
    queries = spark.createDataFrame([(2, [2.0]), (99, [2.0])], ["id", "features"])
    model = NearestNeighbors(k=2, idCol="id").fit(train)
    rows = model.kneighbors(queries, excludeSelf=True).orderBy("id").collect()
    assert [r["neighbor_ids"] for r in rows] == [[1, 3], [2, 1]]
    assert [r["distances"] for r in rows] == [[1.0, 1.0], [0.0, 1.0]]


def test_exclude_self_bad_input(spark):
    train = spark.createDataFrame([(i, [float(i)]) for i in range(4)], ["id", "features"])
    with pytest.raises(InvalidInputError, match=r"excludeSelf=True needs param idCol"):
        NearestNeighbors(k=2).fit(train).kneighbors(train, excludeSelf=True)
    model = KNNClassifier(k=2, idCol="id", labelCol="id").fit(train)
    with pytest.raises(
        InvalidInputError,
        match=r"excludeSelf=True needs column 'id' \(param idCol\) in the queries, to match "
        r"each query with its training id; it does not exist. Available columns: features.",
    ):
        model.kneighbors(train.drop("id"), excludeSelf=True)
    with pytest.raises(
        InvalidInputError,
        match=r"Param k must be < the number of training rows \(4\) with excludeSelf=True",
    ):
        model.setK(4).kneighbors(train, excludeSelf=True)
