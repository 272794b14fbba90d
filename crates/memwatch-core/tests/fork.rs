//! fork() with live watchers: a child writes watched memory (its own copy,
//! not watched), closes or drops the inherited watchers and exits normally,
//! within 1 s, whatever the parent's threads (worker, delivery, writers) were
//! doing at the fork.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{wait_child, Pages};
use memwatch_core::{Backend, Callback, Error, Options, Watcher};

const BACKENDS: [Backend; 3] = [Backend::Protect, Backend::WriteWatch, Backend::Poll];

fn watcher(backend: Backend, with_callback: bool) -> Watcher {
    let w = Watcher::new(Options { backend, ..Options::default() }).unwrap();
    if with_callback {
        let cb: Callback = Arc::new(|_| {});
        w.set_callback(Some(cb)).unwrap();
    }
    w
}

/// Forks; the child runs `child` and exits with its code through exit(3)
/// (atexit handlers and all, like a program's normal end). Returns the
/// child's status, or None if it did not end within `limit`.
fn fork_and_wait(limit: Duration, child: impl FnOnce() -> i32) -> Option<i32> {
    // SAFETY: the child only writes memory, frees what it inherited and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(70);
        // SAFETY: ends the child.
        unsafe { libc::exit(code) };
    }
    wait_child(pid, limit)
}

fn exited_0(status: Option<i32>) -> bool {
    matches!(status, Some(s) if libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0)
}

#[test]
fn child_writes_then_closes_or_drops_and_exits_0_within_1s() {
    for backend in BACKENDS {
        for with_callback in [false, true] {
            for close_first in [false, true] {
                let mem = Pages::new(2);
                let w = watcher(backend, with_callback);
                // SAFETY: mem outlives the watcher.
                let id = unsafe { w.watch(mem.ptr, 64, "inherited", None) }.unwrap();
                mem.write(1, 1);
                let start = Instant::now();
                let mut slot = Some(w);
                let status = fork_and_wait(Duration::from_secs(1), || {
                    let w = slot.take().unwrap();
                    for i in 0..64 {
                        mem.write(i, 0xC0);
                    }
                    if mem.read(0, 64) != vec![0xC0; 64] {
                        return 5;
                    }
                    // Every call but close reports the fork; nothing waits.
                    if !matches!(w.check_changes(), Err(Error::Unsupported(_))) {
                        return 6;
                    }
                    if !matches!(w.unwatch(id), Err(Error::Unsupported(_))) {
                        return 7;
                    }
                    if w.stats().regions != 0 {
                        return 8;
                    }
                    if !matches!(
                        Watcher::new(Options { backend, ..Options::default() }),
                        Err(Error::Unsupported(_))
                    ) {
                        return 9;
                    }
                    if close_first {
                        w.close();
                        if !w.is_closed() {
                            return 10;
                        }
                    }
                    drop(w);
                    0
                });
                assert!(
                    exited_0(status),
                    "{backend:?} callback {with_callback} close {close_first}: {status:?}"
                );
                assert!(start.elapsed() < Duration::from_secs(1));
                let w = slot.unwrap();
                // The parent still sees only its own write.
                let events = if with_callback {
                    assert!(w.check_changes().unwrap().is_empty());
                    Vec::new()
                } else {
                    w.check_changes().unwrap()
                };
                if !with_callback {
                    assert_eq!(events.len(), 1, "{backend:?}: {events:?}");
                    assert_eq!(events[0].changed_ranges.len(), 1);
                    assert_eq!(events[0].new_value.as_ref().unwrap()[1], 1);
                    assert_eq!(events[0].new_value.as_ref().unwrap()[0], 0);
                }
                assert_eq!(mem.read(0, 2), vec![0, 1], "the child's writes were its own");
                w.close();
            }
        }
    }
}

#[test]
fn three_hundred_forks_while_the_parent_writes_all_exit_within_1s() {
    for backend in BACKENDS {
        let mem = Arc::new(Pages::new(4));
        let w = Arc::new(watcher(backend, true));
        // SAFETY: mem outlives the watcher (closed below, before mem drops).
        unsafe { w.watch(mem.ptr, mem.len, "busy", None) }.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (mem, stop) = (Arc::clone(&mem), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    // Spread over the pages, so faults, scans and diffs keep
                    // the worker (and its lock) busy.
                    mem.write((i * 4099) % mem.len, i as u8);
                    i += 1;
                }
            })
        };
        let mut slow = 0;
        for _ in 0..300 {
            let start = Instant::now();
            let status = fork_and_wait(Duration::from_secs(1), || {
                mem.write(0, 0xEE);
                drop(Arc::clone(&w));
                w.close();
                0
            });
            assert!(exited_0(status), "{backend:?}: child status {status:?}");
            if start.elapsed() >= Duration::from_secs(1) {
                slow += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        assert_eq!(slow, 0);
        w.close();
    }
}
