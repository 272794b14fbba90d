#!/usr/bin/env bash
# Tests of crates/memglass and memglass-derive: producer and observer in
# different processes (typed reads, change events, region growth, churn,
# SIGKILLed producer, corrupt/foreign segments, permissions), the
# cross-process seqlock stress test (release build: millions of reads), and
# the loom model of the seqlock protocol (--cfg loom, own target dir).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
# Segments of the tests go to a fresh directory, removed afterwards.
export MEMGLASS_DIR="$(mktemp -d /dev/shm/memglass-ci.XXXXXX)"
trap 'rm -rf "$MEMGLASS_DIR"' EXIT
cargo test --release -p memglass -p memglass-derive
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR="$CARGO_TARGET_DIR/loom" \
    cargo test --release -p memglass --test loom
