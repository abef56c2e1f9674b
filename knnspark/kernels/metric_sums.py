"""Spark ML's evaluation metrics from partial sums, for the cross-validator's fast path.

Spark's ``MulticlassClassificationEvaluator``, ``RegressionEvaluator`` and
``BinaryClassificationEvaluator`` each reduce a scored DataFrame to a few sums before computing
their metric: a weighted confusion map, a weighted summary of labels and errors, or weighted
positive and negative counts per distinct score. :func:`partial_sums` computes those sums for one
batch of rows, :func:`merge_partials` adds up the partial sums of many batches, and
:func:`metric_value` applies the evaluator's formula to the totals, the way Spark's
``MulticlassMetrics``, ``RegressionMetrics`` and ``BinaryClassificationMetrics`` do. The
cross-validator thereby evaluates every param map of a fold in the pass that scores it, instead
of one Spark job per map; its tests compare every metric with Spark's own evaluators.

Where Spark's result would depend on things the sums do not hold (``BinaryClassificationMetrics``
down-sampling its curve into partition-dependent bins, a ``metricLabel`` that is not a label,
which Spark rejects), :func:`metric_value` returns None and the caller asks Spark's evaluator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "FAMILY_METRICS",
    "MetricSpec",
    "Partials",
    "merge_partials",
    "metric_value",
    "partial_sums",
    "r2_from_sums",
]

#: The metrics computed here, per evaluator family; others (``logLoss``) go to Spark.
FAMILY_METRICS = {
    "multiclass": frozenset(
        {
            "f1",
            "accuracy",
            "weightedPrecision",
            "weightedRecall",
            "weightedTruePositiveRate",
            "weightedFalsePositiveRate",
            "weightedFMeasure",
            "truePositiveRateByLabel",
            "falsePositiveRateByLabel",
            "precisionByLabel",
            "recallByLabel",
            "fMeasureByLabel",
            "hammingLoss",
        }
    ),
    "regression": frozenset({"rmse", "mse", "r2", "mae", "var"}),
    "binary": frozenset({"areaUnderROC", "areaUnderPR"}),
}

# Columns of the regression summary: weight sum, sum of squared weights, weighted mean of the
# label, weighted sum of squared deviations from it, then weighted sums of y^2, e^2, |e|, p
# and p^2 (e = label - prediction, p = prediction).
_W, _W2, _MEAN_Y, _M2_Y, _SY2, _SE2, _SAE, _SP, _SP2 = range(9)
_REGRESSION_WIDTH = 9


@dataclass(frozen=True)
class MetricSpec:
    """An evaluator's metric and the params its formula reads.

    ``family`` is ``"multiclass"``, ``"regression"`` or ``"binary"``; ``metric`` one of
    :data:`FAMILY_METRICS` of that family.
    """

    family: str
    metric: str
    beta: float = 1.0
    metric_label: float = 0.0
    through_origin: bool = False
    num_bins: int = 1000

    def __post_init__(self) -> None:
        if self.metric not in FAMILY_METRICS.get(self.family, ()):
            raise ValueError(
                f"Metric {self.metric!r} of family {self.family!r} is not computed here; "
                f"supported: {sorted(FAMILY_METRICS.get(self.family, ()))}"
            )

    @property
    def max_distinct_scores(self) -> int | None:
        """Distinct scores from which Spark down-samples the binary curve (None: never)."""
        if self.family != "binary" or self.num_bins <= 0:
            return None
        return 2 * self.num_bins


@dataclass
class Partials:
    """Partial sums of one param map: keyed rows ``(a, b) -> sums``.

    multiclass: ``a`` label, ``b`` prediction, ``sums[:, 0]`` weight.
    binary: ``a`` score, ``b`` 1.0 for a positive label (> 0.5) else 0.0, ``sums[:, 0]`` weight.
    regression: one row (``a = b = 0``) whose ``sums`` is the summary described in the module.
    ``overflow`` marks a binary map with too many distinct scores to be computed here.
    """

    a: np.ndarray
    b: np.ndarray
    sums: np.ndarray
    overflow: bool = False


def _sum_by_key(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> Partials:
    keys = np.column_stack([a, b]) if a.size else np.empty((0, 2))
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    sums = np.bincount(inverse.reshape(-1), weights=w, minlength=len(unique))
    return Partials(unique[:, 0].copy(), unique[:, 1].copy(), sums.reshape(-1, 1))


def partial_sums(
    family: str, labels: np.ndarray, weights: np.ndarray, values: np.ndarray
) -> Partials:
    """Partial sums of one batch for one param map.

    Parameters
    ----------
    family : {"multiclass", "regression", "binary"}
    labels, weights : ndarray of shape (n_rows,)
        Finite labels and finite non-negative row weights.
    values : ndarray of shape (n_rows,)
        What the evaluator reads: the prediction, or (binary) the score.

    Returns
    -------
    Partials

    Examples
    --------
    >>> p = partial_sums("multiclass", np.array([0.0, 1, 1]), np.ones(3), np.array([0.0, 1, 0]))
    >>> p.a, p.b, p.sums[:, 0]
    (array([0., 1., 1.]), array([0., 0., 1.]), array([1., 1., 1.]))
    """
    labels = np.asarray(labels, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if family == "multiclass":
        return _sum_by_key(labels, values, weights)
    if family == "binary":
        return _sum_by_key(values, (labels > 0.5).astype(np.float64), weights)
    if family != "regression":
        raise ValueError(f"Unknown metric family {family!r}")
    stats = np.zeros((1, _REGRESSION_WIDTH))
    total = weights.sum()
    stats[0, _W] = total
    stats[0, _W2] = np.dot(weights, weights)
    if total > 0:
        # Shifted by the first label, so that constant labels give exactly their value and a
        # spread of exactly 0 (Spark's r2 is then NaN or -inf, not a rounding artefact).
        shift = labels[0]
        mean = shift + np.dot(weights, labels - shift) / total
        stats[0, _MEAN_Y] = mean
        stats[0, _M2_Y] = np.dot(weights, (labels - mean) ** 2)
    errors = labels - values
    stats[0, _SY2] = np.dot(weights, labels * labels)
    stats[0, _SE2] = np.dot(weights, errors * errors)
    stats[0, _SAE] = np.dot(weights, np.abs(errors))
    stats[0, _SP] = np.dot(weights, values)
    stats[0, _SP2] = np.dot(weights, values * values)
    return Partials(np.zeros(1), np.zeros(1), stats)


def merge_partials(family: str, parts: list[Partials], max_keys: int | None = None) -> Partials:
    """The partial sums of many batches added up.

    ``max_keys`` (binary only): a result with at least that many distinct scores comes back
    with ``overflow`` set and no rows, as does any merge of an overflowed part.

    Examples
    --------
    >>> one = partial_sums("regression", np.array([1.0, 3.0]), np.ones(2), np.array([1.0, 2.0]))
    >>> two = partial_sums("regression", np.array([5.0]), np.ones(1), np.array([5.0]))
    >>> merged = merge_partials("regression", [one, two]).sums[0]
    >>> merged[:4]  # weight sum, sum of squared weights, mean of y, squared deviations of y
    array([3., 3., 3., 8.])
    """
    empty = Partials(np.zeros(0), np.zeros(0), np.zeros((0, 1)), overflow=True)
    if any(p.overflow for p in parts):
        return empty
    if family == "regression":
        stats = np.zeros((1, _REGRESSION_WIDTH))
        for part in parts:
            for row in part.sums:
                stats = _merge_summaries(stats, row.reshape(1, -1))
        return Partials(np.zeros(1), np.zeros(1), stats)
    if not parts:
        return Partials(np.zeros(0), np.zeros(0), np.zeros((0, 1)))
    merged = _sum_by_key(
        np.concatenate([p.a for p in parts]),
        np.concatenate([p.b for p in parts]),
        np.concatenate([p.sums[:, 0] for p in parts]),
    )
    if max_keys is not None and np.unique(merged.a).size >= max_keys:
        return empty
    return merged


def _merge_summaries(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Two regression summaries combined (Chan et al.'s update for the squared deviations)."""
    w_left, w_right = left[0, _W], right[0, _W]
    if w_left == 0 or w_right == 0:
        # Nothing to combine (every sum of a side without weight is 0): keep the other side
        # exactly, as Spark's summarizer does.
        return (right if w_left == 0 else left).copy()
    out = left + right
    total = w_left + w_right
    delta = right[0, _MEAN_Y] - left[0, _MEAN_Y]
    out[0, _MEAN_Y] = left[0, _MEAN_Y] + delta * w_right / total
    out[0, _M2_Y] = left[0, _M2_Y] + right[0, _M2_Y] + delta * delta * w_left * w_right / total
    return out


