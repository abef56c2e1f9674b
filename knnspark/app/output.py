"""Scheduled scoring output: one partition per run, replaced whole, never left half written.

The score job writes its rows into a Parquet folder (or a table) partitioned by ``run_date``.
:func:`write_run` does it in three steps:

1. **Stage.** The scored rows are written as Parquet to a fresh staging folder (by default
   ``<output>/_staging/<run date>-<start>-<uuid>``; Spark and other Parquet readers skip
   folders whose name starts with ``_``). This is the step that runs the neighbor search.
2. **Check.** The staged rows are counted (from the Parquet footers) and must equal the rows
   read from the input; otherwise :class:`RowCountError` is raised and nothing is published.
3. **Publish.** The staged rows are copied into the output with ``mode("overwrite")`` and
   ``spark.sql.sources.partitionOverwriteMode=dynamic``: Spark replaces the partitions the
   written rows belong to — only this run's — and leaves every other partition alone. Its
   commit protocol writes the new files below ``.spark-staging-<job id>`` and moves them into
   place only when every task has succeeded, so a failed publish leaves the old partition too.
   The published partition is counted once more.

A run that fails in any step — a task failing more often than ``spark.task.maxFailures``
allows, a killed executor, a failed check — leaves every partition as it was, including an
earlier run of the same date; the staging folder is removed (if the driver itself is killed,
it stays behind, hidden from readers, until a later run removes it as stale: see
:mod:`knnspark.app.staging`). Re-running a date replaces its partition, so a schedule can
simply retry a failed run. The only non-atomic moment is the
commit's final rename of the partition folder, as with any Spark write to a file system
without atomic folder renames (object stores need a committer that provides one).
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from knnspark.app.config import ConfigError
from knnspark.app.fs import delete_path, file_in_the_way, list_names, path_exists
from knnspark.app.staging import remove_stale_staging, staging_folder

__all__ = [
    "RUN_DATE_COL",
    "RowCountError",
    "RunOutput",
    "parse_run_date",
    "read_run",
    "resolve_output",
    "utc_now",
    "write_run",
]

#: Partition column of the score job's output.
RUN_DATE_COL = "run_date"

_DYNAMIC_OVERWRITE = "spark.sql.sources.partitionOverwriteMode"
_RUN_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


class RowCountError(RuntimeError):
    """The rows staged or published differ in number from the rows read."""


@dataclass(frozen=True)
class RunOutput:
    """Where a score run writes.

    Attributes
    ----------
    location : str
        Parquet folder, or table name when ``is_table``.
    is_table : bool
        Whether ``location`` names a table.
    staging : str
        Folder below which each run stages its rows.
    """

    location: str
    is_table: bool
    staging: str


def utc_now() -> _dt.datetime:
    """The jobs' clock: now, in UTC, time-zone aware.

    The one place the jobs read the time, so that the default run date and the ``scored_at``
    of a run agree, whatever the machine's time zone, and tests can set the clock.
    """
    return _dt.datetime.now(_dt.UTC)


def parse_run_date(text: str | None, today: _dt.date | None = None) -> _dt.date:
    """The run key: ``text`` as an ISO date, or today's date (UTC) when absent.

    Examples
    --------
    >>> import datetime
    >>> parse_run_date("2026-11-21")
    datetime.date(2026, 11, 21)
    >>> parse_run_date(None, today=datetime.date(2026, 1, 2))
    datetime.date(2026, 1, 2)

    Only ``YYYY-MM-DD`` is a run date: Python's ``fromisoformat`` alone would also take
    ``20261121`` and ``2026-W47-6``, other spellings of a partition's key.
    """
    if text is None:
        return today or utc_now().date()
    try:
        if not _RUN_DATE.fullmatch(text):
            raise ValueError(text)
        return _dt.date.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"output.run_date (--run-date): expected a date YYYY-MM-DD, got {text!r}"
        ) from None


def _partition_dir(location: str, run_date: _dt.date) -> str:
    return f"{location.rstrip('/')}/{RUN_DATE_COL}={run_date.isoformat()}"


def _table_location(spark: SparkSession, table: str) -> str | None:
    rows = spark.sql(f"DESCRIBE TABLE EXTENDED {table}").collect()
    for row in rows:
        if row["col_name"] == "Location":
            return row["data_type"]
    return None


def _check_no_file_in_the_way(spark: SparkSession, folder: str, key: str) -> None:
    """Refuse a folder the job would write where a file is, or below a file."""
    found = file_in_the_way(spark, folder)
    if found == folder:
        raise ValueError(f"{key}: {folder} is a file; the score job writes a folder there")
    if found is not None:
        raise ValueError(f"{key}: {found} is a file, so {folder} cannot be a folder")


def resolve_output(spark: SparkSession, output_config: Mapping[str, Any]) -> RunOutput:
    """Check the ``[output]`` target before anything runs, and choose the staging folder.

    Raises
    ------
    ValueError
        If a folder holds something other than ``run_date=`` partitions (e.g. the unpartitioned
        output of an older job), a table is not partitioned by ``run_date``, or the output or
        staging folder is a file or lies below one.
    """
    location, is_table = output_config["path"], output_config["format"] == "table"
    staging = output_config["staging_path"]
    if not is_table:
        _check_no_file_in_the_way(spark, location, "output.path")
        foreign = [
            name
            for name in list_names(spark, location)
            if not name.startswith((f"{RUN_DATE_COL}=", "_", "."))
        ]
        if foreign:
            raise ValueError(
                f"output.path: {location} holds {', '.join(foreign[:3])}, which is not a "
                f"{RUN_DATE_COL}= partition; choose an empty or partitioned folder"
            )
        staging = staging or f"{location.rstrip('/')}/_staging"
        _check_no_file_in_the_way(spark, staging, "output.staging_path")
        return RunOutput(location, False, staging)
    if spark.catalog.tableExists(location):
        partitions = [c.name for c in spark.catalog.listColumns(location) if c.isPartition]
        if partitions != [RUN_DATE_COL]:
            raise ValueError(
                f"output.path: table {location} is partitioned by {partitions}; the score job "
                f"writes tables partitioned by ['{RUN_DATE_COL}']"
            )
        base = _table_location(spark, location)
        default = f"{base.rstrip('/')}/_staging" if base else None
    else:
        default = None
    if default is None:
        warehouse = spark.conf.get("spark.sql.warehouse.dir")
        default = f"{warehouse.rstrip('/')}/_knnspark_staging"
    _check_no_file_in_the_way(spark, staging or default, "output.staging_path")
    return RunOutput(location, True, staging or default)


def read_run(spark: SparkSession, target: RunOutput, run_date: _dt.date) -> DataFrame:
    """The published rows of one run, with the ``run_date`` column."""
    if target.is_table:
        spark.catalog.refreshTable(target.location)
        return spark.table(target.location).where(F.col(RUN_DATE_COL) == F.lit(run_date))
    partition = _partition_dir(target.location, run_date)
    return spark.read.option("basePath", target.location).parquet(partition)


@contextmanager
def _dynamic_partition_overwrite(spark: SparkSession) -> Iterator[None]:
    previous = spark.conf.get(_DYNAMIC_OVERWRITE)
    spark.conf.set(_DYNAMIC_OVERWRITE, "dynamic")
    try:
        yield
    finally:
        spark.conf.set(_DYNAMIC_OVERWRITE, previous)


def _publish(spark: SparkSession, rows: DataFrame, target: RunOutput) -> None:
    with _dynamic_partition_overwrite(spark):
        if not target.is_table:
            writer = rows.write.mode("overwrite").option("partitionOverwriteMode", "dynamic")
            writer.partitionBy(RUN_DATE_COL).parquet(target.location)
        elif not spark.catalog.tableExists(target.location):
            rows.write.format("parquet").partitionBy(RUN_DATE_COL).saveAsTable(target.location)
        else:
            columns = spark.table(target.location).columns
            if sorted(columns) != sorted(rows.columns):
                raise ValueError(
                    f"output.path: table {target.location} has columns {columns}; this run "
                    f"writes {rows.columns}"
                )
            # insertInto matches columns by position.
            rows.select(*columns).write.insertInto(target.location, overwrite=True)


def write_run(
    spark: SparkSession,
    scored: DataFrame,
    target: RunOutput,
    run_date: _dt.date,
    expected_rows: int,
    started: _dt.datetime | None = None,
) -> tuple[DataFrame, int]:
    """Stage, check and publish one run's rows; see the module docstring.

    Parameters
    ----------
    spark : SparkSession
        The job's session.
    scored : DataFrame
        The run's rows, without the ``run_date`` column (it is added here).
    target : RunOutput
        From :func:`resolve_output`.
    run_date : datetime.date
        The run key: the partition replaced.
    expected_rows : int
        Rows read from the input; staged and published rows must number the same.
    started : datetime, optional
        When the run started (default: now); names its staging folder, and stale staging
        folders of other runs are removed first (:mod:`knnspark.app.staging`).

    Returns
    -------
    tuple of (DataFrame, int)
        The published partition, read back, and its number of rows.

    Raises
    ------
    RowCountError
        If the staged or the published rows number differently from ``expected_rows``.
    """
    started = started or utc_now()
    remove_stale_staging(spark, target.staging, now=utc_now())
    staging = staging_folder(target.staging, run_date, started)
    try:
        scored.write.parquet(staging)
        staged = spark.read.parquet(staging)
        staged_rows = staged.count()
        if staged_rows != expected_rows:
            raise RowCountError(
                f"read {expected_rows} input rows but scored {staged_rows}; nothing was "
                f"published and the output is unchanged"
            )
        _publish(spark, staged.withColumn(RUN_DATE_COL, F.lit(run_date)), target)
    finally:
        if path_exists(spark, staging):
            delete_path(spark, staging)
    published = read_run(spark, target, run_date)
    published_rows = published.count()
    if published_rows != expected_rows:
        raise RowCountError(
            f"read {expected_rows} input rows but {target.location} holds {published_rows} "
            f"rows for {RUN_DATE_COL}={run_date.isoformat()}"
        )
    return published, published_rows
