//! Engine behaviour beyond the shared scenarios: threads, callbacks, errors,
//! fork, foreign faults.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{wait_child, Pages};
use memwatch_core::{page_size, Backend, ByteRange, ChangeEvent, Error, Options, Watcher};

fn watcher(backend: Backend) -> Watcher {
    Watcher::new(Options { backend, ..Options::default() }).unwrap()
}

#[test]
fn eight_threads_every_region_final_bytes_no_duplicates() {
    for backend in [Backend::Protect, Backend::Poll] {
        let mem = Arc::new(Pages::new(2));
        let w = watcher(backend);
        let stride = page_size() / 4; // 4 regions per page, 2 pages
        let ids: Vec<u32> = (0..8)
            // SAFETY: mem outlives the watcher's regions (closed below).
            .map(|t| {
                unsafe { w.watch(mem.ptr.add(t * stride), 64, &format!("t{t}"), None) }.unwrap()
            })
            .collect();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let mem = Arc::clone(&mem);
                std::thread::spawn(move || {
                    for i in 0..100_000usize {
                        mem.write(t * stride + i % 64, (i % 251) as u8 + 1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let events = w.check_changes().unwrap();
        for (t, id) in ids.iter().enumerate() {
            let mine: Vec<&ChangeEvent> = events.iter().filter(|e| e.region_id == *id).collect();
            assert!(!mine.is_empty(), "{backend}: region t{t} missed");
            // A chain: each event starts where the previous one ended, so none
            // is missed or reported twice.
            assert_eq!(mine[0].old_value.as_deref(), Some(&[0u8; 64][..]), "{backend}");
            for pair in mine.windows(2) {
                assert_eq!(
                    pair[0].new_value, pair[1].old_value,
                    "{backend}: chain broken for t{t}"
                );
                assert!(pair[0].seq < pair[1].seq);
            }
            let last = mine.last().unwrap();
            assert_eq!(
                last.new_value.as_deref(),
                Some(&mem.read(t * stride, 64)[..]),
                "{backend}: final bytes"
            );
        }
        assert!(
            w.check_changes().unwrap().is_empty(),
            "{backend}: nothing left after the final check"
        );
        w.close();
    }
}

#[test]
fn protect_reports_writer_thread_and_ip() {
    let mem = Pages::new(1);
    let w = watcher(Backend::Protect);
    // SAFETY: mem outlives the watch.
    unsafe { w.watch(mem.ptr, 8, "x", None) }.unwrap();
    let tid = std::thread::scope(|s| {
        s.spawn(|| {
            mem.write(0, 7);
            // SAFETY: gettid has no preconditions.
            unsafe { libc::syscall(libc::SYS_gettid) as u32 }
        })
        .join()
        .unwrap()
    });
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].where_.thread_id, Some(tid));
    assert!(events[0].where_.fault_ip.unwrap_or(0) != 0);
    assert!(w.stats().faults >= 1);
    assert_eq!(w.stats().backend, Some(Backend::Protect));
}

#[test]
fn callback_then_check_changes_exactly_once() {
    let mem = Pages::new(1);
    let w = watcher(Backend::Protect);
    // SAFETY: mem outlives the watch.
    let id = unsafe { w.watch(mem.ptr, 16, "cb", Some("meta")) }.unwrap();
    let seen: Arc<Mutex<Vec<ChangeEvent>>> = Arc::default();
    let sink = Arc::clone(&seen);
    w.set_callback(Some(Arc::new(move |e: &ChangeEvent| sink.lock().unwrap().push(e.clone()))))
        .unwrap();
    mem.write(1, 0xab);
    assert!(w.check_changes().unwrap().is_empty(), "with a callback, events go to it");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "delivered before check_changes returned");
        assert_eq!(seen[0].region_id, id);
        assert_eq!(seen[0].new_value.as_ref().unwrap()[1], 0xab);
        assert_eq!(seen[0].metadata.as_deref(), Some("meta"));
    }
    w.set_callback(None).unwrap();
    mem.write(2, 0xcd);
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].changed_ranges[0].offset, 2);
    assert_eq!(seen.lock().unwrap().len(), 1, "not delivered twice");
    assert!(w.stats().latency_p99_ns > 0);
}

