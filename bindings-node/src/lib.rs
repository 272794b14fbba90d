//! Node.js binding of memwatch (napi-rs).
//!
//! This crate is the native half of the `memwatch` npm package. It is kept
//! deliberately small: `index.js` validates arguments, builds the
//! EventEmitter / async-iterator API and chooses JavaScript error classes;
//! this file only
//!
//! - maps a `Uint8Array` (every target kind is turned into one by `index.js`)
//!   to `(address, length)` and keeps it alive with a strong `napi_ref` until
//!   the region is unwatched or the watcher is closed,
//! - forwards the engine's events from its delivery thread to the JavaScript
//!   thread: the engine callback pushes the event into a queue and wakes the
//!   JS thread through a *weak* threadsafe function (it never keeps the event
//!   loop alive); JS then drains the queue with [`NativeWatcher::take_queued`].
//!   The queue is bounded like the engine's own (the same `EventQueue`): however
//!   long the JS thread is busy, it holds at most `QUEUE_CAP` events (or one
//!   per region), later changes of a region being merged into its event,
//! - hands events to JavaScript unconverted ([`NativeChangeEvent`], whose
//!   fields `index.js` converts when first read) and statistics as plain objects,
//! - attaches a MemStream value store to a watcher by name and reads values
//!   back by key ([`NativeStore`], the public `Store` class),
//! - closes every watcher of a Node.js environment (main thread or worker)
//!   when that environment is torn down, before its ArrayBuffers are freed.
//!
//! Errors thrown from here carry a `[ERR_MEMWATCH_*]` prefix that `index.js`
//! turns into the `code` property of the error it rethrows.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

use std::collections::HashMap;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use memwatch_core as mw;
use memwatch_core::store as ms;
use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{sys, CleanupEnvHook, Env, JsValue};
use napi_derive::napi;

/// The weak, fire-and-forget threadsafe function that wakes the JS thread.
/// `CalleeHandled = false` (no error-first argument), `Weak = true` (unref'd:
/// it does not keep the event loop alive).
type WakeFn = ThreadsafeFunction<(), Unknown<'static>, (), Status, false, true>;

/// Locks a mutex, ignoring poisoning (nothing here panics while holding one,
/// and a poisoned queue is still a valid queue).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Converts an engine error to a JS-bound error whose message starts with the
/// stable code that `index.js` exposes as `error.code`.
fn to_napi_err(e: mw::Error) -> Error {
    // ERR_MEMWATCH_INVALID_ARGUMENT, ..._UNMAPPED, ..._READ_ONLY, ..._OVERLAP,
    // ..._UNSUPPORTED, ..._CLOSED, ..._OS: the engine's kind names.
    let code = format!("ERR_MEMWATCH_{}", e.kind_name().to_ascii_uppercase());
    Error::new(Status::GenericFailure, format!("[{code}] {e}"))
}

/// An error with one of this binding's own codes.
fn coded_err(code: &str, msg: impl std::fmt::Display) -> Error {
    Error::new(Status::GenericFailure, format!("[{code}] {msg}"))
}

/// Turns a napi status into a `Result`.
fn check(status: sys::napi_status, what: &str) -> Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(coded_err("ERR_MEMWATCH_NODE_API", format!("{what} failed (napi status {status})")))
    }
}

/// Watcher options, already validated and defaulted by `index.js`
/// (absent fields keep the engine's defaults).
#[napi(object)]
pub struct NativeOptions {
    /// "auto", "protect", "writewatch" or "poll".
    pub backend: Option<String>,
    /// Writable window of the protect backend, milliseconds.
    pub writable_window_ms: Option<f64>,
    /// Poll interval of the poll backend, milliseconds.
    pub poll_interval_ms: Option<f64>,
    /// Whole old/new values are carried up to this region size.
    pub max_value_bytes: Option<f64>,
    /// Preview bytes carried in every event.
    pub preview_bytes: Option<f64>,
    /// Process-wide fault ring capacity (used when the engine starts).
    pub ring_capacity: Option<f64>,
    /// Keep snapshots (old values and exact ranges).
    pub snapshots: Option<bool>,
    /// Locate every writer (thread, function, file, line, stack; protect only).
    pub locate_writers: Option<bool>,
    /// Frames captured per located write (1..=32).
    pub stack_depth: Option<f64>,
}

/// A run of changed bytes relative to the start of the watched view.
#[napi(object)]
pub struct NativeRange {
    /// Offset from the start of the region, bytes.
    pub offset: f64,
    /// Number of bytes.
    pub length: f64,
}

/// One frame of a writer's stack (the public `Frame`).
#[napi(object)]
pub struct NativeFrame {
    /// Instruction address (the write itself for a native first frame).
    pub ip: BigInt,
    /// Executable, shared library or (JS frames) script; "" when unknown.
    pub module: String,
    /// `ip` relative to the module's load address (or the JS function's code start).
    pub module_offset: f64,
    /// Function name; "" when unknown.
    pub function: String,
    /// Source file; "" when unknown.
    pub file: String,
    /// Source line; 0 when unknown.
    pub line: u32,
    /// Inlined into the next frame.
    pub inlined: bool,
}

