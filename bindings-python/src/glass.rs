//! `memwatch._memwatch.glass`: the native half of `memwatch.glass` (memglass:
//! typed objects in shared memory observed from another process).
//!
//! Thin translation only: layouts arrive as tuples (the Python module reads
//! them from ctypes.Structure classes or numpy dtypes), values leave as
//! Python bool/int/float/str/list, errors become built-in exceptions:
//! invalid argument -> ValueError, not found -> LookupError, already exists
//! -> FileExistsError, bad segment -> ValueError, full -> OverflowError,
//! object gone -> LookupError, torn read -> RuntimeError, OS -> OSError.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use memglass as mg;
use pyo3::exceptions::{
    PyFileExistsError, PyLookupError, PyOSError, PyOverflowError, PyRuntimeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

fn err(e: mg::Error) -> PyErr {
    let m = e.to_string();
    match e {
        mg::Error::InvalidArgument(_) | mg::Error::BadSegment(_) => PyValueError::new_err(m),
        mg::Error::NotFound(_) | mg::Error::Gone(_) => PyLookupError::new_err(m),
        mg::Error::AlreadyExists(_) => PyFileExistsError::new_err(m),
        mg::Error::Full(_) => PyOverflowError::new_err(m),
        mg::Error::Torn(_) => PyRuntimeError::new_err(m),
        mg::Error::Os(_) => PyOSError::new_err(m),
    }
}

fn value(py: Python<'_>, v: &mg::Value) -> PyResult<Py<PyAny>> {
    Ok(match v {
        mg::Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any().unbind(),
        mg::Value::Int(i) => i.into_pyobject(py)?.into_any().unbind(),
        mg::Value::UInt(u) => u.into_pyobject(py)?.into_any().unbind(),
        mg::Value::Float(f) => f.into_pyobject(py)?.into_any().unbind(),
        mg::Value::Str(s) => s.into_pyobject(py)?.into_any().unbind(),
        mg::Value::Array(a) => {
            let l = PyList::empty(py);
            for x in a {
                l.append(value(py, x)?)?;
            }
            l.into_any().unbind()
        }
    })
}

fn prim(name: &str) -> PyResult<mg::Primitive> {
    use mg::Primitive::*;
    Ok(match name {
        "bool" => Bool,
        "i8" => I8,
        "u8" => U8,
        "i16" => I16,
        "u16" => U16,
        "i32" => I32,
        "u32" => U32,
        "i64" => I64,
        "u64" => U64,
        "f32" => F32,
        "f64" => F64,
        "char" => Char,
        _ => return Err(PyValueError::new_err(format!("unknown primitive type {name:?}"))),
    })
}

fn atomicity(name: &str) -> PyResult<mg::Atomicity> {
    Ok(match name {
        "none" => mg::Atomicity::None,
        "atomic" => mg::Atomicity::Atomic,
        "seqlock" => mg::Atomicity::Seqlock,
        "locked" => mg::Atomicity::Locked,
        _ => return Err(PyValueError::new_err(format!("unknown atomicity {name:?}"))),
    })
}

fn semantics(name: &str) -> PyResult<mg::Semantics> {
    Ok(match name {
        "gauge" => mg::Semantics::Gauge,
        "counter" => mg::Semantics::Counter,
        "discrete" => mg::Semantics::Discrete,
        _ => return Err(PyValueError::new_err(format!("unknown semantics {name:?}"))),
    })
}

/// One field of a layout: (path, offset, primitive, array_len, atomicity,
/// guard_offset, unit, help, semantics).
type FieldTuple = (String, u32, String, u32, String, u32, String, String, String);

/// A memglass producer (see `memwatch.glass.Producer`).
#[pyclass(module = "memwatch.glass", name = "_Producer", frozen)]
struct Producer {
    inner: Mutex<Option<mg::Producer>>,
}

impl Producer {
    fn with<T>(&self, f: impl FnOnce(&mut mg::Producer) -> mg::Result<T>) -> PyResult<T> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let p = g.as_mut().ok_or_else(|| PyValueError::new_err("the producer was shut down"))?;
        f(p).map_err(err)
    }
}

