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

/// After a write is seen, the worker checks for more at the base interval
/// this long; then at its idle pace (QuietGate::step).
const ACTIVE_HOLD_NS: u64 = 100_000_000;
/// Idle, the worker checks the fault count at most every this many times
/// the CPU cost of one check (a wake-up and a getrusage, ~5-10 us here):
/// <= 0.07% of a core, and a first write after silence waits that long
/// (~8-15 ms here). The pass every poll interval (liveness) and the
/// backstop scan every BACKSTOP_POLLS of them come on top: ~0.07% at
/// 10 000 pages.
pub const QUIET_SPACING: u64 = 1500;
/// The idle pace never spaces checks more than this: a check measured
/// slow on a loaded machine (60 us once, a 92 ms step) must not make a
/// first write after silence wait longer. At the ~5-10 us a check costs on
/// a quiet machine the pace stays under it (7.5-15 ms).
pub const QUIET_STEP_MAX_NS: u64 = 20_000_000;
/// A group's backstop scan (for writes the fault count cannot see) runs at
/// least this many poll intervals apart (1 s at defaults): every poll
/// interval, the scan of 10 000 idle pages was ~0.08% of a core, more than
/// a third of the 0.2% idle budget.
const BACKSTOP_POLLS: u64 = 10;
/// The smallest registered ranges, up to this many pages in all, form the
/// fast scan group; the rest the slow one. Each group is paced by its own
/// scan cost (100x), so a large watched range does not slow the scans of
/// small ones: a write to them is seen within the base interval whatever
/// else is watched, one to the large range within 100x its scan cost.
const FAST_GROUP_PAGES: usize = 4096;
/// A page written in this many consecutive scans of its group, with no
/// scan skipped in between ([`ScanGroup::scanned`]), goes hot.
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
    /// The registered cold pages as contiguous address ranges in two scan
    /// groups, fast and slow (FAST_GROUP_PAGES; rebuilt after changes).
    groups: [ScanGroup; 2],
    ranges_stale: bool,
    /// When the scan of a group whose pages may be written (its fault count
    /// is old) is due: the earliest of them; or the base interval.
    next_scan_ns: u64,
    /// The last scan found written pages, and when one last did.
    found_writes: bool,
    last_write_ns: u64,
    /// The shortest writable window of the writewatch watchers (last collect).
    window_ns: u64,
    /// When to check next that the registered ranges are mapped.
    next_liveness_ns: u64,
    /// The process's fault count the last collect read: the quiet gate
    /// waits for it to move (a group that has not scanned since an earlier
    /// count waits for its own pace instead, whatever the count does).
    faults_seen: u64,
    /// The last collect polled the hot pages: after_diff cools quiet ones.
    polled_hot: bool,
    /// Scan at the next collect whatever the count says: pages were
    /// registered without write protection (re-registered after their
    /// mapping was replaced) or rejoined the scans.
    must_scan: bool,
}

/// Ranges scanned together, paced by their own cost.
#[derive(Default)]
struct ScanGroup {
    ranges: Vec<(usize, usize)>,
    /// Scans at most this often: 100x the last scan's cost (<= 1% of a
    /// core), at least the base interval apart.
    next_ns: u64,
    /// The process's page-fault count when the group's last scan began. A
    /// watched page can only become written through a fault of a thread of
    /// this process (the first write to a write-protected page faults, and
    /// the kernel counts it), so while the count stays the same a scan would
    /// find nothing and is skipped: a check costs one getrusage, not a walk
    /// of every watched page's page-table entry.
    faults: u64,
    /// Writes the count cannot see (another process writing ours through
    /// process_vm_writev or /proc/pid/mem, a kernel thread through our
    /// memory) are found by a scan at least this often: 2000x the last
    /// scan's cost (<= 0.05% of a core), at least BACKSTOP_POLLS poll
    /// intervals apart (with a liveness check's pass, so idle it adds no
    /// wake-ups).
    backstop_ns: u64,
    /// A check of the fault count at or after `next_ns` found it still at
    /// `faults`: the group was due and had nothing to scan, so a scan was
    /// skipped since the last one.
    skipped: bool,
    /// Page -> consecutive scans of this group that found it written.
    heat: HashMap<usize, u8>,
}

