//! memwatch-capi: the C ABI of memwatch, an rlib that the artifact crate
//! `memwatch-c` links into `libmemwatch.so` and `libmemwatch.a`. The contract
//! is `include/memwatch.h`; this crate only translates between it and
//! [`memwatch_core`]. No detection logic lives here.
//!
//! Rules every exported function follows:
//! - its body runs inside `catch_unwind`, so a Rust panic becomes
//!   `MEMWATCH_ERR_INTERNAL` instead of unwinding across the ABI;
//! - failures return a negative code and store a message in a thread-local
//!   slot read by `memwatch_last_error()`;
//! - every pointer argument is checked for NULL before use.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![allow(non_camel_case_types)]

/// A static NUL-terminated C string from a string literal.
macro_rules! cstr {
    ($s:expr) => {
        concat!($s, "\0").as_ptr().cast::<std::ffi::c_char>()
    };
}

mod event;
mod glass;
mod global;
mod last_error;
mod mono;
mod record;
mod resolver;
mod store;
mod wait;

use std::ffi::{c_char, c_int, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use memwatch_core::{Backend, Error, Options, Stats, Watcher};

pub use event::{memwatch_change_event_t, memwatch_frame_t, memwatch_range_t, memwatch_where_t};
use last_error::{fail, fail_internal};
pub use record::{memwatch_recorder_stats_t, memwatch_recorder_t};
pub use resolver::{memwatch_register_resolver, memwatch_resolved_frame_t, memwatch_resolver_t};
pub use wait::memwatch_pending_t;

/// Success.
pub const MEMWATCH_OK: c_int = 0;
/// NULL pointer, zero length, bad option or name.
pub const MEMWATCH_ERR_INVALID_ARGUMENT: c_int = -1;
/// A system call failed.
pub const MEMWATCH_ERR_OS: c_int = -7;
/// A panic inside memwatch was caught (a bug in memwatch).
pub const MEMWATCH_ERR_INTERNAL: c_int = -8;
/// A database could not be opened or reached (memwatch_record_to).
pub const MEMWATCH_ERR_DATABASE: c_int = -9;
/// Adapter id of watchers made through this ABI unless the options say otherwise.
pub const MEMWATCH_ADAPTER_C: u32 = memwatch_core::ADAPTER_C;

/// Watcher settings, `memwatch_options_t` in the header.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct memwatch_options_t {
    /// "auto", "protect", "writewatch" or "poll"; NULL means "auto".
    pub backend: *const c_char,
    /// Writable window of the protect backend, milliseconds.
    pub writable_window_ms: u32,
    /// Poll interval of the poll backend, milliseconds.
    pub poll_interval_ms: u32,
    /// Largest region whose whole old/new value is carried in events.
    pub max_value_bytes: u64,
    /// Bytes of old/new preview in every event.
    pub preview_bytes: u64,
    /// Capacity of the process-wide fault ring, used when the engine starts.
    pub ring_capacity: u64,
    /// 1 = keep snapshots (old values), 0 = no old values.
    pub snapshots: i32,
    /// Adapter id copied into every event.
    pub adapter_id: u32,
    /// 1 = locate writers (thread name, file, function, line, stack), 0 = off.
    pub locate_writers: i32,
    /// Most frames per located write (1..=32), default 8.
    pub stack_depth: u32,
}

