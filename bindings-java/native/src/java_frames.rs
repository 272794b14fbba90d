//! Java frames of located writes (`WatcherOptions.locateWriters`).
//!
//! - [`on_load`] (JNI_OnLoad): a JVMTI environment, `AsyncGetCallTrace`
//!   (dlsym'd from libjvm) and how to find a thread's JNIEnv in a signal
//!   handler: HotSpot keeps its current `Thread*` in a pthread key (the one
//!   `Thread::current_or_null_safe` reads); the key is found by scanning for
//!   the loading thread's own `Thread*` (`java.lang.Thread.eetop`), and the
//!   JNIEnv sits at a fixed offset inside the thread (as async-profiler does).
//!   `pthread_getspecific` takes no lock and never allocates; JNI `GetEnv`
//!   reads libjvm's `__thread` variable, whose first touch on a thread that
//!   never ran JVM code may allocate, so it is not used in the handler.
//! - [`enable`] (first locating watcher): can_get_line_numbers and
//!   can_get_source_file_name, ClassLoad events (AsyncGetCallTrace refuses to
//!   walk without them), ClassPrepare events that create the jmethodIDs of
//!   every new class (AGCT cannot create them) plus those of the classes
//!   already loaded, and CompiledMethodLoad events, which make HotSpot record
//!   debug info at non-safepoint PCs (DebugNonSafepoints) so JIT-compiled
//!   writes get their own line. Then it registers the capture hook and the
//!   resolver with memwatch-core (`set_runtime_frames`).
//! - [`capture`] runs in memwatch's SIGSEGV handler: AGCT with the signal's
//!   ucontext writes its (bci, jmethodID) pairs straight into the fault's
//!   slot. Words: `[status, 0, bci0, method0, bci1, method1, ...]`; status =
//!   frames captured, or AGCT's error code (<= 0), or [`NOT_JAVA`].
//! - [`resolve`] (event build, on the engine's worker, attached to the JVM as
//!   a daemon): JVMTI names, source files and line tables, cached per method.
//!   An error status becomes one marker frame (function `<no Java frames: ...>`)
//!   that [`split_reason`] turns into `Where.noJavaFramesReason`.

use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr};
use std::sync::{Arc, Mutex, OnceLock};

use jni::objects::JObject;
use jni::sys::{jclass, jint, jlong, jmethodID, jobject};
use jni::{JNIEnv, JavaVM};
use memwatch_core::{read_word, Frame, RuntimeFrames};

/// `Frame::module` of every Java frame (and of the marker frame).
pub const JAVA_MODULE: &str = "java";
/// Start of a marker frame's function: why a located write has no Java frames.
const MARKER: &str = "<no Java frames: ";
/// Capture status: the faulting thread has no JNIEnv (not a Java thread).
const NOT_JAVA: i64 = -100;

// JVMTI, the few functions used, by slot in jvmtiInterface_1 (jvmti.h:
// function number N is slot N-1).
const JVMTI_VERSION_1_2: jint = 0x3001_0200;
const SET_EVENT_NOTIFICATION_MODE: usize = 1;
const DEALLOCATE: usize = 46;
const GET_CLASS_SIGNATURE: usize = 47;
const GET_SOURCE_FILE_NAME: usize = 49;
const GET_CLASS_METHODS: usize = 51;
const GET_METHOD_NAME: usize = 63;
const GET_METHOD_DECLARING_CLASS: usize = 64;
const GET_LINE_NUMBER_TABLE: usize = 69;
const GET_LOADED_CLASSES: usize = 77;
const SET_EVENT_CALLBACKS: usize = 121;
const ADD_CAPABILITIES: usize = 141;
const JVMTI_ENABLE: jint = 1;
const EVENT_CLASS_LOAD: jint = 55;
const EVENT_CLASS_PREPARE: jint = 56;
const EVENT_COMPILED_METHOD_LOAD: jint = 68;
/// Entries of jvmtiEventCallbacks (events 50..=86).
const CALLBACKS: usize = 37;
/// Bits of jvmtiCapabilities' first word.
const CAN_GET_SOURCE_FILE_NAME: u32 = 1 << 11;
const CAN_GET_LINE_NUMBERS: u32 = 1 << 12;
const CAN_GENERATE_COMPILED_METHOD_LOAD_EVENTS: u32 = 1 << 27;

