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
):
    _cls.__module__ = "memwatch"
del _cls
