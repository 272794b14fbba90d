"""memwatch.store: the MemStream shared-memory key-value store from Python.

Every operation, both full policies, size limits and errors, zero-copy
views, several processes on one store with every value verified, and the
watcher's value store read back from another process.
"""

from __future__ import annotations

import array
import gc
import hashlib
import itertools
import mmap
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, List

import numpy
import pytest

import memwatch
import memwatch.store as ms
from conftest import DETECTING_BACKENDS, REPO_ROOT, require_backend

_names = itertools.count()


@pytest.fixture
def name() -> Iterator[str]:
    """A store name unique to this test, unlinked afterwards."""
    n = f"pytest-store-{os.getpid()}-{next(_names)}"
    yield n
    ms.unlink(n, missing_ok=True)


@pytest.fixture
def store(name: str) -> Iterator[ms.Store]:
    s = ms.connect(name, 1 << 20)
    yield s
    s.close()


def spawn(code: str, *args: str) -> subprocess.Popen:
    """Starts `code` in a fresh interpreter (the one running the tests)."""
    env = dict(os.environ)
    env.pop("PYTHONFAULTHANDLER", None)
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )


def finish(p: subprocess.Popen, timeout: float = 120) -> bytes:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err.decode(errors="replace")
    assert err == b"", err.decode(errors="replace")
    return out


# -- connect / open / unlink ---------------------------------------------------------------


def test_connect_creates_and_open_finds_it(name: str) -> None:
    with ms.connect(name, 1 << 20, "refuse", max_entries=100, max_key_len=64) as a:
        assert (a.name, a.capacity, a.policy, a.max_entries, a.max_key_len) == (name, 1 << 20, "refuse", 100, 64)
        assert a.max_entry_bytes > 0
        assert repr(a) == f"<memwatch.store.Store '{name}' capacity=1048576 max_entries=100 policy='refuse'>"
        a.put("k", b"v")
        with ms.open(name) as b:
            assert b.get("k") == b"v"
            assert (b.capacity, b.policy, b.max_entries, b.max_key_len) == (1 << 20, "refuse", 100, 64)
        # connect to an existing store: its own layout and policy win
        with ms.connect(name, 4 << 20, "evict_lru") as c:
            assert (c.capacity, c.policy, c.max_entries) == (1 << 20, "refuse", 100)
            assert c.get("k") == b"v"


def test_module_constants() -> None:
    assert (ms.EVICT_LRU, ms.REFUSE) == ("evict_lru", "refuse")
    assert ms.POLICIES == ("evict_lru", "refuse")
    assert ms.MAX_NAME_LEN == 200
    assert ms.Store.__module__ == "memwatch.store"
    assert ms.ValueView.__module__ == "memwatch.store"


def test_open_and_unlink_of_a_missing_store(name: str) -> None:
    with pytest.raises(ms.StoreNotFoundError) as e:
        ms.open(name)
    assert isinstance(e.value, FileNotFoundError) and e.value.errno == 2
    assert f'no store named "{name}" exists' in str(e.value)
    with pytest.raises(ms.StoreNotFoundError):
        ms.unlink(name)
    assert ms.unlink(name, missing_ok=True) is False


def test_unlink_removes_the_name_but_open_handles_keep_working(name: str) -> None:
    s = ms.connect(name, 1 << 20)
    s.put("k", b"v")
    assert ms.unlink(name) is True
    with pytest.raises(ms.StoreNotFoundError):
        ms.open(name)
    assert s.get("k") == b"v"
    s.put("k2", b"w")
    assert s.keys() == [b"k", b"k2"]
    s.close()


