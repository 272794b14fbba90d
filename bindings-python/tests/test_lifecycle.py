"""Watched objects are pinned: resizing, deleting and garbage-collecting them."""

from __future__ import annotations

import array
import gc
import mmap
import weakref

import numpy as np
import pytest

import memwatch


def test_growing_a_watched_bytearray_raises_buffer_error(watcher: memwatch.MemoryWatcher) -> None:
    data = bytearray(b"abc")
    region = watcher.watch(data, "data")
    for resize in (lambda: data.append(1), lambda: data.extend(b"xyz"), lambda: data.__delitem__(0),
                   lambda: data.clear(), lambda: data.__setitem__(slice(0, 1), b"12345")):
        with pytest.raises(BufferError):
            resize()
    assert data == b"abc"
    data[0] = ord("A")  # same-size writes are fine and are reported
    [ev] = watcher.check_changes()
    assert (ev.old_value, ev.new_value) == (b"abc", b"Abc")
    assert watcher.unwatch(region) is True
    data.extend(b"def")  # released: it can grow again
    assert data == b"Abcdef"
    assert watcher.check_changes() == []


def test_resizing_a_watched_numpy_array_fails(watcher: memwatch.MemoryWatcher) -> None:
    # numpy refuses to resize an array that is referenced elsewhere; the
    # export memwatch holds is such a reference. (resize(refcheck=False)
    # skips that check and is documented by numpy as the caller's risk.)
    arr = np.zeros(8)
    region = watcher.watch(arr, "arr")
    with pytest.raises(ValueError, match="resize"):
        arr.resize(16)
    assert arr.shape == (8,)
    assert watcher.unwatch(region)
    arr.resize(16)
    assert arr.shape == (16,)


def test_watched_mmap_cannot_be_closed(watcher: memwatch.MemoryWatcher) -> None:
    m = mmap.mmap(-1, mmap.PAGESIZE)
    region = watcher.watch(m, "m")
    with pytest.raises(BufferError):
        m.close()
    assert not m.closed
    assert watcher.unwatch(region)
    m.close()
    assert m.closed


def test_watched_memoryview_cannot_be_released(watcher: memwatch.MemoryWatcher) -> None:
    backing = bytearray(16)
    view = memoryview(backing)
    watcher.watch(view, "view")
    with pytest.raises(BufferError):
        view.release()
    watcher.stop_all()
    view.release()
    backing.append(0)


def test_deleted_watched_object_stays_alive_until_unwatched(watcher: memwatch.MemoryWatcher) -> None:
    arr = array.array("b", [0] * 16)
    ref = weakref.ref(arr)
    view_for_writes = memoryview(arr)
    region = watcher.watch(arr, "arr")
    del arr
    gc.collect()
    assert ref() is not None, "a watched object must be pinned"
    view_for_writes[2] = 5
    [ev] = watcher.check_changes()
    assert ev.changed_ranges == [(2, 1)]
    view_for_writes.release()
    assert watcher.unwatch(region)
    gc.collect()
    assert ref() is None, "unwatch must release the object"


def test_numpy_array_collected_after_close(backend: str) -> None:
    arr = np.ones(32)
    ref = weakref.ref(arr)
    w = memwatch.MemoryWatcher(backend=backend)
    w.watch(arr, "arr")
    del arr
    gc.collect()
    assert ref() is not None
    w.close()
    gc.collect()
    assert ref() is None


def test_dropping_the_watcher_releases_its_objects(backend: str) -> None:
    data = bytearray(8)
    arr = np.zeros(4)
    ref = weakref.ref(arr)
    w = memwatch.MemoryWatcher(backend=backend)
    w.watch(data, "data")
    w.watch(arr, "arr")
    del arr
    del w
    gc.collect()
    data.append(1)
    assert ref() is None


class _Owner:
    """Owns a watcher whose callback is one of its own methods (a reference cycle)."""

    def __init__(self, backend: str, data: bytearray) -> None:
        self.seen: list = []
        self.watcher = memwatch.MemoryWatcher(backend=backend)
        self.watcher.watch(data, "data")
        self.watcher.set_callback(self.on_change)

    def on_change(self, event: memwatch.ChangeEvent) -> None:
        self.seen.append(event)


def test_cycle_through_the_callback_is_collected(backend: str) -> None:
    data = bytearray(8)
    owner = _Owner(backend, data)
    data[0] = 1
    assert owner.watcher.check_changes() == []
    assert [e.changed_ranges for e in owner.seen] == [[(0, 1)]]
    ref = weakref.ref(owner)
    del owner
    gc.collect()
    assert ref() is None, "owner -> watcher -> callback -> owner must be collectable"
    data.append(1)  # the watcher was closed and released the buffer


def test_writes_after_unwatch_of_freed_memory_are_harmless(backend: str) -> None:
    w = memwatch.MemoryWatcher(backend=backend)
    for _ in range(50):
        m = mmap.mmap(-1, mmap.PAGESIZE)
        region = w.watch(m, "m")
        m[0] = 1
        assert len(w.check_changes()) == 1
        assert w.unwatch(region)
        m.close()  # unmapped after unwatch: the engine must not touch it again
    assert w.check_changes() == []
    assert w.get_stats()["regions"] == 0
    w.close()


def test_many_watchers_and_regions(backend: str) -> None:
    bufs = [bytearray(32) for _ in range(200)]
    watchers = [memwatch.MemoryWatcher(backend=backend) for _ in range(4)]
    for i, b in enumerate(bufs):
        watchers[i % 4].watch(b, f"b{i}")
    for i, b in enumerate(bufs):
        b[i % 32] = 1
    for k, w in enumerate(watchers):
        names = sorted(e.variable_name for e in w.check_changes())
        assert names == sorted(f"b{i}" for i in range(k, 200, 4))
        w.close()
    for b in bufs:
        b.append(0)
