//! Issue 20: an event on a large region is computed from its written pages
//! only (the rest of its snapshot is its current value): exact ranges and
//! previews for writes far apart, under every paged backend.

mod common;

use common::Pages;
use memwatch_core::{page_size, Backend, ByteRange, Options, Watcher};

fn exact_events_on_a_large_region(backend: Backend) {
    let ps = page_size();
    let pages = 4096; // 16 MiB
    let buf = Pages::new(pages);
    let w = match Watcher::new(Options { backend, ..Options::default() }) {
        Ok(w) => w,
        Err(e) if backend == Backend::WriteWatch => panic!("writewatch unavailable here: {e}"),
        Err(e) => panic!("{e}"),
    };
    // SAFETY: buf outlives the watcher (declared before it).
    unsafe { w.watch(buf.ptr, buf.len, "big", None) }.unwrap();
    let far = 3000 * ps + 5;
    buf.write(far, 9);
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.how_big, buf.len);
    assert_eq!(e.changed_ranges, [ByteRange { offset: far, len: 1 }]);
    assert_eq!(e.old_preview, vec![0; 256]);
    assert_eq!(e.new_preview, vec![0; 256]);
    assert_eq!((e.old_value.clone(), e.new_value.clone()), (None, None));
    // Two pages far apart and the first page (seen in the previews); the
    // page written before is unchanged now and reports nothing.
    buf.write(10 * ps + 1, 1);
    buf.write(4000 * ps + 2, 2);
    buf.write(3, 3);
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    let want = [(3, 1), (10 * ps + 1, 1), (4000 * ps + 2, 1)];
    let want: Vec<ByteRange> =
        want.into_iter().map(|(offset, len)| ByteRange { offset, len }).collect();
    assert_eq!(e.changed_ranges, want);
    assert_eq!(e.old_preview, vec![0; 256]);
    let mut preview = vec![0; 256];
    preview[3] = 3;
    assert_eq!(e.new_preview, preview);
    // Written back to what it was: the snapshot was updated, so this is a change too.
    buf.write(far, 0);
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].changed_ranges, [ByteRange { offset: far, len: 1 }]);
    assert!(w.check_changes().unwrap().is_empty());
}

#[test]
fn protect_diffs_the_written_pages_of_a_large_region() {
    exact_events_on_a_large_region(Backend::Protect);
}

#[test]
fn writewatch_diffs_the_written_pages_of_a_large_region() {
    exact_events_on_a_large_region(Backend::WriteWatch);
}
