//! A SIGSEGV handler installed *after* memwatch (as Python's
//! faulthandler.enable() does late): reassert_signal_handler() puts memwatch
//! back on top, watched writes keep working, and a real crash still reaches
//! the late handler once and kills the process with SIGSEGV (no loop).
//! Its own test binary: handler order is per process.

mod common;

use std::cell::UnsafeCell;
use std::time::Duration;

use common::{wait_child, Pages};
use memwatch_core::{reassert_signal_handler, Backend, Options, Watcher};

struct Saved(UnsafeCell<libc::sigaction>);
// SAFETY: written once before the late handler is installed, then only read.
unsafe impl Sync for Saved {}
// SAFETY: all-zero is a valid sigaction.
static SAVED: Saved =
    Saved(UnsafeCell::new(unsafe { std::mem::MaybeUninit::zeroed().assume_init() }));
static mut REPORT_FD: i32 = -1;

/// Like faulthandler: report, restore the previous handler, re-raise.
extern "C" fn late_handler(sig: i32, _info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: write/sigaction/raise are async-signal-safe; REPORT_FD and
    // SAVED were set before this handler was installed.
    unsafe {
        libc::write(REPORT_FD, b"F".as_ptr() as *const libc::c_void, 1);
        libc::sigaction(sig, SAVED.0.get(), std::ptr::null_mut());
        libc::raise(sig);
    }
}

fn install_late_handler(report_fd: i32) {
    // SAFETY: setting up the handler before it can run.
    unsafe {
        REPORT_FD = report_fd;
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction =
            late_handler as extern "C" fn(i32, *mut libc::siginfo_t, *mut libc::c_void) as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER | libc::SA_ONSTACK;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGSEGV, &sa, SAVED.0.get()), 0);
    }
}

#[test]
fn late_handler_then_reassert() {
    let mem = Pages::new(1);
    let w = Watcher::new(Options { backend: Backend::Protect, ..Options::default() }).unwrap();
    // SAFETY: mem outlives the watcher.
    unsafe { w.watch(mem.ptr, 16, "x", None) }.unwrap();
    let mut fds = [0; 2];
    // SAFETY: valid array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    install_late_handler(fds[1]);
    assert!(reassert_signal_handler().unwrap(), "memwatch back on top");
    assert!(!reassert_signal_handler().unwrap(), "already on top");
    for i in 0..100u8 {
        mem.write((i % 16) as usize, i + 1);
    }
    let events = w.check_changes().unwrap();
    assert_eq!(events.last().unwrap().new_value.as_ref().unwrap()[(99 % 16) as usize], 100);

    // A real crash in a child: the late handler reports once, then the
    // process dies with SIGSEGV.
    let gone = Pages::new(1);
    let addr = gone.ptr as usize;
    drop(gone);
    // SAFETY: the child crashes on purpose; it never returns to the harness.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: deliberately invalid: the crash under test.
        unsafe { std::ptr::write_volatile(addr as *mut u8, 1) };
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(0) };
    }
    let status = wait_child(pid, Duration::from_secs(2)).expect("child died, no loop");
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSEGV,
        "status {status:#x}"
    );
    // SAFETY: closing our write end, then reading what the child reported.
    unsafe { libc::close(fds[1]) };
    let mut buf = [0u8; 16];
    // SAFETY: reading into a valid buffer.
    let n = unsafe { libc::read(fds[0], buf.as_mut_ptr() as *mut libc::c_void, 16) };
    assert_eq!(n, 1, "the late handler ran exactly once: {:?}", &buf[..n.max(0) as usize]);
}
