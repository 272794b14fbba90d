"""Writer location (locate_writers=True) under protect: the native part.

These tests pin what follows the Python frames (test_location_python.py) in
the stack: the writing thread's id and name, the faulting instruction as the
first native frame, the module that holds it, and the option's errors.
"""

import mmap
import os
import threading

import pytest

import memwatch


def _comm() -> str:
    """The calling thread's kernel name, read by the test itself."""
    with open(f"/proc/self/task/{threading.get_native_id()}/comm") as f:
        return f.read().rstrip("\n")


def _module_of(addr: int) -> str:
    """Path of the file mapping that holds addr, from /proc/self/maps."""
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split()
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            if lo <= addr < hi and len(fields) >= 6:
                return fields[5]
    raise AssertionError(f"{addr:#x} is in no file mapping")


# A buffer with pages of its own (an anonymous mmap): only the first write to
# a page is located, and a bytearray may share its first and last page with
# other objects (malloc puts even large blocks on the heap once its mmap
# threshold has grown).
SIZE = 1 << 16


def test_a_located_write_names_thread_instruction_and_module() -> None:
    buf = mmap.mmap(-1, SIZE)
    with memwatch.MemoryWatcher(backend="protect", locate_writers=True, stack_depth=8) as w:
        w.watch(buf, "buf")
        buf[3] = 7
        (e,) = w.check_changes()
        where = e.where
        assert e.changed_ranges == [(3, 1)]
        assert where["thread_id"] == threading.get_native_id()
        assert where["thread_name"] == _comm()
        native = [f for f in where["stack"] if not f["python"]]
        assert 1 <= len([f for f in native if not f["inlined"]]) <= 8
        assert native[0]["ip"] == where["fault_ip"]
        assert native[0]["module"] == os.path.realpath(_module_of(where["fault_ip"]))
        assert isinstance(native[0]["module_offset"], int)
        assert where["unattributed_faults"] == 0


def test_a_second_thread_is_located_with_its_own_name() -> None:
    buf = mmap.mmap(-1, SIZE)
    seen = {}

    def writer() -> None:
        seen["tid"], seen["comm"] = threading.get_native_id(), _comm()
        buf[9] = 1

    with memwatch.MemoryWatcher(backend="protect", locate_writers=True) as w:
        w.watch(buf, "buf")
        t = threading.Thread(target=writer)
        t.start()
        t.join()
        (e,) = w.check_changes()
        assert e.where["thread_id"] == seen["tid"]
        assert e.where["thread_name"] == seen["comm"]
        native = [f for f in e.where["stack"] if not f["python"]]
        assert native[0]["ip"] == e.where["fault_ip"]


def test_auto_picks_protect_and_says_why() -> None:
    with memwatch.MemoryWatcher(locate_writers=True) as w:
        stats = w.get_stats()
        assert stats["backend"] == "protect"
        assert "locate_writers" in stats["backend_reason"]


@pytest.mark.parametrize("backend", ["poll", "writewatch"])
def test_backends_that_cannot_locate_are_refused(backend: str) -> None:
    with pytest.raises(memwatch.InvalidArgumentError, match="protect"):
        memwatch.MemoryWatcher(backend=backend, locate_writers=True)


@pytest.mark.parametrize("depth", [0, 33])
def test_stack_depth_out_of_range_is_refused(depth: int) -> None:
    with pytest.raises(memwatch.InvalidArgumentError, match="stack_depth"):
        memwatch.MemoryWatcher(locate_writers=True, stack_depth=depth)


def test_stack_depth_must_be_an_int() -> None:
    with pytest.raises(TypeError, match="stack_depth"):
        memwatch.MemoryWatcher(locate_writers=True, stack_depth="8")  # type: ignore[arg-type]


def test_without_the_option_nothing_is_located() -> None:
    buf = bytearray(16)
    with memwatch.MemoryWatcher(backend="protect") as w:
        w.watch(buf, "buf")
        buf[0] = 1
        (e,) = w.check_changes()
        assert e.where["thread_id"] == threading.get_native_id()
        assert e.where["stack"] == []
        assert e.where["thread_name"] is None and e.where["line"] is None
