"""memwatch.glass: typed objects in shared memory, observed live from another process.

A producer publishes objects whose layout is read from a ``ctypes.Structure``
class or a numpy structured dtype (no hand-written schema); an observer in
another process (Python, Rust, the ``memwatch`` CLI) reads them read-only.

Producer::

    import ctypes, memwatch.glass as glass

    class Quote(ctypes.Structure):
        _fields_ = [("bid", ctypes.c_double), ("ask", ctypes.c_double),
                    ("size", ctypes.c_uint32), ("symbol", ctypes.c_char * 8)]

    with glass.Producer("trading") as p:
        q = p.create("AAPL", Quote)        # a Quote living in shared memory
        q.bid, q.ask, q.symbol = 189.5, 189.6, b"AAPL"

Observer (another process)::

    o = glass.Observer("trading")
    o.read("AAPL", "bid")                  # 189.5
    o.snapshot("AAPL")                     # {"bid": 189.5, "ask": 189.6, ...}
    for e in o.events(timeout=1.0):        # {"kind": "field", "path": "bid", "old": .., "new": ..}
        print(e)

Fields written from Python are plain memory (atomicity "none"): an observer
may see a value being written torn. Fields whose layout the Rust or C
producer declared atomic or seqlock-guarded are read accordingly.
The implementation is the Rust crate ``memglass``.
"""

from __future__ import annotations

import ctypes
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ._memwatch import glass as _native

__all__ = [
    "Producer",
    "Observer",
    "layout_from_ctypes",
    "layout_from_dtype",
    "list_sessions",
    "remove_stale",
    "remove_session",
]

list_sessions = _native.list_sessions
remove_stale = _native.remove_stale
remove_session = _native.remove_session

# (path, offset, primitive, array_len, atomicity, guard_offset, unit, help, semantics)
Field = Tuple[str, int, str, int, str, int, str, str, str]
Layout = Tuple[str, int, int, List[Field]]

_CTYPES_PRIM = {
    ctypes.c_bool: "bool",
    ctypes.c_int8: "i8",
    ctypes.c_uint8: "u8",
    ctypes.c_int16: "i16",
    ctypes.c_uint16: "u16",
    ctypes.c_int32: "i32",
    ctypes.c_uint32: "u32",
    ctypes.c_int64: "i64",
    ctypes.c_uint64: "u64",
    ctypes.c_float: "f32",
    ctypes.c_double: "f64",
    ctypes.c_char: "char",
}


def _ctypes_prim(t: Any) -> Optional[str]:
    for k, v in _CTYPES_PRIM.items():
        # c_int, c_long etc. are aliases of the fixed-width types.
        if t is k or (isinstance(t, type) and issubclass(t, k) and ctypes.sizeof(t) == ctypes.sizeof(k)):
            return v
    return None


def _meta(cls: Any, name: str) -> Tuple[str, str, str]:
    m = getattr(cls, "_glass_meta_", {}).get(name, {})
    return m.get("unit", ""), m.get("help", ""), m.get("semantics", "gauge")


def _ctypes_fields(cls: Any, prefix: str, base: int, out: List[Field]) -> None:
    for entry in cls._fields_:
        if len(entry) != 2:
            raise TypeError(f"{cls.__name__}.{entry[0]}: bit fields are not supported")
        name, t = entry
        off = base + getattr(cls, name).offset
        path = prefix + name
        unit, help_, sem = _meta(cls, name)
        p = _ctypes_prim(t)
        if p is not None:
            out.append((path, off, p, 0, "none", 0, unit, help_, sem))
        elif isinstance(t, type) and issubclass(t, ctypes.Array):
            elem = t._type_
            ep = _ctypes_prim(elem)
            if ep is not None:
                out.append((path, off, ep, t._length_, "none", 0, unit, help_, sem))
            elif isinstance(elem, type) and issubclass(elem, ctypes.Structure):
                for i in range(t._length_):
                    _ctypes_fields(elem, f"{path}.{i}.", off + i * ctypes.sizeof(elem), out)
            else:
                raise TypeError(f"{cls.__name__}.{name}: arrays of {elem!r} are not supported")
        elif isinstance(t, type) and issubclass(t, ctypes.Structure):
            _ctypes_fields(t, path + ".", off, out)
        else:
            raise TypeError(f"{cls.__name__}.{name}: ctypes type {t!r} is not supported")


