//! `memwatch_record_to` and the recorder handle (crates/memwatch-record).

use std::ffi::{c_char, c_int, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use memwatch_record::{RecordError, Recorder};

use crate::last_error::{fail_internal, fail_with};
use crate::{memwatch_watcher_t, MEMWATCH_ERR_DATABASE, MEMWATCH_OK};

/// The opaque `memwatch_recorder_t`: one running recorder.
pub struct memwatch_recorder_t {
    inner: Recorder,
}

/// `memwatch_recorder_stats_t`: see RecorderStats in crates/memwatch-record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct memwatch_recorder_stats_t {
    /// Events committed to the database.
    pub written: u64,
    /// Events the full queue could not take (in memwatch_losses).
    pub dropped: u64,
    /// Events queued but unwritten when the recorder closed with the database down.
    pub abandoned: u64,
    /// Events waiting to be written.
    pub queued: u64,
    /// Transactions committed.
    pub batches: u64,
    /// Reconnections after a lost connection.
    pub reconnects: u64,
    /// 1 while connected.
    pub connected: i32,
    /// The recording's id in memwatch_recordings.
    pub recording_id: i64,
}

fn record_fail(e: &RecordError) -> c_int {
    let code = match e {
        RecordError::InvalidUrl(_) => memwatch_core::Error::InvalidArgument(String::new()).code(),
        RecordError::Closed => memwatch_core::Error::Closed.code(),
        RecordError::Database(_) => MEMWATCH_ERR_DATABASE,
    };
    fail_with(code, &e.to_string())
}

fn run(f: impl FnOnce() -> Result<c_int, RecordError>) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => record_fail(&e),
        Err(p) => fail_internal(p),
    }
}

/// Starts recording every event of `w` (NULL: the default watcher) into `url`.
///
/// # Safety
/// `w` is NULL or a live handle; `url` is NULL or NUL-terminated; `out` is
/// valid for writes.
#[no_mangle]
pub unsafe extern "C" fn memwatch_record_to(
    w: *mut memwatch_watcher_t,
    url: *const c_char,
    out: *mut *mut memwatch_recorder_t,
) -> c_int {
    run(|| {
        if out.is_null() {
            return Err(RecordError::InvalidUrl("out must not be NULL".into()));
        }
        // SAFETY: non-null and valid for writes per the caller's contract.
        unsafe { *out = std::ptr::null_mut() };
        if url.is_null() {
            return Err(RecordError::InvalidUrl("url must not be NULL".into()));
        }
        // SAFETY: non-null and NUL-terminated per the caller's contract.
        let url = unsafe { CStr::from_ptr(url) }
            .to_str()
            .map_err(|_| RecordError::InvalidUrl("url is not UTF-8".into()))?;
        let watcher = if w.is_null() {
            crate::global::default_watcher().map_err(|_| RecordError::Closed)?
        } else {
            // SAFETY: non-null and live per the caller's contract.
            std::sync::Arc::clone(unsafe { &(*w).inner })
        };
        let rec = memwatch_record::record_to(&watcher, url)?;
        let h = Box::new(memwatch_recorder_t { inner: rec });
        // SAFETY: as above.
        unsafe { *out = Box::into_raw(h) };
        Ok(MEMWATCH_OK)
    })
}

/// Waits up to `timeout_ms` until everything queued before the call is
/// written: 1 if it is, 0 on timeout, < 0 on error.
///
/// # Safety
/// `r` is NULL or a live recorder.
#[no_mangle]
pub unsafe extern "C" fn memwatch_recorder_flush(
    r: *mut memwatch_recorder_t,
    timeout_ms: u32,
) -> c_int {
    run(|| {
        if r.is_null() {
            return Err(RecordError::InvalidUrl("recorder handle is NULL".into()));
        }
        // SAFETY: non-null and live per the caller's contract.
        let r = unsafe { &*r };
        Ok(c_int::from(r.inner.flush(Duration::from_millis(timeout_ms.into()))))
    })
}

/// Fills `*out` with the recorder's counters.
///
/// # Safety
/// `r` is NULL or a live recorder; `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn memwatch_recorder_stats(
    r: *mut memwatch_recorder_t,
    out: *mut memwatch_recorder_stats_t,
) -> c_int {
    run(|| {
        if r.is_null() || out.is_null() {
            return Err(RecordError::InvalidUrl("recorder and out must not be NULL".into()));
        }
        // SAFETY: non-null and live per the caller's contract.
        let s = unsafe { &*r }.inner.stats();
        let c = memwatch_recorder_stats_t {
            written: s.written,
            dropped: s.dropped,
            abandoned: s.abandoned,
            queued: s.queued,
            batches: s.batches,
            reconnects: s.reconnects,
            connected: i32::from(s.connected),
            recording_id: s.recording_id,
        };
        // SAFETY: non-null and valid for writes per the caller's contract.
        unsafe { out.write(c) };
        Ok(MEMWATCH_OK)
    })
}

/// Stops recording (writing what is queued first) and frees the recorder.
/// NULL is ignored.
///
/// # Safety
/// `r` is NULL or a live recorder, not used again afterwards.
#[no_mangle]
pub unsafe extern "C" fn memwatch_recorder_free(r: *mut memwatch_recorder_t) {
    if r.is_null() {
        return;
    }
    // SAFETY: r came from Box::into_raw in memwatch_record_to and is freed once.
    let h = unsafe { Box::from_raw(r) };
    let _ = catch_unwind(AssertUnwindSafe(move || h.inner.close()));
}
