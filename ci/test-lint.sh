#!/usr/bin/env bash
# Formatting and lints, first in ci/test.sh so a red lint shows early:
#   - cargo fmt --check (rustfmt.toml at the repository root) and
#     cargo clippy --all-targets -- -D warnings for the workspace (engine,
#     C ABI, C++ API, store with its C API) and for every binding crate
#     (bindings-python, bindings-node, bindings-java/native);
#   - gofmt -l and go vet for the Go module and the Go example.
# clippy only type-checks, so it needs no Python headers or JDK; pyo3's build
# script needs a Python interpreter (PYO3_PYTHON, default python3).
# Each crate checks into the target directory its test suite builds in.
# Exits non-zero on the first finding.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
export PYO3_PYTHON="${PYO3_PYTHON:-$(command -v python3)}"

# crate dir -> target dir (the one its ci/test-*.sh uses).
crates=(
    ".:${CARGO_TARGET_DIR:-$repo/target}"
    "bindings-python:${CARGO_TARGET_DIR_PYTHON:-$repo/bindings-python/target}"
    "bindings-node:${CARGO_TARGET_DIR_NODE:-$repo/bindings-node/target}"
    "bindings-java/native:$repo/bindings-java/native/target"
)

for entry in "${crates[@]}"; do
    dir="${entry%%:*}"
    target="${entry#*:}"
    echo "== cargo fmt --check ($dir)"
    (cd "$dir" && cargo fmt --all --check)
    echo "== cargo clippy --all-targets -- -D warnings ($dir)"
    features=()
    [ "$dir" = "." ] && features=(--workspace --all-features)
    (cd "$dir" && CARGO_TARGET_DIR="$target" cargo clippy -q "${features[@]}" --all-targets -- -D warnings)
done

if command -v go >/dev/null; then
    echo "== gofmt -l bindings-go examples/go"
    unformatted="$(gofmt -l bindings-go examples/go)"
    if [ -n "$unformatted" ]; then
        echo "not gofmt-formatted:" >&2
        echo "$unformatted" >&2
        exit 1
    fi
    echo "== go vet (bindings-go, examples/go)"
    (cd bindings-go && CGO_ENABLED=1 go vet ./...)
    (cd examples/go && CGO_ENABLED=1 go vet ./...)
else
    echo "go not found: install Go >= 1.21" >&2
    exit 1
fi
echo "lint passed"
