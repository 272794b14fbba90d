//! memglass across processes: the producer is always a child process (this
//! test binary re-executed as `child`, driven by line commands on stdin),
//! the observer is the test itself (or more children, for the stress test).

use memglass::protocol::{self, SeqCell};
use memglass::{
    Atomicity, ChangeKind, Error, FixedStr, Liveness, Observe, Observer, ObserverOptions,
    Primitive, Producer, ProducerOptions, Semantics, Seqlock, Value,
};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Observe, Clone, Copy, Default, Debug, PartialEq)]
#[repr(C)]
struct Quote {
    bid: f64,
    ask: f64,
    #[observe(unit = "shares")]
    size: u32,
    venue: u32,
}

#[derive(Observe)]
#[repr(C)]
struct Book {
    #[observe(counter, help = "orders seen")]
    orders: AtomicU64,
    #[observe(unit = "USD")]
    quote: Seqlock<Quote>,
    level: i32,
    active: bool,
    symbol: FixedStr<8>,
    history: [i16; 4],
    #[observe(unit = "C", discrete)]
    temp: f32,
}

#[derive(Observe)]
#[repr(C)]
struct Blob {
    id: u64,
    wide: Seqlock<[u64; 8]>,
    pad: [u8; 944],
}

// ---------------------------------------------------------------- child side

/// Raw seqlock cell over a Seqlock's memory (writer side, for the unfenced variant).
struct Raw(*const u8);

impl SeqCell for Raw {
    fn load_seq(&self, o: Ordering) -> u64 {
        // SAFETY: self.0 points at a live 8-aligned sequence word.
        unsafe { (*(self.0 as *const AtomicU64)).load(o) }
    }
    fn store_seq(&self, v: u64, o: Ordering) {
        // SAFETY: as above; writable (producer) or never called (observer).
        unsafe { (*(self.0 as *const AtomicU64)).store(v, o) }
    }
    fn cas_seq(&self, _: u64, _: u64) -> bool {
        unreachable!()
    }
    fn fence(o: Ordering) {
        std::sync::atomic::fence(o)
    }
    fn store_data(&self, src: &[u8]) {
        for (i, c) in src.chunks(8).enumerate() {
            let w = u64::from_ne_bytes(c.try_into().unwrap());
            // SAFETY: the data follows the word, 8-aligned, src.len() bytes.
            unsafe { (*(self.0.add(8 + 8 * i) as *const AtomicU64)).store(w, Ordering::Relaxed) }
        }
    }
    fn load_data(&self, dst: &mut [u8]) {
        for (i, c) in dst.chunks_mut(8).enumerate() {
            // SAFETY: as above.
            let w =
                unsafe { (*(self.0.add(8 + 8 * i) as *const AtomicU64)).load(Ordering::Relaxed) };
            c.copy_from_slice(&w.to_ne_bytes());
        }
    }
    fn pause(_: u32) {
        std::hint::spin_loop()
    }
}

fn new_book(p: &Producer, label: &str) -> memglass::Handle<Book> {
    let mut b = p.create::<Book>(label).unwrap();
    b.orders.store(3, Ordering::Relaxed);
    b.quote.write(Quote { bid: 1.5, ask: 2.5, size: 100, venue: 7 });
    b.level = -7;
    b.active = true;
    b.symbol = FixedStr::new(label);
    b.history = [1, -2, 3, -4];
    b.temp = 0.5;
    b
}

