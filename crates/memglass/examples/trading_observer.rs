//! The seed's trading observer: connects read-only to the 'trading'
//! session (run trading_producer first) and prints every change for a few
//! seconds, then one consistent snapshot per instrument.
//!
//!     cargo run -p memglass --example trading_observer -- [seconds]

use memglass::{ChangeKind, Observer};
use std::time::{Duration, Instant};

fn main() -> Result<(), memglass::Error> {
    let secs: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let mut o = Observer::connect("trading")?;
    let info = o.session_info();
    println!(
        "session {} pid {} {} ({} objects)",
        info.name,
        info.pid,
        info.liveness.name(),
        info.object_count
    );
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        for e in o.changes()? {
            n += 1;
            match e.kind {
                ChangeKind::Field { path, old, new } => {
                    if n <= 40 {
                        println!("{:>6} {:<24} {old} -> {new}", e.label, path);
                    }
                }
                k => println!("{:>6} {k:?} ({})", e.label, e.type_name),
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("{n} changes in {secs} s");
    for obj in o.objects().to_vec() {
        let s = o.snapshot(&obj)?;
        let line: Vec<String> = s.values.iter().map(|(p, v)| format!("{p}={v}")).collect();
        println!("{}: {}", obj.label, line.join(" "));
    }
    println!("producer: {}", o.liveness().name());
    Ok(())
}
