//! Bad segments: wrong magic, wrong version, truncated, scribbled header, and
//! fuzzing (arbitrary bytes as a segment; random damage to a live store).
//! Every case must give a clear error or keep working; never a crash or hang.

mod common;
use common::*;
use memwatch_store::{Error, FullPolicy, Options, Store, LAYOUT_VERSION};
use std::time::{Duration, Instant};

/// Fuzz seed: MW_FUZZ_SEED (for longer campaigns) mixed into the default.
fn seed(default: u64) -> u64 {
    let s = std::env::var("MW_FUZZ_SEED").ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (default ^ s.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1
}

/// Fuzz rounds: MW_FUZZ_ROUNDS overrides the default.
fn rounds(default: u32) -> u32 {
    std::env::var("MW_FUZZ_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn shm_path(name: &str) -> String {
    format!("/dev/shm/{name}")
}

fn write_segment(name: &str, bytes: &[u8]) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(shm_path(name))
        .unwrap();
    std::io::Write::write_all(&mut f, bytes).unwrap();
}

fn patch(name: &str, off: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(shm_path(name)).unwrap();
    f.write_all_at(bytes, off).unwrap();
}

fn make_store(name: &str) -> Store {
    let s =
        Store::connect_with(name, &Options::new(256 << 10, FullPolicy::EvictLru).max_entries(512))
            .unwrap();
    for i in 0..200u64 {
        let k = format!("key{i}");
        s.put(&k, make_value(k.as_bytes(), i, 24 + (i as usize * 37) % 1500)).unwrap();
    }
    s
}

#[test]
fn wrong_magic() {
    let n = Name::new("magic");
    drop(make_store(n.as_str()));
    patch(n.as_str(), 0, b"NOTMINE!");
    let e = Store::open(n.as_str()).unwrap_err();
    assert!(matches!(e, Error::BadMagic { .. }), "{e}");
    assert!(e.to_string().contains("is not a memwatch store"), "{e}");
    // connect does not overwrite someone else's segment either.
    let e = Store::connect(n.as_str(), 1 << 20, FullPolicy::Refuse).unwrap_err();
    assert!(matches!(e, Error::BadMagic { .. }), "{e}");
}

#[test]
fn wrong_version() {
    let n = Name::new("version");
    drop(make_store(n.as_str()));
    patch(n.as_str(), 8, &999u32.to_le_bytes());
    let e = Store::open(n.as_str()).unwrap_err();
    assert_eq!(
        e,
        Error::VersionMismatch { name: n.0.clone(), found: 999, expected: LAYOUT_VERSION }
    );
    assert!(e.to_string().contains("layout version 999"), "{e}");
}

#[test]
fn truncated() {
    let n = Name::new("trunc");
    let full = make_store(n.as_str());
    let size = std::fs::metadata(shm_path(n.as_str())).unwrap().len();
    drop(full);
    for cut in [size - 4096, size / 2, 8192, 4096, 100, 12, 3] {
        let f = std::fs::OpenOptions::new().write(true).open(shm_path(n.as_str())).unwrap();
        f.set_len(cut).unwrap();
        drop(f);
        let e = Store::open(n.as_str()).unwrap_err();
        match e {
            Error::Truncated { size: s, .. } => assert_eq!(s, cut),
            Error::BadMagic { .. } if cut < 8 => {}
            ref other => panic!("cut to {cut}: unexpected {other}"),
        }
        assert!(!e.to_string().is_empty());
    }
    // A zero-length segment is "never initialized".
    let f = std::fs::OpenOptions::new().write(true).open(shm_path(n.as_str())).unwrap();
    f.set_len(0).unwrap();
    let t = Instant::now();
    assert!(matches!(Store::open(n.as_str()), Err(Error::NotInitialized(_))));
    assert!(t.elapsed() < Duration::from_secs(5));
    // ...and connect initializes it.
    let s = Store::connect(n.as_str(), 1 << 20, FullPolicy::Refuse).unwrap();
    s.put("k", "v").unwrap();
}

#[test]
fn scribbled_header_fields() {
    let n = Name::new("hdr");
    drop(make_store(n.as_str()));
    let orig = std::fs::read(shm_path(n.as_str())).unwrap();
    // Every byte of the layout fields (after magic+version, up to the
    // creation time) and of their checksum, one at a time.
    for off in (12..80u64).chain(88..96) {
        let mut bad = orig[off as usize];
        bad ^= 0x5a;
        patch(n.as_str(), off, &[bad]);
        let e = Store::open(n.as_str()).unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }), "byte {off}: {e}");
        patch(n.as_str(), off, &orig[off as usize..off as usize + 1]);
    }
    Store::open(n.as_str()).unwrap();
}