fn producer_child() {
    let session = std::env::var("GLASS_SESSION").unwrap();
    let grace = std::env::var("GLASS_GRACE_MS").map(|v| v.parse().unwrap()).unwrap_or(1000);
    let first = std::env::var("GLASS_FIRST_REGION").map(|v| v.parse().unwrap()).unwrap_or(1 << 20);
    let p = Producer::init(
        &session,
        ProducerOptions {
            grace_period: Duration::from_millis(grace),
            first_region_bytes: first,
            ..ProducerOptions::default()
        },
    )
    .unwrap();
    let mut books: HashMap<String, memglass::Handle<Book>> = HashMap::new();
    let mut blobs: Vec<memglass::Handle<Blob>> = Vec::new();
    let mut arrays: Vec<memglass::ArrayHandle<Quote>> = Vec::new();
    let mut out = std::io::stdout();
    writeln!(out, "@ready {}", std::process::id()).unwrap();
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        let args: Vec<&str> = line.split(' ').collect();
        let reply = match args[0] {
            "book" => {
                books.insert(args[1].to_string(), new_book(&p, args[1]));
                "ok".to_string()
            }
            "trade" => {
                let b = books.get_mut(args[1]).unwrap();
                b.orders.fetch_add(1, Ordering::Relaxed);
                b.quote.update(|q| {
                    q.bid += 1.0;
                    q.size += 10;
                });
                b.level = 42;
                "ok".into()
            }
            "drop" => {
                books.remove(args[1]).unwrap();
                "ok".into()
            }
            "blobs" => {
                let n: u64 = args[1].parse().unwrap();
                for i in 0..n {
                    let mut b = p.create::<Blob>(&format!("b{i}")).unwrap();
                    b.id = i;
                    b.wide.write([i; 8]);
                    blobs.push(b);
                }
                "ok".into()
            }
            "churn" => {
                let until = Instant::now() + Duration::from_millis(args[1].parse().unwrap());
                let mut live = std::collections::VecDeque::new();
                let mut n = 0u64;
                while Instant::now() < until {
                    match p.create::<Blob>(&format!("c{n}")) {
                        Ok(mut b) => {
                            b.id = n;
                            b.wide.write([n; 8]);
                            live.push_back(b);
                            n += 1;
                        }
                        Err(Error::Full(_)) => {}
                        Err(e) => panic!("{e}"),
                    }
                    if live.len() > 8 {
                        live.pop_front();
                    }
                }
                format!("ok {n}")
            }
            "stress" => {
                // stress MS fenced|unfenced: rewrite s.wide nonstop.
                let b = p.create::<Blob>("s").unwrap();
                let until = Instant::now() + Duration::from_millis(args[1].parse().unwrap());
                let fenced = args[2] == "fenced";
                let cell = Raw(&b.wide as *const Seqlock<[u64; 8]> as *const u8);
                let mut i = 0u64;
                while Instant::now() < until {
                    for _ in 0..1000 {
                        i += 1;
                        let v = [i; 8];
                        // SAFETY: [u64; 8] is 64 plain bytes.
                        let bytes =
                            unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, 64) };
                        protocol::write(&cell, bytes, fenced);
                    }
                }
                drop(b);
                format!("ok {i}")
            }
            "arr" => {
                let n: usize = args[1].parse().unwrap();
                let mut a = p.create_array::<Quote>("quotes", n).unwrap();
                for (i, q) in a.iter_mut().enumerate() {
                    *q = Quote { bid: i as f64, ask: 0.5, size: 0, venue: i as u32 };
                }
                arrays.push(a);
                "ok".into()
            }
            "arrset" => {
                let i: usize = args[1].parse().unwrap();
                let a = arrays.last_mut().unwrap();
                a[i].bid = args[2].parse().unwrap();
                a[i].venue += 100;
                "ok".into()
            }
            "quit" => break,
            c => panic!("unknown command {c}"),
        };
        writeln!(out, "@{reply}").unwrap();
    }
    drop(books);
    drop(blobs);
    drop(arrays);
    p.shutdown().unwrap();
}

