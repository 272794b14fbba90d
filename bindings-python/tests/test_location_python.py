"""Python frames in located writes (locate_writers=True, protect backend).

Every expected line is computed by the test itself: ``_line()`` returns the
line its caller is on, called on the line right after the write (hence the
``- 1``). The stack's Python frames come first, innermost first, then the
native ones. These tests run under every CPython 3.9-3.13 the wheel supports
(ci/test-python.sh: one venv per version).
"""

import gc
import inspect
import mmap
import sys
import threading
from typing import Dict, List, Tuple

import numpy as np
import pytest

import memwatch
from memwatch import _memwatch

from conftest import run_python

PAGE = memwatch.page_size()
# Pages of their own: an anonymous mmap, or the interior of a large
# bytearray (its first and last page may be shared with other heap objects,
# and a foreign object's write there, first in the window, would take the
# event's only location).
SIZE = 64 * PAGE
MID = SIZE // 2
EDGE = 2 * PAGE


def _watch_interior(w: memwatch.MemoryWatcher, buf: bytearray) -> None:
    """Watches buf[EDGE:-EDGE]: pages no other object shares."""
    w.watch(memoryview(buf)[EDGE:-EDGE], "buf")


def _line() -> int:
    """The line the caller is on."""
    frame = inspect.currentframe()
    assert frame is not None and frame.f_back is not None
    return frame.f_back.f_lineno


def _py(stack: List[dict]) -> List[Tuple[str, str, int]]:
    """(file, function, line) of the stack's leading Python frames."""
    out = []
    for f in stack:
        if not f["python"]:
            break
        out.append((f["file"], f["function"], f["line"]))
    return out


def _one(w: memwatch.MemoryWatcher) -> dict:
    (e,) = w.check_changes()
    return e.where


def _assert_names(where: dict, function: str, line: int) -> None:
    """where names this file's `function` at `line`, and its stack starts so."""
    assert (where["file"], where["function"], where["line"]) == (__file__, function, line)
    assert _py(where["stack"])[0] == (__file__, function, line)
    assert where["module"] is None and where["module_offset"] is None
    native = [f for f in where["stack"] if not f["python"]]
    assert native, "native frames follow the Python ones"
    assert native[0]["ip"] == where["fault_ip"]
    assert all(f["ip"] is None and f["module"] is None for f in where["stack"] if f["python"])


def test_stats_say_python_frames_are_on_for_this_version() -> None:
    with memwatch.MemoryWatcher(locate_writers=True) as w:
        assert w.get_stats()["python_frames"] == f"CPython 3.{sys.version_info.minor}"
    assert _memwatch.PYTHON_FRAMES == f"CPython 3.{sys.version_info.minor}"


def test_bytearray_item_assignment() -> None:
    buf = bytearray(SIZE)
    with memwatch.MemoryWatcher(backend="protect", locate_writers=True) as w:
        _watch_interior(w, buf)
        buf[MID + 3] = 1
        line = _line() - 1
        _assert_names(_one(w), "test_bytearray_item_assignment", line)


def test_slice_assignment() -> None:
    buf = bytearray(SIZE)
    with memwatch.MemoryWatcher(backend="protect", locate_writers=True) as w:
        _watch_interior(w, buf)
        buf[MID : MID + 4] = b"abcd"
        line = _line() - 1
        (e,) = w.check_changes()
        assert e.changed_ranges == [(MID - EDGE, 4)]
        _assert_names(e.where, "test_slice_assignment", line)


def test_memoryview_write() -> None:
    buf = mmap.mmap(-1, SIZE)
    view = memoryview(buf)
    with memwatch.MemoryWatcher(backend="protect", locate_writers=True) as w:
        w.watch(buf, "buf")
        view[PAGE + 5] = 9
        line = _line() - 1
        _assert_names(_one(w), "test_memoryview_write", line)
    view.release()


def test_numpy_in_place_op() -> None:
    arr = np.frombuffer(mmap.mmap(-1, SIZE), dtype=np.uint8)
    with memwatch.MemoryWatcher(backend="protect", locate_writers=True) as w:
        w.watch(arr, "arr")
        arr += 1
        line = _line() - 1
        events = w.check_changes()
        assert sum(len(e.changed_ranges) for e in events) >= 1
        assert bytes(arr[:4]) == b"\x01\x01\x01\x01"
        located = [e.where for e in events if e.where["line"] is not None]
        assert located, "the first page's fault is located"
        for where in located:
            _assert_names(where, "test_numpy_in_place_op", line)


def test_np_copyto() -> None:
    arr = np.frombuffer(mmap.mmap(-1, SIZE), dtype=np.uint8)
    src = np.full(PAGE, 7, dtype=np.uint8)
    with memwatch.MemoryWatcher(backend="protect", locate_writers=True) as w:
        w.watch(arr, "arr")
        np.copyto(arr[PAGE : 2 * PAGE], src)
        line = _line() - 1
        _assert_names(_one(w), "test_np_copyto", line)


def _inner(buf: bytearray, lines: Dict[str, int]) -> None:
    buf[MID] = 1
    lines["_inner"] = _line() - 1


def _middle(buf: bytearray, lines: Dict[str, int]) -> None:
    _inner(buf, lines)
    lines["_middle"] = _line() - 1


