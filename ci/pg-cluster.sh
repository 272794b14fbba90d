# Sourced by ci/test-sql.sh and bench/record/run.sh: a throwaway PostgreSQL
# cluster in a folder ($1), run as the postgres user, on 127.0.0.1 and a free
# port, with a database "memwatch" owned by role "memwatch" (trust auth, so
# loopback only). Installs postgresql and sqlite3 (Debian) if missing.
# Sets PG_URL, PG_START, PG_STOP; stop_pg_cluster stops it (idempotent).
pg_cluster() {
    local cluster="$1"
    if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v sqlite3 >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql sqlite3 >/dev/null
    fi
    local pgbin
    pgbin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
    rm -rf "$cluster"
    mkdir -p "$cluster"
    chown postgres "$cluster"
    local port
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    runuser -u postgres -- "$pgbin/initdb" -D "$cluster/data" -A trust -U memwatch --no-sync >"$cluster/initdb.log"
    local opts="-c listen_addresses=127.0.0.1 -p $port -k $cluster -c fsync=off"
    PG_START="runuser -u postgres -- $pgbin/pg_ctl -D $cluster/data -l $cluster/server.log -w -o '$opts' start"
    PG_STOP="runuser -u postgres -- $pgbin/pg_ctl -D $cluster/data -m fast -w stop"
    PG_URL="postgresql://memwatch@127.0.0.1:$port/memwatch"
    eval "$PG_START" >/dev/null
    runuser -u postgres -- "$pgbin/createdb" -h 127.0.0.1 -p "$port" -U memwatch memwatch
}

stop_pg_cluster() {
    [ -n "${PG_STOP:-}" ] && eval "$PG_STOP" >/dev/null 2>&1 || true
}