def layout_from_ctypes(cls: Any) -> Layout:
    """(name, size, align, fields) of a ``ctypes.Structure`` subclass, nested
    structures flattened to dotted paths. Optional per-field metadata:
    ``_glass_meta_ = {"field": {"unit": "ns", "help": "..", "semantics": "counter"}}``."""
    if not (isinstance(cls, type) and issubclass(cls, ctypes.Structure)):
        raise TypeError(f"expected a ctypes.Structure subclass, got {cls!r}")
    out: List[Field] = []
    _ctypes_fields(cls, "", 0, out)
    return cls.__name__, ctypes.sizeof(cls), ctypes.alignment(cls), out


_NP_KIND = {
    ("b", 1): "bool",
    ("i", 1): "i8",
    ("u", 1): "u8",
    ("i", 2): "i16",
    ("u", 2): "u16",
    ("i", 4): "i32",
    ("u", 4): "u32",
    ("i", 8): "i64",
    ("u", 8): "u64",
    ("f", 4): "f32",
    ("f", 8): "f64",
}


def _dtype_fields(dt: Any, prefix: str, base: int, out: List[Field], meta: Dict[str, Any]) -> None:
    for name in dt.names:
        sub, off = dt.fields[name][:2]
        path = prefix + name
        m = meta.get(path, {})
        unit, help_, sem = m.get("unit", ""), m.get("help", ""), m.get("semantics", "gauge")
        count = 0
        if sub.subdtype is not None:
            sub, shape = sub.subdtype
            count = 1
            for s in shape:
                count *= s
        if sub.byteorder not in ("=", "|") and sub.byteorder != ("<" if _little() else ">"):
            raise TypeError(f"{path}: non-native byte order")
        if sub.names is not None:
            if count:
                for i in range(count):
                    _dtype_fields(sub, f"{path}.{i}.", base + off + i * sub.itemsize, out, meta)
            else:
                _dtype_fields(sub, path + ".", base + off, out, meta)
        elif sub.kind == "S":
            n = sub.itemsize * max(count, 1)
            out.append((path, base + off, "char", n, "none", 0, unit, help_, sem))
        elif (sub.kind, sub.itemsize) in _NP_KIND:
            out.append((path, base + off, _NP_KIND[(sub.kind, sub.itemsize)], count, "none", 0, unit, help_, sem))
        else:
            raise TypeError(f"{path}: numpy type {sub} is not supported")


def _little() -> bool:
    import sys

    return sys.byteorder == "little"


def layout_from_dtype(dtype: Any, name: Optional[str] = None, meta: Optional[Dict[str, Any]] = None) -> Layout:
    """(name, size, align, fields) of a numpy structured dtype (use
    ``align=True`` for C layout). ``meta`` maps dotted paths to
    {"unit", "help", "semantics"}."""
    import numpy as np

    dt = np.dtype(dtype)
    if dt.names is None:
        raise TypeError(f"expected a structured dtype, got {dt}")
    out: List[Field] = []
    _dtype_fields(dt, "", 0, out, meta or {})
    align = max(dt.alignment, 1)
    size = dt.itemsize
    if size % align:
        raise ValueError(f"dtype size {size} is not a multiple of its alignment {align}: use align=True")
    return name or "dtype", size, align, out


