#!/usr/bin/env bash
# Fit a KNN classifier on the digits sample and score the held-out rows, as in the README.
#
#   scripts/demo.sh
#
# Creates .venv (if missing) with knnspark installed, then runs jobs/fit.py and jobs/score.py
# with conf/fit.toml and conf/score.toml. Needs Python >= 3.11 and Java 17 or 21 for Spark 4.
set -euo pipefail

# Paths in the configs are relative to the repository root.
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
fi
# Editable install, so jobs/ import the knnspark in this checkout; skipped on re-runs.
if ! .venv/bin/python -m pip show -q knnspark >/dev/null 2>&1; then
    .venv/bin/python -m pip install -q -e .
fi

.venv/bin/python jobs/fit.py --config conf/fit.toml
.venv/bin/python jobs/score.py --config conf/score.toml
