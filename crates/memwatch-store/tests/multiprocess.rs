//! Many processes on one store: concurrent puts/gets with verified values, and
//! a writer SIGKILLed 100 times in the middle of its work.
//!
//! Children are this test binary run again with `MW_ROLE` set; the `child`
//! test below dispatches on it and is a no-op otherwise.

mod common;
use common::*;
use memwatch_store::{FullPolicy, Options, Store};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn spawn(role: &str, store: &str, id: u32, extra: &[(&str, String)]) -> Child {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", "child", "--nocapture", "--test-threads=1", "-q"])
        .env("MW_ROLE", role)
        .env("MW_STORE", store)
        .env("MW_ID", id.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in extra {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

fn env_u64(k: &str, d: u64) -> u64 {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

/// Small deterministic PRNG (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

const SHARED_KEYS: u64 = 16;

#[test]
fn child() {
    let Ok(role) = std::env::var("MW_ROLE") else { return };
    let name = std::env::var("MW_STORE").unwrap();
    let id = env_u64("MW_ID", 0);
    let store = Store::open(&name).unwrap();
    let mut rng = Rng(0x1234_5678 ^ ((id + 1) * 0x9E37_79B9) ^ std::process::id() as u64);
    match role.as_str() {
        // Fixed number of ops on own and shared keys; every value verified.
        "mixed" => {
            let ops = env_u64("MW_OPS", 3000);
            let mut versions = vec![0u64; 64];
            for op in 1..=ops {
                let k = (rng.next() % 64) as usize;
                let own = format!("p{id}/own/{k}");
                let len = 16 + (rng.next() % 2048) as usize;
                store.put(&own, make_value(own.as_bytes(), op, len)).unwrap();
                versions[k] = op;
                let k2 = (rng.next() % 64) as usize;
                let own2 = format!("p{id}/own/{k2}");
                match store.get(&own2).unwrap() {
                    Some(v) => assert_eq!(
                        check_value(own2.as_bytes(), &v).unwrap(),
                        versions[k2],
                        "{own2}"
                    ),
                    None => assert_eq!(versions[k2], 0, "{own2} lost"),
                }
                let sk = format!("shared/{}", rng.next() % SHARED_KEYS);
                if rng.next() % 3 == 0 {
                    store
                        .put(
                            &sk,
                            make_value(
                                sk.as_bytes(),
                                id << 32 | op,
                                100 + (rng.next() % 4000) as usize,
                            ),
                        )
                        .unwrap();
                } else if let Some(v) = store.get(&sk).unwrap() {
                    check_value(sk.as_bytes(), &v).unwrap();
                }
                if op % 50 == 0 {
                    if let Some(g) = store.get_ref(&sk).unwrap() {
                        let copy = g.to_vec();
                        check_value(sk.as_bytes(), &g).unwrap();
                        std::thread::yield_now();
                        assert_eq!(&g[..], &copy[..], "pinned bytes changed");
                    }
                }
            }
            // Final check of everything this process owns.
            for (k, &ver) in versions.iter().enumerate() {
                let own = format!("p{id}/own/{k}");
                match store.get(&own).unwrap() {
                    Some(v) => assert_eq!(check_value(own.as_bytes(), &v).unwrap(), ver),
                    None => assert_eq!(ver, 0),
                }
            }
        }
        // Runs until the key "stop" exists; fails if any operation takes
        // longer than 1 s (the store must stay usable while writers die).
        "survivor" => {
            let mut op = 0u64;
            let mut worst = Duration::ZERO;
            let mut seen = 0u64;
            let own = format!("s{id}/own");
            loop {
                op += 1;
                let t = Instant::now();
                store.put(&own, make_value(own.as_bytes(), op, 64 + (op % 500) as usize)).unwrap();
                let v = store.get(&own).unwrap().expect("own key present");
                assert_eq!(check_value(own.as_bytes(), &v).unwrap(), op);
                let sk = format!("shared/{}", rng.next() % SHARED_KEYS);
                if let Some(v) = store.get(&sk).unwrap() {
                    check_value(sk.as_bytes(), &v).unwrap();
                    seen += 1;
                }
                if op % 64 == 0 {
                    if let Some(g) = store.get_ref(&sk).unwrap() {
                        check_value(sk.as_bytes(), &g).unwrap();
                    }
                }
                worst = worst.max(t.elapsed());
                assert!(worst < Duration::from_secs(1), "operation blocked for {worst:?}");
                if op % 16 == 0 && store.contains("stop").unwrap() {
                    break;
                }
            }
            eprintln!(
                "survivor {id}: {op} rounds, {seen} shared reads verified, worst op {worst:?}"
            );
        }
        // Writes big values to the shared keys as fast as it can until killed.
        "victim" => {
            if env_u64("MW_HOLD", 0) == 1 {
                // Die while holding the lock, at rest.
                store.__lock_and_leak().unwrap();
                std::fs::write(std::env::var("MW_READY").unwrap(), b"1").unwrap();
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            // Precomputed values so that nearly all of the time goes to puts
            // (mostly inside the writer lock: allocation, copy, publish).
            let values: Vec<(String, Vec<u8>)> = (0..SHARED_KEYS)
                .map(|k| {
                    let sk = format!("shared/{k}");
                    let len = 1000 + (rng.next() % (96 << 10)) as usize;
                    let v = make_value(sk.as_bytes(), 1 << 48 | id << 8 | k, len);
                    (sk, v)
                })
                .collect();
            store.put(&values[0].0, &values[0].1).unwrap();
            std::fs::write(std::env::var("MW_READY").unwrap(), b"1").unwrap();
            let mut op = 0u64;
            loop {
                op += 1;
                let (sk, v) = &values[(rng.next() % SHARED_KEYS) as usize];
                store.put(sk, v).unwrap();
                if op % 7 == 0 {
                    store.delete(format!("shared/{}", rng.next() % SHARED_KEYS)).unwrap();
                }
            }
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn processes_share_disjoint_and_shared_keys() {
    let n = Name::new("mp");
    let store = Store::connect_with(
        n.as_str(),
        &Options::new(32 << 20, FullPolicy::Refuse).max_entries(4096),
    )
    .unwrap();
    let kids: Vec<Child> =
        (0..4).map(|id| spawn("mixed", n.as_str(), id, &[("MW_OPS", "3000".into())])).collect();
    // The parent reads along, verifying every shared value it sees.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut reads = 0;
    let mut kids = kids;
    while kids.iter_mut().any(|c| c.try_wait().unwrap().is_none()) {
        for k in 0..SHARED_KEYS {
            let sk = format!("shared/{k}");
            if let Some(v) = store.get(&sk).unwrap() {
                check_value(sk.as_bytes(), &v).unwrap();
                reads += 1;
            }
        }
        assert!(Instant::now() < deadline, "children did not finish");
    }
    for mut c in kids {
        assert!(c.wait().unwrap().success(), "a child failed (see its output above)");
    }
    let st = store.stats();
    assert_eq!(st.entries, 4 * 64 + SHARED_KEYS, "{st:?}");
    assert!(st.hits > 20_000, "{st:?}");
    assert_eq!(st.recoveries, 0);
    // Every key holds a valid value; iteration agrees with get.
    let mut count = 0;
    for r in store.iter() {
        let (k, v) = r.unwrap();
        check_value(&k, &v).unwrap();
        count += 1;
    }
    assert_eq!(count, st.entries);
    eprintln!("parent verified {reads} shared reads; {st:?}");
}

#[test]
fn sigkill_writer_100_times() {
    let n = Name::new("kill");
    let store = Store::connect_with(
        n.as_str(),
        &Options::new(8 << 20, FullPolicy::EvictLru).max_entries(1024),
    )
    .unwrap();
    for k in 0..SHARED_KEYS {
        let sk = format!("shared/{k}");
        store.put(&sk, make_value(sk.as_bytes(), 0, 100)).unwrap();
    }
    let mut survivors: Vec<Child> =
        (0..2).map(|id| spawn("survivor", n.as_str(), id, &[])).collect();
    let ready = std::env::temp_dir().join(format!("mwtest-ready-{}", std::process::id()));
    let mut rng = Rng(42);
    let mut worst_recovery = Duration::ZERO;
    let mut recovery_times = Vec::new();
    for round in 0..100u32 {
        let hold = round % 10 == 9;
        let _ = std::fs::remove_file(&ready);
        let mut victim = spawn(
            "victim",
            n.as_str(),
            100 + round,
            &[("MW_HOLD", (hold as u8).to_string()), ("MW_READY", ready.display().to_string())],
        );
        let t = Instant::now();
        while !ready.exists() {
            assert!(t.elapsed() < Duration::from_secs(10), "victim never started");
            std::thread::sleep(Duration::from_micros(200));
        }
        if !hold {
            // Kill at a random moment of its put/delete loop.
            std::thread::sleep(Duration::from_micros(rng.next() % 3000));
        }
        // SAFETY: sending SIGKILL to our own child process by its pid.
        unsafe { libc::kill(victim.id() as libc::pid_t, libc::SIGKILL) };
        victim.wait().unwrap();
        // The store must be usable by us within 1 s.
        let t = Instant::now();
        let k = format!("parent/{round}");
        store.put(&k, make_value(k.as_bytes(), round as u64, 300)).unwrap();
        assert_eq!(
            check_value(k.as_bytes(), &store.get(&k).unwrap().unwrap()).unwrap(),
            round as u64
        );
        let took = t.elapsed();
        worst_recovery = worst_recovery.max(took);
        recovery_times.push(took);
        assert!(
            took < Duration::from_secs(1),
            "round {round}: store unusable for {took:?} after SIGKILL"
        );
        for j in 0..SHARED_KEYS {
            let sk = format!("shared/{j}");
            if let Some(v) = store.get(&sk).unwrap() {
                check_value(sk.as_bytes(), &v).unwrap_or_else(|e| panic!("round {round}: {e}"));
            }
        }
        for s in survivors.iter_mut() {
            assert!(s.try_wait().unwrap().is_none(), "a survivor died (see its output above)");
        }
    }
    store.put("stop", "1").unwrap();
    for mut s in survivors.drain(..) {
        assert!(s.wait().unwrap().success(), "a survivor failed");
    }
    let _ = std::fs::remove_file(&ready);
    // Everything left is intact and consistent after a final repair pass.
    let before = store.stats();
    let after = store.repair().unwrap();
    assert_eq!(before.entries, after.entries, "{before:?} vs {after:?}");
    assert_eq!(before.bytes_used, after.bytes_used, "{before:?} vs {after:?}");
    for r in store.iter() {
        let (k, v) = r.unwrap();
        if k != b"stop" {
            check_value(&k, &v).unwrap();
        }
    }
    assert!(after.recoveries >= 10, "only {} recoveries: {after:?}", after.recoveries);
    recovery_times.sort();
    eprintln!(
        "100 kills: {} recoveries (kills inside the lock), time to usable: median {:?}, worst {worst_recovery:?}; {after:?}",
        after.recoveries,
        recovery_times[50]
    );
}
