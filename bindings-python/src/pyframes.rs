//! Python frames in located writes (`locate_writers=True`).
//!
//! The engine calls [`capture`] in its SIGSEGV handler on the writing
//! thread. It finds the thread's state with `PyGILState_GetThisThreadState`
//! (resolved with dlsym at import: the GIL may be released, e.g. in a numpy
//! loop), walks the thread's frames the way faulthandler does (no INCREF, no
//! GIL) and copies three words per frame: the code object's address, the
//! instruction's byte offset with `co_firstlineno`, and a fingerprint of the
//! code's `co_filename`/`co_name` pointers. Every read goes through
//! `memwatch_core::read_memory` (EFAULT, never a fault), and every code
//! object must have `PyCode_Type` as its type (taken at import): a wrong
//! layout guess gives no Python frames, never a crash.
//!
//! [`resolve`] runs when the event is built (engine locked, GIL not held):
//! it re-reads each code object through read_memory, trusts it only if its
//! type, first line and fingerprint still match what the handler saw (a
//! freed code object reused for another function does not), then reads the
//! file and function names (compact str objects) and the line table and
//! computes the line from the offset (3.9 co_lnotab, 3.10 co_linetable,
//! 3.11+ location table).
//!
//! Layouts: per-version offsets for 3.9 to 3.12 (from each version's
//! headers), `_PyRuntime.debug_offsets` for 3.13. At import the layout is
//! checked against the importing frames themselves (file, function and line
//! as Python reports them); any mismatch or other version (or
//! `MEMWATCH_PYTHON_FRAMES=off` in the environment) leaves Python frames
//! off, says why in [`status`], and events keep their native frames.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use memwatch_core as mw;
use pyo3::prelude::*;

/// First word of a capture: this tag in the high half, the minor version in
/// the low half.
const TAG: u64 = 0x4d57_5059 << 32;
/// Words per captured frame.
const WORDS_PER_FRAME: usize = 3;
/// Frames visited at most per capture (shims and skipped frames included):
/// bounds the walk even on a corrupted (cyclic) frame chain.
const MAX_VISITS: usize = 128;
/// Bytes read per frame / per code object in the handler (on its stack).
const CHUNK: usize = 256;
/// Longest name or file read in the resolver (characters).
const MAX_STR: usize = 4096;
/// Largest line table read in the resolver (bytes).
const MAX_TABLE: usize = 1 << 20;
/// 3.12+: frames owned by the C stack (entry shims), not Python code.
const FRAME_OWNED_BY_CSTACK: u8 = 3;

/// How the frame holds the current instruction.
#[derive(Clone, Copy, Debug)]
enum Instr {
    /// 3.9: `f_lasti`, a byte offset (int).
    LastiBytes,
    /// 3.10: `f_lasti`, in 2-byte code units (int).
    LastiUnits,
    /// 3.11+: a pointer into the code object's `co_code_adaptive`.
    Pointer,
}

/// The line table's format.
#[derive(Clone, Copy, Debug)]
enum Lines {
    /// 3.9 co_lnotab: (byte offset delta, signed line delta) pairs.
    Lnotab,
    /// 3.10 co_linetable: (byte length, signed line delta or -128) pairs.
    Linetable310,
    /// 3.11+ location table (PEP 657).
    Locations,
}

/// Where things are in one CPython version (byte offsets).
#[derive(Clone, Debug)]
struct Layout {
    minor: u32,
    this_thread: unsafe extern "C" fn() -> *mut c_void,
    code_type: u64,
    unicode_type: u64,
    bytes_type: u64,
    /// tstate -> current frame (3.11/3.12: -> cframe, then cframe_current).
    ts_frame: usize,
    cframe_current: Option<usize>,
    f_back: usize,
    f_code: usize,
    f_instr: usize,
    f_owner: Option<usize>,
    instr: Instr,
    co_filename: usize,
    co_name: usize,
    co_firstlineno: usize,
    co_linetable: usize,
    co_adaptive: usize,
    lines: Lines,
    bytes_size: usize,
    bytes_sval: usize,
    uni_state: usize,
    uni_length: usize,
    ascii_size: usize,
    compact_size: usize,
}

static LAYOUT: OnceLock<Layout> = OnceLock::new();
/// Why Python frames are on or off (get_stats()["python_frames"]).
static STATUS: OnceLock<String> = OnceLock::new();
/// Python frames captured per fault: the deepest live stack_depth.
static DEPTH: AtomicUsize = AtomicUsize::new(0);
/// Test hook: the handler expects a wrong code type, as if the layout were
/// guessed wrong (set by `_memwatch._break_python_frames`).
static BROKEN: AtomicBool = AtomicBool::new(false);

