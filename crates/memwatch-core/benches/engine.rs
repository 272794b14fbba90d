//! Engine benchmarks, printed as a markdown table (ratios from one run).
//!
//! `cargo bench -p memwatch-core --bench engine` (or `ci/bench.sh`); extra
//! arguments pick rows by name: `... --bench engine -- native` runs only the
//! native-bytes row (first, steady, latency, latency-10k, idle, latency-1g,
//! silence, idle-1g, native; `1g` picks the 1 GiB rows, `latency` every
//! latency row).
//! 1. steady-state overhead of a tight write loop over a watched 1 MiB buffer
//! 2. first write to a protected page vs the raw mprotect + fault floor
//! 3. write -> callback latency at default settings
//! 4. native bytes for 100 000 one-kilobyte regions with snapshots off
//! 5. one byte written in a 1 GiB region -> its event (`big`)
//! 6. time and heap to watch 1k/10k/100k regions per backend, and
//!    check_changes vs regions and dirty pages (`watchtime`; 1M regions:
//!    `million`); the queue under a slow callback (`queue`); the writer's
//!    CPU with 1 000 / 10 000 / 65 536 pages written nonstop (`hot`, one
//!    backend: `hot-protect`, `hot-writewatch`); poll idle CPU
//!    at 1k/10k/100k regions and one region of the 100k's bytes (`pollidle`)
//! 7. check_changes of a small watcher beside a 1 GiB poll region, the poll
//!    watcher's own check_changes on it, and the small watcher's while
//!    another thread makes those (`beside`)
//! 8. writer location: first write with capture on vs off, and the cost of
//!    resolving one event's stack, cold and cached (`-- locate`)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use memwatch_core::{page_size, Backend, ChangeEvent, Options, Watcher};

/// Counts live heap bytes so the memory row measures what was allocated.
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged, only counting sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: p was allocated by System with l.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        // SAFETY: p was allocated by System with l.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn map(len: usize) -> *mut u8 {
    // SAFETY: anonymous mapping, no preconditions.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    p as *mut u8
}

/// One pass: a store to every 8th byte of the buffer.
fn pass(buf: *mut u8, len: usize, round: usize) {
    let mut i = 0;
    while i < len {
        // SAFETY: i < len, inside the mapping.
        unsafe { std::ptr::write_volatile(buf.add(i), (round + i) as u8) };
        i += 8;
    }
}

fn time_passes(buf: *mut u8, len: usize, dur: Duration) -> f64 {
    let start = Instant::now();
    let mut rounds = 0;
    while start.elapsed() < dur {
        pass(buf, len, rounds);
        rounds += 1;
    }
    start.elapsed().as_nanos() as f64 / rounds as f64
}

fn steady_state(rows: &mut Vec<[String; 4]>) {
    let len = 1 << 20;
    let buf = map(len);
    // Warm up (page-in), then unwatched right before each watched run: a
    // load change between rows moves both sides of a ratio alike.
    time_passes(buf, len, Duration::from_millis(200));
    for backend in [Backend::Protect, Backend::WriteWatch, Backend::Poll] {
        let base = time_passes(buf, len, Duration::from_secs(2));
        let w = Watcher::new(Options { backend, ..Options::default() }).unwrap();
        // SAFETY: buf stays mapped for the whole benchmark.
        unsafe { w.watch(buf, len, "buf", None) }.unwrap();
        time_passes(buf, len, Duration::from_millis(300)); // reach steady state
        let watched = time_passes(buf, len, Duration::from_secs(2));
        let events = w.check_changes().unwrap().len();
        rows.push([
            format!("steady-state write loop, 1 MiB watched ({backend})"),
            format!("{:.1} us/pass vs {:.1} us unwatched", watched / 1e3, base / 1e3),
            format!("{:.3}x", watched / base),
            format!("<= 1.05x ({} events pending at the end)", events),
        ]);
        w.close();
    }
}

static RAW_FAULTS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn raw_handler(_s: i32, info: *mut libc::siginfo_t, _c: *mut libc::c_void) {
    RAW_FAULTS.fetch_add(1, Ordering::Relaxed);
    // SAFETY: info valid in SA_SIGINFO handler; mprotect is async-signal-safe.
    unsafe {
        let a = (*info).si_addr() as usize & !(page_size() - 1);
        libc::mprotect(a as *mut libc::c_void, page_size(), libc::PROT_READ | libc::PROT_WRITE);
    }
}