type JvmtiEnv = *mut *const *const c_void;

/// One AGCT frame: bci (or a negative code) and method; 16 bytes, so a
/// pair of slot words.
#[repr(C)]
struct CallFrame {
    bci: jint,
    method: jmethodID,
}

#[repr(C)]
struct CallTrace {
    env: *mut c_void,
    num_frames: jint,
    frames: *mut CallFrame,
}

type Agct = unsafe extern "C" fn(*mut CallTrace, jint, *mut c_void);

/// What the handler needs, fixed at load (leaked: `capture`'s ctx).
struct Probe {
    agct: Agct,
    key: libc::pthread_key_t,
    env_offset: isize,
    /// The JNI function table every JavaThread's JNIEnv points at.
    functions: u64,
}

struct Jvm {
    vm: JavaVM,
    jvmti: JvmtiEnv,
    probe: Option<&'static Probe>,
    /// Why there are no Java frames in this JVM (probe is None).
    unavailable: String,
}

// SAFETY: the JavaVM and jvmtiEnv pointers are valid process-wide and
// usable from any attached thread (JNI and JVMTI specs).
unsafe impl Send for Jvm {}
// SAFETY: as above; the struct is read-only after JNI_OnLoad.
unsafe impl Sync for Jvm {}

static JVM: OnceLock<Jvm> = OnceLock::new();
/// `enable`'s outcome: Ok once the hook is registered.
static ENABLED: OnceLock<Result<(), String>> = OnceLock::new();

/// The JVMTI function in `slot`, cast to `F`.
///
/// # Safety
/// `env` is a live jvmtiEnv and `F` the function's exact C signature.
unsafe fn f<F: Copy>(env: JvmtiEnv, slot: usize) -> F {
    // SAFETY: see the contract; a jvmtiEnv points at its function table.
    unsafe {
        let p = *(*env).add(slot);
        std::mem::transmute_copy::<*const c_void, F>(&p)
    }
}

fn deallocate(jvmti: JvmtiEnv, p: *mut c_void) {
    if !p.is_null() {
        // SAFETY: p was allocated by this JVMTI environment.
        unsafe {
            f::<unsafe extern "C" fn(JvmtiEnv, *mut c_void) -> jint>(jvmti, DEALLOCATE)(jvmti, p)
        };
    }
}

/// A JVMTI-allocated C string as a String (then deallocated).
fn take_string(jvmti: JvmtiEnv, p: *mut c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: JVMTI returns NUL-terminated modified UTF-8 strings.
    let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
    deallocate(jvmti, p.cast());
    s
}

/// JNI_OnLoad: finds JVMTI, AGCT and the thread key. Never fails the load:
/// without them events just carry no Java frames (and say why).
pub fn on_load(env: &mut JNIEnv) {
    let Ok(vm) = env.get_java_vm() else { return };
    let mut jvmti: *mut c_void = std::ptr::null_mut();
    let raw = vm.get_java_vm_pointer();
    // SAFETY: raw is the live JavaVM; GetEnv writes the jvmtiEnv pointer.
    let rc = unsafe {
        match (**raw).GetEnv {
            Some(get) => get(raw, &mut jvmti, JVMTI_VERSION_1_2),
            None => -1,
        }
    };
    let (probe, unavailable) = if rc != 0 || jvmti.is_null() {
        (None, format!("this JVM offers no JVMTI 1.2 environment (GetEnv returned {rc})"))
    } else {
        match find_probe(env) {
            Ok(p) => (Some(&*Box::leak(Box::new(p))), String::new()),
            Err(e) => (None, e),
        }
    };
    let _ = JVM.set(Jvm { vm, jvmti: jvmti as JvmtiEnv, probe, unavailable });
}

