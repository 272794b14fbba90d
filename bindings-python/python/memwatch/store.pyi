"""Type stubs of memwatch.store (implemented in bindings-python/src/store.rs)."""

from types import TracebackType
from typing import Dict, Iterator, List, Literal, Optional, Tuple, Type, TypeVar, Union, final

from ._errors import (
    KeyTooLongError as KeyTooLongError,
    MemwatchError as MemwatchError,
    StoreArgumentError as StoreArgumentError,
    StoreClosedError as StoreClosedError,
    StoreCorruptError as StoreCorruptError,
    StoreError as StoreError,
    StoreFullError as StoreFullError,
    StoreNotFoundError as StoreNotFoundError,
    StoreOSError as StoreOSError,
    StoreTimeoutError as StoreTimeoutError,
    ValueTooLargeError as ValueTooLargeError,
)

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

# A key: str (stored as UTF-8) or bytes-like.
_Key = Union[str, bytes, bytearray, memoryview]
# A value: any contiguous bytes-like object (bytes, bytearray, memoryview, numpy array, mmap, ...).
_Value = Union[bytes, bytearray, memoryview]
_Policy = Literal["evict_lru", "refuse"]

_T = TypeVar("_T")

EVICT_LRU: Literal["evict_lru"]
REFUSE: Literal["refuse"]
POLICIES: Tuple[str, str]
MAX_NAME_LEN: int

def connect(
    name: str,
    capacity: int,
    policy: _Policy = "evict_lru",
    *,
    max_entries: Optional[int] = None,
    max_key_len: Optional[int] = None,
) -> Store:
    """Creates the store `name` (mode 0600) with an arena of `capacity` bytes, or opens it if it exists.

    An existing store keeps its own capacity, limits and policy (see the
    Store's properties). `policy`: "evict_lru" evicts least recently used
    entries when full; "refuse" raises StoreFullError. `max_entries`
    defaults to capacity // 256 (at least 16); `max_key_len` to 1024 (at
    most 65536). Names: 1..200 of [A-Za-z0-9._-], one leading "/" optional.

    Raises StoreArgumentError (a ValueError) for a bad name, capacity or
    option, StoreCorruptError for a segment of that name that is not a
    compatible store, StoreOSError for system failures.
    """

def open(name: str) -> Store:
    """Opens the existing store `name`; StoreNotFoundError (a FileNotFoundError) if there is none."""

def unlink(name: str, missing_ok: bool = False) -> bool:
    """Removes the store's name; processes that have it open keep working on it.

    Returns True if it existed. A missing store raises StoreNotFoundError,
    or returns False with missing_ok=True.
    """

@final
class Store:
    """A handle on a named MemStream store in shared memory. Thread-safe; a context manager (closes on exit)."""

    def put(self, key: _Key, value: _Value) -> None:
        """Stores a copy of `value` under `key`; readers see the old or the new value, never a mix.

        Raises KeyTooLongError / ValueTooLargeError (ValueErrors) for a key or
        value that can never fit, StoreFullError when full under the
        "refuse" policy, TypeError for a value that is not bytes-like.
        """
    def get(self, key: _Key, default: Optional[_T] = None) -> Union[bytes, _T, None]:
        """A copy of the value as bytes, or `default` (None) if absent."""
    def view(self, key: _Key) -> ValueView:
        """A pinned zero-copy view of the value (KeyError if absent): `with store.view(key) as mv:`."""
    def delete(self, key: _Key) -> bool:
        """Removes `key`; returns whether it was present."""
    def contains(self, key: _Key) -> bool:
        """Whether `key` is present (not counted as a hit or miss)."""
    def keys(self) -> List[bytes]:
        """The keys of all entries, as bytes (a snapshot)."""
    def items(self) -> ItemIterator:
        """Iterates over (key, value) copies of all entries."""
    def stats(self) -> Dict[str, int]:
        """Store-wide statistics.

        Keys: entries, max_entries, capacity_bytes, bytes_used (arena bytes
        in blocks, headers included), data_bytes (sum of key + value
        lengths), hits, misses, evictions, puts, deletes, refusals,
        recoveries. Counters are store-wide: every process's operations count.
        """
    def key_stats(self, key: _Key) -> Optional[Dict[str, Union[int, float]]]:
        """Statistics of one key, or None if absent (not counted as an access).

        Keys: value_size, created_at, updated_at, last_access (float seconds
        since the epoch, like time.time()), the same with an _ns suffix (int
        nanoseconds), access_count (gets that found the key).
        """
    def clear(self) -> None:
        """Removes every entry."""
    def repair(self) -> Dict[str, int]:
        """Rebuilds the store's derived structures from its entries (what crash recovery does); returns stats()."""
    def close(self) -> None:
        """Closes this handle (idempotent); later calls raise StoreClosedError. The store stays until unlink()."""
    @property
    def closed(self) -> bool:
        """True once close() was called."""
    @property
    def name(self) -> str:
        """The store's name."""
    @property
    def capacity(self) -> int:
        """Arena size in bytes."""
    @property
    def max_entries(self) -> int:
        """Maximum number of entries."""
    @property
    def max_key_len(self) -> int:
        """Longest key in bytes."""
    @property
    def max_entry_bytes(self) -> int:
        """Largest key + value one entry can hold, in bytes."""
    @property
    def policy(self) -> _Policy:
        """The store's full policy."""
    def __getitem__(self, key: _Key, /) -> bytes:
        """The value as bytes; KeyError if absent."""
    def __setitem__(self, key: _Key, value: _Value, /) -> None:
        """Same as put()."""
    def __delitem__(self, key: _Key, /) -> None:
        """Removes `key`; KeyError if absent."""
    def __contains__(self, key: object, /) -> bool:
        """Same as contains()."""
    def __iter__(self) -> Iterator[bytes]:
        """Iterates over a snapshot of the keys."""
    def __len__(self) -> int:
        """Number of entries."""
    def __enter__(self) -> "Store": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

@final
class ValueView:
    """A pinned zero-copy view of one value.

    `with store.view(key) as mv:` gives a read-only memoryview (format "B")
    of the bytes in shared memory. They cannot change or be freed while
    pinned, even if the key is overwritten or deleted meanwhile (the key gets
    new storage; see is_current()). Leaving the block releases the
    memoryview and the pin. If something made from the memoryview is still
    alive then (a slice, numpy.frombuffer), the bytes stay pinned until it is
    released too, and the block's exit raises BufferError.
    """

    def __enter__(self) -> memoryview: ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...
    def release(self) -> None:
        """Same as leaving the with block; idempotent. BufferError if an export escaped."""
    @property
    def pinned(self) -> bool:
        """True while the bytes are pinned."""
    def is_current(self) -> bool:
        """True while the key still maps to exactly these bytes (ValueError after release)."""
    @property
    def key(self) -> bytes:
        """The key, as bytes."""
    def __len__(self) -> int:
        """Length of the value in bytes."""

@final
class ItemIterator(Iterator[Tuple[bytes, bytes]]):
    """Iterator over (key, value) copies; returned by Store.items()."""

    def __iter__(self) -> "ItemIterator": ...
    def __next__(self) -> Tuple[bytes, bytes]: ...
