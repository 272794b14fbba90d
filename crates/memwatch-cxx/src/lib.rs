//! memwatch-cxx: the C++17 API of memwatch, built with [cxx](https://cxx.rs).
//!
//! This crate is the Rust half of the bridge: a thin wrapper of
//! [`memwatch_core::Watcher`] whose functions never panic across the bridge
//! (panics become errors) and whose callbacks reach C++ through
//! `CallbackHolder::invoke`, declared `Result<()>` so that a C++ exception is
//! caught by cxx before it can unwind into Rust, and counted in
//! `Stats::callback_errors`. The public C++ API is the header-only
//! `include/memwatch.hpp` over the generated bridge header.
//!
//! Errors cross the bridge as `rust::Error` whose message is `"[code] text"`
//! (code = the C ABI's `memwatch_error_t`); memwatch.hpp turns that into the
//! matching exception class.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

use std::cell::Cell;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cxx::UniquePtr;
use memwatch_core::{Backend, ChangeEvent, Error, Options, Watcher};

/// The cxx bridge: shared structs, the Rust watcher type and the C++ callback holder.
#[cxx::bridge(namespace = "memwatch::ffi")]
pub mod ffi {
    /// Watcher settings as the C++ API passes them.
    #[derive(Debug, Clone)]
    pub struct FfiOptions {
        /// "auto", "protect", "writewatch" or "poll".
        pub backend: String,
        /// Writable window of the protect backend, milliseconds.
        pub writable_window_ms: u64,
        /// Poll interval of the poll backend, milliseconds.
        pub poll_interval_ms: u64,
        /// Largest region whose whole values are carried in events.
        pub max_value_bytes: usize,
        /// Preview bytes in every event.
        pub preview_bytes: usize,
        /// Process-wide fault ring capacity, used when the engine starts.
        pub ring_capacity: usize,
        /// Keep snapshots (old values).
        pub snapshots: bool,
    }