impl From<&mw::Frame> for NativeFrame {
    fn from(f: &mw::Frame) -> Self {
        NativeFrame {
            ip: BigInt::from(f.ip),
            module: f.module.clone(),
            module_offset: f.module_offset as f64,
            function: f.function.clone(),
            file: f.file.clone(),
            line: f.line,
            inlined: f.inlined,
        }
    }
}

/// Where a change was made, as far as the backend can tell (the public `Where`).
#[napi(object, use_nullable = true)]
pub struct NativeWhere {
    /// Kernel thread id of the writer (protect backend), else null.
    pub thread_id: Option<u32>,
    /// Name of the writing thread ("" unless located).
    pub thread_name: String,
    /// Instruction pointer of the write, else null.
    pub fault_ip: Option<BigInt>,
    /// Module of the user frame ("" unless located).
    pub module: String,
    /// Offset of the user frame in `module`.
    pub module_offset: f64,
    /// Source file of the user frame ("" unless located).
    pub file: String,
    /// Function of the user frame ("" unless located).
    pub function: String,
    /// Source line of the user frame (0 = unknown).
    pub line: u32,
    /// First writes to other pages merged into this event without a location.
    pub unattributed_faults: u32,
    /// The writer's stack, innermost first (empty unless located).
    pub stack: Vec<NativeFrame>,
}

impl From<&mw::Where> for NativeWhere {
    fn from(w: &mw::Where) -> Self {
        NativeWhere {
            thread_id: w.thread_id,
            thread_name: w.thread_name.clone(),
            fault_ip: w.fault_ip.map(BigInt::from),
            module: w.module.clone(),
            module_offset: w.module_offset as f64,
            file: w.file.clone(),
            function: w.function.clone(),
            line: w.line,
            unattributed_faults: w.unattributed_faults,
            stack: w.stack.iter().map(NativeFrame::from).collect(),
        }
    }
}

/// One change event, kept as the engine made it until JavaScript reads a
/// field: `index.js` gives the public `ChangeEvent` a getter per field that
/// calls the getter of the same name here once, then keeps the value.
#[napi]
pub struct NativeChangeEvent {
    inner: mw::ChangeEvent,
}

#[napi]
impl NativeChangeEvent {
    /// Process-wide sequence number.
    #[napi(getter)]
    pub fn seq(&self) -> f64 {
        self.inner.seq as f64
    }

    /// CLOCK_MONOTONIC nanoseconds.
    #[napi(getter)]
    pub fn timestamp_ns(&self) -> BigInt {
        BigInt::from(self.inner.timestamp_ns)
    }

    /// Adapter id (3 = Node.js).
    #[napi(getter)]
    pub fn adapter_id(&self) -> u32 {
        self.inner.adapter_id
    }

    /// Region id returned by watch().
    #[napi(getter)]
    pub fn region_id(&self) -> u32 {
        self.inner.region_id
    }

    /// Name given to watch().
    #[napi(getter)]
    pub fn variable_name(&self) -> String {
        self.inner.variable_name.clone()
    }

    /// Who wrote it, where known (the public `Where`).
    #[napi(getter, js_name = "where")]
    pub fn where_(&self) -> NativeWhere {
        NativeWhere::from(&self.inner.where_)
    }

    /// The `where` of an event the engine did not locate (no stack, no
    /// thread name: cheap to convert, so `index.js` sets it up front), or
    /// null for a located one (converted when first read).
    #[napi(getter)]
    pub fn unlocated_where(&self) -> Option<NativeWhere> {
        let w = &self.inner.where_;
        (w.stack.is_empty() && w.thread_name.is_empty()).then(|| NativeWhere::from(w))
    }

    /// Region size in bytes.
    #[napi(getter)]
    pub fn how_big(&self) -> f64 {
        self.inner.how_big as f64
    }

    /// Changed byte ranges, ascending.
    #[napi(getter)]
    pub fn changed_ranges(&self) -> Vec<NativeRange> {
        let ranges = &self.inner.changed_ranges;
        ranges
            .iter()
            .map(|r| NativeRange { offset: r.offset as f64, length: r.len as f64 })
            .collect()
    }

    /// First preview bytes before the change.
    #[napi(getter)]
    pub fn old_preview(&self) -> Buffer {
        self.inner.old_preview.clone().into()
    }

    /// First preview bytes after the change.
    #[napi(getter)]
    pub fn new_preview(&self) -> Buffer {
        self.inner.new_preview.clone().into()
    }

    /// Whole old value, or null.
    #[napi(getter)]
    pub fn old_value(&self) -> Option<Buffer> {
        self.inner.old_value.clone().map(Into::into)
    }

