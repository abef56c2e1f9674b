"""Quality metrics of scored rows, computed in one Spark aggregation each.

Classification: the (label, prediction) counts are gathered in one ``groupBy`` and the
metrics computed from that confusion table by :func:`confusion_metrics`, as scikit-learn
defines them. Regression: one aggregation gives the mean squared and absolute errors and the
label variance; ``r2`` is Spark's, as in the tune job (see :func:`regression_metrics`).
Either way the neighbor search behind ``prediction`` runs once. Rows without a label or a
prediction (invalid features under ``handleInvalid='keep'``) are counted and left out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from knnspark.kernels.metric_sums import r2_from_sums
from knnspark.schema import column

__all__ = ["classification_metrics", "confusion_metrics", "regression_metrics", "score_metrics"]


def confusion_metrics(
    labels: np.ndarray, predictions: np.ndarray, counts: np.ndarray
) -> dict[str, float]:
    """Accuracy, F1, precision and recall of a confusion table given as (label, prediction, n).

    Classes are every value seen as a label or a prediction. ``f1``, ``precision`` and
    ``recall`` average the per-class values weighted by each class's number of true rows
    (scikit-learn's ``average="weighted"``, Spark's ``MulticlassClassificationEvaluator``
    ``f1``); ``f1_macro`` is their plain mean over the classes. A class never predicted has
    precision 0, as in scikit-learn.

    Parameters
    ----------
    labels, predictions : ndarray of shape (n_pairs,)
        Distinct (label, prediction) pairs.
    counts : ndarray of shape (n_pairs,)
        Rows with that pair.

    Returns
    -------
    dict
        ``accuracy``, ``f1``, ``f1_macro``, ``precision`` and ``recall``.

    Examples
    --------
    >>> m = confusion_metrics(np.array([0.0, 0.0, 1.0]), np.array([0.0, 1.0, 1.0]),
    ...                       np.array([3, 1, 4]))
    >>> round(m["accuracy"], 4), round(m["f1"], 4), round(m["f1_macro"], 4)
    (0.875, 0.873, 0.873)
    """
    classes = np.union1d(labels, predictions)
    true_index = np.searchsorted(classes, labels)
    pred_index = np.searchsorted(classes, predictions)
    confusion = np.zeros((len(classes), len(classes)), dtype=np.float64)
    np.add.at(confusion, (true_index, pred_index), counts)
    hits = np.diag(confusion)
    support, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, hits / predicted, 0.0)
        recall = np.where(support > 0, hits / support, 0.0)
        denominator = 2 * hits + (predicted - hits) + (support - hits)
        f1 = np.where(denominator > 0, 2 * hits / denominator, 0.0)
    share = support / support.sum()
    return {
        "accuracy": float(hits.sum() / support.sum()),
        "f1": float(share @ f1),
        "f1_macro": float(f1.mean()),
        "precision": float(share @ precision),
        "recall": float(share @ recall),
    }


def classification_metrics(df: DataFrame, label_col: str, prediction_col: str) -> dict[str, Any]:
    """Row counts and :func:`confusion_metrics` of scored rows (one Spark job)."""
    label, prediction = column(label_col).cast("double"), column(prediction_col)
    table = df.groupBy(label.alias("label"), prediction.alias("prediction")).count().toPandas()
    valid = table["label"].notna() & table["prediction"].notna()
    counts = _row_counts(
        int(table["count"].sum()),
        int(table.loc[valid, "count"].sum()),
        int(table.loc[table["prediction"].isna(), "count"].sum()),
        int(table.loc[table["label"].isna(), "count"].sum()),
    )
    if counts["rows_evaluated"] == 0:
        return {**counts, "metrics": {}}
    metrics = confusion_metrics(
        table.loc[valid, "label"].to_numpy(np.float64),
        table.loc[valid, "prediction"].to_numpy(np.float64),
        table.loc[valid, "count"].to_numpy(np.float64),
    )
    return {**counts, "metrics": metrics}


def regression_metrics(df: DataFrame, label_col: str, prediction_col: str) -> dict[str, Any]:
    """Row counts, RMSE, MSE, MAE and R2 of scored rows (one Spark job).

    R2 is Spark's (``RegressionEvaluator``, :func:`~knnspark.kernels.metric_sums.r2_from_sums`):
    ``1 - MSE / Var(label)``, as scikit-learn's ``r2_score`` too, except for constant labels,
    where it is NaN when every prediction is exact and -inf otherwise (scikit-learn's
    ``force_finite=False``), not scikit-learn's default 1.0 and 0.0.
    """
    label, prediction = column(label_col).cast("double"), column(prediction_col)
    valid = label.isNotNull() & prediction.isNotNull()
    error = prediction - label
    row = df.agg(
        F.count(F.lit(1)).alias("rows"),
        F.count(F.when(valid, 1)).alias("valid"),
        F.count(F.when(prediction.isNull(), 1)).alias("no_prediction"),
        F.count(F.when(label.isNull(), 1)).alias("no_label"),
        F.avg(F.when(valid, error * error)).alias("mse"),
        F.avg(F.when(valid, F.abs(error))).alias("mae"),
        F.var_pop(F.when(valid, label)).alias("variance"),
    ).first()
    counts = _row_counts(row["rows"], row["valid"], row["no_prediction"], row["no_label"])
    if counts["rows_evaluated"] == 0:
        return {**counts, "metrics": {}}
    mse, variance = float(row["mse"]), float(row["variance"])
    # Both sums of squares divided by the row count: the same ratio.
    r2 = r2_from_sums(mse, variance)
    metrics = {"rmse": mse**0.5, "mse": mse, "mae": float(row["mae"]), "r2": r2}
    return {**counts, "metrics": metrics}


def score_metrics(df: DataFrame, task: str, label_col: str, prediction_col: str) -> dict[str, Any]:
    """:func:`classification_metrics` or :func:`regression_metrics`, by ``task``.

    Returns
    -------
    dict
        ``rows``, ``rows_evaluated``, ``rows_without_prediction``, ``rows_without_label``
        and ``metrics`` (empty when no row has both a label and a prediction).
    """
    if task == "classification":
        return classification_metrics(df, label_col, prediction_col)
    return regression_metrics(df, label_col, prediction_col)


def _row_counts(rows: int, valid: int, no_prediction: int, no_label: int) -> dict[str, int]:
    return {
        "rows": int(rows),
        "rows_evaluated": int(valid),
        "rows_without_prediction": int(no_prediction),
        "rows_without_label": int(no_label),
    }
