package memwatch

// #include <stdlib.h>
// #include "memwatch_go.h"
import "C"

import (
	"runtime"
	"sync"
	"time"
)

// Recorder writes every change event of a watcher into SQLite or PostgreSQL
// from its own thread; made by [Watcher.RecordTo]. Close it when done (an
// unreachable Recorder is closed by a finalizer). Safe for concurrent use.
type Recorder struct {
	mu  sync.Mutex
	ptr *C.memwatch_recorder_t // nil once closed
}

// RecorderStats are a recorder's counters. Every event produced while it
// records is in exactly one of Written, Dropped, Abandoned or Queued.
type RecorderStats struct {
	// Written: events committed to the database.
	Written uint64
	// Dropped: events the full queue could not take (rows in memwatch_losses).
	Dropped uint64
	// Abandoned: events queued but unwritten when the recorder closed with the database down.
	Abandoned uint64
	// Queued: events waiting to be written.
	Queued uint64
	// Batches: transactions committed.
	Batches uint64
	// Reconnects: connections made again after a loss.
	Reconnects uint64
	// Connected: whether the recorder is connected now.
	Connected bool
	// RecordingID: this recording in memwatch_recordings.
	RecordingID int64
	// Closed: the recorder was closed (the counters are its last ones).
	Closed bool
}

// RecordTo records every change event of w (callback, channel or
// CheckChanges alike) into url: a file path or "sqlite:PATH" (SQLite, WAL
// mode) or "postgresql://user@host:port/db". The tables memwatch_recordings,
// memwatch_events and memwatch_losses are created if missing. Recording never
// blocks the watched program: a bounded queue feeds the recorder's own
// thread; events that do not fit are counted (RecorderStats.Dropped) and
// written to memwatch_losses. It fails with an ErrInvalidArgument error for a
// URL that is neither, an ErrDatabase error when the database cannot be
// opened or reached, and ErrClosed after Close.
func (w *Watcher) RecordTo(url string) (*Recorder, error) {
	const op = "record to"
	curl, err := cString(op, "url", url)
	if err != nil {
		return nil, err
	}
	defer freeCString(curl)
	s := w.s
	ptr, err := s.acquire(op)
	if err != nil {
		return nil, err
	}
	defer s.release()
	var rp *C.memwatch_recorder_t
	if _, err := callC(op, func() C.int { return C.memwatch_record_to(ptr, curl, &rp) }); err != nil {
		return nil, err
	}
	r := &Recorder{ptr: rp}
	runtime.SetFinalizer(r, (*Recorder).Close)
	return r, nil
}

// Stats returns the recorder's counters.
func (r *Recorder) Stats() RecorderStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ptr == nil {
		return RecorderStats{Closed: true}
	}
	var st C.memwatch_recorder_stats_t
	if _, err := callC("recorder stats", func() C.int { return C.memwatch_recorder_stats(r.ptr, &st) }); err != nil {
		return RecorderStats{}
	}
	return RecorderStats{
		Written:     uint64(st.written),
		Dropped:     uint64(st.dropped),
		Abandoned:   uint64(st.abandoned),
		Queued:      uint64(st.queued),
		Batches:     uint64(st.batches),
		Reconnects:  uint64(st.reconnects),
		Connected:   st.connected != 0,
		RecordingID: int64(st.recording_id),
	}
}

// Flush waits up to timeout until every event queued before the call is
// written: true if so, false on timeout (the database is down). It returns an
// ErrInvalidArgument error for a negative timeout and ErrClosed after Close.
func (r *Recorder) Flush(timeout time.Duration) (bool, error) {
	const op = "recorder flush"
	if timeout < 0 {
		return false, errInvalid(op, "timeout must not be negative")
	}
	ms := timeout.Milliseconds()
	if ms > 1<<31 {
		ms = 1 << 31
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ptr == nil {
		return false, &Error{Code: CodeClosed, Op: op, Message: "recorder is closed"}
	}
	rc, err := callC(op, func() C.int { return C.memwatch_recorder_flush(r.ptr, C.uint32_t(ms)) })
	return rc == 1, err
}

// Close stops recording after writing what is queued (trying up to 5 s while
// the database is down) and frees the recorder. Idempotent.
func (r *Recorder) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ptr != nil {
		C.memwatch_recorder_free(r.ptr)
		r.ptr = nil
	}
	runtime.SetFinalizer(r, nil)
}