    /// A run of changed bytes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct FfiRange {
        /// Offset from the region start.
        pub offset: usize,
        /// Number of bytes.
        pub length: usize,
    }

    /// One change event, flattened for the bridge (`has_*` flags mark optional fields).
    #[derive(Debug, Clone)]
    pub struct FfiEvent {
        /// Process-wide sequence number.
        pub seq: u64,
        /// CLOCK_MONOTONIC nanoseconds.
        pub timestamp_ns: u64,
        /// Adapter id (7 = C++).
        pub adapter_id: u32,
        /// Region id.
        pub region_id: u32,
        /// Name given at watch time.
        pub variable_name: String,
        /// Whether thread_id is known.
        pub has_thread_id: bool,
        /// Kernel tid of the writer.
        pub thread_id: u32,
        /// Whether fault_ip is known.
        pub has_fault_ip: bool,
        /// Instruction pointer of the write.
        pub fault_ip: u64,
        /// Source file (empty until symbolization lands).
        pub file: String,
        /// Function (empty until symbolization lands).
        pub function: String,
        /// Source line (0 = unknown).
        pub line: u32,
        /// Region size.
        pub how_big: usize,
        /// Changed ranges, ascending.
        pub changed_ranges: Vec<FfiRange>,
        /// Preview before.
        pub old_preview: Vec<u8>,
        /// Preview after.
        pub new_preview: Vec<u8>,
        /// Whether old_value is present.
        pub has_old_value: bool,
        /// Whole old value.
        pub old_value: Vec<u8>,
        /// Whether new_value is present.
        pub has_new_value: bool,
        /// Whole new value.
        pub new_value: Vec<u8>,
        /// Whether storage_key_old is present.
        pub has_storage_key_old: bool,
        /// Store key of a large old value.
        pub storage_key_old: String,
        /// Whether storage_key_new is present.
        pub has_storage_key_new: bool,
        /// Store key of a large new value.
        pub storage_key_new: String,
        /// Whether metadata is present.
        pub has_metadata: bool,
        /// Metadata given at watch time.
        pub metadata: String,
        /// Changes this event stands for (more than 1 when merged in a full queue).
        pub coalesced: u32,
    }

    /// Watcher statistics.
    #[derive(Debug, Clone)]
    pub struct FfiStats {
        /// Backend in use ("none" before the first region).
        pub backend: String,
        /// Why a better backend was not used.
        pub backend_reason: String,
        /// Regions watched.
        pub regions: usize,
        /// Pages protected (engine-wide).
        pub protected_pages: usize,
        /// Faults handled (engine-wide).
        pub faults: u64,
        /// Events produced.
        pub events: u64,
        /// Regions on another backend than the watcher's (reason in backend_reason).
        pub fallback_regions: usize,
        /// Regions dropped because their memory was unmapped (engine-wide).
        pub gone_regions: u64,
        /// Shared-mapping regions on protect/writewatch (other writers invisible).
        pub shared_regions: usize,
        /// Protect pages that could not be re-armed (engine-wide; polled instead).
        pub reprotect_failures: u64,
        /// Changes merged into a pending event (queue cap).
        pub coalesced_events: u64,
        /// Wheres dropped by a full ring (engine-wide).
        pub dropped_wheres: u64,
        /// Native bytes held.
        pub native_bytes: usize,
        /// Of which snapshots.
        pub snapshot_bytes: usize,
        /// Events waiting.
        pub pending_events: usize,
        /// Callbacks that threw.
        pub callback_errors: u64,
        /// Median latency, ns.
        pub latency_p50_ns: u64,
        /// 99th percentile latency, ns.
        pub latency_p99_ns: u64,
    }

    /// Counters of a recorder (memwatch_record::RecorderStats).
    struct FfiRecorderStats {
        /// Events committed to the database.
        pub written: u64,
        /// Events the full queue could not take.
        pub dropped: u64,
        /// Events unwritten when the recorder closed with the database down.
        pub abandoned: u64,
        /// Events waiting to be written.
        pub queued: u64,
        /// Transactions committed.
        pub batches: u64,
        /// Connections made again after a loss.
        pub reconnects: u64,
        /// Whether the recorder is connected now.
        pub connected: bool,
        /// This recording in memwatch_recordings.
        pub recording_id: i64,
    }

    extern "Rust" {
        /// A memwatch watcher.
        type RustWatcher;
        /// A running recorder.
        type RustRecorder;

        /// Records every event of the watcher into SQLite or PostgreSQL.
        fn record_to(self: &RustWatcher, url: &str) -> Result<Box<RustRecorder>>;
        /// The recorder's counters.
        fn recorder_stats(self: &RustRecorder) -> FfiRecorderStats;
        /// Waits up to `timeout_ms` until everything queued is written.
        fn recorder_flush(self: &RustRecorder, timeout_ms: u64) -> bool;
        /// Stops recording after writing what is queued.
        fn recorder_close(self: &RustRecorder);

        /// The engine's default options (what `memwatch::Options{}` holds).
        fn default_options() -> FfiOptions;
        /// Creates a watcher.
        fn new_watcher(options: &FfiOptions) -> Result<Box<RustWatcher>>;
        /// Watches `[addr, addr+len)`.
        ///
        /// # Safety
        /// The range stays mapped until unwatched or the watcher is closed.
        unsafe fn watch(
            self: &RustWatcher,
            addr: *const u8,
            len: usize,
            name: &str,
            has_metadata: bool,
            metadata: &str,
        ) -> Result<u32>;
        /// Unwatches a region: false if unknown.
        fn unwatch(self: &RustWatcher, id: u32) -> Result<bool>;
        /// Sets the callback.
        fn set_callback(self: &RustWatcher, callback: UniquePtr<CallbackHolder>) -> Result<()>;
        /// Clears the callback.
        fn clear_callback(self: &RustWatcher) -> Result<()>;
        /// Detects changes now.
        fn check_changes(self: &RustWatcher) -> Result<Vec<FfiEvent>>;
        /// Statistics.
        fn stats(self: &RustWatcher) -> FfiStats;
        /// Closes the watcher.
        fn close(self: &RustWatcher);
        /// Whether it was closed.
        fn is_closed(self: &RustWatcher) -> bool;
        /// The OS page size.
        fn page_size() -> usize;
    }

    unsafe extern "C++" {
        include!("memwatch/callback.h");

        /// The C++ callback of one watcher.
        type CallbackHolder;

        /// Calls it; a C++ exception becomes Err (caught by cxx, never unwinds into Rust).
        fn invoke(self: &CallbackHolder, event: &FfiEvent) -> Result<()>;
    }
}