impl ScanGroup {
    /// The worker read the fault count `faults` at `now` (a collect, or a
    /// check of the quiet gate): still the count of the group's last scan
    /// once the group was due means a scan was skipped.
    fn note_faults(&mut self, faults: u64, now: u64) {
        if faults == self.faults && now >= self.next_ns {
            self.skipped = true;
        }
    }

    /// A scan at `now` (count `faults`) found `written` of the group's
    /// pages written; it sets the group's next due time to `now + spacing`.
    /// Returns the pages that go hot: written in HOT_AFTER_SCANS scans in a
    /// row.
    ///
    /// Scans are in a row when none was skipped in between (a check of the
    /// fault count found it unchanged after the group was due again). Memory
    /// written nonstop is written again before its group may scan again,
    /// whatever that pace (100x the scan's cost: a scan re-arming many
    /// written pages, or one whose re-arm waits for another CPU's TLB
    /// flush, is spaced milliseconds apart), and a worker that comes late
    /// (busy diffing, or waiting for a core) skips nothing. A page written
    /// at a human pace, every few milliseconds or slower, is written after
    /// its group was due and the worker found the count quiet meanwhile:
    /// its heat starts afresh at every write, it never goes hot, and every
    /// write is reported within the base interval.
    fn scanned(
        &mut self,
        written: impl Iterator<Item = usize>,
        now: u64,
        faults: u64,
        spacing: u64,
    ) -> Vec<usize> {
        let mut heat = HashMap::new();
        let mut hot = Vec::new();
        for page in written {
            let h = match self.heat.get(&page) {
                Some(h) if !self.skipped => h.saturating_add(1),
                _ => 1,
            };
            if h >= HOT_AFTER_SCANS {
                hot.push(page);
            }
            heat.insert(page, h);
        }
        self.heat = heat;
        self.faults = faults;
        self.skipped = false;
        self.next_ns = now + spacing;
        hot
    }
}

/// Address ranges `[start, end)`.
type Ranges = Vec<(usize, usize)>;

/// Inclusive runs of pages -> the address ranges of the fast and the slow
/// scan group: the smallest runs go to the fast group while it has at most
/// FAST_GROUP_PAGES pages, the rest to the slow one.
fn scan_groups(mut runs: Vec<(usize, usize)>, ps: usize) -> (Ranges, Ranges) {
    runs.sort_by_key(|&(f, l)| l - f);
    let (mut fast, mut slow, mut in_fast) = (Vec::new(), Vec::new(), 0);
    for (f, l) in runs {
        in_fast += l - f + 1;
        let group = if in_fast <= FAST_GROUP_PAGES { &mut fast } else { &mut slow };
        group.push((f * ps, (l + 1) * ps));
    }
    (fast, slow)
}

/// What the worker may check without the engine lock while writewatch has
/// nothing to do ([`WriteWatchPages::quiet_gate`]): until `until`, a pass
/// finds nothing as long as the process's fault count is `faults`.
#[derive(Clone, Copy, Debug)]
pub struct QuietGate {
    pub faults: u64,
    pub until: u64,
    /// Writes were seen until this (plus ACTIVE_HOLD_NS): check at `base`.
    active_until: u64,
    base: u64,
}

impl QuietGate {
    /// How long to sleep before checking the fault count again, given the
    /// CPU cost of one check: the base interval while memory is being
    /// written, QUIET_SPACING times the check's cost once idle (at most
    /// QUIET_STEP_MAX_NS).
    pub fn step(&self, now: u64, check_cpu_ns: u64) -> u64 {
        if now < self.active_until {
            self.base
        } else {
            self.base.max(check_cpu_ns.saturating_mul(QUIET_SPACING).min(QUIET_STEP_MAX_NS))
        }
    }
}

