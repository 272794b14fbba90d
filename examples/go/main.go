// Command example is the seed's Go snippet, working: watch a slice, get a
// callback when it changes.
//
// Build the library once (cd ../../bindings-go && go generate), then:
//
//	go run .
package main

import (
	"fmt"
	"os"

	"github.com/memwatch/memwatch/bindings-go"
)

func main() {
	watcher, err := memwatch.NewWatcher()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer watcher.Close()

	data := make([]byte, 100)
	if _, err := watcher.Watch(data, "buffer"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := watcher.SetCallback(func(e memwatch.ChangeEvent) {
		fmt.Println(e.VariableName, "changed")
		for _, r := range e.ChangedRanges {
			fmt.Printf("  bytes [%d, %d): %x -> %x\n", r.Offset, r.Offset+r.Len,
				e.OldValue[r.Offset:r.Offset+r.Len], e.NewValue[r.Offset:r.Offset+r.Len])
		}
	}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}

	data[0] = 42

	// Detection is asynchronous; CheckChanges makes it happen now and
	// returns once the callback has seen every earlier write.
	if _, err := watcher.CheckChanges(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	st := watcher.Stats()
	fmt.Printf("backend %s, %d region(s), %d event(s)\n", st.Backend, st.Regions, st.Events)
}
