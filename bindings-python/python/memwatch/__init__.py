"""memwatch: find out when watched memory changes.

Watch any writable buffer-protocol object (bytearray, memoryview, numpy
array, mmap, array.array); every change becomes a :class:`ChangeEvent` with
the variable name, the changed byte ranges, the old and new bytes, a
timestamp and (with the ``protect`` backend) the writing thread.

>>> import memwatch
>>> data = bytearray(b"hello")
>>> with memwatch.MemoryWatcher(backend="poll") as watcher:
...     region = watcher.watch(data)
...     data[0] = ord("H")
...     [event] = watcher.check_changes()
>>> event.variable_name, event.old_value, event.new_value, event.changed_ranges
('data', b'hello', b'Hello', [(0, 1)])

All detection happens in the Rust engine (memwatch-core); this package only
translates. Events go either to the callback set with
:meth:`MemoryWatcher.set_callback` (on a background delivery thread, with the
GIL held) or, when no callback is set, to the next
:meth:`MemoryWatcher.check_changes` call, which is synchronous: every write
made before it is in its result. Each change is delivered exactly once.
"""

from __future__ import annotations

import atexit
import json
import sys
from types import FrameType, MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Union

from . import _memwatch
from ._errors import (
    DatabaseError,
    InvalidArgumentError,
    MemwatchError,
    MemwatchOSError,
    NotContiguousError,
    OverlapError,
    ReadOnlyError,
    UnmappedError,
    UnsupportedError,
    WatcherClosedError,
)
from ._memwatch import ChangeEvent, Recorder
from .adapters import Change, EngineAdapter, PollingAdapter, TrackerAdapter, TrackingLevel

if TYPE_CHECKING:
    from .store import Store

__all__ = [
    "MemoryWatcher",
    "ChangeEvent",
    "TrackerAdapter",
    "EngineAdapter",
    "PollingAdapter",
    "Change",
    "TrackingLevel",
    "page_size",
    "reassert_signal_handler",
    "BACKENDS",
    "DEFAULT_OPTIONS",
    "EXIT_FLUSH_TIMEOUT_MS",
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
    "Recorder",
]

#: Version of the package (and of the engine it was built with).
__version__: str = _memwatch.__version__

#: Backend names accepted by :class:`MemoryWatcher` (the engine's list).
BACKENDS = tuple(_memwatch.BACKENDS)

#: The engine's default watcher options, as :class:`MemoryWatcher` keyword
#: arguments (read-only; the engine is the one source of these numbers).
DEFAULT_OPTIONS = MappingProxyType(dict(_memwatch.DEFAULT_OPTIONS))
_D = DEFAULT_OPTIONS

#: How long the atexit hook waits, for all watchers together, for the
#: changes pending at exit to reach the callbacks, in milliseconds (the
#: engine's ``EXIT_FLUSH_TIMEOUT``, shared by every binding's exit hook).
EXIT_FLUSH_TIMEOUT_MS: float = _memwatch.EXIT_FLUSH_TIMEOUT_MS

#: Type of a change callback.
Callback = Callable[[ChangeEvent], Any]

_MAX_REGION_ID = 0xFFFF_FFFF

# Stats that are per engine watcher: summed over a watcher's two (force_store).
_PER_WATCHER_COUNTS = (
    "regions", "events", "fallback_regions", "shared_regions", "coalesced_events", "native_bytes", "snapshot_bytes", "pending_events", "callback_errors",
)


def _counts(value: Any) -> bool:
    """True for what :meth:`MemoryWatcher.all` watches: a writable,
    C-contiguous, non-empty buffer."""
    if isinstance(value, (bytes, str, int, float, type(None))):
        return False
    try:
        view = memoryview(value)
    except TypeError:
        return False
    try:
        return not view.readonly and view.c_contiguous and view.nbytes > 0
    finally:
        view.release()


def page_size() -> int:
    """The operating system's page size in bytes."""
    return _memwatch.page_size()


def reassert_signal_handler() -> bool:
    """Puts memwatch's SIGSEGV handler back on top of one installed after it.

    The protect backend needs its handler to see write faults first. When
    another SIGSEGV handler is installed after a protect watcher started
    (``faulthandler.enable()`` called late, a crash reporter), call this:
    memwatch's handler goes back on top and passes every fault that is not
    its own to that handler, so both keep working, and a real crash is still
    reported by it once. Returns True if anything changed. Not needed with
    the writewatch backend, which installs no handler.
    """
    return _memwatch.reassert_signal_handler()


