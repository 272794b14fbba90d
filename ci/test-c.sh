#!/usr/bin/env bash
# C and C++ tests: builds libmemwatch (crates/memwatch-c), installs it with
# the C and C++ headers into a scratch prefix (ci/install-c.sh), then builds
# tests/ with CMake against that installed package and runs everything with
# ctest:
#   - the shared tests/behavior scenarios (C runner, shared and static lib; C++ runner)
#   - the C tests (tests/c/test_capi.c) and the GoogleTest C++ tests (tests/cpp)
#   - examples/c and examples/cpp built out of tree against the installed package
# Exits non-zero on any failure.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
work="${MEMWATCH_C_WORK:-$CARGO_TARGET_DIR/ci-c}"

need=()
command -v cmake >/dev/null || need+=(cmake)
command -v pkg-config >/dev/null || need+=(pkg-config)
[ -f /usr/include/cjson/cJSON.h ] || need+=(libcjson-dev)
[ -f /usr/include/gtest/gtest.h ] || need+=(libgtest-dev)
command -v g++ >/dev/null || need+=(g++)
command -v sqlite3 >/dev/null || need+=(sqlite3)
if [ "${#need[@]}" -gt 0 ]; then
    echo "installing: ${need[*]}"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

jobs="$(nproc 2>/dev/null || echo 2)"
rm -rf "$work"
mkdir -p "$work"

crates=(-p memwatch-capi -p memwatch-c)
echo "== cargo test ${crates[*]}"
(cd "$repo" && cargo test --release "${crates[@]}")

echo "== install into $work/prefix"
"$repo/ci/install-c.sh" "$work/prefix"

echo "== configure and build tests/"
cmake -S "$repo/tests" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$work/build" -j "$jobs"

echo "== ctest"
ctest --test-dir "$work/build" --output-on-failure -j "$jobs"
