//! Public value types: options, events, statistics and errors.

use std::fmt;
use std::time::Duration;

/// Identifies one watched region. Ids are unique for the life of the process
/// and never reused, so a stale id can never unwatch somebody else's region.
pub type RegionId = u32;

/// How a watcher detects writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// The best mechanism available: `writewatch` where the kernel has it,
    /// else `protect` (the reason is in [`Stats::backend_reason`]).
    Auto,
    /// `mprotect(PROT_READ)` + a SIGSEGV handler. Knows the writing thread
    /// and instruction pointer. A syscall writing into a watched page fails
    /// with EFAULT instead of faulting.
    Protect,
    /// userfaultfd write-protection (UFFD_FEATURE_WP_ASYNC) + PAGEMAP_SCAN
    /// (Linux 6.7+). No signal handler; system calls writing into watched
    /// memory succeed and are reported. No writer thread or IP. Selecting it
    /// where the kernel lacks it returns [`Error::Unsupported`] with the reason.
    WriteWatch,
    /// Snapshot + xxh3 every poll interval. Works on any memory.
    Poll,
}

impl Backend {
    /// Every backend, in the order bindings list them.
    pub const ALL: [Backend; 4] =
        [Backend::Auto, Backend::Protect, Backend::WriteWatch, Backend::Poll];

