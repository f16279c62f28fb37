#!/usr/bin/env bash
# Set up everything the project needs on a fresh Debian machine, idempotently:
#   - system packages (as root, via apt): real Fashion-MNIST, PDF rendering libraries,
#     and, with --test, poppler-utils and Chromium for the report tests (the SLURM
#     test fixture installs SLURM itself, see tests/slurm_cluster.py);
#   - a virtual environment in .venv with the project installed editable (a user's
#     `pip install .` is checked by scripts/package-check.sh, through tests/test_package.py).
# Usage: bash scripts/setup.sh [--test]
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1

apt_packages=(dataset-fashion-mnist libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core)
if (( want_test )); then
    apt_packages+=(poppler-utils chromium)
fi

missing=()
for pkg in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if (( ${#missing[@]} )); then
    if [[ $(id -u) -eq 0 ]]; then
        echo "setup: installing Debian packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "setup: warning: missing Debian packages (run as root to install): ${missing[*]}" >&2
    fi
fi

if [[ ! -x .venv/bin/python ]]; then
    echo "setup: creating .venv"
    python3 -m venv .venv
fi
# pip (not uv/poetry): it takes torch/torchvision from this machine's local wheel store.
if ! .venv/bin/python -c "import audit, runners, torch, torchvision, submitit, weasyprint, scipy, pytest" 2>/dev/null; then
    echo "setup: installing the project and its dependencies into .venv (first time: a few minutes)"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[test]"
fi
echo "setup: ready ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