/// The words a capture wrote per fault never exceed this many frames.
pub const MAX_FRAMES: usize = (mw::RUNTIME_WORDS - 1) / WORDS_PER_FRAME;

/// Python frames are on ("CPython 3.x") or why not ("unavailable: ...").
pub fn status() -> &'static str {
    STATUS.get().map_or("unavailable: not initialised", String::as_str)
}

/// Depths of the live locating watchers (DEPTH is their maximum).
static DEPTHS: Mutex<Vec<usize>> = Mutex::new(Vec::new());

fn update_depth(depths: &[usize]) {
    DEPTH.store(depths.iter().copied().max().unwrap_or(0).min(MAX_FRAMES), Ordering::Relaxed);
}

/// A locating watcher's claim on the Python frames captured per fault: while
/// it lives, at least `depth` frames (up to MAX_FRAMES) are captured.
pub struct DepthClaim(usize);

impl DepthClaim {
    /// Claims `depth` frames.
    pub fn new(depth: usize) -> Self {
        let mut depths = DEPTHS.lock().unwrap_or_else(|e| e.into_inner());
        depths.push(depth);
        update_depth(&depths);
        DepthClaim(depth)
    }
}

impl Drop for DepthClaim {
    fn drop(&mut self) {
        let mut depths = DEPTHS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = depths.iter().position(|&d| d == self.0) {
            depths.swap_remove(i);
        }
        update_depth(&depths);
    }
}

/// Test hook: with `broken`, every capture sees a code object of the wrong
/// type (a wrong layout) and reports no Python frames.
#[pyfunction]
pub fn _break_python_frames(broken: bool) {
    BROKEN.store(broken, Ordering::SeqCst);
}

fn dlsym(name: &std::ffi::CStr) -> Option<usize> {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only looks
    // the symbol up.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    (!p.is_null()).then_some(p as usize)
}

fn field(buf: &[u8], at: usize, len: usize) -> Option<u64> {
    let b = buf.get(at..at.checked_add(len)?)?;
    let mut w = [0u8; 8];
    w[..len].copy_from_slice(b);
    Some(u64::from_ne_bytes(w))
}

fn word(buf: &[u8], at: usize) -> Option<u64> {
    field(buf, at, 8)
}

fn int32(buf: &[u8], at: usize) -> Option<i32> {
    field(buf, at, 4).map(|v| v as u32 as i32)
}

/// The per-version layout, or why there is none.
fn layout_for(minor: u32) -> Result<Layout, String> {
    let sym = |n: &std::ffi::CStr| {
        dlsym(n).ok_or_else(|| format!("symbol {} not found", n.to_string_lossy()))
    };
    let this_thread = sym(c"PyGILState_GetThisThreadState")?;
    // SAFETY: the symbol is CPython's `PyThreadState *(void)` function.
    let this_thread: unsafe extern "C" fn() -> *mut c_void =
        unsafe { std::mem::transmute::<usize, unsafe extern "C" fn() -> *mut c_void>(this_thread) };
    let code_type = sym(c"PyCode_Type")? as u64;
    let unicode_type = sym(c"PyUnicode_Type")? as u64;
    let bytes_type = sym(c"PyBytes_Type")? as u64;
    let mut l = Layout {
        minor,
        this_thread,
        code_type,
        unicode_type,
        bytes_type,
        ts_frame: 24,
        cframe_current: None,
        f_back: 24,
        f_code: 32,
        f_instr: 104,
        f_owner: None,
        instr: Instr::LastiBytes,
        co_filename: 104,
        co_name: 112,
        co_firstlineno: 40,
        co_linetable: 120,
        co_adaptive: 0,
        lines: Lines::Lnotab,
        bytes_size: 16,
        bytes_sval: 32,
        uni_state: 32,
        uni_length: 16,
        ascii_size: 48,
        compact_size: 72,
    };
    match minor {
        9 => {}
        10 => {
            l.f_instr = 96;
            l.instr = Instr::LastiUnits;
            l.lines = Lines::Linetable310;
        }
        11 | 12 => {
            l.ts_frame = 56;
            l.instr = Instr::Pointer;
            l.lines = Lines::Locations;
            l.co_filename = 112;
            l.co_name = 120;
            l.co_linetable = 136;
            if minor == 11 {
                l.cframe_current = Some(8);
                (l.f_code, l.f_back, l.f_instr, l.f_owner) = (32, 48, 56, Some(69));
                (l.co_firstlineno, l.co_adaptive) = (72, 184);
            } else {
                l.cframe_current = Some(0);
                (l.f_code, l.f_back, l.f_instr, l.f_owner) = (0, 8, 56, Some(70));
                (l.co_firstlineno, l.co_adaptive) = (68, 192);
                (l.ascii_size, l.compact_size) = (40, 56);
            }
        }
        13 => debug_offsets(&mut l)?,
        _ => return Err(format!("no known frame layout for CPython 3.{minor}")),
    }
    Ok(l)
}

