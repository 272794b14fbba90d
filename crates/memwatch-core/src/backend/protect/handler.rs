//! The protect backend's SIGSEGV handler.
//!
//! Async-signal-safe only: atomics, preallocated memory (page table, ring),
//! mprotect, gettid, clock_gettime, write(2) to an eventfd. No allocation, no
//! locks. A fault that is not ours goes to the handler installed before ours,
//! called the way it was installed; for SIG_DFL/SIG_IGN the old disposition is
//! restored and the instruction faults again, so the process dies with the
//! real SIGSEGV instead of looping.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, Ordering};
use std::sync::Mutex;

use super::handler_state;
use super::page_table::{self, ACTIVE, DIRTY, PROT_SHIFT};
use super::ring::Ring;
use crate::backend::FaultRecord;
use crate::location;
use crate::sys;

struct PrevAction(UnsafeCell<libc::sigaction>);
// SAFETY: a slot is written only under INSTALL_LOCK while it is not the one
// PREV_INDEX selects, and before handlers can select it (reassert waits for
// handlers in flight after flipping); handlers only read.
unsafe impl Sync for PrevAction {}

/// The handler installed before ours (what a fault that is not ours goes
/// to), double-buffered so reassert() can replace it while handlers run.
static PREV: [PrevAction; 2] = [
    PrevAction(UnsafeCell::new(unsafe_zeroed_sigaction())),
    PrevAction(UnsafeCell::new(unsafe_zeroed_sigaction())),
];
static PREV_INDEX: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);
static INSTALL_LOCK: Mutex<()> = Mutex::new(());

/// The fault ring handlers push to (set once, before the handler is installed).
static RING: AtomicPtr<Ring> = AtomicPtr::new(std::ptr::null_mut());
/// eventfd that wakes the worker; -1 before the engine starts.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

const fn unsafe_zeroed_sigaction() -> libc::sigaction {
    // SAFETY: sigaction is a plain C struct for which all-zero is valid
    // (SIG_DFL, empty mask, no flags).
    unsafe { std::mem::MaybeUninit::zeroed().assume_init() }
}

/// Tells the handler where to record faults and whom to wake.
pub fn set_ring_and_wake(ring: &'static Ring, wake_fd: i32) {
    RING.store(ring as *const Ring as *mut Ring, Ordering::SeqCst);
    WAKE_FD.store(wake_fd, Ordering::SeqCst);
}

/// Installs the handler once per process. Later calls are no-ops.
pub fn install() -> Result<(), String> {
    let _guard = INSTALL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if INSTALLED.load(Ordering::SeqCst) {
        return Ok(());
    }
    sys::page_size();
    handler_state::get();
    // SAFETY: PREV is only written here, under INSTALL_LOCK, before our
    // handler can run; sigaction with a null new action only reads.
    unsafe {
        if libc::sigaction(libc::SIGSEGV, std::ptr::null(), PREV[0].0.get()) != 0 {
            return Err(format!("sigaction(SIGSEGV) query failed: errno {}", sys::errno()));
        }
        put_ours_on_top()?;
    }
    INSTALLED.store(true, Ordering::SeqCst);
    Ok(())
}

fn our_handler_address() -> usize {
    handler as extern "C" fn(i32, *mut libc::siginfo_t, *mut libc::c_void) as usize
}

/// # Safety
/// Called under INSTALL_LOCK.
unsafe fn put_ours_on_top() -> Result<(), String> {
    // SAFETY: a zeroed sigaction is valid; sigaction reads it.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = our_handler_address();
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER | libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(libc::SIGSEGV, &action, std::ptr::null_mut()) != 0 {
            return Err(format!("sigaction(SIGSEGV) install failed: errno {}", sys::errno()));
        }
    }
    Ok(())
}

/// Puts memwatch's SIGSEGV handler back on top when another was installed
/// after it (Python's faulthandler.enable(), a crash reporter, ...): the other
/// becomes the handler memwatch forwards foreign faults to, so both keep
/// working. Returns true if anything changed. No-op before the first protect
/// watcher.
pub fn reassert() -> Result<bool, String> {
    let _guard = INSTALL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if !INSTALLED.load(Ordering::SeqCst) {
        return Ok(false);
    }
    let spare = 1 - PREV_INDEX.load(Ordering::SeqCst);
    // SAFETY: the spare slot is not selected, so no handler reads it; we hold
    // INSTALL_LOCK. sigaction with a null new action only reads.
    unsafe {
        if libc::sigaction(libc::SIGSEGV, std::ptr::null(), PREV[spare].0.get()) != 0 {
            return Err(format!("sigaction(SIGSEGV) query failed: errno {}", sys::errno()));
        }
        if (*PREV[spare].0.get()).sa_sigaction == our_handler_address() {
            return Ok(false);
        }
    }
    PREV_INDEX.store(spare, Ordering::SeqCst);
    // A handler that read the old slot has finished once none is in flight;
    // only then may a later reassert overwrite it.
    handler_state::wait_for_handlers();
    // SAFETY: under INSTALL_LOCK.
    unsafe { put_ours_on_top()? };
    Ok(true)
}

