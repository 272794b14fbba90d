//! The global API (one default watcher): the handle API's calls on one process-wide default
//! watcher, created lazily (backend "auto", adapter C) by the first call that
//! needs it, or explicitly by `memwatch_init` / `memwatch_init_with_options`.

use std::ffi::{c_char, c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard};

use memwatch_core::{Error, Watcher};

use crate::last_error::{fail, fail_internal};
use crate::{
    check_changes_impl, close_and_release, guard, memwatch_callback_t, memwatch_change_event_t,
    memwatch_finalizer_t, memwatch_options_t, memwatch_stats_t, options_from_c, set_callback_impl,
    stats_impl, watch_impl, UserCtx, MEMWATCH_OK,
};

/// The default watcher. The lock is held only to read or swap the `Arc`,
/// never while calling into the watcher, so callbacks may use the global API.
static DEFAULT: Mutex<Option<Arc<Watcher>>> = Mutex::new(None);

fn lock() -> MutexGuard<'static, Option<Arc<Watcher>>> {
    // A panic while holding this lock cannot leave the Option inconsistent.
    DEFAULT.lock().unwrap_or_else(|p| p.into_inner())
}

/// The default watcher, created with `opts` if there is none yet.
///
/// # Safety
/// `opts` is NULL or valid (see `options_from_c`).
unsafe fn default_watcher_with(opts: *const memwatch_options_t) -> Result<Arc<Watcher>, Error> {
    let mut g = lock();
    if let Some(w) = g.as_ref() {
        return Ok(Arc::clone(w));
    }
    // SAFETY: forwarded caller contract.
    let o = unsafe { options_from_c(opts) }?;
    let w = Arc::new(Watcher::new(o)?);
    *g = Some(Arc::clone(&w));
    Ok(w)
}

pub(crate) fn default_watcher() -> Result<Arc<Watcher>, Error> {
    // SAFETY: NULL options are always valid.
    unsafe { default_watcher_with(std::ptr::null()) }
}

/// Creates the default watcher (backend "auto") if needed. Idempotent.
#[no_mangle]
pub extern "C" fn memwatch_init() -> c_int {
    guard(|| default_watcher().map(|_| MEMWATCH_OK))
}

/// Creates the default watcher with these options. Fails with
/// MEMWATCH_ERR_INVALID_ARGUMENT if it already exists (call memwatch_shutdown first).
///
/// # Safety
/// `opts` is NULL (defaults) or a valid options struct.
#[no_mangle]
pub unsafe extern "C" fn memwatch_init_with_options(opts: *const memwatch_options_t) -> c_int {
    guard(|| {
        let mut g = lock();
        if g.is_some() {
            return Err(Error::InvalidArgument(
                "the default watcher already exists; call memwatch_shutdown() first".into(),
            ));
        }
        // SAFETY: forwarded caller contract.
        let o = unsafe { options_from_c(opts) }?;
        *g = Some(Arc::new(Watcher::new(o)?));
        Ok(MEMWATCH_OK)
    })
}

/// Closes and frees the default watcher (unwatching everything), after
/// delivering the changes made before the call to the callback (at most
/// [`memwatch_core::EXIT_FLUSH_TIMEOUT`]). A later global call creates a fresh one. May be
/// called from inside its callback.
#[no_mangle]
pub extern "C" fn memwatch_shutdown() {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let w = lock().take();
        if let Some(w) = w {
            if !crate::in_callback_of(&w) {
                w.flush(memwatch_core::EXIT_FLUSH_TIMEOUT);
            }
            close_and_release(w);
        }
    }));
}

/// Watches on the default watcher; the region id, or 0 on error.
///
/// # Safety
/// As `memwatch_watcher_watch`, with `addr` the address as an integer.
#[no_mangle]
pub unsafe extern "C" fn memwatch_watch(
    addr: u64,
    size: usize,
    name: *const c_char,
    metadata: *const c_char,
) -> u32 {
    let r = catch_unwind(AssertUnwindSafe(|| -> Result<u32, Error> {
        let w = default_watcher()?;
        let addr = usize::try_from(addr)
            .map_err(|_| Error::InvalidArgument("address does not fit a pointer".into()))?;
        // SAFETY: forwarded caller contract (see watch_impl).
        unsafe { watch_impl(&w, addr as *const c_void, size, name, metadata) }
    }));
    match r {
        Ok(Ok(id)) => id,
        Ok(Err(e)) => {
            fail(&e);
            0
        }
        Err(p) => {
            fail_internal(p);
            0
        }
    }
}

/// Unwatches on the default watcher: 1 watched, 0 unknown, <0 error.
#[no_mangle]
pub extern "C" fn memwatch_unwatch(region_id: u32) -> c_int {
    guard(|| {
        let w = lock().as_ref().map(Arc::clone);
        match w {
            // No default watcher: nothing can be watched on it.
            None => Ok(0),
            Some(w) => Ok(c_int::from(w.unwatch(region_id)?)),
        }
    })
}

/// Sets or clears the default watcher's callback.
///
/// # Safety
/// `cb` follows the header's callback rules.
#[no_mangle]
pub unsafe extern "C" fn memwatch_set_callback(
    cb: memwatch_callback_t,
    user_ctx: *mut c_void,
) -> c_int {
    // SAFETY: forwarded caller contract.
    unsafe { memwatch_set_callback_with_finalizer(cb, user_ctx, None) }
}

/// Sets or clears the default watcher's callback; `finalizer` gets
/// `user_ctx` exactly once, when memwatch no longer uses it.
///
/// # Safety
/// `cb` and `finalizer` follow the header's callback rules.
#[no_mangle]
pub unsafe extern "C" fn memwatch_set_callback_with_finalizer(
    cb: memwatch_callback_t,
    user_ctx: *mut c_void,
    finalizer: memwatch_finalizer_t,
) -> c_int {
    // Owned from here on: dropped (finalized) on every early return too.
    let ctx = UserCtx::new(user_ctx, finalizer);
    guard(move || {
        let w = default_watcher()?;
        set_callback_impl(&w, cb, ctx)?;
        Ok(MEMWATCH_OK)
    })
}

/// check_changes on the default watcher.
///
/// # Safety
/// The out pointers are valid for writes.
#[no_mangle]
pub unsafe extern "C" fn memwatch_check_changes(
    out_events: *mut *mut memwatch_change_event_t,
    out_count: *mut usize,
) -> c_int {
    guard(|| {
        let w = default_watcher()?;
        // SAFETY: forwarded caller contract.
        unsafe { check_changes_impl(&w, out_events, out_count) }
    })
}

/// Statistics of the default watcher.
///
/// # Safety
/// `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn memwatch_get_stats(out: *mut memwatch_stats_t) -> c_int {
    guard(|| {
        let w = default_watcher()?;
        // SAFETY: forwarded caller contract.
        unsafe { stats_impl(&w, out) }
    })
}
