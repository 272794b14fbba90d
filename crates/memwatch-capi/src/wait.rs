//! check_changes() in two steps (start, then bounded waits), so that a
//! binding's caller can give up waiting for a slow callback (a Go context, a
//! C# CancellationToken, Java's Thread.interrupt()), and the exit flush.

use std::ffi::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use memwatch_core::{ChangeEvent, Error, Pending, Watcher};

use crate::{event, guard, handle, memwatch_change_event_t, memwatch_watcher_t, MEMWATCH_OK};

/// The opaque `memwatch_pending_t`: a check_changes() waiting for the callback.
pub struct memwatch_pending_t {
    watcher: Arc<Watcher>,
    pending: Pending,
}

/// Clears the out pointers, checking them.
///
/// # Safety
/// Both are NULL or valid for writes.
unsafe fn clear_out(
    out_events: *mut *mut memwatch_change_event_t,
    out_count: *mut usize,
) -> Result<(), Error> {
    if out_events.is_null() || out_count.is_null() {
        return Err(Error::InvalidArgument("out_events and out_count must not be NULL".into()));
    }
    // SAFETY: non-null and valid for writes per the caller's contract.
    unsafe {
        *out_events = std::ptr::null_mut();
        *out_count = 0;
    }
    Ok(())
}

/// Hands `events` out as a C array.
///
/// # Safety
/// Both pointers are non-null and valid for writes.
unsafe fn hand_out(
    events: &[ChangeEvent],
    out_events: *mut *mut memwatch_change_event_t,
    out_count: *mut usize,
) {
    let (ptr, n) = event::events_into_raw(events);
    // SAFETY: per the function's contract.
    unsafe {
        *out_events = ptr;
        *out_count = n;
    }
}

/// Starts a check_changes() whose wait the caller may give up (see the header).
///
/// # Safety
/// `w` is NULL or a live handle; the out pointers are NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn memwatch_watcher_check_changes_start(
    w: *mut memwatch_watcher_t,
    out_events: *mut *mut memwatch_change_event_t,
    out_count: *mut usize,
    out_pending: *mut *mut memwatch_pending_t,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or live per the caller's contract.
        let h = unsafe { handle(w) }?;
        if out_pending.is_null() {
            return Err(Error::InvalidArgument("out_pending must not be NULL".into()));
        }
        // SAFETY: out pointers per the caller's contract (out_pending checked above).
        unsafe {
            *out_pending = std::ptr::null_mut();
            clear_out(out_events, out_count)?;
        }
        match h.inner.check_changes_start()? {
            // SAFETY: checked by clear_out.
            Ok(events) => unsafe { hand_out(&events, out_events, out_count) },
            Err(pending) => {
                let p = Box::new(memwatch_pending_t { watcher: Arc::clone(&h.inner), pending });
                // SAFETY: checked above.
                unsafe { *out_pending = Box::into_raw(p) };
            }
        }
        Ok(MEMWATCH_OK)
    })
}

/// Waits up to `timeout_ms` on a pending check (see the header).
///
/// # Safety
/// `p` is NULL or from `memwatch_watcher_check_changes_start`, not yet freed;
/// the out pointers are NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn memwatch_pending_wait(
    p: *mut memwatch_pending_t,
    timeout_ms: u32,
    out_events: *mut *mut memwatch_change_event_t,
    out_count: *mut usize,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or live per the caller's contract; shared access only.
        let p = unsafe { p.as_ref() }
            .ok_or_else(|| Error::InvalidArgument("pending handle is NULL".into()))?;
        // SAFETY: out pointers per the caller's contract.
        unsafe { clear_out(out_events, out_count) }?;
        let timeout = Duration::from_millis(u64::from(timeout_ms));
        match p.watcher.check_changes_wait(&p.pending, timeout) {
            None => Ok(0),
            Some(events) => {
                // SAFETY: checked by clear_out.
                unsafe { hand_out(&events, out_events, out_count) };
                Ok(1)
            }
        }
    })
}

/// Frees a pending check. NULL is fine.
///
/// # Safety
/// `p` is NULL or from `memwatch_watcher_check_changes_start`, freed once.
#[no_mangle]
pub unsafe extern "C" fn memwatch_pending_free(p: *mut memwatch_pending_t) {
    if p.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: made by Box::into_raw in check_changes_start, freed once
        // per the caller's contract.
        drop(unsafe { Box::from_raw(p) });
    }));
}

/// Delivers pending changes to the callback, waiting up to `timeout_ms`
/// (see the header).
///
/// # Safety
/// `w` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn memwatch_watcher_flush(
    w: *mut memwatch_watcher_t,
    timeout_ms: u32,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or live per the caller's contract.
        let h = unsafe { handle(w) }?;
        Ok(c_int::from(h.inner.flush(Duration::from_millis(u64::from(timeout_ms)))))
    })
}
