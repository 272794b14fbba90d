//! The two databases: schema, connection and one batch per transaction.

use std::time::Duration;

use crate::{Loss, Meta, Row, Target};

/// The SQLite schema (created if missing; WAL journal mode).
pub const SCHEMA_SQLITE: &str = "
CREATE TABLE IF NOT EXISTS memwatch_recordings (
    recording_id     INTEGER PRIMARY KEY,
    host             TEXT    NOT NULL,
    pid              INTEGER NOT NULL,
    process_start_ns INTEGER NOT NULL,
    watcher          INTEGER NOT NULL,
    backend          TEXT    NOT NULL,
    started_ns       INTEGER NOT NULL,
    clock_offset_ns  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS memwatch_events (
    recording_id        INTEGER NOT NULL,
    seq                 INTEGER NOT NULL,
    time_ns             INTEGER NOT NULL,
    monotonic_ns        INTEGER NOT NULL,
    adapter             INTEGER NOT NULL,
    region_id           INTEGER NOT NULL,
    variable_name       TEXT    NOT NULL,
    variable_name_bytes BLOB    NOT NULL,
    thread_id           INTEGER,
    fault_ip            INTEGER,
    file                TEXT    NOT NULL,
    function            TEXT    NOT NULL,
    line                INTEGER NOT NULL,
    how_big             INTEGER NOT NULL,
    changed_ranges      TEXT    NOT NULL,
    old_value           BLOB,
    new_value           BLOB,
    storage_key_old     TEXT,
    storage_key_new     TEXT,
    metadata            TEXT,
    metadata_bytes      BLOB,
    PRIMARY KEY (recording_id, seq)
);
CREATE INDEX IF NOT EXISTS memwatch_events_by_name ON memwatch_events (variable_name, time_ns);
CREATE TABLE IF NOT EXISTS memwatch_losses (
    recording_id INTEGER NOT NULL,
    loss_no      INTEGER NOT NULL,
    from_ns      INTEGER NOT NULL,
    to_ns        INTEGER NOT NULL,
    events_lost  INTEGER NOT NULL,
    first_seq    INTEGER,
    last_seq     INTEGER,
    reason       TEXT    NOT NULL,
    PRIMARY KEY (recording_id, loss_no)
);
";

/// The PostgreSQL schema (created if missing, under an advisory lock so that
/// processes starting together do not race).
pub const SCHEMA_POSTGRES: &str = "
CREATE TABLE IF NOT EXISTS memwatch_recordings (
    recording_id     BIGINT PRIMARY KEY,
    host             TEXT   NOT NULL,
    pid              BIGINT NOT NULL,
    process_start_ns BIGINT NOT NULL,
    watcher          BIGINT NOT NULL,
    backend          TEXT   NOT NULL,
    started_ns       BIGINT NOT NULL,
    clock_offset_ns  BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS memwatch_events (
    recording_id        BIGINT NOT NULL,
    seq                 BIGINT NOT NULL,
    time_ns             BIGINT NOT NULL,
    monotonic_ns        BIGINT NOT NULL,
    adapter             BIGINT NOT NULL,
    region_id           BIGINT NOT NULL,
    variable_name       TEXT   NOT NULL,
    variable_name_bytes BYTEA  NOT NULL,
    thread_id           BIGINT,
    fault_ip            BIGINT,
    file                TEXT   NOT NULL,
    function            TEXT   NOT NULL,
    line                BIGINT NOT NULL,
    how_big             BIGINT NOT NULL,
    changed_ranges      TEXT   NOT NULL,
    old_value           BYTEA,
    new_value           BYTEA,
    storage_key_old     TEXT,
    storage_key_new     TEXT,
    metadata            TEXT,
    metadata_bytes      BYTEA,
    PRIMARY KEY (recording_id, seq)
);
CREATE INDEX IF NOT EXISTS memwatch_events_by_name ON memwatch_events (variable_name, time_ns);
CREATE TABLE IF NOT EXISTS memwatch_losses (
    recording_id BIGINT NOT NULL,
    loss_no      BIGINT NOT NULL,
    from_ns      BIGINT NOT NULL,
    to_ns        BIGINT NOT NULL,
    events_lost  BIGINT NOT NULL,
    first_seq    BIGINT,
    last_seq     BIGINT,
    reason       TEXT   NOT NULL,
    PRIMARY KEY (recording_id, loss_no)
);
";

/// A connection the recorder writes batches through.
pub(crate) trait Db: Send {
    /// Writes `rows` and `losses` in one transaction; inserting a row that is
    /// already there (a retried batch whose commit went through) is a no-op.
    fn write(&mut self, meta: &Meta, rows: &[Row], losses: &[Loss]) -> Result<(), String>;
}

/// Connects, creates the schema if missing and registers the recording.
pub(crate) fn connect(target: &Target, meta: &Meta) -> Result<Box<dyn Db>, String> {
    match target {
        Target::Sqlite(path) => Ok(Box::new(Sqlite::open(path, meta)?)),
        Target::Postgres(url) => Ok(Box::new(Postgres::open(url, meta)?)),
    }
}

/// `[[offset,len],...]`
fn ranges_json(row: &Row) -> String {
    let mut s = String::from("[");
    for (i, r) in row.event.changed_ranges.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!("[{},{}]", r.offset, r.len));
    }
    s.push(']');
    s
}

