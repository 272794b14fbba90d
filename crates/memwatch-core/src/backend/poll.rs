//! The poll backend: every poll interval, each region of a watcher is hashed
//! and diffed when its hash moved (by the engine). Works on any memory.
//!
//! Neighbouring small regions are polled as runs ([`RUN_GAP`],
//! [`RUN_BYTES`]): a run's span is read once and hashed (xxh3), and only a
//! run whose hash moved goes to the engine ([`Due::Run`], with the bytes
//! read), which diffs its regions one by one against those bytes. So an
//! idle pass costs the bytes watched, not a lookup per region. The runs
//! are rebuilt from the address index after a watch or unwatch (a run of
//! the same regions keeps its hash); a region diffed by any other path
//! drops its run's hash ([`PollRegions::invalidate`]); and a run is diffed
//! region by region every [`VERIFY_AFTER`] passes regardless.
//!
//! A pass (the worker's, or a check_changes()'s over its watcher) goes in
//! slices, each diffed under one engine-lock hold: at most [`POLL_SLICE`]
//! regions and [`POLL_SLICE_BYTES`] bytes of large regions, which are read a
//! page range at a time, so other threads' calls wait for one slice, not a
//! whole pass. The engine keeps what the slices of a large region found and
//! makes it one event when the pass reads the region's last page
//! ([`PollRegions::take_unfinished`]).

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::backend::{Detector, Dirty, NewRegion, Owners, Pass};
use crate::sys;
use crate::types::{Error, Options, RegionId};
use xxhash_rust::xxh3::xxh3_64;

/// Regions one slice of a pass diffs at most before the engine lock is
/// released (it is taken again at once for the rest): other threads' calls
/// wait for one slice, not for a whole pass over 100 000 regions.
pub const POLL_SLICE: usize = 4096;

/// Bytes of large regions one slice reads at most (page ranges of them;
/// about a millisecond of reading and comparing).
pub const POLL_SLICE_BYTES: usize = 2 << 20;

/// A region is read in page ranges when it is at least this large and
/// carries no whole values (larger than max_value_bytes): each range is
/// then at most a quarter of it. With snapshots its pages are compared
/// with the snapshot; without, with a hash per page the engine keeps.
pub const SLICED_FROM: usize = 4 * POLL_SLICE_BYTES;

/// Whether a poll region of `len` bytes is read in page ranges (SLICED_FROM).
pub fn is_sliced(len: usize, options: &Options) -> bool {
    len >= SLICED_FROM && len > options.max_value_bytes
}

/// Where a pass over a watcher's regions goes on from: the address of the
/// next region, and the page (from the region's first) of a sliced region
/// to go on from. None: from the start.
pub type Cursor = Option<(usize, usize)>;

/// Neighbouring small regions of a watcher make one run, read with one
/// system call and hashed at once, when each starts at most RUN_GAP bytes
/// after the previous one ends and the run spans at most RUN_BYTES: an
/// unchanged run costs one read and one hash, whatever its region count.
pub const RUN_GAP: usize = 4096;
/// See [`RUN_GAP`].
pub const RUN_BYTES: usize = 64 << 10;

/// A run whose hash matched this many passes in a row is diffed region by
/// region once anyway, so a hash collision (2^-64 a comparison) hides a
/// change for at most this many poll intervals.
pub const VERIFY_AFTER: u8 = 64;

/// What one slice of a pass gives the engine to diff, in address order.
#[derive(Debug)]
pub enum Due {
    /// A run of small regions whose bytes moved since the run was last
    /// diffed (or that was never diffed, or is due for VERIFY_AFTER): its
    /// span read once from `start`. The engine diffs each region against
    /// these very bytes before the lock is released: the run's hash is
    /// already theirs.
    Run { start: usize, bytes: Box<[u8]>, ids: Vec<RegionId> },
    /// A region diffed alone (read by the engine): a sliced region (its
    /// pages in take_batch_pages), or one of a run whose span could not be
    /// read (so an unmapped one is found).
    Alone(RegionId),
}

