//! A SIGSEGV handler installed before memwatch that recovers with
//! siglongjmp (it never returns to memwatch) still gets every fault that is
//! not memwatch's: 100 000 raised and 100 000 real ones. Afterwards a real
//! crash with no handler before memwatch still kills the process.
//! Its own test binary: the handler order is per process.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{wait_child, Pages};
use memwatch_core::{page_size, reassert_signal_handler, Backend, Options, Watcher};

/// glibc's sigjmp_buf (200 bytes on x86_64; room to spare).
#[repr(C, align(16))]
struct SigJmpBuf([u64; 64]);

extern "C" {
    fn __sigsetjmp(env: *mut SigJmpBuf, savemask: libc::c_int) -> libc::c_int;
    fn siglongjmp(env: *mut SigJmpBuf, val: libc::c_int) -> !;
}

static mut ENV: SigJmpBuf = SigJmpBuf([0; 64]);
static RECOVERED: AtomicUsize = AtomicUsize::new(0);
static USER_SENT: AtomicUsize = AtomicUsize::new(0);

extern "C" fn jumping_handler(_sig: i32, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    RECOVERED.fetch_add(1, Ordering::SeqCst);
    // SAFETY: info is valid in an SA_SIGINFO handler.
    if unsafe { (*info).si_code } <= 0 {
        USER_SENT.fetch_add(1, Ordering::SeqCst);
    }
    // SAFETY: ENV was set by the sigsetjmp in `recover` below, whose frame is live.
    unsafe { siglongjmp(&raw mut ENV, 1) }
}

/// Runs `fault` with a recovery point; true if the handler jumped back.
/// Never inlined: sigsetjmp returns twice, so nothing of this frame is
/// relied on after the jump but the return value.
#[inline(never)]
fn recover(fault: fn(usize), arg: usize) -> bool {
    // SAFETY: the jump comes back into this live frame; only statics are
    // used after it.
    unsafe {
        if __sigsetjmp(&raw mut ENV, 1) == 0 {
            fault(arg);
            false
        } else {
            true
        }
    }
}

fn raise_segv(_: usize) {
    // SAFETY: raise only sends a signal to this thread.
    unsafe { libc::raise(libc::SIGSEGV) };
}

fn write_to(addr: usize) {
    // SAFETY: deliberately faulting: the address is a PROT_NONE guard page.
    unsafe { std::ptr::write_volatile(addr as *mut u8, 1) };
}

#[test]
fn siglongjmp_handler_gets_every_foreign_fault_then_a_real_crash_still_kills() {
    // SAFETY: installing a valid SA_SIGINFO handler.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction =
            jumping_handler as extern "C" fn(i32, *mut libc::siginfo_t, *mut libc::c_void) as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGSEGV, &sa, std::ptr::null_mut()), 0);
    }
    let w = Watcher::new(Options { backend: Backend::Protect, ..Options::default() }).unwrap();
    let watched = Pages::new(1);
    // SAFETY: watched outlives the watcher.
    let id = unsafe { w.watch(watched.ptr, 8, "mine", None) }.unwrap();
    let guard = Pages::new(1);
    // SAFETY: the test's own page.
    assert_eq!(unsafe { libc::mprotect(guard.ptr as _, page_size(), libc::PROT_NONE) }, 0);

    const N: usize = 100_000;
    for i in 0..N {
        assert!(recover(raise_segv, 0), "raise {i} came back without the handler");
    }
    assert_eq!(RECOVERED.load(Ordering::SeqCst), N);
    assert_eq!(USER_SENT.load(Ordering::SeqCst), N);
    for i in 0..N {
        assert!(recover(write_to, guard.ptr as usize + i % 64), "fault {i} not recovered");
    }
    assert_eq!(RECOVERED.load(Ordering::SeqCst), 2 * N);
    assert_eq!(USER_SENT.load(Ordering::SeqCst), N, "the guard-page faults are real ones");

    // memwatch's own faults are still its own.
    watched.write(3, 0x33);
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].region_id, id);
    assert_eq!(events[0].old_value.as_deref(), Some(&[0u8; 8][..]));
    assert_eq!(events[0].new_value.as_deref(), Some(&[0, 0, 0, 0x33, 0, 0, 0, 0][..]));
    assert_eq!(RECOVERED.load(Ordering::SeqCst), 2 * N, "no fault of memwatch's was forwarded");

    // A real crash with no handler before memwatch: the child drops the
    // jumping handler, puts memwatch back on top (now forwarding to
    // SIG_DFL) and writes to the guard page.
    let start = std::time::Instant::now();
    // SAFETY: the child only makes async-signal-safe calls, then crashes.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: resetting SIGSEGV in the child, then the crash under test.
        unsafe {
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(libc::SIGSEGV, &dfl, std::ptr::null_mut());
            let rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            libc::setrlimit(libc::RLIMIT_CORE, &rl);
        }
        if reassert_signal_handler() != Ok(true) {
            // SAFETY: _exit is async-signal-safe.
            unsafe { libc::_exit(3) };
        }
        write_to(guard.ptr as usize);
        // SAFETY: as above.
        unsafe { libc::_exit(4) };
    }
    let status = wait_child(pid, Duration::from_secs(1)).expect("child died within 1 s");
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSEGV,
        "status {status:#x}"
    );
    assert!(start.elapsed() < Duration::from_secs(1));
    w.close();
}
