//! Throughput and latency of get and put from Rust, in 1..N processes.
//!
//! ```text
//! cargo run --release -p memwatch-store --example store_bench -- [--procs 4] [--ops 1000000] [--value-size 100] [--keys 10000]
//! ```
//!
//! Workers start together (at an agreed wall-clock time); ops/s is all
//! operations over the span from the first start to the last end, measured
//! on an untimed pass; latency percentiles come from a second, timed pass.
//! Prints one JSON line per (op, procs):
//! `{"client":"rust","op":"get","procs":4,"ops_per_s":...,"p50_ns":...,"p99_ns":...}`.
//! Worker processes are this binary run again with `STORE_BENCH_CHILD` set.

use memwatch_store::{FullPolicy, Options, Store};
use std::io::Write;
use std::process::Command;
use std::time::Instant;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn key(i: u64) -> String {
    format!("bench/key/{i:08}")
}

fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// One worker: waits until `go_ns` (wall clock, so all workers start
/// together), runs `ops` operations untimed for throughput, then `ops` timed
/// ones for latency; writes start, end and the samples to `out`.
#[allow(clippy::too_many_arguments)]
fn worker(
    store: &str,
    op: &str,
    ops: u64,
    keys: u64,
    value_size: usize,
    seed: u64,
    out: &str,
    go_ns: u64,
) {
    let s = Store::open(store).expect("open store");
    let value = vec![0xabu8; value_size];
    let names: Vec<String> = (0..keys).map(key).collect();
    let mut lat = Vec::with_capacity(ops as usize);
    let mut buf = Vec::with_capacity(value_size);
    let mut x = seed | 1;
    // Warm-up.
    for i in 0..(ops / 10).min(10_000) {
        let k = &names[(i % keys) as usize];
        s.get_into(k, &mut buf).unwrap();
    }
    let order: Vec<&String> = (0..ops)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            &names[(x % keys) as usize]
        })
        .collect();
    while now_ns() < go_ns {
        std::hint::spin_loop();
    }
    let start = now_ns();
    for k in &order {
        if op == "get" {
            s.get_into(k, &mut buf).unwrap();
        } else {
            s.put(k, &value).unwrap();
        }
    }
    let end = now_ns();
    for k in &order {
        let t = Instant::now();
        if op == "get" {
            let n = s.get_into(k, &mut buf).unwrap();
            debug_assert_eq!(n, Some(value_size));
        } else {
            s.put(k, &value).unwrap();
        }
        lat.push(t.elapsed().as_nanos() as u32);
    }
    let mut f = std::fs::File::create(out).unwrap();
    writeln!(f, "{start} {end}").unwrap();
    for l in lat {
        writeln!(f, "{l}").unwrap();
    }
}

fn main() {
    if let Ok(spec) = std::env::var("STORE_BENCH_CHILD") {
        let p: Vec<&str> = spec.split('|').collect();
        worker(
            p[0],
            p[1],
            p[2].parse().unwrap(),
            p[3].parse().unwrap(),
            p[4].parse().unwrap(),
            p[5].parse().unwrap(),
            p[6],
            p[7].parse().unwrap(),
        );
        return;
    }
    let max_procs = arg("--procs", 4);
    let ops = arg("--ops", 1_000_000);
    let value_size = arg("--value-size", 100) as usize;
    let keys = arg("--keys", 10_000);
    let name = format!("store-bench-{}", std::process::id());
    let store = Store::connect_with(
        &name,
        &Options::new(256 << 20, FullPolicy::EvictLru).max_entries(keys * 2),
    )
    .unwrap();
    let value = vec![0xabu8; value_size];
    for i in 0..keys {
        store.put(key(i), &value).unwrap();
    }
    let tmp = std::env::temp_dir();
    let mut procs_list = vec![1];
    if max_procs > 1 {
        procs_list.push(max_procs);
    }
    for op in ["get", "put"] {
        for &procs in &procs_list {
            let outs: Vec<String> = (0..procs)
                .map(|i| {
                    tmp.join(format!("store-bench-{}-{i}", std::process::id()))
                        .display()
                        .to_string()
                })
                .collect();
            // Everyone starts at the same wall-clock moment, after setup.
            let go = now_ns() + 300_000_000 + ops * 100;
            let kids: Vec<_> = outs
                .iter()
                .enumerate()
                .map(|(i, out)| {
                    Command::new(std::env::current_exe().unwrap())
                        .env(
                            "STORE_BENCH_CHILD",
                            format!(
                                "{name}|{op}|{ops}|{keys}|{value_size}|{}|{out}|{go}",
                                0x9E37_79B9u64 * (i as u64 + 1)
                            ),
                        )
                        .spawn()
                        .unwrap()
                })
                .collect();
            for mut k in kids {
                assert!(k.wait().unwrap().success());
            }
            let mut all: Vec<u32> = Vec::with_capacity((ops * procs) as usize);
            let (mut first, mut last) = (u64::MAX, 0u64);
            for out in &outs {
                let text = std::fs::read_to_string(out).unwrap();
                let mut lines = text.lines();
                let se: Vec<u64> =
                    lines.next().unwrap().split(' ').map(|v| v.parse().unwrap()).collect();
                first = first.min(se[0]);
                last = last.max(se[1]);
                all.extend(lines.map(|l| l.parse::<u32>().unwrap()));
                let _ = std::fs::remove_file(out);
            }
            // Aggregate throughput: all ops over the span from the first
            // start to the last end.
            let ops_per_s = (ops * procs) as f64 / ((last - first) as f64 / 1e9);
            all.sort_unstable();
            let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
            println!(
                "{{\"client\":\"rust\",\"op\":\"{op}\",\"procs\":{procs},\"ops_per_s\":{ops_per_s:.0},\"p50_ns\":{},\"p99_ns\":{},\"value_size\":{value_size}}}",
                pct(0.50),
                pct(0.99)
            );
        }
    }
    let st = store.stats();
    eprintln!("store after bench: {st:?}");
    store.close();
    Store::unlink(&name).unwrap();
}
