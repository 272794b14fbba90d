"""System calls writing into watched memory: with writewatch they
succeed and are reported; the kernel writes count like any other write."""

from __future__ import annotations

import socket
from pathlib import Path

import memwatch

from conftest import require_backend


def test_readinto_and_recv_into_succeed_and_are_reported(tmp_path: Path) -> None:
    require_backend("writewatch")
    buf = bytearray(64)
    path = tmp_path / "payload"
    path.write_bytes(b"file bytes here!")
    # A long window: no background scan can fall between the two system
    # calls and split them into two events; check_changes() sees both.
    with memwatch.MemoryWatcher(backend="writewatch", writable_window_ms=60_000) as w:
        rid = w.watch(buf, "rx")
        with open(path, "rb", buffering=0) as f:
            assert f.readinto(memoryview(buf)[0:16]) == 16
        a, b = socket.socketpair()
        try:
            b.sendall(b"socket!!")
            assert a.recv_into(memoryview(buf)[40:48]) == 8
        finally:
            a.close()
            b.close()
        events = w.check_changes()
    assert len(events) == 1
    e = events[0]
    assert e.region_id == rid
    assert e.old_value == bytes(64)
    assert e.new_value == b"file bytes here!" + bytes(24) + b"socket!!" + bytes(16)
    assert e.changed_ranges == [(0, 16), (40, 8)]
