package memwatch_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	memwatch "github.com/memwatch/memwatch/bindings-go"
)

// requiredBackends are the backends the project requires of every binding:
// those listed by the shared scenarios (tests/behavior/*.json). The generic
// API tests run under each of them.
func requiredBackends(t *testing.T) []memwatch.Backend {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(behaviorDir(), "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios in %s: %v", behaviorDir(), err)
	}
	listed := map[memwatch.Backend]bool{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var sc struct {
			Backends []memwatch.Backend `json:"backends"`
		}
		if err := json.Unmarshal(raw, &sc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, b := range sc.Backends {
			listed[b] = true
		}
	}
	var out []memwatch.Backend
	for _, b := range []memwatch.Backend{memwatch.BackendProtect, memwatch.BackendWriteWatch, memwatch.BackendPoll} {
		if listed[b] {
			out = append(out, b)
			delete(listed, b)
		}
	}
	if len(listed) != 0 || len(out) == 0 {
		t.Fatalf("scenarios list unexpected backends %v (known: %v)", listed, out)
	}
	return out
}

func newWatcher(t *testing.T, b memwatch.Backend, opts ...memwatch.Option) *memwatch.Watcher {
	t.Helper()
	w, err := memwatch.NewWatcher(append([]memwatch.Option{memwatch.WithBackend(b)}, opts...)...)
	if err != nil {
		t.Fatalf("NewWatcher(%s): %v", b, err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func forEachBackend(t *testing.T, f func(t *testing.T, b memwatch.Backend)) {
	for _, b := range requiredBackends(t) {
		b := b
		t.Run(string(b), func(t *testing.T) { f(t, b) })
	}
}

// recvEvent receives one event that must already be queued on ch (it was
// delivered before CheckChanges returned); the timeout only guards a bug.
func recvEvent(t *testing.T, ch <-chan memwatch.ChangeEvent) memwatch.ChangeEvent {
	t.Helper()
	select {
	case e, ok := <-ch:
		if !ok {
			t.Fatal("events channel closed")
		}
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no event on the channel")
	}
	panic("unreachable")
}

func expectNoQueuedEvent(t *testing.T, ch <-chan memwatch.ChangeEvent) {
	t.Helper()
	select {
	case e, ok := <-ch:
		if ok {
			t.Fatalf("unexpected event %s", describeEvents([]memwatch.ChangeEvent{e}))
		}
	case <-time.After(50 * time.Millisecond):
	}
}

func expectCode(t *testing.T, err error, sentinel *memwatch.Error, what string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: expected %v error, got nil", what, sentinel.Code)
	}
	if !errors.Is(err, sentinel) {
		t.Fatalf("%s: expected %v error, got %v", what, sentinel.Code, err)
	}
	var me *memwatch.Error
	if !errors.As(err, &me) || me.Code != sentinel.Code || me.Message == "" {
		t.Fatalf("%s: expected *memwatch.Error with code %d and a message, got %#v", what, sentinel.Code, err)
	}
}

func TestEventFields(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b memwatch.Backend) {
		buf := alloc(t, memwatch.PageSize())
		w := newWatcher(t, b, memwatch.WithPreviewBytes(4))
		id, err := w.Watch(buf[16:32], "field", memwatch.WithMetadata("kind=test"))
		if err != nil {
			t.Fatal(err)
		}
		if id < 1 {
			t.Fatalf("region id %d, expected >= 1", id)
		}
		var tid int
		func() {
			// The write happens on a known thread, so the protect backend's
			// writer thread id can be checked exactly.
			lockThread()
			defer unlockThread()
			tid = syscall.Gettid()
			buf[16+2] = 0x42
			buf[16+3] = 0x43
		}()
		old := make([]byte, 16)
		nw := append([]byte{}, old...)
		nw[2], nw[3] = 0x42, 0x43
		e := expectOneEvent(t, w, id, old, nw, []memwatch.ByteRange{{Offset: 2, Len: 2}})
		if e.VariableName != "field" || e.Metadata != "kind=test" || e.HowBig != 16 {
			t.Fatalf("name/metadata/size: %q %q %d", e.VariableName, e.Metadata, e.HowBig)
		}
		if e.AdapterID != 6 {
			t.Fatalf("adapter id %d, expected 6 (Go)", e.AdapterID)
		}
		if !bytes.Equal(e.OldPreview, old[:4]) || !bytes.Equal(e.NewPreview, nw[:4]) {
			t.Fatalf("previews %x -> %x", e.OldPreview, e.NewPreview)
		}
		if e.Seq == 0 || e.TimestampNs == 0 {
			t.Fatalf("seq %d timestamp %d", e.Seq, e.TimestampNs)
		}
		if e.StorageKeyOld != "" || e.StorageKeyNew != "" {
			t.Fatalf("storage keys %q %q", e.StorageKeyOld, e.StorageKeyNew)
		}
		switch b {
		case memwatch.BackendProtect:
			if int(e.Where.ThreadID) != tid || e.Where.FaultIP == 0 {
				t.Fatalf("where %+v, expected thread %d and an instruction pointer", e.Where, tid)
			}
		default: // poll and writewatch cannot know the writer
			if e.Where.ThreadID != 0 || e.Where.FaultIP != 0 {
				t.Fatalf("%s backend reported a writer: %+v", b, e.Where)
			}
		}
		st := w.Stats()
		if st.Backend != b || st.Regions != 1 || st.Events != 1 || st.PendingEvents != 0 || st.Closed {
			t.Fatalf("stats %+v", st)
		}
		if st.SnapshotBytes < 16 || st.NativeBytes < st.SnapshotBytes {
			t.Fatalf("stats bytes %+v", st)
		}
	})
}

