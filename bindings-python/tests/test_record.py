"""MemoryWatcher.record_to: events recorded into SQLite and read back with
exact bytes (Python's own sqlite3 module reads them), hostile names, errors."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path

import pytest

import memwatch


def rows(db: Path) -> list:
    with sqlite3.connect(db) as c:
        return c.execute(
            "SELECT seq, variable_name, variable_name_bytes, old_value, new_value, "
            "changed_ranges, metadata, adapter FROM memwatch_events ORDER BY seq"
        ).fetchall()


def test_check_changes_events_recorded_with_exact_bytes(tmp_path: Path, backend: str) -> None:
    db = tmp_path / "events.db"
    data = bytearray(b"hello world")
    with memwatch.MemoryWatcher(backend=backend) as w:
        w.watch(data, "greeting")
        rec = w.record_to(str(db))
        data[0:2] = b"HE"
        first = w.check_changes()
        data[10] = ord("D")
        second = w.check_changes()
        assert rec.flush(10.0)
        got = rows(db)
        stats = rec.stats()
    assert [e.seq for e in first + second] == [r[0] for r in got]
    assert got[0][1:6] == ("greeting", b"greeting", b"hello world", b"HEllo world", "[[0,2]]")
    assert got[1][3:6] == (b"HEllo world", b"HEllo worlD", "[[10,1]]")
    assert got[0][7] == memwatch._memwatch.ADAPTER_PYTHON
    assert (stats["written"], stats["dropped"], stats["queued"]) == (2, 0, 0)
    assert stats["recording_id"] == rec.recording_id
    with sqlite3.connect(db) as c:
        (pid,) = c.execute(
            "SELECT pid FROM memwatch_recordings WHERE recording_id = ?", (rec.recording_id,)
        ).fetchone()
        assert pid == os.getpid()
        assert c.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_callback_events_recorded(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    data = bytearray(8)
    seen = []
    with memwatch.MemoryWatcher(backend="poll") as w:
        w.watch(data, "buf")
        w.set_callback(seen.append)
        rec = w.record_to(f"sqlite:{db}")
        for i in range(1, 6):
            data[i] = i
            assert w.check_changes() == []
        assert rec.flush()
    assert len(seen) == 5
    got = rows(db)
    assert [r[4] for r in got] == [bytes(range(0, k + 1)) + bytes(7 - k) for k in range(1, 6)]
    assert [json.loads(r[5]) for r in got] == [[[k, 1]] for k in range(1, 6)]


def test_hostile_names_and_metadata_byte_exact(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    # (A NUL in a name or metadata is refused by watch() itself: InvalidArgumentError.)
    names = ["it's \"quoted\"", "x'); DROP TABLE memwatch_events; --", "ünï\U0010ffff", "\x01\x7f%s"]
    bufs = [bytearray(4) for _ in names]
    with memwatch.MemoryWatcher(backend="poll") as w:
        for b, n in zip(bufs, names):
            w.watch(b, n, metadata="m:" + n)
        rec = w.record_to(str(db))
        for b in bufs:
            b[1] = 0xEE
        assert len(w.check_changes()) == len(names)
        assert rec.flush()
    got = rows(db)
    assert sorted((r[1], r[2]) for r in got) == sorted((n, n.encode()) for n in names)
    with sqlite3.connect(db) as c:
        md = [r[0] for r in c.execute("SELECT metadata_bytes FROM memwatch_events")]
    assert sorted(md) == sorted(("m:" + n).encode() for n in names)
    assert all(r[4] == b"\x00\xee\x00\x00" for r in got)


def test_bad_urls_and_unreachable_databases_raise(tmp_path: Path) -> None:
    with memwatch.MemoryWatcher(backend="poll") as w:
        for bad in ["", "mysql://localhost/x", "http://example.invalid/"]:
            with pytest.raises(memwatch.InvalidArgumentError, match="URL"):
                w.record_to(bad)
        with pytest.raises(ValueError):
            w.record_to("a\0b")
        with pytest.raises(TypeError):
            w.record_to(42)  # type: ignore[arg-type]
        with pytest.raises(memwatch.DatabaseError, match="nonexistent"):
            w.record_to("/nonexistent-memwatch-dir/x/events.db")
        with pytest.raises(OSError, match="PostgreSQL"):
            w.record_to("postgresql://memwatch@127.0.0.1:1/memwatch")
        rec = w.record_to(str(tmp_path / "ok.db"))
        with pytest.raises(ValueError):
            rec.flush(-1)
        rec.close()
        rec.close()
    with pytest.raises(memwatch.WatcherClosedError):
        w.record_to(str(tmp_path / "late.db"))


def test_recording_from_threads_counts_every_event(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    bufs = [bytearray(16) for _ in range(4)]
    with memwatch.MemoryWatcher(backend="poll") as w:
        for i, b in enumerate(bufs):
            w.watch(b, f"t{i}")
        rec = w.record_to(str(db))
        lock = threading.Lock()
        total = [0]

        def writer(b: bytearray) -> None:
            for k in range(200):
                b[k % 16] = (k % 255) + 1
                n = len(w.check_changes())
                with lock:
                    total[0] += n

        threads = [threading.Thread(target=writer, args=(b,)) for b in bufs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        total[0] += len(w.check_changes())
        assert rec.flush()
        assert rec.stats()["written"] == total[0]
    assert len(rows(db)) == total[0]
    assert total[0] >= 200
