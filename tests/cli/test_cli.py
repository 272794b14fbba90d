"""End-to-end tests of the `memwatch` command against live producer processes.

Every test starts the example producer (crates/memwatch-cli/examples/producer.rs)
with its background movement off, writes exact values through its stdin
commands, and checks what `memwatch` shows: in a real terminal (tmux), in a
real browser (headless Chromium via chromedriver), through a real Prometheus
server, and as `events --json`. Waiting is by polling a condition with a
deadline, never a fixed sleep standing in for an assertion.

Environment (set by ci/test-cli.sh): MEMWATCH_BIN, PRODUCER_BIN.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest

MEMWATCH = os.environ["MEMWATCH_BIN"]
PRODUCER = os.environ["PRODUCER_BIN"]
TIMEOUT = 20.0


def wait_until(what, fn, timeout=TIMEOUT, every=0.05):
    """Polls fn() until it returns something truthy; fails with `what` after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except Exception as e:  # noqa: BLE001 - a not-yet-ready server
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(every)
    pytest.fail(f"timed out waiting for {what}; last: {last!r}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def shm(monkeypatch):
    d = tempfile.mkdtemp(prefix="memwatch-cli-")
    monkeypatch.setenv("MEMGLASS_DIR", os.path.join(d, "shm"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


class Producer:
    """The example producer as a child process, driven by stdin commands."""

    def __init__(self, session, *extra):
        self.session = session
        self.p = subprocess.Popen(
            [PRODUCER, "--session", session, "--churn-ms", "0", *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        first = self.p.stdout.readline().split()
        assert first[:2] == ["ready", session], first
        self.pid = int(first[2])

    def cmd(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        reply = self.p.stdout.readline().strip()
        assert reply == "ok", f"{line!r} -> {reply!r}"

    def stop(self):
        if self.p.poll() is None:
            try:
                self.p.stdin.write("quit\n")
                self.p.stdin.flush()
            except BrokenPipeError:
                pass
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()

    def kill(self):
        self.p.send_signal(signal.SIGKILL)
        self.p.wait()


@pytest.fixture
def producer(shm):
    procs = []

    def start(session="demo", *extra):
        p = Producer(session, *extra)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.stop()


def memwatch(*args, **kw):
    return subprocess.run([MEMWATCH, *args], capture_output=True, text=True, timeout=30, **kw)


# ---------------------------------------------------------------- ls, clean


def test_ls_shows_alive_and_dead_and_clean_removes_only_dead(producer):
    producer("alive1")
    dead = producer("dead1")
    dead.kill()
    r = memwatch("ls", "--json")
    assert r.returncode == 0, r.stderr
    rows = {j["name"]: j for j in map(json.loads, r.stdout.splitlines())}
    assert set(rows) == {"alive1", "dead1"}
    assert rows["alive1"]["liveness"] == "alive" and rows["alive1"]["objects"] == 3
    assert rows["dead1"]["liveness"] == "dead" and rows["dead1"]["pid"] == dead.pid
    table = memwatch("ls")
    assert re.search(r"^alive1\s+\d+\s+alive\s+3\s", table.stdout, re.M), table.stdout
    assert re.search(r"^dead1\s+%d\s+dead\s" % dead.pid, table.stdout, re.M), table.stdout
    assert "memwatch clean" in table.stderr
    dry = memwatch("clean", "--dry-run")
    assert dry.stdout.startswith("would remove dead1") and "alive1" not in dry.stdout
    r = memwatch("clean")
    assert r.returncode == 0 and r.stdout == "removed dead1\n", (r.stdout, r.stderr)
    names = [json.loads(line)["name"] for line in memwatch("ls", "--json").stdout.splitlines()]
    assert names == ["alive1"]


def test_unknown_session_says_what_to_do(shm):
    r = memwatch("top", "nosuch")
    assert r.returncode == 1
    assert "no session \"nosuch\"" in r.stderr and "memwatch ls" in r.stderr, r.stderr
    r = memwatch("events", "bad/name")
    assert r.returncode == 1 and "Session names are" in r.stderr, r.stderr


def test_top_without_a_terminal_points_to_events(producer):
    producer()
    r = memwatch("top", "demo", stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and "needs a terminal" in r.stderr and "memwatch events" in r.stderr, r.stderr


def test_serve_on_a_busy_port_says_so(producer):
    producer()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        r = memwatch("serve", "demo", "--listen", f"127.0.0.1:{s.getsockname()[1]}")
    assert r.returncode == 1 and "cannot listen" in r.stderr and "--listen" in r.stderr, r.stderr


def test_every_subcommand_has_help_with_examples():
    for sub in ["ls", "clean", "top", "events", "serve"]:
        r = memwatch(sub, "--help")
        assert r.returncode == 0 and "Examples:" in r.stdout, (sub, r.stdout)


# ---------------------------------------------------------------- events --json


def test_events_json_has_exact_old_and_new_values(producer):
    p = producer()
    ev = subprocess.Popen([MEMWATCH, "events", "demo", "--json", "--count", "5", "--refresh-ms", "20"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "watching demo" in ev.stderr.readline()  # sampling has started
    p.cmd("set AAPL quote.bid 101.25")
    p.cmd("set MSFT trades 7")
    p.cmd("set AAPL symbol XYZ")
    p.cmd("create TSLA")
    p.cmd("set GOOG last_size 300")
    out = [json.loads(line) for line in ev.stdout]
    assert ev.wait(10) == 0
    fields = sorted((e["path"], e["old"], e["new"]) for e in out if e["kind"] == "field")
    assert fields == [
        ("AAPL.quote.bid", 100.0, 101.25),
        ("AAPL.symbol", "AAPL", "XYZ"),
        ("GOOG.last_size", 0, 300),
        ("MSFT.trades", 0, 7),
    ], out
    created = [e for e in out if e["kind"] == "created"]
    assert [e["object"] for e in created] == ["TSLA"]
    bid = next(e for e in out if e["path"] == "AAPL.quote.bid")
    assert bid["session"] == "demo" and bid["object"] == "AAPL" and bid["field"] == "quote.bid"
    assert bid["type"] == "f64" and re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", bid["time"])


def test_events_text_and_exit_when_producer_dies(producer):
    p = producer()
    ev = subprocess.Popen([MEMWATCH, "events", "demo", "--refresh-ms", "20"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "watching demo" in ev.stderr.readline()
    p.cmd("set MSFT quote.ask 99.5")
    line = ev.stdout.readline()
    assert re.search(r"Z MSFT\.quote\.ask 100\.5 -> 99\.5$", line), line
    p.kill()
    assert ev.wait(10) == 0
    assert "is dead" in ev.stderr.read()


# ---------------------------------------------------------------- TUI in tmux


class Tmux:
    made = 0

    def __init__(self, cmd, env):
        # A server of its own per test: a killed one may still be exiting.
        Tmux.made += 1
        self.sock = f"memwatch-test-{os.getpid()}-{Tmux.made}"
        self.run("new-session", "-d", "-x", "120", "-y", "32",
                 *sum((["-e", f"{k}={v}"] for k, v in env.items()), []), cmd)

    def run(self, *args):
        r = subprocess.run(["tmux", "-L", self.sock, *args], capture_output=True, text=True)
        assert r.returncode == 0, f"tmux {args}: {r.stderr}"
        return r.stdout

    def keys(self, *keys):
        self.run("send-keys", "-t", "0", *keys)

    def screen(self, escapes=False):
        return self.run("capture-pane", "-p", "-t", "0", *(["-e"] if escapes else []))

    def wait_for(self, what, pred, escapes=False):
        return wait_until(what, lambda: (lambda s: s if pred(s) else None)(self.screen(escapes)))

    def close(self):
        subprocess.run(["tmux", "-L", self.sock, "kill-server"], capture_output=True)


@pytest.fixture
def tmux(shm):
    made = []

    def start(cmd):
        t = Tmux(cmd, {"MEMGLASS_DIR": os.environ["MEMGLASS_DIR"]})
        made.append(t)
        return t

    yield start
    for t in made:
        t.close()


def line_of(screen, needle):
    return next((l for l in screen.splitlines() if needle in l), None)


def test_tui_values_highlight_filter_watch_hex_pause_dead(producer, tmux):
    p = producer()
    t = tmux(f"{MEMWATCH} top demo")
    s = t.wait_for("the tree", lambda s: "GOOG" in s and "ALIVE" in s)
    assert " demo " in s and "3 objects  18 fields  refresh 100 ms" in s
    assert re.search(r"quote\.bid\s+100 USD", s), s
    # A write shows up, highlighted (yellow background, SGR 43 or 48;5;3).
    p.cmd("set AAPL quote.bid 101.25")
    s = t.wait_for("the new bid", lambda s: "101.25 USD" in s, escapes=True)
    hl = line_of(s, "101.25 USD")
    assert re.search(r"\x1b\[(?:[0-9;]*;)?(?:43|48;5;3)m(?:\x1b\[[0-9;]*m)*101\.25 USD", hl), repr(hl)
    # An unchanged value on the same screen is not highlighted.
    ask = line_of(s, "100.5 USD")
    assert not re.search(r"(?:43|48;5;3)m(?:\x1b\[[0-9;]*m)*100\.5", ask), repr(ask)
    # ... and the highlight fades.
    s = t.wait_for("the fade", lambda s: not re.search(r"(?:43|48;5;3)m(?:\x1b\[[0-9;]*m)*101\.25", s),
                   escapes=True)

    # Filter by path: only MSFT's trades stays.
    t.keys("/")
    t.keys("-l", "MSFT.trades")
    t.keys("Enter")
    s = t.wait_for("the filter", lambda s: "filter: MSFT.trades" in s)
    assert "AAPL" not in s and "GOOG" not in s and re.search(r"trades\s+0", s), s
    # Select the field, put it on the watch list, see its details.
    t.keys("j")
    t.keys("w")
    s = t.wait_for("the watch list", lambda s: "watch list" in s and "MSFT.trades 0" in s)
    assert "counter" in s and "trades seen" in s, s
    p.cmd("set MSFT trades 7")
    t.wait_for("the watched value", lambda s: "MSFT.trades 7" in s)
    # Hex view of MSFT: seq word unknown (not a field), bid 100.0, ask 100.5, trades 7.
    t.keys("x")
    s = t.wait_for("the hex view", lambda s: "hex: MSFT (Quote" in s)
    assert "000000  ·· ·· ·· ·· ·· ·· ·· ··  00 00 00 00 00 00 59 40" in s, s
    assert "000010  00 00 00 00 00 20 59 40  07 00 00 00 00 00 00 00" in s, s
    t.keys("Escape")
    t.wait_for("the hex view to close", lambda s: "hex:" not in s)
    # Pause: a write is not shown until resumed.
    t.keys("p")
    t.wait_for("PAUSED", lambda s: "PAUSED" in s)
    p.cmd("set MSFT trades 8")
    time.sleep(0.5)  # five refresh periods: a paused screen must not move
    assert "MSFT.trades 7" in t.screen()
    t.keys("p")
    t.wait_for("the resumed value", lambda s: "MSFT.trades 8" in s and "PAUSED" not in s)
    # Help, then clear the filter and refresh faster.
    t.keys("?")
    t.wait_for("the key help", lambda s: "expand all / collapse all" in s)
    t.keys("Escape")
    t.wait_for("the help to close", lambda s: "expand all / collapse all" not in s)
    t.keys("Escape")  # (two at once would read as Alt+Escape)
    t.wait_for("the filter to clear", lambda s: "filter:" not in s)
    t.keys("+")
    t.wait_for("all objects and 50 ms", lambda s: "AAPL" in s and "GOOG" in s and "refresh 50 ms" in s)
    # The producer dies: DEAD, last values kept.
    p.kill()
    s = t.wait_for("DEAD", lambda s: "DEAD" in s)
    assert "101.25 USD" in s
    t.keys("q")


def test_tui_stays_responsive_with_10000_fields(producer, tmux):
    producer("wide", "--symbols", "", "--wide", "10000")
    t = tmux(f"{MEMWATCH} top wide")
    t.wait_for("the wide tree", lambda s: "100 objects  10000 fields" in s)
    t.keys("e")  # expand all: 10 100 rows
    t.keys("G")  # to the last row
    s = t.wait_for("the last field", lambda s: re.search(r"^\s+f99\s+0\s", s, re.M))
    assert re.search(r"^\s+f98\s+0\s", s, re.M), s


# ---------------------------------------------------------------- serve + browser


class Serve:
    def __init__(self, *args):
        self.port = free_port()
        listen = args[0] if args and args[0].startswith("--listen") else None
        self.p = subprocess.Popen([MEMWATCH, "serve", *args] if listen else
                                  [MEMWATCH, "serve", *args, "--listen", f"127.0.0.1:{self.port}"],
                                  stderr=subprocess.PIPE, text=True)
        self.banner = ""
        while "serving" not in self.banner:
            line = self.p.stderr.readline()
            assert line, f"memwatch serve exited: {self.banner}"
            self.banner += line

    def stop(self):
        self.p.terminate()
        self.p.wait(5)


def http_get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class WebDriver:
    """The few W3C WebDriver calls the test needs, over chromedriver's HTTP API."""

    def __init__(self, tmp):
        self.port = free_port()
        self.drv = subprocess.Popen(["chromedriver", f"--port={self.port}"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{self.port}"
        wait_until("chromedriver", lambda: http_get(self.base + "/status")[0] == 200)
        profile = tempfile.mkdtemp(dir=tmp)
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", f"--user-data-dir={profile}"]}}}}
        self.sid = self.call("POST", "/session", caps)["sessionId"]

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())["value"] if path != "/session" else json.loads(r.read())["value"]

    def s(self, method, path, body=None):
        return self.call(method, f"/session/{self.sid}{path}", body)

    def go(self, url):
        self.s("POST", "/url", {"url": url})

    def js(self, script):
        return self.s("POST", "/execute/sync", {"script": script, "args": []})

    def quit(self):
        try:
            self.s("DELETE", "")
        finally:
            self.drv.terminate()
            self.drv.wait(5)


@pytest.fixture
def browser(shm):
    wd = WebDriver(shm)
    yield wd
    wd.quit()


VALUE_JS = """const r = document.querySelector('tr[data-path="%s"] td.value'); return r ? r.textContent : null;"""


def test_dashboard_shows_a_value_and_sees_it_change(producer, browser):
    p = producer()
    srv = Serve("demo")
    try:
        browser.go(f"http://127.0.0.1:{srv.port}/")
        wait_until("the bid in the page", lambda: browser.js(VALUE_JS % "demo/AAPL.quote.bid") == "100 USD")
        assert browser.js(VALUE_JS % "demo/MSFT.symbol") == '"MSFT"'
        assert browser.js("return document.getElementById('live-0').textContent") == "alive"
        # Chart the bid, write it, see the page and the chart follow.
        browser.js("""document.querySelector('tr[data-path="demo/AAPL.quote.bid"] td.path').click(); return 1;""")
        assert browser.js("return document.querySelectorAll('#chartlist .chart').length") == 1
        p.cmd("set AAPL quote.bid 101.25")
        wait_until("the new bid in the page", lambda: browser.js(VALUE_JS % "demo/AAPL.quote.bid") == "101.25 USD")
        wait_until("the chart's last point", lambda: browser.js(
            "return document.querySelector('#chartlist .chart').dataset.last") == "101.25")
        # Filter: only matching rows stay visible.
        browser.js("const f = document.getElementById('filter'); f.value = 'MSFT.trades'; f.oninput(); return 1;")
        visible = browser.js("return [...document.querySelectorAll('tr[data-path]')].filter(r => r.style.display !== 'none').map(r => r.dataset.path)")
        assert visible == ["demo/MSFT.trades"]
        p.kill()
        wait_until("DEAD in the page", lambda: "DEAD" in browser.js("return document.getElementById('live-0').textContent"))
    finally:
        srv.stop()


def test_dashboard_keeps_up_with_10000_changing_fields(producer, browser):
    p = producer("wide", "--symbols", "AAPL", "--wide", "10000")
    srv = Serve("wide")
    try:
        browser.go(f"http://127.0.0.1:{srv.port}/")
        wait_until("10 006 rows", lambda: browser.js("return document.querySelectorAll('tr[data-path]').length") == 10006)
        assert browser.js(VALUE_JS % "wide/w99.f99") == "0"
        # Field f99 of all 100 objects changes, three times; the page follows
        # each round to the last object, and has the first one too.
        for n in range(1, 4):
            for i in range(100):
                p.cmd(f"set w{i} f99 {n}")
            wait_until(f"w99.f99 = {n}", lambda: browser.js(VALUE_JS % "wide/w99.f99") == str(n))
            assert browser.js(VALUE_JS % "wide/w0.f99") == str(n)
    finally:
        srv.stop()


def test_torn_reads_are_flagged_in_top_and_the_dashboard(producer, tmux, browser):
    p = producer()
    p.cmd("set MSFT quote.bid 42.5")
    srv = Serve("demo")
    t = tmux(f"{MEMWATCH} top demo")
    try:
        browser.go(f"http://127.0.0.1:{srv.port}/")
        torn_js = """const r = document.querySelector('tr[data-path="demo/MSFT.quote.bid"] td.torn'); return r ? r.textContent : null;"""
        wait_until("the page", lambda: browser.js(VALUE_JS % "demo/MSFT.quote.bid") == "42.5 USD")
        assert browser.js(torn_js) == ""
        t.wait_for("the tree", lambda s: "42.5 USD" in s)
        assert "TORN" not in t.screen()
        # A writer stuck mid-write: MSFT's quote cannot be read consistently.
        p.cmd("stick MSFT")
        s = t.wait_for("TORN", lambda s: "TORN" in s)
        torn = [l for l in s.splitlines() if "TORN" in l]
        assert len(torn) == 2 and "quote.bid" in torn[0] and "42.5 USD" in torn[0], s  # last value kept
        assert "quote.ask" in torn[1] and "100.5 USD" in torn[1], s
        wait_until("TORN in the page", lambda: browser.js(torn_js) == "TORN")
        assert browser.js(VALUE_JS % "demo/MSFT.quote.bid") == "42.5 USD"
        # The writer finishes: readable again, the flag goes.
        p.cmd("unstick MSFT")
        p.cmd("set MSFT quote.bid 43.5")
        t.wait_for("readable again", lambda s: "TORN" not in s and "43.5 USD" in s)
        wait_until("the page readable again", lambda: browser.js(torn_js) == "" and
                   browser.js(VALUE_JS % "demo/MSFT.quote.bid") == "43.5 USD")
    finally:
        srv.stop()


def non_loopback_addresses():
    """The machine's own IPv4 addresses other than loopback (none on some machines)."""
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
    except FileNotFoundError:
        return []
    return [a for a in out if ":" not in a and not a.startswith("127.")]


def test_token_required_off_loopback_and_enforced(producer, browser):
    producer()
    r = memwatch("serve", "demo", "--listen", "0.0.0.0:1")
    assert r.returncode == 1 and "without a token" in r.stderr and "--token" in r.stderr, r.stderr
    port = free_port()
    token = "t0k3n-for-the-test"
    srv = Serve("--listen", f"0.0.0.0:{port}", "demo", "--token", token)
    try:
        hosts = ["127.0.0.1"] + non_loopback_addresses()
        for h in hosts:
            for path in ["/", "/metrics", "/api/snapshot", "/api/events"]:
                code, body = http_get(f"http://{h}:{port}{path}")
                assert code == 401 and "token" in body, (h, path, code)
                code, _ = http_get(f"http://{h}:{port}{path}?token=wrong-token-value")
                assert code == 401, (h, path)
            code, body = http_get(f"http://{h}:{port}/metrics", {"Authorization": f"Bearer {token}"})
            assert code == 200 and 'memglass_quote_quote_bid_usd{session="demo",object="AAPL"' in body
        # The page with the token works end to end (its event stream carries the token).
        browser.go(f"http://127.0.0.1:{port}/?token={token}")
        wait_until("the bid behind the token", lambda: browser.js(VALUE_JS % "demo/AAPL.quote.bid") == "100 USD")
        # Without it the browser gets the refusal, not the dashboard.
        browser.go(f"http://127.0.0.1:{port}/")
        assert "missing or wrong token" in browser.js("return document.body.innerText")
    finally:
        srv.stop()


def test_loopback_without_token_refuses_foreign_host_header(producer):
    producer()
    srv = Serve("demo")
    try:
        code, _ = http_get(f"http://127.0.0.1:{srv.port}/metrics")
        assert code == 200
        code, body = http_get(f"http://127.0.0.1:{srv.port}/metrics", {"Host": f"evil.example:{srv.port}"})
        assert code == 403 and "loopback" in body
    finally:
        srv.stop()


def test_a_restarted_producer_is_picked_up_by_serve_and_top(producer, tmux):
    first = producer()
    first.cmd("set AAPL quote.bid 101.25")
    srv = Serve("demo")
    t = tmux(f"{MEMWATCH} top demo")
    try:
        snap = lambda: json.loads(http_get(f"http://127.0.0.1:{srv.port}/api/snapshot")[1])["sessions"][0]
        metrics = lambda: http_get(f"http://127.0.0.1:{srv.port}/metrics")[1]
        wait_until("the first producer", lambda: snap()["pid"] == first.pid and snap()["liveness"] == "alive")
        t.wait_for("the first pid", lambda s: f"pid {first.pid}" in s and "101.25 USD" in s)
        first.kill()
        wait_until("dead in the API", lambda: snap()["liveness"] == "dead")
        # A dead producer's values leave /metrics; its up gauge says why.
        m = wait_until("up 0", lambda: (lambda m: m if 'memglass_producer_up{session="demo"} 0' in m else None)(metrics()))
        assert "memglass_quote_quote_bid_usd" not in m, m
        t.wait_for("DEAD on screen", lambda s: "DEAD" in s and "101.25 USD" in s)
        second = producer()
        assert second.pid != first.pid
        second.cmd("set AAPL quote.bid 55.5")
        wait_until("the second producer in the API", lambda: snap()["pid"] == second.pid and snap()["liveness"] == "alive")
        wait_until("its value in /metrics", lambda: 'object="AAPL",field="quote.bid"} 55.5' in metrics())
        t.wait_for("the second producer on screen",
                   lambda s: f"pid {second.pid}" in s and "ALIVE" in s and "55.5 USD" in s)
    finally:
        srv.stop()


# ---------------------------------------------------------------- Prometheus


def test_prometheus_scrapes_the_value_the_producer_wrote(producer, shm):
    p = producer()
    srv = Serve("demo")
    prom_port = free_port()
    cfg = os.path.join(shm, "prometheus.yml")
    with open(cfg, "w") as f:
        f.write(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: memwatch
    static_configs:
      - targets: ['127.0.0.1:{srv.port}']
""")
    prom = subprocess.Popen(["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={shm}/tsdb",
                             f"--web.listen-address=127.0.0.1:{prom_port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        p.cmd("set AAPL quote.bid 101.25")
        p.cmd("set MSFT trades 7")
        api = f"http://127.0.0.1:{prom_port}/api/v1/query?query="

        def query(q):
            code, body = http_get(api + urllib.request.quote(q))
            res = json.loads(body)["data"]["result"] if code == 200 else []
            return res[0] if len(res) == 1 else None

        r = wait_until("Prometheus to have the bid", lambda: (lambda x: x if x and x["value"][1] == "101.25" else None)(
            query('memglass_quote_quote_bid_usd{session="demo",object="AAPL",field="quote.bid"}')), timeout=60)
        assert r["metric"]["job"] == "memwatch"
        r = wait_until("the counter", lambda: query('memglass_quote_trades_total{object="MSFT"}'))
        assert r["value"][1] == "7"
        # The type and help came through the exposition.
        code, body = http_get(f"http://127.0.0.1:{prom_port}/api/v1/metadata?metric=memglass_quote_trades_total")
        md = json.loads(body)["data"]["memglass_quote_trades_total"][0]
        assert md["type"] == "counter" and md["help"] == "trades seen", md
        assert query('memglass_producer_up{session="demo"}')["value"][1] == "1"
    finally:
        prom.terminate()
        prom.wait(10)
        srv.stop()
