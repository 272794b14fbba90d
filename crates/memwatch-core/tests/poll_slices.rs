//! A large poll region is read in slices (a page range per engine-lock
//! hold), by the worker and by check_changes() alike, with or without
//! snapshots; each pass still makes one event per region, with the exact
//! ranges and bytes of every write made before it.

mod common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Pages;
use memwatch_core::{page_size, Backend, ByteRange, ChangeEvent, Options, Watcher};

/// 64 MiB: 32 slices of 2 MiB.
const PAGES: usize = 16384;

fn poll(interval: Duration, snapshots: bool) -> Watcher {
    Watcher::new(Options {
        backend: Backend::Poll,
        poll_interval: interval,
        snapshots,
        ..Options::default()
    })
    .unwrap()
}

fn ranges(e: &ChangeEvent) -> Vec<(usize, usize)> {
    e.changed_ranges.iter().map(|r| (r.offset, r.len)).collect()
}

/// The worker's events, sent to a channel by the callback.
fn events_to_channel(w: &Watcher) -> mpsc::Receiver<ChangeEvent> {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    w.set_callback(Some(Arc::new(move |e: &ChangeEvent| {
        tx.lock().unwrap().send(e.clone()).unwrap();
    })))
    .unwrap();
    rx
}

/// Writes near the start and the end of a 64 MiB region, made before the
/// worker's first pass (a second after watch): the pass reads them in its
/// first and last slices, and reports them in one event.
#[test]
fn a_worker_pass_makes_one_event_of_all_its_slices() {
    let buf = Pages::new(PAGES);
    let w = poll(Duration::from_secs(1), true);
    // SAFETY: buf outlives the watcher (declared before it).
    unsafe { w.watch(buf.ptr, buf.len, "big", None) }.unwrap();
    let rx = events_to_channel(&w);
    let last = buf.len - 5;
    buf.write(1, 0x11);
    buf.write(last, 0x22);
    let e = rx.recv_timeout(Duration::from_secs(60)).expect("the worker's event");
    assert_eq!(ranges(&e), [(1, 1), (last, 1)]);
    assert_eq!(e.how_big, buf.len);
    assert_eq!((e.old_preview[1], e.new_preview[1]), (0, 0x11));
    assert_eq!(e.old_preview.len(), 256);
    assert_eq!((e.old_value.clone(), e.new_value.clone()), (None, None));
    assert_eq!(e.coalesced, 1);
    // Nothing else: check_changes delivers what is pending before returning.
    assert!(w.check_changes().unwrap().is_empty());
    assert!(rx.try_recv().is_err(), "one event for the pass");
    w.close();
}

/// check_changes() reads a large region in slices too (releasing the
/// engine lock between them): one event with every write made before it.
#[test]
fn check_changes_on_a_large_region_gives_one_exact_event() {
    let ps = page_size();
    let buf = Pages::new(PAGES);
    let w = poll(Duration::from_secs(3600), true);
    // SAFETY: buf outlives the watcher (declared before it).
    unsafe { w.watch(buf.ptr, buf.len, "big", None) }.unwrap();
    let (mid, last) = (PAGES / 2 * ps + 7, buf.len - 1);
    buf.write(3, 0x33);
    buf.write(mid, 0x44);
    buf.write_all(last - 1, &[0x55, 0x66]);
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(ranges(e), [(3, 1), (mid, 1), (last - 1, 2)]);
    assert_eq!((e.old_preview[3], e.new_preview[3]), (0, 0x33));
    assert_eq!(e.coalesced, 1);
    assert!(w.check_changes().unwrap().is_empty());
    // The snapshot followed: only the next write is reported.
    buf.write(mid, 0x45);
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(ranges(&events[0]), [(mid, 1)]);
    w.close();
}