    /// Whole new value, or null.
    #[napi(getter)]
    pub fn new_value(&self) -> Option<Buffer> {
        self.inner.new_value.clone().map(Into::into)
    }

    /// Value-store key of a large old value (while the store holds it), or null.
    #[napi(getter)]
    pub fn storage_key_old(&self) -> Option<String> {
        self.inner.storage_key_old.clone()
    }

    /// Value-store key of a large new value (when a value store took it), or null.
    #[napi(getter)]
    pub fn storage_key_new(&self) -> Option<String> {
        self.inner.storage_key_new.clone()
    }

    /// Metadata given to watch(), or null.
    #[napi(getter)]
    pub fn metadata(&self) -> Option<String> {
        self.inner.metadata.clone()
    }

    /// Changes this event stands for (more than 1 when merged in a full queue).
    #[napi(getter)]
    pub fn coalesced(&self) -> u32 {
        self.inner.coalesced
    }
}

impl From<mw::ChangeEvent> for NativeChangeEvent {
    fn from(inner: mw::ChangeEvent) -> Self {
        NativeChangeEvent { inner }
    }
}

/// JS frames of located writes: the V8 half is src/v8_frames.cc.
mod js_frames {
    use std::ffi::{c_char, c_void, CStr};
    use std::sync::{Arc, Once};

    use memwatch_core as mw;
    use napi::Env;

    /// `mw_v8_code` of src/v8_frames.cc.
    #[repr(C)]
    struct V8Code {
        start: u64,
        line: i32,
        kind: i32,
        function: [c_char; 256],
        script: [c_char; 1024],
    }

    extern "C" {
        fn mw_v8_enable() -> *mut c_void;
        fn mw_v8_disable(isolate: *mut c_void);
        fn mw_v8_capture(
            uc: *mut c_void,
            out: *mut u64,
            max_words: usize,
            ctx: *mut c_void,
        ) -> usize;
        fn mw_v8_lookup(addr: u64, out: *mut V8Code) -> i32;
    }

    fn text(buf: &[c_char]) -> String {
        // SAFETY: mw_v8_lookup NUL-terminates both buffers (snprintf).
        unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()
    }

    /// The JS code holding `addr`, as a frame; None for V8's own code
    /// (builtins, stubs, bytecode handlers) and unknown addresses.
    fn js_frame(addr: u64) -> Option<(u64, mw::Frame)> {
        // SAFETY: all-zero is a valid V8Code; lookup fills it on success.
        let mut c: V8Code = unsafe { std::mem::zeroed() };
        // SAFETY: c is a live, writable V8Code.
        if unsafe { mw_v8_lookup(addr, &mut c) } != 1 || c.kind != 1 {
            return None;
        }
        let script = text(&c.script);
        let function = match text(&c.function) {
            f if f.is_empty() => "(anonymous)".to_string(),
            f => f,
        };
        let frame = mw::Frame {
            ip: addr,
            module: script.clone(),
            module_offset: addr.wrapping_sub(c.start),
            function,
            file: script,
            line: c.line.max(0) as u32,
            inlined: false,
        };
        Some((c.start, frame))
    }

    /// The JS frames of what mw_v8_capture wrote: the faulting pc when it
    /// is in JS code (optimized code writing directly), then the frames
    /// GetStackSample found; unknown addresses are left to the native stack.
    fn resolve(words: &[u64]) -> Vec<mw::Frame> {
        let Some((&pc, sampled)) = words.split_first() else { return Vec::new() };
        let mut frames: Vec<(u64, mw::Frame)> =
            sampled.iter().filter_map(|&a| js_frame(a)).collect();
        if let Some((start, top)) = js_frame(pc) {
            if frames.first().map(|(s, _)| *s) != Some(start) {
                frames.insert(0, (start, top));
            }
        }
        frames.into_iter().map(|(_, f)| f).collect()
    }

    /// Turns JS frames on for the calling thread's isolate (a locating
    /// watcher is being made on it): the process-wide capture hook once,
    /// this isolate's code map once, stopped when its environment ends.
    pub fn enable(env: &Env) -> napi::Result<()> {
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            mw::set_runtime_frames(Some(mw::RuntimeFrames {
                capture: mw_v8_capture,
                ctx: 0,
                resolve: Arc::new(resolve),
            }));
        });
        // SAFETY: called on a JS thread, which has an entered isolate.
        let isolate = unsafe { mw_v8_enable() };
        if !isolate.is_null() {
            let isolate = isolate as usize;
            env.add_env_cleanup_hook(isolate, |i| {
                // SAFETY: the environment's teardown runs on its own thread
                // before its isolate is disposed; i came from mw_v8_enable.
                unsafe { mw_v8_disable(i as *mut c_void) }
            })?;
        }
        Ok(())
    }
}

