//! The step every backend shares: a region that may have changed is read,
//! compared with its snapshot (or hash), and turned into a [`ChangeEvent`]
//! when it did change.

use std::collections::{HashMap, HashSet};

use memwatch_store::value_key;
use xxhash_rust::xxh3::xxh3_64;

use super::Registry;
use crate::backend::poll::Due;
use crate::backend::{Dirty, FaultRecord};
use crate::diff::changed_ranges;
use crate::regions::Kind;
use crate::sys;
use crate::types::*;

/// A region is diffed on its written pages alone when they are at most one
/// in this many of its pages.
const PARTIAL_BELOW: usize = 4;

// Regions that follow each other in address order, each at most RUN_GAP
// from the previous one, are read with one system call, up to RUN_BYTES in
// all (the poll backend's runs are made the same way).
use crate::backend::poll::{RUN_BYTES, RUN_GAP};

/// What the slices of one pass over a large poll region found so far: the
/// one event the pass makes of it when it reads the region's last page.
pub(super) struct PassChanges {
    /// The union of the changed ranges found (merged as ChangeEvent::merge does).
    ranges: Vec<ByteRange>,
    /// The region's preview before the first of them (empty without snapshots).
    old_preview: Vec<u8>,
    /// When the first of them was found.
    timestamp_ns: u64,
}

/// xxh3 of each page's part of `bytes`, the contents of a region at `addr`
/// (a large poll region without a snapshot is compared page by page).
pub(super) fn page_hashes(addr: usize, bytes: &[u8]) -> Box<[u64]> {
    let ps = sys::page_size();
    crate::backend::pages_of(addr, bytes.len())
        .map(|p| {
            let from = (p * ps).max(addr) - addr;
            let to = ((p + 1) * ps - addr).min(bytes.len());
            xxh3_64(&bytes[from..to])
        })
        .collect()
}

impl Registry {
    /// Diffs the regions a backend collected, in its order; appends an
    /// event (with its watcher) for each that changed and returns their ids.
    /// `pages` holds the written (or, for poll, the due) pages behind a
    /// region where the backend knows them: a large region is read and
    /// compared on those pages only, so an event costs what was written,
    /// not the region's size. A region in `unfinished` is read in part by
    /// a pass that goes on: what it found waits for the pass's last pages.
    pub(super) fn diff_all(
        &mut self,
        dirty: Vec<Dirty>,
        pages: &HashMap<RegionId, Vec<usize>>,
        unfinished: &HashSet<RegionId>,
        now: u64,
        events: &mut Vec<(u32, ChangeEvent)>,
    ) -> HashSet<RegionId> {
        let mut changed = HashSet::new();
        let mut i = 0;
        while i < dirty.len() {
            let (rid, who) = dirty[i];
            if let Some(pages) = self.partial_pages(rid, pages) {
                i += 1;
                let ends = !unfinished.contains(&rid);
                if let Some(ev) = self.diff_region_pages(rid, who, now, pages, ends) {
                    changed.insert(rid);
                    events.push(ev);
                }
                continue;
            }
            let (count, run) = self.read_run(&dirty[i..], pages);
            for &(rid, who) in &dirty[i..i + count] {
                let current = run.as_ref().and_then(|(start, bytes)| {
                    let r = self.regions.get(rid)?;
                    Some(&bytes[r.addr - start..r.addr - start + r.size()])
                });
                if let Some(ev) = self.diff_region(rid, who, now, current) {
                    changed.insert(rid);
                    events.push(ev);
                }
            }
            i += count;
        }
        changed
    }

    /// Diffs what a slice of a poll pass gave (poll::Due), in its order,
    /// appending an event for each region that changed. A run's regions are
    /// compared with the bytes its hash was made of, so what they store
    /// afterwards is what the run's hash says (what they add to `restated`
    /// is dropped: their run is up to date).
    pub(super) fn diff_poll(
        &mut self,
        due: Vec<Due>,
        pages: &HashMap<RegionId, Vec<usize>>,
        unfinished: &HashSet<RegionId>,
        now: u64,
        events: &mut Vec<(u32, ChangeEvent)>,
    ) {
        for d in due {
            match d {
                Due::Run { start, bytes, ids } => {
                    let mark = self.restated.len();
                    for rid in ids {
                        let Some(r) = self.regions.get(rid) else { continue };
                        let at = r.addr - start;
                        let current = &bytes[at..at + r.size()];
                        if let Some(ev) = self.diff_region(rid, None, now, Some(current)) {
                            events.push(ev);
                        }
                    }
                    self.restated.truncate(mark);
                }
                Due::Alone(rid) => {
                    self.diff_all(vec![(rid, None)], pages, unfinished, now, events);
                }
            }
        }
    }