/// Stress reader: reads s.wide `n` times from the region file directly
/// (mode fenced, unfenced or plain) and prints "mixed torn ok".
fn reader_child() {
    let session = std::env::var("GLASS_SESSION").unwrap();
    let n: u64 = std::env::var("GLASS_READS").unwrap().parse().unwrap();
    let mode = std::env::var("GLASS_MODE").unwrap();
    let mut o = Observer::connect(&session).unwrap();
    let obj = loop {
        o.refresh().unwrap();
        if let Some(obj) = o.find("s") {
            break obj;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let t = o.type_of(&obj).unwrap().clone();
    let f = t.field("wide").unwrap();
    assert_eq!(f.atomicity, Atomicity::Seqlock);
    let path = memglass::default_dir().join(format!("{session}.region.{}", obj.region));
    let base = map_ro(&path).0;
    // SAFETY: the object lies inside the region (checked by the observer).
    let cell = Raw(unsafe { base.add(obj.offset as usize + f.guard_offset as usize) });
    let (mut mixed, mut torn, mut ok) = (0u64, 0u64, 0u64);
    let mut buf = [0u8; 64];
    for _ in 0..n {
        let r = match mode.as_str() {
            "fenced" => protocol::read(&cell, &mut buf, 10_000, true).map(|_| ()),
            "unfenced" => protocol::read(&cell, &mut buf, 10_000, false).map(|_| ()),
            _ => {
                cell.load_data(&mut buf);
                Ok(())
            }
        };
        match r {
            Err(_) => torn += 1,
            Ok(()) => {
                let w: Vec<u64> =
                    buf.chunks(8).map(|c| u64::from_ne_bytes(c.try_into().unwrap())).collect();
                if w.iter().all(|&x| x == w[0]) {
                    ok += 1
                } else {
                    mixed += 1
                }
            }
        }
    }
    // Also read through the public API: a consistent value or Error::Torn.
    for _ in 0..1000 {
        match o.read(&obj, "wide") {
            Ok(Value::Array(v)) => assert!(v.iter().all(|x| *x == v[0]), "{v:?}"),
            Ok(v) => panic!("{v:?}"),
            Err(Error::Torn(_) | Error::Gone(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    println!("@{mixed} {torn} {ok}");
}

#[test]
fn child() {
    match std::env::var("GLASS_ROLE").as_deref() {
        Ok("producer") => producer_child(),
        Ok("reader") => reader_child(),
        _ => {}
    }
}

// --------------------------------------------------------------- parent side

fn map_ro(path: &Path) -> (*const u8, usize) {
    let f = std::fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len() as usize;
    use std::os::fd::AsRawFd;
    // SAFETY: a read-only shared mapping of a file we opened; never unmapped (test).
    let p = unsafe {
        libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, f.as_raw_fd(), 0)
    };
    assert_ne!(p, libc::MAP_FAILED);
    (p as *const u8, len)
}

fn test_dir(name: &str) -> PathBuf {
    // All children inherit MEMGLASS_DIR; one directory for the whole binary.
    let d = std::env::var_os("MEMGLASS_DIR").map(PathBuf::from).unwrap_or_else(|| {
        let d = std::env::temp_dir().join(format!("memglass-test-{}", std::process::id()));
        std::env::set_var("MEMGLASS_DIR", &d);
        d
    });
    let _ = name;
    d
}

struct Proc {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pid: u32,
}

impl Proc {
    fn producer(session: &str, env: &[(&str, &str)]) -> Proc {
        test_dir(session);
        let mut c = Command::new(std::env::current_exe().unwrap());
        c.args(["--exact", "child", "--nocapture", "--test-threads=1"])
            .env("GLASS_ROLE", "producer")
            .env("GLASS_SESSION", session)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        for (k, v) in env {
            c.env(k, v);
        }
        let mut child = c.spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut p = Proc { child, stdin, stdout, pid: 0 };
        let line = p.line();
        p.pid = line.strip_prefix("ready ").expect(&line).parse().unwrap();
        p
    }

    fn line(&mut self) -> String {
        loop {
            let mut s = String::new();
            assert!(self.stdout.read_line(&mut s).unwrap() > 0, "child exited");
            let s = s.trim().to_string();
            // The test harness prints its own text ("test child ... "): our
            // replies start at '@'.
            if let Some(i) = s.find('@') {
                return s[i + 1..].to_string();
            }
        }
    }

    fn cmd(&mut self, c: &str) -> String {
        writeln!(self.stdin, "{c}").unwrap();
        self.line()
    }

    fn quit(mut self) {
        writeln!(self.stdin, "quit").unwrap();
        assert!(self.child.wait().unwrap().success());
    }
}

fn connect(session: &str) -> Observer {
    Observer::connect(session).unwrap()
}

#[test]
fn observer_reads_typed_fields_of_another_process() {
    let mut p = Proc::producer("basic", &[]);
    p.cmd("book AAPL");
    let mut o = connect("basic");
    assert_eq!(o.session_info().pid, p.pid);
    assert_ne!(p.pid, std::process::id());
    assert_eq!(o.liveness(), Liveness::Alive);
    assert_eq!(o.objects().len(), 1);
    let b = o.find("AAPL").unwrap();
    assert_eq!(b.type_name, "Book");
    assert_eq!(o.read(&b, "orders").unwrap(), Value::UInt(3));
    assert_eq!(o.read(&b, "quote.bid").unwrap(), Value::Float(1.5));
    assert_eq!(o.read(&b, "quote.ask").unwrap(), Value::Float(2.5));
    assert_eq!(o.read(&b, "quote.size").unwrap(), Value::UInt(100));
    assert_eq!(o.read(&b, "level").unwrap(), Value::Int(-7));
    assert_eq!(o.read(&b, "active").unwrap(), Value::Bool(true));
    assert_eq!(o.read(&b, "symbol").unwrap(), Value::Str("AAPL".into()));
    assert_eq!(
        o.read(&b, "history").unwrap(),
        Value::Array(vec![Value::Int(1), Value::Int(-2), Value::Int(3), Value::Int(-4)])
    );
    assert_eq!(o.read(&b, "temp").unwrap(), Value::Float(0.5));
    assert!(matches!(o.read(&b, "nope"), Err(Error::NotFound(_))));
    // Field metadata as published.
    let t = o.type_of(&b).unwrap();
    let paths: Vec<&str> = t.fields.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "orders",
            "quote.bid",
            "quote.ask",
            "quote.size",
            "quote.venue",
            "level",
            "active",
            "symbol",
            "history",
            "temp"
        ]
    );
    let orders = t.field("orders").unwrap();
    assert_eq!(
        (orders.atomicity, orders.semantics, orders.help.as_str()),
        (Atomicity::Atomic, Semantics::Counter, "orders seen")
    );
    let size = t.field("quote.size").unwrap();
    assert_eq!(
        (size.atomicity, size.prim, size.unit.as_str()),
        (Atomicity::Seqlock, Primitive::U32, "shares")
    );
    assert_eq!(size.guard_offset, 8);
    assert_eq!(t.field("temp").unwrap().semantics, Semantics::Discrete);
    assert_eq!(t.field("symbol").unwrap().prim, Primitive::Char);
    // Snapshot: every field at once.
    let s = o.snapshot(&b).unwrap();
    assert_eq!(s.values.len(), 10);
    assert_eq!(s.get("quote.size"), Some(&Value::UInt(100)));
    assert_eq!(s.get("quote.venue"), Some(&Value::UInt(7)));
    // Writes show up live.
    p.cmd("trade AAPL");
    assert_eq!(o.read(&b, "orders").unwrap(), Value::UInt(4));
    assert_eq!(o.read(&b, "quote.bid").unwrap(), Value::Float(2.5));
    // Destroy: reads of the old object fail as Gone, refresh drops it.
    p.cmd("drop AAPL");
    assert!(matches!(o.read(&b, "orders"), Err(Error::Gone(_))));
    assert!(o.refresh().unwrap());
    assert!(o.find("AAPL").is_none());
    p.quit();
    assert_eq!(o.liveness(), Liveness::Dead);
}

#[test]
fn change_events_carry_paths_and_typed_old_new_values() {
    let mut p = Proc::producer("events", &[]);
    p.cmd("book MSFT");
    let mut o = connect("events");
    let first = o.changes().unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].label.as_str(), &first[0].kind), ("MSFT", &ChangeKind::Created));
    assert!(o.changes().unwrap().is_empty(), "nothing changed");
    p.cmd("trade MSFT");
    let ev = o.changes().unwrap();
    let got: Vec<(String, Value, Value)> = ev
        .iter()
        .map(|e| match &e.kind {
            ChangeKind::Field { path, old, new } => (path.clone(), old.clone(), new.clone()),
            k => panic!("{k:?}"),
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("orders".into(), Value::UInt(3), Value::UInt(4)),
            ("quote.bid".into(), Value::Float(1.5), Value::Float(2.5)),
            ("quote.size".into(), Value::UInt(100), Value::UInt(110)),
            ("level".into(), Value::Int(-7), Value::Int(42)),
        ]
    );
    assert!(ev.iter().all(|e| e.label == "MSFT" && e.type_name == "Book"));
    assert!(o.changes().unwrap().is_empty());
    p.cmd("book IBM");
    p.cmd("drop MSFT");
    let ev = o.changes().unwrap();
    let kinds: Vec<(String, ChangeKind)> = ev.into_iter().map(|e| (e.label, e.kind)).collect();
    assert_eq!(
        kinds,
        vec![("MSFT".into(), ChangeKind::Destroyed), ("IBM".into(), ChangeKind::Created)]
    );
    p.quit();
}

