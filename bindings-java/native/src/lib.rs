//! JNI bridge of the memwatch Java package (`io.memwatch`).
//!
//! Thin by design: detection is memwatch-core's. This crate maps Java buffers
//! to (address, length), Java callbacks to a delivery thread attached to the
//! JVM, and core errors to Java exceptions.
//!
//! # Shape
//!
//! One Java `MemoryWatcher` owns one [`Handle`]:
//!
//! - `main`: a core [`Watcher`] with the user's backend, for direct buffers
//!   and raw addresses (their memory never moves).
//! - `companion`: a core [`Watcher`] with backend `poll`, created on the first
//!   `byte[]` watch. The JVM moves arrays, so each watched array gets a
//!   page-aligned native *mirror*; the binding copies the array into its
//!   mirror (`GetByteArrayRegion`) every poll interval and before every
//!   `checkChanges()`, and the companion diffs the mirrors.
//! - Both core watchers deliver into one [`Inbox`] (their core callback only
//!   queues a clone of the event). One delivery thread per Java watcher,
//!   attached to the JVM as a daemon, calls the Java callback one event at a
//!   time and refreshes the array mirrors. So callbacks of one watcher are
//!   serialized, core threads never touch the JVM, and the thread attaches
//!   and detaches exactly once.
//! - The value store (`MemoryWatcher.setValueStore`): one MemStream
//!   [`Store`] set on both core watchers (the companion gets it when it is
//!   created later), so events of large `byte[]` regions carry keys too.
//!   `ValueStore` is a separate read handle (`store*` natives at the end).

mod java_frames;

use std::collections::HashMap;
use std::ffi::{c_char, c_void, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, RwLock};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use jni::objects::{
    GlobalRef, JByteArray, JByteBuffer, JClass, JLongArray, JMethodID, JObject, JObjectArray,
    JString, JValue,
};
use jni::signature::{Primitive, ReturnType};
use jni::sys::{jboolean, jint, jlong, jobject, jobjectArray, JNI_FALSE, JNI_TRUE};
use jni::{JNIEnv, JavaVM};
use memwatch_core::store::{Error as StoreError, FullPolicy, Store};
use memwatch_core::{
    Backend, Callback, ChangeEvent, Error as CoreError, EventQueue, Options, StatValue, Watcher,
};

const EVENT_CTOR_SIG: &str = "(JJIILjava/lang/String;IJLjava/lang/String;Ljava/lang/String;IJ[J[B[B[B[BLjava/lang/String;Ljava/lang/String;Ljava/lang/String;ILio/memwatch/ChangeEvent$RawWhere;)V";
const RAW_WHERE_CTOR_SIG: &str =
    "(Ljava/lang/String;Ljava/lang/String;JILjava/lang/String;[Ljava/lang/String;[J)V";
const STATS_CTOR_SIG: &str = "()V";
const DELIVER_SIG: &str = "(Lio/memwatch/ChangeEvent;)Z";

/// Bad input detected by this crate or a dependency (store, recorder): the
/// engine's `invalid_argument` class, so one catch covers both.
const ILLEGAL_ARGUMENT: &str = "io/memwatch/InvalidArgumentException";
const ILLEGAL_STATE: &str = "java/lang/IllegalStateException";
const UNSUPPORTED: &str = "java/lang/UnsupportedOperationException";

/// Classes and method ids resolved once by `Native.init` (on a Java thread,
/// so the application's class loader is the one used).
struct Cache {
    event_class: GlobalRef,
    event_ctor: JMethodID,
    raw_where_class: GlobalRef,
    raw_where_ctor: JMethodID,
    string_class: GlobalRef,
    stats_class: GlobalRef,
    stats_ctor: JMethodID,
    deliver: JMethodID,
    exception_class: GlobalRef,
}

static CACHE: OnceLock<Cache> = OnceLock::new();
static THREAD_COUNTER: AtomicU64 = AtomicU64::new(1);

/// Why a native call failed; turned into a Java exception by [`throw`].
enum Fail {
    /// A core error, mapped by kind.
    Core(CoreError),
    /// A JNI failure; a Java exception may already be pending.
    Jni(jni::errors::Error),
    /// A MemStream store error, mapped by kind.
    Store(StoreError),
    /// A recorder error (`recordTo`), mapped by kind.
    Record(memwatch_record::RecordError),
    /// Bad argument detected here.
    Arg(String),
    /// The watcher is closed.
    Closed,
    /// The `ValueStore` handle is closed.
    StoreClosed,
}

impl From<CoreError> for Fail {
    fn from(e: CoreError) -> Self {
        Fail::Core(e)
    }
}