@pytest.mark.parametrize("bad", ["", "a/b", "x" * 201, "..", "sp ace", "ü"])
def test_bad_names_are_value_errors(bad: str) -> None:
    with pytest.raises(ms.StoreArgumentError) as e:
        ms.connect(bad, 1 << 20)
    assert isinstance(e.value, ValueError) and isinstance(e.value, memwatch.InvalidArgumentError)
    assert "invalid store name" in str(e.value)
    with pytest.raises(ValueError):
        ms.open(bad)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"capacity": 0}, "capacity must be a positive number of bytes, got 0"),
        ({"capacity": -5}, "capacity must be a positive number of bytes, got -5"),
        ({"capacity": 100}, "capacity 100 is outside 4096..=1099511627776 bytes"),
        ({"capacity": 1 << 20, "policy": "lru"}, 'policy must be "evict_lru" or "refuse", got "lru"'),
        ({"capacity": 1 << 20, "max_entries": 0}, "max_entries must be >= 1, got 0"),
        ({"capacity": 1 << 20, "max_key_len": 0}, "max_key_len must be between 1 and 65536, got 0"),
        ({"capacity": 1 << 20, "max_key_len": 65537}, "max_key_len 65537 is outside 1..=65536"),
    ],
)
def test_bad_options_are_value_errors(name: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ms.StoreArgumentError, match=message.replace(".", r"\.").replace("(", r"\(")):
        ms.connect(name, **kwargs)
    assert ms.unlink(name, missing_ok=True) is False


def test_argument_types() -> None:
    with pytest.raises(TypeError):
        ms.connect(b"name", 1 << 20)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ms.connect("name", "big")  # type: ignore[arg-type]


# -- put / get / delete / contains ---------------------------------------------------------------


def test_put_get_round_trips_exact_bytes(name: str) -> None:
    values = [b"", b"\x00", bytes(range(256)), b"x" * 4096, b"y" * 65536, b"z" * 65537,
              os.urandom(100_000), os.urandom(3 << 20)]
    with ms.connect(name, 16 << 20) as store:
        for i, v in enumerate(values):
            store.put(f"k{i}", v)
        for i, v in enumerate(values):
            got = store.get(f"k{i}")
            assert type(got) is bytes and got == v
            with store.view(f"k{i}") as mv:
                assert mv == v


def test_str_keys_are_utf8_bytes(store: ms.Store) -> None:
    store.put("naïve/ключ", b"1")
    assert store.get("naïve/ключ".encode()) == b"1"
    store.put(b"raw", b"2")
    assert store.get("raw") == b"2"
    store.put(bytearray(b"ba"), b"3")
    assert store.get(memoryview(b"ba")) == b"3"
    assert sorted(store.keys()) == sorted([b"raw", b"ba", "naïve/ключ".encode()])


def test_values_can_be_any_contiguous_bytes_like(store: ms.Store) -> None:
    m = mmap.mmap(-1, 8192)
    m[:5] = b"mmap!"
    arr = numpy.arange(1000, dtype=numpy.float64)
    cases = {
        "bytes": b"abc",
        "bytearray": bytearray(b"def"),
        "memoryview": memoryview(b"0123456789")[2:5],
        "array": array.array("i", [1, 2, 3]),
        "numpy": arr,
        "numpy-2d": numpy.ones((3, 4), dtype=numpy.uint16),
        "mmap": m,
    }
    for key, value in cases.items():
        store.put(key, value)
    assert store.get("bytes") == b"abc"
    assert store.get("bytearray") == b"def"
    assert store.get("memoryview") == b"234"
    assert store.get("array") == array.array("i", [1, 2, 3]).tobytes()
    assert store.get("numpy") == arr.tobytes()
    assert store.get("numpy-2d") == numpy.ones((3, 4), dtype=numpy.uint16).tobytes()
    assert store.get("mmap") == m[:]
    m.close()


def test_bad_keys_and_values_are_type_errors(store: ms.Store) -> None:
    with pytest.raises(TypeError, match="got str; encode it first"):
        store.put("k", "text")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="contiguous bytes-like object .* got int"):
        store.put("k", 5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="got NoneType"):
        store.put("k", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="contiguous"):
        store.put("k", numpy.arange(10)[::2])
    for bad in (1, None, 2.5, ["k"]):
        with pytest.raises(TypeError, match="key must be str or bytes"):
            store.get(bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="key must be str or bytes"):
            store.put(bad, b"v")  # type: ignore[arg-type]
    assert store.stats()["puts"] == 0


def test_get_default_getitem_and_keyerror(store: ms.Store) -> None:
    assert store.get("absent") is None
    assert store.get("absent", b"dflt") == b"dflt"
    with pytest.raises(KeyError) as e:
        store["absent"]
    assert e.value.args == ("absent",)
    store["k"] = b"v"
    assert store["k"] == b"v"
    del store["k"]
    with pytest.raises(KeyError):
        del store["k"]


