//! Writer location, the signal-handler half: the faulting IP, SP, FP and a
//! frame-pointer walk of up to `depth` caller frames, written into a
//! preallocated frame buffer beside the fault ring (one slot per ring cell,
//! published with the ring record; see Ring::push_with).
//!
//! Async-signal-safe: atomics, plain stores into memwatch's own mapping and
//! reads through `probe_read`. Every stack read goes through that probe: a
//! bad frame pointer (any address, unmapped or PROT_NONE) faults on the
//! probe's one load instruction, memwatch's SIGSEGV handler sees that IP
//! (recover_probe_fault) and resumes at the probe's fixup, which returns
//! "unreadable", and the walk gives up there. The walk is also bounded:
//! frame pointers must be aligned, above SP, strictly increasing and within
//! MAX_SPAN of SP. When SIGSEGV is blocked (memwatch's handler called by
//! another one installed over it without SA_NODEFER) a probe fault could not
//! be recovered, so only the faulting IP is kept. No allocation, no locks, no
//! TLS; the probe and its labels are hidden symbols of this library (no PLT),
//! and syscall(2) is bound before capture is first turned on.

use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::sys;

/// Largest stack depth a watcher may ask for.
pub const MAX_DEPTH: usize = 32;
/// Words before the frames in a slot: count, sp, fp, the word at sp, two
/// words of thread name (PR_GET_NAME: 16 bytes, NUL-padded), the faulting
/// data address.
const HEAD_WORDS: usize = 7;
/// Words a runtime capture hook (RuntimeCapture) may write per fault.
pub const RUNTIME_WORDS: usize = 64;
/// Offset of the runtime words' count in a slot (the words follow it).
const RUNTIME_AT: usize = HEAD_WORDS + MAX_DEPTH;
/// Words per slot.
const SLOT_WORDS: usize = RUNTIME_AT + 1 + RUNTIME_WORDS;
/// Frame pointers more than this far above SP end the walk.
const MAX_SPAN: usize = 256 << 20;

/// Base of the frame buffer (slots * SLOT_WORDS words); null until a
/// locating watcher exists.
static FRAMES: AtomicPtr<u64> = AtomicPtr::new(std::ptr::null_mut());
static SLOTS: AtomicUsize = AtomicUsize::new(0);
/// Frames to capture per fault; 0 = capture off.
static DEPTH: AtomicUsize = AtomicUsize::new(0);
static ALLOC_LOCK: Mutex<()> = Mutex::new(());

/// A runtime's own capture (an interpreter's or a JIT's frames), called in
/// the SIGSEGV handler on the faulting thread after the native walk, with the
/// signal's ucontext, `out` (room for `max_words` words) and the registered
/// `ctx`; returns how many words it wrote (more than `max_words` counts as
/// `max_words`). It must be async-signal-safe: no allocation, no locks, no
/// lazy TLS, no lazy PLT binding, small stack frames (it may run on a
/// thread's sigaltstack); it reads memory it does not own only through
/// [`read_memory`] / [`read_word`].
pub type RuntimeCapture = unsafe extern "C" fn(
    ucontext: *mut libc::c_void,
    out: *mut u64,
    max_words: usize,
    ctx: *mut libc::c_void,
) -> usize;

/// The registered capture and its context (leaked: the handler may hold it
/// while it is replaced, so a registration is never freed).
struct RuntimeHook {
    capture: RuntimeCapture,
    ctx: usize,
}

static RUNTIME_HOOK: AtomicPtr<RuntimeHook> = AtomicPtr::new(std::ptr::null_mut());

/// Installs (or with None removes) the runtime capture hook. Each call
/// leaks one 16-byte registration (a handler may still be using the old one).
pub fn set_runtime_capture(hook: Option<(RuntimeCapture, usize)>) {
    let new = match hook {
        Some((capture, ctx)) => Box::into_raw(Box::new(RuntimeHook { capture, ctx })),
        None => std::ptr::null_mut(),
    };
    RUNTIME_HOOK.store(new, Ordering::SeqCst);
}

/// Maps the frame buffer (once, outside the handler): one slot per ring cell.
pub fn allocate(slots: usize) -> Result<(), String> {
    let _guard = ALLOC_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if !FRAMES.load(Ordering::SeqCst).is_null() {
        return Ok(());
    }
    let bytes = slots * SLOT_WORDS * 8;
    let base = sys::mmap_anon(bytes).ok_or("cannot map the writer-location frame buffer")?;
    SLOTS.store(slots, Ordering::SeqCst);
    FRAMES.store(base.cast::<u64>(), Ordering::SeqCst);
    Ok(())
}

