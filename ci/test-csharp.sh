#!/usr/bin/env bash
# C# binding tests on Mono (this machine has no .NET SDK):
#   - installs mono-devel and nuget if mcs/mono/nuget are missing
#   - builds libmemwatch.so (cargo, release) and the binding + tests with mcs
#   - runs examples/csharp (the seed's snippet) and checks its output
#   - packs the NuGet package and consumes it as a user would (tests/nuget/consume.sh)
#   - runs the test program last, so its "N passed, N failed" line closes the output:
#     the shared tests/behavior scenarios under every listed backend, the API,
#     bad-input, lifetime and GC tests, and 100 000 NullReferenceExceptions
#     (Mono's own SIGSEGVs) with the protect backend active
# Exits non-zero on any failure.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"

if ! command -v mcs >/dev/null || ! command -v mono >/dev/null || ! command -v nuget >/dev/null; then
    echo "== installing mono-devel, nuget"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mono-devel nuget >/dev/null
fi
# RecordTests read recordings back with the sqlite3 shell.
if ! command -v sqlite3 >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sqlite3 >/dev/null
fi
mono --version | head -n1

echo "== cargo build -p memwatch-c --release"
(cd "$repo" && cargo build --release -p memwatch-c)
lib="$CARGO_TARGET_DIR/release/libmemwatch.so"

echo "== build the C# binding and tests with mcs"
"$repo/bindings-csharp/build-mono.sh" "$lib"

echo "== examples/csharp"
example_out="$(MEMWATCH_NO_BUILD=1 bash "$repo/examples/csharp/run.sh")"
echo "$example_out"
grep -qx "buffer changed" <<<"$example_out" || { echo "examples/csharp: expected 'buffer changed'" >&2; exit 1; }
grep -q "new 00-00-00-07-09-00-00-00" <<<"$example_out" || { echo "examples/csharp: wrong new value" >&2; exit 1; }

echo "== NuGet package: pack, nuget install from a local feed, build and run a program against it"
bash "$repo/bindings-csharp/tests/nuget/consume.sh" "$lib"

echo "== mono MemWatch.Tests.exe"
export MEMWATCH_BEHAVIOR_DIR="$repo/tests/behavior"
cd "$repo/bindings-csharp/build"
exec mono --debug MemWatch.Tests.exe