def test_delete_and_contains(store: ms.Store) -> None:
    store.put("a", b"1")
    assert store.contains("a") and "a" in store and b"a" in store
    assert not store.contains("b") and "b" not in store
    assert store.delete("a") is True
    assert store.delete("a") is False
    assert "a" not in store and store.get("a") is None


def test_overwrite_replaces_the_value(store: ms.Store) -> None:
    store.put("k", b"first")
    store.put("k", b"second, longer")
    store.put("k", b"3")
    assert store.get("k") == b"3"
    assert store.stats()["entries"] == 1


def test_keys_iteration_items_len_clear(store: ms.Store) -> None:
    expected = {f"key/{i}".encode(): bytes([i]) * i for i in range(50)}
    for k, v in expected.items():
        store.put(k, v)
    assert len(store) == 50
    assert sorted(store.keys()) == sorted(expected)
    assert sorted(store) == sorted(expected)
    items = store.items()
    assert iter(items) is items
    assert dict(items) == expected
    assert list(items) == []  # exhausted
    store.clear()
    assert len(store) == 0 and store.keys() == [] and list(store.items()) == []
    assert store.stats()["data_bytes"] == 0


def test_stats_count_exactly(store: ms.Store) -> None:
    assert store.stats() == {
        "entries": 0, "max_entries": 4096, "capacity_bytes": 1 << 20, "bytes_used": 0, "data_bytes": 0,
        "hits": 0, "misses": 0, "evictions": 0, "puts": 0, "deletes": 0, "refusals": 0, "recoveries": 0,
    }
    for i in range(10):
        store.put(f"k{i}", b"v" * 100)
    store.put("k0", b"w" * 50)
    for i in range(7):
        assert store.get(f"k{i}") is not None
    for _ in range(3):
        assert store.get("nope") is None
    assert store["k1"] == b"v" * 100
    assert store.get("big") is None
    store.put("big", b"b" * 200_000)
    assert store.get("big") == b"b" * 200_000
    with store.view("k2"):
        pass
    # not counted: contains, key_stats, keys, items
    "k3" in store, store.key_stats("k3"), store.keys(), list(store.items())
    assert store.delete("k9") is True
    assert store.delete("k9") is False
    s = store.stats()
    assert (s["puts"], s["hits"], s["misses"], s["deletes"], s["evictions"], s["refusals"]) == (12, 10, 4, 1, 0, 0)
    assert s["entries"] == 10
    assert s["data_bytes"] == 9 * 2 + 8 * 100 + 50 + 3 + 200_000
    assert s["bytes_used"] >= s["data_bytes"]


def test_key_stats(store: ms.Store) -> None:
    assert store.key_stats("k") is None
    t0 = time.time_ns()
    store.put("k", b"12345")
    t1 = time.time_ns()
    ks = store.key_stats("k")
    assert ks is not None
    assert set(ks) == {
        "value_size", "created_at", "created_at_ns", "updated_at", "updated_at_ns",
        "last_access", "last_access_ns", "access_count",
    }
    assert ks["value_size"] == 5 and ks["access_count"] == 0
    assert t0 <= ks["created_at_ns"] <= t1
    assert ks["created_at_ns"] == ks["updated_at_ns"]
    assert ks["created_at"] == pytest.approx(ks["created_at_ns"] / 1e9)
    for _ in range(3):
        store.get("k")
    t2 = time.time_ns()
    store.put("k", b"1234567")
    after = store.key_stats("k")
    assert after is not None
    assert after["access_count"] == 3
    assert after["value_size"] == 7
    assert after["created_at_ns"] == ks["created_at_ns"]  # overwrites keep it
    assert after["updated_at_ns"] >= t2
    assert store.key_stats("k") == after  # key_stats is not an access


def test_close_and_context_manager(name: str) -> None:
    s = ms.connect(name, 1 << 20)
    with s as same:
        assert same is s and not s.closed
    assert s.closed
    assert repr(s) == f"<memwatch.store.Store '{name}' closed>"
    s.close()  # idempotent
    for call in (
        lambda: s.put("k", b"v"), lambda: s.get("k"), lambda: s.view("k"), lambda: s.delete("k"),
        lambda: s.contains("k"), lambda: s.keys(), lambda: s.items(), lambda: len(s), lambda: s.stats(),
        lambda: s.key_stats("k"), lambda: s.clear(), lambda: s.repair(),
    ):
        with pytest.raises(ms.StoreClosedError, match=f'store "{name}" is closed'):
            call()
    assert issubclass(ms.StoreClosedError, ValueError)
    # the store itself is still there
    with ms.open(name) as again:
        assert again.stats()["entries"] == 0


