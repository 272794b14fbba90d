//! `memwatch events`: field changes of one session as lines of text or JSON.
//!
//! Samples every field each refresh (the reads memglass's atomicity asks
//! for) and reports every field whose value differs from the previous
//! sample, plus objects created and destroyed in between. A value that
//! changes and changes back between two samples is not seen.

use crate::glass::GlassSource;
use crate::model::{rfc3339, Liveness, Sample, Schema, Source, Value};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::time::{Duration, SystemTime};

/// What one line of output reports.
struct Ev<'a> {
    kind: &'a str,
    label: &'a str,
    field: Option<usize>,
    old: &'a Value,
    new: &'a Value,
}

/// One line of output.
fn line(as_json: bool, session: &str, schema: &Schema, ev: Ev) -> String {
    let Ev { kind, label, field: f, old, new } = ev;
    let now = SystemTime::now();
    let time = rfc3339(now);
    let ts_ns = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let (field, path, ty) = match f {
        Some(i) => {
            let m = &schema.fields[i];
            (Some(m.path.as_str()), format!("{label}.{}", m.path), m.ty.as_str())
        }
        None => (None, label.to_string(), ""),
    };
    if as_json {
        json!({
            "time": time, "ts_ns": ts_ns, "session": session, "kind": kind, "object": label,
            "field": field, "path": path, "type": ty, "old": old.to_json(), "new": new.to_json(),
        })
        .to_string()
    } else if kind == "field" {
        format!("{time} {path} {old} -> {new}")
    } else {
        format!("{time} {path} ({kind})")
    }
}

/// Prints the changes of `session` until the producer dies, `count` lines
/// were printed, or stdout is closed.
pub fn run(
    session: &str,
    as_json: bool,
    filter: Option<&str>,
    count: Option<u64>,
    refresh: Duration,
) -> anyhow::Result<()> {
    let mut src = GlassSource::connect(session)?;
    let mut schema = src.refresh()?.unwrap_or_else(|| src.schema().clone());
    let mut prev = Sample::default();
    src.sample(&mut prev)?;
    eprintln!(
        "memwatch: watching {session} (pid {}, {} objects, {} fields); Ctrl-C stops",
        src.meta().pid,
        schema.objects.len(),
        schema.fields.len()
    );
    let mut printed = 0u64;
    let stdout = std::io::stdout();
    loop {
        std::thread::sleep(refresh);
        let dead = src.liveness() == Liveness::Dead;
        let mut lines = Vec::new();
        let mut cur = Sample::default();
        if let Some(next) = src.refresh()? {
            // Carry the previous values over by path, so a field's change in
            // the same sample as another object's creation is still seen.
            let old: HashMap<String, usize> =
                (0..schema.fields.len()).map(|i| (schema.full_path(i), i)).collect();
            let labels_old: HashSet<&str> =
                schema.objects.iter().map(|o| o.label.as_str()).collect();
            let labels_new: HashSet<&str> = next.objects.iter().map(|o| o.label.as_str()).collect();
            for o in &schema.objects {
                if !labels_new.contains(o.label.as_str()) {
                    lines.push((
                        o.label.clone(),
                        line(
                            as_json,
                            session,
                            &schema,
                            Ev {
                                kind: "destroyed",
                                label: &o.label,
                                field: None,
                                old: &Value::Missing,
                                new: &Value::Missing,
                            },
                        ),
                    ));
                }
            }
            for o in &next.objects {
                if !labels_old.contains(o.label.as_str()) {
                    lines.push((
                        o.label.clone(),
                        line(
                            as_json,
                            session,
                            &next,
                            Ev {
                                kind: "created",
                                label: &o.label,
                                field: None,
                                old: &Value::Missing,
                                new: &Value::Missing,
                            },
                        ),
                    ));
                }
            }
            let mut carried = Sample {
                values: vec![Value::Missing; next.fields.len()],
                torn: vec![false; next.fields.len()],
            };
            for i in 0..next.fields.len() {
                if let Some(&j) = old.get(&next.full_path(i)) {
                    carried.values[i] = prev.values[j].clone();
                }
            }
            prev = carried;
            schema = next;
        }
        src.sample(&mut cur)?;
        for (i, (old, new)) in prev.values.iter().zip(&cur.values).enumerate() {
            if old != new && *old != Value::Missing {
                let label = &schema.objects[schema.fields[i].object].label;
                lines.push((
                    schema.full_path(i),
                    line(
                        as_json,
                        session,
                        &schema,
                        Ev { kind: "field", label, field: Some(i), old, new },
                    ),
                ));
            }
        }
        prev = cur;
        let mut out = stdout.lock();
        for (path, l) in lines {
            if filter.is_some_and(|f| !path.contains(f)) {
                continue;
            }
            if writeln!(out, "{l}").is_err() {
                return Ok(()); // stdout closed (| head): done
            }
            printed += 1;
            if count.is_some_and(|c| printed >= c) {
                let _ = out.flush();
                return Ok(());
            }
        }
        if out.flush().is_err() {
            return Ok(());
        }
        if dead {
            eprintln!("memwatch: the producer of {session} is dead; stopping");
            return Ok(());
        }
    }
}
