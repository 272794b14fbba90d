//! `memglass_*`: the C ABI of memglass (include/memglass.h). Producers in C
//! and C++ describe their structs with a field table; observers read fields
//! by dotted path. Errors: negative `MEMGLASS_ERR_*` codes, message in
//! `memwatch_last_error()`.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use memglass as mg;

use crate::last_error::{fail_internal, fail_with};

/// Bad argument (NULL, invalid name, bad layout).
pub const MEMGLASS_ERR_INVALID_ARGUMENT: c_int = -1;
/// An OS call failed.
pub const MEMGLASS_ERR_OS: c_int = -7;
/// No such session, object or field.
pub const MEMGLASS_ERR_NOT_FOUND: c_int = -20;
/// Session in use by a live producer, or label taken.
pub const MEMGLASS_ERR_EXISTS: c_int = -21;
/// Truncated, corrupt, foreign or wrongly owned segment.
pub const MEMGLASS_ERR_BAD_SEGMENT: c_int = -22;
/// A capacity is exhausted.
pub const MEMGLASS_ERR_FULL: c_int = -23;
/// The object was destroyed.
pub const MEMGLASS_ERR_GONE: c_int = -24;
/// A seqlock read kept overlapping writes.
pub const MEMGLASS_ERR_TORN: c_int = -25;
/// The value does not fit the requested type or buffer.
pub const MEMGLASS_ERR_TYPE: c_int = -26;

fn code(e: &mg::Error) -> c_int {
    match e {
        mg::Error::InvalidArgument(_) => MEMGLASS_ERR_INVALID_ARGUMENT,
        mg::Error::NotFound(_) => MEMGLASS_ERR_NOT_FOUND,
        mg::Error::AlreadyExists(_) => MEMGLASS_ERR_EXISTS,
        mg::Error::BadSegment(_) => MEMGLASS_ERR_BAD_SEGMENT,
        mg::Error::Full(_) => MEMGLASS_ERR_FULL,
        mg::Error::Gone(_) => MEMGLASS_ERR_GONE,
        mg::Error::Torn(_) => MEMGLASS_ERR_TORN,
        mg::Error::Os(_) => MEMGLASS_ERR_OS,
    }
}

fn run(f: impl FnOnce() -> mg::Result<c_int>) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => fail_with(code(&e), &e.to_string()),
        Err(p) => fail_internal(p),
    }
}

fn inval(m: &str) -> mg::Error {
    mg::Error::InvalidArgument(m.to_string())
}

/// # Safety
/// `p` is NULL or a NUL-terminated string valid for the call.
unsafe fn s<'a>(p: *const c_char, what: &str) -> mg::Result<&'a str> {
    if p.is_null() {
        return Err(inval(&format!("{what} is NULL")));
    }
    // SAFETY: caller's contract.
    unsafe { CStr::from_ptr(p) }.to_str().map_err(|_| inval(&format!("{what} is not UTF-8")))
}

/// # Safety
/// As [`s`]; NULL gives None.
unsafe fn opt_s<'a>(p: *const c_char, what: &str) -> mg::Result<Option<&'a str>> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: caller's contract.
        unsafe { s(p, what) }.map(Some)
    }
}

/// One field of a C struct (see memglass.h).
#[repr(C)]
pub struct memglass_field_t {
    /// Dotted path.
    pub path: *const c_char,
    /// offsetof the value.
    pub offset: u32,
    /// 0 for a scalar, else the element count.
    pub array_len: u32,
    /// MEMGLASS_BOOL .. MEMGLASS_CHAR (the memglass Primitive codes).
    pub prim: u8,
    /// MEMGLASS_PLAIN, _ATOMIC, _SEQLOCK, _LOCKED.
    pub atomicity: u8,
    /// MEMGLASS_GAUGE, _COUNTER, _DISCRETE.
    pub semantics: u8,
    /// Padding, 0.
    pub reserved: u8,
    /// Offset of the guarding 8-byte sequence word (seqlock/locked).
    pub guard_offset: u32,
    /// Unit or NULL.
    pub unit: *const c_char,
    /// Help text or NULL.
    pub help: *const c_char,
}

/// Identity of a created object.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct memglass_object_id_t {
    /// Directory slot.
    pub slot: u32,
    /// Slot generation.
    pub generation: u64,
}

