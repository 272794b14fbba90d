package memwatch_test

import (
	"errors"
	"runtime"
	"strings"
	"syscall"
	"testing"

	memwatch "github.com/memwatch/memwatch/bindings-go"
)

// writeAt is small enough for the compiler to inline into callWrite: the
// stack must show both anyway (the binding expands inlined calls with
// runtime.CallersFrames).
func writeAt(buf []byte, v byte) int {
	buf[5] = v
	_, _, line, _ := runtime.Caller(0)
	return line - 1
}

//go:noinline
func callWrite(buf []byte, v byte) (int, int) {
	line := writeAt(buf, v)
	_, _, call, _ := runtime.Caller(0)
	return line, call - 1
}

func pageOfItsOwn(t *testing.T) []byte {
	t.Helper()
	m, err := syscall.Mmap(-1, 0, memwatch.PageSize(), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Munmap(m) })
	return m
}

func frameIndex(t *testing.T, stack []memwatch.Frame, suffix string) int {
	t.Helper()
	for i, f := range stack {
		if strings.HasSuffix(f.Function, suffix) {
			return i
		}
	}
	t.Fatalf("%s not in the stack: %+v", suffix, stack)
	return -1
}

func TestLocateWritersLineAndCallerChain(t *testing.T) {
	w := newWatcher(t, memwatch.BackendProtect, memwatch.WithLocateWriters(true), memwatch.WithStackDepth(8))
	buf := pageOfItsOwn(t)
	if _, err := w.Watch(buf[:64], "buf"); err != nil {
		t.Fatal(err)
	}
	line, call := callWrite(buf, 0x42)
	evs, err := w.CheckChanges()
	if err != nil || len(evs) != 1 {
		t.Fatalf("CheckChanges: %v, %d events", err, len(evs))
	}
	wh := evs[0].Where
	if evs[0].NewValue[5] != 0x42 {
		t.Fatalf("new value %v", evs[0].NewValue)
	}
	if !strings.HasSuffix(wh.Function, ".writeAt") || wh.Line != uint32(line) || !strings.HasSuffix(wh.File, "location_test.go") {
		t.Fatalf("user frame %s %s:%d, want writeAt line %d: %+v", wh.Function, wh.File, wh.Line, line, wh.Stack)
	}
	if wh.Stack[0].IP != wh.FaultIP {
		t.Fatalf("first frame %#x, fault ip %#x", wh.Stack[0].IP, wh.FaultIP)
	}
	inner, outer := frameIndex(t, wh.Stack, ".writeAt"), frameIndex(t, wh.Stack, ".callWrite")
	test := frameIndex(t, wh.Stack, ".TestLocateWritersLineAndCallerChain")
	if !(inner < outer && outer < test) {
		t.Fatalf("caller chain out of order: %+v", wh.Stack)
	}
	if wh.Stack[outer].Line != uint32(call) {
		t.Fatalf("callWrite frame line %d, want %d", wh.Stack[outer].Line, call)
	}
	if wh.ThreadName == "" || wh.UnattributedFaults != 0 {
		t.Fatalf("thread name %q, unattributed %d", wh.ThreadName, wh.UnattributedFaults)
	}
}

func TestLocateWritersOptionErrors(t *testing.T) {
	for _, b := range []memwatch.Backend{memwatch.BackendPoll, memwatch.BackendWriteWatch} {
		_, err := memwatch.NewWatcher(memwatch.WithBackend(b), memwatch.WithLocateWriters(true))
		if !errors.Is(err, memwatch.ErrInvalidArgument) || !strings.Contains(err.Error(), "protect") {
			t.Fatalf("%s with locate writers: %v", b, err)
		}
	}
	for _, n := range []int{0, 33, -1} {
		_, err := memwatch.NewWatcher(memwatch.WithLocateWriters(true), memwatch.WithStackDepth(n))
		if !errors.Is(err, memwatch.ErrInvalidArgument) || !strings.Contains(err.Error(), "stack") {
			t.Fatalf("stack depth %d: %v", n, err)
		}
	}
	w := newWatcher(t, memwatch.BackendAuto, memwatch.WithLocateWriters(true))
	if st := w.Stats(); !strings.Contains(st.BackendReason, "locate_writers") {
		t.Fatalf("stats %+v", st)
	}
}

// stormWrite writes one byte; returns the line of the write.
//
//go:noinline
func stormWrite(buf []byte, i int) int {
	buf[i] = byte(i%250 + 1)
	_, _, line, _ := runtime.Caller(0)
	return line - 1
}

// A fault storm with location capture on: 10 000 distinct watched pages,
// each written once right after a recovered nil-pointer panic (Go's own use
// of SIGSEGV), give 10 000 events, each naming stormWrite's line.
func TestLocateWritersFaultStormWithNilPanics(t *testing.T) {
	const pages = 10000
	ps := memwatch.PageSize()
	buf := alloc(t, pages*ps) // before the watcher: cleanups run LIFO
	w := newWatcher(t, memwatch.BackendProtect, memwatch.WithLocateWriters(true), memwatch.WithStackDepth(4))
	for p := 0; p < pages; p++ {
		if _, err := w.Watch(buf[p*ps:p*ps+16], "page"); err != nil {
			t.Fatal(err)
		}
	}
	line := 0
	for p := 0; p < pages; p++ {
		if !nilFault(p) {
			t.Fatalf("page %d: no nil-dereference panic recovered", p)
		}
		line = stormWrite(buf, p*ps+3)
	}
	evs, err := w.CheckChanges()
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != pages {
		t.Fatalf("%d events, want %d", len(evs), pages)
	}
	for _, e := range evs {
		if len(e.ChangedRanges) != 1 || e.ChangedRanges[0] != (memwatch.ByteRange{Offset: 3, Len: 1}) {
			t.Fatalf("ranges %v", e.ChangedRanges)
		}
		if !strings.HasSuffix(e.Where.Function, ".stormWrite") || e.Where.Line != uint32(line) {
			t.Fatalf("event located at %s:%d, want stormWrite line %d", e.Where.Function, e.Where.Line, line)
		}
	}
	if st := w.Stats(); st.DroppedWheres != 0 {
		t.Fatalf("dropped wheres %d", st.DroppedWheres)
	}
}