#[test]
fn regions_grow_and_chain_while_observed() {
    // 64 KiB first region, 1 KiB objects: 300 objects need 3 regions (64+128+256 KiB).
    let mut p = Proc::producer("grow2", &[("GLASS_FIRST_REGION", "65536")]);
    let mut o2 = connect("grow2");
    assert_eq!(o2.objects().len(), 0);
    p.cmd("blobs 300");
    assert!(o2.refresh().unwrap());
    assert_eq!(o2.objects().len(), 300);
    let info = o2.session_info();
    // 1 KiB objects: 64 KiB hold 63, 64 + 128 KiB 190, so 300 need a third region.
    assert_eq!(info.region_count, 3);
    let regions: std::collections::BTreeSet<u32> = o2.objects().iter().map(|b| b.region).collect();
    assert_eq!(regions.into_iter().collect::<Vec<_>>(), [1, 2, 3]);
    for b in o2.objects() {
        let i: u64 = b.label[1..].parse().unwrap();
        assert_eq!(o2.read(b, "id").unwrap(), Value::UInt(i));
        assert_eq!(o2.read(b, "wide").unwrap(), Value::Array(vec![Value::UInt(i); 8]));
    }
    let files = std::fs::read_dir(memglass::default_dir())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_str().unwrap().starts_with("grow2.region."))
        .count();
    assert_eq!(files, 3);
    p.quit();
}

