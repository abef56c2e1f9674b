"""``groupCol``: neighbors only within the query's group, equal to per-group brute force.

Every result is compared with scikit-learn fitted on each group's training rows alone, on
both search paths (broadcast, and shard-major forced by ``maxBroadcastBytes=0``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neighbors import NearestNeighbors as SkNearestNeighbors

from knnspark import (
    KNNClassificationModel,
    KNNClassifier,
    KNNRegressor,
    NearestNeighbors,
    knn_join,
)

K = 4
# Group sizes 180 / 90 / 30 over 4 shards (mean 75): "a" spreads over 3 shards, "b" over 2.
GROUPS = np.array(["a"] * 180 + ["b"] * 90 + ["c"] * 30)
PATHS = {"broadcast": {}, "distributed": {"maxBroadcastBytes": 0}}


@pytest.fixture(scope="module")
def data(spark):
    rng = np.random.default_rng(13)
    n = GROUPS.size
    x = rng.normal(size=(n, 3))
    label = rng.integers(0, 3, size=n).astype(float)
    train = pd.DataFrame(
        {
            "id": rng.permutation(n) * 7 + 1,
            "features": list(x),
            "label": label,
            "y": x[:, 0] * 2 + rng.normal(size=n),
            "country": GROUPS,
        }
    )
    # Queries of every group, one of a group without training rows, one with a null group.
    q = rng.normal(size=(40, 3))
    q_groups = np.array((["a", "b", "c", "z"] * 10)[:40], dtype=object)
    q_groups[5] = None
    queries = pd.DataFrame({"qid": np.arange(40), "features": list(q), "country": q_groups})
    train_df = spark.createDataFrame(train).repartition(3).cache()
    query_df = spark.createDataFrame(queries).repartition(2).cache()
    return train, queries, train_df, query_df


def per_group_reference(train, queries, k, make):
    """Per query: the model ``make()`` fitted on the query's group (None: no such group)."""
    fitted = {}
    for g, rows in train.groupby("country"):
        fitted[g] = (make().fit(np.stack(rows["features"]), *make.target(rows)), rows)
    return [fitted.get(g) for g in queries["country"]]


def brute_neighbors(train, queries, k):
    """Per query: (ids, distances) of its k nearest training rows of its group, or None."""
    out = []
    for g, q in zip(queries["country"], queries["features"], strict=True):
        rows = train[train["country"] == g]
        if g is None or rows.empty:
            out.append(None)
            continue
        nn = SkNearestNeighbors(n_neighbors=k).fit(np.stack(rows["features"]))
        dist, pos = nn.kneighbors(np.asarray(q)[None, :])
        out.append((rows["id"].to_numpy()[pos[0]], dist[0]))
    return out


def by_qid(df):
    return {r["qid"]: r for r in df.collect()}


