//! memwatch-core: detect and report changes to watched memory.
//!
//! One process-wide engine serves any number of [`Watcher`]s. Each watcher
//! has its own regions, callback and pending events. Detection backends:
//!
//! - **protect**: the region's pages are made read-only; the first write to a
//!   page faults, a SIGSEGV handler marks the page dirty, records the writer
//!   (thread id, instruction pointer) in a preallocated ring and makes the
//!   page writable again. After the writable window the engine's worker
//!   re-protects the page and diffs the regions on it against their snapshots.
//! - **writewatch**: userfaultfd write-protection in asynchronous mode plus
//!   PAGEMAP_SCAN (Linux 6.7+): the kernel marks written pages itself, no
//!   signal is involved; the worker scans every tenth of the writable window.
//! - **poll**: every poll interval, each region is hashed (xxh3) and diffed
//!   when the hash moved.
//! - **auto** (default): writewatch where available, else protect.
//!
//! Every change becomes one [`ChangeEvent`], delivered exactly once: to the
//! callback (on the watcher's delivery thread) or, when none is set, to the
//! next [`Watcher::check_changes`]. `check_changes()` is synchronous: every
//! write made before the call is in its result or was already delivered.
//!
//! ```
//! use memwatch_core::{Watcher, Options, Backend};
//! let mut buf = vec![0u8; 64];
//! let w = Watcher::new(Options { backend: Backend::Poll, ..Options::default() }).unwrap();
//! // SAFETY: buf outlives the watch (unwatched by close below).
//! let id = unsafe { w.watch(buf.as_ptr(), buf.len(), "buf", None) }.unwrap();
//! buf[3] = 42;
//! let events = w.check_changes().unwrap();
//! assert_eq!(events.len(), 1);
//! assert_eq!(events[0].region_id, id);
//! assert_eq!(events[0].new_value.as_ref().unwrap()[3], 42);
//! w.close();
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

// Module layers, each using only those above it: types, sys (system calls,
// /proc/self/maps), diff and regions; backend (protect, writewatch, poll:
// which regions may have changed); delivery (a watcher's queue and
// callback); engine (regions, worker, diff -> event); watcher (the API).
mod backend;
mod delivery;
mod diff;
mod engine;
mod event_queue;
mod location;
mod regions;
mod sys;
mod types;
mod watched;
mod watcher;

use backend::protect::handler;

pub use delivery::{Callback, EventSink, SinkId};
pub use event_queue::{EventQueue, QUEUE_CAP};
pub use location::{
    read_memory, read_word, set_frame_resolver, set_runtime_frames, set_runtime_skip,
    FrameResolver, RuntimeCapture, RuntimeFrames, RuntimeResolver, RuntimeSkip, RUNTIME_WORDS,
};
/// The MemStream value store (crates/memwatch-store), re-exported.
pub use memwatch_store as store;
pub use types::*;
pub use watched::{StableBytes, Watched};
pub use watcher::{Pending, Watcher, EXIT_FLUSH_TIMEOUT};

/// Resolves one code address the way located writes are resolved (module +
/// offset, function, file, line; inlined frames first), through the same
/// caches. For benchmarks and tools.
pub fn resolve_address(addr: u64) -> Vec<Frame> {
    location::resolve_address(addr)
}

/// Drops the symbol caches: the next resolution opens modules anew.
pub fn clear_symbol_cache() {
    location::clear_symbol_cache()
}

/// Environment variable that makes the writewatch backend unavailable in this
/// process (set to anything but "" or "0"): `auto` then picks protect.
pub const DISABLE_WRITEWATCH_ENV: &str = backend::writewatch::uffd::DISABLE_ENV;

/// The operating system's page size in bytes.
pub fn page_size() -> usize {
    sys::page_size()
}

/// True once memwatch has installed its SIGSEGV handler in this process (the
/// first watcher using the protect backend does; it then stays installed,
/// forwarding every fault that is not memwatch's own).
pub fn signal_handler_installed() -> bool {
    handler::installed()
}

/// Puts memwatch's SIGSEGV handler back on top after another library
/// installed its own over it (Python's `faulthandler.enable()`, a crash
/// reporter): that handler then gets every fault that is not memwatch's, and
/// the protect backend keeps working. Returns `Ok(true)` if anything changed;
/// a no-op before the first protect watcher.
pub fn reassert_signal_handler() -> Result<bool, Error> {
    handler::reassert().map_err(Error::Os)
}
