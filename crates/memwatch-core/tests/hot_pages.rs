//! A writer looping nonstop over many protect pages (a pass
//! slower than the writable window, because of the faults themselves) makes
//! them go hot in bulk instead of faulting on every page of every pass;
//! hot pages are still diffed exactly, and cool down once quiet.
//!
//! The tests read engine-wide stats (protected_pages, faults): they run one
//! at a time.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Pages;
use memwatch_core::{page_size, Backend, ByteRange, Options, Watcher};

/// One test at a time (engine-wide stats).
static SERIAL: Mutex<()> = Mutex::new(());

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
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
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
    wait_for("all pages hot", || {
        let s = w.stats();
        s.protected_pages == 0 && s.hot_pages == pages
    });
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
    assert_eq!(w.stats().hot_pages, 0);
    let faults = w.stats().faults;
    buf.write(5 * ps + 1, 0xdd);
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].changed_ranges, [ByteRange { offset: 5 * ps + 1, len: 1 }]);
    assert_eq!(w.stats().faults, faults + 1);
    w.close();
}

/// Writes `v` at `p` and returns the line of the writing statement.
#[inline(never)]
fn located_write(p: *mut u8, v: u8) -> u32 {
    // SAFETY: p points into a live mapping of the test.
    unsafe { std::ptr::write_volatile(p, v) };
    line!() - 1
}

#[test]
fn a_pass_longer_than_ten_poll_intervals_still_goes_hot_then_cools_and_is_located() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // A writer looping over 500 pages whose every fault costs it 100 us
    // more (as on a loaded machine): a faulting pass takes > 50 ms, longer
    // than the old fixed bulk horizon (10 poll intervals = 50 ms), so a
    // page re-armed after its 1 ms window refaults only after that. The
    // horizon now follows the pass (pages over the measured fault rate).
    let (pages, ps) = (500, page_size());
    let poll = Duration::from_millis(5);
    let buf = Arc::new(Pages::new(pages));
    let w = Watcher::new(Options {
        backend: Backend::Protect,
        writable_window: Duration::from_millis(1),
        poll_interval: poll,
        locate_writers: true,
        ..Options::default()
    })
    .unwrap();
    // One region per page (the writer's bytes 0..8), and a probe region on
    // page 234 that only the test writes: the writer keeps its page hot.
    for p in 0..pages {
        // SAFETY: buf outlives the watcher (the writer stops before close).
        unsafe { w.watch(buf.ptr.add(p * ps), 8, &format!("p{p}"), None) }.unwrap();
    }
    let probe = 234 * ps + 64;
    // SAFETY: as above.
    unsafe { w.watch(buf.ptr.add(probe), 8, "probe", None) }.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let first_pass_ns = Arc::new(AtomicU64::new(0));
    let passes = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (mem, halt) = (Arc::clone(&buf), Arc::clone(&stop));
        let (first, done) = (Arc::clone(&first_pass_ns), Arc::clone(&passes));
        std::thread::spawn(move || {
            let mut round = 0u8;
            while !halt.load(Ordering::Relaxed) {
                round = round.wrapping_add(1).max(1);
                let pass = Instant::now();
                for p in 0..pages {
                    let t = Instant::now();
                    mem.write(p * ps, round);
                    if t.elapsed() > Duration::from_micros(2) {
                        // It faulted: a costly fault.
                        let spin = Instant::now();
                        while spin.elapsed() < Duration::from_micros(100) {
                            std::hint::spin_loop();
                        }
                    }
                }
                let n = pass.elapsed().as_nanos() as u64;
                _ = first.compare_exchange(0, n, Ordering::Relaxed, Ordering::Relaxed);
                done.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // Every page goes hot: none stays read-only (a page open only for its
    // 1 ms window could not be: a faulting pass takes > 50 ms).
    wait_for("all pages hot", || {
        let s = w.stats();
        s.protected_pages == 0 && s.hot_pages == pages
    });
    let first = Duration::from_nanos(first_pass_ns.load(Ordering::Relaxed));
    assert!(first > poll * 10, "the first pass ({first:?}) outlasts the old horizon");
    // Hot pages do not fault: 300 ms and at least 20 more passes (10 000
    // writes) fault far less than once per page (a page cools only if the
    // writer stalls for 4 diffs). The fault rate the engine measures every
    // 50 ms is low meanwhile, so quiet pages cool after 4 diffs again.
    let (faults, from, start) = (w.stats().faults, passes.load(Ordering::Relaxed), Instant::now());
    wait_for("20 passes in 300 ms", || {
        passes.load(Ordering::Relaxed) >= from + 20 && start.elapsed() >= poll * 60
    });
    let faulted = w.stats().faults - faults;
    assert!(faulted < pages as u64, "{faulted} faults in the hot passes of {pages} pages");
    // A write to the hot page beside the writer's bytes: one exact event.
    buf.write(probe + 3, 0xee);
    let events = w.check_changes().unwrap();
    let mine: Vec<_> = events.iter().filter(|e| e.variable_name == "probe").collect();
    assert_eq!(mine.len(), 1, "{mine:#?}");
    assert_eq!(mine[0].changed_ranges, [ByteRange { offset: 3, len: 1 }]);
    assert_eq!(mine[0].old_value.as_deref(), Some(&[0u8; 8][..]));
    assert_eq!(mine[0].new_value.as_deref(), Some(&[0, 0, 0, 0xee, 0, 0, 0, 0][..]));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    // Quiet: each check_changes diffs the hot pages, and after 4 quiet
    // diffs they are protected again (the fifth re-arms them).
    w.check_changes().unwrap();
    for i in 0..5 {
        let events = w.check_changes().unwrap();
        assert!(events.is_empty(), "quiet check {i}: {events:#?}");
    }
    assert_eq!(w.stats().protected_pages, pages);
    assert_eq!(w.stats().hot_pages, 0);
    // Cooled: a write faults again, is exact, and names its writer.
    for v in [0xdd, 0xde] {
        let old = buf.read(5 * ps, 8);
        let faults = w.stats().faults;
        // SAFETY: inside buf.
        let line = located_write(unsafe { buf.ptr.add(5 * ps + 1) }, v);
        let events = w.check_changes().unwrap();
        assert_eq!(events.len(), 1, "{events:#?}");
        let e = &events[0];
        assert_eq!(e.variable_name, "p5");
        assert_eq!(e.changed_ranges, [ByteRange { offset: 1, len: 1 }]);
        let mut new = old.clone();
        new[1] = v;
        assert_eq!(e.old_value.as_deref(), Some(&old[..]));
        assert_eq!(e.new_value.as_deref(), Some(&new[..]));
        assert_eq!(w.stats().faults, faults + 1);
        // SAFETY: gettid has no preconditions.
        assert_eq!(e.where_.thread_id, Some(unsafe { libc::gettid() } as u32));
        assert_eq!(e.where_.line, line, "{:#?}", e.where_);
        assert_eq!(w.stats().protected_pages, pages, "re-armed, not hot again");
    }
    w.close();
}
