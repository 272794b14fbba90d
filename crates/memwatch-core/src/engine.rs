//! The process-wide engine: regions of every watcher, the page bookkeeping of
//! the protect backend, the worker thread, and the diff -> event pipeline.
//!
//! Lock order: engine state mutex, then a watcher's queue mutex. Callbacks
//! never run under either.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use memwatch_store::{value_key, Store};

use xxhash_rust::xxh3::xxh3_64;

use crate::diff::changed_ranges;
use crate::handler_state;
use crate::maps;
use crate::page_table::PageTableWriter;
use crate::protect;
use crate::regions::{IdList, Kind, Region, Regions};
use crate::ring::{FaultRecord, Ring};
use crate::sys::{self, EventFd};
use crate::types::*;
use crate::watcher::WatcherInner;
use crate::writewatch;

/// A page re-faulted within a window of its re-protection this many times
/// in a row stays writable and is polled every poll interval instead
/// (adaptive mode for hot pages: no fault storm for memory written nonstop).
const HOT_AFTER_REFAULTS: u8 = 8;
/// A hot page unchanged for this many windows is protected again.
const COOL_AFTER_QUIET_WINDOWS: u8 = 4;

/// A protect page that is writable now (pages not in State::open are
/// read-only: their next write faults).
#[derive(Clone, Copy, Debug)]
enum OpenMode {
    /// Written at `since`; writable until since + window.
    Open { since: u64, who: Option<FaultRecord> },
    /// Written too often: left writable and diffed every window.
    Hot { since: u64, quiet: u8 },
}

/// A page of the protect backend (40 bytes; the state of a writable page is
/// in State::open, so read-only pages do not carry it).
struct PageInfo {
    regions: IdList,
    reprotected_at: u64,
    prot: i32,
    refaults: u8,
    /// Last re-protected before its window ended (by check_changes): the
    /// next refault says nothing about how often the page is written.
    reprotected_early: bool,
}

struct WatcherEntry {
    inner: Weak<WatcherInner>,
    options: Options,
    backend: Backend,
    /// Regions that could not use the watcher's backend (userfaultfd refused
    /// them, or protect on a thread stack), with the last reason.
    fallback_regions: usize,
    fallback_reason: String,
    /// Regions of this watcher.
    regions: usize,
    /// Of those, the ones on protect or writewatch pages (overlap checks
    /// look for them in the page maps).
    paged_regions: usize,
    /// Poll regions by start address (overlap checks, polling).
    poll: BTreeMap<usize, RegionId>,
    /// Where values larger than max_value_bytes go (storage_key_old/new).
    store: Option<Arc<Store>>,
    next_poll_ns: u64,
}

/// Everything the engine mutex protects.
pub struct State {
    regions: Regions,
    pages: HashMap<usize, PageInfo>,
    /// Protect pages that are writable now (Open or Hot).
    open: HashMap<usize, OpenMode>,
    watchers: HashMap<u32, WatcherEntry>,
    table: PageTableWriter,
    /// writewatch: page -> regions on it.
    ww_pages: HashMap<usize, IdList>,
    /// writewatch: page -> consecutive scans that found it written.
    ww_heat: HashMap<usize, u8>,
    /// writewatch: pages found written, not yet diffed -> when first found.
    /// Scans serve every watcher, but each watcher's regions are diffed on
    /// its own period (a tenth of its writable window), so writes within it
    /// coalesce into one event whatever other watchers do.
    ww_pending: HashMap<usize, u64>,
    /// writewatch: when the last scan ran (and re-armed what it scanned).
    ww_last_scan_ns: u64,
    /// writewatch: pages armed after the last scan (registered, or watched
    /// anew) -> when. A page found written was written after
    /// max(last scan, armed): its period counts from there.
    ww_armed: HashMap<usize, u64>,
    /// writewatch: hot pages (written nonstop): not re-armed by scans, diffed
    /// every poll interval instead; value = quiet intervals in a row.
    ww_hot: HashMap<usize, u8>,
    next_hot_poll_ns: u64,
    /// writewatch: the registered cold pages as sorted contiguous address
    /// ranges (rebuilt after changes), and when to scan next.
    ww_ranges: Vec<(usize, usize)>,
    ww_ranges_stale: bool,
    next_scan_ns: u64,
    /// writewatch: the last scan found written pages, and when one last did.
    ww_found_writes: bool,
    ww_last_write_ns: u64,
    /// writewatch: when to check next that the registered ranges are mapped.
    next_liveness_ns: u64,
    /// Regions found unmapped while watched (dropped, counted).
    gone_regions: u64,
    /// Found unmapped during the current pass; dropped at its end.
    newly_gone: Vec<RegionId>,
    next_region_id: RegionId,
    next_watcher_id: u32,
}

/// The process-wide engine.
pub struct Engine {
    state: Mutex<State>,
    ring: &'static Ring,
    wake: EventFd,
    seq: AtomicU64,
}

static ENGINE: OnceLock<Result<&'static Engine, String>> = OnceLock::new();

