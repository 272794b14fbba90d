//! What the engine counts for `Watcher::stats()`: per watcher, and the
//! engine-wide counters every watcher reports.

use super::{Engine, State};
use crate::backend;
use crate::regions::{Kind, Region};

/// The engine's part of one watcher's stats.
#[derive(Clone, Debug, Default)]
pub struct WatcherCounts {
    /// Regions of the watcher.
    pub regions: usize,
    /// Native bytes those regions cost (see [`State::region_bytes`]).
    pub native_bytes: usize,
    /// Bytes of that which are snapshots.
    pub snapshot_bytes: usize,
    /// Regions that use another backend than the watcher's.
    pub fallback_regions: usize,
    /// Why, for the last of them (empty if none).
    pub fallback_reason: String,
    /// Regions in shared mappings on protect/writewatch (others' writes unseen).
    pub shared_regions: usize,
    /// What that means, for the last of them (empty if none).
    pub shared_reason: String,
    /// Pages kept write-protected, all watchers (protect and writewatch).
    pub protected_pages: usize,
    /// Write faults handled since the process started (protect).
    pub faults: u64,
    /// Faults whose writer was dropped because the ring was full.
    pub dropped_wheres: u64,
    /// Regions dropped because their memory was unmapped while watched.
    pub gone_regions: u64,
    /// Protect pages whose re-arming failed (then polled).
    pub reprotect_failures: u64,
    /// Pages written nonstop, left writable and polled (protect and writewatch).
    pub hot_pages: usize,
}

impl Engine {
    /// The counters of one watcher (zeros, apart from the engine-wide ones,
    /// for an unknown watcher).
    pub fn counts_of(&self, watcher: u32) -> WatcherCounts {
        let st = self.lock();
        let reg = &st.registry;
        let protect = &st.backends.protect;
        let mut c = WatcherCounts {
            protected_pages: protect.protected_pages() + st.backends.writewatch.protected_pages(),
            faults: protect.faults(),
            dropped_wheres: protect.dropped_wheres(),
            gone_regions: st.gone_regions,
            reprotect_failures: protect.reprotect_failures(),
            hot_pages: protect.hot_pages() + st.backends.writewatch.hot_pages(),
            ..WatcherCounts::default()
        };
        if let Some(w) = reg.watchers.get(&watcher) {
            c.regions = w.regions;
            c.fallback_regions = w.fallback_regions;
            c.fallback_reason = w.fallback_reason.clone();
            c.shared_regions = w.shared_regions;
            c.shared_reason = w.shared_reason.clone();
            let slab = reg.regions.bytes_per_region();
            let poll_index = st.backends.poll.bytes_per_region(watcher);
            for (id, r) in reg.regions.iter().filter(|(_, r)| r.watcher == watcher).take(w.regions)
            {
                c.snapshot_bytes += r.snapshot().map_or(0, |s| s.len());
                c.native_bytes += slab + st.region_bytes(r);
                if r.kind() == Kind::Poll {
                    c.native_bytes += poll_index;
                }
                c.native_bytes += reg.page_hashes.get(&id).map_or(0, |h| h.len() * 8);
            }
        }
        c
    }
}

impl State {
    /// Native bytes one region costs apart from its share of the slab and
    /// id map (Regions::bytes_per_region): its data block (name, metadata,
    /// snapshot) and its share of the records of the
    /// pages it lies on (hash-map buckets at the table's load now, control
    /// byte included) and of their id lists. An estimate of what the
    /// allocator holds, not a measurement (benches/engine.rs measures).
    fn region_bytes(&self, r: &Region) -> usize {
        let mut bytes = r.block_bytes();
        for page in backend::pages_of(r.addr, r.size()) {
            let sharers = match r.kind() {
                Kind::Protect => self.backends.protect.page_share(page),
                Kind::WriteWatch => self.backends.writewatch.page_share(page),
                Kind::Poll => None,
            };
            if let Some((n, record)) = sharers {
                bytes += record / n.max(1);
            }
        }
        bytes
    }
}
