//! Neighbouring small poll regions are read and hashed as runs (one read
//! and one hash per run a pass), and only a run whose hash moved is diffed
//! region by region. A run's hash must never hide a change: these tests
//! write one region among thousands, write a region back to its old bytes
//! after it was diffed, unwatch and watch regions inside a run's span, and
//! let the worker and check_changes() diff regions of the same run in turn.
//! Each expects exact events (name, range, old and new bytes) and no other.

mod common;

use std::time::Duration;

use common::{events_to_channel, Pages};
use memwatch_core::{page_size, Backend, ChangeEvent, Options, RegionId, Watcher};

/// A poll watcher; `interval`: its poll interval (an hour: only
/// check_changes() passes).
fn poll(interval: Duration) -> Watcher {
    Watcher::new(Options { backend: Backend::Poll, poll_interval: interval, ..Options::default() })
        .unwrap()
}

const HOUR: Duration = Duration::from_secs(3600);

/// Watches `n` regions of 64 B, `stride` bytes apart from the start of
/// `buf`, named r0, r1, ...: their ids.
fn watch_all(w: &Watcher, buf: &Pages, n: usize, stride: usize) -> Vec<RegionId> {
    (0..n)
        .map(|i| {
            // SAFETY: inside buf, which outlives the watcher's use of it.
            unsafe { w.watch(buf.ptr.add(i * stride), 64, &format!("r{i}"), None) }.unwrap()
        })
        .collect()
}

/// 64 zero bytes but `at` = `b`.
fn value(at: usize, b: u8) -> Vec<u8> {
    let mut v = vec![0; 64];
    v[at] = b;
    v
}

/// (name, changed ranges (offset, len), old value, new value) of an event.
type Shape = (String, Vec<(usize, usize)>, Vec<u8>, Vec<u8>);

/// The Shape of an event.
fn shape(e: &ChangeEvent) -> Shape {
    let ranges = e.changed_ranges.iter().map(|r| (r.offset, r.len)).collect();
    let (old, new) = (e.old_value.clone().unwrap(), e.new_value.clone().unwrap());
    (e.variable_name.clone(), ranges, old, new)
}

/// The Shape of an event of region `name` whose byte `at` went `old` -> `new`.
fn event(name: &str, at: usize, old: u8, new: u8) -> Shape {
    (name.to_string(), vec![(at, 1)], value(at, old), value(at, new))
}

#[test]
fn one_byte_of_the_5000th_of_10000_neighbours_is_one_exact_event() {
    let buf = Pages::new(10_000 * 64 / page_size() + 1);
    let w = poll(HOUR);
    watch_all(&w, &buf, 10_000, 64);
    assert!(w.check_changes().unwrap().is_empty());
    buf.write(4999 * 64 + 17, 0x5a);
    let events = w.check_changes().unwrap();
    assert_eq!(events.iter().map(shape).collect::<Vec<_>>(), [event("r4999", 17, 0, 0x5a)]);
    assert!(w.check_changes().unwrap().is_empty(), "nothing more");
    // Two regions of two different runs, and the last region.
    buf.write(10 * 64, 1);
    buf.write(9000 * 64 + 63, 2);
    buf.write(9999 * 64, 3);
    let events = w.check_changes().unwrap();
    assert_eq!(
        events.iter().map(shape).collect::<Vec<_>>(),
        [event("r10", 0, 0, 1), event("r9000", 63, 0, 2), event("r9999", 0, 0, 3)]
    );
}

#[test]
fn a_region_written_back_to_its_old_bytes_after_a_diff_is_reported_again() {
    let buf = Pages::new(2 * 1024 * 64 / page_size());
    let w = poll(HOUR);
    watch_all(&w, &buf, 2048, 64);
    for round in 0..3 {
        buf.write(700 * 64 + 5, 9);
        let events = w.check_changes().unwrap();
        assert_eq!(
            events.iter().map(shape).collect::<Vec<_>>(),
            [event("r700", 5, 0, 9)],
            "{round}"
        );
        // Back to the bytes the run held when it was hashed before the write.
        buf.write(700 * 64 + 5, 0);
        let events = w.check_changes().unwrap();
        assert_eq!(
            events.iter().map(shape).collect::<Vec<_>>(),
            [event("r700", 5, 9, 0)],
            "{round}"
        );
    }
    assert!(w.check_changes().unwrap().is_empty());
}

#[test]
fn unwatching_in_the_middle_of_a_run_leaves_its_neighbours_exact() {
    let buf = Pages::new(1024 * 64 / page_size());
    let w = poll(HOUR);
    let ids = watch_all(&w, &buf, 1024, 64);
    assert!(w.check_changes().unwrap().is_empty());
    assert!(w.unwatch(ids[500]).unwrap());
    buf.write(499 * 64 + 63, 4);
    buf.write(500 * 64, 6); // no longer watched
    buf.write(501 * 64, 5);
    let events = w.check_changes().unwrap();
    assert_eq!(
        events.iter().map(shape).collect::<Vec<_>>(),
        [event("r499", 63, 0, 4), event("r501", 0, 0, 5)]
    );
    // The unwatched bytes change again: still nothing of them.
    buf.write(500 * 64, 7);
    assert!(w.check_changes().unwrap().is_empty());
}

#[test]
fn a_region_watched_inside_a_runs_span_is_diffed_against_its_own_bytes() {
    // Regions every 128 B: the 64 B between two are in their run's span.
    let buf = Pages::new(512 * 128 / page_size());
    let w = poll(HOUR);
    watch_all(&w, &buf, 512, 128);
    assert!(w.check_changes().unwrap().is_empty()); // the runs hashed, gaps zero
                                                    // The gap changes, a region is watched there (its bytes now: 1), and
                                                    // the gap goes back to what the run hashed: the new region changed.
    let gap = 300 * 128 + 64;
    buf.write(gap + 2, 1);
    // SAFETY: inside buf.
    unsafe { w.watch(buf.ptr.add(gap), 64, "new", None) }.unwrap();
    buf.write(gap + 2, 0);
    let events = w.check_changes().unwrap();
    assert_eq!(events.iter().map(shape).collect::<Vec<_>>(), [event("new", 2, 1, 0)]);
    buf.write(gap + 3, 8);
    buf.write(301 * 128, 9);
    let events = w.check_changes().unwrap();
    assert_eq!(
        events.iter().map(shape).collect::<Vec<_>>(),
        [event("new", 3, 0, 8), event("r301", 0, 0, 9)]
    );
}

#[test]
fn the_worker_finds_a_change_in_a_run_after_check_changes_diffed_another_of_it() {
    let buf = Pages::new(1024 * 64 / page_size());
    let w = poll(Duration::from_millis(10));
    watch_all(&w, &buf, 1024, 64);
    let rx = events_to_channel(&w);
    w.check_changes().unwrap();
    assert!(rx.try_recv().is_err(), "nothing written yet");
    let next = || rx.recv_timeout(Duration::from_secs(10)).map(|e| shape(&e)).unwrap();

    // check_changes (or a worker pass before it) diffs r10 of the run.
    buf.write(10 * 64 + 1, 3);
    w.check_changes().unwrap();
    assert_eq!(next(), event("r10", 1, 0, 3));
    // Then the worker alone: r20 of the same run, r10 back to its old bytes.
    buf.write(20 * 64 + 2, 4);
    assert_eq!(next(), event("r20", 2, 0, 4));
    buf.write(10 * 64 + 1, 0);
    assert_eq!(next(), event("r10", 1, 3, 0));
    w.check_changes().unwrap();
    assert!(rx.try_recv().is_err(), "one event per change");
    w.set_callback(None).unwrap();
}