/// The engine, started on first use with the given ring capacity.
pub fn engine(ring_capacity: usize) -> Result<&'static Engine, Error> {
    ENGINE
        .get_or_init(|| {
            // memwatch's own mappings are made now, not lazily inside a watch
            // (where they could land in a hole the caller is about to name).
            handler_state::get();
            let ring = Ring::new(ring_capacity).ok_or("cannot map the fault ring")?;
            let ring: &'static Ring = Box::leak(Box::new(ring));
            let wake = EventFd::new().map_err(|e| format!("eventfd: {e}"))?;
            protect::set_ring_and_wake(ring, wake.fd());
            let engine: &'static Engine = Box::leak(Box::new(Engine {
                state: Mutex::new(State {
                    regions: Regions::new(),
                    pages: HashMap::new(),
                    open: HashMap::new(),
                    watchers: HashMap::new(),
                    table: PageTableWriter::new(),
                    ww_pages: HashMap::new(),
                    ww_heat: HashMap::new(),
                    ww_pending: HashMap::new(),
                    ww_last_scan_ns: 0,
                    ww_armed: HashMap::new(),
                    ww_hot: HashMap::new(),
                    next_hot_poll_ns: 0,
                    ww_ranges: Vec::new(),
                    ww_ranges_stale: false,
                    next_scan_ns: 0,
                    ww_found_writes: false,
                    ww_last_write_ns: 0,
                    next_liveness_ns: 0,
                    gone_regions: 0,
                    newly_gone: Vec::new(),
                    next_region_id: 1,
                    next_watcher_id: 1,
                }),
                ring,
                wake,
                seq: AtomicU64::new(1),
            }));
            std::thread::Builder::new()
                .name("memwatch-worker".into())
                .spawn(move || engine.worker_loop())
                .map_err(|e| format!("cannot start the worker thread: {e}"))?;
            Ok(engine)
        })
        .clone()
        .map_err(Error::Os)
}

fn read_bytes(addr: usize, len: usize) -> &'static [u8] {
    // SAFETY: Watcher::watch's contract: the region stays mapped and readable
    // until unwatched, and regions are only read under the engine mutex while
    // still registered. Reads never fault on our read-only pages.
    unsafe { std::slice::from_raw_parts(addr as *const u8, len) }
}

impl Engine {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a watcher; returns its id and the backend it will use.
    pub fn add_watcher(
        &self,
        inner: Weak<WatcherInner>,
        options: &Options,
    ) -> Result<(u32, Backend, String), Error> {
        let (backend, reason) = match options.backend {
            Backend::Auto => match writewatch::get() {
                Ok(_) => (Backend::WriteWatch, String::new()),
                Err(why) => (
                    Backend::Protect,
                    format!("writewatch unavailable ({why}); auto chose protect"),
                ),
            },
            Backend::WriteWatch => match writewatch::get() {
                Ok(_) => (Backend::WriteWatch, String::new()),
                Err(why) => return Err(Error::Unsupported(format!("writewatch: {why}"))),
            },
            b => (b, String::new()),
        };
        if backend == Backend::Protect {
            protect::install().map_err(Error::Os)?;
        }
        let mut st = self.lock();
        let id = st.next_watcher_id;
        st.next_watcher_id += 1;
        st.watchers.insert(
            id,
            WatcherEntry {
                inner,
                options: options.clone(),
                backend,
                fallback_regions: 0,
                fallback_reason: String::new(),
                regions: 0,
                paged_regions: 0,
                poll: BTreeMap::new(),
                store: None,
                next_poll_ns: sys::monotonic_ns() + options.poll_interval.as_nanos() as u64,
            },
        );
        drop(st);
        sys::eventfd_signal(self.wake.fd());
        Ok((id, backend, reason))
    }

    /// Unwatches everything of a watcher and forgets it.
    pub fn remove_watcher(&self, watcher: u32) {
        let mut st = self.lock();
        let ids = st.region_ids_of(watcher);
        for id in ids {
            st.unwatch(id);
        }
        st.watchers.remove(&watcher);
    }