/// The engine's snake_case field name in JavaScript's camelCase
/// (`fallback_regions` -> `fallbackRegions`, `latency_p50_ns` -> `latencyP50Ns`).
fn camel_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// State shared between the JS thread and the engine's delivery thread.
struct Shared {
    /// The engine watcher.
    watcher: mw::Watcher,
    /// Events the engine delivered to our callback, waiting for JS: bounded
    /// like the engine's queue (`EventQueue`: past `QUEUE_CAP`, a region's
    /// change merges into its queued event), so a busy JS thread costs
    /// bounded memory and loses no change.
    queue: Mutex<mw::EventQueue>,
    /// True while a wake-up is queued on the threadsafe function and JS has
    /// not drained the queue yet (coalesces wake-ups).
    wake_pending: AtomicBool,
    /// The wake function while delivery mode is on.
    wake: Mutex<Option<Arc<WakeFn>>>,
    /// Set by the environment cleanup hook: the Node.js environment is gone.
    env_gone: AtomicBool,
}

impl Shared {
    /// Engine-side callback body (delivery thread): queue and wake JS once.
    fn on_event(&self, e: &mw::ChangeEvent) {
        lock(&self.queue).push(e.clone());
        self.wake_js();
    }

    /// Schedules one call of the JS wake function unless one is pending.
    fn wake_js(&self) {
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            let wake = lock(&self.wake).clone();
            match wake {
                // NonBlocking on an unbounded queue never waits for the JS
                // thread, so the JS thread may block in check_changes() while
                // the delivery thread is here without deadlocking. A failed
                // call (environment closing) leaves the events queued.
                Some(w) => {
                    if w.call((), ThreadsafeFunctionCallMode::NonBlocking) != Status::Ok {
                        self.wake_pending.store(false, Ordering::Release);
                    }
                }
                None => self.wake_pending.store(false, Ordering::Release),
            }
        }
    }

    /// Takes every queued event (JS thread).
    fn take_queued(&self) -> Vec<mw::ChangeEvent> {
        self.wake_pending.store(false, Ordering::Release);
        lock(&self.queue).take_all()
    }

    /// Closes the engine watcher and drops the wake function (releasing the
    /// threadsafe function). Idempotent; callable from any thread.
    fn shutdown(&self) {
        self.watcher.close();
        lock(&self.wake).take();
        lock(&self.queue).take_all();
    }
}

/// A strong reference to a watched view, deleted on unwatch/close.
struct KeepAlive(sys::napi_ref);

/// The native watcher behind `MemoryWatcher` (not part of the public API:
/// use `MemoryWatcher` from `index.js`).
#[napi(custom_finalize)]
pub struct NativeWatcher {
    shared: Arc<Shared>,
    /// region id -> strong reference to the watched Uint8Array.
    keep_alive: HashMap<u32, KeepAlive>,
    /// Closes the engine watcher if the environment is torn down first.
    cleanup_hook: Option<CleanupEnvHook<Arc<Shared>>>,
}

impl NativeWatcher {
    /// Deletes the keep-alive references of every region.
    fn release_all(&mut self, env: sys::napi_env) {
        if self.shared.env_gone.load(Ordering::Acquire) {
            // Node.js deletes outstanding references itself at teardown.
            self.keep_alive.clear();
            return;
        }
        for (_, r) in self.keep_alive.drain() {
            // SAFETY: r.0 was created by napi_create_reference in this
            // environment (same JS thread) and is deleted exactly once,
            // here, after the engine stopped watching its memory.
            unsafe { sys::napi_delete_reference(env, r.0) };
        }
    }

    /// Close everything: engine watcher, wake function, keep-alive refs,
    /// environment hook. Idempotent.
    fn close_with(&mut self, env: &Env) {
        self.shared.shutdown();
        self.release_all(env.raw());
        if let Some(hook) = self.cleanup_hook.take() {
            if !self.shared.env_gone.load(Ordering::Acquire) {
                let _ = env.remove_env_cleanup_hook(hook);
            }
        }
    }
}

impl ObjectFinalize for NativeWatcher {
    fn finalize(mut self, env: Env) -> Result<()> {
        self.close_with(&env);
        Ok(())
    }
}

