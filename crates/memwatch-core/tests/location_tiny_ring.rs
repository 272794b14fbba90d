//! Writer location with a 4-entry fault ring (and so a 4-slot frame buffer)
//! under a 256-page burst: no change is lost, an event is located only from a
//! record that made it through the ring, and every located event names the
//! writing function. Its own test binary: the ring capacity is fixed when the
//! process's engine starts.

mod common;

use common::Pages;
use memwatch_core::{page_size, Backend, Options, Watcher};

#[test]
fn full_ring_with_capture_on_loses_no_change() {
    let w = Watcher::new(Options {
        backend: Backend::Protect,
        ring_capacity: 4,
        locate_writers: true,
        ..Options::default()
    })
    .unwrap();
    let pages = 256;
    let mem = Pages::new(pages);
    let ids: Vec<u32> = (0..pages)
        // SAFETY: mem outlives the watcher (dropped after it).
        .map(|p| unsafe { w.watch(mem.ptr.add(p * page_size()), 8, "p", None) }.unwrap())
        .collect();
    for p in 0..pages {
        mem.write(p * page_size() + 1, (p % 255) as u8 + 1);
    }
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), pages, "stats {:?}", w.stats());
    let mut located = 0;
    for (p, id) in ids.iter().enumerate() {
        let e = events.iter().find(|e| e.region_id == *id).expect("every page reported");
        assert_eq!(e.new_value.as_ref().unwrap()[1], (p % 255) as u8 + 1);
        let wh = &e.where_;
        if wh.stack.is_empty() {
            assert_eq!((wh.line, wh.function.as_str()), (0, ""));
        } else {
            located += 1;
            assert!(wh.thread_id.is_some(), "located only from a ring record");
            assert!(wh.function.ends_with("Pages::write"), "{wh:#?}");
        }
    }
    let stats = w.stats();
    assert!(stats.dropped_wheres > 0, "the burst overflowed the 4-entry ring");
    assert!(located > 0 && located < pages, "{located} located, {stats:?}");
    assert!(located as u64 <= stats.faults - stats.dropped_wheres, "{stats:?}");
}
