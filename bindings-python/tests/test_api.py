"""The public API: options, names, metadata, events, stats, errors, typing."""

from __future__ import annotations

import inspect
import mmap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import memwatch

GLOBAL_BUFFER = bytearray(16)


# -- construction -------------------------------------------------------------


def test_backends_in_use_are_reported(backend: str) -> None:
    with memwatch.MemoryWatcher(backend=backend) as w:
        assert w.backend == backend
        assert w.get_stats()["backend"] == backend


def test_auto_backend_picks_a_real_backend_and_says_why() -> None:
    with memwatch.MemoryWatcher() as w:
        stats = w.get_stats()
        assert stats["backend"] in ("protect", "writewatch")
        assert isinstance(stats["backend_reason"], str)


def test_auto_prefers_writewatch_where_it_works() -> None:
    try:
        memwatch.MemoryWatcher(backend="writewatch").close()
        writewatch = True
    except memwatch.UnsupportedError as exc:
        assert isinstance(exc, RuntimeError) and "writewatch" in str(exc)
        writewatch = False
    with memwatch.MemoryWatcher() as w:
        assert w.backend == ("writewatch" if writewatch else "protect")


def test_unknown_backend_is_a_value_error_listing_the_choices() -> None:
    with pytest.raises(ValueError, match='"auto", "protect", "writewatch" or "poll"') as info:
        memwatch.MemoryWatcher(backend="fast")
    assert isinstance(info.value, memwatch.InvalidArgumentError)


@pytest.mark.parametrize(
    "kwargs,error",
    [
        ({"backend": 3}, TypeError),
        ({"writable_window_ms": 0}, memwatch.InvalidArgumentError),
        ({"writable_window_ms": -1}, memwatch.InvalidArgumentError),
        ({"writable_window_ms": float("nan")}, memwatch.InvalidArgumentError),
        ({"writable_window_ms": float("inf")}, memwatch.InvalidArgumentError),
        ({"poll_interval_ms": -0.5}, memwatch.InvalidArgumentError),
        ({"poll_interval_ms": float("nan")}, memwatch.InvalidArgumentError),
        ({"poll_interval_ms": float("inf")}, memwatch.InvalidArgumentError),
        ({"poll_interval_ms": float("-inf")}, memwatch.InvalidArgumentError),
        ({"poll_interval_ms": "100"}, TypeError),
        ({"max_value_bytes": -1}, ValueError),
        ({"preview_bytes": 1.5}, TypeError),
        ({"ring_capacity": 0}, ValueError),
    ],
)
def test_bad_options_raise(kwargs: dict, error: type) -> None:
    with pytest.raises(error) as info:
        memwatch.MemoryWatcher(**kwargs)
    # Exactly the documented class, not a plain ValueError.
    if issubclass(error, memwatch.MemwatchError):
        assert type(info.value) is error, info.value
        assert next(iter(kwargs)).replace("_ms", "") in str(info.value), info.value


def test_defaults_are_the_engines() -> None:
    assert dict(memwatch.DEFAULT_OPTIONS) == {
        "backend": "auto", "writable_window_ms": 5.0, "poll_interval_ms": 100.0,
        "max_value_bytes": 4096, "preview_bytes": 256, "snapshots": True, "ring_capacity": 32768,
    }
    signature = inspect.signature(memwatch.MemoryWatcher)
    for name, default in memwatch.DEFAULT_OPTIONS.items():
        assert signature.parameters[name].default == default, name
    assert memwatch.BACKENDS == ("auto", "protect", "writewatch", "poll")
    with pytest.raises(TypeError):
        memwatch.DEFAULT_OPTIONS["ring_capacity"] = 1  # type: ignore[index]


def test_page_size_is_the_os_page_size() -> None:
    assert memwatch.page_size() == mmap.PAGESIZE


def test_options_reach_the_engine() -> None:
    data = bytearray(range(48))
    with memwatch.MemoryWatcher(backend="poll", max_value_bytes=32, preview_bytes=4, snapshots=True) as w:
        w.watch(data, "wide")
        data[40] = 0
        [ev] = w.check_changes()
        assert (ev.old_value, ev.new_value) == (None, None)
        assert ev.old_preview == bytes([0, 1, 2, 3])
        assert ev.new_preview == bytes([0, 1, 2, 3])
        assert ev.changed_ranges == [(40, 1)]