def _refuse_movable(obj: Any) -> None:
    """Raises InvalidArgumentError for a ctypes object that owns its memory.

    ctypes tracks no buffer exports, so ``ctypes.resize()`` of such an object
    moves its memory even while it is watched, and the watcher would go on
    reading freed memory. A ctypes object that does not own its memory
    (``from_buffer`` of a bytearray, ``from_address``, a
    ``multiprocessing.Array``) cannot be resized: it is watched as usual.
    """
    while isinstance(obj, memoryview):
        obj = obj.obj
    ct = sys.modules.get("ctypes")
    if ct is None:
        return
    kinds = (ct.Array, ct.Structure, ct.Union, ct._SimpleCData, ct._Pointer)
    if isinstance(obj, kinds) and getattr(obj, "_b_needsfree_", 0):
        raise InvalidArgumentError(
            f"a {type(obj).__name__} that owns its memory can be moved by ctypes.resize(), "
            "which no buffer export prevents; watch one made with "
            "from_buffer(bytearray(...)) instead (the bytearray then pins it)"
        )


def _infer_name(obj: Any, frame: Optional[FrameType]) -> str:
    """The caller's variable name for ``obj`` when exactly one name binds it.

    Looks at the caller's local variables, then (when no local binds it) its
    module globals. With no name, or more than one, the result is
    ``"<type at 0xADDRESS>"``.
    """
    if frame is not None:
        local_names = [k for k, v in frame.f_locals.items() if v is obj]
        if len(local_names) == 1:
            return local_names[0]
        if not local_names and frame.f_globals is not frame.f_locals:
            global_names = [k for k, v in frame.f_globals.items() if v is obj]
            if len(global_names) == 1:
                return global_names[0]
    return f"<{type(obj).__name__} at {id(obj):#x}>"


def _metadata_text(metadata: Any) -> Optional[str]:
    """The text handed to the engine for ``metadata``: str as-is, else JSON."""
    if metadata is None:
        return None
    if isinstance(metadata, str):
        return metadata
    try:
        return json.dumps(metadata, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            "metadata must be a str or a JSON-serializable value (dict, list, "
            f"number, bool); {type(metadata).__name__} is not: {exc}"
        ) from exc


