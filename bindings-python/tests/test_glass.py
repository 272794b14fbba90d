"""memwatch.glass: producer and observer always in different processes,
across languages (Python producer -> Rust observer, Rust producer -> Python
observer), layouts read from ctypes.Structure and numpy dtypes."""

import ctypes
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np
import pytest

import memwatch.glass as glass

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def peer():
    """The Rust peer binary (crates/memglass/examples/glass_peer.rs)."""
    path = os.environ.get("MEMGLASS_PEER")
    if not path:
        target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
        subprocess.run(
            ["cargo", "build", "--release", "-q", "-p", "memglass", "--example", "glass_peer"],
            cwd=ROOT, check=True,
        )
        path = str(target / "release" / "examples" / "glass_peer")
    return path


@pytest.fixture(autouse=True)
def segdir(monkeypatch):
    with tempfile.TemporaryDirectory(prefix="memglass-py-") as d:
        os.chmod(d, 0o700)
        monkeypatch.setenv("MEMGLASS_DIR", d)
        yield d


PRODUCER = textwrap.dedent(
    """
    import ctypes, sys
    import numpy as np
    import memwatch.glass as glass

    class Inner(ctypes.Structure):
        _fields_ = [("x", ctypes.c_int32), ("y", ctypes.c_uint8)]

    class Quote(ctypes.Structure):
        _fields_ = [("bid", ctypes.c_double), ("ask", ctypes.c_double),
                    ("size", ctypes.c_uint32), ("symbol", ctypes.c_char * 8),
                    ("inner", Inner), ("hist", ctypes.c_int16 * 3), ("live", ctypes.c_bool)]
        _glass_meta_ = {"bid": {"unit": "USD", "help": "best bid"}, "size": {"semantics": "counter"}}

    p = glass.Producer(sys.argv[1])
    q = p.create("AAPL", Quote)
    q.bid, q.ask, q.size, q.symbol = 1.5, 2.5, 100, b"AAPL"
    q.inner.x, q.inner.y = -3, 9
    q.hist[:] = [1, -2, 3]
    q.live = True
    dt = np.dtype([("id", "<u4"), ("temp", "<f8"), ("name", "S6"), ("v", "<i2", (2,))], align=True)
    arr = p.create("sensors", dt, count=2)
    arr[0] = (7, 20.5, b"left", (1, 2))
    arr[1] = (8, -1.25, b"right", (3, 4))
    print("ready", flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "trade":
            q.bid += 1.0
            q.size += 10
        elif cmd[0] == "drop":
            p.destroy(q)
        elif cmd[0] == "quit":
            break
        print("ok", flush=True)
    p.shutdown()
    """
)


