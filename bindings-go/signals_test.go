package memwatch_test

// Go uses SIGSEGV itself: nil dereferences become recoverable panics, and so
// do faults at other addresses under debug.SetPanicOnFault. The protect
// backend's handler must forward every fault that is not on its own pages to
// Go's handler, while still catching writes to watched pages.

import (
	"bytes"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"

	memwatch "github.com/memwatch/memwatch/bindings-go"
)

type wide struct {
	pad [100]int64
	x   int64
}

// Package-level nil pointers, so the compiler cannot prove them nil.
var (
	nilInt  *int64
	nilWide *wide
)

// nilFault dereferences a nil pointer (a load or a store, at offset 0 or 800)
// and reports whether a nil-dereference runtime panic was recovered.
//
//go:noinline
func nilFault(kind int) (ok bool) {
	defer func() {
		r := recover()
		err, isRuntime := r.(runtime.Error)
		ok = isRuntime && strings.Contains(err.Error(), "nil pointer dereference")
	}()
	switch kind % 4 {
	case 0:
		sink += *nilInt
	case 1:
		*nilInt = 7
	case 2:
		sink += nilWide.x
	default:
		nilWide.x = 9
	}
	return false
}

var sink int64

// expectOneEvent checks that CheckChanges returns exactly one event, for id,
// with exactly these old and new values and ranges.
func expectOneEvent(t *testing.T, w *memwatch.Watcher, id memwatch.RegionID, oldV, newV []byte, ranges []memwatch.ByteRange) memwatch.ChangeEvent {
	t.Helper()
	evs, err := w.CheckChanges()
	if err != nil {
		t.Fatalf("CheckChanges: %v", err)
	}
	if len(evs) != 1 {
		t.Fatalf("expected 1 event, got %d: %s", len(evs), describeEvents(evs))
	}
	e := evs[0]
	if e.RegionID != id {
		t.Fatalf("event for region %d, expected %d", e.RegionID, id)
	}
	if !bytes.Equal(e.OldValue, oldV) || !bytes.Equal(e.NewValue, newV) {
		t.Fatalf("values: expected %x -> %x, got %x -> %x", oldV, newV, e.OldValue, e.NewValue)
	}
	if !equalRanges(e.ChangedRanges, ranges) {
		t.Fatalf("ranges: expected %v, got %v", ranges, e.ChangedRanges)
	}
	return e
}

func expectNoEvents(t *testing.T, w *memwatch.Watcher) {
	t.Helper()
	evs, err := w.CheckChanges()
	if err != nil {
		t.Fatalf("CheckChanges: %v", err)
	}
	if len(evs) != 0 {
		t.Fatalf("expected no events, got %s", describeEvents(evs))
	}
}

func newProtectWatcher(t *testing.T, opts ...memwatch.Option) *memwatch.Watcher {
	t.Helper()
	w, err := memwatch.NewWatcher(append([]memwatch.Option{memwatch.WithBackend(memwatch.BackendProtect)}, opts...)...)
	if err != nil {
		t.Fatalf("NewWatcher(protect): %v", err)
	}
	t.Cleanup(func() { w.Close() })
	if st := w.Stats(); st.Backend != memwatch.BackendProtect {
		t.Fatalf("backend %q, expected protect", st.Backend)
	}
	return w
}

func alloc(t *testing.T, size int) []byte {
	t.Helper()
	buf, err := memwatch.Alloc(size)
	if err != nil {
		t.Fatalf("Alloc(%d): %v", size, err)
	}
	t.Cleanup(func() {
		if err := memwatch.Free(buf); err != nil {
			t.Errorf("Free: %v", err)
		}
	})
	return buf
}

