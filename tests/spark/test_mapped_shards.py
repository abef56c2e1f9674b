"""A local session's searches reach the shards through one mapped file, not a broadcast."""

from __future__ import annotations

import os

import numpy as np
from sklearn.neighbors import NearestNeighbors

from knnspark import KNNClassifier
from knnspark.shipped import MappedShards


def test_local_search_maps_the_shards(spark):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 5))
    rows = [(i, x[i].tolist(), float(i % 2)) for i in range(len(x))]
    df = spark.createDataFrame(rows, "id long, features array<double>, label double")
    model = KNNClassifier(k=4, idCol="id", numShards=3).fit(df)
    found = model.kneighbors(df).orderBy("id").collect()
    handle = model._broadcast[2]
    assert isinstance(handle, MappedShards) and os.path.exists(handle.path)
    _, want = NearestNeighbors(n_neighbors=4).fit(x).kneighbors(x)
    np.testing.assert_array_equal([r.neighbor_ids for r in found], want)


def test_past_the_local_budget_the_shards_are_broadcast(spark, monkeypatch):
    from pyspark import Broadcast

    from knnspark import classic

    monkeypatch.setattr(classic, "LOCAL_MAPPED_BYTES", 0)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(200, 3))
    rows = [(i, x[i].tolist(), float(i % 2)) for i in range(len(x))]
    df = spark.createDataFrame(rows, "id long, features array<double>, label double")
    model = KNNClassifier(k=3, idCol="id", numShards=2).fit(df)
    found = model.kneighbors(df).orderBy("id").collect()
    assert isinstance(model._broadcast[2], Broadcast)
    _, want = NearestNeighbors(n_neighbors=3).fit(x).kneighbors(x)
    np.testing.assert_array_equal([r.neighbor_ids for r in found], want)
