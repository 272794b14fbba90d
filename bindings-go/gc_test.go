package memwatch_test

// Go heap slices: pinned while watched, correct under garbage collection,
// released on Unwatch.

import (
	"bytes"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	memwatch "github.com/memwatch/memwatch/bindings-go"
)

// garbage allocates and collects until stop is closed, so that the watched
// slices share spans and pages with objects being allocated, zeroed and freed.
func garbage(stop <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	var keep [][]byte
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		keep = append(keep, make([]byte, 16+i%200), make([]byte, 3000))
		if len(keep) > 512 {
			keep = nil
		}
		if i%500 == 0 {
			runtime.GC()
		}
	}
}

func TestGoHeapSlicesUnderGC(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b memwatch.Backend) {
		w := newWatcher(t, b, memwatch.WithMaxValueBytes(4096), memwatch.WithPreviewBytes(8))
		small := make([]byte, 40)    // shares a page with other small objects
		medium := make([]byte, 3000) // a size class of its own
		large := make([]byte, 100000)
		ids := map[string]memwatch.RegionID{}
		for name, s := range map[string][]byte{"small": small, "medium": medium, "large": large} {
			id, err := w.Watch(s, name)
			if err != nil {
				t.Fatalf("watch %s: %v", name, err)
			}
			ids[name] = id
		}

		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(2)
		go garbage(stop, &wg)
		go garbage(stop, &wg)
		defer func() { close(stop); wg.Wait() }()

		for i := 0; i < 40; i++ {
			oldSmall := append([]byte{}, small...)
			oldMedium := append([]byte{}, medium...)
			oldLargePreview := append([]byte{}, large[:8]...)
			small[i%40] = byte(i + 1)
			medium[2999-i] = byte(i + 1)
			large[i] = byte(i + 1)
			large[99999] = byte(i + 1)
			runtime.GC()

			evs, err := w.CheckChanges()
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != 3 {
				t.Fatalf("iteration %d: expected 3 events, got %s", i, describeEvents(evs))
			}
			for _, e := range evs {
				switch e.RegionID {
				case ids["small"]:
					if !bytes.Equal(e.OldValue, oldSmall) || !bytes.Equal(e.NewValue, small) ||
						!equalRanges(e.ChangedRanges, []memwatch.ByteRange{{Offset: i % 40, Len: 1}}) {
						t.Fatalf("iteration %d small: %x -> %x %v", i, e.OldValue, e.NewValue, e.ChangedRanges)
					}
				case ids["medium"]:
					if !bytes.Equal(e.OldValue, oldMedium) || !bytes.Equal(e.NewValue, medium) ||
						!equalRanges(e.ChangedRanges, []memwatch.ByteRange{{Offset: 2999 - i, Len: 1}}) {
						t.Fatalf("iteration %d medium: ranges %v", i, e.ChangedRanges)
					}
				case ids["large"]:
					want := []memwatch.ByteRange{{Offset: i, Len: 1}, {Offset: 99999, Len: 1}}
					if e.OldValue != nil || e.NewValue != nil || e.HowBig != 100000 ||
						!bytes.Equal(e.OldPreview, oldLargePreview) || !bytes.Equal(e.NewPreview, large[:8]) ||
						!equalRanges(e.ChangedRanges, want) {
						t.Fatalf("iteration %d large: values %v/%v preview %x -> %x ranges %v", i,
							e.OldValue != nil, e.NewValue != nil, e.OldPreview, e.NewPreview, e.ChangedRanges)
					}
				default:
					t.Fatalf("event for unknown region %d", e.RegionID)
				}
			}
		}
	})
}

type blob struct{ data [3 * 8192]byte }

// waitFor runs GCs until cond holds or the deadline passes.
func waitFor(cond func() bool) bool {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		runtime.GC()
		if cond() {
			return true
		}
		time.Sleep(time.Millisecond)
	}
	return cond()
}

// A watched slice whose last reference the program dropped stays alive
// (pinned) until Unwatch, and becomes collectable right after.
func TestWatchedSliceIsPinnedUntilUnwatch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend memwatch.Backend) {
		w := newWatcher(t, backend)
		var blobGone, canary1, canary2 atomic.Bool
		id := func() memwatch.RegionID {
			b := new(blob)
			runtime.SetFinalizer(b, func(*blob) { blobGone.Store(true) })
			id, err := w.Watch(b.data[100:5000], "orphan") // an interior slice
			if err != nil {
				t.Fatal(err)
			}
			c := new(blob)
			runtime.SetFinalizer(c, func(*blob) { canary1.Store(true) })
			return id
		}()
		// Two full cycles in which an unpinned blob would have been finalized.
		if !waitFor(canary1.Load) {
			t.Fatal("canary 1 never finalized")
		}
		func() {
			c := new(blob)
			runtime.SetFinalizer(c, func(*blob) { canary2.Store(true) })
		}()
		if !waitFor(canary2.Load) {
			t.Fatal("canary 2 never finalized")
		}
		if blobGone.Load() {
			t.Fatal("watched memory was collected while watched")
		}
		if ok, err := w.Unwatch(id); !ok || err != nil {
			t.Fatal(ok, err)
		}
		if !waitFor(blobGone.Load) {
			t.Fatal("memory still pinned after Unwatch")
		}
	})
}

// Close unpins too.
func TestCloseUnpins(t *testing.T) {
	w, err := memwatch.NewWatcher(memwatch.WithBackend(memwatch.BackendProtect))
	if err != nil {
		t.Fatal(err)
	}
	var gone atomic.Bool
	func() {
		b := new(blob)
		runtime.SetFinalizer(b, func(*blob) { gone.Store(true) })
		if _, err := w.Watch(b.data[:], "closed"); err != nil {
			t.Fatal(err)
		}
	}()
	w.Close()
	if !waitFor(gone.Load) {
		t.Fatal("memory still pinned after Close")
	}
}

// A watcher the program forgot to close is closed by its finalizer, which
// unwatches and unpins its memory.
func TestForgottenWatcherIsClosed(t *testing.T) {
	var gone atomic.Bool
	func() {
		w, err := memwatch.NewWatcher(memwatch.WithBackend(memwatch.BackendPoll))
		if err != nil {
			t.Fatal(err)
		}
		b := new(blob)
		runtime.SetFinalizer(b, func(*blob) { gone.Store(true) })
		if _, err := w.Watch(b.data[:], "forgotten"); err != nil {
			t.Fatal(err)
		}
	}()
	if !waitFor(gone.Load) {
		t.Fatal("an unreachable watcher kept its memory pinned")
	}
}