fn find_probe(env: &mut JNIEnv) -> Result<Probe, String> {
    // SAFETY: dlopen/dlsym with NUL-terminated names; RTLD_NOLOAD only
    // finds the libjvm already loaded.
    let agct = unsafe {
        let lib = libc::dlopen(c"libjvm.so".as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD);
        let handle = if lib.is_null() { libc::RTLD_DEFAULT } else { lib };
        libc::dlsym(handle, c"AsyncGetCallTrace".as_ptr())
    };
    if agct.is_null() {
        return Err("this JVM has no AsyncGetCallTrace (not HotSpot)".into());
    }
    // SAFETY: AsyncGetCallTrace has this signature in every HotSpot.
    let agct: Agct = unsafe { std::mem::transmute::<*mut c_void, Agct>(agct) };
    let thread = env
        .call_static_method("java/lang/Thread", "currentThread", "()Ljava/lang/Thread;", &[])
        .and_then(|t| t.l())
        .and_then(|t| env.get_field(&t, "eetop", "J"))
        .and_then(|v| v.j());
    let Ok(thread) = thread else {
        let _ = env.exception_clear();
        return Err("java.lang.Thread has no eetop field (not HotSpot)".into());
    };
    let raw_env = env.get_raw() as usize;
    // HotSpot's Thread* key: the one holding this thread's Thread*. The
    // scan also binds pthread_getspecific's PLT entry before any handler.
    // SAFETY: pthread_getspecific of any key value is defined (NULL when
    // the key is not in use).
    let key =
        (0..1024u32).find(|&k| unsafe { libc::pthread_getspecific(k) } as usize == thread as usize);
    let Some(key) = key else {
        return Err("HotSpot's current-thread key was not found".into());
    };
    let env_offset = raw_env as isize - thread as isize;
    if !(0..65536).contains(&env_offset) {
        return Err(format!("unexpected JNIEnv offset {env_offset} in HotSpot's thread"));
    }
    // SAFETY: a JNIEnv's first word is its function table pointer.
    let functions = unsafe { *(raw_env as *const u64) };
    Ok(Probe { agct, key, env_offset, functions })
}

/// Why events of this JVM carry no Java frames, if they do not.
pub fn unavailable() -> Option<String> {
    match (JVM.get(), ENABLED.get()) {
        (None, _) => Some("the memwatch library was loaded without JNI_OnLoad".into()),
        (Some(j), _) if j.probe.is_none() => Some(j.unavailable.clone()),
        (_, Some(Err(e))) => Some(e.clone()),
        _ => None,
    }
}

/// Turns Java frames on (once, for the first locating watcher); Err says
/// why they stay off (the watcher still locates native frames).
pub fn enable(env: &mut JNIEnv) -> Result<(), String> {
    ENABLED.get_or_init(|| enable_once(env)).clone()
}