@pytest.mark.parametrize("path", sorted(PATHS))
def test_kneighbors_equal_per_group_brute_force(data, path):
    train, queries, train_df, query_df = data
    model = NearestNeighbors(
        k=K, idCol="id", groupCol="country", numShards=4, algorithm="brute", **PATHS[path]
    ).fit(train_df)
    assert model.storage == path
    rows = by_qid(model.kneighbors(query_df))
    assert len(rows) == 40
    for qid, expected in enumerate(brute_neighbors(train, queries, K)):
        row = rows[qid]
        assert row["country"] == queries["country"][qid]
        if expected is None:  # no training row in the group (or a null group): kept, empty
            assert row["neighbor_ids"] == [] and row["distances"] == []
            continue
        assert row["neighbor_ids"] == expected[0].tolist()
        np.testing.assert_allclose(row["distances"], expected[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("path", sorted(PATHS))
def test_classifier_equals_per_group_kneighborsclassifier(data, path):
    train, queries, train_df, query_df = data
    model = KNNClassifier(k=K, groupCol="country", numShards=4, algorithm="brute", **PATHS[path])
    model = model.fit(train_df)
    rows = by_qid(model.transform(query_df))
    classes = [0.0, 1.0, 2.0]
    for qid, (g, q) in enumerate(zip(queries["country"], queries["features"], strict=True)):
        group = train[train["country"] == g]
        row = rows[qid]
        if g is None or group.empty:
            assert row["prediction"] is None and row["probability"] is None
            continue
        sk = KNeighborsClassifier(n_neighbors=K).fit(np.stack(group["features"]), group["label"])
        proba = np.zeros(3)
        proba[[classes.index(c) for c in sk.classes_]] = sk.predict_proba(np.asarray(q)[None])[0]
        np.testing.assert_allclose(row["probability"].toArray(), proba)
        assert row["prediction"] == sk.predict(np.asarray(q)[None])[0]


@pytest.mark.parametrize("path", sorted(PATHS))
def test_regressor_equals_per_group_kneighborsregressor(data, path):
    train, queries, train_df, query_df = data
    est = KNNRegressor(
        k=K, labelCol="y", groupCol="country", weights="distance", numShards=3, **PATHS[path]
    )
    rows = by_qid(est.setAlgorithm("brute").fit(train_df).transform(query_df))
    for qid, (g, q) in enumerate(zip(queries["country"], queries["features"], strict=True)):
        group = train[train["country"] == g]
        if g is None or group.empty:
            assert rows[qid]["prediction"] is None
            continue
        sk = KNeighborsRegressor(n_neighbors=K, weights="distance")
        sk.fit(np.stack(group["features"]), group["y"])
        expected = sk.predict(np.asarray(q)[None])[0]
        assert rows[qid]["prediction"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("path", sorted(PATHS))
def test_knn_join_pairs_equal_per_group_brute_force(spark, data, path):
    train, queries, train_df, query_df = data
    right = train_df.select("id", "features", "country", F.col("label").alias("item_label"))
    joined = knn_join(
        query_df, right, K, idCol="id", groupCol="country", joinType="leftouter", **PATHS[path]
    )
    # The left side's group column is kept; the right one's (equal) is not repeated.
    assert joined.columns == ["qid", "features", "country", "id", "item_label", "rank", "distance"]
    got: dict[int, list] = {}
    for r in joined.collect():
        got.setdefault(r["qid"], []).append(r)
    assert sorted(got) == list(range(40))
    for qid, expected in enumerate(brute_neighbors(train, queries, K)):
        rows = sorted(got[qid], key=lambda r: r["rank"] or 0)
        if expected is None:  # leftouter keeps the row once, with nulls
            assert [(r["id"], r["rank"]) for r in rows] == [(None, None)]
            continue
        assert [r["id"] for r in rows] == expected[0].tolist()
        assert [r["rank"] for r in rows] == list(range(1, K + 1))
        np.testing.assert_allclose([r["distance"] for r in rows], expected[1], rtol=1e-5)
    inner = knn_join(query_df, right, K, idCol="id", groupCol="country", **PATHS[path])
    expected_pairs = sum(e is not None for e in brute_neighbors(train, queries, K)) * K
    assert inner.count() == expected_pairs


@pytest.mark.parametrize("path", sorted(PATHS))
def test_hnsw_recall_against_per_group_exact(data, path):
    train, queries, train_df, query_df = data
    model = NearestNeighbors(
        k=K, idCol="id", groupCol="country", numShards=4, algorithm="hnsw", M=8, **PATHS[path]
    ).fit(train_df)
    assert model.algorithmUsed == "hnsw"
    rows = by_qid(model.kneighbors(query_df))
    hits = total = 0
    for qid, expected in enumerate(brute_neighbors(train, queries, K)):
        if expected is None:
            assert rows[qid]["neighbor_ids"] == []
            continue
        hits += len(set(rows[qid]["neighbor_ids"]) & set(expected[0].tolist()))
        total += K
    assert hits / total >= 0.95


@pytest.mark.parametrize(("path", "algorithm"), [("broadcast", "hnsw"), ("distributed", "brute")])
def test_save_load_round_trip(data, tmp_path, path, algorithm):
    _, _, train_df, query_df = data
    model = KNNClassifier(
        k=K, groupCol="country", numShards=4, algorithm=algorithm, neighborsCol="nb",
        **PATHS[path],
    ).fit(train_df)  # fmt: skip
    model.write().save(str(tmp_path / "m"))
    loaded = KNNClassificationModel.load(str(tmp_path / "m"))
    assert loaded.storage == model.storage == path
    assert loaded.index.groups == model.index.groups
    assert loaded.shardSizes == model.shardSizes
    expected = {r["qid"]: (r["prediction"], r["nb"]) for r in model.transform(query_df).collect()}
    got = {r["qid"]: (r["prediction"], r["nb"]) for r in loaded.transform(query_df).collect()}
    assert got == expected