#[test]
fn fuzz_arbitrary_bytes_as_segment() {
    let n = Name::new("fuzzbytes");
    let mut rng = seed(0x9E37_79B9_7F4A_7C15);
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let good = {
        let s = make_store(n.as_str());
        drop(s);
        std::fs::read(shm_path(n.as_str())).unwrap()
    };
    let mut opened = 0;
    for round in 0..rounds(300) {
        let len = match round % 4 {
            0 => 1 + (next() % 64) as usize, // (empty: see `truncated`)
            1 => (next() % 20000) as usize,
            _ => good.len(),
        };
        let mut bytes = vec![0u8; len];
        for chunk in bytes.chunks_mut(8) {
            let r = next().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
        // Half the time keep a valid magic/version so the layout checks run;
        // sometimes the whole valid header (layout, checksum and the writer
        // mutex: a damaged mutex word makes writers time out after 10 s with
        // LockTimeout, too slow for this loop) with random data after it, so
        // the store opens and its readers, writers and repair meet garbage.
        if round % 2 == 0 && len >= 16 {
            let keep = match next() % 3 {
                0 => 16 + (next() % 80) as usize,
                1 => 192,
                _ => 4096,
            };
            let keep = keep.min(len);
            bytes[..keep].copy_from_slice(&good[..keep]);
        }
        write_segment(n.as_str(), &bytes);
        match Store::open(n.as_str()) {
            Err(e) => assert!(!e.to_string().is_empty()),
            Ok(s) => {
                opened += 1;
                // Valid header, garbage body: operations must not crash.
                let _ = s.get("key1");
                let _ = s.put("x", "y");
                let _ = s.get_ref("x");
                let _ = s.delete("key2");
                let _ = s.keys();
                let _ = s.stats();
            }
        }
    }
    assert!(opened > 10, "only {opened} segments got past the header checks");
}

#[test]
fn fuzz_damaged_live_store() {
    // Random bytes flipped anywhere after the writer mutex (index, slots,
    // pins, allocator state, arena); every operation must return a result,
    // and values returned for our keys must be ours (or an error/None).
    let n = Name::new("fuzzlive");
    let mut rng = seed(0xD1B5_4A32_D192_ED03);
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let t0 = Instant::now();
    for round in 0..rounds(60) {
        let s = make_store(n.as_str());
        let size = std::fs::metadata(shm_path(n.as_str())).unwrap().len();
        let hsize = 192u64; // magic, layout fields and the mutex stay intact
        for _ in 0..(1 + next() % 200) {
            let off = hsize + next() % (size - hsize);
            let val = if next() % 4 == 0 { 0xff } else { next() as u8 };
            patch(n.as_str(), off, &[val]);
        }
        for i in 0..300u64 {
            let k = format!("key{}", next() % 220);
            match next() % 6 {
                0 => {
                    let _ = s
                        .put(&k, make_value(k.as_bytes(), 1000 + i, 24 + (next() % 3000) as usize));
                }
                1 => {
                    let _ = s.delete(&k);
                }
                2 => {
                    if let Ok(Some(g)) = s.get_ref(&k) {
                        let _ = g.len();
                    }
                }
                3 if i % 50 == 0 => {
                    let _ = s.keys();
                    let _ = s.iter().count();
                    let _ = s.entries();
                }
                _ => {
                    if let Ok(Some(v)) = s.get(&k) {
                        // Damaged arena bytes may damage values (the store has no
                        // per-value checksum), but never cause a crash.
                        let _ = check_value(k.as_bytes(), &v);
                    }
                }
            }
        }
        let _ = s.stats();
        // After a repair the store is fully usable again.
        s.repair().unwrap();
        s.put("after", "repair").unwrap();
        assert_eq!(s.get("after").unwrap().unwrap(), b"repair");
        drop(s);
        Store::unlink(n.as_str()).unwrap();
        if round == 0 {
            eprintln!("first round took {:?}", t0.elapsed());
        }
    }
    assert!(t0.elapsed() < Duration::from_secs(60) || rounds(60) > 60);
}

#[test]
fn fuzz_repair_after_random_damage_keeps_clean_entries() {
    // Damage only the derived structures (index, allocator state): after
    // repair every entry is back and intact.
    let n = Name::new("fuzzderived");
    let s = make_store(n.as_str());
    let before = s.stats();
    // Bucket array lies between the pin records and the slots.
    let (buckets_off, buckets_len) = s.__buckets();
    let mut rng = 7u64;
    for _ in 0..100 {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let off = buckets_off + (rng >> 33) % buckets_len;
        patch(n.as_str(), off, &[(rng >> 20) as u8]);
    }
    let after = s.repair().unwrap();
    assert_eq!(before.entries, after.entries);
    for i in 0..200u64 {
        let k = format!("key{i}");
        if let Some(v) = s.get(&k).unwrap() {
            assert_eq!(check_value(k.as_bytes(), &v).unwrap(), i);
        }
    }
    assert_eq!(s.keys().unwrap().len() as u64, before.entries);
}
