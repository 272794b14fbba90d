//! `memwatch._memwatch.store`: the native half of `memwatch.store`, the
//! MemStream shared-memory key-value store (`memwatch_core::store`).
//!
//! Thin translation only: Python bytes-likes to `&[u8]`, store errors to the
//! exceptions of `memwatch/_errors.py`, `ValueRef` guards to read-only
//! memoryviews.
//!
//! GIL discipline:
//! - a get releases the GIL around the store read (one read, so exactly one
//!   hit or miss in the store's stats), copying into a per-thread buffer;
//!   the copy into the bytes object is done without the GIL too when the
//!   value is larger than [`SMALL`];
//! - puts of values up to [`SMALL`] bytes first try without waiting for the
//!   writer lock (GIL held); if another writer holds it they wait with the GIL
//!   released; larger puts always release it;
//! - `contains`, `key_stats`, `stats` and `len` run with the GIL held: they
//!   are lock-free reads of a few hundred nanoseconds (a reader only waits for
//!   the writer lock when a writer died in the middle of a write, to repair
//!   the store);
//! - everything that takes the writer lock (delete, clear, repair), scans
//!   every slot (keys, items), pins a value (view) or maps/unmaps a segment
//!   (connect, open, unlink, the last close) runs with the GIL released;
//! - no Rust lock of this module is held while the GIL is released or awaited.
//!
//! Zero-copy reads (`Store.view`): a hidden exporter object owns the
//! `ValueRef` pin and exports the pinned bytes through the buffer protocol
//! (read-only). The memoryview handed to the `with` block is made from it.
//! When the block ends the memoryview is released; if anything made from it
//! is still alive (a slice, a numpy array), the exporter keeps the pin until
//! that last export is released, so no Python object ever sees unpinned
//! shared memory, and `__exit__` raises `BufferError` to say so.

use std::ffi::{c_int, c_void};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use memwatch_core::store::{self as ms, FullPolicy, Options, Store, ValueRef};
use pyo3::exceptions::{PyBufferError, PyKeyError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple, PyType};

use crate::{empty_view, type_name, PyBuffer_Release, PyObject_GetBuffer, RawBuffer};

/// Values up to this size are copied with the GIL held (a memcpy of at most
/// 64 KiB takes a few microseconds); larger ones with the GIL released.
const SMALL: usize = 64 << 10;

const POLICY_EVICT_LRU: &str = "evict_lru";
const POLICY_REFUSE: &str = "refuse";

// ---------------------------------------------------------------------------
// Exceptions (defined in memwatch/_errors.py).
// ---------------------------------------------------------------------------

struct StoreErrors {
    base: Py<PyType>,
    full: Py<PyType>,
    not_found: Py<PyType>,
    closed: Py<PyType>,
    argument: Py<PyType>,
    key_too_long: Py<PyType>,
    value_too_large: Py<PyType>,
    corrupt: Py<PyType>,
    timeout: Py<PyType>,
    os: Py<PyType>,
}

static STORE_ERRORS: PyOnceLock<StoreErrors> = PyOnceLock::new();

fn store_errors(py: Python<'_>) -> &StoreErrors {
    STORE_ERRORS
        .get_or_try_init(py, || -> PyResult<StoreErrors> {
            let m = py.import("memwatch._errors")?;
            let get = |name: &str| -> PyResult<Py<PyType>> {
                Ok(m.getattr(name)?.cast_into::<PyType>()?.unbind())
            };
            Ok(StoreErrors {
                base: get("StoreError")?,
                full: get("StoreFullError")?,
                not_found: get("StoreNotFoundError")?,
                closed: get("StoreClosedError")?,
                argument: get("StoreArgumentError")?,
                key_too_long: get("KeyTooLongError")?,
                value_too_large: get("ValueTooLargeError")?,
                corrupt: get("StoreCorruptError")?,
                timeout: get("StoreTimeoutError")?,
                os: get("StoreOSError")?,
            })
        })
        .expect("memwatch._errors is part of the memwatch package and must import")
}

fn make_err(py: Python<'_>, ty: &Py<PyType>, (msg,): (String,)) -> PyErr {
    match ty.bind(py).call1((msg,)) {
        Ok(v) => PyErr::from_value(v),
        Err(e) => e,
    }
}

/// An OSError subclass with errno (`exc.errno`, `str(exc)` = "[Errno n] msg").
fn make_os_err(py: Python<'_>, ty: &Py<PyType>, (errno, msg): (i32, String)) -> PyErr {
    match ty.bind(py).call1((errno, msg)) {
        Ok(v) => PyErr::from_value(v),
        Err(e) => e,
    }
}

/// An exception of the store's hierarchy with a message.
fn err_msg(py: Python<'_>, pick: fn(&StoreErrors) -> &Py<PyType>, msg: String) -> PyErr {
    make_err(py, pick(store_errors(py)), (msg,))
}

