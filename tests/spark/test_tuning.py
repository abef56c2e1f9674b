"""KNNCrossValidator against Spark's own CrossValidator on the same estimator, grid and folds."""

from __future__ import annotations

import json
import struct
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.evaluation import (
    BinaryClassificationEvaluator,
    MulticlassClassificationEvaluator,
    RegressionEvaluator,
)
from pyspark.ml.tuning import CrossValidator, ParamGridBuilder
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris

from knnspark import KNNClassificationModel, KNNClassifier, KNNRegressor
from knnspark.app.config import validate
from knnspark.app.schemas import TUNE_SCHEMA
from knnspark.app.tune import run_tune
from knnspark.tuning import KNNCrossValidator, KNNCrossValidatorModel

ATOL = 1e-9
NUM_FOLDS = 3


def _frame(spark, x, y, seed, num_folds=NUM_FOLDS):
    """Rows of (features, label, fold): fold numbers drawn with a seed, each fold non-empty."""
    rng = np.random.default_rng(seed)
    folds = rng.permutation(np.arange(len(y)) % num_folds)
    rows = [
        ([float(v) for v in xi], float(yi), int(f)) for xi, yi, f in zip(x, y, folds, strict=True)
    ]
    return spark.createDataFrame(rows, "features array<double>, label double, fold int")


def _iris_rows(columns):
    """60 iris rows, imbalanced (30/20/10) so that classWeights matter."""
    x, y = load_iris(return_X_y=True)
    rng = np.random.default_rng(0)
    sizes = {0: 30, 1: 20, 2: 10}
    keep = np.concatenate(
        [rng.choice(np.flatnonzero(y == c), n, replace=False) for c, n in sizes.items()]
    )
    return x[keep][:, columns], y[keep]


@pytest.fixture(scope="module")
def iris(spark):
    return _frame(spark, *_iris_rows([0, 1, 2, 3]), seed=1)


@pytest.fixture(scope="module")
def iris_sepals(spark):
    """The sepals only: classes 1 and 2 overlap, and many distances tie (0.1 cm steps)."""
    return _frame(spark, *_iris_rows([0, 1]), seed=1)


@pytest.fixture(scope="module")
def cancer(spark):
    """80 breast-cancer rows, 2 classes, 30 features."""
    x, y = load_breast_cancer(return_X_y=True)
    keep = np.random.default_rng(2).choice(len(y), 80, replace=False)
    return _frame(spark, x[keep] / x.max(axis=0), y[keep], seed=3)


@pytest.fixture(scope="module")
def diabetes(spark):
    """80 diabetes rows, regression, 10 features."""
    x, y = load_diabetes(return_X_y=True)
    keep = np.random.default_rng(4).choice(len(y), 80, replace=False)
    return _frame(spark, x[keep], y[keep], seed=5)


def _k_weights_grid(estimator, ks):
    """Every k of ``ks`` with both weightings."""
    return (
        ParamGridBuilder()
        .addGrid(estimator.k, ks)
        .addGrid(estimator.weights, ["uniform", "distance"])
        .build()
    )


def _both(df, estimator, grid, evaluator, fast=True, **params):
    """(KNNCrossValidator model, Spark CrossValidator model) for the same setup.

    ``fast``: the cross-validator must not call the evaluator (its metric comes from sums).
    """
    params = {"numFolds": NUM_FOLDS, **params}
    cv = KNNCrossValidator(
        estimator=estimator, estimatorParamMaps=grid, evaluator=evaluator, **params
    )
    if fast:
        refuse = AssertionError("the fast path should have computed this metric")
        with mock.patch.object(type(evaluator), "_evaluate", side_effect=refuse):
            ours = cv.fit(df)
    else:
        ours = cv.fit(df)
    theirs = CrossValidator(
        estimator=estimator, estimatorParamMaps=grid, evaluator=evaluator, **params
    ).fit(df)
    return ours, theirs


def _assert_same_metrics(ours, theirs):
    np.testing.assert_allclose(ours.avgMetrics, theirs.avgMetrics, rtol=0, atol=ATOL)
    np.testing.assert_allclose(ours.stdMetrics, theirs.stdMetrics, rtol=0, atol=ATOL)