/// Statistics of one watcher, `memwatch_stats_t` in the header.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct memwatch_stats_t {
    /// Static NUL-terminated backend name ("protect", "poll", ...; "none" before any region).
    pub backend: *const c_char,
    /// Why a better backend was not used; "" if none. NUL-terminated, truncated to fit.
    pub backend_reason: [c_char; 256],
    /// Regions this watcher watches.
    pub regions: u64,
    /// Pages kept protected by the engine (all watchers).
    pub protected_pages: u64,
    /// Write faults handled by the engine (all watchers).
    pub faults: u64,
    /// Events this watcher produced.
    pub events: u64,
    /// Fault "wheres" dropped because the ring was full (engine-wide).
    pub dropped_wheres: u64,
    /// Native bytes held for this watcher's regions.
    pub native_bytes: u64,
    /// Of which snapshots.
    pub snapshot_bytes: u64,
    /// Events waiting for check_changes or the callback.
    pub pending_events: u64,
    /// Callbacks that failed (panicked or were reported by a binding).
    pub callback_errors: u64,
    /// Median write-to-delivery latency, nanoseconds.
    pub latency_p50_ns: u64,
    /// 99th percentile write-to-delivery latency, nanoseconds.
    pub latency_p99_ns: u64,
    /// writewatch regions userfaultfd refused (watched by protect instead).
    pub fallback_regions: u64,
    /// Regions dropped because their memory was unmapped while watched.
    pub gone_regions: u64,
    /// Regions in shared mappings watched by protect or writewatch, whose
    /// writes by other processes those backends cannot see.
    pub shared_regions: u64,
    /// Protect pages that could not be made read-only again (engine-wide;
    /// polled instead, so no write is missed).
    pub reprotect_failures: u64,
    /// Changes merged into an already pending event (queue cap).
    pub coalesced_events: u64,
    /// Pages written nonstop, left writable and polled (engine-wide).
    pub hot_pages: u64,
}

/// The callback type of the header. Declared `C-unwind` so that a foreign
/// exception escaping a callback is defined behaviour on the Rust side (it is
/// caught and counted, or the process aborts) instead of undefined behaviour.
/// Callbacks must not throw; see the header.
pub type memwatch_callback_t = Option<
    unsafe extern "C-unwind" fn(event: *const memwatch_change_event_t, user_ctx: *mut c_void),
>;

/// `memwatch_finalizer_t`: releases a callback's user data once memwatch no
/// longer uses it.
pub type memwatch_finalizer_t = Option<unsafe extern "C" fn(user_ctx: *mut c_void)>;

/// A callback's user data and its finalizer, which runs when this is dropped:
/// when the last reference to the callback closure holding it goes (replaced,
/// cleared or closed, and no call running).
pub(crate) struct UserCtx {
    ptr: *mut c_void,
    finalizer: memwatch_finalizer_t,
}

impl UserCtx {
    /// Takes ownership of `ptr`: `finalizer` (if any) gets it when this drops.
    pub(crate) fn new(ptr: *mut c_void, finalizer: memwatch_finalizer_t) -> Self {
        UserCtx { ptr, finalizer }
    }
}

// SAFETY: memwatch never dereferences `ptr`; it only hands it back to the
// caller's callback and finalizer, which the header allows to run on any thread.
unsafe impl Send for UserCtx {}
// SAFETY: as above; shared access only reads the two fields.
unsafe impl Sync for UserCtx {}

impl Drop for UserCtx {
    fn drop(&mut self) {
        if let Some(f) = self.finalizer {
            let ptr = self.ptr;
            // SAFETY: the caller's finalizer with the header's signature,
            // called exactly once (this value is dropped once).
            let _ = catch_unwind(AssertUnwindSafe(|| unsafe { f(ptr) }));
        }
    }
}

/// The opaque `memwatch_watcher_t`: one core watcher.
pub struct memwatch_watcher_t {
    inner: Arc<Watcher>,
}

/// Runs `f` with panics caught: its `Ok` value is returned, an `Err` is
/// stored as the thread's last error and its code returned, a panic becomes
/// `MEMWATCH_ERR_INTERNAL`.
pub(crate) fn guard(f: impl FnOnce() -> Result<c_int, Error>) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => fail(&e),
        Err(p) => fail_internal(p),
    }
}

