//! `memwatch._memwatch`: the native half of the `memwatch` Python package.
//!
//! This crate is a thin translation layer over `memwatch-core`; it holds no
//! detection logic. It maps Python buffer-protocol objects to
//! (address, length, keep-alive), Python callables to the core's delivery
//! thread, core errors to Python exceptions, and core events to
//! [`ChangeEvent`] objects. The user-facing API (`memwatch.MemoryWatcher`)
//! is the Python module `memwatch/__init__.py`, which wraps [`Watcher`].
//!
//! GIL discipline:
//! - every core call that can block (watch, unwatch, set_callback,
//!   check_changes, close) runs with the GIL released (`Python::detach`);
//! - the callback runs on the core's delivery thread, which attaches to the
//!   interpreter (takes the GIL) only for the duration of one Python call;
//! - no Rust mutex of this crate is ever held while waiting for the GIL or
//!   while the GIL is released, so the two can never deadlock.

#![deny(unsafe_op_in_unsafe_fn)]

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;

use memwatch_core as mw;

mod glass;
mod pyframes;
mod store;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple, PyType};

// ---------------------------------------------------------------------------
// Buffer protocol.
//
// pyo3 exposes the buffer protocol only for Python >= 3.11 when building for
// the stable ABI (it joined the limited API in 3.11). The functions and the
// `Py_buffer` layout below are the ones 3.11 made part of the stable ABI;
// CPython has exported exactly these symbols with exactly this layout since
// 3.3, so the abi3 wheel uses them on 3.9 and 3.10 as well.
// ---------------------------------------------------------------------------

/// `Py_buffer`, as declared by CPython's `Include/pybuffer.h`.
#[repr(C)]
struct RawBuffer {
    buf: *mut c_void,
    obj: *mut ffi::PyObject,
    len: isize,
    itemsize: isize,
    readonly: c_int,
    ndim: c_int,
    format: *mut c_char,
    shape: *mut isize,
    strides: *mut isize,
    suboffsets: *mut isize,
    internal: *mut c_void,
}

extern "C" {
    fn PyObject_GetBuffer(obj: *mut ffi::PyObject, view: *mut RawBuffer, flags: c_int) -> c_int;
    fn PyBuffer_Release(view: *mut RawBuffer);
    fn PyBuffer_IsContiguous(view: *const RawBuffer, order: c_char) -> c_int;
}

const PYBUF_WRITABLE: c_int = 0x0001;
const PYBUF_FORMAT: c_int = 0x0004;
const PYBUF_ND: c_int = 0x0008;
const PYBUF_STRIDES: c_int = 0x0010 | PYBUF_ND;
/// Strided, writable, with format: what a writable numpy array or memoryview slice can give.
const PYBUF_RECORDS: c_int = PYBUF_STRIDES | PYBUF_WRITABLE | PYBUF_FORMAT;
/// The same without requiring writability (used only to explain a failure).
const PYBUF_RECORDS_RO: c_int = PYBUF_STRIDES | PYBUF_FORMAT;

/// A held buffer export: while it exists the exporter cannot resize, move or
/// free its memory (a bytearray refuses to grow with BufferError, an mmap
/// refuses to close, a memoryview refuses to release). Dropping it releases
/// the export.
struct Pin {
    /// Boxed because exporters may point `shape` into the struct itself
    /// (`PyBuffer_FillInfo` sets `shape = &view->len`), so it must not move.
    view: Box<RawBuffer>,
}

// SAFETY: a Pin is only a record of an export; it is created and released
// with the GIL held (see `Pin::acquire` and `Drop`), and the raw pointers in
// it are never dereferenced by this crate, only handed back to CPython.
unsafe impl Send for Pin {}

impl Pin {
    /// Exports `obj`'s buffer for writing; explains every way this can fail.
    fn acquire(obj: &Bound<'_, PyAny>) -> PyResult<Pin> {
        let py = obj.py();
        let mut view = Box::new(empty_view());
        // SAFETY: obj is a live object (we hold a Bound, and the GIL), and
        // view points to writable memory of Py_buffer's size and layout.
        let rc = unsafe { PyObject_GetBuffer(obj.as_ptr(), &mut *view, PYBUF_RECORDS) };
        if rc != 0 {
            let cause = PyErr::fetch(py);
            let tname = type_name(obj);
            let mut probe = Box::new(empty_view());
            // SAFETY: as above; the probe export is released right away.
            let ro = unsafe { PyObject_GetBuffer(obj.as_ptr(), &mut *probe, PYBUF_RECORDS_RO) };
            let err = if ro == 0 {
                // SAFETY: the probe export succeeded, so it must be released once.
                unsafe { PyBuffer_Release(&mut *probe) };
                read_only_error(py, &tname, probe_is_writable(&probe))
            } else {
                let _ = PyErr::take(py);
                if supports_buffer(obj) {
                    PyTypeError::new_err(format!(
                        "memwatch cannot watch this {tname}: its buffer cannot be exported as a \
                         writable strided buffer ({cause})"
                    ))
                } else {
                    PyTypeError::new_err(format!(
                        "memwatch can only watch objects that support the buffer protocol \
                         (bytearray, memoryview, numpy arrays, mmap, array.array, ...); \
                         got {tname}"
                    ))
                }
            };
            err.set_cause(py, Some(cause));
            return Err(err);
        }
        let pin = Pin { view };
        if pin.view.readonly != 0 {
            // Some exporters hand out a read-only view even when asked for a writable one.
            let tname = type_name(obj);
            return Err(read_only_error(py, &tname, false));
        }
        // SAFETY: pin.view is a valid export held by us.
        let contiguous = unsafe { PyBuffer_IsContiguous(&*pin.view, b'A' as c_char) } != 0;
        if !contiguous {
            let tname = type_name(obj);
            return Err(errors(py)
                .not_contiguous
                .bind(py)
                .call1((format!(
                "memwatch can only watch contiguous memory, and this {tname} is not contiguous \
                 (a strided view such as a[::2] or a transposed slice); watch the array it views, \
                 or a contiguous copy (numpy.ascontiguousarray)"
            ),))
                .map(PyErr::from_value)
                .unwrap_or_else(|e| e));
        }
        Ok(pin)
    }

