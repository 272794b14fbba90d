//! `memwatch sql "SELECT ..."`: the tables of the SQLite extension
//! (crates/memwatch-sqlite: `kv`, `mw_events`, `mg_sessions`, `mg_objects`,
//! `mg_fields`) on an in-memory connection, one query, rows printed as a
//! table or as JSON lines.

use anyhow::{anyhow, Context, Result};
use rusqlite::types::ValueRef;
use rusqlite::Connection;

/// Where the bare table names point when given on the command line.
#[derive(Debug, Default)]
pub struct Defaults {
    /// `--recording FILE`: `mw_events` without an argument reads this file.
    pub recording: Option<String>,
    /// `--store NAME`: `kv` without an argument reads this store.
    pub store: Option<String>,
}

/// Opens the connection with the extension's tables and the `--recording` /
/// `--store` views.
pub fn connect(defaults: &Defaults) -> Result<Connection> {
    let conn = Connection::open_in_memory().context("cannot open an in-memory SQLite database")?;
    memwatch_sqlite::register(&conn).context("cannot register the memwatch tables")?;
    // A TEMP view named like the table is found before the eponymous table
    // of "main", so `FROM mw_events` reads the given recording;
    // `main.mw_events('other.db')` still reaches the table itself.
    if let Some(path) = &defaults.recording {
        if !std::path::Path::new(path).is_file() {
            return Err(anyhow!(
                "--recording {path:?}: no such file (a recording is the SQLite file \
                 record_to(...) wrote)"
            ));
        }
        conn.execute_batch(&format!(
            "CREATE TEMP VIEW mw_events AS SELECT * FROM main.mw_events({})",
            quote(path)
        ))?;
    }
    if let Some(name) = &defaults.store {
        conn.execute_batch(&format!(
            "CREATE TEMP VIEW kv AS SELECT key, value, version FROM main.kv({})",
            quote(name)
        ))?;
    }
    Ok(conn)
}

/// An SQL string literal.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Runs `query` and prints its rows: a table, or with `json` one JSON object
/// per row (BLOBs as lowercase hex).
pub fn run(query: &str, json: bool, defaults: &Defaults) -> Result<()> {
    let conn = connect(defaults)?;
    let (columns, rows) = query_rows(&conn, query)?;
    let mut out = std::io::stdout().lock();
    if json {
        print_json(&mut out, &columns, &rows)?;
    } else {
        print_table(&mut out, &columns, &rows)?;
        if rows.is_empty() {
            eprintln!("(no rows)");
        }
    }
    Ok(())
}

/// One cell, owned.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// SQL NULL.
    Null,
    /// INTEGER.
    Int(i64),
    /// REAL.
    Real(f64),
    /// TEXT.
    Text(String),
    /// BLOB.
    Blob(Vec<u8>),
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Cell {
    fn json(&self) -> serde_json::Value {
        match self {
            Cell::Null => serde_json::Value::Null,
            Cell::Int(i) => (*i).into(),
            Cell::Real(f) => serde_json::Number::from_f64(*f)
                .map_or_else(|| serde_json::Value::String(f.to_string()), Into::into),
            Cell::Text(s) => s.clone().into(),
            Cell::Blob(b) => hex(b).into(),
        }
    }

    fn text(&self) -> String {
        match self {
            Cell::Null => "NULL".into(),
            Cell::Int(i) => i.to_string(),
            Cell::Real(f) => f.to_string(),
            Cell::Text(s) => s.clone(),
            Cell::Blob(b) => format!("x'{}'", hex(b)),
        }
    }
}

/// What to do next after the error `msg`.
fn hint(msg: &str) -> &'static str {
    if msg.starts_with("memglass session") {
        "`memwatch ls` (or SELECT name FROM mg_sessions) lists the sessions"
    } else if msg.starts_with("kv:") {
        "name an existing MemStream store: kv('store'), or --store NAME with plain kv"
    } else if msg.starts_with("mw_events:") {
        "name a recording made by record_to(...): mw_events('events.db'), or --recording FILE"
    } else {
        "the tables: kv('store'), mw_events('recording.db'), mg_sessions, mg_objects, \
         mg_fields (see `memwatch sql --help`)"
    }
}

