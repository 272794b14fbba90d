"""memstream_ctypes: the ctypes wrapper over libmemwatch.so (MemStream's cache_* C API) that
the benchmark keeps as its "Python ctypes" row; applications use memwatch.store.

The library is found through $MEMWATCH_STORE_LIB, else
<repo>/target/store/release/ or <repo>/target/release/libmemwatch.so,
else the dynamic loader's path. Build it with:

    cargo build -p memwatch-c --release
"""
import ctypes
import os
from ctypes import (POINTER, Structure, c_char_p, c_int, c_int64, c_size_t,
                    c_uint64, c_void_p)

EVICT_LRU = 0
REFUSE = 1

OK = 0
ERR_NOT_FOUND = -1
ERR_BUSY = -13

_HERE = os.path.dirname(os.path.abspath(__file__))
_CANDIDATES = [os.path.join(_HERE, "..", "..", "target", d, "release", "libmemwatch.so")
               for d in ("store", "")]


def _default_lib():
    for p in _CANDIDATES:
        if os.path.exists(p):
            return os.path.normpath(p)
    return "libmemwatch.so"  # the dynamic loader's search path


class Stats(Structure):
    """Store-wide statistics (cache_stats_t)."""
    _fields_ = [(n, c_uint64) for n in (
        "entries", "max_entries", "capacity_bytes", "bytes_used", "data_bytes",
        "hits", "misses", "evictions", "puts", "deletes", "refusals", "recoveries")]

    def as_dict(self):
        return {n: getattr(self, n) for n, _ in self._fields_}


class KeyStats(Structure):
    """Per-key statistics (cache_key_stats_t); times in ns since the epoch."""
    _fields_ = [(n, c_uint64) for n in (
        "value_size", "created_at_ns", "updated_at_ns", "last_access_ns", "access_count")]


class StoreError(Exception):
    """A negative result code from the C library, with its message."""

    def __init__(self, code, message):
        super().__init__(f"{message} (code {code})")
        self.code = code


def load(path=None):
    lib = ctypes.CDLL(path or os.environ.get("MEMWATCH_STORE_LIB") or _default_lib())
    lib.cache_connect.argtypes = [c_char_p, c_uint64, c_int]
    lib.cache_connect.restype = c_void_p
    lib.cache_put.argtypes = [c_void_p, c_char_p, c_size_t, c_char_p, c_size_t]
    lib.cache_put.restype = c_int
    lib.cache_get.argtypes = [c_void_p, c_char_p, c_size_t, c_void_p, c_size_t]
    lib.cache_get.restype = c_int64
    lib.cache_delete.argtypes = [c_void_p, c_char_p, c_size_t]
    lib.cache_delete.restype = c_int
    lib.cache_contains.argtypes = [c_void_p, c_char_p, c_size_t]
    lib.cache_contains.restype = c_int
    lib.cache_stats.argtypes = [c_void_p, POINTER(Stats)]
    lib.cache_stats.restype = c_int
    lib.cache_key_stats.argtypes = [c_void_p, c_char_p, c_size_t, POINTER(KeyStats)]
    lib.cache_key_stats.restype = c_int
    lib.cache_keys.argtypes = [c_void_p, c_void_p, c_size_t]
    lib.cache_keys.restype = c_int64
    lib.cache_clear.argtypes = [c_void_p]
    lib.cache_clear.restype = c_int
    lib.cache_close.argtypes = [c_void_p]
    lib.cache_close.restype = c_int
    lib.cache_unlink.argtypes = [c_char_p]
    lib.cache_unlink.restype = c_int
    lib.cache_last_error.argtypes = []
    lib.cache_last_error.restype = c_char_p
    return lib


_lib = None
_fast = None


def lib():
    global _lib
    if _lib is None:
        _lib = load()
    return _lib


def fast():
    """Untyped entry points for the hot path (ctypes converts plain ints and
    bytes without argtypes about twice as fast). The *32 functions take
    32-bit lengths, so plain ints are ABI-correct. Gets go through PyDLL (no
    GIL release: they are lock-free and short). Puts first try without
    waiting for the writer lock (PyDLL), and only if it is busy wait for it
    with the GIL released (CDLL)."""
    global _fast
    if _fast is None:
        path = lib()._name
        get32 = ctypes.PyDLL(path).cache_get32
        get32.restype = c_int64
        try_put32 = ctypes.PyDLL(path).cache_try_put32
        try_put32.restype = c_int
        put32 = ctypes.CDLL(path).cache_put32
        put32.restype = c_int
        _fast = (get32, try_put32, put32)
    return _fast


