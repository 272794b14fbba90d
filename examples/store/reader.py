"""reader.py: reads the writer's keys while it writes, verifying every value.

Usage: reader.py STORE
Exits non-zero if a value is ever torn or corrupt.
"""
import sys
import time
import zlib

import memwatch.store


def check(key: bytes, value: bytes) -> int:
    body, _, crc = value.rpartition(b":")
    if b"%08x" % zlib.crc32(body) != crc:
        raise SystemExit(f"reader: TORN value for {key!r}: {value[:60]!r}")
    return int(body.split(b":", 1)[0])


def open_store(name):
    """Opens the store, waiting up to 30 s for the writer to create it."""
    deadline = time.time() + 30
    while True:
        try:
            return memwatch.store.open(name)
        except memwatch.store.StoreNotFoundError:
            if time.time() > deadline:
                raise
            time.sleep(0.05)


def main():
    store = open_store(sys.argv[1])
    while store.get(b"writer/ready") is None:
        time.sleep(0.01)
    keys = [k for k in store.keys() if k.startswith(b"sensor/")]
    reads, newest, last_seen = 0, 0, {}
    while store.get(b"writer/done") is None:
        for k in keys:
            v = store.get(k)
            if v is None:
                continue
            ver = check(k, v)
            if reads % 64 == 0:  # now and then zero-copy: the pinned bytes are one whole version
                with store.view(k) as mv:
                    check(k, bytes(mv))
            if ver < last_seen.get(k, 0):
                raise SystemExit(f"reader: {k!r} went back in time: {ver} < {last_seen[k]}")
            last_seen[k] = ver
            newest = max(newest, ver)
            reads += 1
    print(f"reader: {reads} reads verified over {len(keys)} keys, newest version seen {newest}")


if __name__ == "__main__":
    main()
