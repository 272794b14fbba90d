//! [`Watcher`]: one user of the engine, with its own regions (in the
//! engine) and its own callback and pending events (crate::delivery).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::delivery::{Callback, Delivery, EventSink, Fence, SinkId};

/// A check_changes() whose events are on their way to the callback
/// ([`Watcher::check_changes_start`]).
#[derive(Debug)]
pub struct Pending(u64);
use crate::engine::{engine, forked_child_of, Engine};
use crate::types::*;

/// How long a binding's exit hook (Python's atexit, Node's 'exit', Java's
/// shutdown hook, C#'s ProcessExit, C's `memwatch_shutdown`; Go's
/// `ExitFlushTimeout` for `Flush`) waits, for all its watchers together, for
/// the changes made before exit to reach the callbacks ([`Watcher::flush`]).
/// What has not arrived by then is dropped with the process.
pub const EXIT_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Watches memory regions and reports their changes.
///
/// Any number of watchers may exist; they share one process-wide engine.
/// Dropping a watcher closes it.
pub struct Watcher {
    id: u32,
    /// The process the watcher was created in (a forked child has a copy).
    pid: u32,
    backend: Backend,
    backend_reason: String,
    closed: AtomicBool,
    delivery: Arc<Delivery>,
    engine: &'static Engine,
}

impl Watcher {
    /// Creates a watcher. Fails with [`Error::Unsupported`] when the chosen
    /// backend cannot work here, or [`Error::InvalidArgument`] for bad options.
    pub fn new(options: Options) -> Result<Watcher, Error> {
        options.validate()?;
        let engine = engine(options.ring_capacity)?;
        let delivery = Delivery::new();
        let added = engine.add_watcher(Arc::downgrade(&delivery), &options)?;
        let (id, backend, backend_reason) = (added.id, added.backend, added.backend_reason);
        Ok(Watcher {
            id,
            pid: std::process::id(),
            backend,
            backend_reason,
            closed: AtomicBool::new(false),
            delivery,
            engine,
        })
    }

    /// The backend this watcher's regions use (never `Auto`).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    fn check_open(&self) -> Result<(), Error> {
        if let Some(e) = forked_child_of(self.pid) {
            return Err(e);
        }
        if self.closed.load(Ordering::SeqCst) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// Starts watching `len` bytes at `addr` under `name`.
    ///
    /// Errors: null address or zero length ([`Error::InvalidArgument`]),
    /// memory not mapped ([`Error::Unmapped`]) or not writable
    /// ([`Error::ReadOnly`]; see [`Watcher::watch_read_only`]), a range overlapping one of this watcher's
    /// regions ([`Error::Overlap`]; other watchers may watch the same bytes).
    ///
    /// # Safety
    /// The memory must stay mapped until the region is unwatched or the
    /// watcher is closed. With the protect backend the whole pages holding the
    /// range become read-only between writes: a system call that writes into
    /// them (read(2) into a buffer there) fails with EFAULT instead.
    pub unsafe fn watch(
        &self,
        addr: *const u8,
        len: usize,
        name: &str,
        metadata: Option<&str>,
    ) -> Result<RegionId, Error> {
        self.check_open()?;
        self.engine.watch(self.id, addr as usize, len, name, metadata, false)
    }

    /// Like [`Watcher::watch`], but also accepts memory this process can
    /// only read, which another process writes through a shared mapping (a
    /// memglass observer's `PROT_READ` view of a producer's segment). Only
    /// for watchers of the poll backend, which only reads; others get
    /// [`Error::InvalidArgument`].
    ///
    /// # Safety
    /// As for [`Watcher::watch`].
    pub unsafe fn watch_read_only(
        &self,
        addr: *const u8,
        len: usize,
        name: &str,
        metadata: Option<&str>,
    ) -> Result<RegionId, Error> {
        self.check_open()?;
        if self.backend != Backend::Poll {
            return Err(Error::InvalidArgument(format!(
                "watch_read_only needs the poll backend, this watcher uses {}",
                self.backend
            )));
        }
        self.engine.watch(self.id, addr as usize, len, name, metadata, true)
    }

    /// Stops watching a region. `Ok(false)` if the id is not a region of this
    /// watcher (unknown or already unwatched). Its memory may be freed after.
    pub fn unwatch(&self, id: RegionId) -> Result<bool, Error> {
        self.check_open()?;
        Ok(self.engine.unwatch(self.id, id))
    }

    /// Sets or clears the callback. With a callback, events go to it on the
    /// delivery thread; without, they wait for [`Watcher::check_changes`].
    /// Events queued when a callback is set go to it.
    pub fn set_callback(&self, callback: Option<Callback>) -> Result<(), Error> {
        self.check_open()?;
        self.delivery.set_callback(callback)
    }

    /// Detects changes now. Every write made before this call is in the
    /// result or was already delivered. With a callback set, the events go to
    /// the callback and this waits until they were delivered (unless called
    /// from the callback itself), returning an empty list.
    pub fn check_changes(&self) -> Result<Vec<ChangeEvent>, Error> {
        self.check_open()?;
        // A SIGSEGV handler on another thread makes its page writable before
        // it announces the page in the fault ring; a write of ours made in
        // between does not fault. Once no handler runs, every page made
        // writable before this call is announced and scan_now diffs it.
        if let Some(hs) = crate::backend::protect::handler_state::get_in_handler() {
            while hs.in_flight.load(Ordering::SeqCst) != 0 {
                std::thread::yield_now();
            }
        }
        self.engine.scan_now(self.id);
        Ok(self.delivery.drain_or_wait())
    }

