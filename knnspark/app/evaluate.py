"""What ``jobs/evaluate.py`` runs: score a labelled input with a saved model, write metrics.

The metrics file is one JSON document: the model (path, id, knnspark version, task, ``k``,
``weights``), the input, row counts (read, evaluated, without a prediction, without a label)
and ``metrics`` — ``accuracy``, ``f1`` (weighted by class support), ``f1_macro``,
``precision`` and ``recall`` (weighted) for classification, ``rmse``, ``mse``, ``mae`` and
``r2`` for regression, defined as scikit-learn defines them (:mod:`knnspark.app.metrics`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql.types import NumericType

from knnspark.app.errors import worker_errors_as_driver_errors
from knnspark.app.fs import path_exists, write_text
from knnspark.app.inputs import check_scoring_input, read_scoring_input
from knnspark.app.metrics import score_metrics
from knnspark.app.models import load_saved_model
from knnspark.app.output import utc_now
from knnspark.app.progress import rate, step
from knnspark.app.schemas import SUPERVISED_TASKS
from knnspark.errors import InvalidInputError

__all__ = ["run_evaluate"]

logger = logging.getLogger(__name__)


def run_evaluate(config: Mapping[str, Any], spark: SparkSession | None = None) -> dict[str, Any]:
    """Score the configured labelled input and write its metrics as JSON.

    Parameters
    ----------
    config : mapping
        A config validated against :data:`knnspark.app.schemas.EVALUATE_SCHEMA`.
    spark : SparkSession, optional
        Defaults to the active session.

    Returns
    -------
    dict
        The document written to ``output.path`` plus ``seconds`` and ``rows_per_second``.

    Raises
    ------
    FileNotFoundError
        If ``input.path`` or ``model.path`` does not exist.
    FileExistsError
        If ``output.path`` exists and ``output.overwrite`` is false.
    ValueError, TypeError
        If the model folder is damaged, or the input is empty, unlabelled, or does not fit
        the model.
    """
    spark = spark or SparkSession.active()
    start = time.perf_counter()
    input_config, output_config = config["input"], config["output"]
    output_path = output_config["path"]
    if not output_config["overwrite"] and path_exists(spark, output_path):
        raise FileExistsError(f"output.path: {output_path} exists and output.overwrite = false")
    saved = load_saved_model(spark, config["model"], SUPERVISED_TASKS)
    model = saved.model
    df = read_scoring_input(spark, input_config, model)
    label_col, prediction_col = model.getLabelCol(), model.getPredictionCol()
    if label_col not in df.columns:
        raise InvalidInputError(
            f"Column '{label_col}' (param labelCol) does not exist in {input_config['path']}; "
            f"the evaluate job needs labelled rows. Available columns: {', '.join(df.columns)}."
        )
    if not isinstance(df.schema[label_col].dataType, NumericType):
        raise TypeError(
            f"Column '{label_col}' (param labelCol) must be numeric; "
            f"got {df.schema[label_col].dataType.simpleString()}."
        )
    rows_in = check_scoring_input(df, saved, input_config, purpose="evaluate")
    scored = model.transform(df)
    with step(spark, f"evaluate: score {rows_in} rows"):
        with worker_errors_as_driver_errors():
            evaluated = score_metrics(scored, saved.task, label_col, prediction_col)
    if evaluated["rows_evaluated"] == 0:
        raise InvalidInputError(
            f"input.path: no row of {input_config['path']} has both a label and a prediction "
            f"({evaluated['rows_without_label']} rows without a label, "
            f"{evaluated['rows_without_prediction']} without a prediction)"
        )
    report = {
        "task": saved.task,
        "model": {
            "path": saved.path,
            "model_id": saved.model_id,
            "model_version": saved.version,
            "k": model.getK(),
            "weights": model.getWeights(),
            "bandwidth": model.getBandwidth(),
        },
        "input": input_config["path"],
        **evaluated,
        "evaluated_at": utc_now().isoformat(timespec="seconds"),
    }
    write_text(spark, output_path, json.dumps(report, indent=2) + "\n")
    logger.info("wrote the metrics to %s", output_path)
    seconds = time.perf_counter() - start
    return {
        **report,
        "output_path": output_path,
        "seconds": round(seconds, 3),
        "rows_per_second": round(rate(rows_in, seconds), 1),
    }
