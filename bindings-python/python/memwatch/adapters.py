"""Tracker adapters: what a :class:`memwatch.MemoryWatcher` watches with.

``MemoryWatcher(adapter=...)`` takes one of these:

- :class:`EngineAdapter` (the default): memwatch's Rust engine with a backend
  and its options; :class:`PollingAdapter` is the engine's ``poll`` backend
  with a poll interval.
- Your own subclass of :class:`TrackerAdapter`: implement ``track``,
  ``untrack``, ``check_changes`` and ``get_stats`` and the watcher routes its
  calls to them. Events may be :class:`Change` objects (a dataclass with the
  fields of :class:`memwatch.ChangeEvent`) or anything else you return.

>>> import memwatch
>>> from memwatch.adapters import PollingAdapter
>>> data = bytearray(4)
>>> with memwatch.MemoryWatcher(adapter=PollingAdapter(poll_interval_ms=50)) as w:
...     _ = w.watch(data, "data")
...     data[1] = 7
...     [e] = w.check_changes()
>>> e.changed_ranges, w.backend
([(1, 1)], 'poll')
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

__all__ = ["TrackerAdapter", "EngineAdapter", "PollingAdapter", "Change", "TrackingLevel"]


class TrackingLevel(enum.Enum):
    """Which of the caller's variables :meth:`MemoryWatcher.all` watches."""

    #: The caller's local variables.
    LOCALS = "locals"
    #: The caller's module globals.
    GLOBALS = "globals"
    #: Locals first, then module globals.
    ALL = "all"


@dataclass
class Change:
    """An event a user-written adapter may return: the fields of
    :class:`memwatch.ChangeEvent`, all but ``region_id`` and
    ``variable_name`` optional."""

    region_id: int
    variable_name: str
    seq: int = 0
    timestamp_ns: int = 0
    adapter_id: int = 0
    variable_id: Optional[int] = None
    where: Dict[str, Any] = field(default_factory=dict)
    how_big: int = 0
    changed_ranges: List[Tuple[int, int]] = field(default_factory=list)
    old_preview: Optional[bytes] = None
    new_preview: Optional[bytes] = None
    old_value: Optional[bytes] = None
    new_value: Optional[bytes] = None
    storage_key_old: Optional[str] = None
    storage_key_new: Optional[str] = None
    metadata: Any = None
    coalesced: int = 1


class TrackerAdapter(ABC):
    """Base class of adapters: subclass it to watch with your own mechanism.

    :class:`memwatch.MemoryWatcher` calls ``track(obj, metadata)`` from
    ``watch()`` with ``metadata = {"name": str, "force_store": bool,
    "metadata": <the caller's metadata>}``, ``untrack`` from ``unwatch()``,
    ``check_changes`` from ``check_changes()`` and ``get_stats`` from
    ``get_stats()``. With a callback set on the watcher, the events
    ``check_changes`` returns go to the callback instead (one at a time, in
    order, on the calling thread) and the watcher's ``check_changes()``
    returns ``[]``; if the callback raises, every event is still offered to
    it, then the first exception propagates (counted in
    ``callback_errors``).
    ``close()`` is called once when the watcher closes; the default does
    nothing.
    """

    @abstractmethod
    def track(self, obj: Any, metadata: Dict[str, Any]) -> int:
        """Starts tracking ``obj``; returns a region id unique in this adapter."""

    @abstractmethod
    def untrack(self, region_id: int) -> bool:
        """Stops tracking; False if ``region_id`` is not tracked."""

    @abstractmethod
    def check_changes(self) -> List[Any]:
        """Every change since the last call, oldest first (synchronous)."""

    @abstractmethod
    def get_stats(self) -> Dict[str, Any]:
        """Counters of this adapter as a dict."""

    def close(self) -> None:
        """Releases what the adapter holds (called once by the watcher)."""


