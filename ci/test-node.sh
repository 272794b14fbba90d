#!/usr/bin/env bash
# ci/test-node.sh: build the memwatch Node.js package (napi-rs addon) and run
# its node:test suite, which includes every tests/behavior scenario, the
# WebAssembly-trap, worker_threads, process-exit, TypeScript (tsc --noEmit)
# and `npm pack` -> install -> run-the-examples tests.
#
# Works on a fresh Debian machine with Node 20 + npm and Rust preinstalled:
# the dev tools (typescript, @types/node) come from package-lock.json via
# `npm ci`; nothing else is needed.
# Env: CARGO_TARGET_DIR_NODE (default bindings-node/target).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_NODE:-$ROOT/bindings-node/target}"
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false

# test/record.test.js reads recordings back with Debian's sqlite3 shell.
if ! command -v sqlite3 >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sqlite3 >/dev/null
fi

cd "$ROOT/bindings-node"
echo "== node $(node --version), npm $(npm --version 2>/dev/null), $(cargo --version)"

echo "== npm ci"
npm ci --no-audit --no-fund

echo "== building the addon (cargo build --release)"
npm run --silent build

echo "== node --test"
# The runner prints its own totals (# tests / # pass / # fail) and exits
# non-zero on any failure.
node --test test/*.test.js
