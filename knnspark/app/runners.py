"""What ``jobs/fit.py`` and ``jobs/score.py`` run: one function per job, plus I/O helpers.

The runners take a config validated by :mod:`knnspark.app.config` and do all the DataFrame
work, so the jobs stay thin and the logic is importable and testable.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from pyspark.errors import PythonException
from pyspark.ml.evaluation import MulticlassClassificationEvaluator, RegressionEvaluator
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

__all__ = ["path_exists", "read_input", "run_fit", "run_score", "write_predictions"]

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
)

_ESTIMATORS = {"classification": KNNClassifier, "regression": KNNRegressor}
_MODELS = {"classification": KNNClassificationModel, "regression": KNNRegressionModel}

# The last line of a knnspark error's traceback, as a Python worker reports it to the driver.
_WORKER_ERROR = re.compile(r"^knnspark\.errors\.(\w+): (.+)$", re.MULTILINE)


@contextmanager
def _worker_errors_as_driver_errors() -> Iterator[None]:
    """Re-raise a knnspark error thrown in a Python worker as that error, on the driver.

    Some rules (NaN features, duplicate ids) can only be checked while the data is read, so
    they fail inside a task; Spark reports that as a ``PythonException`` with the worker's
    traceback. Raising the original type again lets callers catch it as a ``ValueError``.
    """
    try:
        yield
    except PythonException as exc:
        matches = _WORKER_ERROR.findall(str(exc))
        error_type = getattr(knn_errors, matches[-1][0], None) if matches else None
        if not (isinstance(error_type, type) and issubclass(error_type, Exception)):
            raise
        raise error_type(matches[-1][1]) from exc


def path_exists(spark: SparkSession, path: str) -> bool:
    """Whether ``path`` (or, for a glob, any match) exists on its Hadoop file system.

    Checking up front turns Spark's late, JVM-side "path does not exist" into an error that
    names the config key.

    Parameters
    ----------
    spark : SparkSession
        Session whose Hadoop configuration resolves the path (local, HDFS, S3, ...).
    path : str
        Path or glob, as given to ``spark.read``.

    Returns
    -------
    bool
        True if at least one file or folder matches.
    """
    jvm = spark.sparkContext._jvm
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    fs = hadoop_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    matches = fs.globStatus(hadoop_path)
    return matches is not None and len(matches) > 0


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
        The validated ``[input]`` table: ``path``, ``format``, ``feature_columns``,
        ``header``, ``sep``.
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
        If ``input.path`` does not exist.
    ValueError
        If a csv input lists no feature columns, or a listed column is missing.
    TypeError
        If a listed feature column is not numeric.
    """
    path, fmt = input_config["path"], input_config["format"]
    columns = list(input_config["feature_columns"])
    if fmt == "csv" and not columns:
        raise ValueError(
            "input.feature_columns: csv input needs the list of numeric feature columns; got []"
        )
    if not path_exists(spark, path):
        raise FileNotFoundError(f"input.path: no such file or directory: {path}")
    if fmt == "csv":
        df = spark.read.csv(
            path, header=input_config["header"], sep=input_config["sep"], inferSchema=True
        )
    else:
        df = spark.read.parquet(path)
    if columns:
        df = _assemble(df, columns, features_col, handle_invalid)
    return df


def write_predictions(df: DataFrame, path: str) -> None:
    """Write scored rows to ``path`` as Parquet, replacing what is there.

    Parameters
    ----------
    df : DataFrame
        Rows to write; vector columns are stored as Spark ML's vector struct.
    path : str
        Output folder.
    """
    df.write.mode("overwrite").parquet(path)


