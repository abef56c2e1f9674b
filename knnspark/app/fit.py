"""What ``jobs/fit.py`` runs: fit a KNN model on the configured input and save it.

``model.task`` chooses the estimator (:data:`knnspark.app.schemas.ESTIMATORS`), and the other
keys of the ``[model]`` table that are set become its params.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from pyspark.sql import SparkSession

from knnspark.app.errors import worker_errors_as_driver_errors
from knnspark.app.fs import path_exists
from knnspark.app.inputs import input_files_readable, read_input
from knnspark.app.progress import rate, step
from knnspark.app.schemas import ESTIMATORS, estimator_params

__all__ = ["run_fit"]

logger = logging.getLogger(__name__)


def run_fit(config: Mapping[str, Any], spark: SparkSession | None = None) -> dict[str, Any]:
    """Fit a KNN model on the configured input and save it.

    Parameters
    ----------
    config : mapping
        A config validated against :data:`knnspark.app.schemas.FIT_SCHEMA`.
    spark : SparkSession, optional
        Defaults to the active session.

    Returns
    -------
    dict
        ``task``, ``rows_in``, ``model_path``, ``model_id``, ``seconds`` and
        ``rows_per_second``.
    """
    spark = spark or SparkSession.active()
    start = time.perf_counter()
    model_config = config["model"]
    task = model_config["task"]
    # Building the estimator first validates every param before any data is read.
    estimator = ESTIMATORS[task](**estimator_params(model_config, task))
    path = model_config["path"]
    if not model_config["overwrite"] and path_exists(spark, path):
        raise FileExistsError(f"model.path: {path} already exists and model.overwrite = false")

    df = read_input(
        spark, config["input"], estimator.getFeaturesCol(), estimator.getHandleInvalid()
    )
    input_path = config["input"]["path"]
    with input_files_readable(input_path):
        rows_in = df.count()
        with step(spark, f"fit: index {rows_in} rows from {input_path}"):
            with worker_errors_as_driver_errors():
                model = estimator.fit(df)
    writer = model.write()
    if model_config["overwrite"]:
        writer = writer.overwrite()
    writer.save(path)
    logger.info("saved the %s model %s to %s", task, model.modelId, path)
    seconds = time.perf_counter() - start
    return {
        "task": task,
        "rows_in": rows_in,
        "model_path": path,
        "model_id": model.modelId,
        "seconds": round(seconds, 3),
        "rows_per_second": round(rate(rows_in, seconds), 1),
    }
