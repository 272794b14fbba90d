//! check_changes() stays synchronous on a page another thread keeps
//! faulting open (protect): a write made before the call is in its result,
//! even when the other thread's SIGSEGV handler has made the page writable
//! but not yet announced it in the fault ring.

mod common;

use common::Pages;
use memwatch_core::{page_size, Backend, Options, Watcher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn write_then_check_changes_on_a_page_another_thread_writes() {
    let pages = Arc::new(Pages::new(1));
    // A window longer than the test: only check_changes() re-protects the
    // page (early, which never counts toward "written nonstop"), so the
    // page keeps cycling through protection instead of being left open.
    let w = Watcher::new(Options {
        backend: Backend::Protect,
        writable_window: Duration::from_secs(60),
        ..Options::default()
    })
    .unwrap();
    // SAFETY: the mapping outlives the watcher (closed below, before drop).
    unsafe { w.watch(pages.ptr, 16, "shared", None) }.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // Writers of unwatched bytes of the same page: each write after a
    // re-protection faults, and its handler opens the page.
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let (pages, stop) = (Arc::clone(&pages), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut i = 0u8;
                while !stop.load(Ordering::Relaxed) {
                    pages.write(page_size() / 2 + t, i);
                    i = i.wrapping_add(1);
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut rounds = 0u32;
    let mut misses = Vec::new();
    while Instant::now() < deadline {
        let off = (rounds % 16) as usize;
        let old = pages.read(off, 1)[0];
        let new = old.wrapping_add(1);
        pages.write(off, new);
        let events = w.check_changes().unwrap();
        let ok = events.len() == 1
            && events[0].changed_ranges.len() == 1
            && events[0].changed_ranges[0].offset == off
            && events[0].changed_ranges[0].len == 1
            && events[0].old_value.as_ref().unwrap()[off] == old
            && events[0].new_value.as_ref().unwrap()[off] == new;
        if !ok {
            misses.push((rounds, events.len()));
        }
        rounds += 1;
    }
    let faults = w.stats().faults;
    stop.store(true, Ordering::Relaxed);
    for t in writers {
        t.join().unwrap();
    }
    w.close();
    assert!(rounds > 100, "only {rounds} rounds");
    // The race needs the page to leave and re-enter protection.
    assert!(faults > 100, "only {faults} faults: the page never cycled");
    assert!(
        misses.is_empty(),
        "{} of {rounds} rounds wrong (round, events): {:?}",
        misses.len(),
        &misses[..misses.len().min(10)]
    );
}
