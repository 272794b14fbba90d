//! The engine side of the writewatch backend: which pages are registered
//! and by which regions, when to scan, which written pages are due for
//! diffing, and which pages are hot (written nonstop: not re-armed by scans,
//! diffed every poll interval instead).

use std::collections::{HashMap, HashSet};

use super::uffd;
use crate::backend::{self, Detector, Dirty, NewRegion, Owners, Pass};
use crate::regions::IdList;
use crate::sys;
use crate::types::{Backend, Error, RegionId};

/// How often writewatch scans at most: a tenth of the writable window (0.5 ms
/// at the default 5 ms), at least 0.1 ms apart; less often when one scan costs
/// more than 1% of that (many watched pages).
fn scan_interval_ns(window_ns: u64) -> u64 {
    (window_ns / 10).max(100_000)
}

/// Scans stay at the base interval this long after the last write seen;
/// then they back off to the idle CPU budget.
const ACTIVE_HOLD_NS: u64 = 100_000_000;
/// Idle, a worker iteration comes at most every this many times its own
/// CPU cost: <= 1% of a core. Once the fault count gates the scan, an
/// iteration is mostly the wake-up (~0.1 ms of CPU on the 2-core VM of the
/// benchmarks), whatever the watched size; the spacing is also how long a
/// first write after silence may wait (~10 ms there). 800 would give
/// <= 0.125% but waits up to ~40 ms (README, Benchmarks).
const IDLE_SPACING: u64 = 100;
/// A page written in this many consecutive scans goes hot.
const HOT_AFTER_SCANS: u8 = 8;
/// A hot page unchanged for this many poll intervals cools down.
const COOL_AFTER_QUIET_POLLS: u8 = 4;

/// The writewatch backend's pages.
#[derive(Default)]
pub struct WriteWatchPages {
    /// Page -> regions on it.
    pages: HashMap<usize, IdList>,
    /// Region -> its pages the last collect found written (take_batch_pages).
    batch_pages: HashMap<RegionId, Vec<usize>>,
    /// Page -> consecutive scans that found it written.
    heat: HashMap<usize, u8>,
    /// Pages found written, not yet diffed -> when first found. Scans serve
    /// every watcher, but each watcher's regions are diffed on its own period
    /// (a tenth of its writable window), so writes within it coalesce into
    /// one event whatever other watchers do.
    pending: HashMap<usize, u64>,
    /// When the last scan ran (and re-armed what it scanned).
    last_scan_ns: u64,
    /// Pages armed after the last scan (registered, or watched anew) -> when.
    /// A page found written was written after max(last scan, armed): its
    /// period counts from there.
    armed: HashMap<usize, u64>,
    /// Hot pages (written nonstop): not re-armed by scans, diffed every poll
    /// interval instead; value = quiet intervals in a row.
    hot: HashMap<usize, u8>,
    next_hot_poll_ns: u64,
    /// The registered cold pages as sorted contiguous address ranges
    /// (rebuilt after changes), and when to scan next.
    ranges: Vec<(usize, usize)>,
    ranges_stale: bool,
    next_scan_ns: u64,
    /// The last scan found written pages, and when one last did.
    found_writes: bool,
    last_write_ns: u64,
    /// When to check next that the registered ranges are mapped.
    next_liveness_ns: u64,
    /// The last collect polled the hot pages: after_diff cools quiet ones.
    polled_hot: bool,
    /// The process's page-fault count when the last scan began. A watched
    /// page can only become written through a fault of a thread of this
    /// process (the first write to a write-protected page faults, and the
    /// kernel counts it), so while the count stays the same a scan would find
    /// nothing and is skipped: a check costs one getrusage, not a walk of
    /// every watched page's page-table entry.
    faults_at_scan: u64,
    /// Scan at the next collect whatever the count says: pages were
    /// registered without write protection (re-registered after their
    /// mapping was replaced) or rejoined the scans.
    must_scan: bool,
    /// Writes the count cannot see (another process writing ours through
    /// process_vm_writev or /proc/pid/mem, a kernel thread through our
    /// memory) are found by a full scan at least this often: 2000x the last
    /// scan's cost, <= 0.05% of a core.
    next_backstop_ns: u64,
    /// Nanoseconds the scans of collects since the last `take_scan_cost` took.
    scan_cost_ns: u64,
}

