#!/usr/bin/env bash
# Benchmark: get/put of 100-byte values with 1 and 4 processes.
#   Rust:   memwatch-store (examples/store_bench.rs)
#   Python: memwatch.store (the pyo3 module of the memwatch package), the same
#           store over ctypes (bench/store/memstream_ctypes.py), and redis-py
# Installs redis-server and redis-py if missing, runs redis on 127.0.0.1 on a
# free port for the duration, and prints a markdown table.
# Python: $PYTHON if set (it must import memwatch.store and redis), else a
# virtualenv in $CARGO_TARGET_DIR/py-venv into which the memwatch package of
# this checkout and redis-py are installed (the same one examples/store/run.sh uses).
# Env: PROCS (4), OPS (Rust ops per process, 1000000), PY_OPS (300000),
#      REDIS_OPS (30000), PYTHON.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/store}"
PROCS="${PROCS:-4}"

if ! command -v redis-server >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
if [ -n "${PYTHON:-}" ]; then
  py="$PYTHON"
else
  venv="$CARGO_TARGET_DIR/py-venv"
  . "$root/ci/python-venv.sh"
  make_venv python3 "$venv"
  py="$venv/bin/python"
  "$py" -m pip install --quiet --disable-pip-version-check "$root/bindings-python"
fi
"$py" -c "import redis" 2>/dev/null || "$py" -m pip install --quiet --disable-pip-version-check redis
"$py" -c "import memwatch.store"

cargo build -q --manifest-path "$root/Cargo.toml" --release -p memwatch-store --example store_bench
cargo build -q --manifest-path "$root/Cargo.toml" --release -p memwatch-c
export MEMWATCH_STORE_LIB="$CARGO_TARGET_DIR/release/libmemwatch.so"

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --daemonize no --loglevel warning >/dev/null &
redis_pid=$!
out="$(mktemp)"
cleanup() {
  kill "$redis_pid" 2>/dev/null || true
  wait "$redis_pid" 2>/dev/null || true
  rm -f "$out"
}
trap cleanup EXIT
for _ in $(seq 100); do
  "$py" -c "import redis,sys; redis.Redis(port=$port).ping()" 2>/dev/null && break
  sleep 0.1
done

echo "# machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
"$CARGO_TARGET_DIR/release/examples/store_bench" --procs "$PROCS" --ops "${OPS:-1000000}" --value-size 100 | tee -a "$out" >&2
"$py" "$here/bench.py" --redis-port "$port" --procs "$PROCS" --ops "${PY_OPS:-300000}" --redis-ops "${REDIS_OPS:-30000}" --value-size 100 | tee -a "$out" >&2
python3 "$here/report.py" "$out"