/// Sets how many frames the handler captures (0 = none); clamped to MAX_DEPTH.
pub fn set_depth(depth: usize) {
    if depth > 0 {
        // Bind syscall(2) now, outside any handler, in case this library was
        // linked without -z now (the handler calls it).
        let mut set = 0u64;
        // SAFETY: rt_sigprocmask with a null new set only reads the mask.
        unsafe { sigsegv_blocked(&mut set) };
    }
    DEPTH.store(depth.min(MAX_DEPTH), Ordering::SeqCst);
}

/// Whether SIGSEGV is blocked in the calling thread: then memwatch's handler
/// was called by another handler installed over it without SA_NODEFER, a
/// fault in the probe could not be recovered, and the walk is skipped.
/// Async-signal-safe (one system call).
///
/// # Safety
/// `set` is valid for an 8-byte write.
unsafe fn sigsegv_blocked(set: &mut u64) -> bool {
    // SAFETY: the kernel writes the 8-byte mask into *set.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_BLOCK,
            std::ptr::null::<u64>(),
            set as *mut u64,
            8usize,
        )
    };
    rc != 0 || *set & (1 << (libc::SIGSEGV - 1)) != 0
}

/// Address range of the frame buffer, if mapped (watches may not cover it).
pub fn range() -> Option<(usize, usize)> {
    let base = FRAMES.load(Ordering::SeqCst);
    (!base.is_null())
        .then(|| (base as usize, base as usize + SLOTS.load(Ordering::SeqCst) * SLOT_WORDS * 8))
}

/// What the handler captured for one fault.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawStack {
    /// frames[0] is the faulting instruction, then return addresses.
    pub frames: Vec<u64>,
    /// Stack and frame pointer at the fault.
    pub sp: u64,
    /// Frame pointer at the fault.
    pub fp: u64,
    /// The word at SP: the return address when the fault is in a frameless
    /// leaf (memcpy); 0 when unreadable.
    pub sp_word: u64,
    /// The thread's name at the fault (read there: the thread may be gone
    /// by the time the event is built).
    pub thread_name: String,
    /// The data address written (si_addr).
    pub addr: u64,
    /// What the runtime capture hook wrote (empty without one).
    pub runtime: Vec<u64>,
}

fn slot_ptr(slot: usize) -> Option<*mut u64> {
    let base = FRAMES.load(Ordering::Acquire);
    if base.is_null() || slot >= SLOTS.load(Ordering::Relaxed) {
        return None;
    }
    // SAFETY: slot < SLOTS, so the slot lies inside the mapping.
    Some(unsafe { base.add(slot * SLOT_WORDS) })
}

/// Reads the slot a popped ring record owns (the consumer side).
pub fn take(slot: usize) -> Option<RawStack> {
    let s = slot_ptr(slot)?;
    // SAFETY: the ring record of this slot was published after the handler
    // finished writing it, and the slot is not reused before the record is
    // released (after this call); all words lie inside the slot.
    unsafe {
        let n = (*s as usize).min(MAX_DEPTH);
        if n == 0 {
            return None;
        }
        let frames = (0..n).map(|i| *s.add(HEAD_WORDS + i)).collect();
        let mut name = [0u8; 16];
        name[..8].copy_from_slice(&(*s.add(4)).to_ne_bytes());
        name[8..].copy_from_slice(&(*s.add(5)).to_ne_bytes());
        let len = name.iter().position(|&b| b == 0).unwrap_or(16);
        let thread_name = String::from_utf8_lossy(&name[..len]).into_owned();
        let (sp, fp, sp_word, addr) = (*s.add(1), *s.add(2), *s.add(3), *s.add(6));
        let rn = (*s.add(RUNTIME_AT) as usize).min(RUNTIME_WORDS);
        let runtime = (0..rn).map(|i| *s.add(RUNTIME_AT + 1 + i)).collect();
        Some(RawStack { frames, sp, fp, sp_word, thread_name, addr, runtime })
    }
}

