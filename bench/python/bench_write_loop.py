"""Benchmark: the same Python write loop over a bytearray, unwatched and watched.

    python bench/python/bench_write_loop.py [--writes N] [--repeat R] [--size BYTES]

Rows: unwatched; memwatch with each backend (steady state: the watch is set
up and warmed before timing; events wait for check_changes), and with a
callback receiving every event while the loop runs; the `watchpoints` package from PyPI (if
installed: pip install watchpoints), which traces every line with
sys.settrace. Prints a Markdown table: best-of-R nanoseconds per write
(CPU time of the writing thread, and wall time) and the ratios to the
unwatched loop. Every watched row also checks that the
watcher saw the final value, so a backend cannot look fast by missing writes.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from typing import Callable, List, Optional, Tuple

import memwatch


def write_loop(buf: bytearray, writes: int, mask: int) -> None:
    """The loop every row times: one byte store per iteration. Pass p over
    the buffer stores p & 0xFF everywhere, so every pass really changes
    every byte and the watchers have real changes to report."""
    shift = mask.bit_length()
    for i in range(writes):
        buf[i & mask] = (i >> shift) & 0xFF


def time_ns_per_write(run: Callable[[], None], writes: int) -> Tuple[float, float]:
    """(CPU ns of this thread, wall ns) per write. The thread's CPU time
    includes the fault handling done on it (signal handler, kernel) but not
    time spent descheduled, so it is stable on a busy machine."""
    cpu0, wall0 = time.thread_time_ns(), time.perf_counter_ns()
    run()
    cpu1, wall1 = time.thread_time_ns(), time.perf_counter_ns()
    return (cpu1 - cpu0) / writes, (wall1 - wall0) / writes


def best_ns_per_write(run: Callable[[], None], writes: int, repeat: int) -> Tuple[float, float]:
    samples = [time_ns_per_write(run, writes) for _ in range(repeat)]
    return min(c for c, _ in samples), min(w for _, w in samples)


class Variant:
    """One row: a buffer, maybe watched, timed in interleaved rounds."""

    def __init__(self, name: str, size: int, backend: Optional[str], callback: bool = False) -> None:
        self.name = name
        self.buf = bytearray(size)
        self.watcher: Optional[memwatch.MemoryWatcher] = None
        self.note = ""
        self.best = float("inf")
        self.best_wall = float("inf")
        if backend is not None:
            try:
                self.watcher = memwatch.MemoryWatcher(backend=backend)
            except memwatch.UnsupportedError as exc:
                self.note = f"unsupported: {exc}"
                self.buf = bytearray(0)
                return
            self.watcher.watch(self.buf, name)
            if callback:
                self.delivered: List[memwatch.ChangeEvent] = []
                self.watcher.set_callback(self.delivered.append)

    def run(self, writes: int) -> None:
        if self.buf:
            cpu, wall = time_ns_per_write(lambda: write_loop(self.buf, writes, len(self.buf) - 1), writes)
            self.best = min(self.best, cpu)
            self.best_wall = min(self.best_wall, wall)

    def finish(self) -> None:
        if self.watcher is None:
            return
        with self.watcher as w:
            w.check_changes()
            self.buf[0] ^= 0xFF  # the final check must find this
            events = w.check_changes()
            if w.callback is not None:
                last = self.delivered[-1] if self.delivered else None
                assert last is not None and last.new_value == bytes(self.buf), f"{self.name} missed the final value"
            else:
                assert events and events[-1].new_value == bytes(self.buf), f"{self.name} missed the final value"
            stats = w.get_stats()
            self.note = f"backend {stats['backend']}, {stats['events']} events"


def bench_watchpoints(size: int, writes: int, repeat: int) -> Tuple[Optional[Tuple[float, float]], str]:
    try:
        from watchpoints import unwatch, watch
    except ImportError:
        return None, "not installed (pip install watchpoints)"
    buf = bytearray(size)
    changes: List[int] = []
    watch(buf, callback=lambda frame, elem, exec_info: changes.append(1))
    try:
        ns = best_ns_per_write(lambda: write_loop(buf, writes, size - 1), writes, repeat)
    finally:
        unwatch(buf)
    return ns, f"{len(changes)} callbacks"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=1_000_000, help="writes per timed loop")
    parser.add_argument("--watchpoints-writes", type=int, default=20_000,
                        help="writes per timed loop for watchpoints (it is very slow)")
    parser.add_argument("--repeat", type=int, default=9, help="timed rounds (best per row is kept)")
    parser.add_argument("--size", type=int, default=4096, help="bytearray size (a power of two)")
    args = parser.parse_args()
    assert args.size & (args.size - 1) == 0, "--size must be a power of two"

    # All variants live at once and are timed in interleaved rounds (best
    # kept), so load on the machine hits every row alike.
    variants = [Variant("unwatched bytearray", args.size, None)]
    variants += [Variant(f"memwatch {b}", args.size, b) for b in ("protect", "writewatch", "poll", "auto")]
    variants += [Variant(f"memwatch {b} + callback", args.size, b, callback=True) for b in ("protect", "writewatch")]
    for v in variants:  # warm-up: first faults, hot-page adaptation
        v.run(args.writes)
    for v in variants:
        v.best = v.best_wall = float("inf")
    for _ in range(args.repeat):
        for v in variants:
            v.run(args.writes)
    for v in variants:
        v.finish()
    rows: List[Tuple[str, Optional[Tuple[float, float]], str]] = [
        (v.name, (v.best, v.best_wall) if v.best != float("inf") else None, v.note) for v in variants
    ]
    base = rows[0][1]
    assert base is not None
    wp, note = bench_watchpoints(args.size, args.watchpoints_writes, args.repeat)
    rows.append(("watchpoints (PyPI)", wp, note))

    print(f"Python {platform.python_version()} on {platform.machine()}, {platform.system()} "
          f"{platform.release()}; bytearray({args.size}), loop `buf[i & mask] = (i >> shift) & 0xFF`, "
          f"best of {args.repeat}")
    print()
    print("| variant | CPU ns/write | vs unwatched | wall ns/write | vs unwatched | notes |")
    print("|---|---:|---:|---:|---:|---|")
    for name, ns, note in rows:
        if ns is None:
            print(f"| {name} | - | - | - | - | {note} |")
        else:
            print(f"| {name} | {ns[0]:.1f} | {ns[0] / base[0]:.2f}x | {ns[1]:.1f} | {ns[1] / base[1]:.2f}x | {note} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