fn first_write(rows: &mut Vec<[String; 4]>) {
    let pages = 4096;
    let ps = page_size();
    let buf = map(pages * ps);
    for p in 0..pages {
        // SAFETY: inside the mapping (fault everything in).
        unsafe { *buf.add(p * ps) = 1 };
    }
    // The floor: our own minimal handler, then restore the old disposition.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: installing a valid handler and saving the old one.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction =
            raw_handler as extern "C" fn(i32, *mut libc::siginfo_t, *mut libc::c_void) as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigaction(libc::SIGSEGV, &sa, &mut old);
    }
    let mut floor = f64::MAX;
    for _ in 0..3 {
        // SAFETY: our mapping.
        unsafe { libc::mprotect(buf as *mut libc::c_void, pages * ps, libc::PROT_READ) };
        let t = Instant::now();
        for p in 0..pages {
            // SAFETY: inside the mapping; faults into raw_handler.
            unsafe { std::ptr::write_volatile(buf.add(p * ps), 2) };
        }
        floor = floor.min(t.elapsed().as_nanos() as f64 / pages as f64);
    }
    // SAFETY: restoring the saved disposition.
    unsafe { libc::sigaction(libc::SIGSEGV, &old, std::ptr::null_mut()) };
    let mut ours = f64::MAX;
    for round in 0..3 {
        let w = Watcher::new(Options {
            backend: Backend::Protect,
            writable_window: Duration::from_secs(10),
            ..Options::default()
        })
        .unwrap();
        // SAFETY: buf stays mapped.
        unsafe { w.watch(buf, pages * ps, "pages", None) }.unwrap();
        let t = Instant::now();
        for p in 0..pages {
            // SAFETY: inside the mapping; faults into memwatch's handler.
            unsafe { std::ptr::write_volatile(buf.add(p * ps), 3 + round as u8) };
        }
        ours = ours.min(t.elapsed().as_nanos() as f64 / pages as f64);
        w.close();
    }
    let mut wwcost = f64::MAX;
    for round in 0..3 {
        let w =
            Watcher::new(Options { backend: Backend::WriteWatch, ..Options::default() }).unwrap();
        // SAFETY: buf stays mapped.
        unsafe { w.watch(buf, pages * ps, "pages", None) }.unwrap();
        let t = Instant::now();
        for p in 0..pages {
            // SAFETY: inside the mapping; the kernel resolves the WP fault.
            unsafe { std::ptr::write_volatile(buf.add(p * ps), 7 + round as u8) };
        }
        wwcost = wwcost.min(t.elapsed().as_nanos() as f64 / pages as f64);
        w.close();
    }
    rows.push([
        "first write to a protected page (protect)".into(),
        format!("{:.2} us vs raw mprotect+fault floor {:.2} us", ours / 1e3, floor / 1e3),
        format!("{:.2}x", ours / floor),
        "<= 1.5x the floor".into(),
    ]);
    rows.push([
        "first write to a protected page (writewatch)".into(),
        format!(
            "{:.2} us vs protect {:.2} us vs raw floor {:.2} us",
            wwcost / 1e3,
            ours / 1e3,
            floor / 1e3
        ),
        format!("{:.2}x the floor, {:.1}x cheaper than protect", wwcost / floor, ours / wwcost),
        "cheaper than protect".into(),
    ]);
}

/// CPU time of the calling thread (user + system, faults and handler
/// included): unlike wall time it does not count time other processes ran.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// First write to a protected page with locate_writers vs without (same
/// pages, alternating rounds, best of each, in the writing thread's CPU
/// time), and resolving one event's stack: cold (modules opened anew) and
/// cached.
fn locate(rows: &mut Vec<[String; 4]>) {
    let pages = 4096;
    let ps = page_size();
    let buf = map(pages * ps);
    let mut best = [f64::MAX; 2];
    let mut stack = Vec::new();
    for round in 0..10 {
        let on = round % 2 == 1;
        let w = Watcher::new(Options {
            backend: Backend::Protect,
            writable_window: Duration::from_secs(10),
            locate_writers: on,
            ..Options::default()
        })
        .unwrap();
        // SAFETY: buf stays mapped.
        unsafe { w.watch(buf, pages * ps, "pages", None) }.unwrap();
        let t = thread_cpu_ns();
        for p in 0..pages {
            // SAFETY: inside the mapping; faults into memwatch's handler.
            unsafe { std::ptr::write_volatile(buf.add(p * ps), 3 + round as u8) };
        }
        let ns = (thread_cpu_ns() - t) as f64 / pages as f64;
        best[usize::from(on)] = best[usize::from(on)].min(ns);
        if on && stack.is_empty() {
            let events = w.check_changes().unwrap();
            stack = events[0].where_.stack.iter().map(|f| f.ip).collect::<Vec<u64>>();
            stack.dedup();
        }
        w.close();
    }
    let [off, on] = best;
    rows.push([
        "first write to a protected page, locate_writers on vs off (protect, thread CPU time)"
            .into(),
        format!("{:.2} us vs {:.2} us ({} frames walked)", on / 1e3, off / 1e3, stack.len()),
        format!("{:.2}x", on / off),
        "<= 1.3x".into(),
    ]);
    let mut cold = f64::MAX;
    for _ in 0..3 {
        memwatch_core::clear_symbol_cache();
        let t = Instant::now();
        for &ip in &stack {
            std::hint::black_box(memwatch_core::resolve_address(ip));
        }
        cold = cold.min(t.elapsed().as_nanos() as f64);
    }
    let reps = 10_000;
    let t = Instant::now();
    for _ in 0..reps {
        for &ip in &stack {
            std::hint::black_box(memwatch_core::resolve_address(ip));
        }
    }
    let cached = t.elapsed().as_nanos() as f64 / reps as f64;
    rows.push([
        format!("symbolize one event's stack ({} frames, addr2line)", stack.len()),
        format!("cold {:.1} ms (modules opened), cached {:.2} us", cold / 1e6, cached / 1e3),
        format!("{:.2} us/frame cached", cached / 1e3 / stack.len().max(1) as f64),
        "off the hot path; cached << a fault".into(),
    ]);
}

/// Maps `len` bytes and writes one byte of every page (all populated).
fn populated(len: usize) -> *mut u8 {
    let buf = map(len);
    for p in 0..len / page_size() {
        // SAFETY: inside the mapping.
        unsafe { *buf.add(p * page_size()) = 1 };
    }
    buf
}