impl From<jni::errors::Error> for Fail {
    fn from(e: jni::errors::Error) -> Self {
        Fail::Jni(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

type Res<T> = Result<T, Fail>;

fn cache() -> Res<&'static Cache> {
    CACHE.get().ok_or_else(|| Fail::Arg("memwatch native library used before Native.init".into()))
}

/// The Java exception class of each engine error kind ("" = MemWatchException);
/// the one place that maps them (documented in bindings-java/README.md).
fn core_exception_class(e: &CoreError) -> &'static str {
    match e.kind_name() {
        "invalid_argument" => ILLEGAL_ARGUMENT,
        "unmapped" => "io/memwatch/UnmappedException",
        "read_only" => "io/memwatch/ReadOnlyException",
        "overlap" => "io/memwatch/OverlapException",
        "unsupported" => UNSUPPORTED,
        "closed" => ILLEGAL_STATE,
        _ => "",
    }
}

/// Throws the Java exception for `fail`, unless one is already pending.
fn throw(env: &mut JNIEnv, fail: Fail) {
    if env.exception_check().unwrap_or(true) {
        return;
    }
    let (class, msg): (&str, String) = match fail {
        Fail::Core(e) => (core_exception_class(&e), e.to_string()),
        Fail::Jni(e) => ("", format!("JNI call failed: {e}")),
        Fail::Store(e) => match e {
            // The caller's input: a name, key, capacity or store that is not there.
            StoreError::InvalidName { .. }
            | StoreError::NotFound(_)
            | StoreError::EmptyKey
            | StoreError::KeyTooLong { .. }
            | StoreError::ValueTooLarge { .. }
            | StoreError::InvalidOptions(_)
            | StoreError::BufferTooSmall { .. } => (ILLEGAL_ARGUMENT, e.to_string()),
            _ => ("", e.to_string()),
        },
        Fail::Record(e) => match e {
            memwatch_record::RecordError::InvalidUrl(_) => (ILLEGAL_ARGUMENT, e.to_string()),
            memwatch_record::RecordError::Closed => (ILLEGAL_STATE, e.to_string()),
            memwatch_record::RecordError::Database(_) => ("", e.to_string()),
        },
        Fail::Arg(m) => (ILLEGAL_ARGUMENT, m),
        Fail::Closed => (ILLEGAL_STATE, "watcher is closed".into()),
        Fail::StoreClosed => (ILLEGAL_STATE, "store is closed".into()),
    };
    let _ = if class.is_empty() {
        match CACHE.get() {
            Some(c) => env.throw_new(<&JClass>::from(c.exception_class.as_obj()), msg),
            None => env.throw_new("java/lang/RuntimeException", msg),
        }
    } else {
        env.throw_new(class, msg)
    };
}

/// Runs a native method body: a returned failure or a panic becomes a Java
/// exception and the method returns `default` (ignored by the JVM then).
fn run<'local, T>(
    env: &mut JNIEnv<'local>,
    default: T,
    body: impl FnOnce(&mut JNIEnv<'local>) -> Res<T>,
) -> T {
    match catch_unwind(AssertUnwindSafe(|| body(env))) {
        Ok(Ok(v)) => v,
        Ok(Err(fail)) => {
            throw(env, fail);
            default
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            throw(
                env,
                Fail::Core(CoreError::Os(format!("memwatch internal error (panic): {what}"))),
            );
            default
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of our locks leaves plain data behind; go on.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------- inbox ---

/// Events of both core watchers, waiting for the Java callback or for
/// `checkChanges()`.
struct Inbox {
    state: Mutex<InboxState>,
    cv: Condvar,
}

struct InboxState {
    /// Bounded like the engine's own queue (past `QUEUE_CAP`, a region's
    /// change merges into its queued event).
    queue: EventQueue,
    /// Events ever queued.
    pushed: u64,
    /// Events ever taken out (delivered or returned by checkChanges).
    consumed: u64,
    /// The Java `CallbackDispatcher`, when a callback is set.
    dispatcher: Option<GlobalRef>,
    /// The delivery thread is inside the Java callback.
    delivering: bool,
    /// The delivery thread attached to the JVM (or failed to: see `delivery_dead`).
    delivery_started: bool,
    /// The delivery thread could not attach to the JVM: nothing will be delivered.
    delivery_dead: bool,
    closed: bool,
}

impl Inbox {
    fn new() -> Self {
        Inbox {
            state: Mutex::new(InboxState {
                queue: EventQueue::new(),
                pushed: 0,
                consumed: 0,
                dispatcher: None,
                delivering: false,
                delivery_started: false,
                delivery_dead: false,
                closed: false,
            }),
            cv: Condvar::new(),
        }
    }

    fn push(&self, ev: &ChangeEvent) {
        let mut s = lock(&self.state);
        if s.closed {
            return;
        }
        if s.queue.push(ev.clone()) {
            s.pushed += 1;
            self.cv.notify_all();
        }
    }

    fn take_all(s: &mut InboxState) -> Vec<ChangeEvent> {
        let mut out = s.queue.take_all();
        s.consumed += out.len() as u64;
        out.sort_by_key(|e| e.seq);
        out
    }
}

/// The core callback of both core watchers: queue the event, never block on Java.
fn trampoline(inbox: &Arc<Inbox>) -> Callback {
    let inbox = Arc::clone(inbox);
    Arc::new(move |ev: &ChangeEvent| inbox.push(ev))
}

// -------------------------------------------------------------- mirrors ---

/// Page-aligned native copy of a Java byte[], whole pages of its own.
struct MirrorMem {
    ptr: NonNull<u8>,
    layout: std::alloc::Layout,
}

// SAFETY: MirrorMem is a uniquely owned heap allocation; the pointer is only
// dereferenced by JNI copies under the arrays lock and by the core's poll
// backend, which reads it as foreign memory.
unsafe impl Send for MirrorMem {}

impl MirrorMem {
    fn new(len: usize) -> Res<Self> {
        let page = memwatch_core::page_size();
        let size = len.max(1).div_ceil(page) * page;
        let layout = std::alloc::Layout::from_size_align(size, page)
            .map_err(|e| Fail::Arg(format!("array too large to mirror: {e}")))?;
        // SAFETY: layout has a non-zero size (at least one page).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).ok_or_else(|| {
            Fail::Core(CoreError::Os(format!("cannot allocate a {size}-byte mirror")))
        })?;
        Ok(MirrorMem { ptr, layout })
    }
}

impl Drop for MirrorMem {
    fn drop(&mut self) {
        // SAFETY: ptr was returned by alloc_zeroed with this layout and is freed once.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

struct Mirror {
    array: GlobalRef,
    len: usize,
    mem: MirrorMem,
    regions: usize,
}

impl Mirror {
    /// Copies the Java array into the mirror.
    fn refresh(&self, env: &mut JNIEnv) -> Res<()> {
        let raw = env.get_raw();
        // SAFETY: `raw` is the current thread's valid JNIEnv; the global ref
        // keeps a byte[] of exactly `len` elements alive; the mirror holds at
        // least `len` writable bytes. GetByteArrayRegion copies without
        // creating Rust references to the mirror (the core may read it
        // concurrently, as it reads any polled memory).
        unsafe {
            let get = (**raw)
                .GetByteArrayRegion
                .ok_or(Fail::Jni(jni::errors::Error::JNIEnvMethodNotFound("GetByteArrayRegion")))?;
            get(
                raw,
                self.array.as_obj().as_raw(),
                0,
                self.len as jint,
                self.mem.ptr.as_ptr() as *mut i8,
            );
        }
        if env.exception_check()? {
            return Err(Fail::Jni(jni::errors::Error::JavaException));
        }
        Ok(())
    }
}

#[derive(Default)]
struct Arrays {
    companion: Option<Watcher>,
    /// The value store of both core watchers (kept here, under the arrays
    /// lock, so a companion created later gets it too).
    value_store: Option<Arc<Store>>,
    /// Recorders of this watcher (a companion created later is attached to them).
    recorders: Vec<Arc<memwatch_record::Recorder>>,
    mirrors: HashMap<u64, Mirror>,
    next_key: u64,
    region_to_mirror: HashMap<u32, u64>,
}

impl Arrays {
    fn mirror_bytes(&self) -> usize {
        self.mirrors.values().map(|m| m.mem.layout.size()).sum()
    }

    /// Copies every array into its mirror and lets the companion diff them.
    fn sync(&self, env: &mut JNIEnv) -> Res<()> {
        if let Some(companion) = &self.companion {
            for m in self.mirrors.values() {
                m.refresh(env)?;
            }
            companion.check_changes()?;
        }
        Ok(())
    }
}

// --------------------------------------------------------------- handle ---

struct Shared {
    main: Watcher,
    companion_options: Options,
    arrays: Mutex<Arrays>,
    inbox: Arc<Inbox>,
    closed: AtomicBool,
    poll_interval: Duration,
    delivery_thread: OnceLock<ThreadId>,
}

/// What a Java `MemoryWatcher` holds (as a jlong).
struct Handle {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// # Safety
/// `h` must be 0 or a pointer from `create` not yet passed to `destroy`.
/// The Java side guarantees it: the handle is freed only by the Cleaner once
/// the MemoryWatcher is unreachable, and every method fences reachability.
unsafe fn handle<'a>(h: jlong) -> Res<&'a Handle> {
    // SAFETY: see the function's contract.
    unsafe { (h as *const Handle).as_ref() }.ok_or(Fail::Closed)
}

impl Shared {
    fn check_open(&self) -> Res<()> {
        if self.closed.load(Ordering::SeqCst) {
            Err(Fail::Closed)
        } else {
            Ok(())
        }
    }

    fn in_callback(&self, s: &InboxState) -> bool {
        s.delivering && self.delivery_thread.get() == Some(&std::thread::current().id())
    }

    /// Detects changes now: the events (no callback, or called from it), or
    /// the number of events the callback must have consumed before a
    /// check_changes() made now may return (see [`Shared::check_wait`]).
    fn check_start(&self, env: &mut JNIEnv) -> Res<Result<Vec<ChangeEvent>, u64>> {
        self.check_open()?;
        {
            let arrays = lock(&self.arrays);
            arrays.sync(env)?;
        }
        // With the trampoline set this returns nothing; keep whatever it returns anyway.
        let direct = self.main.check_changes()?;
        let mut s = lock(&self.inbox.state);
        if s.dispatcher.is_none() || s.delivery_dead || self.in_callback(&s) {
            let mut out = Inbox::take_all(&mut s);
            out.extend(direct);
            out.sort_by_key(|e| e.seq);
            return Ok(Ok(out));
        }
        if !direct.is_empty() {
            for e in direct {
                if s.queue.push(e) {
                    s.pushed += 1;
                }
            }
            self.inbox.cv.notify_all();
        }
        Ok(Err(s.pushed))
    }

    /// Waits up to `timeout` until the callback consumed `target` events
    /// (or the watcher closed, or the callback was cleared): then the events
    /// check_changes() returns (none, unless the callback was cleared);
    /// `None` if the time ran out first.
    fn check_wait(&self, target: u64, timeout: Duration) -> Option<Vec<ChangeEvent>> {
        let deadline = Instant::now() + timeout;
        let mut s = lock(&self.inbox.state);
        while s.consumed < target && !s.closed && s.dispatcher.is_some() && !s.delivery_dead {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            s = self.inbox.cv.wait_timeout(s, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        if !s.closed && (s.dispatcher.is_none() || s.delivery_dead) {
            return Some(Inbox::take_all(&mut s));
        }
        Some(Vec::new())
    }
}

fn close_handle(env: &mut JNIEnv, h: &Handle) {
    let shared = &h.shared;
    if shared.closed.swap(true, Ordering::SeqCst) {
        return;
    }
    shared.main.close();
    let recorders = {
        let mut arrays = lock(&shared.arrays);
        if let Some(c) = &arrays.companion {
            c.close();
        }
        std::mem::take(&mut arrays.recorders)
    };
    // The watchers are closed: each recording ends once its queue is written.
    for r in recorders {
        r.close();
    }
    let old_dispatcher = {
        let mut s = lock(&shared.inbox.state);
        s.closed = true;
        s.queue.take_all();
        shared.inbox.cv.notify_all();
        s.dispatcher.take()
    };
    drop(old_dispatcher);
    let thread = lock(&h.thread).take();
    if let Some(t) = thread {
        if t.thread().id() != std::thread::current().id() {
            let _ = t.join();
        }
        // Else: close() from inside the callback; the thread ends after it.
    }
    let mut arrays = lock(&shared.arrays);
    arrays.region_to_mirror.clear();
    arrays.mirrors.clear();
    arrays.value_store = None;
    let _ = env; // global refs are deleted by GlobalRef's Drop on this (attached) thread
}

// ------------------------------------------------------------- delivery ---

struct VmPtr(*mut jni::sys::JavaVM);
// SAFETY: a JavaVM pointer is valid process-wide and usable from any thread (JNI spec).
unsafe impl Send for VmPtr {}

enum Work {
    Deliver(Box<ChangeEvent>, GlobalRef),
    Sync,
    Stop,
}

fn delivery_main(shared: Arc<Shared>, vm: VmPtr, name: String) {
    let vm = vm.0;
    let cname = CString::new(name).unwrap_or_default();
    let mut args = jni::sys::JavaVMAttachArgs {
        version: jni::sys::JNI_VERSION_1_8,
        name: cname.as_ptr() as *mut c_char,
        group: std::ptr::null_mut(),
    };
    let mut env_ptr: *mut c_void = std::ptr::null_mut();
    // SAFETY: vm is the live JavaVM of this process; args outlives the call.
    let rc = unsafe {
        match (**vm).AttachCurrentThreadAsDaemon {
            Some(attach) => attach(vm, &mut env_ptr, &mut args as *mut _ as *mut c_void),
            None => -1,
        }
    };
    // SAFETY: on success env_ptr is this thread's JNIEnv, valid until detached.
    let env = if rc == 0 {
        unsafe { JNIEnv::from_raw(env_ptr as *mut jni::sys::JNIEnv) }.ok()
    } else {
        None
    };
    {
        let mut s = lock(&shared.inbox.state);
        s.delivery_started = true;
        s.delivery_dead = env.is_none();
        shared.inbox.cv.notify_all();
    }
    let Some(mut env) = env else { return };

    deliver_loop(&shared, &mut env);

    // Everything holding JNI references dies before the detach.
    drop(shared);
    // SAFETY: this thread attached itself above and holds no JNI references any more.
    unsafe {
        if let Some(detach) = (**vm).DetachCurrentThread {
            detach(vm);
        }
    }
}

fn deliver_loop(shared: &Arc<Shared>, env: &mut JNIEnv) {
    let interval = shared.poll_interval;
    let mut next_sync = Instant::now() + interval;
    loop {
        let work = {
            let mut s = lock(&shared.inbox.state);
            loop {
                if s.closed {
                    break Work::Stop;
                }
                let now = Instant::now();
                if now >= next_sync {
                    break Work::Sync;
                }
                if let (Some(d), false) = (&s.dispatcher, s.queue.is_empty()) {
                    let d = d.clone();
                    let (_, ev) = s.queue.pop().expect("queue is not empty");
                    s.delivering = true;
                    break Work::Deliver(Box::new(ev), d);
                }
                s = shared
                    .inbox
                    .cv
                    .wait_timeout(s, next_sync - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        };
        match work {
            Work::Stop => return,
            Work::Sync => {
                next_sync = Instant::now() + interval;
                let arrays = lock(&shared.arrays);
                if arrays.sync(env).is_err() {
                    let _ = env.exception_clear();
                }
            }
            Work::Deliver(ev, dispatcher) => {
                let ok = deliver(env, &dispatcher, &ev);
                drop(dispatcher);
                if !ok {
                    shared.main.report_callback_error();
                }
                let mut s = lock(&shared.inbox.state);
                s.delivering = false;
                s.consumed += 1;
                shared.inbox.cv.notify_all();
            }
        }
    }
}

/// Calls `CallbackDispatcher.deliver(event)`; false if it reported an exception.
fn deliver(env: &mut JNIEnv, dispatcher: &GlobalRef, ev: &ChangeEvent) -> bool {
    let Ok(c) = cache() else { return false };
    let r = env.with_local_frame(32, |env| -> jni::errors::Result<bool> {
        let obj = make_event(env, c, ev)?;
        // SAFETY: `deliver` was resolved on CallbackDispatcher with signature
        // (Lio/memwatch/ChangeEvent;)Z and `dispatcher` is a CallbackDispatcher.
        let v = unsafe {
            env.call_method_unchecked(
                dispatcher.as_obj(),
                c.deliver,
                ReturnType::Primitive(Primitive::Boolean),
                &[JValue::Object(&obj).as_jni()],
            )
        }?;
        v.z()
    });
    match r {
        Ok(ok) => ok,
        Err(_) => {
            // The dispatcher catches everything; this is an OutOfMemoryError or similar
            // while building the event. Report it like the callback's own failures.
            if env.exception_check().unwrap_or(false) {
                let _ = env.exception_describe();
                let _ = env.exception_clear();
            }
            false
        }
    }
}

// ---------------------------------------------------------- conversions ---

fn opt_string<'l>(env: &mut JNIEnv<'l>, s: &Option<String>) -> jni::errors::Result<JObject<'l>> {
    Ok(match s {
        Some(s) => JObject::from(env.new_string(s.as_str())?),
        None => JObject::null(),
    })
}

fn opt_bytes<'l>(env: &mut JNIEnv<'l>, b: &Option<Vec<u8>>) -> jni::errors::Result<JObject<'l>> {
    Ok(match b {
        Some(b) => JObject::from(env.byte_array_from_slice(b)?),
        None => JObject::null(),
    })
}

fn make_event<'l>(
    env: &mut JNIEnv<'l>,
    c: &Cache,
    ev: &ChangeEvent,
) -> jni::errors::Result<JObject<'l>> {
    let name = env.new_string(ev.variable_name.as_str())?;
    let file = env.new_string(ev.where_.file.as_str())?;
    let function = env.new_string(ev.where_.function.as_str())?;
    let flat: Vec<jlong> =
        ev.changed_ranges.iter().flat_map(|r| [r.offset as jlong, r.len as jlong]).collect();
    let ranges = env.new_long_array(flat.len() as jint)?;
    env.set_long_array_region(&ranges, 0, &flat)?;
    let old_preview = env.byte_array_from_slice(&ev.old_preview)?;
    let new_preview = env.byte_array_from_slice(&ev.new_preview)?;
    let old_value = opt_bytes(env, &ev.old_value)?;
    let new_value = opt_bytes(env, &ev.new_value)?;
    let key_old = opt_string(env, &ev.storage_key_old)?;
    let key_new = opt_string(env, &ev.storage_key_new)?;
    let metadata = opt_string(env, &ev.metadata)?;
    let where_ = make_where(env, c, &ev.where_)?;
    let args = [
        JValue::Long(ev.seq as jlong).as_jni(),
        JValue::Long(ev.timestamp_ns as jlong).as_jni(),
        JValue::Int(ev.adapter_id as jint).as_jni(),
        JValue::Int(ev.region_id as jint).as_jni(),
        JValue::Object(&name).as_jni(),
        JValue::Int(ev.where_.thread_id.unwrap_or(0) as jint).as_jni(),
        JValue::Long(ev.where_.fault_ip.unwrap_or(0) as jlong).as_jni(),
        JValue::Object(&file).as_jni(),
        JValue::Object(&function).as_jni(),
        JValue::Int(ev.where_.line as jint).as_jni(),
        JValue::Long(ev.how_big as jlong).as_jni(),
        JValue::Object(&ranges).as_jni(),
        JValue::Object(&old_preview).as_jni(),
        JValue::Object(&new_preview).as_jni(),
        JValue::Object(&old_value).as_jni(),
        JValue::Object(&new_value).as_jni(),
        JValue::Object(&key_old).as_jni(),
        JValue::Object(&key_new).as_jni(),
        JValue::Object(&metadata).as_jni(),
        JValue::Int(ev.coalesced as jint).as_jni(),
        JValue::Object(&where_).as_jni(),
    ];
    // SAFETY: event_ctor was resolved on the ChangeEvent class with
    // EVENT_CTOR_SIG, and `args` matches that signature in count and types.
    unsafe {
        env.new_object_unchecked(<&JClass>::from(c.event_class.as_obj()), c.event_ctor, &args)
    }
}

/// The event's `where` beyond the fields ChangeEvent already has: thread
/// name, module, unattributed faults, why there are no Java frames, and the
/// stack as parallel arrays (3 strings and 4 numbers per frame), turned into
/// `Where`/`Frame` records by Java on first access. Null when not located.
fn make_where<'l>(
    env: &mut JNIEnv<'l>,
    c: &Cache,
    w: &memwatch_core::Where,
) -> jni::errors::Result<JObject<'l>> {
    if w.stack.is_empty() && w.fault_ip.is_none() && w.unattributed_faults == 0 {
        return Ok(JObject::null());
    }
    let (frames, mut reason) = java_frames::split_reason(&w.stack);
    let has_java = frames.iter().any(|f| f.module == java_frames::JAVA_MODULE);
    if reason.is_empty() && !has_java && w.fault_ip.is_some() {
        reason =
            java_frames::unavailable().unwrap_or_else(|| "no Java frames were captured".into());
    }
    let strings = env.new_object_array(
        3 * frames.len() as jint,
        <&JClass>::from(c.string_class.as_obj()),
        JObject::null(),
    )?;
    let mut numbers: Vec<jlong> = Vec::with_capacity(4 * frames.len());
    for (i, f) in frames.iter().enumerate() {
        for (j, s) in [&f.module, &f.function, &f.file].into_iter().enumerate() {
            let js = env.new_string(s.as_str())?;
            env.set_object_array_element(&strings, (3 * i + j) as jint, &js)?;
            env.delete_local_ref(js)?;
        }
        numbers.extend(java_frames::frame_numbers(f));
    }
    let nums = env.new_long_array(numbers.len() as jint)?;
    env.set_long_array_region(&nums, 0, &numbers)?;
    let thread_name = env.new_string(w.thread_name.as_str())?;
    let module = env.new_string(w.module.as_str())?;
    let reason = env.new_string(reason)?;
    let args = [
        JValue::Object(&thread_name).as_jni(),
        JValue::Object(&module).as_jni(),
        JValue::Long(w.module_offset as jlong).as_jni(),
        JValue::Int(w.unattributed_faults.min(i32::MAX as u32) as jint).as_jni(),
        JValue::Object(&reason).as_jni(),
        JValue::Object(&strings).as_jni(),
        JValue::Object(&nums).as_jni(),
    ];
    // SAFETY: raw_where_ctor was resolved on ChangeEvent$RawWhere with
    // RAW_WHERE_CTOR_SIG, and `args` matches it in count and types.
    unsafe {
        env.new_object_unchecked(
            <&JClass>::from(c.raw_where_class.as_obj()),
            c.raw_where_ctor,
            &args,
        )
    }
}

fn java_string(env: &mut JNIEnv, s: &JString, what: &str) -> Res<String> {
    if s.is_null() {
        return Err(Fail::Arg(format!("{what} must not be null")));
    }
    Ok(env.get_string(s)?.into())
}

fn java_opt_string(env: &mut JNIEnv, s: &JString) -> Res<Option<String>> {
    if s.is_null() {
        Ok(None)
    } else {
        Ok(Some(env.get_string(s)?.into()))
    }
}

/// The engine's snake_case field name as a Java field (`fallback_regions` -> `fallbackRegions`).
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

fn non_negative(v: jlong, what: &str) -> Res<u64> {
    u64::try_from(v).map_err(|_| Fail::Arg(format!("{what} must not be negative: {v}")))
}

// ------------------------------------------------------- native methods ---

/// `Native.init(Class, Class, Class, Class)`: caches classes and method ids.
#[no_mangle]
pub extern "system" fn Java_io_memwatch_Native_init<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    event_class: JClass<'l>,
    stats_class: JClass<'l>,
    dispatcher_class: JClass<'l>,
    exception_class: JClass<'l>,
) {
    run(&mut env, (), |env| {
        if CACHE.get().is_some() {
            return Ok(());
        }
        let raw_where_class = env.find_class("io/memwatch/ChangeEvent$RawWhere")?;
        let string_class = env.find_class("java/lang/String")?;
        let c = Cache {
            event_ctor: env.get_method_id(&event_class, "<init>", EVENT_CTOR_SIG)?,
            raw_where_ctor: env.get_method_id(&raw_where_class, "<init>", RAW_WHERE_CTOR_SIG)?,
            raw_where_class: env.new_global_ref(&raw_where_class)?,
            string_class: env.new_global_ref(&string_class)?,
            stats_ctor: env.get_method_id(&stats_class, "<init>", STATS_CTOR_SIG)?,
            deliver: env.get_method_id(&dispatcher_class, "deliver", DELIVER_SIG)?,
            event_class: env.new_global_ref(&event_class)?,
            stats_class: env.new_global_ref(&stats_class)?,
            exception_class: env.new_global_ref(&exception_class)?,
        };
        let _ = CACHE.set(c);
        Ok(())
    })
}

