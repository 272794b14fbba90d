"""Python get/put of 100-byte values: memwatch.store (pyo3), the same store
over ctypes (memstream_ctypes.py), and redis-py.

Each worker runs its ops twice: untimed for ops/s (all workers start at a
barrier; ops/s = all ops over first start to last end), then each op timed
for the latency percentiles (same harness for both clients).

Usage: bench.py --redis-port PORT [--procs 4] [--ops N] [--redis-ops N]
Prints one JSON line per (client, op, procs), like the Rust bench.
"""
import argparse
import json
import multiprocessing as mp
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

KEYS = 10_000


def key(i):
    return b"bench/key/%08d" % i


def worker(client, op, ops, store_name, port, value_size, seed, q, barrier):
    value = b"\xab" * value_size
    keys = [key(i) for i in range(KEYS)]
    if client == "memwatch":
        import memwatch.store
        s = memwatch.store.open(store_name)
        get, put = s.get, s.put
    elif client == "ctypes":
        from memstream_ctypes import MemStream
        s = MemStream(store_name, capacity=0)
        get, put = s.get, s.put
    else:
        import redis
        r = redis.Redis(host="127.0.0.1", port=port)
        get, put = r.get, r.set
    import random
    rnd = random.Random(seed)
    order = [keys[rnd.randrange(KEYS)] for _ in range(ops)]
    for k in order[: min(2000, ops)]:  # warm-up
        get(k)
    # Pass 1, throughput: the bare loop, all workers starting together.
    # Pass 2, latency: each op timed.
    barrier.wait()
    start = time.perf_counter()
    if op == "get":
        for k in order:
            get(k)
    else:
        for k in order:
            put(k, value)
    end = time.perf_counter()
    now = time.perf_counter_ns
    lat = [0] * ops
    if op == "get":
        for i, k in enumerate(order):
            t = now()
            get(k)
            lat[i] = now() - t
    else:
        for i, k in enumerate(order):
            t = now()
            put(k, value)
            lat[i] = now() - t
    q.put((start, end, lat))


def run(client, op, procs, ops, store_name, port, value_size):
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    barrier = ctx.Barrier(procs)
    ps = [ctx.Process(target=worker, args=(client, op, ops, store_name, port, value_size, 1000 + i, q, barrier))
          for i in range(procs)]
    for p in ps:
        p.start()
    results = [q.get() for _ in ps]
    for p in ps:
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f"{client} {op} worker failed")
    lat = sorted(l for _, _, ls in results for l in ls)
    # perf_counter is CLOCK_MONOTONIC: comparable across processes.
    span = max(e for _, e, _ in results) - min(s for s, _, _ in results)
    return {
        "client": "python-" + client,
        "op": op,
        "procs": procs,
        "ops_per_s": round(ops * procs / span),
        "p50_ns": lat[len(lat) // 2],
        "p99_ns": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "value_size": value_size,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis-port", type=int, required=True)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--ops", type=int, default=300_000)
    ap.add_argument("--redis-ops", type=int, default=30_000)
    ap.add_argument("--value-size", type=int, default=100)
    ap.add_argument("--no-ctypes", action="store_true", help="skip the ctypes rows (no libmemwatch.so)")
    a = ap.parse_args()
    import memwatch.store
    import redis
    name = f"store-pybench-{os.getpid()}"
    value = b"\xab" * a.value_size
    s = memwatch.store.connect(name, capacity=256 << 20)
    r = redis.Redis(host="127.0.0.1", port=a.redis_port)
    r.flushall()
    pipe = r.pipeline()
    for i in range(KEYS):
        s.put(key(i), value)
        pipe.set(key(i), value)
    pipe.execute()
    try:
        for op in ("get", "put"):
            for procs in sorted({1, a.procs}):
                clients = [("memwatch", a.ops), ("ctypes", a.ops), ("redis", a.redis_ops)]
                for client, ops in clients:
                    if client == "ctypes" and a.no_ctypes:
                        continue
                    print(json.dumps(run(client, op, procs, ops, name, a.redis_port, a.value_size)), flush=True)
    finally:
        s.close()
        memwatch.store.unlink(name)


if __name__ == "__main__":
    main()
