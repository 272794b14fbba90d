#!/usr/bin/env bash
# Consumes the NuGet package as a user would, with nothing of this
# repository on any path: packs it (bindings-csharp/pack-nuget.sh) into a
# local feed folder, checks its nuspec, installs it from that feed with the
# NuGet client (`nuget install`, Debian's nuget package on Mono) into a fresh
# packages folder, checks the installed layout, compiles Program.cs
# against the packaged MemWatch.dll only, puts the packaged DLL and
# libmemwatch.so into the program's output folder (what a .NET build does
# with lib/ and runtimes/<rid>/native/), runs it there and expects exactly
# one event, from the packaged native library.
#
# usage: bindings-csharp/tests/nuget/consume.sh [path/to/libmemwatch.so]
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
csharp="$(cd "$here/../.." && pwd)"
work="$(mktemp -d /tmp/memwatch-nuget.XXXXXX)"
trap 'rm -rf "$work"' EXIT

nupkg="$("$csharp/pack-nuget.sh" "${1:-}" "$work/feed" | tail -n1)"
version="$(sed -n 's:.*<Version>\(.*\)</Version>.*:\1:p' "$csharp/MemWatch.csproj")"
[ "$(basename "$nupkg")" = "MemWatch.$version.nupkg" ] || { echo "unexpected package name $nupkg" >&2; exit 1; }
echo "packed $(basename "$nupkg") ($(stat -c %s "$nupkg") bytes)"

fail() { echo "nuget: $*" >&2; exit 1; }
raw="$work/raw"
python3 -m zipfile -e "$nupkg" "$raw"
for f in MemWatch.nuspec '[Content_Types].xml' _rels/.rels; do
    [ -f "$raw/$f" ] || fail "missing $f"
done
ls "$raw"/package/services/metadata/core-properties/*.psmdcp >/dev/null || fail "missing core properties"
nuspec="$raw/MemWatch.nuspec"
grep -q "<id>MemWatch</id>" "$nuspec" || fail "nuspec id"
grep -q "<version>$version</version>" "$nuspec" || fail "nuspec version"
grep -q '<license type="expression">MIT OR Apache-2.0</license>' "$nuspec" || fail "nuspec license"
grep -q "<description>Detect and report changes to watched memory" "$nuspec" || fail "nuspec description"
echo "nuspec: ok"

# HOME of its own: the client's caches and config stay in the work folder.
HOME="$work/home" nuget install MemWatch -Version "$version" -Source "$work/feed" \
    -OutputDirectory "$work/packages" -NonInteractive
pkg="$work/packages/MemWatch.$version"
for f in lib/netstandard2.0/MemWatch.dll lib/netstandard2.0/MemWatch.xml \
         runtimes/linux-x64/native/libmemwatch.so README.md; do
    [ -f "$pkg/$f" ] || fail "installed package lacks $f"
done
echo "installed layout: ok"

app="$work/app"
mkdir -p "$app/bin"
cp "$here/Program.cs" "$app/"
mcs -target:exe -warnaserror+ -r:"$pkg/lib/netstandard2.0/MemWatch.dll" -r:System.Core.dll \
    -out:"$app/bin/Program.exe" "$app/Program.cs"
cp "$pkg/lib/netstandard2.0/MemWatch.dll" "$pkg/runtimes/linux-x64/native/libmemwatch.so" "$app/bin/"

out="$(cd "$app/bin" && env -u LD_LIBRARY_PATH -u MONO_PATH mono Program.exe)"
echo "$out"
expected="data: 00-00-00-00-00-00-00-00-00-00-00-00-00-00-00-00 -> 00-00-00-2A-00-00-00-00-00-00-00-00-00-00-00-00 at 3+1
events: 1
native: $app/bin/libmemwatch.so"
[ "$out" = "$expected" ] || fail "expected exactly:
$expected"
echo "nuget package consumed: 1 event from the packaged libmemwatch.so"
