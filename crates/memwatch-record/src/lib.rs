//! memwatch-record: every change event of a [`Watcher`] written to a database.
//!
//! [`record_to`] attaches a recorder to a watcher: `"path/to/events.db"` or
//! `"sqlite:path"` records into SQLite (WAL mode), `"postgresql://..."` (or
//! `"postgres://..."`) into a PostgreSQL server. The recorder sees every event
//! through an event sink of the engine, whether the program takes its events
//! with a callback or with `check_changes()`.
//!
//! Recording never blocks the watched program: the sink hands each event to a
//! bounded queue that the recorder's own thread drains in batches (one
//! transaction each, prepared statements only). When the queue is full the
//! event is counted as dropped, and a row of `memwatch_losses` says how many
//! and when. A database that goes away is reconnected with backoff; the
//! batch in hand is retried (inserts are idempotent), and the outage is a row
//! of `memwatch_losses` too. The schema is [`SCHEMA_SQLITE`] /
//! [`SCHEMA_POSTGRES`], documented in the README.
//!
//! ```
//! use memwatch_core::{Backend, Options, Watcher};
//! use std::time::Duration;
//! let dir = std::env::temp_dir().join(format!("mwrec-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let db = dir.join("events.db");
//! let w = Watcher::new(Options { backend: Backend::Poll, ..Options::default() }).unwrap();
//! let mut buf = vec![0u8; 8];
//! // SAFETY: buf outlives the watch (the watcher is closed below).
//! unsafe { w.watch(buf.as_ptr(), buf.len(), "buf", None) }.unwrap();
//! let rec = memwatch_record::record_to(&w, db.to_str().unwrap()).unwrap();
//! buf[0] = 7;
//! w.check_changes().unwrap();
//! assert!(rec.flush(Duration::from_secs(10)));
//! assert_eq!(rec.stats().written, 1);
//! w.close();
//! rec.close();
//! std::fs::remove_dir_all(&dir).unwrap();
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod db;
mod process;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use memwatch_core::{ChangeEvent, Watcher};

pub use db::{SCHEMA_POSTGRES, SCHEMA_SQLITE};

/// Why [`record_to`] failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// The URL is not one the recorder understands, or an option of
    /// [`record_to_with`] is out of range (with the reason).
    InvalidUrl(String),
    /// The database could not be opened or reached, or refused the schema.
    Database(String),
    /// The watcher is closed.
    Closed,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::InvalidUrl(m) => write!(f, "invalid recording URL: {m}"),
            RecordError::Database(m) => write!(f, "cannot record: {m}"),
            RecordError::Closed => f.write_str("watcher is closed"),
        }
    }
}

impl std::error::Error for RecordError {}

/// Where events go, parsed from a URL by [`Target::parse`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A SQLite database file (created if missing).
    Sqlite(String),
    /// A PostgreSQL connection string (`postgresql://user@host:port/db?...`).
    Postgres(String),
}

impl Target {
    /// `postgresql://...` / `postgres://...` is PostgreSQL; `sqlite:PATH`,
    /// `sqlite://PATH` or a plain path is SQLite. Empty strings, other
    /// schemes (`mysql://`, `http://`) and paths with NUL bytes are refused.
    pub fn parse(url: &str) -> Result<Target, RecordError> {
        if url.contains('\0') {
            return Err(RecordError::InvalidUrl("the URL contains a NUL byte".into()));
        }
        if url.starts_with("postgresql://") || url.starts_with("postgres://") {
            return Ok(Target::Postgres(url.to_string()));
        }
        let path =
            url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
        if path.is_empty() {
            return Err(RecordError::InvalidUrl(format!(
                "{url:?}: expected a file path, \"sqlite:PATH\" or \"postgresql://...\""
            )));
        }
        if let Some(i) = path.find("://") {
            return Err(RecordError::InvalidUrl(format!(
                "unsupported scheme {:?}: expected a file path, \"sqlite:PATH\" or \"postgresql://...\"",
                &path[..i]
            )));
        }
        Ok(Target::Sqlite(path.to_string()))
    }
}

/// Tuning of a recorder; `RecordOptions::default()` gives the documented defaults.
#[derive(Clone, Debug)]
pub struct RecordOptions {
    /// Events the queue between the watched program and the recorder's
    /// thread holds; default 65 536. Beyond it events are dropped and counted.
    pub queue_capacity: usize,
    /// Most events written in one transaction; default 1024.
    pub batch_size: usize,
    /// Longest wait between reconnection attempts; default 1 s (the wait
    /// starts at 10 ms and doubles).
    pub max_backoff: Duration,
    /// How long [`Recorder::close`] keeps trying to write what is queued
    /// when the database is down; default 5 s. What is still unwritten then
    /// is counted in [`RecorderStats::abandoned`].
    pub close_timeout: Duration,
}