def test_repair_keeps_the_entries(store: ms.Store) -> None:
    for i in range(20):
        store.put(f"k{i}", bytes([i]) * 30)
    s = store.repair()
    assert s["entries"] == 20
    assert all(store.get(f"k{i}") == bytes([i]) * 30 for i in range(20))


def test_exception_hierarchy() -> None:
    for cls in (
        ms.StoreError, ms.StoreFullError, ms.StoreNotFoundError, ms.StoreClosedError, ms.StoreArgumentError,
        ms.KeyTooLongError, ms.ValueTooLargeError, ms.StoreCorruptError, ms.StoreTimeoutError, ms.StoreOSError,
    ):
        assert issubclass(cls, ms.StoreError) and issubclass(cls, memwatch.MemwatchError)
        assert cls.__module__ == "memwatch.store"
    assert ms.MemwatchError is memwatch.MemwatchError
    assert issubclass(ms.StoreNotFoundError, FileNotFoundError)
    assert issubclass(ms.KeyTooLongError, ValueError) and issubclass(ms.ValueTooLargeError, ValueError)
    assert issubclass(ms.StoreTimeoutError, TimeoutError)
    assert issubclass(ms.StoreOSError, OSError) and issubclass(ms.StoreOSError, memwatch.MemwatchOSError)


def test_a_segment_that_is_not_a_store_is_reported(name: str) -> None:
    with open(f"/dev/shm/{name}", "wb") as f:
        f.write(b"not a memwatch store" + bytes(8192))
    with pytest.raises(ms.StoreCorruptError, match="is not a memwatch store"):
        ms.open(name)


def test_a_system_failure_is_an_os_error(name: str) -> None:
    os.mkdir(f"/dev/shm/{name}")  # a directory where the segment should be: glibc's shm_open says EINVAL
    try:
        with pytest.raises(ms.StoreOSError) as e:
            ms.open(name)
        assert e.value.errno == 22
        assert str(e.value) == "[Errno 22] shm_open failed: Invalid argument (os error 22)"
    finally:
        os.rmdir(f"/dev/shm/{name}")


# -- size limits -----------------------------------------------------------------------------


def test_key_length_limits(name: str) -> None:
    with ms.connect(name, 1 << 20) as s:
        assert s.max_key_len == 1024
        s.put("k" * 1024, b"ok")
        assert s.get("k" * 1024) == b"ok"
        with pytest.raises(ms.KeyTooLongError) as e:
            s.put("k" * 1025, b"v")
        assert (e.value.length, e.value.limit) == (1025, 1024)
        assert str(e.value) == "key is 1025 bytes, longer than this store's limit of 1024 bytes"
        assert isinstance(e.value, ValueError)
        with pytest.raises(ms.KeyTooLongError):
            s.get("k" * 1025)
        with pytest.raises(ms.KeyTooLongError):
            s.view("k" * 1025)
        with pytest.raises(ms.StoreArgumentError, match="key is empty"):
            s.put("", b"v")
        with pytest.raises(ms.StoreArgumentError, match="key is empty"):
            s.get(b"")
        assert s.stats()["puts"] == 1


def test_value_size_limits(name: str) -> None:
    with ms.connect(name, 64 << 10, "refuse") as s:
        limit = s.max_entry_bytes
        s.put("k", b"x" * (limit - 1))  # key + value == limit: fits in the empty store
        assert s.get("k") == b"x" * (limit - 1)
        with pytest.raises(ms.ValueTooLargeError) as e:
            s.put("k", b"x" * limit)
        assert (e.value.length, e.value.limit) == (limit + 1, limit)
        assert str(e.value) == (
            f"value of {limit + 1} bytes can never fit: this store holds at most {limit} bytes of key + value per entry"
        )
        assert isinstance(e.value, ValueError)
        assert s.get("k") == b"x" * (limit - 1)  # the old value is untouched


# -- full policies ---------------------------------------------------------------------------


