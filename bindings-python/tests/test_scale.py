"""The user's contract at the edges. Shared memory written by
another process (a multiprocessing.Array) is seen under ``auto`` (poll,
reported as a fallback) and an explicit protect/writewatch says in stats that
other writers are invisible; a ctypes object whose memory ctypes.resize()
could move is refused with a clear error.

The multiprocessing tests fork, so they run in a fresh interpreter.
"""

from __future__ import annotations

import ctypes

import pytest

import memwatch
from conftest import require_backend, run_python


def test_auto_sees_a_multiprocessing_array_written_by_another_process() -> None:
    result = run_python(
        """
        import multiprocessing as mp, memwatch
        arr = mp.Array("B", 16, lock=False)
        w = memwatch.MemoryWatcher()
        w.watch(arr, "arr")
        s = w.get_stats()
        assert s["fallback_regions"] == 1, s
        assert s["shared_regions"] == 0, s
        assert "shared mapping" in s["backend_reason"] and "uses poll" in s["backend_reason"], s

        def write(a):
            a[5] = 77

        p = mp.get_context("fork").Process(target=write, args=(arr,))
        p.start()
        p.join(10)
        assert p.exitcode == 0, p.exitcode
        events = w.check_changes()
        assert len(events) == 1, events
        ev = events[0]
        assert ev.variable_name == "arr"
        assert ev.changed_ranges == [(5, 1)], ev.changed_ranges
        assert ev.old_value == bytes(16), ev.old_value
        assert ev.new_value == bytes(5) + b"\\x4d" + bytes(10), ev.new_value
        assert w.check_changes() == []
        w.close()
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.parametrize("backend", ["protect", "writewatch"])
def test_explicit_backend_on_shared_memory_says_other_writers_are_invisible(backend: str) -> None:
    require_backend(backend)
    result = run_python(
        f"""
        import multiprocessing as mp, memwatch
        arr = mp.Array("B", 16, lock=False)
        w = memwatch.MemoryWatcher(backend={backend!r})
        w.watch(arr, "arr")
        s = w.get_stats()
        assert s["shared_regions"] == 1, s
        assert "invisible to " in s["backend_reason"], s
        arr[0] = 1  # this process's own write is seen
        events = w.check_changes()
        assert len(events) == 1 and events[0].new_value == b"\\x01" + bytes(15), events
        w.close()
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.parametrize("backend", ["protect", "writewatch", "poll"])
def test_ctypes_object_that_owns_its_memory_is_refused(backend: str) -> None:
    require_backend(backend)
    with memwatch.MemoryWatcher(backend=backend) as w:
        owned = (ctypes.c_uint8 * 32)()
        for obj in (owned, memoryview(owned), ctypes.c_int64(5)):
            with pytest.raises(memwatch.InvalidArgumentError, match="ctypes.resize"):
                w.watch(obj, "owned")
        assert w.watched() == []
        # One that does not own its memory is watched; resize is refused by
        # ctypes itself, and the watch goes on unharmed.
        backing = bytearray(32)
        pinned = (ctypes.c_uint8 * 32).from_buffer(backing)
        w.watch(pinned, "pinned")
        with pytest.raises(ValueError, match="doesn't own"):
            ctypes.resize(pinned, 4096)
        pinned[3] = 9
        events = w.check_changes()
        assert len(events) == 1, events
        assert events[0].new_value == bytes(3) + b"\x09" + bytes(28)


def test_pending_events_are_delivered_at_exit() -> None:
    """The seed's example: a callback, a write, and the script ends without
    check_changes(): atexit delivers what is pending (up to EXIT_FLUSH_TIMEOUT_MS)."""
    result = run_python(
        """
        import memwatch
        data = bytearray(8)
        w = memwatch.MemoryWatcher()
        w.set_callback(lambda e: print("event", e.variable_name, e.new_value.hex(), flush=True))
        w.watch(data, "data")
        data[2] = 0xAB
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:1] == ["event data 0000ab0000000000"], result.stdout


def test_keyboard_interrupt_interrupts_check_changes_waiting_for_a_callback() -> None:
    result = run_python(
        """
        import os, signal, threading, time, memwatch
        # Python installs its Ctrl-C handler only if SIGINT was not ignored
        # at startup, and a shell without job control ignores it in its
        # background jobs (a test suite started with `&`): install it here.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        release, started = threading.Event(), threading.Event()
        data = bytearray(8)
        w = memwatch.MemoryWatcher()
        w.set_callback(lambda e: (started.set(), release.wait(20)))
        w.watch(data, "data")
        data[0] = 1
        # The worker delivers the change on its own: the callback is running
        # (and check_changes() below must wait for it) before the check.
        print("started", started.wait(10))
        threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        start = time.monotonic()
        try:
            w.check_changes()
            print("not interrupted")
        except KeyboardInterrupt:
            print("interrupted", time.monotonic() - start < 5)
        release.set()
        w.check_changes()  # usable after the interrupt
        w.close()
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["started", "True", "interrupted", "True"], (
        result.stdout + result.stderr
    )


def test_daemon_thread_inside_memwatch_at_finalization_does_not_abort() -> None:
    """A daemon thread waits in check_changes() (GIL released) on a slow
    callback while the main thread ends: the process exits cleanly."""
    result = run_python(
        """
        import threading, time, memwatch
        data = bytearray(8)
        w = memwatch.MemoryWatcher()
        w.set_callback(lambda e: time.sleep(0.2))
        w.watch(data, "data")
        def spin():
            i = 0
            while True:
                i += 1
                data[0] = i & 255
                w.check_changes()
        threading.Thread(target=spin, daemon=True).start()
        time.sleep(0.3)
        print("main done", flush=True)
        """
    )
    assert "FATAL" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "main done"


def test_an_undrained_queue_merges_changes_into_a_coalesced_event() -> None:
    """Nobody drains: past 1024 pending events, later changes of the region
    are merged into its pending event, whose ``coalesced`` says how many
    changes it stands for; every change is in some event."""
    import struct
    import time

    data = bytearray(8)
    w = memwatch.MemoryWatcher(backend="poll", poll_interval_ms=1)
    try:
        w.watch(data, "counter")
        i = 0
        while w.get_stats()["coalesced_events"] < 50:
            i += 1
            data[:] = struct.pack("<Q", i)
            time.sleep(0.0003)
            assert i < 1_000_000, w.get_stats()
        stats = w.get_stats()
        assert stats["pending_events"] == 1024, stats
        events = w.check_changes()
        assert len(events) in (1024, 1025), len(events)
        values = [(struct.unpack("<Q", e.old_value)[0], struct.unpack("<Q", e.new_value)[0]) for e in events]
        assert values[0][0] == 0 and values[-1][1] == i
        assert all(a[1] == b[0] for a, b in zip(values, values[1:])), "each old value is the previous new value"
        stats = w.get_stats()
        assert sum(e.coalesced for e in events) == stats["events"]
        assert sum(e.coalesced for e in events) - len(events) == stats["coalesced_events"]
        assert max(e.coalesced for e in events) > 1
        assert all(e.coalesced == 1 for e in events[:1023])
        assert events[-1].to_dict()["coalesced"] == events[-1].coalesced
    finally:
        w.close()