#[cfg(target_arch = "x86_64")]
std::arch::global_asm!(
    ".pushsection .text.__memwatch_probe,\"ax\",@progbits",
    ".globl __memwatch_probe_read",
    ".hidden __memwatch_probe_read",
    ".type __memwatch_probe_read,@function",
    "__memwatch_probe_read:",
    ".globl __memwatch_probe_load",
    ".hidden __memwatch_probe_load",
    "__memwatch_probe_load:",
    "mov rax, qword ptr [rdi]",
    "mov qword ptr [rsi], rax",
    "mov eax, 1",
    "ret",
    ".globl __memwatch_probe_fixup",
    ".hidden __memwatch_probe_fixup",
    "__memwatch_probe_fixup:",
    "xor eax, eax",
    "ret",
    ".size __memwatch_probe_read, . - __memwatch_probe_read",
    ".popsection",
);

#[cfg(target_arch = "aarch64")]
std::arch::global_asm!(
    ".pushsection .text.__memwatch_probe,\"ax\",@progbits",
    ".globl __memwatch_probe_read",
    ".hidden __memwatch_probe_read",
    ".type __memwatch_probe_read,%function",
    "__memwatch_probe_read:",
    ".globl __memwatch_probe_load",
    ".hidden __memwatch_probe_load",
    "__memwatch_probe_load:",
    "ldr x2, [x0]",
    "str x2, [x1]",
    "mov w0, #1",
    "ret",
    ".globl __memwatch_probe_fixup",
    ".hidden __memwatch_probe_fixup",
    "__memwatch_probe_fixup:",
    "mov w0, #0",
    "ret",
    ".size __memwatch_probe_read, . - __memwatch_probe_read",
    ".popsection",
);

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
extern "C" {
    /// Loads the word at `addr` into `*out` and returns 1, or returns 0 when
    /// the load faulted (the handler resumed at the fixup).
    fn __memwatch_probe_read(addr: usize, out: *mut u64) -> u32;
    /// The probe's load instruction (a label, never called).
    fn __memwatch_probe_load();
    /// Where a faulting probe load resumes (a label, never called).
    fn __memwatch_probe_fixup();
}

/// The word at `addr`, or None when it cannot be read. Async-signal-safe.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn probe_read(addr: usize) -> Option<u64> {
    if !addr.is_multiple_of(8) || addr < 4096 {
        return None;
    }
    let mut out = 0u64;
    // SAFETY: the probe only loads from addr; a fault there is turned into a
    // 0 return by recover_probe_fault (memwatch's handler is installed
    // whenever a capture runs: it runs inside that handler).
    (unsafe { __memwatch_probe_read(addr, &mut out) } == 1).then_some(out)
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn probe_read(_addr: usize) -> Option<u64> {
    None
}

/// Copies `out.len()` bytes of this process at `addr` into `out`; false when
/// any of them cannot be read (unmapped, PROT_NONE) or the call is refused
/// (seccomp). For a [`RuntimeCapture`]: async-signal-safe (one
/// process_vm_readv through syscall(2), which fails with EFAULT instead of
/// faulting, so it needs no signal stack beyond its own frame; a faulting
/// load inside the handler could overflow a small sigaltstack).
pub fn read_memory(addr: usize, out: &mut [u8]) -> bool {
    if out.is_empty() {
        return true;
    }
    let local = libc::iovec { iov_base: out.as_mut_ptr().cast(), iov_len: out.len() };
    let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: out.len() };
    // SAFETY: getpid and process_vm_readv through syscall(2) (bound before
    // capture is on); local is `out` with its length; the kernel checks the
    // remote range and reports EFAULT instead of faulting.
    let n = unsafe {
        let pid = libc::syscall(libc::SYS_getpid);
        libc::syscall(
            libc::SYS_process_vm_readv,
            pid,
            &local as *const libc::iovec,
            1usize,
            &remote as *const libc::iovec,
            1usize,
            0usize,
        )
    };
    n == out.len() as i64
}

/// The 8-byte word at `addr` (native endianness), or None ([`read_memory`]).
pub fn read_word(addr: usize) -> Option<u64> {
    let mut b = [0u8; 8];
    read_memory(addr, &mut b).then(|| u64::from_ne_bytes(b))
}