/// Called by the JVM when the library is loaded: prepares Java frames for
/// located writes (java_frames::on_load; never fails the load).
#[no_mangle]
///
/// # Safety
/// Called by the JVM only, with its own live JavaVM.
pub unsafe extern "system" fn JNI_OnLoad(
    vm: *mut jni::sys::JavaVM,
    _reserved: *mut c_void,
) -> jint {
    // SAFETY: the JVM passes its own live JavaVM.
    if let Ok(vm) = unsafe { JavaVM::from_raw(vm) } {
        if let Ok(mut env) = vm.get_env() {
            let _ = catch_unwind(AssertUnwindSafe(|| java_frames::on_load(&mut env)));
            if env.exception_check().unwrap_or(false) {
                let _ = env.exception_clear();
            }
        }
    }
    jni::sys::JNI_VERSION_1_8
}

/// `Native.pageSize()`.
#[no_mangle]
pub extern "system" fn Java_io_memwatch_Native_pageSize<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
) -> jint {
    run(&mut env, 0, |_| Ok(memwatch_core::page_size() as jint))
}

/// `Native.exitFlushTimeoutMs()`: the engine's `EXIT_FLUSH_TIMEOUT` in ms.
#[no_mangle]
pub extern "system" fn Java_io_memwatch_Native_exitFlushTimeoutMs<'l>(
    _env: JNIEnv<'l>,
    _class: JClass<'l>,
) -> jlong {
    // A constant: nothing to fail or panic.
    memwatch_core::EXIT_FLUSH_TIMEOUT.as_millis() as jlong
}