/// Converts a store error into the matching `memwatch.store` exception.
fn to_pyerr(py: Python<'_>, err: ms::Error) -> PyErr {
    let e = store_errors(py);
    // The core's messages name Rust items; say it the Python way.
    let msg = err
        .to_string()
        .replace("Store::connect", "memwatch.store.connect()")
        .replace("FullPolicy::EvictLru", "policy=\"evict_lru\"");
    match &err {
        ms::Error::InvalidName { .. } | ms::Error::EmptyKey | ms::Error::InvalidOptions(_) => {
            make_err(py, &e.argument, (msg,))
        }
        ms::Error::KeyTooLong { len, max } => {
            let exc = make_err(py, &e.key_too_long, (msg,));
            set_attrs(py, &exc, &[("length", *len as u64), ("limit", *max as u64)]);
            exc
        }
        ms::Error::ValueTooLarge { len, max } => {
            let exc = make_err(py, &e.value_too_large, (msg,));
            set_attrs(py, &exc, &[("length", *len as u64), ("limit", *max as u64)]);
            exc
        }
        ms::Error::Full { needed, available, entries, max_entries, .. } => {
            let exc = make_err(py, &e.full, (msg,));
            set_attrs(
                py,
                &exc,
                &[
                    ("needed", *needed),
                    ("available", *available),
                    ("entries", *entries),
                    ("max_entries", *max_entries),
                ],
            );
            exc
        }
        ms::Error::NotFound(_) => make_os_err(py, &e.not_found, (libc::ENOENT, msg)),
        ms::Error::NotInitialized(_)
        | ms::Error::BadMagic { .. }
        | ms::Error::VersionMismatch { .. }
        | ms::Error::Truncated { .. }
        | ms::Error::Corrupt { .. }
        | ms::Error::NotRecoverable => make_err(py, &e.corrupt, (msg,)),
        ms::Error::LockTimeout(_) => make_os_err(py, &e.timeout, (libc::ETIMEDOUT, msg)),
        ms::Error::Os { source, .. } => make_os_err(py, &e.os, (source.0, msg)),
        // TooManyPins, BufferTooSmall (C API only) and anything added later.
        _ => make_err(py, &e.base, (msg,)),
    }
}

fn set_attrs(py: Python<'_>, exc: &PyErr, attrs: &[(&str, u64)]) {
    let v = exc.value(py);
    for (name, value) in attrs {
        let _ = v.setattr(*name, *value);
    }
}

// ---------------------------------------------------------------------------
// Bytes-like arguments.
// ---------------------------------------------------------------------------

/// A held, contiguous buffer export (released on drop, with the GIL held:
/// every `Export` lives on the stack of a call that holds the GIL).
struct Export {
    /// Boxed: exporters may point `shape` into the struct itself.
    view: Box<RawBuffer>,
}

impl Export {
    fn as_slice(&self) -> &[u8] {
        let len = self.view.len.max(0) as usize;
        if len == 0 {
            return &[];
        }
        // SAFETY: a successful PyBUF_SIMPLE export describes `len` contiguous
        // readable bytes at `buf`, valid (and not resized) until released,
        // which happens only when `self` is dropped.
        unsafe { std::slice::from_raw_parts(self.view.buf as *const u8, len) }
    }
}

impl Drop for Export {
    fn drop(&mut self) {
        let _ = Python::try_attach(|_py| {
            // SAFETY: the view holds an export obtained by PyObject_GetBuffer
            // that was not released yet (we are its only owner); GIL held.
            unsafe { PyBuffer_Release(&mut *self.view) };
        });
    }
}

/// A key or value given from Python: borrowed from a `bytes`/`str`, or a
/// buffer export of any other bytes-like object.
enum Arg<'a, 'py> {
    Bytes(&'a [u8]),
    Str(Bound<'py, PyBytes>),
    Export(Export),
}

impl Arg<'_, '_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            Arg::Bytes(b) => b,
            Arg::Str(b) => b.as_bytes(),
            Arg::Export(e) => e.as_slice(),
        }
    }
}

fn export(obj: &Bound<'_, PyAny>) -> Option<Export> {
    let mut view = Box::new(empty_view());
    // SAFETY: obj is a live object (we hold a Bound and the GIL); view points
    // to writable memory of Py_buffer's size and layout. Flags 0 =
    // PyBUF_SIMPLE: contiguous bytes, read-only allowed.
    let rc = unsafe { PyObject_GetBuffer(obj.as_ptr(), &mut *view, 0) };
    if rc != 0 {
        return None;
    }
    Some(Export { view })
}

/// A key: `str` (UTF-8) or bytes-like.
fn key_arg<'a, 'py>(key: &'a Bound<'py, PyAny>) -> PyResult<Arg<'a, 'py>> {
    if let Ok(b) = key.cast::<PyBytes>() {
        return Ok(Arg::Bytes(b.as_bytes()));
    }
    if let Ok(s) = key.cast::<PyString>() {
        return Ok(Arg::Str(s.encode_utf8()?));
    }
    match export(key) {
        Some(e) => Ok(Arg::Export(e)),
        None => {
            let cause = PyErr::take(key.py());
            let err = PyTypeError::new_err(format!(
                "key must be str or bytes (or another contiguous bytes-like object), got {}",
                type_name(key)
            ));
            err.set_cause(key.py(), cause);
            Err(err)
        }
    }
}

/// A value: any contiguous bytes-like object (not str).
fn value_arg<'a, 'py>(value: &'a Bound<'py, PyAny>) -> PyResult<Arg<'a, 'py>> {
    if let Ok(b) = value.cast::<PyBytes>() {
        return Ok(Arg::Bytes(b.as_bytes()));
    }
    if value.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "value must be bytes-like (bytes, bytearray, memoryview, numpy array, ...), got str; \
             encode it first, e.g. value.encode()",
        ));
    }
    match export(value) {
        Some(e) => Ok(Arg::Export(e)),
        None => {
            let cause = PyErr::take(value.py());
            let err = PyTypeError::new_err(format!(
                "value must be a contiguous bytes-like object (bytes, bytearray, memoryview, \
                 numpy array, mmap, ...), got {}",
                type_name(value)
            ));
            err.set_cause(value.py(), cause);
            Err(err)
        }
    }
}