/// Opaque producer.
pub struct memglass_producer_t {
    p: mg::Producer,
}

/// Opaque observer.
pub struct memglass_observer_t {
    o: mg::Observer,
}

/// Creates session `session` in `dir` (NULL: the default directory).
///
/// # Safety
/// Strings NUL-terminated or NULL; `out` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn memglass_producer_init(
    session: *const c_char,
    dir: *const c_char,
    out: *mut *mut memglass_producer_t,
) -> c_int {
    run(|| {
        if out.is_null() {
            return Err(inval("out is NULL"));
        }
        // SAFETY: header contract.
        let (name, dir) = unsafe { (s(session, "session")?, opt_s(dir, "dir")?) };
        let opts = mg::ProducerOptions { dir: dir.map(PathBuf::from), ..Default::default() };
        let p = mg::Producer::init(name, opts)?;
        // SAFETY: out checked non-NULL.
        unsafe { *out = Box::into_raw(Box::new(memglass_producer_t { p })) };
        Ok(0)
    })
}

/// Registers a struct layout; the type index goes to `*type_index`.
///
/// # Safety
/// `p` from memglass_producer_init; `fields` points to `n` entries.
#[no_mangle]
pub unsafe extern "C" fn memglass_register_type(
    p: *mut memglass_producer_t,
    name: *const c_char,
    size: u32,
    align: u32,
    fields: *const memglass_field_t,
    n: usize,
    type_index: *mut u32,
) -> c_int {
    run(|| {
        // SAFETY: header contract.
        let p = unsafe { p.as_ref() }.ok_or_else(|| inval("producer is NULL"))?;
        if type_index.is_null() || (fields.is_null() && n > 0) {
            return Err(inval("fields or type_index is NULL"));
        }
        let table = if n == 0 {
            &[][..]
        } else {
            // SAFETY: n entries (header contract).
            unsafe { std::slice::from_raw_parts(fields, n) }
        };
        let mut fs = Vec::with_capacity(n);
        for f in table {
            // SAFETY: strings of the table (header contract).
            let (path, unit, help) =
                unsafe { (s(f.path, "path")?, opt_s(f.unit, "unit")?, opt_s(f.help, "help")?) };
            fs.push(mg::FieldDesc {
                path: path.to_string(),
                offset: f.offset,
                prim: mg::Primitive::from_code(f.prim)
                    .ok_or_else(|| inval(&format!("{path}: primitive code {}", f.prim)))?,
                array_len: f.array_len,
                atomicity: mg::Atomicity::from_code(f.atomicity)
                    .ok_or_else(|| inval(&format!("{path}: atomicity code {}", f.atomicity)))?,
                guard_offset: f.guard_offset,
                meta: mg::FieldMeta {
                    unit: unit.unwrap_or("").to_string(),
                    help: help.unwrap_or("").to_string(),
                    semantics: mg::Semantics::from_code(f.semantics)
                        .ok_or_else(|| inval(&format!("{path}: semantics code {}", f.semantics)))?,
                },
            });
        }
        // SAFETY: header contract.
        let name = unsafe { s(name, "name")? };
        let i =
            p.p.register_type(&mg::TypeDesc { name: name.to_string(), size, align, fields: fs })?;
        // SAFETY: checked non-NULL.
        unsafe { *type_index = i };
        Ok(0)
    })
}

/// Creates `count` zeroed elements of a registered type; `*data` gets their
/// address (valid until destroyed or the producer is freed), `*id` the id.
///
/// # Safety
/// `p` from memglass_producer_init; out-pointers valid.
#[no_mangle]
pub unsafe extern "C" fn memglass_create(
    p: *mut memglass_producer_t,
    type_index: u32,
    label: *const c_char,
    count: u32,
    data: *mut *mut c_void,
    id: *mut memglass_object_id_t,
) -> c_int {
    run(|| {
        // SAFETY: header contract.
        let p = unsafe { p.as_ref() }.ok_or_else(|| inval("producer is NULL"))?;
        if data.is_null() || id.is_null() {
            return Err(inval("data or id is NULL"));
        }
        // SAFETY: header contract.
        let r = p.p.create_raw(type_index, unsafe { s(label, "label")? }, count)?;
        // SAFETY: checked non-NULL.
        unsafe {
            *data = r.ptr as *mut c_void;
            *id = memglass_object_id_t { slot: r.id.slot, generation: r.id.generation };
        }
        Ok(0)
    })
}

