#!/usr/bin/env bash
# Builds the NuGet package of the C# binding without a .NET SDK:
#   <out-dir>/MemWatch.<version>.nupkg
# with the standard layout
#   MemWatch.nuspec                               id, version, authors, license, description, ... (from MemWatch.csproj)
#   lib/netstandard2.0/MemWatch.dll, MemWatch.xml  the library as build-mono.sh builds and the tests test it
#   runtimes/linux-x64/native/libmemwatch.so      the engine (crates/memwatch-c)
#   README.md
#   [Content_Types].xml, _rels/.rels, package/services/metadata/core-properties/*.psmdcp  (OPC parts nuget pack writes)
#
# usage: bindings-csharp/pack-nuget.sh [path/to/libmemwatch.so] [out-dir]
#   libmemwatch.so: default $CARGO_TARGET_DIR/release/libmemwatch.so, else <repo>/target/release/libmemwatch.so
#   out-dir: default bindings-csharp/build
# Needs mcs (mono-devel) and python3 (writes the zip).
#
# The DLL is compiled by Mono's mcs against Mono's 4.x profile (it references
# mscorlib, which .NET Core and .NET 5+ resolve through their mscorlib facade);
# a build against the netstandard2.0 reference assemblies needs the .NET SDK
# (`dotnet pack MemWatch.csproj`), which this machine does not have.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
lib="${1:-${CARGO_TARGET_DIR:-$repo/target}/release/libmemwatch.so}"
out="${2:-$here/build}"

"$here/build-mono.sh" "$lib" >/dev/null
mkdir -p "$out"

python3 - "$here" "$lib" "$out" <<'PY'
import sys, uuid, zipfile
import xml.etree.ElementTree as ET
from pathlib import Path
from xml.sax.saxutils import escape

here, lib, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
props = {}
for group in ET.parse(here / "MemWatch.csproj").getroot().iter("PropertyGroup"):
    for e in group:
        props.setdefault(e.tag, (e.text or "").strip())
for key in ("PackageId", "Version", "Authors", "Description", "PackageLicenseExpression"):
    if not props.get(key):
        sys.exit(f"pack-nuget: MemWatch.csproj has no <{key}>")
pid, version = props["PackageId"], props["Version"]

nuspec = f"""<?xml version="1.0" encoding="utf-8"?>
<package xmlns="http://schemas.microsoft.com/packaging/2013/05/nuspec.xsd">
  <metadata>
    <id>{escape(pid)}</id>
    <version>{escape(version)}</version>
    <authors>{escape(props["Authors"])}</authors>
    <license type="expression">{escape(props["PackageLicenseExpression"])}</license>
    <readme>README.md</readme>
    <description>{escape(props["Description"])}</description>
    <tags>{escape(props.get("PackageTags", "").replace(";", " "))}</tags>
    <dependencies>
      <group targetFramework=".NETStandard2.0" />
    </dependencies>
  </metadata>
</package>
"""
content_types = """<?xml version="1.0" encoding="utf-8"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
  <Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml" />
  <Default Extension="psmdcp" ContentType="application/vnd.openxmlformats-package.core-properties+xml" />
  <Default Extension="nuspec" ContentType="application/octet" />
  <Default Extension="dll" ContentType="application/octet" />
  <Default Extension="xml" ContentType="application/octet" />
  <Default Extension="so" ContentType="application/octet" />
  <Default Extension="md" ContentType="application/octet" />
</Types>
"""
core = f"/package/services/metadata/core-properties/{uuid.uuid4().hex}.psmdcp"
rels = f"""<?xml version="1.0" encoding="utf-8"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
  <Relationship Type="http://schemas.microsoft.com/packaging/2010/07/manifest" Target="/{pid}.nuspec" Id="R1" />
  <Relationship Type="http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties" Target="{core}" Id="R2" />
</Relationships>
"""
psmdcp = f"""<?xml version="1.0" encoding="utf-8"?>
<coreProperties xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns="http://schemas.openxmlformats.org/package/2006/metadata/core-properties">
  <dc:creator>{escape(props["Authors"])}</dc:creator>
  <dc:description>{escape(props["Description"])}</dc:description>
  <dc:identifier>{escape(pid)}</dc:identifier>
  <version>{escape(version)}</version>
  <keywords>{escape(props.get("PackageTags", "").replace(";", " "))}</keywords>
  <lastModifiedBy>bindings-csharp/pack-nuget.sh</lastModifiedBy>
</coreProperties>
"""
build = here / "build"
path = out / f"{pid}.{version}.nupkg"
with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("_rels/.rels", rels)
    z.writestr(f"{pid}.nuspec", nuspec)
    z.write(build / "MemWatch.dll", "lib/netstandard2.0/MemWatch.dll")
    z.write(build / "MemWatch.xml", "lib/netstandard2.0/MemWatch.xml")
    z.write(lib, "runtimes/linux-x64/native/libmemwatch.so")
    z.write(here / "README.md", "README.md")
    z.writestr(core.lstrip("/"), psmdcp)
    z.writestr("[Content_Types].xml", content_types)
print(path)
PY