/// `background`: bytes of other memory the same watcher watches meanwhile
/// (populated, never written during the measurement unless `into_background`:
/// then the writes go to it, not to a small region of their own).
fn latency(
    rows: &mut Vec<[String; 4]>,
    backend: Backend,
    background: usize,
    into_background: bool,
    target: &str,
) {
    let ps = page_size();
    let samples = 300;
    let small = map(ps * 4);
    let w = Watcher::new(Options { backend, ..Options::default() }).unwrap();
    // SAFETY: small stays mapped.
    unsafe { w.watch(small, 64, "lat", None) }.unwrap();
    let big = (background > 0).then(|| populated(background));
    if let Some(big) = big {
        // SAFETY: big stays mapped (leaked) for the whole benchmark.
        unsafe { w.watch(big, background, "background", None) }.unwrap();
        std::thread::sleep(Duration::from_millis(300)); // past the registration's scans
    }
    // Into the background: the middle of it, one page after another.
    let buf = match big {
        Some(big) if into_background => {
            // SAFETY: inside the mapping (background >= 2 pages).
            unsafe { big.add(background / 2) }
        }
        _ => small,
    };
    // Latency from the writer's own clock (the event's timestamp is the
    // first fault for protect but the detection time for writewatch).
    let lat: Arc<Mutex<Vec<u64>>> = Arc::default();
    let wrote_at = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sink = Arc::clone(&lat);
    let wrote = Arc::clone(&wrote_at);
    let now_ns = || {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: valid timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    };
    // wrote_at: the earliest write no event has reported yet (0: none), so
    // writes that coalesce into one event count from the first of them.
    w.set_callback(Some(Arc::new(move |_e: &ChangeEvent| {
        let first = wrote.swap(0, Ordering::SeqCst);
        if first != 0 {
            sink.lock().unwrap().push(now_ns() - first);
        }
    })))
    .unwrap();
    for i in 0..samples {
        let _ = wrote_at.compare_exchange(0, now_ns(), Ordering::SeqCst, Ordering::SeqCst);
        let at = if into_background { (i % 64) * ps % (background / 2) } else { i % 64 };
        // SAFETY: inside the mapping (the small region, or the background's
        // second half).
        unsafe { std::ptr::write_volatile(buf.add(at), (i % 250) as u8 + 1) };
        std::thread::sleep(Duration::from_millis(12)); // past window + delivery
    }
    let mut v = lat.lock().unwrap().clone();
    v.sort_unstable();
    let p = |q: usize| v[(v.len() - 1) * q / 100] as f64 / 1e6;
    if backend == Backend::Protect {
        rows.push([
            format!("write -> callback latency (protect, 5 ms window), {} events", v.len()),
            format!("p50 {:.2} ms, p99 {:.2} ms", p(50), p(99)),
            format!("p99 {:.2} ms beyond the window", p(99) - 5.0),
            "p99 <= 2 ms beyond the window".into(),
        ]);
    } else if background == 0 {
        rows.push([
            format!("write -> callback latency ({backend}, defaults), {} events", v.len()),
            format!("p50 {:.2} ms, p99 {:.2} ms", p(50), p(99)),
            format!("p99 {:.2} ms", p(99)),
            "p99 <= 1 ms".into(),
        ]);
    } else {
        let what = if into_background {
            format!("into a watched {} MiB region", background >> 20)
        } else {
            format!("{} pages ({} MiB) more watched", background / ps, background >> 20)
        };
        rows.push([
            format!("write -> callback latency ({backend}, defaults, {what}), {} events", v.len()),
            format!("p50 {:.2} ms, p99 {:.2} ms", p(50), p(99)),
            format!("p99 {:.2} ms", p(99)),
            target.into(),
        ]);
    }
    w.close();
    if let Some(big) = big {
        // SAFETY: unwatched (closed) and not used any more.
        unsafe { libc::munmap(big as *mut libc::c_void, background) };
    }
}