/// If the fault in `ctx` is the probe's own load, moves the IP to the
/// probe's fixup and returns true (the handler then returns and the probe
/// reports "unreadable"). Call first in the SIGSEGV handler.
///
/// # Safety
/// `ctx` is the ucontext the kernel passed to an SA_SIGINFO handler.
pub unsafe fn recover_probe_fault(ctx: *mut libc::c_void) -> bool {
    if ctx.is_null() {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let uc = ctx as *mut libc::ucontext_t;
        // SAFETY: the kernel's ucontext; writing RIP redirects the return.
        unsafe {
            let rip = &mut (*uc).uc_mcontext.gregs[libc::REG_RIP as usize];
            if *rip as usize == __memwatch_probe_load as *const () as usize {
                *rip = __memwatch_probe_fixup as *const () as usize as i64;
                return true;
            }
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        let uc = ctx as *mut libc::ucontext_t;
        // SAFETY: as above.
        unsafe {
            let pc = &mut (*uc).uc_mcontext.pc;
            if *pc as usize == __memwatch_probe_load as *const () as usize {
                *pc = __memwatch_probe_fixup as *const () as usize as u64;
                return true;
            }
        }
    }
    false
}

/// (ip, sp, fp) of the interrupted code.
///
/// # Safety
/// As for recover_probe_fault.
unsafe fn registers(ctx: *mut libc::c_void) -> Option<(usize, usize, usize)> {
    #[cfg(target_arch = "x86_64")]
    {
        let uc = ctx as *const libc::ucontext_t;
        // SAFETY: the kernel's ucontext.
        let g = unsafe { &(*uc).uc_mcontext.gregs };
        Some((
            g[libc::REG_RIP as usize] as usize,
            g[libc::REG_RSP as usize] as usize,
            g[libc::REG_RBP as usize] as usize,
        ))
    }
    #[cfg(target_arch = "aarch64")]
    {
        let uc = ctx as *const libc::ucontext_t;
        // SAFETY: the kernel's ucontext.
        let m = unsafe { &(*uc).uc_mcontext };
        Some((m.pc as usize, m.sp as usize, m.regs[29] as usize))
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = ctx;
        None
    }
}

/// Handler hook: fills the frame slot of the ring cell being pushed for a
/// write to `addr`. Async-signal-safe (see the module docs).
///
/// # Safety
/// `ctx` as for recover_probe_fault; `slot` is a ring cell the caller has
/// claimed and not yet published.
pub unsafe fn on_fault(slot: usize, ctx: *mut libc::c_void, addr: usize) {
    let Some(s) = slot_ptr(slot) else { return };
    let depth = DEPTH.load(Ordering::Relaxed);
    // SAFETY: ctx is the kernel's ucontext (null-checked).
    let regs = if ctx.is_null() { None } else { unsafe { registers(ctx) } };
    let (Some((ip, sp, fp)), true) = (regs, depth > 0) else {
        // SAFETY: the slot is ours until the record is published.
        unsafe { *s = 0 };
        return;
    };
    let mut mask = 0u64;
    // SAFETY: mask is a local u64.
    let can_probe = !unsafe { sigsegv_blocked(&mut mask) };
    // SAFETY: every store below is inside the claimed slot (n < MAX_DEPTH;
    // the runtime hook gets the slot's RUNTIME_WORDS words and its count is
    // clamped); a registered hook is never freed and promises to be
    // async-signal-safe (RuntimeCapture).
    unsafe {
        *s.add(HEAD_WORDS) = ip as u64;
        let mut n = 1;
        let mut frame = fp;
        while n < depth && can_probe {
            if frame < sp || frame - sp > MAX_SPAN {
                break;
            }
            let (Some(next), Some(ret)) = (probe_read(frame), probe_read(frame + 8)) else {
                break;
            };
            if ret == 0 {
                break;
            }
            *s.add(HEAD_WORDS + n) = ret;
            n += 1;
            if next as usize <= frame {
                break;
            }
            frame = next as usize;
        }
        *s.add(6) = addr as u64;
        *s.add(1) = sp as u64;
        *s.add(2) = fp as u64;
        *s.add(3) = if can_probe { probe_read(sp).unwrap_or(0) } else { 0 };
        // The name, through syscall(2) (already bound: the handler calls it
        // for gettid), into the slot's own two words; 0 on failure.
        *s.add(4) = 0;
        *s.add(5) = 0;
        libc::syscall(libc::SYS_prctl, libc::PR_GET_NAME, s.add(4));
        *s.add(RUNTIME_AT) = 0;
        let hook = RUNTIME_HOOK.load(Ordering::Acquire);
        if !hook.is_null() {
            let hook = &*hook;
            let out = s.add(RUNTIME_AT + 1);
            let got = (hook.capture)(ctx, out, RUNTIME_WORDS, hook.ctx as *mut libc::c_void);
            *s.add(RUNTIME_AT) = got.min(RUNTIME_WORDS) as u64;
        }
        *s = n as u64;
    }
}