def test_without_snapshots_there_are_no_old_values() -> None:
    data = bytearray(8)
    with memwatch.MemoryWatcher(backend="poll", snapshots=False) as w:
        w.watch(data, "data")
        data[2] = 5
        [ev] = w.check_changes()
        assert ev.old_value is None
        assert ev.old_preview is None
        assert ev.new_value == bytes([0, 0, 5, 0, 0, 0, 0, 0])
        assert ev.changed_ranges == [(0, 8)]


# -- names ---------------------------------------------------------------------


def test_name_is_inferred_from_the_callers_local_variable(watcher: memwatch.MemoryWatcher) -> None:
    sensor_readings = bytearray(8)
    watcher.watch(sensor_readings)
    sensor_readings[0] = 1
    [ev] = watcher.check_changes()
    assert ev.variable_name == "sensor_readings"


def test_name_is_inferred_from_a_module_global(watcher: memwatch.MemoryWatcher) -> None:
    watcher.watch(GLOBAL_BUFFER)
    GLOBAL_BUFFER[0] ^= 0xFF
    [ev] = watcher.check_changes()
    assert ev.variable_name == "GLOBAL_BUFFER"


def test_ambiguous_or_unnamed_objects_get_a_descriptive_name(watcher: memwatch.MemoryWatcher) -> None:
    first = bytearray(8)
    alias = first  # two names: ambiguous
    watcher.watch(first)

    class Holder:
        buf = bytearray(8)

    watcher.watch(Holder.buf)
    first[0] = 1
    Holder.buf[0] = 1
    names = sorted(e.variable_name for e in watcher.check_changes())
    assert names == sorted([f"<bytearray at {id(alias):#x}>", f"<bytearray at {id(Holder.buf):#x}>"])


def test_explicit_name_wins(watcher: memwatch.MemoryWatcher) -> None:
    data = bytearray(4)
    watcher.watch(data, "explicit")
    data[0] = 1
    assert [e.variable_name for e in watcher.check_changes()] == ["explicit"]


@pytest.mark.parametrize("name,error", [(5, TypeError), ("a\x00b", ValueError)])
def test_bad_names_raise(name: Any, error: type, watcher: memwatch.MemoryWatcher) -> None:
    with pytest.raises(error):
        watcher.watch(bytearray(4), name)


# -- metadata --------------------------------------------------------------------


def test_dict_metadata_round_trips_as_the_same_object(watcher: memwatch.MemoryWatcher) -> None:
    meta = {"unit": "celsius", "sensor": 3, "tags": ["a", "b"]}
    data = bytearray(4)
    watcher.watch(data, "t", metadata=meta)
    data[1] = 20
    [ev] = watcher.check_changes()
    assert ev.metadata is meta


@pytest.mark.parametrize("meta", ["unit=bytes", [1, 2], 3.5, None], ids=["str", "list", "float", "none"])
def test_other_metadata_round_trips(meta: Any, watcher: memwatch.MemoryWatcher) -> None:
    data = bytearray(4)
    watcher.watch(data, "m", metadata=meta)
    data[0] = 1
    [ev] = watcher.check_changes()
    assert ev.metadata == meta


def test_metadata_that_is_not_json_raises_type_error(watcher: memwatch.MemoryWatcher) -> None:
    with pytest.raises(TypeError, match="JSON-serializable"):
        watcher.watch(bytearray(4), "m", metadata={"when": object()})
    assert watcher.get_stats()["regions"] == 0


def _wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.002)


def test_event_detected_before_unwatch_carries_metadata_as_engine_text(backend: str) -> None:
    data = mmap.mmap(-1, mmap.PAGESIZE)
    meta = {"k": [1, 2]}
    with memwatch.MemoryWatcher(backend=backend, writable_window_ms=1, poll_interval_ms=1) as w:
        region = w.watch(data, "d", metadata=meta)
        data[0] = 1
        # The engine detects the change by itself (after the writable window /
        # poll interval); wait for that, not for a fixed time.
        _wait_for(lambda: w.get_stats()["pending_events"] == 1)
        assert w.unwatch(region) is True
        [ev] = w.check_changes()
        assert ev.region_id == region
        assert ev.metadata == '{"k":[1,2]}'
        assert ev.variable_id is None
    data.close()


