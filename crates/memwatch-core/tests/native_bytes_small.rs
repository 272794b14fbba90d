//! A small watcher's native bytes stay small. In a test binary of its own:
//! a region's share of protect's page records is counted at the page
//! table's load now (its bucket bytes over its entries), so other tests of
//! the same process that grew the table and then unwatched (a hash map does
//! not shrink) would inflate it.

mod common;

use common::Pages;
use memwatch_core::{Backend, Options, Watcher};

#[test]
fn native_bytes_of_a_small_watcher_stay_small() {
    for backend in [Backend::Protect, Backend::WriteWatch, Backend::Poll] {
        let mem = Pages::new(1);
        let w = Watcher::new(Options { backend, ..Options::default() }).unwrap();
        // SAFETY: mem outlives the watcher.
        unsafe { w.watch(mem.ptr, 64, "small", Some("meta")) }.unwrap();
        let s = w.stats();
        // A 64-byte snapshot, the region's record and its page's. Alone in
        // the process, the region also carries the whole first chunk of the
        // id index (64 slots x 4 B) and the page table's smallest bucket
        // array (protect: 571 B here): still far below a page of memory,
        // whatever the engine preallocates.
        assert_eq!(s.snapshot_bytes, 64, "{backend:?}: {s:?}");
        assert!(s.native_bytes >= 64 + 4 + 5 && s.native_bytes < 1024, "{backend:?}: {s:?}");
        w.close();
    }
}