    /// Starts watching a range for a watcher.
    pub fn watch(
        &self,
        watcher: u32,
        addr: usize,
        len: usize,
        name: &str,
        metadata: Option<&str>,
    ) -> Result<RegionId, Error> {
        if addr == 0 {
            return Err(Error::InvalidArgument("address is null".into()));
        }
        if len == 0 {
            return Err(Error::InvalidArgument("length is zero".into()));
        }
        if addr.checked_add(len).is_none() {
            return Err(Error::InvalidArgument(format!(
                "{len} bytes at {addr:#x} wrap around the address space"
            )));
        }
        let mut st = self.lock();
        let st = &mut *st;
        let ps = sys::page_size();
        // Poll only reads: it may watch read-only memory that another process
        // (or another mapping of the same file) writes, e.g. a memglass observer.
        let poll_only = st.watchers.get(&watcher).is_some_and(|w| w.backend == Backend::Poll);
        let mappings = match maps::writable_mappings(addr, len, |page_addr| {
            st.pages.get(&(page_addr / ps)).map(|p| p.prot)
        }) {
            Err(Error::ReadOnly(_)) if poll_only => Vec::new(),
            r => r?,
        };
        let own = [Some(self.ring.range()), Some(handler_state::range()), st.table.range()];
        if own.iter().flatten().any(|&(s, e)| addr < e && addr + len > s) {
            return Err(Error::InvalidArgument(
                "range covers memwatch's own memory (fault ring, page table or handler state)"
                    .into(),
            ));
        }
        let entry = st.watchers.get(&watcher).ok_or(Error::Closed)?;
        if let Some((other, start, other_len)) = st.overlapping(watcher, addr, len) {
            return Err(Error::Overlap(format!(
                "{len} bytes at {addr:#x} overlap region {other} ({other_len} bytes at {start:#x}) of this watcher"
            )));
        }
        if name.len() >= u32::MAX as usize || metadata.is_some_and(|m| m.len() >= u32::MAX as usize)
        {
            return Err(Error::InvalidArgument("name or metadata longer than 4 GiB".into()));
        }
        let mut kind = match entry.backend {
            Backend::Poll => Kind::Poll,
            Backend::WriteWatch => Kind::WriteWatch,
            _ => Kind::Protect,
        };
        let snapshots = entry.options.snapshots;
        let id = st.next_region_id;
        if kind == Kind::Protect && maps::on_a_stack(&mappings, addr, len) {
            // A read-only stack page would leave the kernel nowhere to push
            // the fault's signal frame: such a region uses writewatch (no
            // signals) or, without it, poll.
            let w = st.watchers.get_mut(&watcher).expect("checked above");
            w.fallback_regions += 1;
            kind = if writewatch::get().is_ok() { Kind::WriteWatch } else { Kind::Poll };
            w.fallback_reason = format!(
                "{len} bytes at {addr:#x} are on a thread stack, which protect cannot watch; that region uses {}",
                if kind == Kind::WriteWatch { "writewatch" } else { "poll" }
            );
            if kind == Kind::WriteWatch && st.register_writewatch(addr, len).is_err() {
                kind = Kind::Poll;
            }
        } else if kind == Kind::WriteWatch {
            if let Err(errno) = st.register_writewatch(addr, len) {
                // A mapping userfaultfd refuses: this region alone uses protect.
                protect::install().map_err(Error::Os)?;
                let w = st.watchers.get_mut(&watcher).expect("checked above");
                w.fallback_regions += 1;
                w.fallback_reason = format!(
                    "userfaultfd refused {len} bytes at {addr:#x} (errno {errno}); that region uses protect"
                );
                kind = Kind::Protect;
            }
        }
        if kind == Kind::Protect {
            st.protect_pages(addr, len, &mappings)?;
        }
        st.next_region_id += 1;
        let bytes = read_bytes(addr, len);
        let region = Region::new(
            watcher,
            addr,
            len,
            kind,
            name,
            metadata,
            snapshots.then_some(bytes),
            xxh3_64(bytes),
        )
        .map_err(Error::InvalidArgument)?;
        let entry = &st.watchers[&watcher];
        if let (Some(store), Some(snap)) = (&entry.store, region.snapshot()) {
            if len > entry.options.max_value_bytes {
                // Epoch 0: the value at watch time, the first event's old value.
                let _ = store.put(value_key(entry.options.adapter_id, u64::from(id), 0), snap);
            }
        }
        let ps = sys::page_size();
        match kind {
            Kind::Protect => {
                for page in addr / ps..=(addr + len - 1) / ps {
                    st.pages.get_mut(&page).expect("page registered").regions.push(id);
                }
            }
            Kind::WriteWatch => {
                for page in addr / ps..=(addr + len - 1) / ps {
                    st.ww_pages.get_mut(&page).expect("page registered").push(id);
                }
            }
            Kind::Poll => {}
        }
        st.regions.insert(id, region);
        let w = st.watchers.get_mut(&watcher).expect("checked above");
        w.regions += 1;
        if kind == Kind::Poll {
            w.poll.insert(addr, id);
        } else {
            w.paged_regions += 1;
        }
        if kind == Kind::WriteWatch {
            // The next scan may have been set by watchers with longer windows
            // (or none): this watcher's writes are due within its own period.
            let period = writewatch_scan_interval_ns(w.options.writable_window.as_nanos() as u64);
            st.next_scan_ns = st.next_scan_ns.min(sys::monotonic_ns() + period);
        }
        if kind != Kind::Protect {
            // Nothing else wakes the worker for writewatch and poll regions:
            // let it schedule their scans.
            sys::eventfd_signal(self.wake.fd());
        }
        Ok(id)
    }

    /// Sets the store that receives values larger than max_value_bytes, and
    /// puts the current value of every such region of the watcher there.
    pub fn set_store(&self, watcher: u32, store: Option<Arc<Store>>) -> Result<(), Error> {
        let mut st = self.lock();
        let st = &mut *st;
        let w = st.watchers.get_mut(&watcher).ok_or(Error::Closed)?;
        w.store = store;
        if let Some(store) = &w.store {
            for (id, r) in st.regions.iter().filter(|(_, r)| r.watcher == watcher).take(w.regions) {
                if let Some(snap) = r.snapshot().filter(|s| s.len() > w.options.max_value_bytes) {
                    let _ =
                        store.put(value_key(w.options.adapter_id, u64::from(id), r.epoch), snap);
                }
            }
        }
        Ok(())
    }

    /// Stops watching; false if the id is not one of this watcher's regions.
    pub fn unwatch(&self, watcher: u32, id: RegionId) -> bool {
        let mut st = self.lock();
        match st.regions.get(id) {
            Some(r) if r.watcher == watcher => st.unwatch(id),
            _ => false,
        }
    }

    /// Detects changes now for every page written so far and for the poll
    /// regions of `watcher`, delivering the events before returning.
    pub fn scan_now(&self, watcher: u32) {
        let mut st = self.lock();
        let now = sys::monotonic_ns();
        let mut events = Vec::new();
        self.collect_faults(&mut st, now);
        let pages: Vec<usize> = st.open.keys().copied().collect();
        st.process_pages(&pages, now, &mut events);
        st.scan_writewatch(now, true, &mut events);
        st.poll_watcher(watcher, now, &mut events);
        st.reap_gone();
        self.deliver(&st, events);
    }

    /// Fallback notes of a writewatch watcher: (regions on protect, reason),
    /// and the engine-wide count of regions found unmapped.
    pub fn fallback_of(&self, watcher: u32) -> (usize, String, u64) {
        let st = self.lock();
        let (n, why) = st
            .watchers
            .get(&watcher)
            .map_or((0, String::new()), |w| (w.fallback_regions, w.fallback_reason.clone()));
        (n, why, st.gone_regions)
    }

    /// Counters for stats(): (regions, native bytes, snapshot bytes) of one
    /// watcher and engine-wide (protected pages, dropped wheres).
    pub fn stats_of(&self, watcher: u32) -> (usize, usize, usize, usize, u64) {
        let st = self.lock();
        let mut native = 0;
        let mut snap = 0;
        let mut count = 0;
        if let Some(w) = st.watchers.get(&watcher) {
            count = w.regions;
            let slab = st.regions.bytes_per_region();
            for (_, r) in st.regions.iter().filter(|(_, r)| r.watcher == watcher).take(count) {
                snap += r.snapshot().map_or(0, |s| s.len());
                native += slab + st.region_bytes(r);
            }
        }
        let protected = st.pages.len().saturating_sub(st.open.len()) + st.ww_pages.len();
        (count, native, snap, protected, self.ring.header().dropped.load(Ordering::Relaxed))
    }