/// Borrows a C string argument; NULL becomes `default`.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string valid for the call.
unsafe fn str_arg<'a>(p: *const c_char, what: &str, default: &'a str) -> Result<&'a str, Error> {
    if p.is_null() {
        return Ok(default);
    }
    // SAFETY: the caller guarantees a NUL-terminated string (header contract).
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str().map_err(|_| Error::InvalidArgument(format!("{what} is not valid UTF-8")))
}

/// Converts C options to core options, checking them.
///
/// # Safety
/// `opts` is NULL or points to a valid `memwatch_options_t` whose `backend`
/// is NULL or a NUL-terminated string.
pub(crate) unsafe fn options_from_c(opts: *const memwatch_options_t) -> Result<Options, Error> {
    let mut o = Options { adapter_id: memwatch_core::ADAPTER_C, ..Options::default() };
    if opts.is_null() {
        return Ok(o);
    }
    // SAFETY: non-null and valid per the caller's contract; the struct is Copy.
    let c = unsafe { *opts };
    // SAFETY: backend is NULL or NUL-terminated per the caller's contract.
    let backend = unsafe { str_arg(c.backend, "backend", "auto") }?;
    o.backend = Backend::from_name(backend)?;
    o.writable_window = Duration::from_millis(u64::from(c.writable_window_ms));
    o.poll_interval = Duration::from_millis(u64::from(c.poll_interval_ms));
    if c.poll_interval_ms == 0 {
        return Err(Error::InvalidArgument("poll_interval_ms must be at least 1".into()));
    }
    o.max_value_bytes = usize::try_from(c.max_value_bytes)
        .map_err(|_| Error::InvalidArgument("max_value_bytes too large".into()))?;
    o.preview_bytes = usize::try_from(c.preview_bytes)
        .map_err(|_| Error::InvalidArgument("preview_bytes too large".into()))?;
    o.ring_capacity = usize::try_from(c.ring_capacity)
        .map_err(|_| Error::InvalidArgument("ring_capacity too large".into()))?;
    if o.ring_capacity == 0 {
        return Err(Error::InvalidArgument("ring_capacity must be at least 1".into()));
    }
    o.snapshots = match c.snapshots {
        0 => false,
        1 => true,
        other => {
            return Err(Error::InvalidArgument(format!("snapshots must be 0 or 1, got {other}")))
        }
    };
    o.adapter_id = c.adapter_id;
    o.locate_writers = match c.locate_writers {
        0 => false,
        1 => true,
        other => {
            return Err(Error::InvalidArgument(format!(
                "locate_writers must be 0 or 1, got {other}"
            )))
        }
    };
    o.stack_depth = c.stack_depth as usize;
    Ok(o)
}

/// Borrows the watcher behind a handle.
///
/// # Safety
/// `w` is NULL or a live handle from `memwatch_watcher_new`.
unsafe fn handle<'a>(w: *mut memwatch_watcher_t) -> Result<&'a memwatch_watcher_t, Error> {
    if w.is_null() {
        return Err(Error::InvalidArgument("watcher handle is NULL".into()));
    }
    // SAFETY: non-null and live per the caller's contract; only shared access is made.
    Ok(unsafe { &*w })
}

// ---------------------------------------------------------------------------
// Shared implementations (handle API and global API).

