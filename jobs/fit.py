"""Fit a KNN model and save it.

Usage (from the repository root)::

    python jobs/fit.py --config conf/fit.toml [--set model.k=7 ...]
    spark-submit jobs/fit.py --config conf/fit.toml [--set ...]

Exit status: 0 on success, 2 for a config or input error (one ``error:`` line on stderr),
1 for anything unexpected (with a traceback).
"""

from __future__ import annotations

import argparse
import logging
import sys

from knnspark.app.config import FIT_SCHEMA, ConfigError, load_config
from knnspark.app.runners import run_fit
from knnspark.app.session import build_session

# Errors that mean "fix your config or your data": reported in one line, not a traceback.
USER_ERRORS = (ConfigError, ValueError, TypeError, FileNotFoundError, FileExistsError)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``--config`` and the repeatable ``--set KEY=VALUE``."""
    parser = argparse.ArgumentParser(description="Fit a KNN model and save it.")
    parser.add_argument("--config", required=True, help="TOML job config, e.g. conf/fit.toml")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. model.k=7 or spark.master=local[2] (repeatable)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the job; return the process exit status."""
    args = parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("knnspark").setLevel(logging.INFO)
    spark = None
    try:
        config = load_config(args.config, FIT_SCHEMA, args.overrides)
        spark_config = config["spark"]
        spark = build_session(
            spark_config["app_name"], spark_config["conf"], spark_config["master"]
        )
        summary = run_fit(config, spark)
    except USER_ERRORS as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    finally:
        if spark is not None:
            spark.stop()
    print(
        f"fit: {summary['task']} model on {summary['rows_in']} rows "
        f"saved to {summary['model_path']} in {summary['seconds']:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
