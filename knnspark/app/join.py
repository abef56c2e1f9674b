"""What ``jobs/join.py`` runs: join two inputs by nearness into the output partition of one run.

Scheduled entity matching: each row of ``[left]`` gets its ``k`` nearest rows of ``[right]``
(:func:`knnspark.knn_join`), written like the score job's output — a Parquet folder (or a
table) partitioned by ``run_date``, a run replacing its own date's partition whole, and only
once the staged rows are counted (:func:`knnspark.app.output.write_run`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from knnspark.app.errors import worker_errors_as_driver_errors
from knnspark.app.inputs import input_files_readable, read_input
from knnspark.app.output import RUN_DATE_COL, parse_run_date, resolve_output, utc_now, write_run
from knnspark.app.progress import rate, step
from knnspark.errors import InvalidInputError
from knnspark.join import join_options, join_with_model
from knnspark.kernels.distances import get_metric
from knnspark.schema import feature_array_expr, invalid_features_expr, no_present_features_expr

__all__ = ["JOINED_AT_COL", "run_join"]

logger = logging.getLogger(__name__)

#: Column the join job adds to every row besides ``run_date``: the run's start, UTC.
JOINED_AT_COL = "joined_at"


def _check_paths(config: Mapping[str, Any]) -> None:
    """Refuse an output path that is an input: the run would destroy it first."""
    output_path = config["output"]["path"].rstrip("/")
    for side in ("left", "right"):
        if output_path == config[side]["path"].rstrip("/"):
            raise ValueError(f"output.path: must differ from {side}.path; both are {output_path}")


def _left_rows(
    left: DataFrame, features_col: str, metric: str, n_features: int, path: str
) -> tuple[int, int]:
    """Rows of the left input, and those that can have neighbors (valid features), in one job."""
    features = feature_array_expr(left.schema, features_col)
    allows_nan = get_metric(metric).allows_nan
    invalid = invalid_features_expr(features, allow_nan=allows_nan)
    if allows_nan:
        invalid = invalid | no_present_features_expr(features)
    valid = ~invalid & (F.size(features) == n_features)
    with input_files_readable(path):
        row = left.agg(
            F.count(F.lit(1)).alias("rows"), F.count(F.when(valid, 1)).alias("valid")
        ).first()
    if row["rows"] == 0:
        raise InvalidInputError(f"left.path: {path} holds no rows; nothing to join")
    return int(row["rows"]), int(row["valid"])


def run_join(config: Mapping[str, Any], spark: SparkSession | None = None) -> dict[str, Any]:
    """Join the ``[left]`` input with its nearest ``[right]`` rows into the run's partition.

    Parameters
    ----------
    config : mapping
        A config validated against :data:`knnspark.app.schemas.JOIN_SCHEMA`; its ``[join]``
        keys are :func:`knnspark.knn_join`'s arguments.
    spark : SparkSession, optional
        Defaults to the active session.

    Returns
    -------
    dict
        ``rows_left``, ``rows_right`` (valid right rows indexed), ``rows_out``,
        ``rows_without_neighbors`` (left rows with invalid features), ``output_path``,
        ``run_date``, ``seconds`` and ``rows_per_second`` (left rows).

    Raises
    ------
    FileNotFoundError
        If an input does not exist.
    ValueError
        If the output is an input, an input is empty or does not fit the other, or a
        column name clashes.
    knnspark.app.output.RowCountError
        If the rows staged or published differ from ``k`` per left row with valid features
        (plus one per other left row with ``joinType = "leftouter"``).
    """
    spark = spark or SparkSession.active()
    start = time.perf_counter()
    joined_at = utc_now()
    join_config, output_config = dict(config["join"]), config["output"]
    run_date = parse_run_date(output_config["run_date"], today=joined_at.date())
    _check_paths(config)
    k = join_config.pop("k")
    options = join_options(**{n: v for n, v in join_config.items() if v is not None})
    target = resolve_output(spark, output_config)
    assemble_invalid = "error" if options["handleInvalid"] == "error" else "keep"
    features_col = options["featuresCol"]
    left = read_input(spark, config["left"], features_col, assemble_invalid)
    right = read_input(spark, config["right"], features_col, assemble_invalid)
    with step(spark, f"join: index the right rows of {config['right']['path']}"):
        with worker_errors_as_driver_errors(), input_files_readable(config["right"]["path"]):
            joined, model = join_with_model(left, right, k, **options)
    clashes = [c for c in (JOINED_AT_COL, RUN_DATE_COL) if c in joined.columns]
    if clashes:
        raise InvalidInputError(
            f"Column(s) {clashes} of the inputs clash with the columns the join job adds "
            f"({JOINED_AT_COL}, {RUN_DATE_COL}); drop or rename them (or set join.rightPrefix)"
        )
    rows_left, valid = _left_rows(
        left, features_col, options["metric"], model.numFeatures, config["left"]["path"]
    )
    expected = k * valid + (rows_left - valid if options["joinType"] == "leftouter" else 0)
    logger.info("joining %d left rows with their %d nearest right rows", rows_left, k)
    with step(spark, f"join: {rows_left} left rows for {RUN_DATE_COL}={run_date}"):
        with worker_errors_as_driver_errors():
            _, rows_out = write_run(
                spark,
                joined.withColumn(JOINED_AT_COL, F.lit(joined_at)),
                target,
                run_date,
                expected,
                started=joined_at,
            )
    seconds = time.perf_counter() - start
    return {
        "rows_left": rows_left,
        "rows_right": model.numTrainingRows,
        "rows_out": rows_out,
        "rows_without_neighbors": rows_left - valid,
        "output_path": output_config["path"],
        "run_date": run_date.isoformat(),
        "seconds": round(seconds, 3),
        "rows_per_second": round(rate(rows_left, seconds), 1),
    }