# -- events ---------------------------------------------------------------------------


def test_change_event_fields(backend: str) -> None:
    data = bytearray(b"hello")
    with memwatch.MemoryWatcher(backend=backend) as w:
        before = time.monotonic_ns()
        region = w.watch(data, "greeting", metadata="m")
        data[0] = ord("H")
        [ev] = w.check_changes()
        after = time.monotonic_ns()
    assert isinstance(ev, memwatch.ChangeEvent)
    assert ev.seq > 0
    assert before <= ev.timestamp_ns <= after
    assert ev.adapter_id == 2
    assert ev.region_id == region
    assert ev.variable_id == id(data)
    assert ev.variable_name == "greeting"
    assert ev.how_big == 5
    assert ev.changed_ranges == [(0, 1)]
    assert (ev.old_preview, ev.new_preview) == (b"hello", b"Hello")
    assert (ev.old_value, ev.new_value) == (b"hello", b"Hello")
    assert (ev.storage_key_old, ev.storage_key_new) == (None, None)
    assert ev.metadata == "m"
    assert set(ev.where) == {
        "thread_id", "fault_ip", "file", "function", "line",
        # locate_writers (None / [] / 0 without it: tests/test_location.py)
        "thread_name", "module", "module_offset", "stack", "unattributed_faults",
    }
    if backend == "protect":  # only page faults know the writer
        assert ev.thread_id == threading.get_native_id()
        assert ev.where["thread_id"] == threading.get_native_id()
        assert isinstance(ev.where["fault_ip"], int) and ev.where["fault_ip"] > 0
    else:
        assert ev.thread_id is None
        assert ev.where["thread_id"] is None
    d = ev.to_dict()
    assert d["variable_name"] == "greeting" and d["new_value"] == b"Hello" and d["where"] == ev.where
    assert set(d) == {
        "seq", "timestamp_ns", "adapter_id", "region_id", "variable_id", "variable_name", "where", "how_big",
        "changed_ranges", "old_preview", "new_preview", "old_value", "new_value", "storage_key_old",
        "storage_key_new", "metadata", "coalesced",
    }
    assert ev.coalesced == 1 and d["coalesced"] == 1


def test_change_event_repr_is_readable(watcher: memwatch.MemoryWatcher) -> None:
    data = bytearray(b"hello world")
    region = watcher.watch(data, "greeting")
    data[0:2] = b"HE"
    data[6] = 0
    [ev] = watcher.check_changes()
    text = repr(ev)
    assert text.startswith(f"ChangeEvent(seq={ev.seq}, region_id={region}, variable_name='greeting', how_big=11, ")
    assert "changes=[[0:2] b'he' -> b'HE', [6:7] b'w' -> b'\\x00']" in text


def test_change_events_are_immutable(watcher: memwatch.MemoryWatcher) -> None:
    data = bytearray(4)
    watcher.watch(data, "d")
    data[0] = 1
    [ev] = watcher.check_changes()
    with pytest.raises(AttributeError):
        ev.seq = 5  # type: ignore[misc]


def test_seq_increases(watcher: memwatch.MemoryWatcher) -> None:
    data = bytearray(4)
    watcher.watch(data, "d")
    seqs = []
    for i in range(1, 6):
        data[0] = i
        [ev] = watcher.check_changes()
        seqs.append(ev.seq)
    assert seqs == sorted(seqs) and len(set(seqs)) == 5


# -- stats ---------------------------------------------------------------------------------