def test_nested_calls_give_the_caller_chain_in_order() -> None:
    buf = bytearray(SIZE)
    lines: Dict[str, int] = {}
    with memwatch.MemoryWatcher(backend="protect", locate_writers=True, stack_depth=3) as w:
        _watch_interior(w, buf)
        _middle(buf, lines)
        here = _line() - 1
        where = _one(w)
        me = "test_nested_calls_give_the_caller_chain_in_order"
        assert _py(where["stack"]) == [
            (__file__, "_inner", lines["_inner"]),
            (__file__, "_middle", lines["_middle"]),
            (__file__, me, here),
        ]
        # stack_depth=3: exactly three Python frames, then the native ones.
        assert [f["python"] for f in where["stack"][:4]] == [True, True, True, False]
        _assert_names(where, "_inner", lines["_inner"])


def test_stack_depth_bounds_the_python_frames() -> None:
    buf = bytearray(SIZE)
    lines: Dict[str, int] = {}
    with memwatch.MemoryWatcher(backend="protect", locate_writers=True, stack_depth=1) as w:
        _watch_interior(w, buf)
        _middle(buf, lines)
        where = _one(w)
        assert _py(where["stack"]) == [(__file__, "_inner", lines["_inner"])]
        assert len([f for f in where["stack"] if not f["python"]]) == 1


def _recurse(buf: bytearray, n: int) -> None:
    if n == 0:
        buf[MID] = 1
    else:
        _recurse(buf, n - 1)


def test_at_most_21_python_frames_fit_a_fault() -> None:
    """64 words per fault, 3 per Python frame: a deeper stack is cut at 21."""
    buf = bytearray(SIZE)
    with memwatch.MemoryWatcher(backend="protect", locate_writers=True, stack_depth=32) as w:
        _watch_interior(w, buf)
        _recurse(buf, 40)
        where = _one(w)
        py = _py(where["stack"])
        assert [f for _, f, _ in py] == ["_recurse"] * 21
        assert not where["stack"][21]["python"]


def test_a_second_thread_gives_its_own_frames() -> None:
    buf = bytearray(SIZE)
    seen: Dict[str, int] = {}

    def writer() -> None:
        buf[MID + 1] = 2
        seen["line"] = _line() - 1
        seen["tid"] = threading.get_native_id()

    with memwatch.MemoryWatcher(backend="protect", locate_writers=True) as w:
        _watch_interior(w, buf)
        t = threading.Thread(target=writer)
        t.start()
        t.join()
        where = _one(w)
        assert where["thread_id"] == seen["tid"]
        _assert_names(where, "writer", seen["line"])
        # The thread's own chain: writer <- Thread.run (threading.py).
        assert _py(where["stack"])[1][:2] == (threading.__file__, "run")


def test_code_from_exec_names_its_own_file() -> None:
    buf = bytearray(SIZE)
    source = "def poke(b, at):\n    x = 1\n    b[at] = x\n"
    scope: dict = {}
    exec(compile(source, "<memwatch-generated>", "exec"), scope)
    with memwatch.MemoryWatcher(backend="protect", locate_writers=True) as w:
        _watch_interior(w, buf)
        scope["poke"](buf, MID)
        where = _one(w)
        assert (where["file"], where["function"], where["line"]) == ("<memwatch-generated>", "poke", 3)


def test_a_wrong_layout_gives_native_frames_without_a_crash() -> None:
    buf = bytearray(SIZE)
    with memwatch.MemoryWatcher(backend="protect", locate_writers=True) as w:
        _watch_interior(w, buf)
        _memwatch._break_python_frames(True)
        try:
            buf[MID] = 1
            where = _one(w)
        finally:
            _memwatch._break_python_frames(False)
        assert where["stack"], "native frames are still there"
        assert not any(f["python"] for f in where["stack"])
        assert where["stack"][0]["ip"] == where["fault_ip"]
        assert where["module"] is not None
        assert where["file"] != __file__
        # Back to normal: the next window's first write has its Python frame.
        w.check_changes()
        buf[MID + PAGE] = 1
        line = _line() - 1
        _assert_names(_one(w), "test_a_wrong_layout_gives_native_frames_without_a_crash", line)


def test_a_freed_code_object_gives_no_wrong_names() -> None:
    """The function's code is gone before the event is built: its frame is
    either still readable and names it, or has no names, never others."""
    buf = bytearray(SIZE)
    with memwatch.MemoryWatcher(backend="protect", locate_writers=True) as w:
        _watch_interior(w, buf)
        scope: dict = {}
        exec(compile("def gone(b, at):\n    b[at] = 1\n", "<gone>", "exec"), scope)
        scope["gone"](buf, MID)
        del scope
        gc.collect()
        for _ in range(1000):  # reuse freed memory for other code objects
            compile("def other():\n    pass\n", "<other>", "exec")
        frame = w.check_changes()[0].where["stack"][0]
        assert frame["python"]
        assert (frame["file"], frame["function"]) in ((None, None), ("<gone>", "gone"))


def test_without_python_frames_events_keep_native_frames_and_stats_say_why() -> None:
    """What every event looks like where the layout is unknown (another
    version, or a failed check at import): here forced off at import."""
    result = run_python(
        """
        import mmap, memwatch
        buf = mmap.mmap(-1, 1 << 16)
        with memwatch.MemoryWatcher(locate_writers=True) as w:
            w.watch(buf, "buf")
            buf[3] = 1
            (e,) = w.check_changes()
            stack = e.where["stack"]
            print(w.get_stats()["python_frames"])
            print(len(stack) > 0, any(f["python"] for f in stack), stack[0]["ip"] == e.where["fault_ip"])
            print(e.where["module"] is not None)
        """,
        env_extra={"MEMWATCH_PYTHON_FRAMES": "off"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "unavailable: turned off (MEMWATCH_PYTHON_FRAMES=off)\nTrue False True\nTrue\n"
