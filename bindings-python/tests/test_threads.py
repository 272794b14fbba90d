"""Threads: writers racing the delivery thread, and the GIL never held while blocked."""

from __future__ import annotations

import mmap
import struct
import threading
import time
from typing import Dict, List

import memwatch

from test_callbacks import no_deadlock

WRITERS = 4
WRITES_PER_THREAD = 300


def test_four_threads_write_while_the_callback_runs(backend: str) -> None:
    page = mmap.PAGESIZE
    memory = mmap.mmap(-1, WRITERS * page)  # one page per writer
    events: Dict[int, List[memwatch.ChangeEvent]] = {i: [] for i in range(WRITERS)}
    lock = threading.Lock()
    writer_tids: Dict[int, int] = {}

    with memwatch.MemoryWatcher(backend=backend, writable_window_ms=1, poll_interval_ms=1) as w:
        region_of: Dict[int, int] = {}
        for i in range(WRITERS):
            rid = w.watch(memoryview(memory)[i * page : i * page + 64], f"counter{i}")
            region_of[rid] = i

        def on_change(event: memwatch.ChangeEvent) -> None:
            with lock:
                events[region_of[event.region_id]].append(event)

        w.set_callback(on_change)
        start = threading.Barrier(WRITERS)

        def writer(i: int) -> None:
            writer_tids[i] = threading.get_native_id()
            start.wait()
            for n in range(1, WRITES_PER_THREAD + 1):
                memory[i * page : i * page + 8] = struct.pack("<Q", n)  # a counter
                if n % 50 == 0:
                    time.sleep(0.001)  # let the engine see several versions

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
            assert not t.is_alive()
        assert w.check_changes() == []  # flushes the rest to the callback

        for i in range(WRITERS):
            evs = sorted(events[i], key=lambda e: e.seq)
            assert evs, f"no event for writer {i}"
            # The chain of values is unbroken: nothing lost, nothing twice.
            assert evs[0].old_value == bytes(64)
            for prev, cur in zip(evs, evs[1:]):
                assert cur.old_value == prev.new_value
            assert evs[-1].new_value == struct.pack("<Q", WRITES_PER_THREAD) + bytes(56)
            assert all(e.variable_name == f"counter{i}" for e in evs)
            if backend == "protect":
                # Each region's page is written only by its own thread.
                assert {e.thread_id for e in evs} <= {writer_tids[i]}, (i, {e.thread_id for e in evs})
        assert sum(len(v) for v in events.values()) == w.get_stats()["events"]
    memory.close()


def test_check_changes_from_many_threads_delivers_each_change_once(backend: str) -> None:
    data = mmap.mmap(-1, mmap.PAGESIZE)
    seen: List[memwatch.ChangeEvent] = []
    seen_lock = threading.Lock()
    with memwatch.MemoryWatcher(backend=backend) as w:
        w.watch(memoryview(data)[0:256], "shared")

        def worker(i: int) -> None:
            for n in range(100):
                data[i * 64 + (n % 64)] = (n % 255) + 1
                got = w.check_changes()
                with seen_lock:
                    seen.extend(got)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(WRITERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        seen.extend(w.check_changes())
    assert len({e.seq for e in seen}) == len(seen), "an event was delivered twice"
    ordered = sorted(seen, key=lambda e: e.seq)
    assert ordered[0].old_value == bytes(256)
    for prev, cur in zip(ordered, ordered[1:]):
        assert cur.old_value == prev.new_value, "a change was lost between two events"
    assert ordered[-1].new_value == bytes(data[0:256])
    data.close()


def test_an_idle_delivery_thread_does_not_hold_the_gil(backend: str) -> None:
    with memwatch.MemoryWatcher(backend=backend) as w:
        w.watch(bytearray(8), "idle")
        w.set_callback(lambda e: None)
        # With the delivery thread parked, two Python threads share the GIL
        # normally: each makes progress in the same window.
        counts = [0, 0]
        stop = time.monotonic() + 0.3

        def spin(k: int) -> None:
            while time.monotonic() < stop:
                counts[k] += 1

        t = threading.Thread(target=spin, args=(1,))
        t.start()
        spin(0)
        t.join(10)
        assert counts[0] > 1000 and counts[1] > 1000, counts


def test_a_blocked_callback_does_not_hold_the_gil_and_check_changes_waits_without_it(backend: str) -> None:
    release = threading.Event()
    in_callback = threading.Event()
    delivered: List[memwatch.ChangeEvent] = []

    def on_change(event: memwatch.ChangeEvent) -> None:
        in_callback.set()
        release.wait(30)  # blocks without the GIL
        delivered.append(event)

    data = bytearray(8)
    with memwatch.MemoryWatcher(backend=backend) as w:
        w.watch(data, "data")
        w.set_callback(on_change)
        data[0] = 1
        checker_done = threading.Event()

        def checker() -> None:
            w.check_changes()  # waits for the blocked callback, GIL released
            checker_done.set()

        t = threading.Thread(target=checker, daemon=True)
        t.start()
        assert in_callback.wait(10)
        # Python code keeps running here while both threads wait.
        total = sum(i * i for i in range(200_000))
        assert total == sum(i * i for i in range(200_000))
        assert not checker_done.is_set()
        release.set()
        assert checker_done.wait(10)
        t.join(10)
        assert [e.changed_ranges for e in delivered] == [[(0, 1)]]


def test_watch_and_unwatch_race_with_writes_and_callbacks(backend: str) -> None:
    stop = threading.Event()
    errors: List[BaseException] = []
    with memwatch.MemoryWatcher(backend=backend, writable_window_ms=1, poll_interval_ms=1) as w:
        w.set_callback(lambda e: None)

        def churn() -> None:
            try:
                while not stop.is_set():
                    buf = bytearray(64)
                    rid = w.watch(buf, "churn")
                    buf[0] = 1
                    assert w.unwatch(rid) is True
                    buf.append(1)  # released by unwatch
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=churn) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(30)
            assert not t.is_alive()
        no_deadlock(w.check_changes)
    assert errors == []
