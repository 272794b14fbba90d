#!/usr/bin/env bash
# Builds libmemwatch (crates/memwatch-c) in release mode and installs it with
# its headers (the C API and the header-only C++ API over it) under PREFIX:
#   PREFIX/lib/libmemwatch.so, libmemwatch.a
#   PREFIX/include/memwatch.h, memwatch_store.h, memwatch.hpp, memglass.h, memglass.hpp
#   PREFIX/lib/pkgconfig/memwatch.pc, memwatch-cxx.pc
#   PREFIX/lib/cmake/memwatch/memwatchConfig.cmake, memwatchConfigVersion.cmake
# so `find_package(memwatch)` (targets memwatch::memwatch, memwatch::memwatch_static,
# memwatch::cxx) and `pkg-config --cflags --libs memwatch` work outside the repo.
#
# usage: ci/install-c.sh [PREFIX]        (default /usr/local)
# env:   CARGO_TARGET_DIR  cargo's target dir (default <repo>/target)
#        MEMWATCH_NO_BUILD=1  install what is already built
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
prefix="${1:-/usr/local}"
mkdir -p "$prefix"
prefix="$(cd "$prefix" && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
rel="$target/release"
version="$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$repo/Cargo.toml" | head -n1)"

if [ "${MEMWATCH_NO_BUILD:-0}" != 1 ]; then
    (cd "$repo" && CARGO_TARGET_DIR="$target" cargo build --release -p memwatch-c)
fi

# Native libraries a Rust staticlib needs on Linux (rustc --print native-static-libs).
static_libs="-lpthread -ldl -lm -lrt -lgcc_s -lutil"

install -d "$prefix/lib/pkgconfig" "$prefix/lib/cmake/memwatch" "$prefix/include"
install -m 0755 "$rel/libmemwatch.so" "$prefix/lib/libmemwatch.so"
install -m 0644 "$rel/libmemwatch.a" "$prefix/lib/libmemwatch.a"
install -m 0644 "$repo/crates/memwatch-capi/include/memwatch.h" "$prefix/include/memwatch.h"
install -m 0644 "$repo/crates/memwatch-capi/include/memwatch_store.h" "$prefix/include/memwatch_store.h"
install -m 0644 "$repo/crates/memwatch-capi/include/memglass.h" "$prefix/include/memglass.h"
install -m 0644 "$repo/crates/memwatch-capi/include/memglass.hpp" "$prefix/include/memglass.hpp"
install -m 0644 "$repo/crates/memwatch-capi/include/memwatch.hpp" "$prefix/include/memwatch.hpp"

cat > "$prefix/lib/pkgconfig/memwatch.pc" <<PC
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: memwatch
Description: Detect and report changes to watched memory (C API)
Version: $version
Cflags: -I\${includedir}
Libs: -L\${libdir} -lmemwatch
Libs.private: $static_libs
PC

# The C++ API is header-only over the C API: it links libmemwatch like C does.
cat > "$prefix/lib/pkgconfig/memwatch-cxx.pc" <<PC
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: memwatch-cxx
Description: Detect and report changes to watched memory (C++17 API, header-only over libmemwatch)
Version: $version
Requires: memwatch = $version
Cflags: -std=c++17
PC

cat > "$prefix/lib/cmake/memwatch/memwatchConfigVersion.cmake" <<CM
set(PACKAGE_VERSION "$version")
if(PACKAGE_FIND_VERSION VERSION_GREATER PACKAGE_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
else()
  # 0.x: the minor version must match.
  string(REGEX MATCH "^[0-9]+\\\\.[0-9]+" _mw_have "\${PACKAGE_VERSION}")
  string(REGEX MATCH "^[0-9]+\\\\.[0-9]+" _mw_want "\${PACKAGE_FIND_VERSION}")
  if(PACKAGE_FIND_VERSION_COUNT GREATER 1 AND NOT _mw_have VERSION_EQUAL _mw_want)
    set(PACKAGE_VERSION_COMPATIBLE FALSE)
  else()
    set(PACKAGE_VERSION_COMPATIBLE TRUE)
  endif()
  if(PACKAGE_FIND_VERSION STREQUAL PACKAGE_VERSION)
    set(PACKAGE_VERSION_EXACT TRUE)
  endif()
endif()
CM

cat > "$prefix/lib/cmake/memwatch/memwatchConfig.cmake" <<'CM'
# memwatch CMake package. Relocatable: paths are computed from this file.
#   memwatch::memwatch         libmemwatch.so  (C API, memwatch.h)
#   memwatch::memwatch_static  libmemwatch.a   (C API, static)
#   memwatch::cxx              memwatch.hpp (C++17, header-only) over memwatch::memwatch
include(CMakeFindDependencyMacro)
find_dependency(Threads)

get_filename_component(_memwatch_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
set(memwatch_PREFIX "${_memwatch_prefix}")
set(memwatch_INCLUDE_DIRS "${_memwatch_prefix}/include")

if(NOT TARGET memwatch::memwatch)
  add_library(memwatch::memwatch SHARED IMPORTED)
  set_target_properties(memwatch::memwatch PROPERTIES
    IMPORTED_LOCATION "${_memwatch_prefix}/lib/libmemwatch.so"
    IMPORTED_SONAME "libmemwatch.so"
    INTERFACE_INCLUDE_DIRECTORIES "${_memwatch_prefix}/include")
endif()

set(_memwatch_native Threads::Threads ${CMAKE_DL_LIBS} m rt gcc_s util)

if(NOT TARGET memwatch::memwatch_static)
  add_library(memwatch::memwatch_static STATIC IMPORTED)
  set_target_properties(memwatch::memwatch_static PROPERTIES
    IMPORTED_LOCATION "${_memwatch_prefix}/lib/libmemwatch.a"
    IMPORTED_LINK_INTERFACE_LANGUAGES "C"
    INTERFACE_INCLUDE_DIRECTORIES "${_memwatch_prefix}/include"
    INTERFACE_LINK_LIBRARIES "${_memwatch_native}")
endif()

if(NOT TARGET memwatch::cxx)
  add_library(memwatch::cxx INTERFACE IMPORTED)
  set_target_properties(memwatch::cxx PROPERTIES
    INTERFACE_COMPILE_FEATURES "cxx_std_17"
    INTERFACE_LINK_LIBRARIES "memwatch::memwatch")
  set(memwatch_cxx_FOUND TRUE)
endif()

set(memwatch_FOUND TRUE)
CM

echo "memwatch $version installed under $prefix"
