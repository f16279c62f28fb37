#!/usr/bin/env bash
# The project's test command (README; .ci/run calls it): set up, lint, run every test,
# the end-to-end tests against a real local SLURM cluster and the installed-wheel check
# (tests/test_package.py: scripts/package-check.sh) included. Arguments go to pytest; the fast
# loop while editing is `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest -q -ra "$@"