    fn addr(&self) -> *const u8 {
        self.view.buf as *const u8
    }

    fn len(&self) -> usize {
        self.view.len.max(0) as usize
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        // Pins are dropped by this crate only with the GIL held; attaching is
        // then free. try_attach guards the (unused) case of a drop during
        // interpreter shutdown, where releasing is neither possible nor needed.
        let _ = Python::try_attach(|_py| {
            // SAFETY: the view holds an export obtained by PyObject_GetBuffer
            // that was not released yet (Pin is the only owner), and we hold the GIL.
            unsafe { PyBuffer_Release(&mut *self.view) };
        });
    }
}

fn empty_view() -> RawBuffer {
    RawBuffer {
        buf: std::ptr::null_mut(),
        obj: std::ptr::null_mut(),
        len: 0,
        itemsize: 0,
        readonly: 0,
        ndim: 0,
        format: std::ptr::null_mut(),
        shape: std::ptr::null_mut(),
        strides: std::ptr::null_mut(),
        suboffsets: std::ptr::null_mut(),
        internal: std::ptr::null_mut(),
    }
}

fn probe_is_writable(view: &RawBuffer) -> bool {
    view.readonly == 0
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "object".to_string())
}

fn supports_buffer(obj: &Bound<'_, PyAny>) -> bool {
    // memoryview() is the portable test for "has the buffer protocol".
    let py = obj.py();
    match py.get_type::<pyo3::types::PyMemoryView>().call1((obj,)) {
        Ok(mv) => {
            let _ = mv.call_method0("release");
            true
        }
        Err(_) => false,
    }
}

