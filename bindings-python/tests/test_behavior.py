"""Runs every shared scenario in tests/behavior/*.json (read at test time).

The format is described in tests/behavior/README.md. Each scenario runs once
per backend it lists, on a fresh watcher and fresh page-aligned buffers.
"""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import re
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple, Union

import pytest

import memwatch

from conftest import REPO_ROOT, require_backend

BEHAVIOR_DIR = Path(os.environ.get("MEMWATCH_BEHAVIOR_DIR", REPO_ROOT / "tests" / "behavior"))
PAGE = mmap.PAGESIZE
UNKNOWN_REGION_ID = 4_000_000_000


def _scenario_files() -> List[Path]:
    return sorted(BEHAVIOR_DIR.glob("*.json"))


def _cases() -> List[Any]:
    cases = []
    for path in _scenario_files():
        scenario = json.loads(path.read_text())
        for backend in scenario["backends"]:
            cases.append(pytest.param(path, backend, id=f"{path.stem}[{backend}]"))
    return cases


def size(spec: Union[int, str]) -> int:
    """An integer, or "Np", "Np+M", "Np-M" (N OS pages plus/minus M bytes)."""
    if isinstance(spec, int):
        return spec
    m = re.fullmatch(r"\s*(\d+)p\s*(?:([+-])\s*(\d+))?\s*", spec)
    if not m:
        raise ValueError(f"bad size {spec!r}")
    n = int(m.group(1)) * PAGE
    if m.group(2):
        n = n + int(m.group(3)) if m.group(2) == "+" else n - int(m.group(3))
    return n


def value(spec: Union[str, Dict[str, Any]]) -> bytes:
    """A hex string, or {len, fill, patches: [[offset, hex], ...]}."""
    if isinstance(spec, str):
        return bytes.fromhex(spec)
    out = bytearray(bytes.fromhex(spec.get("fill", "00")) * size(spec["len"]))
    for offset, hexbytes in spec.get("patches", []):
        patch = bytes.fromhex(hexbytes)
        start = size(offset)
        out[start : start + len(patch)] = patch
    return bytes(out)


def test_scenarios_are_present() -> None:
    """The suite must not pass by finding nothing to run."""
    files = _scenario_files()
    assert len(files) >= 12, f"expected the shared scenarios in {BEHAVIOR_DIR}, found {files}"


@pytest.mark.parametrize("path,backend", _cases())
def test_scenario(path: Path, backend: str) -> None:
    require_backend(backend)
    scenario = json.loads(path.read_text())
    name = scenario["name"]
    options = {k: (size(v) if k in ("max_value_bytes", "preview_bytes") else v)
               for k, v in scenario.get("options", {}).items()}
    buffers: Dict[str, mmap.mmap] = {}
    for b in scenario["buffers"]:
        n = size(b["size"])
        m = mmap.mmap(-1, n)  # anonymous mappings are page-aligned
        m.write(bytes.fromhex(b.get("fill", "00")) * n)
        buffers[b["name"]] = m
    views: List[memoryview] = []
    delivered: List[memwatch.ChangeEvent] = []
    watcher = memwatch.MemoryWatcher(backend=backend, **options)
    try:
        ids: Dict[str, int] = {}
        for r in scenario["regions"]:
            start = size(r["offset"])
            view = memoryview(buffers[r["buffer"]])[start : start + size(r["length"])]
            views.append(view)
            ids[r["key"]] = watcher.watch(view, r["name"], metadata=r.get("metadata"))
        by_id = {v: k for k, v in ids.items()}

        for index, step in enumerate(scenario["steps"]):
            where = f"scenario {name!r}, backend {backend!r}, step {index} ({next(iter(step))})"
            if "write" in step:
                w = step["write"]
                buf = buffers[w["buffer"]]
                start = size(w["offset"])
                data = bytes.fromhex(w["hex"]) if "hex" in w else bytes.fromhex(w["byte"]) * size(w["len"])
                buf[start : start + len(data)] = data  # a memcpy by this thread
            elif "check" in step:
                _compare_all(where, step["check"], watcher.check_changes(), by_id)
            elif "unwatch" in step:
                u = step["unwatch"]
                got = watcher.unwatch(ids[u["region"]])
                assert got is u["expect"], f"{where}: unwatch({u['region']}) expected {u['expect']}, got {got}"
            elif "constants" in step:
                want = step["constants"]["exit_flush_timeout_ms"]
                got = memwatch.EXIT_FLUSH_TIMEOUT_MS
                assert got == want, f"{where}: EXIT_FLUSH_TIMEOUT_MS is {got}, expected {want}"
            elif "unwatch_unknown" in step:
                got = watcher.unwatch(UNKNOWN_REGION_ID)
                assert got is step["unwatch_unknown"]["expect"], f"{where}: unwatch(unknown) returned {got}"
            elif "watch_error" in step:
                e = step["watch_error"]
                if e.get("null"):
                    # A real null address: a ctypes array at 0 (never dereferenced).
                    target: Any = memoryview((ctypes.c_char * size(e["length"])).from_address(0)).cast("B")
                else:
                    start = size(e["offset"])
                    target = memoryview(buffers[e["buffer"]])[start : start + size(e["length"])]
                    views.append(target)
                _expect_error(where, e["expect"], lambda: watcher.watch(target, "bad"))
            elif "check_error" in step:
                _expect_error(where, step["check_error"]["expect"], watcher.check_changes)
            elif "close" in step:
                watcher.close()
            elif "stats" in step:
                stats = watcher.get_stats()
                for field in step["stats"].get("fields", []):
                    assert field in stats, f"{where}: stats field {field!r} missing from {stats}"
                for field, want in step["stats"].get("equal", {}).items():
                    assert stats.get(field) == want, f"{where}: stats[{field!r}] expected {want!r}, got {stats}"
            elif "set_callback" in step:
                watcher.set_callback(delivered.append if step["set_callback"] else None)
            elif "check_callback" in step:
                returned = watcher.check_changes()
                assert returned == [], f"{where}: with a callback, check_changes returned {returned}"
                events, delivered[:] = list(delivered), []
                _compare_all(where, step["check_callback"], events, by_id)
            else:
                raise AssertionError(f"{where}: unknown step kind {step}")
    finally:
        watcher.close()
        for v in views:
            v.release()
        for m in buffers.values():
            m.close()


