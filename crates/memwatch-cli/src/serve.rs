//! `memwatch serve`: one sampler thread reads every session each refresh;
//! a small synchronous HTTP server (tiny_http) answers
//!
//! - `/`            the dashboard (one embedded HTML file, plain JS),
//! - `/api/snapshot` every session's objects, fields and values as JSON,
//! - `/api/events`  server-sent events: a `snapshot` event, then an `update`
//!   event per sample with the fields that changed,
//! - `/metrics`     the Prometheus exposition ([`crate::metrics`]).
//!
//! Off loopback a token is required, and every request must carry it
//! (`?token=` or `Authorization: Bearer`). On loopback without a token, the
//! `Host` header must name loopback, so a web page elsewhere cannot reach the
//! server through DNS rebinding.

use crate::metrics::{self, SessionSnapshot};
use crate::model::{Kind, Liveness, Sample, Schema, Source, Tracker, Value};
use serde_json::{json, Value as J};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

const DASHBOARD: &str = include_str!("dashboard.html");

/// What the sampler publishes and the request handlers read.
struct State {
    /// Bumped on every sample.
    version: u64,
    /// Bumped when any session's schema changed.
    schema_version: u64,
    sessions: Vec<SessionSnapshot>,
    /// `changed[s][f]`: the version at which field f of session s last changed.
    changed: Vec<Vec<u64>>,
    /// Sampling errors per session (shown on the dashboard).
    errors: Vec<Option<String>>,
}

struct Shared {
    state: Mutex<State>,
    cond: Condvar,
    token: Option<String>,
}

/// Checks that `listen` and `token` are an allowed combination.
pub fn check_listen(listen: &SocketAddr, token: Option<&str>) -> anyhow::Result<()> {
    if let Some(t) = token {
        anyhow::ensure!(
            t.len() >= 8,
            "the token is too short ({} characters): use at least 8, e.g. `openssl rand -hex 16`",
            t.len()
        );
    }
    if !listen.ip().is_loopback() && token.is_none() {
        anyhow::bail!(
            "refusing to listen on {listen} without a token: anyone who reaches that address could \
             read the producers' memory. Pass --token SECRET (or set MEMWATCH_TOKEN), or listen \
             on 127.0.0.1"
        );
    }
    Ok(())
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn query_param<'a>(url: &'a str, key: &str) -> Option<&'a str> {
    let q = url.split_once('?')?.1;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then_some(v)
    })
}

fn header<'a>(req: &'a tiny_http::Request, name: &str) -> Option<&'a str> {
    req.headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