def _assert_best(cv_model, reference, grid, rows, larger_is_better=True):
    best = int(
        np.argmax(reference.avgMetrics) if larger_is_better else np.argmin(reference.avgMetrics)
    )
    assert cv_model.bestIndex == best
    assert cv_model.bestParams == {p.name: v for p, v in grid[best].items()}
    for name, value in cv_model.bestParams.items():
        assert cv_model.bestModel.getOrDefault(name) == value
    # As Spark does: the best param map refitted on all the data.
    assert cv_model.bestModel.numTrainingRows == rows


@pytest.mark.slow
def test_classifier_accuracy_matches_spark_cross_validator(spark, iris, monkeypatch):
    clf = KNNClassifier(algorithm="brute", numShards=2)
    grid = _k_weights_grid(clf, [1, 3, 5])
    evaluator = MulticlassClassificationEvaluator(metricName="accuracy")
    fits = []
    original = KNNClassifier._fit

    def counting_fit(self, dataset):
        fits.append(self.getK())
        return original(self, dataset)

    monkeypatch.setattr(KNNClassifier, "_fit", counting_fit)
    evaluations = []
    monkeypatch.setattr(
        MulticlassClassificationEvaluator,
        "_evaluate",
        lambda self, df: evaluations.append(df) or 0.0,
    )
    ours = KNNCrossValidator(
        estimator=clf,
        estimatorParamMaps=grid,
        evaluator=evaluator,
        numFolds=NUM_FOLDS,
        foldCol="fold",
    ).fit(iris)
    # One fit per fold at the largest k, then the best param map on all the data.
    assert fits[:NUM_FOLDS] == [5] * NUM_FOLDS and len(fits) == NUM_FOLDS + 1
    # Spark's own evaluator is never called: its metric comes from sums of the scoring pass.
    assert evaluations == []
    monkeypatch.undo()
    theirs = CrossValidator(
        estimator=clf,
        estimatorParamMaps=grid,
        evaluator=evaluator,
        numFolds=NUM_FOLDS,
        foldCol="fold",
    ).fit(iris)

    _assert_same_metrics(ours, theirs)
    _assert_best(ours, theirs, grid, rows=60)
    assert isinstance(ours, KNNCrossValidatorModel)
    assert isinstance(ours.bestModel, KNNClassificationModel)
    assert ours.getEstimatorParamMaps() == grid
    assert ours.subModels is None
    np.testing.assert_allclose(np.mean(ours.foldMetrics, axis=0), ours.avgMetrics, atol=1e-12)

    summary = ours.summary()
    assert list(summary.columns) == ["k", "weights", "metricName", "mean", "std", "rank"]
    assert summary["k"].tolist() == [1, 1, 3, 3, 5, 5]
    assert summary["weights"].tolist() == ["uniform", "distance"] * 3
    assert (summary["metricName"] == "accuracy").all()
    np.testing.assert_allclose(summary["mean"], theirs.avgMetrics, atol=ATOL)
    np.testing.assert_allclose(summary["std"], theirs.stdMetrics, atol=ATOL)
    assert summary["rank"].iloc[ours.bestIndex] == 1


@pytest.mark.slow
def test_classifier_f1_with_class_weights_matches_spark(spark, iris_sepals):
    clf = KNNClassifier(algorithm="brute")
    grid = (
        ParamGridBuilder()
        .addGrid(clf.k, [2, 6])
        .addGrid(clf.classWeights, ["balanced", {0.0: 0.5, 2.0: 3.0}])
        .build()
    )
    evaluator = MulticlassClassificationEvaluator(metricName="f1")
    ours, theirs = _both(iris_sepals, clf, grid, evaluator, foldCol="fold")
    _assert_same_metrics(ours, theirs)
    _assert_best(ours, theirs, grid, rows=60)
    # The grid changes the metric, so the comparison is not between constants
    # (weighted votes themselves are checked against numpy in test_preprocessing.py).
    assert len({round(m, 12) for m in ours.avgMetrics}) > 1
    columns = ["k", "classWeights", "metricName", "mean", "std", "rank"]
    assert list(ours.summary().columns) == columns