    /// The lower-case name used by every binding (`"auto"`, `"protect"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Protect => "protect",
            Backend::WriteWatch => "writewatch",
            Backend::Poll => "poll",
        }
    }

    /// Parses a backend name as produced by [`Backend::name`].
    pub fn from_name(name: &str) -> Result<Backend, Error> {
        match name {
            "auto" => Ok(Backend::Auto),
            "protect" => Ok(Backend::Protect),
            "writewatch" => Ok(Backend::WriteWatch),
            "poll" => Ok(Backend::Poll),
            other => Err(Error::InvalidArgument(format!(
                "unknown backend {other:?}: expected \"auto\", \"protect\", \"writewatch\" or \"poll\""
            ))),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Settings of one [`crate::Watcher`]. `Options::default()` gives the documented defaults.
#[derive(Clone, Debug)]
pub struct Options {
    /// Detection mechanism; default [`Backend::Auto`].
    pub backend: Backend,
    /// How long a page stays writable after its first write before it is
    /// re-protected and diffed (protect backend); default 5 ms. Writes inside
    /// the window coalesce into one event per region. The writewatch backend
    /// scans for written pages every tenth of it (0.5 ms by default) and
    /// coalesces the writes made within that tenth.
    pub writable_window: Duration,
    /// How often the poll backend hashes its regions; default 100 ms.
    pub poll_interval: Duration,
    /// Events carry the whole old and new value when the region is at most
    /// this many bytes; default 4096.
    pub max_value_bytes: usize,
    /// Bytes of old/new preview carried in every event; default 256.
    pub preview_bytes: usize,
    /// Capacity of the process-wide fault ring (entries), used when the
    /// engine starts; default 32 768 (1 MiB of address space, resident only
    /// as faults reach its pages). A full ring drops only the
    /// *where* of a fault, never the change.
    pub ring_capacity: usize,
    /// Keep a copy of each region to report old values and exact changed
    /// ranges; default true. Without snapshots an event carries the new value
    /// and one range covering the region (a poll region of 8 MiB or more:
    /// a range per run of changed pages), and `old_value` is `None`.
    pub snapshots: bool,
    /// Tag copied into every event: which language adapter made the watcher.
    /// See the `ADAPTER_*` constants.
    pub adapter_id: u32,
    /// Locate writers: each event's [`Where`] gets the writing thread's name,
    /// the source file, function and line of the write and a stack of up to
    /// `stack_depth` frames; default false. Needs the protect backend (`auto`
    /// then picks it and says so in [`Stats::backend_reason`]). Only the first
    /// write to a page in its writable window faults, so only it is located.
    pub locate_writers: bool,
    /// Most frames captured per located write (1..=[`MAX_STACK_DEPTH`]);
    /// default 8. Used only with `locate_writers`.
    pub stack_depth: usize,
}

/// Largest [`Options::stack_depth`].
pub const MAX_STACK_DEPTH: usize = crate::location::MAX_DEPTH;

/// Adapter ids used by the official bindings.
pub const ADAPTER_RUST: u32 = 0;
/// C ABI (libmemwatch).
pub const ADAPTER_C: u32 = 1;
/// Python package.
pub const ADAPTER_PYTHON: u32 = 2;
/// Node.js package.
pub const ADAPTER_NODE: u32 = 3;
/// Java package.
pub const ADAPTER_JAVA: u32 = 4;
/// C# package.
pub const ADAPTER_CSHARP: u32 = 5;
/// Go module.
pub const ADAPTER_GO: u32 = 6;
/// C++ API.
pub const ADAPTER_CPP: u32 = 7;

impl Options {
    /// Default [`Options::writable_window`]: 5 ms.
    pub const DEFAULT_WRITABLE_WINDOW: Duration = Duration::from_millis(5);
    /// Default [`Options::poll_interval`]: 100 ms.
    pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(100);
    /// Default [`Options::max_value_bytes`]: 4096.
    pub const DEFAULT_MAX_VALUE_BYTES: usize = 4096;
    /// Default [`Options::preview_bytes`]: 256.
    pub const DEFAULT_PREVIEW_BYTES: usize = 256;
    /// Default [`Options::ring_capacity`]: 32 768 entries.
    pub const DEFAULT_RING_CAPACITY: usize = 32_768;
    /// The longest window or interval [`Options::millis`] accepts: one day.
    pub const MAX_DURATION: Duration = Duration::from_secs(86_400);

    /// Checks the options a watcher would be made with: windows and
    /// intervals above zero, a ring capacity above 0.
    /// [`crate::Watcher::new`] calls it; bindings may call it earlier.
    pub fn validate(&self) -> Result<(), Error> {
        for (name, d) in
            [("writable_window", self.writable_window), ("poll_interval", self.poll_interval)]
        {
            if d.is_zero() {
                return Err(Error::InvalidArgument(format!("{name} must be > 0")));
            }
        }
        if self.ring_capacity == 0 {
            return Err(Error::InvalidArgument("ring_capacity must be > 0".into()));
        }
        if self.locate_writers && !(1..=MAX_STACK_DEPTH).contains(&self.stack_depth) {
            return Err(Error::InvalidArgument(format!(
                "stack_depth must be 1..={MAX_STACK_DEPTH}, got {}",
                self.stack_depth
            )));
        }
        Ok(())
    }

    /// Converts milliseconds given as a float (the bindings' unit) into a
    /// duration, rejecting what no duration can be: negative, NaN or
    /// infinite values, or more than [`Options::MAX_DURATION`].
    /// `name` is the option's name as the caller spells it, for the message.
    pub fn millis(name: &str, ms: f64) -> Result<Duration, Error> {
        if !ms.is_finite() || ms < 0.0 || ms > Self::MAX_DURATION.as_millis() as f64 {
            return Err(Error::InvalidArgument(format!(
                "{name} must be a finite number of milliseconds between 0 and 86400000, got {ms}"
            )));
        }
        Ok(Duration::from_secs_f64(ms / 1000.0))
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            backend: Backend::Auto,
            writable_window: Self::DEFAULT_WRITABLE_WINDOW,
            poll_interval: Self::DEFAULT_POLL_INTERVAL,
            max_value_bytes: Self::DEFAULT_MAX_VALUE_BYTES,
            preview_bytes: Self::DEFAULT_PREVIEW_BYTES,
            ring_capacity: Self::DEFAULT_RING_CAPACITY,
            snapshots: true,
            adapter_id: ADAPTER_RUST,
            locate_writers: false,
            stack_depth: 8,
        }
    }
}

/// One frame of a writer's stack (innermost first).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frame {
    /// Instruction address: the faulting instruction itself for the first
    /// frame, a return address minus one for callers.
    pub ip: u64,
    /// Path of the module (executable or shared library) holding `ip`; empty
    /// for code outside any module (JIT code, unless a resolver named it).
    pub module: String,
    /// `ip` relative to the module's load address (what `addr2line -e
    /// MODULE OFFSET` takes); the absolute address when there is no module.
    pub module_offset: u64,
    /// Function (demangled); empty without symbols.
    pub function: String,
    /// Source file; empty without debug info.
    pub file: String,
    /// Source line; 0 without debug info.
    pub line: u32,
    /// This frame was inlined into the next one (same `ip`).
    pub inlined: bool,
}