func TestNoSnapshots(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b memwatch.Backend) {
		buf := alloc(t, memwatch.PageSize())
		w := newWatcher(t, b, memwatch.WithSnapshots(false))
		id, err := w.Watch(buf[:8], "nosnap")
		if err != nil {
			t.Fatal(err)
		}
		buf[5] = 1
		evs, err := w.CheckChanges()
		if err != nil || len(evs) != 1 || evs[0].RegionID != id {
			t.Fatalf("events %v err %v", describeEvents(evs), err)
		}
		e := evs[0]
		if e.OldValue != nil || !bytes.Equal(e.NewValue, []byte{0, 0, 0, 0, 0, 1, 0, 0}) ||
			!equalRanges(e.ChangedRanges, []memwatch.ByteRange{{Offset: 0, Len: 8}}) {
			t.Fatalf("without snapshots: old %x new %x ranges %v", e.OldValue, e.NewValue, e.ChangedRanges)
		}
	})
}

func TestWatchErrors(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b memwatch.Backend) {
		buf := alloc(t, 2*memwatch.PageSize())
		w := newWatcher(t, b)

		_, err := w.Watch(nil, "nil")
		expectCode(t, err, memwatch.ErrInvalidArgument, "nil slice")
		_, err = w.Watch(buf[:0], "empty")
		expectCode(t, err, memwatch.ErrInvalidArgument, "empty slice")
		_, err = w.Watch(buf[:8], "a\x00b")
		expectCode(t, err, memwatch.ErrInvalidArgument, "NUL in name")
		_, err = w.Watch(buf[:8], "ok", memwatch.WithMetadata("x\x00"))
		expectCode(t, err, memwatch.ErrInvalidArgument, "NUL in metadata")

		id, err := w.Watch(buf[100:200], "first")
		if err != nil {
			t.Fatal(err)
		}
		_, err = w.Watch(buf[150:160], "inside")
		expectCode(t, err, memwatch.ErrOverlap, "overlapping watch")
		_, err = w.Watch(buf[199:201], "edge")
		expectCode(t, err, memwatch.ErrOverlap, "overlapping last byte")
		// Adjacent is fine, and so is the same range on another watcher.
		if _, err := w.Watch(buf[200:210], "adjacent"); err != nil {
			t.Fatalf("adjacent region: %v", err)
		}
		w2 := newWatcher(t, b)
		id2, err := w2.Watch(buf[100:200], "other watcher")
		if err != nil {
			t.Fatalf("same range on a second watcher: %v", err)
		}

		// Nothing failed silently: exactly the three regions are watched and report.
		buf[120] = 1
		buf[205] = 2
		evs, err := w.CheckChanges()
		if err != nil || len(evs) != 2 {
			t.Fatalf("events %s err %v", describeEvents(evs), err)
		}
		evs2, err := w2.CheckChanges()
		if err != nil || len(evs2) != 1 || evs2[0].RegionID != id2 || !equalRanges(evs2[0].ChangedRanges, []memwatch.ByteRange{{Offset: 20, Len: 1}}) {
			t.Fatalf("second watcher events %s err %v", describeEvents(evs2), err)
		}
		if ok, err := w.Unwatch(id); !ok || err != nil {
			t.Fatalf("unwatch: %v %v", ok, err)
		}
		if ok, err := w.Unwatch(id); ok || err != nil {
			t.Fatalf("second unwatch: %v %v", ok, err)
		}
		if ok, err := w.Unwatch(id2); ok || err != nil {
			t.Fatalf("unwatch of another watcher's region: %v %v", ok, err)
		}
		// Ids are never reused.
		id3, err := w.Watch(buf[100:200], "again")
		if err != nil || id3 <= id2 {
			t.Fatalf("re-watch: id %d (previous %d) err %v", id3, id2, err)
		}
	})
}