fn is_loopback_host(host: &str) -> bool {
    let h = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Why a request is refused, if it is: (status, message).
fn refuse(
    token: Option<&str>,
    url: &str,
    auth: Option<&str>,
    host: Option<&str>,
) -> Option<(u16, String)> {
    match token {
        Some(t) => {
            let given = query_param(url, "token")
                .or_else(|| auth.and_then(|a| a.strip_prefix("Bearer ")))
                .unwrap_or("");
            (!ct_eq(given.as_bytes(), t.as_bytes())).then(|| {
                (
                    401,
                    "missing or wrong token: open /?token=SECRET, or send the header \
                     `Authorization: Bearer SECRET` (the token memwatch serve was started with)\n"
                        .to_string(),
                )
            })
        }
        None => (!host.is_some_and(is_loopback_host)).then(|| {
            (
                403,
                "this server listens on loopback without a token and answers only requests for \
                 localhost or a loopback address (Host header)\n"
                    .to_string(),
            )
        }),
    }
}

fn field_json(schema: &Schema, sample: &Sample, f: usize) -> J {
    let m = &schema.fields[f];
    json!({
        "path": m.path,
        "type": m.ty,
        "unit": m.unit,
        "help": m.help,
        "kind": match m.kind { Some(Kind::Counter) => "counter", Some(Kind::Gauge) => "gauge", None => "" },
        "atomicity": m.atomicity,
        "value": sample.values[f].to_json(),
        "torn": sample.torn[f],
    })
}

fn snapshot_json(st: &State) -> J {
    let sessions: Vec<J> = st
        .sessions
        .iter()
        .zip(&st.errors)
        .map(|(s, err)| {
            let objects: Vec<J> = s
                .schema
                .objects
                .iter()
                .map(|o| {
                    json!({
                        "label": o.label,
                        "type": o.type_name,
                        "fields": o.fields.clone().map(|f| field_json(&s.schema, &s.sample, f)).collect::<Vec<_>>(),
                    })
                })
                .collect();
            json!({
                "name": s.meta.name,
                "pid": s.meta.pid,
                "liveness": s.liveness.name(),
                "error": err,
                "objects": objects,
            })
        })
        .collect();
    json!({ "version": st.version, "time": now_ms(), "sessions": sessions })
}

/// The fields changed after `since`, as the JSON text of
/// `{"version", "time", "liveness": [...], "errors": [...], "changes": [[session, field, value, torn], ...]}`.
/// Written directly (not through `serde_json::Value`): with every one of
/// 10 000 fields changing each sample, this is the server's hottest loop.
fn update_json(st: &State, since: u64) -> String {
    use std::fmt::Write as _;
    let live: Vec<&str> = st.sessions.iter().map(|s| s.liveness.name()).collect();
    let mut out = format!(
        "{{\"version\":{},\"time\":{},\"liveness\":{},\"errors\":{},\"changes\":[",
        st.version,
        now_ms(),
        json!(live),
        json!(st.errors)
    );
    let mut first = true;
    for (si, s) in st.sessions.iter().enumerate() {
        for (fi, &c) in st.changed[si].iter().enumerate() {
            if c <= since {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            let _ = write!(out, "[{si},{fi},");
            match &s.sample.values[fi] {
                Value::Int(v) => {
                    let _ = write!(out, "{v}");
                }
                Value::Uint(v) => {
                    let _ = write!(out, "{v}");
                }
                Value::Float(v) if v.is_finite() => {
                    let _ = write!(out, "{v}");
                }
                other => out.push_str(&other.to_json().to_string()),
            }
            out.push_str(if s.sample.torn[fi] { ",true]" } else { ",false]" });
        }
    }
    out.push_str("]}");
    out
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn sampler(shared: Arc<Shared>, mut sources: Vec<Box<dyn Source>>, refresh: Duration) {
    let mut trackers: Vec<Tracker> = sources.iter().map(|_| Tracker::default()).collect();
    let mut next = Instant::now();
    loop {
        let mut st = shared.state.lock().unwrap();
        st.version += 1;
        let version = st.version;
        for (i, src) in sources.iter_mut().enumerate() {
            let live = src.liveness();
            st.sessions[i].liveness = live;
            match src.refresh() {
                Ok(Some(schema)) => {
                    // New objects, or a restarted producer (a new pid).
                    st.sessions[i].meta = src.meta();
                    st.sessions[i].liveness = src.liveness();
                    trackers[i].reset(schema.fields.len());
                    st.sessions[i].sample = Sample::default();
                    st.changed[i] = vec![version; schema.fields.len()];
                    st.sessions[i].schema = Arc::new(schema);
                    st.schema_version += 1;
                }
                Ok(None) => {}
                Err(e) => st.errors[i] = Some(format!("{e:#}")),
            }
            let mut sample = std::mem::take(&mut st.sessions[i].sample);
            let was_torn = sample.torn.clone();
            match src.sample(&mut sample) {
                Ok(()) => {
                    st.errors[i] = None;
                    for c in trackers[i].update(sample.clone(), Instant::now()) {
                        st.changed[i][c.field] = version;
                    }
                    // A field that became torn (or readable again) is news too.
                    for (f, (a, b)) in was_torn.iter().zip(&sample.torn).enumerate() {
                        if a != b {
                            st.changed[i][f] = version;
                        }
                    }
                }
                Err(e) => st.errors[i] = Some(format!("{e:#}")),
            }
            st.sessions[i].sample = sample;
        }
        drop(st);
        shared.cond.notify_all();
        next += refresh;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}

fn sse(shared: Arc<Shared>, mut out: Box<dyn Write + Send>) {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
                Connection: close\r\nX-Content-Type-Options: nosniff\r\n\r\n";
    let send = |out: &mut Box<dyn Write + Send>, event: &str, data: &str| -> std::io::Result<()> {
        write!(out, "event: {event}\ndata: {data}\n\n")?;
        out.flush()
    };
    if out.write_all(head.as_bytes()).is_err() {
        return;
    }
    let (mut seen, mut schema_seen) = (0u64, u64::MAX);
    loop {
        let st = shared.state.lock().unwrap();
        let (st, timeout) = shared
            .cond
            .wait_timeout_while(st, Duration::from_secs(10), |s| s.version == seen)
            .unwrap();
        let msg = if st.schema_version != schema_seen {
            schema_seen = st.schema_version;
            Some(("snapshot", snapshot_json(&st).to_string()))
        } else if !timeout.timed_out() {
            Some(("update", update_json(&st, seen)))
        } else {
            None
        };
        seen = st.version;
        drop(st);
        let r = match msg {
            Some((ev, data)) => send(&mut out, ev, &data),
            None => out.write_all(b": keep-alive\n\n").and_then(|_| out.flush()),
        };
        if r.is_err() {
            return;
        }
    }
}

fn handle(shared: &Arc<Shared>, req: tiny_http::Request) {
    use tiny_http::{Header, Response};
    let url = req.url().to_string();
    let path = url.split('?').next().unwrap_or("");
    let hdr = |k: &str, v: &str| Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap();
    if let Some((code, msg)) =
        refuse(shared.token.as_deref(), &url, header(&req, "Authorization"), header(&req, "Host"))
    {
        let _ = req.respond(Response::from_string(msg).with_status_code(code));
        return;
    }
    if *req.method() != tiny_http::Method::Get {
        let _ = req.respond(Response::from_string("only GET\n").with_status_code(405));
        return;
    }
    let r = match path {
        "/" | "/index.html" => req.respond(
            Response::from_string(DASHBOARD)
                .with_header(hdr("Content-Type", "text/html; charset=utf-8"))
                .with_header(hdr(
                    "Content-Security-Policy",
                    "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors 'none'",
                ))
                .with_header(hdr("Cache-Control", "no-store")),
        ),
        "/metrics" => {
            let sessions = shared.state.lock().unwrap().sessions.clone();
            req.respond(
                Response::from_string(metrics::encode(sessions))
                    .with_header(hdr("Content-Type", metrics::CONTENT_TYPE)),
            )
        }
        "/api/snapshot" => {
            let body = snapshot_json(&shared.state.lock().unwrap()).to_string();
            req.respond(
                Response::from_string(body).with_header(hdr("Content-Type", "application/json")),
            )
        }
        "/api/events" => {
            let out = req.into_writer();
            let sh = shared.clone();
            std::thread::spawn(move || sse(sh, out));
            Ok(())
        }
        _ => req.respond(
            Response::from_string("not found: try /, /metrics, /api/snapshot or /api/events\n")
                .with_status_code(404),
        ),
    };
    let _ = r;
}

/// A running server (its threads run until the process ends).
pub struct Running {
    /// The address it listens on (the real port when 0 was asked for).
    pub addr: SocketAddr,
    workers: Vec<std::thread::JoinHandle<()>>,
}

/// Binds `listen` and starts the sampler and the HTTP workers.
pub fn start(
    sources: Vec<Box<dyn Source>>,
    listen: SocketAddr,
    token: Option<String>,
    refresh: Duration,
) -> anyhow::Result<Running> {
    check_listen(&listen, token.as_deref())?;
    let sessions = sources
        .iter()
        .map(|s| SessionSnapshot {
            meta: s.meta(),
            schema: Arc::new(Schema::default()),
            sample: Sample::default(),
            liveness: Liveness::Alive,
        })
        .collect::<Vec<_>>();
    let n = sessions.len();
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            version: 0,
            schema_version: 0,
            sessions,
            changed: vec![Vec::new(); n],
            errors: vec![None; n],
        }),
        cond: Condvar::new(),
        token,
    });
    let listener = std::net::TcpListener::bind(listen).map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {listen}: {e} (another server on that port? pick another with --listen)"
        )
    })?;
    let addr = listener.local_addr()?;
    let server = tiny_http::Server::from_listener(listener, None)
        .map_err(|e| anyhow::anyhow!("cannot serve on {addr}: {e}"))?;
    let server = Arc::new(server);
    {
        let sh = shared.clone();
        std::thread::spawn(move || sampler(sh, sources, refresh));
    }
    let workers = (0..4)
        .map(|_| {
            let (srv, sh) = (server.clone(), shared.clone());
            std::thread::spawn(move || {
                while let Ok(req) = srv.recv() {
                    handle(&sh, req);
                }
            })
        })
        .collect();
    Ok(Running { addr, workers })
}

