"""What ``jobs/fit.py`` and ``jobs/score.py`` run, plus the input and model helpers of the jobs.

The runners take a config validated by :mod:`knnspark.app.config` and do all the DataFrame
work, so the jobs stay thin and the logic is importable and testable. Every check that can
fail on the user's config or data runs before the long Spark jobs start.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pyspark.errors import AnalysisException
from pyspark.ml.feature import VectorAssembler
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import NumericType

from knnspark import (
    KNNClassificationModel,
    KNNClassifier,
    KNNRegressionModel,
    KNNRegressor,
)
from knnspark import errors as knn_errors
from knnspark.app.fs import path_exists
from knnspark.app.metrics import score_metrics
from knnspark.app.output import RUN_DATE_COL, parse_run_date, resolve_output, write_run
from knnspark.app.progress import rate, step
from knnspark.errors import InvalidInputError
from knnspark.schema import feature_array_expr

__all__ = [
    "LINEAGE_COLS",
    "SavedModel",
    "check_scoring_input",
    "load_saved_model",
    "path_exists",
    "read_input",
    "run_fit",
    "run_score",
]

logger = logging.getLogger(__name__)

# Keys of the fit config's [model] table that are estimator params (same names).
_ESTIMATOR_PARAMS = (
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

# Keys of a saved model's [model] table that set search-time params after loading.
_SEARCH_PARAMS = ("k", "weights", "algorithm", "ef")

_ESTIMATORS = {"classification": KNNClassifier, "regression": KNNRegressor}
_MODELS = {"classification": KNNClassificationModel, "regression": KNNRegressionModel}
_TASK_OF_CLASS = {f"knnspark.{cls.__name__}": task for task, cls in _MODELS.items()}

#: Columns the score job adds to every row, besides the model's outputs and ``run_date``.
LINEAGE_COLS = ("model_id", "model_version", "scored_at")

# The last line of a knnspark error's traceback, as a Python worker reports it to the driver.
_WORKER_ERROR = re.compile(r"^knnspark\.errors\.(\w+): (.+)$", re.MULTILINE)


@contextmanager
def _worker_errors_as_driver_errors() -> Iterator[None]:
    """Re-raise a knnspark error thrown in a Python worker as that error, on the driver.

    Some rules (NaN features, duplicate ids) can only be checked while the data is read, so
    they fail inside a task; Spark reports that as a ``PythonException`` (or, from a write, a
    Java ``SparkException`` that quotes it) with the worker's traceback. Raising the original
    type again lets callers catch it as a ``ValueError``.
    """
    try:
        yield
    except Exception as exc:
        matches = _WORKER_ERROR.findall(str(exc))
        error_type = getattr(knn_errors, matches[-1][0], None) if matches else None
        if not (isinstance(error_type, type) and issubclass(error_type, Exception)):
            raise
        raise error_type(matches[-1][1]) from exc


def _assemble(
    df: DataFrame, columns: list[str], features_col: str, handle_invalid: str
) -> DataFrame:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"input.feature_columns: columns {missing} not found; the input has {df.columns}"
        )
    types = dict(df.dtypes)
    for name in columns:
        if not isinstance(df.schema[name].dataType, NumericType):
            raise TypeError(
                f"input.feature_columns: column {name} must be numeric; got {types[name]}"
            )
    if features_col in df.columns:
        raise ValueError(
            f"input.feature_columns: output column {features_col} already exists in the input"
        )
    assembler = VectorAssembler(
        inputCols=columns, outputCol=features_col, handleInvalid=handle_invalid
    )
    return assembler.transform(df)


def read_input(
    spark: SparkSession,
    input_config: Mapping[str, Any],
    features_col: str,
    handle_invalid: str = "error",
) -> DataFrame:
    """Read the ``[input]`` table's data, assembling feature columns if it lists some.

    Parameters
    ----------
    spark : SparkSession
        Session to read with.
    input_config : mapping
        The validated ``[input]`` table: ``path``, ``format`` (``parquet``, ``csv`` or
        ``table``, when ``path`` names a table), ``feature_columns``, ``header``, ``sep``.
    features_col : str
        Column that ``feature_columns`` are assembled into.
    handle_invalid : str, default "error"
        ``VectorAssembler``'s handling of null/NaN feature values.

    Returns
    -------
    DataFrame
        The input, with ``features_col`` as a vector when ``feature_columns`` is set.

    Raises
    ------
    FileNotFoundError
        If ``input.path`` does not exist (or names no table).
    ValueError
        If the input cannot be read in its format (e.g. an empty folder), a csv input lists
        no feature columns, or a listed column is missing.
    TypeError
        If a listed feature column is not numeric.
    """
    path, fmt = input_config["path"], input_config["format"]
    columns = list(input_config["feature_columns"])
    if fmt == "csv" and not columns:
        raise ValueError(
            "input.feature_columns: csv input needs the list of numeric feature columns; got []"
        )
    if fmt == "table":
        if not spark.catalog.tableExists(path):
            raise FileNotFoundError(f"input.path: no such table: {path}")
    elif not path_exists(spark, path):
        raise FileNotFoundError(f"input.path: no such file or directory: {path}")
    try:
        if fmt == "table":
            df = spark.table(path)
        elif fmt == "csv":
            df = spark.read.csv(
                path, header=input_config["header"], sep=input_config["sep"], inferSchema=True
            )
        else:
            df = spark.read.parquet(path)
    except AnalysisException as exc:
        # An empty folder, or files in another format: "Unable to infer schema for Parquet".
        reason = str(exc).strip().splitlines()[0]
        raise ValueError(f"input.path: cannot read {path} as {fmt}: {reason}") from None
    if columns:
        df = _assemble(df, columns, features_col, handle_invalid)
    return df


@dataclass(frozen=True)
class SavedModel:
    """A model loaded by :func:`load_saved_model`, with what the jobs record about it.

    Attributes
    ----------
    model : KNNClassificationModel or KNNRegressionModel
        The loaded model, search-time params applied.
    task : str
        ``"classification"`` or ``"regression"``.
    path : str
        Where it was loaded from.
    model_id : str or None
        ``model.modelId``, the fit's UUID (None for models saved without one).
    version : str or None
        The knnspark version that saved it (``knnspark_version`` in its metadata).
    """

    model: Any
    task: str
    path: str
    model_id: str | None
    version: str | None


def _read_metadata(spark: SparkSession, path: str) -> dict[str, Any] | None:
    """The model folder's metadata JSON, or None if it cannot be read (the loader says why)."""
    try:
        lines = [row["value"] for row in spark.read.text(f"{path.rstrip('/')}/metadata").collect()]
        metadata = json.loads("\n".join(lines))
    except Exception:  # missing or damaged: the model loader reports it precisely
        return None
    return metadata if isinstance(metadata, dict) else None


