"""Turns the JSON lines of the Rust and Python benches into a markdown table."""
import json
import sys


def fmt_ns(ns):
    return f"{ns / 1000:.2f} us" if ns >= 1000 else f"{ns} ns"


def main():
    rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
    by = {(r["client"], r["op"], r["procs"]): r for r in rows}
    print("| client | op | procs | ops/s | p50 | p99 | vs redis-py |")
    print("|---|---|---:|---:|---:|---:|---:|")
    order = {"rust": 0, "python-memwatch": 1, "python-ctypes": 2, "python-redis": 3}
    for r in sorted(rows, key=lambda r: (order.get(r["client"], 9), r["op"], r["procs"])):
        red = by.get(("python-redis", r["op"], r["procs"]))
        ratio = f"{r['ops_per_s'] / red['ops_per_s']:.1f}x" if red and r["client"] != "python-redis" else ""
        name = {"rust": "Rust memwatch-store", "python-memwatch": "Python memwatch.store (pyo3)",
                "python-ctypes": "Python ctypes memwatch-store", "python-redis": "Python redis-py"}.get(r["client"], r["client"])
        print(f"| {name} | {r['op']} | {r['procs']} | {r['ops_per_s']:,} | {fmt_ns(r['p50_ns'])} | {fmt_ns(r['p99_ns'])} | {ratio} |")


if __name__ == "__main__":
    main()