fn read_only_error(py: Python<'_>, tname: &str, strided_only: bool) -> PyErr {
    let msg = if strided_only {
        format!("memwatch cannot watch this {tname}: it only exports its memory for reading here")
    } else {
        format!(
            "memwatch cannot watch this {tname} object: it is read-only, so its memory can \
             never change through it and there is nothing to watch; watch a writable buffer \
             instead (e.g. bytearray(data) rather than bytes)"
        )
    };
    match errors(py).read_only.bind(py).call1((msg,)) {
        Ok(v) => PyErr::from_value(v),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------
// Exceptions: defined in Python (memwatch/_errors.py) so they can inherit
// from both MemwatchError and the matching builtin (ValueError, TypeError, ...).
// ---------------------------------------------------------------------------

struct Errors {
    invalid_argument: Py<PyType>,
    unmapped: Py<PyType>,
    read_only: Py<PyType>,
    overlap: Py<PyType>,
    unsupported: Py<PyType>,
    closed: Py<PyType>,
    os: Py<PyType>,
    not_contiguous: Py<PyType>,
    database: Py<PyType>,
}

static ERRORS: PyOnceLock<Errors> = PyOnceLock::new();

fn errors(py: Python<'_>) -> &Errors {
    ERRORS
        .get_or_try_init(py, || -> PyResult<Errors> {
            let m = py.import("memwatch._errors")?;
            let get = |name: &str| -> PyResult<Py<PyType>> {
                Ok(m.getattr(name)?.cast_into::<PyType>()?.unbind())
            };
            Ok(Errors {
                invalid_argument: get("InvalidArgumentError")?,
                unmapped: get("UnmappedError")?,
                read_only: get("ReadOnlyError")?,
                overlap: get("OverlapError")?,
                unsupported: get("UnsupportedError")?,
                closed: get("WatcherClosedError")?,
                os: get("MemwatchOSError")?,
                not_contiguous: get("NotContiguousError")?,
                database: get("DatabaseError")?,
            })
        })
        .expect("memwatch._errors is part of the memwatch package and must import")
}

/// Converts a core error into the matching `memwatch` exception.
fn to_pyerr(py: Python<'_>, err: mw::Error) -> PyErr {
    let e = errors(py);
    let ty = match &err {
        mw::Error::InvalidArgument(_) => &e.invalid_argument,
        mw::Error::Unmapped(_) => &e.unmapped,
        mw::Error::ReadOnly(_) => &e.read_only,
        mw::Error::Overlap(_) => &e.overlap,
        mw::Error::Unsupported(_) => &e.unsupported,
        mw::Error::Closed => &e.closed,
        mw::Error::Os(_) => &e.os,
    };
    match ty.bind(py).call1((err.to_string(),)) {
        Ok(v) => PyErr::from_value(v),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------
// Shared state of one watcher.
// ---------------------------------------------------------------------------

/// What the binding keeps per watched region.
struct Region {
    /// The buffer export; released on unwatch/close.
    _pin: Pin,
    /// `id()` of the watched object, reported as `variable_id`.
    object_id: usize,
    /// The metadata object given at watch time (reported as-is).
    metadata: Option<Py<PyAny>>,
}

/// State shared by the Python object and the core's callback closures. A
/// closure holds only a `Weak` to it, so a callback that refers back to its
/// watcher does not keep it alive through Rust.
struct Shared {
    core: mw::Watcher,
    regions: Mutex<HashMap<mw::RegionId, Region>>,
    /// The current callback (None: events wait for check_changes).
    callback: Mutex<Option<Arc<CallbackCell>>>,
    /// Serializes set_callback calls (taken only with the GIL released).
    set_callback_lock: Mutex<()>,
    /// Set by the first close().
    closing: AtomicBool,
    /// Set once that close() has released every buffer (see `wait_closed`).
    close_done: Mutex<bool>,
    close_cond: Condvar,
    snapshots: bool,
    /// With locate_writers: this watcher's stack_depth of Python frames.
    depth_claim: Mutex<Option<pyframes::DepthClaim>>,
}

/// One callable given to set_callback. The core's closure for it holds an
/// `Arc` of the cell, so an event the core already handed to that closure
/// still reaches that callable even if set_callback(None) runs meanwhile (the
/// core delivers each event exactly once, to the closure current when the
/// event was taken). The Python object also holds the current cell, which its
/// `__traverse__` shows to the GC and `__clear__` empties to break cycles.
struct CallbackCell {
    callable: Mutex<Option<Py<PyAny>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the map in a
    // state worse than "missing an entry"; keep going rather than poisoning.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Set by `_close_all()` (atexit): the interpreter is about to finalize.
static EXITING: AtomicBool = AtomicBool::new(false);

/// `py.detach(f)`, except that once the interpreter is exiting a thread
/// other than the main one never takes the GIL back: it parks. (Only daemon
/// threads are left then; one that took the GIL of a finalizing interpreter
/// would be ended with pthread_exit, whose unwind through these Rust frames
/// aborts the process: "FATAL: exception not rethrown".)
fn detach<T, F>(py: Python<'_>, f: F) -> T
where
    F: Send + FnOnce() -> T,
    T: Send,
{
    py.detach(|| {
        let result = f();
        // SAFETY: getpid and gettid have no preconditions.
        let main = unsafe { libc::getpid() == libc::gettid() };
        while EXITING.load(Ordering::SeqCst) && !main {
            std::thread::park();
        }
        result
    })
}

/// Every live watcher, so that `_close_all()` (registered with atexit) can
/// close them before the interpreter finalizes: a delivery thread must never
/// try to take the GIL of a finalizing interpreter.
static LIVE: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

thread_local! {
    /// True on a delivery thread while it runs a callback.
    static IN_DELIVERY: Cell<bool> = const { Cell::new(false) };
}

impl Shared {
    /// Closes the core, then releases every buffer. Only the first caller
    /// closes; later (or concurrent) callers wait until it has finished, so a
    /// buffer is never released while the core may still read it.
    fn close(&self, py: Python<'_>) {
        if self.closing.swap(true, Ordering::SeqCst) {
            self.wait_closed(py);
            return;
        }
        detach(py, || self.core.close());
        // The core no longer touches any region: release the exports.
        let regions: Vec<Region> = lock(&self.regions).drain().map(|(_, r)| r).collect();
        let cell = lock(&self.callback).take();
        lock(&self.depth_claim).take();
        drop(regions);
        drop(cell);
        *lock(&self.close_done) = true;
        self.close_cond.notify_all();
    }

    /// When a close() has started, waits (GIL released) until it has released
    /// every buffer, so that a caller who sees the watcher closed also sees
    /// its objects unpinned. Never waits on a delivery thread: the close()
    /// running elsewhere may be joining that very thread.
    fn wait_closed(&self, py: Python<'_>) {
        if !self.closing.load(Ordering::SeqCst) || IN_DELIVERY.with(|d| d.get()) {
            return;
        }
        detach(py, || {
            let mut done = lock(&self.close_done);
            while !*done {
                done = self.close_cond.wait(done).unwrap_or_else(|p| p.into_inner());
            }
        });
    }
}

// ---------------------------------------------------------------------------
// ChangeEvent
// ---------------------------------------------------------------------------

/// One detected change to one watched region.
///
/// Fields follow the memwatch event schema: `seq`, `timestamp_ns`,
/// `adapter_id`, `region_id`, `variable_id`, `variable_name`, `where`,
/// `how_big`, `changed_ranges`, `old_preview`, `new_preview`, `old_value`,
/// `new_value`, `storage_key_old`, `storage_key_new`, `metadata`,
/// `coalesced`. The engine's event is kept as it is and each field is converted to a
/// Python object when it is read (the event is cheap to make, whatever fields
/// the caller never looks at).
#[pyclass(module = "memwatch", name = "ChangeEvent", frozen)]
struct ChangeEvent {
    /// The engine's event.
    ev: mw::ChangeEvent,
    /// `id()` of the watched object, or None when the region was already unwatched.
    variable_id: Option<usize>,
    /// The metadata object given to `watch()` (or the engine's text of it).
    metadata: Option<Py<PyAny>>,
    /// Whether the watcher keeps snapshots (else there is no old preview).
    snapshots: bool,
}

#[pymethods]
impl ChangeEvent {
    /// Process-wide sequence number, increasing in detection order.
    #[getter]
    fn seq(&self) -> u64 {
        self.ev.seq
    }

    /// CLOCK_MONOTONIC nanoseconds of the first write (protect) or of detection (poll).
    #[getter]
    fn timestamp_ns(&self) -> u64 {
        self.ev.timestamp_ns
    }

    /// Which language adapter made the watcher (2 = Python).
    #[getter]
    fn adapter_id(&self) -> u32 {
        self.ev.adapter_id
    }

    /// The region id `watch()` returned.
    #[getter]
    fn region_id(&self) -> u32 {
        self.ev.region_id
    }

    /// `id()` of the watched object, or None when the region was already unwatched.
    #[getter]
    fn variable_id(&self) -> Option<usize> {
        self.variable_id
    }

    /// The name given to (or inferred by) `watch()`.
    #[getter]
    fn variable_name(&self) -> &str {
        &self.ev.variable_name
    }

    /// Size of the region in bytes.
    #[getter]
    fn how_big(&self) -> usize {
        self.ev.how_big
    }

    /// Changes this event stands for: 1, or more when later changes of the
    /// region were merged into it while it waited in a full queue (then
    /// old_* is from the first, new_* from the last, ranges the union).
    #[getter]
    fn coalesced(&self) -> u32 {
        self.ev.coalesced
    }

    /// First `preview_bytes` of the region before the change (None without snapshots).
    #[getter]
    fn old_preview<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.snapshots.then(|| PyBytes::new(py, &self.ev.old_preview))
    }

    /// First `preview_bytes` of the region after the change.
    #[getter]
    fn new_preview<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.ev.new_preview)
    }

    /// Whole old value when `how_big <= max_value_bytes` and snapshots are on.
    #[getter]
    fn old_value<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.ev.old_value.as_deref().map(|v| PyBytes::new(py, v))
    }

    /// Whole new value when `how_big <= max_value_bytes`.
    #[getter]
    fn new_value<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.ev.new_value.as_deref().map(|v| PyBytes::new(py, v))
    }

    /// Value-store key of the large old value (`memwatch/{adapter_id}/{region_id}/{epoch}`),
    /// when a value store is attached (`set_value_store`) and still holds it; else None.
    #[getter]
    fn storage_key_old(&self) -> Option<&str> {
        self.ev.storage_key_old.as_deref()
    }

    /// Value-store key of the large new value, when a value store is attached and took it; else None.
    #[getter]
    fn storage_key_new(&self) -> Option<&str> {
        self.ev.storage_key_new.as_deref()
    }

    /// The metadata given to `watch()`.
    #[getter]
    fn metadata(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.metadata.as_ref().map(|m| m.clone_ref(py))
    }

    /// Where the change was made: a dict with `thread_id` (kernel thread id of
    /// the writer, or None), `fault_ip`, `file`, `function` and `line`
    /// (None where the backend cannot tell); with `locate_writers=True` also
    /// `thread_name`, `module`, `module_offset` (None for a Python frame),
    /// `stack` (a list of frame dicts, innermost first: the Python frames,
    /// then the native ones; see `frame_dict`) and `unattributed_faults`.
    #[getter(r#where)]
    fn where_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let w = &self.ev.where_;
        let d = PyDict::new(py);
        d.set_item("thread_id", w.thread_id)?;
        d.set_item("fault_ip", w.fault_ip)?;
        d.set_item("file", (!w.file.is_empty()).then_some(w.file.as_str()))?;
        d.set_item("function", (!w.function.is_empty()).then_some(w.function.as_str()))?;
        d.set_item("line", (w.line != 0).then_some(w.line))?;
        // Writer location (locate_writers): thread name, module + offset, the
        // stack (innermost first) and the unattributed fault count.
        let located = !w.stack.is_empty();
        let native = located && !w.module.is_empty();
        d.set_item("thread_name", located.then_some(w.thread_name.as_str()))?;
        d.set_item("module", native.then_some(w.module.as_str()))?;
        d.set_item("module_offset", native.then_some(w.module_offset))?;
        d.set_item("unattributed_faults", w.unattributed_faults)?;
        let stack = PyList::empty(py);
        for f in &w.stack {
            stack.append(frame_dict(py, f)?)?;
        }
        d.set_item("stack", stack)?;
        Ok(d)
    }

    /// Kernel thread id of the writing thread (compare `threading.get_native_id()`),
    /// or None when the backend cannot tell (poll).
    #[getter]
    fn thread_id(&self) -> Option<u32> {
        self.ev.where_.thread_id
    }

    /// The changed byte ranges as `(offset, length)` tuples, ascending,
    /// offsets relative to the start of the region.
    #[getter]
    fn changed_ranges(&self) -> Vec<(usize, usize)> {
        self.ev.changed_ranges.iter().map(|r| (r.offset, r.len)).collect()
    }

    /// All fields as a plain dict (`where` included), e.g. for JSON logging.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("seq", self.seq())?;
        d.set_item("timestamp_ns", self.timestamp_ns())?;
        d.set_item("adapter_id", self.adapter_id())?;
        d.set_item("region_id", self.region_id())?;
        d.set_item("variable_id", self.variable_id)?;
        d.set_item("variable_name", self.variable_name())?;
        d.set_item("where", self.where_dict(py)?)?;
        d.set_item("how_big", self.how_big())?;
        d.set_item("changed_ranges", self.changed_ranges())?;
        d.set_item("old_preview", self.old_preview(py))?;
        d.set_item("new_preview", self.new_preview(py))?;
        d.set_item("old_value", self.old_value(py))?;
        d.set_item("new_value", self.new_value(py))?;
        d.set_item("storage_key_old", self.storage_key_old())?;
        d.set_item("storage_key_new", self.storage_key_new())?;
        d.set_item("metadata", self.metadata(py))?;
        d.set_item("coalesced", self.coalesced())?;
        Ok(d)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let ev = &self.ev;
        let name = PyTuple::new(py, [&ev.variable_name])?.get_item(0)?.repr()?.to_string();
        // Show each changed range as [start:end] old -> new, from the whole
        // values when present, else from the previews when they cover it.
        let old = ev.old_value.as_deref().or(self.snapshots.then_some(ev.old_preview.as_slice()));
        let new = ev.new_value.as_deref().unwrap_or(&ev.new_preview);
        let slice = |src: Option<&[u8]>, o: usize, l: usize| -> String {
            match src {
                Some(b) if o + l <= b.len() => bytes_literal(&b[o..o + l], 16),
                _ => "?".to_string(),
            }
        };
        let mut changes: Vec<String> = ev
            .changed_ranges
            .iter()
            .take(4)
            .map(|r| {
                let (o, l) = (r.offset, r.len);
                format!("[{}:{}] {} -> {}", o, o + l, slice(old, o, l), slice(Some(new), o, l))
            })
            .collect();
        if ev.changed_ranges.len() > 4 {
            changes.push(format!("... {} more", ev.changed_ranges.len() - 4));
        }
        let thread = match ev.where_.thread_id {
            Some(t) => t.to_string(),
            None => "None".to_string(),
        };
        Ok(format!(
            "ChangeEvent(seq={}, region_id={}, variable_name={}, how_big={}, changes=[{}], thread_id={})",
            ev.seq,
            ev.region_id,
            name,
            ev.how_big,
            changes.join(", "),
            thread
        ))
    }
}

