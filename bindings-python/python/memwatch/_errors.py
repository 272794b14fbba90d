"""Exceptions raised by memwatch.

Every memwatch exception derives from :class:`MemwatchError` *and* from the
builtin exception that fits, so ``except ValueError`` / ``except TypeError``
work as they would for any other library.
"""

from __future__ import annotations

__all__ = [
    "MemwatchError",
    "InvalidArgumentError",
    "UnmappedError",
    "ReadOnlyError",
    "NotContiguousError",
    "OverlapError",
    "UnsupportedError",
    "WatcherClosedError",
    "MemwatchOSError",
    "DatabaseError",
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


class MemwatchError(Exception):
    """Base class of every exception memwatch raises."""


class InvalidArgumentError(MemwatchError, ValueError):
    """A bad argument: an empty buffer, an unknown backend, a bad option."""


class UnmappedError(MemwatchError, ValueError):
    """The memory is not (fully) mapped."""


class ReadOnlyError(MemwatchError, TypeError):
    """The object or memory is read-only (e.g. ``bytes``), so it can never change."""


class NotContiguousError(MemwatchError, TypeError):
    """The buffer is not one contiguous block (e.g. ``array[::2]``)."""


class OverlapError(MemwatchError, ValueError):
    """The memory overlaps a region this watcher already watches."""


class UnsupportedError(MemwatchError, RuntimeError):
    """The requested backend cannot be used on this machine (the message says why)."""


class WatcherClosedError(MemwatchError, ValueError):
    """The watcher was closed (like I/O on a closed file, a ValueError)."""


class MemwatchOSError(MemwatchError, OSError):
    """An operating-system call failed."""


class DatabaseError(MemwatchError, OSError):
    """:meth:`MemoryWatcher.record_to` could not open or reach the database
    (the message says why)."""


# -- memwatch.store (MemStream) ----------------------------------------------


class StoreError(MemwatchError):
    """Base class of every error of :mod:`memwatch.store` (also raised as is
    for rare conditions: too many zero-copy views alive at once)."""


class StoreFullError(StoreError):
    """The store is full and its policy is ``"refuse"`` (or every entry that
    could be evicted is pinned by a view). Attributes ``needed``,
    ``available``, ``entries``, ``max_entries``."""

    needed: int
    available: int
    entries: int
    max_entries: int


class StoreNotFoundError(StoreError, FileNotFoundError):
    """No store of that name exists (:func:`memwatch.store.open`, :func:`memwatch.store.unlink`)."""


class StoreClosedError(StoreError, ValueError):
    """The store handle was closed (like I/O on a closed file, a ValueError)."""


class StoreArgumentError(StoreError, InvalidArgumentError):
    """A bad store name, empty key, bad capacity/policy/option (a ValueError)."""


class KeyTooLongError(StoreArgumentError):
    """The key is longer than the store's ``max_key_len``. Attributes ``length``, ``limit``."""

    length: int
    limit: int


class ValueTooLargeError(StoreArgumentError):
    """Key + value can never fit in this store, even empty. Attributes ``length``, ``limit``."""

    length: int
    limit: int


class StoreCorruptError(StoreError):
    """The segment is not a (compatible, intact) memwatch store."""


class StoreTimeoutError(StoreError, TimeoutError):
    """The writer lock could not be taken in time (10 s)."""


class StoreOSError(StoreError, MemwatchOSError):
    """A system call of the store failed (``errno`` is set)."""


# Show the public path (memwatch.ReadOnlyError) in tracebacks and reprs.
for _cls in (
    MemwatchError,
    InvalidArgumentError,
    UnmappedError,
    ReadOnlyError,
    NotContiguousError,
    OverlapError,
    UnsupportedError,
    WatcherClosedError,
    MemwatchOSError,
    DatabaseError,
):
    _cls.__module__ = "memwatch"
for _cls in (
    StoreError,
    StoreFullError,
    StoreNotFoundError,
    StoreClosedError,
    StoreArgumentError,
    KeyTooLongError,
    ValueTooLargeError,
    StoreCorruptError,
    StoreTimeoutError,
    StoreOSError,
):
    _cls.__module__ = "memwatch.store"
del _cls
