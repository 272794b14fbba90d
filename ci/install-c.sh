#!/usr/bin/env bash
# Builds libmemwatch (C ABI) and the C++ API (memwatch-cxx) in release mode and
# installs them under PREFIX:
#   PREFIX/lib/libmemwatch.so, libmemwatch.a, libmemwatch_cxx.a
#   PREFIX/include/memwatch.h, memwatch.hpp, memwatch/...   (C++ headers)
#   PREFIX/lib/pkgconfig/memwatch.pc, memwatch-cxx.pc
#   PREFIX/lib/cmake/memwatch/memwatchConfig.cmake, memwatchConfigVersion.cmake
# so `find_package(memwatch)` (targets memwatch::memwatch, memwatch::memwatch_static,
# memwatch::cxx) and `pkg-config --cflags --libs memwatch` work outside the repo.
#
# usage: ci/install-c.sh [PREFIX]        (default /usr/local)
# env:   CARGO_TARGET_DIR  cargo's target dir (default <repo>/target)
#        MEMWATCH_NO_BUILD=1  install what is already built
#        MEMWATCH_NO_CXX=1    C only
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
prefix="${1:-/usr/local}"
mkdir -p "$prefix"
prefix="$(cd "$prefix" && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
rel="$target/release"
version="$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$repo/Cargo.toml" | head -n1)"
with_cxx=1
[ "${MEMWATCH_NO_CXX:-0}" = 1 ] && with_cxx=0

if [ "${MEMWATCH_NO_BUILD:-0}" != 1 ]; then
    pkgs=(-p memwatch-c)
    [ "$with_cxx" = 1 ] && pkgs+=(-p memwatch-cxx)
    (cd "$repo" && CARGO_TARGET_DIR="$target" cargo build --release "${pkgs[@]}")
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

if [ "$with_cxx" = 1 ]; then
    cxx_inc="$target/cxxbridge"
    install -m 0644 "$rel/libmemwatch_cxx.a" "$prefix/lib/libmemwatch_cxx.a"
    install -d "$prefix/include/memwatch/bridge" "$prefix/include/rust"
    install -m 0644 "$repo/crates/memwatch-cxx/include/memwatch.hpp" "$prefix/include/memwatch.hpp"
    install -m 0644 "$repo/crates/memwatch-cxx/include/memwatch/callback.h" "$prefix/include/memwatch/callback.h"
    # cxx's generated bridge header and its runtime header, found via the
    # include paths the generated code uses.
    install -m 0644 "$cxx_inc/memwatch-cxx/src/lib.rs.h" "$prefix/include/memwatch/bridge/lib.rs.h"
    install -m 0644 "$cxx_inc/rust/cxx.h" "$prefix/include/rust/cxx.h"
    cat > "$prefix/lib/pkgconfig/memwatch-cxx.pc" <<PC
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: memwatch-cxx
Description: Detect and report changes to watched memory (C++17 API)
Version: $version
Cflags: -I\${includedir} -std=c++17
Libs: -L\${libdir} -lmemwatch_cxx $static_libs
PC
fi

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
#   memwatch::cxx              libmemwatch_cxx.a (C++17 API, memwatch.hpp), if installed
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

if(EXISTS "${_memwatch_prefix}/lib/libmemwatch_cxx.a" AND NOT TARGET memwatch::cxx)
  add_library(memwatch::cxx STATIC IMPORTED)
  set_target_properties(memwatch::cxx PROPERTIES
    IMPORTED_LOCATION "${_memwatch_prefix}/lib/libmemwatch_cxx.a"
    IMPORTED_LINK_INTERFACE_LANGUAGES "CXX"
    INTERFACE_INCLUDE_DIRECTORIES "${_memwatch_prefix}/include"
    INTERFACE_COMPILE_FEATURES "cxx_std_17"
    INTERFACE_LINK_LIBRARIES "${_memwatch_native}")
  set(memwatch_cxx_FOUND TRUE)
endif()

set(memwatch_FOUND TRUE)
CM

echo "memwatch $version installed under $prefix"