class MemoryWatcher:
    """Watches buffers and reports every change to them.

    Args:
        backend: ``"auto"`` (default: ``"writewatch"`` where the kernel has
            it, else ``"protect"``); ``"writewatch"`` (userfaultfd
            write-protection, Linux 6.7+: no signals, system calls may write
            into watched memory, no writer thread); ``"protect"`` (page
            protection + SIGSEGV: reports the writing thread, but a system
            call writing into a watched page fails with EFAULT); ``"poll"``
            (hashing every ``poll_interval_ms``: works on any memory). A
            backend the machine cannot run raises :class:`UnsupportedError`
            saying why.
        writable_window_ms: protect/writewatch: how long a written page is
            left alone before it is diffed (and, for protect, re-protected);
            writes inside the window coalesce into one event per region.
            Default 5.
        poll_interval_ms: poll backend: how often regions are hashed. Default 100.
        max_value_bytes: events carry the whole old and new value when the
            region is at most this many bytes. Default 4096.
        preview_bytes: bytes of old/new preview in every event. Default 256.
        snapshots: keep a copy of each region to report old values and exact
            changed ranges. Default True.
        ring_capacity: size of the engine's fault ring, used when the engine
            starts (first watcher of the process). Default 32768.
        locate_writers: every event's ``where`` also names the writing
            thread (``thread_name``), the Python statement that wrote
            (``file``/``function``/``line``) and the ``stack``, a list of
            frame dicts, innermost first: up to ``stack_depth`` Python frames
            (``python`` True: ``file``, ``function``, ``line``), then the
            native ones (``ip``, ``module``, ``module_offset``, ``function``,
            ``file``, ``line``, ``inlined``). Without Python frames (see
            ``get_stats()["python_frames"]``) the user frame is native and
            also gives ``module``/``module_offset``.
            Needs ``"protect"``: ``"auto"`` picks it (the stats'
            ``backend_reason`` says so), ``"writewatch"``/``"poll"`` raise
            :class:`InvalidArgumentError`. Only the first write to a page in
            its writable window is located (``unattributed_faults`` counts
            the other pages' faults merged into the event). Default False.
        stack_depth: most frames captured per located write, 1..32 (Python
            frames: at most 21). Default 8.

        adapter: a :class:`TrackerAdapter` to watch with instead of the
            options above (keyword, or in place of ``backend``):
            ``PollingAdapter(poll_interval_ms=50)``, ``EngineAdapter("protect",
            ...)``, or a subclass of your own (see :mod:`memwatch.adapters`).
            Passing both an adapter and other options is a TypeError.

    A watcher is a context manager; leaving the ``with`` block closes it.
    All methods may be called from any thread.
    """

    def __init__(
        self,
        backend: "Union[str, TrackerAdapter]" = _D["backend"],
        writable_window_ms: float = _D["writable_window_ms"],
        poll_interval_ms: float = _D["poll_interval_ms"],
        max_value_bytes: int = _D["max_value_bytes"],
        preview_bytes: int = _D["preview_bytes"],
        snapshots: bool = _D["snapshots"],
        ring_capacity: int = _D["ring_capacity"],
        locate_writers: bool = False,
        stack_depth: int = 8,
        *,
        adapter: Optional[TrackerAdapter] = None,
    ) -> None:
        if isinstance(backend, TrackerAdapter):
            backend, adapter = "auto", backend if adapter is None else adapter
        if adapter is not None:
            if not isinstance(adapter, TrackerAdapter):
                raise TypeError(
                    f"adapter must be a memwatch.TrackerAdapter, got {type(adapter).__name__}"
                )
            if (backend, writable_window_ms, poll_interval_ms, max_value_bytes, preview_bytes,
                    snapshots, ring_capacity, locate_writers, stack_depth) != tuple(_D[k] for k in (
                    "backend", "writable_window_ms", "poll_interval_ms", "max_value_bytes",
                    "preview_bytes", "snapshots", "ring_capacity")) + (False, 8):
                raise TypeError("pass either an adapter or backend options, not both")
            self._side: Optional[Any] = None
            self._value_store: "Optional[Store]" = None
            if isinstance(adapter, EngineAdapter):
                # The engine itself: every feature, the adapter's options.
                inner = adapter._watcher
                self._native = inner._native
                self._native_args = inner._native_args
                self._side = inner._side
                self._value_store = inner._value_store
            else:
                from .adapters import _UserAdapterNative

                self._native = _UserAdapterNative(adapter)
                self._native_args = None
            return
        if not isinstance(backend, str):
            raise TypeError(f"backend must be a str, got {type(backend).__name__}")
        for label, value in (
            ("max_value_bytes", max_value_bytes),
            ("preview_bytes", preview_bytes),
            ("ring_capacity", ring_capacity),
            ("stack_depth", stack_depth),
        ):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{label} must be an int, got {type(value).__name__}")
            if value < 0:
                raise InvalidArgumentError(f"{label} must be >= 0, got {value}")
        for label, ms in (("writable_window_ms", writable_window_ms), ("poll_interval_ms", poll_interval_ms)):
            if isinstance(ms, bool) or not isinstance(ms, (int, float)):
                raise TypeError(f"{label} must be a number of milliseconds, got {type(ms).__name__}")
        self._value_store = None
        self._native_args = (
            backend,
            float(writable_window_ms),
            float(poll_interval_ms),
            max_value_bytes,
            preview_bytes,
            bool(snapshots),
            ring_capacity,
            bool(locate_writers),
            stack_depth,
        )
        self._native = _memwatch.Watcher(*self._native_args)
        # Regions watched with force_store=True: a second engine watcher with
        # the same options but max_value_bytes=0, so that every value goes to
        # the value store. Made on first use.
        self._side = None

    def _natives(self) -> List[Any]:
        """The engine watchers behind this one (the force_store one if made)."""
        return [self._native] if self._side is None else [self._native, self._side]

    def _store_native(self) -> Any:
        """The force_store watcher, made (with the current value store) on first use."""
        if self._side is None:
            if self._native.closed:
                raise WatcherClosedError("watcher is closed")
            args = list(self._native_args)
            args[3] = 0  # max_value_bytes
            side = _memwatch.Watcher(*args)
            cb = self._native.get_callback()
            if cb is not None:
                side.set_callback(cb)
            if self._value_store is not None:
                side.set_value_store(self._value_store)
            self._side = side
        return self._side

    # -- watching ---------------------------------------------------------

    def watch(
        self, obj: Any, name: Optional[str] = None, force_store: bool = False, metadata: Any = None
    ) -> int:
        """Starts watching ``obj``'s memory; returns the region id.

        Args:
            obj: a writable, contiguous buffer-protocol object: bytearray,
                memoryview (of writable memory), numpy array, mmap,
                array.array, ctypes array made with ``from_buffer``, ...
            name: the name events report. When None it is the caller's
                variable name for ``obj`` if exactly one variable binds it,
                else ``"<type at 0x...>"``.
            force_store: put this region's values into the value store (see
                :meth:`set_value_store`) however small they are: its events
                carry ``storage_key_old``/``storage_key_new`` and previews
                instead of inline ``old_value``/``new_value``. Without a value
                store attached, no keys (until one is set). Overlap is checked
                among force_store regions and among the others, not across
                the two kinds.
            metadata: anything you want back in every event of this region:
                a str is passed through; any other JSON-serializable value
                (dict, list, number) is stored by the engine as JSON and
                events carry the very object you passed.

        While watched, ``obj`` is pinned: it stays alive even if you drop it,
        and it cannot be resized (a bytearray raises BufferError on growth, an
        mmap refuses to close). :meth:`unwatch` or :meth:`close` releases it.

        Raises:
            ReadOnlyError (a TypeError): ``obj`` is read-only, e.g. ``bytes``.
            NotContiguousError (a TypeError): ``obj`` is a strided view.
            TypeError: ``obj`` does not support the buffer protocol.
            InvalidArgumentError (a ValueError): ``obj`` is empty, or a ctypes
                object that owns its memory (``ctypes.resize()`` could move
                it; use ``from_buffer(bytearray(n))``).
            OverlapError (a ValueError): the memory overlaps a region of this watcher.
            WatcherClosedError (a ValueError): the watcher is closed.
        """
        if name is None:
            frame = sys._getframe(1)
            try:
                name = _infer_name(obj, frame)
            finally:
                del frame
        elif not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {type(name).__name__}")
        if "\x00" in name:
            raise InvalidArgumentError("name must not contain NUL characters")
        text = _metadata_text(metadata)
        if text is not None and "\x00" in text:
            raise InvalidArgumentError("metadata must not contain NUL characters")
        if not isinstance(force_store, bool):
            raise TypeError(f"force_store must be a bool, got {type(force_store).__name__}")
        _refuse_movable(obj)
        if self._native_args is None:  # a user adapter
            return int(self._native.watch(obj, name, force_store, metadata))
        native = self._store_native() if force_store else self._native
        region_id: int = native.watch(obj, name, text, metadata)
        return region_id

    def unwatch(self, region_id: int) -> bool:
        """Stops watching a region and releases its object.

        Returns True if the region was watched by this watcher, False for an
        id that is unknown or already unwatched. Changes made before the call
        that were not yet delivered may still be reported.
        """
        if isinstance(region_id, bool) or not isinstance(region_id, int):
            raise TypeError(f"region_id must be an int, got {type(region_id).__name__}")
        if region_id < 0 or region_id > _MAX_REGION_ID:
            if self._native.closed:
                raise WatcherClosedError("watcher is closed")
            return False
        if self._side is not None and region_id in self._side.region_ids():
            return bool(self._side.unwatch(region_id))
        return bool(self._native.unwatch(region_id))

    def stop_all(self) -> None:
        """Unwatches every region of this watcher (the watcher stays usable)."""
        for native in self._natives():
            for region_id in native.region_ids():
                native.unwatch(region_id)

    def watched(self) -> List[int]:
        """Ids of the regions this watcher currently watches, ascending."""
        return sorted(r for native in self._natives() for r in native.region_ids())

    def all(self, level: TrackingLevel = TrackingLevel.ALL) -> Dict[str, int]:
        """Watches every buffer variable of the caller's scope; returns {name: region_id}.

        ``level`` picks the scope: :attr:`TrackingLevel.LOCALS` (the caller's
        local variables), :attr:`TrackingLevel.GLOBALS` (its module's
        globals) or :attr:`TrackingLevel.ALL` (default: locals, then
        globals; at module level the two are the same dict).

        What counts, in the scope's order: a variable whose name does not
        start with ``_`` and whose value is a writable, C-contiguous,
        non-empty buffer-protocol object (bytearray, writable memoryview,
        numpy array, mmap, array.array, ctypes array, ...). Each is watched
        under its variable name. Skipped: read-only buffers (``bytes``),
        strided views, empty buffers, non-buffers (ints, str, modules, ...),
        an object already watched by this watcher or bound to an earlier
        name, and memory overlapping an earlier region (a view of a counted
        bytearray); the last two come from the engine's overlap check, so
        calling it again watches only what is new.
        """
        if not isinstance(level, TrackingLevel):
            raise TypeError(f"level must be a memwatch.TrackingLevel, got {type(level).__name__}")
        frame = sys._getframe(1)
        try:
            scopes = []
            if level in (TrackingLevel.LOCALS, TrackingLevel.ALL):
                scopes.append(dict(frame.f_locals))
            if level in (TrackingLevel.GLOBALS, TrackingLevel.ALL):
                if not scopes or frame.f_globals is not frame.f_locals:
                    scopes.append(dict(frame.f_globals))
        finally:
            del frame
        seen = set()  # ids of objects already counted in this call
        result: Dict[str, int] = {}
        for scope in scopes:
            for name, value in scope.items():
                if name.startswith("_") or id(value) in seen or not _counts(value):
                    continue
                try:
                    region_id = self.watch(value, name)
                except (OverlapError, ReadOnlyError, NotContiguousError, InvalidArgumentError,
                        UnmappedError):
                    continue
                seen.add(id(value))
                result[name] = region_id
        return result

    # -- events -------------------------------------------------------------

    def set_callback(self, fn: Optional[Callback]) -> None:
        """Sends every future event to ``fn`` (None: back to :meth:`check_changes`).

        ``fn(event)`` runs on the watcher's delivery thread with the GIL held,
        one call at a time. Events detected but not yet collected when the
        callback is set go to it too. An exception raised by ``fn`` goes to
        :func:`sys.unraisablehook` and counts in ``get_stats()["callback_errors"]``;
        the watcher keeps working. ``fn`` may call any method of the watcher,
        including :meth:`close`.
        """
        if fn is not None and not callable(fn):
            raise TypeError(f"callback must be callable or None, got {type(fn).__name__}")
        for native in self._natives():
            native.set_callback(fn)

    @property
    def callback(self) -> Optional[Callback]:
        """The callback set with :meth:`set_callback`, or None."""
        cb: Optional[Callback] = self._native.get_callback()
        return cb

    def check_changes(self) -> List[ChangeEvent]:
        """Returns every change not yet delivered, oldest first.

        Synchronous: every write made before the call is in the result (or
        was already delivered). With a callback set, the changes pending at
        the call are delivered to the callback before this returns (changes
        made after the call are not waited for), and the result is empty.
        The GIL is released while the engine works; Ctrl-C
        (KeyboardInterrupt) interrupts the wait for the callback.

        At interpreter exit (atexit), changes still pending are delivered to
        the callbacks for up to :data:`EXIT_FLUSH_TIMEOUT_MS` in all, then
        every watcher is closed.
        """
        events: List[ChangeEvent] = self._native.check_changes()
        if self._side is not None:
            events = sorted(events + self._side.check_changes(), key=lambda e: e.seq)
        return events

    def get_stats(self) -> Dict[str, Union[int, str, None]]:
        """Counters of this watcher as a dict.

        Keys: ``backend`` (the backend in use, never "auto"),
        ``backend_reason``, ``regions``, ``protected_pages``, ``faults``,
        ``events``, ``fallback_regions`` (regions on another backend than the
        watcher's, reason in ``backend_reason``), ``gone_regions`` (regions
        dropped because their memory was unmapped or replaced, process-wide),
        ``dropped_wheres``, ``reprotect_failures`` (protect pages that could
        not be made read-only again, near vm.max_map_count, and were polled
        instead; process-wide), ``shared_regions`` (regions in shared memory
        watched with protect or writewatch, which miss other processes'
        writes), ``native_bytes``, ``snapshot_bytes``, ``pending_events``,
        ``coalesced_events`` (changes merged into a pending event of the same
        region once 1024 events wait), ``callback_errors``, ``latency_p50_ns``,
        ``latency_p99_ns``, ``hot_pages`` (pages written nonstop that are
        left writable and polled every poll interval instead, their writer
        not located; process-wide, 0 when nothing is written nonstop),
        ``python_frames`` (``"CPython 3.X"`` when located
        writes carry Python frames, else ``"unavailable: <why>"``).
        """
        stats: Dict[str, Union[int, str, None]] = self._native.stats()
        if self._side is not None:
            for key, value in self._side.stats().items():
                if key in _PER_WATCHER_COUNTS and isinstance(value, int):
                    stats[key] = int(stats[key] or 0) + value
        return stats

    # -- recording ------------------------------------------------------------------

    def record_to(self, url: str) -> Recorder:
        """Records every change event of this watcher into a database.

        ``url`` is a file path or ``"sqlite:PATH"`` (SQLite, WAL mode) or
        ``"postgresql://user@host:port/db"``. Every event is recorded, whether
        it goes to the callback or to :meth:`check_changes`, into the tables
        ``memwatch_recordings``, ``memwatch_events`` and ``memwatch_losses``
        (created if missing; schema in crates/memwatch-record/README.md).
        Recording never blocks the watched program: events wait in a bounded
        queue for the recorder's own thread; what does not fit is counted
        (``stats()["dropped"]``) and written to ``memwatch_losses``. Returns a
        :class:`Recorder`: ``flush(timeout=10.0)``, ``stats()``, ``close()``.

        Raises:
            InvalidArgumentError: the URL is not SQLite or PostgreSQL.
            DatabaseError: the database cannot be opened or reached.
            WatcherClosedError: the watcher is closed.
        """
        if not isinstance(url, str):
            raise TypeError(f"url must be a str, got {type(url).__name__}")
        rec: Recorder = self._native.record_to(url)
        return rec

    # -- value store ------------------------------------------------------------

    def set_value_store(self, store: "Optional[Store]") -> None:
        """Sends the values of regions larger than ``max_value_bytes`` to ``store``.

        ``store`` is a :class:`memwatch.store.Store` (None detaches it).
        Events of such regions then carry ``storage_key_new``, the key of the
        new value, and ``storage_key_old``, the key of the old value while the
        store still holds it (keys ``"memwatch/{adapter_id}/{region_id}/{epoch}"``);
        any process that opens the store reads them with
        ``store.get(event.storage_key_new)``. The current values of already
        watched large regions are put at once; regions watched later are put
        when watched. The watcher holds its own reference to the store:
        closing ``store`` does not detach it.

        Raises:
            TypeError: ``store`` is not a memwatch.store.Store or None.
            memwatch.store.StoreClosedError: ``store`` is closed.
            WatcherClosedError: the watcher is closed.
        """
        if store is not None:
            from .store import Store as _Store

            if not isinstance(store, _Store):
                raise TypeError(
                    f"store must be a memwatch.store.Store or None, got {type(store).__name__}"
                )
        for native in self._natives():
            native.set_value_store(store)
        self._value_store = store

    @property
    def value_store(self) -> "Optional[Store]":
        """The store set with :meth:`set_value_store`, or None."""
        return self._value_store

    @property
    def backend(self) -> Optional[str]:
        """The backend this watcher uses (``"protect"``, ``"poll"``, ...)."""
        backend = self._native.stats()["backend"]
        return None if backend is None else str(backend)

    # -- lifetime -------------------------------------------------------------

    def close(self) -> None:
        """Unwatches everything, releases every object and stops delivery.

        Idempotent. Safe to call from inside the callback and while callbacks
        run. Any later call except close() raises WatcherClosedError.
        """
        for native in self._natives():
            native.close()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return bool(self._native.closed)

    def __enter__(self) -> "MemoryWatcher":
        """Returns the watcher itself."""
        return self

    def __exit__(self, *exc_info: Any) -> None:
        """Closes the watcher."""
        self.close()

    def __repr__(self) -> str:
        """``<memwatch.MemoryWatcher backend='protect' regions=2>``."""
        if self.closed:
            return "<memwatch.MemoryWatcher closed>"
        stats = self._native.stats()
        return f"<memwatch.MemoryWatcher backend={stats['backend']!r} regions={stats['regions']}>"


# Close every watcher before the interpreter finalizes, so that no delivery
# thread tries to take the GIL of an interpreter that is shutting down.
atexit.register(_memwatch._close_all)
