"""The jobs' input: read the ``[input]`` table's data and check it fits a model.

Every check here runs before the long Spark jobs start, so a wrong path, a missing column or
vectors of the wrong length end the job with one ``error:`` line (exit status 2).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from pyspark.errors import AnalysisException
from pyspark.ml.feature import VectorAssembler
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import NumericType

from knnspark.app.errors import unreadable_file
from knnspark.app.fs import path_exists
from knnspark.app.models import SavedModel
from knnspark.errors import InvalidInputError
from knnspark.schema import feature_array_expr

__all__ = ["check_scoring_input", "input_files_readable", "read_input", "read_scoring_input"]


@contextmanager
def input_files_readable(path: str) -> Iterator[None]:
    """Turn Spark's failure to read a file of input ``path`` into one line that names both.

    A truncated or corrupt Parquet part fails Spark's read (or the first job that scans the
    file) in the JVM; the jobs wrap their reads of the input in this.

    Raises
    ------
    knnspark.InvalidInputError
        When Spark could not read a file of the input (exit status 2 in the jobs).
    """
    try:
        yield
    except Exception as exc:
        found = unreadable_file(exc)
        if found is None:
            raise
        raise InvalidInputError(f"input.path: {path}: {found.describe()}") from exc


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
        with input_files_readable(path):  # schema inference reads the Parquet footers
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


def read_scoring_input(
    spark: SparkSession, input_config: Mapping[str, Any], model: Any
) -> DataFrame:
    """Read the rows a fitted model will score, as :func:`read_input` does.

    Scoring keeps every row (invalid ones get null outputs), so unless the model's
    ``handleInvalid`` is ``"error"`` the assembler must not drop rows with null/NaN features:
    ``"keep"`` hands them to the model as NaN.

    Parameters
    ----------
    spark : SparkSession
        Session to read with.
    input_config : mapping
        The validated ``[input]`` table.
    model : KNNClassificationModel or KNNRegressionModel
        The model whose ``featuresCol`` and ``handleInvalid`` apply.

    Returns
    -------
    DataFrame
        The input, with the model's features column.
    """
    assemble_invalid = "error" if model.getHandleInvalid() == "error" else "keep"
    return read_input(spark, input_config, model.getFeaturesCol(), assemble_invalid)


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
        If the features column is missing, the input is empty, a vector's length differs
        from the model's number of features, or a file of the input cannot be read.
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
    with input_files_readable(path):  # the first job that reads every row
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
