"""Callbacks: changes made by several threads, delivered on memwatch's delivery thread.

Run: python examples/python/callback_example.py
"""

import mmap
import struct
import threading

import memwatch


def describe_thread(native_id):
    for t in threading.enumerate():
        if t.native_id == native_id:
            return t.name
    return "unknown" if native_id is None else f"tid {native_id}"


def on_change(event: memwatch.ChangeEvent) -> None:
    old = struct.unpack("<q", event.old_value)[0]
    new = struct.unpack("<q", event.new_value)[0]
    # This runs on memwatch's delivery thread, not on the writer's.
    where = "delivery thread" if threading.current_thread() is not threading.main_thread() else "main thread?!"
    print(f"[{where}] {event.variable_name}: {old} -> {new} "
          f"(written by {describe_thread(event.thread_id)})", flush=True)


# "protect" reports which thread wrote; "writewatch" (the default where the
# kernel has it) does not, but lets system calls write into watched memory.
with memwatch.MemoryWatcher(backend="protect") as watcher:
    # Each balance on pages of its own, so the writer thread is exact.
    balances = {name: mmap.mmap(-1, 8, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS) for name in ("alice", "bob")}
    for name, cell in balances.items():
        watcher.watch(cell, name)
    watcher.set_callback(on_change)

    def deposit(name: str, amount: int) -> None:
        cell = balances[name]
        cell[:] = struct.pack("<q", struct.unpack("<q", cell)[0] + amount)
        watcher.check_changes()  # wait until this change reached on_change

    for name, amount in (("alice", 100), ("bob", 40)):
        t = threading.Thread(target=deposit, args=(name, amount), name=f"teller-{name}")
        t.start()
        t.join()
    deposit("alice", -30)