/// Regions `first..first + count` of the pass list, spanning [start, end).
struct Run {
    start: usize,
    end: usize,
    first: u32,
    count: u32,
    /// xxh3 of the span when its regions were last diffed against it; None:
    /// unknown (new, or a region of it was diffed by another path).
    hash: Option<u64>,
    /// Passes its hash has matched since it was last diffed (VERIFY_AFTER).
    age: u8,
    /// A region read in page ranges (is_sliced), alone in its run.
    sliced: bool,
}

/// The poll regions of one watcher.
struct PollSet {
    /// Regions by start address (overlap checks, polling in address order).
    by_addr: BTreeMap<usize, RegionId>,
    /// The ids of by_addr in its order, in runs: rebuilt from it at the
    /// next slice after a watch or unwatch (`stale`), so a pass looks
    /// nothing up by id.
    entries: Vec<RegionId>,
    runs: Vec<Run>,
    stale: bool,
    interval_ns: u64,
    next_poll_ns: u64,
    /// The worker's pass in progress.
    cursor: Cursor,
    /// Finished a pass in the last collect: the next is scheduled from the
    /// end of its diffs (after_diff), so a pass longer than the interval
    /// does not start the next one at once.
    finished: bool,
}

impl PollSet {
    /// Rebuilds the pass list and its runs if a region came or went; a run
    /// of the same regions as before keeps its hash (any other starts
    /// unknown: its regions' stored bytes may differ from what it hashed).
    fn refresh(&mut self, len_of: &dyn Fn(RegionId) -> usize, sliced: &Sliced) {
        if !self.stale {
            return;
        }
        self.stale = false;
        let old_entries = std::mem::take(&mut self.entries);
        let old_runs = std::mem::take(&mut self.runs);
        let (entries, runs) = (&mut self.entries, &mut self.runs);
        entries.reserve_exact(self.by_addr.len());
        for (&addr, &id) in &self.by_addr {
            let big = sliced.len.get(&id).copied();
            let len = big.unwrap_or_else(|| len_of(id));
            let end = addr + len;
            let at = entries.len() as u32;
            entries.push(id);
            if let Some(run) = runs.last_mut() {
                let close = addr >= run.end && addr - run.end <= RUN_GAP;
                if !run.sliced && big.is_none() && close && end - run.start <= RUN_BYTES {
                    run.end = end;
                    run.count += 1;
                    continue;
                }
            }
            let sliced = big.is_some();
            runs.push(Run { start: addr, end, first: at, count: 1, hash: None, age: 0, sliced });
        }
        fn ids<'e>(e: &'e [RegionId], r: &Run) -> &'e [RegionId] {
            &e[r.first as usize..(r.first + r.count) as usize]
        }
        let mut old = old_runs.iter().filter(|o| o.hash.is_some()).peekable();
        for run in runs.iter_mut() {
            while old.next_if(|o| o.start < run.start).is_some() {}
            let Some(o) = old.peek() else { break };
            let same = (o.start, o.end, o.count) == (run.start, run.end, run.count);
            if same && ids(&old_entries, o) == ids(entries, run) {
                (run.hash, run.age) = (o.hash, o.age);
            }
        }
        entries.shrink_to_fit();
        runs.shrink_to_fit();
    }

    /// Heap bytes of the pass list and runs, and of the B-tree (entries
    /// ~2/3 full).
    fn bytes(&self) -> usize {
        use std::mem::size_of;
        self.entries.capacity() * size_of::<RegionId>()
            + self.runs.capacity() * size_of::<Run>()
            + self.by_addr.len() * (size_of::<usize>() + size_of::<RegionId>()) * 3 / 2
    }
}

/// The poll backend's regions, per watcher (each polls on its own interval).
#[derive(Default)]
pub struct PollRegions {
    watchers: HashMap<u32, PollSet>,
    sliced: Sliced,
}

/// The regions read in page ranges, and what the last collect read of them.
#[derive(Default)]
struct Sliced {
    /// The regions read in page ranges (is_sliced): their length.
    len: HashMap<RegionId, usize>,
    /// Their page ranges in the last collect (take_batch_pages).
    pages: HashMap<RegionId, Vec<usize>>,
    /// Those of the last collect whose pass goes on in a later slice
    /// (take_unfinished).
    unfinished: HashSet<RegionId>,
}

