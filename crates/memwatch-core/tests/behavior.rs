//! Runs the shared scenarios of tests/behavior/*.json (see its README) under
//! every backend each scenario lists.

use std::collections::HashMap;
use std::path::PathBuf;

use memwatch_core::{page_size, Backend, ChangeEvent, Options, Watcher};
use serde_json::Value;

fn scenario_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/behavior")
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

struct Buffer {
    ptr: *mut u8,
    len: usize,
}

impl Buffer {
    fn new(len: usize, fill: u8) -> Buffer {
        let map_len = len.div_ceil(page_size()) * page_size();
        // SAFETY: anonymous private mapping, no preconditions.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED);
        // SAFETY: fresh writable mapping of map_len >= len bytes.
        unsafe { std::ptr::write_bytes(ptr as *mut u8, fill, len) };
        Buffer { ptr: ptr as *mut u8, len: map_len }
    }

    fn write(&self, offset: usize, bytes: &[u8]) {
        assert!(offset + bytes.len() <= self.len);
        for (i, b) in bytes.iter().enumerate() {
            // SAFETY: in bounds (asserted); volatile so every store happens.
            unsafe { std::ptr::write_volatile(self.ptr.add(offset + i), *b) };
        }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: mapping made in new(); regions on it were unwatched (watcher closed first).
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
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
            .insert(b["name"].as_str().unwrap().to_string(), Buffer::new(size(&b["size"]), fill));
    }
    let watcher = Watcher::new(opts).unwrap();
    let mut ids = HashMap::new();
    let mut keys = HashMap::new();
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
        keys.insert(id, r["key"].as_str().unwrap().to_string());
    }
    for (i, step) in scenario["steps"].as_array().unwrap().iter().enumerate() {
        if let Some(w) = step.get("write") {
            let buf = &buffers[w["buffer"].as_str().unwrap()];
            let off = size(&w["offset"]);
            let bytes = match w.get("hex") {
                Some(h) => hex(h.as_str().unwrap()),
                None => vec![hex(w["byte"].as_str().unwrap())[0]; size(&w["len"])],
            };
            buf.write(off, &bytes);
        } else if let Some(u) = step.get("unwatch") {
            let id = ids[u["region"].as_str().unwrap()];
            assert_eq!(watcher.unwatch(id).unwrap(), u["expect"].as_bool().unwrap(), "{}", ctx(i));
        } else if let Some(u) = step.get("unwatch_unknown") {
            assert_eq!(
                watcher.unwatch(4_000_000_000).unwrap(),
                u["expect"].as_bool().unwrap(),
                "{}",
                ctx(i)
            );
        } else if let Some(expected) = step.get("check") {
            let events = watcher.check_changes().unwrap();
            let expected = expected.as_array().unwrap();
            assert_eq!(events.len(), expected.len(), "{}: events {:?}", ctx(i), events);
            for exp in expected {
                let key = exp["region"].as_str().unwrap();
                let id = ids[key];
                let matching: Vec<&ChangeEvent> =
                    events.iter().filter(|e| e.region_id == id).collect();
                assert_eq!(matching.len(), 1, "{}: region {key} in {:?}", ctx(i), events);
                check_event(matching[0], exp, &ctx(i));
            }
        } else {
            panic!("{}: unknown step {step}", ctx(i));
        }
    }
    watcher.close();
}

fn check_event(e: &ChangeEvent, exp: &Value, ctx: &str) {
    if let Some(v) = exp.get("variable_name") {
        assert_eq!(e.variable_name, v.as_str().unwrap(), "{ctx}: variable_name");
    }
    if let Some(v) = exp.get("how_big") {
        assert_eq!(e.how_big, size(v), "{ctx}: how_big");
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
    assert!(files.len() >= 8, "scenarios found: {files:?}");
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
