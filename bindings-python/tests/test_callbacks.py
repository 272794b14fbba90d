"""Callback delivery, check_changes, exactly-once hand-off between them, errors, close."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable, List

import pytest

import memwatch


def no_deadlock(fn: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Runs fn in a helper thread; fails (instead of hanging) if it does not finish."""
    result: List[Any] = []
    error: List[BaseException] = []

    def run() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            error.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"{getattr(fn, '__name__', fn)} did not finish within {timeout}s: deadlock"
    if error:
        raise error[0]
    return result[0] if result else None


def test_callback_runs_on_the_delivery_thread_with_the_gil(watcher: memwatch.MemoryWatcher) -> None:
    seen: List[Any] = []

    def on_change(event: memwatch.ChangeEvent) -> None:
        # Running Python code at all proves the GIL is held; record where.
        seen.append((event, threading.get_ident(), threading.current_thread().name, sum(range(100))))

    data = bytearray(16)
    region = watcher.watch(data, "data")
    watcher.set_callback(on_change)
    assert watcher.callback is on_change
    data[4] = 9
    assert watcher.check_changes() == []  # delivered to the callback before returning
    assert len(seen) == 1
    event, ident, _name, total = seen[0]
    assert (event.region_id, event.changed_ranges, event.new_value) == (region, [(4, 1)], bytes(4) + b"\x09" + bytes(11))
    assert ident != threading.get_ident()
    assert total == 4950


def test_callback_receives_changes_without_check_changes(backend: str) -> None:
    got = threading.Event()
    events: List[memwatch.ChangeEvent] = []

    def on_change(event: memwatch.ChangeEvent) -> None:
        events.append(event)
        got.set()

    data = bytearray(8)
    with memwatch.MemoryWatcher(backend=backend, writable_window_ms=1, poll_interval_ms=5) as w:
        w.watch(data, "data")
        w.set_callback(on_change)
        data[1] = 1
        assert got.wait(10), "the engine must deliver on its own, without check_changes()"
        assert [e.changed_ranges for e in events] == [[(1, 1)]]


def test_events_pending_when_the_callback_is_set_go_to_it(backend: str) -> None:
    data = bytearray(8)
    with memwatch.MemoryWatcher(backend=backend, writable_window_ms=1, poll_interval_ms=1) as w:
        w.watch(data, "data")
        data[0] = 1
        deadline = time.monotonic() + 10
        while w.get_stats()["pending_events"] == 0:
            assert time.monotonic() < deadline
            time.sleep(0.002)
        seen: List[memwatch.ChangeEvent] = []
        w.set_callback(seen.append)
        assert w.check_changes() == []
        assert [e.new_value for e in seen] == [b"\x01" + bytes(7)]


def test_every_change_is_delivered_exactly_once_across_callback_and_check_changes(
    watcher: memwatch.MemoryWatcher,
) -> None:
    data = bytearray(64)
    watcher.watch(data, "data")
    via_callback: List[memwatch.ChangeEvent] = []
    via_check: List[memwatch.ChangeEvent] = []
    for i in range(120):
        if i % 3 == 0:
            watcher.set_callback(via_callback.append)
        elif i % 3 == 1:
            watcher.set_callback(None)
        # i % 3 == 2: keep whatever is set
        data[i % 64] = (i % 250) + 1
        via_check.extend(watcher.check_changes())
    all_events = via_callback + via_check
    assert len(all_events) == 120
    assert len({e.seq for e in all_events}) == 120
    by_seq = sorted(all_events, key=lambda e: e.seq)
    for i, ev in enumerate(by_seq):
        assert ev.changed_ranges == [(i % 64, 1)], (i, ev)
        assert ev.new_value is not None and ev.new_value[i % 64] == (i % 250) + 1
    # each event's old value is the previous event's new value: nothing lost in between
    for prev, cur in zip(by_seq, by_seq[1:]):
        assert cur.old_value == prev.new_value
    assert len(via_callback) == 40 and len(via_check) == 80


def test_replacing_the_callback_switches_delivery(watcher: memwatch.MemoryWatcher) -> None:
    first: List[memwatch.ChangeEvent] = []
    second: List[memwatch.ChangeEvent] = []
    data = bytearray(4)
    watcher.watch(data, "data")
    watcher.set_callback(first.append)
    data[0] = 1
    watcher.check_changes()
    watcher.set_callback(second.append)
    data[1] = 1
    watcher.check_changes()
    assert [e.changed_ranges for e in first] == [[(0, 1)]]
    assert [e.changed_ranges for e in second] == [[(1, 1)]]


