#!/usr/bin/env bash
# The sql suite: crates/memwatch-record against SQLite and a real PostgreSQL
# server (a throwaway cluster under target/, on 127.0.0.1 and a free port,
# stopped at the end even on failure), and the SQLite extension
# crates/memwatch-sqlite loaded by Debian's sqlite3 shell.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v sqlite3 >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql sqlite3 >/dev/null
fi
pgbin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"

cluster="$CARGO_TARGET_DIR/pg-test"
rm -rf "$cluster"
mkdir -p "$cluster"
chown postgres "$cluster"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
as_pg() { runuser -u postgres -- "$@"; }
as_pg "$pgbin/initdb" -D "$cluster/data" -A trust -U memwatch --no-sync >"$cluster/initdb.log"
pg_opts="-c listen_addresses=127.0.0.1 -p $port -k $cluster -c fsync=off"
start_cmd="runuser -u postgres -- $pgbin/pg_ctl -D $cluster/data -l $cluster/server.log -w -o '$pg_opts' start"
stop_cmd="runuser -u postgres -- $pgbin/pg_ctl -D $cluster/data -m fast -w stop"
stop_server() { eval "$stop_cmd" >/dev/null 2>&1 || true; }
trap stop_server EXIT
eval "$start_cmd" >/dev/null
as_pg "$pgbin/createdb" -h 127.0.0.1 -p "$port" -U memwatch memwatch

export MEMWATCH_TEST_PG_URL="postgresql://memwatch@127.0.0.1:$port/memwatch"
export MEMWATCH_TEST_PG_START="$start_cmd"
export MEMWATCH_TEST_PG_STOP="$stop_cmd"
# Every target (unit, sqlite, postgres, doc tests; the examples the
# multi-process tests run are built by this too).
cargo test -p memwatch-record
# The SQLite extension: its own cargo project (a loadable extension uses the
# loading program's SQLite), tested through the sqlite3 shell.
export MEMWATCH_TEST_RECORD_LOAD="$CARGO_TARGET_DIR/debug/examples/record_load"
(cd crates/memwatch-sqlite && cargo fmt --check && cargo clippy --all-targets -- -D warnings && cargo test)