#[pymethods]
impl Producer {
    // The keyword arguments of the Python constructor, one each.
    #[allow(clippy::too_many_arguments)]
    #[new]
    #[pyo3(signature = (session, dir=None, group_readable=false, grace_period=1.0, first_region_bytes=1<<20, max_region_bytes=64<<20, heartbeat_interval=0.1))]
    fn new(
        py: Python<'_>,
        session: &str,
        dir: Option<PathBuf>,
        group_readable: bool,
        grace_period: f64,
        first_region_bytes: usize,
        max_region_bytes: usize,
        heartbeat_interval: f64,
    ) -> PyResult<Self> {
        if !(grace_period >= 0.0 && heartbeat_interval > 0.0) {
            return Err(PyValueError::new_err("grace_period >= 0 and heartbeat_interval > 0"));
        }
        let opts = mg::ProducerOptions {
            dir,
            group_readable,
            first_region_bytes,
            max_region_bytes,
            grace_period: Duration::from_secs_f64(grace_period),
            heartbeat_interval: Duration::from_secs_f64(heartbeat_interval),
            ..mg::ProducerOptions::default()
        };
        let p = py.detach(|| mg::Producer::init(session, opts)).map_err(err)?;
        Ok(Producer { inner: Mutex::new(Some(p)) })
    }

    /// Registers a layout; returns its type index (idempotent).
    fn register_type(
        &self,
        name: String,
        size: u32,
        align: u32,
        fields: Vec<FieldTuple>,
    ) -> PyResult<u32> {
        let mut fs = Vec::with_capacity(fields.len());
        for (path, offset, p, array_len, a, guard, unit, help, sem) in fields {
            fs.push(mg::FieldDesc {
                path,
                offset,
                prim: prim(&p)?,
                array_len,
                atomicity: atomicity(&a)?,
                guard_offset: guard,
                meta: mg::FieldMeta { unit, help, semantics: semantics(&sem)? },
            });
        }
        let d = mg::TypeDesc { name, size, align, fields: fs };
        self.with(|p| p.register_type(&d))
    }

    /// Creates `count` zeroed elements; returns (address, size, slot, generation).
    #[pyo3(signature = (type_index, label, count=1))]
    fn create(
        &self,
        type_index: u32,
        label: &str,
        count: u32,
    ) -> PyResult<(usize, usize, u32, u64)> {
        let r = self.with(|p| p.create_raw(type_index, label, count))?;
        Ok((r.ptr as usize, r.len, r.id.slot, r.id.generation))
    }

    /// Destroys an object created by `create`.
    fn destroy(&self, slot: u32, generation: u64) -> PyResult<()> {
        self.with(|p| p.destroy_raw(mg::ObjectId { slot, generation }))
    }

    /// Marks the session dead and removes its segments; the memory of the
    /// objects stays mapped while this object lives.
    fn shutdown(&self) -> PyResult<()> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match g.as_mut() {
            Some(p) => p.shutdown_in_place().map_err(err),
            None => Ok(()),
        }
    }
}

/// A read-only memglass observer (see `memwatch.glass.Observer`).
#[pyclass(module = "memwatch.glass", name = "_Observer", frozen)]
struct Observer {
    inner: Mutex<mg::Observer>,
}

fn object_dict<'py>(py: Python<'py>, o: &mg::ObjectInfo) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("label", &o.label)?;
    d.set_item("type_name", &o.type_name)?;
    d.set_item("slot", o.id.slot)?;
    d.set_item("generation", o.id.generation)?;
    d.set_item("count", o.count)?;
    d.set_item("state", o.state.name())?;
    Ok(d)
}

fn session_dict<'py>(py: Python<'py>, s: &mg::SessionInfo) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("name", &s.name)?;
    d.set_item("pid", s.pid)?;
    d.set_item("liveness", s.liveness.name())?;
    d.set_item("reason", &s.reason)?;
    d.set_item("object_count", s.object_count)?;
    d.set_item("type_count", s.type_count)?;
    d.set_item("region_count", s.region_count)?;
    d.set_item("age", s.age.as_secs_f64())?;
    d.set_item("heartbeat_age", s.heartbeat_age.as_secs_f64())?;
    d.set_item("problem", s.problem.clone())?;
    Ok(d)
}

impl Observer {
    fn lock(&self) -> std::sync::MutexGuard<'_, mg::Observer> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl Observer {
    #[new]
    #[pyo3(signature = (session, dir=None, owner=None))]
    fn new(
        py: Python<'_>,
        session: &str,
        dir: Option<PathBuf>,
        owner: Option<u32>,
    ) -> PyResult<Self> {
        let opts = mg::ObserverOptions { dir, owner, ..mg::ObserverOptions::default() };
        let o = py.detach(|| mg::Observer::connect_with(session, &opts)).map_err(err)?;
        Ok(Observer { inner: Mutex::new(o) })
    }

    /// Reloads the structure if it changed; True if it did.
    fn refresh(&self) -> PyResult<bool> {
        self.lock().refresh().map_err(err)
    }

