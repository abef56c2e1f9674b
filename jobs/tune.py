"""Cross-validate k and weights, write the tuning report and plot, and save the best model.

Usage (from the repository root)::

    python jobs/tune.py --config conf/tune.toml [--set tune.numFolds=3] [--set KEY=VALUE ...]
    scripts/submit.sh --master MASTER tune --config conf/tune.toml [...]

Options and exit status: :func:`knnspark.app.jobs.run_job`; ``knnspark tune ...`` runs
the same code.
"""

from knnspark.app.jobs import run_script

if __name__ == "__main__":
    run_script("tune")