impl WriteWatchPages {
    /// The regions on a page.
    pub fn regions_on(&self, page: usize) -> &[RegionId] {
        self.pages.get(&page).map_or(&[], IdList::as_slice)
    }

    /// Pages registered (write-protected between scans).
    pub fn protected_pages(&self) -> usize {
        self.pages.len()
    }

    /// Registered pages that are hot (written nonstop: polled, not re-armed).
    pub fn hot_pages(&self) -> usize {
        self.hot.len()
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

    /// The quiet gate's last check (without the lock) found the fault count
    /// still at `faults` at `now`.
    pub fn note_quiet_check(&mut self, faults: u64, now: u64) {
        for g in &mut self.groups {
            g.note_faults(faults, now);
        }
    }

    /// After a worker pass: remembers when writes were last seen.
    pub fn note_pass(&mut self, now: u64) {
        if self.found_writes {
            self.last_write_ns = now;
        }
    }

    /// Some when a worker pass would find nothing for writewatch until
    /// `until` unless the fault count changes: no written page waits for
    /// its period, nothing must be scanned anew; hot pages (written without
    /// faults) wait for their poll. The worker then checks the count
    /// without the engine lock.
    pub fn quiet_gate(&self) -> Option<QuietGate> {
        if self.pages.is_empty() || !self.pending.is_empty() || self.must_scan || self.ranges_stale
        {
            return None;
        }
        let hot_poll = (!self.hot.is_empty()).then_some(self.next_hot_poll_ns);
        let groups = self.groups.iter().filter(|g| !g.ranges.is_empty());
        let faults = self.faults_seen;
        // A group that has not scanned since the faults the last collect saw
        // is due at its own pace (the count moving again changes nothing for
        // it); every group at its backstop; liveness every poll interval.
        let until = groups
            .map(|g| if g.faults == faults { g.backstop_ns } else { g.next_ns.min(g.backstop_ns) })
            .chain([self.next_liveness_ns])
            .chain(hot_poll)
            .min()?;
        Some(QuietGate {
            faults,
            until,
            active_until: self.last_write_ns + ACTIVE_HOLD_NS,
            base: scan_interval_ns(self.window_ns),
        })
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
                    for g in &mut self.groups {
                        g.heat.remove(&page);
                    }
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
        self.window_ns = window;
        let Ok(ww) = uffd::get() else { return Vec::new() };
        let ps = sys::page_size();
        if self.ranges_stale {
            let mut pages: Vec<usize> =
                self.pages.keys().filter(|p| !self.hot.contains_key(p)).copied().collect();
            pages.sort_unstable();
            let (fast, slow) = scan_groups(backend::runs(&pages), ps);
            self.groups[0].ranges = fast;
            self.groups[1].ranges = slow;
            self.ranges_stale = false;
            self.must_scan = true;
        }
        let mut written = Vec::new();
        let check_liveness = force || now >= self.next_liveness_ns;
        let poll_ns = backend::shortest_poll_ns(owners);
        if check_liveness {
            self.next_liveness_ns = now + poll_ns;
        }
        // Read the fault count before scanning: a write whose fault ends
        // after this read changes it (seen by the next collect), one that
        // ended before is in the page tables this scan walks.
        let faults = sys::process_faults();
        self.faults_seen = faults;
        let base = scan_interval_ns(window);
        let mut all_scanned = true;
        let mut new_hot = Vec::new();
        for g in &mut self.groups {
            // The slow group waits for the next pass (right after this one)
            // when the fast group found writes: their events do not wait
            // for a scan of the large ranges.
            let defer = !self.must_scan && !written.is_empty();
            let scan = force
                || self.must_scan
                || (!defer && now >= g.next_ns && (faults != g.faults || now >= g.backstop_ns));
            all_scanned &= scan || g.ranges.is_empty();
            let from = written.len();
            let started = sys::monotonic_ns();
            g.note_faults(faults, now);
            for &(start, end) in &g.ranges {
                let failed = scan && ww.scan(start, end, &mut written).is_err();
                // A failed scan means a mapping there was replaced (EPERM:
                // not registered); a hole scans as "nothing written", so
                // holes are looked for every poll interval. Either way every
                // page of the range is re-checked below: unmapped regions
                // are dropped as gone, replaced mappings registered again.
                if failed || (check_liveness && !sys::is_mapped(start, end - start)) {
                    let _ = ww.reregister(start, end - start);
                    written.push((start, end));
                }
            }
            if scan {
                // Scanning costs CPU even when nothing was written: keep it
                // within 1% of a core by spacing a group's scans at least
                // 100x their own cost.
                let cost = sys::monotonic_ns().saturating_sub(started);
                let spacing = base.max(cost.saturating_mul(100));
                g.backstop_ns = now + cost.saturating_mul(2000).max(poll_ns * BACKSTOP_POLLS);
                // Heat: pages written in HOT_AFTER_SCANS scans in a row go
                // hot: scans stop re-arming them (each re-arm costs the
                // writer a fault).
                let pages = &self.pages;
                let found = written[from..]
                    .iter()
                    .flat_map(|&(start, end)| start / ps..end / ps)
                    .filter(|p| pages.contains_key(p));
                new_hot.extend(g.scanned(found, now, faults, spacing));
            }
        }
        self.must_scan = false;
        // Next due: a group with faults it has not scanned for, at its pace;
        // otherwise the base interval (the fault count is checked then).
        self.next_scan_ns = self
            .groups
            .iter()
            .filter(|g| !g.ranges.is_empty() && g.faults != faults)
            .map(|g| g.next_ns)
            .chain([now + base])
            .min()
            .expect("chained");
        self.found_writes = !written.is_empty();
        let mut touched = Vec::new();
        for (start, end) in written {
            for page in start / ps..end / ps {
                if self.pages.contains_key(&page) {
                    // Its first write came after it was last armed: the
                    // previous scan, or its registration if later.
                    // (`armed` only holds pages armed since the last scan.)
                    let armed = self.armed.get(&page).copied().unwrap_or(self.last_scan_ns);
                    self.pending.entry(page).or_insert(armed);
                }
            }
        }
        // Every scanned page is armed again as of now (when a group did not
        // scan, its pages' writes may date from the last full scan).
        if all_scanned {
            self.last_scan_ns = now;
            self.armed.clear();
        }
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
        for page in new_hot {
            if let std::collections::hash_map::Entry::Vacant(e) = self.hot.entry(page) {
                e.insert(0);
                self.ranges_stale = true;
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages registered by hand (no userfaultfd): one range per group.
    fn quiet_pages() -> WriteWatchPages {
        let mut p = WriteWatchPages::default();
        p.pages.insert(7, IdList::new());
        p.pages.insert(9000, IdList::new());
        p.groups[0] = ScanGroup {
            ranges: vec![(7, 8)],
            next_ns: 1_000,
            faults: 50,
            backstop_ns: 90_000,
            ..ScanGroup::default()
        };
        p.groups[1] = ScanGroup {
            ranges: vec![(9000, 9001)],
            next_ns: 60_000,
            faults: 50,
            backstop_ns: 80_000,
            ..ScanGroup::default()
        };
        p.faults_seen = 50;
        p.next_liveness_ns = 100_000;
        p.window_ns = 5_000_000;
        p.last_write_ns = 10_000;
        p
    }

    #[test]
    fn quiet_gate_waits_for_the_fault_count_and_the_next_due_scan() {
        let mut p = quiet_pages();
        let g = p.quiet_gate().unwrap();
        // Both groups scanned at count 50: until the earliest backstop.
        assert_eq!((g.faults, g.until), (50, 80_000));
        // The fast group scanned at a newer count: the slow group is due at
        // its own pace.
        p.groups[0].faults = 51;
        p.faults_seen = 51;
        let g = p.quiet_gate().unwrap();
        assert_eq!((g.faults, g.until), (51, 60_000));
        // Faults the last collect saw but no group scanned for yet (neither
        // was due): the gate waits for the count to move past the one seen,
        // or for the first group's pace; it never returns at once because
        // a group's own count is older (that spun the worker until the
        // group was due).
        let mut q = quiet_pages();
        q.faults_seen = 53;
        let g = q.quiet_gate().unwrap();
        assert_eq!((g.faults, g.until), (53, 1_000));
        // The liveness check comes first.
        p.next_liveness_ns = 20_000;
        assert_eq!(p.quiet_gate().unwrap().until, 20_000);
        // Hot pages fault nothing: the gate holds until their poll.
        p.hot.insert(7, 0);
        p.next_hot_poll_ns = 15_000;
        assert_eq!(p.quiet_gate().unwrap().until, 15_000);
        // Anything the next pass must do: no gate.
        for setup in [
            (|p: &mut WriteWatchPages| {
                p.pending.insert(7, 0);
            }) as fn(&mut WriteWatchPages),
            |p| p.must_scan = true,
            |p| p.ranges_stale = true,
            |p| p.pages.clear(),
        ] {
            let mut p = quiet_pages();
            setup(&mut p);
            assert!(p.quiet_gate().is_none());
        }
    }

    /// Drives one scan group the way the worker does, with made-up times:
    /// the fault count is checked every `step` (the base interval while
    /// memory is written), `late` later after each scan (the worker busy
    /// diffing, or waiting for a core); a write to the page (every
    /// `write_every`, `n` of them, then 50 ms without) moves it, and so
    /// does every check when the process `faults_elsewhere`; a check that
    /// sees it moved runs a collect, which scans when the group is due.
    /// Each scan costs what sets `spacing` (100x its cost). Returns how many
    /// scans found the page written, and after how many writes it went hot.
    fn drive(
        (n, write_every): (u32, u64),
        faults_elsewhere: bool,
        spacing: u64,
        (step, late): (u64, u64),
    ) -> (u32, Option<u32>) {
        const PAGE: usize = 7;
        let mut g = ScanGroup::default();
        let (mut t, mut faults, mut writes, mut found) = (1_000_000_000u64, 0u64, 0u32, 0u32);
        let mut next_write = t + write_every;
        let mut written = false;
        let end = next_write + u64::from(n) * write_every + 50_000_000;
        while t < end {
            t += step;
            while next_write <= t && writes < n {
                (faults, written, writes) = (faults + 1, true, writes + 1);
                next_write += write_every;
            }
            faults += u64::from(faults_elsewhere);
            g.note_faults(faults, t);
            if faults != g.faults && t >= g.next_ns {
                found += u32::from(written);
                let hot = g.scanned(written.then_some(PAGE).into_iter(), t, faults, spacing);
                written = false;
                if hot == [PAGE] {
                    return (found, Some(writes));
                }
                t += late;
            }
        }
        (found, None)
    }

    #[test]
    fn a_page_written_every_few_ms_never_goes_hot_whatever_its_scans_cost() {
        let base = scan_interval_ns(5_000_000);
        // The latency bench: one page written every 12 ms; re-arming it
        // made its 1-page scan cost 30-45 us here (spacing 3-4.5 ms). Scans
        // counted as in a row when up to 3 spacings apart, the page went
        // hot after 8 writes and was then diffed only every poll interval
        // (p99 ~100 ms, writes merged). Every write is found by its own
        // scan, and none is in a row.
        let bench = (300, 12_000_000);
        for spacing in [base, 4_000_000, 8_000_000] {
            assert_eq!(drive(bench, false, spacing, (base, 0)), (300, None), "{spacing}");
            // A worker that comes back 2 ms late after each scan.
            assert_eq!(drive(bench, false, spacing, (base, 2_000_000)), (300, None));
            // A process that faults all the time elsewhere: the group scans
            // at its pace, and most scans find the page unwritten.
            assert_eq!(drive(bench, true, spacing, (base, 0)), (300, None), "{spacing}");
        }
        // Written every 2 ms, scans at the base pace.
        assert_eq!(drive((300, 2_000_000), false, base, (base, 0)), (300, None));
    }

    #[test]
    fn a_page_written_nonstop_goes_hot_after_eight_scans_whatever_their_cost() {
        let base = scan_interval_ns(5_000_000);
        let nonstop = (100_000, 50_000);
        for spacing in [base, 4_000_000, 8_000_000] {
            for late in [0, 2_000_000, 10_000_000] {
                // Late: the steady-state loop on a loaded machine, where
                // the worker came back 5-10 ms after each 3.5 ms diff of
                // the 256 written pages, past the group's due time, and
                // counting only a count seen moving before it was due
                // never made them hot (2.5x the writer's time).
                let (found, hot) = drive(nonstop, false, spacing, (base, late));
                assert_eq!((found, hot.is_some()), (HOT_AFTER_SCANS as u32, true), "{late}");
            }
        }
    }

    #[test]
    fn a_scan_is_skipped_when_the_count_was_unchanged_once_the_group_was_due() {
        let mut g = ScanGroup { faults: 10, next_ns: 1_000, ..ScanGroup::default() };
        g.note_faults(10, 999);
        assert!(!g.skipped, "not due yet");
        g.note_faults(11, 1_500);
        assert!(!g.skipped, "moved: something to scan");
        g.note_faults(10, 1_000);
        assert!(g.skipped, "due and quiet");
        g.heat.insert(7, 5);
        assert_eq!(g.scanned([7].into_iter(), 2_000, 12, 500), Vec::<usize>::new());
        assert_eq!((g.heat[&7], g.skipped, g.faults, g.next_ns), (1, false, 12, 2_500));
        for _ in 1..HOT_AFTER_SCANS - 1 {
            assert_eq!(g.scanned([7].into_iter(), 2_000, 12, 500), Vec::<usize>::new());
        }
        assert_eq!(g.scanned([7].into_iter(), 2_000, 12, 500), [7]);
        // A scan that does not find a page written ends its run.
        assert_eq!(g.scanned([8].into_iter(), 2_000, 12, 500), Vec::<usize>::new());
        assert!(!g.heat.contains_key(&7));
    }

    #[test]
    fn small_ranges_scan_in_the_fast_group_large_ones_in_the_slow() {
        let n = FAST_GROUP_PAGES;
        // A 1-page and a 10-page range beside one of n pages: the small ones
        // fit the fast group's budget, the large one does not.
        let (fast, slow) = scan_groups(vec![(0, n - 1), (n + 5, n + 5), (2 * n, 2 * n + 9)], 10);
        assert_eq!(fast, [((n + 5) * 10, (n + 6) * 10), (2 * n * 10, (2 * n + 10) * 10)]);
        assert_eq!(slow, [(0, n * 10)]);
        // Exactly the budget stays fast; nothing large: no slow group.
        let (fast, slow) = scan_groups(vec![(0, n - 2), (n, n)], 1);
        assert_eq!((fast.len(), slow.len()), (2, 0));
        let (fast, slow) = scan_groups(vec![(0, n)], 1);
        assert_eq!((fast.len(), slow), (0, vec![(0, n + 1)]));
    }

    #[test]
    fn quiet_checks_come_at_the_base_interval_after_a_write_then_at_the_idle_pace() {
        let g = quiet_pages().quiet_gate().unwrap();
        let base = scan_interval_ns(5_000_000);
        assert_eq!(g.step(10_000 + ACTIVE_HOLD_NS - 1, 8_000), base, "just written: fast");
        let idle = 10_000 + ACTIVE_HOLD_NS;
        assert_eq!(g.step(idle, 8_000), 8_000 * QUIET_SPACING, "idle: paced by the check's cost");
        assert_eq!(g.step(idle, 0), base, "an unmeasured check: the base interval");
        assert_eq!(g.step(idle, 60_000), QUIET_STEP_MAX_NS, "a check measured slow: capped");
    }
}
