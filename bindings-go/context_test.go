package memwatch_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	memwatch "github.com/memwatch/memwatch/bindings-go"
)

// slowWatcher is a poll watcher that only CheckChanges detects with (a
// minute's interval), whose callback blocks on release before recording.
func slowWatcher(t *testing.T) (w *memwatch.Watcher, buf []byte, release chan struct{}, seen func() []memwatch.ChangeEvent) {
	t.Helper()
	w = newWatcher(t, memwatch.BackendPoll, memwatch.WithPollInterval(time.Minute))
	buf = make([]byte, 8)
	if _, err := w.Watch(buf, "slow"); err != nil {
		t.Fatal(err)
	}
	release = make(chan struct{})
	var mu sync.Mutex
	var got []memwatch.ChangeEvent
	if err := w.SetCallback(func(e memwatch.ChangeEvent) {
		<-release
		mu.Lock()
		got = append(got, e)
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	return w, buf, release, func() []memwatch.ChangeEvent {
		mu.Lock()
		defer mu.Unlock()
		return append([]memwatch.ChangeEvent(nil), got...)
	}
}

func expectOneSlowEvent(t *testing.T, w *memwatch.Watcher, seen func() []memwatch.ChangeEvent) {
	t.Helper()
	// The event given up on is delivered all the same, exactly once.
	if evs, err := w.CheckChanges(); err != nil || len(evs) != 0 {
		t.Fatalf("CheckChanges after the release: %v, %v", evs, err)
	}
	got := seen()
	if len(got) != 1 || got[0].VariableName != "slow" || !bytes.Equal(got[0].NewValue, []byte{0, 0, 7, 0, 0, 0, 0, 0}) ||
		!bytes.Equal(got[0].OldValue, make([]byte, 8)) {
		t.Fatalf("expected one event slow 00->0000070000000000, got %+v", got)
	}
}

func TestCheckChangesContextDeadlineEndsTheWaitForASlowCallback(t *testing.T) {
	w, buf, release, seen := slowWatcher(t)
	defer w.Close()
	buf[2] = 7
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	evs, err := w.CheckChangesContext(ctx)
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) || evs != nil {
		t.Fatalf("expected context.DeadlineExceeded, got %v, %v", evs, err)
	}
	if took > 2*time.Second {
		t.Fatalf("cancellation took %v", took)
	}
	if n := len(seen()); n != 0 {
		t.Fatalf("the callback is still blocked, yet %d events were recorded", n)
	}
	close(release)
	expectOneSlowEvent(t, w, seen)
}

func TestCheckChangesContextCancelEndsTheWait(t *testing.T) {
	w, buf, release, seen := slowWatcher(t)
	defer w.Close()
	buf[2] = 7
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := w.CheckChangesContext(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("expected context.Canceled, got %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("cancellation took %v", took)
	}
	close(release)
	expectOneSlowEvent(t, w, seen)
	// A context done before the call: nothing detected, nothing waited for.
	if _, err := w.CheckChangesContext(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("expected context.Canceled for a done context, got %v", err)
	}
}

func TestCheckChangesContextWithoutCallbackReturnsTheEvents(t *testing.T) {
	w := newWatcher(t, memwatch.BackendPoll, memwatch.WithPollInterval(time.Minute))
	defer w.Close()
	buf := make([]byte, 8)
	if _, err := w.Watch(buf, "plain"); err != nil {
		t.Fatal(err)
	}
	buf[1] = 3
	evs, err := w.CheckChangesContext(context.Background())
	if err != nil || len(evs) != 1 || !bytes.Equal(evs[0].NewValue, []byte{0, 3, 0, 0, 0, 0, 0, 0}) || evs[0].Coalesced != 1 {
		t.Fatalf("expected one event 0003000000000000, got %+v, %v", evs, err)
	}
	w.Close()
	if _, err := w.CheckChangesContext(context.Background()); !errors.Is(err, memwatch.ErrClosed) {
		t.Fatalf("expected ErrClosed after Close, got %v", err)
	}
}

// exitChildEnv makes this test binary the program of the exit test (see
// TestMain): a callback, a write, and main ends with a deferred Flush.
const exitChildEnv = "MEMWATCH_GO_EXIT_CHILD"

func exitChild() int {
	w, err := memwatch.NewWatcher(memwatch.WithBackend(memwatch.BackendPoll), memwatch.WithPollInterval(time.Minute))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), memwatch.ExitFlushTimeout)
	defer cancel()
	defer w.Flush(ctx)
	data := make([]byte, 8)
	if _, err := w.Watch(data, "data"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := w.SetCallback(func(e memwatch.ChangeEvent) {
		fmt.Println("event", e.VariableName, hex.EncodeToString(e.NewValue))
	}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	data[2] = 0xab
	return 0 // no CheckChanges: only the deferred Flush delivers the change
}

func TestFlushAtTheEndOfMainDeliversPendingChanges(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), exitChildEnv+"=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v; stderr: %s", err, stderr.String())
	}
	if string(out) != "event data 0000ab0000000000\n" {
		t.Fatalf("child printed %q; stderr: %s", out, stderr.String())
	}
}