#[test]
fn callback_delivers_without_check_changes() {
    let mem = Pages::new(1);
    let w = watcher(Backend::Protect);
    // SAFETY: mem outlives the watch.
    unsafe { w.watch(mem.ptr, 16, "async", None) }.unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = Mutex::new(tx);
    w.set_callback(Some(Arc::new(move |e: &ChangeEvent| {
        tx.lock().unwrap().send(e.new_value.clone()).unwrap();
    })))
    .unwrap();
    mem.write(0, 9);
    // The worker delivers after the writable window on its own.
    let got = rx.recv_timeout(Duration::from_secs(5)).expect("delivered by the worker");
    assert_eq!(got.unwrap()[0], 9);
}

#[test]
fn panicking_callback_is_counted_and_watcher_keeps_working() {
    let mem = Pages::new(1);
    let w = watcher(Backend::Poll);
    // SAFETY: mem outlives the watch.
    unsafe { w.watch(mem.ptr, 4, "p", None) }.unwrap();
    let calls = Arc::new(Mutex::new(0));
    let c = Arc::clone(&calls);
    w.set_callback(Some(Arc::new(move |_e: &ChangeEvent| {
        *c.lock().unwrap() += 1;
        panic!("callback failure (expected by the test)");
    })))
    .unwrap();
    mem.write(0, 1);
    w.check_changes().unwrap();
    mem.write(0, 2);
    w.check_changes().unwrap();
    assert_eq!(*calls.lock().unwrap(), 2);
    assert_eq!(w.stats().callback_errors, 2);
}

#[test]
fn close_from_inside_the_callback_does_not_deadlock() {
    let mem = Pages::new(1);
    let w = Arc::new(watcher(Backend::Protect));
    // SAFETY: mem outlives the watch.
    unsafe { w.watch(mem.ptr, 4, "c", None) }.unwrap();
    let w2 = Arc::clone(&w);
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = Mutex::new(tx);
    w.set_callback(Some(Arc::new(move |_e: &ChangeEvent| {
        w2.close();
        tx.lock().unwrap().send(()).unwrap();
    })))
    .unwrap();
    mem.write(0, 1);
    rx.recv_timeout(Duration::from_secs(5)).expect("callback ran and close returned");
    assert!(w.is_closed());
    assert_eq!(w.check_changes(), Err(Error::Closed));
    assert_eq!(w.unwatch(1), Err(Error::Closed));
    mem.write(0, 2); // the page is writable again: no fault loop, no crash
}

#[test]
fn poll_watches_read_only_memory_written_through_another_mapping() {
    // A memglass observer maps another process's segment PROT_READ: poll
    // must watch it. Two mappings of one memfd stand in for the two processes.
    // SAFETY: a fresh memfd, two shared mappings of its first page, unmapped below.
    unsafe {
        let fd = libc::memfd_create(c"ro-poll".as_ptr(), 0);
        assert!(fd >= 0);
        assert_eq!(libc::ftruncate(fd, page_size() as libc::off_t), 0);
        let map = |prot| {
            let p = libc::mmap(std::ptr::null_mut(), page_size(), prot, libc::MAP_SHARED, fd, 0);
            assert_ne!(p, libc::MAP_FAILED);
            p as *mut u8
        };
        let rw = map(libc::PROT_READ | libc::PROT_WRITE);
        let ro = map(libc::PROT_READ);
        let w = watcher(Backend::Poll);
        assert!(matches!(w.watch(ro, 16, "ro", None), Err(Error::ReadOnly(_))));
        w.watch_read_only(ro, 16, "ro", None).unwrap();
        let p = watcher(Backend::Protect);
        assert!(matches!(p.watch_read_only(ro, 16, "x", None), Err(Error::InvalidArgument(_))));
        p.close();
        *rw.add(3) = 7;
        let ev = w.check_changes().unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].changed_ranges, vec![ByteRange { offset: 3, len: 1 }]);
        assert_eq!(ev[0].new_value.as_ref().unwrap()[3], 7);
        assert_eq!(ev[0].old_value.as_ref().unwrap()[3], 0);
        w.close();
        libc::munmap(rw as *mut libc::c_void, page_size());
        libc::munmap(ro as *mut libc::c_void, page_size());
        libc::close(fd);
    }
}