    /// Bytes of the engine's own mappings: the fault ring and the page table.
    pub fn shared_bytes(&self) -> usize {
        let st = self.lock();
        self.ring.bytes() + st.table.bytes()
    }

    /// Drains the fault ring (and sweeps the page table if the ring overflowed)
    /// into the open set.
    fn collect_faults(&self, st: &mut State, now: u64) {
        while let Some(rec) = self.ring.pop() {
            st.open_page(rec.page, Some(rec), now);
        }
        if self.ring.header().overflowed.swap(false, Ordering::SeqCst) {
            // Drain again: records pushed before the flag was cleared.
            while let Some(rec) = self.ring.pop() {
                st.open_page(rec.page, Some(rec), now);
            }
            for page in st.table.take_all_dirty() {
                if !st.open.contains_key(&page) {
                    st.open_page(page, None, now);
                }
                // The bit was taken here; re-set so processing sees it consistently.
            }
        }
    }

    fn deliver(&self, st: &State, events: Vec<(u32, ChangeEvent)>) {
        for (wid, mut ev) in events {
            if let Some(inner) = st.watchers.get(&wid).and_then(|w| w.inner.upgrade()) {
                ev.seq = self.seq.fetch_add(1, Ordering::SeqCst);
                inner.enqueue(ev);
            }
        }
    }

    fn worker_loop(&'static self) {
        // Smoothed CPU cost of one idle worker iteration (nothing written),
        // wake-up and scan included.
        let mut idle_cpu_ns: u64 = 0;
        let mut cpu_mark = sys::thread_cpu_ns();
        let mut last_was_idle = false;
        loop {
            let cpu_now = sys::thread_cpu_ns();
            let spent = cpu_now.saturating_sub(cpu_mark);
            cpu_mark = cpu_now;
            if last_was_idle {
                idle_cpu_ns = if idle_cpu_ns == 0 { spent } else { (idle_cpu_ns * 7 + spent) / 8 };
            }
            let timeout_ms = {
                let mut st = self.lock();
                let now = sys::monotonic_ns();
                let had_writewatch = !st.ww_pages.is_empty();
                self.collect_faults(&mut st, now);
                let mut events = Vec::new();
                let due: Vec<usize> = st
                    .open
                    .iter()
                    .filter(|(p, mode)| st.deadline(**p, mode) <= now)
                    .map(|(p, _)| *p)
                    .collect();
                st.process_pages(&due, now, &mut events);
                let pollers: Vec<u32> = st
                    .watchers
                    .iter()
                    .filter(|(_, w)| !w.poll.is_empty() && w.next_poll_ns <= now)
                    .map(|(id, _)| *id)
                    .collect();
                for wid in pollers {
                    st.poll_watcher(wid, now, &mut events);
                }
                if !st.ww_pages.is_empty() && st.next_scan_ns <= now {
                    st.scan_writewatch(now, false, &mut events);
                }
                st.reap_gone();
                last_was_idle = events.is_empty() && !st.ww_found_writes;
                self.deliver(&st, events);
                // Next wake-up: the earliest page deadline or poll.
                let mut next: Option<u64> = None;
                for (p, mode) in &st.open {
                    let d = st.deadline(*p, mode);
                    next = Some(next.map_or(d, |n: u64| n.min(d)));
                }
                if st.ww_found_writes {
                    st.ww_last_write_ns = now;
                }
                if had_writewatch
                    && last_was_idle
                    && now.saturating_sub(st.ww_last_write_ns) > WW_ACTIVE_HOLD_NS
                    && !st.ww_pages.is_empty()
                {
                    // Idle for a while: an iteration (its measured CPU time,
                    // wake-up and scan included) at most every 100x its cost,
                    // <= 1% of a core. While memory is being written (a write
                    // seen in the last WW_ACTIVE_HOLD_NS) scans come at the
                    // base interval, for low latency.
                    st.next_scan_ns = st.next_scan_ns.max(now + idle_cpu_ns * 100);
                }
                if !st.ww_pages.is_empty() {
                    next = Some(next.map_or(st.next_scan_ns, |n: u64| n.min(st.next_scan_ns)));
                }
                let page_deadline_pending = next.is_some();
                for w in st.watchers.values() {
                    if !w.poll.is_empty() {
                        next = Some(next.map_or(w.next_poll_ns, |n| n.min(w.next_poll_ns)));
                    }
                }
                let now = sys::monotonic_ns();
                (next.map(|d| d.saturating_sub(now)), page_deadline_pending)
            };
            let (timeout_ns, page_deadline_pending) = timeout_ms;
            if !page_deadline_pending {
                handler_state::get().worker_idle.store(true, Ordering::SeqCst);
                if self.ring.has_pending() || self.ring.header().overflowed.load(Ordering::SeqCst) {
                    handler_state::get().worker_idle.store(false, Ordering::SeqCst);
                    continue;
                }
            }
            self.wake.wait(timeout_ns);
            handler_state::get().worker_idle.store(false, Ordering::SeqCst);
        }
    }
}

/// How often writewatch scans at most: a tenth of the writable window (0.5 ms
/// at the default 5 ms), at least 0.1 ms apart; less often when one scan costs
/// more than 1% of that (many watched pages).
fn writewatch_scan_interval_ns(window_ns: u64) -> u64 {
    (window_ns / 10).max(100_000)
}

