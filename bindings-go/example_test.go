package memwatch_test

import (
	"fmt"

	memwatch "github.com/memwatch/memwatch/bindings-go"
)

// Watch a buffer, change one byte, and read the change back.
func Example() {
	w, err := memwatch.NewWatcher(memwatch.WithBackend(memwatch.BackendProtect))
	if err != nil {
		panic(err)
	}
	defer w.Close()

	buf, err := memwatch.Alloc(16) // page-aligned, outside the Go heap
	if err != nil {
		panic(err)
	}
	defer memwatch.Free(buf) // deferred calls run last-in first-out: after w.Close

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