class Producer:
    """Publishes objects of session ``session`` (see the module docs).
    Keyword options: dir, group_readable, grace_period (s),
    first_region_bytes, max_region_bytes, heartbeat_interval (s)."""

    def __init__(self, session: str, **options: Any) -> None:
        self._p = _native._Producer(session, **options)
        self._types: Dict[Any, int] = {}
        self._ids: Dict[int, Tuple[int, int, Any]] = {}

    def register(self, layout: Any) -> int:
        """Registers a ctypes.Structure class, a numpy dtype, or a layout
        tuple (name, size, align, fields); returns its type index."""
        key = layout if isinstance(layout, (type, tuple)) else str(layout)
        if key in self._types:
            return self._types[key]
        if isinstance(layout, tuple):
            lay = layout
        elif isinstance(layout, type) and issubclass(layout, ctypes.Structure):
            lay = layout_from_ctypes(layout)
        else:
            lay = layout_from_dtype(layout)
        idx = self._p.register_type(*lay)
        self._types[key] = idx
        return idx

    def create(self, label: str, layout: Any, count: int = 1) -> Any:
        """A new zeroed object in shared memory: an instance of the ctypes
        class (an array of them when count > 1), or for a dtype a numpy
        array of shape (count,). It stays valid until destroy() or until
        this producer is garbage collected."""
        idx = self.register(layout)
        addr, size, slot, gen = self._p.create(idx, label, count)
        if isinstance(layout, type) and issubclass(layout, ctypes.Structure):
            t = layout if count == 1 else layout * count
            obj = t.from_address(addr)
            obj._glass_owner = self  # keeps the producer's mappings alive
        else:
            import numpy as np

            buf = (ctypes.c_char * size).from_address(addr)
            holder = _Holder(buf, self)
            obj = np.frombuffer(holder.buf, dtype=np.dtype(layout), count=count)
        self._ids[id(obj)] = (slot, gen, obj)
        return obj

    def destroy(self, obj: Any) -> None:
        """Destroys an object made by create(); do not use it afterwards."""
        try:
            slot, gen, _ = self._ids.pop(id(obj))
        except KeyError:
            raise LookupError("not an object of this producer (or already destroyed)") from None
        self._p.destroy(slot, gen)

    def shutdown(self) -> None:
        """Marks the session dead and removes its segments (objects' memory
        stays valid while this producer lives)."""
        self._p.shutdown()

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()


class _Holder:
    def __init__(self, buf: Any, owner: Producer) -> None:
        self.buf = buf
        self.owner = owner


class Observer:
    """A read-only view of session ``session`` in another process."""

    def __init__(self, session: str, dir: Optional[str] = None, owner: Optional[int] = None) -> None:
        self._o = _native._Observer(session, dir, owner)

    def refresh(self) -> bool:
        """Reloads types and objects if they changed; True if they did."""
        return self._o.refresh()

    def objects(self) -> List[Dict[str, Any]]:
        """Live objects (label, type_name, slot, generation, count, state)."""
        return self._o.objects()

    def find(self, label: str) -> Optional[Dict[str, Any]]:
        """The live object labelled ``label``, or None."""
        return next((o for o in self._o.objects() if o["label"] == label), None)

    def fields(self, label: str) -> List[Dict[str, Any]]:
        """Field descriptions of object ``label``'s type."""
        return self._o.fields(label)

    def read(self, label: str, path: str) -> Any:
        """The value at ``path`` of object ``label`` (bool, int, float, str or list)."""
        return self._o.read(label, path)

    def snapshot(self, label: str) -> Dict[str, Any]:
        """Every field of object ``label``: {path: value}."""
        return self._o.snapshot(label)

    def changes(self) -> List[Dict[str, Any]]:
        """Changes since the previous call (the first reports every object as created)."""
        return self._o.changes()

    def events(self, interval: float = 0.05, timeout: Optional[float] = None) -> Iterator[Dict[str, Any]]:
        """Yields change events as they happen, polling every ``interval``
        seconds, until ``timeout`` seconds have passed (forever if None)."""
        end = None if timeout is None else time.monotonic() + timeout
        while end is None or time.monotonic() < end:
            for e in self._o.changes():
                yield e
            time.sleep(interval)

    def liveness(self) -> str:
        """"alive", "stale" or "dead"."""
        return self._o.liveness()

    def session_info(self) -> Dict[str, Any]:
        """The session: name, pid, liveness, reason, object_count, age, ..."""
        return self._o.session_info()
