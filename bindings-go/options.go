package memwatch

import (
	"fmt"
	"math"
	"time"
)

// Backend names a detection mechanism.
type Backend string

// The backends. All report the same events; they differ in cost and in what
// they know about the writer.
const (
	// BackendAuto picks the best mechanism available: "writewatch" where the
	// kernel has it, else "protect" (Stats().BackendReason says why). The
	// default.
	BackendAuto Backend = "auto"
	// BackendProtect write-protects the watched pages and catches the first
	// write to each page with a SIGSEGV handler. Events carry the writer's
	// thread id and instruction pointer. A system call writing into a
	// watched page fails with EFAULT instead of faulting.
	BackendProtect Backend = "protect"
	// BackendWriteWatch uses userfaultfd write-protection and PAGEMAP_SCAN
	// (Linux 6.7+): no signals, and system calls writing into watched memory
	// succeed and are reported. Events carry no writer. Where the kernel
	// lacks it, NewWatcher returns an ErrUnsupported error with the reason.
	BackendWriteWatch Backend = "writewatch"
	// BackendPoll hashes the watched regions every poll interval (and on each
	// CheckChanges). Works on any memory; knows nothing about the writer.
	BackendPoll Backend = "poll"
)

// Option configures NewWatcher.
type Option func(*config)

// config collects the options; err is the first invalid one.
type config struct {
	backend        Backend
	writableWindow *time.Duration
	pollInterval   *time.Duration
	maxValueBytes  *int
	previewBytes   *int
	ringCapacity   *int
	snapshots      *bool
	locateWriters  bool
	stackDepth     *int
	err            error
}

// setErr records the first invalid option.
func (c *config) setErr(format string, args ...any) {
	if c.err == nil {
		c.err = errInvalid("new watcher", fmt.Sprintf(format, args...))
	}
}

// WithBackend selects the detection mechanism (default BackendAuto). Unknown
// names make NewWatcher fail with an ErrInvalidArgument error.
func WithBackend(b Backend) Option {
	return func(c *config) { c.backend = b }
}

// WithWritableWindow sets how long a page stays writable after its first
// write before the protect backend re-protects and diffs it (default 5ms);
// writes inside the window coalesce into one event per region. The
// writewatch backend scans for written pages every tenth of it. The engine
// works in whole milliseconds: d is rounded up to the next millisecond.
func WithWritableWindow(d time.Duration) Option {
	return func(c *config) { c.writableWindow = &d }
}

// WithPollInterval sets how often the poll backend hashes its regions
// (default 100ms), rounded up to whole milliseconds.
func WithPollInterval(d time.Duration) Option {
	return func(c *config) { c.pollInterval = &d }
}

// WithMaxValueBytes sets the largest region whose whole old and new values an
// event carries (default 4096). Larger regions get nil OldValue/NewValue.
func WithMaxValueBytes(n int) Option {
	return func(c *config) { c.maxValueBytes = &n }
}

// WithPreviewBytes sets how many leading bytes of the old and new value every
// event carries as OldPreview/NewPreview (default 256).
func WithPreviewBytes(n int) Option {
	return func(c *config) { c.previewBytes = &n }
}

// WithRingCapacity sets the capacity of the process-wide fault ring (default
// 32768). It only takes effect when the engine starts, i.e. for the first
// watcher of the process. A full ring loses the writer's thread id, never a change.
func WithRingCapacity(n int) Option {
	return func(c *config) { c.ringCapacity = &n }
}

// WithSnapshots turns the per-region snapshots on (default) or off. Without
// them events carry no old value and one changed range covering the region
// (a poll region of 8 MiB or more: a range per run of changed pages), and
// the watcher uses less memory.
func WithSnapshots(on bool) Option {
	return func(c *config) { c.snapshots = &on }
}

// WithLocateWriters makes every event's Where name the writing thread, the
// function, file and line of the write and its Stack (resolved by the engine
// from DWARF, inlined calls expanded; Go frames it cannot name, in a binary
// built with -ldflags=-s -w, are named with runtime.CallersFrames). It needs BackendProtect: BackendAuto then picks it (Stats'
// BackendReason says so); BackendWriteWatch and BackendPoll are refused with an
// ErrInvalidArgument error. Only the first write to a page in its writable
// window is located (Where.UnattributedFaults counts the others merged in).
func WithLocateWriters(on bool) Option {
	return func(c *config) { c.locateWriters = on }
}

// WithStackDepth sets how many frames a located write captures, 1..32
// (default 8).
func WithStackDepth(n int) Option {
	return func(c *config) { c.stackDepth = &n }
}

// millis converts d to whole milliseconds for the C ABI, rounding up.
func (c *config) millis(name string, d *time.Duration) (uint32, bool) {
	if d == nil {
		return 0, false
	}
	if *d < 0 {
		c.setErr("%s must not be negative, got %v", name, *d)
		return 0, false
	}
	ms := (*d + time.Millisecond - 1) / time.Millisecond
	if ms > math.MaxUint32 {
		c.setErr("%s is too long: %v", name, *d)
		return 0, false
	}
	return uint32(ms), true
}

// count validates a byte count or capacity option.
func (c *config) count(name string, n *int) (uint64, bool) {
	if n == nil {
		return 0, false
	}
	if *n < 0 {
		c.setErr("%s must not be negative, got %d", name, *n)
		return 0, false
	}
	return uint64(*n), true
}