/// Write -> callback latency of a write after 1 s of silence (writewatch,
/// defaults): the worker has backed off to its idle pace. `pages` watched
/// in all: a 64-byte region that is written and one that never is.
fn silence_latency(rows: &mut Vec<[String; 4]>, pages: usize) {
    let big = populated((pages - 1) * page_size());
    let buf = populated(page_size());
    let w = Watcher::new(Options { backend: Backend::WriteWatch, ..Options::default() }).unwrap();
    // SAFETY: big and buf stay mapped until after close.
    unsafe { w.watch(big, (pages - 1) * page_size(), "background", None) }.unwrap();
    // SAFETY: as above.
    unsafe { w.watch(buf, 64, "quiet", None) }.unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = Mutex::new(tx);
    w.set_callback(Some(Arc::new(move |_e: &ChangeEvent| {
        tx.lock().unwrap().send(Instant::now()).unwrap();
    })))
    .unwrap();
    let mut v = Vec::new();
    for i in 0..10 {
        std::thread::sleep(Duration::from_secs(1));
        let t = Instant::now();
        // SAFETY: inside the mapping.
        unsafe { std::ptr::write_volatile(buf.add(i), i as u8 + 2) };
        let got = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        v.push(got.duration_since(t).as_secs_f64() * 1e3);
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    rows.push([
        format!(
            "write after 1 s of silence -> callback (writewatch, {pages} pages watched), 10 writes"
        ),
        format!("median {:.1} ms, max {:.1} ms", v[5], v[9]),
        format!("max {:.1} ms", v[9]),
        "(the idle pace; no target)".into(),
    ]);
    w.close();
    // SAFETY: unwatched (closed) and not used any more.
    unsafe { libc::munmap(big as *mut libc::c_void, (pages - 1) * page_size()) };
    // SAFETY: as above.
    unsafe { libc::munmap(buf as *mut libc::c_void, page_size()) };
}

/// One byte written in a 1 GiB region -> check_changes() returns its event:
/// the cost follows what was written (its page), not the region's size.
fn big_region(rows: &mut Vec<[String; 4]>, backend: Backend) {
    let len = 1usize << 30;
    let buf = map(len);
    let w = Watcher::new(Options { backend, ..Options::default() }).unwrap();
    // SAFETY: buf stays mapped until after close.
    unsafe { w.watch(buf, len, "big", None) }.unwrap();
    let mut times = Vec::new();
    for i in 0..50usize {
        let off = (i * 7919 * page_size() + i) % len;
        let start = Instant::now();
        // SAFETY: inside the mapping.
        unsafe { std::ptr::write_volatile(buf.add(off), (i % 250) as u8 + 1) };
        let events = w.check_changes().unwrap();
        times.push(start.elapsed().as_secs_f64() * 1e3);
        assert_eq!(events.len(), 1);
    }
    times.sort_by(f64::total_cmp);
    let p = |q: usize| times[(times.len() - 1) * q / 100];
    rows.push([
        format!("one byte written in a 1 GiB region -> event ({backend}, check_changes)"),
        format!("p50 {:.3} ms, p99 {:.3} ms", p(50), p(99)),
        format!("p50 {:.3} ms", p(50)),
        "<= 1 ms".into(),
    ]);
    w.close();
    // SAFETY: the mapping made above, no longer watched.
    unsafe { libc::munmap(buf as *mut libc::c_void, len) };
}

/// 500 calls of check_changes on `w`, which watches the first 64 bytes of
/// `small`, each after a one-byte write (exactly one event each), 2 ms
/// apart: each call's time in milliseconds, in call order.
fn small_checks(w: &Watcher, small: *mut u8) -> Vec<f64> {
    let mut times = Vec::with_capacity(500);
    for i in 0..500usize {
        // SAFETY: inside the mapping, which the caller keeps mapped.
        unsafe { std::ptr::write_volatile(small.add(i % 64), (i % 250) as u8 + 1) };
        let start = Instant::now();
        let events = w.check_changes().unwrap();
        times.push(start.elapsed().as_secs_f64() * 1e3);
        assert_eq!(events.len(), 1);
        std::thread::sleep(Duration::from_millis(2));
    }
    times
}

/// check_changes() of a small watcher (defaults, one 64-byte region written
/// before each call) while another watcher polls a 1 GiB region: the
/// worker diffs it in slices and lets waiting calls go first.
fn beside_big_poll(rows: &mut Vec<[String; 4]>) {
    let len = 1usize << 30;
    let big = populated(len);
    let poller = Watcher::new(Options { backend: Backend::Poll, ..Options::default() }).unwrap();
    // SAFETY: big stays mapped until after close.
    unsafe { poller.watch(big, len, "big", None) }.unwrap();
    let small = map(page_size());
    let w = Watcher::new(Options::default()).unwrap();
    // SAFETY: small stays mapped until after close.
    unsafe { w.watch(small, 64, "small", None) }.unwrap();
    let cpu0 = cpu_ns();
    let t0 = Instant::now();
    let mut times = small_checks(&w, small);
    let share = (cpu_ns() - cpu0) as f64 / t0.elapsed().as_nanos() as f64;
    times.sort_by(f64::total_cmp);
    let p = |q: usize| times[(times.len() - 1) * q / 100];
    rows.push([
        format!("check_changes of a small watcher ({}) beside a 1 GiB poll region, 500 calls", w.backend()),
        format!(
            "p50 {:.3} ms, p99 {:.3} ms, max {:.2} ms (process CPU {:.0}% of one core: the poll passes)",
            p(50),
            p(99),
            times[times.len() - 1],
            share * 100.0
        ),
        format!("p99 {:.2} ms", p(99)),
        "p99 <= 10 ms".into(),
    ]);
    own_check_of_big_poll(rows, &poller, big, len, &w, small);
    watch_of_big_poll(rows, big, len, &w, small);
    w.close();
    poller.close();
    // SAFETY: the mappings made above, no longer watched.
    unsafe { libc::munmap(big as *mut libc::c_void, len) };
    // SAFETY: as above.
    unsafe { libc::munmap(small as *mut libc::c_void, page_size()) };
}

/// check_changes() of the small watcher while another thread watches and
/// unwatches a 1 GiB poll region (its first read, hash and snapshot are
/// made outside the engine lock, its snapshot freed outside it).
fn watch_of_big_poll(
    rows: &mut Vec<[String; 4]>,
    big: *mut u8,
    len: usize,
    w: &Watcher,
    small: *mut u8,
) {
    let poller = Watcher::new(Options { backend: Backend::Poll, ..Options::default() }).unwrap();
    let big_addr = big as usize;
    let done = std::sync::atomic::AtomicBool::new(false);
    let (mut times, mut watch_ms) = (Vec::new(), Vec::new());
    std::thread::scope(|scope| {
        let t = scope.spawn(|| {
            let mut ms = Vec::new();
            for _ in 0..3 {
                let t0 = Instant::now();
                // SAFETY: big stays mapped until after close.
                let id = unsafe { poller.watch(big_addr as *mut u8, len, "big2", None) }.unwrap();
                ms.push(t0.elapsed().as_secs_f64() * 1e3);
                poller.unwatch(id).unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            ms
        });
        let mut i = 0usize;
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            i += 1;
            // SAFETY: small is a live page of ours.
            unsafe { small.add(i % 64).write_volatile((i % 250) as u8 + 1) };
            let t0 = Instant::now();
            let events = w.check_changes().unwrap();
            times.push(t0.elapsed().as_secs_f64() * 1e3);
            assert_eq!(events.len(), 1);
            std::thread::sleep(Duration::from_millis(2));
        }
        watch_ms = t.join().unwrap();
    });
    poller.close();
    times.sort_by(f64::total_cmp);
    let p = |q: usize| times[(times.len() - 1) * q / 100];
    rows.push([
        format!("check_changes of a small watcher ({}) while another thread watches and unwatches a 1 GiB poll region, 3 times", w.backend()),
        format!(
            "{} calls: p50 {:.3} ms, p99 {:.3} ms, max {:.2} ms; each watch() {:.0}-{:.0} ms",
            times.len(),
            p(50),
            p(99),
            times[times.len() - 1],
            watch_ms.iter().copied().fold(f64::INFINITY, f64::min),
            watch_ms.iter().copied().fold(0.0, f64::max),
        ),
        format!("max {:.2} ms", times[times.len() - 1]),
        "p99 <= 10 ms".into(),
    ]);
}

/// The poll watcher's own check_changes() on its 1 GiB region (two bytes
/// written 512 MiB apart before each call: one event, two ranges), and the
/// small watcher's check_changes() while another thread makes those calls:
/// check_changes() reads the region in slices too, the lock released
/// between them.
fn own_check_of_big_poll(
    rows: &mut Vec<[String; 4]>,
    poller: &Watcher,
    big: *mut u8,
    len: usize,
    w: &Watcher,
    small: *mut u8,
) {
    let mut times = Vec::new();
    for i in 0..10usize {
        for at in [8, len / 2 + 8] {
            // SAFETY: inside the mapping.
            unsafe { std::ptr::write_volatile(big.add(at), i as u8 + 2) };
        }
        let start = Instant::now();
        let events = poller.check_changes().unwrap();
        times.push(start.elapsed().as_secs_f64() * 1e3);
        // The worker's pass (100 ms interval) may have read a write first.
        let ranges: usize = events.iter().map(|e| e.changed_ranges.len()).sum();
        assert!(!events.is_empty() && events.len() <= 2 && ranges == 2, "{events:?}");
    }
    times.sort_by(f64::total_cmp);
    rows.push([
        "check_changes of a 1 GiB poll region, 2 bytes written 512 MiB apart, 10 calls".into(),
        format!("median {:.1} ms, max {:.1} ms (1 GiB read in 2 MiB slices)", times[5], times[9]),
        format!("{:.2} GB/s", len as f64 / times[5] / 1e6),
        "(reads the region; no target)".into(),
    ]);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let big = big as usize;
    /// Stops the checker thread however the measuring loop ends (a failed
    /// assertion must not leave the scope waiting for it forever).
    struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let (mut times, big_calls) = std::thread::scope(|s| {
        let checker = s.spawn(|| {
            let mut n = 0usize;
            while !stop.load(Ordering::SeqCst) {
                // SAFETY: inside the mapping.
                unsafe { std::ptr::write_volatile((big + len - 8) as *mut u8, n as u8) };
                poller.check_changes().unwrap();
                n += 1;
            }
            n
        });
        let stopper = StopOnDrop(&stop);
        let times = small_checks(w, small);
        drop(stopper);
        (times, checker.join().unwrap())
    });
    times.sort_by(f64::total_cmp);
    let p = |q: usize| times[(times.len() - 1) * q / 100];
    rows.push([
        format!(
            "check_changes of a small watcher ({}) while another thread's check_changes reads a 1 GiB poll region, 500 calls",
            w.backend()
        ),
        format!(
            "p50 {:.3} ms, p99 {:.3} ms, max {:.2} ms ({big_calls} check_changes of the 1 GiB region meanwhile)",
            p(50),
            p(99),
            times[times.len() - 1]
        ),
        format!("p99 {:.2} ms", p(99)),
        "p99 <= 10 ms".into(),
    ]);
}

/// Median milliseconds of `f` over `reps` calls.
fn median_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[reps / 2]
}