@pytest.mark.slow
def test_regressor_rmse_matches_spark(spark, diabetes):
    reg = KNNRegressor(algorithm="brute", numShards=3)
    grid = _k_weights_grid(reg, [1, 4])
    evaluator = RegressionEvaluator(metricName="rmse")
    ours, theirs = _both(diabetes, reg, grid, evaluator, foldCol="fold", parallelism=2)
    _assert_same_metrics(ours, theirs)
    # rmse: smaller is better.
    _assert_best(ours, theirs, grid, rows=80, larger_is_better=False)
    assert ours.summary()["rank"].iloc[int(np.argmin(theirs.avgMetrics))] == 1


@pytest.mark.slow
def test_binary_evaluator_on_raw_votes_with_random_folds_matches_spark(spark, cancer):
    # No foldCol: Spark's random split with the same seed must give the same folds.
    clf = KNNClassifier(algorithm="brute")
    grid = _k_weights_grid(clf, [3, 7])
    evaluator = BinaryClassificationEvaluator()  # areaUnderROC of rawPrediction
    ours, theirs = _both(cancer, clf, grid, evaluator, seed=11)
    _assert_same_metrics(ours, theirs)
    _assert_best(ours, theirs, grid, rows=80)


class _CountingEvaluator(MulticlassClassificationEvaluator):
    """A user's evaluator: a subclass, so the cross-validator must call it."""

    calls = 0

    def _evaluate(self, dataset):
        type(self).calls += 1
        return super()._evaluate(dataset)


@pytest.mark.slow
@pytest.mark.parametrize(
    "metric",
    [
        "f1",  # a subclass of a built-in evaluator: called once per fold and map
        "logLoss",  # the built-in evaluator, a metric the fast path does not compute
    ],
)
def test_evaluators_the_fast_path_cannot_replace_are_called_and_match_spark(
    spark, iris_sepals, metric
):
    clf = KNNClassifier(algorithm="brute")
    grid = _k_weights_grid(clf, [2, 6])
    _CountingEvaluator.calls = 0
    evaluator = (
        _CountingEvaluator(metricName=metric)
        if metric == "f1"
        else MulticlassClassificationEvaluator(metricName=metric)
    )
    ours, theirs = _both(iris_sepals, clf, grid, evaluator, fast=False, foldCol="fold")
    _assert_same_metrics(ours, theirs)
    if metric == "f1":
        # Once per fold and map by the cross-validator, as many times by Spark's.
        assert _CountingEvaluator.calls == 2 * NUM_FOLDS * len(grid)
        fast = KNNCrossValidator(
            estimator=clf,
            estimatorParamMaps=grid,
            evaluator=MulticlassClassificationEvaluator(metricName=metric),
            numFolds=NUM_FOLDS,
            foldCol="fold",
        ).fit(iris_sepals)
        np.testing.assert_allclose(fast.avgMetrics, ours.avgMetrics, rtol=0, atol=1e-12)


@pytest.mark.slow
def test_weighted_binary_evaluator_on_probabilities_matches_spark(spark, cancer):
    df = cancer.withColumn("w", (cancer["fold"] + 1).cast("int"))
    clf = KNNClassifier(algorithm="brute")
    grid = _k_weights_grid(clf, [3, 7])
    evaluator = BinaryClassificationEvaluator(
        metricName="areaUnderPR", rawPredictionCol="probability", weightCol="w"
    )
    ours, theirs = _both(df, clf, grid, evaluator, seed=5)
    _assert_same_metrics(ours, theirs)
    assert len({round(m, 12) for m in ours.avgMetrics}) > 1


@pytest.mark.slow
def test_binary_curves_spark_would_bin_go_to_the_evaluator_the_others_do_not(spark, cancer):
    clf = KNNClassifier(algorithm="brute")
    grid = _k_weights_grid(clf, [3, 7])
    # numBins=3: Spark bins a curve of 6 distinct scores or more. Uniform votes of 3 or 7
    # neighbors have at most 4 or 8 values, distance-weighted votes many more.
    evaluator = BinaryClassificationEvaluator(numBins=3)
    calls = []
    original = BinaryClassificationEvaluator._evaluate

    def counting(self, dataset):
        calls.append(self.getRawPredictionCol())
        return original(self, dataset)

    with mock.patch.object(BinaryClassificationEvaluator, "_evaluate", counting):
        ours = KNNCrossValidator(
            estimator=clf, estimatorParamMaps=grid, evaluator=evaluator, numFolds=NUM_FOLDS, seed=2
        ).fit(cancer)
    theirs = CrossValidator(
        estimator=clf, estimatorParamMaps=grid, evaluator=evaluator, numFolds=NUM_FOLDS, seed=2
    ).fit(cancer)
    _assert_same_metrics(ours, theirs)
    # Every fold: both distance-weighted maps (indexes 1 and 3), and uniform k=7 (index 2)
    # where a fold's votes take 6 or more distinct values; never uniform k=3.
    called = {int(c.split("_")[-2]) for c in calls}
    assert {1, 3} <= called and 0 not in called
    assert sum(c.endswith("_1_rawPrediction") for c in calls) == NUM_FOLDS