impl PollRegions {
    /// A watcher that may have poll regions, polled every `interval_ns`
    /// from `now`.
    pub fn add_watcher(&mut self, watcher: u32, interval_ns: u64, now: u64) {
        let set = PollSet {
            by_addr: BTreeMap::new(),
            entries: Vec::new(),
            runs: Vec::new(),
            stale: false,
            interval_ns,
            next_poll_ns: now + interval_ns,
            cursor: None,
            finished: false,
        };
        self.watchers.insert(watcher, set);
    }

    /// How many poll regions `watcher` has.
    pub fn regions_of(&self, watcher: u32) -> usize {
        self.watchers.get(&watcher).map_or(0, |s| s.by_addr.len())
    }

    /// Native bytes of `watcher`'s poll index (B-tree, pass list, runs) per
    /// region, for stats.
    pub fn bytes_per_region(&self, watcher: u32) -> usize {
        self.watchers.get(&watcher).map_or(0, |s| s.bytes() / s.by_addr.len().max(1))
    }

    /// Forgets a watcher (its regions were unregistered).
    pub fn remove_watcher(&mut self, watcher: u32) {
        self.watchers.remove(&watcher);
    }

    /// The engine diffed these regions, (watcher, address), by another path
    /// than a [`Due::Run`]: the runs holding them are hashed afresh.
    pub fn invalidate(&mut self, restated: impl Iterator<Item = (u32, usize)>) {
        for (watcher, addr) in restated {
            let Some(set) = self.watchers.get_mut(&watcher) else { continue };
            let i = set.runs.partition_point(|r| r.start <= addr);
            if let Some(run) = i.checked_sub(1).map(|i| &mut set.runs[i]) {
                if run.end > addr {
                    run.hash = None;
                }
            }
        }
    }