/// Destroys an object; its memory must not be written afterwards.
///
/// # Safety
/// `p` from memglass_producer_init.
#[no_mangle]
pub unsafe extern "C" fn memglass_destroy(
    p: *mut memglass_producer_t,
    id: memglass_object_id_t,
) -> c_int {
    run(|| {
        // SAFETY: header contract.
        let p = unsafe { p.as_ref() }.ok_or_else(|| inval("producer is NULL"))?;
        p.p.destroy_raw(mg::ObjectId { slot: id.slot, generation: id.generation })?;
        Ok(0)
    })
}

/// Publishes `len` bytes from `src` into the seqlock-guarded bytes at
/// `data`, guarded by the 8-byte word at `guard` (one writer per guard).
///
/// # Safety
/// `guard` 8-aligned, both inside a live object of this process's producer.
#[no_mangle]
pub unsafe extern "C" fn memglass_seqlock_write(
    guard: *mut u64,
    data: *mut c_void,
    src: *const c_void,
    len: usize,
) -> c_int {
    run(|| {
        if guard.is_null() || data.is_null() || src.is_null() || !(guard as usize).is_multiple_of(8)
        {
            return Err(inval("guard, data or src is NULL, or guard not 8-aligned"));
        }
        // SAFETY: header contract.
        unsafe {
            let src = std::slice::from_raw_parts(src as *const u8, len);
            mg::write_guarded(guard as *const std::sync::atomic::AtomicU64, data as *mut u8, src);
        }
        Ok(0)
    })
}

/// Shuts the session down (observers see it dead, segments removed) and
/// frees the producer; object memory is unmapped. NULL is a no-op.
///
/// # Safety
/// `p` from memglass_producer_init, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn memglass_producer_free(p: *mut memglass_producer_t) -> c_int {
    run(|| {
        if p.is_null() {
            return Ok(0);
        }
        // SAFETY: header contract: ownership comes back.
        let b = unsafe { Box::from_raw(p) };
        b.p.shutdown()?;
        Ok(0)
    })
}

/// Connects read-only to session `session` in `dir` (NULL: default).
///
/// # Safety
/// Strings NUL-terminated or NULL; `out` valid.
#[no_mangle]
pub unsafe extern "C" fn memglass_observer_connect(
    session: *const c_char,
    dir: *const c_char,
    out: *mut *mut memglass_observer_t,
) -> c_int {
    run(|| {
        if out.is_null() {
            return Err(inval("out is NULL"));
        }
        // SAFETY: header contract.
        let (name, dir) = unsafe { (s(session, "session")?, opt_s(dir, "dir")?) };
        let opts = mg::ObserverOptions { dir: dir.map(PathBuf::from), ..Default::default() };
        let o = mg::Observer::connect_with(name, &opts)?;
        // SAFETY: checked non-NULL.
        unsafe { *out = Box::into_raw(Box::new(memglass_observer_t { o })) };
        Ok(0)
    })
}

/// Reloads the structure if it changed: 1 if it did, 0 if not, or an error.
///
/// # Safety
/// `o` from memglass_observer_connect.
#[no_mangle]
pub unsafe extern "C" fn memglass_observer_refresh(o: *mut memglass_observer_t) -> c_int {
    run(|| {
        // SAFETY: header contract.
        let o = unsafe { o.as_mut() }.ok_or_else(|| inval("observer is NULL"))?;
        Ok(o.o.refresh()? as c_int)
    })
}

/// Number of live objects (as of the last refresh), or an error.
///
/// # Safety
/// `o` from memglass_observer_connect.
#[no_mangle]
pub unsafe extern "C" fn memglass_object_count(o: *const memglass_observer_t) -> c_int {
    run(|| {
        // SAFETY: header contract.
        let o = unsafe { o.as_ref() }.ok_or_else(|| inval("observer is NULL"))?;
        Ok(o.o.objects().len() as c_int)
    })
}

