//! Protect: writes to two pages of a large region made close together give
//! one event when the worker ends the first page's window on its own. Its
//! own test binary: another watcher's check_changes in the same process (a
//! parallel test) would legitimately end the first window between the two
//! writes.

mod common;

use common::Pages;
use memwatch_core::{page_size, Backend, ByteRange, Options, Watcher};

/// Protect: writes to two pages of a large region made close together give
/// one event even when the worker ends the first page's window on its own,
/// before the second page's (each window ends its own page's deadline): the
/// region's other open pages join that batch (a large region is diffed only
/// on the pages of a batch, so otherwise it would be two events).
#[test]
fn protect_writes_made_together_on_two_pages_give_one_event() {
    let ps = page_size();
    let buf = Pages::new(64);
    let w = Watcher::new(Options {
        backend: Backend::Protect,
        writable_window: std::time::Duration::from_millis(50),
        ..Options::default()
    })
    .unwrap();
    // SAFETY: buf outlives the watcher (declared before it).
    unsafe { w.watch(buf.ptr, buf.len, "big", None) }.unwrap();
    for round in 1..=5u8 {
        buf.write(ps + 1, round);
        // The second page's window ends 3 ms after the first one's (a 50 ms
        // window: a loaded machine's stall of the test thread between the
        // two writes, up to 47 ms, still leaves the first page open).
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_millis(3) {
            std::hint::spin_loop();
        }
        buf.write(60 * ps + 2, round);
        // Both windows end on the worker before this check.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let events = w.check_changes().unwrap();
        let ranges: Vec<_> = events.iter().map(|e| e.changed_ranges.clone()).collect();
        let want =
            vec![ByteRange { offset: ps + 1, len: 1 }, ByteRange { offset: 60 * ps + 2, len: 1 }];
        assert_eq!(ranges, vec![want], "round {round}");
    }
}
