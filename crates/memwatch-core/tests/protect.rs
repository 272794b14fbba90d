//! The protect backend's documented limit: a system call writing into a
//! protected page fails with EFAULT (which is why `auto` prefers writewatch).
//! Its own test binary, so the writewatch tests keep a process without
//! memwatch's signal handler.

mod common;

use common::Pages;
use memwatch_core::{Backend, Options, Watcher};

#[test]
fn protect_makes_read_syscall_fail_with_efault() {
    let mem = Pages::new(1);
    let w = Watcher::new(Options { backend: Backend::Protect, ..Options::default() }).unwrap();
    // SAFETY: mem outlives the watcher.
    unsafe { w.watch(mem.ptr, 16, "p", None) }.unwrap();
    let mut fds = [0; 2];
    // SAFETY: valid array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: valid buffers and descriptors.
    assert_eq!(unsafe { libc::write(fds[1], b"x".as_ptr() as *const libc::c_void, 1) }, 1);
    // SAFETY: reading into protect-watched memory: the documented EFAULT.
    let n = unsafe { libc::read(fds[0], mem.ptr as *mut libc::c_void, 1) };
    assert_eq!(n, -1);
    assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EFAULT));
    // The page is still watched: a plain write is reported exactly.
    mem.write(3, 7);
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].new_value.as_deref().unwrap()[3], 7);
    w.close();
    // SAFETY: closing our own pipe.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
}
