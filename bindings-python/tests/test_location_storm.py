"""A fault storm with Python frames: 10 000 one-page regions, each written
once from Python, give 10 000 events, every one naming the writing line.

Kept apart from test_location_python.py, which ci/test-python.sh also runs
under every other CPython: watching 10 000 regions takes seconds, and the
storm does not depend on the frame layout.
"""

import inspect
import mmap

import memwatch

PAGE = memwatch.page_size()


def _line() -> int:
    """The line the caller is on."""
    frame = inspect.currentframe()
    assert frame is not None and frame.f_back is not None
    return frame.f_back.f_lineno


def test_fault_storm_every_event_located() -> None:
    n = 10_000
    buf = mmap.mmap(-1, n * PAGE)
    view = memoryview(buf)
    with memwatch.MemoryWatcher(backend="protect", locate_writers=True, stack_depth=2) as w:
        for i in range(n):
            w.watch(view[i * PAGE : (i + 1) * PAGE], f"p{i}")
        for i in range(n):
            buf[i * PAGE] = 1
        line = _line() - 1
        events = w.check_changes()
        assert len(events) == n
        assert w.get_stats()["dropped_wheres"] == 0
        for e in events:
            where = e.where
            assert (where["file"], where["function"], where["line"]) == (
                __file__,
                "test_fault_storm_every_event_located",
                line,
            ), e.variable_name
    view.release()