fn enable_once(env: &mut JNIEnv) -> Result<(), String> {
    let jvm = JVM.get().ok_or("the memwatch library was loaded without JNI_OnLoad")?;
    let probe = jvm.probe.ok_or_else(|| jvm.unavailable.clone())?;
    let jvmti = jvm.jvmti;
    let mut caps = [0u32; 4];
    caps[0] = CAN_GET_SOURCE_FILE_NAME | CAN_GET_LINE_NUMBERS;
    // SAFETY: jvmti is live; caps has jvmtiCapabilities' 16 bytes.
    let rc = unsafe {
        f::<unsafe extern "C" fn(JvmtiEnv, *const u32) -> jint>(jvmti, ADD_CAPABILITIES)(
            jvmti,
            caps.as_ptr(),
        )
    };
    if rc != 0 {
        return Err(format!("JVMTI AddCapabilities (line numbers, source files) failed: {rc}"));
    }
    caps[0] = CAN_GENERATE_COMPILED_METHOD_LOAD_EVENTS;
    // SAFETY: as above. Optional: without it compiled writes may name the
    // nearest safepoint's line.
    let compiled = unsafe {
        f::<unsafe extern "C" fn(JvmtiEnv, *const u32) -> jint>(jvmti, ADD_CAPABILITIES)(
            jvmti,
            caps.as_ptr(),
        )
    } == 0;
    let mut callbacks = [0usize; CALLBACKS];
    callbacks[(EVENT_CLASS_LOAD - 50) as usize] = class_load as *const () as usize;
    callbacks[(EVENT_CLASS_PREPARE - 50) as usize] = class_prepare as *const () as usize;
    callbacks[(EVENT_COMPILED_METHOD_LOAD - 50) as usize] =
        compiled_method_load as *const () as usize;
    type SetCallbacks = unsafe extern "C" fn(JvmtiEnv, *const usize, jint) -> jint;
    // SAFETY: callbacks is a jvmtiEventCallbacks (37 function pointers,
    // unset = NULL) with callbacks of the documented signatures.
    let rc = unsafe {
        f::<SetCallbacks>(jvmti, SET_EVENT_CALLBACKS)(
            jvmti,
            callbacks.as_ptr(),
            std::mem::size_of_val(&callbacks) as jint,
        )
    };
    if rc != 0 {
        return Err(format!("JVMTI SetEventCallbacks failed: {rc}"));
    }
    type SetMode = unsafe extern "C" fn(JvmtiEnv, jint, jint, jobject, ...) -> jint;
    let mut events = vec![EVENT_CLASS_LOAD, EVENT_CLASS_PREPARE];
    if compiled {
        events.push(EVENT_COMPILED_METHOD_LOAD);
    }
    for event in events {
        // SAFETY: a live jvmtiEnv; NULL thread = every thread.
        let rc = unsafe {
            f::<SetMode>(jvmti, SET_EVENT_NOTIFICATION_MODE)(
                jvmti,
                JVMTI_ENABLE,
                event,
                std::ptr::null_mut(),
            )
        };
        if rc != 0 {
            return Err(format!("JVMTI SetEventNotificationMode({event}) failed: {rc}"));
        }
    }
    preload_loaded_classes(env, jvmti);
    memwatch_core::set_runtime_skip(Some(Arc::new(is_library_frame)));
    memwatch_core::set_runtime_frames(Some(RuntimeFrames {
        capture,
        ctx: probe as *const Probe as usize,
        resolve: Arc::new(resolve),
    }));
    Ok(())
}

/// jmethodIDs for every method of `klass` (GetClassMethods creates them).
fn load_method_ids(jvmti: JvmtiEnv, klass: jclass) {
    let mut count: jint = 0;
    let mut methods: *mut jmethodID = std::ptr::null_mut();
    type GetClassMethods =
        unsafe extern "C" fn(JvmtiEnv, jclass, *mut jint, *mut *mut jmethodID) -> jint;
    // SAFETY: a live jvmtiEnv and a class reference of the calling thread.
    let rc = unsafe {
        f::<GetClassMethods>(jvmti, GET_CLASS_METHODS)(jvmti, klass, &mut count, &mut methods)
    };
    if rc == 0 {
        deallocate(jvmti, methods.cast());
    }
}

fn preload_loaded_classes(env: &mut JNIEnv, jvmti: JvmtiEnv) {
    let mut count: jint = 0;
    let mut classes: *mut jclass = std::ptr::null_mut();
    type GetLoadedClasses = unsafe extern "C" fn(JvmtiEnv, *mut jint, *mut *mut jclass) -> jint;
    // SAFETY: a live jvmtiEnv on an attached thread.
    let rc = unsafe {
        f::<GetLoadedClasses>(jvmti, GET_LOADED_CLASSES)(jvmti, &mut count, &mut classes)
    };
    if rc != 0 || classes.is_null() {
        return;
    }
    for i in 0..count.max(0) as usize {
        // SAFETY: classes holds `count` local references of this thread.
        let klass = unsafe { *classes.add(i) };
        load_method_ids(jvmti, klass);
        // SAFETY: a local reference GetLoadedClasses made; deleted once.
        let _ = env.delete_local_ref(unsafe { JObject::from_raw(klass) });
    }
    deallocate(jvmti, classes.cast());
}

unsafe extern "C" fn class_load(_: JvmtiEnv, _: *mut c_void, _: jobject, _: jclass) {}

unsafe extern "C" fn class_prepare(jvmti: JvmtiEnv, _: *mut c_void, _: jobject, klass: jclass) {
    load_method_ids(jvmti, klass);
}

