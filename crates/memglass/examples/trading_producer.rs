//! The seed's trading producer: publishes instruments whose quotes, orders
//! and positions move; observe it with the trading_observer example or
//! `memwatch top trading`.
//!
//!     cargo run -p memglass --example trading_producer -- [seconds]

#[path = "trading/types.rs"]
mod types;

use memglass::{FixedStr, Producer, ProducerOptions};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use types::{Instrument, Quote};

fn main() -> Result<(), memglass::Error> {
    let secs: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(30);
    let p = Producer::init("trading", ProducerOptions::default())?;
    let symbols = ["AAPL", "MSFT", "GOOG", "AMZN"];
    let mut books = Vec::new();
    for (i, s) in symbols.iter().enumerate() {
        let mut b = p.create::<Instrument>(s)?;
        b.symbol = FixedStr::new(s);
        let px = 100.0 * (i + 1) as f64;
        b.quote.write(Quote {
            bid_price: px,
            ask_price: px + 0.01,
            bid_size: 100,
            ask_size: 100,
            timestamp_ns: 0,
        });
        books.push(b);
    }
    println!("producing session 'trading' (pid {}) for {secs} s", std::process::id());
    let start = Instant::now();
    let mut tick = 0u64;
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    while start.elapsed() < Duration::from_secs(secs) {
        for b in books.iter_mut() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let step = ((rng % 21) as f64 - 10.0) / 100.0;
            b.quote.update(|q| {
                q.bid_price = (q.bid_price + step).max(0.01);
                q.ask_price = q.bid_price + 0.01 + (rng % 3) as f64 / 100.0;
                q.bid_size = 100 + (rng % 900) as u32;
                q.ask_size = 100 + ((rng >> 16) % 900) as u32;
                q.timestamp_ns = start.elapsed().as_nanos() as u64;
            });
            if rng % 4 == 0 {
                b.orders.fetch_add(1, Ordering::Relaxed);
                if rng % 8 == 0 {
                    b.fills.fetch_add(1, Ordering::Relaxed);
                    let side = if rng % 16 == 0 { -100 } else { 100 };
                    b.position += side;
                    b.pnl += step * side as f64;
                }
            }
        }
        tick += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("{tick} ticks");
    drop(books);
    p.shutdown()
}
