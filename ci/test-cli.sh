#!/usr/bin/env bash
# Tests of crates/memwatch-cli (the `memwatch` command): its unit tests
# (cargo test: TUI on ratatui's TestBackend, exposition, server, model), then
# end-to-end tests (pytest, tests/cli) against live producer processes: the
# TUI in tmux, the dashboard in headless Chromium, a real Prometheus server
# scraping `memwatch serve`, and `memwatch events --json`. Installs tmux,
# chromium, chromium-driver and prometheus itself. Servers bind 127.0.0.1
# (and one test 0.0.0.0 with a token); every process is stopped by the tests.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"

need=()
command -v tmux >/dev/null || need+=(tmux)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
command -v prometheus >/dev/null || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
    echo "== installing ${need[*]}"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq -o DPkg::Lock::Timeout=600 \
        --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian's prometheus package starts a system service on install; the tests
# run their own server on a free port and leave that one alone.

cargo test -p memwatch-cli
cargo build -p memwatch-cli --bin memwatch --example producer
export MEMWATCH_BIN="$CARGO_TARGET_DIR/debug/memwatch"
export PRODUCER_BIN="$CARGO_TARGET_DIR/debug/examples/producer"

py=python3
if ! "$py" -m pytest --version >/dev/null 2>&1; then
    source ci/python-venv.sh
    make_venv python3 "$CARGO_TARGET_DIR/cli-venv"
    py="$CARGO_TARGET_DIR/cli-venv/bin/python"
    "$py" -m pip install -q pytest
fi
"$py" -m pytest -q -p no:cacheprovider tests/cli "$@"
