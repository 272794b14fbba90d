package memwatch_test

// Watcher.RecordTo: events recorded into SQLite and read back (by the
// sqlite3 shell) with exact old/new bytes; hostile names; errors.

import (
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	memwatch "github.com/memwatch/memwatch/bindings-go"
)

// sqliteLines runs `sqlite3 db sql` and returns its output lines.
func sqliteLines(t *testing.T, db, sql string) []string {
	t.Helper()
	out, err := exec.Command("sqlite3", db, sql).CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3: %v: %s", err, out)
	}
	s := strings.TrimRight(string(out), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func pollWatcher(t *testing.T) *memwatch.Watcher {
	t.Helper()
	w, err := memwatch.NewWatcher(memwatch.WithBackend(memwatch.BackendPoll))
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestRecordToSQLiteExactBytes(t *testing.T) {
	db := filepath.Join(t.TempDir(), "events.db")
	w := pollWatcher(t)
	defer w.Close()
	buf := []byte("abcd")
	if _, err := w.Watch(buf, "gobuf", memwatch.WithMetadata("meta")); err != nil {
		t.Fatal(err)
	}
	rec, err := w.RecordTo(db)
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	buf[1] = 'X'
	if evs, err := w.CheckChanges(); err != nil || len(evs) != 1 {
		t.Fatalf("%v %v", evs, err)
	}
	buf[3] = 0
	if evs, err := w.CheckChanges(); err != nil || len(evs) != 1 {
		t.Fatalf("%v %v", evs, err)
	}
	if ok, err := rec.Flush(10 * time.Second); !ok || err != nil {
		t.Fatalf("flush: %v %v", ok, err)
	}
	st := rec.Stats()
	if st.Written != 2 || st.Dropped != 0 || st.Queued != 0 || !st.Connected || st.RecordingID == 0 {
		t.Fatalf("stats %+v", st)
	}
	got := sqliteLines(t, db, "SELECT variable_name, hex(old_value), hex(new_value), changed_ranges, metadata, adapter FROM memwatch_events ORDER BY seq")
	want := []string{"gobuf|61626364|61586364|[[1,1]]|meta|6", "gobuf|61586364|61586300|[[3,1]]|meta|6"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("rows\n%q\nwant\n%q", got, want)
	}
	pid := sqliteLines(t, db, "SELECT pid FROM memwatch_recordings WHERE recording_id = "+strconv.FormatInt(st.RecordingID, 10))
	if len(pid) != 1 || pid[0] != strconv.Itoa(os.Getpid()) {
		t.Fatalf("pid %v", pid)
	}
	rec.Close()
	rec.Close()
	if !rec.Stats().Closed {
		t.Fatal("stats after close")
	}
	if _, err := rec.Flush(time.Second); !errors.Is(err, memwatch.ErrClosed) {
		t.Fatalf("flush after close: %v", err)
	}
}

func TestRecordToHostileNames(t *testing.T) {
	db := filepath.Join(t.TempDir(), "events.db")
	w := pollWatcher(t)
	defer w.Close()
	names := []string{`it's "q"`, "x'); DROP TABLE memwatch_events; --", "ünï\U0010ffff"}
	bufs := make([][]byte, len(names))
	for i, n := range names {
		bufs[i] = make([]byte, 4)
		if _, err := w.Watch(bufs[i], n, memwatch.WithMetadata("m:"+n)); err != nil {
			t.Fatal(err)
		}
	}
	rec, err := w.RecordTo("sqlite:" + db)
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	for _, b := range bufs {
		b[0] = 0x80
	}
	if evs, err := w.CheckChanges(); err != nil || len(evs) != len(names) {
		t.Fatalf("%v %v", evs, err)
	}
	if ok, _ := rec.Flush(10 * time.Second); !ok {
		t.Fatal("flush timed out")
	}
	got := sqliteLines(t, db, "SELECT hex(variable_name_bytes) || '|' || hex(metadata_bytes) || '|' || hex(new_value) FROM memwatch_events")
	var want []string
	for _, n := range names {
		want = append(want, strings.ToUpper(hex.EncodeToString([]byte(n))+"|"+hex.EncodeToString([]byte("m:"+n)))+"|80000000")
	}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("rows\n%q\nwant\n%q", got, want)
	}
}

func TestRecordToErrors(t *testing.T) {
	w := pollWatcher(t)
	for _, bad := range []string{"", "mysql://localhost/x", "http://example.invalid/", "a\x00b"} {
		if _, err := w.RecordTo(bad); !errors.Is(err, memwatch.ErrInvalidArgument) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	_, err := w.RecordTo("/nonexistent-memwatch-dir/x/events.db")
	if !errors.Is(err, memwatch.ErrDatabase) || !strings.Contains(err.Error(), "nonexistent") {
		t.Errorf("missing dir: %v", err)
	}
	_, err = w.RecordTo("postgresql://memwatch@127.0.0.1:1/memwatch")
	if !errors.Is(err, memwatch.ErrDatabase) || !strings.Contains(err.Error(), "PostgreSQL") {
		t.Errorf("unreachable: %v", err)
	}
	rec, err := w.RecordTo(filepath.Join(t.TempDir(), "ok.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rec.Flush(-time.Second); !errors.Is(err, memwatch.ErrInvalidArgument) {
		t.Errorf("negative timeout: %v", err)
	}
	rec.Close()
	w.Close()
	if _, err := w.RecordTo("late.db"); !errors.Is(err, memwatch.ErrClosed) {
		t.Errorf("after close: %v", err)
	}
}