    /// The events of every pass in progress over `watcher`'s large poll
    /// regions, made now (check_changes() ends those passes).
    pub(super) fn flush_passes(&mut self, watcher: u32, events: &mut Vec<(u32, ChangeEvent)>) {
        let mut ids: Vec<RegionId> = self.passes.keys().copied().collect();
        ids.retain(|id| self.regions.get(*id).is_some_and(|r| r.watcher == watcher));
        ids.sort_unstable();
        for rid in ids {
            let pass = self.passes.remove(&rid).expect("listed above");
            if let Some(ev) = self.pass_event(rid, None, pass) {
                events.push(ev);
            }
        }
    }

    /// Forgets what the engine keeps of a region besides the region itself.
    pub(super) fn forget(&mut self, rid: RegionId) {
        self.passes.remove(&rid);
        self.page_hashes.remove(&rid);
    }

    /// How many of the first regions of `dirty` (one at least) lie close
    /// together in address order (RUN_GAP, RUN_BYTES), none with pages of
    /// its own, and their span read at once: (start, bytes), None for a
    /// single region or when the span cannot be read (each region is then
    /// read alone, so an unmapped one is found).
    #[allow(clippy::type_complexity)]
    fn read_run(
        &self,
        dirty: &[Dirty],
        pages: &HashMap<RegionId, Vec<usize>>,
    ) -> (usize, Option<(usize, Box<[u8]>)>) {
        let Some(first) = self.regions.get(dirty[0].0) else { return (1, None) };
        let (start, mut end) = (first.addr, first.addr + first.size());
        let mut count = 1;
        for (rid, _) in &dirty[1..] {
            let Some(r) = self.regions.get(*rid) else { break };
            let next_end = r.addr + r.size();
            let close = r.addr >= end && r.addr - end <= RUN_GAP && next_end - start <= RUN_BYTES;
            if !close || self.partial_pages(*rid, pages).is_some() {
                break;
            }
            end = next_end;
            count += 1;
        }
        if count == 1 {
            return (1, None);
        }
        (count, sys::read_self(start, end - start).map(|bytes| (start, bytes)))
    }

