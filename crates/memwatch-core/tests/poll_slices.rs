//! A large poll region (8 MiB or more) is read in slices, a page range per
//! engine-lock hold, by the worker and by check_changes() alike, with or
//! without snapshots. Each pass still makes one event per region, shaped as
//! a protect or writewatch event on a large region (tests/big_region.rs):
//! every changed range in ascending order, the first preview_bytes before
//! and after, no whole values; and other watchers' calls go on between the
//! slices of a long check_changes().

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{events_to_channel, Pages};
use memwatch_core::{page_size, Backend, ByteRange, ChangeEvent, Options, Watcher};

/// 16 MiB: eight slices of 2 MiB (POLL_SLICE_BYTES).
const PAGES: usize = 4096;

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

/// 256 bytes (the default preview) of zeros but `set` (offset, byte).
fn preview(set: &[(usize, u8)]) -> Vec<u8> {
    let mut p = vec![0; 256];
    for &(at, b) in set {
        p[at] = b;
    }
    p
}

/// What every event of a large region carries besides ranges and previews.
fn assert_large_event(e: &ChangeEvent, name: &str, len: usize) {
    assert_eq!(e.variable_name, name);
    assert_eq!(e.how_big, len);
    assert_eq!((e.old_value.clone(), e.new_value.clone()), (None, None));
    assert_eq!((e.storage_key_old.clone(), e.storage_key_new.clone()), (None, None));
    assert_eq!(e.where_.thread_id, None, "poll knows no writer");
    assert_eq!(e.coalesced, 1);
}

/// check_changes() reads a large region in slices (releasing the engine
/// lock between them): writes in its first, middle and last slices come as
/// one event with their exact ranges, as protect and writewatch give it.
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
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(ranges(e), [(3, 1), (mid, 1), (last - 1, 2)]);
    assert_eq!(e.old_preview, preview(&[]));
    assert_eq!(e.new_preview, preview(&[(3, 0x33)]));
    assert_large_event(e, "big", buf.len);
    assert!(w.check_changes().unwrap().is_empty());
    // The snapshot followed every slice: only the next writes are reported,
    // a byte written back to its old value among them.
    buf.write(mid, 0x45);
    buf.write(3, 0);
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(ranges(&events[0]), [(3, 1), (mid, 1)]);
    assert_eq!(events[0].old_preview, preview(&[(3, 0x33)]));
    assert_eq!(events[0].new_preview, preview(&[]));
    assert!(w.check_changes().unwrap().is_empty());
    w.close();
}

/// Without snapshots a large region keeps a hash per page: check_changes()
/// gives one event naming each changed page (clipped to the region; pages
/// next to each other make one range), no old preview (as for any region
/// without a snapshot), and a page is compared with what the last pass saw.
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
    buf.write(301 * ps, 0x89); // the next page: one range with page 300
    buf.write(start + len - 1, 0x99); // last byte, last page
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    let (first_page, last_page) = (ps - start, (PAGES - 1) * ps - start);
    assert_eq!(
        ranges(e),
        [(0, first_page), (300 * ps - start, 2 * ps), (last_page, len - last_page)]
    );
    assert!(e.old_preview.is_empty());
    assert_eq!(e.new_preview, preview(&[(0, 0x77)]));
    assert_large_event(e, "big", len);
    assert!(w.check_changes().unwrap().is_empty());
    // Written back to its value at watch time: a change from what the last
    // pass saw.
    buf.write(300 * ps + 9, 0);
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(ranges(&events[0]), [(300 * ps - start, ps)]);
    assert!(w.check_changes().unwrap().is_empty());
    w.close();
}

/// The worker's pass reads writes in its first and last slices into one
/// event. The writes are made right after the event of a first pass (a
/// write to the last byte, seen in that pass's last slice), so a whole poll
/// interval (1 s) lies between them and the next pass's start.
fn worker_pass_makes_one_event(snapshots: bool) {
    let ps = page_size();
    let buf = Pages::new(PAGES);
    let w = poll(Duration::from_secs(1), snapshots);
    // SAFETY: buf outlives the watcher (declared before it).
    unsafe { w.watch(buf.ptr, buf.len, "big", None) }.unwrap();
    let rx = events_to_channel(&w);
    let last = buf.len - 1;
    buf.write(last, 1);
    let first = rx.recv_timeout(Duration::from_secs(60)).expect("the first pass's event");
    let page = |offset: usize| (offset / ps * ps, ps);
    let want = if snapshots { [(last, 1)] } else { [page(last)] };
    assert_eq!(ranges(&first), want);
    // The next pass starts a second after this one's end.
    buf.write(1, 0x11);
    buf.write(last - 5, 0x22);
    let e = rx.recv_timeout(Duration::from_secs(60)).expect("the second pass's event");
    if snapshots {
        assert_eq!(ranges(&e), [(1, 1), (last - 5, 1)]);
        assert_eq!(e.old_preview, preview(&[]));
    } else {
        assert_eq!(ranges(&e), [page(1), page(last)]);
        assert!(e.old_preview.is_empty());
    }
    assert_eq!(e.new_preview, preview(&[(1, 0x11)]));
    assert_large_event(&e, "big", buf.len);
    // Nothing else: check_changes delivers what is pending before returning.
    assert!(w.check_changes().unwrap().is_empty());
    assert!(rx.try_recv().is_err(), "one event for the pass");
    w.close();
}

#[test]
fn a_worker_pass_makes_one_event_of_all_its_slices() {
    worker_pass_makes_one_event(true);
}

