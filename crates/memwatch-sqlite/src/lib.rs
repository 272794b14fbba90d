//! memwatch-sqlite: memwatch's live state and recordings as SQLite tables.
//!
//! Eponymous virtual tables (no `CREATE VIRTUAL TABLE` needed), used as
//! table-valued functions:
//!
//! - `kv(store, key, value, version)`: the entries of a MemStream store,
//!   read live from its shared memory: `SELECT key, value FROM kv('prices')`.
//!   `version` is the entry's last-update time in Unix nanoseconds (it changes
//!   with every put). `key = ...` is pushed down (one lookup, no scan).
//! - `mw_events(...)`: the events of a recording made by memwatch-record
//!   (`record_to("events.db")`), joined with the recording's process:
//!   `SELECT * FROM mw_events('events.db') WHERE variable_name = 'x'`
//!   (`variable_name = ...` is pushed down).
//!
//! - `mg_sessions`, `mg_objects`, `mg_fields(session, object, path, type,
//!   atomicity, value, torn)`: memglass sessions observed live (read-only);
//!   each object of mg_fields is one consistent snapshot; `session = ...`
//!   and `object = ...` are pushed down (without them: every session that is
//!   not dead).
//!
//! Load it into the sqlite3 shell with `.load path/to/libmemwatch_sqlite`, or
//! embed it with [`register`] (build with the `bundled` feature then).

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod glass;

use std::ffi::c_int;
use std::marker::PhantomData;

use rusqlite::types::Value;
use rusqlite::vtab::{
    eponymous_only_module, Context, Filters, IndexConstraintOp, IndexInfo, VTab, VTabConfig,
    VTabConnection, VTabCursor,
};
use rusqlite::{ffi, Connection, Error, OpenFlags, Result};

/// Registers the tables (`kv`, `mw_events`, `mg_sessions`, `mg_objects`,
/// `mg_fields`) on `conn`.
pub fn register(conn: &Connection) -> Result<()> {
    conn.create_module(c"kv", eponymous_only_module::<KvTab>(), None)?;
    conn.create_module(c"mw_events", eponymous_only_module::<EventsTab>(), None)?;
    conn.create_module(c"mg_sessions", eponymous_only_module::<glass::SessionsTab>(), None)?;
    conn.create_module(c"mg_objects", eponymous_only_module::<glass::ObjectsTab>(), None)?;
    conn.create_module(c"mg_fields", eponymous_only_module::<glass::FieldsTab>(), None)?;
    Ok(())
}

/// The entry point SQLite looks for when loading `libmemwatch_sqlite.so`.
///
/// # Safety
/// Called by SQLite's extension loader with its own valid arguments.
#[cfg(feature = "loadable")]
#[no_mangle]
pub unsafe extern "C" fn sqlite3_memwatchsqlite_init(
    db: *mut ffi::sqlite3,
    pz_err_msg: *mut *mut std::ffi::c_char,
    p_api: *mut ffi::sqlite3_api_routines,
) -> c_int {
    // SAFETY: the arguments come from SQLite's loader as they are.
    unsafe { Connection::extension_init2(db, pz_err_msg, p_api, init) }
}

#[cfg(feature = "loadable")]
fn init(db: Connection) -> Result<bool> {
    register(&db)?;
    Ok(false)
}

fn module_error(msg: impl Into<String>) -> Error {
    Error::ModuleError(msg.into())
}

/// A whole result set held by a cursor: the rows of one filter() call.
#[derive(Default)]
struct Rows {
    rows: Vec<Vec<Value>>,
    at: usize,
}

impl Rows {
    fn eof(&self) -> bool {
        self.at >= self.rows.len()
    }

    fn column(&self, ctx: &mut Context, i: c_int) -> Result<()> {
        match self.rows.get(self.at).and_then(|r| r.get(i as usize)) {
            Some(v) => ctx.set_result(v),
            None => ctx.set_result(&Value::Null),
        }
    }
}

/// Finds usable `=` constraints on the given columns: for each column, the
/// argv position filter() gets it at (1-based), or 0. Returns the bit mask
/// of the columns found (bit i = columns[i]).
fn equality_args(info: &mut IndexInfo, columns: &[c_int]) -> c_int {
    let mut found: Vec<Option<usize>> = vec![None; columns.len()];
    for (i, c) in info.constraints().enumerate() {
        if !c.is_usable() || c.operator() != IndexConstraintOp::SQLITE_INDEX_CONSTRAINT_EQ {
            continue;
        }
        if let Some(k) = columns.iter().position(|&col| col == c.column()) {
            found[k].get_or_insert(i);
        }
    }
    let mut mask = 0;
    let mut argv = 0;
    for (k, f) in found.iter().enumerate() {
        if let Some(i) = f {
            argv += 1;
            let mut usage = info.constraint_usage(*i);
            usage.set_argv_index(argv);
            usage.set_omit(true);
            mask |= 1 << k;
        }
    }
    mask
}