def test_stats_count_regions_and_events(watcher: memwatch.MemoryWatcher) -> None:
    a, b = bytearray(10), bytearray(20)
    watcher.watch(a, "a")
    watcher.watch(b, "b")
    a[0] = 1
    b[0] = 1
    assert len(watcher.check_changes()) == 2
    stats = watcher.get_stats()
    assert stats["regions"] == 2
    assert stats["events"] == 2
    assert stats["pending_events"] == 0
    assert stats["callback_errors"] == 0
    assert stats["snapshot_bytes"] == 30
    assert stats["native_bytes"] >= 30
    assert list(stats) == [
        "backend", "backend_reason", "regions", "protected_pages", "faults", "events", "fallback_regions",
        "shared_regions", "gone_regions", "reprotect_failures", "dropped_wheres", "native_bytes",
        "snapshot_bytes", "pending_events", "coalesced_events", "callback_errors", "latency_p50_ns",
        "latency_p99_ns", "hot_pages", "python_frames",
    ]


# -- unwatch / stop_all / closed -------------------------------------------------------------


def test_unwatch_arguments(watcher: memwatch.MemoryWatcher) -> None:
    data = bytearray(4)
    region = watcher.watch(data, "d")
    assert watcher.unwatch(4_000_000_000) is False
    assert watcher.unwatch(-1) is False
    assert watcher.unwatch(2**40) is False
    with pytest.raises(TypeError):
        watcher.unwatch("1")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        watcher.unwatch(True)
    assert watcher.unwatch(region) is True
    assert watcher.unwatch(region) is False


def test_unwatch_of_another_watchers_region_is_false(backend: str) -> None:
    data = bytearray(4)
    with memwatch.MemoryWatcher(backend=backend) as a, memwatch.MemoryWatcher(backend=backend) as b:
        region = a.watch(data, "d")
        assert b.unwatch(region) is False
        assert a.watched() == [region]


def test_stop_all_unwatches_everything_and_keeps_the_watcher(watcher: memwatch.MemoryWatcher) -> None:
    bufs = [bytearray(8) for _ in range(5)]
    ids = [watcher.watch(b, f"b{i}") for i, b in enumerate(bufs)]
    assert watcher.watched() == sorted(ids)
    watcher.stop_all()
    assert watcher.watched() == []
    assert watcher.get_stats()["regions"] == 0
    for b in bufs:
        b[0] = 1
        b.append(0)  # released: resizable again
    assert watcher.check_changes() == []
    fresh = bytearray(4)
    watcher.watch(fresh, "fresh")
    fresh[0] = 1
    assert [e.variable_name for e in watcher.check_changes()] == ["fresh"]


def test_closed_watcher(backend: str) -> None:
    w = memwatch.MemoryWatcher(backend=backend)
    data = bytearray(4)
    region = w.watch(data, "d")
    w.close()
    w.close()  # idempotent
    assert w.closed
    assert repr(w) == "<memwatch.MemoryWatcher closed>"
    for call in (
        lambda: w.watch(bytearray(4), "x"),
        lambda: w.unwatch(region),
        lambda: w.check_changes(),
        lambda: w.set_callback(print),
        lambda: w.set_callback(None),
    ):
        with pytest.raises(memwatch.WatcherClosedError, match="closed") as info:
            call()
        assert isinstance(info.value, ValueError)
    assert w.get_stats()["regions"] == 0
    data.append(1)  # the export was released


def test_context_manager_closes(backend: str) -> None:
    data = bytearray(4)
    with memwatch.MemoryWatcher(backend=backend) as w:
        w.watch(data, "d")
        assert "regions=1" in repr(w)
    assert w.closed
    data.append(1)


def test_set_callback_rejects_non_callables(watcher: memwatch.MemoryWatcher) -> None:
    with pytest.raises(TypeError, match="callable"):
        watcher.set_callback(42)  # type: ignore[arg-type]
    assert watcher.callback is None


# -- packaging -------------------------------------------------------------------------------


def test_package_ships_type_information() -> None:
    pkg = Path(memwatch.__file__).parent
    assert (pkg / "py.typed").is_file()
    assert (pkg / "_memwatch.pyi").is_file()
    assert memwatch.__version__ == "0.1.0"


def test_exceptions_share_a_base_and_the_builtin() -> None:
    assert issubclass(memwatch.ReadOnlyError, (memwatch.MemwatchError))
    assert issubclass(memwatch.ReadOnlyError, TypeError)
    assert issubclass(memwatch.OverlapError, ValueError)
    assert issubclass(memwatch.MemwatchOSError, OSError)
    assert memwatch.ReadOnlyError.__module__ == "memwatch"