/// Time (wall and this thread's CPU) and heap to watch `n` 64-byte regions
/// (one watcher, one buffer, snapshots off), then check_changes() with one
/// region written, and (`dirty`) with one byte written in each of that
/// many pages.
fn watch_time(rows: &mut Vec<[String; 4]>, backend: Backend, n: usize, dirty: &[usize]) {
    let len = (n * 64).div_ceil(page_size()) * page_size();
    let buf = map(len);
    let w = Watcher::new(Options { backend, snapshots: false, ..Options::default() }).unwrap();
    let heap0 = LIVE.load(Ordering::Relaxed);
    let (start, cpu0) = (Instant::now(), thread_cpu_ns());
    for i in 0..n {
        // SAFETY: buf stays mapped until after close.
        unsafe { w.watch(buf.add(i * 64), 64, "r", None) }.unwrap();
    }
    let took = start.elapsed().as_secs_f64();
    let cpu = (thread_cpu_ns() - cpu0) as f64 / 1e9;
    let heap = (LIVE.load(Ordering::Relaxed) - heap0) as usize;
    rows.push([
        format!("watch {n} regions of 64 B ({backend})"),
        format!(
            "{:.3} s wall, {:.3} s CPU ({:.1} us each); heap {:.1} MB ({} B/region), stats.native_bytes {} B/region",
            took,
            cpu,
            cpu * 1e6 / n as f64,
            heap as f64 / 1e6,
            heap / n,
            w.stats().native_bytes / n
        ),
        format!("{:.2}x the 100 000-in-1-s rate (CPU)", cpu * 1e5 / n as f64),
        "100 000 in <= 1 s".into(),
    ]);
    w.check_changes().unwrap();
    let mut round = 0u8;
    let one = median_ms(21, || {
        round = round.wrapping_add(1) | 1;
        // SAFETY: inside the mapping.
        unsafe { std::ptr::write_volatile(buf.add(n / 2 * 64), round) };
        assert_eq!(w.check_changes().unwrap().len(), 1);
    });
    rows.push([
        format!("check_changes, 1 of {n} regions written ({backend})"),
        format!("median {one:.3} ms"),
        format!("{:.2} us per 1000 regions", one * 1e3 / (n as f64 / 1e3)),
        "(poll reads every region; paged backends what was written)".into(),
    ]);
    for &d in dirty {
        let pages = len / page_size();
        let d = d.min(pages);
        let t = median_ms(5, || {
            round = round.wrapping_add(1) | 1;
            for p in 0..d {
                // SAFETY: inside the mapping.
                unsafe { std::ptr::write_volatile(buf.add(p * pages / d * page_size()), round) };
            }
            assert_eq!(w.check_changes().unwrap().len(), d);
        });
        rows.push([
            format!("check_changes, {d} pages written of {n} regions ({backend})"),
            format!("median {t:.2} ms"),
            format!("{:.1} us per dirty page", t * 1e3 / d as f64),
            "(proportional to dirty pages)".into(),
        ]);
    }
    w.close();
    // SAFETY: the mapping made above, no longer watched.
    unsafe { libc::munmap(buf as *mut libc::c_void, len) };
}