fn time_ns(meta: &Meta, row: &Row) -> i64 {
    (row.event.timestamp_ns as i64).saturating_add(meta.clock_offset_ns)
}

struct Sqlite {
    conn: rusqlite::Connection,
}

const SQLITE_INSERT_EVENT: &str = "INSERT OR IGNORE INTO memwatch_events (recording_id, seq, \
    time_ns, monotonic_ns, adapter, region_id, variable_name, variable_name_bytes, thread_id, \
    fault_ip, file, function, line, how_big, changed_ranges, old_value, new_value, \
    storage_key_old, storage_key_new, metadata, metadata_bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6, \
    ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)";

const SQLITE_INSERT_LOSS: &str = "INSERT OR IGNORE INTO memwatch_losses (recording_id, loss_no, \
    from_ns, to_ns, events_lost, first_seq, last_seq, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

impl Sqlite {
    fn open(path: &str, meta: &Meta) -> Result<Sqlite, String> {
        let err = |e: rusqlite::Error| format!("SQLite database {path:?}: {e}");
        let conn = rusqlite::Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
        let mode: String =
            conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(format!("SQLite database {path:?}: cannot use WAL mode (got {mode})"));
        }
        conn.execute_batch("PRAGMA synchronous=NORMAL;").map_err(err)?;
        conn.execute_batch(SCHEMA_SQLITE).map_err(err)?;
        conn.execute(
            "INSERT OR IGNORE INTO memwatch_recordings (recording_id, host, pid, \
             process_start_ns, watcher, backend, started_ns, clock_offset_ns) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            rusqlite::params![
                meta.recording_id,
                meta.host,
                meta.pid,
                meta.process_start_ns,
                meta.watcher,
                meta.backend,
                meta.started_ns,
                meta.clock_offset_ns
            ],
        )
        .map_err(err)?;
        Ok(Sqlite { conn })
    }
}

