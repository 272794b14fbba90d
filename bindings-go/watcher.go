package memwatch

/*
#include <stdlib.h>
#include "memwatch_go.h"
*/
import "C"

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// Watcher watches memory regions and reports their changes. Create one with
// NewWatcher and release it with Close. All methods are safe for concurrent
// use and may be called from inside the watcher's own callback. After Close,
// every method returns an ErrClosed error (or, for Stats and Events, a closed
// result) and never panics.
type Watcher struct {
	s *watcherState
}

// watcherState is everything a Watcher owns. It is reachable from the handle
// registry while open (so callbacks find it), whereas the Watcher wrapper is
// only reachable from user code: a forgotten, unreachable Watcher is closed by
// its finalizer.
type watcherState struct {
	handle uintptr // key in the registry; the callback's C user_ctx

	mu      sync.Mutex
	ptr     *C.memwatch_watcher_t      // freed when closed and no operation uses it
	closed  bool                       // no new operation may start
	active  int                        // operations using ptr right now
	regions map[RegionID]*pinnedRegion // nil once Close has unwatched everything
	stashed []ChangeEvent              // delivered while neither callback nor channel was set

	cbMu     sync.Mutex // serialises SetCallback and Events
	nativeCB bool       // the C trampoline is installed (guarded by cbMu)

	cb    atomic.Pointer[func(ChangeEvent)]
	queue atomic.Pointer[eventQueue]

	// closeDone is closed when Close has finished its work (everything
	// unwatched and unpinned). Calls that find the watcher closed wait for it,
	// so "closed" is never observed half-done, except on the delivery thread,
	// where waiting could deadlock with a Close joining that thread.
	closeDone chan struct{}
	// deliveryTid is the kernel thread id of the delivery thread (0 until
	// the first callback): Go code runs there only inside callbacks.
	deliveryTid atomic.Int32

	// lateCallbackErrors counts callback panics that could not be reported
	// to the engine because the watcher was already closed.
	lateCallbackErrors atomic.Uint64
}

// pinnedRegion keeps a watched slice's memory pinned until it is unwatched.
type pinnedRegion struct {
	pinner runtime.Pinner
	start  uintptr
	size   int
}

// registry maps the integer handles given to C to the watcher states; C never
// holds a Go pointer.
var registry = struct {
	sync.RWMutex
	next uintptr
	m    map[uintptr]*watcherState
}{m: map[uintptr]*watcherState{}}

func register(s *watcherState) {
	registry.Lock()
	registry.next++
	s.handle = registry.next
	registry.m[s.handle] = s
	registry.Unlock()
}

func unregister(s *watcherState) {
	registry.Lock()
	delete(registry.m, s.handle)
	registry.Unlock()
}

func lookup(handle uintptr) *watcherState {
	registry.RLock()
	defer registry.RUnlock()
	return registry.m[handle]
}

// NewWatcher creates a watcher. With no options it uses BackendAuto and the
// engine's defaults. It fails with an ErrInvalidArgument error for a bad option
// and an ErrUnsupported error for a backend this system lacks.
func NewWatcher(opts ...Option) (*Watcher, error) {
	cfg := config{backend: BackendAuto}
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	var copts C.memwatch_options_t
	C.memwatch_options_default(&copts)
	copts.adapter_id = C.MEMWATCH_ADAPTER_GO
	if ms, ok := cfg.millis("writable window", cfg.writableWindow); ok {
		copts.writable_window_ms = C.uint32_t(ms)
	}
	if ms, ok := cfg.millis("poll interval", cfg.pollInterval); ok {
		copts.poll_interval_ms = C.uint32_t(ms)
	}
	if n, ok := cfg.count("max value bytes", cfg.maxValueBytes); ok {
		copts.max_value_bytes = C.uint64_t(n)
	}
	if n, ok := cfg.count("preview bytes", cfg.previewBytes); ok {
		copts.preview_bytes = C.uint64_t(n)
	}
	if n, ok := cfg.count("ring capacity", cfg.ringCapacity); ok {
		copts.ring_capacity = C.uint64_t(n)
	}
	if cfg.snapshots != nil {
		if *cfg.snapshots {
			copts.snapshots = 1
		} else {
			copts.snapshots = 0
		}
	}
	if cfg.locateWriters {
		copts.locate_writers = 1
	}
	if n, ok := cfg.count("stack depth", cfg.stackDepth); ok {
		copts.stack_depth = C.uint32_t(min(n, 1<<31))
	}
	if cfg.err != nil {
		return nil, cfg.err
	}
	backend, err := cString("new watcher", "backend name", string(cfg.backend))
	if err != nil {
		return nil, err
	}
	defer freeCString(backend)
	copts.backend = backend

	var ptr *C.memwatch_watcher_t
	if _, err := callC("new watcher", func() C.int { return C.memwatch_watcher_new(&copts, &ptr) }); err != nil {
		return nil, err
	}
	s := &watcherState{ptr: ptr, regions: map[RegionID]*pinnedRegion{}, closeDone: make(chan struct{})}
	register(s)
	w := &Watcher{s: s}
	runtime.SetFinalizer(w, func(w *Watcher) { w.s.close() })
	return w, nil
}

