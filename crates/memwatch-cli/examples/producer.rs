//! A memglass producer for trying and testing `memwatch`: quotes for a few
//! symbols (a `Locked` bid/ask pair in USD, a trade counter, the last trade
//! size, the symbol), optionally many wide objects (100 `u64` gauges each),
//! moved by a background thread every `--churn-ms`, and set exactly by
//! commands on stdin:
//!
//! ```text
//! set LABEL FIELD VALUE   e.g. `set AAPL quote.bid 101.25`, `set w0 f7 42`
//! create LABEL            a new quote
//! destroy LABEL
//! stick LABEL             leave the quote's lock word odd, as a writer that
//!                         died mid-write would: observers' reads of quote.*
//!                         tear (no writes to quote.* until `unstick`)
//! unstick LABEL
//! quit
//! ```
//!
//! Each command is answered `ok` (after the write) or `error: ...`.
//!
//! ```sh
//! cargo run -p memwatch-cli --example producer -- --session demo
//! memwatch top demo
//! ```

use memglass::{
    Atomicity, FieldDesc, FieldMeta, FixedStr, Handle, Locked, Observe, Primitive, Producer,
    ProducerOptions, RawObject, Semantics, TypeDesc,
};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Observe, Clone, Copy, Default)]
#[repr(C)]
struct Px {
    #[observe(unit = "USD", help = "best bid price")]
    bid: f64,
    #[observe(unit = "USD", help = "best ask price")]
    ask: f64,
}

#[derive(Observe)]
#[repr(C)]
struct Quote {
    quote: Locked<Px>,
    #[observe(counter, help = "trades seen")]
    trades: AtomicU64,
    #[observe(unit = "shares", help = "size of the last trade")]
    last_size: AtomicU32,
    #[observe(discrete, help = "true while the market is open")]
    open: AtomicBool,
    symbol: FixedStr<8>,
}

const WIDE_FIELDS: usize = 100;

struct Wide {
    raw: RawObject,
}

impl Wide {
    fn slot(&self, i: usize) -> &AtomicU64 {
        assert!(i < WIDE_FIELDS);
        // SAFETY: the object is WIDE_FIELDS u64s, 8-aligned (the registered
        // type's alignment), alive until destroy_raw; all access is atomic.
        unsafe { &*(self.raw.ptr.add(i * 8) as *const AtomicU64) }
    }
}

// SAFETY: the object's memory is only accessed through atomics.
unsafe impl Send for Wide {}

struct World {
    producer: Producer,
    quotes: BTreeMap<String, Handle<Quote>>,
    wide: BTreeMap<String, Wide>,
}

fn wide_type() -> TypeDesc {
    let fields = (0..WIDE_FIELDS)
        .map(|i| FieldDesc {
            atomicity: Atomicity::Atomic,
            meta: FieldMeta {
                unit: String::new(),
                help: format!("wide gauge {i}"),
                semantics: Semantics::Gauge,
            },
            ..FieldDesc::new(&format!("f{i}"), (i * 8) as u32, Primitive::U64)
        })
        .collect();
    TypeDesc { name: "Wide".into(), size: (WIDE_FIELDS * 8) as u32, align: 8, fields }
}

impl World {
    fn create(&mut self, label: &str) -> Result<(), String> {
        let mut h = self.producer.create::<Quote>(label).map_err(|e| e.to_string())?;
        h.symbol = FixedStr::new(label);
        h.quote.write(Px { bid: 100.0, ask: 100.5 });
        h.open.store(true, Ordering::Release);
        self.quotes.insert(label.to_string(), h);
        Ok(())
    }

    fn set(&mut self, label: &str, field: &str, v: &str) -> Result<(), String> {
        let bad = |e: &dyn std::fmt::Display| format!("bad value {v:?}: {e}");
        if let Some(w) = self.wide.get(label) {
            let i: usize = field
                .strip_prefix('f')
                .and_then(|n| n.parse().ok())
                .filter(|&i| i < WIDE_FIELDS)
                .ok_or_else(|| format!("no field {field} in Wide"))?;
            w.slot(i).store(v.parse().map_err(|e| bad(&e))?, Ordering::Release);
            return Ok(());
        }
        let q = self.quotes.get_mut(label).ok_or_else(|| format!("no object {label}"))?;
        match field {
            "quote.bid" | "quote.ask" => {
                let x: f64 = v.parse().map_err(|e| bad(&e))?;
                let mut px = q.quote.read().map_err(|e| format!("{e:?}"))?;
                if field == "quote.bid" {
                    px.bid = x;
                } else {
                    px.ask = x;
                }
                q.quote.write(px);
            }
            "trades" => q.trades.store(v.parse().map_err(|e| bad(&e))?, Ordering::Release),
            "last_size" => q.last_size.store(v.parse().map_err(|e| bad(&e))?, Ordering::Release),
            "open" => q.open.store(v.parse().map_err(|e| bad(&e))?, Ordering::Release),
            "symbol" => q.symbol = FixedStr::new(v),
            _ => return Err(format!("no field {field} in Quote")),
        }
        Ok(())
    }