/// 3.13: the offsets CPython publishes for debuggers at the start of
/// `_PyRuntime` (`_Py_DebugOffsets`, cookie "xdebugpy").
fn debug_offsets(l: &mut Layout) -> Result<(), String> {
    let runtime = dlsym(c"_PyRuntime").ok_or("symbol _PyRuntime not found")?;
    let mut d = [0u8; 584];
    if !mw::read_memory(runtime, &mut d) || &d[..8] != b"xdebugpy" {
        return Err("_PyRuntime has no debug offsets (cookie \"xdebugpy\")".into());
    }
    let at = |o: usize| word(&d, o).map(|v| v as usize).unwrap_or(usize::MAX);
    let version = at(8);
    if version >> 16 != 0x030D || at(16) != 0 {
        return Err(format!("unexpected debug offsets (version {version:#x}, free-threaded)"));
    }
    l.ts_frame = at(184);
    (l.f_back, l.f_code, l.f_instr, l.f_owner) = (at(232), at(240), at(248), Some(at(264)));
    l.co_filename = at(280);
    l.co_name = at(288);
    l.co_linetable = at(304);
    l.co_firstlineno = at(312);
    l.co_adaptive = at(344);
    l.instr = Instr::Pointer;
    l.lines = Lines::Locations;
    (l.bytes_size, l.bytes_sval) = (at(520), at(528));
    (l.uni_state, l.uni_length, l.ascii_size) = (at(544), at(552), at(560));
    // PyCompactUnicodeObject = PyASCIIObject + utf8_length + utf8.
    l.compact_size = l.ascii_size.saturating_add(16);
    if at(360) != 8 {
        return Err("unexpected ob_type offset in the debug offsets".into());
    }
    Ok(())
}

/// Reads `len` (<= CHUNK) bytes at `addr` into `buf`.
fn read_chunk(addr: u64, buf: &mut [u8; CHUNK], len: usize) -> bool {
    len <= CHUNK
        && addr >= 4096
        && addr.is_multiple_of(8)
        && mw::read_memory(addr as usize, &mut buf[..len])
}

