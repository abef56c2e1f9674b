"""What ``jobs/tune.py`` runs: cross-validate a grid (``k``, ``weights`` and optionally the distance
``metric``, ``p``, ``standardization`` and ``bandwidth``), report, plot, save the best.

:func:`run_tune` runs :class:`knnspark.tuning.KNNCrossValidator` over the configured grid and
writes, into the folder ``output.path``: ``report.csv`` (``cvModel.summary()``: one row per
param map), ``report.json`` (the same rows with every fold's metric, the settings and the best
param map), ``metric_vs_k.png`` (the metric against ``k``, one line per setting of the other
gridded params, e.g. distance metric x weighting, error bars of one standard deviation over the
folds) and ``best_model/`` (the best param map refitted on all
the data, loadable with ``KNNClassificationModel.load`` / ``KNNRegressionModel.load``).
``output.path`` may be any Hadoop path (local, HDFS, S3, ...).
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import pandas as pd
from matplotlib.figure import Figure
from pyspark.ml.evaluation import (
    BinaryClassificationEvaluator,
    Evaluator,
    MulticlassClassificationEvaluator,
    RegressionEvaluator,
)
from pyspark.ml.tuning import ParamGridBuilder
from pyspark.sql import SparkSession
from pyspark.sql.types import DoubleType, NumericType

from knnspark.app.errors import worker_errors_as_driver_errors
from knnspark.app.fs import delete_path, path_exists, write_bytes, write_text
from knnspark.app.inputs import input_files_readable, read_input
from knnspark.app.progress import rate, step
from knnspark.app.schemas import ESTIMATORS, TUNE_GRID_OPTIONAL, estimator_params
from knnspark.kernels.metric_sums import FAMILY_METRICS
from knnspark.tuning import KNNCrossValidator

__all__ = ["METRIC_NAMES", "build_evaluator", "plot_metric_vs_k", "run_tune", "tune_grid"]

logger = logging.getLogger(__name__)

# Spark's evaluator metrics: those the cross-validator computes from sums, plus logLoss
# (which it leaves to Spark's evaluator). The first of each task is the default.
_BINARY_METRICS = tuple(sorted(FAMILY_METRICS["binary"], reverse=True))  # areaUnderROC first
_MULTICLASS_METRICS = (
    "accuracy",
    *sorted(FAMILY_METRICS["multiclass"] - {"accuracy"}),
    "logLoss",
)
_REGRESSION_METRICS = ("rmse", *sorted(FAMILY_METRICS["regression"] - {"rmse"}))

#: Evaluator metrics ``tune.metricName`` accepts, by task; the first is the default.
METRIC_NAMES = {
    "classification": _MULTICLASS_METRICS + _BINARY_METRICS,
    "regression": _REGRESSION_METRICS,
}

REPORT_CSV = "report.csv"
REPORT_JSON = "report.json"
PLOT_PNG = "metric_vs_k.png"
BEST_MODEL = "best_model"


def build_evaluator(task: str, metric_name: str | None, label_col: str) -> Evaluator:
    """The Spark evaluator of ``metric_name`` (None: accuracy or rmse) for ``task``.

    ``areaUnderROC`` and ``areaUnderPR`` (two classes only) use
    ``BinaryClassificationEvaluator`` on the raw votes; the other classification metrics
    ``MulticlassClassificationEvaluator``.

    Raises
    ------
    ValueError
        If the metric is not one of :data:`METRIC_NAMES` for the task.
    """
    names = METRIC_NAMES[task]
    name = metric_name or names[0]
    if name not in names:
        raise ValueError(
            f"tune.metricName: expected one of {', '.join(names)} for {task}, got {name!r}"
        )
    if task == "regression":
        return RegressionEvaluator(metricName=name, labelCol=label_col)
    if name in _BINARY_METRICS:
        return BinaryClassificationEvaluator(metricName=name, labelCol=label_col)
    return MulticlassClassificationEvaluator(metricName=name, labelCol=label_col)


#: Summary columns that are not param values.
_RESULT_COLUMNS = ("k", "metricName", "mean", "std", "rank")


def _series_label(key: dict[str, Any]) -> str:
    return ", ".join(f"{name} = {value}" for name, value in key.items()) or "mean"


def plot_metric_vs_k(
    summary: pd.DataFrame, metric: str, path: str | Path | IO[bytes], title: str | None = None
) -> None:
    """Plot the mean metric against ``k``, one line per setting of the other params, as a PNG.

    Every param column of ``summary`` besides ``k`` that takes more than one value (the
    distance ``metric``, ``p``, ``standardization``, ``weights``, ``bandwidth``, ...) is a
    dimension of the lines: one line per combination, labelled with its values.

    Parameters
    ----------
    summary : pandas.DataFrame
        Columns ``k``, ``mean`` and ``std`` and a column per param of the grid (as
        ``cvModel.summary()`` gives); ``rank`` marks the best map.
    metric : str
        Name of the evaluator's metric, for the axis label.
    path : str, Path or binary file object
        Where the PNG goes (a local file, or a buffer).
    title : str, optional
        Plot title.
    """
    # A Figure without pyplot draws with the Agg canvas and leaves no global state behind.
    fig = Figure(figsize=(8, 5), dpi=110, layout="constrained")
    ax = fig.subplots()
    dims = [
        c
        for c in summary.columns
        if c not in _RESULT_COLUMNS and summary[c].astype(str).nunique() > 1
    ]
    keys = summary[dims].astype(str).agg("|".join, axis=1) if dims else pd.Series("", summary.index)
    series = list(dict.fromkeys(keys))
    # Offset the lines a little along k so that their error bars do not hide each other.
    k_values = sorted(summary["k"].unique())
    step = min((b - a for a, b in zip(k_values, k_values[1:], strict=False)), default=1)
    width = 0.3 * step / max(1, len(series) - 1) if len(series) > 1 else 0.0
    shift = {key: (i - (len(series) - 1) / 2) * width for i, key in enumerate(series)}
    for key in series:
        rows = summary[keys == key].sort_values("k")
        label = _series_label({d: rows[d].iloc[0] for d in dims})
        ax.errorbar(
            rows["k"] + shift[key],
            rows["mean"],
            yerr=rows["std"],
            marker="o",
            markersize=4,
            capsize=3,
            label=label,
        )
    if "rank" in summary:
        best_index = summary["rank"].idxmin()
        best = summary.loc[best_index]
        best_label = _series_label({d: best[d] for d in dims})
        ax.scatter(
            [best["k"] + shift[keys[best_index]]],
            [best["mean"]],
            s=160,
            marker="*",
            color="black",
            zorder=5,
            label=f"best: k = {best['k']}, {best_label} ({best['mean']:.4f})",
        )
    ax.set_xlabel("k (neighbors)")
    ax.set_ylabel(f"{metric} (mean over folds, bars: ±1 std)")
    ax.set_xticks(k_values)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small" if len(series) > 4 else None)
    if title:
        ax.set_title(title)
    fig.savefig(path, format="png")


def _json_value(value: Any) -> Any:
    """Param values as JSON: mappings (classWeights) with string keys, floats as floats."""
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if hasattr(value, "item"):
        return value.item()
    return value


def tune_grid(estimator: Any, params: Mapping[str, Any], tune_config: Mapping[str, Any]) -> list:
    """The ``[tune]`` grid of ``estimator``: ``k`` x ``weights`` x every optional dimension set.

    Each value is checked by its Param's own converter (so before any data is read); a param
    both ``[model]`` (``params``) and ``[tune]`` set is an error.
    """
    if not tune_config["k"]:
        raise ValueError("tune.k: expected at least one value of k, got []")
    if not tune_config["weights"]:
        raise ValueError("tune.weights: expected at least one weighting, got []")
    builder = (
        ParamGridBuilder()
        .addGrid(estimator.k, list(dict.fromkeys(tune_config["k"])))
        .addGrid(estimator.weights, list(dict.fromkeys(tune_config["weights"])))
    )
    for name in TUNE_GRID_OPTIONAL:
        values = tune_config.get(name)
        if values is None:
            continue
        if not values:
            raise ValueError(f"tune.{name}: expected at least one value or no key, got []")
        if name in params:
            raise ValueError(
                f"model.{name} and tune.{name} both set it: keep one (tune.{name} grids over "
                f"its values, model.{name} fixes one for every param map)"
            )
        param = estimator.getParam(name)
        builder.addGrid(param, [param.typeConverter(v) for v in dict.fromkeys(values)])
    return builder.build()


def _cross_validator(task: str, params: dict[str, Any], tune_config: Mapping[str, Any]) -> Any:
    """The cross-validator of the ``[tune]`` grid; building it validates every setting."""
    estimator = ESTIMATORS[task](**params)
    grid = tune_grid(estimator, params, tune_config)
    return KNNCrossValidator(
        estimator=estimator,
        estimatorParamMaps=grid,
        evaluator=build_evaluator(task, tune_config["metricName"], estimator.getLabelCol()),
        numFolds=tune_config["numFolds"],
        seed=tune_config["seed"],
        parallelism=tune_config["parallelism"],
        foldCol=tune_config["foldCol"] or "",
    )


def _read_labelled(spark: SparkSession, input_config: Mapping[str, Any], estimator: Any) -> Any:
    """The input, checked to hold the label column, with a numeric label cast to double."""
    df = read_input(spark, input_config, estimator.getFeaturesCol(), estimator.getHandleInvalid())
    label_col = estimator.getLabelCol()
    if label_col not in df.columns:
        raise ValueError(
            f"Column '{label_col}' (param labelCol) not found; the input has {df.columns}"
        )
    label_type = df.schema[label_col].dataType
    if isinstance(label_type, NumericType) and not isinstance(label_type, DoubleType):
        # Spark's evaluators read the label as a double.
        df = df.withColumn(label_col, df[label_col].cast("double"))
    return df


def _report(
    config: Mapping[str, Any], params: dict[str, Any], cv: Any, cv_model: Any, rows: int
) -> dict[str, Any]:
    """The document of ``report.json``: settings, best param map and every map's folds."""
    summary, best, grid = cv_model.summary(), cv_model.bestIndex, cv.getEstimatorParamMaps()
    evaluator, fold_col = cv.getEvaluator(), config["tune"]["foldCol"]
    return {
        "task": config["model"]["task"],
        "input": config["input"]["path"],
        "rows": rows,
        "metric": evaluator.getMetricName(),
        "larger_is_better": bool(evaluator.isLargerBetter()),
        "num_folds": cv.getNumFolds(),
        "seed": None if fold_col else cv.getSeed(),
        "fold_col": fold_col,
        "estimator_params": {k: _json_value(v) for k, v in params.items()},
        "best": {
            "params": {k: _json_value(v) for k, v in cv_model.bestParams.items()},
            "mean": float(cv_model.avgMetrics[best]),
            "std": float(cv_model.stdMetrics[best]),
        },
        "results": [
            {
                "params": {p.name: _json_value(v) for p, v in param_map.items()},
                "mean": float(cv_model.avgMetrics[j]),
                "std": float(cv_model.stdMetrics[j]),
                "rank": int(summary["rank"].iloc[j]),
                "folds": [float(fold[j]) for fold in cv_model.foldMetrics],
            }
            for j, param_map in enumerate(grid)
        ],
    }