// SAFETY: a CallbackHolder is immutable after construction (it only holds a
// std::function, called through a const member) and the core calls a
// watcher's callback from one delivery thread, one event at a time; the C++
// API documents that the callable must be safe to call from that thread.
unsafe impl Send for ffi::CallbackHolder {}
// SAFETY: see Send above: no shared mutable state is reached through `&CallbackHolder`.
unsafe impl Sync for ffi::CallbackHolder {}

/// An error as it crosses the bridge: `"[code] message"`.
#[derive(Debug)]
pub struct BridgeError {
    code: i32,
    message: String,
}

impl fmt::Display for BridgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.code, self.message)
    }
}

impl From<Error> for BridgeError {
    fn from(e: Error) -> Self {
        BridgeError { code: e.code(), message: e.to_string() }
    }
}

/// Code of a caught panic (the C ABI's MEMWATCH_ERR_INTERNAL).
const ERR_INTERNAL: i32 = -8;
/// Code of an unreachable database (the C ABI's MEMWATCH_ERR_DATABASE).
const ERR_DATABASE: i32 = -9;

/// The Rust side of `memwatch::Recorder`.
pub struct RustRecorder {
    inner: memwatch_record::Recorder,
}

impl RustWatcher {
    /// Starts a recorder on this watcher (see memwatch_record::record_to).
    pub fn record_to(&self, url: &str) -> Result<Box<RustRecorder>, BridgeError> {
        use memwatch_record::RecordError;
        match catch_unwind(AssertUnwindSafe(|| memwatch_record::record_to(&self.inner, url))) {
            Ok(Ok(inner)) => Ok(Box::new(RustRecorder { inner })),
            Ok(Err(e)) => {
                let code = match &e {
                    RecordError::InvalidUrl(_) => Error::InvalidArgument(String::new()).code(),
                    RecordError::Closed => Error::Closed.code(),
                    RecordError::Database(_) => ERR_DATABASE,
                };
                Err(BridgeError { code, message: e.to_string() })
            }
            Err(_) => Err(BridgeError {
                code: ERR_INTERNAL,
                message: "internal error (caught panic) in record_to".into(),
            }),
        }
    }
}

impl RustRecorder {
    /// The counters now.
    pub fn recorder_stats(&self) -> ffi::FfiRecorderStats {
        let s = self.inner.stats();
        ffi::FfiRecorderStats {
            written: s.written,
            dropped: s.dropped,
            abandoned: s.abandoned,
            queued: s.queued,
            batches: s.batches,
            reconnects: s.reconnects,
            connected: s.connected,
            recording_id: s.recording_id,
        }
    }

    /// Waits until everything queued before the call is written.
    pub fn recorder_flush(&self, timeout_ms: u64) -> bool {
        self.inner.flush(std::time::Duration::from_millis(timeout_ms))
    }

    /// Stops recording after writing what is queued. Idempotent.
    pub fn recorder_close(&self) {
        self.inner.close();
    }
}

/// Runs `f`, turning a panic into an internal error so none reaches cxx (which would abort).
fn guarded<T>(f: impl FnOnce() -> Result<T, Error>) -> Result<T, BridgeError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(BridgeError::from),
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(BridgeError {
                code: ERR_INTERNAL,
                message: format!("internal error (caught panic): {what}"),
            })
        }
    }
}

thread_local! {
    /// Address of the core watcher whose callback this thread runs, or 0.
    static IN_CALLBACK_OF: Cell<usize> = const { Cell::new(0) };
}

/// The Rust side of `memwatch::Watcher`.
pub struct RustWatcher {
    inner: Arc<Watcher>,
    /// C++ exceptions thrown by callbacks (added to the core's count).
    cpp_errors: Arc<AtomicU64>,
}

/// The engine's default options, in the bridge's units.
pub fn default_options() -> ffi::FfiOptions {
    let d = Options::default();
    ffi::FfiOptions {
        backend: d.backend.name().to_owned(),
        writable_window_ms: d.writable_window.as_millis() as u64,
        poll_interval_ms: d.poll_interval.as_millis() as u64,
        max_value_bytes: d.max_value_bytes,
        preview_bytes: d.preview_bytes,
        ring_capacity: d.ring_capacity,
        snapshots: d.snapshots,
    }
}

