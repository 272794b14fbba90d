"""Type stubs of the native module memwatch._memwatch (built from src/lib.rs)."""

from typing import Any, Callable, Dict, List, Optional, Tuple, Union, final

from . import store as store  # the native submodule memwatch._memwatch.store, re-exported as memwatch.store

ADAPTER_PYTHON: int
#: The engine's default options, as MemoryWatcher keyword arguments.
DEFAULT_OPTIONS: Dict[str, Any]
#: The engine's backend names.
BACKENDS: List[str]
EXIT_FLUSH_TIMEOUT_MS: float
__version__: str
#: "CPython 3.X" when located writes carry Python frames, else "unavailable: <why>".
PYTHON_FRAMES: str

def page_size() -> int:
    """The operating system's page size in bytes."""

def reassert_signal_handler() -> bool:
    """Puts memwatch's SIGSEGV handler back on top of one installed after it."""

def _close_all() -> None:
    """Closes every live watcher (registered with atexit)."""

def _break_python_frames(broken: bool) -> None:
    """Test hook: with True, every capture sees a code object of the wrong type (a wrong layout guess)."""

@final
class ChangeEvent:
    """One detected change to one watched region."""

    @property
    def seq(self) -> int:
        """Process-wide sequence number, increasing in detection order."""
    @property
    def timestamp_ns(self) -> int:
        """CLOCK_MONOTONIC nanoseconds of the first write (protect) or of detection (poll)."""
    @property
    def adapter_id(self) -> int:
        """Which language adapter made the watcher (2 = Python)."""
    @property
    def region_id(self) -> int:
        """The region id watch() returned."""
    @property
    def variable_id(self) -> Optional[int]:
        """id() of the watched object; None if the region was unwatched before delivery."""
    @property
    def variable_name(self) -> str:
        """The name given to (or inferred by) watch()."""
    @property
    def where(self) -> Dict[str, Any]:
        """{"thread_id", "fault_ip", "file", "function", "line"}; None where unknown.
        With locate_writers also "thread_name", "module", "module_offset",
        "unattributed_faults" and "stack" (list of frame dicts)."""
    @property
    def thread_id(self) -> Optional[int]:
        """Kernel thread id of the writer (threading.get_native_id()), None if unknown."""
    @property
    def how_big(self) -> int:
        """Size of the region in bytes."""
    @property
    def coalesced(self) -> int:
        """Changes this event stands for: 1, or more when later changes were
        merged into it in a full queue (old_* from the first, new_* from the last)."""
    @property
    def changed_ranges(self) -> List[Tuple[int, int]]:
        """(offset, length) of each changed run of bytes, ascending, region-relative."""
    @property
    def old_preview(self) -> Optional[bytes]:
        """First preview_bytes before the change; None without snapshots."""
    @property
    def new_preview(self) -> bytes:
        """First preview_bytes after the change."""
    @property
    def old_value(self) -> Optional[bytes]:
        """Whole old value when how_big <= max_value_bytes and snapshots are on."""
    @property
    def new_value(self) -> Optional[bytes]:
        """Whole new value when how_big <= max_value_bytes."""
    @property
    def storage_key_old(self) -> Optional[str]:
        """Value-store key ("memwatch/{adapter_id}/{region_id}/{epoch}") of the old value of a region larger than max_value_bytes, when a value store is attached (MemoryWatcher.set_value_store) and still holds it; else None."""
    @property
    def storage_key_new(self) -> Optional[str]:
        """Value-store key of the new value of a region larger than max_value_bytes, when a value store is attached and took it; else None."""
    @property
    def metadata(self) -> Any:
        """The metadata given to watch()."""
    def to_dict(self) -> Dict[str, Any]:
        """All fields as a plain dict."""

@final
class Recorder:
    """A running recorder (see MemoryWatcher.record_to)."""

    @property
    def recording_id(self) -> int: ...
    def stats(self) -> Dict[str, Any]: ...
    def flush(self, timeout: float = 10.0) -> bool: ...
    def close(self) -> None: ...

class Watcher:
    """Native watcher handle; use memwatch.MemoryWatcher."""

    def __init__(
        self,
        backend: str = "auto",
        writable_window_ms: Optional[float] = None,
        poll_interval_ms: Optional[float] = None,
        max_value_bytes: Optional[int] = None,
        preview_bytes: Optional[int] = None,
        snapshots: Optional[bool] = None,
        ring_capacity: Optional[int] = None,
        locate_writers: Optional[bool] = None,
        stack_depth: Optional[int] = None,
    ) -> None:
        """None keeps the engine's default (DEFAULT_OPTIONS)."""
    def watch(
        self, obj: Any, name: str, metadata_text: Optional[str] = None, metadata: Any = None
    ) -> int: ...
    def unwatch(self, region_id: int) -> bool: ...
    def region_ids(self) -> List[int]: ...
    def set_callback(self, callback: Optional[Callable[[ChangeEvent], Any]]) -> None: ...
    def get_callback(self) -> Optional[Callable[[ChangeEvent], Any]]: ...
    def check_changes(self) -> List[ChangeEvent]: ...
    def set_value_store(self, store: Optional[store.Store]) -> None: ...
    def record_to(self, url: str) -> Recorder: ...
    def stats(self) -> Dict[str, Union[int, str, None]]: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