func TestWatchReadOnlyAndUnmapped(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b memwatch.Backend) {
		page := memwatch.PageSize()
		w := newWatcher(t, b)
		ro, err := syscall.Mmap(-1, 0, page, syscall.PROT_READ, syscall.MAP_PRIVATE|syscall.MAP_ANON)
		if err != nil {
			t.Fatal(err)
		}
		defer syscall.Munmap(ro)
		_, err = w.Watch(ro[:64], "ro")
		expectCode(t, err, memwatch.ErrReadOnly, "read-only memory")

		m, err := syscall.Mmap(-1, 0, 2*page, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
		if err != nil {
			t.Fatal(err)
		}
		defer syscall.Munmap(m)
		// Unmap the second page behind Go's back; the slice still spans it.
		if _, _, errno := syscall.Syscall(syscall.SYS_MUNMAP, uintptr(unsafe.Pointer(&m[page])), uintptr(page), 0); errno != 0 {
			t.Fatal(errno)
		}
		_, err = w.Watch(m[page-8:page+8], "straddles a hole")
		expectCode(t, err, memwatch.ErrUnmapped, "partly unmapped memory")
		if st := w.Stats(); st.Regions != 0 {
			t.Fatalf("a failed watch left %d regions", st.Regions)
		}
	})
}

func TestOptionErrors(t *testing.T) {
	cases := []struct {
		name string
		opt  memwatch.Option
	}{
		{"unknown backend", memwatch.WithBackend("mprotect")},
		{"NUL in backend", memwatch.WithBackend("poll\x00")},
		{"negative window", memwatch.WithWritableWindow(-time.Millisecond)},
		{"zero window", memwatch.WithWritableWindow(0)},
		{"zero poll interval", memwatch.WithPollInterval(0)},
		{"negative poll interval", memwatch.WithPollInterval(-5 * time.Millisecond)},
		{"huge window", memwatch.WithWritableWindow(time.Duration(1 << 62))},
		{"huge poll interval", memwatch.WithPollInterval(time.Duration(1 << 62))},
		{"negative max value", memwatch.WithMaxValueBytes(-1)},
		{"negative preview", memwatch.WithPreviewBytes(-5)},
		{"zero ring", memwatch.WithRingCapacity(0)},
	}
	for _, c := range cases {
		w, err := memwatch.NewWatcher(c.opt)
		if w != nil {
			w.Close()
		}
		expectCode(t, err, memwatch.ErrInvalidArgument, c.name)
	}
	// Durations are rounded up to whole milliseconds, so 1ns is a valid 1ms.
	w, err := memwatch.NewWatcher(memwatch.WithBackend(memwatch.BackendPoll), memwatch.WithPollInterval(time.Nanosecond))
	if err != nil {
		t.Fatalf("1ns poll interval: %v", err)
	}
	w.Close()
}

