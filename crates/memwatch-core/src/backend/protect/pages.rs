//! The engine side of the protect backend: which pages are watched and by
//! which regions, which are writable now (open), and when each is due to be
//! re-protected and diffed. Pages written nonstop go hot: left writable and
//! diffed every poll interval instead of faulting on every window. Pages are
//! re-armed (made read-only again) in runs: one mprotect per run of
//! consecutive pages.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use super::handler;
use super::handler_state;
use super::page_table::PageTableWriter;
use super::ring::Ring;
use crate::backend::{self, Detector, Dirty, FaultRecord, NewRegion, Owners, Pass};
use crate::regions::IdList;
use crate::sys;
use crate::sys::maps::{self, MapsCache};
use crate::types::{Error, RegionId};

/// A page re-faulted within a window of its re-protection this many times
/// in a row stays writable and is polled every poll interval instead
/// (adaptive mode for hot pages: no fault storm for memory written nonstop).
const HOT_AFTER_REFAULTS: u8 = 8;
/// Pages open (written) at once from which on a page re-armed then counts
/// its refaults within the bulk horizon, not a window: a writer looping
/// over many pages comes back to each only after its pass, which the
/// faults themselves slow down to far more than a window (1 000 pages:
/// ~60 ms, 10 000: ~400 ms, 65 536: ~2.5 s here), so no page would go hot
/// and every pass would fault on every page. The horizon is BULK_POLLS poll
/// intervals, or PASS_FACTOR passes while faults come at BULK_FAULTS_PER_S
/// or more (a pass: the pages that still fault over the measured fault
/// rate), so it follows the pass however long it gets. A page that goes hot
/// wrongly cools down after COOL_AFTER_QUIET_WINDOWS quiet diffs.
const BULK_PAGES: usize = 64;
const BULK_POLLS: u64 = 10;
const PASS_FACTOR: u64 = 4;
/// Fault rate (process-wide, per second) from which on a page re-armed in
/// bulk goes hot after HOT_AFTER_BULK_REFAULTS refaults in a row: faults
/// then cost the writers ~1% of a core or more (~5 us each), and a pass
/// over many pages is too slow to wait HOT_AFTER_REFAULTS passes. Faulting
/// fast ends below a quarter of that rate.
const BULK_FAULTS_PER_S: u64 = 2_000;
const HOT_AFTER_BULK_REFAULTS: u8 = 2;
/// How often the fault rate is measured (CLOCK_MONOTONIC ns).
const RATE_PERIOD_NS: u64 = 50_000_000;
/// A hot page unchanged for this many diffs is protected again (while
/// faulting fast, only once also unchanged for the bulk horizon: a loop
/// slowed down by the faults on its other pages comes back only after its
/// pass).
const COOL_AFTER_QUIET_WINDOWS: u8 = 4;

/// A protect page that is writable now (pages not in `open` are read-only:
/// their next write faults).
#[derive(Clone, Copy, Debug)]
enum OpenMode {
    /// Written; writable until `due` (a window after the write).
    Open { due: u64, who: Option<FaultRecord> },
    /// Written too often: left writable and diffed at `due` (every poll
    /// interval, at least a window apart); unchanged for the last `quiet`
    /// diffs, since `changed` (CLOCK_MONOTONIC ns).
    Hot { due: u64, quiet: u8, changed: u64 },
}

impl OpenMode {
    /// When the page is to be re-protected (Open) or diffed (Hot).
    fn due(&self) -> u64 {
        match *self {
            OpenMode::Open { due, .. } | OpenMode::Hot { due, .. } => due,
        }
    }

    fn is_hot(&self) -> bool {
        matches!(self, OpenMode::Hot { .. })
    }
}

/// A page of the protect backend (24 bytes; the state of a writable page is
/// in `open`, so read-only pages do not carry it).
struct PageInfo {
    regions: IdList,
    /// When it was last re-protected: CLOCK_MONOTONIC microseconds, wrapping
    /// (71 minutes), compared as a wrapping difference with a window.
    reprotected_us: u32,
    /// Its own PROT_* bits (PageInfo::prot).
    prot_bits: u8,
    refaults: u8,
    /// Last re-protected before its window ended (by check_changes): the
    /// next refault says nothing about how often the page is written.
    reprotected_early: bool,
    /// Last re-protected in a batch of at least BULK_PAGES pages: a loop
    /// over that many pages refaults each one only after its pass.
    in_bulk: bool,
}