#[napi]
impl NativeWatcher {
    /// Creates an engine watcher with the given options.
    #[napi(constructor)]
    pub fn new(env: Env, options: NativeOptions) -> Result<Self> {
        let mut o = mw::Options { adapter_id: mw::ADAPTER_NODE, ..mw::Options::default() };
        if let Some(b) = options.backend.as_deref() {
            o.backend = mw::Backend::from_name(b).map_err(to_napi_err)?;
        }
        let ms = |v: f64, what: &str| mw::Options::millis(what, v).map_err(to_napi_err);
        let count = |v: f64, what: &str| -> Result<usize> {
            if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v <= usize::MAX as f64 {
                Ok(v as usize)
            } else {
                Err(coded_err(
                    "ERR_MEMWATCH_INVALID_ARGUMENT",
                    format!("{what} must be a non-negative integer"),
                ))
            }
        };
        if let Some(v) = options.writable_window_ms {
            o.writable_window = ms(v, "writableWindowMs")?;
        }
        if let Some(v) = options.poll_interval_ms {
            o.poll_interval = ms(v, "pollIntervalMs")?;
        }
        if let Some(v) = options.max_value_bytes {
            o.max_value_bytes = count(v, "maxValueBytes")?;
        }
        if let Some(v) = options.preview_bytes {
            o.preview_bytes = count(v, "previewBytes")?;
        }
        if let Some(v) = options.ring_capacity {
            o.ring_capacity = count(v, "ringCapacity")?;
        }
        if let Some(v) = options.snapshots {
            o.snapshots = v;
        }
        if let Some(v) = options.locate_writers {
            o.locate_writers = v;
        }
        if let Some(v) = options.stack_depth {
            o.stack_depth = count(v, "stackDepth")?;
        }
        let locate = o.locate_writers;
        let watcher = mw::Watcher::new(o).map_err(to_napi_err)?;
        if locate {
            js_frames::enable(&env)?;
        }
        let shared = Arc::new(Shared {
            watcher,
            queue: Mutex::new(mw::EventQueue::new()),
            wake_pending: AtomicBool::new(false),
            wake: Mutex::new(None),
            env_gone: AtomicBool::new(false),
        });
        let hook = env.add_env_cleanup_hook(shared.clone(), |s: Arc<Shared>| {
            // The environment (main thread or worker) is going away: stop
            // watching before its ArrayBuffers are freed.
            s.env_gone.store(true, Ordering::Release);
            s.shutdown();
        })?;
        Ok(NativeWatcher { shared, keep_alive: HashMap::new(), cleanup_hook: Some(hook) })
    }

    /// Watches exactly the bytes of `view` (a Uint8Array) and returns the region id.
    #[napi]
    pub fn watch(
        &mut self,
        env: Env,
        view: Unknown,
        name: String,
        metadata: Option<String>,
    ) -> Result<u32> {
        let raw_env = env.raw();
        let value = view.raw();
        let mut kind: sys::napi_typedarray_type = 0;
        let mut length: usize = 0;
        let mut data: *mut std::ffi::c_void = ptr::null_mut();
        let mut arraybuffer: sys::napi_value = ptr::null_mut();
        let mut byte_offset: usize = 0;
        // SAFETY: raw_env and value come from the current call on the JS
        // thread; every out-pointer points to a live local. Node checks that
        // value is a TypedArray and returns napi_invalid_arg otherwise.
        check(
            unsafe {
                sys::napi_get_typedarray_info(
                    raw_env,
                    value,
                    &mut kind,
                    &mut length,
                    &mut data,
                    &mut arraybuffer,
                    &mut byte_offset,
                )
            },
            "napi_get_typedarray_info",
        )?;
        if kind != sys::TypedarrayType::uint8_array {
            return Err(coded_err(
                "ERR_MEMWATCH_INVALID_ARGUMENT",
                "internal: expected a Uint8Array",
            ));
        }
        let mut detached = false;
        // SAFETY: arraybuffer was just returned by napi_get_typedarray_info.
        check(
            unsafe { sys::napi_is_detached_arraybuffer(raw_env, arraybuffer, &mut detached) },
            "napi_is_detached_arraybuffer",
        )?;
        if detached {
            return Err(coded_err("ERR_MEMWATCH_DETACHED", "cannot watch a detached ArrayBuffer"));
        }
        if length == 0 || data.is_null() {
            return Err(coded_err("ERR_MEMWATCH_EMPTY", "cannot watch an empty (0-byte) buffer"));
        }
        // Keep the view (and so its ArrayBuffer and backing store) alive for
        // as long as the engine watches it.
        let mut reference: sys::napi_ref = ptr::null_mut();
        // SAFETY: value is a live object of this call; the reference is
        // owned by keep_alive and deleted in unwatch/close/finalize.
        check(
            unsafe { sys::napi_create_reference(raw_env, value, 1, &mut reference) },
            "napi_create_reference",
        )?;
        // SAFETY: [data, data+length) is the backing store of a live,
        // non-resizable ArrayBuffer (index.js rejects resizable ones), which
        // V8 never moves or frees while the strong reference created above
        // exists; that reference is deleted only after the engine stopped
        // watching the region (unwatch, close, finalize, environment
        // teardown). Detaching (transferring) a watched ArrayBuffer is the
        // documented exception that the caller must avoid.
        let res = unsafe {
            self.shared.watcher.watch(data as *const u8, length, &name, metadata.as_deref())
        };
        match res {
            Ok(id) => {
                self.keep_alive.insert(id, KeepAlive(reference));
                Ok(id)
            }
            Err(e) => {
                // SAFETY: created above on this thread, not stored anywhere.
                unsafe { sys::napi_delete_reference(raw_env, reference) };
                Err(to_napi_err(e))
            }
        }
    }

