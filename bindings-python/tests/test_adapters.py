"""The seed's remaining Python API: MemoryWatcher(adapter=...), PollingAdapter,
TrackerAdapter (a user-written adapter end to end), watch(force_store=True),
all(level) with TrackingLevel."""

from __future__ import annotations

import array
import itertools
import os
from typing import Any, Dict, Iterator, List

import numpy as np
import pytest

import memwatch
import memwatch.store as ms
from memwatch import Change, EngineAdapter, PollingAdapter, TrackerAdapter, TrackingLevel

_names = itertools.count()


@pytest.fixture
def store_name() -> Iterator[str]:
    n = f"pytest-adapters-{os.getpid()}-{next(_names)}"
    yield n
    ms.unlink(n, missing_ok=True)


# -- PollingAdapter / EngineAdapter -------------------------------------------------------------


def test_polling_adapter_is_the_poll_backend_with_its_interval() -> None:
    data = bytearray(b"abcd")
    with memwatch.MemoryWatcher(adapter=PollingAdapter(poll_interval_ms=50)) as w:
        assert w.backend == "poll"
        region = w.watch(data)
        data[2] = ord("X")
        [e] = w.check_changes()
        assert (e.region_id, e.variable_name, e.changed_ranges) == (region, "data", [(2, 1)])
        assert (e.old_value, e.new_value) == (b"abcd", b"abXd")
        # asynchronous delivery too: the callback gets the next change
        got: List[memwatch.ChangeEvent] = []
        w.set_callback(got.append)
        data[0] = ord("Z")
        assert w.check_changes() == []
        assert [x.new_value for x in got] == [b"ZbXd"]


def test_adapter_positionally_and_engine_adapter_options() -> None:
    with memwatch.MemoryWatcher(EngineAdapter("protect", writable_window_ms=2.0)) as w:
        assert w.backend == "protect"
        buf = bytearray(8)
        w.watch(buf, "buf")
        buf[7] = 1
        [e] = w.check_changes()
        assert e.changed_ranges == [(7, 1)]


