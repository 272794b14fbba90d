//! The writewatch backend (userfaultfd WP_ASYNC + PAGEMAP_SCAN). Its own test
//! binary: it checks that no SIGSEGV handler gets installed, which other test
//! binaries' protect watchers would do.

mod common;

use std::time::Duration;

use common::{wait_child, Pages};
use memwatch_core::{
    page_size, signal_handler_installed, Backend, Options, Watcher, DISABLE_WRITEWATCH_ENV,
};

/// Tests here map and unmap memory and check address reuse: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn ww() -> Watcher {
    Watcher::new(Options { backend: Backend::WriteWatch, ..Options::default() })
        .expect("writewatch available on this kernel")
}

#[test]
fn auto_picks_writewatch_and_installs_no_signal_handler() {
    let _serial = serial();
    let mem = Pages::new(2);
    let w = Watcher::new(Options::default()).unwrap();
    assert_eq!(w.backend(), Backend::WriteWatch, "{}", w.stats().backend_reason);
    assert_eq!(w.stats().backend, Some(Backend::WriteWatch));
    assert_eq!(w.stats().backend_reason, "");
    // SAFETY: mem outlives the watcher.
    unsafe { w.watch(mem.ptr, 2 * page_size(), "two pages", None) }.unwrap();
    mem.write(5, 1);
    mem.write(page_size() + 5, 2);
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1);
    let ranges: Vec<(usize, usize)> =
        events[0].changed_ranges.iter().map(|r| (r.offset, r.len)).collect();
    assert_eq!(ranges, vec![(5, 1), (page_size() + 5, 1)]);
    assert_eq!(events[0].where_.thread_id, None, "writewatch does not know the writer");
    assert!(!signal_handler_installed(), "writewatch needs no SIGSEGV handler");
    assert_eq!(w.stats().faults, 0);
}

#[test]
fn read_syscall_into_watched_memory_succeeds_and_is_reported() {
    let _serial = serial();
    let mem = Pages::new(1);
    let w = ww();
    // SAFETY: mem outlives the watcher.
    let id = unsafe { w.watch(mem.ptr.add(100), 16, "rx", None) }.unwrap();
    let mut fds = [0; 2];
    // SAFETY: valid array of two ints.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let msg = b"kernel wrote it!";
    // SAFETY: writing 16 bytes from a valid buffer to our pipe.
    assert_eq!(unsafe { libc::write(fds[1], msg.as_ptr() as *const libc::c_void, 16) }, 16);
    // SAFETY: reading 16 bytes into watched (mapped, writable) memory.
    let n = unsafe { libc::read(fds[0], mem.ptr.add(100) as *mut libc::c_void, 16) };
    assert_eq!(n, 16, "read(2) into writewatch-watched memory succeeds");
    // SAFETY: closing our descriptors.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1])
    };
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].region_id, id);
    assert_eq!(events[0].new_value.as_deref(), Some(&msg[..]));
    assert_eq!(events[0].old_value.as_deref(), Some(&[0u8; 16][..]));
}

#[test]
fn munmap_while_watched_does_not_crash_and_region_is_gone() {
    let _serial = serial();
    let w = ww();
    // The watched page sits between two mapped ones: once unmapped, its
    // one-page hole cannot be reused by a thread stack or any bigger mapping
    // another thread of the test harness makes meanwhile.
    let mem = Pages::new(3);
    let page = mem.ptr.wrapping_add(page_size());
    // SAFETY: deliberately violated below to test the engine's defence.
    let id = unsafe { w.watch(page, 64, "doomed", None) }.unwrap();
    mem.write(page_size(), 1);
    let before = w.stats().gone_regions;
    // munmap while watched; check_changes checks the ranges are mapped.
    // SAFETY: the middle page of our own mapping; nothing touches it after.
    assert_eq!(unsafe { libc::munmap(page as *mut libc::c_void, page_size()) }, 0);
    // The write made before the unmap may already have been reported by a
    // background scan; nothing else can be.
    let events = w.check_changes().unwrap();
    assert!(events.len() <= 1, "{events:?}");
    if let Some(e) = events.first() {
        assert_eq!((e.region_id, e.new_value.as_ref().map(|v| v[0])), (id, Some(1)));
    }
    assert_eq!(w.stats().gone_regions, before + 1, "{:?}", w.stats());
    assert_eq!(w.stats().regions, 0);
    assert!(!w.unwatch(id).unwrap(), "the region is gone");
}