#[test]
fn bad_input_gives_clear_errors() {
    let mem = Pages::new(2);
    let w = watcher(Backend::Protect);
    // SAFETY (all calls below): invalid ranges are rejected before any access;
    // valid ones outlive the watcher.
    unsafe {
        assert!(matches!(w.watch(std::ptr::null(), 8, "n", None), Err(Error::InvalidArgument(_))));
        assert!(matches!(w.watch(mem.ptr, 0, "z", None), Err(Error::InvalidArgument(_))));
        // The first pages of the address space are never mapped (mmap_min_addr).
        let addr = page_size() as *const u8;
        assert!(matches!(w.watch(addr, 8, "u", None), Err(Error::Unmapped(_))));
        let ro = Pages::new(1);
        libc::mprotect(ro.ptr as *mut libc::c_void, page_size(), libc::PROT_READ);
        let err = w.watch(ro.ptr, 8, "ro", None).unwrap_err();
        assert!(matches!(err, Error::ReadOnly(_)), "{err}");
        assert!(err.to_string().contains("not writable"));
        libc::mprotect(
            ro.ptr as *mut libc::c_void,
            page_size(),
            libc::PROT_READ | libc::PROT_WRITE,
        );
        let a = w.watch(mem.ptr, 100, "a", None).unwrap();
        assert!(matches!(w.watch(mem.ptr.add(50), 100, "b", None), Err(Error::Overlap(_))));
        // Adjacent is fine; another watcher may watch the same bytes.
        w.watch(mem.ptr.add(100), 10, "adjacent", None).unwrap();
        let other = watcher(Backend::Protect);
        let b = other.watch(mem.ptr, 100, "same bytes", None).unwrap();
        mem.write(5, 1);
        assert_eq!(w.check_changes().unwrap().iter().filter(|e| e.region_id == a).count(), 1);
        assert_eq!(other.check_changes().unwrap().iter().filter(|e| e.region_id == b).count(), 1);
        assert_eq!(w.unwatch(b), Ok(false), "not this watcher's region");
        assert_eq!(w.unwatch(999_999), Ok(false));
    }
    assert!(matches!(
        Watcher::new(Options { ring_capacity: 0, ..Options::default() }),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(Backend::from_name("bogus"), Err(Error::InvalidArgument(_))));
}

#[test]
fn unwatch_then_free_then_reuse_the_memory() {
    let mem = Pages::new(1);
    let w = watcher(Backend::Protect);
    // SAFETY: unwatched before the mapping goes away.
    let id = unsafe { w.watch(mem.ptr, 32, "tmp", None) }.unwrap();
    mem.write(0, 1);
    assert!(w.unwatch(id).unwrap());
    assert!(!w.unwatch(id).unwrap());
    mem.write(1, 2); // writable again, no fault, no event
    drop(mem);
    let again = Pages::new(1); // may reuse the same address
    again.write(0, 3);
    // Only the write made while watched can be reported (if the worker saw
    // it before the unwatch); nothing after it.
    let events = w.check_changes().unwrap();
    assert!(events.len() <= 1, "{events:?}");
    if let Some(e) = events.first() {
        assert_eq!(e.new_value.as_deref().map(|v| (v[0], v[1])), Some((1, 0)));
    }
}

#[test]
fn fork_child_writes_watched_buffer_and_exits_0() {
    let mem = Pages::new(1);
    let w = watcher(Backend::Protect);
    // SAFETY: mem outlives the watch.
    unsafe { w.watch(mem.ptr, 8, "f", None) }.unwrap();
    // SAFETY: the child only stores to memory and calls _exit (async-signal-safe).
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        for i in 0..8 {
            mem.write(i, 0x55);
        }
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(0) };
    }
    let status = wait_child(pid, Duration::from_secs(5)).expect("child finished");
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "status {status:#x}");
    assert!(w.check_changes().unwrap().is_empty(), "the child's writes are its own copy");
}

