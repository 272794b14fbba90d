//! Single-process behaviour: API, stats, policies, limits, errors.

mod common;
use common::*;
use memwatch_store::{value_key, Error, FullPolicy, Options, Store};

#[test]
fn put_get_overwrite_delete() {
    let n = Name::new("basic");
    let s = Store::connect(n.as_str(), 1 << 20, FullPolicy::Refuse).unwrap();
    assert_eq!(s.get("a").unwrap(), None);
    s.put("a", b"1").unwrap();
    s.put(b"b".as_slice(), vec![2u8; 1000]).unwrap();
    assert_eq!(s.get("a").unwrap().unwrap(), b"1");
    assert_eq!(s.get("b").unwrap().unwrap(), vec![2u8; 1000]);
    s.put("a", b"one").unwrap();
    assert_eq!(s.get("a").unwrap().unwrap(), b"one");
    s.put("empty", b"").unwrap();
    assert_eq!(s.get("empty").unwrap().unwrap(), b"");
    assert!(s.contains("a").unwrap());
    assert!(s.delete("a").unwrap());
    assert!(!s.delete("a").unwrap());
    assert!(!s.contains("a").unwrap());
    assert_eq!(s.get("a").unwrap(), None);
    let mut keys = s.keys().unwrap();
    keys.sort();
    assert_eq!(keys, vec![b"b".to_vec(), b"empty".to_vec()]);
    let mut all: Vec<_> = s.iter().map(|r| r.unwrap()).collect();
    all.sort();
    assert_eq!(all[0], (b"b".to_vec(), vec![2u8; 1000]));
    let st = s.stats();
    assert_eq!(st.entries, 2);
    assert_eq!(st.data_bytes, 1 + 1000 + 5);
    assert_eq!(st.puts, 4);
    assert_eq!(st.deletes, 1);
    assert!(st.hits >= 4 && st.misses >= 2, "{st:?}");
    s.clear().unwrap();
    assert_eq!(s.stats().entries, 0);
    assert_eq!(s.stats().bytes_used, 0);
    assert!(s.keys().unwrap().is_empty());
    s.close();
}

#[test]
fn second_handle_sees_data_and_layout() {
    let n = Name::new("reopen");
    let s = Store::connect_with(
        n.as_str(),
        &Options::new(1 << 20, FullPolicy::Refuse).max_entries(100),
    )
    .unwrap();
    s.put("k", "v").unwrap();
    // connect with other parameters opens the existing store as it is.
    let t = Store::connect(n.as_str(), 4 << 20, FullPolicy::EvictLru).unwrap();
    assert_eq!(t.capacity(), s.capacity());
    assert_eq!(t.max_entries(), 100);
    assert_eq!(t.policy(), FullPolicy::Refuse);
    assert_eq!(t.get("k").unwrap().unwrap(), b"v");
    let u = Store::open(n.as_str()).unwrap();
    assert_eq!(u.get("k").unwrap().unwrap(), b"v");
}

#[test]
fn per_key_stats() {
    let n = Name::new("kstats");
    let s = Store::connect(n.as_str(), 1 << 20, FullPolicy::Refuse).unwrap();
    s.put("k", vec![0u8; 77]).unwrap();
    let a = s.key_stats("k").unwrap().unwrap();
    assert_eq!(a.value_size, 77);
    assert_eq!(a.access_count, 0);
    for _ in 0..5 {
        s.get("k").unwrap().unwrap();
    }
    let b = s.key_stats("k").unwrap().unwrap();
    assert_eq!(b.access_count, 5);
    assert!(b.last_access >= a.last_access);
    s.put("k", vec![0u8; 10]).unwrap();
    let c = s.key_stats("k").unwrap().unwrap();
    assert_eq!(c.value_size, 10);
    assert_eq!(c.created_at, a.created_at, "overwrite keeps created_at");
    assert!(c.updated_at >= a.updated_at);
    assert_eq!(s.key_stats("nope").unwrap(), None);
    let e = s.entries().unwrap();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].0, b"k");
}

#[test]
fn memwatch_keys_large_values() {
    let n = Name::new("large");
    let s = Store::connect(n.as_str(), 16 << 20, FullPolicy::EvictLru).unwrap();
    let long_prefix = "x".repeat(110);
    for epoch in 0..8u64 {
        let key = format!("{}/{}", value_key(3, 0xdead_beef, epoch), long_prefix);
        assert!(key.len() >= 128);
        let v = make_value(key.as_bytes(), epoch, 1 << 20);
        s.put(&key, &v).unwrap();
        assert_eq!(check_value(key.as_bytes(), &s.get(&key).unwrap().unwrap()).unwrap(), epoch);
        let r = s.get_ref(&key).unwrap().unwrap();
        assert_eq!(&r[..], &v[..]);
    }
    // vectored put: header + payload without concatenating.
    s.put_vectored("memwatch/0/1/2", &[b"hdr:", &[7u8; 4096]]).unwrap();
    let v = s.get("memwatch/0/1/2").unwrap().unwrap();
    assert_eq!(&v[..4], b"hdr:");
    assert_eq!(v.len(), 4100);
}