#[test]
fn memory_remapped_while_watched_is_reported_gone() {
    let _serial = serial();
    let w = ww();
    let mem = Pages::new(3);
    // SAFETY: deliberately replaced below to test the engine's defence.
    let id = unsafe { w.watch(mem.ptr.add(page_size()), 32, "replaced", None) }.unwrap();
    // Read before the replacement: the worker's own liveness checks may
    // find the region gone before check_changes does.
    let before = w.stats().gone_regions;
    // Replace the middle page with an inaccessible mapping (what a careless
    // allocator or a guard page would do).
    // SAFETY: MAP_FIXED over our own page.
    let p = unsafe {
        libc::mmap(
            mem.ptr.add(page_size()) as *mut libc::c_void,
            page_size(),
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    assert!(w.check_changes().unwrap().is_empty());
    assert_eq!(w.stats().gone_regions, before + 1, "{:?}", w.stats());
    assert!(!w.unwatch(id).unwrap());
    mem.write(0, 1); // the neighbours are fine
}

#[test]
fn freed_and_reused_address_is_watched_again() {
    let _serial = serial();
    let w = ww();
    let first = Pages::new(1);
    let addr = first.ptr;
    // SAFETY: deliberately freed while watched below.
    unsafe { w.watch(addr, 8, "old", None) }.unwrap();
    drop(first);
    // Map a page at exactly that address again, as an allocator reusing it would.
    // SAFETY: MAP_FIXED_NOREPLACE at an address we just unmapped.
    let p = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            page_size(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    assert_eq!(p as *mut u8, addr);
    let again = Pages { ptr: addr, len: page_size() };
    // SAFETY: `again` outlives the watch.
    let id = unsafe { w.watch(addr.add(100), 8, "new", None) }.unwrap();
    again.write(101, 5);
    let events = w.check_changes().unwrap();
    let mine: Vec<_> = events.iter().filter(|e| e.region_id == id).collect();
    assert_eq!(mine.len(), 1, "{events:?}");
    assert_eq!(mine[0].new_value.as_deref(), Some(&[0, 5, 0, 0, 0, 0, 0, 0][..]));
}

#[test]
fn fork_child_writes_watched_buffer_and_exits_0() {
    let _serial = serial();
    let mem = Pages::new(1);
    let w = ww();
    // SAFETY: mem outlives the watcher.
    unsafe { w.watch(mem.ptr, 8, "f", None) }.unwrap();
    // SAFETY: the child only stores to memory and calls _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        for i in 0..8 {
            mem.write(i, 0x77);
        }
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(0) };
    }
    let status = wait_child(pid, Duration::from_secs(5)).expect("child finished");
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "status {status:#x}");
    assert!(w.check_changes().unwrap().is_empty());
    mem.write(3, 1);
    assert_eq!(w.check_changes().unwrap().len(), 1, "the parent still watches");
}

#[test]
fn callback_gets_writes_without_check_changes() {
    let _serial = serial();
    let mem = Pages::new(1);
    let w = ww();
    // SAFETY: mem outlives the watcher.
    unsafe { w.watch(mem.ptr, 4, "cb", None) }.unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    w.set_callback(Some(std::sync::Arc::new(move |e: &memwatch_core::ChangeEvent| {
        tx.lock().unwrap().send(e.new_value.clone().unwrap()).unwrap();
    })))
    .unwrap();
    mem.write(2, 9);
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), vec![0, 0, 9, 0]);
}