/// Where a change was made, as far as the backend can tell.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Where {
    /// Kernel thread id (gettid) of the thread whose write faulted first in
    /// this page's writable window; `None` for the poll backend or when the
    /// fault ring was full. With [`Options::locate_writers`] only a fault
    /// that wrote inside this region counts (another object on the page may
    /// have faulted first).
    pub thread_id: Option<u32>,
    /// Name of that thread (`/proc/self/task/TID/comm`); empty unless
    /// [`Options::locate_writers`].
    pub thread_name: String,
    /// Instruction pointer of that write; `None` when unknown.
    pub fault_ip: Option<u64>,
    /// Module of the user frame (see `stack`); empty when not located.
    pub module: String,
    /// Offset of the user frame in `module`.
    pub module_offset: u64,
    /// Source file of the user frame: the innermost frame outside memwatch
    /// and memcpy-style helpers; empty when not located or without debug info.
    pub file: String,
    /// Function of the user frame; empty when unknown.
    pub function: String,
    /// Source line of the user frame; 0 when unknown.
    pub line: u32,
    /// The writer's stack, innermost first (helpers included), up to
    /// [`Options::stack_depth`] captured frames plus their inlined frames;
    /// empty unless [`Options::locate_writers`].
    pub stack: Vec<Frame>,
    /// Faults (first writes) on other pages of the region whose writable
    /// windows ended with this one, merged into this event without a
    /// location of their own: only the earliest fault is attributed. Writes
    /// after a page's first write in its window never fault and are merged
    /// unseen, uncounted. Counted only with [`Options::locate_writers`].
    pub unattributed_faults: u32,
}

/// A run of changed bytes inside a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    /// Offset from the start of the region.
    pub offset: usize,
    /// Number of bytes.
    pub len: usize,
}

/// One detected change to one region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeEvent {
    /// Process-wide sequence number, increasing in detection order.
    pub seq: u64,
    /// CLOCK_MONOTONIC nanoseconds of the first write seen (protect) or of
    /// detection (poll).
    pub timestamp_ns: u64,
    /// The watcher's adapter id (which language made the watcher).
    pub adapter_id: u32,
    /// The region that changed.
    pub region_id: RegionId,
    /// Name given at watch time.
    pub variable_name: String,
    /// Who wrote it, where known.
    pub where_: Where,
    /// Size of the region in bytes.
    pub how_big: usize,
    /// The changed byte ranges, in ascending offset order.
    pub changed_ranges: Vec<ByteRange>,
    /// First `preview_bytes` of the region before the change (empty without snapshots).
    pub old_preview: Vec<u8>,
    /// First `preview_bytes` of the region after the change.
    pub new_preview: Vec<u8>,
    /// Whole old value when `how_big <= max_value_bytes` and snapshots are on.
    pub old_value: Option<Vec<u8>>,
    /// Whole new value when `how_big <= max_value_bytes`.
    pub new_value: Option<Vec<u8>>,
    /// Value-store key of the old value when the region is larger than
    /// `max_value_bytes` and a store is set ([`crate::Watcher::set_value_store`]).
    pub storage_key_old: Option<String>,
    /// Value-store key of the new value, likewise.
    pub storage_key_new: Option<String>,
    /// Metadata given at watch time.
    pub metadata: Option<String>,
    /// Changes this event stands for: 1, or more when later changes of the
    /// region were merged into it while it waited in a full queue
    /// ([`crate::QUEUE_CAP`]): then `old_*` is from the first of them,
    /// `new_*` from the last, and `changed_ranges` is the union.
    pub coalesced: u32,
}