// With writewatch there is no signal handler: a system call writing into
// watched memory succeeds, and the change is reported like any other. Where
// the project does not require writewatch (the scenarios do not list it), an
// engine without it must refuse it with a clear ErrUnsupported error.
func TestWriteWatchSyscallWriteIsReported(t *testing.T) {
	required := false
	for _, b := range requiredBackends(t) {
		required = required || b == memwatch.BackendWriteWatch
	}
	if !required {
		w, err := memwatch.NewWatcher(memwatch.WithBackend(memwatch.BackendWriteWatch))
		if err != nil {
			expectCode(t, err, memwatch.ErrUnsupported, "writewatch")
			if !strings.Contains(err.Error(), "writewatch") {
				t.Fatalf("unclear message: %v", err)
			}
			return
		}
		w.Close()
	}
	buf := alloc(t, memwatch.PageSize())
	w := newWatcher(t, memwatch.BackendWriteWatch)
	if st := w.Stats(); st.Backend != memwatch.BackendWriteWatch {
		t.Fatalf("backend %q", st.Backend)
	}
	id, err := w.Watch(buf[96:112], "syscall target")
	if err != nil {
		t.Fatal(err)
	}
	var p [2]int
	if err := syscall.Pipe(p[:]); err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(p[0])
	defer syscall.Close(p[1])
	if _, err := syscall.Write(p[1], []byte("abcd")); err != nil {
		t.Fatal(err)
	}
	if n, err := syscall.Read(p[0], buf[100:104]); n != 4 || err != nil {
		t.Fatalf("read(2) into watched memory under writewatch: %d %v", n, err)
	}
	want := make([]byte, 16)
	copy(want[4:], "abcd")
	expectOneEvent(t, w, id, make([]byte, 16), want, []memwatch.ByteRange{{Offset: 4, Len: 4}})
}

func TestAutoBackendIsConcrete(t *testing.T) {
	buf := alloc(t, memwatch.PageSize())
	w := newWatcher(t, memwatch.BackendAuto)
	id, err := w.Watch(buf[:4], "auto")
	if err != nil {
		t.Fatal(err)
	}
	st := w.Stats()
	if st.Backend == memwatch.BackendAuto || st.Backend == "" {
		t.Fatalf("auto watcher reports backend %q", st.Backend)
	}
	buf[1] = 9
	expectOneEvent(t, w, id, []byte{0, 0, 0, 0}, []byte{0, 9, 0, 0}, []memwatch.ByteRange{{Offset: 1, Len: 1}})
}

func TestClosedWatcher(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b memwatch.Backend) {
		buf := alloc(t, memwatch.PageSize())
		w, err := memwatch.NewWatcher(memwatch.WithBackend(b))
		if err != nil {
			t.Fatal(err)
		}
		id, err := w.Watch(buf[:8], "x")
		if err != nil {
			t.Fatal(err)
		}
		buf[0] = 1 // pending, dropped by Close
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		_, err = w.Watch(buf[16:24], "y")
		expectCode(t, err, memwatch.ErrClosed, "Watch after Close")
		ok, err := w.Unwatch(id)
		expectCode(t, err, memwatch.ErrClosed, "Unwatch after Close")
		if ok {
			t.Fatal("Unwatch after Close returned true")
		}
		evs, err := w.CheckChanges()
		expectCode(t, err, memwatch.ErrClosed, "CheckChanges after Close")
		if len(evs) != 0 {
			t.Fatal("events after Close")
		}
		expectCode(t, w.SetCallback(func(memwatch.ChangeEvent) {}), memwatch.ErrClosed, "SetCallback after Close")
		if st := w.Stats(); !st.Closed || st.Regions != 0 {
			t.Fatalf("Stats after Close: %+v", st)
		}
		if _, ok := <-w.Events(); ok {
			t.Fatal("Events after Close is not a closed channel")
		}
		if !strings.Contains(err.Error(), "closed") {
			t.Fatalf("message %q", err.Error())
		}
		// Close unwatched and unpinned: the memory can be freed now.
		buf2 := alloc(t, memwatch.PageSize())
		w2, _ := memwatch.NewWatcher(memwatch.WithBackend(b))
		if _, err := w2.Watch(buf2, "z"); err != nil {
			t.Fatal(err)
		}
		expectCode(t, memwatch.Free(buf2), memwatch.ErrInvalidArgument, "Free of watched memory")
		w2.Close()
	})
}

