#!/usr/bin/env bash
# ci/demo-python.sh: the README's Python demo. Installs the memwatch package
# from this checkout (pip install ./bindings-python, which builds the abi3
# wheel with maturin) into a virtualenv, then runs examples/python/demo.py:
# it watches a few variables and prints each change (name, old -> new, thread).
# Extra arguments go to the demo, e.g. --backend writewatch.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
VENV="${MEMWATCH_PY_VENV:-$ROOT/bindings-python/target/venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_PYTHON:-$ROOT/bindings-python/target}"

. "$ROOT/ci/python-venv.sh"
make_venv "$PY" "$VENV"
VPY="$VENV/bin/python"
echo "== pip install ./bindings-python (builds the extension; first time takes a minute)"
"$VPY" -m pip install --quiet --disable-pip-version-check numpy "$ROOT/bindings-python"
echo "== python examples/python/demo.py $*"
"$VPY" "$ROOT/examples/python/demo.py" "$@"
