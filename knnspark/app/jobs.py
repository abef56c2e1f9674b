"""The command line shared by ``jobs/*.py`` and the ``knnspark`` command.

:func:`run_job` parses ``--config``, ``--set``, ``--profile`` (and ``--run-date`` for
``score``), loads and validates the config, builds the session, runs the job's one library
function, prints its summary and returns the exit status:

* 0 — success; the summary goes to stdout (rows in, rows out, seconds, rows per second).
* 2 — bad config or bad input: a missing or damaged model folder, a missing or empty input,
  an input that does not fit the model, a data file Spark cannot read (a truncated Parquet
  part), an output path that is a file. One ``error:`` line on stderr, no stack trace.
* 1 — anything else: a failed Spark job, or the output row check failing. Unexpected errors
  print their traceback before the ``error:`` line.

Progress lines go to stderr through the ``knnspark`` logger.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

from knnspark.app.config import ConfigError, load_config
from knnspark.app.errors import unreadable_file
from knnspark.classic import CONNECT_MODE_VAR

__all__ = ["FAULTS_CONF", "JOBS", "USER_ERRORS", "Job", "run_job", "run_script"]

logger = logging.getLogger("knnspark.app")

#: Errors that mean "fix your config or your data": exit status 2, one line.
USER_ERRORS = (ConfigError, ValueError, TypeError, FileNotFoundError, FileExistsError)

#: Test-only Spark setting (``--conf spark.knnspark.test.injectFaults=build,search``): fail the
#: first attempt of some tasks of those stages, see :mod:`knnspark._faults`.
FAULTS_CONF = "spark.knnspark.test.injectFaults"


def _fit_lines(s: dict[str, Any]) -> list[str]:
    return [
        f"fit: {s['rows_in']} rows in, {s['seconds']:.1f}s, {s['rows_per_second']:.1f} rows/s",
        f"{s['task']} model {s['model_id']} saved to {s['model_path']}",
    ]


def _score_lines(s: dict[str, Any]) -> list[str]:
    lines = [
        f"score: {s['rows_in']} rows in, {s['rows_out']} rows out, {s['seconds']:.1f}s, "
        f"{s['rows_per_second']:.1f} rows/s",
        f"run_date={s['run_date']} written to {s['output_path']} by model {s['model_id']} "
        f"(knnspark {s['model_version']})",
    ]
    if s["rows_without_prediction"]:
        lines.append(f"{s['rows_without_prediction']} rows had invalid features and no prediction")
    if s["metric"] is not None:
        lines.append(f"{s['metric']}: {s['metric_value']:.4f}")
    return lines


def _evaluate_lines(s: dict[str, Any]) -> list[str]:
    lines = [
        f"evaluate: {s['rows']} rows in, {s['rows_evaluated']} evaluated, {s['seconds']:.1f}s, "
        f"{s['rows_per_second']:.1f} rows/s"
    ]
    lines += [f"{name}: {value:.4f}" for name, value in s["metrics"].items()]
    lines.append(f"metrics written to {s['output_path']}")
    return lines


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _tune_lines(s: dict[str, Any]) -> list[str]:
    # The tune job's summary, as jobs/tune.py prints it; .get: its keys are that module's.
    best = ", ".join(f"{name}={value}" for name, value in s.get("best_params", {}).items())
    return [
        f"tune: {s.get('param_maps')} param maps x {s.get('num_folds')} folds on "
        f"{s.get('rows_in')} rows in {s.get('seconds', 0.0):.1f}s",
        f"best: {best}: {s.get('metric')} {_number(s.get('best_mean'))} "
        f"(std {_number(s.get('best_std'))} over the folds)",
        f"report: {s.get('report_csv')}, {s.get('report_json')}",
        f"plot: {s.get('plot')}",
        f"best model saved to {s.get('model_path')}",
    ]


def _join_lines(s: dict[str, Any]) -> list[str]:
    lines = [
        f"join: {s['rows_left']} left rows x {s['rows_right']} right rows, {s['rows_out']} rows "
        f"out, {s['seconds']:.1f}s, {s['rows_per_second']:.1f} left rows/s",
        f"run_date={s['run_date']} written to {s['output_path']}",
    ]
    if s["rows_without_neighbors"]:
        lines.append(f"{s['rows_without_neighbors']} left rows had invalid features")
    return lines


@dataclass(frozen=True)
class Job:
    """One job of the command line.

    Attributes
    ----------
    description : str
        ``--help`` text.
    schema : str
        Name of its schema in :mod:`knnspark.app.schemas`.
    runner : str
        ``module:function`` run with the validated config and the session.
    summary : callable
        Turns the runner's result into the lines printed on success.
    run_date : bool
        Whether the job takes ``--run-date``.
    """

    description: str
    schema: str
    runner: str
    summary: Callable[[dict[str, Any]], list[str]]
    run_date: bool = False


#: The jobs, by name.
JOBS = {
    "fit": Job("Fit a KNN model and save it.", "FIT_SCHEMA", "fit:run_fit", _fit_lines),
    "tune": Job(
        "Cross-validate k and weights, write the report and plot, save the best model.",
        "TUNE_SCHEMA",
        "tune:run_tune",
        _tune_lines,
    ),
    "score": Job(
        "Score an input with a saved model into the output partition of one run date.",
        "SCORE_SCHEMA",
        "score:run_score",
        _score_lines,
        run_date=True,
    ),
    "evaluate": Job(
        "Score a labelled input with a saved model and write its metrics as JSON.",
        "EVALUATE_SCHEMA",
        "evaluate:run_evaluate",
        _evaluate_lines,
    ),
    "join": Job(
        "Join each left row with its k nearest right rows into the output partition of one "
        "run date.",
        "JOIN_SCHEMA",
        "join:run_join",
        _join_lines,
        run_date=True,
    ),
}


def _parser(name: str, job: Job, prog: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=job.description)
    parser.add_argument("--config", required=True, help=f"TOML job config, e.g. conf/{name}.toml")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. model.k=7 or spark.master=local[2] (repeatable)",
    )
    parser.add_argument(
        "--profile",
        metavar="TOML",
        help="Spark profile laid over the config's [spark] table, e.g. conf/spark-cluster.toml",
    )
    parser.add_argument(
        "--remote",
        metavar="URL",
        help="run against a Spark Connect server, e.g. sc://host:15002 (same as spark.remote)",
    )
    if job.run_date:
        parser.add_argument(
            "--run-date",
            metavar="YYYY-MM-DD",
            help="run key: the output partition this run replaces (default: today, UTC)",
        )
    return parser


def _runner(job: Job) -> Callable[..., dict[str, Any]]:
    module_name, function = job.runner.split(":")
    try:
        module = importlib.import_module(f"knnspark.app.{module_name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"knnspark.app.{module_name}":
            raise
        raise ConfigError(f"this installation of knnspark has no {module_name} job") from None
    return getattr(module, function)


def _one_line(exc: BaseException) -> str:
    """The line of an error that says what happened."""
    java = getattr(exc, "java_exception", None)
    text = str(java.toString()) if java is not None else str(exc)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    # A Python worker's error ends with its traceback's last line: "module.Error: message".
    return lines[-1] if type(exc).__name__ == "PythonException" else lines[0]


@contextmanager
def _test_faults(spark: Any) -> Iterator[None]:
    from knnspark import classic
    from knnspark._faults import FAULTS_PROPERTY
    from knnspark.classic import is_connect

    stages = spark.conf.get(FAULTS_CONF, None)
    if not stages:
        yield
        return
    if is_connect(spark):  # local properties are a SparkContext's
        logger.warning("test-only fault injection needs a classic session; ignored")
        yield
        return
    logger.warning("test-only fault injection is on for: %s", stages)
    classic.set_local_property(spark, FAULTS_PROPERTY, stages)
    try:
        yield
    finally:
        classic.set_local_property(spark, FAULTS_PROPERTY, None)


def run_job(name: str, argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run job ``name`` with command-line arguments ``argv``; return the exit status.

    A SparkSession that is already active (a test's, a notebook's) is used and left running;
    one this call starts is stopped before it returns.

    Parameters
    ----------
    name : {"fit", "tune", "score", "evaluate", "join"}
        The job.
    argv : sequence of str, optional
        Arguments after the job, e.g. ``["--config", "conf/score.toml"]``; default
        ``sys.argv[1:]``.
    prog : str, optional
        Program name shown by ``--help``.

    Returns
    -------
    int
        0, 1 or 2, see the module docstring.
    """
    job = JOBS[name]
    try:
        args = _parser(name, job, prog).parse_args(argv)
    except SystemExit as exc:  # --help, or an argparse error (already printed, status 2)
        return int(exc.code or 0)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("knnspark").setLevel(logging.INFO)
    overrides = list(args.overrides)
    if getattr(args, "run_date", None) is not None:
        overrides.append(f"output.run_date={args.run_date}")
    if args.remote is not None:
        overrides.append(f"spark.remote={args.remote}")

    spark, started = None, False
    connect_mode = os.environ.get(CONNECT_MODE_VAR)
    try:
        # Imported here: the schemas import the estimators, hence pyspark, which --help skips.
        from knnspark.app import schemas

        config = load_config(
            args.config, getattr(schemas, job.schema), overrides, profile=args.profile
        )
        runner = _runner(job)
        from knnspark.app.output import RowCountError
        from knnspark.app.session import build_session, session_running

        spark_config = config["spark"]
        remote = spark_config["remote"]
        started = not session_running(remote)
        spark = build_session(
            spark_config["app_name"],
            spark_config["conf"],
            spark_config["master"],
            remote=remote,
        )
        try:
            with _test_faults(spark):
                summary = runner(config, spark)
        except RowCountError as exc:
            print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
            return 1
    except USER_ERRORS as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except Exception as exc:
        unreadable = unreadable_file(exc)
        if unreadable is not None:  # a damaged data file the job read outside its input checks
            print(f"error: {name}: {unreadable.describe()}", file=sys.stderr)
            return 2
        traceback.print_exc()
        print(f"error: {name} failed: {_one_line(exc)}", file=sys.stderr)
        return 1
    finally:
        if spark is not None and started:
            spark.stop()
        # A Connect job switched this process's DataFrame functions to Connect; switch back
        # for the caller (a test's or a notebook's classic session).
        os.environ.pop(CONNECT_MODE_VAR, None)
        if connect_mode is not None:
            os.environ[CONNECT_MODE_VAR] = connect_mode
    for line in job.summary(summary):
        print(line)
    return 0


def run_script(name: str) -> NoReturn:
    """Run job ``name`` with this process's arguments and exit with its status.

    The whole of ``jobs/<name>.py``, the file ``spark-submit`` runs; see :func:`run_job`.
    """
    sys.exit(run_job(name, sys.argv[1:], prog=f"jobs/{name}.py"))
