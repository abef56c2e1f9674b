"""The ``knnspark`` console command: ``knnspark JOB --config ... [--set k=v]``.

It runs the same code as ``jobs/*.py``, in-process — in local mode with the configs' default
``spark.master = "local[*]"``, for laptops. Clusters take the jobs through ``spark-submit``
(``scripts/submit.sh``), which ships the library to the executors.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from knnspark._version import __version__

__all__ = ["main"]

_USAGE = """usage: knnspark {fit,tune,score,evaluate,join} --config TOML [--set KEY=VALUE ...]
                [--profile TOML] [--run-date YYYY-MM-DD (score, join)]

jobs:
  fit       fit a KNN model and save it
  tune      cross-validate k and weights, save the report and the best model
  score     score an input with a saved model into the partition of one --run-date
  evaluate  score a labelled input and write its metrics as JSON
  join      join each left row with its k nearest right rows into one --run-date

`knnspark JOB --help` describes a job's options. Exit status: 0 success, 2 bad config or
input, 1 anything else."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``knnspark JOB ARGS...``; return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_USAGE, file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    if args[0] == "--version":
        print(f"knnspark {__version__}")
        return 0
    from knnspark.app.jobs import JOBS, run_job

    if args[0] not in JOBS:
        print(f"error: unknown job {args[0]!r}; choose one of {', '.join(JOBS)}", file=sys.stderr)
        return 2
    return run_job(args[0], args[1:], prog=f"knnspark {args[0]}")


if __name__ == "__main__":
    sys.exit(main())
