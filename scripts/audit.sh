#!/usr/bin/env bash
# The main job (README): set up, then run the audit this machine can do (the `quick`
# profile on the CPU; pass e.g. `--profile seed-study --executor slurm` on a cluster)
# and render its report under reports/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [[ $# -eq 0 ]]; then
    set -- --profile quick
fi
exec .venv/bin/audit run "$@"