    /// Stops watching a region; false for an unknown or already unwatched id.
    #[napi]
    pub fn unwatch(&mut self, env: Env, id: u32) -> Result<bool> {
        let found = self.shared.watcher.unwatch(id).map_err(to_napi_err)?;
        if let Some(r) = self.keep_alive.remove(&id) {
            // SAFETY: the engine no longer watches this region (unwatch
            // returned), so its memory may go; r.0 belongs to this env.
            unsafe { sys::napi_delete_reference(env.raw(), r.0) };
        }
        Ok(found)
    }

    /// Turns delivery mode on (`wake` is called on the JS thread whenever
    /// events are queued) or off (`null`: events wait for checkChanges()).
    #[napi]
    pub fn set_wake(&mut self, wake: Option<Function<(), Unknown<'static>>>) -> Result<()> {
        match wake {
            Some(f) => {
                let tsfn: WakeFn = f
                    .build_threadsafe_function::<()>()
                    .callee_handled::<false>()
                    .weak::<true>()
                    .build()?;
                *lock(&self.shared.wake) = Some(Arc::new(tsfn));
                let weak = Arc::downgrade(&self.shared);
                let cb: mw::Callback = Arc::new(move |e: &mw::ChangeEvent| {
                    if let Some(s) = weak.upgrade() {
                        s.on_event(e);
                    }
                });
                if let Err(e) = self.shared.watcher.set_callback(Some(cb)) {
                    lock(&self.shared.wake).take();
                    return Err(to_napi_err(e));
                }
                // Events queued while delivery was off (or whose wake-up was
                // skipped) are delivered now too.
                self.shared.wake_pending.store(false, Ordering::Release);
                if !lock(&self.shared.queue).is_empty() {
                    self.shared.wake_js();
                }
            }
            None => {
                let res = self.shared.watcher.set_callback(None);
                lock(&self.shared.wake).take();
                match res {
                    Ok(()) | Err(mw::Error::Closed) => {}
                    Err(e) => return Err(to_napi_err(e)),
                }
            }
        }
        Ok(())
    }

    /// Detects changes now and returns every event not yet handed to JS:
    /// queued ones first, then the engine's (ordered by seq).
    #[napi]
    pub fn check_changes(&self) -> Result<Vec<NativeChangeEvent>> {
        let fresh = self.shared.watcher.check_changes().map_err(to_napi_err)?;
        let mut all = self.shared.take_queued();
        all.extend(fresh);
        all.sort_by_key(|e| e.seq);
        Ok(all.into_iter().map(NativeChangeEvent::from).collect())
    }

    /// The exit flush: with delivery on, detects changes now and waits up to
    /// `timeoutMs` for the engine to hand them to this binding's queue (JS
    /// then takes them with `takeQueued`). False if the time ran out.
    #[napi]
    pub fn flush(&self, timeout_ms: f64) -> Result<bool> {
        let timeout = mw::Options::millis("timeoutMs", timeout_ms).map_err(to_napi_err)?;
        Ok(self.shared.watcher.flush(timeout))
    }

    /// Takes the events queued by the delivery thread (called by the wake function).
    #[napi]
    pub fn take_queued(&self) -> Vec<NativeChangeEvent> {
        self.shared.take_queued().into_iter().map(NativeChangeEvent::from).collect()
    }

    /// Counts one callback/listener exception in stats.callbackErrors.
    #[napi]
    pub fn report_callback_error(&self) {
        self.shared.watcher.report_callback_error();
    }

    /// The watcher's statistics (works after close too): every field of the
    /// engine's `Stats`, camelCased (the public `WatcherStats`).
    #[napi(ts_return_type = "WatcherStats")]
    pub fn stats<'env>(&self, env: &'env Env) -> Result<Object<'env>> {
        let mut s = self.shared.watcher.stats();
        // Events handed over by the engine but not yet taken by JavaScript,
        // and the changes merged into them.
        {
            let inbox = lock(&self.shared.queue);
            s.pending_events += inbox.len();
            s.coalesced_events += inbox.coalesced();
        }
        let mut out = Object::new(env)?;
        for (name, value) in s.fields() {
            match value {
                mw::StatValue::Count(n) => out.set(camel_case(name), n as f64)?,
                mw::StatValue::Text(t) => out.set(camel_case(name), t)?,
            }
        }
        Ok(out)
    }

    /// Closes the watcher: unwatches everything, stops delivery. Idempotent.
    #[napi]
    pub fn close(&mut self, env: Env) {
        self.close_with(&env);
    }

    /// True once close() ran (or the environment was torn down).
    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.shared.watcher.is_closed()
    }

    /// Sends the values of regions larger than maxValueBytes to the MemStream
    /// store `name` (created with an arena of `capacity` bytes and LRU
    /// eviction, or opened as it is if it exists); `null` detaches it.
    /// Attaching stores the current value of every large region (under its current epoch).
    #[napi]
    pub fn set_value_store(&self, name: Option<String>, capacity: f64) -> Result<()> {
        let store = match name {
            None => None,
            Some(name) => {
                let whole = capacity.is_finite() && capacity.fract() == 0.0;
                if !(whole && capacity >= 0.0 && capacity <= u64::MAX as f64) {
                    return Err(coded_err(
                        "ERR_MEMWATCH_STORE_CAPACITY",
                        "capacity must be a non-negative integer",
                    ));
                }
                let store = ms::Store::connect(&name, capacity as u64, ms::FullPolicy::EvictLru)
                    .map_err(store_err)?;
                Some(Arc::new(store))
            }
        };
        self.shared.watcher.set_value_store(store).map_err(to_napi_err)
    }
}

