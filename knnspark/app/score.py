"""What ``jobs/score.py`` runs: score an input with a saved model into one run's partition.

The output (a Parquet folder or a table) is partitioned by ``run_date``; a run replaces its own
partition whole, and only once every row is scored and counted (see :mod:`knnspark.app.output`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from knnspark.app.errors import worker_errors_as_driver_errors
from knnspark.app.inputs import check_scoring_input, read_scoring_input
from knnspark.app.metrics import score_metrics
from knnspark.app.models import SavedModel, load_saved_model
from knnspark.app.output import (
    RUN_DATE_COL,
    parse_run_date,
    resolve_output,
    utc_now,
    write_run,
)
from knnspark.app.progress import rate, step
from knnspark.errors import InvalidInputError
from knnspark.schema import column

__all__ = ["LINEAGE_COLS", "run_score"]

logger = logging.getLogger(__name__)

#: Columns the score job adds to every row, besides the model's outputs and ``run_date``.
LINEAGE_COLS = ("model_id", "model_version", "scored_at")


def _check_output_path(config: Mapping[str, Any]) -> None:
    """Refuse an output path that is the input or the model: the run would destroy it first."""
    output_path = config["output"]["path"]
    for key in ("input.path", "model.path"):
        table, name = key.split(".")
        if output_path.rstrip("/") == config[table][name].rstrip("/"):
            raise ValueError(f"output.path: must differ from {key}; both are {output_path}")


def _published_quality(
    published: DataFrame, saved: SavedModel, input_columns: list[str]
) -> tuple[int, str | None, float | None]:
    """Rows without a prediction, and accuracy or RMSE when the input holds the label.

    Returns
    -------
    tuple of (int, str or None, float or None)
        Rows without a prediction, the metric's name and its value (both None without labels
        or without a row to measure).
    """
    model = saved.model
    if saved.task == "outliers":
        return _outlier_share(published, model.getPredictionCol())
    prediction_col, label_col = model.getPredictionCol(), model.getLabelCol()
    if label_col not in input_columns:
        return published.where(column(prediction_col).isNull()).count(), None, None
    evaluated = score_metrics(published, saved.task, label_col, prediction_col)
    metric = "accuracy" if saved.task == "classification" else "rmse"
    value = evaluated["metrics"].get(metric)
    return evaluated["rows_without_prediction"], metric if value is not None else None, value


def _outlier_share(
    published: DataFrame, prediction_col: str
) -> tuple[int, str | None, float | None]:
    """Rows without a prediction, and the share of scored rows predicted outliers (one job)."""
    prediction = column(prediction_col)
    counts = published.agg(
        F.count(F.when(prediction.isNull(), 1)).alias("missing"),
        F.count(F.when(prediction == 1.0, 1)).alias("outliers"),
        F.count(prediction).alias("scored"),
    ).first()
    if not counts["scored"]:
        return counts["missing"], None, None
    return counts["missing"], "outlier_share", counts["outliers"] / counts["scored"]


def run_score(config: Mapping[str, Any], spark: SparkSession | None = None) -> dict[str, Any]:
    """Score the configured input with a saved model into the run's output partition.

    The output (a Parquet folder or a table) is partitioned by ``run_date``; this run's
    partition is replaced whole, and only once every row is scored and counted (see
    :mod:`knnspark.app.output`). Each row gets the model's outputs plus ``model_id``,
    ``model_version`` (the knnspark version that saved the model) and ``scored_at`` (this
    run's start, UTC). If the input has the model's label column, the summary holds the
    accuracy (classification) or RMSE (regression) of the rows that got a prediction; with an
    outlier model (:class:`knnspark.KNNOutlierModel`, nightly anomaly scoring) it holds the
    share of scored rows predicted outliers (``outlier_share``).

    Parameters
    ----------
    config : mapping
        A config validated against :data:`knnspark.app.schemas.SCORE_SCHEMA`.
    spark : SparkSession, optional
        Defaults to the active session.

    Returns
    -------
    dict
        ``task``, ``rows_in``, ``rows_out``, ``rows_without_prediction`` (rows whose invalid
        features got null outputs), ``metric`` (``"accuracy"``, ``"rmse"``,
        ``"outlier_share"`` or None), ``metric_value`` (float or None), ``output_path``,
        ``run_date`` (ISO date), ``model_id``, ``model_version``, ``seconds`` and
        ``rows_per_second``.

    Raises
    ------
    FileNotFoundError
        If ``input.path`` or ``model.path`` does not exist.
    ValueError
        If ``output.path`` is the input or the model, the model folder is damaged, or the input
        is empty or does not fit the model.
    knnspark.app.output.RowCountError
        If the rows scored or published differ in number from the rows read.
    """
    spark = spark or SparkSession.active()
    start = time.perf_counter()
    scored_at = utc_now()
    model_config, input_config, output_config = config["model"], config["input"], config["output"]
    # One reading of the clock: a run started just before midnight is keyed by that day.
    run_date = parse_run_date(output_config["run_date"], today=scored_at.date())
    output_path = output_config["path"]
    _check_output_path(config)
    saved = load_saved_model(spark, model_config)
    model = saved.model
    target = resolve_output(spark, output_config)

    df = read_scoring_input(spark, input_config, model)
    clashes = [c for c in (*LINEAGE_COLS, RUN_DATE_COL) if c in df.columns]
    if clashes:
        raise InvalidInputError(
            f"Input column(s) {clashes} of {input_config['path']} clash with the columns the "
            f"score job adds ({', '.join((*LINEAGE_COLS, RUN_DATE_COL))}); drop or rename them"
        )
    rows_in = check_scoring_input(df, saved, input_config)
    scored = model.transform(df).withColumns(
        {
            "model_id": F.lit(saved.model_id).cast("string"),
            "model_version": F.lit(saved.version).cast("string"),
            "scored_at": F.lit(scored_at),
        }
    )
    logger.info(
        "scoring %d rows from %s with model %s (%s) into %s, %s=%s",
        rows_in,
        input_config["path"],
        saved.model_id,
        saved.path,
        output_path,
        RUN_DATE_COL,
        run_date,
    )
    with step(spark, f"score: {rows_in} rows for {RUN_DATE_COL}={run_date}"):
        with worker_errors_as_driver_errors():
            published, rows_out = write_run(
                spark, scored, target, run_date, rows_in, started=scored_at
            )

    without_prediction, metric, value = _published_quality(published, saved, df.columns)
    seconds = time.perf_counter() - start
    return {
        "task": saved.task,
        "rows_in": rows_in,
        "rows_out": rows_out,
        "rows_without_prediction": without_prediction,
        "metric": metric,
        "metric_value": value,
        "output_path": output_path,
        "run_date": run_date.isoformat(),
        "model_id": saved.model_id,
        "model_version": saved.version,
        "seconds": round(seconds, 3),
        "rows_per_second": round(rate(rows_in, seconds), 1),
    }
