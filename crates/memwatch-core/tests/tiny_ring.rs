//! A ring of 4 entries and a burst of faults on many pages: no change is
//! lost, the dropped wheres are counted. Its own test binary, because the ring
//! capacity is fixed when the process's engine starts.

mod common;

use common::Pages;
use memwatch_core::{page_size, Backend, Options, Watcher};

#[test]
fn full_ring_loses_no_change() {
    let w =
        Watcher::new(Options { backend: Backend::Protect, ring_capacity: 4, ..Options::default() })
            .unwrap();
    let pages = 256;
    let mem = Pages::new(pages);
    let ids: Vec<u32> = (0..pages)
        // SAFETY: mem outlives the watcher (dropped after it).
        .map(|p| {
            unsafe { w.watch(mem.ptr.add(p * page_size()), 8, &format!("p{p}"), None) }.unwrap()
        })
        .collect();
    for p in 0..pages {
        mem.write(p * page_size() + 1, (p % 255) as u8 + 1);
    }
    let events = w.check_changes().unwrap();
    if events.len() != pages {
        let missing: Vec<usize> =
            (0..pages).filter(|p| !events.iter().any(|e| e.region_id == ids[*p])).collect();
        panic!("missing pages {missing:?}, stats {:?}", w.stats());
    }
    for (p, id) in ids.iter().enumerate() {
        let e = events.iter().find(|e| e.region_id == *id).expect("every page reported");
        assert_eq!(e.new_value.as_ref().unwrap()[1], (p % 255) as u8 + 1);
    }
    let stats = w.stats();
    assert!(stats.dropped_wheres > 0, "the burst overflowed the 4-entry ring");
    let without_where = events.iter().filter(|e| e.where_.thread_id.is_none()).count();
    // Events can only carry a where that a ring record delivered.
    let with_where = (events.len() - without_where) as u64;
    assert!(without_where > 0, "{stats:?}");
    assert!(
        with_where <= stats.faults - stats.dropped_wheres,
        "{with_where} events with where, {stats:?}"
    );
    assert!(stats.faults >= pages as u64, "every page faulted at least once: {stats:?}");
}
