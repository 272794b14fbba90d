//! A scriptable memglass peer for cross-language tests.
//!
//!     glass_peer produce SESSION   # creates object "AAPL" of type Book with
//!                                  # known values, prints "ready"; stdin
//!                                  # "trade" updates it ("ok"), "quit" ends
//!     glass_peer dump SESSION      # prints every object as
//!                                  # "label path=value ..." (values in Rust
//!                                  # Display form), one line per object

use memglass::{FixedStr, Observe, Observer, Producer, ProducerOptions, Seqlock};
use std::io::BufRead;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Observe, Clone, Copy, Default)]
#[repr(C)]
struct Quote {
    #[observe(unit = "USD")]
    bid: f64,
    #[observe(unit = "USD")]
    ask: f64,
    size: u32,
    venue: u32,
}

#[derive(Observe)]
#[repr(C)]
struct Book {
    #[observe(counter, help = "orders seen")]
    orders: AtomicU64,
    quote: Seqlock<Quote>,
    level: i32,
    active: bool,
    symbol: FixedStr<8>,
    history: [i16; 4],
}

fn main() -> Result<(), memglass::Error> {
    let args: Vec<String> = std::env::args().collect();
    let (mode, session) = match (args.get(1), args.get(2)) {
        (Some(m), Some(s)) => (m.as_str(), s.as_str()),
        _ => {
            eprintln!("usage: glass_peer produce|dump SESSION");
            std::process::exit(2);
        }
    };
    match mode {
        "produce" => {
            let p = Producer::init(session, ProducerOptions::default())?;
            let mut b = p.create::<Book>("AAPL")?;
            b.orders.store(3, Ordering::Relaxed);
            b.quote.write(Quote { bid: 1.5, ask: 2.5, size: 100, venue: 7 });
            b.level = -7;
            b.active = true;
            b.symbol = FixedStr::new("AAPL");
            b.history = [1, -2, 3, -4];
            println!("ready");
            for line in std::io::stdin().lock().lines() {
                match line.unwrap_or_default().trim() {
                    "trade" => {
                        b.orders.fetch_add(1, Ordering::Relaxed);
                        b.quote.update(|q| q.bid += 1.0);
                        b.level = 42;
                        println!("ok");
                    }
                    "quit" => break,
                    other => eprintln!("unknown command {other:?}"),
                }
            }
            drop(b);
            p.shutdown()
        }
        "dump" => {
            let o = Observer::connect(session)?;
            for obj in o.objects() {
                let s = o.snapshot(obj)?;
                let kv: Vec<String> = s.values.iter().map(|(p, v)| format!("{p}={v}")).collect();
                println!("{} {}", obj.label, kv.join(" "));
            }
            Ok(())
        }
        m => {
            eprintln!("unknown mode {m}");
            std::process::exit(2);
        }
    }
}