/// Runs one statement; its column names and every row.
pub fn query_rows(conn: &Connection, query: &str) -> Result<(Vec<String>, Vec<Vec<Cell>>)> {
    let err = |e: rusqlite::Error| {
        let msg = e.to_string();
        anyhow!("{msg}\n  {}", hint(&msg))
    };
    let mut stmt = conn.prepare(query).map_err(err)?;
    let columns: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
    let n = columns.len();
    let mut rows = Vec::new();
    let mut it = stmt.query([]).map_err(err)?;
    while let Some(row) = it.next().map_err(err)? {
        let mut cells = Vec::with_capacity(n);
        for i in 0..n {
            cells.push(match row.get_ref(i)? {
                ValueRef::Null => Cell::Null,
                ValueRef::Integer(v) => Cell::Int(v),
                ValueRef::Real(v) => Cell::Real(v),
                ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
            });
        }
        rows.push(cells);
    }
    Ok((columns, rows))
}

fn print_json(out: &mut impl std::io::Write, columns: &[String], rows: &[Vec<Cell>]) -> Result<()> {
    // Written by hand to keep the columns in the query's order.
    for row in rows {
        let fields: Vec<String> = columns
            .iter()
            .zip(row)
            .map(|(c, v)| format!("{}:{}", serde_json::Value::from(c.as_str()), v.json()))
            .collect();
        writeln!(out, "{{{}}}", fields.join(","))?;
    }
    Ok(())
}

fn print_table(
    out: &mut impl std::io::Write,
    columns: &[String],
    rows: &[Vec<Cell>],
) -> Result<()> {
    let text: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(Cell::text).collect()).collect();
    let mut width: Vec<usize> = columns.iter().map(|c| c.chars().count()).collect();
    for r in &text {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let v: Vec<String> = cells.iter().zip(&width).map(|(c, w)| format!("{c:<w$}")).collect();
        v.join("  ").trim_end().to_string()
    };
    writeln!(out, "{}", line(columns))?;
    let rule: Vec<String> = width.iter().map(|w| "-".repeat(*w)).collect();
    writeln!(out, "{}", rule.join("  "))?;
    for r in &text {
        writeln!(out, "{}", line(r))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_table_of_every_type() {
        let conn = connect(&Defaults::default()).unwrap();
        let (cols, rows) =
            query_rows(&conn, "SELECT 1 AS i, 2.5 AS r, 'a''b' AS t, x'00ff10' AS b, NULL AS n")
                .unwrap();
        let mut j = Vec::new();
        print_json(&mut j, &cols, &rows).unwrap();
        assert_eq!(
            String::from_utf8(j).unwrap(),
            "{\"i\":1,\"r\":2.5,\"t\":\"a'b\",\"b\":\"00ff10\",\"n\":null}\n"
        );
        let mut t = Vec::new();
        print_table(&mut t, &cols, &rows).unwrap();
        assert_eq!(
            String::from_utf8(t).unwrap(),
            "i  r    t    b          n\n-  ---  ---  ---------  ----\n1  2.5  a'b  x'00ff10'  NULL\n"
        );
    }

    #[test]
    fn a_missing_store_and_a_bad_query_are_errors() {
        let conn = connect(&Defaults::default()).unwrap();
        let e = query_rows(&conn, "SELECT * FROM kv('memwatch-cli-no-such-store')").unwrap_err();
        assert!(e.to_string().contains("kv: store \"memwatch-cli-no-such-store\""), "{e}");
        let e = query_rows(&conn, "SELECT * FROM nosuch").unwrap_err();
        assert!(e.to_string().contains("no such table: nosuch"), "{e}");
        assert!(e.to_string().contains("memwatch sql --help"), "{e}");
    }
}
