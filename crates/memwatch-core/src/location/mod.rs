//! Writer location (Options::locate_writers): which thread, function, file,
//! line and stack made the first write to a page in its writable window.
//!
//! - capture.rs runs in the SIGSEGV handler: registers and a frame-pointer
//!   walk into a frame buffer beside the fault ring (only mapped, and only
//!   written, while a locating watcher exists: ring cells stay 32 bytes).
//! - The engine takes each record's frames when it pops the record
//!   ([`Captures::take`]) and resolves them when it builds the event
//!   ([`fill_where`]), with symbolize.rs and its caches.

pub mod capture;
pub mod symbolize;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use crate::backend::FaultRecord;
use crate::types::{Backend, Error, Frame, Options, Where};

pub use capture::{read_memory, read_word, RuntimeCapture, MAX_DEPTH, RUNTIME_WORDS};

/// A runtime's own frame resolver (JIT code, interpreters): given an
/// address, the frame it names, or None to let memwatch resolve it. Runs on
/// the engine's worker (or a check_changes caller) with the engine locked:
/// it must not call memwatch.
pub type FrameResolver = Arc<dyn Fn(u64) -> Option<Frame> + Send + Sync + 'static>;

static RESOLVER: RwLock<Option<FrameResolver>> = RwLock::new(None);

/// Turns the words a [`RuntimeCapture`] wrote for one fault into the
/// runtime's frames, innermost first (empty = nothing to report). Runs on the
/// engine's worker (or a check_changes caller) with the engine locked: it
/// must not call memwatch.
pub type RuntimeResolver = Arc<dyn Fn(&[u64]) -> Vec<Frame> + Send + Sync + 'static>;

/// A runtime's frames of located writes (an interpreter, a JIT): `capture`
/// copies what it needs in the SIGSEGV handler, `resolve` names the frames
/// later. The runtime's frames come first in the event's stack, then the
/// native ones, and the first runtime frame is the one `Where` names.
pub struct RuntimeFrames {
    /// The handler half (see [`RuntimeCapture`] for its rules).
    pub capture: RuntimeCapture,
    /// Passed back to `capture` as its last argument.
    pub ctx: usize,
    /// The resolving half.
    pub resolve: RuntimeResolver,
}

static RUNTIME_RESOLVER: RwLock<Option<RuntimeResolver>> = RwLock::new(None);

/// Registers (or with None removes) the process-wide runtime frames: one
/// runtime per process (a second registration replaces the first).
pub fn set_runtime_frames(frames: Option<RuntimeFrames>) {
    let mut resolver = RUNTIME_RESOLVER.write().unwrap_or_else(|e| e.into_inner());
    match frames {
        Some(f) => {
            *resolver = Some(f.resolve);
            capture::set_runtime_capture(Some((f.capture, f.ctx)));
        }
        None => {
            capture::set_runtime_capture(None);
            *resolver = None;
        }
    }
}

/// Tells a runtime's library frames (java.nio behind a ByteBuffer write,
/// the runtime's own helpers) from the user's: true = a frame `Where` does
/// not name (it stays in the stack).
pub type RuntimeSkip = Arc<dyn Fn(&Frame) -> bool + Send + Sync + 'static>;

static RUNTIME_SKIP: RwLock<Option<RuntimeSkip>> = RwLock::new(None);

/// Registers (or with None removes) the process-wide [`RuntimeSkip`]:
/// `Where` then names the first runtime frame it returns false for; when it
/// skips them all, the native user frame (or, without native frames, the
/// first runtime frame). Without one, `Where` names the first runtime frame.
pub fn set_runtime_skip(skip: Option<RuntimeSkip>) {
    *RUNTIME_SKIP.write().unwrap_or_else(|e| e.into_inner()) = skip;
}

static SYMBOLIZER: Mutex<Option<symbolize::Symbolizer>> = Mutex::new(None);

/// Sets (or with None removes) the process-wide frame resolver, asked first
/// for every captured address.
pub fn set_frame_resolver(resolver: Option<FrameResolver>) {
    *RESOLVER.write().unwrap_or_else(|e| e.into_inner()) = resolver;
}