/// A Python bytes literal of at most `max` bytes (longer input ends in `...`).
fn bytes_literal(bytes: &[u8], max: usize) -> String {
    let shown = &bytes[..bytes.len().min(max)];
    let mut s = String::from("b'");
    for &c in shown {
        match c {
            b'\\' => s.push_str("\\\\"),
            b'\'' => s.push_str("\\'"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s.push('\'');
    if bytes.len() > shown.len() {
        s.push_str("...");
    }
    s
}

fn make_event(py: Python<'_>, shared: &Shared, ev: mw::ChangeEvent) -> PyResult<ChangeEvent> {
    let (object_id, metadata) = {
        let regions = lock(&shared.regions);
        match regions.get(&ev.region_id) {
            Some(r) => (Some(r.object_id), r.metadata.as_ref().map(|m| m.clone_ref(py))),
            None => (None, None),
        }
    };
    // A region unwatched after its change was detected: fall back to the
    // text the core holds (str metadata is identical; other metadata is JSON).
    let metadata = match metadata {
        Some(m) => Some(m),
        None => ev
            .metadata
            .as_ref()
            .map(|s| s.into_pyobject(py).map(|o| o.into_any().unbind()))
            .transpose()?,
    };
    Ok(ChangeEvent { ev, variable_id: object_id, metadata, snapshots: shared.snapshots })
}

// ---------------------------------------------------------------------------
// Watcher
// ---------------------------------------------------------------------------

/// Native watcher handle. Use `memwatch.MemoryWatcher`, which wraps it and
/// adds name inference and metadata encoding.
#[pyclass(module = "memwatch._memwatch", name = "Watcher", frozen)]
struct Watcher {
    shared: Arc<Shared>,
}

#[pymethods]
impl Watcher {
    /// Creates a watcher. See `memwatch.MemoryWatcher` for the options.
    #[allow(clippy::too_many_arguments)] // mirrors the Python signature
    #[new]
    /// Every argument left out (None) keeps the engine's default.
    #[pyo3(signature = (backend="auto", writable_window_ms=None, poll_interval_ms=None,
                        max_value_bytes=None, preview_bytes=None, snapshots=None,
                        ring_capacity=None, locate_writers=None, stack_depth=None))]
    fn new(
        py: Python<'_>,
        backend: &str,
        writable_window_ms: Option<f64>,
        poll_interval_ms: Option<f64>,
        max_value_bytes: Option<usize>,
        preview_bytes: Option<usize>,
        snapshots: Option<bool>,
        ring_capacity: Option<usize>,
        locate_writers: Option<bool>,
        stack_depth: Option<usize>,
    ) -> PyResult<Self> {
        let err = |e| to_pyerr(py, e);
        let d = mw::Options::default();
        let ms =
            |name, v: Option<f64>, default| v.map_or(Ok(default), |v| mw::Options::millis(name, v));
        let options = mw::Options {
            backend: mw::Backend::from_name(backend).map_err(err)?,
            writable_window: ms("writable_window_ms", writable_window_ms, d.writable_window)
                .map_err(err)?,
            poll_interval: ms("poll_interval_ms", poll_interval_ms, d.poll_interval)
                .map_err(err)?,
            max_value_bytes: max_value_bytes.unwrap_or(d.max_value_bytes),
            preview_bytes: preview_bytes.unwrap_or(d.preview_bytes),
            ring_capacity: ring_capacity.unwrap_or(d.ring_capacity),
            snapshots: snapshots.unwrap_or(d.snapshots),
            adapter_id: mw::ADAPTER_PYTHON,
            locate_writers: locate_writers.unwrap_or(d.locate_writers),
            stack_depth: stack_depth.unwrap_or(d.stack_depth),
        };
        let depth_claim =
            options.locate_writers.then(|| pyframes::DepthClaim::new(options.stack_depth));
        let snapshots = options.snapshots;
        let core = detach(py, move || mw::Watcher::new(options)).map_err(|e| to_pyerr(py, e))?;
        let shared = Arc::new(Shared {
            core,
            regions: Mutex::new(HashMap::new()),
            callback: Mutex::new(None),
            set_callback_lock: Mutex::new(()),
            closing: AtomicBool::new(false),
            close_done: Mutex::new(false),
            close_cond: Condvar::new(),
            snapshots,
            depth_claim: Mutex::new(depth_claim),
        });
        let mut live = lock(&LIVE);
        live.retain(|w| w.strong_count() > 0);
        live.push(Arc::downgrade(&shared));
        Ok(Watcher { shared })
    }

    /// Watches `obj`'s buffer; returns the region id. `metadata_text` goes to
    /// the core; `metadata` (any object) is what events report.
    #[pyo3(signature = (obj, name, metadata_text=None, metadata=None))]
    fn watch(
        &self,
        py: Python<'_>,
        obj: &Bound<'_, PyAny>,
        name: &str,
        metadata_text: Option<&str>,
        metadata: Option<Py<PyAny>>,
    ) -> PyResult<u32> {
        let pin = Pin::acquire(obj)?;
        if pin.len() == 0 {
            let msg = format!(
                "memwatch cannot watch an empty {} (0 bytes): there is no memory to watch",
                type_name(obj)
            );
            return Err(match errors(py).invalid_argument.bind(py).call1((msg,)) {
                Ok(v) => PyErr::from_value(v),
                Err(e) => e,
            });
        }
        let (addr, len) = (pin.addr() as usize, pin.len());
        let shared = self.shared.clone();
        let name_owned = name.to_owned();
        let meta_owned = metadata_text.map(str::to_owned);
        let id = py
            .detach(move || {
                // SAFETY: [addr, addr+len) is the memory of a buffer export we
                // hold (`pin`). The export keeps the object alive and forbids it
                // from resizing or freeing that memory, and the pin is released
                // only after the core has unwatched the region (unwatch/close).
                unsafe {
                    shared.core.watch(addr as *const u8, len, &name_owned, meta_owned.as_deref())
                }
            })
            .map_err(|e| to_pyerr(py, e))?;
        let region = Region { _pin: pin, object_id: obj.as_ptr() as usize, metadata };
        lock(&self.shared.regions).insert(id, region);
        if self.shared.closing.load(Ordering::SeqCst) {
            // A close() started around the core's watch, so its release of
            // the buffers may have missed this one. Once it is done the core
            // no longer reads the region and the pin can go. (On a delivery
            // thread we cannot wait for it; the pin then goes with the watcher.)
            if !IN_DELIVERY.with(|d| d.get()) {
                self.shared.wait_closed(py);
                let stale = lock(&self.shared.regions).remove(&id);
                drop(stale);
            }
            return Err(to_pyerr(py, mw::Error::Closed));
        }
        Ok(id)
    }

    /// Stops watching a region; True if it was watched by this watcher.
    fn unwatch(&self, py: Python<'_>, region_id: u32) -> PyResult<bool> {
        let shared = self.shared.clone();
        let was =
            detach(py, move || shared.core.unwatch(region_id)).map_err(|e| to_pyerr(py, e))?;
        let region = lock(&self.shared.regions).remove(&region_id);
        drop(region);
        Ok(was)
    }

    /// Ids of the regions this watcher watches, ascending.
    fn region_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = lock(&self.shared.regions).keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Sets (or with None clears) the callable that receives every event on
    /// the delivery thread.
    fn set_callback(&self, py: Python<'_>, callback: Option<Py<PyAny>>) -> PyResult<()> {
        if let Some(cb) = &callback {
            if !cb.bind(py).is_callable() {
                return Err(PyTypeError::new_err(format!(
                    "callback must be callable or None, got {}",
                    type_name(cb.bind(py))
                )));
            }
        }
        let cell = callback.map(|cb| Arc::new(CallbackCell { callable: Mutex::new(Some(cb)) }));
        let closure: Option<mw::Callback> = cell.as_ref().map(|cell| {
            let weak = Arc::downgrade(&self.shared);
            let cell = Arc::clone(cell);
            let closure: mw::Callback =
                Arc::new(move |ev: &mw::ChangeEvent| deliver(&weak, &cell, ev));
            closure
        });
        let shared = self.shared.clone();
        let result = detach(py, move || {
            let _serial = lock(&shared.set_callback_lock);
            // Publish first: the core's set_callback(None) lets a waiting
            // check_changes() return at once, and its caller must then see
            // the new callback. Events the core already handed to the old
            // closure still reach the old callable through that closure's cell.
            let old = std::mem::replace(&mut *lock(&shared.callback), cell);
            match shared.core.set_callback(closure) {
                Ok(()) => Ok(old),
                Err(e) => {
                    let new = std::mem::replace(&mut *lock(&shared.callback), old);
                    Err((e, new))
                }
            }
        });
        // The replaced cell (if any) is dropped here, with the GIL held.
        match result {
            Ok(old) => {
                drop(old);
                Ok(())
            }
            Err((e, new)) => {
                drop(new);
                Err(to_pyerr(py, e))
            }
        }
    }

    /// The current callback, or None.
    fn get_callback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        let cell = lock(&self.shared.callback).clone();
        cell.and_then(|c| lock(&c.callable).as_ref().map(|cb| cb.clone_ref(py)))
    }

    /// Returns every change not yet delivered (see MemoryWatcher.check_changes).
    fn check_changes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let shared = self.shared.clone();
        let start = detach(py, move || shared.core.check_changes_start());
        let events = match start {
            Ok(Ok(events)) => Ok(events),
            Ok(Err(pending)) => loop {
                // Waits in slices, so that Ctrl-C (KeyboardInterrupt) ends it.
                let shared = self.shared.clone();
                let pending = &pending;
                let got = detach(py, move || {
                    shared.core.check_changes_wait(pending, Duration::from_millis(50))
                });
                if let Some(events) = got {
                    break Ok(events);
                }
                py.check_signals()?;
            },
            Err(e) => Err(e),
        };
        // The callback may have closed the watcher while we waited for it.
        self.shared.wait_closed(py);
        let events = events.map_err(|e| to_pyerr(py, e))?;
        let out = PyList::empty(py);
        for ev in events {
            out.append(make_event(py, &self.shared, ev)?)?;
        }
        Ok(out)
    }

    /// Attaches (or with None detaches) the MemStream store that receives
    /// values of regions larger than max_value_bytes.
    fn set_value_store(
        &self,
        py: Python<'_>,
        store: Option<&Bound<'_, store::PyStore>>,
    ) -> PyResult<()> {
        let arc = match store {
            Some(s) => Some(s.get().shared(py)?),
            None => None,
        };
        let shared = self.shared.clone();
        // Putting the current values of large regions copies them: GIL released.
        detach(py, move || shared.core.set_value_store(arc)).map_err(|e| to_pyerr(py, e))
    }

    /// Records every event into SQLite or PostgreSQL (see MemoryWatcher.record_to).
    fn record_to(&self, py: Python<'_>, url: &str) -> PyResult<Recorder> {
        let shared = self.shared.clone();
        let url = url.to_string();
        // Connecting may take a while: GIL released.
        let rec = py.detach(move || memwatch_record::record_to(&shared.core, &url));
        match rec {
            Ok(inner) => Ok(Recorder { inner }),
            Err(e) => {
                let err = errors(py);
                let ty = match &e {
                    memwatch_record::RecordError::InvalidUrl(_) => &err.invalid_argument,
                    memwatch_record::RecordError::Database(_) => &err.database,
                    memwatch_record::RecordError::Closed => &err.closed,
                };
                Err(match ty.bind(py).call1((e.to_string(),)) {
                    Ok(v) => PyErr::from_value(v),
                    Err(e) => e,
                })
            }
        }
    }

    /// Statistics as a dict (see MemoryWatcher.get_stats).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.shared.core.stats();
        let d = PyDict::new(py);
        for (name, value) in s.fields() {
            match value {
                mw::StatValue::Count(n) => d.set_item(name, n)?,
                mw::StatValue::Text(t) => d.set_item(name, t)?,
            }
        }
        // Whether located writes carry Python frames in this interpreter.
        d.set_item("python_frames", pyframes::status())?;
        Ok(d)
    }

    /// Closes the watcher: unwatches everything and releases every buffer.
    /// Idempotent; safe from inside the callback.
    fn close(&self, py: Python<'_>) {
        self.shared.close(py);
    }

    /// True once close() was called (and, outside the callback, has
    /// released every buffer).
    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        self.shared.wait_closed(py);
        self.shared.closing.load(Ordering::SeqCst)
    }

    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        // Traversal must not block: skip what is locked right now.
        if let Ok(cell) = self.shared.callback.try_lock() {
            if let Some(cell) = cell.as_ref() {
                if let Ok(cb) = cell.callable.try_lock() {
                    if let Some(cb) = cb.as_ref() {
                        visit.call(cb)?;
                    }
                }
            }
        }
        if let Ok(regions) = self.shared.regions.try_lock() {
            for r in regions.values() {
                if let Some(m) = &r.metadata {
                    visit.call(m)?;
                }
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        // Break reference cycles through the callback (e.g. a bound method of
        // an object that owns this watcher). Only the GC calls this, for a
        // watcher that is unreachable and about to be closed.
        let cell = lock(&self.shared.callback).clone();
        if let Some(cell) = cell {
            let cb = lock(&cell.callable).take();
            drop(cb);
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // Close with the GIL released, so a delivery thread waiting for the
        // GIL can finish and the core's close never waits on us.
        let shared = self.shared.clone();
        let _ = Python::try_attach(|py| shared.close(py));
    }
}

/// A running recorder (see MemoryWatcher.record_to).
#[pyclass(module = "memwatch._memwatch", name = "Recorder", frozen)]
struct Recorder {
    inner: memwatch_record::Recorder,
}

#[pymethods]
impl Recorder {
    /// Counters as a dict: written, dropped, abandoned, queued, batches,
    /// reconnects, connected, last_error, recording_id.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.stats();
        let d = PyDict::new(py);
        d.set_item("written", s.written)?;
        d.set_item("dropped", s.dropped)?;
        d.set_item("abandoned", s.abandoned)?;
        d.set_item("queued", s.queued)?;
        d.set_item("batches", s.batches)?;
        d.set_item("reconnects", s.reconnects)?;
        d.set_item("connected", s.connected)?;
        d.set_item("last_error", s.last_error)?;
        d.set_item("recording_id", s.recording_id)?;
        Ok(d)
    }

    /// Waits up to `timeout` seconds until every event queued before the
    /// call is written; False on timeout.
    #[pyo3(signature = (timeout=10.0))]
    fn flush(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        if !(0.0..=86_400.0).contains(&timeout) {
            return Err(PyValueError::new_err(format!(
                "timeout must be between 0 and 86400 seconds, got {timeout}"
            )));
        }
        let t = Duration::from_secs_f64(timeout);
        Ok(py.detach(|| self.inner.flush(t)))
    }

    /// Stops recording after writing what is queued. Idempotent.
    fn close(&self, py: Python<'_>) {
        py.detach(|| self.inner.close());
    }

    /// The id of this recording in memwatch_recordings.
    #[getter]
    fn recording_id(&self) -> i64 {
        self.inner.recording_id()
    }
}

