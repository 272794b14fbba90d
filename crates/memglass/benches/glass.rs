//! memglass benchmarks, printed as a table (one run):
//!     cargo bench -p memglass --bench glass
//! - producer cost: seqlock field update and atomic field update vs a plain store;
//! - observer cost: read of one field, snapshot of a 64-field object;
//! - end to end: producer write (another process) -> observer change event,
//!   p50/p99, vs the same updates sent over a Unix socket.

use memglass::{
    FieldDesc, Observe, Observer, ObserverOptions, Primitive, Producer, ProducerOptions, Seqlock,
    TypeDesc,
};
use std::hint::black_box;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Observe, Clone, Copy, Default)]
#[repr(C)]
struct Pair {
    a: u64,
    b: u64,
}

#[derive(Observe)]
#[repr(C)]
struct Hot {
    plain: u64,
    atomic: AtomicU64,
    guarded: Seqlock<Pair>,
    /// CLOCK_REALTIME ns of the last write (the latency probe).
    stamp: AtomicU64,
}

fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn per_op(n: u64, f: impl FnMut(u64)) -> f64 {
    let mut f = f;
    let t = Instant::now();
    for i in 0..n {
        f(i);
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

fn pct(v: &mut [u64], p: f64) -> f64 {
    v.sort_unstable();
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)] as f64 / 1000.0
}

const UPDATES: u64 = 2000;
const PERIOD: Duration = Duration::from_micros(500);

/// Child: writes `stamp` UPDATES times (memglass) or sends it on the socket.
fn child(mode: &str, arg: &str) {
    if mode == "glass" {
        let p = Producer::init(arg, ProducerOptions::default()).unwrap();
        let h = p.create::<Hot>("hot").unwrap();
        std::thread::sleep(Duration::from_millis(300)); // observer connects
        for _ in 0..UPDATES {
            h.stamp.store(now_ns(), Ordering::Release);
            std::thread::sleep(PERIOD);
        }
        std::thread::sleep(Duration::from_millis(200));
        drop(h);
        p.shutdown().unwrap();
    } else {
        let mut s = UnixStream::connect(arg).unwrap();
        for _ in 0..UPDATES {
            s.write_all(&now_ns().to_ne_bytes()).unwrap();
            std::thread::sleep(PERIOD);
        }
    }
}

fn main() {
    if let Ok(mode) = std::env::var("GLASS_BENCH_CHILD") {
        return child(&mode, &std::env::var("GLASS_BENCH_ARG").unwrap());
    }
    let dir: PathBuf = std::env::temp_dir().join(format!("memglass-bench-{}", std::process::id()));
    std::env::set_var("MEMGLASS_DIR", &dir);
    let mut rows: Vec<(String, String, String)> = Vec::new();

    // Producer cost.
    let p = Producer::init("bench", ProducerOptions::default()).unwrap();
    let mut h = p.create::<Hot>("hot").unwrap();
    let n = 20_000_000;
    let plain = per_op(n, |i| {
        // SAFETY: our own field; volatile so the loop is not folded away.
        unsafe { std::ptr::write_volatile(&mut h.plain, i) }
    });
    let atomic = per_op(n, |i| h.atomic.store(i, Ordering::Release));
    let seq = per_op(n, |i| h.guarded.write(Pair { a: i, b: i }));
    rows.push(("plain store (u64, volatile)".into(), format!("{plain:.2} ns"), "1.00x".into()));
    rows.push((
        "atomic field update (release store)".into(),
        format!("{atomic:.2} ns"),
        format!("{:.2}x", atomic / plain),
    ));
    rows.push((
        "seqlock field update (16 bytes)".into(),
        format!("{seq:.2} ns"),
        format!("{:.2}x", seq / plain),
    ));

    // Observer cost (its own read-only mapping of the segments).
    let mut fields = Vec::new();
    for i in 0..64 {
        fields.push(FieldDesc::new(&format!("f{i}"), i * 8, Primitive::F64));
    }
    let t =
        p.register_type(&TypeDesc { name: "Wide".into(), size: 512, align: 8, fields }).unwrap();
    let _wide = p.create_raw(t, "wide", 1).unwrap();
    let o = Observer::connect_with("bench", &ObserverOptions::default()).unwrap();
    let hot = o.find("hot").unwrap();
    let wide = o.find("wide").unwrap();
    let n = 1_000_000;
    let r1 = per_op(n, |_| {
        black_box(o.read(&hot, "guarded.a").unwrap());
    });
    let r2 = per_op(n, |_| {
        black_box(o.read(&wide, "f17").unwrap());
    });
    let n = 100_000;
    let snap = per_op(n, |_| {
        black_box(o.snapshot(&wide).unwrap());
    });
    rows.push(("observer read, one seqlock field".into(), format!("{r1:.0} ns"), String::new()));
    rows.push(("observer read, one plain f64 field".into(), format!("{r2:.0} ns"), String::new()));
    rows.push((
        "observer snapshot, 64-field object".into(),
        format!("{:.2} us", snap / 1000.0),
        String::new(),
    ));
    drop(h);
    drop(o);
    p.shutdown().unwrap();

    // End to end: another process writes, we wait for the change event.
    let me = std::env::current_exe().unwrap();
    let mut c = Command::new(&me)
        .env("GLASS_BENCH_CHILD", "glass")
        .env("GLASS_BENCH_ARG", "e2e")
        .spawn()
        .unwrap();
    let mut o = loop {
        match Observer::connect("e2e") {
            Ok(o) if o.find("hot").is_some() => break o,
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    o.changes().unwrap();
    let mut lat = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    while (lat.len() as u64) < UPDATES && Instant::now() < end {
        for e in o.changes().unwrap() {
            if let memglass::ChangeKind::Field { path, new, .. } = &e.kind {
                if path == "stamp" {
                    if let memglass::Value::UInt(s) = new {
                        lat.push(now_ns().saturating_sub(*s));
                    }
                }
            }
        }
    }
    c.wait().unwrap();
    let (g50, g99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
    let seen = lat.len();

    let sock = dir.join("bench.sock");
    std::fs::create_dir_all(&dir).unwrap();
    let _ = std::fs::remove_file(&sock);
    let l = UnixListener::bind(&sock).unwrap();
    let mut c = Command::new(&me)
        .env("GLASS_BENCH_CHILD", "socket")
        .env("GLASS_BENCH_ARG", &sock)
        .spawn()
        .unwrap();
    let (mut s, _) = l.accept().unwrap();
    let mut ulat = Vec::new();
    let mut b = [0u8; 8];
    while s.read_exact(&mut b).is_ok() {
        ulat.push(now_ns().saturating_sub(u64::from_ne_bytes(b)));
    }
    c.wait().unwrap();
    let (u50, u99) = (pct(&mut ulat, 0.5), pct(&mut ulat, 0.99));
    rows.push((
        format!("write -> change event, other process ({seen}/{UPDATES} updates seen)"),
        format!("p50 {g50:.1} us, p99 {g99:.1} us"),
        String::new(),
    ));
    rows.push((
        format!("same updates over a Unix socket ({} received)", ulat.len()),
        format!("p50 {u50:.1} us, p99 {u99:.1} us"),
        format!("memglass p50 {:.1}x the socket's", g50 / u50),
    ));
    let _ = std::fs::remove_dir_all(&dir);

    println!("| benchmark | measured | ratio |");
    println!("|---|---|---|");
    for (a, b, c) in rows {
        println!("| {a} | {b} | {c} |");
    }
}