thread_local! {
    /// Address of the core watcher whose callback this thread is running, or 0.
    static IN_CALLBACK_OF: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Whether the calling thread is inside a callback of `w`.
pub(crate) fn in_callback_of(w: &Arc<Watcher>) -> bool {
    IN_CALLBACK_OF.with(|c| c.get() == Arc::as_ptr(w) as usize)
}

/// Closes `w` and drops this reference. When called from inside `w`'s own
/// callback, the final drop happens on a helper thread so that the delivery
/// thread is never asked to wait for itself.
pub(crate) fn close_and_release(w: Arc<Watcher>) {
    w.close();
    if in_callback_of(&w) {
        std::thread::Builder::new()
            .name("memwatch-release".into())
            .spawn(move || drop(w))
            .map(drop)
            // If no thread can be made the watcher is already closed; keeping
            // its small handle alive forever is the safe fallback.
            .unwrap_or_else(|_| ());
    } else {
        drop(w);
    }
}

/// Watches a range on `w`.
///
/// # Safety
/// `name`/`metadata` are NULL or NUL-terminated; the range contract of the header holds.
pub(crate) unsafe fn watch_impl(
    w: &Watcher,
    addr: *const c_void,
    len: usize,
    name: *const c_char,
    metadata: *const c_char,
) -> Result<u32, Error> {
    // SAFETY: NULL or NUL-terminated per the caller's contract.
    let name = unsafe { str_arg(name, "name", "") }?;
    let metadata = if metadata.is_null() {
        None
    } else {
        // SAFETY: non-null and NUL-terminated per the caller's contract.
        Some(unsafe { str_arg(metadata, "metadata", "") }?)
    };
    // SAFETY: the header makes the caller promise that [addr, addr+len) stays
    // mapped until it is unwatched or the watcher is freed, which is the
    // core's contract. NULL, zero length, unmapped and read-only ranges are
    // rejected by the core with an error.
    unsafe { w.watch(addr.cast::<u8>(), len, name, metadata) }
}

/// Sets or clears the callback of `w`. The finalizer of `ctx` (if any) runs
/// exactly once, when memwatch no longer uses it: right away if `cb` is NULL
/// or the call fails, else once the callback is replaced, cleared or closed
/// and not running.
pub(crate) fn set_callback_impl(
    w: &Arc<Watcher>,
    cb: memwatch_callback_t,
    ctx: UserCtx,
) -> Result<(), Error> {
    let Some(cb) = cb else {
        let r = w.set_callback(None);
        drop(ctx);
        return r;
    };
    let me = Arc::as_ptr(w) as usize;
    let closure = move |ev: &memwatch_core::ChangeEvent| {
        // The whole UserCtx is captured, so it lives as long as the closure.
        let ctx = &ctx;
        let owned = event::OwnedEvent::new(ev);
        let prev = IN_CALLBACK_OF.with(|c| c.replace(me));
        let result = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: cb is the caller's function with the header's
            // signature; the event pointer is valid for the whole call.
            unsafe { cb(owned.as_ptr(), ctx.ptr) }
        }));
        IN_CALLBACK_OF.with(|c| c.set(prev));
        drop(owned);
        if result.is_err() {
            // Something unwound out of the C callback. Re-raise it as a Rust
            // panic: the core catches callback panics, counts them in
            // stats.callback_errors and keeps delivering.
            panic!("memwatch: a C callback unwound (callbacks must not throw)");
        }
    };
    w.set_callback(Some(Arc::new(closure)))
}

/// Runs check_changes on `w` and hands the events out as a C array.
///
/// # Safety
/// `out_events`/`out_count` are NULL or valid for writes.
pub(crate) unsafe fn check_changes_impl(
    w: &Watcher,
    out_events: *mut *mut memwatch_change_event_t,
    out_count: *mut usize,
) -> Result<c_int, Error> {
    if out_events.is_null() || out_count.is_null() {
        return Err(Error::InvalidArgument("out_events and out_count must not be NULL".into()));
    }
    // SAFETY: both are non-null and valid for writes per the caller's contract.
    unsafe {
        *out_events = std::ptr::null_mut();
        *out_count = 0;
    }
    let events = w.check_changes()?;
    let (ptr, n) = event::events_into_raw(&events);
    // SAFETY: as above.
    unsafe {
        *out_events = ptr;
        *out_count = n;
    }
    Ok(MEMWATCH_OK)
}

fn backend_cstr(b: Option<Backend>) -> *const c_char {
    match b {
        None => cstr!("none"),
        Some(Backend::Auto) => cstr!("auto"),
        Some(Backend::Protect) => cstr!("protect"),
        Some(Backend::WriteWatch) => cstr!("writewatch"),
        Some(Backend::Poll) => cstr!("poll"),
    }
}