/// Creates a watcher from bridge options (adapter id C++); the engine
/// validates them ([`Options::validate`]).
pub fn new_watcher(o: &ffi::FfiOptions) -> Result<Box<RustWatcher>, BridgeError> {
    guarded(|| {
        let options = Options {
            backend: Backend::from_name(&o.backend)?,
            writable_window: Duration::from_millis(o.writable_window_ms),
            poll_interval: Duration::from_millis(o.poll_interval_ms),
            max_value_bytes: o.max_value_bytes,
            preview_bytes: o.preview_bytes,
            ring_capacity: o.ring_capacity,
            snapshots: o.snapshots,
            adapter_id: memwatch_core::ADAPTER_CPP,
            ..Options::default()
        };
        Ok(Box::new(RustWatcher {
            inner: Arc::new(Watcher::new(options)?),
            cpp_errors: Arc::new(AtomicU64::new(0)),
        }))
    })
}

/// Converts a core event for the bridge.
pub fn to_ffi(e: &ChangeEvent) -> ffi::FfiEvent {
    ffi::FfiEvent {
        seq: e.seq,
        timestamp_ns: e.timestamp_ns,
        adapter_id: e.adapter_id,
        region_id: e.region_id,
        variable_name: e.variable_name.clone(),
        has_thread_id: e.where_.thread_id.is_some(),
        thread_id: e.where_.thread_id.unwrap_or(0),
        has_fault_ip: e.where_.fault_ip.is_some(),
        fault_ip: e.where_.fault_ip.unwrap_or(0),
        file: e.where_.file.clone(),
        function: e.where_.function.clone(),
        line: e.where_.line,
        how_big: e.how_big,
        changed_ranges: e
            .changed_ranges
            .iter()
            .map(|r| ffi::FfiRange { offset: r.offset, length: r.len })
            .collect(),
        old_preview: e.old_preview.clone(),
        new_preview: e.new_preview.clone(),
        has_old_value: e.old_value.is_some(),
        old_value: e.old_value.clone().unwrap_or_default(),
        has_new_value: e.new_value.is_some(),
        new_value: e.new_value.clone().unwrap_or_default(),
        has_storage_key_old: e.storage_key_old.is_some(),
        storage_key_old: e.storage_key_old.clone().unwrap_or_default(),
        has_storage_key_new: e.storage_key_new.is_some(),
        storage_key_new: e.storage_key_new.clone().unwrap_or_default(),
        has_metadata: e.metadata.is_some(),
        metadata: e.metadata.clone().unwrap_or_default(),
        coalesced: e.coalesced,
    }
}

impl RustWatcher {
    /// Watches a range (see the bridge declaration for the safety contract).
    ///
    /// # Safety
    /// `[addr, addr+len)` stays mapped until unwatched or the watcher is closed.
    pub unsafe fn watch(
        &self,
        addr: *const u8,
        len: usize,
        name: &str,
        has_metadata: bool,
        metadata: &str,
    ) -> Result<u32, BridgeError> {
        guarded(|| {
            let md = has_metadata.then_some(metadata);
            // SAFETY: the caller (memwatch.hpp's Watcher::watch, documented
            // for its users) keeps the range mapped until unwatch/close; the
            // core rejects NULL, empty, unmapped and read-only ranges.
            unsafe { self.inner.watch(addr, len, name, md) }
        })
    }

    /// Unwatches a region.
    pub fn unwatch(&self, id: u32) -> Result<bool, BridgeError> {
        guarded(|| self.inner.unwatch(id))
    }