impl ChangeEvent {
    /// Folds a later change of the same region into this pending event (a
    /// full queue, [`crate::QUEUE_CAP`]): the oldest old value and first
    /// write's time and writer stay, the newest new value and value-store key
    /// replace theirs, the changed ranges become the union and `coalesced`
    /// adds the later event's. [`crate::EventQueue`] (the engine's queue,
    /// and bindings' own) merges with it.
    pub fn merge(&mut self, later: ChangeEvent) {
        self.new_preview = later.new_preview;
        self.new_value = later.new_value;
        self.storage_key_new = later.storage_key_new;
        self.coalesced += later.coalesced;
        union_ranges(&mut self.changed_ranges, &later.changed_ranges);
    }
}

/// Adds `more` (ascending) to `ranges` (ascending): the union, overlapping
/// and adjacent ranges merged into one. O(more) when `more` lies after
/// `ranges` (a pass reading a region in address order), else a merge of both.
pub(crate) fn union_ranges(ranges: &mut Vec<ByteRange>, more: &[ByteRange]) {
    let after = match (ranges.last(), more.first()) {
        (Some(last), Some(first)) => first.offset >= last.offset + last.len,
        _ => true,
    };
    let all: Vec<ByteRange> = if after {
        more.to_vec()
    } else {
        let mut all: Vec<ByteRange> = ranges.drain(..).chain(more.iter().copied()).collect();
        all.sort_unstable_by_key(|r| r.offset);
        all
    };
    for r in all {
        match ranges.last_mut() {
            Some(last) if r.offset <= last.offset + last.len => {
                last.len = last.len.max(r.offset + r.len - last.offset);
            }
            _ => ranges.push(r),
        }
    }
}

/// Counters and gauges of one watcher (plus engine-wide fault counters).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// Backend this watcher's regions use (never `Auto`).
    pub backend: Option<Backend>,
    /// Why a better backend was not used (empty when the preferred one works).
    pub backend_reason: String,
    /// Regions this watcher watches.
    pub regions: usize,
    /// Pages the engine keeps protected for all watchers (protect backend).
    pub protected_pages: usize,
    /// Write faults handled by the engine since it started (all watchers).
    pub faults: u64,
    /// Events this watcher produced.
    pub events: u64,
    /// Regions that could not use the watcher's backend and use another
    /// (the reason is in `backend_reason`): writewatch regions userfaultfd
    /// refused (-> protect), and protect regions on a thread stack, which
    /// cannot be made read-only safely (-> writewatch, else poll).
    pub fallback_regions: usize,
    /// Regions in shared mappings (MAP_SHARED: a `multiprocessing` array, a
    /// shared file mapping) watched with an explicitly chosen protect or
    /// writewatch backend: writes to them by other processes, or through
    /// the file, are invisible to those backends (the reason is in
    /// `backend_reason`). `auto` watches such regions with poll instead
    /// (counted in `fallback_regions`).
    pub shared_regions: usize,
    /// Regions dropped because their memory was unmapped while watched
    /// (engine-wide).
    pub gone_regions: u64,
    /// Times a protect page could not be made read-only again after a write
    /// (mprotect failed: ENOMEM near vm.max_map_count), engine-wide. No write
    /// is missed for it: such a page stays writable and is polled every poll
    /// interval until it can be re-armed.
    pub reprotect_failures: u64,
    /// Faults whose *where* was dropped because the ring was full (engine-wide).
    /// The change itself is never dropped.
    pub dropped_wheres: u64,
    /// Native bytes held for this watcher's regions: metadata plus snapshots.
    pub native_bytes: usize,
    /// Bytes of that which are snapshots.
    pub snapshot_bytes: usize,
    /// Events waiting for check_changes() or for the callback.
    pub pending_events: usize,
    /// Changes merged into an event already pending for the same region,
    /// because the watcher's queue held `QUEUE_CAP` (1024) events or more.
    /// No change is lost: the merged event carries them all.
    pub coalesced_events: u64,
    /// Callbacks that panicked (or whose binding reported an exception).
    pub callback_errors: u64,
    /// Median first-write-to-delivery latency of delivered events, nanoseconds.
    pub latency_p50_ns: u64,
    /// 99th percentile of the same, nanoseconds.
    pub latency_p99_ns: u64,
    /// Pages written nonstop that the engine left writable and polls instead
    /// (hot pages, all watchers: protect and writewatch). Their changes are
    /// found by the poll every poll interval, in one event per region,
    /// without a writer's thread or location; they are protected again once
    /// quiet. 0 while no memory is written nonstop.
    pub hot_pages: usize,
}

