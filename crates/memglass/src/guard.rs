//! Truncation guard for the observer's read-only mappings.
//!
//! Anyone with write access to a segment file can shrink it after an observer
//! mapped it; a load from a mapped page beyond the new end of file raises
//! SIGBUS. The observer's reads are plain loads (the fast path), so instead of
//! paying a `process_vm_readv` per read, a SIGBUS handler (installed once per
//! process, on the first observer mapping) recognises faults inside a
//! registered mapping, flags that mapping truncated and maps anonymous zero
//! pages over all of it (`MAP_FIXED`, read-only), then returns: the faulting
//! load runs again and reads 0. Every observer read checks its mappings' flags
//! after copying (one relaxed-cost acquire load each) and reports
//! [`crate::Error::BadSegment`] instead of the zeros; `refresh` also compares
//! each segment's `fstat` size with its mapping. So a truncation racing a read
//! never kills the observer.
//!
//! Async-signal-safe only: atomics over a static table, `mmap`, and the
//! previous handler. A SIGBUS that is not ours goes to the handler installed
//! before ours, called the way it was installed; for SIG_DFL/SIG_IGN that
//! disposition is restored and the load faults again, so the process dies
//! with the real SIGBUS instead of looping.

use crate::{Error, Result};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Mappings one process can have registered at once (header + regions of
/// every observer).
const SLOTS: usize = 4096;
/// A slot being filled in (not yet visible to the handler).
const RESERVED: usize = usize::MAX;

struct Slot {
    /// Start address; 0 = free, RESERVED = being filled.
    start: AtomicUsize,
    len: AtomicUsize,
    truncated: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)]
const FREE: Slot = Slot {
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    truncated: AtomicBool::new(false),
};
static TABLE: [Slot; SLOTS] = [FREE; SLOTS];

struct PrevAction(UnsafeCell<libc::sigaction>);
// SAFETY: written once under INSTALL_LOCK before our handler is installed;
// only read afterwards.
unsafe impl Sync for PrevAction {}

static PREV: PrevAction =
    // SAFETY: sigaction is a plain C struct; all-zero is SIG_DFL, empty mask.
    PrevAction(UnsafeCell::new(unsafe { std::mem::MaybeUninit::zeroed().assume_init() }));
static INSTALLED: AtomicBool = AtomicBool::new(false);
static INSTALL_LOCK: Mutex<()> = Mutex::new(());

fn install() -> Result<()> {
    if INSTALLED.load(Ordering::Acquire) {
        return Ok(());
    }
    let _g = INSTALL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if INSTALLED.load(Ordering::Acquire) {
        return Ok(());
    }
    // SAFETY: PREV is written only here, under the lock, before our handler
    // can run; sa is fully initialised before sigaction reads it.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction =
            handler as extern "C" fn(i32, *mut libc::siginfo_t, *mut libc::c_void) as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(libc::SIGBUS, &sa, PREV.0.get()) != 0 {
            return Err(crate::shm::os_err("sigaction(SIGBUS)"));
        }
    }
    INSTALLED.store(true, Ordering::Release);
    Ok(())
}

extern "C" fn handler(sig: i32, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    for s in TABLE.iter() {
        let start = s.start.load(Ordering::Acquire);
        if start == 0 || start == RESERVED {
            continue;
        }
        let len = s.len.load(Ordering::Relaxed);
        if addr >= start && addr < start + len {
            s.truncated.store(true, Ordering::SeqCst);
            // SAFETY: replaces exactly a mapping this process registered (and
            // still owns: it unregisters before munmap) with zero pages, so
            // the faulting load and all later ones read 0. mmap is a plain
            // system call, safe in a signal handler.
            let p = unsafe {
                libc::mmap(
                    start as *mut libc::c_void,
                    len,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            if p != libc::MAP_FAILED {
                return;
            }
            break;
        }
    }
    // Not ours (or the remap failed): the previous disposition.
    // SAFETY: PREV was set before this handler was installed and is not
    // written afterwards; calling it the way it was installed.
    unsafe {
        let prev = &*PREV.0.get();
        let h = prev.sa_sigaction;
        if h == libc::SIG_DFL || h == libc::SIG_IGN {
            libc::sigaction(libc::SIGBUS, prev, std::ptr::null_mut());
        } else if prev.sa_flags & libc::SA_SIGINFO != 0 {
            let f: extern "C" fn(i32, *mut libc::siginfo_t, *mut libc::c_void) =
                std::mem::transmute(h);
            f(sig, info, ctx);
        } else {
            let f: extern "C" fn(i32) = std::mem::transmute(h);
            f(sig);
        }
    }
}

/// A registered mapping: its slot in the table, freed on drop.
pub(crate) struct Guard(usize);

impl Guard {
    /// Registers `[ptr, ptr+len)` (installing the handler on first use).
    pub fn register(ptr: *const u8, len: usize) -> Result<Guard> {
        install()?;
        for (i, s) in TABLE.iter().enumerate() {
            if s.start.compare_exchange(0, RESERVED, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                s.len.store(len, Ordering::Relaxed);
                s.truncated.store(false, Ordering::Relaxed);
                s.start.store(ptr as usize, Ordering::Release);
                return Ok(Guard(i));
            }
        }
        Err(Error::Os(format!("more than {SLOTS} observer mappings in this process")))
    }

    /// Whether a load from the mapping hit a truncated file (its contents
    /// are zeros from then on).
    #[inline]
    pub fn truncated(&self) -> bool {
        TABLE[self.0].truncated.load(Ordering::Acquire)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        TABLE[self.0].start.store(0, Ordering::Release);
    }
}
