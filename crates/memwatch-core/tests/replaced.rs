//! Watched memory unmapped or replaced (MAP_FIXED) while watched, under
//! every backend, before and during a page's writable window: the region is
//! dropped and counted (gone_regions), nothing crashes, and no memwatch call
//! changes the protection of the mapping that took its place.

mod common;

use std::time::Duration;

use common::Pages;
use memwatch_core::{page_size, Backend, Options, Watcher};

/// The permissions column of /proc/self/maps for the page at `addr`
/// ("---p", "r--p", ...), or None if nothing is mapped there.
fn perms_at(addr: usize) -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines().find_map(|line| {
        let (range, rest) = line.split_once(' ')?;
        let (s, e) = range.split_once('-')?;
        let (s, e) = (usize::from_str_radix(s, 16).ok()?, usize::from_str_radix(e, 16).ok()?);
        (s <= addr && addr < e).then(|| rest[..4].to_string())
    })
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Doom {
    Unmap,
    /// A new mapping with this protection over the page (MAP_FIXED).
    Replace(i32),
}

fn doom(addr: usize, how: Doom) {
    // SAFETY: the test's own page; deliberately pulled from under the watch.
    unsafe {
        match how {
            Doom::Unmap => assert_eq!(libc::munmap(addr as *mut libc::c_void, page_size()), 0),
            Doom::Replace(prot) => {
                let p = libc::mmap(
                    addr as *mut libc::c_void,
                    page_size(),
                    prot,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                );
                assert_eq!(p as usize, addr);
            }
        }
    }
}

fn expected_perms(how: Doom) -> Option<String> {
    match how {
        Doom::Unmap => None,
        Doom::Replace(libc::PROT_NONE) => Some("---p".into()),
        Doom::Replace(_) => Some("r--p".into()),
    }
}

const DOOMS: [Doom; 3] =
    [Doom::Unmap, Doom::Replace(libc::PROT_NONE), Doom::Replace(libc::PROT_READ)];

/// Which call meets the doomed region first.
#[derive(Clone, Copy, Debug)]
enum First {
    CheckChanges,
    Unwatch,
    Close,
}

/// gone_regions is engine-wide: one case at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run(backend: Backend, how: Doom, in_window: bool, first: First) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ctx = format!("{backend:?} {how:?} in_window={in_window} first={first:?}");
    // A long window: a page written below stays open (writable) until
    // check_changes, so "during the window" is deterministic.
    let w = Watcher::new(Options {
        backend,
        writable_window: Duration::from_secs(30),
        poll_interval: Duration::from_secs(30),
        ..Options::default()
    })
    .unwrap();
    // The doomed page sits between two mapped ones, so its hole or its
    // replacement cannot merge with or be taken by anything else.
    let mem = Pages::new(3);
    let addr = mem.ptr as usize + page_size();
    // SAFETY: the memory is deliberately unmapped or replaced below.
    let id = unsafe { w.watch(addr as *const u8, 64, "doomed", None) }.unwrap();
    // SAFETY: the neighbours outlive the watcher.
    let keep = unsafe { w.watch(mem.ptr, 16, "neighbour", None) }.unwrap();
    let gone_before = w.stats().gone_regions;
    mem.write(page_size() + 1, 7);
    if !in_window {
        let events = w.check_changes().unwrap();
        assert_eq!(events.len(), 1, "{ctx}: {events:?}");
    }
    doom(addr, how);
    let want = expected_perms(how);
    assert_eq!(perms_at(addr), want, "{ctx}: after the replacement");
    // writewatch and poll read a readable mapping made over the region as
    // the region's memory (its zeros are a change); everything else is gone.
    let dropped = backend == Backend::Protect || how != Doom::Replace(libc::PROT_READ);
    match first {
        First::CheckChanges if !dropped => {
            let events = w.check_changes().unwrap();
            assert_eq!(perms_at(addr), want, "{ctx}: after check_changes");
            assert!(events.len() <= 1 && events.iter().all(|e| e.region_id == id), "{ctx}");
            if !in_window {
                assert_eq!(events.len(), 1, "{ctx}: {events:?}");
                assert_eq!(events[0].old_value.as_ref().unwrap()[1], 7, "{ctx}");
                assert_eq!(events[0].new_value.as_deref(), Some(&[0u8; 64][..]), "{ctx}");
            }
            let s = w.stats();
            assert_eq!((s.gone_regions - gone_before, s.regions), (0, 2), "{ctx}: {s:?}");
            assert!(w.unwatch(id).unwrap(), "{ctx}");
            assert_eq!(perms_at(addr), want, "{ctx}: after unwatch");
        }
        First::CheckChanges => {
            let events = w.check_changes().unwrap();
            assert_eq!(perms_at(addr), want, "{ctx}: after check_changes");
            // The write before the replacement may be reported (it was made
            // to memory still watched), the neighbour has not changed.
            assert!(events.iter().all(|e| e.region_id == id), "{ctx}: {events:?}");
            assert!(events.len() <= usize::from(in_window), "{ctx}: {events:?}");
            let s = w.stats();
            assert_eq!(perms_at(addr), want, "{ctx}: after stats");
            assert_eq!((s.gone_regions - gone_before, s.regions), (1, 1), "{ctx}: {s:?}");
            assert!(!w.unwatch(id).unwrap(), "{ctx}: the region is gone");
            assert_eq!(perms_at(addr), want, "{ctx}: after unwatch");
        }
        First::Unwatch => {
            let gone = w.unwatch(id).unwrap();
            assert_eq!(perms_at(addr), want, "{ctx}: after unwatch");
            // Protect checks the mapping on unwatch: the region was gone.
            if backend == Backend::Protect {
                assert!(!gone, "{ctx}");
                assert_eq!(w.stats().gone_regions - gone_before, 1, "{ctx}");
            }
            assert_eq!(w.stats().regions, 1, "{ctx}");
        }
        First::Close => {}
    }
    // The neighbour is still watched, exactly.
    if !matches!(first, First::Close) {
        mem.write(2, 9);
        let events = w.check_changes().unwrap();
        assert_eq!(events.len(), 1, "{ctx}: {events:?}");
        assert_eq!(events[0].region_id, keep);
        assert_eq!(events[0].new_value.as_ref().unwrap()[2], 9);
        assert_eq!(perms_at(addr), want, "{ctx}: after the last check_changes");
    }
    w.close();
    assert_eq!(perms_at(addr), want, "{ctx}: after close");
    // The neighbours are ours again, writable.
    assert_eq!(perms_at(mem.ptr as usize).as_deref(), Some("rw-p"), "{ctx}");
    mem.write(0, 1);
    if how != Doom::Unmap {
        // SAFETY: the replacement page is ours to unmap (Pages' drop only
        // unmaps the rest again, harmlessly).
        unsafe { libc::munmap(addr as *mut libc::c_void, page_size()) };
    }
}