#[test]
fn write_to_unmapped_memory_still_kills_with_sigsegv_quickly() {
    let mem = Pages::new(1);
    let w = watcher(Backend::Protect);
    // SAFETY: mem outlives the watch.
    unsafe { w.watch(mem.ptr, 8, "alive", None) }.unwrap();
    // The first page is never mapped (mmap_min_addr); a freed page could be
    // mapped again by a test running in parallel before the child writes.
    let addr = page_size();
    let start = std::time::Instant::now();
    // SAFETY: the child faults and dies; it never returns into the harness.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: deliberately invalid: this is the crash under test.
        unsafe { std::ptr::write_volatile(addr as *mut u8, 1) };
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(0) };
    }
    let status =
        wait_child(pid, Duration::from_secs(1)).expect("child died within 1 s, no fault loop");
    assert!(libc::WIFSIGNALED(status), "status {status:#x}");
    assert_eq!(libc::WTERMSIG(status), libc::SIGSEGV);
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[test]
fn snapshots_off_reports_new_value_and_whole_range() {
    let mem = Pages::new(1);
    let w =
        Watcher::new(Options { backend: Backend::Protect, snapshots: false, ..Options::default() })
            .unwrap();
    // SAFETY: mem outlives the watch.
    unsafe { w.watch(mem.ptr, 8, "nosnap", None) }.unwrap();
    mem.write(3, 4);
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].old_value, None);
    assert_eq!(events[0].new_value.as_deref(), Some(&[0, 0, 0, 4, 0, 0, 0, 0][..]));
    assert_eq!(events[0].changed_ranges.len(), 1);
    assert_eq!((events[0].changed_ranges[0].offset, events[0].changed_ranges[0].len), (0, 8));
    assert_eq!(w.stats().snapshot_bytes, 0);
}

#[test]
#[inline(never)]
fn protect_region_on_the_stack_falls_back_and_stays_exact() {
    let w = watcher(Backend::Protect);
    let mut local = [0u8; 32];
    let p = local.as_mut_ptr();
    // SAFETY: `local` outlives the watcher's use of it (closed below).
    let id = unsafe { w.watch(p, 32, "local", None) }.unwrap();
    let stats = w.stats();
    assert_eq!(stats.fallback_regions, 1);
    assert!(stats.backend_reason.contains("thread stack"), "{}", stats.backend_reason);
    for i in 0..32 {
        // SAFETY: inside `local`; volatile so the stores happen.
        unsafe { std::ptr::write_volatile(p.add(i), i as u8 + 1) };
    }
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].region_id, id);
    assert_eq!(events[0].new_value.as_deref(), Some(&(1..=32).collect::<Vec<u8>>()[..]));
    w.close();
    std::hint::black_box(&mut local);
}

#[test]
fn overlap_is_found_for_every_backend_and_across_pages() {
    let ps = page_size();
    for backend in [Backend::Protect, Backend::Poll, Backend::WriteWatch] {
        let Ok(w) = Watcher::new(Options { backend, ..Options::default() }) else { continue };
        let mem = Pages::new(6);
        // SAFETY (all calls below): every range lies in mem, which outlives w.
        unsafe {
            // Three pages and a bit, starting mid-page.
            let a = w.watch(mem.ptr.add(100), 3 * ps, "a", None).unwrap();
            let end = 100 + 3 * ps;
            for (offset, len) in [(2 * ps + 10, 10), (0, 6 * ps), (end - 1, 1), (0, 101), (ps, 1)] {
                let err = w.watch(mem.ptr.add(offset), len, "b", None).unwrap_err();
                assert!(matches!(err, Error::Overlap(_)), "{backend}: {offset}+{len}: {err}");
                assert!(err.to_string().contains(&format!("region {a} ")), "{err}");
            }
            // Right before and right after it, on its first and last page.
            let before = w.watch(mem.ptr, 100, "before", None).unwrap();
            let after = w.watch(mem.ptr.add(end), 10, "after", None).unwrap();
            assert!(w.unwatch(a).unwrap());
            let again = w.watch(mem.ptr.add(2 * ps), 10, "inside the old range", None).unwrap();
            assert!(matches!(
                w.watch(mem.ptr.add(2 * ps + 9), 2, "c", None),
                Err(Error::Overlap(_))
            ));
            // Another watcher's regions never conflict.
            let other = Watcher::new(Options { backend, ..Options::default() }).unwrap();
            other.watch(mem.ptr, 6 * ps, "all", None).unwrap();
            mem.write(2 * ps + 3, 7);
            let ids: Vec<u32> = w.check_changes().unwrap().iter().map(|e| e.region_id).collect();
            assert_eq!(ids, vec![again], "{backend}");
            assert_eq!(w.stats().regions, 3);
            for id in [before, after, again] {
                assert!(w.unwatch(id).unwrap());
            }
            assert_eq!(w.stats().regions, 0);
            other.close();
        }
        w.close();
    }
}

