//! Load generator: one watched 8-byte counter, written and checked in a loop,
//! every change recorded. Used by the PostgreSQL tests (several of these run
//! at once) and by the benchmark.
//!
//! `record_load URL [--events N] [--until PATH] [--queue N] [--sleep-us N] [--regions K]`
//! writes N events (or until the file PATH exists), K counters (default 1,
//! each its own region) per write-and-check round, flushes, and prints one
//! line: `produced=.. written=.. dropped=.. abandoned=.. reconnects=..
//! recording_id=.. seconds=..`.

use std::time::{Duration, Instant};

use memwatch_core::{Backend, Options, Watcher};
use memwatch_record::{record_to_with, RecordOptions};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).expect("usage: record_load URL [options]").clone();
    let mut events: Option<u64> = None;
    let mut until: Option<String> = None;
    let mut options = RecordOptions::default();
    let mut sleep_us = 0u64;
    let mut regions = 1usize;
    let mut i = 2;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--events" => events = Some(v.parse().expect("--events N")),
            "--until" => until = Some(v),
            "--queue" => options.queue_capacity = v.parse().expect("--queue N"),
            "--sleep-us" => sleep_us = v.parse().expect("--sleep-us N"),
            "--regions" => regions = v.parse().expect("--regions K"),
            other => panic!("unknown option {other}"),
        }
        i += 2;
    }
    let w = Watcher::new(Options { backend: Backend::Poll, ..Options::default() }).unwrap();
    assert!(regions >= 1, "--regions must be >= 1");
    // One 64-byte slot per counter, so that each is its own region.
    let counters = Box::into_raw(vec![[0u64; 8]; regions].into_boxed_slice());
    // SAFETY: counters is a live allocation of `regions` slots.
    let slot = |i: usize| unsafe { (counters as *mut [u64; 8]).add(i) as *mut u64 };
    for i in 0..regions {
        let name = if i == 0 { "counter".to_string() } else { format!("counter{i}") };
        // SAFETY: the allocation outlives the watcher (closed before it is freed).
        unsafe { w.watch(slot(i) as *const u8, 8, &name, Some("record_load")) }.unwrap();
    }
    let rec = record_to_with(&w, &url, options).unwrap_or_else(|e| {
        eprintln!("record_load: {e}");
        std::process::exit(2)
    });
    let start = Instant::now();
    let mut produced = 0u64;
    let mut rounds = 0u64;
    loop {
        rounds += 1;
        if let Some(n) = events {
            if produced >= n {
                break;
            }
        }
        if let Some(p) = &until {
            if rounds & 63 == 0 && std::path::Path::new(p).exists() {
                break;
            }
        }
        for i in 0..regions {
            let c = slot(i);
            // SAFETY: c points into the live allocation only this loop
            // touches; volatile so that every write happens.
            unsafe { std::ptr::write_volatile(c, std::ptr::read_volatile(c) + 1) };
        }
        produced += w.check_changes().unwrap().len() as u64;
        if sleep_us > 0 {
            std::thread::sleep(Duration::from_micros(sleep_us));
        }
    }
    let write_seconds = start.elapsed().as_secs_f64();
    w.close();
    // SAFETY: the watcher is closed; nothing refers to the counters any more.
    drop(unsafe { Box::from_raw(counters) });
    rec.flush(Duration::from_secs(60));
    let seconds = start.elapsed().as_secs_f64();
    rec.close();
    let s = rec.stats();
    println!(
        "produced={produced} written={} dropped={} abandoned={} reconnects={} recording_id={} \
         seconds={seconds:.3} write_seconds={write_seconds:.3}",
        s.written, s.dropped, s.abandoned, s.reconnects, s.recording_id
    );
}
