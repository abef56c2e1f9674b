"""The cross-validator's fast metrics (kernels.metric_sums), and the evaluate job's r2,
against Spark's own evaluators on the same rows."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml.evaluation import (
    BinaryClassificationEvaluator,
    MulticlassClassificationEvaluator,
    RegressionEvaluator,
)
from pyspark.ml.linalg import Vectors
from sklearn.metrics import r2_score

from knnspark.app.metrics import regression_metrics
from knnspark.kernels.metric_sums import (
    FAMILY_METRICS,
    MetricSpec,
    merge_partials,
    metric_value,
    partial_sums,
)

ATOL = 1e-12


def _ours(spec, labels, weights, values, chunks=3):
    """Partial sums of a few uneven chunks, merged, as the executors and the driver do."""
    bounds = np.linspace(0, len(labels), chunks + 1).astype(int)
    bounds[1] = max(1, bounds[1] // 3)
    parts = [
        partial_sums(spec.family, labels[lo:hi], weights[lo:hi], values[lo:hi])
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    return metric_value(spec, merge_partials(spec.family, parts, spec.max_distinct_scores))


def _scored_rows(spark, predictions, labels, weights):
    """A cached DataFrame of (prediction, label, weight), as an evaluator reads it."""
    return spark.createDataFrame(
        [
            (float(p), float(y), float(w))
            for p, y, w in zip(predictions, labels, weights, strict=True)
        ],
        "prediction double, label double, weight double",
    ).cache()


@pytest.fixture(scope="module")
def multiclass_rows(spark):
    rng = np.random.default_rng(0)
    n = 300
    labels = rng.choice([0.0, 1.0, 2.0, 5.0], n, p=[0.5, 0.3, 0.15, 0.05])
    # Mostly right; some predictions name a class no row has (3.0).
    predictions = np.where(rng.random(n) < 0.6, labels, rng.choice([0.0, 1.0, 2.0, 3.0], n))
    weights = np.where(rng.random(n) < 0.1, 0.0, rng.uniform(0.1, 3.0, n))
    return _scored_rows(spark, predictions, labels, weights), labels, weights, predictions


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("metric", sorted(FAMILY_METRICS["multiclass"]))
def test_multiclass_metrics_equal_spark(multiclass_rows, metric, weighted):
    df, labels, weights, predictions = multiclass_rows
    params = {"metricName": metric, "metricLabel": 2.0, "beta": 0.5}
    evaluator = MulticlassClassificationEvaluator(**params)
    if weighted:
        evaluator.setWeightCol("weight")
    else:
        weights = np.ones_like(weights)
    spec = MetricSpec("multiclass", metric, beta=0.5, metric_label=2.0)
    assert _ours(spec, labels, weights, predictions) == pytest.approx(
        evaluator.evaluate(df), abs=ATOL
    )


def test_multiclass_metric_of_a_label_without_rows_is_left_to_spark(multiclass_rows):
    _, labels, weights, predictions = multiclass_rows
    spec = MetricSpec("multiclass", "precisionByLabel", metric_label=3.0)  # predicted, no rows
    assert _ours(spec, labels, weights, predictions) is None


@pytest.fixture(scope="module")
def regression_rows(spark):
    rng = np.random.default_rng(1)
    n = 250
    labels = rng.normal(150.0, 70.0, n)
    predictions = labels + rng.normal(5.0, 40.0, n)
    weights = np.where(rng.random(n) < 0.1, 0.0, rng.uniform(0.1, 3.0, n))
    return _scored_rows(spark, predictions, labels, weights), labels, weights, predictions


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize(
    ("metric", "through_origin"),
    # throughOrigin changes r2 only.
    [(m, False) for m in sorted(FAMILY_METRICS["regression"])] + [("r2", True)],
)
def test_regression_metrics_equal_spark(regression_rows, metric, weighted, through_origin):
    df, labels, weights, predictions = regression_rows
    evaluator = RegressionEvaluator(metricName=metric, throughOrigin=through_origin)
    if weighted:
        evaluator.setWeightCol("weight")
    else:
        weights = np.ones_like(weights)
    spec = MetricSpec("regression", metric, through_origin=through_origin)
    expected = evaluator.evaluate(df)
    assert _ours(spec, labels, weights, predictions) == pytest.approx(expected, rel=1e-11, abs=ATOL)


@pytest.fixture(scope="module")
def binary_rows(spark):
    rng = np.random.default_rng(2)
    n = 300
    labels = (rng.random(n) < 0.4).astype(np.float64)
    # Scores with many ties (votes of a few neighbors), higher for positives.
    scores = np.round(np.clip(labels * 0.3 + rng.random(n) * 0.7, 0, 1) * 12) / 12
    weights = np.where(rng.random(n) < 0.1, 0.0, rng.uniform(0.1, 3.0, n))
    rows = [
        (Vectors.dense([1.0 - s, s]), float(s), float(y), float(w))
        for s, y, w in zip(scores, labels, weights, strict=True)
    ]
    df = spark.createDataFrame(rows, ["rawPrediction", "score", "label", "weight"]).cache()
    return df, labels, weights, scores


@pytest.mark.parametrize("column", ["rawPrediction", "score"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("metric", sorted(FAMILY_METRICS["binary"]))
def test_binary_metrics_equal_spark(binary_rows, metric, weighted, column):
    df, labels, weights, scores = binary_rows
    evaluator = BinaryClassificationEvaluator(metricName=metric, rawPredictionCol=column)
    if weighted:
        evaluator.setWeightCol("weight")
    else:
        weights = np.ones_like(weights)
    spec = MetricSpec("binary", metric)
    assert _ours(spec, labels, weights, scores) == pytest.approx(evaluator.evaluate(df), abs=ATOL)


def test_binary_metrics_without_binning_equal_spark(spark):
    # numBins=0: every distinct score is a point of the curve, however many.
    rng = np.random.default_rng(3)
    labels = (rng.random(400) < 0.5).astype(np.float64)
    scores = rng.random(400) + 0.2 * labels
    df = spark.createDataFrame(
        [(float(s), float(y)) for s, y in zip(scores, labels, strict=True)],
        "score double, label double",
    )
    for metric in sorted(FAMILY_METRICS["binary"]):
        evaluator = BinaryClassificationEvaluator(
            metricName=metric, rawPredictionCol="score", numBins=0
        )
        spec = MetricSpec("binary", metric, num_bins=0)
        assert _ours(spec, labels, np.ones(400), scores) == pytest.approx(
            evaluator.evaluate(df), abs=ATOL
        )


def test_binary_curves_spark_would_bin_are_left_to_spark():
    # 2 * numBins distinct scores or more: Spark down-samples the curve in partition-dependent
    # chunks, which the sums cannot reproduce.
    rng = np.random.default_rng(4)
    labels = (rng.random(50) < 0.5).astype(np.float64)
    scores = np.arange(50) / 50.0
    spec = MetricSpec("binary", "areaUnderROC", num_bins=25)
    assert spec.max_distinct_scores == 50
    assert _ours(spec, labels, np.ones(50), scores) is None
    assert _ours(spec, labels[:49], np.ones(49), scores[:49]) is not None


def test_metric_spec_rejects_a_metric_it_does_not_compute():
    with pytest.raises(ValueError, match="Metric 'logLoss' of family 'multiclass' is not computed"):
        MetricSpec("multiclass", "logLoss")


@pytest.mark.parametrize("error", [0.0, 0.01], ids=["perfect", "off"])
def test_r2_of_a_constant_label_equals_spark(spark, error):
    # Spark's total sum of squares is exactly 0: r2 is NaN (0/0) or -inf, never a number
    # made of rounding errors.
    labels = np.full(40, 0.1)
    predictions = labels + error
    df = spark.createDataFrame(
        [(float(p), float(y)) for p, y in zip(predictions, labels, strict=True)],
        "prediction double, label double",
    )
    expected = RegressionEvaluator(metricName="r2").evaluate(df)
    ours = _ours(MetricSpec("regression", "r2"), labels, np.ones(40), predictions)
    assert (np.isnan(ours) and np.isnan(expected)) or ours == expected
    assert np.isnan(expected) if error == 0.0 else expected == -np.inf


@pytest.mark.parametrize(
    "labels, predictions",
    [
        (np.full(40, 0.1), np.full(40, 0.1)),
        (np.full(40, 0.1), np.full(40, 0.11)),
        (np.arange(40.0) % 7, (np.arange(40.0) % 5) * 1.3),
    ],
    ids=["constant-perfect", "constant-off", "spread"],
)
def test_evaluate_job_r2_is_spark_r2(spark, labels, predictions):
    # One meaning of r2: the evaluate job's (knnspark.app.metrics) is Spark's evaluator's,
    # which is scikit-learn's r2_score with force_finite=False (NaN / -inf for constant labels).
    df = spark.createDataFrame(
        [(float(p), float(y)) for p, y in zip(predictions, labels, strict=True)],
        "prediction double, label double",
    )
    expected = RegressionEvaluator(metricName="r2").evaluate(df)
    ours = regression_metrics(df, "label", "prediction")["metrics"]["r2"]
    with np.errstate(divide="ignore", invalid="ignore"):
        sklearn_r2 = r2_score(labels, predictions, force_finite=False)
    for value in (ours, sklearn_r2):
        if np.isnan(expected):
            assert np.isnan(value)
        else:
            assert value == pytest.approx(expected, rel=1e-12)


def test_regression_rows_without_weight_are_left_to_spark():
    # Spark's summarizer skips weight-0 rows and fails when it saw none.
    labels, predictions = np.arange(5.0), np.arange(5.0) + 1
    for metric in sorted(FAMILY_METRICS["regression"]):
        assert _ours(MetricSpec("regression", metric), labels, np.zeros(5), predictions) is None
