package memwatch_test

// The value store: values of regions larger than the max-value option go to
// a MemStream store, events carry their keys, and another process reads the
// values back with OpenStore/Get.

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"testing"

	memwatch "github.com/memwatch/memwatch/bindings-go"
)

// readerEnv, when set in the environment of this test binary, makes it a
// store reader instead of running tests (see TestMain): it opens the store
// named there and prints, for each key in readerKeysEnv (one per line), the
// value in hex or "absent".
const (
	readerEnv     = "MEMWATCH_GO_STORE_READER"
	readerKeysEnv = "MEMWATCH_GO_STORE_READER_KEYS"
)

func TestMain(m *testing.M) {
	if name := os.Getenv(readerEnv); name != "" {
		os.Exit(storeReader(name, strings.Split(os.Getenv(readerKeysEnv), "\n")))
	}
	if os.Getenv(exitChildEnv) != "" {
		os.Exit(exitChild())
	}
	os.Exit(m.Run())
}

func storeReader(name string, keys []string) int {
	s, err := memwatch.OpenStore(name)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer s.Close()
	for _, k := range keys {
		v, ok, err := s.Get(k)
		switch {
		case err != nil:
			fmt.Fprintln(os.Stderr, err)
			return 1
		case !ok:
			fmt.Println("absent")
		default:
			fmt.Println(hex.EncodeToString(v))
		}
	}
	return 0
}

// readInAnotherProcess runs this test binary as a store reader and returns
// the values of keys (nil for an absent key).
func readInAnotherProcess(t *testing.T, store string, keys ...string) [][]byte {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), readerEnv+"="+store, readerKeysEnv+"="+strings.Join(keys, "\n"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("reader process: %v; stderr: %s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(keys) {
		t.Fatalf("reader process printed %d lines for %d keys: %q", len(lines), len(keys), out)
	}
	vals := make([][]byte, len(keys))
	for i, l := range lines {
		if l == "absent" {
			continue
		}
		v, err := hex.DecodeString(l)
		if err != nil {
			t.Fatalf("reader process line %d: %v", i, err)
		}
		vals[i] = v
	}
	return vals
}

// storeName is a store name unique to this process and test, unlinked when
// the test ends (the unlink must find it: every test here creates its store).
func storeName(t *testing.T, what string) string {
	t.Helper()
	name := fmt.Sprintf("mw-go-%s-%d", what, os.Getpid())
	t.Cleanup(func() {
		if err := memwatch.UnlinkStore(name); err != nil {
			t.Errorf("UnlinkStore(%q): %v", name, err)
		}
	})
	return name
}

