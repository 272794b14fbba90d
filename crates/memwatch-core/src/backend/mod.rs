//! Detection backends: how the engine learns which regions may have changed.
//!
//! Each backend keeps its own page (or region) bookkeeping and offers the
//! same small interface, [`Detector`]: register a region, unregister it,
//! collect the regions that may have changed (with the fault record of their
//! earliest known writer), hear which of those really changed, and say when
//! it next needs the worker. The engine (crate::engine) owns the regions and
//! does the rest: diff, event, delivery. Backends never see the engine's
//! types; what they need of it comes through [`Owners`]. This file uses none
//! of its submodules: they build on it.

use std::collections::{HashMap, HashSet};

use crate::regions::IdList;
use crate::types::{Error, Options, RegionId};

pub mod poll;
pub mod protect;
pub mod writewatch;

/// Who wrote a page first in its writable window (protect: recorded by the
/// SIGSEGV handler in the fault ring).
#[derive(Clone, Copy, Debug, Default)]
pub struct FaultRecord {
    /// Page number (address / page size).
    pub page: usize,
    /// Instruction pointer of the writing instruction (0 if unknown).
    pub ip: u64,
    /// Kernel thread id of the writer.
    pub tid: u32,
    /// CLOCK_MONOTONIC nanoseconds of the fault.
    pub timestamp_ns: u64,
    /// Writer location: id of the stack taken from the ring slot with this
    /// record (crate::location), 0 = none. Not stored in the ring's cells.
    pub capture: u32,
    /// Writer location: faults (page first-writes) merged into this
    /// region's batch, this one included (set by the protect backend).
    pub faults: u32,
}

/// A region that may have changed, with the earliest known writer (protect
/// only; None elsewhere).
pub type Dirty = (RegionId, Option<FaultRecord>);

/// Which pass the engine is running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// The worker: what is due by now.
    Due,
    /// check_changes() of this watcher: everything written so far (the poll
    /// backend: this watcher's regions).
    Now(u32),
}

/// A region being registered.
pub struct NewRegion<'a> {
    /// The watcher it belongs to.
    pub watcher: u32,
    /// Its id.
    pub id: RegionId,
    /// Start address.
    pub addr: usize,
    /// Length in bytes (> 0).
    pub len: usize,
    /// The mappings covering it (crate::sys::maps::writable_mappings).
    pub mappings: &'a [crate::sys::maps::Mapping],
    /// Its watcher's options.
    pub options: &'a Options,
}

/// What a backend may read of the engine: the options of the watcher that
/// owns a region, and of all watchers.
pub trait Owners {
    /// Options of the watcher owning region `id` (None once unwatched).
    fn options_of(&self, id: RegionId) -> Option<&Options>;
    /// Options of every watcher whose backend is `backend`.
    fn options_of_backend(&self, backend: crate::types::Backend) -> Vec<&Options>;
    /// Options of every watcher.
    fn all_options(&self) -> Vec<&Options>;
    /// Length of region `id` (None once unwatched).
    fn region_len(&self, id: RegionId) -> Option<usize>;
}

/// The interface every backend offers the engine. All calls run under the
/// engine mutex.
pub trait Detector {
    /// Starts tracking a region. On error nothing stays registered for it.
    fn register(&mut self, owners: &dyn Owners, region: &NewRegion<'_>) -> Result<(), Error>;
    /// Stops tracking a region (also one whose registration was undone).
    fn unregister(&mut self, id: RegionId, addr: usize, len: usize);
    /// The regions that may have changed, due in this pass.
    fn collect(&mut self, owners: &dyn Owners, now: u64, pass: Pass) -> Vec<Dirty>;
    /// Told which collected regions really changed; returns regions to diff
    /// once more (writewatch: those on pages it just protected again).
    fn after_diff(
        &mut self,
        owners: &dyn Owners,
        changed: &HashSet<RegionId>,
        now: u64,
    ) -> Vec<RegionId>;
    /// When the worker must run next for this backend (None: only when woken).
    fn next_deadline(&self, owners: &dyn Owners) -> Option<u64>;
    /// The written pages (page numbers, ascending) behind each region of the
    /// last collect, where the backend knows them: the engine then reads
    /// and compares only those pages of a large region.
    fn take_batch_pages(&mut self) -> HashMap<RegionId, Vec<usize>> {
        HashMap::new()
    }
    /// Regions of the last collect read in part, whose pass reads the
    /// rest in a later collect (poll's large regions): the engine keeps
    /// what was found in them and makes it one event when the pass ends.
    fn take_unfinished(&mut self) -> HashSet<RegionId> {
        HashSet::new()
    }
}

/// Default writable window when no watcher's options apply (Options::default()).
const DEFAULT_WINDOW_NS: u64 = 5_000_000;
/// Default poll interval when no watcher's options apply (Options::default()).
const DEFAULT_POLL_NS: u64 = 100_000_000;

/// The shortest writable window among the watchers of these regions.
pub fn window_ns(owners: &dyn Owners, ids: &IdList) -> u64 {
    ids.as_slice()
        .iter()
        .filter_map(|id| owners.options_of(*id))
        .map(|o| o.writable_window.as_nanos() as u64)
        .min()
        .unwrap_or(DEFAULT_WINDOW_NS)
}

/// The shortest poll interval among the watchers of these regions.
pub fn poll_ns(owners: &dyn Owners, ids: &IdList) -> u64 {
    ids.as_slice()
        .iter()
        .filter_map(|id| owners.options_of(*id))
        .map(|o| o.poll_interval.as_nanos() as u64)
        .min()
        .unwrap_or(DEFAULT_POLL_NS)
}

/// The shortest poll interval among all watchers (liveness checks and hot
/// writewatch pages run at this pace).
pub fn shortest_poll_ns(owners: &dyn Owners) -> u64 {
    owners
        .all_options()
        .iter()
        .map(|o| o.poll_interval.as_nanos() as u64)
        .min()
        .unwrap_or(DEFAULT_POLL_NS)
}

/// Pages `[first, last]` holding `[addr, addr+len)` (len > 0).
pub fn pages_of(addr: usize, len: usize) -> std::ops::RangeInclusive<usize> {
    let ps = crate::sys::page_size();
    addr / ps..=(addr + len - 1) / ps
}

/// One entry's share of a hash map's buckets at its load now (hashbrown:
/// buckets a power of two, at most 7/8 full; one control byte each), for
/// stats. An estimate of what the allocator holds, not a measurement.
pub fn record_bytes(entry: usize, len: usize, cap: usize) -> usize {
    let buckets = if cap == 0 { 0 } else { (cap * 8 / 7).next_power_of_two() };
    buckets * (entry + 1) / len.max(1)
}

/// Sorted page numbers -> inclusive runs of consecutive pages.
pub fn runs(pages: &[usize]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for &p in pages {
        match out.last_mut() {
            Some((_, last)) if *last + 1 == p => *last = p,
            _ => out.push((p, p)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_join_consecutive_pages() {
        assert_eq!(runs(&[]), []);
        assert_eq!(runs(&[4]), [(4, 4)]);
        assert_eq!(runs(&[1, 2, 3, 7, 9, 10]), [(1, 3), (7, 7), (9, 10)]);
    }

    #[test]
    fn pages_of_covers_partial_pages() {
        let ps = crate::sys::page_size();
        assert_eq!(pages_of(ps, 1), 1..=1);
        assert_eq!(pages_of(ps - 1, 2), 0..=1);
        assert_eq!(pages_of(3 * ps, 2 * ps), 3..=4);
    }
}