def _evaluate(df: DataFrame, task: str, label_col: str, prediction_col: str) -> tuple[str, float]:
    if task == "classification":
        evaluator: Any = MulticlassClassificationEvaluator(metricName="accuracy")
    else:
        evaluator = RegressionEvaluator(metricName="rmse")
    evaluator.setLabelCol(label_col).setPredictionCol(prediction_col)
    # Evaluators need a double label (the digits labels are integers) and fail on nulls, which
    # rows with invalid features get under handleInvalid 'keep'/'skip'.
    valid = df[label_col].isNotNull() & df[prediction_col].isNotNull()
    scored = df.where(valid).withColumn(label_col, df[label_col].cast("double"))
    return evaluator.getMetricName(), float(evaluator.evaluate(scored))


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
        ``task``, ``rows_in``, ``model_path`` and ``seconds``.
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
    logger.info("fitting a %s model on %d rows from %s", task, rows_in, config["input"]["path"])
    with _worker_errors_as_driver_errors():
        model = estimator.fit(df)
    writer = model.write()
    if model_config["overwrite"]:
        writer = writer.overwrite()
    writer.save(path)
    logger.info("saved the model to %s", path)
    return {
        "task": task,
        "rows_in": rows_in,
        "model_path": path,
        "seconds": round(time.perf_counter() - start, 3),
    }


def run_score(config: Mapping[str, Any], spark: SparkSession | None = None) -> dict[str, Any]:
    """Score the configured input with a saved model and write the predictions as Parquet.

    If the input has the model's label column, the summary holds the accuracy
    (classification) or RMSE (regression) of the rows that got a prediction.

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
        ``metric_value`` (float or None), ``output_path`` and ``seconds``.

    Raises
    ------
    FileNotFoundError
        If ``input.path`` or ``model.path`` does not exist.
    ValueError
        If ``output.path`` is the input or the model, or the input breaks the model's rules.
    RuntimeError
        If the number of rows written differs from the number read.
    """
    spark = spark or SparkSession.active()
    start = time.perf_counter()
    model_config, input_path = config["model"], config["input"]["path"]
    output_path = config["output"]["path"]
    task, model_path = model_config["task"], model_config["path"]
    for key, other in (("input.path", input_path), ("model.path", model_path)):
        # Overwriting what this job reads would destroy it before it is read.
        if output_path.rstrip("/") == other.rstrip("/"):
            raise ValueError(f"output.path: must differ from {key}; both are {output_path}")
    if not path_exists(spark, model_path):
        raise FileNotFoundError(f"model.path: no such file or directory: {model_path}")
    model = _MODELS[task].load(model_path)
    if model_config["k"] is not None:
        model.setK(model_config["k"])
    if model_config["weights"] is not None:
        model.setWeights(model_config["weights"])

    # Scoring keeps every row (invalid ones get null outputs), so the assembler must not drop
    # rows with null/NaN features; "keep" hands them to the model as NaN.
    assemble_invalid = "error" if model.getHandleInvalid() == "error" else "keep"
    df = read_input(spark, config["input"], model.getFeaturesCol(), assemble_invalid)
    rows_in = df.count()
    logger.info("scoring %d rows from %s with %s", rows_in, input_path, model_path)
    with _worker_errors_as_driver_errors():
        write_predictions(model.transform(df), output_path)

    # Count and evaluate the written file, not the transformed DataFrame, which would run the
    # neighbor search again.
    written = spark.read.parquet(output_path)
    prediction_col = model.getPredictionCol()
    counts = written.agg(
        F.count(F.lit(1)).alias("rows"), F.count(prediction_col).alias("predicted")
    ).first()
    rows_out = counts["rows"]
    # transform never drops rows: invalid ones (handleInvalid 'keep'/'skip') get null outputs.
    if rows_out != rows_in:
        raise RuntimeError(f"read {rows_in} rows from {input_path} but wrote {rows_out}")
    metric, value = None, None
    label_col = model.getLabelCol()
    if label_col in written.columns and counts["predicted"] > 0:
        metric, value = _evaluate(written, task, label_col, prediction_col)
    return {
        "task": task,
        "rows_in": rows_in,
        "rows_out": rows_out,
        "rows_without_prediction": rows_out - counts["predicted"],
        "metric": metric,
        "metric_value": value,
        "output_path": output_path,
        "seconds": round(time.perf_counter() - start, 3),
    }
