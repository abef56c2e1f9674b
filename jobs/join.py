"""Join each left row with its k nearest right rows into the output partition of one run date.

Usage (from the repository root)::

    python jobs/join.py --config conf/join.toml [--run-date 2026-11-21] [--set KEY=VALUE ...]
    scripts/submit.sh --master MASTER join --config conf/join.toml [...]

Options and exit status (0 success, 2 bad config or input, 1 anything else) are those of
:func:`knnspark.app.jobs.run_job`; ``knnspark join ...`` runs the same code.
"""

from __future__ import annotations

import sys

from knnspark.app.jobs import run_job


def main(argv: list[str] | None = None) -> int:
    """Run the job; return the process exit status."""
    return run_job("join", argv, prog="jobs/join.py")


if __name__ == "__main__":
    sys.exit(main())