@pytest.mark.slow
def test_param_maps_that_change_the_search_get_their_own_fit(spark, iris, monkeypatch):
    clf = KNNClassifier(algorithm="brute")
    grid = (
        ParamGridBuilder()
        .addGrid(clf.metric, ["euclidean", "manhattan"])
        .addGrid(clf.k, [1, 4])
        .build()
    )
    fits = []
    original = KNNClassifier._fit

    def counting_fit(self, dataset):
        fits.append((self.getMetric(), self.getK()))
        return original(self, dataset)

    monkeypatch.setattr(KNNClassifier, "_fit", counting_fit)
    evaluator = MulticlassClassificationEvaluator(metricName="accuracy")
    ours = KNNCrossValidator(
        estimator=clf,
        estimatorParamMaps=grid,
        evaluator=evaluator,
        numFolds=2,
        seed=3,
        collectSubModels=True,
    ).fit(iris)
    assert fits[:4] == [("euclidean", 4), ("manhattan", 4)] * 2
    monkeypatch.setattr(KNNClassifier, "_fit", original)
    theirs = CrossValidator(
        estimator=clf, estimatorParamMaps=grid, evaluator=evaluator, numFolds=2, seed=3
    ).fit(iris)
    _assert_same_metrics(ours, theirs)
    # Sub-models: per fold and param map, the fold's model with that map's params.
    assert len(ours.subModels) == 2 and all(len(fold) == 4 for fold in ours.subModels)
    for fold in ours.subModels:
        for model, param_map in zip(fold, grid, strict=True):
            assert model.getK() == param_map[clf.k]
            assert model.getMetric() == param_map[clf.metric]


def _counting_fits(monkeypatch, cls):
    fits = []
    original = cls._fit

    def counting_fit(self, dataset):
        fits.append((self.getMetric(), self.getP(), self.getStandardization(), self.getK()))
        return original(self, dataset)

    monkeypatch.setattr(cls, "_fit", counting_fit)
    return fits


def test_metrics_and_kernel_weights_share_one_search_per_metric(spark, iris, monkeypatch):
    clf = KNNClassifier(algorithm="brute")
    grid = (
        ParamGridBuilder()
        .addGrid(clf.metric, ["euclidean", "mahalanobis"])
        .addGrid(clf.weights, ["uniform", "tricube"])
        .addGrid(clf.bandwidth, [1.0, 3.0])
        .addGrid(clf.k, [3, 6])
        .build()
    )
    evaluator = MulticlassClassificationEvaluator(metricName="accuracy")
    fits = _counting_fits(monkeypatch, KNNClassifier)
    ours = KNNCrossValidator(
        estimator=clf, estimatorParamMaps=grid, evaluator=evaluator, numFolds=2, foldCol="fold"
    ).fit(iris.filter("fold < 2"))
    # 16 maps, two searches per fold: one per distance metric, at the largest k.
    assert sorted(fits[:4]) == sorted(
        [("euclidean", 2.0, "none", 6), ("mahalanobis", 2.0, "none", 6)] * 2
    )
    monkeypatch.undo()
    theirs = CrossValidator(
        estimator=clf, estimatorParamMaps=grid, evaluator=evaluator, numFolds=2, foldCol="fold"
    ).fit(iris.filter("fold < 2"))
    _assert_same_metrics(ours, theirs)
    assert len({round(m, 12) for m in ours.avgMetrics}) > 2  # the grid's dimensions matter
    assert list(ours.summary().columns)[:4] == ["metric", "weights", "bandwidth", "k"]


