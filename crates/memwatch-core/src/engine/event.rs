//! The step every backend shares: a region that may have changed is read,
//! compared with its snapshot (or hash), and turned into a [`ChangeEvent`]
//! when it did change.

use std::collections::{HashMap, HashSet};

use memwatch_store::value_key;
use xxhash_rust::xxh3::xxh3_64;

use super::Registry;
use crate::backend::{Dirty, FaultRecord};
use crate::diff::changed_ranges;
use crate::sys;
use crate::types::*;

/// A region is diffed on its written pages alone when they are at most one
/// in this many of its pages.
const PARTIAL_BELOW: usize = 4;

/// Regions that follow each other in address order, each at most this far
/// from the previous one, are read with one system call, up to this many
/// bytes in all: a poll pass over many small regions costs the bytes it
/// reads, not a call per region.
const RUN_GAP: usize = 4096;
const RUN_BYTES: usize = 64 << 10;

impl Registry {
    /// Diffs the regions a backend collected, in its order; appends an
    /// event (with its watcher) for each that changed and returns their ids.
    /// `pages` holds the written pages behind a region where the backend
    /// knows them: a large region with a snapshot is read and compared on
    /// those pages only, so an event costs what was written, not the
    /// region's size.
    pub(super) fn diff_all(
        &mut self,
        dirty: Vec<Dirty>,
        pages: &HashMap<RegionId, Vec<usize>>,
        now: u64,
        events: &mut Vec<(u32, ChangeEvent)>,
    ) -> HashSet<RegionId> {
        let mut changed = HashSet::new();
        let mut i = 0;
        while i < dirty.len() {
            let (rid, who) = dirty[i];
            if let Some(pages) = self.partial_pages(rid, pages) {
                i += 1;
                if let Some(ev) = self.diff_region_pages(rid, who, now, pages) {
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

    /// The written pages of a region when it is diffed on those alone: it
    /// spans many more pages than that, keeps a snapshot and carries no
    /// whole values.
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
        let partial = region.snapshot().is_some()
            && region.size() > opts.max_value_bytes
            && pages.len() * PARTIAL_BELOW <= span;
        partial.then_some(&pages[..])
    }

    /// Like diff_region, reading only the given pages of the region (those
    /// partial_pages gave: the rest of it was not written, so its snapshot
    /// is its current value).
    fn diff_region_pages(
        &mut self,
        rid: RegionId,
        who: Option<FaultRecord>,
        now: u64,
        pages: &[usize],
    ) -> Option<(u32, ChangeEvent)> {
        let ps = sys::page_size();
        let region = self.regions.get(rid)?;
        let opts = &self.watchers.get(&region.watcher)?.options;
        let (addr, end) = (region.addr, region.addr + region.size());
        let region = self.regions.get_mut(rid)?;
        let mut ranges = Vec::new();
        let mut parts = Vec::new();
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
            let snap = &region.snapshot().expect("checked")[at..at + current.len()];
            let found = changed_ranges(snap, &current);
            if !found.is_empty() {
                ranges.extend(found.into_iter().map(|r| ByteRange { offset: r.offset + at, ..r }));
                parts.push((at, current));
            }
        }
        if ranges.is_empty() {
            return None;
        }
        let preview = opts.preview_bytes.min(region.size());
        let old_preview = region.snapshot().expect("checked")[..preview].to_vec();
        for (at, part) in &parts {
            region.set_snapshot_part(*at, part);
        }
        let snap = region.snapshot().expect("checked");
        let entry = self.watchers.get(&region.watcher)?;
        let (mut storage_key_old, mut storage_key_new) = (None, None);
        if let Some(store) = &entry.store {
            let old_key = value_key(opts.adapter_id, u64::from(rid), region.epoch);
            let new_key = value_key(opts.adapter_id, u64::from(rid), region.epoch + 1);
            if store.contains(&old_key).unwrap_or(false) {
                storage_key_old = Some(old_key);
            }
            if store.put(&new_key, snap).is_ok() {
                storage_key_new = Some(new_key);
            }
        }
        let new_preview = snap[..preview].to_vec();
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
        let hash = xxh3_64(current);
        let unchanged = match region.snapshot() {
            Some(snap) => snap[..] == current[..],
            None => hash == region.hash,
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
        region.hash = hash;
        region.set_snapshot(current);
        Some((region.watcher, event))
    }
}
