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