class EngineAdapter(TrackerAdapter):
    """memwatch's engine with one backend and its options: the arguments of
    :class:`memwatch.MemoryWatcher` (``backend``, ``writable_window_ms``,
    ``poll_interval_ms``, ``max_value_bytes``, ``preview_bytes``,
    ``snapshots``, ``ring_capacity``). A watcher made with it has every
    feature (callbacks on the delivery thread, value store, ``all()``).
    Used by one watcher at a time; usable on its own too."""

    def __init__(self, backend: str = "auto", **options: Any) -> None:
        from . import MemoryWatcher

        self._watcher = MemoryWatcher(backend, **options)

    def track(self, obj: Any, metadata: Dict[str, Any]) -> int:
        """Watches ``obj`` (``metadata``: ``name``, ``force_store``, ``metadata``)."""
        return self._watcher.watch(
            obj,
            metadata.get("name") or "",
            force_store=bool(metadata.get("force_store", False)),
            metadata=metadata.get("metadata"),
        )

    def untrack(self, region_id: int) -> bool:
        """Unwatches a region."""
        return self._watcher.unwatch(region_id)

    def check_changes(self) -> List[Any]:
        """As :meth:`memwatch.MemoryWatcher.check_changes`."""
        return self._watcher.check_changes()

    def get_stats(self) -> Dict[str, Any]:
        """As :meth:`memwatch.MemoryWatcher.get_stats`."""
        return self._watcher.get_stats()

    def close(self) -> None:
        """Closes the engine watcher."""
        self._watcher.close()


class PollingAdapter(EngineAdapter):
    """The engine's ``poll`` backend: every region is hashed every
    ``poll_interval_ms`` (default 100) and diffed when its hash moved. Works
    on any memory; no writer thread. Other engine options as keywords."""

    def __init__(self, poll_interval_ms: float = 100.0, **options: Any) -> None:
        super().__init__("poll", poll_interval_ms=poll_interval_ms, **options)


class _UserAdapterNative:
    """Presents a user's TrackerAdapter with the methods MemoryWatcher calls
    on its native watcher."""

    def __init__(self, adapter: TrackerAdapter) -> None:
        self._adapter = adapter
        self._ids: List[int] = []
        self._callback: Optional[Callable[[Any], Any]] = None
        self._callback_errors = 0
        self.closed = False

    def _check_open(self) -> None:
        if self.closed:
            from ._errors import WatcherClosedError

            raise WatcherClosedError("watcher is closed")

    def watch(self, obj: Any, name: str, force_store: bool, metadata: Any) -> int:
        self._check_open()
        region_id = self._adapter.track(
            obj, {"name": name, "force_store": force_store, "metadata": metadata}
        )
        if isinstance(region_id, bool) or not isinstance(region_id, int):
            raise TypeError(
                f"{type(self._adapter).__name__}.track() must return an int region id, "
                f"got {type(region_id).__name__}"
            )
        self._ids.append(region_id)
        return region_id

    def unwatch(self, region_id: int) -> bool:
        self._check_open()
        found = bool(self._adapter.untrack(region_id))
        if region_id in self._ids:
            self._ids.remove(region_id)
        return found

    def region_ids(self) -> List[int]:
        return sorted(self._ids)

    def set_callback(self, fn: Optional[Callable[[Any], Any]]) -> None:
        if fn is not None:
            self._check_open()
        self._callback = fn

    def get_callback(self) -> Optional[Callable[[Any], Any]]:
        return self._callback

    def check_changes(self) -> List[Any]:
        self._check_open()
        events = list(self._adapter.check_changes())
        fn = self._callback
        if fn is None:
            return events
        errors: List[BaseException] = []
        for e in events:
            try:
                fn(e)
            except Exception as exc:
                errors.append(exc)
        self._callback_errors += len(errors)
        if errors:
            # Every event was offered to the callback; the first error is raised.
            raise errors[0]
        return []

    def stats(self) -> Dict[str, Any]:
        stats = dict(self._adapter.get_stats())
        stats.setdefault("backend", type(self._adapter).__name__)
        stats.setdefault("regions", len(self._ids))
        stats["callback_errors"] = stats.get("callback_errors", 0) + self._callback_errors
        return stats

    def set_value_store(self, store: Any) -> None:
        from ._errors import UnsupportedError

        raise UnsupportedError(
            f"a value store needs memwatch's engine; {type(self._adapter).__name__} is a user adapter"
        )

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._ids.clear()
            self._callback = None
            self._adapter.close()