func TestCallback(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b memwatch.Backend) {
		buf := alloc(t, memwatch.PageSize())
		w := newWatcher(t, b)
		id, err := w.Watch(buf[:4], "cb")
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var got []memwatch.ChangeEvent
		callerTid := syscall.Gettid()
		var cbTid int
		if err := w.SetCallback(func(e memwatch.ChangeEvent) {
			mu.Lock()
			got = append(got, e)
			cbTid = syscall.Gettid()
			mu.Unlock()
		}); err != nil {
			t.Fatal(err)
		}
		buf[0] = 1
		evs, err := w.CheckChanges()
		if err != nil || len(evs) != 0 {
			t.Fatalf("with a callback CheckChanges returned %s, %v", describeEvents(evs), err)
		}
		mu.Lock()
		if len(got) != 1 || got[0].RegionID != id || !bytes.Equal(got[0].NewValue, []byte{1, 0, 0, 0}) {
			t.Fatalf("callback got %s", describeEvents(got))
		}
		if cbTid == callerTid {
			t.Fatal("callback ran on the caller's thread, not the delivery thread")
		}
		mu.Unlock()

		// Cleared: events go to CheckChanges again.
		if err := w.SetCallback(nil); err != nil {
			t.Fatal(err)
		}
		buf[1] = 2
		expectOneEvent(t, w, id, []byte{1, 0, 0, 0}, []byte{1, 2, 0, 0}, []memwatch.ByteRange{{Offset: 1, Len: 1}})
		mu.Lock()
		if len(got) != 1 {
			t.Fatalf("callback called after being cleared: %d", len(got))
		}
		mu.Unlock()
	})
}

func TestCallbackPanicIsCounted(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b memwatch.Backend) {
		buf := alloc(t, memwatch.PageSize())
		w := newWatcher(t, b)
		if _, err := w.Watch(buf[:4], "boom"); err != nil {
			t.Fatal(err)
		}
		calls := 0
		if err := w.SetCallback(func(e memwatch.ChangeEvent) {
			calls++
			if calls == 1 {
				panic("callback failure (expected by the test)")
			}
		}); err != nil {
			t.Fatal(err)
		}
		buf[0] = 1
		if _, err := w.CheckChanges(); err != nil {
			t.Fatal(err)
		}
		buf[0] = 2
		if _, err := w.CheckChanges(); err != nil {
			t.Fatal(err)
		}
		if calls != 2 {
			t.Fatalf("callback called %d times, expected 2 (delivery must go on after a panic)", calls)
		}
		if st := w.Stats(); st.CallbackErrors != 1 {
			t.Fatalf("CallbackErrors = %d, expected 1", st.CallbackErrors)
		}
	})
}

func TestEventsChannel(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b memwatch.Backend) {
		buf := alloc(t, memwatch.PageSize())
		w := newWatcher(t, b)
		id, err := w.Watch(buf[:4], "chan")
		if err != nil {
			t.Fatal(err)
		}
		ch := w.Events()
		if w.Events() != ch {
			t.Fatal("Events returned a different channel")
		}
		// Nobody reads for a while: the engine must not block and nothing is lost.
		const n = 50
		for i := 1; i <= n; i++ {
			buf[0] = byte(i)
			evs, err := w.CheckChanges()
			if err != nil || len(evs) != 0 {
				t.Fatalf("CheckChanges with the channel set: %s %v", describeEvents(evs), err)
			}
		}
		for i := 1; i <= n; i++ {
			e := recvEvent(t, ch)
			if e.RegionID != id || !bytes.Equal(e.OldValue, []byte{byte(i - 1), 0, 0, 0}) || !bytes.Equal(e.NewValue, []byte{byte(i), 0, 0, 0}) {
				t.Fatalf("event %d: %x -> %x", i, e.OldValue, e.NewValue)
			}
		}
		expectNoQueuedEvent(t, ch)

		// Channel and callback together both get every event.
		var mu sync.Mutex
		var fromCb []memwatch.ChangeEvent
		if err := w.SetCallback(func(e memwatch.ChangeEvent) { mu.Lock(); fromCb = append(fromCb, e); mu.Unlock() }); err != nil {
			t.Fatal(err)
		}
		buf[2] = 7
		if _, err := w.CheckChanges(); err != nil {
			t.Fatal(err)
		}
		e := recvEvent(t, ch)
		mu.Lock()
		if len(fromCb) != 1 || fromCb[0].Seq != e.Seq || !bytes.Equal(fromCb[0].NewValue, e.NewValue) {
			t.Fatalf("callback %s vs channel %s", describeEvents(fromCb), describeEvents([]memwatch.ChangeEvent{e}))
		}
		mu.Unlock()
		// Clearing the callback keeps the channel.
		if err := w.SetCallback(nil); err != nil {
			t.Fatal(err)
		}
		buf[3] = 8
		if evs, err := w.CheckChanges(); err != nil || len(evs) != 0 {
			t.Fatalf("channel still set, but CheckChanges returned %s %v", describeEvents(evs), err)
		}
		if e := recvEvent(t, ch); !bytes.Equal(e.NewValue, []byte{n, 0, 7, 8}) {
			t.Fatalf("new value %x", e.NewValue)
		}

		// After Close, queued events are still received, then the channel closes.
		buf[1] = 5
		if _, err := w.CheckChanges(); err != nil {
			t.Fatal(err)
		}
		w.Close()
		if e := recvEvent(t, ch); !bytes.Equal(e.NewValue, []byte{n, 5, 7, 8}) {
			t.Fatalf("queued event after close: %x", e.NewValue)
		}
		select {
		case _, ok := <-ch:
			if ok {
				t.Fatal("extra event after Close")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("channel not closed after Close")
		}
	})
}