/// True once our SIGSEGV handler is installed.
pub fn installed() -> bool {
    INSTALLED.load(Ordering::SeqCst)
}

/// Whether the faulting access was a write (x86_64: bit 1 of the page-fault
/// error code in the ucontext). Elsewhere every fault counts as a write.
///
/// # Safety
/// `ctx` is the ucontext pointer the kernel passed to an SA_SIGINFO handler.
unsafe fn fault_is_write(ctx: *mut libc::c_void) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if ctx.is_null() {
            return true;
        }
        let uc = ctx as *const libc::ucontext_t;
        // SAFETY: the kernel passed a valid ucontext_t for this signal.
        let err = unsafe { (*uc).uc_mcontext.gregs[libc::REG_ERR as usize] };
        err & 2 != 0
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = ctx;
        true
    }
}

/// Instruction pointer of the faulting instruction, from the ucontext.
///
/// # Safety
/// As for fault_is_write.
unsafe fn fault_ip(ctx: *mut libc::c_void) -> u64 {
    if ctx.is_null() {
        return 0;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let uc = ctx as *const libc::ucontext_t;
        // SAFETY: the kernel passed a valid ucontext_t for this signal.
        unsafe { (*uc).uc_mcontext.gregs[libc::REG_RIP as usize] as u64 }
    }
    #[cfg(target_arch = "aarch64")]
    {
        let uc = ctx as *const libc::ucontext_t;
        // SAFETY: as above.
        unsafe { (*uc).uc_mcontext.pc }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        0
    }
}

extern "C" fn handler(sig: i32, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // Writer location hook: a fault of the stack walk's probe read (a bad
    // frame pointer) resumes at the probe's fixup (location/capture.rs).
    // SAFETY: ctx is the kernel's ucontext for this SA_SIGINFO handler.
    if unsafe { location::capture::recover_probe_fault(ctx) } {
        return;
    }
    let saved_errno = sys::errno();
    let handled = match handler_state::get_in_handler() {
        Some(hs) => {
            hs.in_flight.fetch_add(1, Ordering::SeqCst);
            // SAFETY: info/ctx come from the kernel for an SA_SIGINFO handler.
            let handled = unsafe { handle_ours(hs, info, ctx) };
            hs.in_flight.fetch_sub(1, Ordering::SeqCst);
            handled
        }
        None => false,
    };
    if sys::errno() != saved_errno {
        // Only when a call in the handler failed: errno may live in a watched
        // page (static TLS), and reading it is free while writing may fault.
        sys::set_errno(saved_errno);
    }
    if !handled {
        // SAFETY: forwarding with the kernel's own arguments.
        unsafe { forward(sig, info, ctx) };
    }
}

/// Handles the fault if it is a write to a page we watch. Returns false for
/// faults that belong to someone else.
///
/// # Safety
/// info/ctx as passed to an SA_SIGINFO handler.
unsafe fn handle_ours(
    hs: &handler_state::HandlerState,
    info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
) -> bool {
    if info.is_null() {
        return false;
    }
    // SAFETY: info is valid for SIGSEGV; si_addr is the faulting address.
    let addr = unsafe { (*info).si_addr() } as usize;
    let page_size = sys::page_size();
    let page = addr / page_size;
    let Some(table) = page_table::current() else { return false };
    let Some(slot) = table.lookup(page) else { return false };
    let state = slot.state.load(Ordering::SeqCst);
    if state & ACTIVE == 0 {
        // A fault that raced with unwatch: the page is writable again by now,
        // so retrying the instruction succeeds. Only for a short while, so a
        // real bug on that page later still crashes.
        return slot.recently_removed(sys::monotonic_ns());
    }
    // SAFETY: ctx is the kernel's ucontext.
    if !unsafe { fault_is_write(ctx) } {
        return false;
    }
    // Order matters, and the worker relies on it: dirty bit, then writable,
    // then the announcement (ring record, or on overflow the dirty bit again
    // followed by the overflow flag). Whatever announcement the worker
    // consumes was made after this page became writable, so its re-protect
    // comes after ours and no write goes unseen.
    slot.state.fetch_or(DIRTY, Ordering::SeqCst);
    hs.faults.fetch_add(1, Ordering::Relaxed);
    let prot = ((state >> PROT_SHIFT) & 7) as i32 | libc::PROT_READ | libc::PROT_WRITE;
    let _ = sys::mprotect(page * page_size, page_size, prot);
    let ring = RING.load(Ordering::SeqCst);
    // SAFETY: the ring is 'static once published; push writes only into the
    // ring's own mapping.
    let pushed = !ring.is_null()
        && unsafe { &*ring }.push_with(
            FaultRecord {
                page,
                // SAFETY: ctx is the kernel's ucontext.
                ip: unsafe { fault_ip(ctx) },
                tid: sys::gettid(),
                timestamp_ns: sys::monotonic_ns(),
                capture: 0,
                faults: 0,
            },
            // Writer location hook: frames into the slot beside this cell.
            // SAFETY: ctx is the kernel's ucontext; the slot is claimed.
            |slot| unsafe { location::capture::on_fault(slot, ctx, addr) },
        );
    if !pushed {
        slot.state.fetch_or(DIRTY, Ordering::SeqCst);
        if !ring.is_null() {
            // SAFETY: as above.
            unsafe { &*ring }.header().overflowed.store(true, Ordering::SeqCst);
        }
    }
    if hs.worker_idle.swap(false, Ordering::SeqCst) {
        let fd = WAKE_FD.load(Ordering::SeqCst);
        if fd >= 0 {
            sys::eventfd_signal(fd);
        }
    }
    true
}