#[test]
fn a_worker_pass_without_snapshots_makes_one_event_of_all_its_slices() {
    worker_pass_makes_one_event(false);
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
    }
    assert!(w.check_changes().unwrap().is_empty());
    w.close();
}

/// A thread calling check_changes() nonstop on `other`'s region, the first
/// 64 bytes of `small`, after a one-byte write each time (one exact event
/// each), counting the calls made entirely within [`Caller::during`].
struct Caller {
    running: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    inside: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

impl Caller {
    /// Starts the thread; returns once it made 3 calls.
    fn start(other: &Arc<Watcher>, small: &Arc<Pages>) -> Caller {
        let (running, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let (calls, inside) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let thread = {
            let (other, small) = (Arc::clone(other), Arc::clone(small));
            let (running, stop) = (Arc::clone(&running), Arc::clone(&stop));
            let (calls, inside) = (Arc::clone(&calls), Arc::clone(&inside));
            std::thread::spawn(move || {
                let mut i = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    small.write(i % 64, (i % 250) as u8 + 1);
                    let began = running.load(Ordering::SeqCst);
                    let events = other.check_changes().unwrap();
                    let within = began && running.load(Ordering::SeqCst);
                    assert_eq!(events.len(), 1, "call {i}: {events:?}");
                    assert_eq!(ranges(&events[0]), [(i % 64, 1)]);
                    assert_eq!(events[0].new_value.as_ref().unwrap()[i % 64], (i % 250) as u8 + 1);
                    calls.fetch_add(1, Ordering::SeqCst);
                    if within {
                        inside.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        };
        while calls.load(Ordering::SeqCst) < 3 {
            std::thread::yield_now();
        }
        Caller { running, stop, inside, thread }
    }

    /// Runs `f`; returns its result and how many calls the thread made
    /// entirely meanwhile.
    fn during<R>(&self, f: impl FnOnce() -> R) -> (R, usize) {
        self.inside.store(0, Ordering::SeqCst);
        self.running.store(true, Ordering::SeqCst);
        let r = f();
        self.running.store(false, Ordering::SeqCst);
        (r, self.inside.load(Ordering::SeqCst))
    }

    /// Stops the thread (its assertion failures fail the test here).
    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap();
    }
}

/// A check_changes() over a 64 MiB poll region (32 slices) lets another
/// watcher's calls through between its slices: a thread calling
/// check_changes() on a small region nonstop completes many calls (each
/// with its exact event) while the big one runs. Held for the whole region
/// (as before slicing), the lock would let through at most the one call
/// already inside when the big call began.
#[test]
fn check_changes_on_a_large_region_lets_other_watchers_through() {
    let big = Pages::new(16384);
    let small = Pages::new(1);
    let w = poll(Duration::from_secs(3600), true);
    let other = Arc::new(Watcher::new(Options::default()).unwrap());
    // SAFETY: big and small outlive both watchers (declared before them).
    unsafe { w.watch(big.ptr, big.len, "big", None) }.unwrap();
    // SAFETY: as above.
    unsafe { other.watch(small.ptr, 64, "small", None) }.unwrap();
    let small = Arc::new(small);
    let caller = Caller::start(&other, &small);
    big.write(5, 1);
    big.write(big.len - 5, 2);
    let (events, inside) = caller.during(|| w.check_changes().unwrap());
    caller.stop();
    assert_eq!(events.len(), 1, "{events:?}");
    let want = [ByteRange { offset: 5, len: 1 }, ByteRange { offset: big.len - 5, len: 1 }];
    assert_eq!(events[0].changed_ranges, want);
    assert_eq!(events[0].new_preview, preview(&[(5, 1)]));
    assert!(inside >= 8, "{inside} calls of the other watcher during 32 slices");
    w.close();
    other.close();
}

/// Watching and unwatching a 64 MiB poll region let another watcher's
/// calls through: its first read, hash and snapshot are made before the
/// engine lock is taken, and its snapshot is freed after the lock is
/// released. A thread calling check_changes() on a small region nonstop
/// completes many calls (each with its exact event) meanwhile, where with
/// the lock held for the read (as before) only the few already under way
/// when watch() began would. The region is then watched exactly.
#[test]
fn watching_a_large_poll_region_lets_other_watchers_through() {
    let big = Pages::new(16384);
    let small = Pages::new(1);
    let w = poll(Duration::from_secs(3600), true);
    let other = Arc::new(Watcher::new(Options::default()).unwrap());
    // SAFETY: small outlives the watcher (declared before it).
    unsafe { other.watch(small.ptr, 64, "small", None) }.unwrap();
    let small = Arc::new(small);
    let caller = Caller::start(&other, &small);
    let mut during = Vec::new();
    for round in 0..2u8 {
        big.write(100, round + 1);
        // SAFETY: big outlives the watcher (declared before it).
        let (id, inside) = caller.during(|| unsafe { w.watch(big.ptr, big.len, "big", None) });
        let id = id.unwrap();
        during.push(inside);
        assert!(w.check_changes().unwrap().is_empty(), "watched as it was");
        big.write(big.len - 3, round + 7);
        let events = w.check_changes().unwrap();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].changed_ranges, [ByteRange { offset: big.len - 3, len: 1 }]);
        big.write(big.len - 3, 0);
        w.unwatch(id).unwrap();
    }
    caller.stop();
    // Here: 30 000-45 000 calls during each watch(); 29 and 0 with the
    // lock held for the read.
    assert!(
        during.iter().all(|&n| n >= 200),
        "{during:?} calls of the other watcher during watch()"
    );
    w.close();
    other.close();
}
