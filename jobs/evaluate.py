"""Score a labelled input with a saved KNN model and write its metrics as JSON.

Usage (from the repository root)::

    python jobs/evaluate.py --config conf/evaluate.toml [--set KEY=VALUE ...]
    scripts/submit.sh --master MASTER evaluate --config conf/evaluate.toml [...]

Options and exit status (0 success, 2 bad config or input, 1 anything else) are those of
:func:`knnspark.app.jobs.run_job`; ``knnspark evaluate ...`` runs the same code.
"""

from __future__ import annotations

import sys

from knnspark.app.jobs import run_job


def main(argv: list[str] | None = None) -> int:
    """Run the job; return the process exit status."""
    return run_job("evaluate", argv, prog="jobs/evaluate.py")


if __name__ == "__main__":
    sys.exit(main())
