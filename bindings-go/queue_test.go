package memwatch_test

import (
	"encoding/binary"
	"testing"
	"time"

	memwatch "github.com/memwatch/memwatch/bindings-go"
)

// A watcher nobody drains stays bounded: past 1024 pending events, later
// changes of a region are merged into its pending event, whose Coalesced
// counts them; every change is in some event.
func TestUndrainedQueueMergesChangesIntoACoalescedEvent(t *testing.T) {
	w := newWatcher(t, memwatch.BackendPoll, memwatch.WithPollInterval(time.Millisecond))
	defer w.Close()
	buf := make([]byte, 8)
	if _, err := w.Watch(buf, "counter"); err != nil {
		t.Fatal(err)
	}
	var i uint64
	for w.Stats().CoalescedEvents < 50 {
		i++
		binary.LittleEndian.PutUint64(buf, i)
		time.Sleep(300 * time.Microsecond)
		if i > 1_000_000 {
			t.Fatalf("never coalesced: %+v", w.Stats())
		}
	}
	if got := w.Stats().PendingEvents; got != 1024 {
		t.Fatalf("pending events: expected 1024, got %d", got)
	}
	events, err := w.CheckChanges()
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1024 && len(events) != 1025 {
		t.Fatalf("expected 1024 or 1025 events, got %d", len(events))
	}
	u64 := binary.LittleEndian.Uint64
	if got := u64(events[0].OldValue); got != 0 {
		t.Fatalf("first old value: expected 0, got %d", got)
	}
	var merged uint64
	for k, e := range events {
		merged += uint64(e.Coalesced)
		if k > 0 && u64(e.OldValue) != u64(events[k-1].NewValue) {
			t.Fatalf("event %d: old value %d is not the previous new value %d", k, u64(e.OldValue), u64(events[k-1].NewValue))
		}
		if k < 1023 && e.Coalesced != 1 {
			t.Fatalf("event %d: coalesced %d before the queue was full", k, e.Coalesced)
		}
	}
	if got := u64(events[len(events)-1].NewValue); got != i {
		t.Fatalf("last new value: expected %d, got %d", i, got)
	}
	if events[len(events)-1].Coalesced < 2 && events[len(events)-2].Coalesced < 2 {
		t.Fatal("no event carries merged changes")
	}
	st := w.Stats()
	if merged != st.Events {
		t.Fatalf("events carry %d changes, stats counted %d", merged, st.Events)
	}
	if merged-uint64(len(events)) != st.CoalescedEvents {
		t.Fatalf("merged %d, stats say %d", merged-uint64(len(events)), st.CoalescedEvents)
	}
}
