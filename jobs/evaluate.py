"""Score a labelled input with a saved KNN model and write its metrics as JSON.

Usage (from the repository root)::

    python jobs/evaluate.py --config conf/evaluate.toml [--set KEY=VALUE ...]
    scripts/submit.sh --master MASTER evaluate --config conf/evaluate.toml [...]

Options and exit status: :func:`knnspark.app.jobs.run_job`; ``knnspark evaluate ...`` runs
the same code.
"""

from knnspark.app.jobs import run_script

if __name__ == "__main__":
    run_script("evaluate")
