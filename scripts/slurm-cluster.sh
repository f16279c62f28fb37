#!/usr/bin/env bash
# A single-node SLURM cluster with accounting on localhost, for trying `audit run --executor
# slurm` by hand and for the end-to-end tests (which start it themselves when it is down).
#   bash scripts/slurm-cluster.sh start    # install if missing (root), start, print SLURM_CONF
#   bash scripts/slurm-cluster.sh status   # exit 0 when the cluster answers
#   bash scripts/slurm-cluster.sh stop     # stop the daemons `start` began, nothing else
# Then: export SLURM_CONF=/tmp/nd-audit-slurm/etc/slurm.conf (printed by start).
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python  # scripts/setup.sh's; else the python on PATH (an environment of one's own)
[[ -x $py ]] || py=python3
exec "$py" -m tests.slurm_cluster "${1:-status}"
