"""Every kind of buffer memwatch accepts, and every kind it refuses."""

from __future__ import annotations

import array
import ctypes
import mmap
from typing import Any, Callable, List, Tuple

import numpy as np
import pytest

import memwatch


class Kind:
    """A buffer kind: how to make one, how to write to it, what must be reported."""

    def __init__(
        self,
        name: str,
        make: Callable[[], Any],
        write: Callable[[Any], None],
        size: int,
        ranges: List[Tuple[int, int]],
        patches: List[Tuple[int, bytes]],
    ) -> None:
        self.name = name
        self.make = make
        self.write = write
        self.size = size
        self.ranges = ranges
        self.patches = patches

    def expected_new(self) -> bytes:
        out = bytearray(self.size)
        for offset, data in self.patches:
            out[offset : offset + len(data)] = data
        return bytes(out)


def _f64_le(x: float) -> bytes:
    return np.array([x], dtype="<f8").tobytes()


def _set(obj: Any, index: int, value: Any) -> None:
    obj[index] = value


_backing: List[Any] = []  # keeps the bytearray behind the memoryview kinds alive


def _view_of_new_bytearray(n: int) -> memoryview:
    b = bytearray(n)
    _backing.append(b)
    return memoryview(b)


def _slice_of_new_bytearray() -> memoryview:
    b = bytearray(64)
    _backing.append(b)
    return memoryview(b)[16:48]


KINDS = [
    Kind("bytearray", lambda: bytearray(64), lambda b: _set(b, 5, 0x2A), 64, [(5, 1)], [(5, b"\x2a")]),
    Kind("memoryview", lambda: _view_of_new_bytearray(64), lambda m: _set(m, 63, 0xFF), 64, [(63, 1)], [(63, b"\xff")]),
    Kind(
        "memoryview_slice",
        _slice_of_new_bytearray,
        lambda m: m.__setitem__(slice(0, 3), b"abc"),
        32,
        [(0, 3)],
        [(0, b"abc")],
    ),
    Kind(
        "numpy_int32",
        lambda: np.zeros(16, dtype="<i4"),
        lambda a: _set(a, 3, 0x01020304),
        64,
        [(12, 4)],
        [(12, bytes([4, 3, 2, 1]))],
    ),
    Kind(
        "numpy_2d_c_order",
        lambda: np.zeros((4, 4), dtype="<f8"),
        lambda a: _set(a, (1, 2), 1.0),  # byte offset (1*4+2)*8 = 48; 1.0 = 00..f03f
        128,
        [(54, 2)],
        [(48, _f64_le(1.0))],
    ),
    Kind(
        "numpy_fortran_order",
        lambda: np.zeros((4, 4), dtype="<f8", order="F"),
        lambda a: _set(a, (1, 2), 1.0),  # byte offset (1+2*4)*8 = 72
        128,
        [(78, 2)],
        [(72, _f64_le(1.0))],
    ),
    Kind("mmap", lambda: mmap.mmap(-1, mmap.PAGESIZE), lambda m: _set(m, 100, 7), mmap.PAGESIZE, [(100, 1)], [(100, b"\x07")]),
    Kind(
        "array_array",
        lambda: array.array("H", [0] * 8),
        lambda a: _set(a, 2, 0xBEEF),
        8 * array.array("H").itemsize,
        [(4, 2)],
        [(4, (0xBEEF).to_bytes(2, "little"))],
    ),
    Kind("ctypes_array", lambda: (ctypes.c_uint8 * 32).from_buffer(bytearray(32)), lambda a: _set(a, 31, 1), 32, [(31, 1)], [(31, b"\x01")]),
]


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_buffer_kind_reports_exact_change(kind: Kind, watcher: memwatch.MemoryWatcher) -> None:
    obj = kind.make()
    region = watcher.watch(obj, kind.name, metadata={"kind": kind.name})
    assert watcher.check_changes() == []
    kind.write(obj)
    events = watcher.check_changes()
    assert len(events) == 1, events
    ev = events[0]
    assert ev.region_id == region
    assert ev.variable_name == kind.name
    assert ev.how_big == kind.size
    assert ev.changed_ranges == kind.ranges
    assert ev.old_value == bytes(kind.size)
    assert ev.new_value == kind.expected_new()
    assert ev.metadata == {"kind": kind.name}
    assert ev.adapter_id == 2
    assert watcher.check_changes() == []
    assert watcher.unwatch(region) is True
    if isinstance(obj, mmap.mmap):
        obj.close()


# -- refused objects --------------------------------------------------------


def _readonly_numpy() -> np.ndarray:
    a = np.zeros(8)
    a.flags.writeable = False
    return a


def _readonly_mmap() -> mmap.mmap:
    return mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ)


