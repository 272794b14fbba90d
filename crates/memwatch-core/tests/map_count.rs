//! Near vm.max_map_count: the mprotect that re-arms a protect
//! page after a write can fail with ENOMEM (its mapping must split). No
//! write may be missed for it, the failure is counted, and a watch() that
//! fails the same way says "too many mappings", not "not mapped".
//!
//! One test in its own binary: it fills the process's mapping count to the
//! limit, which would break any test running beside it.

mod common;

use common::Pages;
use memwatch_core::{page_size, Backend, Options, Watcher};

/// Splits a large mapping into one-page mappings (every other page made
/// read-only) until the kernel refuses a split: the process is then at
/// vm.max_map_count. Dropped, it unmaps it all.
struct Filler {
    base: *mut u8,
    len: usize,
    /// The next page to make read-only.
    next: usize,
}

impl Filler {
    fn fill() -> Filler {
        let limit: usize = std::fs::read_to_string("/proc/sys/vm/max_map_count")
            .expect("vm.max_map_count")
            .trim()
            .parse()
            .expect("a number");
        let ps = page_size();
        let len = (limit + 16) * ps;
        // SAFETY: a fresh anonymous mapping nothing else uses; never touched.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        let mut f = Filler { base: base as *mut u8, len, next: 1 };
        while f.split_one() {}
        f
    }

    /// One more split; false when the kernel refuses it (ENOMEM).
    fn split_one(&mut self) -> bool {
        let ps = page_size();
        assert!(self.next * ps < self.len, "the kernel never refused a split");
        // SAFETY: a page of our own filler mapping.
        let r = unsafe {
            libc::mprotect(self.base.add(self.next * ps) as *mut libc::c_void, ps, libc::PROT_READ)
        };
        if r != 0 {
            assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::ENOMEM));
            return false;
        }
        self.next += 2;
        true
    }
}

impl Drop for Filler {
    fn drop(&mut self) {
        // SAFETY: the mapping made in fill().
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

#[test]
fn failed_rearm_is_polled_and_counted_and_watch_says_too_many_mappings() {
    let ps = page_size();
    // A long window: the page is re-armed by check_changes, not before.
    let options = Options {
        backend: Backend::Protect,
        writable_window: std::time::Duration::from_secs(5),
        ..Options::default()
    };
    let w = Watcher::new(options).unwrap();
    let buf = Pages::new(3);
    let fresh = Pages::new(3);
    // SAFETY: buf outlives the watcher's use of it (unwatched by drop order).
    unsafe { w.watch(buf.ptr.add(ps), 8, "mid", None) }.unwrap();
    let mut filler = Filler::fill();
    // The write makes the page writable: its mapping merges with its
    // neighbours, and re-arming it needs the two mappings it freed, which
    // the filler takes. (Other mappings of the process may come and go
    // meanwhile, a free slot letting the re-arm succeed: then again.)
    let mut value = 0u8;
    while w.stats().reprotect_failures == 0 {
        value += 1;
        assert!(value <= 20, "re-protection never failed: {:?}", w.stats());
        buf.write(ps, value);
        while filler.split_one() {}
        let events = w.check_changes().unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].old_value.as_deref(), Some(&[value - 1, 0, 0, 0, 0, 0, 0, 0][..]));
        assert_eq!(events[0].new_value.as_deref(), Some(&[value, 0, 0, 0, 0, 0, 0, 0][..]));
    }

    // Not re-armed, yet not missed: the page is polled.
    buf.write(ps + 1, 2);
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1, "a write after a failed re-protect was missed");
    assert_eq!(events[0].old_value.as_deref(), Some(&[value, 0, 0, 0, 0, 0, 0, 0][..]));
    assert_eq!(events[0].new_value.as_deref(), Some(&[value, 2, 0, 0, 0, 0, 0, 0][..]));

    // watch() of mapped memory that cannot be split says why.
    let w2 = Watcher::new(Options { backend: Backend::Protect, ..Options::default() }).unwrap();
    // SAFETY: fresh outlives w2.
    let err = unsafe { w2.watch(fresh.ptr.add(ps), 8, "fresh", None) }.unwrap_err();
    assert!(err.to_string().contains("too many mappings"), "{err}");

    // Below the limit again: every write is still seen.
    drop(filler);
    for i in 0..20u8 {
        buf.write(ps + 2, i + 10);
        let events = w.check_changes().unwrap();
        assert_eq!(events.len(), 1, "write {i}");
        assert_eq!(events[0].new_value.as_ref().unwrap()[2], i + 10);
    }
    // SAFETY: fresh is mapped.
    unsafe { w2.watch(fresh.ptr.add(ps), 8, "fresh", None) }.unwrap();
}
