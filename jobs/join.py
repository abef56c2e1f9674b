"""Join each left row with its k nearest right rows into the output partition of one run date.

Usage (from the repository root)::

    python jobs/join.py --config conf/join.toml [--run-date 2026-11-21] [--set KEY=VALUE ...]
    scripts/submit.sh --master MASTER join --config conf/join.toml [...]

Options and exit status: :func:`knnspark.app.jobs.run_job`; ``knnspark join ...`` runs
the same code.
"""

from knnspark.app.jobs import run_script

if __name__ == "__main__":
    run_script("join")
