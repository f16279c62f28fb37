#!/usr/bin/env bash
# The installed package, as a user gets it: build the wheel from the working tree, install it
# (not editable) into a fresh virtual environment, and from an empty directory run `audit
# --version`, `python -m audit`, `audit validate`, the `ci` profile's audit (`audit run`), then
# `audit check` and `audit report` on its store. CI runs it through tests/test_package.py.
#
# Usage: bash scripts/package-check.sh [--python PY] [--work DIR]
#   --python PY  builds the wheel and lends the fresh environment its installed dependencies
#                through a .pth file (nothing is downloaded; the project itself comes only
#                from the wheel). Default: .venv/bin/python.
#   --work DIR   keep the wheel, environment and outputs in DIR (default: a temporary folder,
#                removed at the end).
# Needs Fashion-MNIST (Debian's dataset-fashion-mnist, read in place) for the ci profile.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
work=""
while (( $# )); do
    case $1 in
        --python) py=$2; shift 2 ;;
        --work) work=$2; shift 2 ;;
        *) echo "package-check: unknown argument $1 (usage: --python PY --work DIR)" >&2; exit 2 ;;
    esac
done
if [[ -z $work ]]; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
work=$(cd "$work" && pwd)
say() { echo "package-check: $*"; }

# 1. The working tree as git sees it (tracked and untracked files, ignored ones left out), so
#    that the build leaves no build/ or egg-info in the checkout and sees no stale build.
say "copying the working tree"
mkdir "$work/src"
git ls-files -z --cached --others --exclude-standard \
    | tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -xf - -C "$work/src"
# the copy has no .git: it carries the commit it was made from (setup.py puts it in the wheel)
commit=$(git rev-parse HEAD 2>/dev/null || true)
dirty=$([[ -n $(git status --porcelain --untracked-files=no 2>/dev/null) ]] && echo true || echo false)
[[ -n $commit ]] && echo "{\"commit\": \"$commit\", \"dirty\": $dirty}" > "$work/src/runners/_build_info.json"

# 2. The wheel. The lender's setuptools builds it when recent enough, else pip fetches one.
isolation=(--no-build-isolation)
"$py" -c 'import setuptools, sys; sys.exit(int(setuptools.__version__.split(".")[0]) < 77)' \
    2>/dev/null || isolation=()
say "building the wheel"
"$py" -m pip wheel -q --no-deps "${isolation[@]}" -w "$work/dist" "$work/src"
wheel=$(ls "$work"/dist/nd_audit-*.whl)

# 3. A fresh environment: the wheel installed by pip, the dependencies lent by $py.
say "installing $(basename "$wheel") into a fresh environment"
"$py" -m venv --without-pip "$work/venv"
"$py" -m pip --python "$work/venv/bin/python" install -q --no-deps --no-index "$wheel"
site=$("$work/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
"$py" -c 'import sysconfig; print(sysconfig.get_path("purelib")); print(sysconfig.get_path("platlib"))' \
    > "$site/lent-dependencies.pth"

# 4. From an empty directory, nothing of the checkout on the path, a private cache.
mkdir "$work/empty"
cd "$work/empty"
run() { say "\$ $*"; env -u PYTHONPATH XDG_CACHE_HOME="$work/cache" PATH="$work/venv/bin:$PATH" "$@"; }
run python -c 'import audit, runners; print(audit.__file__); print(runners.__file__)'
run audit --version
run python -m audit --version
run audit validate
run audit run --profile ci --no-pdf
run audit check --store runs
run audit report --store runs --name ci
say "OK: the installed package validated, ran, checked and reported from an empty directory"
