#!/usr/bin/env bash
# The README's demo command: builds memwatch and runs the demo, which watches a
# few variables and prints each change (name, changed bytes, old -> new, thread).
# The Python demo (the main one) when its script is present, then the Rust one.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
if [ -f ci/demo-python.sh ]; then
    echo "== Python demo"
    bash ci/demo-python.sh
    echo
fi
echo "== Rust demo"
cargo run -q --release -p memwatch-core --example demo