// acquire starts an operation on the native watcher: it returns the pointer,
// valid until the matching release, or ErrClosed once Close has finished.
func (s *watcherState) acquire(op string) (*C.memwatch_watcher_t, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.waitClosed()
		return nil, errClosed(op)
	}
	s.active++
	ptr := s.ptr
	s.mu.Unlock()
	return ptr, nil
}

// onDeliveryThread reports whether the caller runs inside this watcher's callback.
func (s *watcherState) onDeliveryThread() bool {
	tid := s.deliveryTid.Load()
	return tid != 0 && tid == int32(syscall.Gettid())
}

// waitClosed waits until Close has finished, unless called from the
// watcher's own callback (see closeDone).
func (s *watcherState) waitClosed() {
	if !s.onDeliveryThread() {
		<-s.closeDone
	}
}

// release ends an operation; the last one to end after Close frees the
// native handle.
func (s *watcherState) release() {
	s.mu.Lock()
	s.active--
	closed := s.closed
	var ptr *C.memwatch_watcher_t
	if closed && s.active == 0 {
		ptr, s.ptr = s.ptr, nil
	}
	s.mu.Unlock()
	if ptr != nil {
		// Allowed from inside the watcher's own callback too (header).
		C.memwatch_watcher_free(ptr)
	}
	if closed {
		// Closed while this operation ran: return only once Close is done.
		s.waitClosed()
	}
}

// close unwatches everything now (memwatch_watcher_close, which also stops
// the delivery thread, after the callback running now returns unless close
// is called from that callback), then unpins the regions and ends the event
// channel. The native handle itself is freed when the last operation still
// using it (possibly this very close) ends. Idempotent: a second call waits
// for the first to finish. It never waits for another Go call to end.
func (s *watcherState) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.waitClosed()
		return
	}
	s.closed = true
	s.active++ // close's own use of ptr
	ptr := s.ptr
	s.mu.Unlock()

	// memwatch_watcher_close only fails for a NULL handle, which ptr is not.
	C.memwatch_watcher_close(ptr)
	unregister(s)

	s.mu.Lock()
	regions := s.regions
	s.regions = nil
	s.stashed = nil
	s.mu.Unlock()
	for _, r := range regions {
		unpin(r)
	}
	if q := s.queue.Load(); q != nil {
		q.close()
	}
	close(s.closeDone)
	// The delivery thread is gone (or about to return from the callback that
	// called Close); forget its id so that a thread reusing it is not taken
	// for it.
	s.deliveryTid.Store(0)
	s.release()
}

// WatchOption configures one Watch call.
type WatchOption func(*watchConfig)

type watchConfig struct {
	metadata    string
	hasMetadata bool
}

// WithMetadata attaches a string to the region; every event of the region
// carries it in ChangeEvent.Metadata.
func WithMetadata(metadata string) WatchOption {
	return func(c *watchConfig) { c.metadata, c.hasMetadata = metadata, true }
}

