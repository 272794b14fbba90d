//! The process-wide engine: the regions of every watcher, the backends that
//! say which of them may have changed (crate::backend), the worker thread
//! ([`worker`]), the diff -> event step ([`event`]) and the counters for
//! stats ([`accounting`]). Events go to each watcher's crate::delivery.
//!
//! Lock order: engine state mutex, then a watcher's queue mutex. Callbacks
//! never run under either.

mod accounting;
mod event;
mod worker;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use memwatch_store::{value_key, Store};
use xxhash_rust::xxh3::xxh3_64;

use crate::backend::poll::{self, PollRegions};
use crate::backend::protect::{handler, IdleGate, ProtectPages};
use crate::backend::writewatch::{uffd, WriteWatchPages};
use crate::backend::{self, Detector, Dirty, NewRegion, Owners, Pass};
use crate::delivery::Delivery;
use crate::location;
use crate::regions::{Kind, Region, Regions};
use crate::sys::{self, maps, EventFd};
use crate::types::*;

struct WatcherEntry {
    delivery: Weak<Delivery>,
    options: Options,
    backend: Backend,
    /// Regions that could not use the watcher's backend (userfaultfd refused
    /// them, or protect on a thread stack), with the last reason.
    fallback_regions: usize,
    fallback_reason: String,
    /// Regions in shared mappings watched by protect or writewatch (chosen
    /// explicitly), which miss other processes' writes, with the last one.
    shared_regions: usize,
    shared_reason: String,
    /// Regions of this watcher.
    regions: usize,
    /// Of those, the ones on protect or writewatch pages (overlap checks
    /// look for them in the page maps).
    paged_regions: usize,
    /// Where values larger than max_value_bytes go (storage_key_old/new).
    store: Option<Arc<Store>>,
}

/// The regions and the watchers they belong to: what backends may read
/// ([`Owners`]) and what diffing updates.
struct Registry {
    regions: Regions,
    /// Watcher id -> its entry (looked up per region diffed: IdMap).
    watchers: crate::regions::IdMap<u32, WatcherEntry>,
    /// Found unmapped during the current pass; dropped at its end.
    newly_gone: Vec<RegionId>,
    /// Passes in progress over large poll regions: what their slices found.
    passes: HashMap<RegionId, event::PassChanges>,
    /// Large poll regions without a snapshot: a hash per page (event::page_hashes).
    page_hashes: HashMap<RegionId, Box<[u64]>>,
    /// Poll regions (watcher, address) whose stored bytes diff_region changed
    /// outside a run of a poll pass (poll::Due::Run): their runs' hashes are
    /// dropped before the next slice (PollRegions::invalidate).
    restated: Vec<(u32, usize)>,
}

impl Registry {
    fn new() -> Registry {
        Registry {
            regions: Regions::new(),
            watchers: Default::default(),
            newly_gone: Vec::new(),
            passes: HashMap::new(),
            page_hashes: HashMap::new(),
            restated: Vec::new(),
        }
    }
}

impl Registry {
    /// Writer location: the deepest stack a locating watcher asks for (0 = none).
    fn location_depth(&self) -> usize {
        self.watchers
            .values()
            .filter(|w| w.options.locate_writers)
            .map(|w| w.options.stack_depth)
            .max()
            .unwrap_or(0)
    }
}

impl Owners for Registry {
    fn options_of(&self, id: RegionId) -> Option<&Options> {
        let r = self.regions.get(id)?;
        self.watchers.get(&r.watcher).map(|w| &w.options)
    }

    fn options_of_backend(&self, backend: Backend) -> Vec<&Options> {
        self.watchers.values().filter(|w| w.backend == backend).map(|w| &w.options).collect()
    }

    fn all_options(&self) -> Vec<&Options> {
        self.watchers.values().map(|w| &w.options).collect()
    }

    fn region_len(&self, id: RegionId) -> Option<usize> {
        self.regions.get(id).map(Region::size)
    }
}

/// One instance of every backend.
struct Backends {
    protect: ProtectPages,
    writewatch: WriteWatchPages,
    poll: PollRegions,
}

impl Backends {
    fn get_mut(&mut self, kind: Kind) -> &mut dyn Detector {
        match kind {
            Kind::Protect => &mut self.protect,
            Kind::WriteWatch => &mut self.writewatch,
            Kind::Poll => &mut self.poll,
        }
    }
}

/// Everything the engine mutex protects.
struct State {
    registry: Registry,
    backends: Backends,
    /// Regions found unmapped while watched (dropped, counted).
    gone_regions: u64,
    next_region_id: RegionId,
    next_watcher_id: u32,
}

/// The process-wide engine.
pub struct Engine {
    /// The process the engine (and its worker thread) was started in.
    pid: u32,
    state: Mutex<State>,
    wake: EventFd,
    idle: IdleGate,
    seq: AtomicU64,
    /// Threads waiting for (or taking) the state mutex in [`Engine::lock`]:
    /// the worker lets them go first between the slices of a long pass.
    waiting: AtomicUsize,
}

