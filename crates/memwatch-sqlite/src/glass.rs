//! mg_sessions, mg_objects, mg_fields: memglass sessions observed live.

use std::ffi::c_int;
use std::marker::PhantomData;

use memglass::{Error as GlassError, ObjectInfo, Observer, Value as GlassValue};
use rusqlite::types::Value;
use rusqlite::vtab::{Context, Filters, IndexInfo, VTab, VTabConfig, VTabConnection, VTabCursor};
use rusqlite::{ffi, Result};

use crate::{equality_args, module_error, Rows};

/// Sessions to read: the one named, or every session not dead.
fn sessions(named: Option<String>) -> Result<Vec<String>> {
    if let Some(n) = named {
        return Ok(vec![n]);
    }
    let all = memglass::list_sessions(None).map_err(|e| module_error(format!("memglass: {e}")))?;
    Ok(all.into_iter().filter(|s| s.liveness != memglass::Liveness::Dead).map(|s| s.name).collect())
}

fn connect(session: &str) -> Result<Observer> {
    Observer::connect(session)
        .map_err(|e| module_error(format!("memglass session {session:?}: {e}")))
}

fn opt_arg(args: &Filters<'_>, mask: c_int, bit: c_int, at: &mut usize) -> Result<Option<String>> {
    if mask & bit == 0 {
        return Ok(None);
    }
    let v: Option<String> = args.get(*at)?;
    *at += 1;
    Ok(Some(v.unwrap_or_default()))
}

/// A memglass value as SQL: numbers as numbers, strings as text, arrays as
/// JSON text.
fn sql_value(v: &GlassValue) -> Value {
    match v {
        GlassValue::Bool(b) => Value::Integer(i64::from(*b)),
        GlassValue::Int(i) => Value::Integer(*i),
        GlassValue::UInt(u) => match i64::try_from(*u) {
            Ok(i) => Value::Integer(i),
            Err(_) => Value::Real(*u as f64),
        },
        GlassValue::Float(f) => Value::Real(*f),
        GlassValue::Str(s) => Value::Text(s.clone()),
        GlassValue::Array(items) => Value::Text(json(items)),
    }
}

fn json(items: &[GlassValue]) -> String {
    let parts: Vec<String> = items
        .iter()
        .map(|v| match v {
            GlassValue::Bool(b) => b.to_string(),
            GlassValue::Int(i) => i.to_string(),
            GlassValue::UInt(u) => u.to_string(),
            GlassValue::Float(f) if f.is_finite() => format!("{f:?}"),
            GlassValue::Float(_) => "null".into(),
            GlassValue::Str(s) => format!("{s:?}"),
            GlassValue::Array(a) => json(a),
        })
        .collect();
    format!("[{}]", parts.join(","))
}