/// `Native.directAddress(ByteBuffer)`.
#[no_mangle]
pub extern "system" fn Java_io_memwatch_Native_directAddress<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    buffer: JByteBuffer<'l>,
) -> jlong {
    run(&mut env, 0, |env| {
        let addr = env
            .get_direct_buffer_address(&buffer)
            .map_err(|_| Fail::Arg("not a direct ByteBuffer".into()))?;
        Ok(addr as jlong)
    })
}

/// `Native.defaultOption(name)`: the engine's default of one option, by its
/// Java name (`writableWindowNs`, `pollIntervalNs`, `maxValueBytes`,
/// `previewBytes`, `ringCapacity`, `snapshots` as 0/1).
#[no_mangle]
pub extern "system" fn Java_io_memwatch_Native_defaultOption<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    name: JString<'l>,
) -> jlong {
    run(&mut env, 0, |env| {
        let d = Options::default();
        let v = match java_string(env, &name, "name")?.as_str() {
            "writableWindowNs" => d.writable_window.as_nanos() as u64,
            "pollIntervalNs" => d.poll_interval.as_nanos() as u64,
            "maxValueBytes" => d.max_value_bytes as u64,
            "previewBytes" => d.preview_bytes as u64,
            "ringCapacity" => d.ring_capacity as u64,
            "snapshots" => u64::from(d.snapshots),
            "locateWriters" => u64::from(d.locate_writers),
            "stackDepth" => d.stack_depth as u64,
            other => return Err(Fail::Arg(format!("no option named {other}"))),
        };
        Ok(v as jlong)
    })
}