/// Passes a fault that is not ours to the previously installed handler.
/// Its frame stays small (the previous handler runs on top of it, maybe on
/// a small alternate signal stack): the bookkeeping is in helpers that
/// return before the call.
///
/// # Safety
/// Arguments as received by our handler.
unsafe fn forward(sig: i32, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the selected slot was fully written before it was selected.
    let prev = unsafe { &*PREV[PREV_INDEX.load(Ordering::SeqCst)].0.get() };
    // This forward's mark: a nonce in this stack frame (see ForwardMark).
    let mut canary = [0u64; 2];
    // SAFETY: info is the kernel's siginfo (null-checked).
    let user_sent = !info.is_null() && unsafe { (*info).si_code } <= 0;
    let Some(mark) = begin_forward(&mut canary, user_sent) else {
        // A loop: end it with the default action.
        let mut dfl = unsafe_zeroed_sigaction();
        dfl.sa_sigaction = libc::SIG_DFL;
        // SAFETY: sigaction is async-signal-safe; dfl is a valid sigaction.
        unsafe { libc::sigaction(sig, &dfl, std::ptr::null_mut()) };
        return;
    };
    // SAFETY: forwarding the kernel's arguments to the previous handler.
    unsafe { call_previous(prev, prev.sa_sigaction, sig, info, ctx) };
    end_forward(mark);
    // Keep the canary in memory until the previous handler returned.
    // SAFETY: reading our own local.
    let _ = unsafe { std::ptr::read_volatile(&canary) };
}