    /// The given pages of a region when it is diffed on those alone: it
    /// keeps a snapshot (or page hashes), carries no whole values, and is
    /// a poll region read in slices or spans many more pages than that.
    fn partial_pages<'p>(
        &self,
        rid: RegionId,
        pages: &'p HashMap<RegionId, Vec<usize>>,
    ) -> Option<&'p [usize]> {
        let pages = pages.get(&rid)?;
        let region = self.regions.get(rid)?;
        let opts = &self.watchers.get(&region.watcher)?.options;
        let ps = sys::page_size();
        let (addr, end) = (region.addr, region.addr + region.size());
        let span = (end - 1) / ps - addr / ps + 1;
        let comparable = region.snapshot().is_some() || self.page_hashes.contains_key(&rid);
        let few = region.kind() == Kind::Poll || pages.len() * PARTIAL_BELOW <= span;
        let partial = comparable && region.size() > opts.max_value_bytes && few;
        partial.then_some(&pages[..])
    }

    /// Like diff_region, reading only the given pages of the region (those
    /// partial_pages gave: the rest of it was not written, or is read by
    /// another slice of the pass), compared with its snapshot or its page
    /// hashes. What they show changed is added to the region's pass; the
    /// pass becomes an event when it `ends` here.
    fn diff_region_pages(
        &mut self,
        rid: RegionId,
        who: Option<FaultRecord>,
        now: u64,
        pages: &[usize],
        ends: bool,
    ) -> Option<(u32, ChangeEvent)> {
        let ps = sys::page_size();
        let region = self.regions.get(rid)?;
        let preview = self.watchers.get(&region.watcher)?.options.preview_bytes.min(region.size());
        let (addr, end) = (region.addr, region.addr + region.size());
        let hashes = self.page_hashes.get(&rid);
        let mut found = Vec::new();
        let mut parts = Vec::new();
        let mut rehashed = Vec::new();
        for (first, last) in crate::backend::runs(pages) {
            let from = (first * ps).max(addr);
            let to = ((last + 1) * ps).min(end);
            if from >= to {
                continue;
            }
            let Some(current) = sys::read_self(from, to - from) else {
                self.newly_gone.push(rid);
                return None;
            };
            let at = from - addr;
            if let Some(snap) = region.snapshot() {
                let ranges = changed_ranges(&snap[at..at + current.len()], &current);
                if !ranges.is_empty() {
                    found.extend(
                        ranges.into_iter().map(|r| ByteRange { offset: r.offset + at, ..r }),
                    );
                    parts.push((at, current));
                }
            } else if let Some(hashes) = hashes {
                // A range per changed page, clipped to the region.
                for page in first..=last {
                    let (lo, hi) = ((page * ps).max(from), ((page + 1) * ps).min(to));
                    let hash = xxh3_64(&current[lo - from..hi - from]);
                    let i = page - addr / ps;
                    if hash != hashes[i] {
                        rehashed.push((i, hash));
                        union_ranges(&mut found, &[ByteRange { offset: lo - addr, len: hi - lo }]);
                    }
                }
            }
        }
        if !found.is_empty() {
            let region = self.regions.get_mut(rid)?;
            let pass = self.passes.entry(rid).or_insert_with(|| PassChanges {
                ranges: Vec::new(),
                old_preview: region.snapshot().map_or(Vec::new(), |s| s[..preview].to_vec()),
                timestamp_ns: who.map_or(now, |w| w.timestamp_ns),
            });
            union_ranges(&mut pass.ranges, &found);
            for (at, part) in &parts {
                region.set_snapshot_part(*at, part);
            }
            if let Some(hashes) = self.page_hashes.get_mut(&rid) {
                for (i, hash) in rehashed {
                    hashes[i] = hash;
                }
            }
        }
        if !ends {
            return None;
        }
        let pass = self.passes.remove(&rid)?;
        self.pass_event(rid, who, pass)
    }

    /// The event of a region's pass (diff_region_pages): its ranges and old
    /// preview, the region's current preview (from its snapshot, or read
    /// now without one) and, with a snapshot and a store, its new value.
    fn pass_event(
        &mut self,
        rid: RegionId,
        who: Option<FaultRecord>,
        pass: PassChanges,
    ) -> Option<(u32, ChangeEvent)> {
        let region = self.regions.get_mut(rid)?;
        let entry = self.watchers.get(&region.watcher)?;
        let opts = &entry.options;
        let preview = opts.preview_bytes.min(region.size());
        let new_preview = match region.snapshot() {
            Some(snap) => snap[..preview].to_vec(),
            None => match sys::read_self(region.addr, preview) {
                Some(bytes) => bytes.to_vec(),
                None => {
                    self.newly_gone.push(rid);
                    return None;
                }
            },
        };
        let (mut storage_key_old, mut storage_key_new) = (None, None);
        if let (Some(store), Some(snap)) = (&entry.store, region.snapshot()) {
            let old_key = value_key(opts.adapter_id, u64::from(rid), region.epoch);
            let new_key = value_key(opts.adapter_id, u64::from(rid), region.epoch + 1);
            if store.contains(&old_key).unwrap_or(false) {
                storage_key_old = Some(old_key);
            }
            if store.put(&new_key, snap).is_ok() {
                storage_key_new = Some(new_key);
            }
        }
        region.epoch += 1;
        let event = ChangeEvent {
            seq: 0,
            timestamp_ns: pass.timestamp_ns,
            adapter_id: opts.adapter_id,
            region_id: rid,
            variable_name: region.name().to_string(),
            where_: Where {
                thread_id: who.map(|w| w.tid),
                fault_ip: who.map(|w| w.ip).filter(|ip| *ip != 0),
                ..Where::default()
            },
            how_big: region.size(),
            changed_ranges: pass.ranges,
            old_preview: pass.old_preview,
            new_preview,
            old_value: None,
            new_value: None,
            storage_key_old,
            storage_key_new,
            metadata: region.metadata().map(str::to_string),
            coalesced: 1,
        };
        let mut event = event;
        if opts.locate_writers {
            // Writer location hook, as in diff_region.
            let range = (region.addr, region.addr + region.size());
            crate::location::fill_where(&mut event.where_, who, opts.stack_depth, range);
        }
        Some((region.watcher, event))
    }

    /// Compares a region with its snapshot (or hash); an event if it changed.
    /// `current`: its bytes if already read (read_run), else it is read now.
    fn diff_region(
        &mut self,
        rid: RegionId,
        who: Option<FaultRecord>,
        now: u64,
        current: Option<&[u8]>,
    ) -> Option<(u32, ChangeEvent)> {
        let region = self.regions.get_mut(rid)?;
        let entry = self.watchers.get(&region.watcher)?;
        let opts = &entry.options;
        let read;
        let current = match current {
            Some(bytes) => bytes,
            None => match sys::read_self(region.addr, region.size()) {
                Some(bytes) => {
                    read = bytes;
                    &read[..]
                }
                None => {
                    // Unmapped while watched (a contract violation): drop the region.
                    self.newly_gone.push(rid);
                    return None;
                }
            },
        };
        // With a snapshot the bytes decide (no hash: most regions of a
        // pass are unchanged); without one the hash.
        let unchanged = match region.snapshot() {
            Some(snap) => snap[..] == current[..],
            None => xxh3_64(current) == region.hash,
        };
        if unchanged {
            return None;
        }
        let small = region.size() <= opts.max_value_bytes;
        let preview = opts.preview_bytes.min(region.size());
        let (ranges, old_preview, old_value) = match region.snapshot() {
            Some(snap) => (
                changed_ranges(snap, current),
                snap[..preview].to_vec(),
                small.then(|| snap.to_vec()),
            ),
            None => (vec![ByteRange { offset: 0, len: region.size() }], Vec::new(), None),
        };
        if ranges.is_empty() {
            return None; // changed and changed back between the reads
        }
        // Large values go to the value store: the new one under the next
        // epoch; the old one is there under the current epoch if it was put
        // (at watch time or by the previous event) and not evicted since.
        let (mut storage_key_old, mut storage_key_new) = (None, None);
        if let (false, Some(store)) = (small, &entry.store) {
            let old_key = value_key(opts.adapter_id, u64::from(rid), region.epoch);
            let new_key = value_key(opts.adapter_id, u64::from(rid), region.epoch + 1);
            if region.snapshot().is_some() && store.contains(&old_key).unwrap_or(false) {
                storage_key_old = Some(old_key);
            }
            if store.put(&new_key, current).is_ok() {
                storage_key_new = Some(new_key);
            }
        }
        region.epoch += 1;
        let event = ChangeEvent {
            seq: 0,
            timestamp_ns: who.map_or(now, |w| w.timestamp_ns),
            adapter_id: opts.adapter_id,
            region_id: rid,
            variable_name: region.name().to_string(),
            where_: Where {
                thread_id: who.map(|w| w.tid),
                fault_ip: who.map(|w| w.ip).filter(|ip| *ip != 0),
                ..Where::default()
            },
            how_big: region.size(),
            changed_ranges: ranges,
            old_preview,
            new_preview: current[..preview].to_vec(),
            old_value,
            new_value: small.then(|| current.to_vec()),
            storage_key_old,
            storage_key_new,
            metadata: region.metadata().map(str::to_string),
            coalesced: 1,
        };
        let mut event = event;
        if opts.locate_writers {
            // Writer location hook: resolve the captured stack.
            let range = (region.addr, region.addr + region.size());
            crate::location::fill_where(&mut event.where_, who, opts.stack_depth, range);
        }
        region.hash = xxh3_64(current);
        region.set_snapshot(current);
        if region.kind() == Kind::Poll {
            self.restated.push((region.watcher, region.addr));
        }
        Some((region.watcher, event))
    }
}