// ---------------------------------------------------------------------------
// Store
// ---------------------------------------------------------------------------

/// A handle on a named MemStream store in shared memory.
///
/// Made by `memwatch.store.connect()` or `memwatch.store.open()`. Thread-safe;
/// each process connects on its own. A context manager: leaving the `with`
/// block closes the handle (the store itself stays until `unlink()`).
#[pyclass(module = "memwatch.store", name = "Store", frozen, weakref)]
pub(crate) struct PyStore {
    inner: RwLock<Option<Arc<Store>>>,
    name: String,
    capacity: u64,
    max_entries: u64,
    max_key_len: usize,
    max_entry_bytes: usize,
    policy: FullPolicy,
}

fn policy_name(p: FullPolicy) -> &'static str {
    match p {
        FullPolicy::EvictLru => POLICY_EVICT_LRU,
        FullPolicy::Refuse => POLICY_REFUSE,
    }
}

impl PyStore {
    fn wrap(store: Store) -> PyStore {
        PyStore {
            name: store.name().to_string(),
            capacity: store.capacity(),
            max_entries: store.max_entries(),
            max_key_len: store.max_key_len(),
            max_entry_bytes: store.max_entry_bytes(),
            policy: store.policy(),
            inner: RwLock::new(Some(Arc::new(store))),
        }
    }

    fn closed_err(&self, py: Python<'_>) -> PyErr {
        err_msg(
            py,
            |e| &e.closed,
            format!(
                "store {:?} is closed (this handle; open it again with memwatch.store.open)",
                self.name
            ),
        )
    }

    /// The open store (read guard; never held across a GIL release).
    fn read(&self, py: Python<'_>) -> PyResult<RwLockReadGuard<'_, Option<Arc<Store>>>> {
        let g = self.inner.read().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            return Err(self.closed_err(py));
        }
        Ok(g)
    }

    /// A counted reference to the open store, for work with the GIL released
    /// (a concurrent close() then only drops its own reference).
    pub(crate) fn shared(&self, py: Python<'_>) -> PyResult<Arc<Store>> {
        match &*self.inner.read().unwrap_or_else(|p| p.into_inner()) {
            Some(s) => Ok(Arc::clone(s)),
            None => Err(self.closed_err(py)),
        }
    }
}

/// Creates the store `name` (or opens it if it exists) and returns a handle.
#[pyfunction]
#[pyo3(signature = (name, capacity, policy="evict_lru", *, max_entries=None, max_key_len=None))]
fn connect(
    py: Python<'_>,
    name: &str,
    capacity: i64,
    policy: &str,
    max_entries: Option<i64>,
    max_key_len: Option<i64>,
) -> PyResult<PyStore> {
    let policy = match policy {
        POLICY_EVICT_LRU => FullPolicy::EvictLru,
        POLICY_REFUSE => FullPolicy::Refuse,
        other => {
            return Err(err_msg(
                py,
                |e| &e.argument,
                format!("policy must be \"evict_lru\" or \"refuse\", got {other:?}"),
            ))
        }
    };
    if capacity <= 0 {
        return Err(err_msg(
            py,
            |e| &e.argument,
            format!("capacity must be a positive number of bytes, got {capacity}"),
        ));
    }
    let mut opts = Options::new(capacity as u64, policy);
    if let Some(n) = max_entries {
        if n <= 0 {
            return Err(err_msg(py, |e| &e.argument, format!("max_entries must be >= 1, got {n}")));
        }
        opts = opts.max_entries(n as u64);
    }
    if let Some(n) = max_key_len {
        let n = u32::try_from(n).ok().filter(|n| *n >= 1).ok_or_else(|| {
            err_msg(
                py,
                |e| &e.argument,
                format!("max_key_len must be between 1 and 65536, got {n}"),
            )
        })?;
        opts = opts.max_key_len(n);
    }
    let name = name.to_owned();
    let store =
        py.detach(move || Store::connect_with(&name, &opts)).map_err(|e| to_pyerr(py, e))?;
    Ok(PyStore::wrap(store))
}

/// Opens the existing store `name` (StoreNotFoundError if there is none).
#[pyfunction(name = "open")]
fn open_store(py: Python<'_>, name: &str) -> PyResult<PyStore> {
    let name = name.to_owned();
    let store = py.detach(move || Store::open(&name)).map_err(|e| to_pyerr(py, e))?;
    Ok(PyStore::wrap(store))
}

/// Removes the store's name. Returns True if it existed; a missing store
/// raises StoreNotFoundError unless `missing_ok`.
#[pyfunction]
#[pyo3(signature = (name, missing_ok=false))]
fn unlink(py: Python<'_>, name: &str, missing_ok: bool) -> PyResult<bool> {
    let owned = name.to_owned();
    match py.detach(move || Store::unlink(&owned)) {
        Ok(()) => Ok(true),
        Err(ms::Error::NotFound(_)) if missing_ok => Ok(false),
        Err(e) => Err(to_pyerr(py, e)),
    }
}

