//! # memwatch-store (MemStream)
//!
//! A named key-value store in POSIX shared memory that many processes read and
//! write at once, without sockets or serialization.
//!
//! * **Layout**: one `shm_open` segment (mode 0600) holding a versioned header
//!   (magic, layout checksum), an O(1) hash index (buckets + chained slots),
//!   fixed-size slots with per-key stats, and a data arena managed by a TLSF
//!   allocator (O(1) alloc/free, coalescing, freed space is reused).
//! * **Readers** never lock: each slot is a seqlock (an even version is stable,
//!   odd means a write is in progress); a read copies the value and retries if
//!   the version moved, so a torn value is never returned. Values are written
//!   copy-on-write into a fresh block and published by switching the slot.
//! * **Writers** share one process-shared *robust* mutex. If a process dies
//!   holding it (even mid-write), the next locker gets `EOWNERDEAD`, rolls the
//!   single-slot redo journal forward, rebuilds every derived structure
//!   (hash chains, LRU, free lists, allocator, counters) from the slots, and
//!   marks the mutex consistent. Readers that see a write stuck for 2 ms take
//!   the lock themselves, so recovery happens within milliseconds even when no
//!   writer is left.
//! * **Zero-copy reads**: [`Store::get_ref`] pins the value's block with a
//!   hazard-pointer record; writers move the key to a new block and free the
//!   old one only after the pin is dropped (or its process died).
//! * **Full policy** chosen at creation: [`FullPolicy::EvictLru`] or
//!   [`FullPolicy::Refuse`].
//!
//! ```no_run
//! use memwatch_store::{FullPolicy, Store};
//!
//! let store = Store::connect("demo-store", 16 << 20, FullPolicy::EvictLru)?;
//! store.put("memwatch/1/7/42", b"old and new bytes")?;
//! assert_eq!(store.get("memwatch/1/7/42")?.as_deref(), Some(&b"old and new bytes"[..]));
//! if let Some(v) = store.get_ref("memwatch/1/7/42")? {
//!     assert_eq!(&v[..4], b"old ");
//! }
//! println!("{:?}", store.stats());
//! store.close();
//! Store::unlink("demo-store")?;
//! # Ok::<(), memwatch_store::Error>(())
//! ```
//!
//! Limits: a live segment truncated by another process under a mapping makes
//! accesses fault (SIGBUS), as with any shared mapping; opening a truncated or
//! corrupt segment returns an error.

#![warn(missing_docs)]

mod error;
mod layout;
mod shm;
mod store;

pub use error::{Error, OsError, Result};
pub use shm::MAX_NAME_LEN;

/// The segment layout version this library reads and writes (a segment with
/// another one is refused with [`Error::VersionMismatch`]).
pub const LAYOUT_VERSION: u32 = layout::VERSION;
pub use store::{FullPolicy, Iter, KeyStats, Options, Store, StoreStats, ValueRef};

/// The key under which memwatch stores a large old or new value of a region:
/// `memwatch/{adapter_id}/{region_id}/{epoch}`.
pub fn value_key(adapter_id: u32, region_id: u64, epoch: u64) -> String {
    format!("memwatch/{adapter_id}/{region_id}/{epoch}")
}