/// Fills a C stats struct.
///
/// # Safety
/// `out` is NULL or valid for writes.
pub(crate) unsafe fn stats_impl(w: &Watcher, out: *mut memwatch_stats_t) -> Result<c_int, Error> {
    if out.is_null() {
        return Err(Error::InvalidArgument("out must not be NULL".into()));
    }
    let s: Stats = w.stats();
    let mut reason = [0 as c_char; 256];
    // Truncate at a UTF-8 character boundary so the C string stays valid UTF-8.
    let mut cut = s.backend_reason.len().min(reason.len() - 1);
    while !s.backend_reason.is_char_boundary(cut) {
        cut -= 1;
    }
    for (dst, &b) in reason.iter_mut().zip(s.backend_reason.as_bytes()[..cut].iter()) {
        *dst = if b == 0 { b'?' as c_char } else { b as c_char };
    }
    let c = memwatch_stats_t {
        backend: backend_cstr(s.backend),
        backend_reason: reason,
        regions: s.regions as u64,
        protected_pages: s.protected_pages as u64,
        faults: s.faults,
        events: s.events,
        dropped_wheres: s.dropped_wheres,
        native_bytes: s.native_bytes as u64,
        snapshot_bytes: s.snapshot_bytes as u64,
        pending_events: s.pending_events as u64,
        callback_errors: s.callback_errors,
        latency_p50_ns: s.latency_p50_ns,
        latency_p99_ns: s.latency_p99_ns,
        fallback_regions: s.fallback_regions as u64,
        gone_regions: s.gone_regions,
        shared_regions: s.shared_regions as u64,
        reprotect_failures: s.reprotect_failures,
        coalesced_events: s.coalesced_events,
        hot_pages: s.hot_pages as u64,
    };
    // SAFETY: non-null and valid for writes per the caller's contract.
    unsafe { out.write(c) };
    Ok(MEMWATCH_OK)
}

// ---------------------------------------------------------------------------
// Exported: errors and misc.

/// Message of the last failure in this thread ("" if none).
#[no_mangle]
pub extern "C" fn memwatch_last_error() -> *const c_char {
    catch_unwind(last_error::message_ptr).unwrap_or(cstr!(""))
}

/// Code of the last failure in this thread (MEMWATCH_OK if none).
#[no_mangle]
pub extern "C" fn memwatch_last_error_code() -> c_int {
    catch_unwind(last_error::code).unwrap_or(MEMWATCH_ERR_INTERNAL)
}

/// The operating system's page size in bytes.
#[no_mangle]
pub extern "C" fn memwatch_page_size() -> size_t {
    catch_unwind(memwatch_core::page_size).unwrap_or(0)
}

/// How long exit hooks wait for pending changes to reach the callbacks, in
/// milliseconds (the engine's `EXIT_FLUSH_TIMEOUT`): `memwatch_shutdown()`
/// waits this long, and bindings over the C ABI use it for their own hooks.
#[no_mangle]
pub extern "C" fn memwatch_exit_flush_timeout_ms() -> u32 {
    // A constant: nothing here can panic, so there is nothing to catch.
    u32::try_from(memwatch_core::EXIT_FLUSH_TIMEOUT.as_millis()).unwrap_or(u32::MAX)
}

/// The library version, a static string like "0.1.0".
#[no_mangle]
pub extern "C" fn memwatch_version() -> *const c_char {
    // A constant: nothing here can panic, so there is nothing to catch.
    cstr!(env!("CARGO_PKG_VERSION"))
}

#[allow(non_camel_case_types)]
type size_t = usize;

// ---------------------------------------------------------------------------
// Exported: handle API.