    /// Live objects (as of the last refresh) as dicts.
    fn objects<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let o = self.lock();
        let l = PyList::empty(py);
        for obj in o.objects() {
            l.append(object_dict(py, obj)?)?;
        }
        Ok(l)
    }

    /// Fields of the type of object `label`: a list of dicts.
    fn fields<'py>(&self, py: Python<'py>, label: &str) -> PyResult<Bound<'py, PyList>> {
        let o = self.lock();
        let obj =
            o.find(label).ok_or_else(|| PyLookupError::new_err(format!("no object {label:?}")))?;
        let t = o.type_of(&obj).map_err(err)?;
        let l = PyList::empty(py);
        for f in &t.fields {
            let d = PyDict::new(py);
            d.set_item("path", &f.path)?;
            d.set_item("type", f.prim.name())?;
            d.set_item("offset", f.offset)?;
            d.set_item("size", f.size)?;
            d.set_item("array_len", f.array_len)?;
            d.set_item("atomicity", f.atomicity.name())?;
            d.set_item("unit", &f.unit)?;
            d.set_item("help", &f.help)?;
            d.set_item("semantics", f.semantics.name())?;
            l.append(d)?;
        }
        Ok(l)
    }

    /// The value of `path` in object `label`.
    fn read(&self, py: Python<'_>, label: &str, path: &str) -> PyResult<Py<PyAny>> {
        let o = self.lock();
        let obj =
            o.find(label).ok_or_else(|| PyLookupError::new_err(format!("no object {label:?}")))?;
        value(py, &o.read(&obj, path).map_err(err)?)
    }

    /// Every field of object `label`: {path: value}.
    fn snapshot<'py>(&self, py: Python<'py>, label: &str) -> PyResult<Bound<'py, PyDict>> {
        let o = self.lock();
        let obj =
            o.find(label).ok_or_else(|| PyLookupError::new_err(format!("no object {label:?}")))?;
        let s = o.snapshot(&obj).map_err(err)?;
        let d = PyDict::new(py);
        for (p, v) in &s.values {
            d.set_item(p, value(py, v)?)?;
        }
        Ok(d)
    }

    /// Changes since the previous call, as dicts with keys timestamp_ns,
    /// label, type_name, slot, generation, kind ("created", "destroyed",
    /// "field") and, for "field", path, old, new.
    fn changes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let events = {
            let mut o = self.lock();
            o.changes().map_err(err)?
        };
        let l = PyList::empty(py);
        for e in events {
            let d = PyDict::new(py);
            d.set_item("timestamp_ns", e.timestamp_ns)?;
            d.set_item("label", &e.label)?;
            d.set_item("type_name", &e.type_name)?;
            d.set_item("slot", e.object.slot)?;
            d.set_item("generation", e.object.generation)?;
            match &e.kind {
                mg::ChangeKind::Created => d.set_item("kind", "created")?,
                mg::ChangeKind::Destroyed => d.set_item("kind", "destroyed")?,
                mg::ChangeKind::Field { path, old, new } => {
                    d.set_item("kind", "field")?;
                    d.set_item("path", path)?;
                    d.set_item("old", value(py, old)?)?;
                    d.set_item("new", value(py, new)?)?;
                }
            }
            l.append(d)?;
        }
        Ok(l)
    }

    /// "alive", "stale" or "dead".
    fn liveness(&self) -> &'static str {
        self.lock().liveness().name()
    }

    /// The session as a dict (name, pid, liveness, reason, object_count, ...).
    fn session_info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.lock().session_info();
        session_dict(py, &s)
    }
}

/// Sessions in `dir` (default directory when None) as dicts.
#[pyfunction]
#[pyo3(signature = (dir=None))]
fn list_sessions<'py>(py: Python<'py>, dir: Option<PathBuf>) -> PyResult<Bound<'py, PyList>> {
    let s = mg::list_sessions(dir.as_deref()).map_err(err)?;
    let l = PyList::empty(py);
    for x in &s {
        l.append(session_dict(py, x)?)?;
    }
    Ok(l)
}

/// Removes every dead session's segments; returns their names.
#[pyfunction]
#[pyo3(signature = (dir=None))]
fn remove_stale(dir: Option<PathBuf>) -> PyResult<Vec<String>> {
    mg::remove_stale(dir.as_deref()).map_err(err)
}

/// Removes a session whose producer is dead.
#[pyfunction]
#[pyo3(signature = (name, dir=None))]
fn remove_session(name: &str, dir: Option<PathBuf>) -> PyResult<()> {
    mg::remove_session(name, dir.as_deref()).map_err(err)
}

/// Fills the submodule `memwatch._memwatch.glass`.
pub fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Producer>()?;
    m.add_class::<Observer>()?;
    m.add_function(wrap_pyfunction!(list_sessions, m)?)?;
    m.add_function(wrap_pyfunction!(remove_stale, m)?)?;
    m.add_function(wrap_pyfunction!(remove_session, m)?)?;
    Ok(())
}