/// The value of one [`Stats`] field, as [`Stats::fields`] lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatValue<'a> {
    /// A count or gauge.
    Count(u64),
    /// A text field (`backend`, `backend_reason`).
    Text(&'a str),
}

impl Stats {
    /// The snake_case names of every field, in declaration order: what
    /// [`Stats::fields`] yields, and what every binding's stats carry (in its
    /// own spelling).
    pub const FIELDS: [&'static str; 19] = [
        "backend",
        "backend_reason",
        "regions",
        "protected_pages",
        "faults",
        "events",
        "fallback_regions",
        "shared_regions",
        "gone_regions",
        "reprotect_failures",
        "dropped_wheres",
        "native_bytes",
        "snapshot_bytes",
        "pending_events",
        "coalesced_events",
        "callback_errors",
        "latency_p50_ns",
        "latency_p99_ns",
        "hot_pages",
    ];

    /// Adds another watcher's per-watcher counts (regions, events,
    /// fallback_regions, native and snapshot bytes, pending events, callback
    /// errors) to these, for a binding that serves one user-facing watcher
    /// with two engine watchers. Engine-wide fields, the backend and the
    /// latencies stay this watcher's.
    pub fn absorb(&mut self, other: &Stats) {
        self.regions += other.regions;
        self.events += other.events;
        self.fallback_regions += other.fallback_regions;
        self.native_bytes += other.native_bytes;
        self.snapshot_bytes += other.snapshot_bytes;
        self.pending_events += other.pending_events;
        self.callback_errors += other.callback_errors;
        self.shared_regions += other.shared_regions;
        self.coalesced_events += other.coalesced_events;
    }

    /// Every field with its name, in [`Stats::FIELDS`] order, so that a
    /// binding converts stats with one loop instead of one line per field
    /// (`backend` is `""` when unknown).
    pub fn fields(&self) -> [(&'static str, StatValue<'_>); 19] {
        use StatValue::{Count, Text};
        let n = |v: usize| Count(v as u64);
        let f = Self::FIELDS;
        [
            (f[0], Text(self.backend.map_or("", Backend::name))),
            (f[1], Text(&self.backend_reason)),
            (f[2], n(self.regions)),
            (f[3], n(self.protected_pages)),
            (f[4], Count(self.faults)),
            (f[5], Count(self.events)),
            (f[6], n(self.fallback_regions)),
            (f[7], n(self.shared_regions)),
            (f[8], Count(self.gone_regions)),
            (f[9], Count(self.reprotect_failures)),
            (f[10], Count(self.dropped_wheres)),
            (f[11], n(self.native_bytes)),
            (f[12], n(self.snapshot_bytes)),
            (f[13], n(self.pending_events)),
            (f[14], Count(self.coalesced_events)),
            (f[15], Count(self.callback_errors)),
            (f[16], Count(self.latency_p50_ns)),
            (f[17], Count(self.latency_p99_ns)),
            (f[18], n(self.hot_pages)),
        ]
    }
}