/// Checks the location options and picks the backend: `auto` becomes
/// protect (with the reason), writewatch and poll cannot locate writers.
pub fn choose_backend(options: &Options) -> Result<Option<(Backend, String)>, Error> {
    if !options.locate_writers {
        return Ok(None);
    }
    if options.stack_depth == 0 || options.stack_depth > MAX_DEPTH {
        return Err(Error::InvalidArgument(format!(
            "stack_depth must be 1..={MAX_DEPTH}, got {}",
            options.stack_depth
        )));
    }
    match options.backend {
        Backend::Auto => Ok(Some((
            Backend::Protect,
            "locate_writers: auto chose protect, the backend that sees each writer".into(),
        ))),
        Backend::Protect => Ok(Some((Backend::Protect, String::new()))),
        other => Err(Error::InvalidArgument(format!(
            "locate_writers needs the protect backend (or auto); {other} cannot see the writer"
        ))),
    }
}

/// Turns capture on for the given depth (the deepest of the locating
/// watchers; 0 = off), mapping the frame buffer for a ring of `slots` cells.
pub fn set_depth(depth: usize, slots: usize) -> Result<(), Error> {
    if depth > 0 {
        capture::allocate(slots).map_err(Error::Os)?;
    }
    capture::set_depth(depth);
    Ok(())
}

/// Captured stacks of open pages, by id (FaultRecord::capture).
#[derive(Default)]
struct Captures {
    next: u32,
    map: HashMap<u32, capture::RawStack>,
}

static CAPTURES: Mutex<Option<Captures>> = Mutex::new(None);

fn captures() -> std::sync::MutexGuard<'static, Option<Captures>> {
    CAPTURES.lock().unwrap_or_else(|e| e.into_inner())
}

/// Ring hook (protect backend, engine mutex held): the frames of `slot`,
/// stored under a fresh id, or 0 when nothing was captured.
pub fn take(slot: usize) -> u32 {
    let Some(raw) = capture::take(slot) else { return 0 };
    let mut guard = captures();
    let c = guard.get_or_insert_with(Captures::default);
    c.next = c.next.wrapping_add(1).max(1);
    c.map.insert(c.next, raw);
    c.next
}

/// Keeps only the stacks whose ids are in `live` (records still waiting
/// for their event).
pub fn retain_captures(live: impl Iterator<Item = u32>) {
    let mut guard = captures();
    let Some(c) = guard.as_mut().filter(|c| !c.map.is_empty()) else { return };
    let live: HashSet<u32> = live.filter(|&id| id != 0).collect();
    c.map.retain(|id, _| live.contains(id));
}

/// A frame the user would point at: not memwatch itself, not a
/// memcpy-style helper (libc, compiler builtins, core::ptr).
fn is_helper(f: &Frame) -> bool {
    let module = f.module.rsplit('/').next().unwrap_or("");
    let func = f.function.trim_start_matches('<');
    module.starts_with("libmemwatch")
        || in_libc(f)
        || ["memwatch_core::", "memwatch_capi::", "core::ptr::", "core::intrinsics::"]
            .iter()
            .any(|p| func.starts_with(p))
        || func.starts_with("compiler_builtins::")
}

/// A frame in the C library (whose memcpy-style routines keep no frame).
fn in_libc(f: &Frame) -> bool {
    let module = f.module.rsplit('/').next().unwrap_or("");
    module.starts_with("libc.so") || module.starts_with("libc-")
}

fn resolve_one(sym: &mut symbolize::Symbolizer, addr: u64) -> Vec<Frame> {
    let hook = RESOLVER.read().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(frame) = hook.and_then(|h| h(addr)) {
        return vec![frame];
    }
    sym.resolve(addr)
}