/// Runs on the core's delivery thread for every event while a callback is set.
fn deliver(weak: &Weak<Shared>, cell: &CallbackCell, ev: &mw::ChangeEvent) {
    let Some(shared) = weak.upgrade() else { return };
    let _ = Python::try_attach(|py| {
        let cb = lock(&cell.callable).as_ref().map(|c| c.clone_ref(py));
        let Some(cb) = cb else { return };
        IN_DELIVERY.with(|d| d.set(true));
        let result = make_event(py, &shared, ev.clone()).and_then(|event| cb.call1(py, (event,)));
        IN_DELIVERY.with(|d| d.set(false));
        if let Err(err) = result {
            // Exceptions go to sys.unraisablehook, like exceptions in __del__
            // or in weakref callbacks; the watcher keeps working.
            err.write_unraisable(py, Some(cb.bind(py)));
            shared.core.report_callback_error();
        }
        drop(cb);
    });
}

/// Closes every live watcher (called from atexit, before the interpreter
/// finalizes, so no delivery thread tries to take the GIL of a dying interpreter).
#[pyfunction]
fn _close_all(py: Python<'_>) {
    let live: Vec<Arc<Shared>> = lock(&LIVE).drain(..).filter_map(|w| w.upgrade()).collect();
    // Changes made before exit go to the callbacks first (at most the
    // engine's EXIT_FLUSH_TIMEOUT for all watchers together).
    let deadline = std::time::Instant::now() + mw::EXIT_FLUSH_TIMEOUT;
    for shared in &live {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let s = Arc::clone(shared);
        detach(py, move || s.core.flush(left));
    }
    EXITING.store(true, Ordering::SeqCst);
    for shared in live {
        shared.close(py);
    }
}