class MemStream:
    """A handle on a shared-memory store.

    MemStream(name, capacity=64 MiB, policy=EVICT_LRU) creates or opens;
    capacity=0 only opens an existing store. get() reuses one buffer per
    handle: use one MemStream per thread (processes each open their own).
    """

    def __init__(self, name, capacity=64 << 20, policy=EVICT_LRU):
        self._lib = lib()
        h = self._lib.cache_connect(name.encode(), capacity, policy)
        if not h:
            raise StoreError(-1, self._lib.cache_last_error().decode())
        self._h = c_void_p(h)
        self._cap = 64 << 10
        self._buf = ctypes.create_string_buffer(self._cap)
        self._get32, self._try_put32, self._put32 = fast()
        self.name = name
        # Hot paths as closures over locals (no attribute lookups per call).
        self.get = self._make_get()
        self.put = self._make_put()

    def _make_get(self):
        get32, h, buf, cap, slow = self._get32, self._h, self._buf, self._cap, self._get_slow

        def get(key):
            """The value of key (bytes) as bytes, or None."""
            if key.__class__ is bytes:
                n = get32(h, key, len(key), buf, cap)
                if 0 <= n <= cap:
                    return buf[:n]
            return slow(key)
        return get

    def _make_put(self):
        try_put32, put32, h, slow = self._try_put32, self._put32, self._h, self._put_slow

        def put(key, value):
            """Stores value (bytes-like) under key (bytes-like)."""
            if key.__class__ is bytes and value.__class__ is bytes and len(value) < 1 << 31:
                r = try_put32(h, key, len(key), value, len(value))
                if r == ERR_BUSY:
                    r = put32(h, key, len(key), value, len(value))
                if r == OK:
                    return
            slow(key, value)
        return put

    def _err(self, code):
        raise StoreError(code, self._lib.cache_last_error().decode())

    def _put_slow(self, key, value):
        key, value = bytes(key), bytes(value)
        r = self._lib.cache_put(self._h, key, len(key), value, len(value))
        if r != OK:
            self._err(r)

    def _get_slow(self, key):
        key = bytes(key)
        while True:
            n = self._lib.cache_get(self._h, key, len(key), None, 0)
            if n < 0:
                return None if n == ERR_NOT_FOUND else self._err(n)
            buf = ctypes.create_string_buffer(max(n, 1))
            m = self._lib.cache_get(self._h, key, len(key), buf, n)
            if m < 0:
                return None if m == ERR_NOT_FOUND else self._err(m)
            if m <= n:
                return buf.raw[:m]

    def delete(self, key: bytes) -> bool:
        r = self._lib.cache_delete(self._h, key, len(key))
        if r == ERR_NOT_FOUND:
            return False
        if r != OK:
            self._err(r)
        return True

    def __contains__(self, key: bytes) -> bool:
        r = self._lib.cache_contains(self._h, key, len(key))
        if r < 0:
            self._err(r)
        return r == 1

    def stats(self) -> dict:
        s = Stats()
        r = self._lib.cache_stats(self._h, ctypes.byref(s))
        if r != OK:
            self._err(r)
        return s.as_dict()

    def key_stats(self, key: bytes):
        s = KeyStats()
        r = self._lib.cache_key_stats(self._h, key, len(key), ctypes.byref(s))
        if r == ERR_NOT_FOUND:
            return None
        if r != OK:
            self._err(r)
        return s

    def keys(self):
        while True:
            need = self._lib.cache_keys(self._h, None, 0)
            if need < 0:
                self._err(need)
            buf = ctypes.create_string_buffer(max(need, 1) + 4096)
            got = self._lib.cache_keys(self._h, buf, len(buf))
            if got < 0:
                self._err(got)
            if got <= len(buf):
                raw, out, i = buf.raw[:got], [], 0
                while i < got:
                    n = int.from_bytes(raw[i:i + 4], "little")
                    out.append(raw[i + 4:i + 4 + n])
                    i += 4 + n
                return out

    def clear(self):
        r = self._lib.cache_clear(self._h)
        if r != OK:
            self._err(r)

    def close(self):
        if self._h:
            self._lib.cache_close(self._h)
            self._h = None

    @staticmethod
    def unlink(name):
        return lib().cache_unlink(name.encode()) == OK

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
