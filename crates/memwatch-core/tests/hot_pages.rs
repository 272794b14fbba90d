//! A writer looping nonstop over many protect pages (a pass
//! slower than the writable window, because of the faults themselves) makes
//! them go hot in bulk instead of faulting on every page of every pass;
//! hot pages are still diffed exactly, and cool down once quiet.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Pages;
use memwatch_core::{page_size, Backend, ByteRange, Options, Watcher};

/// Waits up to 60 s for `done` (a loaded machine), polling every 10 ms.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(60), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn pages_written_in_a_loop_go_hot_in_bulk_and_cool_down() {
    // With a 1 ms window a pass over 500 pages that fault is longer than
    // the window (each fault costs microseconds): no page refaults within
    // a window of its re-protection.
    let pages = 500;
    let ps = page_size();
    let buf = Arc::new(Pages::new(pages));
    let w = Watcher::new(Options {
        backend: Backend::Protect,
        writable_window: Duration::from_millis(1),
        ..Options::default()
    })
    .unwrap();
    // SAFETY: buf outlives the watcher (the writer stops before close).
    unsafe { w.watch(buf.ptr, buf.len, "loop", None) }.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (mem, halt) = (Arc::clone(&buf), Arc::clone(&stop));
    let writer = std::thread::spawn(move || {
        let mut round = 0u8;
        while !halt.load(Ordering::Relaxed) {
            round = round.wrapping_add(1);
            for p in 0..pages {
                mem.write(p * ps, round);
            }
        }
    });
    // Every page goes hot: none stays read-only, and faults stop.
    wait_for("all pages hot", || w.stats().protected_pages == 0);
    let faults = w.stats().faults;
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(w.stats().faults, faults, "hot pages do not fault");
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    w.check_changes().unwrap();
    // Still exact while hot.
    buf.write(234 * ps + 7, 0xee);
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].changed_ranges, [ByteRange { offset: 234 * ps + 7, len: 1 }]);
    // Quiet: protected again, and a write faults and is found.
    wait_for("pages protected again", || w.stats().protected_pages == pages);
    let faults = w.stats().faults;
    buf.write(5 * ps + 1, 0xdd);
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].changed_ranges, [ByteRange { offset: 5 * ps + 1, len: 1 }]);
    assert_eq!(w.stats().faults, faults + 1);
    w.close();
}
