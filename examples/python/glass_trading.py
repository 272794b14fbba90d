"""The seed's trading example in Python with memwatch.glass, two processes.

    python glass_trading.py produce [seconds]   # publishes 4 instruments
    python glass_trading.py observe [seconds]   # another terminal: prints changes

The producer's layout comes from the ctypes.Structure below (no schema);
the observer can as well be `cargo run -p memglass --example
trading_observer` or `memwatch top trading`.
"""

import ctypes
import sys
import time

import memwatch.glass as glass


class Quote(ctypes.Structure):
    _fields_ = [
        ("bid_price", ctypes.c_double),
        ("ask_price", ctypes.c_double),
        ("bid_size", ctypes.c_uint32),
        ("ask_size", ctypes.c_uint32),
    ]
    _glass_meta_ = {"bid_price": {"unit": "USD"}, "ask_price": {"unit": "USD"}}


class Instrument(ctypes.Structure):
    _fields_ = [
        ("symbol", ctypes.c_char * 8),
        ("quote", Quote),
        ("position", ctypes.c_int64),
        ("orders", ctypes.c_uint64),
    ]
    _glass_meta_ = {"orders": {"semantics": "counter", "help": "orders sent"}}


def produce(seconds: float) -> None:
    with glass.Producer("trading-py") as p:
        books = []
        for i, sym in enumerate(["AAPL", "MSFT", "GOOG", "AMZN"]):
            b = p.create(sym, Instrument)
            b.symbol = sym.encode()
            b.quote.bid_price = 100.0 * (i + 1)
            b.quote.ask_price = b.quote.bid_price + 0.01
            books.append(b)
        print("producing session trading-py", flush=True)
        end = time.monotonic() + seconds
        tick = 0
        while time.monotonic() < end:
            tick += 1
            for b in books:
                b.quote.bid_price += 0.01 if tick % 2 else -0.01
                b.quote.ask_price = b.quote.bid_price + 0.01
                b.quote.bid_size = 100 + tick % 900
                b.orders += 1
                b.position += 100 if tick % 3 == 0 else 0
            time.sleep(0.01)
        print(f"{tick} ticks", flush=True)


def observe(seconds: float) -> None:
    o = glass.Observer("trading-py")
    info = o.session_info()
    print(f"session {info['name']} pid {info['pid']} {info['liveness']} ({info['object_count']} objects)")
    n = 0
    for e in o.events(interval=0.05, timeout=seconds):
        n += 1
        if e["kind"] == "field" and n <= 20:
            print(f"{e['label']:>6} {e['path']:<16} {e['old']} -> {e['new']}")
    for obj in o.objects():
        print(obj["label"], o.snapshot(obj["label"]))
    print(f"{n} changes; producer {o.liveness()}")


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "produce"
    secs = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    produce(secs) if mode == "produce" else observe(secs)