impl WriteWatchPages {
    /// No pages registered.
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// The regions on a page.
    pub fn regions_on(&self, page: usize) -> &[RegionId] {
        self.pages.get(&page).map_or(&[], IdList::as_slice)
    }

    /// Pages registered (write-protected between scans).
    pub fn protected_pages(&self) -> usize {
        self.pages.len()
    }

    /// For stats: (regions sharing the page, bytes of its record and id list).
    pub fn page_share(&self, page: usize) -> Option<(usize, usize)> {
        let l = self.pages.get(&page)?;
        let record = backend::record_bytes(
            std::mem::size_of::<(usize, IdList)>(),
            self.pages.len(),
            self.pages.capacity(),
        );
        Some((l.len(), record + l.heap_bytes()))
    }

    /// The last scan found written pages.
    pub fn found_writes(&self) -> bool {
        self.found_writes
    }

    /// Time the page-table scans took since the last call. The worker leaves
    /// it out of an idle iteration's cost: scans are paced on their own
    /// (100x their cost after one, the backstop 2000x), so a rare full scan
    /// of much memory does not stretch the idle wake-ups after it.
    pub fn take_scan_cost(&mut self) -> u64 {
        std::mem::take(&mut self.scan_cost_ns)
    }

    /// After a worker pass: while memory is being written (a write seen in
    /// the last ACTIVE_HOLD_NS) scans come at the base interval, for low
    /// latency; idle for longer, an iteration (its measured CPU time
    /// `idle_cpu_ns`, wake-up and scan included) comes at most every
    /// IDLE_SPACING times its cost. `had_pages`: pages were registered when the
    /// pass began; `pass_idle`: it found nothing.
    pub fn pace(&mut self, now: u64, had_pages: bool, pass_idle: bool, idle_cpu_ns: u64) {
        if self.found_writes {
            self.last_write_ns = now;
        }
        if had_pages
            && pass_idle
            && now.saturating_sub(self.last_write_ns) > ACTIVE_HOLD_NS
            && !self.pages.is_empty()
        {
            self.next_scan_ns = self.next_scan_ns.max(now + idle_cpu_ns * IDLE_SPACING);
        }
    }

    /// How long a written page waits before its regions are diffed: a tenth
    /// of the shortest writable window among the watchers of its regions.
    fn period_of_page(&self, owners: &dyn Owners, page: usize) -> u64 {
        self.pages
            .get(&page)
            .map_or(&[][..], IdList::as_slice)
            .iter()
            .filter_map(|id| owners.options_of(*id))
            .map(|o| scan_interval_ns(o.writable_window.as_nanos() as u64))
            .min()
            .unwrap_or(0)
    }

    /// Registers the pages of a range not yet tracked, in contiguous runs.
    /// On failure nothing stays registered for this range.
    fn register_pages(&mut self, addr: usize, len: usize) -> Result<(), i32> {
        let ww = uffd::get().map_err(|_| libc::ENOSYS)?;
        let ps = sys::page_size();
        let (known, fresh): (Vec<usize>, Vec<usize>) =
            backend::pages_of(addr, len).partition(|p| self.pages.contains_key(p));
        // Known pages may sit in a mapping made anew since they were
        // registered (memory freed while watched, address reused).
        for (first, last) in backend::runs(&known) {
            let _ = ww.reregister(first * ps, (last - first + 1) * ps);
        }
        let mut done: Vec<(usize, usize)> = Vec::new();
        for (first, last) in backend::runs(&fresh) {
            if let Err(e) = ww.register(first * ps, (last - first + 1) * ps) {
                for (f, l) in done {
                    ww.unregister(f * ps, (l - f + 1) * ps);
                }
                return Err(e);
            }
            done.push((first, last));
        }
        let now = sys::monotonic_ns();
        for p in backend::pages_of(addr, len) {
            self.armed.insert(p, now);
        }
        for p in fresh {
            self.pages.insert(p, IdList::new());
        }
        self.ranges_stale = true;
        self.must_scan = true;
        Ok(())
    }
}