fn all_cases(backend: Backend) {
    for how in DOOMS {
        for in_window in [false, true] {
            for first in [First::CheckChanges, First::Unwatch, First::Close] {
                run(backend, how, in_window, first);
            }
        }
    }
}

#[test]
fn protect_never_touches_a_mapping_it_did_not_protect() {
    all_cases(Backend::Protect);
}

#[test]
fn writewatch_never_touches_a_mapping_it_did_not_register() {
    all_cases(Backend::WriteWatch);
}

#[test]
fn poll_drops_unmapped_and_replaced_regions() {
    all_cases(Backend::Poll);
}

#[test]
fn protect_a_stray_write_to_a_read_only_replacement_crashes_once_it_is_found() {
    // Once check_changes found the page replaced, a write to the new
    // read-only mapping is the program's own fault: forwarded at once (no
    // grace period), so the default action kills. The write is made in a
    // child (it is meant to die), which inherits the engine's page table
    // and handler.
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let w = Watcher::new(Options { backend: Backend::Protect, ..Options::default() }).unwrap();
    let mem = Pages::new(3);
    let addr = mem.ptr as usize + page_size();
    // SAFETY: replaced below on purpose.
    let id = unsafe { w.watch(addr as *const u8, 8, "doomed", None) }.unwrap();
    doom(addr, Doom::Replace(libc::PROT_READ));
    assert!(w.check_changes().unwrap().is_empty());
    assert!(!w.unwatch(id).unwrap(), "found gone");
    assert_eq!(perms_at(addr).as_deref(), Some("r--p"));
    let start = std::time::Instant::now();
    // SAFETY: the child only sets a limit and writes; it dies or _exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: no core file for the crash under test; then the
        // deliberate write to a read-only mapping.
        unsafe {
            libc::setrlimit(libc::RLIMIT_CORE, &rl);
            std::ptr::write_volatile(addr as *mut u8, 1);
            libc::_exit(4); // the write went through
        }
    }
    let status = common::wait_child(pid, Duration::from_secs(1)).expect("child ended within 1 s");
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSEGV,
        "status {status:#x} (exit code {})",
        libc::WEXITSTATUS(status)
    );
    assert!(start.elapsed() < Duration::from_secs(1));
    w.close();
    assert_eq!(perms_at(addr).as_deref(), Some("r--p"));
    // SAFETY: the replacement page is ours to unmap.
    unsafe { libc::munmap(addr as *mut libc::c_void, page_size()) };
}
