"""Every estimator, model, validator and search path on a Spark Connect session.

The `connect` fixture is a Connect client of the server that the classic `spark` session's
JVM runs (conftest.py), so one process holds both and models pass between them.  A
representative subset runs here; the full reference grids run on the classic session, whose
code paths are the same below the session (only how the shards reach the tasks differs).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyspark.ml import Pipeline
from pyspark.ml.evaluation import MulticlassClassificationEvaluator
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.tuning import CrossValidator, ParamGridBuilder
from pyspark.sql import functions as F
from sklearn import datasets
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neighbors import NearestNeighbors as SkNearestNeighbors

from knnspark import (
    KNNClassificationModel,
    KNNClassifier,
    KNNRegressionModel,
    KNNRegressor,
    NearestNeighbors,
    NearestNeighborsModel,
    knn_join,
)
from knnspark.classic import is_connect
from knnspark.errors import InvalidInputError, reraise_worker_errors
from knnspark.sizing import CONNECT_MAX_DEFAULT_SHARDS, default_num_shards
from knnspark.tuning import KNNCrossValidator

K = 5


@pytest.fixture(scope="module")
def wine():
    x, y = datasets.load_wine(return_X_y=True)
    test = np.arange(len(x)) % 4 == 0
    return x[~test], y[~test].astype(np.float64), x[test], y[test].astype(np.float64)


def _frame(session, x, y=None):
    data = {"id": np.arange(len(x)), "features": [row.astype(np.float64) for row in x]}
    if y is not None:
        data["label"] = y
    return session.createDataFrame(pd.DataFrame(data))


def _by_id(df, *cols):
    pdf = df.select("id", *cols).toPandas().sort_values("id")
    # Array columns come back as numpy arrays; lists compare element by element.
    return [[v.tolist() if isinstance(v, np.ndarray) else v for v in pdf[c]] for c in cols]


def test_the_fixture_is_a_connect_session(spark, connect):
    assert is_connect(connect) and not is_connect(spark)


def test_default_shard_count_reads_the_conf(connect):
    # conftest sets spark.default.parallelism=2 on the server.
    assert default_num_shards(connect) == 2
    assert CONNECT_MAX_DEFAULT_SHARDS == 32


# ------------------------------------------------------------ reference comparisons

PATHS = [
    pytest.param("brute", None, id="exact-broadcast"),
    pytest.param("brute", 0, id="exact-distributed"),
    pytest.param("hnsw", None, id="hnsw-broadcast"),
    pytest.param("hnsw", 0, id="hnsw-distributed"),
]


@pytest.mark.parametrize(("algorithm", "max_broadcast_bytes"), PATHS)
def test_classifier_matches_sklearn(connect, wine, algorithm, max_broadcast_bytes):
    x_train, y_train, x_test, _ = wine
    extra = {} if max_broadcast_bytes is None else {"maxBroadcastBytes": max_broadcast_bytes}
    # ef far above the training rows: the HNSW search is exact, so it must match too.
    model = KNNClassifier(
        k=K, numShards=3, algorithm=algorithm, ef=400, efConstruction=400, **extra
    ).fit(_frame(connect, x_train, y_train))
    assert model.storage == ("broadcast" if max_broadcast_bytes is None else "distributed")
    pred, proba = _by_id(model.transform(_frame(connect, x_test)), "prediction", "probability")
    ref = KNeighborsClassifier(n_neighbors=K, algorithm="brute").fit(x_train, y_train)
    np.testing.assert_array_equal(pred, ref.predict(x_test))
    np.testing.assert_allclose([p.toArray() for p in proba], ref.predict_proba(x_test))


def test_regressor_and_neighbors_match_sklearn(connect, wine):
    x_train, y_train, x_test, _ = wine
    train = _frame(connect, x_train, y_train)
    regressor = KNNRegressor(k=K, weights="distance", metric="manhattan").fit(train)
    (pred,) = _by_id(regressor.transform(_frame(connect, x_test)), "prediction")
    ref = KNeighborsRegressor(n_neighbors=K, weights="distance", metric="manhattan")
    np.testing.assert_allclose(pred, ref.fit(x_train, y_train).predict(x_test), rtol=1e-6)

    searcher = NearestNeighbors(k=K, idCol="id").fit(train)
    ids, dist = _by_id(searcher.kneighbors(_frame(connect, x_test)), "neighbor_ids", "distances")
    ref_dist, ref_ids = SkNearestNeighbors(n_neighbors=K).fit(x_train).kneighbors(x_test)
    np.testing.assert_allclose(np.array(dist), ref_dist, rtol=1e-5)
    np.testing.assert_array_equal(np.array(ids), ref_ids)


def test_pipeline_matches_classic(spark, connect, mode, wine):
    x_train, y_train, x_test, _ = wine
    names = [f"c{i}" for i in range(x_train.shape[1])]

    def columns(session, x, y=None):
        pdf = pd.DataFrame(x, columns=names).assign(id=np.arange(len(x)))
        return session.createDataFrame(pdf if y is None else pdf.assign(label=y))

    got = {}
    for name, session in (("classic", spark), ("connect", connect)):
        with mode(connect=name == "connect"):  # Spark's own stages are built for one mode
            pipeline = Pipeline(
                stages=[
                    VectorAssembler(inputCols=names, outputCol="features"),
                    KNNClassifier(k=K, numShards=2, standardization="zscore"),
                ]
            )
            fitted = pipeline.fit(columns(session, x_train, y_train))
            got[name] = _by_id(fitted.transform(columns(session, x_test)), "prediction")[0]
    assert got["connect"] == got["classic"]


# ------------------------------------------------------------ joins and radius search


@pytest.mark.parametrize("id_col", ["id", None], ids=["ids", "numbered"])
def test_knn_join_matches_sklearn_and_classic(spark, connect, mode, wine, id_col):
    x_train, y_train, x_test, _ = wine
    got = {}
    # Numbered right rows (localCheckpoint) on Connect only: the classic run costs a fit.
    sessions = {"classic": spark, "connect": connect} if id_col else {"connect": connect}
    for name, session in sessions.items():
        with mode(connect=name == "connect"):
            joined = knn_join(
                _frame(session, x_test), _frame(session, x_train, y_train), 3, idCol=id_col,
                rightPrefix="nb_", numShards=2, joinType="leftouter",
            )  # fmt: skip
            assert joined.columns == ["id", "features", "nb_id", "nb_label", "rank", "distance"]
            pdf = joined.drop("features").toPandas().sort_values(["id", "rank"])
            got[name] = pdf.reset_index(drop=True)
    if "classic" in got:
        pd.testing.assert_frame_equal(got["connect"], got["classic"])
    ref_dist, ref_ids = SkNearestNeighbors(n_neighbors=3).fit(x_train).kneighbors(x_test)
    pdf = got["connect"]
    np.testing.assert_array_equal(pdf["nb_id"].to_numpy().reshape(-1, 3), ref_ids)
    np.testing.assert_allclose(pdf["distance"].to_numpy().reshape(-1, 3), ref_dist, rtol=1e-5)
    np.testing.assert_array_equal(pdf["nb_label"], y_train[ref_ids.reshape(-1)])


@pytest.mark.parametrize(
    "params",
    [{}, {"maxBroadcastBytes": 0, "partitioning": "kmeans"}],
    ids=["broadcast", "distributed-kmeans"],
)
def test_radius_neighbors_matches_sklearn_on_connect(connect, wine, params):
    x_train, _, x_test, _ = wine
    model = NearestNeighbors(numShards=3, shardsVisitedCol="visited", **params)
    model = model.fit(_frame(connect, x_train))
    out = model.radius_neighbors(_frame(connect, x_test), 30.0, maxNeighbors=8)
    ids, dist, truncated, visited = _by_id(out, "neighbor_ids", "distances", "truncated", "visited")
    ref = SkNearestNeighbors().fit(x_train)
    ref_dist, ref_ids = ref.radius_neighbors(x_test, 30.0, sort_results=True)
    for i in range(len(x_test)):
        assert ids[i] == ref_ids[i][:8].tolist()
        np.testing.assert_allclose(dist[i], ref_dist[i][:8], rtol=1e-6)
        assert truncated[i] == (len(ref_ids[i]) > 8)
    assert any(truncated) and not all(truncated)
    assert min(visited) >= 1 and max(visited) <= 3


# ------------------------------------------------------------ persistence, both ways


@pytest.mark.parametrize(("writer", "reader"), [("connect", "spark"), ("spark", "connect")])
@pytest.mark.parametrize("algorithm", ["brute", "hnsw"])
def test_save_in_one_mode_load_in_the_other(
    request, connect, mode, wine, tmp_path, writer, reader, algorithm
):
    x_train, y_train, x_test, _ = wine
    session = request.getfixturevalue(writer)
    with mode(connect=writer == "connect"):
        model = KNNClassifier(k=K, numShards=2, algorithm=algorithm).fit(
            _frame(session, x_train, y_train)
        )
        expected = _by_id(model.transform(_frame(session, x_test)), "prediction")
        model.write().session(session).save(str(tmp_path / "model"))
    session = request.getfixturevalue(reader)
    with mode(connect=reader == "connect"):
        loaded = KNNClassificationModel.read().session(session).load(str(tmp_path / "model"))
        assert loaded.modelId == model.modelId and loaded.algorithmUsed == algorithm
        assert _by_id(loaded.transform(_frame(session, x_test)), "prediction") == expected


def test_regressor_and_neighbors_round_trip_on_connect(connect, wine, tmp_path):
    x_train, y_train, x_test, _ = wine
    train, test = _frame(connect, x_train, y_train), _frame(connect, x_test)
    regressor = KNNRegressor(k=3, maxBroadcastBytes=0).fit(train)
    regressor.write().session(connect).save(str(tmp_path / "regressor"))
    loaded = KNNRegressionModel.read().session(connect).load(str(tmp_path / "regressor"))
    assert loaded.storage == "distributed"
    expected = _by_id(regressor.transform(test), "prediction")
    assert _by_id(loaded.transform(test), "prediction") == expected

    searcher = NearestNeighbors(k=3).fit(train)
    searcher.write().session(connect).save(str(tmp_path / "neighbors"))
    loaded = NearestNeighborsModel.read().session(connect).load(str(tmp_path / "neighbors"))
    expected = _by_id(searcher.kneighbors(test), "neighbor_ids")
    assert _by_id(loaded.kneighbors(test), "neighbor_ids") == expected


# ------------------------------------------------------------ bad input, budget


def test_bad_input_messages_are_the_same(any_spark, wine):
    x_train, y_train, _, _ = wine
    train = _frame(any_spark, x_train, y_train)
    with pytest.raises(ValueError, match="Param k must be <= the number of training rows"):
        KNNClassifier(k=1000).fit(train).transform(train)
    with pytest.raises(InvalidInputError, match=r"^Column 'nope' \(param featuresCol\) does not"):
        KNNClassifier(featuresCol="nope").fit(train)
    # Raised inside a search task: a Connect client gets the task's error back too.
    queries = any_spark.createDataFrame([([float("nan"), 0.0],)], ["features"])
    neighbors = NearestNeighbors(k=1).fit(any_spark.createDataFrame([([0.0, 0.0],)], ["features"]))
    with pytest.raises(InvalidInputError, match="^Column 'features' .param featuresCol. holds NaN"):
        with reraise_worker_errors():
            neighbors.kneighbors(queries).collect()


def test_a_driver_held_index_over_the_connect_budget_is_refused(spark, connect, mode, monkeypatch):
    import knnspark.base
    import knnspark.sizing

    with mode(connect=False):  # broadcast storage, fitted on classic
        model = KNNClassifier(k=1).fit(_frame(spark, np.eye(4), np.arange(4.0)))
    monkeypatch.setattr(knnspark.base, "CONNECT_SHIPPED_BYTES", 0)
    monkeypatch.setattr(knnspark.sizing, "CONNECT_SHIPPED_BYTES", 0)
    with pytest.raises(InvalidInputError, match="over the 0 MiB a search may ship on Spark"):
        model.transform(_frame(connect, np.eye(4)))


# ------------------------------------------------------------ tuning


def test_cross_validator_matches_spark_on_connect(connect, wine):
    x_train, y_train, _, _ = wine
    # Two folds: each fold is a fit and an evaluation per param map in Spark's validator.
    train = _frame(connect, x_train, y_train).withColumn("fold", (F.col("id") % 2).cast("int"))
    clf = KNNClassifier(numShards=2)
    grid = ParamGridBuilder().addGrid(clf.k, [1, 5]).addGrid(clf.weights, ["uniform"]).build()
    evaluator = MulticlassClassificationEvaluator(metricName="accuracy")
    ours = KNNCrossValidator(
        estimator=clf, estimatorParamMaps=grid, evaluator=evaluator, numFolds=2, foldCol="fold"
    ).fit(train)
    theirs = CrossValidator(
        estimator=clf, estimatorParamMaps=grid, evaluator=evaluator, numFolds=2, foldCol="fold"
    ).fit(train)
    np.testing.assert_allclose(ours.avgMetrics, theirs.avgMetrics, atol=1e-12)
    assert ours.bestModel.getK() == grid[int(np.argmax(theirs.avgMetrics))][clf.k]


def test_save_with_overwrite_replaces_the_folder_on_connect(connect, wine, tmp_path):
    x_train, y_train, x_test, _ = wine
    train = _frame(connect, x_train, y_train)
    path = str(tmp_path / "model")
    KNNClassifier(k=1, algorithm="hnsw").fit(train).write().session(connect).save(path)
    model = KNNClassifier(k=K).fit(train)
    with pytest.raises(Exception, match="already exists"):
        model.write().session(connect).save(path)
    model.write().session(connect).overwrite().save(path)
    loaded = KNNClassificationModel.read().session(connect).load(path)
    assert (loaded.modelId, loaded.algorithmUsed) == (model.modelId, "brute")
    test = _frame(connect, x_test)
    assert _by_id(loaded.transform(test), "prediction") == _by_id(
        model.transform(test), "prediction"
    )