unsafe extern "C" fn compiled_method_load(
    _: JvmtiEnv,
    _: jmethodID,
    _: jint,
    _: *const c_void,
    _: jint,
    _: *const c_void,
    _: *const c_void,
) {
}

/// The capture hook (memwatch-core's RuntimeCapture), in the SIGSEGV
/// handler: async-signal-safe (pthread_getspecific of an existing key reads
/// the thread's key array; read_word cannot fault; AGCT is HotSpot's
/// signal-handler stack walk), no allocation, a small frame (a 24-byte
/// trace header: AGCT writes the frames straight into the slot).
unsafe extern "C" fn capture(
    ucontext: *mut c_void,
    out: *mut u64,
    max_words: usize,
    ctx: *mut c_void,
) -> usize {
    if max_words < 4 || ctx.is_null() {
        return 0;
    }
    // SAFETY: ctx is the leaked Probe registered with this hook.
    let probe = unsafe { &*(ctx as *const Probe) };
    // SAFETY: a key HotSpot created (found in on_load), bound at load.
    let thread = unsafe { libc::pthread_getspecific(probe.key) } as usize;
    let env = (thread as isize).wrapping_add(probe.env_offset) as usize;
    let status: i64 = if thread == 0 || read_word(env) != Some(probe.functions) {
        NOT_JAVA
    } else {
        let mut trace = CallTrace {
            env: env as *mut c_void,
            num_frames: 0,
            // SAFETY: out has max_words words; frames start at word 2 and
            // take two words each.
            frames: unsafe { out.add(2) } as *mut CallFrame,
        };
        let depth = ((max_words - 2) / 2) as jint;
        // SAFETY: env is this thread's JNIEnv (checked above), ucontext the
        // signal's; AGCT writes at most `depth` frames.
        unsafe { (probe.agct)(&mut trace, depth, ucontext) };
        if trace.num_frames == TICKS_UNKNOWN_JAVA {
            // SAFETY: ucontext is the signal's; trace as above.
            unsafe { agct_from_stub_caller(probe, &mut trace, depth, ucontext) };
        }
        i64::from(trace.num_frames)
    };
    // SAFETY: words 0 and 1 are inside out (max_words >= 4).
    unsafe {
        *out = status as u64;
        *out.add(1) = 0;
    }
    if status > 0 {
        2 + 2 * status as usize
    } else {
        2
    }
}

/// AGCT's `ticks_unknown_Java`: in Java code but no walkable frame at the
/// pc, as when the write is inside a StubRoutines copy stub (what a
/// C2-compiled bulk `ByteBuffer.put` calls).
const TICKS_UNKNOWN_JAVA: jint = -5;

/// AGCT again, from the caller of the frame-pointer frame at the fault
/// (see [`stub_caller_context`]); `trace` keeps AGCT's first answer when
/// that frame cannot be unwound. Not inlined: its ~1 KiB context copy is on
/// the stack only on this path, never in every capture.
///
/// # Safety
/// `ucontext` is the signal handler's; `trace` as for AGCT.
#[inline(never)]
unsafe fn agct_from_stub_caller(
    probe: &Probe,
    trace: &mut CallTrace,
    depth: jint,
    ucontext: *mut c_void,
) {
    let mut caller = std::mem::MaybeUninit::<libc::ucontext_t>::uninit();
    // SAFETY: ucontext is the signal's (the caller's contract).
    if let Some(uc) = unsafe { stub_caller_context(ucontext, &mut caller) } {
        trace.num_frames = 0;
        // SAFETY: uc is a valid ucontext_t (a copy of the signal's with the
        // caller's pc/sp/fp) that lives until AGCT returns.
        unsafe { (probe.agct)(trace, depth, uc) };
    }
}