#[test]
fn churn_never_shows_a_stale_or_reused_object() {
    let mut p = Proc::producer("churn", &[("GLASS_GRACE_MS", "5")]);
    let mut o = connect("churn");
    writeln!(p.stdin, "churn 1500").unwrap();
    let until = Instant::now() + Duration::from_millis(1400);
    let (mut reads, mut gone, mut torn, mut refreshes) = (0u64, 0u64, 0u64, 0u64);
    while Instant::now() < until {
        o.refresh().unwrap();
        refreshes += 1;
        for b in o.objects().to_vec() {
            let n: u64 = b.label[1..].parse().unwrap();
            match o.read(&b, "id") {
                // A new object is published zeroed, then written: 0 or its own
                // number, never another object's.
                Ok(v) => {
                    assert!(v == Value::UInt(n) || v == Value::UInt(0), "{} read as {v}", b.label);
                    reads += 1;
                }
                Err(Error::Gone(_)) => gone += 1,
                // The writer was descheduled mid-write for all attempts:
                // reported as torn, never as a mixed value.
                Err(Error::Torn(_)) => torn += 1,
                Err(e) => panic!("{e}"),
            }
            match o.snapshot(&b) {
                Ok(s) => {
                    let id = s.get("id").unwrap();
                    assert!(*id == Value::UInt(n) || *id == Value::UInt(0), "{}: {id}", b.label);
                    let w = s.get("wide").unwrap();
                    let ok = |k| *w == Value::Array(vec![Value::UInt(k); 8]);
                    assert!(ok(n) || ok(0), "{}: wide {w}", b.label);
                }
                Err(Error::Gone(_)) => gone += 1,
                // The writer was descheduled mid-write for all attempts:
                // reported as torn, never as a mixed value.
                Err(Error::Torn(_)) => torn += 1,
                Err(e) => panic!("{e}"),
            }
        }
    }
    let created: u64 = p.line().strip_prefix("ok ").unwrap().parse().unwrap();
    eprintln!(
        "churn: {created} objects created, {reads} reads, {gone} gone, {torn} torn, {refreshes} refreshes"
    );
    assert!(created > 1000 && reads > 1000 && gone > 0, "{created} {reads} {gone}");
    p.quit();
}

