#!/usr/bin/env bash
# The prepared GPU check: CUDA correctness of the ND layer, no host syncs, BN/ND step ratios,
# a 1-epoch VGG-16 BN + ND `audit run` on synthetic CIFAR, the device data pipeline and
# packing, ending with one summary table (scripts/gpu_check.py has the details).
#
#   scripts/gpu-check.sh [--wheels DIR] [--device cuda|cpu] [--out DIR] [--authors-deconv F]
#
# The GPU machine may have no network and lack packages (e.g. submitit). Beforehand, on a
# machine with network:   pip download submitit -d wheels/
# and carry wheels/ along; --wheels DIR puts every pure-Python wheel (*.whl) and folder in
# DIR on PYTHONPATH. Checks whose packages are still missing are skipped with a note.
# --device cpu runs everything with tiny sizes (tests/test_gpu_check.py does, in CI).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"
[[ -x "$here/.venv/bin/python" && -z "${PYTHON:-}" ]] && python="$here/.venv/bin/python"

args=()
extra_path=""
while (($#)); do
    case "$1" in
        --wheels)
            [[ $# -ge 2 && -d "$2" ]] || { echo "gpu-check: error: --wheels needs a folder" >&2; exit 2; }
            for item in "$2"/*.whl "$2"/*/; do
                [[ -e "$item" ]] && extra_path="$extra_path:${item%/}"
            done
            shift 2
            ;;
        *)
            args+=("$1")
            shift
            ;;
    esac
done

export PYTHONPATH="$here${extra_path}${PYTHONPATH:+:$PYTHONPATH}"
cd "$here"
exec "$python" scripts/gpu_check.py "${args[@]}"