@pytest.mark.slow
def test_grid_over_metric_p_standardization_weights_and_bandwidth_matches_spark(
    spark, diabetes, monkeypatch
):
    reg = KNNRegressor(algorithm="brute", numShards=2)
    grid = (
        ParamGridBuilder()
        .addGrid(reg.metric, ["euclidean", "minkowski", "mahalanobis"])
        .addGrid(reg.p, [1.5, 3.0])
        .addGrid(reg.standardization, ["none", "zscore"])
        .addGrid(reg.weights, ["gaussian"])
        .addGrid(reg.bandwidth, [0.1, 2.0])
        .addGrid(reg.k, [3])
        .build()
    )
    evaluator = RegressionEvaluator(metricName="rmse")
    fits = _counting_fits(monkeypatch, KNNRegressor)
    cv = KNNCrossValidator(
        estimator=reg,
        estimatorParamMaps=grid,
        evaluator=evaluator,
        numFolds=2,
        foldCol="fold",
        collectSubModels=True,
    )
    ours = cv.fit(diabetes.filter("fold < 2"))
    # Per fold: euclidean and mahalanobis once per standardization (p does not matter to
    # them), minkowski once per p and standardization: 8 searches for 24 maps.
    assert len(fits) == 8 * 2 + 1
    assert len({f for f in fits[:-1]}) == 8
    monkeypatch.undo()
    theirs = CrossValidator(
        estimator=reg,
        estimatorParamMaps=grid,
        evaluator=evaluator,
        numFolds=2,
        foldCol="fold",
    ).fit(diabetes.filter("fold < 2"))
    _assert_same_metrics(ours, theirs)
    rows = diabetes.filter("fold < 2").count()
    _assert_best(ours, theirs, grid, rows=rows, larger_is_better=False)
    for model, param_map in zip(ours.subModels[0], grid, strict=True):
        assert {p.name: model.getOrDefault(p.name) for p in param_map} == {
            p.name: v for p, v in param_map.items()
        }


def test_drop_in_params_and_defaults(spark):
    clf = KNNClassifier()
    ours, theirs = KNNCrossValidator(), CrossValidator()
    assert isinstance(ours, CrossValidator)
    assert [p.name for p in ours.params] == [p.name for p in theirs.params]
    for name in ("numFolds", "seed", "parallelism", "collectSubModels", "foldCol"):
        assert ours.getOrDefault(name) == theirs.getOrDefault(name), name
    cv = KNNCrossValidator(estimator=clf, numFolds=4).setSeed(5)
    copied = cv.copy()
    assert type(copied) is KNNCrossValidator
    assert (copied.getNumFolds(), copied.getSeed()) == (4, 5)


def test_saving_is_refused_with_a_message_that_says_what_to_save(spark):
    with pytest.raises(NotImplementedError, match=r"^KNNCrossValidator cannot be saved"):
        KNNCrossValidator().write()
    with pytest.raises(
        NotImplementedError, match=r"^KNNCrossValidatorModel cannot be saved; save cvModel\.best"
    ):
        KNNCrossValidatorModel(bestModel=None).write()


# ---------------------------------------------------------------- errors, before any job


@pytest.fixture
def tiny(spark):
    rows = [([float(i)], float(i % 2), i % 3) for i in range(9)]
    return spark.createDataFrame(rows, "features array<double>, label double, fold int")


def _cv(**params):
    clf = KNNClassifier()
    defaults = {
        "estimator": clf,
        "estimatorParamMaps": ParamGridBuilder().addGrid(clf.k, [1, 2]).build(),
        "evaluator": MulticlassClassificationEvaluator(),
        "numFolds": 3,
    }
    return KNNCrossValidator(**{**defaults, **params})


def test_rejects_other_estimators(tiny):
    lr = LogisticRegression()
    grid = ParamGridBuilder().addGrid(lr.regParam, [0.1]).build()
    with pytest.raises(
        TypeError,
        match=r"^Param estimator must be a knnspark KNNClassifier or KNNRegressor; "
        r"got LogisticRegression",
    ):
        _cv(estimator=lr, estimatorParamMaps=grid).fit(tiny)


def test_rejects_fewer_than_two_folds(tiny):
    with pytest.raises(ValueError, match=r"^Param numFolds must be an integer >= 2; got 1$"):
        _cv(numFolds=1).fit(tiny)


