"""Forked children exit normally (sys.exit runs atexit, which closes
inherited watchers), multiprocessing with the fork start method works over a
watched buffer, and memory unmapped or replaced while watched never has its
protection changed by memwatch.

Everything forks or unmaps, so it runs in a fresh interpreter.
"""

from __future__ import annotations

import pytest

from conftest import require_backend, run_python

BACKENDS = ["protect", "writewatch", "poll"]


@pytest.mark.parametrize("with_callback", [False, True])
@pytest.mark.parametrize("backend", BACKENDS)
def test_forked_child_writes_and_exits_0_within_1s(backend: str, with_callback: bool) -> None:
    """The child writes the inherited watched buffer (its own copy), calls
    sys.exit(0) (atexit closes the watcher) and is gone within 1 s; calls on
    the inherited watcher fail with UnsupportedError; the parent sees only its
    own write."""
    require_backend(backend)
    result = run_python(
        f"""
        import mmap, os, sys, time, memwatch
        buf = mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        w = memwatch.MemoryWatcher(backend={backend!r})
        seen = []
        if {with_callback!r}:
            w.set_callback(seen.append)
        w.watch(buf, "buf")
        buf[1] = 1
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            buf[0:64] = b"\\xc0" * 64
            if buf[0:64] != b"\\xc0" * 64:
                os._exit(5)
            try:
                w.check_changes()
                os._exit(6)
            except memwatch.UnsupportedError as e:
                if "fork" not in str(e):
                    os._exit(7)
            sys.exit(0)
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() - start > 1.0:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                print("child still running after 1 s")
                sys.exit(1)
            time.sleep(0.002)
        assert os.waitstatus_to_exitcode(status) == 0, status
        events = w.check_changes()
        events = seen if {with_callback!r} else events
        assert len(events) == 1, events
        assert events[0].changed_ranges == [(1, 1)], events[0]
        assert events[0].new_value[:2] == b"\\x00\\x01"
        assert buf[0:2] == b"\\x00\\x01"
        w.close()
        print("OK")
        """
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "OK"


@pytest.mark.parametrize("backend", BACKENDS)
def test_multiprocessing_fork_pool_over_a_watched_buffer_joins(backend: str) -> None:
    """Pool(4) with the fork start method maps over a watched buffer (each
    worker writes its copy) and joins; the parent's watcher still reports
    exactly its own write afterwards."""
    require_backend(backend)
    result = run_python(
        f"""
        import multiprocessing as mp, memwatch
        buf = bytearray(4096)
        w = memwatch.MemoryWatcher(backend={backend!r})
        w.set_callback(lambda e: None)
        w.watch(buf, "shared")

        def work(i):
            buf[i] = i          # the worker's own copy
            return buf[i]

        if __name__ == "__main__":
            ctx = mp.get_context("fork")
            with ctx.Pool(4) as pool:
                results = pool.map(work, range(1, 41))
            pool.join()
            assert results == list(range(1, 41)), results  # each worker wrote its copy
            w.set_callback(None)
            buf[100] = 7
            [e] = w.check_changes()
            assert e.changed_ranges == [(100, 1)], e
            assert bytes(buf[1:41]) == bytes(40), "the workers' writes stayed theirs"
            w.close()
            print("OK")
        """,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "OK"


def test_300_forks_exit_via_sys_exit_while_the_parent_writes() -> None:
    """One watcher per backend, each with a callback, over buffers a thread
    of the parent writes nonstop (the worker and delivery threads busy, the
    engine lock often held) while the main thread forks 300 children that
    each call sys.exit(0) (atexit closes all three inherited watchers): every
    one exits 0 within 1 s (a hung child fails the test through the
    interpreter's timeout). All backends at once keep it to 300 forks."""
    for backend in BACKENDS:
        require_backend(backend)
    result = run_python(
        f"""
        import mmap, os, sys, threading, time, memwatch
        bufs, watchers = [], []
        for backend in {BACKENDS!r}:
            buf = mmap.mmap(-1, 4 * mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            w = memwatch.MemoryWatcher(backend=backend)
            w.set_callback(lambda e: None)
            w.watch(buf, "busy")
            bufs.append(buf)
            watchers.append(w)
        stop = False
        def writer():
            i = 0
            while not stop:
                bufs[i % 3][(i * 4099) % len(bufs[0])] = i & 255
                i += 1
        sys.setswitchinterval(0.0002)  # the forking thread gets the GIL back quickly
        t = threading.Thread(target=writer)
        t.start()
        slow, bad = 0, []
        for n in range(300):
            start = time.monotonic()
            pid = os.fork()
            if pid == 0:
                bufs[n % 3][0] = 0xEE
                sys.exit(0)
            # A blocking wait, the GIL released meanwhile.
            _, status = os.waitpid(pid, 0)
            if time.monotonic() - start >= 1.0:
                slow += 1
            if os.waitstatus_to_exitcode(status) != 0:
                bad.append(status)
        stop = True
        t.join()
        for w in watchers:
            w.close()
        print(slow, bad)
        """,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "0 []"


@pytest.mark.parametrize("in_window", [False, True])
@pytest.mark.parametrize("how", ["munmap", "PROT_NONE", "PROT_READ"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_unmapped_or_replaced_memory_keeps_its_protection(backend: str, how: str, in_window: bool) -> None:
    """The watched page is unmapped or replaced (MAP_FIXED) while watched,
    before or during its writable window: the permissions /proc/self/maps
    shows for it never change through check_changes, stats, unwatch and
    close; the region is gone (counted), except that writewatch and poll read
    a readable replacement as the region's memory."""
    require_backend(backend)
    result = run_python(
        f"""
        import ctypes, mmap, memwatch
        PS = mmap.PAGESIZE
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]

        def perms(addr):
            for line in open("/proc/self/maps"):
                rng, p = line.split()[:2]
                s, e = (int(x, 16) for x in rng.split("-"))
                if s <= addr < e:
                    return p
            return ""

        raw = libc.mmap(None, 3 * PS, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
        doomed = (ctypes.c_char * 64).from_address(raw + PS)
        neighbour = (ctypes.c_char * 16).from_address(raw)
        w = memwatch.MemoryWatcher(backend={backend!r}, writable_window_ms=30000, poll_interval_ms=30000)
        rid = w.watch(memoryview(doomed).cast("B"), "doomed")
        keep = w.watch(memoryview(neighbour).cast("B"), "neighbour")
        gone0 = w.get_stats()["gone_regions"]
        doomed[1] = b"\\x07"
        if not {in_window!r}:
            assert len(w.check_changes()) == 1
        how = {how!r}
        if how == "munmap":
            assert libc.munmap(raw + PS, PS) == 0
            want = ""
        else:
            prot = 0 if how == "PROT_NONE" else mmap.PROT_READ  # PROT_NONE is 0
            fixed = 0x10  # MAP_FIXED
            assert libc.mmap(raw + PS, PS, prot, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | fixed, -1, 0) == raw + PS
            want = "---p" if how == "PROT_NONE" else "r--p"
        assert perms(raw + PS) == want
        dropped = {backend!r} == "protect" or how != "PROT_READ"
        events = w.check_changes()
        assert perms(raw + PS) == want, "after check_changes"
        assert all(e.region_id == rid for e in events), events
        s = w.get_stats()
        assert perms(raw + PS) == want, "after get_stats"
        assert (s["gone_regions"] - gone0, s["regions"]) == ((1, 1) if dropped else (0, 2)), s
        assert w.unwatch(rid) == (not dropped)
        assert perms(raw + PS) == want, "after unwatch"
        neighbour[2] = b"\\x09"
        [e] = w.check_changes()
        assert e.region_id == keep and e.new_value[2] == 9, e
        w.close()
        assert perms(raw + PS) == want, "after close"
        assert perms(raw) == "rw-p"
        print("OK")
        """
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "OK"