func TestReentrantCalls(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b memwatch.Backend) {
		buf := alloc(t, memwatch.PageSize())
		w := newWatcher(t, b)
		id, err := w.Watch(buf[:8], "re")
		if err != nil {
			t.Fatal(err)
		}
		var inner []error
		var innerID memwatch.RegionID
		if err := w.SetCallback(func(e memwatch.ChangeEvent) {
			// Every method from inside the callback: no deadlock.
			_, err := w.CheckChanges()
			inner = append(inner, err)
			innerID, err = w.Watch(buf[64:72], "from callback")
			inner = append(inner, err)
			_ = w.Stats()
			_, err = w.Unwatch(innerID)
			inner = append(inner, err)
		}); err != nil {
			t.Fatal(err)
		}
		buf[0] = 1
		if _, err := w.CheckChanges(); err != nil {
			t.Fatal(err)
		}
		if len(inner) != 3 {
			t.Fatalf("callback ran %d calls, expected 3", len(inner))
		}
		for _, err := range inner {
			if err != nil {
				t.Fatalf("call inside the callback: %v", err)
			}
		}
		_ = id
	})
}

func TestCloseFromCallback(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b memwatch.Backend) {
		buf, err := memwatch.Alloc(memwatch.PageSize())
		if err != nil {
			t.Fatal(err)
		}
		w, err := memwatch.NewWatcher(memwatch.WithBackend(b))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Watch(buf[:8], "closer"); err != nil {
			t.Fatal(err)
		}
		var called atomic.Int32
		closed := make(chan error, 1)
		if err := w.SetCallback(func(memwatch.ChangeEvent) {
			called.Add(1)
			closed <- w.Close()
		}); err != nil {
			t.Fatal(err)
		}
		buf[0] = 1
		// The Close inside the callback ends this call's wait for delivery, so
		// it may return before the callback has returned: sync on the channel.
		_, err = w.CheckChanges()
		if err != nil && !errors.Is(err, memwatch.ErrClosed) {
			t.Fatalf("CheckChanges around a Close in the callback: %v", err)
		}
		select {
		case err := <-closed:
			if err != nil {
				t.Fatalf("Close in the callback returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the callback never closed the watcher")
		}
		if n := called.Load(); n != 1 {
			t.Fatalf("callback called %d times", n)
		}
		if st := w.Stats(); !st.Closed {
			t.Fatal("watcher not closed")
		}
		// Close unwatched and unpinned the region: Free accepts the memory.
		if err := memwatch.Free(buf); err != nil {
			t.Fatalf("Free after Close in callback: %v", err)
		}
	})
}

// A system call writing into a page the protect backend keeps read-only
// fails with EFAULT (documented); once the region is unwatched it works.
func TestProtectSyscallWriteIsEFAULT(t *testing.T) {
	buf := alloc(t, memwatch.PageSize())
	w := newProtectWatcher(t)
	id, err := w.Watch(buf[:16], "syscall target")
	if err != nil {
		t.Fatal(err)
	}
	var p [2]int
	if err := syscall.Pipe(p[:]); err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(p[0])
	defer syscall.Close(p[1])
	if _, err := syscall.Write(p[1], []byte("abcd")); err != nil {
		t.Fatal(err)
	}
	if _, err := syscall.Read(p[0], buf[100:104]); err != syscall.EFAULT {
		t.Fatalf("read(2) into a protected page: expected EFAULT, got %v", err)
	}
	if ok, err := w.Unwatch(id); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if n, err := syscall.Read(p[0], buf[100:104]); n != 4 || err != nil || string(buf[100:104]) != "abcd" {
		t.Fatalf("read(2) after unwatch: %d %v %q", n, err, buf[100:104])
	}
}