thread_local! {
    /// Per-thread buffer that gets copy values into (reused, so a get
    /// allocates nothing but its bytes object).
    static GET_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Copies the value of `key` into a new bytes object (None if absent).
///
/// One read of the store (one hit or miss in its stats), with the GIL
/// released: into a per-thread buffer, then into the bytes object (that
/// second copy also without the GIL when the value is larger than [`SMALL`]).
fn get_bytes<'py>(
    py: Python<'py>,
    this: &PyStore,
    key: &[u8],
) -> PyResult<Option<Bound<'py, PyBytes>>> {
    let store = this.shared(py)?;
    GET_BUF.with(|cell| {
        let mut local = Vec::new();
        let mut borrowed = cell.try_borrow_mut();
        let buf = match borrowed.as_mut() {
            Ok(b) => &mut **b,
            Err(_) => &mut local, // re-entered (cannot happen: no Python code runs in between)
        };
        let got = py.detach(|| store.get_into(key, buf)).map_err(|e| to_pyerr(py, e))?;
        let Some(len) = got else { return Ok(None) };
        let src = &buf[..len];
        let bytes = if len <= SMALL {
            PyBytes::new(py, src)
        } else {
            // SAFETY: PyBytes_FromStringAndSize(NULL, n) returns a new,
            // unshared bytes object with n writable bytes (or NULL with an
            // exception set).
            let obj =
                unsafe { ffi::PyBytes_FromStringAndSize(std::ptr::null(), len as ffi::Py_ssize_t) };
            // SAFETY: `obj` is a new reference or NULL.
            let bytes = unsafe { Bound::from_owned_ptr_or_err(py, obj)? }.cast_into::<PyBytes>()?;
            // SAFETY: the object was just created and nobody else can reach
            // it; its `len` bytes of storage live as long as `bytes`, which
            // outlives `dst` (used only inside the detach below).
            let dst = unsafe {
                std::slice::from_raw_parts_mut(
                    ffi::PyBytes_AsString(bytes.as_ptr()) as *mut u8,
                    len,
                )
            };
            py.detach(|| dst.copy_from_slice(src));
            bytes
        };
        if buf.capacity() > 4 * SMALL {
            // Do not keep a huge value's buffer alive in every thread.
            *buf = Vec::new();
        }
        Ok(Some(bytes))
    })
}

#[pymethods]
impl PyStore {
    /// Stores a copy of `value` (bytes-like) under `key` (str or bytes),
    /// replacing any previous value. Readers see the old or the new value,
    /// never a mix.
    fn put(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let k = key_arg(key)?;
        let v = value_arg(value)?;
        let (k, v) = (k.as_slice(), v.as_slice());
        let store = {
            let g = self.read(py)?;
            let store = g.as_ref().expect("checked by read");
            if v.len() <= SMALL {
                match store.try_put(k, v) {
                    Ok(true) => return Ok(()),
                    Ok(false) => {} // another writer holds the lock: wait below, GIL released
                    Err(e) => return Err(to_pyerr(py, e)),
                }
            }
            Arc::clone(store)
        };
        py.detach(|| store.put(k, v)).map_err(|e| to_pyerr(py, e))
    }