/// writewatch: scans stay at the base interval this long after the last
/// write seen; then they back off to the idle CPU budget.
const WW_ACTIVE_HOLD_NS: u64 = 100_000_000;

/// writewatch: a page written in this many consecutive scans goes hot.
const WW_HOT_AFTER_SCANS: u8 = 8;
/// writewatch: a hot page unchanged for this many poll intervals cools down.
const WW_COOL_AFTER_QUIET_POLLS: u8 = 4;

/// Sorted page numbers -> inclusive runs of consecutive pages.
fn runs(pages: &[usize]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for &p in pages {
        match out.last_mut() {
            Some((_, last)) if *last + 1 == p => *last = p,
            _ => out.push((p, p)),
        }
    }
    out
}

impl State {
    /// The ids of a watcher's regions. O(all regions): there is no
    /// per-watcher index (it would cost ~24 bytes a region); this serves
    /// close, stats and set_value_store, not watch or unwatch.
    fn region_ids_of(&self, watcher: u32) -> Vec<RegionId> {
        let n = self.watchers.get(&watcher).map_or(0, |w| w.regions);
        self.regions
            .iter()
            .filter(|(_, r)| r.watcher == watcher)
            .map(|(id, _)| id)
            .take(n)
            .collect()
    }

    /// A region of `watcher` overlapping [addr, addr+len): (id, start, len).
    /// A watcher's protect and writewatch regions are found in the lists of
    /// the pages the range lies on (O(those pages + the regions on them),
    /// the same order as registering the pages); its poll regions in its
    /// address-ordered index (O(log n)).
    fn overlapping(
        &self,
        watcher: u32,
        addr: usize,
        len: usize,
    ) -> Option<(RegionId, usize, usize)> {
        let w = self.watchers.get(&watcher)?;
        let end = addr + len;
        if let Some((&start, &other)) = w.poll.range(..end).next_back() {
            let other_len = self.regions.get(other).map_or(0, |r| r.size());
            if start + other_len > addr {
                return Some((other, start, other_len));
            }
        }
        if w.paged_regions == 0 {
            return None;
        }
        let ps = sys::page_size();
        for page in addr / ps..=(end - 1) / ps {
            let protect = self.pages.get(&page).map(|p| p.regions.as_slice());
            let ww = self.ww_pages.get(&page).map(IdList::as_slice);
            for &id in protect.into_iter().chain(ww).flatten() {
                if let Some(r) = self.regions.get(id) {
                    if r.watcher == watcher && r.addr < end && r.addr + r.size() > addr {
                        return Some((id, r.addr, r.size()));
                    }
                }
            }
        }
        None
    }

    fn window_ns_of_page(&self, info: &PageInfo) -> u64 {
        info.regions
            .as_slice()
            .iter()
            .filter_map(|id| self.regions.get(*id))
            .filter_map(|r| self.watchers.get(&r.watcher))
            .map(|w| w.options.writable_window.as_nanos() as u64)
            .min()
            .unwrap_or(5_000_000)
    }

    /// The poll interval of the watchers of a page (the shortest).
    fn poll_ns_of_page(&self, info: &PageInfo) -> u64 {
        info.regions
            .as_slice()
            .iter()
            .filter_map(|id| self.regions.get(*id))
            .filter_map(|r| self.watchers.get(&r.watcher))
            .map(|w| w.options.poll_interval.as_nanos() as u64)
            .min()
            .unwrap_or(100_000_000)
    }

    /// When an open page is due: after the writable window; a hot page every
    /// poll interval (reading memory that is being written steals the
    /// writer's cache lines, so hot pages are read no more often than that).
    fn deadline(&self, page: usize, mode: &OpenMode) -> u64 {
        let Some(info) = self.pages.get(&page) else { return 0 }; // unwatched: due now
        match *mode {
            OpenMode::Open { since, .. } => since + self.window_ns_of_page(info),
            OpenMode::Hot { since, .. } => {
                since + self.poll_ns_of_page(info).max(self.window_ns_of_page(info))
            }
        }
    }