READ_ONLY = [
    ("bytes", lambda: b"hello"),
    ("memoryview_of_bytes", lambda: memoryview(b"hello")),
    ("readonly_memoryview", lambda: memoryview(bytearray(8)).toreadonly()),
    ("readonly_numpy", _readonly_numpy),
    ("readonly_mmap", _readonly_mmap),
]


@pytest.mark.parametrize("make", [m for _, m in READ_ONLY], ids=[n for n, _ in READ_ONLY])
def test_read_only_buffers_raise_type_error_saying_why(make: Callable[[], Any], watcher: memwatch.MemoryWatcher) -> None:
    obj = make()
    with pytest.raises(TypeError, match="read-only") as info:
        watcher.watch(obj, "ro")
    assert isinstance(info.value, memwatch.ReadOnlyError)
    assert "nothing to watch" in str(info.value)
    assert watcher.get_stats()["regions"] == 0


NON_CONTIGUOUS = [
    ("numpy_step", lambda: np.zeros(16)[::2]),
    ("numpy_column_slice", lambda: np.zeros((4, 4))[:, 1:3]),
    ("numpy_transposed_slice", lambda: np.zeros((4, 6)).T[1:3]),
    ("memoryview_step", lambda: memoryview(bytearray(16))[::2]),
]


@pytest.mark.parametrize("make", [m for _, m in NON_CONTIGUOUS], ids=[n for n, _ in NON_CONTIGUOUS])
def test_non_contiguous_buffers_raise_a_clear_error(make: Callable[[], Any], watcher: memwatch.MemoryWatcher) -> None:
    with pytest.raises(memwatch.NotContiguousError, match="contiguous"):
        watcher.watch(make(), "strided")
    assert watcher.get_stats()["regions"] == 0


def test_whole_numpy_array_behind_a_strided_view_can_be_watched(watcher: memwatch.MemoryWatcher) -> None:
    base = np.zeros(16, dtype=np.uint8)
    view = base[::2]
    watcher.watch(base, "base")
    view[3] = 9  # byte 6 of base
    [ev] = watcher.check_changes()
    assert ev.changed_ranges == [(6, 1)]


@pytest.mark.parametrize("obj", [5, "text", [1, 2, 3], None, object()], ids=["int", "str", "list", "None", "object"])
def test_objects_without_the_buffer_protocol_raise_type_error(obj: Any, watcher: memwatch.MemoryWatcher) -> None:
    with pytest.raises(TypeError, match="buffer protocol"):
        watcher.watch(obj, "x")


@pytest.mark.parametrize("make", [bytearray, lambda: np.zeros(0), lambda: memoryview(bytearray(4))[2:2]],
                         ids=["bytearray", "numpy", "memoryview"])
def test_empty_buffers_raise_value_error(make: Callable[[], Any], watcher: memwatch.MemoryWatcher) -> None:
    with pytest.raises(ValueError, match="empty") as info:
        watcher.watch(make(), "empty")
    assert isinstance(info.value, memwatch.InvalidArgumentError)


def test_overlapping_watch_in_one_watcher_raises_overlap_error(watcher: memwatch.MemoryWatcher) -> None:
    data = bytearray(64)
    watcher.watch(data, "data")
    with pytest.raises(memwatch.OverlapError, match="overlap") as info:
        watcher.watch(memoryview(data)[8:16], "inner")
    assert isinstance(info.value, ValueError)
    assert watcher.get_stats()["regions"] == 1


def test_same_bytes_in_two_watchers_are_reported_to_both(backend: str) -> None:
    data = mmap.mmap(-1, mmap.PAGESIZE)
    with memwatch.MemoryWatcher(backend=backend) as a, memwatch.MemoryWatcher(backend=backend) as b:
        ra = a.watch(data, "a")
        rb = b.watch(memoryview(data)[0:16], "b")
        data[3] = 1
        [ea] = a.check_changes()
        [eb] = b.check_changes()
        assert (ea.region_id, ea.changed_ranges) == (ra, [(3, 1)])
        assert (eb.region_id, eb.changed_ranges, eb.new_value) == (rb, [(3, 1)], bytes(3) + b"\x01" + bytes(12))
    data.close()


def test_adjacent_regions_do_not_overlap(watcher: memwatch.MemoryWatcher) -> None:
    data = bytearray(32)
    view = memoryview(data)
    first = watcher.watch(view[0:16], "first")
    second = watcher.watch(view[16:32], "second")
    data[15] = 1
    data[16] = 2
    events = sorted(watcher.check_changes(), key=lambda e: e.region_id)
    assert [(e.region_id, e.changed_ranges) for e in events] == [(first, [(15, 1)]), (second, [(0, 1)])]