/// Writer thread CPU per pass over `pages` pages (one byte a page) written
/// nonstop for 3 s, watched by `backend` (one region over them all) vs
/// unwatched, and the events the watcher saw.
fn hot_pages(rows: &mut Vec<[String; 4]>, backend: Backend, pages: usize) {
    let ps = page_size();
    let buf = populated(pages * ps);
    let mut passes = 0usize;
    // Writes every page once per pass until `for_at_least` is over (whole
    // passes); the writer thread's CPU per pass.
    let mut run = |for_at_least: Duration| {
        let (start, cpu0, passes0) = (Instant::now(), thread_cpu_ns(), passes);
        while start.elapsed() < for_at_least {
            for p in 0..pages {
                // SAFETY: inside the mapping.
                unsafe { std::ptr::write_volatile(buf.add(p * ps + passes % 64), passes as u8) };
            }
            passes += 1;
        }
        (thread_cpu_ns() - cpu0) as f64 / (passes - passes0) as f64
    };
    run(Duration::from_secs(1));
    let base = run(Duration::from_secs(3));
    let w = Watcher::new(Options { backend, ..Options::default() }).unwrap();
    // SAFETY: buf stays mapped until after close.
    unsafe { w.watch(buf, pages * ps, "hot", None) }.unwrap();
    let events = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&events);
    w.set_callback(Some(Arc::new(move |_e: &ChangeEvent| {
        count.fetch_add(1, Ordering::Relaxed);
    })))
    .unwrap();
    // Warm-up: protect until (nearly) no page is protected any more (the
    // pages went hot), at most 20 s; writewatch (which re-protects every
    // scan) 4 s. Then 1 s more.
    let start = Instant::now();
    if backend == Backend::Protect {
        while start.elapsed() < Duration::from_secs(20) && w.stats().protected_pages > pages / 100 {
            run(Duration::from_millis(100));
        }
    } else {
        run(Duration::from_secs(4));
    }
    let warm = start.elapsed();
    run(Duration::from_secs(1));
    let faults0 = w.stats().faults;
    let watched = run(Duration::from_secs(3));
    let stats = w.stats();
    let faults = stats.faults - faults0;
    rows.push([
        format!("writer CPU, {pages} pages written nonstop ({backend})"),
        format!(
            "{:.1} us/pass vs {:.1} us unwatched, after a warm-up of {:.1} s + 1 s; {} events in all, {} faults in the last 3 s, {} pages protected at the end; backend_reason: {}",
            watched / 1e3,
            base / 1e3,
            warm.as_secs_f64(),
            events.load(Ordering::Relaxed),
            faults,
            stats.protected_pages,
            if stats.backend_reason.is_empty() { "-" } else { &stats.backend_reason }
        ),
        format!("{:.2}x", watched / base),
        "<= 1.2x at 10 000 pages".into(),
    ]);
    w.set_callback(None).unwrap();
    w.close();
    // SAFETY: the mapping made above, no longer watched.
    unsafe { libc::munmap(buf as *mut libc::c_void, pages * ps) };
}