/// Fills `*opts` with the defaults (backend "auto", adapter C).
///
/// # Safety
/// `opts` is NULL (ignored) or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn memwatch_options_default(opts: *mut memwatch_options_t) {
    if opts.is_null() {
        return;
    }
    let Ok(d) = catch_unwind(Options::default) else {
        return;
    };
    let c = memwatch_options_t {
        backend: cstr!("auto"),
        writable_window_ms: u32::try_from(d.writable_window.as_millis()).unwrap_or(u32::MAX),
        poll_interval_ms: u32::try_from(d.poll_interval.as_millis()).unwrap_or(u32::MAX),
        max_value_bytes: d.max_value_bytes as u64,
        preview_bytes: d.preview_bytes as u64,
        ring_capacity: d.ring_capacity as u64,
        snapshots: i32::from(d.snapshots),
        adapter_id: memwatch_core::ADAPTER_C,
        locate_writers: i32::from(d.locate_writers),
        stack_depth: d.stack_depth as u32,
    };
    // SAFETY: non-null and valid for writes per the caller's contract.
    unsafe { opts.write(c) };
}

/// Creates a watcher.
///
/// # Safety
/// `opts` is NULL or a valid options struct; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn memwatch_watcher_new(
    opts: *const memwatch_options_t,
    out: *mut *mut memwatch_watcher_t,
) -> c_int {
    guard(|| {
        if out.is_null() {
            return Err(Error::InvalidArgument("out must not be NULL".into()));
        }
        // SAFETY: non-null and valid for writes per the caller's contract.
        unsafe { *out = std::ptr::null_mut() };
        // SAFETY: opts is NULL or valid per the caller's contract.
        let o = unsafe { options_from_c(opts) }?;
        let w = Watcher::new(o)?;
        let h = Box::new(memwatch_watcher_t { inner: Arc::new(w) });
        // SAFETY: as above.
        unsafe { *out = Box::into_raw(h) };
        Ok(MEMWATCH_OK)
    })
}

/// Closes and frees a watcher. NULL is ignored. May be called from inside its own callback.
///
/// # Safety
/// `w` is NULL or a live handle, not used again afterwards.
#[no_mangle]
pub unsafe extern "C" fn memwatch_watcher_free(w: *mut memwatch_watcher_t) {
    if w.is_null() {
        return;
    }
    // SAFETY: w came from Box::into_raw in memwatch_watcher_new and is freed once.
    let h = unsafe { Box::from_raw(w) };
    let _ = catch_unwind(AssertUnwindSafe(move || close_and_release(h.inner)));
}

/// Closes a watcher (unwatching everything) without freeing the handle.
/// Later calls on it fail with MEMWATCH_ERR_CLOSED. Idempotent.
///
/// # Safety
/// `w` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn memwatch_watcher_close(w: *mut memwatch_watcher_t) -> c_int {
    guard(|| {
        // SAFETY: NULL or live per the caller's contract.
        let h = unsafe { handle(w) }?;
        h.inner.close();
        Ok(MEMWATCH_OK)
    })
}

/// Watches `[addr, addr+len)` on a watcher.
///
/// # Safety
/// `w` is a live handle; strings are NULL or NUL-terminated; `out_id` is NULL
/// or valid for writes; the memory stays mapped until unwatched or freed.
#[no_mangle]
pub unsafe extern "C" fn memwatch_watcher_watch(
    w: *mut memwatch_watcher_t,
    addr: *const c_void,
    len: usize,
    name: *const c_char,
    metadata: *const c_char,
    out_id: *mut u32,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or live per the caller's contract.
        let h = unsafe { handle(w) }?;
        // SAFETY: per the caller's contract (see watch_impl).
        let id = unsafe { watch_impl(&h.inner, addr, len, name, metadata) }?;
        if !out_id.is_null() {
            // SAFETY: non-null and valid for writes per the caller's contract.
            unsafe { *out_id = id };
        }
        Ok(MEMWATCH_OK)
    })
}

/// Unwatches a region: 1 if it was watched, 0 if unknown, <0 on error.
///
/// # Safety
/// `w` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn memwatch_watcher_unwatch(
    w: *mut memwatch_watcher_t,
    region_id: u32,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or live per the caller's contract.
        let h = unsafe { handle(w) }?;
        Ok(c_int::from(h.inner.unwatch(region_id)?))
    })
}

