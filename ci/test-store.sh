#!/usr/bin/env bash
# Tests of crates/memwatch-store (MemStream): unit, multi-process, SIGKILL
# recovery, corrupt segments and fuzzing, and the three-process
# Python/ctypes demo. Exits non-zero on any failure.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/store}"
cargo test -p memwatch-store
SECONDS_TO_RUN=2 bash examples/store/run.sh
