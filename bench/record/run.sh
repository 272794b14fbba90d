#!/usr/bin/env bash
# Recorder benchmarks (crates/memwatch-record), one run, printed as a table:
#   - events/second recorded into SQLite and into PostgreSQL (a throwaway
#     cluster on 127.0.0.1, like the sql suite's) from 1 process and from 4
#     at once (4 into one SQLite file / one server); each process writes 64
#     watched counters, checks changes (64 events), and so on until N events,
#     then flushes (examples/record_load);
#     the rate is all events written / wall time until the last flush;
#   - the watched program's write loop with a recorder attached vs without
#     (examples/record_overhead: 1 MiB, 256 regions, default backend; the
#     writing thread's CPU time per pass). Target: <= 1.05x.
# Env: EVENTS (per process, default 200000), SECONDS_LOOP (default 3).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
events="${EVENTS:-200000}"
loop="${SECONDS_LOOP:-3}"

cargo build -q --release -p memwatch-record --examples
bin="$CARGO_TARGET_DIR/release/examples"
work="$CARGO_TARGET_DIR/bench-record"
rm -rf "$work"
mkdir -p "$work"

. ci/pg-cluster.sh
trap stop_pg_cluster EXIT
pg_cluster "$work/pg"

field() { sed -n "s/.*\b$1=\([0-9.]*\).*/\1/p"; }

# rate URL PROCS -> "events/s written dropped"
rate() {
    local url="$1" procs="$2" start end total=0 dropped=0
    start=$(date +%s.%N)
    for i in $(seq "$procs"); do
        "$bin/record_load" "$url" --events "$events" --queue "$events" --regions 64 >"$work/out.$i" &
    done
    wait
    end=$(date +%s.%N)
    for i in $(seq "$procs"); do
        total=$((total + $(field written <"$work/out.$i")))
        dropped=$((dropped + $(field dropped <"$work/out.$i")))
    done
    python3 -c "print(f'{$total / ($end - $start):,.0f} events/s ({$total} written, $dropped dropped)')"
}

echo
echo "| benchmark | measured |"
echo "|---|---|"
echo "| SQLite, 1 process | $(rate "$work/one.db" 1) |"
echo "| SQLite, 4 processes, one file | $(rate "$work/four.db" 4) |"
echo "| PostgreSQL, 1 process | $(rate "$PG_URL" 1) |"
echo "| PostgreSQL, 4 processes | $(rate "$PG_URL" 4) |"

base="$("$bin/record_overhead" none "$loop")"
lite="$("$bin/record_overhead" "$work/loop.db" "$loop")"
pg="$("$bin/record_overhead" "$PG_URL" "$loop")"
b=$(echo "$base" | field cpu_ns_per_pass)
ratio() {
    local c e
    c=$(echo "$1" | field cpu_ns_per_pass)
    e=$(echo "$1" | field written)
    python3 -c "print(f'{$c/1000:.1f} us/pass vs {$b/1000:.1f} us unrecorded: {$c/$b:.3f}x ($e events recorded)')"
}
echo "| write loop, 1 MiB, recording into SQLite | $(ratio "$lite") |"
echo "| write loop, 1 MiB, recording into PostgreSQL | $(ratio "$pg") |"
