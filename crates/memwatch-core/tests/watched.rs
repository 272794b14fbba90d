//! The safe API: `Watched` (an owned buffer watched while the guard lives)
//! and `Watcher::watch_scoped` (a borrowed buffer watched during a closure),
//! under every backend, with no `unsafe` in this file.

#![forbid(unsafe_code)]

use memwatch_core::{Backend, ByteRange, Error, Options, Watched, Watcher};

const BACKENDS: [Backend; 3] = [Backend::Protect, Backend::WriteWatch, Backend::Poll];

fn watcher(backend: Backend) -> Watcher {
    Watcher::new(Options { backend, ..Options::default() }).unwrap()
}

#[test]
fn owned_vec_reports_exact_bytes_and_unwatches_on_drop() {
    for backend in BACKENDS {
        let w = watcher(backend);
        let mut buf = Watched::new(&w, vec![1u8; 32], "vec").unwrap();
        assert_eq!(w.stats().regions, 1);
        buf[4..6].copy_from_slice(&[7, 8]);
        let events = w.check_changes().unwrap();
        assert_eq!(events.len(), 1, "{backend:?}");
        let e = &events[0];
        assert_eq!(e.region_id, buf.id());
        assert_eq!(e.variable_name, "vec");
        assert_eq!(e.changed_ranges, vec![ByteRange { offset: 4, len: 2 }]);
        assert_eq!(e.old_value.as_deref().unwrap(), &[1u8; 32][..]);
        let mut expected = [1u8; 32];
        expected[4..6].copy_from_slice(&[7, 8]);
        assert_eq!(e.new_value.as_deref().unwrap(), &expected[..]);
        assert_eq!(&buf[..], &expected[..], "reads see the writes");
        drop(buf);
        assert_eq!(w.stats().regions, 0, "{backend:?}: dropped = unwatched");
        assert!(w.check_changes().unwrap().is_empty());
        w.close();
    }
}

#[test]
fn into_inner_unwatches_and_returns_the_buffer() {
    for backend in BACKENDS {
        let w = watcher(backend);
        let mut buf = Watched::new(&w, vec![0u8; 16].into_boxed_slice(), "boxed").unwrap();
        buf[0] = 9;
        let events = w.check_changes().unwrap();
        assert_eq!(events.len(), 1, "{backend:?}");
        assert_eq!(events[0].changed_ranges, vec![ByteRange { offset: 0, len: 1 }]);
        let mut bytes: Box<[u8]> = buf.into_inner();
        assert_eq!(w.stats().regions, 0);
        bytes[1] = 10; // no longer watched
        assert!(w.check_changes().unwrap().is_empty(), "{backend:?}");
        assert_eq!(&bytes[..2], &[9, 10]);
        w.close();
    }
}

#[test]
fn a_moved_guard_keeps_watching_the_same_bytes() {
    for backend in BACKENDS {
        let w = watcher(backend);
        let guard = Watched::new(&w, Box::new([0u8; 8]), "array").unwrap();
        let id = guard.id();
        let mut moved = [guard]; // the guard moves; the boxed bytes do not
        moved[0][7] = 0xff;
        let events = w.check_changes().unwrap();
        assert_eq!(events.len(), 1, "{backend:?}");
        assert_eq!(events[0].region_id, id);
        assert_eq!(events[0].changed_ranges, vec![ByteRange { offset: 7, len: 1 }]);
        assert_eq!(events[0].old_value.as_deref().unwrap()[7], 0);
        assert_eq!(events[0].new_value.as_deref().unwrap()[7], 0xff);
        w.close();
    }
}

#[test]
fn written_from_another_thread_while_owned_there() {
    for backend in BACKENDS {
        let w = watcher(backend);
        let mut buf = Watched::with_metadata(&w, vec![0u8; 4096], "shared", Some("m")).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                for (i, b) in buf.iter_mut().enumerate().step_by(512) {
                    *b = (i / 512) as u8 + 1;
                }
            });
        });
        let events = w.check_changes().unwrap();
        let mut seen = vec![0u8; 4096];
        for e in &events {
            assert_eq!(e.metadata.as_deref(), Some("m"));
            seen.copy_from_slice(e.new_value.as_deref().unwrap());
        }
        assert!(!events.is_empty(), "{backend:?}");
        let expected: Vec<u8> =
            (0..4096).map(|i| if i % 512 == 0 { (i / 512) as u8 + 1 } else { 0 }).collect();
        assert_eq!(seen, expected, "{backend:?}: the last event holds every write");
        let offsets: Vec<usize> =
            events.iter().flat_map(|e| e.changed_ranges.iter().map(|r| r.offset)).collect();
        assert_eq!(offsets.len(), 8, "{backend:?}: each written byte reported once: {offsets:?}");
        w.close();
    }
}

#[test]
fn static_borrow_from_box_leak() {
    let w = watcher(Backend::Protect);
    let leaked: &'static mut [u8] = Box::leak(vec![0u8; 10].into_boxed_slice());
    let mut buf = Watched::new(&w, leaked, "leaked").unwrap();
    buf[9] = 1;
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].changed_ranges, vec![ByteRange { offset: 9, len: 1 }]);
    w.close();
}

#[test]
fn scoped_borrow_is_watched_only_inside_the_closure() {
    for backend in BACKENDS {
        let w = watcher(backend);
        let mut data = vec![5u8; 100];
        let events = w
            .watch_scoped(&mut data, "scoped", |d, id| {
                assert_eq!(w.stats().regions, 1);
                d[50] = 6;
                let ev = w.check_changes().unwrap();
                assert_eq!(ev[0].region_id, id);
                ev
            })
            .unwrap();
        assert_eq!(events.len(), 1, "{backend:?}");
        assert_eq!(events[0].changed_ranges, vec![ByteRange { offset: 50, len: 1 }]);
        assert_eq!(events[0].old_value.as_deref().unwrap()[50], 5);
        assert_eq!(events[0].new_value.as_deref().unwrap()[50], 6);
        assert_eq!(w.stats().regions, 0, "unwatched on return");
        data[0] = 0;
        assert!(w.check_changes().unwrap().is_empty());
        w.close();
    }
}

#[test]
fn scoped_borrow_is_unwatched_when_the_closure_panics() {
    let w = watcher(Backend::Protect);
    let mut data = vec![0u8; 8];
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        w.watch_scoped(&mut data, "panics", |_, _| panic!("inside")).unwrap()
    }));
    assert_eq!(*r.unwrap_err().downcast::<&str>().unwrap(), "inside");
    assert_eq!(w.stats().regions, 0);
    drop(data); // freed after unwatch: no fault, no event
    assert!(w.check_changes().unwrap().is_empty());
    w.close();
}

#[test]
fn bad_input_and_closed_watchers_give_errors() {
    let w = watcher(Backend::Poll);
    assert!(matches!(Watched::new(&w, Vec::new(), "empty"), Err(Error::InvalidArgument(_))));
    assert!(matches!(w.watch_scoped(&mut [], "empty", |_, _| ()), Err(Error::InvalidArgument(_))));
    let buf = Watched::new(&w, vec![0u8; 4], "x").unwrap();
    w.close();
    drop(buf); // unwatching on a closed watcher is fine
    assert!(matches!(Watched::new(&w, vec![0u8; 4], "y"), Err(Error::Closed)));
    assert!(matches!(w.watch_scoped(&mut [0u8; 4], "z", |_, _| ()), Err(Error::Closed)));
}