def test_adapter_errors() -> None:
    with pytest.raises(TypeError, match="either an adapter or backend options"):
        memwatch.MemoryWatcher(backend="poll", adapter=PollingAdapter())
    with pytest.raises(TypeError, match="TrackerAdapter"):
        memwatch.MemoryWatcher(adapter=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        TrackerAdapter()  # type: ignore[abstract]
    with pytest.raises(memwatch.InvalidArgumentError):
        PollingAdapter(poll_interval_ms=0)


# -- a user-written adapter ---------------------------------------------------------------------


class CopyAdapter(TrackerAdapter):
    """Tracks any object by comparing its bytes() copy at each check."""

    def __init__(self) -> None:
        self.objs: Dict[int, Any] = {}
        self.last: Dict[int, bytes] = {}
        self.meta: Dict[int, Dict[str, Any]] = {}
        self.next_id = 100
        self.closed = 0

    def track(self, obj: Any, metadata: Dict[str, Any]) -> int:
        rid = self.next_id
        self.next_id += 1
        self.objs[rid], self.last[rid], self.meta[rid] = obj, bytes(obj), metadata
        return rid

    def untrack(self, region_id: int) -> bool:
        self.last.pop(region_id, None)
        return self.objs.pop(region_id, None) is not None

    def check_changes(self) -> List[Any]:
        out = []
        for rid, obj in self.objs.items():
            now = bytes(obj)
            if now != self.last[rid]:
                ranges = [(i, 1) for i, (a, b) in enumerate(zip(self.last[rid], now)) if a != b]
                out.append(Change(rid, self.meta[rid]["name"], changed_ranges=ranges,
                                  old_value=self.last[rid], new_value=now,
                                  metadata=self.meta[rid]["metadata"]))
                self.last[rid] = now
        return out

    def get_stats(self) -> Dict[str, Any]:
        return {"backend": "copy", "tracked": len(self.objs)}

    def close(self) -> None:
        self.closed += 1


def test_a_user_adapter_works_end_to_end() -> None:
    adapter = CopyAdapter()
    w = memwatch.MemoryWatcher(adapter=adapter)
    counter = array.array("B", [0, 0, 0])
    rid = w.watch(counter, metadata={"unit": "n"}, force_store=True)
    assert rid == 100
    assert adapter.meta[100] == {"name": "counter", "force_store": True, "metadata": {"unit": "n"}}
    assert w.watched() == [100]
    counter[1] = 5
    [e] = w.check_changes()
    assert (e.region_id, e.variable_name, e.changed_ranges) == (100, "counter", [(1, 1)])
    assert (e.old_value, e.new_value, e.metadata) == (b"\0\0\0", b"\0\x05\0", {"unit": "n"})
    assert w.check_changes() == []
    got: List[Any] = []
    w.set_callback(got.append)
    assert w.callback == got.append
    counter[2] = 6
    assert w.check_changes() == []
    assert [g.new_value for g in got] == [b"\0\x05\x06"]
    stats = w.get_stats()
    assert (stats["backend"], stats["tracked"], stats["regions"], stats["callback_errors"]) == (
        "copy", 1, 1, 0
    )
    assert w.backend == "copy"
    with pytest.raises(memwatch.UnsupportedError, match="user adapter"):
        w.set_value_store(None)
    assert w.unwatch(100) is True
    assert w.unwatch(100) is False
    assert w.watched() == []
    w.close()
    w.close()
    assert (adapter.closed, w.closed) == (1, True)
    with pytest.raises(memwatch.WatcherClosedError):
        w.watch(counter)


def test_a_user_adapter_callback_error_is_raised_after_every_event_was_offered() -> None:
    adapter = CopyAdapter()
    with memwatch.MemoryWatcher(adapter=adapter) as w:
        a, b = bytearray(1), bytearray(1)
        w.watch(a, "a")
        w.watch(b, "b")
        seen: List[str] = []

        def cb(e: Any) -> None:
            seen.append(e.variable_name)
            raise RuntimeError(f"boom {e.variable_name}")

        w.set_callback(cb)
        a[0], b[0] = 1, 2
        with pytest.raises(RuntimeError, match="boom a"):
            w.check_changes()
        assert seen == ["a", "b"]
        assert w.get_stats()["callback_errors"] == 2


def test_a_user_adapter_returning_a_bad_id_is_a_type_error() -> None:
    class Bad(CopyAdapter):
        def track(self, obj: Any, metadata: Dict[str, Any]) -> Any:
            return "x"

    with memwatch.MemoryWatcher(adapter=Bad()) as w, pytest.raises(TypeError, match="int region id"):
        w.watch(bytearray(1), "x")


# -- force_store ----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["protect", "writewatch", "poll"])
def test_force_store_puts_small_values_into_the_value_store(backend: str, store_name: str) -> None:
    try:
        memwatch.MemoryWatcher(backend=backend).close()
    except memwatch.UnsupportedError as exc:
        pytest.skip(f"backend {backend!r} unsupported here: {exc}")
    with ms.connect(store_name, 1 << 20) as s, memwatch.MemoryWatcher(backend=backend) as w:
        w.set_value_store(s)
        tiny = bytearray(b"tiny")
        plain = bytearray(b"plain")
        r_tiny = w.watch(tiny, force_store=True)
        r_plain = w.watch(plain)
        assert s.get(f"memwatch/2/{r_tiny}/0") == b"tiny", "the current value is stored at watch time"
        assert w.watched() == sorted([r_tiny, r_plain])
        assert w.get_stats()["regions"] == 2
        tiny[0] = ord("T")
        plain[0] = ord("P")
        events = w.check_changes()
        assert [e.seq for e in events] == sorted(e.seq for e in events), "oldest first"
        assert sorted(e.region_id for e in events) == sorted([r_tiny, r_plain])
        ev, ep = sorted(events, key=lambda e: e.region_id != r_tiny)
        assert (ev.variable_name, ev.changed_ranges, ev.old_value, ev.new_value) == ("tiny", [(0, 1)], None, None)
        assert (ev.old_preview, ev.new_preview) == (b"tiny", b"Tiny")  # previews stay inline
        assert ev.storage_key_old == f"memwatch/2/{r_tiny}/0"
        assert ev.storage_key_new == f"memwatch/2/{r_tiny}/1"
        assert (s.get(ev.storage_key_old), s.get(ev.storage_key_new)) == (b"tiny", b"Tiny")
        assert (ep.old_value, ep.new_value, ep.storage_key_new) == (b"plain", b"Plain", None)
        # callbacks reach both kinds
        got: List[memwatch.ChangeEvent] = []
        w.set_callback(got.append)
        tiny[1] = ord("I")
        plain[1] = ord("L")
        assert w.check_changes() == []
        assert sorted(e.region_id for e in got) == sorted([r_tiny, r_plain])
        assert w.unwatch(r_tiny) is True
        assert w.watched() == [r_plain]
        w.stop_all()
        assert w.watched() == []


def test_force_store_without_a_store_then_with_one(store_name: str) -> None:
    with memwatch.MemoryWatcher(backend="poll") as w:
        buf = bytearray(b"ab")
        rid = w.watch(buf, "buf", force_store=True)
        buf[0] = ord("A")
        [e] = w.check_changes()
        assert (e.storage_key_old, e.storage_key_new, e.new_value) == (None, None, None)
        with ms.connect(store_name, 1 << 20) as s:
            w.set_value_store(s)
            assert s.get(f"memwatch/2/{rid}/1") == b"Ab"
    with pytest.raises(TypeError, match="force_store must be a bool"):
        memwatch.MemoryWatcher(backend="poll").watch(bytearray(1), "x", force_store=1)  # type: ignore[arg-type]


# -- all(level) -----------------------------------------------------------------------------------

module_level_buffer = bytearray(b"global")
module_level_bytes = b"read-only"
_private_buffer = bytearray(b"private")


def test_all_watches_the_callers_buffer_variables_by_the_documented_rule() -> None:
    arr = np.zeros(4, dtype=np.uint8)
    ba = bytearray(b"xyz")
    alias = ba  # the same object: counted once, under its first name
    view = memoryview(ba)[1:]  # overlaps ba: skipped
    strided = np.zeros(8, dtype=np.uint8)[::2]  # not contiguous: skipped
    ro = b"bytes"  # read-only: skipped
    empty = bytearray()  # empty: skipped
    _hidden = bytearray(b"h")  # leading underscore: skipped
    number, text = 3, "s"
    with memwatch.MemoryWatcher(backend="poll") as w:
        ids = w.all(TrackingLevel.LOCALS)
        assert sorted(ids) == ["arr", "ba"]
        assert sorted(w.watched()) == sorted(ids.values())
        arr[3] = 9
        ba[0] = ord("X")
        events = {e.variable_name: e for e in w.check_changes()}
        assert set(events) == {"arr", "ba"}
        assert events["arr"].changed_ranges == [(3, 1)]
        assert events["ba"].new_value == b"Xyz"
        assert w.all(TrackingLevel.LOCALS) == {}, "again: nothing new"
        late = bytearray(b"late")
        assert list(w.all(TrackingLevel.LOCALS)) == ["late"]
        late[0] = 0
        [e] = w.check_changes()
        assert (e.variable_name, e.changed_ranges) == ("late", [(0, 1)])
    del alias, view, strided, ro, empty, _hidden, number, text


def test_all_globals_and_all_levels() -> None:
    local_one = bytearray(b"L")
    with memwatch.MemoryWatcher(backend="poll") as w:
        got = w.all(TrackingLevel.GLOBALS)
        assert "module_level_buffer" in got and "local_one" not in got
        assert "module_level_bytes" not in got and "_private_buffer" not in got
        module_level_buffer[0] = ord("G")
        [e] = w.check_changes()
        assert (e.variable_name, e.new_value) == ("module_level_buffer", b"Global")
    with memwatch.MemoryWatcher(backend="poll") as w:
        got = w.all()  # TrackingLevel.ALL: locals, then globals
        assert list(got)[0] == "local_one" and "module_level_buffer" in got
    module_level_buffer[0] = ord("g")
    with pytest.raises(TypeError, match="TrackingLevel"):
        memwatch.MemoryWatcher(backend="poll").all("locals")  # type: ignore[arg-type]
