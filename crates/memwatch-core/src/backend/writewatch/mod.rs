//! The writewatch backend: the kernel marks written pages itself
//! (userfaultfd write-protection in asynchronous mode, [`uffd`]); the worker
//! collects and re-arms them with PAGEMAP_SCAN and hands their regions to the
//! engine ([`pages`]). No signals are involved.

mod pages;
pub mod uffd;

pub use pages::{QuietGate, WriteWatchPages};