/// Idle, the worker skips the page-table scan while the process's fault
/// count is unchanged: writes after a long silence (the gate closed, the
/// wake-ups backed off), by the program and by the kernel (read(2)), each
/// still reach the callback, exactly, without check_changes.
#[test]
fn writes_after_long_idle_reach_the_callback() {
    let _serial = serial();
    let mem = Pages::new(64);
    let w = ww();
    // SAFETY: mem outlives the watcher.
    unsafe { w.watch(mem.ptr, 64 * page_size(), "idle", None) }.unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    w.set_callback(Some(std::sync::Arc::new(move |e: &memwatch_core::ChangeEvent| {
        let ranges: Vec<(usize, usize)> =
            e.changed_ranges.iter().map(|r| (r.offset, r.len)).collect();
        tx.lock().unwrap().send(ranges).unwrap();
    })))
    .unwrap();
    std::thread::sleep(Duration::from_millis(400)); // idle: past the active hold
    mem.write(40 * page_size() + 7, 5);
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), vec![(40 * page_size() + 7, 1)]);
    std::thread::sleep(Duration::from_millis(400));
    let mut fds = [0; 2];
    // SAFETY: valid array of two ints.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: writing 3 bytes from a valid buffer to our pipe.
    assert_eq!(unsafe { libc::write(fds[1], b"abc".as_ptr() as *const libc::c_void, 3) }, 3);
    // SAFETY: reading 3 bytes into watched memory (inside the mapping).
    let n = unsafe { libc::read(fds[0], mem.ptr.add(9 * page_size()) as *mut libc::c_void, 3) };
    assert_eq!(n, 3);
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), vec![(9 * page_size(), 3)]);
    // SAFETY: closing our pipe.
    unsafe { libc::close(fds[0]) };
    // SAFETY: as above.
    unsafe { libc::close(fds[1]) };
    assert!(rx.try_recv().is_err(), "one event per write");
}

#[test]
fn auto_falls_back_to_protect_when_writewatch_is_disabled() {
    let _serial = serial();
    // The choice is made once per process: check it in a child process.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_auto_with_writewatch_disabled",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DISABLE_WRITEWATCH_ENV, "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("1 passed"), "child ran the check: {text}");
}

/// Run by auto_falls_back_to_protect_when_writewatch_is_disabled in a child
/// process with MEMWATCH_DISABLE_WRITEWATCH=1.
#[test]
#[ignore = "run in a child process by auto_falls_back_to_protect_when_writewatch_is_disabled"]
fn child_auto_with_writewatch_disabled() {
    assert!(std::env::var_os(DISABLE_WRITEWATCH_ENV).is_some());
    let mem = Pages::new(1);
    let w = Watcher::new(Options::default()).unwrap();
    assert_eq!(w.backend(), Backend::Protect);
    assert!(
        w.stats().backend_reason.contains(DISABLE_WRITEWATCH_ENV),
        "{}",
        w.stats().backend_reason
    );
    assert!(Watcher::new(Options { backend: Backend::WriteWatch, ..Options::default() }).is_err());
    // SAFETY: mem outlives the watcher.
    unsafe { w.watch(mem.ptr, 8, "p", None) }.unwrap();
    mem.write(1, 1);
    assert_eq!(w.check_changes().unwrap().len(), 1);
    assert!(signal_handler_installed());
}

#[test]
fn page_written_nonstop_goes_hot_and_stays_exact() {
    let _serial = serial();
    let mem = std::sync::Arc::new(Pages::new(1));
    let w = Watcher::new(Options {
        backend: Backend::WriteWatch,
        poll_interval: Duration::from_millis(10),
        ..Options::default()
    })
    .unwrap();
    // SAFETY: mem outlives the watcher.
    unsafe { w.watch(mem.ptr, 64, "hot", None) }.unwrap();
    let m = std::sync::Arc::clone(&mem);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = std::sync::Arc::clone(&stop);
    let writer = std::thread::spawn(move || {
        let mut i = 0usize;
        while !s.load(std::sync::atomic::Ordering::Relaxed) {
            m.write(i % 64, (i % 200) as u8 + 1);
            i += 1;
        }
    });
    // Many scans in a row find it written: the page goes hot, and stats say so.
    let start = std::time::Instant::now();
    while w.stats().hot_pages != 1 {
        assert!(start.elapsed() < Duration::from_secs(30), "never hot: {:?}", w.stats());
        std::thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    let events = w.check_changes().unwrap();
    assert!(!events.is_empty());
    for pair in events.windows(2) {
        assert_eq!(pair[0].new_value, pair[1].old_value, "events chain exactly");
    }
    assert_eq!(
        events.last().unwrap().new_value.as_deref(),
        Some(&mem.read(0, 64)[..]),
        "final bytes"
    );
    // Quiet for > 4 poll intervals: protected and scanned again; a single
    // write is still reported exactly.
    std::thread::sleep(Duration::from_millis(100));
    assert!(w.check_changes().unwrap().is_empty());
    let start = std::time::Instant::now();
    while w.stats().hot_pages != 0 {
        assert!(start.elapsed() < Duration::from_secs(30), "never cooled: {:?}", w.stats());
        std::thread::sleep(Duration::from_millis(1));
    }
    let before = mem.read(0, 64);
    mem.write(7, before[7].wrapping_add(1));
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].changed_ranges.len(), 1);
    assert_eq!((events[0].changed_ranges[0].offset, events[0].changed_ranges[0].len), (7, 1));
}

