package memwatch_test

import (
	"fmt"
	"os"

	memwatch "github.com/memwatch/memwatch/bindings-go"
)

// Watch a buffer, change one byte, and read the change back.
func Example() {
	buf, err := memwatch.Alloc(16) // page-aligned, outside the Go heap
	if err != nil {
		panic(err)
	}
	defer memwatch.Free(buf) // deferred calls run last-in first-out: after w.Close

	w, err := memwatch.NewWatcher(memwatch.WithBackend(memwatch.BackendProtect))
	if err != nil {
		panic(err)
	}
	defer w.Close()

	if _, err := w.Watch(buf, "buffer", memwatch.WithMetadata("unit=bytes")); err != nil {
		panic(err)
	}
	buf[3] = 42

	events, err := w.CheckChanges()
	if err != nil {
		panic(err)
	}
	for _, e := range events {
		fmt.Printf("%s (%s) changed at %v: %x -> %x\n",
			e.VariableName, e.Metadata, e.ChangedRanges, e.OldValue, e.NewValue)
	}
	// Output:
	// buffer (unit=bytes) changed at [{3 1}]: 00000000000000000000000000000000 -> 0000002a000000000000000000000000
}

// Receive changes on a channel.
func ExampleWatcher_Events() {
	w, err := memwatch.NewWatcher(memwatch.WithBackend(memwatch.BackendPoll))
	if err != nil {
		panic(err)
	}
	defer w.Close()
	data := make([]byte, 8) // a Go heap slice: pinned while watched
	if _, err := w.Watch(data, "data"); err != nil {
		panic(err)
	}
	events := w.Events()
	data[0] = 1
	w.CheckChanges() // detect now; the event is on the channel when this returns
	e := <-events
	fmt.Println(e.VariableName, e.OldValue[0], "->", e.NewValue[0])
	// Output:
	// data 0 -> 1
}

// Send values too large for events to a value store, then read them back by
// key (from this process here; any process can open the store).
func ExampleWatcher_SetValueStore() {
	buf, err := memwatch.Alloc(64 << 10) // 64 KiB: more than max-value (4096)
	if err != nil {
		panic(err)
	}
	defer memwatch.Free(buf)

	w, err := memwatch.NewWatcher()
	if err != nil {
		panic(err)
	}
	defer w.Close()
	// One store per watching process: keys name no process.
	store := fmt.Sprintf("myapp-values-%d", os.Getpid())
	if err := w.SetValueStore(store, 64<<20); err != nil { // 64 MiB, LRU eviction
		panic(err)
	}
	defer memwatch.UnlinkStore(store)

	if _, err := w.Watch(buf, "frame"); err != nil {
		panic(err)
	}
	buf[1000], buf[1001] = 0xab, 0xcd

	events, err := w.CheckChanges()
	if err != nil {
		panic(err)
	}
	e := events[0]
	fmt.Println("values in the event:", e.OldValue != nil, e.NewValue != nil)

	s, err := memwatch.OpenStore(store)
	if err != nil {
		panic(err)
	}
	defer s.Close()
	oldV, _, err := s.Get(e.StorageKeyOld)
	if err != nil {
		panic(err)
	}
	newV, _, err := s.Get(e.StorageKeyNew)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%v: %d bytes, [1000:1002] %x -> %x\n", e.ChangedRanges, len(newV), oldV[1000:1002], newV[1000:1002])
	// Output:
	// values in the event: false false
	// [{1000 2}]: 65536 bytes, [1000:1002] 0000 -> abcd
}