def load_saved_model(spark: SparkSession, model_config: Mapping[str, Any]) -> SavedModel:
    """Load the ``[model]`` table's saved model and apply its search-time params.

    The task is read from the model's metadata unless ``model.task`` is given, in which case
    it must match.

    Raises
    ------
    FileNotFoundError
        If ``model.path`` does not exist.
    ValueError
        If the folder is not a complete, readable classification or regression model
        (:class:`knnspark.ModelLoadError`), or ``model.task`` contradicts it.
    """
    path = model_config["path"]
    if not path_exists(spark, path):
        raise FileNotFoundError(f"model.path: no such file or directory: {path}")
    metadata = _read_metadata(spark, path) or {}
    saved_class = metadata.get("class")
    detected = _TASK_OF_CLASS.get(saved_class)
    if saved_class is not None and detected is None:
        raise knn_errors.ModelLoadError(
            f"model.path: {path} holds a {saved_class}; the score and evaluate jobs take a "
            f"KNNClassificationModel or a KNNRegressionModel"
        )
    task = model_config["task"] or detected or "classification"
    if detected is not None and task != detected:
        raise ValueError(
            f"model.task: {task!r}, but the model at {path} is a {saved_class} (task "
            f"{detected!r}); set model.task = {detected!r} or leave it out"
        )
    # A folder whose metadata could not be read fails here with the loader's diagnosis.
    model = _MODELS[task].load(path)
    for name in _SEARCH_PARAMS:
        if model_config[name] is not None:
            getattr(model, f"set{name[0].upper()}{name[1:]}")(model_config[name])
    return SavedModel(
        model=model,
        task=task,
        path=path,
        model_id=model.modelId or None,
        version=metadata.get("knnspark_version"),
    )


