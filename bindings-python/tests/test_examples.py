"""The examples in examples/python run and print what they promise."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, require_backend

EXAMPLES = REPO_ROOT / "examples" / "python"


def run_example(name: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    return result.stdout


def test_unified_example_prints_success() -> None:
    out = run_example("test_unified.py")
    assert out.splitlines() == [
        "my_data changed: b'hello' -> b'Hello' at bytes [(0, 1)]",
        "SUCCESS: Detected 1 change event(s)",
    ]


def test_numpy_example() -> None:
    out = run_example("numpy_example.py")
    assert out.splitlines() == [
        "weights[1, 2]: 0.0 -> 0.5",
        "weights[2, 0]: 0.0 -> 1.0",
        "weights[2, 1]: 0.0 -> 1.0",
        "weights[2, 2]: 0.0 -> 1.0",
        "weights[2, 3]: 0.0 -> 1.0",
    ]


def test_callback_example_names_the_writing_threads() -> None:
    out = run_example("callback_example.py")
    assert out.splitlines() == [
        "[delivery thread] alice: 0 -> 100 (written by teller-alice)",
        "[delivery thread] bob: 0 -> 40 (written by teller-bob)",
        "[delivery thread] alice: 100 -> 70 (written by MainThread)",
    ]


@pytest.mark.parametrize("backend", ["protect", "writewatch", "poll"])
def test_demo(backend: str) -> None:
    require_backend(backend)
    lines = run_example("demo.py", "--backend", backend).splitlines()
    assert lines[0].endswith(f"backend {backend}")
    changes = [line.split("   thread: ") for line in lines if line.startswith("  ")]
    assert [c[0].strip() for c in changes] == [
        "greeting: b'hello world' -> b'HELLO world'",
        "temperatures[1]: 21.0 -> 22.25",
        "counters[2]: 0 -> 7",
        "greeting: b'HELLO world' -> b'HELLO World'",
    ]
    threads = [c[1].split(" (")[0] for c in changes]
    if backend == "protect":
        assert threads == ["MainThread", "sensor-worker", "MainThread", "MainThread"]
    else:
        assert threads == ["?"] * 4
    assert lines[-2] == "4 events from 3 regions, 0 callback errors"


def test_benchmark_script_runs_and_prints_its_table() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "python" / "bench_write_loop.py"),
         "--writes", "20000", "--repeat", "1", "--watchpoints-writes", "200"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    names = [row.split("|")[1].strip() for row in rows[1:]]
    assert names == [
        "unwatched bytearray", "memwatch protect", "memwatch writewatch", "memwatch poll", "memwatch auto",
        "memwatch protect + callback", "memwatch writewatch + callback", "watchpoints (PyPI)",
    ]
    assert rows[1].split("|")[3].strip() == "1.00x"


def _readme_python_blocks() -> list:
    text = (REPO_ROOT / "bindings-python" / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_examples_run() -> None:
    blocks = _readme_python_blocks()
    assert len(blocks) == 9
    import memwatch.store

    for name in ("demo-store", "memwatch-values"):  # left over by an interrupted run
        memwatch.store.unlink(name, missing_ok=True)
    outputs = []
    for code in blocks:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, (code, result.stderr)
        outputs.append(result.stdout)
    assert outputs[0] == "data b'hello' -> b'Hello' [(0, 1)]\n"
    line = outputs[1].strip()
    assert line.startswith("counter: 0000000000000000 -> 0100000000000000 (thread ")
    tid, main = re.search(r"thread (\d+), main is (\d+)", line).groups()
    assert tid == main and line.endswith("{'unit': 'requests'})")
    # all(level) and a user-written adapter: the outputs their comments show
    assert outputs[2] == "['scratch', 'weights']\n['weights']\n"
    assert outputs[3] == "data b'abc' -> b'Abc'\n"
    # memwatch.store: the output the README shows after the block
    text = (REPO_ROOT / "bindings-python" / "README.md").read_text()
    after = text[text.index(blocks[4]) + len(blocks[4]) :]
    assert after.startswith("```\n\nprints\n\n```\n")
    assert outputs[4] == after[len("```\n\nprints\n\n```\n") :].split("```")[0]
    assert outputs[4] == "b'\\x00\\x01\\x02\\x03' None\nb'sec'\nb'second'\n2 1\n"
    assert outputs[5] == "None memwatch/2/1/0 memwatch/2/1/1\nb'\\x00\\x00\\x00\\x00' b'\\xff\\xff\\xff\\xff'\n"
    # record_to: the row read back with the standard sqlite3 module
    assert outputs[6] == "1 0\n[('data', b'\\x00\\x00\\x00\\x00', b'\\x01\\x00\\x00\\x00')]\n"
    # Writer location: the writing statement's function and line (block line 7).
    assert outputs[7] == "<module> 7 True\n"
    # memwatch.glass: producer and observer (the observer normally in another process)
    assert outputs[8] == (
        "1.5 {'bid': 1.5, 'ask': 2.5, 'symbol': 'AAPL'}\n[('field', 'bid', 1.5, 2.0)]\n"
    )


def test_package_docstring_example() -> None:
    import doctest

    import memwatch

    failures, tried = doctest.testmod(memwatch, verbose=False)
    assert tried >= 4 and failures == 0
    import memwatch.adapters

    failures, tried = doctest.testmod(memwatch.adapters, verbose=False)
    assert tried == 5 and failures == 0
