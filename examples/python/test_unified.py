"""The seeds' unified example: watch a bytearray, change one byte, get one event.

Run: python examples/python/test_unified.py
Prints: SUCCESS: Detected 1 change event(s)
"""

from memwatch import MemoryWatcher

events = []

watcher = MemoryWatcher()
data = bytearray(b"hello")
watcher.watch(data, "my_data")
watcher.set_callback(lambda evt: events.append(evt))

data[0] = 72  # <- detected ("hello" -> "Hello")

# check_changes() is synchronous: with a callback set it returns once every
# change made so far was delivered to the callback.
watcher.check_changes()
watcher.close()

for evt in events:
    print(f"{evt.variable_name} changed: {evt.old_value!r} -> {evt.new_value!r} at bytes {evt.changed_ranges}")

if len(events) == 1 and events[0].new_value == b"Hello":
    print(f"SUCCESS: Detected {len(events)} change event(s)")
else:
    print(f"FAILURE: expected 1 change event, got {len(events)}: {events}")
    raise SystemExit(1)
