#!/usr/bin/env bash
# ci/test-python.sh: build the memwatch Python package (abi3 wheel, maturin)
# and run its pytest suite, which includes every tests/behavior scenario.
#
# Works on a fresh Debian machine with Python 3 + pip and Rust preinstalled:
# everything else (venv support, maturin, pytest, numpy) is installed here,
# into a virtualenv so the system Python is left alone.
# Env: PYTHON (default python3), MEMWATCH_PY_VENV (default bindings-python/target/venv).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
VENV="${MEMWATCH_PY_VENV:-$ROOT/bindings-python/target/venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_PYTHON:-$ROOT/bindings-python/target}"

echo "== python: $("$PY" --version 2>&1), venv $VENV"
. "$ROOT/ci/python-venv.sh"
make_venv "$PY" "$VENV"
VPY="$VENV/bin/python"
"$VPY" -m pip install --quiet --disable-pip-version-check "maturin>=1.5,<2" "pytest>=7" numpy

echo "== building the wheel"
WHEELS="$CARGO_TARGET_DIR/wheels-ci"
rm -rf "$WHEELS"
(cd "$ROOT/bindings-python" && "$VENV/bin/maturin" build --release --interpreter "$VPY" --out "$WHEELS")
"$VPY" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$WHEELS"/memwatch-*.whl

echo "== pytest"
cd "$ROOT/bindings-python"
# -p no:cacheprovider: leave no .pytest_cache in the tree.
"$VPY" -m pytest tests -ra -p no:cacheprovider

# The same abi3 wheel on every other CPython the package supports (pyenv's
# builds, $PYENV_ROOT/versions/3.X.*): only the writer-location tests, whose
# Python frames depend on each version's frame layout. A version this machine
# lacks (no network to fetch one) is reported as NOT TESTED in the table
# below, never as passed; MEMWATCH_PY_VERSIONS="" skips this step on purpose.
PYENV_ROOT="${PYENV_ROOT:-$HOME/.pyenv}"
versions="${MEMWATCH_PY_VERSIONS-3.9 3.10 3.12 3.13}"
declare -A totals
status=0
for v in $versions; do
    vpy="$(ls -d "$PYENV_ROOT"/versions/"$v".*/bin/python 2>/dev/null | sort -V | tail -1 || true)"
    if [ -z "$vpy" ]; then
        echo "== CPython $v not found under $PYENV_ROOT/versions: NOT TESTED"
        totals[$v]="NOT TESTED (not installed on this machine)"
        continue
    fi
    echo "== location tests on $("$vpy" --version 2>&1)"
    venv="$CARGO_TARGET_DIR/venv-$v"
    make_venv "$vpy" "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "pytest>=7" numpy
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$WHEELS"/memwatch-*.whl
    log="$CARGO_TARGET_DIR/pytest-$v.log"
    if "$venv/bin/python" -m pytest tests/test_location.py tests/test_location_python.py \
        -ra -p no:cacheprovider 2>&1 | tee "$log"; then :; else status=1; fi
    totals[$v]="$(grep -E '^=+ .*(passed|failed|error).* in [0-9.]+s' "$log" | tail -1 | tr -d '=' | xargs)"
done
if [ -n "$versions" ]; then
    echo "== location tests per CPython version (the full suite ran on $("$VPY" --version 2>&1))"
    for v in $versions; do printf '   %-5s %s\n' "$v" "${totals[$v]:-no result}"; done
fi
exit $status