def test_rejects_k_above_the_training_rows_of_a_fold(tiny):
    clf = KNNClassifier()
    grid = ParamGridBuilder().addGrid(clf.k, [1, 7]).addGrid(clf.weights, ["distance"]).build()
    # 9 rows in 3 folds of 3: 6 training rows per fold.
    with pytest.raises(
        ValueError,
        match=r"^Param k of estimatorParamMaps\[1\] \{k=7, weights='distance'\} is 7, but fold "
        r"0 has only 6 training rows; k must be <= the training rows of every fold$",
    ):
        _cv(estimator=clf, estimatorParamMaps=grid, foldCol="fold").fit(tiny)


def test_rejects_a_param_of_another_estimator(tiny):
    other = KNNClassifier()
    grid = ParamGridBuilder().addGrid(other.k, [1]).build()
    with pytest.raises(
        ValueError, match=r"^Param estimatorParamMaps\[0\] sets .*k.*, which is not a param of "
    ):
        _cv(estimatorParamMaps=grid).fit(tiny)


def test_rejects_an_evaluator_that_reads_no_output_of_the_model(tiny):
    evaluator = MulticlassClassificationEvaluator(predictionCol="score")
    with pytest.raises(
        ValueError,
        match=r"^Param evaluator reads the columns \{'predictionCol': 'score'.*none of which the "
        r"estimator writes",
    ):
        _cv(evaluator=evaluator).fit(tiny)


@pytest.mark.parametrize(
    ("fold_col", "error", "message"),
    [
        ("missing", ValueError, r"^Column 'missing' \(param foldCol\) not found"),
        ("label", TypeError, r"^Column 'label' \(param foldCol\) must hold integers; got double"),
    ],
)
def test_rejects_a_bad_fold_column(tiny, fold_col, error, message):
    with pytest.raises(error, match=message):
        _cv(foldCol=fold_col).fit(tiny)


def test_rejects_fold_numbers_out_of_range(tiny):
    with pytest.raises(
        ValueError,
        match=r"^Column 'fold' \(param foldCol\) must hold fold numbers in \[0, 2\); 3 rows hold "
        r"other values or null$",
    ):
        _cv(foldCol="fold", numFolds=2).fit(tiny)


# ---------------------------------------------------------------- the tune job


def test_run_tune_writes_report_plot_and_best_model(spark, iris, tmp_path):
    data = tmp_path / "iris.parquet"
    iris.write.parquet(str(data))
    out = tmp_path / "tuning"
    config = validate(
        {
            "input": {"path": str(data)},
            "model": {"algorithm": "brute"},
            "tune": {
                "k": [1, 3],
                "weights": ["uniform", "distance"],
                "metric": ["euclidean", "mahalanobis"],
                "numFolds": 2,
            },
            "output": {"path": str(out)},
        },
        TUNE_SCHEMA,
    )
    summary = run_tune(config, spark)

    assert summary["rows_in"] == 60 and summary["param_maps"] == 8
    assert summary["metric"] == "accuracy"
    report = pd.read_csv(out / "report.csv")
    assert list(report.columns) == ["k", "weights", "metric", "metricName", "mean", "std", "rank"]
    assert len(report) == 8 and set(report["metric"]) == {"euclidean", "mahalanobis"}
    payload = json.loads((out / "report.json").read_text())
    assert payload["best"]["params"] == summary["best_params"]
    assert len(payload["results"]) == 8 and len(payload["results"][0]["folds"]) == 2
    assert {r["params"]["metric"] for r in payload["results"]} == {"euclidean", "mahalanobis"}
    png = (out / "metric_vs_k.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert width > 400 and height > 300
    model = KNNClassificationModel.load(str(out / "best_model"))
    assert model.getK() == summary["best_params"]["k"]
    assert model.numTrainingRows == 60


def test_run_tune_refuses_an_existing_output_without_overwrite(spark, iris, tmp_path):
    data = tmp_path / "iris.parquet"
    iris.write.parquet(str(data))
    (tmp_path / "tuning").mkdir()
    config = validate(
        {
            "input": {"path": str(data)},
            "tune": {"k": [1]},
            "output": {"path": str(tmp_path / "tuning"), "overwrite": False},
        },
        TUNE_SCHEMA,
    )
    with pytest.raises(FileExistsError, match=r"output\.overwrite = false$"):
        run_tune(config, spark)