/// Declares one eponymous table whose cursor fills `Rows` with `fill`.
macro_rules! glass_table {
    ($tab:ident, $cursor:ident, $schema:expr, $pushed:expr, $fill:path) => {
        #[repr(C)]
        pub(crate) struct $tab {
            /// Base class; must be first.
            base: ffi::sqlite3_vtab,
        }

        // SAFETY: repr(C) with sqlite3_vtab first, as the trait requires.
        unsafe impl<'vtab> VTab<'vtab> for $tab {
            type Aux = ();
            type Cursor = $cursor<'vtab>;

            fn connect(
                db: &mut VTabConnection,
                _aux: Option<&()>,
                _args: &[&[u8]],
            ) -> Result<(String, Self)> {
                db.config(VTabConfig::DirectOnly)?;
                Ok(($schema.to_owned(), $tab { base: ffi::sqlite3_vtab::default() }))
            }

            fn best_index(&self, info: &mut IndexInfo) -> Result<()> {
                let mask = equality_args(info, $pushed);
                info.set_idx_num(mask);
                info.set_estimated_cost(1_000_000.0 / f64::from(1 + mask * mask));
                Ok(())
            }

            fn open(&'vtab mut self) -> Result<$cursor<'vtab>> {
                Ok($cursor {
                    base: ffi::sqlite3_vtab_cursor::default(),
                    rows: Rows::default(),
                    _p: PhantomData,
                })
            }
        }

        #[repr(C)]
        pub(crate) struct $cursor<'vtab> {
            /// Base class; must be first.
            base: ffi::sqlite3_vtab_cursor,
            rows: Rows,
            _p: PhantomData<&'vtab $tab>,
        }

        // SAFETY: repr(C) with sqlite3_vtab_cursor first.
        unsafe impl VTabCursor for $cursor<'_> {
            fn filter(&mut self, idx: c_int, _s: Option<&str>, args: &Filters<'_>) -> Result<()> {
                self.rows = Rows { rows: $fill(idx, args)?, at: 0 };
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
    };
}

glass_table!(
    SessionsTab,
    SessionsCursor,
    "CREATE TABLE x(name, pid, liveness, reason, objects, types, created_ns, age_ms, \
     heartbeat_age_ms, start_time)",
    &[],
    fill_sessions
);

fn fill_sessions(_idx: c_int, _args: &Filters<'_>) -> Result<Vec<Vec<Value>>> {
    let all = memglass::list_sessions(None).map_err(|e| module_error(format!("memglass: {e}")))?;
    Ok(all
        .into_iter()
        .map(|s| {
            vec![
                Value::Text(s.name),
                Value::Integer(s.pid.into()),
                Value::Text(s.liveness.name().into()),
                Value::Text(s.reason),
                Value::Integer(s.object_count.into()),
                Value::Integer(s.type_count.into()),
                Value::Integer(s.created_ns as i64),
                Value::Integer(s.age.as_millis() as i64),
                Value::Integer(s.heartbeat_age.as_millis() as i64),
                Value::Integer(s.start_time as i64),
            ]
        })
        .collect())
}

glass_table!(
    ObjectsTab,
    ObjectsCursor,
    "CREATE TABLE x(session, object, type, count, state, slot, generation)",
    &[0, 1],
    fill_objects
);

fn object_row(session: &str, o: &ObjectInfo) -> Vec<Value> {
    vec![
        Value::Text(session.to_owned()),
        Value::Text(o.label.clone()),
        Value::Text(o.type_name.clone()),
        Value::Integer(o.count.into()),
        Value::Text(o.state.name().into()),
        Value::Integer(o.id.slot.into()),
        Value::Integer(o.id.generation as i64),
    ]
}

fn fill_objects(idx: c_int, args: &Filters<'_>) -> Result<Vec<Vec<Value>>> {
    let mut at = 0;
    let session = opt_arg(args, idx, 1, &mut at)?;
    let object = opt_arg(args, idx, 2, &mut at)?;
    let mut rows = Vec::new();
    let named = session.is_some();
    for s in sessions(session)? {
        // Listing every session skips the ones this user cannot open.
        let o = match connect(&s) {
            Ok(o) => o,
            Err(_) if !named => continue,
            Err(e) => return Err(e),
        };
        for obj in o.objects() {
            if !object.as_ref().is_some_and(|l| *l != obj.label) {
                rows.push(object_row(&s, obj));
            }
        }
    }
    Ok(rows)
}

glass_table!(
    FieldsTab,
    FieldsCursor,
    "CREATE TABLE x(session, object, path, type, atomicity, value, torn)",
    &[0, 1],
    fill_fields
);

/// Every field of every (selected) object; each object read as one
/// consistent snapshot, or field by field with `torn` = 1 where a seqlock
/// kept changing during every read attempt.
fn fill_fields(idx: c_int, args: &Filters<'_>) -> Result<Vec<Vec<Value>>> {
    let mut at = 0;
    let session = opt_arg(args, idx, 1, &mut at)?;
    let object = opt_arg(args, idx, 2, &mut at)?;
    let mut rows = Vec::new();
    let named = session.is_some();
    for s in sessions(session)? {
        // Listing every session skips the ones this user cannot open.
        let o = match connect(&s) {
            Ok(o) => o,
            Err(_) if !named => continue,
            Err(e) => return Err(e),
        };
        for obj in o.objects() {
            if object.as_ref().is_some_and(|l| *l != obj.label) {
                continue;
            }
            let t = o.type_of(obj).map_err(|e| module_error(format!("memglass: {e}")))?;
            let row = |path: String, f: &memglass::FieldInfo, value: Value, torn: bool| {
                let ty = if f.array_len > 0 {
                    format!("{}[{}]", f.prim.name(), f.array_len)
                } else {
                    f.prim.name().to_string()
                };
                vec![
                    Value::Text(s.clone()),
                    Value::Text(obj.label.clone()),
                    Value::Text(path),
                    Value::Text(ty),
                    Value::Text(f.atomicity.name().into()),
                    value,
                    Value::Integer(i64::from(torn)),
                ]
            };
            let n = t.fields.len();
            match o.snapshot(obj) {
                Ok(snap) => {
                    for (i, (path, v)) in snap.values.iter().enumerate() {
                        rows.push(row(path.clone(), &t.fields[i % n], sql_value(v), false));
                    }
                }
                Err(GlassError::Torn(_)) => {
                    for elem in 0..obj.count {
                        let prefix =
                            if obj.count > 1 { format!("[{elem}].") } else { String::new() };
                        for f in &t.fields {
                            let path = format!("{prefix}{}", f.path);
                            match o.read_field(obj, elem, f) {
                                Ok(v) => rows.push(row(path, f, sql_value(&v), false)),
                                Err(GlassError::Torn(_)) => {
                                    rows.push(row(path, f, Value::Null, true))
                                }
                                Err(GlassError::Gone(_)) => break,
                                Err(e) => return Err(module_error(format!("memglass: {e}"))),
                            }
                        }
                    }
                }
                // Destroyed while we looked: not there any more.
                Err(GlassError::Gone(_)) => {}
                Err(e) => return Err(module_error(format!("memglass: {e}"))),
            }
        }
    }
    Ok(rows)
}