static ENGINE: OnceLock<Result<&'static Engine, String>> = OnceLock::new();

/// The engine, started on first use with the given ring capacity.
pub fn engine(ring_capacity: usize) -> Result<&'static Engine, Error> {
    ENGINE
        .get_or_init(|| {
            let wake = EventFd::new().map_err(|e| format!("eventfd: {e}"))?;
            let (protect, idle) = ProtectPages::new(ring_capacity, wake.fd())?;
            let engine: &'static Engine = Box::leak(Box::new(Engine {
                pid: std::process::id(),
                state: Mutex::new(State {
                    registry: Registry::new(),
                    backends: Backends {
                        protect,
                        writewatch: WriteWatchPages::default(),
                        poll: PollRegions::default(),
                    },
                    gone_regions: 0,
                    next_region_id: 1,
                    next_watcher_id: 1,
                }),
                wake,
                idle,
                seq: AtomicU64::new(1),
                waiting: AtomicUsize::new(0),
            }));
            std::thread::Builder::new()
                .name("memwatch-worker".into())
                .spawn(move || engine.worker_loop())
                .map_err(|e| format!("cannot start the worker thread: {e}"))?;
            Ok(engine)
        })
        .clone()
        .map_err(Error::Os)
        .and_then(|e| match forked_child_of(e.pid) {
            Some(why) => Err(why),
            None => Ok(e),
        })
}

/// `Some(error)` when called in a process forked from `pid` (the process a
/// watcher or the engine was started in): its threads and locks are the
/// parent's, so the child may only free what it inherited.
pub fn forked_child_of(pid: u32) -> Option<Error> {
    let me = std::process::id();
    (me != pid).then(|| {
        Error::Unsupported(format!(
            "memwatch was started in process {pid}; this process ({me}) is a fork of it, where watchers are not watched and memwatch cannot be used"
        ))
    })
}

/// What [`Engine::add_watcher`] registered.
pub struct AddedWatcher {
    /// The watcher's id, unique in the process.
    pub id: u32,
    /// The backend its regions use (never `Auto`).
    pub backend: Backend,
    /// Why a better backend was not used; empty if it was.
    pub backend_reason: String,
}

/// A new region made from its first read, and its page hashes (a large
/// poll region without a snapshot is compared page by page).
type FirstRead = (Region, Option<Box<[u64]>>);

/// Reads a region being watched and makes its `Region` (snapshot and hash,
/// or page hashes: then its whole-region hash is unused).
fn first_read(
    watcher: u32,
    addr: usize,
    len: usize,
    kind: Kind,
    name: &str,
    metadata: Option<&str>,
    options: &Options,
) -> Result<FirstRead, Error> {
    let current = sys::read_self(addr, len)
        .ok_or_else(|| Error::Unmapped(format!("{len} bytes at {addr:#x} are not readable")))?;
    let page_hashes = (kind == Kind::Poll && !options.snapshots && poll::is_sliced(len, options))
        .then(|| event::page_hashes(addr, &current));
    let hash = if page_hashes.is_some() { 0 } else { xxh3_64(&current) };
    let snapshot = options.snapshots.then_some(&current[..]);
    let region = Region::new(watcher, addr, len, kind, name, metadata, snapshot, hash)
        .map_err(Error::InvalidArgument)?;
    Ok((region, page_hashes))
}

