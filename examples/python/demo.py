"""memwatch demo: watch a few variables and print every change.

Run: python examples/python/demo.py [--backend protect|writewatch|poll|auto]
Each line: name, the changed bytes old -> new, and the writing thread.
"""

import argparse
import mmap
import threading

import numpy as np

import memwatch


def own_pages(nbytes: int) -> mmap.mmap:
    """Memory on pages of its own: with the protect backend the writer thread
    of an event is then exactly the thread that wrote this variable (on the
    shared Python heap, another object on the same page may fault first)."""
    return mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


def thread_name(native_id):
    if native_id is None:
        return "? (this backend cannot tell)"
    for t in threading.enumerate():
        if t.native_id == native_id:
            return f"{t.name} (tid {native_id})"
    return f"tid {native_id}"


def show(event: memwatch.ChangeEvent) -> None:
    """Prints one change: variable, old -> new, writing thread."""
    thread = thread_name(event.thread_id)
    dtype = event.metadata.get("dtype") if isinstance(event.metadata, dict) else None
    if dtype is None:  # raw bytes: show the whole (small) value
        print(f"  {event.variable_name}: {event.old_value!r} -> {event.new_value!r}   thread: {thread}")
        return
    old = np.frombuffer(event.old_value, dtype=dtype)
    new = np.frombuffer(event.new_value, dtype=dtype)
    size = np.dtype(dtype).itemsize
    touched = sorted({(o + i) // size for o, n in event.changed_ranges for i in range(n)})
    for index in touched:
        print(f"  {event.variable_name}[{index}]: {old[index]} -> {new[index]}   thread: {thread}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", default="protect", choices=memwatch.BACKENDS)
    args = parser.parse_args()

    greeting = own_pages(11)
    greeting[:] = b"hello world"
    temperatures = np.frombuffer(own_pages(3 * 8), dtype=np.float64)
    temperatures[:] = [20.5, 21.0, 19.75]
    counters = np.frombuffer(own_pages(4 * 4), dtype=np.int32)

    with memwatch.MemoryWatcher(backend=args.backend) as watcher:
        print(f"memwatch {memwatch.__version__}, backend {watcher.backend}")
        watcher.watch(greeting)  # the names come from the variables
        watcher.watch(temperatures, metadata={"dtype": "float64"})
        watcher.watch(counters, metadata={"dtype": "int32"})
        watcher.set_callback(show)

        print("main thread writes greeting[0:5] = b'HELLO'")
        greeting[0:5] = b"HELLO"
        watcher.check_changes()

        print("worker thread sets temperatures[1] = 22.25")
        def sensor() -> None:
            temperatures[1] = 22.25
            watcher.check_changes()  # delivered while this thread is still alive

        worker = threading.Thread(target=sensor, name="sensor-worker")
        worker.start()
        worker.join()

        print("main thread sets counters[2] = 7")
        counters[2] = 7
        watcher.check_changes()

        print("main thread writes greeting[6] = ord('W')")
        greeting[6] = ord("W")
        watcher.check_changes()

        stats = watcher.get_stats()
        print(f"{stats['events']} events from {stats['regions']} regions, "
              f"{stats['callback_errors']} callback errors")
    print("final values:", greeting[:], temperatures.tolist(), counters.tolist())


if __name__ == "__main__":
    main()