/// The protect backend's pages.
pub struct ProtectPages {
    pages: HashMap<usize, PageInfo>,
    /// Pages that are writable now (Open or Hot).
    open: HashMap<usize, OpenMode>,
    table: PageTableWriter,
    ring: &'static Ring,
    /// Hot pages of the last collect, waiting for after_diff.
    hot_batch: Vec<usize>,
    /// Region -> its pages in the last collect (take_batch_pages).
    batch_pages: HashMap<RegionId, Vec<usize>>,
    /// /proc/self/maps as of this pass (read on first need).
    maps: MapsCache,
    /// Regions on pages found replaced, for the engine to drop (take_gone).
    gone: Vec<RegionId>,
    /// When to check all pages next (check_changes checks them too).
    next_sweep_ns: u64,
    /// Re-arms (mprotect read-only) that failed; those pages were polled.
    reprotect_failures: u64,
    /// The tracked pages as runs (first, last, saved protection) for the
    /// sweep; None when pages came or went since it was computed.
    runs: Option<Vec<(usize, usize, i32)>>,
    /// Fault rate measurement: (CLOCK_MONOTONIC ns, faults) at its start.
    rate_mark: (u64, u64),
    /// A pass over the pages that still fault at the fault rate last
    /// measured (ns), or 0 while faults come slower than BULK_FAULTS_PER_S.
    pass_ns: u64,
}

/// What the worker checks, without the engine mutex, before it blocks: the
/// handler wakes it only when told it is idle.
#[derive(Clone, Copy)]
pub struct IdleGate {
    ring: &'static Ring,
}