impl Default for RecordOptions {
    fn default() -> Self {
        RecordOptions {
            queue_capacity: 65_536,
            batch_size: 1024,
            max_backoff: Duration::from_secs(1),
            close_timeout: Duration::from_secs(5),
        }
    }
}

/// Counters of one recorder. Every event the watcher produced while the
/// recorder was attached is in exactly one of `written`, `dropped`,
/// `abandoned` or `queued`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecorderStats {
    /// Events committed to the database.
    pub written: u64,
    /// Events the full queue could not take (never written; counted in
    /// `memwatch_losses`).
    pub dropped: u64,
    /// Events queued but not written when the recorder closed with the
    /// database unreachable.
    pub abandoned: u64,
    /// Events waiting in the queue or in the batch being written.
    pub queued: u64,
    /// Transactions committed.
    pub batches: u64,
    /// Times the connection was lost and made again.
    pub reconnects: u64,
    /// Whether the recorder holds a working connection now.
    pub connected: bool,
    /// The last database error seen (empty if none).
    pub last_error: String,
    /// The id of this recording (`memwatch_recordings.recording_id`).
    pub recording_id: i64,
}

/// One event as the recorder keeps it until it is written.
pub(crate) struct Row {
    pub event: ChangeEvent,
}

/// A run of dropped events or an outage, as written to `memwatch_losses`.
#[derive(Clone, Debug)]
pub(crate) struct Loss {
    /// Number of the row within its recording (the retry-safe key).
    pub loss_no: i64,
    pub from_ns: i64,
    pub to_ns: i64,
    pub events_lost: i64,
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    pub reason: &'static str,
}

/// Describes the recording process and watcher (`memwatch_recordings`).
#[derive(Clone, Debug)]
pub(crate) struct Meta {
    pub recording_id: i64,
    pub host: String,
    pub pid: i64,
    pub process_start_ns: i64,
    pub watcher: i64,
    pub backend: String,
    pub started_ns: i64,
    /// Unix ns = CLOCK_MONOTONIC ns + this.
    pub clock_offset_ns: i64,
}

#[derive(Default)]
struct Counters {
    written: u64,
    abandoned: u64,
    batches: u64,
    reconnects: u64,
    connected: bool,
    last_error: String,
    /// Drops written to `memwatch_losses` so far.
    drops_reported: u64,
}

/// State shared by the sink, the recorder thread and the handle.
struct Shared {
    tx: Mutex<Option<SyncSender<Row>>>,
    accepted: AtomicU64,
    dropped: AtomicU64,
    drop_first_seq: AtomicU64,
    drop_last_seq: AtomicU64,
    drop_first_ns: AtomicU64,
    drop_last_ns: AtomicU64,
    counters: Mutex<Counters>,
    cond: Condvar,
    closing: AtomicBool,
}