/// The signal's context as it would be in the caller of a frame-pointer
/// frame at the fault (HotSpot's copy stubs begin with `enter`: the return
/// address at fp + 8, the caller's fp at fp, its sp at fp + 16), copied into
/// `out`; None when fp cannot be such a frame of this stack (not above sp
/// within 64 KiB) or its words cannot be read. AGCT then walks from the
/// stub's caller, a call site with exact debug info, or fails again.
///
/// # Safety
/// `ucontext` is the signal handler's (a valid `ucontext_t`).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
unsafe fn stub_caller_context(
    ucontext: *mut c_void,
    out: &mut std::mem::MaybeUninit<libc::ucontext_t>,
) -> Option<*mut c_void> {
    if ucontext.is_null() {
        return None;
    }
    // SAFETY: the caller's contract; copied by value into the caller's
    // slot (no allocation, no second copy on this frame).
    let uc = out.write(unsafe { std::ptr::read(ucontext as *const libc::ucontext_t) });
    #[cfg(target_arch = "x86_64")]
    let (sp, fp) = {
        let g = &uc.uc_mcontext.gregs;
        (g[libc::REG_RSP as usize] as usize, g[libc::REG_RBP as usize] as usize)
    };
    #[cfg(target_arch = "aarch64")]
    let (sp, fp) = (uc.uc_mcontext.sp as usize, uc.uc_mcontext.regs[29] as usize);
    if fp < sp || fp - sp > 1 << 16 || fp % 8 != 0 {
        return None;
    }
    let (caller_fp, ret) = (read_word(fp)?, read_word(fp + 8)?);
    if ret == 0 {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let g = &mut uc.uc_mcontext.gregs;
        g[libc::REG_RIP as usize] = ret as i64;
        g[libc::REG_RSP as usize] = (fp + 16) as i64;
        g[libc::REG_RBP as usize] = caller_fp as i64;
    }
    #[cfg(target_arch = "aarch64")]
    {
        let m = &mut uc.uc_mcontext;
        m.pc = ret;
        m.sp = (fp + 16) as u64;
        m.regs[29] = caller_fp;
        m.regs[30] = ret;
    }
    Some(uc as *mut libc::ucontext_t as *mut c_void)
}

/// Elsewhere: no stub unwinding (the marker says why AGCT failed).
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe fn stub_caller_context(
    _: *mut c_void,
    _: &mut std::mem::MaybeUninit<libc::ucontext_t>,
) -> Option<*mut c_void> {
    None
}

/// A method's names and line table, cached by jmethodID.
struct MethodInfo {
    function: String,
    file: String,
    /// (first bci, line), sorted by bci.
    lines: Vec<(i64, u32)>,
}

static METHODS: Mutex<Option<HashMap<u64, Arc<MethodInfo>>>> = Mutex::new(None);

/// The resolver (memwatch-core's RuntimeResolver): Java frames for the
/// words `capture` wrote, or one marker frame saying why there are none.
fn resolve(words: &[u64]) -> Vec<Frame> {
    let Some(&status) = words.first() else { return Vec::new() };
    let status = status as i64;
    if status <= 0 {
        return vec![marker(&reason(status))];
    }
    let Some(jvm) = JVM.get() else { return vec![marker("the JVM is gone")] };
    let Ok(mut env) = jvm.vm.attach_current_thread_as_daemon() else {
        return vec![marker("cannot attach the resolving thread to the JVM")];
    };
    let n = (status as usize).min(words.len().saturating_sub(2) / 2);
    (0..n)
        .map(|i| {
            let bci = words[2 + 2 * i] as u32 as i32;
            let method = words[3 + 2 * i];
            java_frame(&mut env, jvm.jvmti, method, bci)
        })
        .collect()
}

fn java_frame(env: &mut JNIEnv, jvmti: JvmtiEnv, method: u64, bci: i32) -> Frame {
    let info = method_info(env, jvmti, method);
    let line = if bci < 0 {
        0
    } else {
        info.lines
            .iter()
            .take_while(|(start, _)| *start <= i64::from(bci))
            .last()
            .map_or(0, |l| l.1)
    };
    Frame {
        ip: 0,
        module: JAVA_MODULE.into(),
        module_offset: bci.max(0) as u64,
        function: info.function.clone(),
        file: info.file.clone(),
        line,
        inlined: false,
    }
}