    /// Tests: every run of `watcher` takes the hash of its span's bytes now
    /// and an age of 0, as if its regions had been diffed against them (a
    /// hash collision when they were not).
    #[cfg(test)]
    pub(crate) fn forge_hashes(&mut self, watcher: u32) {
        for run in &mut self.watchers.get_mut(&watcher).unwrap().runs {
            run.hash = sys::read_self(run.start, run.end - run.start).map(|b| xxh3_64(&b));
            run.age = 0;
        }
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

    /// The next slice of check_changes()'s pass over `watcher`'s regions,
    /// from `cursor` (updated; None once the pass is done, which also ends
    /// the worker's pass in progress over them and schedules its next an
    /// interval later). The pages of sliced regions and those whose pass
    /// goes on are in take_batch_pages and take_unfinished, as for collect.
    pub fn collect_now(
        &mut self,
        owners: &dyn Owners,
        watcher: u32,
        cursor: &mut Cursor,
        now: u64,
    ) -> Vec<Due> {
        self.pass_of(owners, watcher, cursor, Budget::slice(), now, true)
    }

    /// The worker's next slice of the regions of every watcher whose
    /// interval passed (as collect(Pass::Due), with runs hashed).
    pub fn collect_due(&mut self, owners: &dyn Owners, now: u64) -> Vec<Due> {
        self.due(owners, now, true)
    }

    fn due(&mut self, owners: &dyn Owners, now: u64, hashed: bool) -> Vec<Due> {
        let mut out = Vec::new();
        let len_of = |rid| owners.region_len(rid).unwrap_or(0);
        let due = |s: &PollSet| s.next_poll_ns <= now || s.cursor.is_some();
        let mut budget = Budget::slice();
        for set in self.watchers.values_mut().filter(|s| due(s)) {
            if budget.bytes < sys::page_size() {
                break; // the next slice goes on
            }
            let mut cursor = set.cursor.take();
            let done = Self::slice(
                set,
                &mut cursor,
                &len_of,
                &mut budget,
                &mut out,
                &mut self.sliced,
                hashed,
            );
            set.cursor = cursor;
            if done {
                set.next_poll_ns = now + set.interval_ns;
                set.finished = !set.by_addr.is_empty();
            }
        }
        out
    }

    /// The next part of a check_changes() pass over `watcher`'s regions
    /// from `cursor`, as much as `budget` takes (collect_now: a slice;
    /// collect(Pass::Now): all of it).
    fn pass_of(
        &mut self,
        owners: &dyn Owners,
        watcher: u32,
        cursor: &mut Cursor,
        mut budget: Budget,
        now: u64,
        hashed: bool,
    ) -> Vec<Due> {
        let mut out = Vec::new();
        let Some(set) = self.watchers.get_mut(&watcher) else {
            *cursor = None;
            return out;
        };
        let len_of = |rid| owners.region_len(rid).unwrap_or(0);
        if Self::slice(set, cursor, &len_of, &mut budget, &mut out, &mut self.sliced, hashed) {
            set.cursor = None;
            set.next_poll_ns = now + set.interval_ns;
            set.finished = true;
        }
        out
    }

    /// The next slice of a pass over `set` from `cursor`: runs of at most
    /// `budget.regions` regions to diff and `budget.bytes` bytes (updated;
    /// a run larger than what is left waits for the next slice unless it
    /// comes first). `hashed`: a run of small regions whose bytes hash as
    /// when it was last diffed is skipped, and one whose hash moved is a
    /// [`Due::Run`] (its hash set to the bytes it carries); else each region
    /// is a [`Due::Alone`]. A sliced region is read a page range at a time:
    /// its pages of this slice go to `sliced.pages`, and to
    /// `sliced.unfinished` if its pass goes on. True when the pass is done
    /// (the cursor is then None).
    fn slice(
        set: &mut PollSet,
        cursor: &mut Cursor,
        len_of: &dyn Fn(RegionId) -> usize,
        budget: &mut Budget,
        out: &mut Vec<Due>,
        sliced: &mut Sliced,
        hashed: bool,
    ) -> bool {
        set.refresh(len_of, sliced);
        let ps = sys::page_size();
        let (from, skip) = cursor.unwrap_or((0, 0));
        let mut taken = 0;
        // The run holding the cursor's address, if the runs changed since.
        let first = set.runs.partition_point(|r| r.end <= from);
        for (i, run) in set.runs.iter_mut().enumerate().skip(first) {
            let fresh = budget.bytes == budget.full;
            let entries = &set.entries[run.first as usize..(run.first + run.count) as usize];
            let count = run.count as usize;
            if !run.sliced {
                let span = run.end - run.start;
                if taken == budget.regions || (span > budget.bytes && !fresh) {
                    *cursor = Some((run.start, 0));
                    return false;
                }
                let bytes = if hashed { sys::read_self(run.start, span) } else { None };
                let hash = bytes.as_deref().map(xxh3_64);
                if hash.is_some() && hash == run.hash && run.age < VERIFY_AFTER {
                    run.age += 1;
                    budget.bytes = budget.bytes.saturating_sub(span);
                    continue;
                }
                if taken > 0 && taken + count > budget.regions {
                    *cursor = Some((run.start, 0));
                    return false;
                }
                budget.bytes = budget.bytes.saturating_sub(span);
                taken += count;
                // A run hashed for the first time starts at an age of its
                // own, so runs are not all verified in the same pass.
                let age = if run.hash.is_none() { i % VERIFY_AFTER as usize } else { 0 };
                (run.hash, run.age) = (hash, age as u8);
                match bytes {
                    Some(bytes) => {
                        let ids = entries.to_vec();
                        out.push(Due::Run { start: run.start, bytes, ids });
                    }
                    None => out.extend(entries.iter().map(|&id| Due::Alone(id))),
                }
                continue;
            }
            let addr = run.start;
            if taken == budget.regions || budget.bytes < ps {
                *cursor = Some((addr, if addr == from { skip } else { 0 }));
                return false;
            }
            taken += 1;
            let rid = entries[0];
            let span = crate::backend::pages_of(addr, run.end - addr);
            let (first, total) = (*span.start(), span.count());
            // Where the last slice stopped in it (0 if the cursor's region
            // went away and this one took its place).
            let skip = if addr == from { skip.min(total) } else { 0 };
            let count = (total - skip).min(budget.bytes / ps);
            budget.bytes -= count * ps;
            out.push(Due::Alone(rid));
            sliced.pages.insert(rid, (first + skip..first + skip + count).collect());
            if skip + count < total {
                sliced.unfinished.insert(rid);
                *cursor = Some((addr, skip + count));
                return false;
            }
        }
        *cursor = None;
        true
    }
}

/// What one slice may still take: regions per watcher, and bytes in all
/// (`full` at its start).
struct Budget {
    regions: usize,
    bytes: usize,
    full: usize,
}

impl Budget {
    /// One slice's: POLL_SLICE regions, POLL_SLICE_BYTES bytes.
    fn slice() -> Budget {
        Budget { regions: POLL_SLICE, bytes: POLL_SLICE_BYTES, full: POLL_SLICE_BYTES }
    }
}

/// The regions of a slice as Dirty (each to be read by the engine).
fn alone(due: Vec<Due>) -> Vec<Dirty> {
    let ids = due.into_iter().flat_map(|d| match d {
        Due::Run { ids, .. } => ids,
        Due::Alone(rid) => vec![rid],
    });
    ids.map(|rid| (rid, None)).collect()
}

impl Detector for PollRegions {
    fn register(&mut self, _owners: &dyn Owners, r: &NewRegion<'_>) -> Result<(), Error> {
        let set = self.watchers.get_mut(&r.watcher).ok_or(Error::Closed)?;
        set.by_addr.insert(r.addr, r.id);
        set.stale = true;
        if is_sliced(r.len, r.options) {
            self.sliced.len.insert(r.id, r.len);
        }
        Ok(())
    }

