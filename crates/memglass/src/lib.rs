//! memglass: typed objects in shared memory, observed live from another process.
//!
//! A **producer** process registers `#[repr(C)]` types (their field layout:
//! dotted names, offsets, primitive types, atomicity, unit, help text) and
//! creates labelled objects of them in shared-memory segments. An
//! **observer** process connects to the session read-only (`O_RDONLY`,
//! `PROT_READ`), lists the objects, reads fields by path with the atomicity
//! each field declares, takes consistent snapshots and receives change events
//! (field path, old and new typed values) detected by memwatch-core's poll
//! backend over its read-only mapping.
//!
//! ```no_run
//! use memglass::{Observe, Producer, ProducerOptions, Observer, Seqlock};
//! use std::sync::atomic::{AtomicU64, Ordering};
//!
//! #[derive(Observe, Clone, Copy, Default)]
//! #[repr(C)]
//! struct Quote { bid: f64, ask: f64 }
//!
//! #[derive(Observe)]
//! #[repr(C)]
//! struct Book {
//!     #[observe(counter, help = "orders seen")]
//!     orders: AtomicU64,
//!     quote: Seqlock<Quote>,
//! }
//!
//! // producer process
//! let p = Producer::init("demo", ProducerOptions::default()).unwrap();
//! let mut book = p.create::<Book>("AAPL").unwrap();
//! book.orders.fetch_add(1, Ordering::Relaxed);
//! book.quote.write(Quote { bid: 1.0, ask: 1.5 });
//!
//! // observer process
//! let mut o = Observer::connect("demo").unwrap();
//! let aapl = o.find("AAPL").unwrap();
//! println!("{:?}", o.read(&aapl, "quote.bid").unwrap());
//! ```
//!
//! The layout of the segments is described in the crate's README.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

extern crate self as memglass;

mod layout;
mod observer;
mod producer;
mod seqlock;
mod session;
mod shm;
mod types;
mod value;

pub use memglass_derive::Observe;
pub use observer::{ChangeEvent, ChangeKind, Observer, ObserverOptions, Snapshot};
pub use producer::{ArrayHandle, Handle, Producer, ProducerOptions, RawObject};
#[doc(hidden)]
pub use seqlock::protocol;
pub use seqlock::{write_guarded, Locked, ReadError, Seqlock, READ_ATTEMPTS};
pub use session::{list_sessions, remove_session, remove_stale, Liveness, SessionInfo};
pub use shm::{default_dir, validate_name};
pub use types::{
    Atomicity, FieldDesc, FieldInfo, FieldMeta, FixedStr, ObjectId, ObjectInfo, ObjectState,
    Observe, ObserveField, Primitive, Semantics, TypeDesc, TypeInfo,
};
pub use value::Value;

/// Why a memglass call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// A bad argument: an invalid session name or label, an unknown field
    /// path, a type that does not fit its declared size, ...
    InvalidArgument(String),
    /// No session, object or field of that name.
    NotFound(String),
    /// A session of that name is already run by a live producer.
    AlreadyExists(String),
    /// A segment is not a memglass segment, is truncated, corrupt, of
    /// another version, or owned by another user: the observer refuses it.
    BadSegment(String),
    /// A fixed capacity (types, fields, objects, region size) is exhausted.
    Full(String),
    /// The object was destroyed (or its slot reused) since it was looked up.
    Gone(String),
    /// A seqlock-guarded field kept changing during every one of the bounded
    /// read attempts: the value could not be read consistently.
    Torn(String),
    /// An operating-system call failed.
    Os(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Error::NotFound(m) => write!(f, "not found: {m}"),
            Error::AlreadyExists(m) => write!(f, "already exists: {m}"),
            Error::BadSegment(m) => write!(f, "bad segment: {m}"),
            Error::Full(m) => write!(f, "capacity exhausted: {m}"),
            Error::Gone(m) => write!(f, "object gone: {m}"),
            Error::Torn(m) => write!(f, "torn read: {m}"),
            Error::Os(m) => write!(f, "os error: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// Result of memglass calls.
pub type Result<T> = std::result::Result<T, Error>;