/// Heap while a callback slower than the writes holds its queue: 10 000
/// regions written over and over for 2 s, the callback taking 5 ms each.
/// The queue is capped (QUEUE_CAP events or one per region, merged past
/// that), so the heap stays bounded.
fn queue_memory(rows: &mut Vec<[String; 4]>) {
    let n = 10_000;
    let buf = map(n * 64);
    let w = Watcher::new(Options::default()).unwrap();
    for i in 0..n {
        // SAFETY: buf stays mapped until after close.
        unsafe { w.watch(buf.add(i * 64), 64, "q", None) }.unwrap();
    }
    let delivered = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&delivered);
    w.set_callback(Some(Arc::new(move |_e: &ChangeEvent| {
        count.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(5));
    })))
    .unwrap();
    let heap0 = LIVE.load(Ordering::Relaxed);
    let (mut peak, mut writes) = (0isize, 0usize);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        for i in 0..n {
            // SAFETY: inside the mapping.
            unsafe { std::ptr::write_volatile(buf.add(i * 64), writes as u8) };
        }
        writes += n;
        peak = peak.max(LIVE.load(Ordering::Relaxed) - heap0);
        std::thread::sleep(Duration::from_millis(1));
    }
    let stats = w.stats();
    rows.push([
        format!("queue under a slow callback (5 ms/event), {n} regions written nonstop for 2 s"),
        format!(
            "peak heap growth {:.2} MB; {} events delivered, {} merged (coalesced_events) for {} writes",
            peak as f64 / 1e6,
            delivered.load(Ordering::Relaxed),
            stats.coalesced_events,
            writes
        ),
        format!("{:.0} B per region", peak as f64 / n as f64),
        format!("bounded: <= max({}, regions) events queued", memwatch_core::QUEUE_CAP),
    ]);
    w.set_callback(None).unwrap();
    w.close();
    // SAFETY: the mapping made above, no longer watched.
    unsafe { libc::munmap(buf as *mut libc::c_void, n * 64) };
}