/// 0 alive, 1 stale, 2 dead, or an error.
///
/// # Safety
/// `o` from memglass_observer_connect.
#[no_mangle]
pub unsafe extern "C" fn memglass_liveness(o: *const memglass_observer_t) -> c_int {
    run(|| {
        // SAFETY: header contract.
        let o = unsafe { o.as_ref() }.ok_or_else(|| inval("observer is NULL"))?;
        Ok(match o.o.liveness() {
            mg::Liveness::Alive => 0,
            mg::Liveness::Stale => 1,
            mg::Liveness::Dead => 2,
        })
    })
}

/// # Safety
/// Pointers per the header.
unsafe fn read(
    o: *const memglass_observer_t,
    label: *const c_char,
    path: *const c_char,
) -> mg::Result<mg::Value> {
    // SAFETY: header contract.
    let o = unsafe { o.as_ref() }.ok_or_else(|| inval("observer is NULL"))?;
    // SAFETY: header contract.
    let (label, path) = unsafe { (s(label, "label")?, s(path, "path")?) };
    let obj = o.o.find(label).ok_or_else(|| mg::Error::NotFound(format!("object {label:?}")))?;
    o.o.read(&obj, path)
}

/// Reads a numeric or bool field as a double.
///
/// # Safety
/// Pointers per the header; `out` valid.
#[no_mangle]
pub unsafe extern "C" fn memglass_read_f64(
    o: *const memglass_observer_t,
    label: *const c_char,
    path: *const c_char,
    out: *mut f64,
) -> c_int {
    run(|| {
        // SAFETY: header contract.
        let v = unsafe { read(o, label, path)? };
        let x =
            v.as_f64().ok_or_else(|| mg::Error::InvalidArgument(format!("{v} is not a number")));
        match x {
            Ok(x) if !out.is_null() => {
                // SAFETY: checked non-NULL.
                unsafe { *out = x };
                Ok(0)
            }
            Ok(_) => Err(inval("out is NULL")),
            Err(e) => Ok(fail_with(MEMGLASS_ERR_TYPE, &e.to_string())),
        }
    })
}

/// Reads an integer or bool field as an int64 (MEMGLASS_ERR_TYPE for
/// floats, strings, arrays, and u64 values above INT64_MAX).
///
/// # Safety
/// Pointers per the header; `out` valid.
#[no_mangle]
pub unsafe extern "C" fn memglass_read_i64(
    o: *const memglass_observer_t,
    label: *const c_char,
    path: *const c_char,
    out: *mut i64,
) -> c_int {
    run(|| {
        // SAFETY: header contract.
        let v = unsafe { read(o, label, path)? };
        let x = match v {
            mg::Value::Int(i) => i,
            mg::Value::UInt(u) if u <= i64::MAX as u64 => u as i64,
            mg::Value::Bool(b) => b as i64,
            v => return Ok(fail_with(MEMGLASS_ERR_TYPE, &format!("{v} is not an int64"))),
        };
        if out.is_null() {
            return Err(inval("out is NULL"));
        }
        // SAFETY: checked non-NULL.
        unsafe { *out = x };
        Ok(0)
    })
}

/// Copies a char-array field, NUL-terminated, into `buf` of `len` bytes;
/// returns the string's length (MEMGLASS_ERR_TYPE if it does not fit).
///
/// # Safety
/// Pointers per the header; `buf` valid for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn memglass_read_str(
    o: *const memglass_observer_t,
    label: *const c_char,
    path: *const c_char,
    buf: *mut c_char,
    len: usize,
) -> c_int {
    run(|| {
        // SAFETY: header contract.
        let v = unsafe { read(o, label, path)? };
        let mg::Value::Str(t) = v else {
            return Ok(fail_with(MEMGLASS_ERR_TYPE, &format!("{v} is not a string")));
        };
        if buf.is_null() || t.len() + 1 > len {
            return Ok(fail_with(
                MEMGLASS_ERR_TYPE,
                &format!("{} bytes do not fit {len}", t.len() + 1),
            ));
        }
        // SAFETY: buf holds len > t.len() bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(t.as_ptr(), buf as *mut u8, t.len());
            *buf.add(t.len()) = 0;
        }
        Ok(t.len() as c_int)
    })
}

/// Closes an observer (unmaps). NULL is a no-op.
///
/// # Safety
/// `o` from memglass_observer_connect, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn memglass_observer_close(o: *mut memglass_observer_t) {
    if !o.is_null() {
        // SAFETY: ownership comes back.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(o) })));
    }
}
