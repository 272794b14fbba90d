#!/usr/bin/env bash
# Builds the C# binding and its tests with Mono's compiler (no .NET SDK needed):
#   build/MemWatch.dll, build/MemWatch.xml   the library (src/*.cs, as MemWatch.csproj compiles it)
#   build/MemWatch.Tests.exe                 the test program (tests/*.cs)
#   build/libmemwatch.so                     copied next to them (Mono probes the assembly directory)
#
# usage: bindings-csharp/build-mono.sh [path/to/libmemwatch.so]
#   default: $CARGO_TARGET_DIR/release/libmemwatch.so, else <repo>/target/release/libmemwatch.so
# Run the tests with: mono bindings-csharp/build/MemWatch.Tests.exe [name-filter...]
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
lib="${1:-${CARGO_TARGET_DIR:-$repo/target}/release/libmemwatch.so}"
out="$here/build"

if [ ! -f "$lib" ]; then
    echo "libmemwatch.so not found at $lib: run 'cargo build -p memwatch-c --release' first" >&2
    exit 1
fi
command -v mcs >/dev/null || { echo "mcs not found: apt-get install mono-devel" >&2; exit 1; }

mkdir -p "$out"
# The library: warnings are errors, every public item needs a doc comment (CS1591).
mcs -target:library -optimize+ -debug -warn:4 -warnaserror+ \
    -out:"$out/MemWatch.dll" -doc:"$out/MemWatch.xml" \
    "$here"/src/*.cs
# The tests (CS0649/CS0414: fields that are deliberately never assigned, for null references).
mcs -target:exe -debug -warn:4 -warnaserror+ -nowarn:649,414 \
    -r:"$out/MemWatch.dll" -r:System.Core.dll -r:System.Xml.Linq.dll -r:System.Xml.dll \
    -out:"$out/MemWatch.Tests.exe" \
    "$here"/tests/*.cs
cp -f "$lib" "$out/libmemwatch.so"
echo "built $out/MemWatch.dll and $out/MemWatch.Tests.exe against $lib"