/// `Native.create(...)`: a new handle (never 0 on success).
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "system" fn Java_io_memwatch_Native_create<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    backend: JString<'l>,
    writable_window_ns: jlong,
    poll_interval_ns: jlong,
    max_value_bytes: jlong,
    preview_bytes: jlong,
    ring_capacity: jlong,
    snapshots: jboolean,
    locate_writers: jboolean,
    stack_depth: jint,
) -> jlong {
    run(&mut env, 0, |env| {
        let backend = Backend::from_name(&java_string(env, &backend, "backend")?)?;
        let poll_interval = Duration::from_nanos(non_negative(poll_interval_ns, "pollInterval")?);
        let options = Options {
            backend,
            writable_window: Duration::from_nanos(non_negative(
                writable_window_ns,
                "writableWindow",
            )?),
            poll_interval,
            max_value_bytes: non_negative(max_value_bytes, "maxValueBytes")? as usize,
            preview_bytes: non_negative(preview_bytes, "previewBytes")? as usize,
            ring_capacity: non_negative(ring_capacity, "ringCapacity")? as usize,
            snapshots: snapshots != JNI_FALSE,
            adapter_id: memwatch_core::ADAPTER_JAVA,
            locate_writers: locate_writers != JNI_FALSE,
            stack_depth: usize::try_from(stack_depth)
                .map_err(|_| Fail::Arg(format!("stackDepth must be 1..=32, got {stack_depth}")))?,
        };
        options.validate()?;
        if options.locate_writers {
            // Java frames from here on (once per process); without them the
            // events still carry native frames and say why (make_where).
            let _ = java_frames::enable(env);
        }
        let inbox = Arc::new(Inbox::new());
        let main = Watcher::new(options.clone())?;
        main.set_callback(Some(trampoline(&inbox)))?;
        let shared = Arc::new(Shared {
            main,
            companion_options: Options { backend: Backend::Poll, locate_writers: false, ..options },
            arrays: Mutex::new(Arrays::default()),
            inbox,
            closed: AtomicBool::new(false),
            poll_interval,
            delivery_thread: OnceLock::new(),
        });
        let vm: JavaVM = env.get_java_vm()?;
        let vm_ptr = VmPtr(vm.get_java_vm_pointer());
        let name = format!("memwatch-delivery-{}", THREAD_COUNTER.fetch_add(1, Ordering::Relaxed));
        let thread_shared = Arc::clone(&shared);
        let t = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || delivery_main(thread_shared, vm_ptr, name))
            .map_err(|e| {
                shared.main.close();
                Fail::Core(CoreError::Os(format!("cannot start the delivery thread: {e}")))
            })?;
        let _ = shared.delivery_thread.set(t.thread().id());
        {
            // Return once the thread is attached, so it is visible to Java from the start.
            let mut s = lock(&shared.inbox.state);
            while !s.delivery_started {
                s = shared.inbox.cv.wait(s).unwrap_or_else(|p| p.into_inner());
            }
            if s.delivery_dead {
                drop(s);
                let _ = t.join();
                shared.main.close();
                return Err(Fail::Core(CoreError::Os(
                    "the delivery thread could not attach to the JVM".into(),
                )));
            }
        }
        let h = Box::new(Handle { shared, thread: Mutex::new(Some(t)) });
        Ok(Box::into_raw(h) as jlong)
    })
}

/// `Native.watchAddress(handle, address, length, name, metadata)`.
#[no_mangle]
pub extern "system" fn Java_io_memwatch_Native_watchAddress<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    h: jlong,
    address: jlong,
    length: jlong,
    name: JString<'l>,
    metadata: JString<'l>,
) -> jint {
    run(&mut env, 0, |env| {
        // SAFETY: h comes from the Java MemoryWatcher (see `handle`).
        let h = unsafe { handle(h) }?;
        h.shared.check_open()?;
        let name = java_string(env, &name, "name")?;
        let metadata = java_opt_string(env, &metadata)?;
        let len = non_negative(length, "size")? as usize;
        // SAFETY: the Java API documents that the caller keeps [address,
        // address+size) mapped until unwatch/close; the core checks that it
        // is mapped and writable now.
        let id = unsafe {
            h.shared.main.watch(address as usize as *const u8, len, &name, metadata.as_deref())
        }?;
        Ok(id as jint)
    })
}

