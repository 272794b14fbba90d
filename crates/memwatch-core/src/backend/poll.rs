//! The poll backend: every poll interval, each region of a watcher is hashed
//! and diffed when its hash moved (by the engine). Works on any memory.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::backend::{Detector, Dirty, NewRegion, Owners, Pass};
use crate::types::{Error, RegionId};

/// The poll regions of one watcher.
struct PollSet {
    /// Regions by start address (overlap checks, polling in address order).
    by_addr: BTreeMap<usize, RegionId>,
    interval_ns: u64,
    next_poll_ns: u64,
}

/// The poll backend's regions, per watcher (each polls on its own interval).
#[derive(Default)]
pub struct PollRegions {
    watchers: HashMap<u32, PollSet>,
}

impl PollRegions {
    /// A watcher that may have poll regions, polled every `interval_ns`
    /// from `now`.
    pub fn add_watcher(&mut self, watcher: u32, interval_ns: u64, now: u64) {
        let set =
            PollSet { by_addr: BTreeMap::new(), interval_ns, next_poll_ns: now + interval_ns };
        self.watchers.insert(watcher, set);
    }

    /// Forgets a watcher (its regions were unregistered).
    pub fn remove_watcher(&mut self, watcher: u32) {
        self.watchers.remove(&watcher);
    }

    /// A poll region of `watcher` overlapping `[addr, end)`: (id, start),
    /// given each region's size. O(log n).
    pub fn overlapping(
        &self,
        watcher: u32,
        addr: usize,
        end: usize,
        size_of: impl Fn(RegionId) -> usize,
    ) -> Option<(RegionId, usize)> {
        let set = self.watchers.get(&watcher)?;
        let (&start, &other) = set.by_addr.range(..end).next_back()?;
        (start + size_of(other) > addr).then_some((other, start))
    }

    fn poll(set: &mut PollSet, now: u64, out: &mut Vec<Dirty>) {
        if set.by_addr.is_empty() {
            return;
        }
        set.next_poll_ns = now + set.interval_ns;
        out.extend(set.by_addr.values().map(|&rid| (rid, None)));
    }
}

impl Detector for PollRegions {
    fn register(&mut self, _owners: &dyn Owners, r: &NewRegion<'_>) -> Result<(), Error> {
        let set = self.watchers.get_mut(&r.watcher).ok_or(Error::Closed)?;
        set.by_addr.insert(r.addr, r.id);
        Ok(())
    }

    fn unregister(&mut self, id: RegionId, addr: usize, _len: usize) {
        for set in self.watchers.values_mut() {
            if set.by_addr.get(&addr) == Some(&id) {
                set.by_addr.remove(&addr);
                return;
            }
        }
    }

    /// The worker: the regions of every watcher whose interval passed;
    /// check_changes: those of its watcher.
    fn collect(&mut self, _owners: &dyn Owners, now: u64, pass: Pass) -> Vec<Dirty> {
        let mut out = Vec::new();
        match pass {
            Pass::Due => {
                for set in self.watchers.values_mut().filter(|s| s.next_poll_ns <= now) {
                    Self::poll(set, now, &mut out);
                }
            }
            Pass::Now(watcher) => {
                if let Some(set) = self.watchers.get_mut(&watcher) {
                    Self::poll(set, now, &mut out);
                }
            }
        }
        out
    }

    fn after_diff(&mut self, _: &dyn Owners, _: &HashSet<RegionId>, _: u64) -> Vec<RegionId> {
        Vec::new()
    }

    fn next_deadline(&self, _owners: &dyn Owners) -> Option<u64> {
        self.watchers.values().filter(|s| !s.by_addr.is_empty()).map(|s| s.next_poll_ns).min()
    }
}