# The documented exception class of each engine error kind.
ERROR_KINDS = {
    memwatch.InvalidArgumentError: "invalid_argument",
    memwatch.UnmappedError: "unmapped",
    memwatch.ReadOnlyError: "read_only",
    memwatch.OverlapError: "overlap",
    memwatch.UnsupportedError: "unsupported",
    memwatch.WatcherClosedError: "closed",
    memwatch.MemwatchOSError: "os",
}


def _expect_error(where: str, kind: str, call: Callable[[], Any]) -> None:
    try:
        got = call()
    except memwatch.MemwatchError as exc:
        assert ERROR_KINDS.get(type(exc)) == kind, f"{where}: expected a {kind} error, got {type(exc).__name__}: {exc}"
    else:
        raise AssertionError(f"{where}: expected a {kind} error, got {got!r}")


def _compare_all(where: str, expected: List[Dict[str, Any]], events: List[memwatch.ChangeEvent],
                 by_id: Dict[int, str]) -> None:
    got_keys = [by_id.get(e.region_id, f"<unknown region {e.region_id}>") for e in events]
    assert len(events) == len(expected), (
        f"{where}: expected {len(expected)} event(s) for {[x['region'] for x in expected]}, "
        f"got {len(events)} for {got_keys}: {events}"
    )
    assert len(set(got_keys)) == len(got_keys), f"{where}: two events for one region: {events}"
    actual = dict(zip(got_keys, events))
    for exp in expected:
        key = exp["region"]
        assert key in actual, f"{where}: no event for region {key!r}; got {got_keys}"
        _compare(where, key, exp, actual[key])


def _compare(where: str, key: str, exp: Dict[str, Any], event: memwatch.ChangeEvent) -> None:
    def check(field: str, want: Any, got: Any) -> None:
        assert got == want, f"{where}, region {key!r}, field {field}:\n  expected {want!r}\n  actual   {got!r}"

    if "variable_name" in exp:
        check("variable_name", exp["variable_name"], event.variable_name)
    if "how_big" in exp:
        check("how_big", size(exp["how_big"]), event.how_big)
    if "coalesced" in exp:
        check("coalesced", exp["coalesced"], event.coalesced)
    if "changed_ranges" in exp:
        want: List[Tuple[int, int]] = [(size(o), size(n)) for o, n in exp["changed_ranges"]]
        check("changed_ranges", want, event.changed_ranges)
    for field in ("old_value", "new_value", "old_preview", "new_preview"):
        if field in exp:
            spec = exp[field]
            check(field, None if spec is None else value(spec), getattr(event, field))
    if "metadata" in exp:
        check("metadata", exp["metadata"], event.metadata)