/// A text value when the bytes are UTF-8, else a blob.
fn text_or_blob(bytes: Vec<u8>) -> Value {
    match String::from_utf8(bytes) {
        Ok(s) => Value::Text(s),
        Err(e) => Value::Blob(e.into_bytes()),
    }
}

fn arg_text(args: &Filters<'_>, i: usize, what: &str) -> Result<String> {
    let v: Option<String> = args.get(i)?;
    v.ok_or_else(|| module_error(format!("{what} must not be NULL")))
}

// ---------------------------------------------------------------- kv ---

const KV_KEY: c_int = 0;
const KV_STORE: c_int = 3;

#[repr(C)]
struct KvTab {
    /// Base class; must be first.
    base: ffi::sqlite3_vtab,
}

// SAFETY: KvTab is repr(C) with sqlite3_vtab first, as the trait requires.
unsafe impl<'vtab> VTab<'vtab> for KvTab {
    type Aux = ();
    type Cursor = KvCursor<'vtab>;

    fn connect(
        db: &mut VTabConnection,
        _aux: Option<&()>,
        _args: &[&[u8]],
    ) -> Result<(String, Self)> {
        db.config(VTabConfig::DirectOnly)?;
        let schema = "CREATE TABLE x(key, value BLOB, version INTEGER, store HIDDEN)";
        Ok((schema.to_owned(), KvTab { base: ffi::sqlite3_vtab::default() }))
    }

    fn best_index(&self, info: &mut IndexInfo) -> Result<()> {
        let mask = equality_args(info, &[KV_STORE, KV_KEY]);
        info.set_idx_num(mask);
        // Without the store the table cannot be read: make that plan the last resort.
        info.set_estimated_cost(match mask {
            0 | 2 => 1e18,
            1 => 1000.0,
            _ => 1.0,
        });
        Ok(())
    }

    fn open(&'vtab mut self) -> Result<KvCursor<'vtab>> {
        Ok(KvCursor {
            base: ffi::sqlite3_vtab_cursor::default(),
            rows: Rows::default(),
            _p: PhantomData,
        })
    }
}

#[repr(C)]
struct KvCursor<'vtab> {
    /// Base class; must be first.
    base: ffi::sqlite3_vtab_cursor,
    rows: Rows,
    _p: PhantomData<&'vtab KvTab>,
}

fn store_err(name: &str, e: memwatch_store::Error) -> Error {
    module_error(format!("kv: store {name:?}: {e}"))
}

fn ns(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

// SAFETY: KvCursor is repr(C) with sqlite3_vtab_cursor first.
unsafe impl VTabCursor for KvCursor<'_> {
    fn filter(&mut self, idx_num: c_int, _idx_str: Option<&str>, args: &Filters<'_>) -> Result<()> {
        if idx_num & 1 == 0 {
            return Err(module_error("kv needs a store name: SELECT * FROM kv('store-name')"));
        }
        let name = arg_text(args, 0, "the store name")?;
        let store = memwatch_store::Store::open(&name).map_err(|e| store_err(&name, e))?;
        let keys: Vec<Vec<u8>> = if idx_num & 2 != 0 {
            let key: Value = args.get(1)?;
            match key {
                Value::Text(s) => vec![s.into_bytes()],
                Value::Blob(b) => vec![b],
                Value::Null => vec![],
                other => vec![format!("{other:?}").into_bytes()],
            }
        } else {
            store.keys().map_err(|e| store_err(&name, e))?
        };
        let mut rows = Vec::with_capacity(keys.len());
        for key in keys {
            // A key deleted between listing and reading is simply not there.
            let Some(stats) = store.key_stats(&key).map_err(|e| store_err(&name, e))? else {
                continue;
            };
            let Some(value) = store.get(&key).map_err(|e| store_err(&name, e))? else {
                continue;
            };
            rows.push(vec![
                text_or_blob(key),
                Value::Blob(value),
                Value::Integer(ns(stats.updated_at)),
                Value::Text(name.clone()),
            ]);
        }
        self.rows = Rows { rows, at: 0 };
        Ok(())
    }

    fn next(&mut self) -> Result<()> {
        self.rows.at += 1;
        Ok(())
    }

    fn eof(&self) -> bool {
        self.rows.eof()
    }

    fn column(&self, ctx: &mut Context, i: c_int) -> Result<()> {
        self.rows.column(ctx, i)
    }

    fn rowid(&self) -> Result<i64> {
        Ok(self.rows.at as i64)
    }
}

