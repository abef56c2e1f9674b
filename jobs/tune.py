"""Cross-validate k and weights, write the tuning report and plot, and save the best model.

Usage (from the repository root)::

    python jobs/tune.py --config conf/tune.toml [--set tune.numFolds=3] [--set KEY=VALUE ...]
    scripts/submit.sh --master MASTER tune --config conf/tune.toml [...]

Options and exit status (0 success, 2 bad config or input, 1 anything else) are those of
:func:`knnspark.app.jobs.run_job`; ``knnspark tune ...`` runs the same code.
"""

from __future__ import annotations

import sys

from knnspark.app.jobs import run_job


def main(argv: list[str] | None = None) -> int:
    """Run the job; return the process exit status."""
    return run_job("tune", argv, prog="jobs/tune.py")


if __name__ == "__main__":
    sys.exit(main())