#[test]
fn sigkilled_producer_is_dead_within_a_second_and_removable() {
    let mut p = Proc::producer("killed", &[]);
    p.cmd("book X");
    let o = connect("killed");
    assert_eq!(o.liveness(), Liveness::Alive);
    let t0 = Instant::now();
    p.child.kill().unwrap(); // SIGKILL; not reaped yet: a zombie
    while o.liveness() != Liveness::Dead {
        assert!(t0.elapsed() < Duration::from_secs(1), "still {:?}", o.liveness());
        std::thread::sleep(Duration::from_millis(5));
    }
    let zombie = t0.elapsed();
    p.child.wait().unwrap();
    assert_eq!(o.liveness(), Liveness::Dead);
    assert!(o.session_info().reason.contains("process"), "{}", o.session_info().reason);
    eprintln!("dead after {zombie:?}");
    // The observer still reads the last values.
    let x = o.find("X").unwrap();
    assert_eq!(o.read(&x, "orders").unwrap(), Value::UInt(3));
    let listed = memglass::list_sessions(None).unwrap();
    let me = listed.iter().find(|s| s.name == "killed").unwrap();
    assert_eq!(me.liveness, Liveness::Dead);
    let removed = memglass::remove_stale(None).unwrap();
    assert!(removed.contains(&"killed".to_string()), "{removed:?}");
    assert!(!memglass::default_dir().join("killed.header").exists());
    assert!(!memglass::default_dir().join("killed.region.1").exists());
    assert!(matches!(Observer::connect("killed"), Err(Error::NotFound(_))));
}

#[test]
fn a_live_session_cannot_be_taken_over_or_removed() {
    let p = Proc::producer("taken", &[]);
    let err = Producer::init("taken", ProducerOptions::default()).err().unwrap();
    assert!(matches!(err, Error::AlreadyExists(_)), "{err}");
    let err = memglass::remove_session("taken", None).unwrap_err();
    assert!(matches!(err, Error::AlreadyExists(_)), "{err}");
    assert!(!memglass::remove_stale(None).unwrap().contains(&"taken".to_string()));
    p.quit();
}

#[test]
fn segments_are_private_and_names_validated() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let p = Proc::producer("perm", &[]);
    let d = memglass::default_dir();
    let mode = |f: &str| std::fs::metadata(d.join(f)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("perm.header"), 0o600);
    assert_eq!(mode("perm.region.1"), 0o600);
    assert_eq!(std::fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700);
    // SAFETY: geteuid has no preconditions.
    assert_eq!(std::fs::metadata(d.join("perm.header")).unwrap().uid(), unsafe { libc::geteuid() });
    p.quit();
    for bad in ["", ".hidden", "a/b", "../x", "sp ace", &"x".repeat(64), "nul\0"] {
        assert!(
            matches!(
                Producer::init(bad, ProducerOptions::default()),
                Err(Error::InvalidArgument(_))
            ),
            "{bad:?}"
        );
        assert!(matches!(Observer::connect(bad), Err(Error::InvalidArgument(_))), "{bad:?}");
    }
    // Group-readable by option.
    let g = Producer::init("grp", ProducerOptions { group_readable: true, ..Default::default() })
        .unwrap();
    assert_eq!(mode("grp.header"), 0o640);
    let dup = g.create::<Quote>("q").unwrap();
    assert!(matches!(g.create::<Quote>("q"), Err(Error::AlreadyExists(_))));
    assert!(matches!(g.create::<Quote>(""), Err(Error::InvalidArgument(_))));
    drop(dup);
    g.shutdown().unwrap();
    assert!(!d.join("grp.header").exists());
}

