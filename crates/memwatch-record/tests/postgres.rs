//! Recording into a real PostgreSQL server (ci/test-sql.sh starts one and
//! sets MEMWATCH_TEST_PG_URL, MEMWATCH_TEST_PG_STOP and MEMWATCH_TEST_PG_START;
//! without them these tests fail, they never pass silently).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use memwatch_core::{Backend, Options, Watcher};

/// The tests share one server, and one of them restarts it: one at a time.
static SERVER: Mutex<()> = Mutex::new(());

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run these tests through ci/test-sql.sh (it starts PostgreSQL)")
    })
}

fn client() -> postgres::Client {
    postgres::Client::connect(&env("MEMWATCH_TEST_PG_URL"), postgres::NoTls).unwrap()
}

/// The record_load example, which `cargo test -p memwatch-record` builds.
fn load_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().unwrap().parent().unwrap().join("examples").join("record_load");
    assert!(
        p.exists(),
        "{} missing: run `cargo test -p memwatch-record` (builds examples)",
        p.display()
    );
    p
}

fn spawn_load(args: &[&str]) -> Child {
    Command::new(load_binary())
        .arg(env("MEMWATCH_TEST_PG_URL"))
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The `key=value` line record_load prints.
fn report(child: Child) -> HashMap<String, String> {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "record_load failed: {:?}", out.status);
    let text = String::from_utf8(out.stdout).unwrap();
    text.split_whitespace()
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

fn num(r: &HashMap<String, String>, k: &str) -> i64 {
    r[k].parse().unwrap()
}

fn shell(cmd: &str) {
    let st = Command::new("sh").arg("-c").arg(cmd).stdout(Stdio::null()).status().unwrap();
    assert!(st.success(), "{cmd} failed");
}

/// Checks every row of one recording of record_load: the counter went
/// old -> old+1 in each event, as little-endian u64 values; returns the rows.
fn check_rows(c: &mut postgres::Client, recording_id: i64) -> i64 {
    let rows = c
        .query(
            "SELECT seq, old_value, new_value, variable_name, changed_ranges, metadata \
             FROM memwatch_events WHERE recording_id = $1 ORDER BY seq",
            &[&recording_id],
        )
        .unwrap();
    let mut last_new: Option<u64> = None;
    let mut last_seq = -1i64;
    for r in &rows {
        let seq: i64 = r.get(0);
        assert!(seq > last_seq);
        last_seq = seq;
        let old: Vec<u8> = r.get(1);
        let new: Vec<u8> = r.get(2);
        let old = u64::from_le_bytes(old.try_into().unwrap());
        let new = u64::from_le_bytes(new.try_into().unwrap());
        assert_eq!(new, old + 1, "seq {seq}");
        if let Some(prev) = last_new {
            assert!(old >= prev, "seq {seq}: values go forward");
        }
        last_new = Some(new);
        assert_eq!(r.get::<_, String>(3), "counter");
        assert_eq!(r.get::<_, Option<String>>(5).as_deref(), Some("record_load"));
        let ranges: String = r.get(4);
        assert!(ranges.starts_with("[[0,") && ranges.ends_with("]]"), "{ranges}");
    }
    rows.len() as i64
}

#[test]
fn four_processes_record_into_one_server_at_once() {
    let _g = SERVER.lock().unwrap_or_else(|e| e.into_inner());
    let children: Vec<Child> = (0..4).map(|_| spawn_load(&["--events", "3000"])).collect();
    let reports: Vec<_> = children.into_iter().map(report).collect();
    let mut c = client();
    let mut pids = std::collections::HashSet::new();
    for r in &reports {
        assert_eq!(num(r, "produced"), 3000, "{r:?}");
        assert_eq!(num(r, "written"), 3000, "{r:?}");
        assert_eq!(num(r, "dropped") + num(r, "abandoned"), 0, "{r:?}");
        let id = num(r, "recording_id");
        assert_eq!(check_rows(&mut c, id), 3000);
        let row = c
            .query_one(
                "SELECT pid, host, backend FROM memwatch_recordings WHERE recording_id = $1",
                &[&id],
            )
            .unwrap();
        pids.insert(row.get::<_, i64>(0));
        assert_eq!(row.get::<_, String>(2), "poll");
        let lost: i64 = c
            .query_one("SELECT count(*) FROM memwatch_losses WHERE recording_id = $1", &[&id])
            .unwrap()
            .get(0);
        assert_eq!(lost, 0);
    }
    assert_eq!(pids.len(), 4, "four distinct processes");
}

/// The server is stopped and started again while three processes record:
/// every event a recorder reports written is in the table, every other one
/// is counted as dropped (and in memwatch_losses), and the outage is a row.
#[test]
fn a_server_restart_mid_run_loses_nothing_unreported() {
    let _g = SERVER.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("mwrec-pg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let stop_file = dir.join("stop");
    let _ = std::fs::remove_file(&stop_file);
    let stop = stop_file.to_str().unwrap();
    let children: Vec<Child> = (0..3)
        .map(|_| spawn_load(&["--until", stop, "--queue", "64", "--sleep-us", "200"]))
        .collect();
    let mut c = client();
    let since: i64 =
        c.query_one("SELECT (extract(epoch FROM now()) * 1e9)::int8", &[]).unwrap().get(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // Until the first recorder created the schema the table is missing: 0 rows.
        let n: i64 = c
            .query_one("SELECT count(*) FROM memwatch_events WHERE time_ns > $1", &[&since])
            .map(|r| r.get(0))
            .unwrap_or(0);
        if n >= 3000 {
            break;
        }
        assert!(Instant::now() < deadline, "recorders wrote only {n} rows in 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(c);
    shell(&env("MEMWATCH_TEST_PG_STOP"));
    std::thread::sleep(Duration::from_millis(1500));
    shell(&env("MEMWATCH_TEST_PG_START"));
    std::thread::sleep(Duration::from_millis(1500));
    std::fs::write(&stop_file, b"").unwrap();
    let reports: Vec<_> = children.into_iter().map(report).collect();
    let mut c = client();
    for r in &reports {
        let id = num(r, "recording_id");
        let (produced, written, dropped) =
            (num(r, "produced"), num(r, "written"), num(r, "dropped"));
        assert_eq!(num(r, "abandoned"), 0, "{r:?}");
        assert_eq!(written + dropped, produced, "{r:?}");
        assert!(dropped > 0, "a 64-event queue must overflow during a 1.5 s outage: {r:?}");
        assert!(num(r, "reconnects") >= 1, "{r:?}");
        assert_eq!(check_rows(&mut c, id), written, "{r:?}");
        let row = c
            .query_one(
                "SELECT coalesce(sum(events_lost), 0)::int8, \
                 count(*) FILTER (WHERE reason = 'database_unavailable' AND to_ns > from_ns) \
                 FROM memwatch_losses WHERE recording_id = $1",
                &[&id],
            )
            .unwrap();
        assert_eq!(row.get::<_, i64>(0), dropped, "{r:?}");
        assert!(row.get::<_, i64>(1) >= 1, "the outage is a row: {r:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn hostile_names_are_stored_byte_exact_in_postgres() {
    let _g = SERVER.lock().unwrap_or_else(|e| e.into_inner());
    let w = Watcher::new(Options { backend: Backend::Poll, ..Options::default() }).unwrap();
    let names =
        ["it's \"q\"", "nul\0inside", "x'); DROP TABLE memwatch_events; --", "ünï\u{10ffff}"];
    let mut bufs = vec![[0u8; 4]; names.len()];
    for (b, n) in bufs.iter().zip(names.iter()) {
        // SAFETY: bufs outlive the watch and do not move.
        unsafe { w.watch(b.as_ptr(), 4, n, Some(n)) }.unwrap();
    }
    let rec = memwatch_record::record_to(&w, &env("MEMWATCH_TEST_PG_URL")).unwrap();
    for b in bufs.iter_mut() {
        // SAFETY: in bounds; volatile so the write is not elided.
        unsafe { std::ptr::write_volatile(&mut b[2], 0x5a) };
    }
    assert_eq!(w.check_changes().unwrap().len(), names.len());
    assert!(rec.flush(Duration::from_secs(20)));
    let mut c = client();
    let rows = c
        .query(
            "SELECT variable_name, variable_name_bytes, metadata_bytes, new_value \
             FROM memwatch_events WHERE recording_id = $1",
            &[&rec.recording_id()],
        )
        .unwrap();
    let mut got: Vec<(Vec<u8>, String, Vec<u8>)> =
        rows.iter().map(|r| (r.get(1), r.get(0), r.get(2))).collect();
    got.sort();
    let mut expect: Vec<(Vec<u8>, String, Vec<u8>)> = names
        .iter()
        .map(|n| (n.as_bytes().to_vec(), n.replace('\0', "\u{fffd}"), n.as_bytes().to_vec()))
        .collect();
    expect.sort();
    assert_eq!(got, expect);
    for r in &rows {
        assert_eq!(r.get::<_, Vec<u8>>(3), vec![0, 0, 0x5a, 0]);
    }
    // The tables are still there after the injection attempt.
    let n: i64 = c.query_one("SELECT count(*) FROM memwatch_events", &[]).unwrap().get(0);
    assert!(n >= names.len() as i64);
    w.close();
    rec.close();
}