func openStore(t *testing.T, name string) *memwatch.Store {
	t.Helper()
	s, err := memwatch.OpenStore(name)
	if err != nil {
		t.Fatalf("OpenStore(%q): %v", name, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustGet(t *testing.T, s *memwatch.Store, key string) []byte {
	t.Helper()
	v, ok, err := s.Get(key)
	if err != nil || !ok {
		t.Fatalf("Get(%q): found %v, err %v", key, ok, err)
	}
	return v
}

func checkOneEvent(t *testing.T, w *memwatch.Watcher, id memwatch.RegionID, ranges []memwatch.ByteRange) memwatch.ChangeEvent {
	t.Helper()
	evs, err := w.CheckChanges()
	if err != nil {
		t.Fatalf("CheckChanges: %v", err)
	}
	if len(evs) != 1 {
		t.Fatalf("expected 1 event, got %d: %s", len(evs), describeEvents(evs))
	}
	e := evs[0]
	if e.RegionID != id || !equalRanges(e.ChangedRanges, ranges) {
		t.Fatalf("event of region %d ranges %v, expected region %d ranges %v", e.RegionID, e.ChangedRanges, id, ranges)
	}
	return e
}

func TestValueStore(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b memwatch.Backend) {
		name := storeName(t, "values-"+string(b))
		const size = 3*4096 + 100 // several pages, far beyond max-value
		buf := alloc(t, size)
		small := alloc(t, 16)
		for i := range buf {
			buf[i] = byte(i * 7 % 251)
		}
		w := newWatcher(t, b, memwatch.WithMaxValueBytes(4096))
		if err := w.SetValueStore(name, 8<<20); err != nil {
			t.Fatalf("SetValueStore: %v", err)
		}
		id, err := w.Watch(buf, "big")
		if err != nil {
			t.Fatal(err)
		}
		v0 := append([]byte{}, buf...)
		buf[5000], buf[5001] = ^buf[5000], ^buf[5001] // 2 bytes
		v1 := append([]byte{}, buf...)

		e := checkOneEvent(t, w, id, []memwatch.ByteRange{{Offset: 5000, Len: 2}})
		if e.OldValue != nil || e.NewValue != nil {
			t.Fatalf("large region: values %d and %d bytes, expected none", len(e.OldValue), len(e.NewValue))
		}
		if e.HowBig != size {
			t.Fatalf("how big %d, expected %d", e.HowBig, size)
		}
		wantOld, wantNew := fmt.Sprintf("memwatch/6/%d/0", id), fmt.Sprintf("memwatch/6/%d/1", id)
		if e.StorageKeyOld != wantOld || e.StorageKeyNew != wantNew {
			t.Fatalf("storage keys %q %q, expected %q %q", e.StorageKeyOld, e.StorageKeyNew, wantOld, wantNew)
		}
		got := readInAnotherProcess(t, name, e.StorageKeyOld, e.StorageKeyNew, "memwatch/6/0/0")
		if !bytes.Equal(got[0], v0) || !bytes.Equal(got[1], v1) || got[2] != nil {
			t.Fatalf("another process read old %d bytes (exact: %v), new %d bytes (exact: %v), missing key %x",
				len(got[0]), bytes.Equal(got[0], v0), len(got[1]), bytes.Equal(got[1], v1), got[2])
		}

		// The next change: its old value is the previous new one.
		buf[size-1] ^= 0xff
		v2 := append([]byte{}, buf...)
		e2 := checkOneEvent(t, w, id, []memwatch.ByteRange{{Offset: size - 1, Len: 1}})
		if e2.StorageKeyOld != e.StorageKeyNew || e2.StorageKeyNew != fmt.Sprintf("memwatch/6/%d/2", id) {
			t.Fatalf("second event keys %q %q", e2.StorageKeyOld, e2.StorageKeyNew)
		}
		s := openStore(t, name)
		if !bytes.Equal(mustGet(t, s, e2.StorageKeyOld), v1) || !bytes.Equal(mustGet(t, s, e2.StorageKeyNew), v2) {
			t.Fatal("same process: second event's values differ")
		}
		if v, ok, err := s.Get("memwatch/6/0/0"); v != nil || ok || err != nil {
			t.Fatalf("missing key: %x %v %v", v, ok, err)
		}

		// Small regions keep their values in the event.
		sid, err := w.Watch(small, "small")
		if err != nil {
			t.Fatal(err)
		}
		small[3] = 7
		es := checkOneEvent(t, w, sid, []memwatch.ByteRange{{Offset: 3, Len: 1}})
		if es.StorageKeyOld != "" || es.StorageKeyNew != "" || len(es.OldValue) != 16 || es.NewValue[3] != 7 {
			t.Fatalf("small region: keys %q %q values %x %x", es.StorageKeyOld, es.StorageKeyNew, es.OldValue, es.NewValue)
		}

		// Cleared: no more keys, and still no values.
		if err := w.ClearValueStore(); err != nil {
			t.Fatalf("ClearValueStore: %v", err)
		}
		buf[0] ^= 0xff
		e3 := checkOneEvent(t, w, id, []memwatch.ByteRange{{Offset: 0, Len: 1}})
		if e3.StorageKeyOld != "" || e3.StorageKeyNew != "" || e3.OldValue != nil || e3.NewValue != nil {
			t.Fatalf("after ClearValueStore: keys %q %q, values %d %d bytes",
				e3.StorageKeyOld, e3.StorageKeyNew, len(e3.OldValue), len(e3.NewValue))
		}
		if _, ok, _ := s.Get(fmt.Sprintf("memwatch/6/%d/3", id)); ok {
			t.Fatal("a value was stored after ClearValueStore")
		}
	})
}

func TestSetValueStoreAfterWatchPutsTheCurrentValue(t *testing.T) {
	name := storeName(t, "late")
	buf := make([]byte, 10000) // a Go heap slice; poll
	for i := range buf {
		buf[i] = 'x'
	}
	w := newWatcher(t, memwatch.BackendPoll, memwatch.WithMaxValueBytes(100))
	id, err := w.Watch(buf, "late")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.SetValueStore(name, 1<<20); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, name)
	if v := mustGet(t, s, fmt.Sprintf("memwatch/6/%d/0", id)); !bytes.Equal(v, bytes.Repeat([]byte("x"), 10000)) {
		t.Fatalf("value put at SetValueStore: %d bytes", len(v))
	}
	buf[0] = 'y'
	e := checkOneEvent(t, w, id, []memwatch.ByteRange{{Offset: 0, Len: 1}})
	if !bytes.Equal(mustGet(t, s, e.StorageKeyOld), bytes.Repeat([]byte("x"), 10000)) ||
		!bytes.Equal(mustGet(t, s, e.StorageKeyNew), append([]byte("y"), bytes.Repeat([]byte("x"), 9999)...)) {
		t.Fatal("values of the first event")
	}
}

