#!/bin/sh
# Builds the static C library of memwatch (crates/memwatch-capi) and copies it
# to bindings-go/lib/libmemwatch.a, where the cgo directives in cgo.go link it.
#
# Run through `go generate` from bindings-go/ (see doc.go), or directly.
#
# Environment:
#   CARGO_TARGET_DIR  cargo's target directory (absolute path). Default: the
#                     repository's target/ (the root workspace default).
#   MEMWATCH_LIB_A    path of an already built libmemwatch.a: copy it instead
#                     of running cargo.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
mkdir -p "$here/lib"
if [ -n "${MEMWATCH_LIB_A:-}" ]; then
    src=$MEMWATCH_LIB_A
else
    target=${CARGO_TARGET_DIR:-$root/target}
    (cd "$root" && cargo build -p memwatch-capi --release)
    src=$target/release/libmemwatch.a
fi
if [ ! -f "$src" ]; then
    echo "build-lib.sh: $src not found" >&2
    exit 1
fi
cp "$src" "$here/lib/libmemwatch.a.tmp"
mv "$here/lib/libmemwatch.a.tmp" "$here/lib/libmemwatch.a"
echo "build-lib.sh: copied $src to $here/lib/libmemwatch.a"