def test_refuse_policy_raises_store_full_and_keeps_everything(name: str) -> None:
    with ms.connect(name, 64 << 10, "refuse", max_entries=1000) as s:
        stored = 0
        with pytest.raises(ms.StoreFullError) as e:
            while True:
                s.put(f"k{stored}", bytes([stored % 256]) * 1000)
                stored += 1
        err = e.value
        assert isinstance(err, memwatch.MemwatchError)
        assert err.needed > err.available or "in one piece" in str(err)
        assert err.entries == stored and err.max_entries == 1000
        assert 'create the store with policy="evict_lru"' in str(err)
        st = s.stats()
        assert (st["entries"], st["puts"], st["refusals"], st["evictions"]) == (stored, stored, 1, 0)
        assert all(s.get(f"k{i}") == bytes([i % 256]) * 1000 for i in range(stored))
        # freeing room makes puts work again
        assert s.delete("k0")
        s.put(f"k{stored}", b"y" * 1000)
        assert s.get(f"k{stored}") == b"y" * 1000


def test_refuse_policy_entry_limit(name: str) -> None:
    with ms.connect(name, 1 << 20, "refuse", max_entries=16) as s:
        for i in range(16):
            s.put(f"k{i}", b"v")
        with pytest.raises(ms.StoreFullError) as e:
            s.put("k16", b"v")
        assert (e.value.entries, e.value.max_entries) == (16, 16)
        assert "(16 of 16 entries used)" in str(e.value)
        s.put("k3", b"overwrite of an existing key still works")
        assert s.get("k3") == b"overwrite of an existing key still works"


def test_evict_lru_policy_evicts_the_least_recently_used(name: str) -> None:
    with ms.connect(name, 64 << 10, "evict_lru") as s:
        n = 0
        while s.stats()["bytes_used"] + 2 * 1040 <= s.capacity:
            s.put(f"k{n}", bytes([n]) * 1000)
            n += 1
        assert s.stats()["evictions"] == 0
        assert s.get("k0") == bytes([0]) * 1000  # k0 is now the most recently used; k1 the least
        extra = n
        while s.stats()["evictions"] == 0:
            s.put(f"k{extra}", bytes([extra % 256]) * 1000)
            extra += 1
        assert s.stats()["evictions"] == 1
        assert "k0" in s and "k1" not in s and "k2" in s
        # keep writing: never an error, the newest value is always there
        for i in range(500):
            s.put(f"more{i}", bytes([i % 256]) * 1000)
            assert s.get(f"more{i}") == bytes([i % 256]) * 1000
        st = s.stats()
        assert st["refusals"] == 0 and st["entries"] + st["evictions"] == extra + 500


# -- zero-copy views -------------------------------------------------------------------------


def test_view_is_a_read_only_memoryview_of_the_exact_bytes(store: ms.Store) -> None:
    value = bytes(range(256)) * 40
    store.put("k", value)
    view = store.view("k")
    assert len(view) == len(value) and view.key == b"k" and view.pinned
    assert repr(view) == f"<memwatch.store.ValueView key=b'k' len={len(value)} pinned>"
    with view as mv:
        assert isinstance(mv, memoryview)
        assert mv.readonly and mv.format == "B" and mv.itemsize == 1 and mv.nbytes == len(value)
        assert mv == value and bytes(mv[10:20]) == value[10:20]
        assert numpy.frombuffer(mv, dtype=numpy.uint8).sum() == sum(value)
        with pytest.raises(TypeError):
            mv[0] = 1
        assert view.is_current()
    assert not view.pinned
    with pytest.raises(ValueError, match="released"):
        mv.tobytes()
    with pytest.raises(ValueError, match="released"):
        view.__enter__()
    with pytest.raises(ValueError, match="released"):
        view.is_current()
    assert repr(view).endswith("released>")
    view.release()  # idempotent


def test_view_of_a_missing_key_is_a_key_error(store: ms.Store) -> None:
    with pytest.raises(KeyError) as e:
        store.view("absent")
    assert e.value.args == ("absent",)


def test_view_bytes_stay_while_the_key_is_overwritten_or_deleted(store: ms.Store, name: str) -> None:
    store.put("k", b"A" * 1000)
    used = store.stats()["bytes_used"]
    with store.view("k") as mv:
        store.put("k", b"B" * 1000)
        assert store.get("k") == b"B" * 1000
        with ms.open(name) as other:
            other.delete("k")
        assert mv == b"A" * 1000
    # the old block is freed once unpinned (reclaimed by the next write)
    store.put("k", b"C" * 1000)
    assert store.stats()["bytes_used"] == used
    with store.view("k") as mv:
        v = store.view("k")
        assert v.is_current()
        store.put("k", b"D" * 1000)
        assert not v.is_current()
        v.release()
        assert mv == b"C" * 1000


