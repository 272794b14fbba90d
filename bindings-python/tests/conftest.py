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

#: Backends that detect changes on this machine ("writewatch" is not implemented yet).
DETECTING_BACKENDS: List[str] = ["protect", "poll"]

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=DETECTING_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once per detecting backend."""
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