    /// A page was written (fault record or dirty bit): it enters Open mode.
    fn open_page(&mut self, page: usize, who: Option<FaultRecord>, now: u64) {
        let window = match self.pages.get(&page) {
            Some(info) => self.window_ns_of_page(info),
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
                // must not restart the count.)
                info.refaults = if info.reprotected_early {
                    info.refaults
                } else if since.saturating_sub(info.reprotected_at) < window {
                    info.refaults.saturating_add(1)
                } else {
                    0
                };
                self.open.insert(page, OpenMode::Open { since, who });
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
        for page in addr / ps..=(addr + len - 1) / ps {
            if let Some(info) = self.pages.get(&page) {
                if !self.open.contains_key(&page) {
                    // Idempotent, and repairs a page whose memory was freed
                    // and mapped anew while still watched.
                    let _ = sys::mprotect(
                        page * ps,
                        ps,
                        libc::PROT_READ | (info.prot & libc::PROT_EXEC),
                    );
                }
                continue;
            }
            let prot = maps::prot_at(mappings, page * ps);
            if let Err(e) = self.table.activate(page, prot) {
                self.rollback(&fresh);
                return Err(Error::Os(e));
            }
            self.pages.insert(
                page,
                PageInfo {
                    regions: IdList::new(),
                    prot,
                    reprotected_at: 0,
                    refaults: 0,
                    reprotected_early: false,
                },
            );
            fresh.push(page);
            if let Err(errno) =
                sys::mprotect(page * ps, ps, libc::PROT_READ | (prot & libc::PROT_EXEC))
            {
                self.rollback(&fresh);
                return Err(if errno == libc::ENOMEM {
                    Error::Unmapped(format!("page {:#x} is not mapped", page * ps))
                } else {
                    Error::Os(format!("mprotect failed: errno {errno}"))
                });
            }
        }
        Ok(())
    }

    fn rollback(&mut self, pages: &[usize]) {
        let ps = sys::page_size();
        for &page in pages {
            if let Some(info) = self.pages.remove(&page) {
                let _ = sys::mprotect(page * ps, ps, info.prot);
            }
            self.table.deactivate(page);
        }
    }

    fn unwatch(&mut self, id: RegionId) -> bool {
        let Some(region) = self.regions.remove(id) else { return false };
        if let Some(w) = self.watchers.get_mut(&region.watcher) {
            w.regions -= 1;
            if region.kind == Kind::Poll {
                w.poll.remove(&region.addr);
            } else {
                w.paged_regions -= 1;
            }
        }
        if region.kind == Kind::WriteWatch {
            self.unregister_writewatch(id, region.addr, region.size());
        }
        if region.kind == Kind::Protect {
            let ps = sys::page_size();
            for page in region.addr / ps..=(region.addr + region.size() - 1) / ps {
                let now_empty = match self.pages.get_mut(&page) {
                    Some(info) => {
                        info.regions.remove(id);
                        info.regions.is_empty()
                    }
                    None => false,
                };
                if now_empty {
                    let info = self.pages.remove(&page).expect("present");
                    // Writable again first, then the tombstone: a fault that
                    // raced with this retries and succeeds.
                    let _ = sys::mprotect(page * ps, ps, info.prot);
                    self.table.deactivate(page);
                    self.open.remove(&page);
                }
            }
        }
        if self.regions.len() == 0 {
            // Nothing is watched any more: give the page maps' memory back.
            self.pages.shrink_to_fit();
            self.open.shrink_to_fit();
            self.ww_pages.shrink_to_fit();
        }
        true
    }

    /// Native bytes one region costs apart from its share of the slab and
    /// id map (Regions::bytes_per_region): its data block (name, metadata,
    /// snapshot), its poll-index entry, and its share of the records of the
    /// pages it lies on (hash-map buckets at the table's load now, control
    /// byte included) and of their id lists. An estimate of what the
    /// allocator holds, not a measurement (benches/engine.rs measures).
    fn region_bytes(&self, r: &Region) -> usize {
        use std::mem::size_of;
        // hashbrown: buckets a power of two, at most 7/8 full.
        let bucket = |entry: usize, len: usize, cap: usize| {
            let buckets = if cap == 0 { 0 } else { (cap * 8 / 7).next_power_of_two() };
            buckets * (entry + 1) / len.max(1)
        };
        let ps = sys::page_size();
        let mut bytes = r.block_bytes();
        if r.kind == Kind::Poll {
            bytes += (size_of::<usize>() + size_of::<RegionId>()) * 3 / 2; // B-tree entry, nodes ~2/3 full
        }
        for page in r.addr / ps..=(r.addr + r.size() - 1) / ps {
            let sharers = match r.kind {
                Kind::Protect => self.pages.get(&page).map(|p| {
                    let record = bucket(
                        size_of::<(usize, PageInfo)>(),
                        self.pages.len(),
                        self.pages.capacity(),
                    );
                    (p.regions.len(), record + p.regions.heap_bytes())
                }),
                Kind::WriteWatch => self.ww_pages.get(&page).map(|l| {
                    let record = bucket(
                        size_of::<(usize, IdList)>(),
                        self.ww_pages.len(),
                        self.ww_pages.capacity(),
                    );
                    (l.len(), record + l.heap_bytes())
                }),
                Kind::Poll => None,
            };
            if let Some((n, record)) = sharers {
                bytes += record / n.max(1);
            }
        }
        bytes
    }

    /// The shortest poll interval among all watchers (liveness checks and hot
    /// writewatch pages run at this pace).
    fn shortest_poll_interval_ns(&self) -> u64 {
        self.watchers
            .values()
            .map(|w| w.options.poll_interval.as_nanos() as u64)
            .min()
            .unwrap_or(100_000_000)
    }

    /// Drops the regions found unmapped during this pass.
    fn reap_gone(&mut self) {
        for rid in std::mem::take(&mut self.newly_gone) {
            if self.unwatch(rid) {
                self.gone_regions += 1;
            }
        }
    }

    /// How long a written page waits before its regions are diffed: a tenth
    /// of the shortest writable window among the watchers of its regions.
    fn ww_period_of_page(&self, page: usize) -> u64 {
        self.ww_pages
            .get(&page)
            .map_or(&[][..], IdList::as_slice)
            .iter()
            .filter_map(|id| self.regions.get(*id))
            .filter_map(|r| self.watchers.get(&r.watcher))
            .map(|w| writewatch_scan_interval_ns(w.options.writable_window.as_nanos() as u64))
            .min()
            .unwrap_or(0)
    }

    /// Registers the pages of a range not yet tracked by writewatch, in
    /// contiguous runs. On failure nothing stays registered for this range.
    fn register_writewatch(&mut self, addr: usize, len: usize) -> Result<(), i32> {
        let ww = writewatch::get().map_err(|_| libc::ENOSYS)?;
        let ps = sys::page_size();
        let (known, fresh): (Vec<usize>, Vec<usize>) =
            (addr / ps..=(addr + len - 1) / ps).partition(|p| self.ww_pages.contains_key(p));
        // Known pages may sit in a mapping made anew since they were
        // registered (memory freed while watched, address reused).
        for (first, last) in runs(&known) {
            let _ = ww.reregister(first * ps, (last - first + 1) * ps);
        }
        let mut done: Vec<(usize, usize)> = Vec::new();
        for (first, last) in runs(&fresh) {
            if let Err(e) = ww.register(first * ps, (last - first + 1) * ps) {
                for (f, l) in done {
                    ww.unregister(f * ps, (l - f + 1) * ps);
                }
                return Err(e);
            }
            done.push((first, last));
        }
        let now = sys::monotonic_ns();
        for p in addr / ps..=(addr + len - 1) / ps {
            self.ww_armed.insert(p, now);
        }
        for p in fresh {
            self.ww_pages.insert(p, IdList::new());
        }
        self.ww_ranges_stale = true;
        Ok(())
    }

    fn unregister_writewatch(&mut self, id: RegionId, addr: usize, len: usize) {
        let ps = sys::page_size();
        let mut empty = Vec::new();
        for page in addr / ps..=(addr + len - 1) / ps {
            if let Some(list) = self.ww_pages.get_mut(&page) {
                list.remove(id);
                if list.is_empty() {
                    self.ww_pages.remove(&page);
                    self.ww_heat.remove(&page);
                    self.ww_hot.remove(&page);
                    self.ww_pending.remove(&page);
                    self.ww_armed.remove(&page);
                    empty.push(page);
                }
            }
        }
        if let Ok(ww) = writewatch::get() {
            for (first, last) in runs(&empty) {
                ww.unregister(first * ps, (last - first + 1) * ps);
            }
        }
        self.ww_ranges_stale = true;
    }

    /// Collects the pages written since the last scan (re-arming them in the
    /// same call) and diffs the regions on them.
    /// `force_liveness`: also check now that the ranges are still mapped
    /// (check_changes does; the worker every poll interval).
    fn scan_writewatch(
        &mut self,
        now: u64,
        force_liveness: bool,
        events: &mut Vec<(u32, ChangeEvent)>,
    ) {
        let window = self
            .watchers
            .values()
            .filter(|w| w.backend == Backend::WriteWatch)
            .map(|w| w.options.writable_window.as_nanos() as u64)
            .min()
            .unwrap_or(5_000_000);
        if self.ww_pages.is_empty() {
            self.next_scan_ns = now + writewatch_scan_interval_ns(window);
            return;
        }
        let scan_started = sys::monotonic_ns();
        let Ok(ww) = writewatch::get() else { return };
        let ps = sys::page_size();
        if self.ww_ranges_stale {
            let mut pages: Vec<usize> =
                self.ww_pages.keys().filter(|p| !self.ww_hot.contains_key(p)).copied().collect();
            pages.sort_unstable();
            self.ww_ranges =
                runs(&pages).into_iter().map(|(f, l)| (f * ps, (l + 1) * ps)).collect();
            self.ww_ranges_stale = false;
        }
        let mut written = Vec::new();
        let check_liveness = force_liveness || now >= self.next_liveness_ns;
        if check_liveness {
            let poll = self.shortest_poll_interval_ns();
            self.next_liveness_ns = now + poll;
        }
        for &(start, end) in &self.ww_ranges {
            let failed = ww.scan(start, end, &mut written).is_err();
            // A failed scan means a mapping there was replaced (EPERM: not
            // registered); a hole scans as "nothing written", so holes are
            // looked for every poll interval. Either way every page of the
            // range is re-checked below: unmapped regions are dropped as gone,
            // replaced mappings registered again.
            if failed || (check_liveness && !sys::is_mapped(start, end - start)) {
                let _ = ww.reregister(start, end - start);
                written.push((start, end));
            }
        }
        // Scanning costs CPU even when nothing was written: keep it within
        // 1% of a core by spacing scans at least 100x the scan's own cost.
        let cost = sys::monotonic_ns().saturating_sub(scan_started);
        self.next_scan_ns = now + writewatch_scan_interval_ns(window).max(cost.saturating_mul(100));
        self.ww_found_writes = !written.is_empty();
        let mut touched = Vec::new();
        let mut heat = HashMap::new();
        for (start, end) in written {
            for page in start / ps..end / ps {
                if self.ww_pages.contains_key(&page) {
                    // Its first write came after it was last armed: the
                    // previous scan, or its registration if later.
                    // (ww_armed only holds pages armed since the last scan.)
                    let armed = self.ww_armed.get(&page).copied().unwrap_or(self.ww_last_scan_ns);
                    self.ww_pending.entry(page).or_insert(armed);
                    heat.insert(page, self.ww_heat.get(&page).map_or(1, |h| h.saturating_add(1)));
                }
            }
        }
        // Every scanned page is armed again as of now.
        self.ww_last_scan_ns = now;
        self.ww_armed.clear();
        // Pending pages whose watchers' period, counted from the earliest
        // their first write can have been, has passed (all of them for
        // check_changes) are diffed now. For the watchers that set the scan
        // rate a page is due as soon as it is found; and writes made within
        // a period of a watch call land in one event, as under protect.
        let due: Vec<usize> = self
            .ww_pending
            .iter()
            .filter(|(page, since)| {
                force_liveness || now >= **since + self.ww_period_of_page(**page)
            })
            .map(|(page, _)| *page)
            .collect();
        for page in due {
            self.ww_pending.remove(&page);
            touched.extend_from_slice(self.ww_pages[&page].as_slice());
        }
        // Pages written in WW_HOT_AFTER_SCANS scans in a row go hot: scans
        // stop re-arming them (each re-arm costs the writer a fault).
        for (&page, &h) in &heat {
            if h >= WW_HOT_AFTER_SCANS && !self.ww_hot.contains_key(&page) {
                self.ww_hot.insert(page, 0);
                self.ww_ranges_stale = true;
            }
        }
        self.ww_heat = heat;
        // Hot pages: diffed every poll interval, and always by check_changes.
        let poll_hot = force_liveness || now >= self.next_hot_poll_ns;
        if poll_hot && !self.ww_hot.is_empty() {
            let poll = self.shortest_poll_interval_ns();
            self.next_hot_poll_ns = now + poll;
            for &page in self.ww_hot.keys() {
                touched.extend_from_slice(self.ww_pages[&page].as_slice());
            }
        }
        touched.sort_unstable();
        touched.dedup();
        let mut changed = HashSet::new();
        for rid in touched {
            if let Some(ev) = self.diff_region(rid, None, now) {
                changed.insert(rid);
                events.push(ev);
            }
        }
        if poll_hot && !self.ww_hot.is_empty() {
            // Hot pages quiet for WW_COOL_AFTER_QUIET_POLLS intervals are
            // write-protected again and rejoin the scans.
            let mut cooled = Vec::new();
            for (&page, quiet) in self.ww_hot.iter_mut() {
                if self.ww_pages[&page].as_slice().iter().any(|r| changed.contains(r)) {
                    *quiet = 0;
                } else {
                    *quiet += 1;
                    if *quiet >= WW_COOL_AFTER_QUIET_POLLS {
                        cooled.push(page);
                    }
                }
            }
            for page in cooled {
                // Protect first, then read: a write after this is seen by the next scan.
                if ww.protect(page * ps, ps).is_ok() {
                    self.ww_hot.remove(&page);
                    self.ww_ranges_stale = true;
                    for rid in self.ww_pages[&page].as_slice().to_vec() {
                        if let Some(ev) = self.diff_region(rid, None, now) {
                            events.push(ev);
                        }
                    }
                }
            }
        }
    }

    /// Re-protects (or keeps polling, when hot) the given open pages and turns
    /// changed regions on them into events.
    fn process_pages(&mut self, pages: &[usize], now: u64, events: &mut Vec<(u32, ChangeEvent)>) {
        if pages.is_empty() {
            return;
        }
        let ps = sys::page_size();
        // Region -> the earliest known writer among its pages in this batch.
        let mut touched: HashMap<RegionId, Option<FaultRecord>> = HashMap::new();
        let mut hot_pages = Vec::new();
        for &page in pages {
            let window = self.pages.get(&page).map_or(0, |info| self.window_ns_of_page(info));
            let (Some(info), Some(&mode)) = (self.pages.get_mut(&page), self.open.get(&page))
            else {
                self.open.remove(&page);
                continue;
            };
            let who = match mode {
                OpenMode::Open { who, .. } => who,
                OpenMode::Hot { .. } => None,
            };
            let stay_hot = match mode {
                OpenMode::Hot { quiet, .. } => quiet < COOL_AFTER_QUIET_WINDOWS,
                OpenMode::Open { .. } => info.refaults >= HOT_AFTER_REFAULTS,
            };
            self.table.take_dirty(page);
            if stay_hot {
                let quiet = match mode {
                    OpenMode::Hot { quiet, .. } => quiet,
                    _ => 0,
                };
                self.open.insert(page, OpenMode::Hot { since: now, quiet });
                hot_pages.push(page);
            } else {
                // Protect first, then read: a write after this faults again.
                let _ =
                    sys::mprotect(page * ps, ps, libc::PROT_READ | (info.prot & libc::PROT_EXEC));
                // When it really was re-protected: a batch of mprotect calls
                // takes a while, and refaults are measured from here.
                info.reprotected_at = sys::monotonic_ns();
                info.reprotected_early =
                    matches!(mode, OpenMode::Open { since, .. } if now < since + window);
                self.open.remove(&page);
            }
            for &rid in info.regions.as_slice() {
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
        let mut changed_regions = HashSet::new();
        let mut ids: Vec<RegionId> = touched.keys().copied().collect();
        ids.sort_unstable();
        for rid in ids {
            let who = touched[&rid];
            if let Some(ev) = self.diff_region(rid, who, now) {
                changed_regions.insert(rid);
                events.push(ev);
            }
        }
        for page in hot_pages {
            if let (Some(info), Some(mode)) = (self.pages.get(&page), self.open.get_mut(&page)) {
                let changed = info.regions.as_slice().iter().any(|r| changed_regions.contains(r));
                if let OpenMode::Hot { since, quiet } = *mode {
                    *mode = OpenMode::Hot {
                        since,
                        quiet: if changed { 0 } else { quiet.saturating_add(1) },
                    };
                }
            }
        }
    }

    /// Hashes every poll region of one watcher; events for those that changed.
    fn poll_watcher(&mut self, watcher: u32, now: u64, events: &mut Vec<(u32, ChangeEvent)>) {
        let Some(w) = self.watchers.get_mut(&watcher) else { return };
        if w.poll.is_empty() {
            return;
        }
        w.next_poll_ns = now + w.options.poll_interval.as_nanos() as u64;
        let ids: Vec<RegionId> = w.poll.values().copied().collect();
        for rid in ids {
            if let Some(ev) = self.diff_region(rid, None, now) {
                events.push(ev);
            }
        }
    }

    /// Compares a region with its snapshot (or hash); an event if it changed.
    fn diff_region(
        &mut self,
        rid: RegionId,
        who: Option<FaultRecord>,
        now: u64,
    ) -> Option<(u32, ChangeEvent)> {
        let region = self.regions.get_mut(rid)?;
        let entry = self.watchers.get(&region.watcher)?;
        let opts = &entry.options;
        let Some(current) = sys::read_self(region.addr, region.size()) else {
            // Unmapped while watched (a contract violation): drop the region.
            self.newly_gone.push(rid);
            return None;
        };
        let hash = xxh3_64(&current);
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
                changed_ranges(snap, &current),
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
            if store.put(&new_key, &current).is_ok() {
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
        };
        region.hash = hash;
        region.set_snapshot(&current);
        Some((region.watcher, event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_records_stay_small() {
        // The native-bytes budget assumes these (benches/engine.rs measures).
        assert!(std::mem::size_of::<PageInfo>() <= 40);
        assert!(std::mem::size_of::<(usize, PageInfo)>() <= 48);
    }
}