/// The handler's walk: writes the tag and up to `depth` frames' words into
/// `out`, returns the count (0 = no Python frames). Async-signal-safe: only
/// read_memory, stack buffers and stores into `out`.
fn walk(l: &Layout, out: &mut [u64], depth: usize, code_type: u64) -> usize {
    let frame_len =
        l.f_back.max(l.f_code).max(l.f_instr).max(l.f_owner.unwrap_or(0)).saturating_add(8);
    let code_len = l.co_filename.max(l.co_name).max(l.co_firstlineno).saturating_add(8);
    if frame_len > CHUNK || code_len > CHUNK || out.len() < 1 + WORDS_PER_FRAME {
        return 0;
    }
    // SAFETY: a CPython function that reads a thread-specific key
    // (pthread_getspecific): async-signal-safe, as faulthandler relies on.
    let tstate = unsafe { (l.this_thread)() } as u64;
    if tstate == 0 {
        return 0;
    }
    let mut frame = match mw::read_word((tstate as usize).wrapping_add(l.ts_frame)) {
        Some(f) => f,
        None => return 0,
    };
    if let Some(cur) = l.cframe_current {
        frame = match mw::read_word((frame as usize).wrapping_add(cur)) {
            Some(f) if frame != 0 => f,
            _ => return 0,
        };
    }
    out[0] = TAG | l.minor as u64;
    let mut n = 1;
    let (mut fbuf, mut cbuf) = ([0u8; CHUNK], [0u8; CHUNK]);
    let mut visits = 0;
    while frame != 0 && visits < MAX_VISITS && (n - 1) / WORDS_PER_FRAME < depth {
        visits += 1;
        if n + WORDS_PER_FRAME > out.len() || !read_chunk(frame, &mut fbuf, frame_len) {
            break;
        }
        let (Some(back), Some(code)) = (word(&fbuf, l.f_back), word(&fbuf, l.f_code)) else {
            break;
        };
        if let Some(o) = l.f_owner {
            if fbuf.get(o) == Some(&FRAME_OWNED_BY_CSTACK) {
                frame = back;
                continue;
            }
        }
        if !read_chunk(code, &mut cbuf, code_len) || word(&cbuf, 8) != Some(code_type) {
            // Not a code object: the layout is not what we think.
            return 0;
        }
        let offset = match l.instr {
            Instr::LastiBytes => int32(&fbuf, l.f_instr).map(|v| v.max(0) as u64),
            Instr::LastiUnits => int32(&fbuf, l.f_instr).map(|v| v.max(0) as u64 * 2),
            Instr::Pointer => word(&fbuf, l.f_instr).map(|p| {
                p.saturating_sub(code.wrapping_add(l.co_adaptive as u64)).min(u32::MAX as u64)
            }),
        };
        let (Some(offset), Some(first), Some(file), Some(name)) = (
            offset,
            int32(&cbuf, l.co_firstlineno),
            word(&cbuf, l.co_filename),
            word(&cbuf, l.co_name),
        ) else {
            return 0;
        };
        out[n] = code;
        out[n + 1] = offset | (first as u32 as u64) << 32;
        out[n + 2] = fingerprint(file, name);
        n += WORDS_PER_FRAME;
        frame = back;
    }
    if n == 1 {
        0
    } else {
        n
    }
}

fn fingerprint(file: u64, name: u64) -> u64 {
    file ^ name.rotate_left(32)
}

/// The engine's capture hook (memwatch_core::RuntimeCapture).
///
/// # Safety
/// Called by the engine with `out` valid for `max_words` words.
pub unsafe extern "C" fn capture(
    _ucontext: *mut c_void,
    out: *mut u64,
    max_words: usize,
    _ctx: *mut c_void,
) -> usize {
    let Some(l) = LAYOUT.get() else { return 0 };
    // SAFETY: the hook's contract: out has room for max_words words.
    let out = unsafe { std::slice::from_raw_parts_mut(out, max_words) };
    let code_type = if BROKEN.load(Ordering::Relaxed) { !l.code_type } else { l.code_type };
    walk(l, out, DEPTH.load(Ordering::Relaxed), code_type)
}

/// What the resolver keeps of one code object.
#[derive(Clone)]
struct CodeInfo {
    file: String,
    name: String,
    table: Arc<Vec<u8>>,
}

/// A captured code object's identity: (address, fingerprint, first line).
type CodeKey = (u64, u64, u32);

/// Code objects resolved so far.
static CACHE: Mutex<Option<HashMap<CodeKey, CodeInfo>>> = Mutex::new(None);