    /// [`Watcher::check_changes`] in two steps, for bindings whose caller
    /// must be able to interrupt the wait (Ctrl-C in Python): detects now,
    /// then gives the events (no callback) or a [`Pending`] to wait on with
    /// [`Watcher::check_changes_wait`].
    pub fn check_changes_start(&self) -> Result<Result<Vec<ChangeEvent>, Pending>, Error> {
        self.check_open()?;
        if let Some(hs) = crate::backend::protect::handler_state::get_in_handler() {
            while hs.in_flight.load(Ordering::SeqCst) != 0 {
                std::thread::yield_now();
            }
        }
        self.engine.scan_now(self.id);
        Ok(match self.delivery.fence() {
            Fence::Drained(events) => Ok(events),
            Fence::Wait(ticket) => Err(Pending(ticket)),
        })
    }

    /// Waits up to `timeout` for the callback to have every event of a
    /// [`Pending`] check; `None` if it has not yet (call again), else the
    /// events check_changes() returns (none, unless the callback was
    /// cleared meanwhile).
    pub fn check_changes_wait(
        &self,
        pending: &Pending,
        timeout: std::time::Duration,
    ) -> Option<Vec<ChangeEvent>> {
        self.delivery
            .wait_fence(pending.0, Some(timeout))
            .then(|| self.delivery.take_if_no_callback())
    }

    /// At exit: when a callback is set, detects changes now and waits up to
    /// `timeout` (bindings' exit hooks: [`EXIT_FLUSH_TIMEOUT`]) for the callback to have them (true if it did, or if no
    /// callback is set). Without a callback nothing is taken: pending
    /// events stay for check_changes().
    pub fn flush(&self, timeout: std::time::Duration) -> bool {
        if self.check_open().is_err() || !self.delivery.has_callback() {
            return true;
        }
        match self.check_changes_start() {
            Ok(Err(pending)) => self.check_changes_wait(&pending, timeout).is_some(),
            _ => true,
        }
    }

    /// Sends values larger than `max_value_bytes` to a MemStream value store
    /// (`None` stops it). Each such event then carries `storage_key_new`, the
    /// key of the new value, and `storage_key_old`, the key of the old value
    /// while the store still holds it; keys are
    /// `memwatch/{adapter_id}/{region_id}/{epoch}`, readable from any process
    /// that opens the store. The store's capacity and full policy bound what
    /// this costs; a value the store refuses leaves its key `None`. Region
    /// ids are per process and the key names no process: give each watching
    /// process a store of its own (readers may be any number of processes).
    pub fn set_value_store(
        &self,
        store: Option<std::sync::Arc<memwatch_store::Store>>,
    ) -> Result<(), Error> {
        self.check_open()?;
        self.engine.set_store(self.id, store)
    }

    /// Counts an error a binding's callback raised (an exception it caught).
    pub fn report_callback_error(&self) {
        self.delivery.report_callback_error();
    }

    /// Adds a sink that sees every event of this watcher, whether it is then
    /// delivered to the callback or to `check_changes()` (see [`EventSink`]:
    /// it must not block). Used by recorders. A sink that panics is counted
    /// in `callback_errors`; the event is still delivered.
    pub fn add_event_sink(&self, sink: EventSink) -> Result<SinkId, Error> {
        self.check_open()?;
        Ok(self.delivery.add_sink(sink))
    }

    /// Removes a sink; `false` if the id is unknown. Once this returns the
    /// sink is never called again.
    pub fn remove_event_sink(&self, id: SinkId) -> bool {
        self.delivery.remove_sink(id)
    }

    /// This watcher's number, unique in the process (recorded with its events).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Statistics of this watcher.
    pub fn stats(&self) -> Stats {
        if let Some(e) = forked_child_of(self.pid) {
            // The engine's lock may be held by a parent thread that is not
            // here: report only what the watcher itself knows.
            return Stats {
                backend: Some(self.backend),
                backend_reason: e.to_string(),
                ..Stats::default()
            };
        }
        let c = self.engine.counts_of(self.id);
        let reasons = [&self.backend_reason, &c.fallback_reason, &c.shared_reason];
        let reasons: Vec<&str> =
            reasons.iter().filter(|r| !r.is_empty()).map(|r| r.as_str()).collect();
        let backend_reason = reasons.join("; ");
        let d = self.delivery.counts();
        Stats {
            backend: Some(self.backend),
            backend_reason,
            regions: c.regions,
            protected_pages: c.protected_pages,
            hot_pages: c.hot_pages,
            faults: c.faults,
            events: d.events,
            fallback_regions: c.fallback_regions,
            shared_regions: c.shared_regions,
            gone_regions: c.gone_regions,
            reprotect_failures: c.reprotect_failures,
            dropped_wheres: c.dropped_wheres,
            native_bytes: c.native_bytes,
            snapshot_bytes: c.snapshot_bytes,
            pending_events: d.pending_events,
            coalesced_events: d.coalesced_events,
            callback_errors: d.callback_errors,
            latency_p50_ns: d.latency_p50_ns,
            latency_p99_ns: d.latency_p99_ns,
        }
    }

    /// Bytes of the engine's own mappings (fault ring, page table), shared by
    /// all watchers and not counted in any watcher's `native_bytes`.
    pub fn engine_bytes(&self) -> usize {
        if forked_child_of(self.pid).is_some() {
            return 0;
        }
        self.engine.shared_bytes()
    }

    /// True after [`Watcher::close`].
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Unwatches everything, stops the delivery thread (after the callback
    /// running now returns) and drops pending events. Idempotent; may be
    /// called from inside the callback. In a forked child it only marks the
    /// watcher closed: the engine's worker and the delivery thread are the
    /// parent's (not in the child), and so may be the locks they held.
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) || forked_child_of(self.pid).is_some() {
            return;
        }
        self.engine.remove_watcher(self.id);
        self.delivery.close();
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.close();
    }
}
