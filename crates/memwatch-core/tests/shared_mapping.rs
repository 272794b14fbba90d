//! Shared memory written by another process: protect and
//! writewatch see only this process's page-table writes, so `auto` watches
//! a MAP_SHARED region with poll (a fallback in stats), and an explicitly
//! chosen protect or writewatch says in stats that other writers are
//! invisible. The writer is a real second process (a fork).

mod common;

use common::wait_child;
use memwatch_core::{page_size, Backend, Options, Watcher};

/// A MAP_SHARED anonymous mapping (what multiprocessing.Array uses, via a file).
struct Shared {
    ptr: *mut u8,
    len: usize,
}

impl Shared {
    /// A shared file mapping (memfd: what /dev/shm and multiprocessing give).
    fn file() -> Shared {
        let len = page_size();
        // SAFETY: a fresh memfd, sized and mapped shared, then closed (the
        // mapping keeps the file).
        let ptr = unsafe {
            let fd = libc::memfd_create(c"memwatch-test".as_ptr(), 0);
            assert!(fd >= 0);
            assert_eq!(libc::ftruncate(fd, len as libc::off_t), 0);
            let p = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            );
            libc::close(fd);
            p
        };
        assert_ne!(ptr, libc::MAP_FAILED);
        Shared { ptr: ptr as *mut u8, len }
    }

    fn new() -> Shared {
        let len = page_size();
        // SAFETY: a fresh shared anonymous mapping.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED);
        Shared { ptr: ptr as *mut u8, len }
    }

    /// A child process writes `byte` at `offset`, then exits; waits for it.
    fn write_from_child(&self, offset: usize, byte: u8) {
        // SAFETY: the child only stores one byte and _exits (async-signal-safe).
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: in bounds of the mapping, which the child shares.
            unsafe {
                std::ptr::write_volatile(self.ptr.add(offset), byte);
                libc::_exit(0);
            }
        }
        let status = wait_child(pid, std::time::Duration::from_secs(10)).expect("child ended");
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "{status:#x}");
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: the mapping made in new().
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

#[test]
fn auto_watches_shared_memory_with_poll_and_sees_another_process_write() {
    let mem = Shared::file();
    let private = common::Pages::new(1);
    let w = Watcher::new(Options::default()).unwrap();
    // SAFETY: both outlive the watcher (declared before it).
    unsafe {
        w.watch(mem.ptr.add(16), 8, "shared", None).unwrap();
        w.watch(private.ptr, 8, "private", None).unwrap();
    }
    let s = w.stats();
    assert_eq!(s.fallback_regions, 1, "{s:?}");
    assert_eq!(s.shared_regions, 0, "{s:?}");
    assert!(s.backend_reason.contains("shared mapping"), "{s:?}");
    assert!(s.backend_reason.contains("uses poll"), "{s:?}");

    mem.write_from_child(16 + 3, 42);
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].variable_name, "shared");
    assert_eq!(events[0].old_value.as_deref(), Some(&[0u8; 8][..]));
    assert_eq!(events[0].new_value.as_deref(), Some(&[0, 0, 0, 42, 0, 0, 0, 0][..]));
    assert!(w.check_changes().unwrap().is_empty());
}

#[test]
fn explicit_protect_on_shared_memory_says_other_writers_are_invisible() {
    let mem = Shared::new();
    let w = Watcher::new(Options { backend: Backend::Protect, ..Options::default() }).unwrap();
    // SAFETY: mem outlives the watcher.
    unsafe { w.watch(mem.ptr, 8, "shared", None) }.unwrap();
    let s = w.stats();
    assert_eq!(s.shared_regions, 1, "{s:?}");
    assert_eq!(s.fallback_regions, 0, "{s:?}");
    assert!(s.backend_reason.contains("invisible to protect"), "{s:?}");

    // What the stats warn about: the other process's write is not seen...
    mem.write_from_child(0, 9);
    assert!(w.check_changes().unwrap().is_empty());
    // ...while this process's own writes are.
    // SAFETY: in bounds of the mapping.
    unsafe { std::ptr::write_volatile(mem.ptr.add(1), 5) };
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].new_value.as_deref(), Some(&[9, 5, 0, 0, 0, 0, 0, 0][..]));
}

#[test]
fn auto_keeps_shared_anonymous_memory_on_its_backend_and_says_forked_writers_are_invisible() {
    let mem = Shared::new();
    let w = Watcher::new(Options::default()).unwrap();
    // SAFETY: mem outlives the watcher.
    unsafe { w.watch(mem.ptr, 8, "anon", None) }.unwrap();
    let s = w.stats();
    assert_eq!((s.fallback_regions, s.shared_regions), (0, 1), "{s:?}");
    assert!(s.backend_reason.contains("invisible to "), "{s:?}");
    // SAFETY: in bounds.
    unsafe { std::ptr::write_volatile(mem.ptr.add(2), 4) };
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].new_value.as_deref(), Some(&[0, 0, 4, 0, 0, 0, 0, 0][..]));
}
