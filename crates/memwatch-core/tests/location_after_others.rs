//! A locating watcher's first event names its own writer, not a fault
//! record left in the ring by a watcher closed before anyone collected it
//! (the same pages written under a non-locating protect watcher, closed
//! without check_changes), also after other backends' watchers.

mod common;

use common::Pages;
use memwatch_core::*;

#[test]
fn a_closed_watchers_uncollected_faults_never_name_a_later_writer() {
    {
        let pages = Pages::new(16384);
        let w =
            Watcher::new(Options { backend: Backend::WriteWatch, ..Options::default() }).unwrap();
        // SAFETY: pages outlives the watch (closed below).
        unsafe { w.watch(pages.ptr, pages.len, "ww", None) }.unwrap();
        for p in 0..16384 {
            pages.write(p * page_size(), 1);
        }
        assert!(!w.check_changes().unwrap().is_empty());
        std::thread::sleep(std::time::Duration::from_millis(1500));
        pages.write(7, 2);
        assert!(!w.check_changes().unwrap().is_empty());
        w.close();
    }
    let pages = Pages::new(4096);
    for on in [false, true] {
        let w = Watcher::new(Options {
            backend: Backend::Protect,
            locate_writers: on,
            writable_window: std::time::Duration::from_secs(10),
            ..Options::default()
        })
        .unwrap();
        // SAFETY: pages outlives the watch (closed below).
        unsafe { w.watch(pages.ptr, pages.len, "p", None) }.unwrap();
        for p in 0..4096 {
            pages.write(p * page_size(), 3 + on as u8);
        }
        if !on {
            w.close();
            continue;
        }
        let events = w.check_changes().unwrap();
        assert_eq!(events.len(), 1);
        if on {
            let wh = &events[0].where_;
            assert!(!wh.stack.is_empty(), "{wh:#?}");
            assert_eq!(wh.unattributed_faults, 4095, "{wh:#?}");
            assert!(wh.stack.iter().any(|f| f.function.contains("Pages::write")), "{wh:#?}");
        }
        w.close();
    }
}