// Watch starts watching the bytes of buf under the given name and returns the
// region's id. buf's memory is pinned (runtime.Pinner) until Unwatch or Close,
// so it stays valid even if the program drops every other reference to it.
//
// It fails with ErrInvalidArgument for an empty slice or a name containing a
// NUL byte, ErrOverlap when buf overlaps a region this watcher already
// watches, ErrReadOnly for read-only memory and ErrClosed after Close. See the
// package documentation on Go heap slices and the protect backend.
func (w *Watcher) Watch(buf []byte, name string, opts ...WatchOption) (RegionID, error) {
	const op = "watch"
	if len(buf) == 0 {
		return 0, errInvalid(op, "cannot watch an empty slice")
	}
	var wc watchConfig
	for _, o := range opts {
		if o != nil {
			o(&wc)
		}
	}
	cname, err := cString(op, "name", name)
	if err != nil {
		return 0, err
	}
	defer freeCString(cname)
	var cmeta *C.char
	if wc.hasMetadata {
		if cmeta, err = cString(op, "metadata", wc.metadata); err != nil {
			return 0, err
		}
		defer freeCString(cmeta)
	}
	s := w.s
	ptr, err := s.acquire(op)
	if err != nil {
		return 0, err
	}
	defer s.release()

	addr := unsafe.Pointer(&buf[0])
	r := &pinnedRegion{start: uintptr(addr), size: len(buf)}
	// Pin before the engine sees the address: from now on C keeps it.
	r.pinner.Pin(addr)
	var id C.uint32_t
	if _, err := callC(op, func() C.int {
		return C.memwatch_watcher_watch(ptr, addr, C.size_t(len(buf)), cname, cmeta, &id)
	}); err != nil {
		r.pinner.Unpin()
		return 0, err
	}
	trackWatched(r)
	s.mu.Lock()
	if s.regions == nil {
		// Close ran meanwhile and has already unwatched everything.
		s.mu.Unlock()
		unpin(r)
		return 0, errClosed(op)
	}
	s.regions[RegionID(id)] = r
	s.mu.Unlock()
	return RegionID(id), nil
}

// Unwatch stops watching a region and unpins its memory. It returns true if
// the region was watched by this watcher, false for an id that is unknown or
// already unwatched, and an ErrClosed error after Close (Close already
// unwatched everything).
func (w *Watcher) Unwatch(id RegionID) (bool, error) {
	const op = "unwatch"
	s := w.s
	ptr, err := s.acquire(op)
	if err != nil {
		return false, err
	}
	defer s.release()
	rc, err := callC(op, func() C.int { return C.memwatch_watcher_unwatch(ptr, C.uint32_t(id)) })
	if err != nil {
		return false, err
	}
	if rc != 1 {
		return false, nil
	}
	s.mu.Lock()
	r := s.regions[id]
	delete(s.regions, id)
	s.mu.Unlock()
	if r != nil {
		unpin(r)
	}
	return true, nil
}

// unpin releases a region the engine no longer watches.
func unpin(r *pinnedRegion) {
	untrackWatched(r)
	r.pinner.Unpin()
}

// CheckChanges detects changes now and returns them, oldest first. Every write
// made before the call is in the result, or (with a callback or the Events
// channel set) has been handed to them before CheckChanges returns, in which
// case the result is empty. It returns an ErrClosed error after Close. If the
// watcher is closed while CheckChanges waits for the callback (for example
// by the callback itself), it stops waiting: Close drops undelivered events,
// and a callback still running may not have returned yet.
func (w *Watcher) CheckChanges() ([]ChangeEvent, error) {
	const op = "check changes"
	s := w.s
	ptr, err := s.acquire(op)
	if err != nil {
		return nil, err
	}
	defer s.release()
	var evs *C.memwatch_change_event_t
	var n C.size_t
	if _, err := callC(op, func() C.int { return C.memwatch_watcher_check_changes(ptr, &evs, &n) }); err != nil {
		return nil, err
	}
	return s.takeEvents(evs, n), nil
}

