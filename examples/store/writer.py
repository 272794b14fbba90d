"""writer.py: creates the store and keeps writing sensor readings.

Each value is b"<version>:<payload>:<crc32>" so readers can verify it.
Usage: writer.py STORE [SECONDS] [KEYS]
"""
import sys
import time
import zlib

import memwatch.store


def make_value(key: bytes, version: int) -> bytes:
    payload = (key * (1 + version % 7))[:200] + b"#" + str(version).encode()
    body = b"%d:%s" % (version, payload)
    return body + b":%08x" % zlib.crc32(body)


def main():
    name = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
    nkeys = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    store = memwatch.store.connect(name, capacity=16 << 20, policy="evict_lru")
    keys = [b"sensor/%03d" % i for i in range(nkeys)]
    version, end = 0, time.time() + seconds
    for k in keys:  # everything exists before readers start counting
        store.put(k, make_value(k, 0))
    store.put(b"writer/ready", b"1")
    while time.time() < end:
        version += 1
        for k in keys:
            store.put(k, make_value(k, version))
    store.put(b"writer/done", str(version).encode())
    print(f"writer: {version} rounds x {nkeys} keys = {version * nkeys} puts")
    store.close()


if __name__ == "__main__":
    main()