def test_exception_in_callback_goes_to_unraisablehook_and_watching_continues(
    watcher: memwatch.MemoryWatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    reported: List[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: reported.append((u.exc_type, str(u.exc_value), u.object)))
    delivered: List[memwatch.ChangeEvent] = []

    def on_change(event: memwatch.ChangeEvent) -> None:
        delivered.append(event)
        if len(delivered) == 1:
            raise RuntimeError("boom in callback")

    data = bytearray(4)
    watcher.watch(data, "data")
    watcher.set_callback(on_change)
    data[0] = 1
    assert watcher.check_changes() == []
    data[1] = 1
    assert watcher.check_changes() == []
    assert [e.changed_ranges for e in delivered] == [[(0, 1)], [(1, 1)]]
    assert reported == [(RuntimeError, "boom in callback", on_change)]
    assert watcher.get_stats()["callback_errors"] == 1


def test_close_from_inside_the_callback(backend: str) -> None:
    w = memwatch.MemoryWatcher(backend=backend)
    data = bytearray(4)
    w.watch(data, "data")
    calls: List[int] = []

    def on_change(event: memwatch.ChangeEvent) -> None:
        calls.append(event.region_id)
        w.close()

    w.set_callback(on_change)
    data[0] = 1

    def trigger() -> None:
        try:
            w.check_changes()  # delivers to the callback, which closes the watcher
        except memwatch.WatcherClosedError:
            pass  # the engine delivered (and the callback closed) before this call

    no_deadlock(trigger)
    assert w.closed  # waits for the close() running in the callback to finish
    assert len(calls) == 1
    data.append(1)  # close() released the buffer
    with pytest.raises(memwatch.WatcherClosedError):
        w.check_changes()


def test_close_while_a_callback_runs(backend: str) -> None:
    w = memwatch.MemoryWatcher(backend=backend, writable_window_ms=1, poll_interval_ms=1)
    data = bytearray(4)
    w.watch(data, "data")
    entered = threading.Event()
    finished = threading.Event()

    def on_change(event: memwatch.ChangeEvent) -> None:
        entered.set()
        time.sleep(0.2)  # releases the GIL; close() happens meanwhile
        sum(range(10000))  # and needs it back to finish
        finished.set()

    w.set_callback(on_change)
    data[0] = 1
    assert entered.wait(10)
    no_deadlock(w.close)  # waits for the running callback, with the GIL released
    assert finished.is_set()
    assert w.closed


def test_close_from_the_main_thread_while_the_delivery_thread_waits_for_the_gil(backend: str) -> None:
    w = memwatch.MemoryWatcher(backend=backend, writable_window_ms=1, poll_interval_ms=1)
    bufs = [bytearray(8) for _ in range(8)]
    for i, b in enumerate(bufs):
        w.watch(b, f"b{i}")
    w.set_callback(lambda e: None)
    # Keep the GIL busy with Python work while changes stream in, then close
    # directly from this thread: close() must release the GIL while it joins.
    end = time.monotonic() + 0.3
    n = 0
    while time.monotonic() < end:
        bufs[n % 8][n % 8] = n & 0xFF
        n += 1
    w.close()
    assert w.closed


def test_set_callback_none_from_inside_the_callback(watcher: memwatch.MemoryWatcher) -> None:
    seen: List[memwatch.ChangeEvent] = []

    def once(event: memwatch.ChangeEvent) -> None:
        seen.append(event)
        watcher.set_callback(None)

    data = bytearray(4)
    watcher.watch(data, "data")
    watcher.set_callback(once)
    data[0] = 1
    no_deadlock(watcher.check_changes)
    assert len(seen) == 1 and watcher.callback is None
    data[1] = 1
    [ev] = watcher.check_changes()
    assert ev.changed_ranges == [(1, 1)]


def test_check_changes_from_inside_the_callback_returns_at_once(watcher: memwatch.MemoryWatcher) -> None:
    inner: List[Any] = []

    def on_change(event: memwatch.ChangeEvent) -> None:
        inner.append(watcher.check_changes())

    data = bytearray(4)
    watcher.watch(data, "data")
    watcher.set_callback(on_change)
    data[0] = 1
    no_deadlock(watcher.check_changes)
    assert inner == [[]]


def test_watch_and_unwatch_from_inside_the_callback(watcher: memwatch.MemoryWatcher) -> None:
    extra = bytearray(4)
    ids: List[int] = []

    def on_change(event: memwatch.ChangeEvent) -> None:
        if not ids:
            ids.append(watcher.watch(extra, "extra"))
            assert watcher.unwatch(event.region_id) is True

    data = bytearray(4)
    watcher.watch(data, "data")
    watcher.set_callback(on_change)
    data[0] = 1
    no_deadlock(watcher.check_changes)
    assert watcher.watched() == ids
    data.append(0)  # unwatched from the callback: released


def test_callback_may_be_any_callable(watcher: memwatch.MemoryWatcher) -> None:
    class Collector:
        def __init__(self) -> None:
            self.events: List[memwatch.ChangeEvent] = []

        def __call__(self, event: memwatch.ChangeEvent) -> None:
            self.events.append(event)

    collector = Collector()
    data = bytearray(4)
    watcher.watch(data, "data")
    watcher.set_callback(collector)
    data[3] = 3
    watcher.check_changes()
    assert [e.changed_ranges for e in collector.events] == [[(3, 1)]]