/// The operating system's page size in bytes.
#[pyfunction]
fn page_size() -> usize {
    mw::page_size()
}

/// One stack frame as a dict: `python` (True for a Python frame), `ip`,
/// `module` and `module_offset` (None for a Python frame), `function`,
/// `file`, `line` (None when unknown) and `inlined`. Python frames are the
/// runtime frames memwatch's resolver made: ip 0, no module.
fn frame_dict<'py>(py: Python<'py>, f: &mw::Frame) -> PyResult<Bound<'py, PyDict>> {
    let python = f.ip == 0 && f.module.is_empty();
    let fd = PyDict::new(py);
    fd.set_item("python", python)?;
    fd.set_item("ip", (!python).then_some(f.ip))?;
    fd.set_item("module", (!python).then_some(f.module.as_str()))?;
    fd.set_item("module_offset", (!python).then_some(f.module_offset))?;
    fd.set_item("function", (!f.function.is_empty()).then_some(f.function.as_str()))?;
    fd.set_item("file", (!f.file.is_empty()).then_some(f.file.as_str()))?;
    fd.set_item("line", (f.line != 0).then_some(f.line))?;
    fd.set_item("inlined", f.inlined)?;
    Ok(fd)
}

/// Puts memwatch's SIGSEGV handler back on top after another was installed
/// over it (faulthandler.enable() after a protect watcher started): True if
/// anything changed.
#[pyfunction]
fn reassert_signal_handler(py: Python<'_>) -> PyResult<bool> {
    mw::reassert_signal_handler().map_err(|e| to_pyerr(py, e))
}