/// `Native.watchBuffer(handle, buffer, offset, length, name, metadata)`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "system" fn Java_io_memwatch_Native_watchBuffer<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    h: jlong,
    buffer: JByteBuffer<'l>,
    offset: jlong,
    length: jlong,
    name: JString<'l>,
    metadata: JString<'l>,
) -> jint {
    run(&mut env, 0, |env| {
        // SAFETY: h comes from the Java MemoryWatcher (see `handle`).
        let h = unsafe { handle(h) }?;
        h.shared.check_open()?;
        let name = java_string(env, &name, "name")?;
        let metadata = java_opt_string(env, &metadata)?;
        let base = env
            .get_direct_buffer_address(&buffer)
            .map_err(|_| Fail::Arg("not a direct ByteBuffer".into()))?;
        let capacity = env.get_direct_buffer_capacity(&buffer)? as u64;
        let offset = non_negative(offset, "offset")?;
        let length = non_negative(length, "length")?;
        if !matches!(offset.checked_add(length), Some(end) if end <= capacity) {
            return Err(Fail::Arg(format!(
                "range [{offset}, {}) is outside the buffer's capacity {capacity}",
                offset.saturating_add(length)
            )));
        }
        // SAFETY: [base+offset, base+offset+length) lies inside the direct
        // buffer, which the Java MemoryWatcher keeps reachable (so its memory
        // allocated) until the region is unwatched or the watcher closed.
        let id = unsafe {
            h.shared.main.watch(
                base.add(offset as usize),
                length as usize,
                &name,
                metadata.as_deref(),
            )
        }?;
        Ok(id as jint)
    })
}

/// `Native.watchArray(handle, array, offset, length, name, metadata)`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "system" fn Java_io_memwatch_Native_watchArray<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    h: jlong,
    array: JByteArray<'l>,
    offset: jint,
    length: jint,
    name: JString<'l>,
    metadata: JString<'l>,
) -> jint {
    run(&mut env, 0, |env| {
        // SAFETY: h comes from the Java MemoryWatcher (see `handle`).
        let h = unsafe { handle(h) }?;
        let shared = &h.shared;
        if array.is_null() {
            return Err(Fail::Arg("array must not be null".into()));
        }
        let name = java_string(env, &name, "name")?;
        let metadata = java_opt_string(env, &metadata)?;
        let array_len = env.get_array_length(&array)? as usize;
        let (offset, length) = (offset.max(0) as usize, length.max(0) as usize);
        if length == 0 || offset + length > array_len {
            return Err(Fail::Arg(format!(
                "range [{offset}, {}) is not a non-empty part of the array of length {array_len}",
                offset + length
            )));
        }
        let mut arrays = lock(&shared.arrays);
        shared.check_open()?;
        let mut found = None;
        for (key, m) in arrays.mirrors.iter() {
            if env.is_same_object(m.array.as_obj(), &array)? {
                found = Some(*key);
                break;
            }
        }
        let (key, fresh) = match found {
            Some(k) => (k, false),
            None => {
                let mirror = Mirror {
                    array: env.new_global_ref(&array)?,
                    len: array_len,
                    mem: MirrorMem::new(array_len)?,
                    regions: 0,
                };
                let k = arrays.next_key;
                arrays.next_key += 1;
                arrays.mirrors.insert(k, mirror);
                (k, true)
            }
        };
        let result = (|| -> Res<u32> {
            if arrays.companion.is_none() {
                let w = Watcher::new(shared.companion_options.clone())?;
                w.set_callback(Some(trampoline(&shared.inbox)))?;
                if let Some(store) = &arrays.value_store {
                    w.set_value_store(Some(Arc::clone(store)))?;
                }
                for r in &arrays.recorders {
                    r.attach(&w).map_err(Fail::Record)?;
                }
                arrays.companion = Some(w);
            }
            let mirror = &arrays.mirrors[&key];
            // The snapshot the core takes now must be the array's current bytes.
            mirror.refresh(env)?;
            let companion = arrays.companion.as_ref().expect("created above");
            // SAFETY: offset+length <= len <= the mirror's size, and the mirror
            // stays allocated until this region is unwatched from the companion
            // (unwatch / close remove the region before freeing the mirror).
            let id = unsafe {
                companion.watch(
                    mirror.mem.ptr.as_ptr().add(offset),
                    length,
                    &name,
                    metadata.as_deref(),
                )
            }?;
            Ok(id)
        })();
        match result {
            Ok(id) => {
                arrays.mirrors.get_mut(&key).expect("present").regions += 1;
                arrays.region_to_mirror.insert(id, key);
                Ok(id as jint)
            }
            Err(e) => {
                if fresh {
                    arrays.mirrors.remove(&key);
                }
                Err(e)
            }
        }
    })
}

/// `Native.unwatch(handle, regionId)`.
#[no_mangle]
pub extern "system" fn Java_io_memwatch_Native_unwatch<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    h: jlong,
    region_id: jint,
) -> jboolean {
    run(&mut env, JNI_FALSE, |_| {
        // SAFETY: h comes from the Java MemoryWatcher (see `handle`).
        let h = unsafe { handle(h) }?;
        let shared = &h.shared;
        shared.check_open()?;
        let id = region_id as u32;
        {
            let mut arrays = lock(&shared.arrays);
            if let Some(key) = arrays.region_to_mirror.get(&id).copied() {
                let removed = match &arrays.companion {
                    Some(c) => c.unwatch(id)?,
                    None => false,
                };
                arrays.region_to_mirror.remove(&id);
                let m = arrays.mirrors.get_mut(&key).expect("mirror of a watched region");
                m.regions -= 1;
                if m.regions == 0 {
                    // The companion no longer reads it: free the mirror and the global ref.
                    arrays.mirrors.remove(&key);
                }
                return Ok(if removed { JNI_TRUE } else { JNI_FALSE });
            }
        }
        Ok(if shared.main.unwatch(id)? { JNI_TRUE } else { JNI_FALSE })
    })
}

/// `Native.setCallback(handle, dispatcher)`; null clears.
#[no_mangle]
pub extern "system" fn Java_io_memwatch_Native_setCallback<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    h: jlong,
    dispatcher: JObject<'l>,
) {
    run(&mut env, (), |env| {
        // SAFETY: h comes from the Java MemoryWatcher (see `handle`).
        let h = unsafe { handle(h) }?;
        h.shared.check_open()?;
        let new = if dispatcher.is_null() { None } else { Some(env.new_global_ref(&dispatcher)?) };
        let old = {
            let mut s = lock(&h.shared.inbox.state);
            if s.closed {
                return Err(Fail::Closed);
            }
            let old = std::mem::replace(&mut s.dispatcher, new);
            h.shared.inbox.cv.notify_all();
            old
        };
        drop(old);
        Ok(())
    })
}

