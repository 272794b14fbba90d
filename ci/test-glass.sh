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
# The C ABI (memglass_* in libmemwatch): a C producer and a C observer.
cargo build --release -p memwatch-c
cc -std=c11 -Wall -Wextra -Werror -I crates/memwatch-capi/include tests/glass/test_glass.c \
    -L "$CARGO_TARGET_DIR/release" -lmemwatch -Wl,-rpath,"$CARGO_TARGET_DIR/release" \
    -o "$CARGO_TARGET_DIR/test_glass_c"
"$CARGO_TARGET_DIR/test_glass_c"
# The C++ RAII header (memglass.hpp) over the same ABI.
command -v g++ >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null; }
g++ -std=c++17 -Wall -Wextra -Werror -I crates/memwatch-capi/include tests/glass/test_glass.cpp \
    -L "$CARGO_TARGET_DIR/release" -lmemwatch -Wl,-rpath,"$CARGO_TARGET_DIR/release" \
    -o "$CARGO_TARGET_DIR/test_glass_cpp"
"$CARGO_TARGET_DIR/test_glass_cpp"
# memglass-gen (libclang from PyPI): [[memglass::observe]] C++ structs ->
# registration header -> a C++ producer -> the Rust observer (glass_peer).
. "$root/ci/python-venv.sh"
venv="$CARGO_TARGET_DIR/glass-venv"
make_venv python3 "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "libclang==18.1.1" "pytest>=7"
cargo build --release -p memglass --example glass_peer
MEMGLASS_LIBDIR="$CARGO_TARGET_DIR/release" MEMGLASS_PEER="$CARGO_TARGET_DIR/release/examples/glass_peer" \
    "$venv/bin/python" -m pytest tests/glass/test_gen.py -ra -p no:cacheprovider