/// Counters of a recorder (the public `RecorderStats`).
#[napi(object)]
pub struct NativeRecorderStats {
    /// Events committed to the database.
    pub written: f64,
    /// Events the full queue could not take (rows in memwatch_losses).
    pub dropped: f64,
    /// Events queued but unwritten when the recorder closed, database down.
    pub abandoned: f64,
    /// Events waiting to be written.
    pub queued: f64,
    /// Transactions committed.
    pub batches: f64,
    /// Connections made again after a loss.
    pub reconnects: f64,
    /// Whether the recorder is connected now.
    pub connected: bool,
    /// The last database error ("" if none).
    pub last_error: String,
    /// This recording in memwatch_recordings, as a decimal string (64-bit).
    pub recording_id: String,
}

/// A running recorder (the public `Recorder` wraps it).
#[napi]
pub struct NativeRecorder {
    inner: memwatch_record::Recorder,
}

#[napi]
impl NativeRecorder {
    /// The counters now.
    #[napi]
    pub fn stats(&self) -> NativeRecorderStats {
        let s = self.inner.stats();
        NativeRecorderStats {
            written: s.written as f64,
            dropped: s.dropped as f64,
            abandoned: s.abandoned as f64,
            queued: s.queued as f64,
            batches: s.batches as f64,
            reconnects: s.reconnects as f64,
            connected: s.connected,
            last_error: s.last_error,
            recording_id: s.recording_id.to_string(),
        }
    }

    /// Waits up to `timeout_ms` until everything queued before the call is written.
    #[napi]
    pub fn flush(&self, timeout_ms: f64) -> bool {
        self.inner.flush(Duration::from_secs_f64(timeout_ms / 1000.0))
    }

    /// Stops recording after writing what is queued. Idempotent.
    #[napi]
    pub fn close(&self) {
        self.inner.close();
    }
}

#[napi]
impl NativeWatcher {
    /// Records every event into SQLite or PostgreSQL (see `MemoryWatcher.recordTo`).
    #[napi]
    pub fn record_to(&self, url: String) -> Result<NativeRecorder> {
        match memwatch_record::record_to(&self.shared.watcher, &url) {
            Ok(inner) => Ok(NativeRecorder { inner }),
            Err(e @ memwatch_record::RecordError::InvalidUrl(_)) => {
                Err(coded_err("ERR_MEMWATCH_RECORD_URL", e))
            }
            Err(e @ memwatch_record::RecordError::Database(_)) => {
                Err(coded_err("ERR_MEMWATCH_DATABASE", e))
            }
            Err(e @ memwatch_record::RecordError::Closed) => {
                Err(coded_err("ERR_MEMWATCH_CLOSED", e))
            }
        }
    }
}

/// Converts a MemStream error to a JS-bound error with a stable code.
fn store_err(e: ms::Error) -> Error {
    let code = match &e {
        ms::Error::InvalidName { .. } => "ERR_MEMWATCH_STORE_NAME",
        ms::Error::NotFound(_) => "ERR_MEMWATCH_STORE_NOT_FOUND",
        ms::Error::InvalidOptions(_) => "ERR_MEMWATCH_STORE_CAPACITY",
        ms::Error::EmptyKey | ms::Error::KeyTooLong { .. } => "ERR_MEMWATCH_STORE_KEY",
        _ => "ERR_MEMWATCH_STORE",
    };
    match e {
        // The store's own message points Rust users at Store::connect.
        ms::Error::NotFound(name) => coded_err(
            code,
            format!("no store named {name:?} exists (watcher.setValueStore(name) creates one)"),
        ),
        e => coded_err(code, e),
    }
}

/// A read handle on a MemStream store (the public `Store` class wraps it).
#[napi]
pub struct NativeStore {
    /// The open store; `None` after close().
    inner: Option<ms::Store>,
}

#[napi]
impl NativeStore {
    /// Opens the existing store `name` (ERR_MEMWATCH_STORE_NOT_FOUND if there is none).
    #[napi(factory)]
    pub fn open(name: String) -> Result<Self> {
        Ok(NativeStore { inner: Some(ms::Store::open(&name).map_err(store_err)?) })
    }

