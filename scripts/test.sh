#!/usr/bin/env bash
# README command 2: create or update .venv with the test extra, lint, run every test.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh tests/unit -q`); the fast lane for
# day-to-day work is `bash scripts/test.sh -m "not slow"` (CI runs everything).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# pytest exits 5 when it collects no test; set -e turns that into a failure too.
.venv/bin/python -m pytest "$@"