impl IdleGate {
    /// Tells handlers the worker is about to block with no deadline. False
    /// (and not idle) when a fault arrived meanwhile: run again instead.
    pub fn going_idle(&self) -> bool {
        let hs = handler_state::get();
        hs.worker_idle.store(true, Ordering::SeqCst);
        if self.ring.has_pending() || self.ring.header().overflowed.load(Ordering::SeqCst) {
            hs.worker_idle.store(false, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// The worker woke up.
    pub fn awake(&self) {
        handler_state::get().worker_idle.store(false, Ordering::SeqCst);
    }
}

impl PageInfo {
    /// The protection the page had before it was watched.
    fn prot(&self) -> i32 {
        i32::from(self.prot_bits)
    }
}

/// CLOCK_MONOTONIC nanoseconds -> PageInfo::reprotected_us.
fn wrapping_us(ns: u64) -> u32 {
    (ns / 1000) as u32
}

impl ProtectPages {
    /// Maps the fault ring and the handler state and points the handler at
    /// them; `wake_fd` is the worker's eventfd. The handler itself is
    /// installed by the first protect watcher ([`handler::install`]).
    pub fn new(ring_capacity: usize, wake_fd: i32) -> Result<(ProtectPages, IdleGate), String> {
        // memwatch's own mappings are made now, not lazily inside a watch
        // (where they could land in a hole the caller is about to name).
        handler_state::get();
        let ring = Ring::new(ring_capacity).ok_or("cannot map the fault ring")?;
        let ring: &'static Ring = Box::leak(Box::new(ring));
        handler::set_ring_and_wake(ring, wake_fd);
        let pages = ProtectPages {
            pages: HashMap::new(),
            open: HashMap::new(),
            table: PageTableWriter::new(),
            ring,
            hot_batch: Vec::new(),
            batch_pages: HashMap::new(),
            maps: MapsCache::default(),
            gone: Vec::new(),
            next_sweep_ns: 0,
            reprotect_failures: 0,
            runs: None,
            rate_mark: (sys::monotonic_ns(), handler_state::get().faults.load(Ordering::Relaxed)),
            pass_ns: 0,
        };
        Ok((pages, IdleGate { ring }))
    }

    /// The protection a page had before we made it read-only (None if it is
    /// not ours): /proc/self/maps shows ours, not the owner's.
    pub fn saved_prot(&self, page: usize) -> Option<i32> {
        self.pages.get(&page).map(PageInfo::prot)
    }

    /// Address ranges of memwatch's own mappings (fault ring, handler state,
    /// page table): no watch may cover them.
    pub fn own_ranges(&self) -> [Option<(usize, usize)>; 4] {
        [
            Some(self.ring.range()),
            Some(handler_state::range()),
            self.table.range(),
            crate::location::capture::range(),
        ]
    }

    /// Cells of the fault ring (the writer-location frame buffer has as many).
    pub fn ring_slots(&self) -> usize {
        self.ring.capacity()
    }

    /// Starts a pass (the engine took its lock): mappings are read afresh
    /// when next needed.
    pub fn new_pass(&mut self) {
        self.maps = MapsCache::default();
    }

    /// Regions on pages found replaced or unmapped since the last call.
    pub fn take_gone(&mut self) -> Vec<RegionId> {
        std::mem::take(&mut self.gone)
    }

    /// When the worker must check every page again (None: no pages).
    pub fn next_sweep(&self) -> Option<u64> {
        (!self.pages.is_empty()).then_some(self.next_sweep_ns)
    }

    /// Checks the tracked pages of `[addr, addr+len)`; true if any was
    /// replaced (then forgotten, its regions queued for take_gone).
    pub fn drop_if_replaced(&mut self, addr: usize, len: usize) -> bool {
        let tracked: Vec<usize> =
            backend::pages_of(addr, len).filter(|p| self.pages.contains_key(p)).collect();
        let replaced = self.replaced_pages(&tracked);
        self.drop_replaced(&replaced);
        !replaced.is_empty()
    }

    /// The pages of `pages` (tracked ones) that no longer hold the mapping
    /// the engine protected. Ours is mapped with the protection the engine
    /// left it in: read-only between writes (`PROT_READ`, plus `PROT_EXEC`
    /// if it had it), or written (its own protection plus read-write, as the
    /// handler leaves it). A read-only private anonymous page must also be
    /// populated (in memory or swapped): the engine read it when it was
    /// watched, while a mapping made over it since is empty until touched.
    /// Anything else (unmapped, another protection) was replaced. When
    /// the mappings cannot be read nothing is judged replaced.
    fn replaced_pages(&mut self, pages: &[usize]) -> Vec<usize> {
        let mut tracked: Vec<(usize, i32)> =
            pages.iter().filter_map(|p| self.pages.get(p).map(|i| (*p, i.prot()))).collect();
        tracked.sort_unstable();
        tracked.dedup();
        let runs = prot_runs(tracked.into_iter());
        self.replaced_in_runs(&runs)
    }

    /// replaced_pages for runs of consecutive pages `(first, last, saved
    /// protection)`: the mappings over each run are asked of the kernel
    /// (PROCMAP_QUERY, one ioctl per mapping; without it /proc/self/maps
    /// read once per pass), so the cost follows the runs and mappings, not
    /// the pages, unless pages were replaced.
    fn replaced_in_runs(&mut self, runs: &[(usize, usize, i32)]) -> Vec<usize> {
        let ps = sys::page_size();
        let mut replaced = Vec::new();
        for &(first, last, prot) in runs {
            let (start, end) = (first * ps, (last + 1) * ps);
            let Some(found) = maps::mappings_in(start, end, &mut self.maps) else { continue };
            let written = prot | libc::PROT_READ | libc::PROT_WRITE;
            let read_only = libc::PROT_READ | (prot & libc::PROT_EXEC);
            let mut at = start;
            for m in found {
                let (from, to) = (m.start.max(start), m.end.min(end));
                if from >= to {
                    continue;
                }
                replaced.extend(at / ps..from / ps); // a hole
                if m.prot == read_only && m.anon {
                    // Unknown (pagemap unreadable): nothing judged replaced.
                    replaced
                        .extend(sys::unpopulated_pages(from, (to - from) / ps).unwrap_or_default());
                } else if m.prot != written && m.prot != read_only {
                    replaced.extend(from / ps..to / ps);
                }
                at = to;
            }
            replaced.extend(at / ps..end / ps);
        }
        replaced
    }

    /// Forgets replaced pages without touching their protection (and with
    /// no grace period for faults there: those are the program's own); the
    /// regions on them are gone.
    fn drop_replaced(&mut self, pages: &[usize]) {
        if !pages.is_empty() {
            self.runs = None;
        }
        for &page in pages {
            if let Some(info) = self.pages.remove(&page) {
                self.open.remove(&page);
                self.table.forget(page);
                self.gone.extend_from_slice(info.regions.as_slice());
            }
        }
    }

    /// Checks every page (check_changes, and the worker every poll
    /// interval): one query per run of pages and mapping over it.
    fn sweep(&mut self, owners: &dyn Owners, now: u64) {
        self.next_sweep_ns = now + backend::shortest_poll_ns(owners);
        let runs = self.runs.take().unwrap_or_else(|| {
            let mut all: Vec<(usize, i32)> =
                self.pages.iter().map(|(p, i)| (*p, i.prot())).collect();
            all.sort_unstable();
            prot_runs(all.into_iter())
        });
        let replaced = self.replaced_in_runs(&runs);
        self.runs = Some(runs);
        self.drop_replaced(&replaced);
    }

    /// The regions on a page.
    pub fn regions_on(&self, page: usize) -> &[RegionId] {
        self.pages.get(&page).map_or(&[], |p| p.regions.as_slice())
    }

    /// Pages kept read-only now.
    pub fn protected_pages(&self) -> usize {
        self.pages.len().saturating_sub(self.open.len())
    }

    /// Open pages that are hot (written nonstop: polled, not re-armed).
    pub fn hot_pages(&self) -> usize {
        self.open.values().filter(|m| m.is_hot()).count()
    }

    /// Bytes of the fault ring and the page table.
    pub fn shared_bytes(&self) -> usize {
        self.ring.bytes() + self.table.bytes()
    }

    /// Faults whose writer was dropped because the ring was full.
    pub fn dropped_wheres(&self) -> u64 {
        self.ring.header().dropped.load(Ordering::Relaxed)
    }

    /// Pages whose re-protection failed (each then polled until re-armed).
    pub fn reprotect_failures(&self) -> u64 {
        self.reprotect_failures
    }

    /// Write faults handled since the process started.
    pub fn faults(&self) -> u64 {
        handler_state::get().faults.load(Ordering::Relaxed)
    }

    /// For stats: (regions sharing the page, bytes of its record and id list).
    pub fn page_share(&self, page: usize) -> Option<(usize, usize)> {
        let p = self.pages.get(&page)?;
        let record = backend::record_bytes(
            std::mem::size_of::<(usize, PageInfo)>(),
            self.pages.len(),
            self.pages.capacity(),
        );
        Some((p.regions.len(), record + p.regions.heap_bytes()))
    }

    /// When a page made hot (or diffed while hot) at `now` is due next:
    /// every poll interval (reading memory that is being written steals the
    /// writer's cache lines, so hot pages are read no more often than that),
    /// at least a window apart.
    fn hot_due(owners: &dyn Owners, info: &PageInfo, now: u64) -> u64 {
        now + backend::poll_ns(owners, &info.regions).max(backend::window_ns(owners, &info.regions))
    }

    /// Measures the fault rate every RATE_PERIOD_NS: what the bulk horizon
    /// (`pass_ns`) follows.
    fn measure_rate(&mut self, now: u64) {
        let (start, faults0) = self.rate_mark;
        let elapsed = now.saturating_sub(start);
        if elapsed < RATE_PERIOD_NS {
            return;
        }
        let faults = self.faults();
        let count = faults.saturating_sub(faults0);
        self.rate_mark = (now, faults);
        // Hysteresis: once fast, slow only below a quarter of the rate (as
        // pages go hot the rest fault less often, yet still in a pass).
        let threshold = if self.pass_ns > 0 { BULK_FAULTS_PER_S / 4 } else { BULK_FAULTS_PER_S };
        if u128::from(count) * 1_000_000_000 < u128::from(threshold) * u128::from(elapsed) {
            self.pass_ns = 0;
            return;
        }
        // Hot pages do not fault: the pass is over the others.
        let hot = self.hot_pages();
        let faulting = self.pages.len().saturating_sub(hot) as u128;
        let pass = faulting * u128::from(elapsed) / u128::from(count);
        self.pass_ns = u64::try_from(pass).unwrap_or(u64::MAX);
    }

    /// Drains the fault ring (and sweeps the page table if the ring
    /// overflowed) into the open set.
    fn collect_faults(&mut self, owners: &dyn Owners, now: u64) {
        self.measure_rate(now);
        // Writer location hook: each record's frames leave the ring with it.
        let take = |slot, _: &FaultRecord| crate::location::take(slot);
        while let Some((mut rec, capture)) = self.ring.pop_with(take) {
            rec.capture = capture;
            self.open_page(owners, rec.page, Some(rec), now);
        }
        if self.ring.header().overflowed.swap(false, Ordering::SeqCst) {
            // Drain again: records pushed before the flag was cleared.
            while let Some((mut rec, capture)) = self.ring.pop_with(take) {
                rec.capture = capture;
                self.open_page(owners, rec.page, Some(rec), now);
            }
            for page in self.table.take_all_dirty() {
                if !self.open.contains_key(&page) {
                    self.open_page(owners, page, None, now);
                }
            }
        }
    }

    /// A page was written (fault record or dirty bit): it enters Open mode.
    fn open_page(&mut self, owners: &dyn Owners, page: usize, who: Option<FaultRecord>, now: u64) {
        let pass_ns = self.pass_ns;
        let (window, poll) = match self.pages.get(&page) {
            Some(info) => {
                (backend::window_ns(owners, &info.regions), backend::poll_ns(owners, &info.regions))
            }
            None => return, // unwatched meanwhile
        };
        let info = self.pages.get_mut(&page).expect("checked");
        match self.open.get_mut(&page) {
            Some(OpenMode::Open { who: known @ None, .. }) if who.is_some() => {
                // Opened by a sweep just before its fault record arrived.
                *known = who;
            }
            Some(_) => {}
            None => {
                let since = who.map_or(now, |w| w.timestamp_ns.min(now));
                // Written again within a window of being re-protected: the
                // page is being written continuously. (Not half a window: a
                // loop over many pages refaults each one up to a few ms after
                // the batch that re-protected it, and a single slow refault
                // must not restart the count.) Re-armed in bulk: within the
                // bulk horizon (BULK_PAGES).
                let within = if info.in_bulk {
                    window.max(poll * BULK_POLLS).max(pass_ns.saturating_mul(PASS_FACTOR))
                } else {
                    window
                };
                info.refaults = if info.reprotected_early {
                    info.refaults
                } else if u64::from(wrapping_us(since).wrapping_sub(info.reprotected_us)) * 1000
                    < within
                {
                    info.refaults.saturating_add(1)
                } else {
                    0
                };
                if info.in_bulk && pass_ns > 0 && info.refaults >= HOT_AFTER_BULK_REFAULTS {
                    // Faulting fast in a loop over many pages: hot now.
                    info.refaults = info.refaults.max(HOT_AFTER_REFAULTS);
                }
                self.open.insert(page, OpenMode::Open { due: since + window, who });
            }
        }
    }

    /// Makes new pages of [addr, addr+len) read-only and registers them.
    fn protect_pages(
        &mut self,
        addr: usize,
        len: usize,
        mappings: &[maps::Mapping],
    ) -> Result<(), Error> {
        let ps = sys::page_size();
        let mut fresh = Vec::new();
        for page in backend::pages_of(addr, len) {
            if let Some(info) = self.pages.get(&page) {
                if !self.open.contains_key(&page) {
                    // Idempotent, and repairs a page whose memory was freed
                    // and mapped anew while still watched.
                    let _ = sys::mprotect(
                        page * ps,
                        ps,
                        libc::PROT_READ | (info.prot() & libc::PROT_EXEC),
                    );
                }
                continue;
            }
            let prot = maps::prot_at(mappings, page * ps);
            self.runs = None;
            if let Err(e) = self.table.activate(page, prot) {
                self.rollback(&fresh);
                return Err(Error::Os(e));
            }
            self.pages.insert(
                page,
                PageInfo {
                    regions: IdList::new(),
                    prot_bits: (prot & 7) as u8, // PROT_READ, PROT_WRITE, PROT_EXEC
                    reprotected_us: wrapping_us(sys::monotonic_ns()).wrapping_sub(u32::MAX / 2),
                    refaults: 0,
                    reprotected_early: false,
                    in_bulk: false,
                },
            );
            fresh.push(page);
            if let Err(errno) =
                sys::mprotect(page * ps, ps, libc::PROT_READ | (prot & libc::PROT_EXEC))
            {
                self.rollback(&fresh);
                return Err(if errno == libc::ENOMEM {
                    // The maps said it is mapped: the split of its mapping
                    // would pass the kernel's limit on mappings.
                    Error::Os(format!(
                        "too many mappings: making page {:#x} read-only needs a new mapping and the process is at vm.max_map_count; raise it (sysctl vm.max_map_count), watch fewer isolated pages, or use writewatch or poll",
                        page * ps
                    ))
                } else {
                    Error::Os(format!("mprotect failed: errno {errno}"))
                });
            }
        }
        Ok(())
    }

    fn rollback(&mut self, pages: &[usize]) {
        self.runs = None;
        let ps = sys::page_size();
        for &page in pages {
            if let Some(info) = self.pages.remove(&page) {
                let _ = sys::mprotect(page * ps, ps, info.prot());
            }
            self.table.deactivate(page);
        }
    }

    /// `due` plus the other open pages of the regions on them: a region's
    /// writes made before its event is built go into that one event (a big
    /// region is diffed only on the pages of the batch, so a page whose
    /// window ends later would otherwise give a second event for writes
    /// made at the same moment). A region's hot pages come along only when
    /// one of them is due: they are read every poll interval, not every
    /// time another page of the region ends its window.
    fn with_open_pages_of_their_regions(&self, mut due: Vec<usize>) -> Vec<usize> {
        if due.is_empty() || due.len() == self.open.len() {
            return due;
        }
        // Region -> whether a hot page of it is due.
        let mut regions: HashMap<RegionId, bool> = HashMap::new();
        for page in &due {
            let (Some(info), Some(mode)) = (self.pages.get(page), self.open.get(page)) else {
                continue;
            };
            for &r in info.regions.as_slice() {
                *regions.entry(r).or_insert(false) |= mode.is_hot();
            }
        }
        let taken: HashSet<usize> = due.iter().copied().collect();
        for (&page, mode) in &self.open {
            if taken.contains(&page) {
                continue;
            }
            let shares = self.pages.get(&page).is_some_and(|info| {
                info.regions
                    .as_slice()
                    .iter()
                    .any(|r| regions.get(r).is_some_and(|&hot_due| hot_due || !mode.is_hot()))
            });
            if shares {
                due.push(page);
            }
        }
        due
    }

    /// Re-protects (or keeps polling, when hot) the given open pages; the
    /// regions on them, each with the earliest known writer among its pages.
    fn process_pages(&mut self, owners: &dyn Owners, pages: &[usize], now: u64) -> Vec<Dirty> {
        // Never re-protect a mapping that replaced ours.
        let replaced = self.replaced_pages(pages);
        self.drop_replaced(&replaced);
        // A loop over many pages: many open at once, or faulting fast.
        let in_bulk = self.open.len() >= BULK_PAGES || self.pass_ns > 0;
        // Region -> the earliest known writer among its pages in this batch.
        let mut touched: HashMap<RegionId, Option<FaultRecord>> = HashMap::new();
        // Writer location: page first-writes (fault records) per region.
        let mut faults: HashMap<RegionId, u32> = HashMap::new();
        // Pages to re-arm: (page, saved protection); those re-armed before
        // their window ended, and hot ones cooling down.
        let mut rearm: Vec<(usize, i32)> = Vec::new();
        let mut early: HashSet<usize> = HashSet::new();
        let mut cooled: HashSet<usize> = HashSet::new();
        for &page in pages {
            let (Some(info), Some(&mode)) = (self.pages.get(&page), self.open.get(&page)) else {
                self.open.remove(&page);
                continue;
            };
            let who = match mode {
                OpenMode::Open { who, .. } => who,
                OpenMode::Hot { .. } => None,
            };
            let stay_hot = match mode {
                OpenMode::Hot { quiet, changed, .. } => {
                    quiet < COOL_AFTER_QUIET_WINDOWS
                        || now.saturating_sub(changed) < self.pass_ns.saturating_mul(PASS_FACTOR)
                }
                OpenMode::Open { .. } => info.refaults >= HOT_AFTER_REFAULTS,
            };
            self.table.take_dirty(page);
            if stay_hot {
                let (quiet, changed) = match mode {
                    OpenMode::Hot { quiet, changed, .. } => (quiet, changed),
                    OpenMode::Open { .. } => (0, now),
                };
                let due = Self::hot_due(owners, info, now);
                self.open.insert(page, OpenMode::Hot { due, quiet, changed });
                self.hot_batch.push(page);
            } else {
                rearm.push((page, info.prot()));
                match mode {
                    OpenMode::Open { due, .. } if now < due => _ = early.insert(page),
                    OpenMode::Hot { .. } => _ = cooled.insert(page),
                    OpenMode::Open { .. } => {}
                }
            }
            for &rid in info.regions.as_slice() {
                self.batch_pages.entry(rid).or_default().push(page);
                *faults.entry(rid).or_insert(0) += u32::from(who.is_some());
                let e = touched.entry(rid).or_insert(who);
                if let (Some(a), Some(b)) = (*e, who) {
                    if b.timestamp_ns < a.timestamp_ns {
                        *e = Some(b);
                    }
                } else if e.is_none() {
                    *e = who;
                }
            }
        }
        // Protect first, then read (the engine diffs after this returns): a
        // write after this faults again.
        self.rearm(owners, rearm, (&early, &cooled), in_bulk, now);
        let mut dirty: Vec<Dirty> = touched.into_iter().collect();
        dirty.sort_unstable_by_key(|(rid, _)| *rid);
        // Writer location hook: the fault count rides with the record, and
        // captured stacks stay only for this batch and pages still open.
        for (rid, who) in &mut dirty {
            if let Some(w) = who {
                w.faults = faults[rid];
            }
        }
        let open = self.open.values().filter_map(|m| match m {
            OpenMode::Open { who: Some(w), .. } => Some(w.capture),
            _ => None,
        });
        crate::location::retain_captures(
            open.chain(dirty.iter().filter_map(|(_, w)| w.map(|w| w.capture))),
        );
        dirty
    }

    /// Makes open pages read-only again, one mprotect per run of consecutive
    /// pages of the same protection; a run the kernel refuses (ENOMEM: the
    /// split would pass vm.max_map_count) is retried page by page, and a
    /// page that still fails stays writable and is polled like a hot page
    /// (counted in reprotect_failures), to be re-armed again when quiet.
    /// A hot page that cooled down (in `cooled`) counts its refaults anew.
    fn rearm(
        &mut self,
        owners: &dyn Owners,
        mut pages: Vec<(usize, i32)>,
        (early, cooled): (&HashSet<usize>, &HashSet<usize>),
        in_bulk: bool,
        now: u64,
    ) {
        let ps = sys::page_size();
        let read_only = |prot: i32| libc::PROT_READ | (prot & libc::PROT_EXEC);
        pages.sort_unstable();
        let mut armed = Vec::with_capacity(pages.len());
        for (first, last, prot) in prot_runs(pages.into_iter()) {
            if sys::mprotect(first * ps, (last + 1 - first) * ps, read_only(prot)).is_ok() {
                armed.extend(first..=last);
                continue;
            }
            for page in first..=last {
                if sys::mprotect(page * ps, ps, read_only(prot)).is_ok() {
                    armed.push(page);
                    continue;
                }
                self.reprotect_failures += 1;
                let info = self.pages.get(&page).expect("open pages are tracked");
                let due = Self::hot_due(owners, info, now);
                self.open.insert(page, OpenMode::Hot { due, quiet: 0, changed: now });
                self.hot_batch.push(page);
            }
        }
        // When they really were re-protected: a batch of mprotect calls
        // takes a while, and refaults are measured from here.
        let at = wrapping_us(sys::monotonic_ns());
        for page in armed {
            let info = self.pages.get_mut(&page).expect("open pages are tracked");
            info.reprotected_us = at;
            info.reprotected_early = early.contains(&page);
            info.in_bulk = in_bulk;
            if cooled.contains(&page) {
                info.refaults = 0;
            }
            self.open.remove(&page);
        }
    }
}

impl Detector for ProtectPages {
    fn register(&mut self, owners: &dyn Owners, r: &NewRegion<'_>) -> Result<(), Error> {
        // Fault records still in the ring for pages that are not watched now
        // (a closed watcher's writes nobody collected) are dropped here,
        // before these pages become known again: otherwise the new region's
        // first event would name that old write as its writer.
        self.collect_faults(owners, sys::monotonic_ns());
        self.protect_pages(r.addr, r.len, r.mappings)?;
        for page in backend::pages_of(r.addr, r.len) {
            self.pages.get_mut(&page).expect("page registered").regions.push(r.id);
        }
        Ok(())
    }

    fn unregister(&mut self, id: RegionId, addr: usize, len: usize) {
        let ps = sys::page_size();
        let mut emptied = Vec::new();
        for page in backend::pages_of(addr, len) {
            if let Some(info) = self.pages.get_mut(&page) {
                info.regions.remove(id);
                if info.regions.is_empty() {
                    emptied.push(page);
                }
            }
        }
        // Never restore (raise) the protection of a mapping that replaced
        // ours: such pages are only forgotten.
        let replaced: HashSet<usize> = self.replaced_pages(&emptied).into_iter().collect();
        if !emptied.is_empty() {
            self.runs = None;
        }
        for page in emptied {
            let info = self.pages.remove(&page).expect("present");
            self.open.remove(&page);
            if replaced.contains(&page) {
                self.table.forget(page);
                continue;
            }
            // Writable again first, then the tombstone: a fault that raced
            // with this retries and succeeds.
            let _ = sys::mprotect(page * ps, ps, info.prot());
            self.table.deactivate(page);
        }
        if self.pages.is_empty() {
            // Nothing is watched here any more: give the maps' memory back.
            self.pages.shrink_to_fit();
            self.open.shrink_to_fit();
        }
    }

    fn collect(&mut self, owners: &dyn Owners, now: u64, pass: Pass) -> Vec<Dirty> {
        self.collect_faults(owners, now);
        if matches!(pass, Pass::Now(_)) || now >= self.next_sweep_ns {
            self.sweep(owners, now);
        }
        let pages: Vec<usize> = match pass {
            Pass::Now(_) => self.open.keys().copied().collect(),
            Pass::Due => {
                let due: Vec<usize> = self
                    .open
                    .iter()
                    .filter(|(_, mode)| mode.due() <= now)
                    .map(|(p, _)| *p)
                    .collect();
                self.with_open_pages_of_their_regions(due)
            }
        };
        if pages.is_empty() {
            return Vec::new();
        }
        self.process_pages(owners, &pages, now)
    }

    fn after_diff(
        &mut self,
        _owners: &dyn Owners,
        changed: &HashSet<RegionId>,
        now: u64,
    ) -> Vec<RegionId> {
        for page in std::mem::take(&mut self.hot_batch) {
            if let (Some(info), Some(mode)) = (self.pages.get(&page), self.open.get_mut(&page)) {
                let written = info.regions.as_slice().iter().any(|r| changed.contains(r));
                if let OpenMode::Hot { quiet, changed, .. } = mode {
                    if written {
                        (*quiet, *changed) = (0, now);
                    } else {
                        *quiet = quiet.saturating_add(1);
                    }
                }
            }
        }
        Vec::new()
    }

    fn next_deadline(&self, _owners: &dyn Owners) -> Option<u64> {
        self.open.values().map(OpenMode::due).min()
    }

    fn take_batch_pages(&mut self) -> HashMap<RegionId, Vec<usize>> {
        let mut batch = std::mem::take(&mut self.batch_pages);
        for pages in batch.values_mut() {
            pages.sort_unstable();
            pages.dedup();
        }
        batch
    }
}

/// Sorted (page, saved protection) pairs -> runs of consecutive pages with
/// the same protection: (first, last, protection).
fn prot_runs(pages: impl Iterator<Item = (usize, i32)>) -> Vec<(usize, usize, i32)> {
    let mut out: Vec<(usize, usize, i32)> = Vec::new();
    for (page, prot) in pages {
        match out.last_mut() {
            Some((_, last, p)) if *last + 1 == page && *p == prot => *last = page,
            _ => out.push((page, page, prot)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_split_at_gaps_and_protection_changes() {
        let (rw, rx) = (libc::PROT_READ | libc::PROT_WRITE, libc::PROT_READ | libc::PROT_EXEC);
        let pages = [(1, rw), (2, rw), (3, rx), (5, rx), (6, rx)];
        assert_eq!(prot_runs(pages.into_iter()), [(1, 2, rw), (3, 3, rx), (5, 6, rx)]);
        assert!(prot_runs(std::iter::empty()).is_empty());
    }

    #[test]
    fn page_records_stay_small() {
        // The native-bytes budget assumes these (benches/engine.rs measures).
        assert!(std::mem::size_of::<PageInfo>() <= 24);
        assert!(std::mem::size_of::<(usize, PageInfo)>() <= 32);
    }
}