impl Db for Sqlite {
    fn write(&mut self, meta: &Meta, rows: &[Row], losses: &[Loss]) -> Result<(), String> {
        let err = |e: rusqlite::Error| format!("SQLite: {e}");
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut ins = tx.prepare_cached(SQLITE_INSERT_EVENT).map_err(err)?;
            for row in rows {
                let e = &row.event;
                ins.execute(rusqlite::params![
                    meta.recording_id,
                    e.seq as i64,
                    time_ns(meta, row),
                    e.timestamp_ns as i64,
                    e.adapter_id,
                    e.region_id,
                    e.variable_name,
                    e.variable_name.as_bytes(),
                    e.where_.thread_id,
                    e.where_.fault_ip.map(|ip| ip as i64),
                    e.where_.file,
                    e.where_.function,
                    e.where_.line,
                    e.how_big as i64,
                    ranges_json(row),
                    e.old_value,
                    e.new_value,
                    e.storage_key_old,
                    e.storage_key_new,
                    e.metadata,
                    e.metadata.as_ref().map(|m| m.as_bytes()),
                ])
                .map_err(err)?;
            }
            let mut ins = tx.prepare_cached(SQLITE_INSERT_LOSS).map_err(err)?;
            for l in losses {
                ins.execute(rusqlite::params![
                    meta.recording_id,
                    l.loss_no,
                    l.from_ns,
                    l.to_ns,
                    l.events_lost,
                    l.first_seq,
                    l.last_seq,
                    l.reason
                ])
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }
}

struct Postgres {
    client: postgres::Client,
    insert_events: postgres::Statement,
    insert_losses: postgres::Statement,
}

/// PostgreSQL `text` cannot hold NUL: the text column gets U+FFFD for it
/// (the `*_bytes` column keeps the exact bytes).
fn pg_text(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

impl Postgres {
    fn open(url: &str, meta: &Meta) -> Result<Postgres, String> {
        let err = |e: postgres::Error| format!("PostgreSQL: {e}");
        let mut config: postgres::Config =
            url.parse().map_err(|e| format!("PostgreSQL URL {url:?}: {e}"))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.application_name("memwatch-record");
        let mut client = config.connect(postgres::NoTls).map_err(err)?;
        let mut tx = client.transaction().map_err(err)?;
        // One schema creator at a time ("mwrc" as the lock key).
        tx.execute("SELECT pg_advisory_xact_lock(1836544611)", &[]).map_err(err)?;
        tx.batch_execute(SCHEMA_POSTGRES).map_err(err)?;
        tx.execute(
            "INSERT INTO memwatch_recordings (recording_id, host, pid, process_start_ns, \
             watcher, backend, started_ns, clock_offset_ns) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT DO NOTHING",
            &[
                &meta.recording_id,
                &pg_text(&meta.host),
                &meta.pid,
                &meta.process_start_ns,
                &meta.watcher,
                &meta.backend,
                &meta.started_ns,
                &meta.clock_offset_ns,
            ],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        // One statement per batch: the columns as arrays, unnested server-side.
        let insert_events = client
            .prepare(
                "INSERT INTO memwatch_events (recording_id, seq, time_ns, monotonic_ns, adapter, \
                 region_id, variable_name, variable_name_bytes, thread_id, fault_ip, file, \
                 function, line, how_big, changed_ranges, old_value, new_value, storage_key_old, \
                 storage_key_new, metadata, metadata_bytes) \
                 SELECT $1::int8, * FROM unnest($2::int8[], $3::int8[], $4::int8[], $5::int8[], \
                 $6::int8[], $7::text[], $8::bytea[], $9::int8[], $10::int8[], $11::text[], \
                 $12::text[], $13::int8[], $14::int8[], $15::text[], $16::bytea[], $17::bytea[], \
                 $18::text[], $19::text[], $20::text[], $21::bytea[]) \
                 ON CONFLICT DO NOTHING",
            )
            .map_err(err)?;
        let insert_losses = client
            .prepare(
                "INSERT INTO memwatch_losses (recording_id, loss_no, from_ns, to_ns, events_lost, \
                 first_seq, last_seq, reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT DO NOTHING",
            )
            .map_err(err)?;
        Ok(Postgres { client, insert_events, insert_losses })
    }
}

impl Db for Postgres {
    fn write(&mut self, meta: &Meta, rows: &[Row], losses: &[Loss]) -> Result<(), String> {
        let err = |e: postgres::Error| format!("PostgreSQL: {e}");
        let n = rows.len();
        let mut seq = Vec::with_capacity(n);
        let mut time = Vec::with_capacity(n);
        let mut mono = Vec::with_capacity(n);
        let mut adapter = Vec::with_capacity(n);
        let mut region = Vec::with_capacity(n);
        let mut name = Vec::with_capacity(n);
        let mut name_bytes = Vec::with_capacity(n);
        let mut thread = Vec::with_capacity(n);
        let mut ip = Vec::with_capacity(n);
        let mut file = Vec::with_capacity(n);
        let mut function = Vec::with_capacity(n);
        let mut line = Vec::with_capacity(n);
        let mut how_big = Vec::with_capacity(n);
        let mut ranges = Vec::with_capacity(n);
        let mut old = Vec::with_capacity(n);
        let mut new = Vec::with_capacity(n);
        let mut key_old = Vec::with_capacity(n);
        let mut key_new = Vec::with_capacity(n);
        let mut md = Vec::with_capacity(n);
        let mut md_bytes = Vec::with_capacity(n);
        for row in rows {
            let e = &row.event;
            seq.push(e.seq as i64);
            time.push(time_ns(meta, row));
            mono.push(e.timestamp_ns as i64);
            adapter.push(e.adapter_id as i64);
            region.push(e.region_id as i64);
            name.push(pg_text(&e.variable_name));
            name_bytes.push(e.variable_name.as_bytes());
            thread.push(e.where_.thread_id.map(|t| t as i64));
            ip.push(e.where_.fault_ip.map(|v| v as i64));
            file.push(pg_text(&e.where_.file));
            function.push(pg_text(&e.where_.function));
            line.push(e.where_.line as i64);
            how_big.push(e.how_big as i64);
            ranges.push(ranges_json(row));
            old.push(e.old_value.as_deref());
            new.push(e.new_value.as_deref());
            key_old.push(e.storage_key_old.as_deref().map(pg_text));
            key_new.push(e.storage_key_new.as_deref().map(pg_text));
            md.push(e.metadata.as_deref().map(pg_text));
            md_bytes.push(e.metadata.as_deref().map(str::as_bytes));
        }
        let mut tx = self.client.transaction().map_err(err)?;
        if n > 0 {
            tx.execute(
                &self.insert_events,
                &[
                    &meta.recording_id,
                    &seq,
                    &time,
                    &mono,
                    &adapter,
                    &region,
                    &name,
                    &name_bytes,
                    &thread,
                    &ip,
                    &file,
                    &function,
                    &line,
                    &how_big,
                    &ranges,
                    &old,
                    &new,
                    &key_old,
                    &key_new,
                    &md,
                    &md_bytes,
                ],
            )
            .map_err(err)?;
        }
        for l in losses {
            tx.execute(
                &self.insert_losses,
                &[
                    &meta.recording_id,
                    &l.loss_no,
                    &l.from_ns,
                    &l.to_ns,
                    &l.events_lost,
                    &l.first_seq,
                    &l.last_seq,
                    &l.reason,
                ],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }
}