    fn unregister(&mut self, id: RegionId, addr: usize, _len: usize) {
        self.sliced.len.remove(&id);
        for set in self.watchers.values_mut() {
            if set.by_addr.get(&addr) == Some(&id) {
                set.by_addr.remove(&addr);
                set.stale = true;
                return;
            }
        }
    }

    /// The worker: the next slice of the regions of every watcher whose
    /// interval passed; check_changes: all regions of its watcher at once
    /// (the engine slices check_changes with collect_now instead). Every
    /// region of the slice is listed, none skipped by its run's hash: the
    /// engine uses collect_due and collect_now, which do.
    fn collect(&mut self, owners: &dyn Owners, now: u64, pass: Pass) -> Vec<Dirty> {
        match pass {
            Pass::Now(watcher) => {
                let all = Budget { regions: usize::MAX, bytes: usize::MAX, full: usize::MAX };
                alone(self.pass_of(owners, watcher, &mut None, all, now, false))
            }
            Pass::Due => alone(self.due(owners, now, false)),
        }
    }

    fn after_diff(&mut self, _: &dyn Owners, _: &HashSet<RegionId>, _: u64) -> Vec<RegionId> {
        let mut end = None;
        for set in self.watchers.values_mut().filter(|s| s.finished) {
            set.finished = false;
            let end = *end.get_or_insert_with(sys::monotonic_ns);
            set.next_poll_ns = set.next_poll_ns.max(end + set.interval_ns);
        }
        Vec::new()
    }

    fn next_deadline(&self, _owners: &dyn Owners) -> Option<u64> {
        let sets = self.watchers.values().filter(|s| !s.by_addr.is_empty());
        // A pass in progress goes on at once (the lock was released between).
        sets.map(|s| if s.cursor.is_some() { 0 } else { s.next_poll_ns }).min()
    }

    fn take_batch_pages(&mut self) -> HashMap<RegionId, Vec<usize>> {
        std::mem::take(&mut self.sliced.pages)
    }