// takeEvents converts and frees a C event array and adds the events stashed
// while no receiver was set, oldest first.
func (s *watcherState) takeEvents(evs *C.memwatch_change_event_t, n C.size_t) []ChangeEvent {
	out := convertEvents(evs, n)
	C.memwatch_events_free(evs, n)
	s.mu.Lock()
	stashed := s.stashed
	s.stashed = nil
	s.mu.Unlock()
	if len(stashed) > 0 {
		out = append(stashed, out...)
		sort.SliceStable(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	}
	return out
}

// waitSlice is how long one native wait of CheckChangesContext lasts before
// it looks at its context again (the bound on how late a cancellation is seen).
const waitSlice = 10 * time.Millisecond

// CheckChangesContext is CheckChanges whose wait for the callback (or the
// Events channel) to receive the events ends when ctx is done: it then
// returns ctx.Err() (context.Canceled or context.DeadlineExceeded) within
// about 10 ms. Giving up loses nothing: the callback still receives every
// event, later. Without a receiver it never waits; a ctx already done
// before the call returns ctx.Err() without detecting anything.
func (w *Watcher) CheckChangesContext(ctx context.Context) ([]ChangeEvent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	const op = "check changes"
	s := w.s
	ptr, err := s.acquire(op)
	if err != nil {
		return nil, err
	}
	defer s.release()
	var evs *C.memwatch_change_event_t
	var n C.size_t
	var p *C.memwatch_pending_t
	if _, err := callC(op, func() C.int { return C.memwatch_watcher_check_changes_start(ptr, &evs, &n, &p) }); err != nil {
		return nil, err
	}
	if p != nil {
		defer C.memwatch_pending_free(p)
		slice := C.uint32_t(waitSlice / time.Millisecond)
		for {
			rc, err := callC(op, func() C.int { return C.memwatch_pending_wait(p, slice, &evs, &n) })
			if err != nil {
				return nil, err
			}
			if rc == 1 {
				break
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
	}
	return s.takeEvents(evs, n), nil
}

// ExitFlushTimeout is the bound every binding's exit hook puts on delivering
// pending changes at exit (the engine's EXIT_FLUSH_TIMEOUT, read from
// memwatch_exit_flush_timeout_ms); a good deadline for Flush at the end of
// main.
var ExitFlushTimeout = time.Duration(C.memwatch_exit_flush_timeout_ms()) * time.Millisecond

// Flush hands the changes made so far to the callback and the Events
// channel, waiting until they received them or ctx is done (then it returns
// ctx.Err(); the events still arrive later). Without a receiver it detects
// the changes and keeps them for the next CheckChanges.
//
// Go has no exit hook: a program that sets a callback, writes and returns
// from main loses what was not yet delivered, as does Close. Call Flush (or
// CheckChanges) before leaving, for example
//
//	ctx, cancel := context.WithTimeout(context.Background(), memwatch.ExitFlushTimeout)
//	defer cancel()
//	defer w.Flush(ctx)
func (w *Watcher) Flush(ctx context.Context) error {
	events, err := w.CheckChangesContext(ctx)
	if len(events) > 0 {
		s := w.s
		s.mu.Lock()
		s.stashed = append(events, s.stashed...)
		s.mu.Unlock()
	}
	return err
}

// SetCallback makes fn receive every change, on the watcher's delivery thread,
// one call at a time; nil removes it (CheckChanges returns events again unless
// the Events channel is in use). A panic in fn is recovered, printed to
// stderr and counted in Stats().CallbackErrors. fn may call the watcher's
// methods, including Close. It returns an ErrClosed error after Close.
func (w *Watcher) SetCallback(fn func(ChangeEvent)) error {
	const op = "set callback"
	s := w.s
	s.cbMu.Lock()
	defer s.cbMu.Unlock()
	ptr, err := s.acquire(op)
	if err != nil {
		return err
	}
	defer s.release()
	if fn != nil {
		// Store first, then install: the trampoline must find fn.
		s.cb.Store(&fn)
		return s.syncNative(op, ptr)
	}
	// Forget fn, then uninstall the trampoline (unless the channel still
	// needs it). An event delivered in between finds no receiver and is
	// stashed for the next CheckChanges, so nothing is lost.
	old := s.cb.Swap(nil)
	if err := s.syncNative(op, ptr); err != nil {
		s.cb.Store(old)
		return err
	}
	return nil
}

// syncNative installs the C trampoline when a callback or the channel is
// set, and removes it when neither is. Caller holds cbMu and an operation.
func (s *watcherState) syncNative(op string, ptr *C.memwatch_watcher_t) error {
	want := s.cb.Load() != nil || s.queue.Load() != nil
	if want == s.nativeCB {
		return nil
	}
	var err error
	if want {
		_, err = callC(op, func() C.int { return C.memwatch_go_set_callback(ptr, C.uintptr_t(s.handle)) })
	} else {
		_, err = callC(op, func() C.int { return C.memwatch_go_clear_callback(ptr) })
	}
	if err == nil {
		s.nativeCB = want
	}
	return err
}

// Events returns a channel that receives every change from now on (alongside
// the callback, if one is set; CheckChanges then returns no events). Every
// call returns the same channel. Events wait in an unbounded queue until
// received, so none is lost and the engine never blocks on a slow reader.
// After Close the channel receives the events queued before Close and is then
// closed. On a closed watcher Events returns an already closed channel.
func (w *Watcher) Events() <-chan ChangeEvent {
	s := w.s
	s.cbMu.Lock()
	defer s.cbMu.Unlock()
	if q := s.queue.Load(); q != nil {
		return q.out
	}
	ptr, err := s.acquire("events")
	if err != nil {
		ch := make(chan ChangeEvent)
		close(ch)
		return ch
	}
	defer s.release()
	q := newEventQueue()
	s.queue.Store(q)
	if err := s.syncNative("events", ptr); err != nil {
		// Only an engine failure gets here; report it where it can be seen.
		fmt.Fprintf(os.Stderr, "memwatch: events channel: %v\n", err)
		s.queue.Store(nil)
		q.close()
	}
	return q.out
}

// Close stops watching everything and unpins the watched memory before it
// returns, drops the events not yet delivered, stops the delivery thread
// (after a callback running now returns, unless Close is called from that
// callback, which is allowed) and closes the Events channel after the events
// already queued on it. Calls in flight on other goroutines end with an
// ErrClosed error or their normal result. Close is idempotent and always
// returns nil.
func (w *Watcher) Close() error {
	w.s.close()
	runtime.KeepAlive(w)
	return nil
}

// Stats describes one watcher; Faults and DroppedWheres are process-wide.
type Stats struct {
	// Backend is the mechanism this watcher's regions use (never "auto").
	Backend Backend
	// BackendReason says why a better backend was not used; empty if it was.
	BackendReason string
	// Regions is the number of regions watched.
	Regions int
	// ProtectedPages is the number of pages the engine keeps write-protected (all watchers).
	ProtectedPages int
	// Faults counts the write faults the engine handled since it started (all watchers).
	Faults uint64
	// Events counts the events this watcher produced.
	Events uint64
	// DroppedWheres counts faults whose writer was lost to a full ring (all watchers).
	DroppedWheres uint64
	// NativeBytes is the native memory held for this watcher's regions.
	NativeBytes uint64
	// SnapshotBytes is the part of NativeBytes that holds snapshots.
	SnapshotBytes uint64
	// PendingEvents counts events waiting for CheckChanges or the callback.
	PendingEvents int
	// CallbackErrors counts callback calls that panicked.
	CallbackErrors uint64
	// LatencyP50 is the median first-write-to-delivery latency.
	LatencyP50 time.Duration
	// LatencyP99 is the 99th percentile of the same.
	LatencyP99 time.Duration
	// FallbackRegions counts writewatch regions userfaultfd refused, which
	// are watched by protect instead (the reason is in BackendReason).
	FallbackRegions uint64
	// GoneRegions counts regions dropped because their memory was unmapped
	// while watched (process-wide).
	GoneRegions uint64
	// SharedRegions counts regions in shared memory (MAP_SHARED) watched
	// with protect or writewatch, which cannot see other processes' writes
	// (the reason is in BackendReason).
	SharedRegions uint64
	// ReprotectFailures counts protect pages that could not be made
	// read-only again (near vm.max_map_count; process-wide). No write is
	// missed: such a page is polled until it can be re-armed.
	ReprotectFailures uint64
	// CoalescedEvents counts changes merged into an event already pending
	// for the same region because the queue held 1024 events; the merged
	// event carries them (ChangeEvent.Coalesced).
	CoalescedEvents uint64
	// HotPages counts pages written nonstop that the engine left writable
	// and polls every poll interval instead (their writer is not located);
	// process-wide, 0 when nothing is written nonstop.
	HotPages int
	// Closed is true when the watcher was closed; the other fields are then
	// zero except CallbackErrors.
	Closed bool
}

// Stats returns the watcher's counters. On a closed watcher it returns a
// Stats with Closed set.
func (w *Watcher) Stats() Stats {
	s := w.s
	ptr, err := s.acquire("stats")
	if err != nil {
		return Stats{Closed: true, CallbackErrors: s.lateCallbackErrors.Load()}
	}
	defer s.release()
	var st C.memwatch_stats_t
	if _, err := callC("stats", func() C.int { return C.memwatch_watcher_get_stats(ptr, &st) }); err != nil {
		// The C ABI fails here only for a NULL watcher, which ptr never is;
		// should it happen anyway, say so rather than return made-up numbers.
		fmt.Fprintf(os.Stderr, "memwatch: %v\n", err)
		return Stats{CallbackErrors: s.lateCallbackErrors.Load()}
	}
	return Stats{
		Backend:           Backend(goStringOrEmpty(st.backend)),
		BackendReason:     C.GoString(&st.backend_reason[0]),
		Regions:           int(st.regions),
		ProtectedPages:    int(st.protected_pages),
		Faults:            uint64(st.faults),
		Events:            uint64(st.events),
		DroppedWheres:     uint64(st.dropped_wheres),
		NativeBytes:       uint64(st.native_bytes),
		SnapshotBytes:     uint64(st.snapshot_bytes),
		PendingEvents:     int(st.pending_events),
		CallbackErrors:    uint64(st.callback_errors) + s.lateCallbackErrors.Load(),
		LatencyP50:        time.Duration(st.latency_p50_ns),
		LatencyP99:        time.Duration(st.latency_p99_ns),
		FallbackRegions:   uint64(st.fallback_regions),
		GoneRegions:       uint64(st.gone_regions),
		SharedRegions:     uint64(st.shared_regions),
		ReprotectFailures: uint64(st.reprotect_failures),
		CoalescedEvents:   uint64(st.coalesced_events),
		HotPages:          int(st.hot_pages),
	}
}

// memwatchGoDeliver is the callback the C trampoline calls on the delivery
// thread, with the registry handle of the watcher.
//
//export memwatchGoDeliver
func memwatchGoDeliver(ev *C.memwatch_change_event_t, handle C.uintptr_t) {
	s := lookup(uintptr(handle))
	if s == nil {
		return // closed while this event was on its way
	}
	s.deliveryTid.Store(int32(syscall.Gettid()))
	e := convertEvent(ev)
	fn := s.cb.Load()
	q := s.queue.Load()
	if fn != nil {
		if q != nil {
			s.runCallback(*fn, cloneEvent(e))
		} else {
			s.runCallback(*fn, e)
		}
	}
	if q != nil {
		q.push(e)
	}
	if fn == nil && q == nil {
		s.mu.Lock()
		s.stashed = append(s.stashed, e)
		s.mu.Unlock()
	}
}

// runCallback calls fn, recovering and counting a panic.
func (s *watcherState) runCallback(fn func(ChangeEvent), e ChangeEvent) {
	defer func() {
		if r := recover(); r != nil {
			if ptr, err := s.acquire("callback"); err == nil {
				C.memwatch_watcher_report_callback_error(ptr)
				s.release()
			} else {
				s.lateCallbackErrors.Add(1)
			}
			fmt.Fprintf(os.Stderr, "memwatch: callback panicked on change of %q: %v\n", e.VariableName, r)
		}
	}()
	fn(e)
}

// cloneEvent deep-copies e so two receivers never share slices.
func cloneEvent(e ChangeEvent) ChangeEvent {
	c := e
	c.ChangedRanges = append([]ByteRange{}, e.ChangedRanges...)
	c.OldPreview = append([]byte{}, e.OldPreview...)
	c.NewPreview = append([]byte{}, e.NewPreview...)
	if e.OldValue != nil {
		c.OldValue = append([]byte{}, e.OldValue...)
	}
	if e.NewValue != nil {
		c.NewValue = append([]byte{}, e.NewValue...)
	}
	return c
}
