#!/usr/bin/env bash
# Demonstrates MemStream across three Python processes (memwatch.store):
# writer.py writes, reader.py verifies every value it reads, analytics.py
# reports hit counts and timestamps, all on one shared-memory store. Then the
# C example (memwatch_store.h, libmemwatch.so) runs.
#
# Python: $PYTHON if set (it must be able to `import memwatch.store`), else a
# virtualenv in $CARGO_TARGET_DIR/py-venv into which the memwatch package of
# this checkout is installed (pip install ./bindings-python: the first build
# takes a minute or two, later ones are incremental).
# Env: SECONDS_TO_RUN (3), PYTHON.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/store}"

if [ -n "${PYTHON:-}" ]; then
  py="$PYTHON"
else
  venv="$CARGO_TARGET_DIR/py-venv"
  . "$root/ci/python-venv.sh"
  make_venv python3 "$venv"
  py="$venv/bin/python"
  echo "run.sh: installing the memwatch package from $root/bindings-python into $venv"
  "$py" -m pip install --quiet --disable-pip-version-check "$root/bindings-python"
fi
"$py" -c "import memwatch.store" || {
  echo "run.sh: $py cannot import memwatch.store (pip install ./bindings-python)" >&2
  exit 1
}

name="memstream-demo-$$"
trap '"$py" -c "import memwatch.store as s; s.unlink(\"$name\", missing_ok=True)" 2>/dev/null || true' EXIT
cd "$here"
"$py" writer.py "$name" "${SECONDS_TO_RUN:-3}" 100 & w=$!
"$py" reader.py "$name" & r=$!
"$py" analytics.py "$name" 3 & a=$!
status=0
wait $w || status=1
wait $r || status=1
wait $a || status=1
if [ $status -ne 0 ]; then echo "run.sh: a process failed" >&2; exit 1; fi
echo "run.sh: writer, reader and analytics all succeeded on store $name"

if command -v cc >/dev/null; then
  cargo build -q --manifest-path "$root/Cargo.toml" -p memwatch-c --release
  cc -Wall -Wextra -I"$root/crates/memwatch-capi/include" c_example.c -L"$CARGO_TARGET_DIR/release" -lmemwatch -o "$CARGO_TARGET_DIR/memstream_c_example"
  LD_LIBRARY_PATH="$CARGO_TARGET_DIR/release" "$CARGO_TARGET_DIR/memstream_c_example" "memstream-c-$$"
fi
