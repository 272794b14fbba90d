//! The protect backend: watched pages are read-only; the first write to one
//! faults, and the SIGSEGV handler ([`handler`]) marks it dirty in the page
//! table ([`page_table`]), makes it writable, and records the writer in the
//! fault ring ([`ring`]). [`pages`] is the engine side: it drains the ring,
//! keeps written pages open for their writable window, then re-protects them
//! and hands their regions to the engine for diffing.

pub mod handler;
pub mod handler_state;
pub mod page_table;
mod pages;
pub mod ring;

pub use pages::{IdleGate, ProtectPages};