impl Engine {
    /// The state; every lock starts a pass, with a fresh view of the
    /// process's mappings for the protect backend's checks.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        st.backends.protect.new_pass();
        st
    }

    /// Registers a watcher: its id, the backend it will use, and why a
    /// better one was not used.
    pub fn add_watcher(
        &self,
        delivery: Weak<Delivery>,
        options: &Options,
    ) -> Result<AddedWatcher, Error> {
        let located = location::choose_backend(options)?;
        let (backend, reason) = match options.backend {
            // Writer location hook: locate_writers picks protect.
            _ if located.is_some() => located.expect("checked"),
            Backend::Auto => match uffd::get() {
                Ok(_) => (Backend::WriteWatch, String::new()),
                Err(why) => (
                    Backend::Protect,
                    format!("writewatch unavailable ({why}); auto chose protect"),
                ),
            },
            Backend::WriteWatch => match uffd::get() {
                Ok(_) => (Backend::WriteWatch, String::new()),
                Err(why) => return Err(Error::Unsupported(format!("writewatch: {why}"))),
            },
            b => (b, String::new()),
        };
        if backend == Backend::Protect {
            handler::install().map_err(Error::Os)?;
        }
        let mut st = self.lock();
        if options.locate_writers {
            // Writer location hook: capture as deep as the deepest asks.
            let depth = st.registry.location_depth().max(options.stack_depth);
            location::set_depth(depth, st.backends.protect.ring_slots())?;
        }
        let id = st.next_watcher_id;
        st.next_watcher_id += 1;
        st.registry.watchers.insert(
            id,
            WatcherEntry {
                delivery,
                options: options.clone(),
                backend,
                fallback_regions: 0,
                fallback_reason: String::new(),
                shared_regions: 0,
                shared_reason: String::new(),
                regions: 0,
                paged_regions: 0,
                store: None,
            },
        );
        let poll_ns = options.poll_interval.as_nanos() as u64;
        st.backends.poll.add_watcher(id, poll_ns, sys::monotonic_ns());
        drop(st);
        sys::eventfd_signal(self.wake.fd());
        Ok(AddedWatcher { id, backend, backend_reason: reason })
    }

    /// Unwatches everything of a watcher and forgets it.
    pub fn remove_watcher(&self, watcher: u32) {
        let mut st = self.lock();
        let ids = st.registry.region_ids_of(watcher);
        let mut removed = Vec::with_capacity(ids.len());
        for id in ids {
            removed.extend(st.unwatch(id));
        }
        if st.registry.watchers.remove(&watcher).is_some_and(|w| w.options.locate_writers) {
            // Writer location hook: capture only as deep as the others ask.
            let slots = st.backends.protect.ring_slots();
            let _ = location::set_depth(st.registry.location_depth(), slots);
        }
        st.backends.poll.remove_watcher(watcher);
        drop(st); // before the regions (and their snapshots) are freed
        drop(removed);
    }

    /// A large poll region's first read and hash, made before watch() takes
    /// the engine lock for good: reading (and copying) 1 GiB takes ~1 s,
    /// which other watchers' calls would otherwise wait for. None when the
    /// watcher is not a poll watcher or the range is small (read under the
    /// lock then, as every other region is) or not readable (watch() then
    /// says why).
    fn read_before_watch(
        &self,
        watcher: u32,
        addr: usize,
        len: usize,
        name: &str,
        metadata: Option<&str>,
    ) -> Option<FirstRead> {
        if len < poll::SLICED_FROM {
            return None;
        }
        let options = {
            let st = self.lock();
            let w = st.registry.watchers.get(&watcher)?;
            if w.backend != Backend::Poll {
                return None;
            }
            w.options.clone()
        };
        first_read(watcher, addr, len, Kind::Poll, name, metadata, &options).ok()
    }

    /// Starts watching a range for a watcher.
    pub fn watch(
        &self,
        watcher: u32,
        addr: usize,
        len: usize,
        name: &str,
        metadata: Option<&str>,
        read_only_ok: bool,
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
        let read_early = self.read_before_watch(watcher, addr, len, name, metadata);
        let mut st = self.lock();
        let st = &mut *st;
        let ps = sys::page_size();
        // Pages protected for earlier regions whose mapping was replaced
        // since: those regions are gone, and the new mapping is judged on
        // its own protection below.
        if st.backends.protect.drop_if_replaced(addr, len) {
            st.reap_gone();
        }
        // Watcher::watch_read_only (poll only, which only reads): memory
        // another process writes through a shared mapping, e.g. a memglass observer's.
        let mappings = match maps::writable_mappings(addr, len, |page_addr| {
            st.backends.protect.saved_prot(page_addr / ps)
        }) {
            Err(Error::ReadOnly(_)) if read_only_ok => Vec::new(),
            r => r?,
        };
        let own = st.backends.protect.own_ranges();
        if own.iter().flatten().any(|&(s, e)| addr < e && addr + len > s) {
            return Err(Error::InvalidArgument(
                "range covers memwatch's own memory (fault ring, page table or handler state)"
                    .into(),
            ));
        }
        let entry = st.registry.watchers.get(&watcher).ok_or(Error::Closed)?;
        if let Some((other, start, other_len)) = st.overlapping(watcher, addr, len) {
            return Err(Error::Overlap(format!(
                "{len} bytes at {addr:#x} overlap region {other} ({other_len} bytes at {start:#x}) of this watcher"
            )));
        }
        if name.len() >= u32::MAX as usize || metadata.is_some_and(|m| m.len() >= u32::MAX as usize)
        {
            return Err(Error::InvalidArgument("name or metadata longer than 4 GiB".into()));
        }
        let kind = match entry.backend {
            Backend::Poll => Kind::Poll,
            Backend::WriteWatch => Kind::WriteWatch,
            _ => Kind::Protect,
        };
        let id = st.next_region_id;
        let kind = st.register(kind, id, watcher, addr, len, &mappings)?;
        st.next_region_id += 1;
        // Read after registering: a write from here on is detected. A large
        // poll region was read before the lock (read_before_watch): a write
        // after that read is a change the first pass reports.
        let region = match read_early.filter(|_| kind == Kind::Poll) {
            Some(early) => Ok(early),
            None => {
                let options = &st.registry.watchers[&watcher].options;
                first_read(watcher, addr, len, kind, name, metadata, options)
            }
        };
        let (region, hashes) = match region {
            Ok(read) => read,
            Err(e) => {
                st.backends.get_mut(kind).unregister(id, addr, len);
                return Err(e);
            }
        };
        let w = st.registry.watchers.get_mut(&watcher).expect("checked above");
        if let (Some(store), Some(snap)) = (&w.store, region.snapshot()) {
            if len > w.options.max_value_bytes {
                // Epoch 0: the value at watch time, the first event's old value.
                let _ = store.put(value_key(w.options.adapter_id, u64::from(id), 0), snap);
            }
        }
        w.regions += 1;
        if kind != Kind::Poll {
            w.paged_regions += 1;
        }
        st.registry.regions.insert(id, region);
        if let Some(hashes) = hashes {
            st.registry.page_hashes.insert(id, hashes);
        }
        let first_poll = kind == Kind::Poll && st.backends.poll.regions_of(watcher) == 1;
        if kind == Kind::WriteWatch || first_poll {
            // Nothing else wakes the worker for writewatch and poll regions:
            // let it schedule their scans (a watcher's later poll regions
            // join the pass already scheduled).
            sys::eventfd_signal(self.wake.fd());
        }
        Ok(id)
    }

    /// Sets the store that receives values larger than max_value_bytes, and
    /// puts the current value of every such region of the watcher there.
    pub fn set_store(&self, watcher: u32, store: Option<Arc<Store>>) -> Result<(), Error> {
        let mut st = self.lock();
        let reg = &mut st.registry;
        let w = reg.watchers.get_mut(&watcher).ok_or(Error::Closed)?;
        w.store = store;
        if let Some(store) = &w.store {
            for (id, r) in reg.regions.iter().filter(|(_, r)| r.watcher == watcher).take(w.regions)
            {
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
        match st.registry.regions.get(id) {
            Some(r) if r.watcher == watcher => {
                // A protect region whose memory was unmapped or replaced is
                // gone (dropped and counted), not unwatched.
                let (kind, addr, len) = (r.kind(), r.addr, r.size());
                if kind == Kind::Protect && st.backends.protect.drop_if_replaced(addr, len) {
                    st.reap_gone();
                    if st.registry.regions.get(id).is_none() {
                        return false;
                    }
                }
                let removed = st.unwatch(id);
                drop(st); // before the region (and its snapshot) is freed
                removed.is_some()
            }
            _ => false,
        }
    }

    /// Detects changes now for every page written so far and for the poll
    /// regions of `watcher`, delivering the events before returning. The
    /// poll regions are read in slices (as the worker reads them), the
    /// engine lock released between two: other threads' calls wait for one
    /// slice, not for a whole pass over a 1 GiB region. Every write made
    /// before the call is read by one of the slices, so it is in an event
    /// delivered by the time this returns.
    pub fn scan_now(&self, watcher: u32) {
        let mut st = self.lock();
        let now = sys::monotonic_ns();
        let mut events = Vec::new();
        let pass = Pass::Now(watcher);
        for kind in [Kind::Protect, Kind::WriteWatch] {
            st.detect(kind, now, pass, &mut events);
        }
        let mut cursor = None;
        loop {
            let State { registry, backends, .. } = &mut *st;
            registry.poll_now(&mut backends.poll, watcher, &mut cursor, &mut events);
            st.reap_gone();
            self.deliver(&st, std::mem::take(&mut events));
            if cursor.is_none() {
                return;
            }
            drop(st);
            self.let_waiters_go_first();
            st = self.lock();
        }
    }

    /// Bytes of the engine's own mappings: the fault ring and the page table.
    pub fn shared_bytes(&self) -> usize {
        self.lock().backends.protect.shared_bytes()
    }

    /// Hands events to their watchers' queues, numbering them.
    fn deliver(&self, st: &State, events: Vec<(u32, ChangeEvent)>) {
        for (wid, mut ev) in events {
            if let Some(d) = st.registry.watchers.get(&wid).and_then(|w| w.delivery.upgrade()) {
                ev.seq = self.seq.fetch_add(1, Ordering::SeqCst);
                d.enqueue(ev);
            }
        }
    }
}

impl Registry {
    /// The next slice of check_changes()'s pass over `watcher`'s poll
    /// regions from `cursor` (None once done: then what the passes over its
    /// large regions found so far becomes their events too).
    fn poll_now(
        &mut self,
        poll: &mut PollRegions,
        watcher: u32,
        cursor: &mut poll::Cursor,
        events: &mut Vec<(u32, ChangeEvent)>,
    ) {
        let now = sys::monotonic_ns();
        poll.invalidate(self.restated.drain(..));
        let due = poll.collect_now(&*self, watcher, cursor, now);
        let (pages, unfinished) = (poll.take_batch_pages(), poll.take_unfinished());
        self.diff_poll(due, &pages, &unfinished, now, events);
        if cursor.is_none() {
            self.flush_passes(watcher, events);
        }
        poll.after_diff(&*self, &HashSet::new(), now);
    }

    /// The worker's next slice of the poll regions due, diffed.
    fn poll_due(&mut self, poll: &mut PollRegions, now: u64, events: &mut Vec<(u32, ChangeEvent)>) {
        poll.invalidate(self.restated.drain(..));
        let due = poll.collect_due(&*self, now);
        let (pages, unfinished) = (poll.take_batch_pages(), poll.take_unfinished());
        self.diff_poll(due, &pages, &unfinished, now, events);
        poll.after_diff(&*self, &HashSet::new(), now);
    }
}

impl Registry {
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
}

impl State {
    /// Registers a new region with the backend of its kind, falling back to
    /// another backend where that one cannot watch it; returns the kind used.
    fn register(
        &mut self,
        kind: Kind,
        id: RegionId,
        watcher: u32,
        addr: usize,
        len: usize,
        mappings: &[maps::Mapping],
    ) -> Result<Kind, Error> {
        let reg = &mut self.registry;
        let b = &mut self.backends;
        let options = reg.watchers[&watcher].options.clone();
        let new = NewRegion { watcher, id, addr, len, mappings, options: &options };
        let mut kind = kind;
        if kind != Kind::Poll && mappings.iter().any(|m| m.shared) {
            // Another process (or a write through the file) changes a
            // shared mapping without touching our page tables: only poll
            // sees that. auto polls shared files (multiprocessing, /dev/shm,
            // memfd); shared anonymous memory (Python's mmap.mmap(-1, n))
            // only forked children can write, and keeps its backend.
            let file = mappings.iter().any(|m| m.shared && !m.shared_anon);
            let w = reg.watchers.get_mut(&watcher).expect("checked by the caller");
            if options.backend == Backend::Auto && file {
                kind = Kind::Poll;
                w.fallback_regions += 1;
                w.fallback_reason = format!(
                    "{len} bytes at {addr:#x} are in a shared mapping, which other processes may write unseen by writewatch and protect; that region uses poll"
                );
            } else {
                w.shared_regions += 1;
                w.shared_reason = format!(
                    "{len} bytes at {addr:#x} are in a shared mapping: writes to it by other processes (or through its file) are invisible to {}; use poll for such memory",
                    if kind == Kind::Protect { "protect" } else { "writewatch" }
                );
            }
        }
        if kind == Kind::Protect && maps::on_a_stack(mappings, addr, len) {
            // A read-only stack page would leave the kernel nowhere to push
            // the fault's signal frame: such a region uses writewatch (no
            // signals) or, without it, poll.
            kind = if uffd::get().is_ok() { Kind::WriteWatch } else { Kind::Poll };
            let w = reg.watchers.get_mut(&watcher).expect("checked by the caller");
            w.fallback_regions += 1;
            w.fallback_reason = format!(
                "{len} bytes at {addr:#x} are on a thread stack, which protect cannot watch; that region uses {}",
                if kind == Kind::WriteWatch { "writewatch" } else { "poll" }
            );
            if kind == Kind::WriteWatch && b.writewatch.register(&*reg, &new).is_err() {
                kind = Kind::Poll;
            }
        } else if kind == Kind::WriteWatch {
            if let Err(e) = b.writewatch.register(&*reg, &new) {
                // A mapping userfaultfd refuses: this region alone uses protect.
                handler::install().map_err(Error::Os)?;
                let why = match e {
                    Error::Unsupported(why) => why,
                    e => e.to_string(),
                };
                let w = reg.watchers.get_mut(&watcher).expect("checked by the caller");
                w.fallback_regions += 1;
                w.fallback_reason = format!("{why}; that region uses protect");
                kind = Kind::Protect;
            }
        }
        match kind {
            Kind::Protect => b.protect.register(&*reg, &new)?,
            Kind::Poll => b.poll.register(&*reg, &new)?,
            Kind::WriteWatch => {} // registered above
        }
        Ok(kind)
    }

    /// One backend's part of a pass: the regions it collects are diffed,
    /// it hears which changed, and diffs what it asks for again.
    fn detect(&mut self, kind: Kind, now: u64, pass: Pass, events: &mut Vec<(u32, ChangeEvent)>) {
        if (kind, pass) == (Kind::Poll, Pass::Due) {
            let State { registry, backends, .. } = self;
            registry.poll_due(&mut backends.poll, now, events);
            return;
        }
        let det = self.backends.get_mut(kind);
        let dirty = det.collect(&self.registry, now, pass);
        let (pages, unfinished) = (det.take_batch_pages(), det.take_unfinished());
        let changed = self.registry.diff_all(dirty, &pages, &unfinished, now, events);
        let again = det.after_diff(&self.registry, &changed, now);
        let again: Vec<Dirty> = again.into_iter().map(|rid| (rid, None)).collect();
        self.registry.diff_all(again, &HashMap::new(), &HashSet::new(), now, events);
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
        let reg = &self.registry;
        let w = reg.watchers.get(&watcher)?;
        let end = addr + len;
        let size_of = |id| reg.regions.get(id).map_or(0, |r: &Region| r.size());
        if let Some((other, start)) = self.backends.poll.overlapping(watcher, addr, end, size_of) {
            return Some((other, start, size_of(other)));
        }
        if w.paged_regions == 0 {
            return None;
        }
        for page in backend::pages_of(addr, len) {
            let protect = self.backends.protect.regions_on(page);
            let ww = self.backends.writewatch.regions_on(page);
            for &id in protect.iter().chain(ww) {
                if let Some(r) = reg.regions.get(id) {
                    if r.watcher == watcher && r.addr < end && r.addr + r.size() > addr {
                        return Some((id, r.addr, r.size()));
                    }
                }
            }
        }
        None
    }

    /// Forgets a region; returns it, so that a caller holding the engine
    /// lock can free its snapshot after releasing the lock (a large one
    /// takes a while to give back).
    fn unwatch(&mut self, id: RegionId) -> Option<Region> {
        let region = self.registry.regions.remove(id)?;
        self.registry.forget(id);
        if let Some(w) = self.registry.watchers.get_mut(&region.watcher) {
            w.regions -= 1;
            if region.kind() != Kind::Poll {
                w.paged_regions -= 1;
            }
        }
        self.backends.get_mut(region.kind()).unregister(id, region.addr, region.size());
        Some(region)
    }

    /// Drops the regions found unmapped or replaced during this pass.
    fn reap_gone(&mut self) {
        self.registry.newly_gone.extend(self.backends.protect.take_gone());
        for rid in std::mem::take(&mut self.registry.newly_gone) {
            if self.unwatch(rid).is_some() {
                self.gone_regions += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::poll::{POLL_SLICE_BYTES, SLICED_FROM};

    /// A fresh anonymous mapping of `len` bytes (leaked: the test's memory).
    fn mapping(len: usize) -> usize {
        sys::mmap_anon(len).expect("an anonymous mapping") as usize
    }

    fn write(addr: usize, byte: u8) {
        // SAFETY: callers pass addresses inside mapping()'s memory.
        unsafe { std::ptr::write_volatile(addr as *mut u8, byte) };
    }

    /// One worker slice of the poll backend, diffed: its events' changed
    /// ranges, and whether the pass goes on.
    fn slice(reg: &mut Registry, poll: &mut PollRegions, now: u64) -> (Vec<ChangeEvent>, bool) {
        let due = poll.collect_due(&*reg, now);
        let (pages, unfinished) = (poll.take_batch_pages(), poll.take_unfinished());
        let read: usize = pages.values().map(Vec::len).sum();
        assert!(read * sys::page_size() <= POLL_SLICE_BYTES, "{read} pages in one slice");
        let mut events = Vec::new();
        reg.diff_poll(due, &pages, &unfinished, now, &mut events);
        poll.after_diff(&*reg, &HashSet::new(), now);
        let more = poll.next_deadline(&*reg) == Some(0);
        (events.into_iter().map(|(_, e)| e).collect(), more)
    }

    /// Watcher 1 (poll, defaults, a 100 ns interval) with one region, id 7,
    /// of `len` bytes (a fresh mapping, zeros): (registry, backend, address).
    fn big_poll_region(len: usize) -> (Registry, PollRegions, usize) {
        let addr = mapping(len);
        let options = Options::default();
        let mut reg = Registry::new();
        reg.watchers.insert(
            1,
            WatcherEntry {
                delivery: Weak::new(),
                options: options.clone(),
                backend: Backend::Poll,
                fallback_regions: 0,
                fallback_reason: String::new(),
                shared_regions: 0,
                shared_reason: String::new(),
                regions: 1,
                paged_regions: 0,
                store: None,
            },
        );
        let mut poll = PollRegions::default();
        poll.add_watcher(1, 100, 0);
        let new = NewRegion { watcher: 1, id: 7, addr, len, mappings: &[], options: &options };
        poll.register(&reg, &new).unwrap();
        let current = sys::read_self(addr, len).unwrap();
        let region =
            Region::new(1, addr, len, Kind::Poll, "big", None, Some(&current), xxh3_64(&current))
                .unwrap();
        reg.regions.insert(7, region);
        (reg, poll, addr)
    }

    fn ranges(e: &ChangeEvent) -> Vec<(usize, usize)> {
        e.changed_ranges.iter().map(|r| (r.offset, r.len)).collect()
    }

    /// A poll region too large to diff under one lock hold is
    /// read a page range per slice; the changes its slices find make one
    /// event when the pass reads its last page, exact wherever they are;
    /// one written behind the pass (on a page it already read) is found by
    /// the next pass, not lost.
    #[test]
    fn a_large_poll_region_is_diffed_in_page_ranges_across_slices() {
        let ps = sys::page_size();
        let len = SLICED_FROM;
        let (mut reg, mut poll, addr) = big_poll_region(len);
        let options = Options::default();

        // Pass 1: writes in its first and its last slice, before it starts.
        write(addr + 1, 0xaa);
        write(addr + len - 5, 0xbb);
        let (first, more) = slice(&mut reg, &mut poll, 100);
        assert!(more, "an 8 MiB region takes four slices");
        assert!(first.is_empty(), "the pass goes on: its event comes at its end");
        // Written during the pass: behind it (page 2, read already) and
        // ahead of it (the last slice's pages).
        write(addr + 2 * ps + 7, 0xcc);
        write(addr + len - 2 * ps, 0xdd);
        let mut rest = Vec::new();
        let mut slices = 1;
        loop {
            let (events, more) = slice(&mut reg, &mut poll, 101);
            rest.extend(events);
            slices += 1;
            if !more {
                break;
            }
        }
        assert_eq!(slices, len / POLL_SLICE_BYTES);
        assert_eq!(rest.len(), 1, "one event for the pass");
        assert_eq!(ranges(&rest[0]), [(1, 1), (len - 2 * ps, 1), (len - 5, 1)]);
        assert_eq!((rest[0].old_preview[1], rest[0].new_preview[1]), (0, 0xaa));
        assert_eq!(rest[0].old_preview.len(), options.preview_bytes);
        assert!(reg.passes.is_empty());
        // The snapshot holds the new bytes of what was read, the old of the
        // page written behind the pass.
        let snap = reg.regions.get(7).unwrap().snapshot().unwrap();
        assert_eq!(
            (snap[1], snap[len - 5], snap[len - 2 * ps], snap[2 * ps + 7]),
            (0xaa, 0xbb, 0xdd, 0)
        );

        // Pass 2 (due an interval after pass 1 ended): the write behind pass 1.
        let mut second = Vec::new();
        let due = poll.next_deadline(&reg).unwrap();
        loop {
            let (events, more) = slice(&mut reg, &mut poll, due);
            second.extend(events);
            if !more {
                break;
            }
        }
        assert_eq!(second.len(), 1);
        assert_eq!(ranges(&second[0]), [(2 * ps + 7, 1)]);
        assert_eq!((second[0].old_preview[1], second[0].new_preview[1]), (0xaa, 0xaa));
        // Pass 3: nothing more.
        let due = poll.next_deadline(&reg).unwrap();
        loop {
            let (events, more) = slice(&mut reg, &mut poll, due);
            assert!(events.is_empty());
            if !more {
                break;
            }
        }
        // SAFETY: the mapping made above; nothing refers to it any more.
        unsafe { libc::munmap(addr as *mut libc::c_void, len) };
    }

    /// check_changes()'s pass (`Registry::poll_now`, the lock released
    /// between its slices) and the worker's pass over the same large region
    /// interleave: what either finds goes into one event, made by whichever
    /// pass reads the region's end first, and a check_changes() that ends
    /// ends the worker's pass too.
    #[test]
    fn check_changes_and_worker_slices_of_one_region_make_one_event() {
        let ps = sys::page_size();
        let len = SLICED_FROM;
        let (mut reg, mut poll, addr) = big_poll_region(len);
        let now_slice = |reg: &mut Registry, poll: &mut PollRegions, cursor: &mut poll::Cursor| {
            let mut events = Vec::new();
            reg.poll_now(poll, 1, cursor, &mut events);
            events.into_iter().map(|(_, e)| e).collect::<Vec<_>>()
        };

        // The worker reads the first quarter and finds a write there; a
        // check_changes() then reads the whole region, ending both passes.
        write(addr + 1, 0xaa);
        let (events, more) = slice(&mut reg, &mut poll, 100);
        assert!(events.is_empty() && more);
        write(addr + 3 * ps, 0xbb); // behind the worker, ahead of check_changes
        write(addr + len - 5, 0xcc);
        let (mut cursor, mut events, mut slices) = (None, Vec::new(), 0);
        loop {
            events.extend(now_slice(&mut reg, &mut poll, &mut cursor));
            slices += 1;
            if cursor.is_none() {
                break;
            }
        }
        assert_eq!(slices, len / POLL_SLICE_BYTES);
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(ranges(&events[0]), [(1, 1), (3 * ps, 1), (len - 5, 1)]);
        assert_eq!((events[0].old_preview[1], events[0].new_preview[1]), (0, 0xaa));
        assert!(reg.passes.is_empty());
        assert_ne!(poll.next_deadline(&reg), Some(0), "the worker's pass ended too");

        // The other way round: the worker, three quarters through its next
        // pass, reads the region's end after check_changes' first slice.
        let due = poll.next_deadline(&reg).unwrap();
        for _ in 0..3 {
            let (events, more) = slice(&mut reg, &mut poll, due);
            assert!(events.is_empty() && more);
        }
        write(addr + 2, 0x11);
        write(addr + len - 6, 0x22);
        let mut cursor = None;
        assert!(now_slice(&mut reg, &mut poll, &mut cursor).is_empty());
        let (events, more) = slice(&mut reg, &mut poll, due);
        assert!(!more);
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(ranges(&events[0]), [(2, 1), (len - 6, 1)]);
        assert_eq!((events[0].old_preview[2], events[0].new_preview[2]), (0, 0x11));
        while cursor.is_some() {
            assert!(now_slice(&mut reg, &mut poll, &mut cursor).is_empty());
        }
        assert!(reg.passes.is_empty());
        // SAFETY: the mapping made above; nothing refers to it any more.
        unsafe { libc::munmap(addr as *mut libc::c_void, len) };
    }

    /// Watcher 1 (poll, defaults, a 100 ns interval) with `n` regions of
    /// 64 B side by side, ids 1..=n, in a fresh mapping of zeros.
    fn small_poll_regions(n: usize) -> (Registry, PollRegions, usize) {
        let (mut reg, mut poll, _) = big_poll_region(sys::page_size());
        reg.regions.remove(7);
        poll.unregister(7, 0, 0);
        poll.remove_watcher(1);
        poll.add_watcher(1, 100, 0);
        let addr = mapping(n * 64);
        let options = Options::default();
        for i in 0..n {
            let (id, at) = (i as RegionId + 1, addr + i * 64);
            let new =
                NewRegion { watcher: 1, id, addr: at, len: 64, mappings: &[], options: &options };
            poll.register(&reg, &new).unwrap();
            let zeros = [0u8; 64];
            let region =
                Region::new(1, at, 64, Kind::Poll, "r", None, Some(&zeros), xxh3_64(&zeros))
                    .unwrap();
            reg.regions.insert(id, region);
        }
        (reg, poll, addr)
    }

    /// One whole worker pass (the regions fit one slice): (region, old
    /// byte, new byte) at `at` of each event.
    fn worker_pass(
        reg: &mut Registry,
        poll: &mut PollRegions,
        at: usize,
    ) -> Vec<(RegionId, u8, u8)> {
        let due = poll.next_deadline(&*reg).unwrap();
        let mut events = Vec::new();
        reg.poll_due(poll, due, &mut events);
        assert_ne!(poll.next_deadline(&*reg), Some(0), "one slice");
        let byte = |v: &Option<Vec<u8>>| v.as_ref().unwrap()[at];
        events.iter().map(|(_, e)| (e.region_id, byte(&e.old_value), byte(&e.new_value))).collect()
    }

    /// A poll region diffed by another path than its run (here diff_all
    /// called on it alone) drops the run's hash: written back to the bytes
    /// the run hashed, it is still reported by the next pass.
    #[test]
    fn a_region_diffed_outside_its_run_drops_the_runs_hash() {
        let (mut reg, mut poll, addr) = small_poll_regions(64);
        assert!(worker_pass(&mut reg, &mut poll, 0).is_empty()); // the run hashed
        write(addr + 10 * 64 + 3, 1);
        let mut events = Vec::new();
        reg.diff_all(vec![(11, None)], &HashMap::new(), &HashSet::new(), 0, &mut events);
        assert_eq!(events.len(), 1);
        write(addr + 10 * 64 + 3, 0);
        assert_eq!(worker_pass(&mut reg, &mut poll, 3), [(11, 1, 0)]);
        assert!(worker_pass(&mut reg, &mut poll, 3).is_empty());
    }

    /// A run whose hash matches bytes its regions were not diffed against
    /// (a collision) hides the change for VERIFY_AFTER passes at most: then
    /// the run is diffed region by region anyway.
    #[test]
    fn a_run_hash_collision_hides_a_change_for_verify_after_passes_at_most() {
        let (mut reg, mut poll, addr) = small_poll_regions(64);
        assert!(worker_pass(&mut reg, &mut poll, 0).is_empty());
        write(addr + 63 * 64 + 7, 0x42);
        poll.forge_hashes(1);
        for pass in 0..poll::VERIFY_AFTER {
            assert!(worker_pass(&mut reg, &mut poll, 7).is_empty(), "pass {pass}: skipped");
        }
        assert_eq!(worker_pass(&mut reg, &mut poll, 7), [(64, 0, 0x42)]);
        assert!(worker_pass(&mut reg, &mut poll, 7).is_empty());
    }
}
