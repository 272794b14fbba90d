//! The store's error type.

use std::fmt;

/// Everything that can go wrong in the store. Every variant has a message
/// that says what happened and, where it helps, what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The store name is not usable as a POSIX shared-memory name.
    #[error("invalid store name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// `Store::open` (or a connect without capacity) found no such store.
    #[error("no store named {0:?} exists (create it with Store::connect)")]
    NotFound(String),
    /// The store exists but nobody finished initializing it in time.
    #[error("store {0:?} exists but was never initialized (its creator may have died; unlink it and connect again)")]
    NotInitialized(String),
    /// Keys must not be empty.
    #[error("key is empty")]
    EmptyKey,
    /// The key is longer than the store's key limit.
    #[error("key is {len} bytes, longer than this store's limit of {max} bytes")]
    KeyTooLong {
        /// Length of the key given.
        len: usize,
        /// The store's limit.
        max: usize,
    },
    /// Key plus value can never fit in this store, even when empty.
    #[error("value of {len} bytes can never fit: this store holds at most {max} bytes of key + value per entry")]
    ValueTooLarge {
        /// Key length + value length given.
        len: usize,
        /// Largest key + value the arena can hold.
        max: usize,
    },
    /// The store is full and its policy is `FullPolicy::Refuse` (or every
    /// candidate for eviction is pinned by a reader).
    #[error("store is full: needed {needed} bytes{}, {available} bytes free ({entries} of {max_entries} entries used); delete entries or create the store with FullPolicy::EvictLru", if *.fragmented { " in one piece" } else { "" })]
    Full {
        /// Bytes the entry needs in the arena.
        needed: u64,
        /// Free bytes in the arena (possibly fragmented).
        available: u64,
        /// Whether enough bytes are free in total but not contiguously.
        fragmented: bool,
        /// Entries in the store.
        entries: u64,
        /// The store's entry limit.
        max_entries: u64,
    },
    /// The capacity or entry count asked for at creation is out of range.
    #[error("invalid store options: {0}")]
    InvalidOptions(String),
    /// The segment does not start with the store's magic number.
    #[error("segment {name:?} is not a memwatch store (bad magic {found:#018x})")]
    BadMagic {
        /// Store name.
        name: String,
        /// The first 8 bytes of the segment.
        found: u64,
    },
    /// The segment was made by an incompatible version of this crate.
    #[error("segment {name:?} has layout version {found}, this library reads version {expected}")]
    VersionMismatch {
        /// Store name.
        name: String,
        /// Version in the segment.
        found: u32,
        /// Version this library understands.
        expected: u32,
    },
    /// The segment is shorter than its header says.
    #[error("segment {name:?} is truncated: {size} bytes, at least {expected} needed")]
    Truncated {
        /// Store name.
        name: String,
        /// Actual size of the segment.
        size: u64,
        /// Size the header requires.
        expected: u64,
    },
    /// The segment's header or data is inconsistent.
    #[error("store {name:?} is corrupt: {detail}")]
    Corrupt {
        /// Store name.
        name: String,
        /// What check failed.
        detail: String,
    },
    /// The writer lock could not be taken in time.
    #[error("timed out after {0:?} waiting for the store's writer lock")]
    LockTimeout(std::time::Duration),
    /// The writer lock was left unusable (should not happen: recovery always
    /// marks it consistent).
    #[error("the store's writer lock is not recoverable; unlink the store and create it again")]
    NotRecoverable,
    /// All pin records (zero-copy read guards, across all processes) are in use.
    #[error("too many zero-copy read guards alive at once (limit {0} across all processes)")]
    TooManyPins(usize),
    /// A C caller's output buffer was too small (C API only).
    #[error("buffer of {given} bytes is too small for a value of {needed} bytes")]
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        given: usize,
    },
    /// A system call failed.
    #[error("{op} failed: {source}")]
    Os {
        /// The operation that failed.
        op: &'static str,
        /// The OS error.
        source: OsError,
    },
}

/// An `errno` value with its message; `Clone + PartialEq` unlike `io::Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OsError(pub i32);

impl OsError {
    /// The calling thread's last `errno`.
    pub fn last() -> Self {
        OsError(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

impl fmt::Display for OsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", std::io::Error::from_raw_os_error(self.0))
    }
}

impl std::error::Error for OsError {}

impl Error {
    pub(crate) fn os(op: &'static str) -> Self {
        Error::Os { op, source: OsError::last() }
    }

    pub(crate) fn os_code(op: &'static str, code: i32) -> Self {
        Error::Os { op, source: OsError(code) }
    }
}

/// Result alias for the store.
pub type Result<T, E = Error> = std::result::Result<T, E>;
