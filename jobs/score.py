"""Score an input with a saved KNN model into the output partition of one run date.

Usage (from the repository root)::

    python jobs/score.py --config conf/score.toml [--run-date 2026-11-21] [--set KEY=VALUE ...]
    scripts/submit.sh --master MASTER score --config conf/score.toml [...]

Options and exit status: :func:`knnspark.app.jobs.run_job`; ``knnspark score ...`` runs
the same code.
"""

from knnspark.app.jobs import run_script

if __name__ == "__main__":
    run_script("score")