impl Shared {
    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The sink: never blocks.
    fn offer(&self, event: &ChangeEvent) {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tx) = tx.as_ref() else { return };
        match tx.try_send(Row { event: event.clone() }) {
            Ok(()) => {
                self.accepted.fetch_add(1, Ordering::SeqCst);
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.drop_first_seq.fetch_min(event.seq, Ordering::Relaxed);
                self.drop_last_seq.fetch_max(event.seq, Ordering::Relaxed);
                self.drop_first_ns.fetch_min(event.timestamp_ns, Ordering::Relaxed);
                self.drop_last_ns.fetch_max(event.timestamp_ns, Ordering::Relaxed);
                self.dropped.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// Drops not yet reported, as a loss row (None if there are none).
    fn take_drops(&self, reported: u64, meta: &Meta, reason: &'static str) -> Option<(u64, Loss)> {
        let total = self.dropped.load(Ordering::SeqCst);
        if total == reported {
            return None;
        }
        let first_seq = self.drop_first_seq.swap(u64::MAX, Ordering::Relaxed);
        let last_seq = self.drop_last_seq.swap(0, Ordering::Relaxed);
        let first_ns = self.drop_first_ns.swap(u64::MAX, Ordering::Relaxed);
        let last_ns = self.drop_last_ns.swap(0, Ordering::Relaxed);
        let wall = |ns: u64| (ns as i64).saturating_add(meta.clock_offset_ns);
        let now = process::unix_ns();
        Some((
            total,
            Loss {
                loss_no: 0,
                from_ns: if first_ns == u64::MAX { now } else { wall(first_ns) },
                to_ns: if last_ns == 0 { now } else { wall(last_ns) },
                events_lost: (total - reported) as i64,
                first_seq: (first_seq != u64::MAX).then_some(first_seq as i64),
                last_seq: (first_seq != u64::MAX).then_some(last_seq as i64),
                reason,
            },
        ))
    }
}

/// A running recorder. Dropping it closes it ([`Recorder::close`]).
pub struct Recorder {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    recording_id: i64,
}

/// Records every event of `watcher` into the database `url` names (see
/// [`Target::parse`]) with default [`RecordOptions`]. Connects, creates the
/// schema if missing and registers the recording before it returns, so a
/// bad URL or an unreachable database is an error here.
pub fn record_to(watcher: &Watcher, url: &str) -> Result<Recorder, RecordError> {
    record_to_with(watcher, url, RecordOptions::default())
}

/// [`record_to`] with explicit options.
pub fn record_to_with(
    watcher: &Watcher,
    url: &str,
    options: RecordOptions,
) -> Result<Recorder, RecordError> {
    if watcher.is_closed() {
        return Err(RecordError::Closed);
    }
    if options.queue_capacity == 0 || options.batch_size == 0 {
        return Err(RecordError::InvalidUrl("queue_capacity and batch_size must be > 0".into()));
    }
    let target = Target::parse(url)?;
    let meta = process::meta(watcher);
    let conn = db::connect(&target, &meta).map_err(RecordError::Database)?;
    let (tx, rx) = mpsc::sync_channel(options.queue_capacity);
    let shared = Arc::new(Shared {
        tx: Mutex::new(Some(tx)),
        accepted: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        drop_first_seq: AtomicU64::new(u64::MAX),
        drop_last_seq: AtomicU64::new(0),
        drop_first_ns: AtomicU64::new(u64::MAX),
        drop_last_ns: AtomicU64::new(0),
        counters: Mutex::new(Counters { connected: true, ..Counters::default() }),
        cond: Condvar::new(),
        closing: AtomicBool::new(false),
    });
    let sink_shared = Arc::clone(&shared);
    watcher
        .add_event_sink(Arc::new(move |e: &ChangeEvent| sink_shared.offer(e)))
        .map_err(|_| RecordError::Closed)?;
    let thread_shared = Arc::clone(&shared);
    let recording_id = meta.recording_id;
    let thread = std::thread::Builder::new()
        .name("memwatch-recorder".into())
        .spawn(move || run(thread_shared, rx, target, meta, conn, options))
        .map_err(|e| RecordError::Database(format!("cannot start the recorder thread: {e}")))?;
    Ok(Recorder { shared, thread: Mutex::new(Some(thread)), recording_id })
}

impl Recorder {
    /// The counters now.
    pub fn stats(&self) -> RecorderStats {
        let accepted = self.shared.accepted.load(Ordering::SeqCst);
        let c = self.shared.counters();
        RecorderStats {
            written: c.written,
            dropped: self.shared.dropped.load(Ordering::SeqCst),
            abandoned: c.abandoned,
            queued: accepted.saturating_sub(c.written + c.abandoned),
            batches: c.batches,
            reconnects: c.reconnects,
            connected: c.connected,
            last_error: c.last_error.clone(),
            recording_id: self.recording_id,
        }
    }

    /// Records the events of one more watcher into this recording too (a
    /// binding that runs two core watchers behind one of its own, say). Its
    /// events carry their own region ids; `memwatch_recordings.watcher`
    /// stays the first watcher's id.
    pub fn attach(&self, watcher: &Watcher) -> Result<(), RecordError> {
        if self.shared.closing.load(Ordering::SeqCst) {
            return Err(RecordError::Closed);
        }
        let sink_shared = Arc::clone(&self.shared);
        watcher
            .add_event_sink(Arc::new(move |e: &ChangeEvent| sink_shared.offer(e)))
            .map(|_| ())
            .map_err(|_| RecordError::Closed)
    }

    /// The id of this recording in `memwatch_recordings`.
    pub fn recording_id(&self) -> i64 {
        self.recording_id
    }

    /// Waits until every event queued before this call is written (or
    /// abandoned) and every drop counted before it is in `memwatch_losses`.
    /// `false` if that did not happen within `timeout` (the database is
    /// down, for instance); recording goes on either way.
    pub fn flush(&self, timeout: Duration) -> bool {
        let accepted = self.shared.accepted.load(Ordering::SeqCst);
        let dropped = self.shared.dropped.load(Ordering::SeqCst);
        let deadline = Instant::now() + timeout;
        let mut c = self.shared.counters();
        loop {
            if c.written + c.abandoned >= accepted && c.drops_reported >= dropped {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            c = self
                .shared
                .cond
                .wait_timeout(c, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Stops recording: events after this call are not recorded; what is
    /// queued is written first (trying for at most
    /// [`RecordOptions::close_timeout`] while the database is down).
    /// Idempotent.
    pub fn close(&self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        self.shared.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        let handle = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.close();
    }
}

/// The recorder's thread: batches, writes, reconnects.
fn run(
    shared: Arc<Shared>,
    rx: Receiver<Row>,
    target: Target,
    meta: Meta,
    conn: Box<dyn db::Db>,
    options: RecordOptions,
) {
    let mut conn = Some(conn);
    let mut batch: Vec<Row> = Vec::with_capacity(options.batch_size);
    let mut losses: Vec<Loss> = Vec::new();
    let mut next_loss = 0i64;
    let mut drops_in_hand = 0u64; // dropped total covered by `losses`
    let mut disconnected = false;
    let mut outage_since: Option<i64> = None;
    let mut backoff = Duration::from_millis(10);
    let mut close_deadline: Option<Instant> = None;
    loop {
        if batch.is_empty() {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(row) => batch.push(row),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => disconnected = true,
            }
        }
        while batch.len() < options.batch_size {
            match rx.try_recv() {
                Ok(row) => batch.push(row),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    disconnected = true;
                    break;
                }
            }
        }
        let reason = if outage_since.is_some() { "database_unavailable" } else { "queue_full" };
        if let Some((total, mut loss)) = shared.take_drops(drops_in_hand, &meta, reason) {
            drops_in_hand = total;
            next_loss += 1;
            loss.loss_no = next_loss;
            losses.push(loss);
        }
        if batch.is_empty() && losses.is_empty() {
            if disconnected {
                break;
            }
            continue;
        }
        if conn.is_none() {
            match db::connect(&target, &meta) {
                Ok(c) => {
                    conn = Some(c);
                    shared.counters().reconnects += 1;
                }
                Err(e) => {
                    note_failure(&shared, e, &mut outage_since);
                    if give_up(&shared, &options, &mut close_deadline, disconnected) {
                        abandon(&shared, &mut batch, &rx);
                        break;
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(options.max_backoff);
                    continue;
                }
            }
        }
        if let Some(since) = outage_since.take() {
            // Connected again: the outage becomes one row, with what was
            // dropped while it lasted.
            next_loss += 1;
            let gap = Loss {
                loss_no: next_loss,
                from_ns: since,
                to_ns: process::unix_ns(),
                events_lost: losses.iter().map(|l| l.events_lost).sum(),
                first_seq: losses.iter().filter_map(|l| l.first_seq).min(),
                last_seq: losses.iter().filter_map(|l| l.last_seq).max(),
                reason: "database_unavailable",
            };
            losses.clear();
            losses.push(gap);
        }
        let c = conn.as_mut().expect("connected");
        match c.write(&meta, &batch, &losses) {
            Ok(()) => {
                backoff = Duration::from_millis(10);
                let mut k = shared.counters();
                k.written += batch.len() as u64;
                k.batches += 1;
                k.connected = true;
                k.drops_reported = drops_in_hand;
                drop(k);
                shared.cond.notify_all();
                batch.clear();
                losses.clear();
            }
            Err(e) => {
                conn = None;
                note_failure(&shared, e, &mut outage_since);
                if give_up(&shared, &options, &mut close_deadline, disconnected) {
                    abandon(&shared, &mut batch, &rx);
                    break;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(options.max_backoff);
            }
        }
    }
    shared.cond.notify_all();
}

fn note_failure(shared: &Shared, e: String, outage_since: &mut Option<i64>) {
    if outage_since.is_none() {
        *outage_since = Some(process::unix_ns());
    }
    let mut k = shared.counters();
    k.connected = false;
    k.last_error = e;
}

/// True once a closing recorder has tried long enough.
fn give_up(
    shared: &Shared,
    options: &RecordOptions,
    deadline: &mut Option<Instant>,
    disconnected: bool,
) -> bool {
    if !(disconnected || shared.closing.load(Ordering::SeqCst)) {
        return false;
    }
    let d = *deadline.get_or_insert_with(|| Instant::now() + options.close_timeout);
    Instant::now() >= d
}

/// Counts everything still in hand as abandoned.
fn abandon(shared: &Shared, batch: &mut Vec<Row>, rx: &Receiver<Row>) {
    let mut n = batch.len() as u64;
    batch.clear();
    while rx.try_recv().is_ok() {
        n += 1;
    }
    shared.counters().abandoned += n;
    shared.cond.notify_all();
}