/// A str object's text (compact str objects only), through read_memory.
fn read_str(l: &Layout, addr: u64) -> Option<String> {
    let mut head = [0u8; CHUNK];
    if !read_chunk(addr, &mut head, l.compact_size.max(l.uni_state.saturating_add(4))) {
        return None;
    }
    if word(&head, 8)? != l.unicode_type {
        return None;
    }
    let state = field(&head, l.uni_state, 4)?;
    let (kind, compact, ascii) = ((state >> 2) & 7, (state >> 5) & 1, (state >> 6) & 1);
    let len = word(&head, l.uni_length)? as usize;
    if compact == 0 || len > MAX_STR || !matches!(kind, 1 | 2 | 4) {
        return None;
    }
    let data = (addr as usize).wrapping_add(if ascii == 1 { l.ascii_size } else { l.compact_size });
    let mut bytes = vec![0u8; len * kind as usize];
    if !mw::read_memory(data, &mut bytes) {
        return None;
    }
    let chars: Option<String> = match kind {
        1 => Some(bytes.iter().map(|&b| b as char).collect()),
        2 => bytes
            .chunks_exact(2)
            .map(|c| char::from_u32(u16::from_ne_bytes([c[0], c[1]]) as u32))
            .collect(),
        _ => bytes
            .chunks_exact(4)
            .map(|c| char::from_u32(u32::from_ne_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
    };
    chars
}

/// A bytes object's contents, through read_memory.
fn read_bytes(l: &Layout, addr: u64) -> Option<Vec<u8>> {
    let mut head = [0u8; CHUNK];
    if !read_chunk(addr, &mut head, l.bytes_sval) || word(&head, 8)? != l.bytes_type {
        return None;
    }
    let len = word(&head, l.bytes_size)? as usize;
    if len > MAX_TABLE {
        return None;
    }
    let mut out = vec![0u8; len];
    mw::read_memory((addr as usize).wrapping_add(l.bytes_sval), &mut out).then_some(out)
}

/// Reads the code object at `code` if it still is the one the handler saw.
fn code_info(l: &Layout, code: u64, fp: u64, first: u32) -> Option<CodeInfo> {
    let mut guard = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let cache = guard.get_or_insert_with(HashMap::new);
    let mut cbuf = [0u8; CHUNK];
    let len =
        l.co_filename.max(l.co_name).max(l.co_firstlineno).max(l.co_linetable).saturating_add(8);
    if len > CHUNK || !read_chunk(code, &mut cbuf, len) || word(&cbuf, 8)? != l.code_type {
        return None;
    }
    let (file, name) = (word(&cbuf, l.co_filename)?, word(&cbuf, l.co_name)?);
    if int32(&cbuf, l.co_firstlineno)? as u32 != first || fingerprint(file, name) != fp {
        return None;
    }
    if let Some(info) = cache.get(&(code, fp, first)) {
        return Some(info.clone());
    }
    let info = CodeInfo {
        file: read_str(l, file)?,
        name: read_str(l, name)?,
        table: Arc::new(read_bytes(l, word(&cbuf, l.co_linetable)?)?),
    };
    if cache.len() >= 4096 {
        cache.clear();
    }
    cache.insert((code, fp, first), info.clone());
    Some(info)
}

/// The engine's resolver: the captured words as frames, innermost first. A
/// code object that is gone (or no longer the same) gives a frame without
/// names.
pub fn resolve(words: &[u64]) -> Vec<Frame> {
    let Some(l) = LAYOUT.get() else { return Vec::new() };
    if words.first() != Some(&(TAG | l.minor as u64)) {
        return Vec::new();
    }
    words[1..]
        .chunks_exact(WORDS_PER_FRAME)
        .map(|w| {
            let (code, offset, first, fp) = (w[0], w[1] as u32, (w[1] >> 32) as u32, w[2]);
            let mut f = Frame { module_offset: offset as u64, ..Frame::default() };
            if let Some(info) = code_info(l, code, fp, first) {
                f.line = line_of(l.lines, &info.table, first as i32, offset).unwrap_or(0);
                f.file = info.file;
                f.function = info.name;
            }
            f
        })
        .collect()
}

use mw::Frame;

/// The line of the instruction at byte `offset` (None: no line).
fn line_of(format: Lines, table: &[u8], first: i32, offset: u32) -> Option<u32> {
    let offset = offset as i64;
    let line = match format {
        Lines::Lnotab => {
            // Python/compile.c (3.9) lnotab_notes: pairs of unsigned byte
            // offset delta and signed line delta.
            let (mut addr, mut line) = (0i64, first as i64);
            for p in table.chunks_exact(2) {
                addr += p[0] as i64;
                if addr > offset {
                    break;
                }
                line += p[1] as i8 as i64;
            }
            line
        }
        Lines::Linetable310 => {
            // 3.10 lnotab_notes: (length in bytes, line delta or -128 = none).
            let (mut end, mut line) = (0i64, first as i64);
            for p in table.chunks_exact(2) {
                let start = end;
                end += p[0] as i64;
                let delta = p[1] as i8;
                if delta != -128 {
                    line += delta as i64;
                }
                if start <= offset && offset < end {
                    return (delta != -128).then_some(line as u32);
                }
            }
            return None;
        }
        Lines::Locations => return locations_line(table, first as i64, offset),
    };
    (line > 0).then_some(line as u32)
}

/// 3.11+ location table (Objects/locations.md): entries start with a byte
/// whose top bit is set: code = bits 3-6, length = bits 0-2 plus one code
/// unit; codes 15 = no location, 14 = long form and 13 = no columns carry a
/// signed varint line delta, 10-12 = one line, delta 0-2, 0-9 = same line.
fn locations_line(table: &[u8], first: i64, offset: i64) -> Option<u32> {
    let (mut i, mut end, mut line) = (0usize, 0i64, first);
    while i < table.len() {
        let b = table[i];
        let code = (b >> 3) & 15;
        let start = end;
        end += ((b & 7) as i64 + 1) * 2;
        let delta = match code {
            13 | 14 => svarint(table, i + 1)?,
            10..=12 => code as i64 - 10,
            _ => 0,
        };
        line += delta;
        if start <= offset && offset < end {
            return (code != 15 && line > 0).then_some(line as u32);
        }
        i += 1;
        while i < table.len() && table[i] & 0x80 == 0 {
            i += 1;
        }
    }
    None
}

fn svarint(table: &[u8], at: usize) -> Option<i64> {
    let (mut v, mut shift, mut i) = (0u64, 0u32, at);
    loop {
        let b = *table.get(i)?;
        v |= ((b & 63) as u64) << shift;
        i += 1;
        if b & 64 == 0 || shift > 56 {
            break;
        }
        shift += 6;
    }
    Some(if v & 1 == 1 { -((v >> 1) as i64) } else { (v >> 1) as i64 })
}

/// Sets up Python frames at import (GIL held): picks the layout for this
/// interpreter, checks it against the importing frames and registers the
/// engine hooks; else records why Python frames are off.
pub fn init(py: Python<'_>) {
    let status = match try_init(py) {
        Ok(l) => {
            let minor = l.minor;
            if LAYOUT.set(l).is_ok() {
                mw::set_runtime_frames(Some(mw::RuntimeFrames {
                    capture,
                    ctx: 0,
                    resolve: Arc::new(resolve),
                }));
            }
            format!("CPython 3.{minor}")
        }
        Err(why) => format!("unavailable: {why}"),
    };
    let _ = STATUS.set(status);
}

fn try_init(py: Python<'_>) -> Result<Layout, String> {
    if std::env::var_os("MEMWATCH_PYTHON_FRAMES").is_some_and(|v| v == "off") {
        return Err("turned off (MEMWATCH_PYTHON_FRAMES=off)".into());
    }
    let v = py.version_info();
    let sys = py.import("sys").map_err(|e| e.to_string())?;
    let implementation: String = sys
        .getattr("implementation")
        .and_then(|i| i.getattr("name"))
        .and_then(|n| n.extract())
        .map_err(|e| e.to_string())?;
    if implementation != "cpython" || v.major != 3 {
        return Err(format!("{implementation} {}.{} is not CPython 3", v.major, v.minor));
    }
    let l = layout_for(v.minor as u32)?;
    self_check(&l, &sys).map_err(|e| format!("CPython 3.{}: layout check failed: {e}", v.minor))?;
    Ok(l)
}

/// Walks the calling thread's frames with `l` and compares them with what
/// Python says about its two innermost frames (file, function, line).
fn self_check(l: &Layout, sys: &Bound<'_, PyModule>) -> Result<(), String> {
    let mut out = [0u64; mw::RUNTIME_WORDS];
    let n = walk(l, &mut out, 2, l.code_type);
    if n == 0 {
        return Err("no frames found".into());
    }
    // The resolver needs LAYOUT; resolve with this candidate directly.
    let frames: Vec<Frame> = out[1..n]
        .chunks_exact(WORDS_PER_FRAME)
        .map(|w| {
            let (code, offset, first, fp) = (w[0], w[1] as u32, (w[1] >> 32) as u32, w[2]);
            let mut f = Frame::default();
            if let Some(info) = code_info(l, code, fp, first) {
                f.line = line_of(l.lines, &info.table, first as i32, offset).unwrap_or(0);
                (f.file, f.function) = (info.file, info.name);
            }
            f
        })
        .collect();
    CACHE.lock().unwrap_or_else(|e| e.into_inner()).take();
    for (depth, got) in frames.iter().enumerate() {
        let f =
            sys.getattr("_getframe").and_then(|g| g.call1((depth,))).map_err(|e| e.to_string())?;
        let code = f.getattr("f_code").map_err(|e| e.to_string())?;
        let want = (|| -> PyResult<(String, String, u32)> {
            Ok((
                code.getattr("co_filename")?.extract()?,
                code.getattr("co_name")?.extract()?,
                f.getattr("f_lineno")?.extract()?,
            ))
        })()
        .map_err(|e| e.to_string())?;
        let seen = (got.file.clone(), got.function.clone(), got.line);
        if seen != want {
            return Err(format!("frame {depth}: read {seen:?}, Python says {want:?}"));
        }
    }
    Ok(())
}