impl Detector for WriteWatchPages {
    /// Fails with [`Error::Unsupported`] for mappings userfaultfd refuses
    /// (the engine then uses another backend for the region).
    fn register(&mut self, _owners: &dyn Owners, r: &NewRegion<'_>) -> Result<(), Error> {
        self.register_pages(r.addr, r.len).map_err(|errno| {
            Error::Unsupported(format!(
                "userfaultfd refused {} bytes at {:#x} (errno {errno})",
                r.len, r.addr
            ))
        })?;
        for page in backend::pages_of(r.addr, r.len) {
            self.pages.get_mut(&page).expect("page registered").push(r.id);
        }
        // The next scan may have been set by watchers with longer windows
        // (or none): this watcher's writes are due within its own period.
        let period = scan_interval_ns(r.options.writable_window.as_nanos() as u64);
        self.next_scan_ns = self.next_scan_ns.min(sys::monotonic_ns() + period);
        Ok(())
    }

    fn unregister(&mut self, id: RegionId, addr: usize, len: usize) {
        let ps = sys::page_size();
        let mut empty = Vec::new();
        for page in backend::pages_of(addr, len) {
            if let Some(list) = self.pages.get_mut(&page) {
                list.remove(id);
                if list.is_empty() {
                    self.pages.remove(&page);
                    self.heat.remove(&page);
                    self.hot.remove(&page);
                    self.pending.remove(&page);
                    self.armed.remove(&page);
                    empty.push(page);
                }
            }
        }
        if let Ok(ww) = uffd::get() {
            for (first, last) in backend::runs(&empty) {
                ww.unregister(first * ps, (last - first + 1) * ps);
            }
        }
        self.ranges_stale = true;
        if self.pages.is_empty() {
            // Nothing is watched here any more: give the map's memory back.
            self.pages.shrink_to_fit();
        }
    }

