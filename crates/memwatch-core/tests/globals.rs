//! Watching the program's own globals (its whole .data + .bss) with protect:
//! memwatch's handler must never write into those pages (a statically linked
//! memwatch keeps its statics there). Its own test binary: it protects the
//! test harness's statics too.

// `addr_of!` on a `static mut` needs `unsafe` before Rust 1.82 (our MSRV is 1.75).
#![allow(unused_unsafe)]

use memwatch_core::{page_size, Backend, Options, Watcher};

static mut COUNTER: [u8; 64] = [0; 64];

/// The executable's writable data mapping(s) containing COUNTER: (start, end).
fn data_segment() -> (usize, usize) {
    let exe = std::fs::read_link("/proc/self/exe").unwrap();
    let exe = exe.to_string_lossy().to_string();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    // SAFETY: only the address of the static is taken.
    let target = unsafe { std::ptr::addr_of!(COUNTER) } as usize;
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for line in maps.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (s, e) = f[0].split_once('-').unwrap();
        let (s, e) = (usize::from_str_radix(s, 16).unwrap(), usize::from_str_radix(e, 16).unwrap());
        let writable = f[1].starts_with("rw");
        let is_exe = f.get(5).is_some_and(|p| *p == exe);
        // The exe's rw mapping, plus the anonymous .bss right after it.
        if writable && (is_exe || ranges.last().is_some_and(|&(_, le)| le == s && f.len() < 6)) {
            ranges.push((s, e));
        }
    }
    let (mut start, mut end) = (usize::MAX, 0);
    for (s, e) in ranges {
        start = start.min(s);
        end = end.max(e);
    }
    assert!(start <= target && target < end, "COUNTER inside the data segment");
    (start, end)
}

#[test]
fn protect_watching_all_globals_keeps_working() {
    let (start, end) = data_segment();
    let w = Watcher::new(Options { backend: Backend::Protect, ..Options::default() }).unwrap();
    // SAFETY: the data segment lives as long as the process; unwatched at close.
    let id = unsafe { w.watch(start as *const u8, end - start, "globals", None) };
    let id = id.unwrap();
    // SAFETY: single-threaded access to our own static.
    let counter = unsafe { std::ptr::addr_of_mut!(COUNTER) } as *mut u8;
    for i in 0..100u8 {
        // SAFETY: inside COUNTER.
        unsafe { std::ptr::write_volatile(counter.add((i % 64) as usize), i + 1) };
        // Faults in between, on many pages, from the harness and allocator.
        let _v: Vec<u8> = vec![i; 100];
    }
    let events = w.check_changes().unwrap();
    assert!(events.iter().all(|e| e.region_id == id));
    assert!(w.stats().faults > 0);
    let offset = counter as usize - start;
    let last = events.iter().rev().find(|e| {
        e.changed_ranges.iter().any(|r| r.offset <= offset + 63 && offset < r.offset + r.len)
    });
    assert!(last.is_some(), "the writes to COUNTER were reported");
    w.close();
    // SAFETY: reading our own static after the watcher is closed.
    assert_eq!(unsafe { std::ptr::read_volatile(counter.add(99 % 64)) }, 100);
    let _ = page_size();
}