#[test]
fn frequent_writes_each_followed_by_check_changes_keep_their_writer() {
    // A page re-protected early by check_changes and written again soon after
    // is not "written nonstop": it keeps faulting, so every event names the
    // writing thread (a hot page would be polled, writer unknown).
    let mem = Pages::new(1);
    let w = watcher(Backend::Protect);
    // SAFETY: mem outlives the watcher.
    let id = unsafe { w.watch(mem.ptr, 16, "often", None) }.unwrap();
    for i in 0..30u8 {
        mem.write(0, i + 1);
        let events = w.check_changes().unwrap();
        assert_eq!(events.len(), 1, "write {i}: {events:?}");
        assert_eq!(events[0].region_id, id);
        assert!(
            events[0].where_.thread_id.is_some(),
            "write {i}: writer unknown, the page went hot"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Neighbouring poll regions are read with one system call per
/// run of them; each still gets its exact event, and a run over memory
/// that was unmapped falls back to one read per region, so only the region
/// that is gone is dropped.
#[test]
fn poll_reads_neighbouring_regions_together_and_stays_exact() {
    let ps = page_size();
    let buf = Pages::new(3);
    let w = Watcher::new(Options { backend: Backend::Poll, ..Options::default() }).unwrap();
    let mut ids = Vec::new();
    for i in 0..200 {
        // SAFETY: buf outlives the watcher (declared before it).
        ids.push(unsafe { w.watch(buf.ptr.add(i * 32), 32, &format!("r{i}"), None) }.unwrap());
    }
    // SAFETY: as above (the last page; unmapped below, then gone).
    let last = unsafe { w.watch(buf.ptr.add(2 * ps), 64, "last", None) }.unwrap();
    for (i, byte) in [(5, 1u8), (6, 2), (199, 3)] {
        buf.write(i * 32 + 31, byte);
    }
    buf.write(2 * ps + 1, 4);
    let mut events = w.check_changes().unwrap();
    events.sort_by_key(|e| e.region_id);
    let got: Vec<_> = events
        .iter()
        .map(|e| (e.region_id, e.changed_ranges.clone(), e.new_value.clone().unwrap()))
        .collect();
    let value = |at: usize, byte: u8, len: usize| {
        let mut v = vec![0; len];
        v[at] = byte;
        v
    };
    let range = |offset| vec![ByteRange { offset, len: 1 }];
    assert_eq!(
        got,
        [
            (ids[5], range(31), value(31, 1, 32)),
            (ids[6], range(31), value(31, 2, 32)),
            (ids[199], range(31), value(31, 3, 32)),
            (last, range(1), value(1, 4, 64)),
        ]
    );
    assert!(events.iter().all(|e| e.old_value.as_deref().unwrap().iter().all(|b| *b == 0)));
    // The last page goes away: the run's read fails, each region is read alone.
    // SAFETY: the test's own page; nothing else uses it.
    assert_eq!(unsafe { libc::munmap(buf.ptr.add(2 * ps) as *mut libc::c_void, ps) }, 0);
    buf.write(7 * 32, 9);
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].region_id, events[0].changed_ranges.clone()), (ids[7], range(0)));
    assert_eq!(w.stats().gone_regions, 1);
    assert!(!w.unwatch(last).unwrap());
    w.close();
}