/// Sets or clears the callback.
///
/// # Safety
/// `w` is NULL or a live handle; `cb` follows the header's rules.
#[no_mangle]
pub unsafe extern "C" fn memwatch_watcher_set_callback(
    w: *mut memwatch_watcher_t,
    cb: memwatch_callback_t,
    user_ctx: *mut c_void,
) -> c_int {
    // SAFETY: forwarded caller contract.
    unsafe { memwatch_watcher_set_callback_with_finalizer(w, cb, user_ctx, None) }
}

/// Sets or clears the callback; `finalizer` gets `user_ctx` exactly once,
/// when memwatch no longer uses it (see the header).
///
/// # Safety
/// `w` is NULL or a live handle; `cb` and `finalizer` follow the header's rules.
#[no_mangle]
pub unsafe extern "C" fn memwatch_watcher_set_callback_with_finalizer(
    w: *mut memwatch_watcher_t,
    cb: memwatch_callback_t,
    user_ctx: *mut c_void,
    finalizer: memwatch_finalizer_t,
) -> c_int {
    // Owned from here on: dropped (finalized) on every early return too.
    let ctx = UserCtx::new(user_ctx, finalizer);
    guard(move || {
        // SAFETY: NULL or live per the caller's contract.
        let h = unsafe { handle(w) }?;
        set_callback_impl(&h.inner, cb, ctx)?;
        Ok(MEMWATCH_OK)
    })
}

/// Detects changes now (see the header).
///
/// # Safety
/// `w` is NULL or a live handle; the out pointers are valid for writes.
#[no_mangle]
pub unsafe extern "C" fn memwatch_watcher_check_changes(
    w: *mut memwatch_watcher_t,
    out_events: *mut *mut memwatch_change_event_t,
    out_count: *mut usize,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or live per the caller's contract.
        let h = unsafe { handle(w) }?;
        // SAFETY: out pointers per the caller's contract.
        unsafe { check_changes_impl(&h.inner, out_events, out_count) }
    })
}

/// Frees an array returned by check_changes. NULL/0 is fine.
///
/// # Safety
/// `events`/`count` are exactly what a check_changes call returned, freed once.
#[no_mangle]
pub unsafe extern "C" fn memwatch_events_free(events: *mut memwatch_change_event_t, count: usize) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: forwarded caller contract.
        unsafe { event::events_free(events, count) }
    }));
}

/// Fills `*out` with the watcher's statistics.
///
/// # Safety
/// `w` is NULL or a live handle; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn memwatch_watcher_get_stats(
    w: *mut memwatch_watcher_t,
    out: *mut memwatch_stats_t,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or live per the caller's contract.
        let h = unsafe { handle(w) }?;
        // SAFETY: out per the caller's contract.
        unsafe { stats_impl(&h.inner, out) }
    })
}

/// Sends values larger than max_value_bytes to the MemStream store
/// `store_name` (created with `capacity` bytes and LRU eviction if needed);
/// NULL stops it.
///
/// # Safety
/// `w` is NULL or a live handle; `store_name` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn memwatch_watcher_set_value_store(
    w: *mut memwatch_watcher_t,
    store_name: *const c_char,
    capacity: u64,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or live per the caller's contract.
        let h = unsafe { handle(w) }?;
        if store_name.is_null() {
            h.inner.set_value_store(None)?;
            return Ok(MEMWATCH_OK);
        }
        // SAFETY: NUL-terminated per the caller's contract.
        let name = unsafe { std::ffi::CStr::from_ptr(store_name) }
            .to_str()
            .map_err(|_| Error::InvalidArgument("store_name is not UTF-8".into()))?;
        let store = memwatch_core::store::Store::connect(
            name,
            capacity,
            memwatch_core::store::FullPolicy::EvictLru,
        )
        .map_err(|e| Error::InvalidArgument(format!("value store {name:?}: {e}")))?;
        h.inner.set_value_store(Some(std::sync::Arc::new(store)))?;
        Ok(MEMWATCH_OK)
    })
}

