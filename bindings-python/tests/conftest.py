"""Shared fixtures of the memwatch Python test-suite."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Iterator, List

import pytest

import memwatch

#: Every backend that detects changes ("auto" is one of these).
DETECTING_BACKENDS: List[str] = ["protect", "writewatch", "poll"]


def require_backend(name: str) -> None:
    """Skips (never passes) a test whose backend this machine cannot run, saying why."""
    try:
        memwatch.MemoryWatcher(backend=name).close()
    except memwatch.UnsupportedError as exc:
        pytest.skip(f"backend {name!r} unsupported here: {exc}")

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=DETECTING_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once per detecting backend."""
    require_backend(str(request.param))
    return str(request.param)


@pytest.fixture
def watcher(backend: str) -> Iterator[memwatch.MemoryWatcher]:
    """A watcher on each detecting backend, closed after the test."""
    w = memwatch.MemoryWatcher(backend=backend)
    try:
        yield w
    finally:
        w.close()


def run_python(code: str, timeout: float = 60.0, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh interpreter (same one as the tests) and returns the result."""
    env = dict(os.environ)
    env.pop("PYTHONFAULTHANDLER", None)
    if env_extra:
        env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
