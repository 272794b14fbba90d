"""analytics.py: scans the store's statistics while the others work.

Prints store-wide stats and the most read keys with their timestamps.
Usage: analytics.py STORE [TOP]
"""
import sys
import time

from reader import open_store


def fmt_ns(ns: int) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ns / 1e9)) + ".%03d" % (ns // 1_000_000 % 1000)


def report(store, top):
    s = store.stats()
    print(f"analytics: entries={s['entries']}/{s['max_entries']} bytes_used={s['bytes_used']} "
          f"hits={s['hits']} misses={s['misses']} puts={s['puts']} evictions={s['evictions']} "
          f"recoveries={s['recoveries']}")
    rows = []
    for k in store.keys():
        ks = store.key_stats(k)
        if ks is not None:
            rows.append((ks["access_count"], k, ks))
    rows.sort(key=lambda r: (-r[0], r[1]))
    for count, k, ks in rows[:top]:
        print(f"  {k.decode(errors='replace'):<16} reads={count:<7} size={ks['value_size']:<4} "
              f"created={fmt_ns(ks['created_at_ns'])} last_access={fmt_ns(ks['last_access_ns'])}")
    return s


def main():
    store = open_store(sys.argv[1])
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    while store.get(b"writer/done") is None:
        report(store, top)
        time.sleep(1.0)
    s = report(store, top)
    if s["hits"] == 0 or s["puts"] == 0:
        raise SystemExit("analytics: no activity seen")


if __name__ == "__main__":
    main()