#[test]
fn freed_space_is_reused() {
    let n = Name::new("reuse");
    let s = Store::connect(n.as_str(), 1 << 20, FullPolicy::Refuse).unwrap();
    // 200 MB through a 1 MB arena, mixed sizes: only works if space is reused
    // and coalesced.
    let sizes = [100usize, 5000, 64 << 10, 300 << 10, 17, 900 << 10];
    for round in 0..400u64 {
        let sz = sizes[(round % sizes.len() as u64) as usize];
        let key = format!("k{}", round % 3);
        s.delete(&key).unwrap();
        let v = make_value(key.as_bytes(), round, sz.min(300 << 10));
        s.put(&key, &v).unwrap();
        assert_eq!(check_value(key.as_bytes(), &s.get(&key).unwrap().unwrap()).unwrap(), round);
    }
    s.clear().unwrap();
    // After clear the whole arena is one block again: the largest entry fits.
    let big = vec![1u8; s.max_entry_bytes() - 3];
    s.put("big", &big).unwrap();
    assert_eq!(s.get("big").unwrap().unwrap().len(), big.len());
}

#[test]
fn full_refuse_policy() {
    let n = Name::new("refuse");
    let s = Store::connect_with(
        n.as_str(),
        &Options::new(64 << 10, FullPolicy::Refuse).max_entries(1000),
    )
    .unwrap();
    let mut stored = 0;
    let err = loop {
        match s.put(format!("key{stored}"), vec![9u8; 1000]) {
            Ok(()) => stored += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Error::Full { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("store is full"), "{msg}");
    assert!((55..=64).contains(&stored), "{stored}");
    // Nothing was evicted: every stored key is still there.
    for i in 0..stored {
        assert_eq!(s.get(format!("key{i}")).unwrap().unwrap().len(), 1000);
    }
    assert_eq!(s.stats().evictions, 0);
    assert!(s.stats().refusals >= 1);
    // Deleting makes room again.
    s.delete("key0").unwrap();
    s.put("again", vec![1u8; 1000]).unwrap();
    // Entry-count limit refuses as well.
    let m = Name::new("refuse-slots");
    let t =
        Store::connect_with(m.as_str(), &Options::new(1 << 20, FullPolicy::Refuse).max_entries(4))
            .unwrap();
    for i in 0..4 {
        t.put(format!("{i}"), "v").unwrap();
    }
    assert!(matches!(t.put("5", "v"), Err(Error::Full { entries: 4, max_entries: 4, .. })));
    t.put("0", "overwrite is fine").unwrap();
}

#[test]
fn full_evict_lru_policy() {
    let n = Name::new("lru");
    let s = Store::connect_with(
        n.as_str(),
        &Options::new(64 << 10, FullPolicy::EvictLru).max_entries(1000),
    )
    .unwrap();
    // 64 KiB holds exactly 64 entries of 1024-byte blocks.
    for i in 0..40 {
        s.put(format!("key{i}"), vec![i as u8; 1000]).unwrap();
    }
    // Read the oldest ten: they become more recent than key10..key39.
    for i in 0..10 {
        s.get(format!("key{i}")).unwrap().unwrap();
    }
    for i in 40..71 {
        s.put(format!("key{i}"), vec![i as u8; 1000]).unwrap();
    }
    let st = s.stats();
    assert!(st.evictions >= 7 && st.evictions <= 8, "{st:?}");
    for i in 0..10 {
        assert!(s.contains(format!("key{i}")).unwrap(), "key{i} was recently used");
    }
    assert!(!s.contains("key10").unwrap());
    for i in 20..71 {
        assert_eq!(s.get(format!("key{i}")).unwrap().unwrap(), vec![i as u8; 1000]);
    }
    // Entry-count limit evicts too.
    let m = Name::new("lru-slots");
    let t = Store::connect_with(
        m.as_str(),
        &Options::new(1 << 20, FullPolicy::EvictLru).max_entries(3),
    )
    .unwrap();
    for i in 0..10 {
        t.put(format!("{i}"), "v").unwrap();
    }
    assert_eq!(t.stats().entries, 3);
    let mut k = t.keys().unwrap();
    k.sort();
    assert_eq!(k, vec![b"7".to_vec(), b"8".to_vec(), b"9".to_vec()]);
}

#[test]
fn oversize_key_and_value() {
    let n = Name::new("oversize");
    let s = Store::connect_with(
        n.as_str(),
        &Options::new(64 << 10, FullPolicy::EvictLru).max_key_len(200),
    )
    .unwrap();
    let e = s.put("k".repeat(201), "v").unwrap_err();
    assert_eq!(e, Error::KeyTooLong { len: 201, max: 200 });
    assert!(e.to_string().contains("longer than this store's limit of 200"));
    s.put("k".repeat(200), "v").unwrap();
    assert_eq!(s.get("k".repeat(201)).unwrap_err(), Error::KeyTooLong { len: 201, max: 200 });
    assert_eq!(s.put("", "v").unwrap_err(), Error::EmptyKey);
    let e = s.put("big", vec![0u8; 65 << 10]).unwrap_err();
    assert!(matches!(e, Error::ValueTooLarge { .. }), "{e}");
    assert!(e.to_string().contains("can never fit"));
    // Exactly the maximum fits (evicting everything else).
    s.put("max", vec![0u8; s.max_entry_bytes() - 3]).unwrap();
    assert_eq!(s.stats().entries, 1);
}

#[test]
fn names_and_missing_stores() {
    for bad in ["", "a/b", "..", "has space", "ü"] {
        let e = Store::connect(bad, 1 << 20, FullPolicy::Refuse).unwrap_err();
        assert!(matches!(e, Error::InvalidName { .. }), "{bad:?}: {e}");
    }
    let e = Store::open("mwtest-does-not-exist-12345").unwrap_err();
    assert!(matches!(e, Error::NotFound(_)));
    assert!(e.to_string().contains("no store named"));
    assert!(matches!(Store::unlink("mwtest-does-not-exist-12345"), Err(Error::NotFound(_))));
    let n = Name::new("opts");
    assert!(matches!(
        Store::connect(n.as_str(), 10, FullPolicy::Refuse),
        Err(Error::InvalidOptions(_))
    ));
    let e =
        Store::connect_with(n.as_str(), &Options::new(1 << 20, FullPolicy::Refuse).max_entries(0))
            .unwrap_err();
    assert!(e.to_string().contains("max_entries"), "{e}");
}

#[test]
fn segment_is_private() {
    let n = Name::new("mode");
    let _s = Store::connect(n.as_str(), 1 << 20, FullPolicy::Refuse).unwrap();
    let meta = std::fs::metadata(format!("/dev/shm/{}", n.as_str())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
}

#[test]
fn zero_copy_guard_pins_value() {
    let n = Name::new("pin");
    let s = Store::connect(n.as_str(), 1 << 20, FullPolicy::Refuse).unwrap();
    s.put("k", vec![1u8; 5000]).unwrap();
    let g = s.get_ref("k").unwrap().unwrap();
    assert!(g.is_current());
    // Overwrite, delete and churn: the borrowed bytes must not change.
    s.put("k", vec![2u8; 5000]).unwrap();
    assert!(!g.is_current());
    s.delete("k").unwrap();
    for i in 0..200 {
        s.put(format!("churn{}", i % 7), vec![3u8; 5000]).unwrap();
    }
    assert!(g.iter().all(|&b| b == 1), "pinned bytes changed");
    let used_while_pinned = s.stats().bytes_used;
    drop(g);
    s.put("trigger", "x").unwrap(); // next writer frees the retired block
    assert!(s.stats().bytes_used < used_while_pinned);
    assert!(s.get_ref("missing").unwrap().is_none());
    // Many guards at once, then all released.
    s.put("k", vec![4u8; 100]).unwrap();
    let guards: Vec<_> = (0..100).map(|_| s.get_ref("k").unwrap().unwrap()).collect();
    assert!(guards.iter().all(|g| g.len() == 100));
    drop(guards);
    let many: Vec<_> = (0..256).map(|_| s.get_ref("k").unwrap().unwrap()).collect();
    assert!(matches!(s.get_ref("k"), Err(Error::TooManyPins(256))));
    drop(many);
    assert!(s.get_ref("k").unwrap().is_some());
}

#[test]
fn repair_is_idempotent() {
    let n = Name::new("repair");
    let s = Store::connect(n.as_str(), 1 << 20, FullPolicy::EvictLru).unwrap();
    for i in 0..300 {
        let k = format!("k{i}");
        s.put(&k, make_value(k.as_bytes(), i, 100 + i as usize * 7)).unwrap();
    }
    for i in (0..300).step_by(3) {
        s.delete(format!("k{i}")).unwrap();
    }
    let before = s.stats();
    let after = s.repair().unwrap();
    assert_eq!(before.entries, after.entries);
    assert_eq!(before.bytes_used, after.bytes_used);
    assert_eq!(before.data_bytes, after.data_bytes);
    for i in 0..300u64 {
        let k = format!("k{i}");
        match s.get(&k).unwrap() {
            Some(v) => assert_eq!(check_value(k.as_bytes(), &v).unwrap(), i),
            None => assert_eq!(i % 3, 0),
        }
    }
}

#[test]
fn threads_share_a_handle() {
    let n = Name::new("threads");
    let s = Store::connect(n.as_str(), 8 << 20, FullPolicy::Refuse).unwrap();
    std::thread::scope(|sc| {
        for t in 0..4u64 {
            let s = &s;
            sc.spawn(move || {
                for i in 0..2000u64 {
                    let k = format!("t{t}-{}", i % 50);
                    s.put(&k, make_value(k.as_bytes(), i, 64 + (i % 300) as usize)).unwrap();
                    let shared = format!("shared-{}", i % 10);
                    if i % 2 == 0 {
                        s.put(&shared, make_value(shared.as_bytes(), i, 200)).unwrap();
                    }
                    if let Some(v) = s.get(&shared).unwrap() {
                        check_value(shared.as_bytes(), &v).unwrap();
                    }
                    let got = s.get(&k).unwrap();
                    let got = got.unwrap_or_else(|| {
                        panic!(
                            "own key {k} missing after put; contains={:?} keys={}",
                            s.contains(&k),
                            s.keys().unwrap().len()
                        )
                    });
                    assert_eq!(check_value(k.as_bytes(), &got).unwrap(), i);
                }
            });
        }
    });
    assert_eq!(s.stats().entries, 4 * 50 + 5); // shared-{even}
}

#[test]
fn panic_while_locked_is_repaired() {
    let n = Name::new("panic");
    let s = Store::connect(n.as_str(), 1 << 20, FullPolicy::Refuse).unwrap();
    for i in 0..100 {
        s.put(format!("k{i}"), format!("v{i}")).unwrap();
    }
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.__panic_while_locked()));
    assert!(r.is_err());
    s.put("after", "panic").unwrap(); // the next locker repairs
    assert_eq!(s.stats().recoveries, 1);
    for i in 0..100 {
        assert_eq!(s.get(format!("k{i}")).unwrap().unwrap(), format!("v{i}").as_bytes());
    }
    assert_eq!(s.stats().entries, 101);
}

#[test]
fn try_put_does_not_wait() {
    let n = Name::new("tryput");
    let s = Store::connect(n.as_str(), 1 << 20, FullPolicy::Refuse).unwrap();
    assert!(s.try_put("a", "1").unwrap());
    s.__with_lock(|| {
        std::thread::scope(|sc| {
            sc.spawn(|| {
                assert!(!s.try_put("b", "2").unwrap(), "lock is held: must not store");
                // Readers are not blocked by a writer.
                assert_eq!(s.get("a").unwrap().unwrap(), b"1");
            });
        });
    })
    .unwrap();
    assert!(!s.contains("b").unwrap());
    assert!(s.try_put("b", "2").unwrap());
    assert_eq!(s.get("b").unwrap().unwrap(), b"2");
    assert!(matches!(s.try_put("", "x"), Err(Error::EmptyKey)));
}

#[test]
fn a_key_being_replaced_is_never_missing_to_readers() {
    // One thread keeps replacing the values of keys that always exist (sizes
    // alternate, so blocks move); readers must find every key every time,
    // with one of its two versions.
    let n = Name::new("replace");
    let s = Store::connect(n.as_str(), 8 << 20, FullPolicy::Refuse).unwrap();
    let keys: Vec<String> = (0..64).map(|i| format!("k{i}")).collect();
    let v = |k: usize, version: usize| {
        vec![(k + version) as u8; if version % 2 == 0 { 40 } else { 300 }]
    };
    for (i, k) in keys.iter().enumerate() {
        s.put(k, v(i, 0)).unwrap();
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            for round in 1..=400 {
                for (i, k) in keys.iter().enumerate() {
                    s.put(k, v(i, round)).unwrap();
                }
            }
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let readers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut reads = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        for (i, k) in keys.iter().enumerate() {
                            let got = s
                                .get(k)
                                .unwrap()
                                .unwrap_or_else(|| panic!("{k} missing after {reads} reads"));
                            assert!(
                                got.iter().all(|&b| b == got[0])
                                    && (got.len() == 40 || got.len() == 300),
                                "{k}: torn value"
                            );
                            assert_eq!(
                                (got[0] as usize + 256 - i) % 2,
                                if got.len() == 40 { 0 } else { 1 },
                                "{k}: wrong version"
                            );
                            reads += 1;
                        }
                    }
                    reads
                })
            })
            .collect();
        writer.join().unwrap();
        for r in readers {
            assert!(r.join().unwrap() > 0);
        }
    });
}