def test_view_overwritten_by_another_process_keeps_its_bytes(store: ms.Store, name: str) -> None:
    store.put("k", b"old" * 1000)
    with store.view("k") as mv:
        finish(spawn("import sys, memwatch.store as ms; ms.open(sys.argv[1]).put('k', b'new' * 1000)", name))
        assert mv == b"old" * 1000
    assert store.get("k") == b"new" * 1000


def test_a_slice_kept_after_the_block_raises_and_stays_valid(store: ms.Store) -> None:
    store.put("k", b"0123456789")
    view = store.view("k")
    with pytest.raises(BufferError, match="still in use .* bytes stay pinned"):
        with view as mv:
            kept = mv[2:6]
    assert view.pinned
    store.put("k", b"overwritten")
    assert bytes(kept) == b"2345"  # still the pinned bytes
    del kept
    assert not view.pinned


def test_a_numpy_array_kept_after_the_block_raises_and_stays_valid(store: ms.Store) -> None:
    data = numpy.arange(100, dtype=numpy.int32)
    store.put("arr", data)
    view = store.view("arr")
    with pytest.raises(BufferError):
        with view as mv:
            arr = numpy.frombuffer(mv, dtype=numpy.int32)
    assert view.pinned and not arr.flags.writeable
    store.delete("arr")
    assert (arr == data).all()
    del arr
    gc.collect()
    assert not view.pinned


def test_an_exception_in_the_block_is_not_masked(store: ms.Store) -> None:
    store.put("k", b"v")
    view = store.view("k")
    with pytest.raises(ZeroDivisionError):
        with view as mv:
            kept = mv[:]
            1 / 0
    assert view.pinned
    del kept
    assert not view.pinned


def test_the_exporter_refuses_new_exports_after_release(store: ms.Store) -> None:
    store.put("k", b"v")
    with store.view("k") as mv:
        exporter = mv.obj
        assert bytes(memoryview(exporter)) == b"v"
    with pytest.raises(BufferError, match="released"):
        memoryview(exporter)
    with pytest.raises(TypeError, match="cannot be created directly"):
        type(exporter)()


def test_view_survives_closing_the_store_handle(name: str) -> None:
    s = ms.connect(name, 1 << 20)
    s.put("k", b"pinned bytes")
    with s.view("k") as mv:
        s.close()
        gc.collect()
        assert mv == b"pinned bytes"


def test_many_views_at_once(store: ms.Store) -> None:
    for i in range(100):
        store.put(f"k{i}", str(i).encode())
    views = [store.view(f"k{i}") for i in range(100)]
    mvs = [v.__enter__() for v in views]
    assert [bytes(m) for m in mvs] == [str(i).encode() for i in range(100)]
    for v in views:
        v.release()
    assert not any(v.pinned for v in views)


def test_dropping_an_unentered_view_unpins(store: ms.Store) -> None:
    store.put("k", b"A" * 1000)
    used = store.stats()["bytes_used"]
    v = store.view("k")
    store.put("k", b"B" * 1000)
    del v
    gc.collect()
    store.put("k", b"C" * 1000)
    assert store.stats()["bytes_used"] == used


# -- threads and processes ---------------------------------------------------------------------