#[test]
fn each_watcher_coalesces_on_its_own_window_whatever_others_do() {
    let _serial = serial();
    let busy_mem = Pages::new(1);
    let calm_mem = Pages::new(1);
    // A default watcher makes the engine scan every 0.5 ms...
    let busy = ww();
    // SAFETY: busy_mem outlives the watcher.
    unsafe { busy.watch(busy_mem.ptr, 8, "busy", None) }.unwrap();
    busy_mem.write(0, 1);
    // ...but a watcher with a 60 s window still sees writes 20 ms apart as one change.
    let calm = Watcher::new(Options {
        backend: Backend::WriteWatch,
        writable_window: Duration::from_secs(60),
        ..Options::default()
    })
    .unwrap();
    // SAFETY: calm_mem outlives the watcher.
    let id = unsafe { calm.watch(calm_mem.ptr, 8, "calm", None) }.unwrap();
    calm_mem.write(1, 1);
    std::thread::sleep(Duration::from_millis(20));
    busy_mem.write(0, 2);
    calm_mem.write(2, 2);
    let events = calm.check_changes().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].region_id, id);
    let ranges: Vec<(usize, usize)> =
        events[0].changed_ranges.iter().map(|r| (r.offset, r.len)).collect();
    assert_eq!(ranges, vec![(1, 2)]);
    assert_eq!(events[0].new_value.as_deref(), Some(&[0, 1, 2, 0, 0, 0, 0, 0][..]));
}

#[test]
fn a_lone_long_window_watcher_coalesces_writes_right_after_watch() {
    let _serial = serial();
    // A default watcher leaves the engine's next scan close at hand...
    let warm_mem = Pages::new(1);
    let warm = ww();
    // SAFETY: warm_mem outlives the watcher.
    unsafe { warm.watch(warm_mem.ptr, 8, "warm", None) }.unwrap();
    warm.close();
    // ...which then finds the first write of a 60 s watcher between its two
    // writes: the pair is still one change, as under protect.
    let mem = Pages::new(1);
    let w = Watcher::new(Options {
        backend: Backend::WriteWatch,
        writable_window: Duration::from_secs(60),
        ..Options::default()
    })
    .unwrap();
    // SAFETY: mem outlives the watcher.
    let id = unsafe { w.watch(mem.ptr, 64, "pair", None) }.unwrap();
    mem.write(2, 0x77);
    std::thread::sleep(Duration::from_millis(50));
    mem.write(40, 0x88);
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].region_id, id);
    let ranges: Vec<(usize, usize)> =
        events[0].changed_ranges.iter().map(|r| (r.offset, r.len)).collect();
    assert_eq!(ranges, vec![(2, 1), (40, 1)]);
}

#[test]
fn a_new_short_window_watcher_is_scanned_at_its_own_pace() {
    let _serial = serial();
    // A 60 s watcher alone: its check_changes schedules the next scan 6 s ahead.
    let slow_mem = Pages::new(1);
    let slow = Watcher::new(Options {
        backend: Backend::WriteWatch,
        writable_window: Duration::from_secs(60),
        ..Options::default()
    })
    .unwrap();
    // SAFETY: slow_mem outlives the watcher.
    unsafe { slow.watch(slow_mem.ptr, 8, "slow", None) }.unwrap();
    assert!(slow.check_changes().unwrap().is_empty());
    // A default watcher (5 ms window) started afterwards gets its writes
    // without check_changes within its own pace, not after the 6 s.
    let mem = Pages::new(1);
    let w = ww();
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    w.set_callback(Some(std::sync::Arc::new(move |e: &memwatch_core::ChangeEvent| {
        tx.lock().unwrap().send(e.new_value.clone().unwrap()).unwrap();
    })))
    .unwrap();
    // SAFETY: mem outlives the watcher.
    unsafe { w.watch(mem.ptr, 4, "quick", None) }.unwrap();
    mem.write(1, 7);
    assert_eq!(rx.recv_timeout(Duration::from_secs(3)).unwrap(), vec![0, 7, 0, 0]);
}