/// Puts memwatch's SIGSEGV handler back on top of one installed after it:
/// 1 if it was put back, 0 if nothing changed, < 0 on error.
#[no_mangle]
pub extern "C" fn memwatch_reassert_signal_handler() -> c_int {
    guard(|| Ok(c_int::from(memwatch_core::reassert_signal_handler()?)))
}

/// Counts one failed callback in stats.callback_errors (for bindings whose
/// callbacks catch their own language's exceptions).
///
/// # Safety
/// `w` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn memwatch_watcher_report_callback_error(
    w: *mut memwatch_watcher_t,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or live per the caller's contract.
        let h = unsafe { handle(w) }?;
        h.inner.report_callback_error();
        Ok(MEMWATCH_OK)
    })
}

pub use glass::*;
pub use global::*;
pub use store::*;

#[cfg(test)]
mod tests {
    use super::*;

    /// Offset of a field, computed without `offset_of!` (MSRV 1.75).
    macro_rules! offset {
        ($t:ty, $f:ident) => {{
            let u = std::mem::MaybeUninit::<$t>::uninit();
            let base = u.as_ptr();
            // SAFETY: addr_of! on a field of an uninitialised value only computes an address.
            let field = unsafe { std::ptr::addr_of!((*base).$f) };
            field as usize - base as usize
        }};
    }

    /// The same numbers are asserted on the C side (tests/c/test_capi.c, abi_layout).
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn layout_matches_header() {
        assert_eq!(std::mem::size_of::<memwatch_options_t>(), 56);
        assert_eq!(std::mem::size_of::<memwatch_where_t>(), 40);
        assert_eq!(std::mem::size_of::<memwatch_resolved_frame_t>(), 1028);
        assert_eq!(std::mem::size_of::<memwatch_frame_t>(), 48);
        assert_eq!(offset!(memwatch_change_event_t, location), 184);
        assert_eq!(std::mem::size_of::<memwatch_range_t>(), 16);
        assert_eq!(std::mem::size_of::<memwatch_change_event_t>(), 200);
        assert_eq!(offset!(memwatch_change_event_t, coalesced), 192);
        assert_eq!(offset!(memwatch_change_event_t, fault_ip), 40);
        assert_eq!(offset!(memwatch_change_event_t, how_big), 72);
        assert_eq!(offset!(memwatch_change_event_t, metadata), 176);
        assert_eq!(std::mem::size_of::<memwatch_stats_t>(), 400);
        assert_eq!(offset!(memwatch_stats_t, hot_pages), 392);
        assert_eq!(offset!(memwatch_stats_t, shared_regions), 368);
        assert_eq!(offset!(memwatch_stats_t, coalesced_events), 384);
        assert_eq!(offset!(memwatch_stats_t, regions), 264);
        assert_eq!(std::mem::size_of::<memwatch_store_stats_t>(), 96);
        assert_eq!(std::mem::size_of::<memwatch_store_key_stats_t>(), 40);
        assert_eq!(offset!(memwatch_store_key_stats_t, access_count), 32);
    }

    #[test]
    fn null_arguments_are_errors_not_crashes() {
        // SAFETY: NULL is explicitly allowed and must be rejected.
        let rc = unsafe { memwatch_watcher_new(std::ptr::null(), std::ptr::null_mut()) };
        assert_eq!(rc, -1);
        assert_eq!(memwatch_last_error_code(), -1);
        // SAFETY: memwatch_last_error returns a NUL-terminated string.
        let msg = unsafe { CStr::from_ptr(memwatch_last_error()) }.to_str().unwrap();
        assert!(msg.contains("NULL"), "{msg}");
    }
}