def start_py_producer(session):
    proc = subprocess.Popen(
        [sys.executable, "-c", PRODUCER, session],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


def cmd(proc, c):
    proc.stdin.write(c + "\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "ok"


def test_python_producer_rust_observer(peer):
    proc = start_py_producer("py2rust")
    try:
        out = subprocess.run([peer, "dump", "py2rust"], check=True, capture_output=True, text=True).stdout
        lines = dict(l.split(" ", 1) for l in out.strip().splitlines())
        assert lines["AAPL"].split() == [
            "bid=1.5", "ask=2.5", "size=100", 'symbol="AAPL"', "inner.x=-3", "inner.y=9",
            "hist=[1,", "-2,", "3]", "live=true",
        ]
        assert lines["sensors"].split() == [
            "[0].id=7", "[0].temp=20.5", '[0].name="left"', "[0].v=[1,", "2]",
            "[1].id=8", "[1].temp=-1.25", '[1].name="right"', "[1].v=[3,", "4]",
        ]
        cmd(proc, "trade")
        out = subprocess.run([peer, "dump", "py2rust"], check=True, capture_output=True, text=True).stdout
        assert "bid=2.5 ask=2.5 size=110" in out
    finally:
        proc.communicate("quit\n", timeout=10)
    assert proc.returncode == 0


def test_python_producer_python_observer_metadata_and_events():
    proc = start_py_producer("py2py")
    try:
        o = glass.Observer("py2py")
        assert o.session_info()["pid"] == proc.pid
        assert o.liveness() == "alive"
        assert sorted(x["label"] for x in o.objects()) == ["AAPL", "sensors"]
        f = {x["path"]: x for x in o.fields("AAPL")}
        assert f["bid"]["unit"] == "USD" and f["bid"]["help"] == "best bid"
        assert f["size"]["semantics"] == "counter" and f["size"]["type"] == "u32"
        assert f["symbol"]["type"] == "char" and f["symbol"]["array_len"] == 8
        assert f["inner.y"]["offset"] == Quote_inner_offset() + 4
        assert o.read("sensors", "[1].name") == "right"
        assert o.read("sensors", "[0].v") == [1, 2]
        first = o.changes()
        assert sorted((e["label"], e["kind"]) for e in first) == [("AAPL", "created"), ("sensors", "created")]
        assert o.changes() == []
        cmd(proc, "trade")
        ev = [(e["label"], e["path"], e["old"], e["new"]) for e in o.changes()]
        assert ev == [("AAPL", "bid", 1.5, 2.5), ("AAPL", "size", 100, 110)]
        cmd(proc, "drop")
        ev = o.changes()
        assert [(e["label"], e["kind"]) for e in ev] == [("AAPL", "destroyed")]
        with pytest.raises(LookupError):
            o.read("AAPL", "bid")
    finally:
        proc.communicate("quit\n", timeout=10)
    assert o.liveness() == "dead"


def Quote_inner_offset():
    # bid 8 + ask 8 + size 4 + symbol 8 = 28, Inner aligned to 4.
    return 28


def test_rust_producer_python_observer(peer):
    proc = subprocess.Popen([peer, "produce", "rust2py"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        o = glass.Observer("rust2py")
        assert o.snapshot("AAPL") == {
            "orders": 3,
            "quote.bid": 1.5,
            "quote.ask": 2.5,
            "quote.size": 100,
            "quote.venue": 7,
            "level": -7,
            "active": True,
            "symbol": "AAPL",
            "history": [1, -2, 3, -4],
        }
        f = {x["path"]: x for x in o.fields("AAPL")}
        assert (f["orders"]["atomicity"], f["orders"]["semantics"]) == ("atomic", "counter")
        assert f["quote.bid"]["atomicity"] == "seqlock" and f["quote.bid"]["unit"] == "USD"
        o.changes()
        proc.stdin.write("trade\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "ok"
        ev = [(e["path"], e["old"], e["new"]) for e in o.changes()]
        assert ev == [("orders", 3, 4), ("quote.bid", 1.5, 2.5), ("level", -7, 42)]
        proc.send_signal(signal.SIGKILL)
        t0 = time.monotonic()
        while o.liveness() != "dead":
            assert time.monotonic() - t0 < 1.0
            time.sleep(0.01)
        proc.wait()
        assert o.read("AAPL", "orders") == 4  # last values stay readable
        assert "rust2py" in glass.remove_stale()
        assert glass.list_sessions() == []
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def cpp_producer(tmp_path_factory):
    """tests/glass_cpp_producer.cpp built with g++ against libmemwatch
    (memglass.hpp over the C ABI)."""
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    libdir = os.environ.get("MEMGLASS_LIBDIR")
    if not libdir:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "memwatch-c"], cwd=ROOT, check=True)
        libdir = str(target / "release")
    exe = tmp_path_factory.mktemp("cpp") / "glass_cpp_producer"
    include = ROOT / "crates" / "memwatch-capi" / "include"
    src = pathlib.Path(__file__).with_name("glass_cpp_producer.cpp")
    subprocess.run(
        ["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", f"-I{include}", str(src),
         f"-L{libdir}", "-lmemwatch", f"-Wl,-rpath,{libdir}", "-o", str(exe)],
        check=True,
    )
    return str(exe)


def test_cpp_producer_python_observer(cpp_producer):
    proc = subprocess.Popen([cpp_producer, "cpp2py"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        o = glass.Observer("cpp2py")
        assert o.snapshot("AAPL") == {
            "fills": 2,
            "quantity": -300,
            "avg_price": 189.25,
            "symbol": "AAPL",
            "levels": [1, -2, 300],
            "open": True,
            "ratio": 0.75,
            "quote.bid": 189.5,
            "quote.ask": 190.0,
        }
        assert o.read("AAPL", "quote.ask") == 190.0
        f = {x["path"]: x for x in o.fields("AAPL")}
        assert (f["fills"]["atomicity"], f["fills"]["semantics"], f["fills"]["help"]) == (
            "atomic", "counter", "fills seen")
        assert (f["quote.bid"]["atomicity"], f["quote.bid"]["unit"]) == ("seqlock", "USD")
        assert f["quantity"]["atomicity"] == "none"
        o.changes()
        proc.stdin.write("trade\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "ok"
        ev = [(e["path"], e["old"], e["new"]) for e in o.changes()]
        assert ev == [("fills", 2, 3), ("quantity", -300, 42), ("quote.bid", 189.5, 190.5),
                      ("quote.ask", 190.0, 191.0)]
        proc.stdin.write("quit\n")
        proc.stdin.flush()
        assert proc.wait(timeout=10) == 0
        assert o.liveness() == "dead"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_layouts_read_from_ctypes_and_numpy():
    class In(ctypes.Structure):
        _fields_ = [("a", ctypes.c_uint16), ("b", ctypes.c_float)]

    class S(ctypes.Structure):
        _fields_ = [("flag", ctypes.c_bool), ("n", ctypes.c_int64), ("ins", In * 2), ("txt", ctypes.c_char * 5)]

    name, size, align, fields = glass.layout_from_ctypes(S)
    assert (name, size, align) == ("S", ctypes.sizeof(S), 8)
    assert [(f[0], f[1], f[2], f[3]) for f in fields] == [
        ("flag", 0, "bool", 0),
        ("n", 8, "i64", 0),
        ("ins.0.a", 16, "u16", 0),
        ("ins.0.b", 20, "f32", 0),
        ("ins.1.a", 24, "u16", 0),
        ("ins.1.b", 28, "f32", 0),
        ("txt", 32, "char", 5),
    ]
    dt = np.dtype([("x", "<f4"), ("pt", [("u", "u1"), ("w", "<i4")]), ("m", "<u8", (3,))], align=True)
    name, size, align, fields = glass.layout_from_dtype(dt, name="Rec")
    assert (name, size, align) == ("Rec", dt.itemsize, 8)
    assert [(f[0], f[1], f[2], f[3]) for f in fields] == [
        ("x", 0, "f32", 0),
        ("pt.u", 4, "u8", 0),
        ("pt.w", 8, "i32", 0),
        ("m", 16, "u64", 3),
    ]
    with pytest.raises(TypeError):
        glass.layout_from_ctypes(int)
    with pytest.raises(TypeError):
        glass.layout_from_dtype(np.dtype("<f8"))
    with pytest.raises(TypeError):
        glass.layout_from_dtype(np.dtype([("c", "<c16")]))


def test_errors_in_python_idiom():
    with pytest.raises(ValueError, match="session name"):
        glass.Producer("bad/name")
    with pytest.raises(LookupError):
        glass.Observer("nobody-here")
    class T(ctypes.Structure):
        _fields_ = [("v", ctypes.c_uint32)]
    p = glass.Producer("errs")
    try:
        t = p.create("one", T)
        with pytest.raises(FileExistsError):
            p.create("one", T)
        with pytest.raises(FileExistsError):
            glass.Producer("errs")
        with pytest.raises(ValueError):
            p.create("", T)
        p.destroy(t)
        with pytest.raises(LookupError):
            p.destroy(t)
    finally:
        p.shutdown()
    with pytest.raises(ValueError, match="shut down"):
        p.create("two", T)


def test_trading_example_two_processes():
    ex = ROOT / "examples" / "python" / "glass_trading.py"
    prod = subprocess.Popen([sys.executable, str(ex), "produce", "3"], stdout=subprocess.PIPE, text=True)
    try:
        assert prod.stdout.readline().strip() == "producing session trading-py"
        out = subprocess.run(
            [sys.executable, str(ex), "observe", "1"], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    finally:
        rest = prod.communicate(timeout=60)[0]
    assert prod.returncode == 0
    assert out.startswith("session trading-py pid %d alive (4 objects)" % prod.pid)
    assert " AAPL quote.bid_price" in out and " AAPL orders" in out
    assert "AMZN {'symbol': 'AMZN', 'quote.bid_price':" in out
    assert out.rstrip().endswith("producer alive")
    assert rest.strip().endswith("ticks")


class _Quad(ctypes.Structure):
    _fields_ = [("a", ctypes.c_uint64), ("b", ctypes.c_uint64), ("c", ctypes.c_uint64), ("d", ctypes.c_uint64)]


class _Tick(ctypes.Structure):
    _fields_ = [("n", ctypes.c_uint64), ("q_seq", ctypes.c_uint64), ("q", _Quad), ("note", ctypes.c_char * 8)]
    _glass_meta_ = {"n": {"atomicity": "atomic"}, "q": {"atomicity": "seqlock", "guard": "q_seq"}}


class _PlainTick(ctypes.Structure):
    _fields_ = [("n", ctypes.c_uint64), ("q_seq", ctypes.c_uint64), ("q", _Quad), ("note", ctypes.c_char * 8)]


def _check(peer, session, label, reads):
    return subprocess.Popen([peer, "check", session, label, str(reads)], stdout=subprocess.PIPE, text=True)


def _result(proc):
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    return {k: int(v) for k, v in (x.split("=") for x in out.split())}


def test_python_seqlock_and_atomic_writes_rust_observer(peer):
    with glass.Producer("pyseq") as p:
        t = p.create("tick", _Tick)
        f = {x[0]: x for x in glass.layout_from_ctypes(_Tick)[3]}
        assert "q_seq" not in f  # the sequence word is not a value
        assert (f["n"][4], f["q.a"][4], f["q.d"][4], f["q.a"][5], f["note"][4]) == (
            "atomic", "seqlock", "seqlock", 8, "none")
        # Single writes, exact values through the Rust observer.
        p.write(t, "n", 5)
        p.write(t, "q.b", 7)
        p.write(t, "note", b"hi")
        with p.seqlock(t, "q") as q:
            q.a, q.c = 11, 13
        assert t.q_seq == 4  # two seqlock writes, each odd then even
        out = subprocess.run([peer, "dump", "pyseq"], check=True, capture_output=True, text=True).stdout
        assert out.split() == ["tick", "n=5", "q.a=11", "q.b=7", "q.c=13", "q.d=0", 'note="hi"']
        with pytest.raises(RuntimeError):
            with p.seqlock(t, "q") as q:
                q.a = 99
                raise RuntimeError("abandoned")
        assert (t.q.a, t.q_seq) == (11, 4)  # nothing published
        with pytest.raises(LookupError):
            p.write(t, "nope", 1)
        with pytest.raises(LookupError):
            with p.seqlock(t, "note"):
                pass

        # Python writes nonstop while a Rust observer in another process
        # snapshots: q = (i, 2i, 3i, 4i) under the seqlock, n = i atomic.
        # Start from a consistent state (i = 5) so every value the observer
        # can see is one of the writes, and n only grows.
        i = 5
        with p.seqlock(t, "q") as q:
            q.a, q.b, q.c, q.d = i, 2 * i, 3 * i, 4 * i
        p.write(t, "n", i)
        proc = _check(peer, "pyseq", "tick", 300_000)
        while proc.poll() is None:
            i += 1
            with p.seqlock(t, "q") as q:
                q.a, q.b, q.c, q.d = i, 2 * i, 3 * i, 4 * i
            p.write(t, "n", i)
        r = _result(proc)
        assert r["mixed"] == 0, r
        assert r["consistent"] + r["torn"] == 300_000 and r["consistent"] > 0, r
        assert r["distinct"] >= 2, (r, i)  # writes landed while it read


def test_plain_python_writes_are_seen_mixed(peer):
    """The control: the same fields written plainly (no seqlock) are seen
    mixed by the same observer, so the test above can fail."""
    with glass.Producer("pyplain") as p:
        t = p.create("tick", _PlainTick)
        proc = _check(peer, "pyplain", "tick", 300_000)
        i = 0
        while proc.poll() is None:
            i += 1
            t.q.a, t.q.b, t.q.c, t.q.d = i, 2 * i, 3 * i, 4 * i
        r = _result(proc)
        assert r["mixed"] > 0, r


def test_bad_seqlock_declarations_are_refused():
    class NoGuard(ctypes.Structure):
        _fields_ = [("q", _Quad)]
        _glass_meta_ = {"q": {"atomicity": "seqlock", "guard": "missing"}}

    class WideAtomic(ctypes.Structure):
        _fields_ = [("q", _Quad)]
        _glass_meta_ = {"q": {"atomicity": "atomic"}}

    for cls in (NoGuard, WideAtomic):
        with pytest.raises(TypeError):
            glass.layout_from_ctypes(cls)
