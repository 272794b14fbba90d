//! The queue and check_changes() under load. check_changes() with
//! a callback is a fence (it returns once every write made before it was
//! delivered, not waiting for later ones), and a queue nobody drains stays
//! bounded by coalescing, losing no change.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Pages;
use memwatch_core::{Backend, ChangeEvent, Options, Watcher, QUEUE_CAP};

fn poll_options(interval_ms: u64) -> Options {
    Options {
        backend: Backend::Poll,
        poll_interval: Duration::from_millis(interval_ms),
        ..Options::default()
    }
}

fn u64_at(v: &Option<Vec<u8>>) -> u64 {
    u64::from_le_bytes(v.as_ref().expect("value")[..8].try_into().unwrap())
}

#[test]
fn check_changes_with_a_slow_callback_returns_while_writes_go_on() {
    let w = Watcher::new(poll_options(2)).unwrap();
    let busy = Pages::new(1);
    let marker = Pages::new(1);
    // SAFETY: both outlive the watcher (it is closed at the end).
    unsafe {
        w.watch(busy.ptr, 8, "busy", None).unwrap();
        w.watch(marker.ptr, 8, "marker", None).unwrap();
    }
    let seen = Arc::new(Mutex::new(Vec::<ChangeEvent>::new()));
    let s = Arc::clone(&seen);
    w.set_callback(Some(Arc::new(move |e: &ChangeEvent| {
        std::thread::sleep(Duration::from_millis(20)); // slower than the changes
        s.lock().unwrap().push(e.clone());
    })))
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let timed_out = Arc::new(AtomicBool::new(false));
    let (st, to) = (Arc::clone(&stop), Arc::clone(&timed_out));
    let addr = busy.ptr as usize;
    let writer = std::thread::spawn(move || {
        let start = Instant::now();
        let mut i = 0u64;
        while !st.load(Ordering::SeqCst) {
            if start.elapsed() > Duration::from_secs(20) {
                to.store(true, Ordering::SeqCst);
                break;
            }
            i += 1;
            // SAFETY: the page outlives this thread (joined below).
            unsafe { std::ptr::write_volatile(addr as *mut u64, i) };
            std::thread::sleep(Duration::from_micros(500));
        }
    });
    // Let the queue fill with the writer's changes, then write the marker.
    while w.stats().pending_events < 20 {
        std::thread::sleep(Duration::from_millis(1));
    }
    marker.write(0, 7);
    w.check_changes().unwrap();
    let writer_still_running = !timed_out.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    assert!(writer_still_running, "check_changes waited for writes made after it (20 s)");
    let got = seen.lock().unwrap().clone();
    let markers: Vec<_> = got.iter().filter(|e| e.variable_name == "marker").collect();
    assert_eq!(markers.len(), 1, "the write before check_changes was delivered before it returned");
    assert_eq!(markers[0].new_value.as_deref(), Some(&[7, 0, 0, 0, 0, 0, 0, 0][..]));
    w.close();
}

#[test]
fn an_undrained_queue_is_capped_by_coalescing_and_loses_no_change() {
    let w = Watcher::new(poll_options(1)).unwrap();
    let page = Pages::new(1);
    // SAFETY: page outlives the watcher.
    unsafe { w.watch(page.ptr, 8, "counter", None).unwrap() };
    let mut i = 0u64;
    // Nobody drains: the worker's passes queue an event per change seen.
    while w.stats().coalesced_events < 200 {
        i += 1;
        // SAFETY: in bounds.
        unsafe { std::ptr::write_volatile(page.ptr as *mut u64, i) };
        std::thread::sleep(Duration::from_micros(300));
        assert!(i < 10_000_000, "never coalesced: {:?}", w.stats());
    }
    let stats = w.stats();
    assert_eq!(stats.pending_events, QUEUE_CAP, "{stats:?}");
    let events = w.check_changes().unwrap();
    assert!(events.len() == QUEUE_CAP || events.len() == QUEUE_CAP + 1, "{}", events.len());
    // Every change is there: each old value is the previous new value, from
    // the value at watch time to the last one written.
    assert_eq!(u64_at(&events[0].old_value), 0);
    for pair in events.windows(2) {
        assert_eq!(u64_at(&pair[1].old_value), u64_at(&pair[0].new_value));
    }
    assert_eq!(u64_at(&events.last().unwrap().new_value), i);
    let merged: u64 = events.iter().map(|e| u64::from(e.coalesced)).sum();
    let stats = w.stats();
    assert_eq!(merged, stats.events, "every detected change is in some event");
    assert_eq!(merged - events.len() as u64, stats.coalesced_events);
    assert!(events.iter().any(|e| e.coalesced > 1));
    assert!(events[..QUEUE_CAP - 1].iter().all(|e| e.coalesced == 1));
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|p| p[0] < p[1]), "in order");
    assert_eq!(w.stats().pending_events, 0);
}

#[test]
fn flush_delivers_pending_changes_to_the_callback() {
    let w = Watcher::new(Options::default()).unwrap();
    let page = Pages::new(1);
    // SAFETY: page outlives the watcher.
    unsafe { w.watch(page.ptr, 4, "x", None).unwrap() };
    let got = Arc::new(AtomicU64::new(0));
    let g = Arc::clone(&got);
    w.set_callback(Some(Arc::new(move |e: &ChangeEvent| {
        g.store(u64::from(e.new_value.as_ref().unwrap()[0]), Ordering::SeqCst);
    })))
    .unwrap();
    page.write(0, 5);
    assert!(w.flush(Duration::from_secs(5)));
    assert_eq!(got.load(Ordering::SeqCst), 5);
    // A callback that does not return in time: flush gives up, saying so.
    let release = Arc::new(AtomicBool::new(false));
    let r = Arc::clone(&release);
    w.set_callback(Some(Arc::new(move |_: &ChangeEvent| {
        while !r.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
    })))
    .unwrap();
    page.write(0, 6);
    assert!(!w.flush(Duration::from_millis(50)));
    release.store(true, Ordering::SeqCst);
    assert!(w.flush(Duration::from_secs(5)));
}