def _div(num: float, den: float) -> float:
    """IEEE division, as the JVM does it: x / 0 is inf or NaN, not an exception."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(num) / np.float64(den))


def metric_value(spec: MetricSpec, partials: Partials) -> float | None:
    """The evaluator's metric from the merged partial sums of one param map.

    Returns None where Spark's evaluator must answer instead: a binary curve Spark would
    down-sample (``overflow``), a ``metricLabel`` that is not among the labels, or
    regression rows whose weights are all 0 (Spark raises an error for the last two).

    Examples
    --------
    >>> p = partial_sums("multiclass", np.array([0.0, 1, 1]), np.ones(3), np.array([0.0, 1, 0]))
    >>> round(metric_value(MetricSpec("multiclass", "accuracy"), p), 4)
    0.6667
    """
    if partials.overflow:
        return None
    if spec.family == "multiclass":
        return _multiclass(spec, partials)
    if spec.family == "regression":
        return _regression(spec, partials.sums[0])
    return _binary(spec, partials)


def _multiclass(spec: MetricSpec, p: Partials) -> float | None:
    weight = p.sums[:, 0]
    labels = np.unique(p.a)
    label_count = {lab: float(weight[p.a == lab].sum()) for lab in labels}
    total = float(sum(label_count.values()))
    correct = p.a == p.b
    tp = {lab: float(weight[correct & (p.a == lab)].sum()) for lab in labels}
    fp_mask = ~correct

    def fp(lab: float) -> float:
        return float(weight[fp_mask & (p.b == lab)].sum())

    def precision(lab: float) -> float:
        t, f = tp[lab], fp(lab)
        return 0.0 if t + f == 0 else _div(t, t + f)

    def recall(lab: float) -> float:
        return _div(tp[lab], label_count[lab])

    def false_positive_rate(lab: float) -> float:
        return _div(fp(lab), total - label_count[lab])

    def f_measure(lab: float, beta: float) -> float:
        pr, rc = precision(lab), recall(lab)
        b2 = beta * beta
        return 0.0 if pr + rc == 0 else _div((1 + b2) * pr * rc, b2 * pr + rc)

    def weighted(per_label) -> float:
        return float(sum(per_label(lab) * _div(label_count[lab], total) for lab in labels))

    metric = spec.metric
    if metric == "accuracy":
        return _div(sum(tp.values()), total)
    if metric == "hammingLoss":
        return _div(float(weight[fp_mask].sum()), total)
    if metric in ("weightedRecall", "weightedTruePositiveRate"):
        return weighted(recall)
    if metric == "weightedPrecision":
        return weighted(precision)
    if metric == "weightedFalsePositiveRate":
        return weighted(false_positive_rate)
    if metric in ("f1", "weightedFMeasure"):
        beta = 1.0 if metric == "f1" else spec.beta
        return weighted(lambda lab: f_measure(lab, beta))
    label = float(spec.metric_label)
    if label not in label_count:
        return None  # Spark fails: the label has no rows
    by_label = {
        "truePositiveRateByLabel": recall,
        "recallByLabel": recall,
        "falsePositiveRateByLabel": false_positive_rate,
        "precisionByLabel": precision,
        "fMeasureByLabel": lambda lab: f_measure(lab, spec.beta),
    }
    return by_label[metric](label)


def _regression(spec: MetricSpec, s: np.ndarray) -> float | None:
    w = s[_W]
    if w <= 0:
        return None  # Spark's summarizer saw no row with a weight, and fails
    ss_err = s[_SE2]
    metric = spec.metric
    if metric == "mse":
        return _div(ss_err, w)
    if metric == "rmse":
        return float(np.sqrt(_div(ss_err, w)))
    if metric == "mae":
        return _div(s[_SAE], w)
    if metric == "var":
        # Spark's explained variance: sum w (p - mean_y)^2 / sum w.
        mean_y = s[_MEAN_Y]
        ss_reg = s[_SP2] + mean_y * mean_y * w - 2 * mean_y * _div(s[_SP], w) * w
        return _div(ss_reg, w)
    if spec.through_origin:
        return r2_from_sums(ss_err, s[_SY2])
    # Spark's unbiased weighted variance of y times (weight sum - 1).
    denominator = w - _div(s[_W2], w)
    variance = max(_div(s[_M2_Y], denominator), 0.0) if denominator > 0 else 0.0
    return r2_from_sums(ss_err, variance * (w - 1))


def r2_from_sums(ss_err: float, ss_tot: float) -> float:
    """The coefficient of determination ``1 - ss_err / ss_tot``, as Spark defines it.

    Spark's ``RegressionEvaluator(metricName="r2")`` divides as the JVM does, so where the
    labels are constant (``ss_tot == 0``) r2 is NaN for exact predictions and -inf otherwise.
    That is scikit-learn's ``r2_score(..., force_finite=False)``; its default
    (``force_finite=True``) gives 1.0 and 0.0 there instead. knnspark's ``r2`` is Spark's
    everywhere: the tune job's (from this module) and the evaluate job's
    (:mod:`knnspark.app.metrics`).

    Parameters
    ----------
    ss_err : float
        Weighted sum of squared errors, ``sum w (y - p)^2``.
    ss_tot : float
        Weighted total sum of squares of the labels about their mean (``sum w y^2`` for a
        regression through the origin).

    Examples
    --------
    >>> r2_from_sums(1.0, 4.0)
    0.75
    >>> r2_from_sums(0.0, 0.0), r2_from_sums(1.0, 0.0)
    (nan, -inf)
    """
    return 1.0 - _div(ss_err, ss_tot)


def _binary(spec: MetricSpec, p: Partials) -> float:
    scores = np.unique(p.a)[::-1]  # descending, as Spark sorts its bins
    position = np.searchsorted(-scores, -p.a)
    weight = p.sums[:, 0]
    positives = np.bincount(position, weights=weight * (p.b == 1.0), minlength=len(scores))
    negatives = np.bincount(position, weights=weight * (p.b != 1.0), minlength=len(scores))
    tp, fp = np.cumsum(positives), np.cumsum(negatives)
    total_pos = tp[-1] if len(tp) else 0.0
    total_neg = fp[-1] if len(fp) else 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = tp / total_pos if total_pos != 0 else np.zeros_like(tp)
        if spec.metric == "areaUnderROC":
            fpr = fp / total_neg if total_neg != 0 else np.zeros_like(fp)
            x = np.concatenate([[0.0], fpr, [1.0]])
            y = np.concatenate([[0.0], recall, [1.0]])
        else:
            predicted = tp + fp
            precision = np.where(predicted == 0, 1.0, tp / np.where(predicted == 0, 1, predicted))
            x = np.concatenate([[0.0], recall])
            y = np.concatenate([precision[:1], precision])
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))