/// `Native.checkChanges(handle, sliceMs, fence)`: the events, or an empty
/// array when a callback got them; `null` (without an exception) when the
/// callback has not had them after `sliceMs`: then `fence[0]` holds what to
/// wait for, and the next call with it only waits (0 = detect now).
#[no_mangle]
pub extern "system" fn Java_io_memwatch_Native_checkChanges<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    h: jlong,
    slice_ms: jlong,
    fence: JLongArray<'l>,
) -> jobjectArray {
    run(&mut env, std::ptr::null_mut(), |env| {
        // SAFETY: h comes from the Java MemoryWatcher (see `handle`).
        let h = unsafe { handle(h) }?;
        if fence.is_null() || env.get_array_length(&fence)? != 1 {
            return Err(Fail::Arg("fence must be a long[1]".into()));
        }
        let mut target = [0 as jlong; 1];
        env.get_long_array_region(&fence, 0, &mut target)?;
        let target = match target[0] {
            0 => h.shared.check_start(env)?,
            t => Err(t as u64),
        };
        let events = match target {
            Ok(events) => events,
            Err(t) => {
                let slice = Duration::from_millis(non_negative(slice_ms, "sliceMs")?);
                match h.shared.check_wait(t, slice) {
                    Some(events) => events,
                    None => {
                        env.set_long_array_region(&fence, 0, &[t as jlong])?;
                        return Ok(std::ptr::null_mut());
                    }
                }
            }
        };
        let c = cache()?;
        let out: JObjectArray = env.new_object_array(
            events.len() as jint,
            <&JClass>::from(c.event_class.as_obj()),
            JObject::null(),
        )?;
        for (i, ev) in events.iter().enumerate() {
            env.with_local_frame(32, |env| -> jni::errors::Result<()> {
                let obj = make_event(env, c, ev)?;
                env.set_object_array_element(&out, i as jint, obj)
            })?;
        }
        Ok(out.into_raw())
    })
}

/// `Native.flush(handle, timeoutMs)`: the exit hook's delivery. With a
/// callback set, detects changes now and waits up to `timeoutMs` for the
/// callback to have them (false if it has not yet); without one, or on a
/// closed watcher, does nothing (events stay for checkChanges) and is true.
#[no_mangle]
pub extern "system" fn Java_io_memwatch_Native_flush<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    h: jlong,
    timeout_ms: jlong,
) -> jboolean {
    run(&mut env, JNI_FALSE, |env| {
        // SAFETY: h comes from the Java MemoryWatcher (see `handle`).
        let h = unsafe { handle(h) }?;
        let shared = &h.shared;
        let timeout = Duration::from_millis(non_negative(timeout_ms, "timeoutMs")?);
        {
            let s = lock(&shared.inbox.state);
            if shared.check_open().is_err() || s.dispatcher.is_none() || s.delivery_dead {
                return Ok(JNI_TRUE);
            }
        }
        let done = match shared.check_start(env)? {
            // The callback was cleared meanwhile: keep the events for checkChanges.
            Ok(events) => {
                let mut s = lock(&shared.inbox.state);
                s.consumed -= events.len() as u64;
                for e in events.into_iter().rev() {
                    s.queue.push_front(e);
                }
                true
            }
            Err(target) => shared.check_wait(target, timeout).is_some(),
        };
        Ok(if done { JNI_TRUE } else { JNI_FALSE })
    })
}

/// `Native.stats(handle)`.
#[no_mangle]
pub extern "system" fn Java_io_memwatch_Native_stats<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    h: jlong,
) -> jobject {
    run(&mut env, std::ptr::null_mut(), |env| {
        // SAFETY: h comes from the Java MemoryWatcher (see `handle`).
        let h = unsafe { handle(h) }?;
        let shared = &h.shared;
        shared.check_open()?;
        let m = shared.main.stats();
        let (comp, mirror_bytes) = {
            let arrays = lock(&shared.arrays);
            (
                arrays.companion.as_ref().map(|c| c.stats()).unwrap_or_default(),
                arrays.mirror_bytes(),
            )
        };
        let mut s = m;
        s.absorb(&comp);
        s.native_bytes += mirror_bytes;
        {
            let inbox = lock(&shared.inbox.state);
            s.pending_events += inbox.queue.len();
            s.coalesced_events += inbox.queue.coalesced();
        }
        s.backend = Some(s.backend.unwrap_or(shared.companion_options.backend));
        let c = cache()?;
        let obj =
            env.with_local_frame_returning_local(8, |env| -> jni::errors::Result<JObject> {
                // SAFETY: stats_ctor was resolved on Stats with STATS_CTOR_SIG
                // (no arguments).
                let obj = unsafe {
                    env.new_object_unchecked(
                        <&JClass>::from(c.stats_class.as_obj()),
                        c.stats_ctor,
                        &[],
                    )
                }?;
                // Every engine field by name: a field Stats.java lacks fails
                // here (NoSuchFieldError), never silently.
                for (name, value) in s.fields() {
                    let field = camel_case(name);
                    match value {
                        StatValue::Count(n) => {
                            env.set_field(&obj, &field, "J", JValue::Long(n as jlong))?
                        }
                        StatValue::Text(t) => {
                            let t = env.new_string(t)?;
                            env.set_field(&obj, &field, "Ljava/lang/String;", JValue::Object(&t))?
                        }
                    }
                }
                Ok(obj)
            })?;
        Ok(obj.into_raw())
    })
}

/// `Native.close(handle)`: closes; the handle stays valid until `destroy`.
#[no_mangle]
pub extern "system" fn Java_io_memwatch_Native_close<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    h: jlong,
) {
    run(&mut env, (), |env| {
        // SAFETY: h comes from the Java MemoryWatcher (see `handle`).
        let h = unsafe { handle(h) }?;
        close_handle(env, h);
        Ok(())
    })
}

/// `Native.destroy(handle)`: closes and frees; called once, by the Cleaner.
#[no_mangle]
pub extern "system" fn Java_io_memwatch_Native_destroy<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    h: jlong,
) {
    run(&mut env, (), |env| {
        if h == 0 {
            return Ok(());
        }
        // SAFETY: the Cleaner runs this once, after the MemoryWatcher became
        // unreachable, so no other call can use the handle any more.
        let boxed = unsafe { Box::from_raw(h as *mut Handle) };
        close_handle(env, &boxed);
        drop(boxed);
        Ok(())
    })
}

// ---------------------------------------------------------- value store ---

/// `Native.setValueStore(handle, storeName, capacity)`: creates or opens the
/// named store (LRU eviction) and sets it on both core watchers; a null name
/// stops sending values to a store.
#[no_mangle]
pub extern "system" fn Java_io_memwatch_Native_setValueStore<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    h: jlong,
    store_name: JString<'l>,
    capacity: jlong,
) {
    run(&mut env, (), |env| {
        // SAFETY: h comes from the Java MemoryWatcher (see `handle`).
        let h = unsafe { handle(h) }?;
        let shared = &h.shared;
        shared.check_open()?;
        let store = if store_name.is_null() {
            None
        } else {
            let name = java_string(env, &store_name, "storeName")?;
            let capacity = non_negative(capacity, "capacity")?;
            Some(Arc::new(Store::connect(&name, capacity, FullPolicy::EvictLru)?))
        };
        // Under the arrays lock: a companion created meanwhile gets the same store.
        let mut arrays = lock(&shared.arrays);
        shared.check_open()?;
        shared.main.set_value_store(store.clone())?;
        if let Some(c) = &arrays.companion {
            c.set_value_store(store.clone())?;
        }
        arrays.value_store = store;
        Ok(())
    })
}

/// What a Java `ValueStore` holds (as a jlong): the store until `close`.
struct StoreHandle {
    store: RwLock<Option<Store>>,
}