fn cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn idle_cpu(rows: &mut Vec<[String; 4]>, pages: usize, target: &str) {
    let buf = populated(pages * page_size());
    let w = Watcher::new(Options { backend: Backend::WriteWatch, ..Options::default() }).unwrap();
    // SAFETY: buf stays mapped.
    unsafe { w.watch(buf, pages * page_size(), "idle", None) }.unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let (c0, t0) = (cpu_ns(), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let share = (cpu_ns() - c0) as f64 / t0.elapsed().as_nanos() as f64;
    rows.push([
        format!(
            "idle CPU, {pages} pages ({} MiB) watched, no writes (writewatch)",
            (pages * page_size()) >> 20
        ),
        format!("{:.3}% of one core (whole process)", share * 100.0),
        format!("{:.3}%", share * 100.0),
        target.into(),
    ]);
    w.close();
    // SAFETY: unwatched (closed) and not used any more.
    unsafe { libc::munmap(buf as *mut libc::c_void, pages * page_size()) };
}

/// Idle CPU of the poll backend with `n` 64-byte regions (one buffer,
/// default 100 ms interval, nothing written): the passes' cost. `one`: the
/// same bytes watched as one region instead (the reference: what the bytes
/// cost without a per-region overhead).
fn poll_idle(rows: &mut Vec<[String; 4]>, n: usize, one: bool) {
    let len = (n * 64).div_ceil(page_size()) * page_size();
    let buf = populated(len);
    let w = Watcher::new(Options { backend: Backend::Poll, ..Options::default() }).unwrap();
    if one {
        // SAFETY: buf stays mapped until after close.
        unsafe { w.watch(buf, n * 64, "idle", None) }.unwrap();
    }
    for i in (0..n).filter(|_| !one) {
        // SAFETY: buf stays mapped until after close.
        unsafe { w.watch(buf.add(i * 64), 64, "idle", None) }.unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let (c0, t0) = (cpu_ns(), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let share = (cpu_ns() - c0) as f64 / t0.elapsed().as_nanos() as f64;
    let what = if one {
        format!("one poll region of {} KiB (the bytes of {n} regions of 64 B)", (n * 64) >> 10)
    } else {
        format!("{n} poll regions of 64 B ({} KiB)", len >> 10)
    };
    rows.push([
        format!("idle CPU, {what}, no writes"),
        format!("{:.2}% of one core (whole process)", share * 100.0),
        format!("{:.3}% per MiB watched", share * 100.0 / ((n * 64) as f64 / (1 << 20) as f64)),
        "proportional to bytes watched".into(),
    ]);
    w.close();
    // SAFETY: unwatched (closed) and not used any more.
    unsafe { libc::munmap(buf as *mut libc::c_void, len) };
}

/// memwatch's own mappings (fault ring, page table, handler state), found
/// through the public API: the pages of anonymous writable mappings that the
/// engine refuses to watch because they are its own memory (bisecting, as
/// the kernel may merge them with neighbouring mappings).
fn engine_mappings() -> Vec<(usize, usize)> {
    let probe =
        Watcher::new(Options { backend: Backend::Poll, snapshots: false, ..Options::default() })
            .unwrap();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let mut own = Vec::new();
    for line in maps.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 5 || !f[1].starts_with("rw") {
            continue; // file-backed or named ([heap], [stack]) or not writable
        }
        let (start, end) = f[0].split_once('-').unwrap();
        let (start, end) =
            (usize::from_str_radix(start, 16).unwrap(), usize::from_str_radix(end, 16).unwrap());
        own_pages(&probe, start, end, &mut own);
    }
    probe.close();
    own
}

fn own_pages(probe: &Watcher, start: usize, end: usize, own: &mut Vec<(usize, usize)>) {
    // SAFETY: part of a readable, writable mapping; poll only reads it.
    match unsafe { probe.watch(start as *const u8, end - start, "probe", None) } {
        Ok(id) => {
            probe.unwatch(id).unwrap();
        }
        Err(err) if err.to_string().contains("memwatch's own memory") => {
            let pages = (end - start) / page_size();
            if pages == 1 {
                match own.last_mut() {
                    Some((_, e)) if *e == start => *e = end,
                    _ => own.push((start, end)),
                }
            } else {
                let mid = start + pages / 2 * page_size();
                own_pages(probe, start, mid, own);
                own_pages(probe, mid, end, own);
            }
        }
        Err(_) => {}
    }
}

fn native_bytes(rows: &mut Vec<[String; 4]>) {
    let n = 100_000;
    let len = n * 1024;
    let buf = map(len);
    let w =
        Watcher::new(Options { backend: Backend::Protect, snapshots: false, ..Options::default() })
            .unwrap();
    let names: Vec<String> = (0..n).map(|i| format!("r{i}")).collect();
    let before = LIVE.load(Ordering::Relaxed);
    for (i, name) in names.iter().enumerate() {
        // SAFETY: buf stays mapped.
        unsafe { w.watch(buf.add(i * 1024), 1024, name, None) }.unwrap();
    }
    let heap = (LIVE.load(Ordering::Relaxed) - before) as usize;
    let shared = w.engine_bytes();
    let resident: usize = engine_mappings().iter().map(|&(s, e)| resident_bytes(s, e - s)).sum();
    let stats = w.stats();
    rows.push([
        "native bytes, 100 000 x 1 KiB regions, snapshots off".into(),
        format!(
            "{:.2} MB in all: heap {:.2} MB ({} B/region) + ring and page table {:.2} MB ({:.2} MB resident); stats.native_bytes {} B/region",
            (heap + shared) as f64 / 1e6, heap as f64 / 1e6, heap / n, shared as f64 / 1e6, resident as f64 / 1e6, stats.native_bytes / n
        ),
        format!("{} B/region ({} B/region counting resident pages of the mappings)", (heap + shared) / n, (heap + resident) / n),
        "<= 8 MB in all, <= 96 B/region".into(),
    ]);
    w.close();
}

/// Bytes of [addr, addr+len) in memory now (mincore).
fn resident_bytes(addr: usize, len: usize) -> usize {
    let ps = page_size();
    let mut vec = vec![0u8; len.div_ceil(ps)];
    // SAFETY: addr is page-aligned (a mapping's start) and vec has one byte per page.
    let rc = unsafe { libc::mincore(addr as *mut libc::c_void, len, vec.as_mut_ptr()) };
    assert_eq!(rc, 0, "mincore");
    vec.iter().filter(|b| **b & 1 != 0).count() * ps
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` probes; nothing to list
    }
    // Row filters: any argument that is not a flag (cargo passes --bench).
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let run = |name: &str| only.is_empty() || only.iter().any(|o| name.contains(o.as_str()));
    let mut rows = Vec::new();
    if run("first") {
        first_write(&mut rows);
    }
    if run("steady") {
        steady_state(&mut rows);
    }
    if run("latency") {
        latency(&mut rows, Backend::Protect, 0, false, "");
        latency(&mut rows, Backend::WriteWatch, 0, false, "p99 <= 1 ms");
    }
    if run("latency-10k") {
        latency(&mut rows, Backend::WriteWatch, 10_000 * page_size(), false, "p99 <= 1 ms");
    }
    if run("idle") {
        idle_cpu(&mut rows, 10_000, "<= 0.2% of one core");
    }
    if run("latency-1g") {
        latency(&mut rows, Backend::WriteWatch, 1 << 30, false, "p99 <= 5 ms");
        latency(&mut rows, Backend::WriteWatch, 1 << 30, true, "(100x the 1 GiB scan; no target)");
    }
    if run("silence") {
        silence_latency(&mut rows, 10_000);
        silence_latency(&mut rows, (1 << 30) / page_size());
    }
    if run("idle-1g") {
        idle_cpu(&mut rows, (1 << 30) / page_size(), "<= 1% of one core");
    }
    // 4 GiB populated while these run (unmapped after each row).
    if run("latency-4g") {
        latency(&mut rows, Backend::WriteWatch, 4 << 30, false, "p99 <= 5 ms");
    }
    if run("idle-4g") {
        idle_cpu(&mut rows, (4 << 30) / page_size(), "<= 1% of one core");
    }
    if run("native") {
        native_bytes(&mut rows);
    }
    if run("watchtime") {
        for backend in [Backend::Poll, Backend::WriteWatch, Backend::Protect] {
            for n in [1_000, 10_000] {
                watch_time(&mut rows, backend, n, &[]);
            }
            let dirty: &[usize] = if backend == Backend::Poll { &[] } else { &[10, 100, 1000] };
            watch_time(&mut rows, backend, 100_000, dirty);
        }
    }
    if run("million") {
        watch_time(&mut rows, Backend::Poll, 1_000_000, &[]);
        watch_time(&mut rows, Backend::WriteWatch, 1_000_000, &[1000]);
    }
    if run("pollidle") {
        for n in [1_000, 10_000, 100_000] {
            poll_idle(&mut rows, n, false);
        }
        poll_idle(&mut rows, 100_000, true);
    }
    for backend in [Backend::Protect, Backend::WriteWatch] {
        if run("hot") || run(&format!("hot-{}", backend.name())) {
            for pages in [1_000, 10_000, 65_536] {
                hot_pages(&mut rows, backend, pages);
            }
        }
    }
    if run("queue") {
        queue_memory(&mut rows);
    }
    if run("big") {
        big_region(&mut rows, Backend::WriteWatch);
        big_region(&mut rows, Backend::Protect);
    }
    if run("beside") {
        beside_big_poll(&mut rows);
    }
    if run("locate") {
        locate(&mut rows);
    }
    println!("| benchmark | measured | ratio | target |");
    println!("|---|---|---|---|");
    for r in rows {
        println!("| {} | {} | {} | {} |", r[0], r[1], r[2], r[3]);
    }
}
