#!/usr/bin/env bash
# The sql suite: crates/memwatch-record against SQLite and a real PostgreSQL
# server (a throwaway cluster under target/, on 127.0.0.1 and a free port,
# stopped at the end even on failure), and the SQLite extension
# crates/memwatch-sqlite loaded by Debian's sqlite3 shell.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"

. ci/pg-cluster.sh
trap stop_pg_cluster EXIT
pg_cluster "$CARGO_TARGET_DIR/pg-test"

export MEMWATCH_TEST_PG_URL="$PG_URL"
export MEMWATCH_TEST_PG_START="$PG_START"
export MEMWATCH_TEST_PG_STOP="$PG_STOP"
# Every target (unit, sqlite, postgres, doc tests; the examples the
# multi-process tests run are built by this too).
cargo test -p memwatch-record
# The SQLite extension: its own cargo project (a loadable extension uses the
# loading program's SQLite), tested through the sqlite3 shell.
export MEMWATCH_TEST_RECORD_LOAD="$CARGO_TARGET_DIR/debug/examples/record_load"
(cd crates/memwatch-sqlite && cargo fmt --check && cargo clippy --all-targets -- -D warnings && cargo test)