    fn take_unfinished(&mut self) -> HashSet<RegionId> {
        std::mem::take(&mut self.sliced.unfinished)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Options;

    struct NoOwners;
    impl Owners for NoOwners {
        fn options_of(&self, _: RegionId) -> Option<&Options> {
            None
        }
        fn options_of_backend(&self, _: crate::types::Backend) -> Vec<&Options> {
            Vec::new()
        }
        fn all_options(&self) -> Vec<&Options> {
            Vec::new()
        }
        fn region_len(&self, _: RegionId) -> Option<usize> {
            Some(16)
        }
    }

    fn add(p: &mut PollRegions, watcher: u32, id: RegionId, addr: usize) {
        let options = Options::default();
        let r = NewRegion { watcher, id, addr, len: 16, mappings: &[], options: &options };
        p.register(&NoOwners, &r).unwrap();
    }

    #[test]
    fn polls_each_watcher_on_its_own_interval_in_address_order() {
        let mut p = PollRegions::default();
        p.add_watcher(1, 100, 1_000);
        p.add_watcher(2, 300, 1_000);
        add(&mut p, 1, 7, 0x3000);
        add(&mut p, 1, 8, 0x1000);
        add(&mut p, 2, 9, 0x2000);
        assert_eq!(p.next_deadline(&NoOwners), Some(1_100));
        assert!(p.collect(&NoOwners, 1_050, Pass::Due).is_empty());
        let due: Vec<RegionId> =
            p.collect(&NoOwners, 1_100, Pass::Due).into_iter().map(|d| d.0).collect();
        assert_eq!(due, [8, 7]); // watcher 1 only, by address
        assert_eq!(p.next_deadline(&NoOwners), Some(1_200));
        // check_changes of watcher 2 polls its regions now, and only those.
        let now: Vec<RegionId> =
            p.collect(&NoOwners, 1_150, Pass::Now(2)).into_iter().map(|d| d.0).collect();
        assert_eq!(now, [9]);
        assert_eq!(p.next_deadline(&NoOwners), Some(1_200));
        p.unregister(8, 0x1000, 16);
        p.unregister(7, 0x3000, 16);
        assert_eq!(p.next_deadline(&NoOwners), Some(1_450)); // watcher 2's
        p.remove_watcher(2);
        assert_eq!(p.next_deadline(&NoOwners), None);
    }

    #[test]
    fn a_worker_pass_goes_in_slices_and_the_next_is_scheduled_from_its_end() {
        let mut p = PollRegions::default();
        p.add_watcher(1, 100, 1_000);
        let n = POLL_SLICE * 2 + 5;
        for i in 0..n {
            add(&mut p, 1, i as RegionId + 1, 0x10_000 + i * 16);
        }
        let ids = |d: Vec<Dirty>| d.into_iter().map(|d| d.0).collect::<Vec<_>>();
        let first = ids(p.collect(&NoOwners, 1_100, Pass::Due));
        assert_eq!(first, (1..=POLL_SLICE as RegionId).collect::<Vec<_>>());
        assert_eq!(p.next_deadline(&NoOwners), Some(0), "the rest is due at once");
        let second = ids(p.collect(&NoOwners, 1_101, Pass::Due));
        assert_eq!(second[0], POLL_SLICE as RegionId + 1);
        assert_eq!(second.len(), POLL_SLICE);
        let third = ids(p.collect(&NoOwners, 1_102, Pass::Due));
        assert_eq!(third, ((2 * POLL_SLICE + 1) as RegionId..=n as RegionId).collect::<Vec<_>>());
        // The pass ended at 1_102; after its diffs (later still, on the real
        // clock) the next pass is an interval after that end.
        assert_eq!(p.next_deadline(&NoOwners), Some(1_202));
        let before = sys::monotonic_ns();
        p.after_diff(&NoOwners, &HashSet::new(), 1_102);
        assert!(p.next_deadline(&NoOwners).unwrap() >= before + 100);
        // check_changes polls everything at once, ending a pass in progress.
        p.watchers.get_mut(&1).unwrap().next_poll_ns = 0;
        assert_eq!(p.collect(&NoOwners, 2_000, Pass::Due).len(), POLL_SLICE);
        assert_eq!(p.collect(&NoOwners, 2_001, Pass::Now(1)).len(), n);
        assert_eq!(p.next_deadline(&NoOwners), Some(2_101));
    }

    #[test]
    fn finds_overlaps_within_one_watcher_only() {
        let mut p = PollRegions::default();
        p.add_watcher(1, 100, 0);
        p.add_watcher(2, 100, 0);
        add(&mut p, 1, 5, 0x1000);
        let size = |_| 16;
        assert_eq!(p.overlapping(1, 0x100f, 0x1010, size), Some((5, 0x1000)));
        assert_eq!(p.overlapping(1, 0x1010, 0x1020, size), None); // adjacent
        assert_eq!(p.overlapping(1, 0x0ff0, 0x1000, size), None);
        assert_eq!(p.overlapping(2, 0x1000, 0x1010, size), None);
    }

    #[test]
    fn registering_for_an_unknown_watcher_is_an_error() {
        let mut p = PollRegions::default();
        let options = Options::default();
        let r =
            NewRegion { watcher: 3, id: 1, addr: 0x1000, len: 1, mappings: &[], options: &options };
        assert_eq!(p.register(&NoOwners, &r), Err(Error::Closed));
    }
}