fn write_file(d: &Path, name: &str, bytes: &[u8], mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let p = d.join(name);
    let _ = std::fs::remove_file(&p);
    std::fs::write(&p, bytes).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn corrupt_truncated_and_foreign_segments_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let shared = test_dir("corrupt");
    let p = Proc::producer("good", &[]);
    let good = std::fs::read(shared.join("good.header")).unwrap();
    p.quit(); // removes good.*
              // Hand-made segments go in a directory of their own.
    let d = std::env::temp_dir().join(format!("memglass-corrupt-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    let opts = ObserverOptions { dir: Some(d.clone()), ..Default::default() };
    let expect_bad = |name: &str| {
        let err =
            Observer::connect_with(name, &opts).err().unwrap_or_else(|| panic!("{name} accepted"));
        assert!(matches!(err, Error::BadSegment(_)), "{name}: {err}");
        err.to_string()
    };
    // Foreign bytes, a short file, a truncated copy of a real header.
    write_file(&d, "foreign.header", &vec![0xAB; 8192], 0o600);
    assert!(expect_bad("foreign").contains("not a memglass header"));
    write_file(&d, "short.header", b"MEMGLASS", 0o600);
    assert!(expect_bad("short").contains("truncated"));
    write_file(&d, "trunc.header", &good[..8192], 0o600);
    assert!(expect_bad("trunc").contains("truncated"));
    // Another version.
    let mut v2 = good.clone();
    v2[8] = 99;
    write_file(&d, "ver.header", &v2, 0o600);
    assert!(expect_bad("ver").contains("version"));
    // A symlink to a good copy.
    write_file(&d, "real.header", &good, 0o600);
    let _ = std::fs::remove_file(d.join("link.header"));
    std::os::unix::fs::symlink(d.join("real.header"), d.join("link.header")).unwrap();
    assert!(expect_bad("link").contains("symlink"));
    // Random corruption of a real header (and its missing regions) never
    // crashes: it is refused or read, never a panic or a fault.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for round in 0..200 {
        let mut c = good.clone();
        for _ in 0..8 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let i = (seed as usize) % 4096;
            c[i] = (seed >> 32) as u8;
        }
        write_file(&d, "fuzz.header", &c, 0o600);
        match Observer::connect_with("fuzz", &opts) {
            Ok(mut o) => {
                let _ = o.refresh();
                let _ = o.session_info();
            }
            Err(Error::BadSegment(_) | Error::NotFound(_) | Error::Os(_)) => {}
            Err(e) => panic!("round {round}: {e}"),
        }
    }
    // Owned by someone else (we are root in CI; skip the chown otherwise).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        write_file(&d, "other.header", &good, 0o600);
        std::os::unix::fs::chown(d.join("other.header"), Some(65534), Some(65534)).unwrap();
        assert!(expect_bad("other").contains("owned by uid 65534"));
    }
    // A world-writable directory is refused outright.
    let open = std::env::temp_dir().join(format!("memglass-open-{}", std::process::id()));
    std::fs::create_dir_all(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = Observer::connect_with(
        "x",
        &ObserverOptions { dir: Some(open.clone()), ..Default::default() },
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("writable by group or others"), "{err}");
    // Listing shows the broken ones with their problem, and removes dead ones.
    let list = memglass::list_sessions(Some(&d)).unwrap();
    let foreign = list.iter().find(|s| s.name == "foreign").unwrap();
    assert_eq!(foreign.liveness, Liveness::Dead);
    assert!(foreign.problem.as_ref().unwrap().contains("not a memglass header"));
    assert!(memglass::remove_stale(Some(&d)).unwrap().contains(&"foreign".to_string()));
    assert!(!d.join("foreign.header").exists());
    std::fs::remove_dir_all(&open).unwrap();
    std::fs::remove_dir_all(&d).unwrap();
}

fn stress(mode: &str, writer: &str, reads: u64) -> (u64, u64, u64) {
    let session = format!("stress-{mode}-{writer}");
    let mut p = Proc::producer(&session, &[]);
    writeln!(p.stdin, "stress 60000 {writer}").unwrap();
    let readers: Vec<Child> = (0..3)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "child", "--nocapture", "--test-threads=1"])
                .env("GLASS_ROLE", "reader")
                .env("GLASS_SESSION", &session)
                .env("GLASS_READS", reads.to_string())
                .env("GLASS_MODE", mode)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut total = (0, 0, 0);
    for r in readers {
        let out = r.wait_with_output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        let at = text.find('@').unwrap_or_else(|| panic!("{text}"));
        let line = text[at + 1..].lines().next().unwrap();
        let v: Vec<u64> = line.split(' ').map(|w| w.parse().unwrap()).collect();
        total = (total.0 + v[0], total.1 + v[1], total.2 + v[2]);
    }
    p.child.kill().unwrap();
    p.child.wait().unwrap();
    let _ = memglass::remove_session(&session, None);
    eprintln!("stress {mode}/{writer}: mixed {} torn {} consistent {}", total.0, total.1, total.2);
    total
}