/// Why a call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// A bad argument (zero length, null address, bad option, ...).
    InvalidArgument(String),
    /// The memory is not mapped, or only partly.
    Unmapped(String),
    /// The memory is mapped but not writable, so it can never change here.
    ReadOnly(String),
    /// The range overlaps a region this watcher already watches.
    Overlap(String),
    /// The backend cannot be used here, with the reason.
    Unsupported(String),
    /// The watcher was closed.
    Closed,
    /// An operating-system call failed.
    Os(String),
}

impl Error {
    /// Stable numeric code used by the C ABI (negative values).
    pub fn code(&self) -> i32 {
        match self {
            Error::InvalidArgument(_) => -1,
            Error::Unmapped(_) => -2,
            Error::ReadOnly(_) => -3,
            Error::Overlap(_) => -4,
            Error::Unsupported(_) => -5,
            Error::Closed => -6,
            Error::Os(_) => -7,
        }
    }

    /// Stable snake_case name of the error's kind (`"invalid_argument"`,
    /// `"unmapped"`, `"read_only"`, `"overlap"`, `"unsupported"`, `"closed"`,
    /// `"os"`): what the shared scenarios and the bindings' error types name.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Error::InvalidArgument(_) => "invalid_argument",
            Error::Unmapped(_) => "unmapped",
            Error::ReadOnly(_) => "read_only",
            Error::Overlap(_) => "overlap",
            Error::Unsupported(_) => "unsupported",
            Error::Closed => "closed",
            Error::Os(_) => "os",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Error::Unmapped(m) => write!(f, "memory not mapped: {m}"),
            Error::ReadOnly(m) => write!(f, "memory is read-only: {m}"),
            Error::Overlap(m) => write!(f, "overlapping watch: {m}"),
            Error::Unsupported(m) => write!(f, "backend unsupported: {m}"),
            Error::Closed => f.write_str("watcher is closed"),
            Error::Os(m) => write!(f, "operating system error: {m}"),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_rejects_negative_nan_and_infinite() {
        for bad in [-1.0, -0.001, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 86_400_001.0] {
            let e = Options::millis("writable_window_ms", bad).unwrap_err();
            assert_eq!(e.kind_name(), "invalid_argument", "{bad}: {e}");
            assert!(e.to_string().contains("writable_window_ms"), "{e}");
        }
        assert_eq!(Options::millis("x", 2.5).unwrap(), Duration::from_micros(2500));
        assert_eq!(Options::millis("x", 0.0).unwrap(), Duration::ZERO);
    }

    #[test]
    fn validate_rejects_zero_windows_and_ring() {
        assert!(Options::default().validate().is_ok());
        let zero_window = Options { writable_window: Duration::ZERO, ..Options::default() };
        assert_eq!(zero_window.validate().unwrap_err().kind_name(), "invalid_argument");
        let zero_poll = Options { poll_interval: Duration::ZERO, ..Options::default() };
        assert_eq!(zero_poll.validate().unwrap_err().kind_name(), "invalid_argument");
        let zero_ring = Options { ring_capacity: 0, ..Options::default() };
        assert_eq!(zero_ring.validate().unwrap_err().kind_name(), "invalid_argument");
    }

    #[test]
    fn stats_fields_follow_the_field_list() {
        let s =
            Stats { regions: 3, gone_regions: 7, backend: Some(Backend::Poll), ..Stats::default() };
        let fields = s.fields();
        let names: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, Stats::FIELDS);
        assert_eq!(fields[0].1, StatValue::Text("poll"));
        assert_eq!(fields[2].1, StatValue::Count(3));
        assert_eq!(fields[8].1, StatValue::Count(7));
    }

    #[test]
    fn every_backend_round_trips_its_name() {
        for b in Backend::ALL {
            assert_eq!(Backend::from_name(b.name()).unwrap(), b);
        }
    }
}