    /// A copy of the value of `key`, or null when the store does not hold it.
    #[napi]
    pub fn get(&self, key: Buffer) -> Result<Option<Buffer>> {
        let store = self
            .inner
            .as_ref()
            .ok_or_else(|| coded_err("ERR_MEMWATCH_STORE_CLOSED", "store is closed"))?;
        Ok(store.get(&key[..]).map_err(store_err)?.map(Buffer::from))
    }

    /// Closes the handle (unmaps the store from this process). Idempotent.
    #[napi]
    pub fn close(&mut self) {
        self.inner.take();
    }
}

/// Removes the store's name: true if it existed, false if there was none.
/// Processes that have it open keep working on it.
#[napi]
pub fn store_unlink(name: String) -> Result<bool> {
    match ms::Store::unlink(&name) {
        Ok(()) => Ok(true),
        Err(ms::Error::NotFound(_)) => Ok(false),
        Err(e) => Err(store_err(e)),
    }
}

/// The engine's queue bound (`QUEUE_CAP`): past this many pending events,
/// changes of a region that has one pending are merged into it.
#[napi]
pub fn queue_cap() -> u32 {
    mw::QUEUE_CAP as u32
}

/// How long the exit hook waits for pending changes to reach the
/// listeners, in milliseconds (`EXIT_FLUSH_TIMEOUT`).
#[napi]
pub fn exit_flush_timeout_ms() -> f64 {
    mw::EXIT_FLUSH_TIMEOUT.as_secs_f64() * 1000.0
}

/// The engine's backend names (`Backend::ALL`), in order.
#[napi]
pub fn backends() -> Vec<&'static str> {
    mw::Backend::ALL.iter().map(|b| b.name()).collect()
}

/// The operating system's page size in bytes.
#[napi]
pub fn page_size() -> u32 {
    mw::page_size() as u32
}

/// True once memwatch's SIGSEGV handler is installed in this process (the
/// first protect watcher installs it; it stays, forwarding foreign faults).
#[napi]
pub fn signal_handler_installed() -> bool {
    mw::signal_handler_installed()
}

/// Finalizer of [`alloc_page_aligned`] buffers: unmaps the pages.
unsafe extern "C" fn unmap_pages(
    _env: sys::napi_env,
    data: *mut std::ffi::c_void,
    hint: *mut std::ffi::c_void,
) {
    // SAFETY: data/hint are the address and mapped length given to
    // napi_create_external_buffer below; Node calls this once, when the
    // Buffer is collected (a watched Buffer cannot be: it is referenced).
    unsafe { munmap(data, hint as usize) };
}

extern "C" {
    fn mmap(
        addr: *mut std::ffi::c_void,
        len: usize,
        prot: i32,
        flags: i32,
        fd: i32,
        off: i64,
    ) -> *mut std::ffi::c_void;
    fn munmap(addr: *mut std::ffi::c_void, len: usize) -> i32;
}

const PROT_READ: i32 = 1;
const PROT_WRITE: i32 = 2;
const MAP_PRIVATE: i32 = 2;
const MAP_ANONYMOUS: i32 = 0x20;

/// Allocates a zero-filled Buffer of `size` bytes that starts on a page
/// boundary and shares its pages with nothing else (its own mapping).
#[napi]
pub fn alloc_page_aligned(env: &Env, size: f64) -> Result<Unknown<'_>> {
    if !(size.is_finite() && size >= 1.0 && size.fract() == 0.0 && size <= (1u64 << 40) as f64) {
        return Err(coded_err("ERR_MEMWATCH_INVALID_ARGUMENT", "size must be an integer >= 1"));
    }
    let size = size as usize;
    let page = mw::page_size();
    let mapped = size.div_ceil(page) * page;
    // SAFETY: a fresh anonymous private mapping; no existing memory is touched.
    let addr = unsafe {
        mmap(ptr::null_mut(), mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    };
    if addr as isize == -1 {
        return Err(coded_err(
            "ERR_MEMWATCH_OS",
            format!("mmap of {mapped} bytes failed: {}", std::io::Error::last_os_error()),
        ));
    }
    let mut result: sys::napi_value = ptr::null_mut();
    // SAFETY: addr..addr+size is our mapping; ownership passes to the
    // Buffer, whose finalizer unmaps exactly `mapped` bytes.
    let status = unsafe {
        sys::napi_create_external_buffer(
            env.raw(),
            size,
            addr,
            Some(unmap_pages),
            mapped as *mut std::ffi::c_void,
            &mut result,
        )
    };
    if status != sys::Status::napi_ok {
        // SAFETY: the Buffer was not created, so we still own the mapping.
        unsafe { munmap(addr, mapped) };
        return Err(coded_err(
            "ERR_MEMWATCH_NODE_API",
            format!("napi_create_external_buffer failed (status {status})"),
        ));
    }
    // SAFETY: result is a valid value just created in this env.
    Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), result) })
}