/// Serves `sources` on `listen` until the process is stopped.
pub fn run(
    sources: Vec<Box<dyn Source>>,
    listen: SocketAddr,
    token: Option<String>,
    refresh: Duration,
) -> anyhow::Result<()> {
    let n = sources.len();
    let auth = if token.is_some() { "?token=..." } else { "" };
    let r = start(sources, listen, token, refresh)?;
    let a = r.addr;
    eprintln!(
        "memwatch: serving {n} session(s): dashboard http://{a}/{auth}  metrics http://{a}/metrics"
    );
    for w in r.workers {
        let _ = w.join();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeSource;
    use std::io::{BufRead, BufReader, Read};
    use std::net::TcpStream;

    fn get(addr: SocketAddr, path: &str, extra: &str) -> (u16, String) {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let code = out[9..12].parse().unwrap();
        (code, out.split_once("\r\n\r\n").unwrap().1.to_string())
    }

    #[test]
    fn serves_metrics_snapshot_and_events_with_a_token() {
        let (src, h) = FakeSource::quotes(2);
        let tok = "0123456789abcdef".to_string();
        let r = start(
            vec![Box::new(src)],
            "127.0.0.1:0".parse().unwrap(),
            Some(tok.clone()),
            Duration::from_millis(10),
        )
        .unwrap();
        let (code, body) = get(r.addr, "/metrics", "");
        assert_eq!(code, 401, "{body}");
        let (code, _) = get(r.addr, "/api/events", "");
        assert_eq!(code, 401);
        let (code, body) = get(r.addr, "/", "Authorization: Bearer 0123456789abcdef\r\n");
        assert_eq!(code, 200);
        assert!(body.contains("EventSource"));
        // SSE: a snapshot, then an update carrying exactly the changed field.
        let mut s = TcpStream::connect(r.addr).unwrap();
        write!(s, "GET /api/events?token={tok} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut rd = BufReader::new(s);
        let next_event = |rd: &mut BufReader<TcpStream>| -> (String, J) {
            let (mut ev, mut line) = (String::new(), String::new());
            loop {
                line.clear();
                rd.read_line(&mut line).unwrap();
                if let Some(e) = line.strip_prefix("event: ") {
                    ev = e.trim().to_string();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    return (ev, serde_json::from_str(d).unwrap());
                }
            }
        };
        let (ev, snap) = next_event(&mut rd);
        assert_eq!(ev, "snapshot");
        assert_eq!(snap["sessions"][0]["objects"][1]["fields"][0]["path"], "bid");
        assert_eq!(snap["sessions"][0]["objects"][1]["fields"][0]["value"], 1.5);
        h.set(4, Value::Float(3.75));
        let upd = loop {
            let (ev, u) = next_event(&mut rd);
            assert_eq!(ev, "update");
            if !u["changes"].as_array().unwrap().is_empty() {
                break u;
            }
        };
        assert_eq!(upd["changes"], json!([[0, 4, 3.75, false]]));
        let (code, body) = get(r.addr, "/metrics?token=0123456789abcdef", "");
        assert_eq!(code, 200);
        assert!(
            body.contains(
                "memglass_quote_ask_usd{session=\"fake\",object=\"obj1\",field=\"ask\"} 3.75\n"
            ),
            "{body}"
        );
    }

    #[test]
    fn listen_rules() {
        let lo: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:1".parse().unwrap();
        assert!(check_listen(&lo, None).is_ok());
        let e = check_listen(&any, None).unwrap_err().to_string();
        assert!(e.contains("--token"), "{e}");
        assert!(check_listen(&any, Some("0123456789")).is_ok());
        assert!(check_listen(&any, Some("short")).is_err());
        assert!(check_listen(&"[::1]:1".parse().unwrap(), None).is_ok());
    }

    #[test]
    fn token_and_host_checks() {
        let t = Some("sekrit-token");
        assert_eq!(refuse(t, "/metrics", None, Some("x")).unwrap().0, 401);
        assert_eq!(refuse(t, "/metrics?token=wrong", None, None).unwrap().0, 401);
        assert!(refuse(t, "/metrics?token=sekrit-token", None, None).is_none());
        assert!(refuse(t, "/?a=1&token=sekrit-token", None, None).is_none());
        assert!(refuse(t, "/", Some("Bearer sekrit-token"), None).is_none());
        assert_eq!(refuse(t, "/", Some("Bearer sekrit-tokeN"), None).unwrap().0, 401);
        assert!(refuse(None, "/", None, Some("127.0.0.1:9477")).is_none());
        assert!(refuse(None, "/", None, Some("localhost:9477")).is_none());
        assert!(refuse(None, "/", None, Some("[::1]:9477")).is_none());
        assert_eq!(refuse(None, "/", None, Some("evil.example:9477")).unwrap().0, 403);
        assert_eq!(refuse(None, "/", None, None).unwrap().0, 403);
    }
}
