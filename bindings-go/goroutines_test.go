package memwatch_test

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	memwatch "github.com/memwatch/memwatch/bindings-go"
)

// Goroutines write their own watched regions (eight on one shared page, eight
// on pages of their own) while another goroutine keeps collecting events.
// Per region, the events must form an unbroken chain from the initial zeros
// to the final content: nothing lost, nothing duplicated, nothing invented.
func TestGoroutinesWritingWatchedSlices(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b memwatch.Backend) {
		page := memwatch.PageSize()
		buf := alloc(t, 9*page)
		w := newWatcher(t, b)
		const n, size, rounds = 16, 64, 300
		regions := make([][]byte, n)
		ids := make([]memwatch.RegionID, n)
		for g := 0; g < n; g++ {
			off := g * size // 0..7 share page 0
			if g >= 8 {
				off = (g-7)*page + 128 // pages 1..8
			}
			regions[g] = buf[off : off+size]
			id, err := w.Watch(regions[g], fmt.Sprintf("g%d", g))
			if err != nil {
				t.Fatal(err)
			}
			ids[g] = id
		}

		var mu sync.Mutex
		var all []memwatch.ChangeEvent
		collect := func() {
			evs, err := w.CheckChanges()
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			all = append(all, evs...)
			mu.Unlock()
		}
		done := make(chan struct{})
		var collector sync.WaitGroup
		collector.Add(1)
		go func() {
			defer collector.Done()
			for {
				select {
				case <-done:
					return
				default:
					collect()
					_ = w.Stats()
				}
			}
		}()

		var writers sync.WaitGroup
		for g := 0; g < n; g++ {
			writers.Add(1)
			go func(g int) {
				defer writers.Done()
				r := regions[g]
				for i := 0; i < rounds; i++ {
					r[i%size] = byte(i*7 + g + 1)
				}
			}(g)
		}
		writers.Wait()
		close(done)
		collector.Wait()
		collect() // everything written before this call is in the result

		byRegion := map[memwatch.RegionID][]memwatch.ChangeEvent{}
		for _, e := range all {
			byRegion[e.RegionID] = append(byRegion[e.RegionID], e)
		}
		if len(byRegion) != n {
			t.Fatalf("events for %d regions, expected %d", len(byRegion), n)
		}
		for g := 0; g < n; g++ {
			evs := byRegion[ids[g]]
			sort.Slice(evs, func(i, j int) bool { return evs[i].Seq < evs[j].Seq })
			prev := make([]byte, size)
			for k, e := range evs {
				if !bytes.Equal(e.OldValue, prev) {
					t.Fatalf("region g%d event %d: old value %x does not continue the previous new value %x", g, k, e.OldValue, prev)
				}
				if bytes.Equal(e.NewValue, e.OldValue) {
					t.Fatalf("region g%d event %d: no change", g, k)
				}
				prev = e.NewValue
			}
			if !bytes.Equal(prev, regions[g]) {
				t.Fatalf("region g%d: events end at %x, memory is %x", g, prev, regions[g])
			}
		}
	})
}

// Watch/Unwatch from many goroutines at once on one watcher.
func TestConcurrentWatchUnwatch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b memwatch.Backend) {
		page := memwatch.PageSize()
		buf := alloc(t, 4*page)
		w := newWatcher(t, b)
		var wg sync.WaitGroup
		var mu sync.Mutex
		seen := map[memwatch.RegionID]bool{}
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				s := buf[g*page/2 : g*page/2+32]
				for i := 0; i < 200; i++ {
					id, err := w.Watch(s, "churn")
					if err != nil {
						t.Errorf("watch: %v", err)
						return
					}
					mu.Lock()
					if seen[id] {
						t.Errorf("region id %d handed out twice", id)
					}
					seen[id] = true
					mu.Unlock()
					s[i%32]++
					if ok, err := w.Unwatch(id); !ok || err != nil {
						t.Errorf("unwatch: %v %v", ok, err)
						return
					}
				}
			}(g)
		}
		wg.Wait()
		if st := w.Stats(); st.Regions != 0 {
			t.Fatalf("%d regions left", st.Regions)
		}
	})
}

// Close while other goroutines are busy with the watcher: every call ends
// with its normal result or an ErrClosed error; nothing crashes or hangs.
func TestCloseWhileBusy(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b memwatch.Backend) {
		buf, err := memwatch.Alloc(4 * memwatch.PageSize())
		if err != nil {
			t.Fatal(err)
		}
		w, err := memwatch.NewWatcher(memwatch.WithBackend(b))
		if err != nil {
			t.Fatal(err)
		}
		if err := w.SetCallback(func(memwatch.ChangeEvent) {}); err != nil {
			t.Fatal(err)
		}
		ch := w.Events()
		drained := make(chan struct{})
		go func() {
			for range ch {
			}
			close(drained)
		}()
		check := func(err error) bool {
			if err != nil && !errors.Is(err, memwatch.ErrClosed) {
				t.Errorf("unexpected error: %v", err)
			}
			return err != nil
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for g := 0; g < 6; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				<-start
				s := buf[g*128 : g*128+64]
				for i := 0; ; i++ {
					id, err := w.Watch(s, "busy")
					if check(err) {
						return
					}
					s[i%64]++
					if _, err := w.CheckChanges(); check(err) {
						return
					}
					_ = w.Stats()
					if _, err := w.Unwatch(id); check(err) {
						return
					}
				}
			}(g)
		}
		close(start)
		// Let the workers get going; then close under them.
		for i := 0; i < 20; i++ {
			if _, err := w.CheckChanges(); err != nil {
				t.Fatal(err)
			}
		}
		w.Close()
		wg.Wait()
		select {
		case <-drained: // the channel was closed after its queued events
		case <-time.After(10 * time.Second):
			t.Fatal("events channel not closed after Close")
		}
		if err := memwatch.Free(buf); err != nil {
			t.Fatalf("memory still watched after Close: %v", err)
		}
	})
}
