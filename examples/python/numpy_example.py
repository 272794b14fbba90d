"""Watch a numpy array and turn byte-level changes back into array elements.

Run: python examples/python/numpy_example.py
"""

import numpy as np

import memwatch

weights = np.zeros((3, 4), dtype=np.float32)

with memwatch.MemoryWatcher() as watcher:
    watcher.watch(weights, metadata={"dtype": str(weights.dtype), "shape": list(weights.shape)})

    weights[1, 2] = 0.5
    weights[2, :] += 1.0

    # Writes close together coalesce into one event; the engine may also
    # report them in several events (one per writable window). Either way
    # every changed element shows up exactly once, oldest change first.
    for event in watcher.check_changes():
        meta = event.metadata
        itemsize = np.dtype(meta["dtype"]).itemsize
        old = np.frombuffer(event.old_value, dtype=meta["dtype"]).reshape(meta["shape"])
        new = np.frombuffer(event.new_value, dtype=meta["dtype"]).reshape(meta["shape"])
        touched = sorted({(offset + i) // itemsize for offset, length in event.changed_ranges for i in range(length)})
        for flat in touched:
            index = np.unravel_index(flat, meta["shape"])
            print(f"{event.variable_name}[{', '.join(map(str, index))}]: {old[index]} -> {new[index]}")