def run_tune(config: Mapping[str, Any], spark: SparkSession | None = None) -> dict[str, Any]:
    """Cross-validate the configured grid (``k`` x ``weights`` x the optional dims) and report.

    Parameters
    ----------
    config : mapping
        A config validated against :data:`knnspark.app.schemas.TUNE_SCHEMA`.
    spark : SparkSession, optional
        Defaults to the active session.

    Returns
    -------
    dict
        ``task``, ``rows_in``, ``metric``, ``num_folds``, ``param_maps``, ``best_params``,
        ``best_mean``, ``best_std``, ``report_csv``, ``report_json``, ``plot``,
        ``model_path``, ``seconds`` and ``rows_per_second``.

    Raises
    ------
    FileNotFoundError
        If ``input.path`` does not exist.
    FileExistsError
        If ``output.path`` exists and ``output.overwrite`` is false.
    ValueError, TypeError
        For a bad param, metric, grid or input.
    """
    spark = spark or SparkSession.active()
    start = time.perf_counter()
    task = config["model"]["task"]
    params = estimator_params(config["model"], task)
    # Building the estimator, grid and evaluator validates them before any data is read.
    cv = _cross_validator(task, params, config["tune"])
    df = _read_labelled(spark, config["input"], cv.getEstimator())
    out_dir = config["output"]["path"].rstrip("/")
    if not config["output"]["overwrite"] and path_exists(spark, out_dir):
        raise FileExistsError(f"output.path: {out_dir} already exists and output.overwrite = false")
    df = df.cache()
    grid, folds = cv.getEstimatorParamMaps(), cv.getNumFolds()
    name = f"tune: {len(grid)} param maps x {folds} folds on {config['input']['path']}"
    with input_files_readable(config["input"]["path"]):
        with step(spark, name), worker_errors_as_driver_errors():
            cv_model = cv.fit(df)
        rows_in = df.count()
    df.unpersist()

    summary = cv_model.summary()
    metric = cv.getEvaluator().getMetricName()
    best = cv_model.bestIndex
    paths = {
        "report_csv": f"{out_dir}/{REPORT_CSV}",
        "report_json": f"{out_dir}/{REPORT_JSON}",
        "plot": f"{out_dir}/{PLOT_PNG}",
        "model_path": f"{out_dir}/{BEST_MODEL}",
    }
    # Only the files of an earlier run are replaced; anything else in the folder stays.
    for path in paths.values():
        delete_path(spark, path)
    write_text(spark, paths["report_csv"], summary.to_csv(index=False))
    report = _report(config, params, cv, cv_model, rows_in)
    write_text(spark, paths["report_json"], json.dumps(report, indent=2) + "\n")
    png = io.BytesIO()
    title = f"{task}: {metric} against k, {folds}-fold cross-validation on {rows_in} rows"
    plot_metric_vs_k(summary, metric, png, title=title)
    write_bytes(spark, paths["plot"], png.getvalue())
    cv_model.bestModel.write().overwrite().save(paths["model_path"])
    logger.info("wrote the tuning report and the best model to %s", out_dir)
    seconds = time.perf_counter() - start
    return {
        "task": task,
        "rows_in": rows_in,
        "metric": metric,
        "num_folds": folds,
        "param_maps": len(grid),
        "best_params": cv_model.bestParams,
        "best_mean": float(cv_model.avgMetrics[best]),
        "best_std": float(cv_model.stdMetrics[best]),
        **paths,
        "seconds": round(seconds, 3),
        "rows_per_second": round(rate(rows_in, seconds), 1),
    }