    /// A copy of the value of `key` as bytes, or `default` (None) if absent.
    #[pyo3(signature = (key, default=None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let k = key_arg(key)?;
        match get_bytes(py, self, k.as_slice())? {
            Some(b) => Ok(b.into_any()),
            None => Ok(default.unwrap_or_else(|| py.None().into_bound(py))),
        }
    }

    /// `store[key]`: the value as bytes; KeyError if absent.
    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let k = key_arg(key)?;
        match get_bytes(py, self, k.as_slice())? {
            Some(b) => Ok(b),
            None => Err(PyKeyError::new_err(key.clone().unbind())),
        }
    }

    /// `store[key] = value`: same as put().
    fn __setitem__(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.put(py, key, value)
    }

    /// `del store[key]`: KeyError if absent.
    fn __delitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<()> {
        if self.delete(py, key)? {
            Ok(())
        } else {
            Err(PyKeyError::new_err(key.clone().unbind()))
        }
    }

    /// A zero-copy, read-only view of the value of `key` (KeyError if
    /// absent), for `with store.view(key) as mv:`.
    fn view(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<ValueView> {
        let k = key_arg(key)?;
        let k = k.as_slice();
        let store = self.shared(py)?;
        let pinned = py.detach(|| PinnedValue::new(store, k)).map_err(|e| to_pyerr(py, e))?;
        let Some(pinned) = pinned else {
            return Err(PyKeyError::new_err(key.clone().unbind()));
        };
        let len = pinned.len();
        let exporter = new_exporter(py, pinned)?;
        Ok(ValueView {
            exporter,
            memoryview: None,
            released: false,
            key: PyBytes::new(py, k).unbind(),
            len,
        })
    }

    /// Removes `key`; returns whether it was present.
    fn delete(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let k = key_arg(key)?;
        let k = k.as_slice();
        let store = self.shared(py)?;
        py.detach(|| store.delete(k)).map_err(|e| to_pyerr(py, e))
    }

    /// Whether `key` is present (not counted as a hit or miss).
    fn contains(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let k = key_arg(key)?;
        let g = self.read(py)?;
        g.as_ref().expect("checked by read").contains(k.as_slice()).map_err(|e| to_pyerr(py, e))
    }

    /// `key in store`.
    fn __contains__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.contains(py, key)
    }

    /// The keys of all entries, as bytes (a snapshot).
    fn keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let store = self.shared(py)?;
        let keys = py.detach(|| store.keys()).map_err(|e| to_pyerr(py, e))?;
        PyList::new(py, keys.iter().map(|k| PyBytes::new(py, k)))
    }

    /// `iter(store)`: iterates over a snapshot of the keys.
    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.keys(py)?.try_iter().map(|it| it.into_any())
    }

    /// Iterates over (key, value) copies of all entries, slot by slot
    /// (entries written during the iteration may or may not show).
    fn items(&self, py: Python<'_>) -> PyResult<ItemIter> {
        let store = self.shared(py)?;
        Ok(ItemIter { state: Some(IterState::new(store)) })
    }

    /// Number of entries.
    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        let g = self.read(py)?;
        Ok(g.as_ref().expect("checked by read").stats().entries as usize)
    }

    /// Store-wide statistics as a dict.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = {
            let g = self.read(py)?;
            g.as_ref().expect("checked by read").stats()
        };
        stats_dict(py, &s)
    }

    /// Statistics of one key as a dict, or None if absent (not an access).
    fn key_stats<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let k = key_arg(key)?;
        let st = {
            let g = self.read(py)?;
            g.as_ref()
                .expect("checked by read")
                .key_stats(k.as_slice())
                .map_err(|e| to_pyerr(py, e))?
        };
        let Some(st) = st else { return Ok(None) };
        let d = PyDict::new(py);
        d.set_item("value_size", st.value_size)?;
        for (name, t) in [
            ("created_at", st.created_at),
            ("updated_at", st.updated_at),
            ("last_access", st.last_access),
        ] {
            let ns = time_ns(t);
            d.set_item(name, ns as f64 / 1e9)?;
            d.set_item(format!("{name}_ns"), ns)?;
        }
        d.set_item("access_count", st.access_count)?;
        Ok(Some(d))
    }

    /// Removes every entry.
    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        let store = self.shared(py)?;
        py.detach(|| store.clear()).map_err(|e| to_pyerr(py, e))
    }

    /// Checks and rebuilds the store's derived structures from its entries
    /// (what crash recovery does); returns stats() afterwards.
    fn repair<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let store = self.shared(py)?;
        let s = py.detach(|| store.repair()).map_err(|e| to_pyerr(py, e))?;
        stats_dict(py, &s)
    }

    /// Closes this handle (idempotent). Open views keep their bytes valid
    /// until they are released; the store itself stays until unlink().
    fn close(&self, py: Python<'_>) {
        let old = self.inner.write().unwrap_or_else(|p| p.into_inner()).take();
        // The unmap (if this was the last reference) happens without the GIL.
        py.detach(move || drop(old));
    }

    /// True once close() was called.
    #[getter]
    fn closed(&self) -> bool {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).is_none()
    }

    /// The store's name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Arena size in bytes (the store's own, also when opened).
    #[getter]
    fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Maximum number of entries.
    #[getter]
    fn max_entries(&self) -> u64 {
        self.max_entries
    }

    /// Longest key in bytes.
    #[getter]
    fn max_key_len(&self) -> usize {
        self.max_key_len
    }

    /// Largest key + value in bytes one entry can hold.
    #[getter]
    fn max_entry_bytes(&self) -> usize {
        self.max_entry_bytes
    }

    /// "evict_lru" or "refuse" (chosen when the store was created).
    #[getter]
    fn policy(&self) -> &'static str {
        policy_name(self.policy)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: Option<Bound<'_, PyAny>>,
        _exc: Option<Bound<'_, PyAny>>,
        _tb: Option<Bound<'_, PyAny>>,
    ) -> bool {
        self.close(py);
        false
    }

    fn __repr__(&self) -> String {
        if self.closed() {
            // Names are [A-Za-z0-9._-/] only: no quoting needed.
            format!("<memwatch.store.Store '{}' closed>", self.name)
        } else {
            format!(
                "<memwatch.store.Store '{}' capacity={} max_entries={} policy='{}'>",
                self.name,
                self.capacity,
                self.max_entries,
                policy_name(self.policy)
            )
        }
    }
}

fn time_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

fn stats_dict<'py>(py: Python<'py>, s: &ms::StoreStats) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("entries", s.entries)?;
    d.set_item("max_entries", s.max_entries)?;
    d.set_item("capacity_bytes", s.capacity_bytes)?;
    d.set_item("bytes_used", s.bytes_used)?;
    d.set_item("data_bytes", s.data_bytes)?;
    d.set_item("hits", s.hits)?;
    d.set_item("misses", s.misses)?;
    d.set_item("evictions", s.evictions)?;
    d.set_item("puts", s.puts)?;
    d.set_item("deletes", s.deletes)?;
    d.set_item("refusals", s.refusals)?;
    d.set_item("recoveries", s.recoveries)?;
    Ok(d)
}

// ---------------------------------------------------------------------------
// items() iterator
// ---------------------------------------------------------------------------

/// `Iter` over a store kept alive by its own `Arc`.
struct IterState {
    /// Borrows `*_store`; declared first so it is dropped first.
    iter: ms::Iter<'static>,
    _store: Arc<Store>,
}