/// Event hook: fills `w` from the stack captured with `who` (nothing when
/// none was), keeping `depth` captured frames; counts the other faults
/// merged into the event as unattributed. `region` = the region's
/// [start, end): a fault on its page that wrote outside it (another object
/// sharing the page wrote first) locates nothing for this region.
pub fn fill_where(w: &mut Where, who: Option<FaultRecord>, depth: usize, region: (usize, usize)) {
    let Some(who) = who else { return };
    w.unattributed_faults = who.faults.saturating_sub(1);
    let c = match captures().as_ref().and_then(|c| c.map.get(&who.capture)) {
        Some(c) => c.clone(),
        None => return,
    };
    if !(region.0 as u64..region.1 as u64).contains(&c.addr) {
        // Not this region's writer: it neither names the thread nor the IP.
        w.unattributed_faults = who.faults;
        w.thread_id = None;
        w.fault_ip = None;
        return;
    }
    w.thread_name = c.thread_name.clone();
    let mut guard = SYMBOLIZER.lock().unwrap_or_else(|e| e.into_inner());
    let sym = guard.get_or_insert_with(symbolize::Symbolizer::new);
    let mut addrs: Vec<u64> = Vec::with_capacity(c.frames.len() + 1);
    for (i, &a) in c.frames.iter().take(depth).enumerate() {
        // Callers: the call instruction is just before the return address.
        addrs.push(if i == 0 { a } else { a.wrapping_sub(1) });
    }
    let mut stack: Vec<Frame> = Vec::new();
    for (i, &a) in addrs.iter().enumerate() {
        let frames = resolve_one(sym, a);
        stack.extend(frames);
        if i == 0 && c.sp_word != 0 && stack.iter().all(in_libc) {
            // A frameless libc routine (memcpy) faulted: the frame pointer
            // still names its caller's frame, whose return address the walk
            // took as frame 1; the routine's own return address is the word
            // at SP (libc's string routines push nothing before storing).
            let caller = resolve_one(sym, c.sp_word.wrapping_sub(1));
            if caller.iter().any(|f| !f.module.is_empty()) {
                stack.extend(caller);
            }
        }
    }
    let mut runtime = match (&c.runtime[..], RUNTIME_RESOLVER.read()) {
        ([], _) => Vec::new(),
        (words, Ok(r)) => r.as_ref().map(|r| r(words)).unwrap_or_default(),
        (_, Err(_)) => Vec::new(),
    };
    runtime.truncate(depth);
    if !runtime.is_empty() {
        // The runtime's frames are what the user points at (the first one
        // that is not the runtime's library code); the native ones (the
        // interpreter, memcpy) follow them in the stack.
        let skip = RUNTIME_SKIP.read().unwrap_or_else(|e| e.into_inner()).clone();
        let user = match skip {
            Some(skip) => runtime.iter().find(|f| !skip(f)).or_else(|| native_user(&stack)),
            None => runtime.first(),
        };
        name_user(w, user.or(runtime.first()));
        w.stack = runtime.into_iter().chain(stack).collect();
        return;
    }
    name_user(w, native_user(&stack));
    w.stack = stack;
}

/// The native frame a user would point at: the first that is not a helper.
fn native_user(stack: &[Frame]) -> Option<&Frame> {
    stack.iter().find(|f| !is_helper(f)).or(stack.first())
}

/// Copies `user`'s module, file, function and line into `w`.
fn name_user(w: &mut Where, user: Option<&Frame>) {
    if let Some(user) = user {
        w.module = user.module.clone();
        w.module_offset = user.module_offset;
        w.file = user.file.clone();
        w.function = user.function.clone();
        w.line = user.line;
    }
}

/// Resolves one address now (benchmarks, tests): the frames fill_where would
/// put in a stack for it.
pub fn resolve_address(addr: u64) -> Vec<Frame> {
    let mut guard = SYMBOLIZER.lock().unwrap_or_else(|e| e.into_inner());
    resolve_one(guard.get_or_insert_with(symbolize::Symbolizer::new), addr)
}

/// Drops the symbolizer's caches (benchmarks measure cold resolution).
pub fn clear_symbol_cache() {
    *SYMBOLIZER.lock().unwrap_or_else(|e| e.into_inner()) = None;
}