// --------------------------------------------------------- mw_events ---

const EV_COLUMNS: &str = "recording_id, host, pid, seq, time_ns, variable_name, region_id, \
    thread_id, old_value, new_value, changed_ranges, metadata, adapter";
const EV_NAME: c_int = 5;
const EV_RECORDING: c_int = 13;

#[repr(C)]
struct EventsTab {
    /// Base class; must be first.
    base: ffi::sqlite3_vtab,
}

// SAFETY: EventsTab is repr(C) with sqlite3_vtab first.
unsafe impl<'vtab> VTab<'vtab> for EventsTab {
    type Aux = ();
    type Cursor = EventsCursor<'vtab>;

    fn connect(
        db: &mut VTabConnection,
        _aux: Option<&()>,
        _args: &[&[u8]],
    ) -> Result<(String, Self)> {
        db.config(VTabConfig::DirectOnly)?;
        let schema = format!("CREATE TABLE x({EV_COLUMNS}, recording HIDDEN)");
        Ok((schema, EventsTab { base: ffi::sqlite3_vtab::default() }))
    }

    fn best_index(&self, info: &mut IndexInfo) -> Result<()> {
        let mask = equality_args(info, &[EV_RECORDING, EV_NAME]);
        info.set_idx_num(mask);
        info.set_estimated_cost(match mask {
            0 | 2 => 1e18,
            1 => 100_000.0,
            _ => 100.0,
        });
        Ok(())
    }

    fn open(&'vtab mut self) -> Result<EventsCursor<'vtab>> {
        Ok(EventsCursor {
            base: ffi::sqlite3_vtab_cursor::default(),
            rows: Rows::default(),
            _p: PhantomData,
        })
    }
}

#[repr(C)]
struct EventsCursor<'vtab> {
    /// Base class; must be first.
    base: ffi::sqlite3_vtab_cursor,
    rows: Rows,
    _p: PhantomData<&'vtab EventsTab>,
}

// SAFETY: EventsCursor is repr(C) with sqlite3_vtab_cursor first.
unsafe impl VTabCursor for EventsCursor<'_> {
    fn filter(&mut self, idx_num: c_int, _idx_str: Option<&str>, args: &Filters<'_>) -> Result<()> {
        if idx_num & 1 == 0 {
            return Err(module_error(
                "mw_events needs a recording: SELECT * FROM mw_events('events.db')",
            ));
        }
        let path = arg_text(args, 0, "the recording")?;
        let err = |e: Error| module_error(format!("mw_events: recording {path:?}: {e}"));
        let db = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err)?;
        let mut sql = "SELECT e.recording_id, r.host, r.pid, e.seq, e.time_ns, e.variable_name, \
             e.region_id, e.thread_id, e.old_value, e.new_value, e.changed_ranges, e.metadata, \
             e.adapter FROM memwatch_events e JOIN memwatch_recordings r USING (recording_id)"
            .to_string();
        let name: Option<Value> = if idx_num & 2 != 0 { Some(args.get(1)?) } else { None };
        if name.is_some() {
            sql.push_str(" WHERE e.variable_name = ?1");
        }
        sql.push_str(" ORDER BY e.time_ns, e.recording_id, e.seq");
        let mut st = db.prepare(&sql).map_err(err)?;
        let n = st.column_count();
        let params: Vec<Value> = name.into_iter().collect();
        let mut q = st.query(rusqlite::params_from_iter(params.iter())).map_err(err)?;
        let mut rows = Vec::new();
        while let Some(r) = q.next().map_err(err)? {
            let mut row = Vec::with_capacity(n + 1);
            for i in 0..n {
                row.push(r.get::<_, Value>(i).map_err(err)?);
            }
            row.push(Value::Text(path.clone()));
            rows.push(row);
        }
        self.rows = Rows { rows, at: 0 };
        Ok(())
    }

    fn next(&mut self) -> Result<()> {
        self.rows.at += 1;
        Ok(())
    }

    fn eof(&self) -> bool {
        self.rows.eof()
    }

    fn column(&self, ctx: &mut Context, i: c_int) -> Result<()> {
        self.rows.column(ctx, i)
    }

    fn rowid(&self) -> Result<i64> {
        Ok(self.rows.at as i64)
    }
}
