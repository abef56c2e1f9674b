"""Score an input with a saved KNN model into the output partition of one run date.

Usage (from the repository root)::

    python jobs/score.py --config conf/score.toml [--run-date 2026-11-21] [--set KEY=VALUE ...]
    scripts/submit.sh --master MASTER score --config conf/score.toml [...]

Options and exit status (0 success, 2 bad config or input, 1 anything else) are those of
:func:`knnspark.app.jobs.run_job`; ``knnspark score ...`` runs the same code.
"""

from __future__ import annotations

import sys

from knnspark.app.jobs import run_job


def main(argv: list[str] | None = None) -> int:
    """Run the job; return the process exit status."""
    return run_job("score", argv, prog="jobs/score.py")


if __name__ == "__main__":
    sys.exit(main())
