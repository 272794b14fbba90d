//! An event on a large region is computed from its written pages
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

/// The worker reads a large poll region a page range per engine
/// lock hold (16 MiB: eight slices); writes in its first and last pages
/// still reach the callback exactly, and nothing is left for check_changes.
#[test]
fn poll_finds_writes_across_the_slices_of_a_large_region() {
    use std::sync::{mpsc, Arc, Mutex};
    use std::time::Duration;
    let buf = Pages::new(4096);
    let w = Watcher::new(Options {
        backend: Backend::Poll,
        poll_interval: Duration::from_millis(10),
        ..Options::default()
    })
    .unwrap();
    // SAFETY: buf outlives the watcher (declared before it).
    unsafe { w.watch(buf.ptr, buf.len, "big", None) }.unwrap();
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    w.set_callback(Some(Arc::new(move |e: &memwatch_core::ChangeEvent| {
        tx.lock().unwrap().send(e.clone()).unwrap();
    })))
    .unwrap();
    let last = buf.len - 1;
    buf.write(1, 0x11);
    buf.write(last, 0x22);
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let e = rx.recv_timeout(Duration::from_secs(30)).expect("the worker's events");
        if e.changed_ranges.iter().any(|r| r.offset == 1) {
            assert_eq!((e.old_preview[1], e.new_preview[1]), (0, 0x11));
        }
        seen.extend(e.changed_ranges.iter().map(|r| (r.offset, r.len)));
    }
    seen.sort_unstable();
    assert_eq!(seen, [(1, 1), (last, 1)]);
    assert!(w.check_changes().unwrap().is_empty());
    w.close();
}