    /// Moves the sequence word guarding `label`'s quote by one: odd (a write
    /// in progress that never ends) or back to even.
    fn bump_guard(&self, label: &str) -> Result<(), String> {
        let q = self.quotes.get(label).ok_or_else(|| format!("no object {label}"))?;
        let desc = Quote::type_desc();
        let guard = desc.fields.iter().find(|f| f.path == "quote.bid").expect("field").guard_offset;
        let base = &**q as *const Quote as *const u8;
        // SAFETY: guard_offset is the offset of the 8-byte, 8-aligned
        // sequence word inside Quote that the derive published; the object
        // is alive while its handle is in the map; the access is atomic.
        let seq = unsafe { &*(base.add(guard as usize) as *const AtomicU64) };
        seq.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// One step of the background movement.
    fn churn(&mut self, step: u64) {
        for q in self.quotes.values() {
            let px = q.quote.read().unwrap_or_default();
            let d = if step.is_multiple_of(3) { -0.25 } else { 0.25 };
            q.quote.write(Px { bid: px.bid + d, ask: px.bid + d + 0.5 });
            q.trades.fetch_add(1, Ordering::Relaxed);
            q.last_size.store((step % 7 * 100) as u32, Ordering::Relaxed);
        }
        for w in self.wide.values() {
            for i in 0..WIDE_FIELDS {
                w.slot(i).fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "producer [--session NAME] [--symbols A,B,..] [--wide FIELDS] [--churn-ms MS]\n\
             Commands on stdin: set LABEL FIELD VALUE | create LABEL | destroy LABEL | quit"
        );
        return;
    }
    let session = arg(&args, "--session").unwrap_or_else(|| "demo".into());
    let symbols = arg(&args, "--symbols").unwrap_or_else(|| "AAPL,MSFT,GOOG".into());
    let wide: usize = arg(&args, "--wide").map_or(0, |v| v.parse().expect("--wide FIELDS"));
    let churn_ms: u64 = arg(&args, "--churn-ms").map_or(200, |v| v.parse().expect("--churn-ms MS"));

    let producer = match Producer::init(&session, ProducerOptions::default()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("producer: cannot create session {session}: {e}");
            std::process::exit(1);
        }
    };
    let mut world = World { producer, quotes: BTreeMap::new(), wide: BTreeMap::new() };
    for s in symbols.split(',').filter(|s| !s.is_empty()) {
        world.create(s).expect("create quote");
    }
    if wide > 0 {
        let t = world.producer.register_type(&wide_type()).expect("register Wide");
        for i in 0..wide.div_ceil(WIDE_FIELDS) {
            let raw = world.producer.create_raw(t, &format!("w{i}"), 1).expect("create Wide");
            world.wide.insert(format!("w{i}"), Wide { raw });
        }
    }
    let world = Arc::new(Mutex::new(world));
    if churn_ms > 0 {
        let w = world.clone();
        std::thread::spawn(move || {
            for step in 0.. {
                std::thread::sleep(Duration::from_millis(churn_ms));
                w.lock().unwrap().churn(step);
            }
        });
    }
    println!("ready {session} {}", std::process::id());
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        let mut w = world.lock().unwrap();
        let r = match words.as_slice() {
            ["set", label, field, value] => w.set(label, field, value),
            ["create", label] => w.create(label),
            ["stick", label] | ["unstick", label] => w.bump_guard(label),
            ["destroy", label] => match (w.quotes.remove(*label), w.wide.remove(*label)) {
                (Some(h), _) => {
                    w.producer.destroy(h);
                    Ok(())
                }
                (None, Some(x)) => w.producer.destroy_raw(x.raw.id).map_err(|e| e.to_string()),
                (None, None) => Err(format!("no object {label}")),
            },
            ["quit"] => break,
            [] => continue,
            _ => Err(format!("unknown command {line:?}")),
        };
        match r {
            Ok(()) => println!("ok"),
            Err(e) => println!("error: {e}"),
        }
    }
}
