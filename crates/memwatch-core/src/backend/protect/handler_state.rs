//! Everything the SIGSEGV handler writes lives in memwatch's own anonymous
//! mappings, never in the program's data, bss or heap: those may be watched
//! (a statically linked program watching its globals), and a write the
//! handler makes to a protected page would fault inside the handler.

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

use crate::sys;

/// Counters and flags the handler updates.
#[repr(C)]
pub struct HandlerState {
    /// Handlers currently running: page-table growth waits for zero before
    /// freeing an old table.
    pub in_flight: AtomicUsize,
    /// Write faults on our pages, since the process started.
    pub faults: AtomicU64,
    /// Set by the worker before it blocks with no deadline; a handler that
    /// clears it wakes the worker.
    pub worker_idle: AtomicBool,
    /// Source of the nonces that mark forwarding frames.
    pub next_nonce: AtomicU64,
    /// Threads forwarding (or that once forwarded) a fault to the previous
    /// handler: a forward nested in a live one on the same thread is a loop
    /// (a chained handler that re-raises) and is broken.
    pub forwarding: [ForwardMark; FORWARD_SLOTS],
}

/// The innermost forward of one thread. A previous handler may leave by
/// siglongjmp and never return, so a mark can outlive its forward: it is
/// live only while its frame (the address of a nonce on the forwarding
/// stack frame) is above the current one and still holds its nonce.
#[repr(C)]
pub struct ForwardMark {
    /// Kernel thread id (0 = free slot).
    pub tid: AtomicU32,
    /// Address of the nonce in the forwarding frame.
    pub frame: AtomicUsize,
    /// The nonce written there.
    pub nonce: AtomicU64,
}

/// Threads that can be forwarding at once with loop protection.
pub const FORWARD_SLOTS: usize = 64;

// The state lives in one page (4096 bytes at least).
const _: () = assert!(std::mem::size_of::<HandlerState>() <= 4096);

static STATE: AtomicPtr<HandlerState> = AtomicPtr::new(std::ptr::null_mut());
static INIT: OnceLock<usize> = OnceLock::new();

/// The handler state, mapped on first use (never from the handler itself).
pub fn get() -> &'static HandlerState {
    let addr = *INIT.get_or_init(|| {
        let p = sys::mmap_anon(sys::page_size()).expect("cannot map memwatch's handler state page");
        STATE.store(p as *mut HandlerState, Ordering::SeqCst);
        p as usize
    });
    // SAFETY: a zero-filled page is a valid HandlerState (all atomics zero);
    // it is never unmapped.
    unsafe { &*(addr as *const HandlerState) }
}

/// For the handler: the state if it was mapped (None means nothing is ours).
pub fn get_in_handler() -> Option<&'static HandlerState> {
    let p = STATE.load(Ordering::SeqCst);
    // SAFETY: as in get(); published only after the page was mapped.
    if p.is_null() {
        None
    } else {
        Some(unsafe { &*p })
    }
}

/// Address range of the state page (watches may not cover it).
pub fn range() -> (usize, usize) {
    let start = get() as *const HandlerState as usize;
    (start, start + sys::page_size())
}

/// Waits until no SIGSEGV handler is running. A handler that loaded a
/// pointer or a slot before the caller replaced it increments `in_flight`
/// first, so once this returns none can still be using the old one (page
/// table growth frees the old table after it; reassert reuses the old slot).
/// Never called from the handler (it would wait for itself).
pub fn wait_for_handlers() {
    while get().in_flight.load(Ordering::SeqCst) != 0 {
        std::thread::yield_now();
    }
}