def check_scoring_input(
    df: DataFrame, saved: SavedModel, input_config: Mapping[str, Any], purpose: str = "score"
) -> int:
    """Count the input rows and check their feature vectors fit the model, in one job.

    Parameters
    ----------
    df : DataFrame
        The input, as :func:`read_input` returns it.
    saved : SavedModel
        The model that will score it.
    input_config : mapping
        The ``[input]`` table (for messages and ``feature_columns``).
    purpose : str, default "score"
        What the rows are for, for the empty-input message.

    Returns
    -------
    int
        Number of input rows.

    Raises
    ------
    knnspark.InvalidInputError
        If the features column is missing, the input is empty, or a vector's length differs
        from the model's number of features.
    TypeError
        If the features column has a type the model cannot read.
    """
    model, path = saved.model, input_config["path"]
    n_features, features_col = model.numFeatures, model.getFeaturesCol()
    columns = input_config["feature_columns"]
    if columns and len(columns) != n_features:
        raise InvalidInputError(
            f"input.feature_columns: {len(columns)} columns, but the model at {saved.path} was "
            f"fitted on {n_features} features"
        )
    features = feature_array_expr(df.schema, features_col)
    length = F.size(features)
    wrong = features.isNotNull() & (length > 0) & (length != n_features)
    row = df.agg(
        F.count(F.lit(1)).alias("rows"),
        F.count(F.when(wrong, 1)).alias("wrong"),
        F.min(F.when(wrong, length)).alias("shortest"),
        F.max(F.when(wrong, length)).alias("longest"),
    ).first()
    if row["rows"] == 0:
        raise InvalidInputError(f"input.path: {path} holds no rows; nothing to {purpose}")
    if row["wrong"]:
        lengths = f"{row['shortest']}" + (
            f" to {row['longest']}" if row["longest"] != row["shortest"] else ""
        )
        raise InvalidInputError(
            f"Column '{features_col}' of {path} holds vectors of length {lengths} in "
            f"{row['wrong']} of {row['rows']} rows; the model at {saved.path} was fitted on "
            f"{n_features} features"
        )
    return int(row["rows"])


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
        name: model_config[name] for name in _ESTIMATOR_PARAMS if model_config[name] is not None
    }
    # Building the estimator first validates every param before any data is read.
    estimator = _ESTIMATORS[task](**params)
    path = model_config["path"]
    if not model_config["overwrite"] and path_exists(spark, path):
        raise FileExistsError(f"model.path: {path} already exists and model.overwrite = false")

    df = read_input(
        spark, config["input"], estimator.getFeaturesCol(), estimator.getHandleInvalid()
    )
    rows_in = df.count()
    with step(spark, f"fit: index {rows_in} rows from {config['input']['path']}"):
        with _worker_errors_as_driver_errors():
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


def run_score(config: Mapping[str, Any], spark: SparkSession | None = None) -> dict[str, Any]:
    """Score the configured input with a saved model into the run's output partition.

    The output (a Parquet folder or a table) is partitioned by ``run_date``; this run's
    partition is replaced whole, and only once every row is scored and counted (see
    :mod:`knnspark.app.output`). Each row gets the model's outputs plus ``model_id``,
    ``model_version`` (the knnspark version that saved the model) and ``scored_at`` (this
    run's start, UTC). If the input has the model's label column, the summary holds the
    accuracy (classification) or RMSE (regression) of the rows that got a prediction.

    Parameters
    ----------
    config : mapping
        A config validated against :data:`knnspark.app.config.SCORE_SCHEMA`.
    spark : SparkSession, optional
        Defaults to the active session.

    Returns
    -------
    dict
        ``task``, ``rows_in``, ``rows_out``, ``rows_without_prediction`` (rows whose invalid
        features got null outputs), ``metric`` (``"accuracy"``, ``"rmse"`` or None),
        ``metric_value`` (float or None), ``output_path``, ``run_date`` (ISO date),
        ``model_id``, ``model_version``, ``seconds`` and ``rows_per_second``.

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
    scored_at = _dt.datetime.now(_dt.UTC)
    model_config, input_config, output_config = config["model"], config["input"], config["output"]
    run_date = parse_run_date(output_config["run_date"])
    output_path = output_config["path"]
    for key, other in (("input.path", input_config["path"]), ("model.path", model_config["path"])):
        # Overwriting what this job reads would destroy it before it is read.
        if output_path.rstrip("/") == other.rstrip("/"):
            raise ValueError(f"output.path: must differ from {key}; both are {output_path}")
    saved = load_saved_model(spark, model_config)
    model = saved.model
    target = resolve_output(spark, output_config)

    # Scoring keeps every row (invalid ones get null outputs), so the assembler must not drop
    # rows with null/NaN features; "keep" hands them to the model as NaN.
    assemble_invalid = "error" if model.getHandleInvalid() == "error" else "keep"
    df = read_input(spark, input_config, model.getFeaturesCol(), assemble_invalid)
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
        with _worker_errors_as_driver_errors():
            published, rows_out = write_run(spark, scored, target, run_date, rows_in)

    prediction_col, label_col = model.getPredictionCol(), model.getLabelCol()
    metric, value = None, None
    if label_col in df.columns:
        evaluated = score_metrics(published, saved.task, label_col, prediction_col)
        without_prediction = evaluated["rows_without_prediction"]
        metric = "accuracy" if saved.task == "classification" else "rmse"
        value = evaluated["metrics"].get(metric)
    else:
        without_prediction = published.where(F.col(prediction_col).isNull()).count()
    seconds = time.perf_counter() - start
    return {
        "task": saved.task,
        "rows_in": rows_in,
        "rows_out": rows_out,
        "rows_without_prediction": without_prediction,
        "metric": metric if value is not None else None,
        "metric_value": value,
        "output_path": output_path,
        "run_date": run_date.isoformat(),
        "model_id": saved.model_id,
        "model_version": saved.version,
        "seconds": round(seconds, 3),
        "rows_per_second": round(rate(rows_in, seconds), 1),
    }