fn method_info(env: &mut JNIEnv, jvmti: JvmtiEnv, method: u64) -> Arc<MethodInfo> {
    let mut cache = METHODS.lock().unwrap_or_else(|e| e.into_inner());
    let cache = cache.get_or_insert_with(HashMap::new);
    if let Some(info) = cache.get(&method) {
        return Arc::clone(info);
    }
    let info = Arc::new(lookup_method(env, jvmti, method as jmethodID));
    if !info.function.starts_with('<') {
        cache.insert(method, Arc::clone(&info));
    }
    info
}

fn lookup_method(env: &mut JNIEnv, jvmti: JvmtiEnv, method: jmethodID) -> MethodInfo {
    let unknown = || MethodInfo {
        function: "<unknown Java method>".into(),
        file: String::new(),
        lines: Vec::new(),
    };
    if method.is_null() {
        return unknown();
    }
    let mut name: *mut c_char = std::ptr::null_mut();
    type GetMethodName = unsafe extern "C" fn(
        JvmtiEnv,
        jmethodID,
        *mut *mut c_char,
        *mut *mut c_char,
        *mut *mut c_char,
    ) -> jint;
    // SAFETY: a live jvmtiEnv; NULL signature/generic pointers are allowed.
    let rc = unsafe {
        f::<GetMethodName>(jvmti, GET_METHOD_NAME)(
            jvmti,
            method,
            &mut name,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    if rc != 0 {
        return unknown();
    }
    let method_name = take_string(jvmti, name);
    let mut klass: jclass = std::ptr::null_mut();
    type GetDeclaringClass = unsafe extern "C" fn(JvmtiEnv, jmethodID, *mut jclass) -> jint;
    // SAFETY: as above; klass becomes a local reference of this thread.
    let rc = unsafe {
        f::<GetDeclaringClass>(jvmti, GET_METHOD_DECLARING_CLASS)(jvmti, method, &mut klass)
    };
    let (class_name, file) = if rc == 0 && !klass.is_null() {
        let mut sig: *mut c_char = std::ptr::null_mut();
        type GetClassSignature =
            unsafe extern "C" fn(JvmtiEnv, jclass, *mut *mut c_char, *mut *mut c_char) -> jint;
        // SAFETY: a live jvmtiEnv and class reference.
        let rc = unsafe {
            f::<GetClassSignature>(jvmti, GET_CLASS_SIGNATURE)(
                jvmti,
                klass,
                &mut sig,
                std::ptr::null_mut(),
            )
        };
        let class_name = if rc == 0 { class_name(&take_string(jvmti, sig)) } else { String::new() };
        let mut src: *mut c_char = std::ptr::null_mut();
        type GetSourceFileName = unsafe extern "C" fn(JvmtiEnv, jclass, *mut *mut c_char) -> jint;
        // SAFETY: as above (can_get_source_file_name was added).
        let rc =
            unsafe { f::<GetSourceFileName>(jvmti, GET_SOURCE_FILE_NAME)(jvmti, klass, &mut src) };
        let file = if rc == 0 { take_string(jvmti, src) } else { String::new() };
        // SAFETY: the local reference GetMethodDeclaringClass made.
        let _ = env.delete_local_ref(unsafe { JObject::from_raw(klass) });
        (class_name, file)
    } else {
        (String::new(), String::new())
    };
    #[repr(C)]
    struct LineEntry {
        start: jlong,
        line: jint,
    }
    let mut count: jint = 0;
    let mut table: *mut LineEntry = std::ptr::null_mut();
    type GetLineNumberTable =
        unsafe extern "C" fn(JvmtiEnv, jmethodID, *mut jint, *mut *mut LineEntry) -> jint;
    // SAFETY: as above (can_get_line_numbers was added); native methods
    // return an error and no table.
    let rc = unsafe {
        f::<GetLineNumberTable>(jvmti, GET_LINE_NUMBER_TABLE)(jvmti, method, &mut count, &mut table)
    };
    let mut lines = Vec::new();
    if rc == 0 && !table.is_null() {
        for i in 0..count.max(0) as usize {
            // SAFETY: the table has `count` entries.
            let e = unsafe { &*table.add(i) };
            lines.push((e.start, e.line.max(0) as u32));
        }
        deallocate(jvmti, table.cast());
    }
    lines.sort_unstable();
    let function =
        if class_name.is_empty() { method_name } else { format!("{class_name}.{method_name}") };
    MethodInfo { function, file, lines }
}

/// `Ljava/nio/DirectByteBuffer;` -> `java.nio.DirectByteBuffer`.
fn class_name(signature: &str) -> String {
    let s = signature.strip_prefix('L').and_then(|s| s.strip_suffix(';')).unwrap_or(signature);
    s.replace('/', ".")
}

fn marker(reason: &str) -> Frame {
    Frame {
        ip: 0,
        module: JAVA_MODULE.into(),
        module_offset: 0,
        function: format!("{MARKER}{reason}>"),
        file: String::new(),
        line: 0,
        inlined: false,
    }
}

/// What an AGCT status (or ours) means.
fn reason(status: i64) -> String {
    let what = match status {
        0 => "the thread has no Java frames",
        -1 => "class load events are off",
        -2 => "a garbage collection is running",
        -3 | -4 => "the thread was not in Java code and its stack is not walkable",
        -5 | -6 => "the thread's Java stack is not walkable at this point",
        -7 => "the thread is in an unknown state",
        -8 => "the thread is exiting",
        -9 => "the thread is deoptimizing",
        -10 => "the JVM is at a safepoint",
        NOT_JAVA => return "not a Java thread (no JNIEnv)".into(),
        _ => "unknown error",
    };
    format!("AsyncGetCallTrace returned {status}: {what}")
}

/// The JDK's frames (java.nio behind ByteBuffer.put, jdk.internal.misc)
/// and the marker: in the stack, but never the frame `Where` names.
fn is_library_frame(f: &Frame) -> bool {
    f.module == JAVA_MODULE
        && (f.function.starts_with('<')
            || ["java.", "javax.", "jdk.", "sun.", "com.sun."]
                .iter()
                .any(|p| f.function.starts_with(p)))
}

/// Splits a stack into the frames to report and the marker's reason
/// (empty when Java frames were captured or none were asked for).
pub fn split_reason(stack: &[Frame]) -> (Vec<&Frame>, String) {
    let mut reason = String::new();
    let frames = stack
        .iter()
        .filter(|f| {
            let is_marker = f.module == JAVA_MODULE && f.function.starts_with(MARKER);
            if is_marker && reason.is_empty() {
                reason = f.function[MARKER.len()..f.function.len() - 1].to_string();
            }
            !is_marker
        })
        .collect();
    (frames, reason)
}

/// A frame's numbers as make_where sends them: ip, module offset (a Java
/// frame's bci), line, inlined (0/1).
pub fn frame_numbers(f: &Frame) -> [jlong; 4] {
    [f.ip as jlong, f.module_offset as jlong, i64::from(f.line), i64::from(f.inlined)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_status_is_one_marker_frame_with_the_reason() {
        let frames = resolve(&[(-2i64) as u64, 0]);
        assert_eq!(frames.len(), 1);
        assert!(is_library_frame(&frames[0]), "Where never names the marker");
        let (rest, why) = split_reason(&frames);
        assert!(rest.is_empty());
        assert_eq!(why, "AsyncGetCallTrace returned -2: a garbage collection is running");
        let (_, why) = split_reason(&resolve(&[NOT_JAVA as u64, 0]));
        assert_eq!(why, "not a Java thread (no JNIEnv)");
    }

    #[test]
    fn jdk_frames_are_library_frames_user_frames_are_not() {
        let mut f = marker("x");
        f.function = "java.nio.DirectByteBuffer.put".into();
        assert!(is_library_frame(&f));
        f.function = "jdk.internal.misc.ScopedMemoryAccess.putByte".into();
        assert!(is_library_frame(&f));
        f.function = "io.memwatch.WhereTest.store".into();
        assert!(!is_library_frame(&f));
        f.module = "libc.so.6".into();
        f.function = "java.nio.Fake".into();
        assert!(!is_library_frame(&f), "only Java frames");
        assert_eq!(class_name("Ljava/nio/DirectByteBuffer;"), "java.nio.DirectByteBuffer");
    }
}
