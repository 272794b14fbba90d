//! Runs the shared scenarios of tests/behavior/*.json (see its README) under
//! every backend each scenario lists.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use common::Pages;
use memwatch_core::{page_size, Backend, ChangeEvent, Error, Options, StatValue, Stats, Watcher};
use serde_json::Value;

/// tests/behavior, or $MEMWATCH_BEHAVIOR_DIR (as for every other runner).
fn scenario_dir() -> PathBuf {
    std::env::var_os("MEMWATCH_BEHAVIOR_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/behavior"))
}

/// "12", 12, "3p", "3p+4", "3p-4" -> bytes.
fn size(v: &Value) -> usize {
    if let Some(n) = v.as_u64() {
        return n as usize;
    }
    let s = v.as_str().expect("size is a number or a page form");
    let (pages, rest) = s.split_once('p').expect("page form");
    let base = pages.parse::<usize>().unwrap() * page_size();
    if rest.is_empty() {
        base
    } else if let Some(plus) = rest.strip_prefix('+') {
        base + plus.parse::<usize>().unwrap()
    } else {
        base - rest.strip_prefix('-').expect("+ or -").parse::<usize>().unwrap()
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn value_spec(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(hex(s)),
        Value::Object(o) => {
            let len = size(&o["len"]);
            let fill = o.get("fill").and_then(Value::as_str).map_or(0, |f| hex(f)[0]);
            let mut out = vec![fill; len];
            if let Some(patches) = o.get("patches").and_then(Value::as_array) {
                for p in patches {
                    let off = size(&p[0]);
                    let bytes = hex(p[1].as_str().unwrap());
                    out[off..off + bytes.len()].copy_from_slice(&bytes);
                }
            }
            Some(out)
        }
        other => panic!("bad value spec {other}"),
    }
}

fn run(scenario: &Value, backend: Backend) {
    let name = scenario["name"].as_str().unwrap();
    let ctx = |step: usize| format!("scenario {name}, backend {backend}, step {step}");
    let mut opts = Options { backend, ..Options::default() };
    if let Some(o) = scenario.get("options") {
        if let Some(v) = o.get("max_value_bytes") {
            opts.max_value_bytes = size(v);
        }
        if let Some(v) = o.get("preview_bytes") {
            opts.preview_bytes = size(v);
        }
        if let Some(v) = o.get("snapshots") {
            opts.snapshots = v.as_bool().unwrap();
        }
        if let Some(v) = o.get("writable_window_ms") {
            opts.writable_window = std::time::Duration::from_millis(v.as_u64().unwrap());
        }
    }
    let mut buffers = HashMap::new();
    for b in scenario["buffers"].as_array().unwrap() {
        let fill = b.get("fill").and_then(Value::as_str).map_or(0, |f| hex(f)[0]);
        buffers
            .insert(b["name"].as_str().unwrap().to_string(), Pages::filled(size(&b["size"]), fill));
    }
    let watcher = Watcher::new(opts).unwrap();
    let delivered: Arc<Mutex<Vec<ChangeEvent>>> = Arc::default();
    let mut ids = HashMap::new();
    for r in scenario["regions"].as_array().unwrap() {
        let buf = &buffers[r["buffer"].as_str().unwrap()];
        let off = size(&r["offset"]);
        let len = size(&r["length"]);
        // SAFETY: the buffer outlives the watcher (closed before buffers drop).
        let id = unsafe {
            watcher.watch(
                buf.ptr.add(off),
                len,
                r["name"].as_str().unwrap(),
                r.get("metadata").and_then(Value::as_str),
            )
        }
        .unwrap();
        ids.insert(r["key"].as_str().unwrap().to_string(), id);
    }
    for (i, step) in scenario["steps"].as_array().unwrap().iter().enumerate() {
        if let Some(w) = step.get("write") {
            let buf = &buffers[w["buffer"].as_str().unwrap()];
            let off = size(&w["offset"]);
            let bytes = match w.get("hex") {
                Some(h) => hex(h.as_str().unwrap()),
                None => vec![hex(w["byte"].as_str().unwrap())[0]; size(&w["len"])],
            };
            buf.write_all(off, &bytes);
        } else if let Some(e) = step.get("watch_error") {
            let (addr, len) = if e.get("null").and_then(Value::as_bool) == Some(true) {
                (std::ptr::null(), size(&e["length"]))
            } else {
                let buf = &buffers[e["buffer"].as_str().unwrap()];
                // SAFETY: the offset is inside the buffer (scenario data).
                (unsafe { buf.ptr.add(size(&e["offset"])) } as *const u8, size(&e["length"]))
            };
            // SAFETY: the buffer outlives the watcher; the call is expected to fail.
            let got = unsafe { watcher.watch(addr, len, "bad", None) };
            expect_error(got, &e["expect"], &ctx(i));
        } else if let Some(e) = step.get("check_error") {
            expect_error(watcher.check_changes(), &e["expect"], &ctx(i));
        } else if step.get("close").is_some() {
            watcher.close();
        } else if let Some(st) = step.get("stats") {
            check_stats(&watcher.stats(), st, &ctx(i));
        } else if let Some(on) = step.get("set_callback") {
            let cb: Option<memwatch_core::Callback> = if on.as_bool().unwrap() {
                let seen = Arc::clone(&delivered);
                Some(Arc::new(move |e: &ChangeEvent| seen.lock().unwrap().push(e.clone())))
            } else {
                None
            };
            watcher.set_callback(cb).unwrap();
        } else if let Some(expected) = step.get("check_callback") {
            let returned = watcher.check_changes().unwrap();
            assert!(returned.is_empty(), "{}: check_changes returned {returned:?}", ctx(i));
            let events: Vec<ChangeEvent> = std::mem::take(&mut *delivered.lock().unwrap());
            check_events(&events, expected, &ids, &ctx(i));
        } else if let Some(u) = step.get("unwatch") {
            let id = ids[u["region"].as_str().unwrap()];
            assert_eq!(watcher.unwatch(id).unwrap(), u["expect"].as_bool().unwrap(), "{}", ctx(i));
        } else if let Some(c) = step.get("constants") {
            assert_eq!(
                memwatch_core::EXIT_FLUSH_TIMEOUT.as_millis() as u64,
                c["exit_flush_timeout_ms"].as_u64().unwrap(),
                "{}: EXIT_FLUSH_TIMEOUT",
                ctx(i)
            );
        } else if let Some(u) = step.get("unwatch_unknown") {
            assert_eq!(
                watcher.unwatch(4_000_000_000).unwrap(),
                u["expect"].as_bool().unwrap(),
                "{}",
                ctx(i)
            );
        } else if let Some(expected) = step.get("check") {
            let events = watcher.check_changes().unwrap();
            check_events(&events, expected, &ids, &ctx(i));
        } else {
            panic!("{}: unknown step {step}", ctx(i));
        }
    }
    watcher.close();
}

/// The events of one check match the expected list: same count, one per region.
fn check_events(events: &[ChangeEvent], expected: &Value, ids: &HashMap<String, u32>, ctx: &str) {
    let expected = expected.as_array().unwrap();
    assert_eq!(events.len(), expected.len(), "{ctx}: events {events:?}");
    for exp in expected {
        let key = exp["region"].as_str().unwrap();
        let id = ids[key];
        let matching: Vec<&ChangeEvent> = events.iter().filter(|e| e.region_id == id).collect();
        assert_eq!(matching.len(), 1, "{ctx}: region {key} in {events:?}");
        check_event(matching[0], exp, ctx);
    }
}

/// A call failed with the error kind the scenario names.
fn expect_error<T: std::fmt::Debug>(got: Result<T, Error>, kind: &Value, ctx: &str) {
    match got {
        Err(e) => assert_eq!(e.kind_name(), kind.as_str().unwrap(), "{ctx}: {e}"),
        Ok(v) => panic!("{ctx}: expected a {kind} error, got Ok({v:?})"),
    }
}

/// A stats field by its snake_case name, as JSON (through the engine's own field list).
fn stat(s: &Stats, name: &str) -> Option<Value> {
    s.fields().into_iter().find(|(n, _)| *n == name).map(|(_, v)| match v {
        StatValue::Count(c) => Value::from(c),
        StatValue::Text(t) => Value::from(t),
    })
}

fn check_stats(s: &Stats, spec: &Value, ctx: &str) {
    if let Some(fields) = spec.get("fields").and_then(Value::as_array) {
        // The scenario lists exactly the engine's fields: a field added to
        // the engine must be added here, and so reach every binding's runner.
        let listed: Vec<&str> = fields.iter().map(|f| f.as_str().unwrap()).collect();
        assert_eq!(listed, Stats::FIELDS, "{ctx}: the scenario's stats fields");
    }
    for (name, want) in spec.get("equal").and_then(Value::as_object).into_iter().flatten() {
        assert_eq!(stat(s, name).as_ref(), Some(want), "{ctx}: stats field {name} in {s:?}");
    }
}

fn check_event(e: &ChangeEvent, exp: &Value, ctx: &str) {
    if let Some(v) = exp.get("variable_name") {
        assert_eq!(e.variable_name, v.as_str().unwrap(), "{ctx}: variable_name");
    }
    if let Some(v) = exp.get("how_big") {
        assert_eq!(e.how_big, size(v), "{ctx}: how_big");
    }
    if let Some(v) = exp.get("coalesced") {
        assert_eq!(u64::from(e.coalesced), v.as_u64().unwrap(), "{ctx}: coalesced");
    }
    if let Some(v) = exp.get("changed_ranges") {
        let want: Vec<(usize, usize)> =
            v.as_array().unwrap().iter().map(|r| (size(&r[0]), size(&r[1]))).collect();
        let got: Vec<(usize, usize)> = e.changed_ranges.iter().map(|r| (r.offset, r.len)).collect();
        assert_eq!(got, want, "{ctx}: changed_ranges");
    }
    if let Some(v) = exp.get("old_value") {
        assert_eq!(e.old_value, value_spec(v), "{ctx}: old_value");
    }
    if let Some(v) = exp.get("new_value") {
        assert_eq!(e.new_value, value_spec(v), "{ctx}: new_value");
    }
    if let Some(v) = exp.get("old_preview") {
        assert_eq!(Some(e.old_preview.clone()), value_spec(v), "{ctx}: old_preview");
    }
    if let Some(v) = exp.get("new_preview") {
        assert_eq!(Some(e.new_preview.clone()), value_spec(v), "{ctx}: new_preview");
    }
    if let Some(v) = exp.get("metadata") {
        assert_eq!(e.metadata.as_deref(), v.as_str(), "{ctx}: metadata");
    }
}

#[test]
fn shared_behavior_scenarios() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(scenario_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 12, "scenarios found: {files:?}");
    let mut runs = 0;
    for f in files {
        let scenario: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        for b in scenario["backends"].as_array().unwrap() {
            run(&scenario, Backend::from_name(b.as_str().unwrap()).unwrap());
            runs += 1;
        }
    }
    println!("{runs} scenario runs passed");
}
