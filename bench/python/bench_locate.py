"""Benchmark: what locate_writers costs a Python program (protect backend).

    python bench/python/bench_locate.py [--writes N] [--pages P] [--repeat R]

Two tables (Markdown), best of R interleaved rounds, CPU time of the writing
thread (it includes the signal handler and the kernel's fault work):

- steady state: the same write loop as bench_write_loop.py over a 4 KiB
  buffer (an mmap page), unwatched, watched, and watched with locate_writers (the page
  faults once per writable window; the window's other writes run at full
  speed). Target: locate on <= 1.1x unwatched.
- first write: one write to each of P fresh pages (each one a fault),
  unwatched (pages already touched), watched, and watched with
  locate_writers at stack_depth 1 and 8 (each fault also walks the native
  stack and copies up to stack_depth Python frames: here the bench's own
  5-frame Python stack), per write; events are drained outside the timing.
Every watched round checks that its events arrived (and, with
locate_writers, that they name this file), so no row looks fast by missing
writes.
"""

from __future__ import annotations

import argparse
import mmap
import platform
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple

import memwatch

PAGE = memwatch.page_size()


def write_loop(buf: mmap.mmap, writes: int, mask: int, base: int) -> None:
    """One byte store per iteration; every pass changes every byte (and each
    round, with its own `base`, starts from values the last one did not
    leave)."""
    shift = mask.bit_length()
    for i in range(writes):
        buf[i & mask] = (base + (i >> shift)) & 0xFF


def first_writes(buf: mmap.mmap, pages: int, value: int) -> None:
    """One write to each page."""
    for i in range(pages):
        buf[i * PAGE] = value


def cpu_ns(run: Callable[[], None]) -> int:
    t0 = time.thread_time_ns()
    run()
    return time.thread_time_ns() - t0


# Rows: name -> None (unwatched) or (locate_writers, stack_depth).
ROWS: Dict[str, Optional[Tuple[bool, int]]] = {
    "unwatched": None,
    "watched": (False, 8),
    "watched + locate_writers, stack_depth=1": (True, 1),
    "watched + locate_writers, stack_depth=8": (True, 8),
}


def watcher(row: Optional[Tuple[bool, int]]) -> Optional[memwatch.MemoryWatcher]:
    if row is None:
        return None
    return memwatch.MemoryWatcher(backend="protect", locate_writers=row[0], stack_depth=row[1])


def check_located(events: List[memwatch.ChangeEvent], locate: bool, every_round: bool = True) -> None:
    """The writes were seen; with locate, the located ones name this file
    (and, with every_round, at least one is located). A page written
    nonstop goes hot after a few windows (the engine leaves it writable and
    diffs it: no fault, no writer), so steady-state rounds after the first
    may carry no location."""
    assert events, "the watcher saw the writes"
    if locate:
        located = [e.where["file"] for e in events if e.where["stack"]]
        assert all(f == __file__ for f in located), f"located elsewhere: {located[:3]}"
        assert located or not every_round, "a write located in this file"


def steady(writes: int, repeat: int) -> Dict[str, float]:
    rows = ROWS
    # A page of its own per row (bytearrays of different watchers could
    # share a page, and then one watcher's faults would hide the other's).
    bufs = {name: mmap.mmap(-1, 4096) for name in rows}
    ws = {name: watcher(row) for name, row in rows.items()}
    for name, w in ws.items():
        if w is not None:
            w.watch(bufs[name], name)
    best = {name: float("inf") for name in rows}
    for r in range(repeat):
        for name in rows:
            ns = cpu_ns(lambda: write_loop(bufs[name], writes, 4095, 1 + 7 * r))
            best[name] = min(best[name], ns / writes)
            w = ws[name]
            if w is not None:
                check_located(w.check_changes(), bool(rows[name] and rows[name][0]), r == 0)
    for w in ws.values():
        if w is not None:
            w.close()
    return best


def first_write(pages: int, repeat: int) -> Dict[str, float]:
    rows = ROWS
    best = {name: float("inf") for name in rows}
    for r in range(repeat):
        # One watcher at a time: the Python frames captured per fault follow
        # the deepest live watcher's stack_depth.
        for name, row in rows.items():
            buf = mmap.mmap(-1, pages * PAGE)
            first_writes(buf, pages, 1)  # every page resident before timing
            w = watcher(row)
            if w is not None:
                w.watch(buf, name)
            ns = cpu_ns(lambda: first_writes(buf, pages, 2 + r % 200))
            best[name] = min(best[name], ns / pages)
            if w is not None:
                check_located(w.check_changes(), bool(row and row[0]))
                w.close()
            buf.close()
    return best


def table(title: str, best: Dict[str, float]) -> None:
    base = best["unwatched"]
    print(f"\n{title}\n")
    print("| row | ns per write (CPU) | vs unwatched |")
    print("|---|---:|---:|")
    for name, ns in best.items():
        print(f"| {name} | {ns:,.1f} | {ns / base:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=1_000_000, help="writes per steady-state loop")
    parser.add_argument("--pages", type=int, default=2000, help="fresh pages per first-write round")
    parser.add_argument("--repeat", type=int, default=7, help="rounds (best kept)")
    args = parser.parse_args()
    with memwatch.MemoryWatcher(locate_writers=True) as w:
        frames = w.get_stats()["python_frames"]
    print(f"Python {platform.python_version()} ({sys.platform}), python_frames: {frames}")
    table(f"Steady state: {args.writes:,} writes to a 4 KiB buffer", steady(args.writes, args.repeat))
    table(f"First write: one write to each of {args.pages:,} protected pages", first_write(args.pages, args.repeat))


if __name__ == "__main__":
    main()