/// What end_forward restores: the thread's mark slot and the outer live
/// forward's (frame, nonce), if this one is nested in it.
type Mark = Option<(&'static handler_state::ForwardMark, Option<(usize, u64)>)>;

/// Marks the forward whose frame holds `canary`. None if it is a loop: a
/// forward nested in a live forward on this thread, for a signal sent by
/// software (raise, kill: si_code <= 0), means the previous handler
/// re-raised into us (faulthandler restores its predecessor, memwatch, and
/// raises); the caller ends it with the default action, so the process dies
/// with the real SIGSEGV after that handler did its work. A nested hardware
/// fault is a fault inside that handler, forwarded like any other. A mark
/// that is not live was left by a previous handler that left by siglongjmp
/// (it never returned to us): it is simply replaced.
#[inline(never)]
fn begin_forward(canary: &mut [u64; 2], user_sent: bool) -> Option<Mark> {
    let here = canary.as_mut_ptr() as usize;
    let Some(hs) = handler_state::get_in_handler() else { return Some(None) };
    let nonce = hs.next_nonce.fetch_add(1, Ordering::Relaxed) | 1;
    // SAFETY: canary is the caller's live local; volatile so the store is kept.
    unsafe { std::ptr::write_volatile(canary, seal(nonce, here)) };
    let Some(slot) = mark_slot(hs, sys::gettid()) else { return Some(None) };
    let (frame, old) = (slot.frame.load(Ordering::Relaxed), slot.nonce.load(Ordering::Relaxed));
    let live = frame > here && old != 0 && frame_holds(frame, seal(old, frame));
    if live && user_sent {
        return None;
    }
    slot.frame.store(here, Ordering::Relaxed);
    slot.nonce.store(nonce, Ordering::Relaxed);
    Some(Some((slot, live.then_some((frame, old)))))
}

/// After the previous handler returned: the outer forward's mark is current
/// again, or the slot is free.
#[inline(never)]
fn end_forward(mark: Mark) {
    let Some((slot, outer)) = mark else { return };
    let (frame, nonce) = outer.unwrap_or((0, 0));
    slot.frame.store(frame, Ordering::Relaxed);
    slot.nonce.store(nonce, Ordering::Relaxed);
    if outer.is_none() {
        slot.tid.store(0, Ordering::SeqCst);
    }
}

/// The two words a forwarding frame holds: a nonce and a check word tied to
/// the frame's address (a stale copy elsewhere does not match).
fn seal(nonce: u64, frame: usize) -> [u64; 2] {
    [nonce, nonce.rotate_left(17) ^ frame as u64 ^ 0x6d65_6d77_6174_6368]
}

/// The calling thread's mark slot: its own, a free one, or one of a thread
/// that no longer exists (a thread whose handler left by siglongjmp and that
/// then exited). None when all are taken: forwarding then has no loop check.
/// Async-signal-safe.
fn mark_slot(
    hs: &'static handler_state::HandlerState,
    tid: u32,
) -> Option<&'static handler_state::ForwardMark> {
    if let Some(mine) = hs.forwarding.iter().find(|s| s.tid.load(Ordering::SeqCst) == tid) {
        return Some(mine);
    }
    let claim = |s: &handler_state::ForwardMark, expect: u32| {
        s.tid.compare_exchange(expect, tid, Ordering::SeqCst, Ordering::SeqCst).is_ok()
    };
    if let Some(free) = hs.forwarding.iter().find(|s| claim(s, 0)) {
        free.frame.store(0, Ordering::Relaxed);
        free.nonce.store(0, Ordering::Relaxed);
        return Some(free);
    }
    // SAFETY: getpid/tgkill with signal 0 only check that the thread exists.
    let pid = unsafe { libc::getpid() };
    hs.forwarding.iter().find(|s| {
        let other = s.tid.load(Ordering::SeqCst);
        // SAFETY: as above.
        let gone = unsafe { libc::syscall(libc::SYS_tgkill, pid, other, 0) } != 0
            && sys::errno() == libc::ESRCH;
        if gone && claim(s, other) {
            s.frame.store(0, Ordering::Relaxed);
            s.nonce.store(0, Ordering::Relaxed);
            true
        } else {
            false
        }
    })
}

/// True if the 16 bytes at `frame` read `want`. Read with process_vm_readv,
/// which fails instead of faulting: the frame may lie on a stack that is no
/// longer mapped. Async-signal-safe.
fn frame_holds(frame: usize, want: [u64; 2]) -> bool {
    let mut got = [0u64; 2];
    let local = libc::iovec { iov_base: got.as_mut_ptr() as *mut libc::c_void, iov_len: 16 };
    let remote = libc::iovec { iov_base: frame as *mut libc::c_void, iov_len: 16 };
    // SAFETY: local is our own 16-byte buffer; the kernel checks the remote
    // range and reports EFAULT instead of faulting.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    if n == 16 {
        return got == want;
    }
    let e = sys::errno();
    if n < 0
        && (e == libc::EPERM || e == libc::ENOSYS)
        && frame - (&got as *const _ as usize) < 1 << 20
    {
        // The call is refused (seccomp): a frame less than 1 MiB above this
        // one is on this stack, mapped.
        // SAFETY: see above; volatile: the words may change under us.
        return unsafe { std::ptr::read_volatile(frame as *const [u64; 2]) } == want;
    }
    false
}

/// Calls the previous disposition the way it was installed.
///
/// # Safety
/// Arguments as received by our handler; `prev` is the saved action.
unsafe fn call_previous(
    prev: &libc::sigaction,
    h: usize,
    sig: i32,
    info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
) {
    if h == libc::SIG_DFL || h == libc::SIG_IGN {
        // Restore the old disposition and return: the instruction faults
        // again and the kernel applies it (terminating with SIGSEGV).
        // SAFETY: sigaction is async-signal-safe; prev is a valid sigaction.
        unsafe { libc::sigaction(sig, prev, std::ptr::null_mut()) };
        return;
    }
    if prev.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous handler was installed with SA_SIGINFO, so it
        // has this signature.
        let f: extern "C" fn(i32, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(h) };
        f(sig, info, ctx);
    } else {
        // SAFETY: installed without SA_SIGINFO: a plain fn(int).
        let f: extern "C" fn(i32) = unsafe { std::mem::transmute(h) };
        f(sig);
    }
}