def test_threads_share_one_handle(store: ms.Store) -> None:
    errors: List[str] = []
    barrier = threading.Barrier(4)

    def work(t: int) -> None:
        barrier.wait()
        for i in range(2000):
            key, value = f"t{t}/{i % 50}", f"{t}:{i}".encode() * (1 + i % 7)
            store.put(key, value)
            if store.get(key) != value:
                errors.append(f"{key}: {store.get(key)!r} != {value!r}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.stats()["puts"] == 8000 and len(store) == 200


VALUE_FN = r"""
import hashlib

def value(p, j, ver):
    body = hashlib.blake2b(b"%d/%d/%d" % (p, j, ver)).digest()
    reps = 2000 if j % 500 == 7 else 1 + (j * 7 + ver) % 40   # some values > 64 KiB
    return body * reps
"""

WORKER = VALUE_FN + r"""
import sys, time
import memwatch.store as ms

name, me, n, procs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

def wait_for(marker):
    deadline = time.monotonic() + 120
    while not all(s.contains(f"{marker}/{p}") for p in range(procs)):
        if time.monotonic() > deadline:
            sys.exit(f"worker {me}: timed out waiting for {marker}")
        time.sleep(0.001)

s = ms.open(name)
# phase 1: everyone writes version 1 of its own keys
for j in range(n):
    s.put(f"p{me}/{j}", value(me, j, 1))
s.put(f"phase1/{me}", b"")
wait_for("phase1")
checked = 0
# phase 2: write version 2 of our keys while reading everyone's: each read is
# exactly version 1 or version 2, never anything else
for j in range(n):
    s.put(f"p{me}/{j}", value(me, j, 2))
    for p in range(procs):
        got = s.get(f"p{p}/{j}")
        if got not in (value(p, j, 1), value(p, j, 2)):
            sys.exit(f"worker {me}: p{p}/{j} is neither version: {got[:32]!r}")
        checked += 1
s.put(f"phase2/{me}", b"")
wait_for("phase2")
# phase 3: everything is version 2
for p in range(procs):
    for j in range(n):
        if s.get(f"p{p}/{j}") != value(p, j, 2):
            sys.exit(f"worker {me}: p{p}/{j} is not version 2")
        checked += 1
print(checked)
"""


def test_three_processes_put_and_get_with_every_value_verified(name: str) -> None:
    n, procs = 1500, 3
    ns: dict = {}
    exec(VALUE_FN, ns)
    value = ns["value"]
    with ms.connect(name, 64 << 20, "refuse") as s:
        workers = [spawn(WORKER, name, str(i), str(n), str(procs)) for i in range(procs)]
        outputs = [finish(w) for w in workers]
        assert [int(o) for o in outputs] == [2 * procs * n] * procs
        for p in range(procs):
            for j in range(n):
                assert s.get(f"p{p}/{j}") == value(p, j, 2), (p, j)
        st = s.stats()
        markers = 2 * procs
        assert st["entries"] == procs * n + markers
        assert st["puts"] == 2 * procs * n + markers
        assert st["hits"] == procs * (2 * procs * n) + procs * n
        assert (st["misses"], st["evictions"], st["refusals"], st["deletes"], st["recoveries"]) == (0, 0, 0, 0, 0)


def test_examples_writer_reader_analytics_as_three_processes(name: str) -> None:
    here = REPO_ROOT / "examples" / "store"
    env = dict(os.environ)
    env.pop("PYTHONFAULTHANDLER", None)
    run = lambda *a: subprocess.Popen(  # noqa: E731
        [sys.executable, *a], cwd=here, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    writer = run("writer.py", name, "1", "50")
    reader = run("reader.py", name)
    analytics = run("analytics.py", name, "3")
    outs = []
    for p in (writer, reader, analytics):
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert err == ""
        outs.append(out)
    rounds = int(outs[0].split()[1])
    assert outs[0].strip() == f"writer: {rounds} rounds x 50 keys = {rounds * 50} puts"
    assert outs[1].startswith("reader: ") and "reads verified over 50 keys" in outs[1]
    assert outs[2].startswith("analytics: entries=")
    with ms.open(name) as s:
        assert s.get("writer/done") == str(rounds).encode()
        assert s.stats()["puts"] == (rounds + 1) * 50 + 2


# -- the watcher's value store --------------------------------------------------------------------

READ_BACK = r"""
import sys, memwatch.store as ms
with ms.open(sys.argv[1]) as s:
    for key in sys.argv[2:]:
        v = s.get(key)
        if v is None:
            sys.exit(f"{key} is not in the store")
        sys.stdout.buffer.write(len(v).to_bytes(8, "little") + v)
"""


def read_in_another_process(name: str, *keys: str) -> List[bytes]:
    out = finish(spawn(READ_BACK, name, *keys))
    values, i = [], 0
    while i < len(out):
        n = int.from_bytes(out[i : i + 8], "little")
        values.append(out[i + 8 : i + 8 + n])
        i += 8 + n
    return values


@pytest.mark.parametrize("backend", DETECTING_BACKENDS)
def test_large_values_go_to_the_store_and_another_process_reads_them(backend: str, name: str) -> None:
    require_backend(backend)
    big = bytearray((i * 7) % 251 for i in range(100_000))
    with ms.connect(name, 8 << 20) as s, memwatch.MemoryWatcher(backend=backend, max_value_bytes=4096) as w:
        w.set_value_store(s)
        assert w.value_store is s
        region = w.watch(big, "big")
        v0 = bytes(big)
        big[50_000:50_010] = b"0123456789"
        v1 = bytes(big)
        [ev] = w.check_changes()
        assert (ev.old_value, ev.new_value) == (None, None)
        assert ev.changed_ranges == [(50_000, 10)]
        assert ev.storage_key_old == f"memwatch/2/{region}/0"
        assert ev.storage_key_new == f"memwatch/2/{region}/1"
        assert read_in_another_process(name, ev.storage_key_old, ev.storage_key_new) == [v0, v1]
        big[-3:] = b"end"
        v2 = bytes(big)
        [ev2] = w.check_changes()
        assert ev2.changed_ranges == [(99_997, 3)]
        assert ev2.storage_key_old == ev.storage_key_new
        assert ev2.storage_key_new == f"memwatch/2/{region}/2"
        assert read_in_another_process(name, ev2.storage_key_old, ev2.storage_key_new) == [v1, v2]
        assert s.get(ev2.storage_key_new) == v2
        # small regions keep carrying their values inline
        small = bytearray(b"small")
        w.watch(small, "small")
        small[0] = ord("S")
        [ev3] = w.check_changes()
        assert (ev3.old_value, ev3.new_value, ev3.storage_key_old, ev3.storage_key_new) == (
            b"small", b"Small", None, None
        )
        # detached: no more keys
        w.set_value_store(None)
        assert w.value_store is None
        big[0] ^= 0xFF
        [ev4] = w.check_changes()
        assert (ev4.storage_key_old, ev4.storage_key_new) == (None, None)


def test_set_value_store_after_watch_stores_the_current_value(name: str) -> None:
    big = bytearray(b"x" * 10_000)
    with ms.connect(name, 1 << 20) as s, memwatch.MemoryWatcher(backend="poll", max_value_bytes=100) as w:
        region = w.watch(big, "big")
        w.set_value_store(s)
        assert s.get(f"memwatch/2/{region}/0") == b"x" * 10_000
        big[0:1] = b"y"
        [ev] = w.check_changes()
        assert read_in_another_process(name, ev.storage_key_old, ev.storage_key_new) == [
            b"x" * 10_000, b"y" + b"x" * 9_999
        ]


def test_the_watcher_keeps_using_a_store_whose_handle_was_closed(name: str) -> None:
    big = bytearray(20_000)
    with memwatch.MemoryWatcher(backend="poll", max_value_bytes=100) as w:
        s = ms.connect(name, 1 << 20)
        w.set_value_store(s)
        w.watch(big, "big")
        s.close()
        big[5] = 1
        [ev] = w.check_changes()
        assert read_in_another_process(name, ev.storage_key_new) == [bytes(big)]


def test_set_value_store_errors(name: str) -> None:
    w = memwatch.MemoryWatcher(backend="poll")
    with pytest.raises(TypeError, match="memwatch.store.Store or None, got dict"):
        w.set_value_store({})  # type: ignore[arg-type]
    s = ms.connect(name, 1 << 20)
    s.close()
    with pytest.raises(ms.StoreClosedError):
        w.set_value_store(s)
    w.close()
    with ms.connect(name, 1 << 20) as s2, pytest.raises(memwatch.WatcherClosedError):
        w.set_value_store(s2)


def test_package_ships_store_type_stubs() -> None:
    pkg = Path(memwatch.__file__).parent
    stub = (pkg / "store.pyi").read_text()
    for public in ms.__all__:
        if not public.endswith("Error"):
            assert public in stub, public
    for method in ("put", "get", "view", "delete", "contains", "keys", "items", "stats", "key_stats", "clear",
                   "close", "repair", "release", "pinned", "is_current"):
        assert f"def {method}(" in stub, method


# -- documentation ---------------------------------------------------------------------------------


def test_module_docstring_example() -> None:
    import doctest

    result = doctest.testmod(ms)
    assert (result.failed, result.attempted) == (0, 3)
