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
from spark_jobs import no_spark_job

from knnspark import (
    InvalidInputError,
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
def frames():
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
    return train, queries


@pytest.fixture(scope="module")
def data(spark, frames):
    train, queries = frames
    train_df = spark.createDataFrame(train).repartition(3).cache()
    query_df = spark.createDataFrame(queries).repartition(2).cache()
    return train, queries, train_df, query_df


@pytest.fixture(scope="module")
def fitted(data):
    """Brute-force models fitted once per module, by (estimator, path): tests that search the
    same index share it (a copy with other search-time params shares the fitted index)."""
    _, _, train_df, _ = data
    estimators = {
        "neighbors": lambda extra: NearestNeighbors(
            k=K, idCol="id", groupCol="country", numShards=4, algorithm="brute", **extra
        ),
        "classifier": lambda extra: KNNClassifier(
            k=K, groupCol="country", numShards=4, algorithm="brute", **extra
        ),
    }
    cache = {}

    def get(name, path):
        if (name, path) not in cache:
            cache[name, path] = estimators[name](PATHS[path]).fit(train_df)
        return cache[name, path]

    return get


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
def test_kneighbors_equal_per_group_brute_force(data, fitted, path):
    train, queries, train_df, query_df = data
    model = fitted("neighbors", path)
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
def test_classifier_equals_per_group_kneighborsclassifier(data, fitted, path):
    train, queries, train_df, query_df = data
    model = fitted("classifier", path)
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
def test_save_load_round_trip(data, fitted, tmp_path, path, algorithm):
    _, _, train_df, query_df = data
    if algorithm == "brute":  # the classifier test's model
        model = fitted("classifier", path)
    else:
        model = KNNClassifier(
            k=K, groupCol="country", numShards=4, algorithm=algorithm, **PATHS[path]
        ).fit(train_df)
    assert model.algorithmUsed == algorithm
    model = model.copy({model.neighborsCol: "nb"})
    model.write().save(str(tmp_path / "m"))
    loaded = KNNClassificationModel.load(str(tmp_path / "m"))
    assert loaded.storage == model.storage == path
    assert loaded.index.groups == model.index.groups
    assert loaded.shardSizes == model.shardSizes
    expected = {r["qid"]: (r["prediction"], r["nb"]) for r in model.transform(query_df).collect()}
    got = {r["qid"]: (r["prediction"], r["nb"]) for r in loaded.transform(query_df).collect()}
    assert got == expected


# ---------------------------------------------------------------- rules and bad input


def test_bad_group_columns_fail_before_any_job(spark, data):
    _, _, train_df, query_df = data
    as_double = train_df.withColumn("country", F.lit(1.5))
    cases = [
        (NearestNeighbors(groupCol="nope"), train_df, InvalidInputError,
         r"Column 'nope' \(param groupCol\) does not exist in the training DataFrame"),
        (NearestNeighbors(groupCol="country"), as_double, TypeError,
         r"Column 'country' \(param groupCol\) must be a string, integral, boolean or date "
         r"column; got double in the training DataFrame"),
        (KNNClassifier(groupCol="label"), train_df, InvalidInputError,
         r"Param groupCol must name a column of its own; got 'label', which is also param "
         r"labelCol"),
        (NearestNeighbors(groupCol="features"), train_df, InvalidInputError,
         r"got 'features', which is also param featuresCol"),
        (NearestNeighbors(groupCol="country", partitioning="kmeans", numShards=2), train_df,
         InvalidInputError, r"groupCol cannot be combined with partitioning='kmeans' yet"),
    ]  # fmt: skip
    for estimator, frame, error, message in cases:
        with no_spark_job(spark), pytest.raises(error, match=message):
            estimator.fit(frame)


def test_bad_queries_fail_before_any_job(spark, data, fitted):
    _, _, train_df, query_df = data
    model = fitted("neighbors", "broadcast")
    with no_spark_job(spark):
        with pytest.raises(InvalidInputError, match=r"'country' \(param groupCol\) does not "
                           r"exist in the query DataFrame"):  # fmt: skip
            model.kneighbors(query_df.drop("country"))
        with pytest.raises(TypeError, match=r"holds integral values in the query DataFrame, "
                           r"but the model was fitted on string groups"):  # fmt: skip
            model.kneighbors(query_df.withColumn("country", F.lit(1)))
        with pytest.raises(InvalidInputError, match=r"radius_neighbors does not support a model "
                           r"fitted with groupCol yet \(groupCol='country'\)"):  # fmt: skip
            model.radius_neighbors(query_df, 1.0)
        with pytest.raises(InvalidInputError, match=r"'country' \(param groupCol\) does not "
                           r"exist in the left DataFrame"):  # fmt: skip
            knn_join(query_df.drop("country"), train_df, K, idCol="id", groupCol="country")
        with pytest.raises(InvalidInputError, match=r"does not exist in the right DataFrame"):
            knn_join(query_df, train_df.drop("country"), K, idCol="id", groupCol="country")
        with pytest.raises(TypeError, match=r"holds boolean values in the left DataFrame but "
                           r"string values in the right one"):  # fmt: skip
            knn_join(query_df.withColumn("country", F.lit(True)), train_df, K, groupCol="country")


def test_k_larger_than_the_smallest_group_is_named_by_the_first_jobs(data):
    _, _, train_df, _ = data
    with pytest.raises(InvalidInputError, match=r"Param k must be <= the rows of every group of "
                       r"column 'country' \(param groupCol\); group 'c' has 30 valid training "
                       r"rows, k is 31"):  # fmt: skip
        NearestNeighbors(k=31, groupCol="country", numShards=2).fit(train_df)


def test_null_training_groups_follow_handle_invalid(spark, data):
    train, queries, train_df, query_df = data
    nulls = F.when(F.col("id") % 10 == 1, F.lit(None)).otherwise(F.col("country"))
    with_nulls = train_df.withColumn("country", nulls)
    n_null = int((train["id"] % 10 == 1).sum())
    with pytest.raises(InvalidInputError, match=rf"{n_null} null group values in column "
                       r"'country' \(param groupCol\).*handleInvalid='skip'"):  # fmt: skip
        NearestNeighbors(k=K, idCol="id", groupCol="country").fit(with_nulls)
    model = NearestNeighbors(k=K, idCol="id", groupCol="country", handleInvalid="skip")
    model = model.setNumShards(3).fit(with_nulls)
    assert model.numTrainingRows == len(train) - n_null
    kept = train[train["id"] % 10 != 1]
    rows = by_qid(model.kneighbors(query_df))
    for qid, expected in enumerate(brute_neighbors(kept, queries, K)):
        got = rows[qid]["neighbor_ids"]
        assert got == ([] if expected is None else expected[0].tolist())


@pytest.mark.parametrize("path", sorted(PATHS))
def test_an_id_repeated_across_groups_is_refused(data, path):
    _, _, train_df, _ = data
    # Id 1 again, in another group: group sharding would put the two rows in two shards.
    one = train_df.filter("id = 1").withColumn("country", F.lit("elsewhere"))
    repeated = train_df.unionByName(one)
    with pytest.raises(InvalidInputError, match=r"must hold unique ids; id 1 appears 2 times"):
        NearestNeighbors(k=1, idCol="id", groupCol="country", **PATHS[path]).fit(repeated)


def test_integral_boolean_and_date_groups(spark, data):
    train, queries, train_df, query_df = data
    codes = {"a": 0, "b": 1, "c": 2, "z": 8}
    for kind, values in [
        ("int", {g: c for g, c in codes.items()}),
        ("date", {g: f"2024-01-0{c + 1}" for g, c in codes.items()}),
    ]:
        mapping = F.create_map(*[F.lit(x) for kv in values.items() for x in kv])
        cast = F.element_at(mapping, F.col("country")).cast(kind)
        model = NearestNeighbors(k=K, idCol="id", groupCol="country", numShards=3)
        model = model.fit(train_df.withColumn("country", cast))
        rows = by_qid(model.kneighbors(query_df.withColumn("country", cast)))
        for qid, expected in enumerate(brute_neighbors(train, queries, K)):
            got = rows[qid]["neighbor_ids"]
            assert got == ([] if expected is None else expected[0].tolist())
    # Two boolean groups.
    flag = (F.col("country") == "a").alias("country")
    model = NearestNeighbors(k=K, idCol="id", groupCol="country", numShards=2)
    model = model.fit(train_df.withColumn("country", flag))
    rows = by_qid(model.kneighbors(query_df.withColumn("country", flag)))
    as_flag = train.assign(country=train["country"] == "a")
    q_flag = queries.assign(country=[None if g is None else g == "a" for g in queries["country"]])
    for qid, expected in enumerate(brute_neighbors(as_flag, q_flag, K)):
        got = rows[qid]["neighbor_ids"]
        assert got == ([] if expected is None else expected[0].tolist())


def test_one_big_group_is_spread_over_shards(spark):
    # 90% of the rows in one group: spread over ceil(900 / mean) shards from its home shard,
    # so no shard holds much more than the mean (200 rows), and results stay exact.
    rng = np.random.default_rng(3)
    n, shards = 1000, 5
    groups = np.array(["big"] * 900 + [f"s{i}" for i in range(20) for _ in range(5)])
    x = rng.normal(size=(n, 2))
    train = pd.DataFrame({"id": np.arange(n), "features": list(x), "country": groups})
    queries = pd.DataFrame(
        {"qid": np.arange(12), "features": list(rng.normal(size=(12, 2))),
         "country": ["big"] * 6 + ["s3"] * 6}
    )  # fmt: skip
    train_df, query_df = spark.createDataFrame(train), spark.createDataFrame(queries)
    for options in PATHS.values():
        model = NearestNeighbors(k=3, idCol="id", groupCol="country", numShards=shards, **options)
        model = model.fit(train_df)
        assert model.index.groups.big == {"big": 5}
        sizes = model.shardSizes
        assert sum(sizes.values()) == n and max(sizes.values()) <= 1.5 * n / shards
        rows = by_qid(model.kneighbors(query_df))
        for qid, expected in enumerate(brute_neighbors(train, queries, 3)):
            assert rows[qid]["neighbor_ids"] == expected[0].tolist()


def test_outliers_and_cross_validation_refuse_groups_before_any_job(spark, data):
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from pyspark.ml.tuning import ParamGridBuilder

    from knnspark import KNNOutlierDetector
    from knnspark.tuning import KNNCrossValidator

    _, _, train_df, _ = data
    estimator = KNNClassifier(groupCol="country")
    validator = KNNCrossValidator(
        estimator=estimator,
        estimatorParamMaps=ParamGridBuilder().addGrid(estimator.k, [1, 3]).build(),
        evaluator=MulticlassClassificationEvaluator(),
    )
    with no_spark_job(spark):
        with pytest.raises(ValueError, match=r"KNNCrossValidator does not support groupCol yet"):
            validator.fit(train_df)
        with pytest.raises(InvalidInputError, match=r"KNNOutlierDetector does not support "
                           r"groupCol yet \(got 'country'\)"):  # fmt: skip
            KNNOutlierDetector(groupCol="country").fit(train_df)


@pytest.mark.parametrize("path", sorted(PATHS))
def test_groups_on_spark_connect(connect, frames, path):
    train, queries = frames
    model = NearestNeighbors(
        k=K, idCol="id", groupCol="country", numShards=3, algorithm="brute", **PATHS[path]
    ).fit(connect.createDataFrame(train))
    rows = by_qid(model.kneighbors(connect.createDataFrame(queries)))
    for qid, expected in enumerate(brute_neighbors(train, queries, K)):
        got = rows[qid]["neighbor_ids"]
        assert got == ([] if expected is None else expected[0].tolist())
