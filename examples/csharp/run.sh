#!/usr/bin/env bash
# Builds libmemwatch and the C# binding with Mono, then compiles and runs Example.cs.
# Needs: cargo, mono-devel (apt-get install mono-devel).
#   usage: bash examples/csharp/run.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
out="${MEMWATCH_EXAMPLE_OUT:-$target/example-csharp}"

if [ "${MEMWATCH_NO_BUILD:-0}" != 1 ]; then
    (cd "$repo" && cargo build -q -p memwatch-c --release)
    "$repo/bindings-csharp/build-mono.sh" "$target/release/libmemwatch.so" >/dev/null
fi
mkdir -p "$out"
cp -f "$repo/bindings-csharp/build/MemWatch.dll" "$target/release/libmemwatch.so" "$out/"
mcs -warnaserror+ -r:"$out/MemWatch.dll" -r:System.Core.dll -out:"$out/Example.exe" "$here/Example.cs"
exec mono "$out/Example.exe"