    /// Collects the pages written since the last scan (re-arming them in the
    /// same call): the regions on those now due, and on hot pages when they
    /// are polled. check_changes ([`Pass::Now`]) also checks now that the
    /// ranges are still mapped (the worker every poll interval).
    fn collect(&mut self, owners: &dyn Owners, now: u64, pass: Pass) -> Vec<Dirty> {
        self.polled_hot = false;
        let force = matches!(pass, Pass::Now(_));
        if pass == Pass::Due && (self.pages.is_empty() || self.next_scan_ns > now) {
            return Vec::new();
        }
        let window = owners
            .options_of_backend(Backend::WriteWatch)
            .iter()
            .map(|o| o.writable_window.as_nanos() as u64)
            .min()
            .unwrap_or(5_000_000);
        if self.pages.is_empty() {
            self.next_scan_ns = now + scan_interval_ns(window);
            return Vec::new();
        }
        let scan_started = sys::monotonic_ns();
        let Ok(ww) = uffd::get() else { return Vec::new() };
        let ps = sys::page_size();
        if self.ranges_stale {
            let mut pages: Vec<usize> =
                self.pages.keys().filter(|p| !self.hot.contains_key(p)).copied().collect();
            pages.sort_unstable();
            self.ranges =
                backend::runs(&pages).into_iter().map(|(f, l)| (f * ps, (l + 1) * ps)).collect();
            self.ranges_stale = false;
            self.must_scan = true;
        }
        let mut written = Vec::new();
        let check_liveness = force || now >= self.next_liveness_ns;
        if check_liveness {
            self.next_liveness_ns = now + backend::shortest_poll_ns(owners);
        }
        // Read the fault count before scanning: a write whose fault ends
        // after this read changes it (seen by the next collect), one that
        // ended before is in the page tables this scan walks.
        let faults = sys::process_faults();
        let scan = force
            || self.must_scan
            || faults != self.faults_at_scan
            || now >= self.next_backstop_ns;
        if scan {
            self.faults_at_scan = faults;
            self.must_scan = false;
        }
        for &(start, end) in &self.ranges {
            let failed = scan && ww.scan(start, end, &mut written).is_err();
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
        self.next_scan_ns = now + scan_interval_ns(window).max(cost.saturating_mul(100));
        if scan {
            self.next_backstop_ns = now + cost.saturating_mul(2000);
            self.scan_cost_ns += cost;
        }
        self.found_writes = !written.is_empty();
        let mut touched = Vec::new();
        let mut heat = HashMap::new();
        for (start, end) in written {
            for page in start / ps..end / ps {
                if self.pages.contains_key(&page) {
                    // Its first write came after it was last armed: the
                    // previous scan, or its registration if later.
                    // (`armed` only holds pages armed since the last scan.)
                    let armed = self.armed.get(&page).copied().unwrap_or(self.last_scan_ns);
                    self.pending.entry(page).or_insert(armed);
                    heat.insert(page, self.heat.get(&page).map_or(1, |h| h.saturating_add(1)));
                }
            }
        }
        // Every scanned page is armed again as of now.
        self.last_scan_ns = now;
        self.armed.clear();
        // Pending pages whose watchers' period, counted from the earliest
        // their first write can have been, has passed (all of them for
        // check_changes) are diffed now. For the watchers that set the scan
        // rate a page is due as soon as it is found; and writes made within
        // a period of a watch call land in one event, as under protect.
        let due: Vec<usize> = self
            .pending
            .iter()
            .filter(|(page, since)| force || now >= **since + self.period_of_page(owners, **page))
            .map(|(page, _)| *page)
            .collect();
        self.batch_pages.clear();
        for page in due {
            self.pending.remove(&page);
            touched.extend_from_slice(self.pages[&page].as_slice());
            for &rid in self.pages[&page].as_slice() {
                self.batch_pages.entry(rid).or_default().push(page);
            }
        }
        // Pages written in HOT_AFTER_SCANS scans in a row go hot: scans stop
        // re-arming them (each re-arm costs the writer a fault).
        for (&page, &h) in &heat {
            if h >= HOT_AFTER_SCANS && !self.hot.contains_key(&page) {
                self.hot.insert(page, 0);
                self.ranges_stale = true;
            }
        }
        self.heat = heat;
        // Hot pages: diffed every poll interval, and always by check_changes.
        let poll_hot = force || now >= self.next_hot_poll_ns;
        if poll_hot && !self.hot.is_empty() {
            self.next_hot_poll_ns = now + backend::shortest_poll_ns(owners);
            for &page in self.hot.keys() {
                touched.extend_from_slice(self.pages[&page].as_slice());
                for &rid in self.pages[&page].as_slice() {
                    self.batch_pages.entry(rid).or_default().push(page);
                }
            }
            self.polled_hot = true;
        }
        touched.sort_unstable();
        touched.dedup();
        touched.into_iter().map(|rid| (rid, None)).collect()
    }

    fn take_batch_pages(&mut self) -> HashMap<RegionId, Vec<usize>> {
        let mut batch = std::mem::take(&mut self.batch_pages);
        for pages in batch.values_mut() {
            pages.sort_unstable();
            pages.dedup();
        }
        batch
    }

    /// Hot pages quiet for COOL_AFTER_QUIET_POLLS polls are write-protected
    /// again and rejoin the scans; their regions are diffed once more.
    fn after_diff(
        &mut self,
        _owners: &dyn Owners,
        changed: &HashSet<RegionId>,
        _now: u64,
    ) -> Vec<RegionId> {
        if !std::mem::take(&mut self.polled_hot) {
            return Vec::new();
        }
        let Ok(ww) = uffd::get() else { return Vec::new() };
        let ps = sys::page_size();
        let mut cooled = Vec::new();
        for (&page, quiet) in self.hot.iter_mut() {
            if self.pages[&page].as_slice().iter().any(|r| changed.contains(r)) {
                *quiet = 0;
            } else {
                *quiet += 1;
                if *quiet >= COOL_AFTER_QUIET_POLLS {
                    cooled.push(page);
                }
            }
        }
        let mut again = Vec::new();
        for page in cooled {
            // Protect first, then read: a write after this is seen by the next scan.
            if ww.protect(page * ps, ps).is_ok() {
                self.hot.remove(&page);
                self.ranges_stale = true;
                again.extend_from_slice(self.pages[&page].as_slice());
            }
        }
        again
    }

    fn next_deadline(&self, _owners: &dyn Owners) -> Option<u64> {
        (!self.pages.is_empty()).then_some(self.next_scan_ns)
    }
}
