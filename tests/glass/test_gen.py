"""memglass-gen: C++ structs marked [[memglass::observe]] -> registration
header (libclang) -> a C++ producer -> the Rust observer in another process.
Env: MEMGLASS_LIBDIR (libmemwatch), MEMGLASS_PEER (glass_peer binary)."""

import os
import pathlib
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
GEN = ROOT / "tools" / "memglass-gen" / "memglass_gen.py"
sys.path.insert(0, str(GEN.parent))
import memglass_gen  # noqa: E402


def test_generated_fields_and_tags():
    text = memglass_gen.generate(str(HERE / "gen_sample.hpp"), [])
    assert "memglass_register_Order" in text
    assert "NotObserved" not in text and "Level(" not in text
    rows = [l.strip() for l in text.splitlines() if l.strip().startswith('{"')]
    assert rows == [
        '{"sent", static_cast<uint32_t>(offsetof(Order, sent)), 0, MEMGLASS_U64, MEMGLASS_ATOMIC, MEMGLASS_COUNTER, 0, 0, nullptr, "orders sent"},',
        '{"bid.price", static_cast<uint32_t>(offsetof(Order, bid.price)), 0, MEMGLASS_F64, MEMGLASS_PLAIN, MEMGLASS_GAUGE, 0, 0, nullptr, nullptr},',
        '{"bid.size", static_cast<uint32_t>(offsetof(Order, bid.size)), 0, MEMGLASS_I32, MEMGLASS_PLAIN, MEMGLASS_GAUGE, 0, 0, nullptr, nullptr},',
        '{"ask.price", static_cast<uint32_t>(offsetof(Order, ask.price)), 0, MEMGLASS_F64, MEMGLASS_PLAIN, MEMGLASS_GAUGE, 0, 0, nullptr, nullptr},',
        '{"ask.size", static_cast<uint32_t>(offsetof(Order, ask.size)), 0, MEMGLASS_I32, MEMGLASS_PLAIN, MEMGLASS_GAUGE, 0, 0, nullptr, nullptr},',
        '{"symbol", static_cast<uint32_t>(offsetof(Order, symbol)), 8, MEMGLASS_CHAR, MEMGLASS_PLAIN, MEMGLASS_GAUGE, 0, 0, nullptr, nullptr},',
        '{"history", static_cast<uint32_t>(offsetof(Order, history)), 3, MEMGLASS_I16, MEMGLASS_PLAIN, MEMGLASS_GAUGE, 0, 0, nullptr, nullptr},',
        '{"live", static_cast<uint32_t>(offsetof(Order, live)), 0, MEMGLASS_BOOL, MEMGLASS_PLAIN, MEMGLASS_GAUGE, 0, 0, nullptr, nullptr},',
    ]


def test_unmarked_or_unsupported_is_a_clear_error(tmp_path):
    h = tmp_path / "none.hpp"
    h.write_text("struct A { int x; };\n")
    with pytest.raises(memglass_gen.GenError, match="no struct marked"):
        memglass_gen.generate(str(h), [])
    h.write_text("struct [[memglass::observe]] B { int *p; };\n")
    with pytest.raises(memglass_gen.GenError, match="unsupported type"):
        memglass_gen.generate(str(h), [])


def test_cpp_producer_rust_observer(tmp_path):
    libdir, peer = os.environ["MEMGLASS_LIBDIR"], os.environ["MEMGLASS_PEER"]
    gen = tmp_path / "gen_sample_memglass.hpp"
    assert memglass_gen.main([str(HERE / "gen_sample.hpp"), "-o", str(gen)]) == 0
    exe = tmp_path / "gen_producer"
    subprocess.run(
        ["g++", "-std=c++17", "-Wall", "-Werror", "-Wno-attributes=memglass::", f"-I{tmp_path}", f"-I{HERE}",
         f"-I{ROOT / 'crates' / 'memwatch-capi' / 'include'}", str(HERE / "gen_producer.cpp"),
         f"-L{libdir}", "-lmemwatch", f"-Wl,-rpath,{libdir}", "-o", str(exe)],
        check=True,
    )
    prod = subprocess.Popen([str(exe), "gen"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert prod.stdout.readline().strip() == "ready"
        out = subprocess.run([peer, "dump", "gen"], check=True, capture_output=True, text=True).stdout
        assert out.strip() == (
            'ORD sent=9 bid.price=10.5 bid.size=300 ask.price=10.75 ask.size=-2 symbol="IBM" '
            "history=[1, -2, 3] live=true"
        )
    finally:
        prod.communicate("quit\n", timeout=10)
    assert prod.returncode == 0