// 100 000 recovered nil-pointer panics while a buffer is watched with the
// protect backend, with writes to the watched page in between: the program
// keeps running and every check returns exactly the expected event.
func TestNilPointerPanicsWithProtectActive(t *testing.T) {
	buf := alloc(t, memwatch.PageSize()) // before the watcher: cleanups run LIFO
	w := newProtectWatcher(t)
	id, err := w.Watch(buf[:64], "counter")
	if err != nil {
		t.Fatal(err)
	}
	faultsBefore := w.Stats().Faults

	const total, every = 100000, 10000
	prev := make([]byte, 64)
	for i := 0; i < total; i++ {
		if !nilFault(i) {
			t.Fatalf("iteration %d: no nil-dereference panic recovered", i)
		}
		if i%every == every-1 {
			k := i / every
			buf[k] = byte(0xA0 + k) // a store to the protected page
			next := append([]byte{}, prev...)
			next[k] = byte(0xA0 + k)
			expectOneEvent(t, w, id, prev, next, []memwatch.ByteRange{{Offset: k, Len: 1}})
			prev = next
		}
	}
	expectNoEvents(t, w)
	st := w.Stats()
	if st.Faults-faultsBefore < total/every {
		t.Fatalf("expected at least %d write faults on the watched page, got %d", total/every, st.Faults-faultsBefore)
	}
	if st.Events != total/every {
		t.Fatalf("stats.Events = %d, expected %d", st.Events, total/every)
	}
}

// Nil panics on several goroutines at once while another goroutine writes a
// watched page over and over: no crash, no lost or extra change.
func TestNilPanicsOnGoroutinesWhileWriting(t *testing.T) {
	buf := alloc(t, 2*memwatch.PageSize())
	w := newProtectWatcher(t, memwatch.WithWritableWindow(1))
	page := memwatch.PageSize()
	id, err := w.Watch(buf[page:page+256], "hot")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	failures := make(chan int, 4)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 25000; i++ {
				if !nilFault(i + g) {
					failures <- i
					return
				}
			}
		}(g)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 20000; i++ {
			buf[page+i%256] = byte(i)
		}
	}()
	wg.Wait()
	close(failures)
	for i := range failures {
		t.Fatalf("a goroutine failed to recover a nil panic at iteration %d", i)
	}
	want := make([]byte, 256)
	for i := 20000 - 256; i < 20000; i++ {
		want[i%256] = byte(i)
	}
	e := expectOneEvent(t, w, id, make([]byte, 256), want, []memwatch.ByteRange{{Offset: 1, Len: 255}})
	if e.Where.ThreadID == 0 {
		t.Fatalf("protect event without writer thread id: %+v", e.Where)
	}
}

// Faults at non-nil addresses the engine does not own (a read-only mapping,
// with debug.SetPanicOnFault) also reach Go, which turns them into panics.
func TestForeignFaultsReachGo(t *testing.T) {
	buf := alloc(t, memwatch.PageSize()) // before the watcher: cleanups run LIFO
	w := newProtectWatcher(t)
	id, err := w.Watch(buf[:8], "word")
	if err != nil {
		t.Fatal(err)
	}
	ro, err := syscall.Mmap(-1, 0, memwatch.PageSize(), syscall.PROT_READ, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(ro)

	runtime.LockOSThread() // SetPanicOnFault is per goroutine; keep it simple
	defer runtime.UnlockOSThread()
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	for i := 0; i < 10000; i++ {
		func() {
			defer func() {
				r := recover()
				if _, ok := r.(runtime.Error); !ok {
					t.Fatalf("iteration %d: expected a runtime fault panic, got %v", i, r)
				}
			}()
			ro[i%len(ro)] = 1 // faults: the mapping is read-only
		}()
		if i == 5000 {
			buf[0] = 0x55
		}
	}
	expectOneEvent(t, w, id, make([]byte, 8), []byte{0x55, 0, 0, 0, 0, 0, 0, 0}, []memwatch.ByteRange{{Offset: 0, Len: 1}})
}

// os/exec starts children with clone(CLONE_VFORK|CLONE_VM): the child runs
// on the parent's memory until it execs. Spawning processes while pages are
// protected must work, and the watched region still reports exactly.
func TestExecWhileProtectActive(t *testing.T) {
	buf := alloc(t, memwatch.PageSize())
	w := newProtectWatcher(t)
	id, err := w.Watch(buf[:4], "spawn")
	if err != nil {
		t.Fatal(err)
	}
	prev := make([]byte, 4)
	for i := 0; i < 20; i++ {
		out, err := exec.Command("/bin/sh", "-c", "echo ok").Output()
		if err != nil || string(out) != "ok\n" {
			t.Fatalf("run %d: %q %v", i, out, err)
		}
		buf[i%4] = byte(i + 1)
		next := append([]byte{}, buf[:4]...)
		expectOneEvent(t, w, id, prev, next, []memwatch.ByteRange{{Offset: i % 4, Len: 1}})
		prev = next
	}
}
