//! The extension loaded by Debian's sqlite3 shell in a subprocess: kv over a
//! live MemStream store, mw_events over a real recording, a join of both.

use std::path::{Path, PathBuf};
use std::process::Command;

use memwatch_store::{FullPolicy, Store};

/// target/<profile>/libmemwatch_sqlite.so, built with this test.
fn extension() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().unwrap().parent().unwrap().join("libmemwatch_sqlite.so");
    assert!(p.exists(), "{} missing", p.display());
    p
}

/// Runs the sqlite3 shell on an in-memory database with the extension
/// loaded; returns (success, stdout, stderr).
fn shell(sql: &str) -> (bool, String, String) {
    let ext = extension();
    let out = Command::new("sqlite3")
        .arg(":memory:")
        .arg(format!(".load {}", ext.with_extension("").display()))
        .arg(sql)
        .output()
        .expect("sqlite3 shell (apt-get install sqlite3)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(sql: &str) -> String {
    let (success, out, err) = shell(sql);
    assert!(success && err.is_empty(), "{sql}: {err}");
    out
}

struct TempStore(String, Store);

impl TempStore {
    fn new(what: &str) -> TempStore {
        let name = format!("mw-sqlite-test-{what}-{}", std::process::id());
        let _ = Store::unlink(&name);
        TempStore(name.clone(), Store::connect(&name, 1 << 20, FullPolicy::Refuse).unwrap())
    }
}

impl Drop for TempStore {
    fn drop(&mut self) {
        let _ = Store::unlink(&self.0);
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

#[test]
fn kv_lists_a_live_store_byte_exact() {
    let s = TempStore::new("list");
    s.1.put("alpha", b"one").unwrap();
    s.1.put("it's \"q\"", [0u8, 255, 39, 10]).unwrap();
    s.1.put([0xffu8, 0x00, 0x41], b"binary key").unwrap();
    let out = ok(&format!(
        "SELECT hex(key), typeof(key), hex(value), version FROM kv('{}') ORDER BY hex(key);",
        s.0
    ));
    let mut want = Vec::new();
    for (k, v, t) in [
        (&b"alpha"[..], &b"one"[..], "text"),
        (&b"it's \"q\""[..], &[0u8, 255, 39, 10][..], "text"),
        (&[0xffu8, 0x00, 0x41][..], &b"binary key"[..], "blob"),
    ] {
        let st = s.1.key_stats(k).unwrap().unwrap();
        let version =
            st.updated_at.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
        want.push(format!("{}|{t}|{}|{version}", hex(k), hex(v)));
    }
    want.sort();
    assert_eq!(out.lines().collect::<Vec<_>>(), want);
    // A put after the first query is seen by the next (live, not a copy), with a new version.
    let before = ok(&format!("SELECT version FROM kv('{}') WHERE key = 'alpha';", s.0));
    s.1.put("alpha", b"two").unwrap();
    let after = ok(&format!("SELECT value, version FROM kv('{}') WHERE key = 'alpha';", s.0));
    let (v, ver) = after.trim().split_once('|').unwrap();
    assert_eq!(v, "two");
    assert!(ver.parse::<i64>().unwrap() > before.trim().parse::<i64>().unwrap());
    // key = ... is pushed down: an absent key is no row, not an error.
    assert_eq!(ok(&format!("SELECT count(*) FROM kv('{}') WHERE key = 'nope';", s.0)), "0\n");
}

#[test]
fn kv_errors_are_sql_errors() {
    let (success, _, err) = shell("SELECT * FROM kv('mw-sqlite-test-no-such-store');");
    assert!(!success && err.contains("no store named"), "{err}");
    let (success, _, err) = shell("SELECT * FROM kv;");
    assert!(!success && err.contains("kv needs a store name"), "{err}");
    let (success, _, err) = shell("SELECT * FROM kv(NULL);");
    assert!(!success && err.contains("must not be NULL"), "{err}");
    let (success, _, err) = shell("SELECT * FROM mw_events;");
    assert!(!success && err.contains("mw_events needs a recording"), "{err}");
    let (success, _, err) = shell("SELECT * FROM mw_events('/nonexistent-memwatch/x.db');");
    assert!(!success && err.contains("mw_events: recording"), "{err}");
}

/// A recording of `n` events made by memwatch-record's record_load example
/// (ci/test-sql.sh sets MEMWATCH_TEST_RECORD_LOAD to it).
fn make_recording(dir: &Path, n: u32) -> PathBuf {
    let load = std::env::var("MEMWATCH_TEST_RECORD_LOAD").expect(
        "MEMWATCH_TEST_RECORD_LOAD is not set: run through ci/test-sql.sh (the record_load example)",
    );
    let db = dir.join("events.db");
    let out = Command::new(load).arg(&db).args(["--events", &n.to_string()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    db
}

#[test]
fn mw_events_reads_a_recording_and_joins_a_live_store() {
    let dir = std::env::temp_dir().join(format!("mw-sqlite-events-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = make_recording(&dir, 100);
    let path = db.display();
    let out = ok(&format!("SELECT hex(old_value), hex(new_value) FROM mw_events('{path}');"));
    let want: Vec<String> = (1..=100u64)
        .map(|i| format!("{}|{}", hex(&(i - 1).to_le_bytes()), hex(&i.to_le_bytes())))
        .collect();
    assert_eq!(out.lines().collect::<Vec<_>>(), want);
    assert_eq!(
        ok(&format!(
            "SELECT count(*), count(DISTINCT seq), min(pid) > 0 FROM mw_events('{path}') \
             WHERE variable_name = 'counter';"
        )),
        "100|100|1\n"
    );
    assert_eq!(
        ok(&format!("SELECT count(*) FROM mw_events('{path}') WHERE variable_name = 'x';")),
        "0\n"
    );
    // Live state joined with recorded events: which event wrote the value
    // the store holds now?
    let s = TempStore::new("join");
    s.1.put("counter", 42u64.to_le_bytes()).unwrap();
    let out = ok(&format!(
        "SELECT e.seq, hex(k.value) FROM mw_events('{path}') e JOIN kv('{}') k \
         ON k.key = e.variable_name AND k.value = e.new_value;",
        s.0
    ));
    let seq42 = ok(&format!(
        "SELECT seq FROM mw_events('{path}') WHERE new_value = x'{}';",
        hex(&42u64.to_le_bytes())
    ));
    assert_eq!(out, format!("{}|{}\n", seq42.trim(), hex(&42u64.to_le_bytes())));
    std::fs::remove_dir_all(&dir).unwrap();
}

mod glass {
    use super::ok;
    use memglass::{Observe, Producer, ProducerOptions, Seqlock};
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Observe, Clone, Copy, Default)]
    #[repr(C)]
    struct Quote {
        bid: f64,
        ask: f64,
    }

    #[derive(Observe)]
    #[repr(C)]
    struct Book {
        #[observe(counter, help = "orders seen")]
        orders: AtomicU64,
        quote: Seqlock<Quote>,
        level: i32,
    }

    /// This test process is the producer; the sqlite3 shell, another
    /// process, observes its session read-only through the mg_* tables.
    #[test]
    fn mg_tables_agree_with_what_the_producer_wrote() {
        let session = format!("mwsql{}", std::process::id());
        let p = Producer::init(&session, ProducerOptions::default()).unwrap();
        let mut aapl = p.create::<Book>("AAPL").unwrap();
        aapl.orders.store(7, Ordering::Relaxed);
        aapl.quote.write(Quote { bid: 1.5, ask: 2.25 });
        let mut msft = p.create::<Book>("MSFT").unwrap();
        msft.orders.store(u64::MAX / 2, Ordering::Relaxed);
        msft.quote.write(Quote { bid: -3.0, ask: 0.125 });

        let where_ = format!("WHERE session = '{session}'");
        let sessions = ok(&format!(
            "SELECT name, pid, liveness, objects FROM mg_sessions WHERE name = '{session}';"
        ));
        assert_eq!(sessions, format!("{session}|{}|alive|2\n", std::process::id()));
        let objects =
            ok(&format!("SELECT object, type, count, state FROM mg_objects {where_} ORDER BY 1;"));
        assert_eq!(objects, "AAPL|Book|1|alive\nMSFT|Book|1|alive\n");
        let fields = ok(&format!(
            "SELECT object, path, type, atomicity, value, torn FROM mg_fields {where_} \
             ORDER BY object, path;"
        ));
        assert_eq!(
            fields.lines().collect::<Vec<_>>(),
            vec![
                "AAPL|level|i32|none|0|0".to_string(),
                "AAPL|orders|u64|atomic|7|0".to_string(),
                "AAPL|quote.ask|f64|seqlock|2.25|0".to_string(),
                "AAPL|quote.bid|f64|seqlock|1.5|0".to_string(),
                "MSFT|level|i32|none|0|0".to_string(),
                format!("MSFT|orders|u64|atomic|{}|0", u64::MAX / 2),
                "MSFT|quote.ask|f64|seqlock|0.125|0".to_string(),
                "MSFT|quote.bid|f64|seqlock|-3.0|0".to_string(),
            ]
        );
        // object = ... pushed down; live: a write now is seen by the next query.
        aapl.quote.write(Quote { bid: 10.0, ask: 11.0 });
        assert_eq!(
            ok(&format!(
                "SELECT path, value FROM mg_fields {where_} AND object = 'AAPL' \
                 AND path LIKE 'quote.%' ORDER BY path;"
            )),
            "quote.ask|11.0\nquote.bid|10.0\n"
        );
        assert_eq!(
            ok(&format!("SELECT count(*) FROM mg_fields {where_} AND object = 'nope';")),
            "0\n"
        );
        // Live fields joined with recorded events: an object labelled like a
        // recorded variable, its live field next to the recording's count.
        let mut counter = p.create::<Book>("counter").unwrap();
        counter.orders.store(100, Ordering::Relaxed);
        counter.level = 3;
        let dir = std::env::temp_dir().join(format!("mw-sqlite-join-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = super::make_recording(&dir, 100);
        assert_eq!(
            ok(&format!(
                "SELECT f.object, f.value, count(e.seq), max(e.seq) - min(e.seq) + 1 \
                 FROM mg_fields f JOIN mw_events('{}') e ON e.variable_name = f.object \
                 {where_} AND f.path = 'orders' GROUP BY 1, 2;",
                db.display()
            )),
            "counter|100|100|100\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        let (success, _, err) =
            super::shell("SELECT * FROM mg_fields WHERE session = 'mwsql-no-such-session';");
        assert!(!success && err.contains("memglass session"), "{err}");
        p.shutdown().unwrap();
    }
}
