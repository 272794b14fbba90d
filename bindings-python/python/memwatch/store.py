"""memwatch.store: MemStream, a key-value store in POSIX shared memory.

Many processes read and write one named store at once, with no server, no
sockets and no serialization. Readers never lock; a process that dies in the
middle of a write is repaired by the next one. The same store can hold the
large old/new values of a :class:`memwatch.MemoryWatcher`
(:meth:`memwatch.MemoryWatcher.set_value_store`), readable from any process.

>>> import memwatch.store
>>> with memwatch.store.connect("doc-example", 1 << 20) as store:
...     store.put("greeting", b"hello")
...     store.get("greeting"), store.get("missing")
...     with store.view("greeting") as mv:     # zero-copy, read-only
...         bytes(mv[:4])
(b'hello', None)
b'hell'
>>> memwatch.store.unlink("doc-example")
True

Keys are ``str`` (UTF-8) or bytes-like, 1 to ``max_key_len`` (default 1024)
bytes; values are any contiguous bytes-like object. The implementation is
the Rust crate ``memwatch-store`` (through ``memwatch._memwatch``); this
module only re-exports it.
"""

from __future__ import annotations

from ._errors import (
    KeyTooLongError,
    MemwatchError,
    StoreArgumentError,
    StoreClosedError,
    StoreCorruptError,
    StoreError,
    StoreFullError,
    StoreNotFoundError,
    StoreOSError,
    StoreTimeoutError,
    ValueTooLargeError,
)
from ._memwatch import store as _native

Store = _native.Store
ValueView = _native.ValueView
ItemIterator = _native.ItemIterator
connect = _native.connect
open = _native.open  # noqa: A001 - the module's API mirrors os.open/gzip.open
unlink = _native.unlink

#: Full policy: evict least recently used entries to make room.
EVICT_LRU: str = _native.EVICT_LRU
#: Full policy: refuse the put with StoreFullError.
REFUSE: str = _native.REFUSE
#: The full policies ``connect()`` accepts.
POLICIES = (EVICT_LRU, REFUSE)
#: Longest store name (``[A-Za-z0-9._-]``, one leading ``/`` optional).
MAX_NAME_LEN: int = _native.MAX_NAME_LEN

__all__ = [
    "Store",
    "ValueView",
    "ItemIterator",
    "connect",
    "open",
    "unlink",
    "EVICT_LRU",
    "REFUSE",
    "POLICIES",
    "MAX_NAME_LEN",
    "MemwatchError",
    "StoreError",
    "StoreFullError",
    "StoreNotFoundError",
    "StoreClosedError",
    "StoreArgumentError",
    "KeyTooLongError",
    "ValueTooLargeError",
    "StoreCorruptError",
    "StoreTimeoutError",
    "StoreOSError",
]