/// check_changes() while the worker passes over the same region nonstop
/// (a 1 ms interval): whichever pass reads a write first, every write made
/// before the call is in what it returns, exactly once, and nothing else is.
#[test]
fn check_changes_beside_the_workers_passes_keeps_its_fence() {
    let buf = Pages::new(PAGES);
    let w = poll(Duration::from_millis(1), true);
    // SAFETY: buf outlives the watcher (declared before it).
    unsafe { w.watch(buf.ptr, buf.len, "big", None) }.unwrap();
    let last = buf.len - 1;
    for round in 1..=10u8 {
        buf.write(2, round);
        buf.write(last, round);
        let events = w.check_changes().unwrap();
        let mut seen: Vec<(usize, usize)> = events.iter().flat_map(ranges).collect();
        seen.sort_unstable();
        assert_eq!(seen, [(2, 1), (last, 1)], "round {round}: {events:?}");
        let first = events.iter().find(|e| ranges(e).contains(&(2, 1))).unwrap();
        assert_eq!((first.old_preview[2], first.new_preview[2]), (round - 1, round));
        assert_eq!(buf.read(last, 1), [round]);
    }
    assert!(w.check_changes().unwrap().is_empty());
    w.close();
}

/// Without snapshots a large region keeps a hash per page: an event names
/// the changed pages (clipped to the region), one per pass, from the worker
/// and from check_changes; a page is compared with what the last pass saw.
#[test]
fn without_snapshots_a_large_region_is_hashed_per_page_in_slices() {
    let ps = page_size();
    let buf = Pages::new(PAGES);
    // A region that starts and ends inside a page.
    let (start, len) = (100, buf.len - 200);
    let w = poll(Duration::from_secs(3600), false);
    // SAFETY: buf outlives the watcher (declared before it).
    unsafe { w.watch(buf.ptr.add(start), len, "big", None) }.unwrap();
    let stats = w.stats();
    assert_eq!(stats.snapshot_bytes, 0);
    assert!(stats.native_bytes >= PAGES * 8, "the page hashes are counted");
    buf.write(start, 0x77); // region byte 0, first page
    buf.write(300 * ps + 9, 0x88);
    buf.write(start + len - 1, 0x99); // last byte, last page
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    let (first_page, last_page) = (ps - start, (PAGES - 1) * ps - start);
    assert_eq!(ranges(e), [(0, first_page), (300 * ps - start, ps), (last_page, len - last_page)]);
    assert_eq!(e.how_big, len);
    assert!(e.old_preview.is_empty());
    assert_eq!(e.new_preview.len(), 256);
    assert_eq!(e.new_preview[0], 0x77);
    assert_eq!((e.old_value.clone(), e.new_value.clone()), (None, None));
    assert!(w.check_changes().unwrap().is_empty());

    // The worker's passes: one event for writes in its first and last slices.
    let w2 = poll(Duration::from_secs(1), false);
    let buf2 = Pages::new(PAGES);
    // SAFETY: buf2 outlives w2 (closed below).
    unsafe { w2.watch(buf2.ptr, buf2.len, "big2", None) }.unwrap();
    let rx = events_to_channel(&w2);
    buf2.write(5, 1);
    buf2.write(buf2.len - 1, 2);
    let e = rx.recv_timeout(Duration::from_secs(60)).expect("the worker's event");
    let want = [ByteRange { offset: 0, len: ps }, ByteRange { offset: buf2.len - ps, len: ps }];
    assert_eq!(e.changed_ranges, want);
    assert_eq!(e.new_preview[5], 1);
    assert!(w2.check_changes().unwrap().is_empty());
    assert!(rx.try_recv().is_err(), "one event for the pass");
    // Written back to its value at watch time: a change from what the last
    // pass saw.
    buf2.write(5, 0);
    w2.set_callback(None).unwrap();
    let events = w2.check_changes().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(ranges(&events[0]), [(0, ps)]);
    assert_eq!(events[0].new_preview[5], 0);
    w2.close();
    w.close();
}
