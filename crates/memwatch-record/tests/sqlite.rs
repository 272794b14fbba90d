//! Recording into SQLite: exact rows, hostile names, bad URLs, overflow.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use memwatch_core::{Backend, ChangeEvent, Options, Watcher};
use memwatch_record::{record_to, record_to_with, RecordError, RecordOptions, Target};

/// `events.db` in a fresh temporary folder, removed when dropped.
struct TempDb {
    dir: PathBuf,
    db: PathBuf,
}

impl std::ops::Deref for TempDb {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.db
    }
}

impl AsRef<std::path::Path> for TempDb {
    fn as_ref(&self) -> &std::path::Path {
        &self.db
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn temp_db(name: &str) -> TempDb {
    let dir = std::env::temp_dir().join(format!("mwrec-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDb { db: dir.join("events.db"), dir }
}

/// Writes that the compiler cannot drop (it cannot see the engine read them).
fn poke(buf: &mut [u8], at: usize, bytes: &[u8]) {
    for (i, b) in bytes.iter().enumerate() {
        // SAFETY: in bounds of buf (indexing checked first).
        unsafe { std::ptr::write_volatile(&mut buf[at + i], *b) };
    }
}

fn poll_watcher() -> Watcher {
    Watcher::new(Options { backend: Backend::Poll, ..Options::default() }).unwrap()
}

type DbRow = (i64, String, Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>, String, Option<Vec<u8>>);

fn rows(db: &PathBuf) -> Vec<DbRow> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c
        .prepare(
            "SELECT seq, variable_name, variable_name_bytes, old_value, new_value, \
             changed_ranges, metadata_bytes FROM memwatch_events ORDER BY seq",
        )
        .unwrap();
    let it = st
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
        })
        .unwrap();
    it.map(Result::unwrap).collect()
}

#[test]
fn check_changes_events_are_recorded_with_exact_bytes() {
    let db = temp_db("exact");
    let w = poll_watcher();
    let mut buf = *b"hello world";
    // SAFETY: buf outlives the watch (watcher closed below).
    unsafe { w.watch(buf.as_ptr(), buf.len(), "greeting", Some("{\"unit\":\"ascii\"}")) }.unwrap();
    let rec = record_to(&w, db.to_str().unwrap()).unwrap();
    poke(&mut buf, 0, b"HE");
    let first = w.check_changes().unwrap();
    poke(&mut buf, 6, b"W");
    poke(&mut buf, 10, b"D");
    let second = w.check_changes().unwrap();
    assert_eq!((first.len(), second.len()), (1, 1));
    assert!(rec.flush(Duration::from_secs(10)));
    let got = rows(&db);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0, first[0].seq as i64);
    assert_eq!(got[0].1, "greeting");
    assert_eq!(got[0].2, b"greeting");
    assert_eq!(got[0].3.as_deref(), Some(&b"hello world"[..]));
    assert_eq!(got[0].4.as_deref(), Some(&b"HEllo world"[..]));
    assert_eq!(got[0].5, "[[0,2]]");
    assert_eq!(got[0].6.as_deref(), Some(&b"{\"unit\":\"ascii\"}"[..]));
    assert_eq!(got[1].3.as_deref(), Some(&b"HEllo world"[..]));
    assert_eq!(got[1].4.as_deref(), Some(&b"HEllo WorlD"[..]));
    assert_eq!(got[1].5, "[[6,1],[10,1]]");
    let s = rec.stats();
    assert_eq!((s.written, s.dropped, s.abandoned, s.queued), (2, 0, 0, 0));
    // The recording row names this process and watcher.
    let c = rusqlite::Connection::open(&db).unwrap();
    let (pid, watcher, backend, start): (i64, i64, String, i64) = c
        .query_row(
            "SELECT pid, watcher, backend, process_start_ns FROM memwatch_recordings \
             WHERE recording_id = ?1",
            [rec.recording_id()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(pid, std::process::id() as i64);
    assert_eq!(watcher, w.id() as i64);
    assert_eq!(backend, "poll");
    assert!(start > 1_500_000_000_000_000_000, "process start {start} is a Unix time in ns");
    let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    w.close();
    rec.close();
}

#[test]
fn callback_events_are_recorded_too() {
    let db = temp_db("callback");
    let w = poll_watcher();
    let mut buf = [0u8; 16];
    // SAFETY: buf outlives the watch.
    unsafe { w.watch(buf.as_ptr(), buf.len(), "buf", None) }.unwrap();
    let seen: Arc<Mutex<Vec<ChangeEvent>>> = Arc::default();
    let s2 = Arc::clone(&seen);
    w.set_callback(Some(Arc::new(move |e: &ChangeEvent| s2.lock().unwrap().push(e.clone()))))
        .unwrap();
    let rec = record_to(&w, &format!("sqlite:{}", db.display())).unwrap();
    for i in 1..=5u8 {
        poke(&mut buf, i as usize, &[i]);
        assert!(w.check_changes().unwrap().is_empty());
    }
    assert_eq!(seen.lock().unwrap().len(), 5);
    assert!(rec.flush(Duration::from_secs(10)));
    let got = rows(&db);
    assert_eq!(got.len(), 5);
    for (i, row) in got.iter().enumerate() {
        let mut expect = [0u8; 16];
        for (k, b) in expect.iter_mut().enumerate().take(i + 2).skip(1) {
            *b = k as u8;
        }
        assert_eq!(row.4.as_deref(), Some(&expect[..]));
        assert_eq!(row.5, format!("[[{},1]]", i + 1));
        assert_eq!(row.6, None);
    }
    w.close();
    rec.close();
}

#[test]
fn hostile_names_and_metadata_are_stored_byte_exact() {
    let db = temp_db("hostile");
    let w = poll_watcher();
    let names = [
        "it's \"quoted\"",
        "nul\0inside",
        "x'); DROP TABLE memwatch_events; --",
        "\u{7f}\u{1}\u{fffd}\u{10ffff} ünïcödé",
        "%s%n\\\\'",
    ];
    let mut bufs = vec![[0u8; 4]; names.len()];
    for (b, n) in bufs.iter().zip(names.iter()) {
        // SAFETY: bufs outlive the watch and are not moved (no push after this).
        unsafe { w.watch(b.as_ptr(), 4, n, Some(&format!("meta:{n}"))) }.unwrap();
    }
    let rec = record_to(&w, db.to_str().unwrap()).unwrap();
    for b in bufs.iter_mut() {
        poke(b, 3, &[0xff]);
    }
    assert_eq!(w.check_changes().unwrap().len(), names.len());
    assert!(rec.flush(Duration::from_secs(10)));
    let got = rows(&db);
    assert_eq!(got.len(), names.len());
    let mut stored: Vec<(Vec<u8>, String, Vec<u8>)> =
        got.into_iter().map(|r| (r.2, r.1, r.6.unwrap())).collect();
    stored.sort();
    let mut expect: Vec<(Vec<u8>, String, Vec<u8>)> = names
        .iter()
        .map(|n| (n.as_bytes().to_vec(), n.to_string(), format!("meta:{n}").into_bytes()))
        .collect();
    expect.sort();
    assert_eq!(stored, expect);
    w.close();
    rec.close();
}

#[test]
fn bad_urls_and_unreachable_databases_are_errors() {
    let w = poll_watcher();
    for bad in ["", "sqlite:", "mysql://localhost/x", "http://example.invalid/", "a\0b"] {
        match record_to(&w, bad) {
            Err(RecordError::InvalidUrl(m)) => assert!(!m.is_empty()),
            Err(e) => panic!("{bad:?}: {e}"),
            Ok(_) => panic!("{bad:?} accepted"),
        }
    }
    match record_to(&w, "/nonexistent-dir-memwatch/x/events.db") {
        Err(RecordError::Database(m)) => assert!(m.contains("nonexistent"), "{m}"),
        other => panic!("{:?}", other.err()),
    }
    // Port 1 on loopback: nothing listens there, the connection is refused.
    match record_to(&w, "postgresql://memwatch@127.0.0.1:1/memwatch") {
        Err(RecordError::Database(m)) => assert!(m.contains("PostgreSQL"), "{m}"),
        other => panic!("{:?}", other.err()),
    }
    assert_eq!(
        Target::parse("postgres://u@h/db").unwrap(),
        Target::Postgres("postgres://u@h/db".into())
    );
    assert_eq!(Target::parse("sqlite://a/b.db").unwrap(), Target::Sqlite("a/b.db".into()));
    w.close();
    assert_eq!(record_to(&w, "x.db").err(), Some(RecordError::Closed));
}

/// A writer holding the database locked stalls the recorder: the queue
/// (4 events) fills, the rest is dropped, counted, and said in memwatch_losses.
#[test]
fn a_full_queue_drops_counts_and_records_the_loss() {
    let db = temp_db("overflow");
    let w = poll_watcher();
    let mut buf = [0u8; 8];
    // SAFETY: buf outlives the watch.
    unsafe { w.watch(buf.as_ptr(), buf.len(), "buf", None) }.unwrap();
    let options = RecordOptions { queue_capacity: 4, batch_size: 1, ..RecordOptions::default() };
    let rec = record_to_with(&w, db.to_str().unwrap(), options).unwrap();
    let blocker = rusqlite::Connection::open(&db).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    for i in 1..=20u8 {
        poke(&mut buf, 0, &[i]);
        assert_eq!(w.check_changes().unwrap().len(), 1);
    }
    let s = rec.stats();
    assert!(s.dropped >= 15, "at most 1 in hand + 4 queued: {s:?}");
    blocker.execute_batch("COMMIT").unwrap();
    assert!(rec.flush(Duration::from_secs(20)));
    let s = rec.stats();
    assert_eq!(s.written + s.dropped, 20, "{s:?}");
    let got = rows(&db);
    assert_eq!(got.len() as u64, s.written);
    let c = rusqlite::Connection::open(&db).unwrap();
    let (lost, reasons): (i64, String) = c
        .query_row(
            "SELECT sum(events_lost), group_concat(DISTINCT reason) FROM memwatch_losses \
             WHERE recording_id = ?1",
            [rec.recording_id()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(lost as u64, s.dropped);
    assert_eq!(reasons, "queue_full");
    // Written and lost seqs are disjoint and together are all 20.
    let (first, last): (i64, i64) = c
        .query_row("SELECT min(first_seq), max(last_seq) FROM memwatch_losses", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    for r in &got {
        assert!(r.0 < first || r.0 > last, "written seq {} inside the lost run", r.0);
    }
    w.close();
    rec.close();
}

/// Closing the watcher ends the recording once the queue is written.
#[test]
fn recorder_outlives_nothing_after_close() {
    let db = temp_db("close");
    let w = poll_watcher();
    let mut buf = [0u8; 8];
    // SAFETY: buf outlives the watch.
    unsafe { w.watch(buf.as_ptr(), buf.len(), "buf", None) }.unwrap();
    let rec = record_to(&w, db.to_str().unwrap()).unwrap();
    poke(&mut buf, 1, &[1]);
    assert_eq!(w.check_changes().unwrap().len(), 1);
    rec.close();
    poke(&mut buf, 2, &[2]);
    assert_eq!(w.check_changes().unwrap().len(), 1);
    let s = rec.stats();
    assert_eq!((s.written, s.dropped, s.queued), (1, 0, 0));
    assert_eq!(rows(&db).len(), 1);
    w.close();
}