impl IterState {
    fn new(store: Arc<Store>) -> IterState {
        // SAFETY: the Store lives in the Arc's heap allocation, which never
        // moves and which `_store` keeps alive until after `iter` (declared
        // first, so dropped first) is gone. The 'static borrow never leaves
        // this struct.
        let s: &'static Store = unsafe { &*Arc::as_ptr(&store) };
        IterState { iter: s.iter(), _store: store }
    }
}

/// Iterator returned by Store.items().
#[pyclass(module = "memwatch.store", name = "ItemIterator")]
struct ItemIter {
    state: Option<IterState>,
}

#[pymethods]
impl ItemIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let Some(state) = self.state.as_mut() else {
            return Ok(None);
        };
        let next = py.detach(|| state.iter.next());
        match next {
            Some(Ok((k, v))) => {
                Ok(Some(PyTuple::new(py, [PyBytes::new(py, &k), PyBytes::new(py, &v)])?))
            }
            Some(Err(e)) => Err(to_pyerr(py, e)),
            None => {
                self.state = None;
                Ok(None)
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Zero-copy views
// ---------------------------------------------------------------------------

/// A `ValueRef` pin together with the store it borrows.
struct PinnedValue {
    /// Borrows `*_store`; declared first so it is dropped (unpinned) first.
    value: ValueRef<'static>,
    _store: Arc<Store>,
}

// SAFETY: a ValueRef is a pin record index plus a pointer to bytes that no
// process writes while pinned. Reading them and unpinning (atomic stores on
// the shared pin record, keyed by process id, not thread) are valid from any
// thread of the process. A PinnedValue is made on one thread (in `view`,
// GIL released) and handed over whole; afterwards every access happens with
// the GIL held, so two threads never touch it at once.
unsafe impl Send for PinnedValue {}

impl PinnedValue {
    fn new(store: Arc<Store>, key: &[u8]) -> ms::Result<Option<PinnedValue>> {
        // SAFETY: as in IterState::new: the Store stays at this address, kept
        // alive by `_store`, until after `value` is dropped.
        let s: &'static Store = unsafe { &*Arc::as_ptr(&store) };
        Ok(s.get_ref(key)?.map(|value| PinnedValue { value, _store: store }))
    }

    fn ptr(&self) -> *const u8 {
        self.value.as_ptr()
    }

    fn len(&self) -> usize {
        self.value.len()
    }
}

/// What an exporter object owns. Accessed only with the GIL held.
struct ExporterState {
    /// The pin; `None` once released.
    pin: Option<PinnedValue>,
    /// Buffer exports handed out and not yet released.
    exports: usize,
    /// Set when the view's `with` block ended (or release() was called): no
    /// new exports, and the pin goes with the last export.
    closed: bool,
}

/// The exporter's C layout: an object header and a pointer to its state.
#[repr(C)]
struct ExporterObject {
    ob_base: ffi::PyObject,
    state: *mut ExporterState,
}

/// The exporter type, made with `PyType_FromSpec` because pyo3 offers the
/// buffer protocol on abi3 only from Python 3.11. The `Py_bf_getbuffer` and
/// `Py_bf_releasebuffer` slots have been honoured by `PyType_FromSpec` in
/// every CPython 3.x; 3.11 only added them to the limited-API headers.
static EXPORTER_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn exporter_type(py: Python<'_>) -> PyResult<&Py<PyType>> {
    EXPORTER_TYPE.get_or_try_init(py, || {
        let mut slots = [
            ffi::PyType_Slot { slot: ffi::Py_bf_getbuffer, pfunc: exporter_getbuffer as *mut c_void },
            ffi::PyType_Slot { slot: ffi::Py_bf_releasebuffer, pfunc: exporter_releasebuffer as *mut c_void },
            ffi::PyType_Slot { slot: ffi::Py_tp_dealloc, pfunc: exporter_dealloc as *mut c_void },
            ffi::PyType_Slot { slot: ffi::Py_tp_new, pfunc: exporter_new as *mut c_void },
            ffi::PyType_Slot {
                slot: ffi::Py_tp_doc,
                pfunc: c"Pinned bytes of a memwatch.store value (the object behind a Store.view() memoryview)."
                    .as_ptr() as *mut c_void,
            },
            ffi::PyType_Slot { slot: 0, pfunc: std::ptr::null_mut() },
        ];
        let mut spec = ffi::PyType_Spec {
            // tp_name points at this string for the type's lifetime: 'static.
            name: c"memwatch.store.PinnedValue".as_ptr(),
            basicsize: std::mem::size_of::<ExporterObject>() as c_int,
            itemsize: 0,
            flags: ffi::Py_TPFLAGS_DEFAULT as _,
            slots: slots.as_mut_ptr(),
        };
        // SAFETY: spec and slots are valid for the call (CPython copies what
        // it keeps, except the 'static name); the functions have the
        // signatures their slots require.
        let tp = unsafe { ffi::PyType_FromSpec(&mut spec) };
        // SAFETY: a new reference or NULL with an exception set.
        let tp = unsafe { Bound::from_owned_ptr_or_err(py, tp)? };
        Ok(tp.cast_into::<PyType>()?.unbind())
    })
}

fn new_exporter(py: Python<'_>, pin: PinnedValue) -> PyResult<Py<PyAny>> {
    let tp = exporter_type(py)?;
    // SAFETY: tp is our heap type object; GenericAlloc returns a zeroed
    // instance of its basicsize (taking a reference to the type) or NULL.
    let obj = unsafe { ffi::PyType_GenericAlloc(tp.as_ptr() as *mut ffi::PyTypeObject, 0) };
    // SAFETY: a new reference or NULL with an exception set.
    let obj = unsafe { Bound::from_owned_ptr_or_err(py, obj)? };
    let state = Box::new(ExporterState { pin: Some(pin), exports: 0, closed: false });
    // SAFETY: obj is an instance of our type, so it has ExporterObject's
    // layout; its state pointer is still NULL (zeroed), we set it once.
    unsafe { (*(obj.as_ptr() as *mut ExporterObject)).state = Box::into_raw(state) };
    Ok(obj.unbind())
}

/// The state of an exporter object made by `new_exporter`.
///
/// # Safety
/// `obj` must be an instance of the exporter type and the GIL must be held
/// (which serializes every access to the state).
unsafe fn exporter_state<'a>(obj: *mut ffi::PyObject) -> Option<&'a mut ExporterState> {
    // SAFETY: per the contract, obj has ExporterObject's layout; the state
    // pointer is NULL or a Box we own, freed only in dealloc.
    unsafe { (*(obj as *mut ExporterObject)).state.as_mut() }
}

unsafe extern "C" fn exporter_new(
    _tp: *mut ffi::PyTypeObject,
    _args: *mut ffi::PyObject,
    _kwargs: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: called by CPython with the GIL held; the message is a C string.
    unsafe {
        ffi::PyErr_SetString(
            ffi::PyExc_TypeError,
            c"memwatch.store.PinnedValue cannot be created directly; use Store.view()".as_ptr(),
        )
    };
    std::ptr::null_mut()
}

unsafe extern "C" fn exporter_getbuffer(
    obj: *mut ffi::PyObject,
    view: *mut RawBuffer,
    flags: c_int,
) -> c_int {
    // SAFETY: CPython calls this with the GIL held, obj an instance of our type.
    let state = unsafe { exporter_state(obj) };
    let Some(state) = state.filter(|s| !s.closed) else {
        // SAFETY: GIL held; view is the caller's Py_buffer, whose obj must be
        // NULL on failure.
        unsafe {
            (*view).obj = std::ptr::null_mut();
            ffi::PyErr_SetString(
                ffi::PyExc_BufferError,
                c"this memwatch.store value view was released; take a new one with Store.view()"
                    .as_ptr(),
            );
        }
        return -1;
    };
    let Some(pin) = state.pin.as_ref() else {
        // Unreachable: the pin is dropped only once closed.
        // SAFETY: as above.
        unsafe {
            (*view).obj = std::ptr::null_mut();
            ffi::PyErr_SetString(ffi::PyExc_BufferError, c"value view is not pinned".as_ptr());
        }
        return -1;
    };
    // SAFETY: the pinned bytes stay valid while `pin` lives, and it lives at
    // least until this export is released (releasebuffer drops it only at
    // zero exports). readonly=1 makes FillInfo refuse PyBUF_WRITABLE with
    // BufferError. FillInfo takes a new reference to obj into view->obj.
    let rc = unsafe {
        PyBuffer_FillInfo(
            view,
            obj,
            pin.ptr() as *mut c_void,
            pin.len() as ffi::Py_ssize_t,
            1,
            flags,
        )
    };
    if rc == 0 {
        state.exports += 1;
    }
    rc
}

unsafe extern "C" fn exporter_releasebuffer(obj: *mut ffi::PyObject, _view: *mut RawBuffer) {
    // SAFETY: CPython calls this with the GIL held, obj an instance of our type.
    if let Some(state) = unsafe { exporter_state(obj) } {
        state.exports = state.exports.saturating_sub(1);
        if state.exports == 0 && state.closed {
            state.pin = None; // unpin: nothing can reach the bytes any more
        }
    }
}

unsafe extern "C" fn exporter_dealloc(obj: *mut ffi::PyObject) {
    // SAFETY: CPython calls tp_dealloc once, with the GIL held, when the last
    // reference is gone (so no export is alive: each holds a reference). The
    // state Box was made by new_exporter (or is NULL). Heap-type instances
    // own a reference to their type, released after tp_free.
    unsafe {
        let this = obj as *mut ExporterObject;
        let state = std::mem::replace(&mut (*this).state, std::ptr::null_mut());
        if !state.is_null() {
            drop(Box::from_raw(state));
        }
        let tp = ffi::Py_TYPE(obj);
        let free = ffi::PyType_GetSlot(tp, ffi::Py_tp_free);
        if !free.is_null() {
            let free: ffi::freefunc = std::mem::transmute::<*mut c_void, ffi::freefunc>(free);
            free(obj as *mut c_void);
        }
        ffi::Py_DECREF(tp as *mut ffi::PyObject);
    }
}

extern "C" {
    /// Stable ABI since 3.11, exported by every CPython 3.x with this signature.
    fn PyBuffer_FillInfo(
        view: *mut RawBuffer,
        obj: *mut ffi::PyObject,
        buf: *mut c_void,
        len: ffi::Py_ssize_t,
        readonly: c_int,
        flags: c_int,
    ) -> c_int;
}

/// A pinned, zero-copy view of one value: `with store.view(key) as mv:`
/// gives a read-only memoryview of the bytes in shared memory.
///
/// The bytes cannot change or be freed while the view is pinned, even if
/// another process overwrites or deletes the key (it gets new storage).
/// Leaving the `with` block (or release()) releases the memoryview and the
/// pin. If something made from the memoryview is still alive then (a slice,
/// `numpy.frombuffer`), the pin stays until that is released too, and
/// `__exit__` raises BufferError to say so.
#[pyclass(module = "memwatch.store", name = "ValueView")]
struct ValueView {
    exporter: Py<PyAny>,
    memoryview: Option<Py<PyAny>>,
    released: bool,
    key: Py<PyBytes>,
    len: usize,
}

impl ValueView {
    fn state(&self) -> Option<&ExporterState> {
        // SAFETY: `exporter` was made by new_exporter; callers hold the GIL
        // (every pymethod does), which serializes all access to the state.
        unsafe { exporter_state(self.exporter.as_ptr()).map(|s| &*s) }
    }

    fn state_mut(&mut self) -> Option<&mut ExporterState> {
        // SAFETY: as in `state`.
        unsafe { exporter_state(self.exporter.as_ptr()) }
    }

    fn released_err(&self) -> PyErr {
        PyValueError::new_err("this value view was released; take a new one with Store.view()")
    }

    /// Releases the memoryview and the pin; Ok(false) if something made from
    /// the memoryview keeps the pin alive.
    fn do_release(&mut self, py: Python<'_>) -> bool {
        let mut clean = true;
        if let Some(mv) = self.memoryview.take() {
            if mv.bind(py).call_method0("release").is_err() {
                // Buffers exported from the memoryview itself (numpy.frombuffer(mv)).
                clean = false;
            }
        }
        self.released = true;
        if let Some(state) = self.state_mut() {
            state.closed = true;
            if state.exports == 0 {
                state.pin = None;
            } else {
                clean = false;
            }
        }
        clean
    }
}

#[pymethods]
impl ValueView {
    /// The read-only memoryview of the value (format "B", one byte per item).
    fn __enter__<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if self.released {
            return Err(self.released_err());
        }
        if let Some(mv) = &self.memoryview {
            return Ok(mv.bind(py).clone());
        }
        // SAFETY: exporter is a live object of our exporter type; the call
        // returns a new reference or NULL with an exception set.
        let mv = unsafe {
            Bound::from_owned_ptr_or_err(py, ffi::PyMemoryView_FromObject(self.exporter.as_ptr()))?
        };
        self.memoryview = Some(mv.clone().unbind());
        Ok(mv)
    }

    /// Releases the memoryview and the pin. Raises BufferError (only when no
    /// other exception is propagating) if a slice or array made from the
    /// memoryview is still alive; the bytes then stay pinned until it is gone.
    fn __exit__(
        &mut self,
        py: Python<'_>,
        exc_type: Option<Bound<'_, PyAny>>,
        _exc: Option<Bound<'_, PyAny>>,
        _tb: Option<Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let clean = self.do_release(py);
        if !clean && exc_type.is_none() {
            return Err(self.escaped_err(py));
        }
        Ok(false)
    }

    /// Same as leaving the `with` block. Idempotent.
    fn release(&mut self, py: Python<'_>) -> PyResult<()> {
        if self.released {
            return Ok(());
        }
        if self.do_release(py) {
            Ok(())
        } else {
            Err(self.escaped_err(py))
        }
    }

    /// True while the bytes are pinned (until released, and then until the
    /// last slice or array made from the memoryview is gone).
    #[getter]
    fn pinned(&self) -> bool {
        self.state().is_some_and(|s| s.pin.is_some())
    }

    /// True while the key still maps to exactly these bytes (no put, delete
    /// or eviction of the key since the view was taken).
    fn is_current(&self) -> PyResult<bool> {
        if self.released {
            return Err(self.released_err());
        }
        Ok(self.state().and_then(|s| s.pin.as_ref()).is_some_and(|p| p.value.is_current()))
    }

    /// The key, as bytes.
    #[getter]
    fn key(&self, py: Python<'_>) -> Py<PyBytes> {
        self.key.clone_ref(py)
    }

    /// Length of the value in bytes.
    fn __len__(&self) -> usize {
        self.len
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let key = self.key.bind(py).repr().map(|r| r.to_string()).unwrap_or_default();
        let state = if self.released { "released" } else { "pinned" };
        format!("<memwatch.store.ValueView key={key} len={} {state}>", self.len)
    }
}

impl ValueView {
    fn escaped_err(&self, py: Python<'_>) -> PyErr {
        let key = self.key.bind(py).repr().map(|r| r.to_string()).unwrap_or_default();
        PyBufferError::new_err(format!(
            "the view of key {key} was still in use when it was released: a memoryview slice, \
             numpy array or other object made from it is alive outside the with block. Its \
             bytes stay pinned (valid) until that object is released; copy them (bytes(mv)) \
             inside the block if you need them afterwards"
        ))
    }
}

/// Registers the store's classes and functions on the submodule.
pub(crate) fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyStore>()?;
    m.add_class::<ValueView>()?;
    m.add_class::<ItemIter>()?;
    m.add_function(wrap_pyfunction!(connect, m)?)?;
    m.add_function(wrap_pyfunction!(open_store, m)?)?;
    m.add_function(wrap_pyfunction!(unlink, m)?)?;
    m.add("EVICT_LRU", POLICY_EVICT_LRU)?;
    m.add("REFUSE", POLICY_REFUSE)?;
    m.add("MAX_NAME_LEN", ms::MAX_NAME_LEN)?;
    Ok(())
}
