"""Fit a KNN model and save it.

Usage (from the repository root)::

    python jobs/fit.py --config conf/fit.toml [--set model.k=7] [--set KEY=VALUE ...]
    scripts/submit.sh --master MASTER fit --config conf/fit.toml [...]

Options and exit status: :func:`knnspark.app.jobs.run_job`; ``knnspark fit ...`` runs
the same code.
"""

from knnspark.app.jobs import run_script

if __name__ == "__main__":
    run_script("fit")
