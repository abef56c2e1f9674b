"""What ``jobs/fit.py`` runs: fit a KNN model on the configured input and save it."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from pyspark.sql import SparkSession

from knnspark import KNNClassifier, KNNRegressor
from knnspark.app.errors import worker_errors_as_driver_errors
from knnspark.app.fs import path_exists
from knnspark.app.inputs import read_input
from knnspark.app.progress import rate, step

__all__ = ["ESTIMATORS", "ESTIMATOR_PARAMS", "run_fit"]

logger = logging.getLogger(__name__)

#: Keys of the fit config's [model] table that are estimator params (same names).
ESTIMATOR_PARAMS = (
    "k",
    "weights",
    "metric",
    "p",
    "algorithm",
    "numShards",
    "idCol",
    "handleInvalid",
    "featuresCol",
    "labelCol",
    "standardization",
    "imputeStrategy",
    "ef",
    "maxShardBytes",
    "maxBroadcastBytes",
    "seed",
)

#: The estimator class of each task.
ESTIMATORS = {"classification": KNNClassifier, "regression": KNNRegressor}


def run_fit(config: Mapping[str, Any], spark: SparkSession | None = None) -> dict[str, Any]:
    """Fit a KNN model on the configured input and save it.

    Parameters
    ----------
    config : mapping
        A config validated against :data:`knnspark.app.config.FIT_SCHEMA`.
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
    params = {
        name: model_config[name] for name in ESTIMATOR_PARAMS if model_config[name] is not None
    }
    # Building the estimator first validates every param before any data is read.
    estimator = ESTIMATORS[task](**params)
    path = model_config["path"]
    if not model_config["overwrite"] and path_exists(spark, path):
        raise FileExistsError(f"model.path: {path} already exists and model.overwrite = false")

    df = read_input(
        spark, config["input"], estimator.getFeaturesCol(), estimator.getHandleInvalid()
    )
    rows_in = df.count()
    with step(spark, f"fit: index {rows_in} rows from {config['input']['path']}"):
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