/// # Safety
/// `h` must be 0 or a pointer from `storeOpen` not yet passed to
/// `storeDestroy` (the Java ValueStore frees it only from its Cleaner).
unsafe fn store_handle<'a>(h: jlong) -> Res<&'a StoreHandle> {
    // SAFETY: see the function's contract.
    unsafe { (h as *const StoreHandle).as_ref() }.ok_or(Fail::StoreClosed)
}

/// `Native.storeOpen(name)`: opens an existing store (never returns 0 on success).
#[no_mangle]
pub extern "system" fn Java_io_memwatch_Native_storeOpen<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    name: JString<'l>,
) -> jlong {
    run(&mut env, 0, |env| {
        let name = java_string(env, &name, "name")?;
        let store = Store::open(&name).map_err(|e| match e {
            StoreError::NotFound(_) => Fail::Arg(format!(
                "no store named {name:?} exists (MemoryWatcher.setValueStore creates it)"
            )),
            e => Fail::Store(e),
        })?;
        let h = Box::new(StoreHandle { store: RwLock::new(Some(store)) });
        Ok(Box::into_raw(h) as jlong)
    })
}

/// `Native.storeGet(handle, key)`: a copy of the value, or null if absent.
#[no_mangle]
pub extern "system" fn Java_io_memwatch_Native_storeGet<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    h: jlong,
    key: JString<'l>,
) -> jni::sys::jbyteArray {
    run(&mut env, std::ptr::null_mut(), |env| {
        // SAFETY: h comes from the Java ValueStore (see `store_handle`).
        let h = unsafe { store_handle(h) }?;
        let key = java_string(env, &key, "key")?;
        let value = {
            let guard = h.store.read().unwrap_or_else(|p| p.into_inner());
            guard.as_ref().ok_or(Fail::StoreClosed)?.get(key.as_bytes())?
        };
        Ok(match value {
            Some(v) => env.byte_array_from_slice(&v)?.into_raw(),
            None => std::ptr::null_mut(),
        })
    })
}

/// `Native.storeClose(handle)`: unmaps the store; waits for running gets.
#[no_mangle]
pub extern "system" fn Java_io_memwatch_Native_storeClose<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    h: jlong,
) {
    run(&mut env, (), |_| {
        // SAFETY: h comes from the Java ValueStore (see `store_handle`).
        let h = unsafe { store_handle(h) }?;
        let store = h.store.write().unwrap_or_else(|p| p.into_inner()).take();
        drop(store);
        Ok(())
    })
}

/// `Native.storeDestroy(handle)`: closes and frees; called once, by the Cleaner.
#[no_mangle]
pub extern "system" fn Java_io_memwatch_Native_storeDestroy<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    h: jlong,
) {
    run(&mut env, (), |_| {
        if h != 0 {
            // SAFETY: the Cleaner runs this once, after the ValueStore became
            // unreachable, so no other call can use the handle any more.
            drop(unsafe { Box::from_raw(h as *mut StoreHandle) });
        }
        Ok(())
    })
}

/// `Native.storeUnlink(name)`: true if the store existed.
#[no_mangle]
pub extern "system" fn Java_io_memwatch_Native_storeUnlink<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    name: JString<'l>,
) -> jboolean {
    run(&mut env, JNI_FALSE, |env| {
        let name = java_string(env, &name, "name")?;
        match Store::unlink(&name) {
            Ok(()) => Ok(JNI_TRUE),
            Err(StoreError::NotFound(_)) => Ok(JNI_FALSE),
            Err(e) => Err(e.into()),
        }
    })
}

// ------------------------------------------------------------- recorder ---

/// `Native.recordTo(handle, url)`: starts a recorder on both core watchers;
/// returns its handle (an `Arc<Recorder>` in a box, never 0 on success).
#[no_mangle]
pub extern "system" fn Java_io_memwatch_Native_recordTo<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    h: jlong,
    url: JString<'l>,
) -> jlong {
    run(&mut env, 0, |env| {
        // SAFETY: h comes from the Java MemoryWatcher (see `handle`).
        let h = unsafe { handle(h) }?;
        let shared = &h.shared;
        shared.check_open()?;
        let url = java_string(env, &url, "url")?;
        // Under the arrays lock: a companion created meanwhile is attached too.
        let mut arrays = lock(&shared.arrays);
        let rec = memwatch_record::record_to(&shared.main, &url).map_err(Fail::Record)?;
        if let Some(c) = &arrays.companion {
            rec.attach(c).map_err(Fail::Record)?;
        }
        let rec = Arc::new(rec);
        arrays.recorders.push(Arc::clone(&rec));
        Ok(Box::into_raw(Box::new(rec)) as jlong)
    })
}

/// # Safety
/// `r` must be 0 or a pointer from `recordTo` not yet passed to
/// `recorderDestroy` (the Java Recorder frees it only from its Cleaner).
unsafe fn recorder<'a>(r: jlong) -> Res<&'a Arc<memwatch_record::Recorder>> {
    // SAFETY: see the function's contract.
    unsafe { (r as *const Arc<memwatch_record::Recorder>).as_ref() }
        .ok_or_else(|| Fail::Arg("recorder handle is 0".into()))
}

/// `Native.recorderStats(r)`: written, dropped, abandoned, queued, batches,
/// reconnects, connected (0/1), recording id.
#[no_mangle]
pub extern "system" fn Java_io_memwatch_Native_recorderStats<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    r: jlong,
) -> jni::sys::jlongArray {
    run(&mut env, std::ptr::null_mut(), |env| {
        // SAFETY: r comes from the Java Recorder (see `recorder`).
        let s = unsafe { recorder(r) }?.stats();
        let v = [
            s.written as i64,
            s.dropped as i64,
            s.abandoned as i64,
            s.queued as i64,
            s.batches as i64,
            s.reconnects as i64,
            i64::from(s.connected),
            s.recording_id,
        ];
        let arr = env.new_long_array(v.len() as jint)?;
        env.set_long_array_region(&arr, 0, &v)?;
        Ok(arr.into_raw())
    })
}

/// `Native.recorderFlush(r, timeoutMs)`: true once everything queued is written.
#[no_mangle]
pub extern "system" fn Java_io_memwatch_Native_recorderFlush<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    r: jlong,
    timeout_ms: jlong,
) -> jboolean {
    run(&mut env, JNI_FALSE, |_| {
        // SAFETY: r comes from the Java Recorder (see `recorder`).
        let r = unsafe { recorder(r) }?;
        let t = Duration::from_millis(non_negative(timeout_ms, "timeoutMs")?);
        Ok(if r.flush(t) { JNI_TRUE } else { JNI_FALSE })
    })
}

/// `Native.recorderClose(r)`: stops recording after writing what is queued.
#[no_mangle]
pub extern "system" fn Java_io_memwatch_Native_recorderClose<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    r: jlong,
) {
    run(&mut env, (), |_| {
        // SAFETY: r comes from the Java Recorder (see `recorder`).
        unsafe { recorder(r) }?.close();
        Ok(())
    })
}

/// `Native.recorderDestroy(r)`: frees the handle; called once, by the Cleaner.
#[no_mangle]
pub extern "system" fn Java_io_memwatch_Native_recorderDestroy<'l>(
    mut env: JNIEnv<'l>,
    _class: JClass<'l>,
    r: jlong,
) {
    run(&mut env, (), |_| {
        if r != 0 {
            // SAFETY: the Cleaner runs this once, after the Recorder became
            // unreachable, so no other call can use the handle any more.
            drop(unsafe { Box::from_raw(r as *mut Arc<memwatch_record::Recorder>) });
        }
        Ok(())
    })
}
