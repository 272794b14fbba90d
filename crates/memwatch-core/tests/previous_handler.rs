//! A SIGSEGV handler installed before memwatch still receives its own faults.
//! Its own test binary: the handler order is per process.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::Pages;
use memwatch_core::{page_size, signal_handler_installed, Backend, Options, Watcher};

static FOREIGN_FAULTS: AtomicUsize = AtomicUsize::new(0);

/// The application's own handler: counts the fault and makes the page
/// accessible so the instruction succeeds when retried.
extern "C" fn app_handler(_sig: i32, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    FOREIGN_FAULTS.fetch_add(1, Ordering::SeqCst);
    // SAFETY: info is valid in an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    let page = addr & !(page_size() - 1);
    // SAFETY: mprotect is async-signal-safe; the page belongs to the test.
    unsafe {
        libc::mprotect(page as *mut libc::c_void, page_size(), libc::PROT_READ | libc::PROT_WRITE)
    };
}

#[test]
fn earlier_handler_gets_foreign_faults_and_memwatch_its_own() {
    // SAFETY: installing a valid SA_SIGINFO handler.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction =
            app_handler as extern "C" fn(i32, *mut libc::siginfo_t, *mut libc::c_void) as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGSEGV, &sa, std::ptr::null_mut()), 0);
    }
    let w = Watcher::new(Options { backend: Backend::Protect, ..Options::default() }).unwrap();
    assert!(signal_handler_installed());
    let watched = Pages::new(1);
    let foreign = Pages::new(1);
    // SAFETY: watched outlives the watcher.
    unsafe { w.watch(watched.ptr, 8, "mine", None) }.unwrap();
    for i in 0..1000 {
        // SAFETY: the test's own page.
        unsafe { libc::mprotect(foreign.ptr as *mut libc::c_void, page_size(), libc::PROT_NONE) };
        foreign.write(i % 64, 1); // faults; forwarded to app_handler
        watched.write(0, (i % 200) as u8 + 1);
    }
    assert_eq!(FOREIGN_FAULTS.load(Ordering::SeqCst), 1000);
    let events = w.check_changes().unwrap();
    assert!(!events.is_empty());
    assert_eq!(events.last().unwrap().new_value.as_ref().unwrap()[0], (999 % 200) as u8 + 1);
}
