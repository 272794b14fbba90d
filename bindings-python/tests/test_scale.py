"""Issue 20: the user's contract at the edges. Shared memory written by
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