func TestValueStoreErrors(t *testing.T) {
	missing := fmt.Sprintf("mw-go-missing-%d", os.Getpid())
	_, err := memwatch.OpenStore(missing)
	var se *memwatch.StoreError
	if !errors.Is(err, fs.ErrNotExist) || !errors.As(err, &se) || se.Code != -1 || se.Name != missing || se.Message == "" {
		t.Fatalf("OpenStore of a missing store: %#v", err)
	}
	if err := memwatch.UnlinkStore(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("UnlinkStore of a missing store: %v", err)
	}
	if _, err := memwatch.OpenStore("bad/name"); err == nil || errors.Is(err, fs.ErrNotExist) || !errors.As(err, &se) || se.Code != -2 {
		t.Fatalf("OpenStore(bad/name): %v", err)
	}

	w := newWatcher(t, memwatch.BackendPoll)
	expectCode(t, w.SetValueStore("", 1<<20), memwatch.ErrInvalidArgument, "empty store name")
	expectCode(t, w.SetValueStore("bad/name", 1<<20), memwatch.ErrInvalidArgument, "invalid store name")
	expectCode(t, w.SetValueStore("nul\x00name", 1<<20), memwatch.ErrInvalidArgument, "NUL in the store name")
	expectCode(t, w.SetValueStore(missing, -1), memwatch.ErrInvalidArgument, "negative capacity")
	expectCode(t, w.SetValueStore(missing, 0), memwatch.ErrInvalidArgument, "capacity 0 and no such store")
	if err := w.ClearValueStore(); err != nil {
		t.Fatalf("ClearValueStore without a store: %v", err)
	}

	name := storeName(t, "errors")
	if err := w.SetValueStore(name, 1<<20); err != nil {
		t.Fatal(err)
	}
	s, err := memwatch.OpenStore(name)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name() != name {
		t.Fatalf("Name() %q", s.Name())
	}
	if _, _, err := s.Get(""); err == nil || !errors.As(err, &se) || se.Code != -2 {
		t.Fatalf("Get of an empty key: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, _, err := s.Get("k"); !errors.Is(err, fs.ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}

	w.Close()
	expectCode(t, w.SetValueStore(name, 1<<20), memwatch.ErrClosed, "SetValueStore after Close")
	expectCode(t, w.ClearValueStore(), memwatch.ErrClosed, "ClearValueStore after Close")
}