/// The native module `memwatch._memwatch`.
#[pymodule]
fn _memwatch(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Watcher>()?;
    m.add_class::<Recorder>()?;
    m.add_class::<ChangeEvent>()?;
    m.add_function(wrap_pyfunction!(page_size, m)?)?;
    m.add_function(wrap_pyfunction!(reassert_signal_handler, m)?)?;
    m.add_function(wrap_pyfunction!(_close_all, m)?)?;
    m.add_function(wrap_pyfunction!(pyframes::_break_python_frames, m)?)?;
    // Python frames in located writes: layout picked and checked now.
    pyframes::init(m.py());
    m.add("PYTHON_FRAMES", pyframes::status())?;
    m.add("ADAPTER_PYTHON", mw::ADAPTER_PYTHON)?;
    // The engine's default options, in the Python keyword arguments' units.
    let d = mw::Options::default();
    let defaults = PyDict::new(m.py());
    defaults.set_item("backend", d.backend.name())?;
    defaults.set_item("writable_window_ms", d.writable_window.as_secs_f64() * 1000.0)?;
    defaults.set_item("poll_interval_ms", d.poll_interval.as_secs_f64() * 1000.0)?;
    defaults.set_item("max_value_bytes", d.max_value_bytes)?;
    defaults.set_item("preview_bytes", d.preview_bytes)?;
    defaults.set_item("snapshots", d.snapshots)?;
    defaults.set_item("ring_capacity", d.ring_capacity)?;
    m.add("DEFAULT_OPTIONS", defaults)?;
    let backends: Vec<&str> = mw::Backend::ALL.iter().map(|b| b.name()).collect();
    m.add("BACKENDS", backends)?;
    m.add("EXIT_FLUSH_TIMEOUT_MS", mw::EXIT_FLUSH_TIMEOUT.as_secs_f64() * 1000.0)?;
    // memwatch._memwatch.store: re-exported by the Python module memwatch.store.
    let sub = PyModule::new(m.py(), "store")?;
    store::init(&sub)?;
    m.add_submodule(&sub)?;
    // memwatch._memwatch.glass: re-exported by the Python module memwatch.glass.
    let glass = PyModule::new(m.py(), "glass")?;
    glass::init(&glass)?;
    m.add_submodule(&glass)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
