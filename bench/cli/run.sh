#!/usr/bin/env bash
# Benchmark of the `memwatch` command observing 10 000 fields (100 objects x
# 100 u64 gauges, every one of them changed by the producer every 100 ms):
# CPU of `memwatch top` (in tmux, all objects expanded) and of `memwatch
# serve` (sampler alone, and with one dashboard event stream connected) at
# the default refresh (100 ms), and the time of one /metrics scrape.
# Prints a markdown table. Usage: bash bench/cli/run.sh [SECONDS per row, default 10]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
secs="${1:-10}"
command -v tmux >/dev/null || { echo "needs tmux (apt-get install tmux)"; exit 1; }
echo "== building (release)" >&2
cargo build -q --release -p memwatch-cli --bin memwatch --example producer
bin="$CARGO_TARGET_DIR/release"
tmp="$(mktemp -d)"
export MEMGLASS_DIR="$tmp/shm"
sock="memwatch-bench-$$"
pids=()
cleanup() {
    tmux -L "$sock" kill-server 2>/dev/null || true
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

mkfifo "$tmp/in"
"$bin/examples/producer" --session bench --symbols "" --wide 10000 --churn-ms 100 <"$tmp/in" >"$tmp/out" &
pids+=($!)
exec 3>"$tmp/in"
for _ in $(seq 100); do grep -q ready "$tmp/out" 2>/dev/null && break; sleep 0.1; done

# CPU of process $1 over $secs seconds, in % of one core (utime+stime from /proc).
cpu() {
    python3 - "$1" "$secs" <<'PY'
import os, sys, time
pid, secs = sys.argv[1], float(sys.argv[2])
tick = os.sysconf("SC_CLK_TCK")
def t():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick
a, t0 = t(), time.monotonic()
time.sleep(secs)
print(f"{100 * (t() - a) / (time.monotonic() - t0):.2f}")
PY
}

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

tmux -L "$sock" new-session -d -x 160 -y 50 -e MEMGLASS_DIR="$MEMGLASS_DIR" "$bin/memwatch top bench"
sleep 1
tmux -L "$sock" send-keys -t 0 e
sleep 1
top_pid=$(pgrep -f "^$bin/memwatch top bench" | head -1)
top_cpu=$(cpu "$top_pid")
tmux -L "$sock" kill-server

"$bin/memwatch" serve bench --listen "127.0.0.1:$port" 2>"$tmp/serve.err" &
serve_pid=$!
pids+=($serve_pid)
for _ in $(seq 100); do grep -q serving "$tmp/serve.err" 2>/dev/null && break; sleep 0.1; done
sleep 1
serve_cpu=$(cpu "$serve_pid")
curl -sN "http://127.0.0.1:$port/api/events" >/dev/null &
curl_pid=$!
pids+=($curl_pid)
sleep 1
serve_sse_cpu=$(cpu "$serve_pid")
kill "$curl_pid" 2>/dev/null || true

scrape=$(python3 - "$port" <<'PY'
import sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/metrics"
ts, size, series = [], 0, 0
for _ in range(30):
    t0 = time.perf_counter()
    body = urllib.request.urlopen(url).read()
    ts.append(time.perf_counter() - t0)
    size = len(body)
    series = sum(1 for l in body.splitlines() if not l.startswith(b"#"))
ts.sort()
print(f"p50 {ts[len(ts)//2]*1e3:.1f} ms, max {ts[-1]*1e3:.1f} ms ({series} series, {size/1e6:.2f} MB)")
PY
)

echo
echo "| benchmark (10 000 fields, all changing every 100 ms; default refresh 100 ms) | measured | target |"
echo "|---|---|---|"
echo "| \`memwatch top\`, CPU, all objects expanded (160x50 terminal) | ${top_cpu}% of one core | < 5% |"
echo "| \`memwatch serve\`, CPU, no client | ${serve_cpu}% of one core | < 5% |"
echo "| \`memwatch serve\`, CPU, one dashboard event stream | ${serve_sse_cpu}% of one core | < 5% |"
echo "| \`/metrics\` scrape (30 scrapes) | ${scrape} | |"
