//! `memwatch events`: memglass's change events of one session as lines of
//! text or JSON. Detection is memglass's (`Observer::changes`: memwatch-core's
//! poll backend over the read-only mapping, then typed re-reads); this only
//! formats. A value that changes and changes back between two calls is not seen.

use crate::glass::{connect_hint, convert};
use crate::model::rfc3339;
use memglass::{ChangeEvent, ChangeKind, Observer};
use serde_json::{json, Value as J};
use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

/// memglass's value as JSON (arrays stay arrays).
fn to_json(v: &memglass::Value) -> J {
    match v {
        memglass::Value::Array(a) => J::Array(a.iter().map(to_json).collect()),
        other => convert(other.clone()).to_json(),
    }
}

/// The primitive type name of `path` (`[i].` stripped) in `obs`'s type `type_name`.
fn type_of(obs: &Observer, type_name: &str, path: &str) -> String {
    let p = path.split_once("].").map_or(path, |(_, rest)| rest);
    obs.types()
        .iter()
        .find(|t| t.name == type_name)
        .and_then(|t| t.field(p))
        .map(|f| {
            if f.array_len > 0 {
                format!("{}[{}]", f.prim.name(), f.array_len)
            } else {
                f.prim.name().to_string()
            }
        })
        .unwrap_or_default()
}

/// One line of output for `e`, and the `object.field` path it is filtered by.
fn format(obs: &Observer, session: &str, e: &ChangeEvent, as_json: bool) -> (String, String) {
    let time = rfc3339(UNIX_EPOCH + Duration::from_nanos(e.timestamp_ns));
    let (kind, field, old, new) = match &e.kind {
        ChangeKind::Field { path, old, new } => {
            ("field", Some(path.as_str()), Some(old), Some(new))
        }
        ChangeKind::Created => ("created", None, None, None),
        ChangeKind::Destroyed => ("destroyed", None, None, None),
    };
    let path = match field {
        Some(f) => format!("{}.{f}", e.label),
        None => e.label.clone(),
    };
    let line = if as_json {
        json!({
            "time": time, "ts_ns": e.timestamp_ns, "session": session, "kind": kind,
            "object": e.label, "object_type": e.type_name, "field": field, "path": path,
            "type": field.map(|f| type_of(obs, &e.type_name, f)),
            "old": old.map(to_json), "new": new.map(to_json),
        })
        .to_string()
    } else {
        match (old, new) {
            (Some(o), Some(n)) => format!("{time} {path} {o} -> {n}"),
            _ => format!("{time} {path} ({} {kind})", e.type_name),
        }
    };
    (line, path)
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
    let mut obs =
        Observer::connect(session).map_err(|e| anyhow::anyhow!(connect_hint(session, &e)))?;
    // The first call reports every existing object as created and starts
    // watching: that is the starting point, not news.
    obs.changes().map_err(|e| anyhow::anyhow!("cannot watch {session}: {e}"))?;
    let info = obs.session_info();
    eprintln!(
        "memwatch: watching {session} (pid {}, {} objects); Ctrl-C stops",
        info.pid, info.object_count
    );
    let mut printed = 0u64;
    let stdout = std::io::stdout();
    loop {
        std::thread::sleep(refresh);
        let dead = obs.liveness() == memglass::Liveness::Dead;
        let evs = obs.changes()?;
        let mut out = stdout.lock();
        for e in &evs {
            let (line, path) = format(&obs, session, e, as_json);
            if filter.is_some_and(|f| !path.contains(f)) {
                continue;
            }
            if writeln!(out, "{line}").is_err() {
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
            eprintln!(
                "memwatch: the producer of {session} is dead ({}); stopping",
                obs.session_info().reason
            );
            return Ok(());
        }
    }
}
