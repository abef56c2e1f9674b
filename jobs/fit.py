"""Fit a KNN model and save it.

Usage (from the repository root)::

    python jobs/fit.py --config conf/fit.toml [--set model.k=7] [--set KEY=VALUE ...]
    scripts/submit.sh --master MASTER fit --config conf/fit.toml [...]

Options and exit status (0 success, 2 bad config or input, 1 anything else) are those of
:func:`knnspark.app.jobs.run_job`; ``knnspark fit ...`` runs the same code.
"""

from __future__ import annotations

import sys

from knnspark.app.jobs import run_job


def main(argv: list[str] | None = None) -> int:
    """Run the job; return the process exit status."""
    return run_job("fit", argv, prog="jobs/fit.py")


if __name__ == "__main__":
    sys.exit(main())