#[test]
fn seqlock_reads_never_mix_values_across_processes() {
    // 3 reader processes x 1M reads of 8 words while the writer rewrites them.
    let (mixed, _torn, ok) = stress("fenced", "fenced", 1_000_000);
    assert_eq!(mixed, 0);
    assert!(ok > 2_000_000, "{ok}");
}

#[test]
fn the_stress_test_detects_mixed_values_without_the_seqlock() {
    // Same writer, readers that skip the sequence check: must see mixes,
    // which shows the stress test can fail.
    let (mixed, _, _) = stress("plain", "fenced", 1_000_000);
    assert!(mixed > 0, "no mixed value seen: the stress test could not fail");
}

#[test]
fn array_elements_are_read_and_changed_by_index() {
    let mut p = Proc::producer("arrays", &[]);
    p.cmd("arr 3");
    let mut o = connect("arrays");
    let a = o.find("quotes").unwrap();
    assert_eq!(a.count, 3);
    assert_eq!(o.read(&a, "[2].bid").unwrap(), Value::Float(2.0));
    assert_eq!(o.read(&a, "[1].venue").unwrap(), Value::UInt(1));
    assert!(matches!(o.read(&a, "[3].bid"), Err(Error::InvalidArgument(_))));
    assert!(matches!(o.read(&a, "[x].bid"), Err(Error::InvalidArgument(_))));
    let s = o.snapshot(&a).unwrap();
    assert_eq!(s.values.len(), 12);
    assert_eq!(s.values[4], ("[1].bid".to_string(), Value::Float(1.0)));
    assert_eq!(o.changes().unwrap().len(), 1); // created
    p.cmd("arrset 1 7.5");
    let ev: Vec<(String, Value, Value)> = o
        .changes()
        .unwrap()
        .into_iter()
        .map(|e| match e.kind {
            ChangeKind::Field { path, old, new } => (path, old, new),
            k => panic!("{k:?}"),
        })
        .collect();
    assert_eq!(
        ev,
        vec![
            ("[1].bid".into(), Value::Float(1.0), Value::Float(7.5)),
            ("[1].venue".into(), Value::UInt(1), Value::UInt(101)),
        ]
    );
    p.quit();
}

#[test]
fn change_events_during_churn_belong_to_their_object() {
    let mut p = Proc::producer("churnev", &[("GLASS_GRACE_MS", "5")]);
    let mut o = connect("churnev");
    writeln!(p.stdin, "churn 1200").unwrap();
    let until = Instant::now() + Duration::from_millis(1100);
    let (mut created, mut destroyed, mut fields) = (0u64, 0u64, 0u64);
    let mut live = std::collections::HashSet::new();
    while Instant::now() < until {
        for e in o.changes().unwrap() {
            let n: u64 = e.label[1..].parse().unwrap();
            match e.kind {
                ChangeKind::Created => {
                    assert!(live.insert(e.object), "{} created twice", e.label);
                    created += 1;
                }
                ChangeKind::Destroyed => {
                    assert!(live.remove(&e.object), "{} destroyed unseen", e.label);
                    destroyed += 1;
                }
                ChangeKind::Field { path, old, new } => {
                    assert!(live.contains(&e.object), "{}: event of an unknown object", e.label);
                    // Only ever 0 -> own number (written right after create).
                    match path.as_str() {
                        "id" => assert_eq!((old, new), (Value::UInt(0), Value::UInt(n))),
                        "wide" => assert_eq!(
                            (old, new),
                            (
                                Value::Array(vec![Value::UInt(0); 8]),
                                Value::Array(vec![Value::UInt(n); 8])
                            )
                        ),
                        p => panic!("unexpected field {p}"),
                    }
                    fields += 1;
                }
            }
        }
    }
    let total: u64 = p.line().strip_prefix("ok ").unwrap().parse().unwrap();
    eprintln!("churn events: {total} objects, {created} created, {destroyed} destroyed, {fields} field events");
    assert!(created > 100 && destroyed > 100, "{created} {destroyed}");
    p.quit();
}
