//! Write-loop overhead of recording: a thread writes over 1 MiB of watched
//! memory (256 regions of 4 KiB, default backend) for a while, with a no-op
//! callback, with or without a recorder attached.
//!
//! `record_overhead URL|none SECONDS` prints one line: `passes=..
//! cpu_ns_per_pass=.. wall_ns_per_pass=.. events=.. written=.. dropped=..`.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use memwatch_core::{ChangeEvent, Options, Watcher};

const SIZE: usize = 1 << 20;
const REGION: usize = 4096;

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).expect("usage: record_overhead URL|none SECONDS").clone();
    let seconds: f64 = args.get(2).map(|s| s.parse().expect("SECONDS")).unwrap_or(3.0);
    let layout = Layout::from_size_align(SIZE, 4096).unwrap();
    // SAFETY: layout has a non-zero size.
    let buf = unsafe { alloc_zeroed(layout) };
    assert!(!buf.is_null());
    let w = Watcher::new(Options::default()).unwrap();
    for r in 0..SIZE / REGION {
        // SAFETY: the buffer outlives the watcher (closed before dealloc).
        unsafe { w.watch(buf.add(r * REGION), REGION, &format!("r{r}"), None) }.unwrap();
    }
    let events = Arc::new(AtomicU64::new(0));
    let e2 = Arc::clone(&events);
    w.set_callback(Some(Arc::new(move |_: &ChangeEvent| {
        e2.fetch_add(1, Ordering::Relaxed);
    })))
    .unwrap();
    let rec = (url != "none").then(|| memwatch_record::record_to(&w, &url).unwrap());
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let (cpu0, wall0) = (thread_cpu_ns(), Instant::now());
    let mut passes = 0u64;
    let mut v = 0u8;
    while Instant::now() < deadline {
        v = v.wrapping_add(1);
        for off in (0..SIZE).step_by(64) {
            // SAFETY: off < SIZE; volatile so that every write happens.
            unsafe { std::ptr::write_volatile(buf.add(off), v) };
        }
        passes += 1;
    }
    let cpu = thread_cpu_ns() - cpu0;
    let wall = wall0.elapsed().as_nanos() as u64;
    w.check_changes().unwrap();
    let (written, dropped) = match &rec {
        Some(r) => {
            r.flush(Duration::from_secs(60));
            let s = r.stats();
            (s.written, s.dropped)
        }
        None => (0, 0),
    };
    w.close();
    // SAFETY: the watcher is closed; buf came from alloc_zeroed(layout).
    unsafe { dealloc(buf, layout) };
    println!(
        "passes={passes} cpu_ns_per_pass={} wall_ns_per_pass={} events={} written={written} dropped={dropped}",
        cpu / passes.max(1),
        wall / passes.max(1),
        events.load(Ordering::Relaxed)
    );
}
