#!/usr/bin/env bash
# Demonstrates MemStream across three Python processes (ctypes):
# writer.py writes, reader.py verifies every value it reads, analytics.py
# reports hit counts and timestamps, all on one shared-memory store.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/store}"
cargo rustc -q --manifest-path "$root/Cargo.toml" -p memwatch-store --release --features capi --lib --crate-type cdylib
export MEMWATCH_STORE_LIB="$CARGO_TARGET_DIR/release/libmemwatch_store.so"
name="memstream-demo-$$"
trap 'python3 -c "import sys; sys.path.insert(0, \"$here\"); import memstream; memstream.MemStream.unlink(\"$name\")" 2>/dev/null || true' EXIT
cd "$here"
python3 writer.py "$name" "${SECONDS_TO_RUN:-3}" 100 & w=$!
python3 reader.py "$name" & r=$!
python3 analytics.py "$name" 3 & a=$!
status=0
wait $w || status=1
wait $r || status=1
wait $a || status=1
if [ $status -ne 0 ]; then echo "run.sh: a process failed" >&2; exit 1; fi
echo "run.sh: writer, reader and analytics all succeeded on store $name"
if command -v cc >/dev/null; then
  cc -Wall -Wextra -I"$root/crates/memwatch-store/include" c_example.c -L"$CARGO_TARGET_DIR/release" -lmemwatch_store -o "$CARGO_TARGET_DIR/memstream_c_example"
  LD_LIBRARY_PATH="$CARGO_TARGET_DIR/release" "$CARGO_TARGET_DIR/memstream_c_example" "memstream-c-$$"
fi