    /// Sets the callback; a null holder clears it.
    pub fn set_callback(&self, holder: UniquePtr<ffi::CallbackHolder>) -> Result<(), BridgeError> {
        if holder.is_null() {
            return self.clear_callback();
        }
        let errors = Arc::clone(&self.cpp_errors);
        let me = Arc::as_ptr(&self.inner) as usize;
        let holder = Arc::new(holder);
        let cb = move |e: &ChangeEvent| {
            let ev = to_ffi(e);
            let prev = IN_CALLBACK_OF.with(|c| c.replace(me));
            if let Some(h) = holder.as_ref().as_ref() {
                if h.invoke(&ev).is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            IN_CALLBACK_OF.with(|c| c.set(prev));
        };
        guarded(|| self.inner.set_callback(Some(Arc::new(cb))))
    }

    /// Clears the callback.
    pub fn clear_callback(&self) -> Result<(), BridgeError> {
        guarded(|| self.inner.set_callback(None))
    }

    /// Detects changes now.
    pub fn check_changes(&self) -> Result<Vec<ffi::FfiEvent>, BridgeError> {
        guarded(|| Ok(self.inner.check_changes()?.iter().map(to_ffi).collect()))
    }

    /// Statistics (never fails; a caught panic gives zeros with backend "error").
    pub fn stats(&self) -> ffi::FfiStats {
        let cpp_errors = self.cpp_errors.load(Ordering::Relaxed);
        let s = catch_unwind(AssertUnwindSafe(|| self.inner.stats())).unwrap_or_default();
        ffi::FfiStats {
            backend: s.backend.map_or_else(|| "none".to_owned(), |b| b.name().to_owned()),
            backend_reason: s.backend_reason,
            regions: s.regions,
            protected_pages: s.protected_pages,
            faults: s.faults,
            events: s.events,
            fallback_regions: s.fallback_regions,
            gone_regions: s.gone_regions,
            shared_regions: s.shared_regions,
            reprotect_failures: s.reprotect_failures,
            coalesced_events: s.coalesced_events,
            dropped_wheres: s.dropped_wheres,
            native_bytes: s.native_bytes,
            snapshot_bytes: s.snapshot_bytes,
            pending_events: s.pending_events,
            callback_errors: s.callback_errors + cpp_errors,
            latency_p50_ns: s.latency_p50_ns,
            latency_p99_ns: s.latency_p99_ns,
        }
    }

    /// Closes the watcher (idempotent).
    pub fn close(&self) {
        let _ = catch_unwind(AssertUnwindSafe(|| self.inner.close()));
    }

    /// Whether the watcher was closed.
    pub fn is_closed(&self) -> bool {
        catch_unwind(AssertUnwindSafe(|| self.inner.is_closed())).unwrap_or(true)
    }
}

impl Drop for RustWatcher {
    fn drop(&mut self) {
        let _ = catch_unwind(AssertUnwindSafe(|| {
            self.inner.close();
            let in_own_callback =
                IN_CALLBACK_OF.with(|c| c.get() == Arc::as_ptr(&self.inner) as usize);
            if in_own_callback {
                // Destroyed from inside its own callback: let the last
                // reference go on another thread so the delivery thread is
                // never asked to wait for itself.
                let inner = Arc::clone(&self.inner);
                let _ = std::thread::Builder::new()
                    .name("memwatch-release".into())
                    .spawn(move || drop(inner));
            }
        }));
    }
}

/// The operating system's page size.
pub fn page_size() -> usize {
    catch_unwind(memwatch_core::page_size).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_their_code() {
        let o = ffi::FfiOptions {
            backend: "nope".into(),
            writable_window_ms: 5,
            poll_interval_ms: 100,
            max_value_bytes: 4096,
            preview_bytes: 256,
            ring_capacity: 1024,
            snapshots: true,
        };
        let e = new_watcher(&o).err().expect("unknown backend must fail");
        assert!(e.to_string().starts_with("[-1] invalid argument"), "{e}");
    }

    #[test]
    fn events_convert_field_by_field() {
        let o = ffi::FfiOptions {
            backend: "poll".into(),
            writable_window_ms: 5,
            poll_interval_ms: 100,
            max_value_bytes: 4096,
            preview_bytes: 4,
            ring_capacity: 1024,
            snapshots: true,
        };
        let w = new_watcher(&o).unwrap();
        let mut buf = vec![0u8; 16];
        // SAFETY: buf outlives the region (the watcher is closed before buf drops).
        let id = unsafe { w.watch(buf.as_ptr(), buf.len(), "b", true, "m") }.unwrap();
        buf[2] = 7;
        let evs = w.check_changes().unwrap();
        assert_eq!(evs.len(), 1);
        let e = &evs[0];
        assert_eq!(e.region_id, id);
        assert_eq!(e.adapter_id, memwatch_core::ADAPTER_CPP);
        assert_eq!(e.changed_ranges, vec![ffi::FfiRange { offset: 2, length: 1 }]);
        assert!(e.has_old_value && e.has_new_value && e.has_metadata && !e.has_thread_id);
        assert_eq!(e.new_preview, vec![0, 0, 7, 0]);
        assert_eq!(e.metadata, "m");
        w.close();
        drop(buf);
    }
}
