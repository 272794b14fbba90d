//! [`Watcher`]: one user of the engine, with its own regions, callback and
//! pending events, and a delivery thread for the callback.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{JoinHandle, ThreadId};

use crate::engine::{engine, Engine};
use crate::sys;
use crate::types::*;

/// A change callback. Runs on the watcher's delivery thread, one event at a
/// time, never inside the signal handler.
pub type Callback = Arc<dyn Fn(&ChangeEvent) + Send + Sync + 'static>;

const LATENCY_SAMPLES: usize = 4096;

#[derive(Default)]
struct Queue {
    events: VecDeque<ChangeEvent>,
    callback: Option<Callback>,
    /// A callback call is running.
    in_flight: bool,
    closing: bool,
    latencies: VecDeque<u64>,
    delivery_thread: Option<JoinHandle<()>>,
    delivery_thread_id: Option<ThreadId>,
}

/// Shared state of a watcher (the engine holds a weak reference).
pub struct WatcherInner {
    queue: Mutex<Queue>,
    cond: Condvar,
    events: AtomicU64,
    callback_errors: AtomicU64,
}

impl WatcherInner {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Called by the engine (under its mutex) for each detected change.
    pub(crate) fn enqueue(&self, event: ChangeEvent) {
        self.events.fetch_add(1, Ordering::Relaxed);
        let mut q = self.lock();
        if q.closing {
            return;
        }
        q.events.push_back(event);
        self.cond.notify_all();
    }

    fn record_latency(q: &mut Queue, event: &ChangeEvent) {
        let latency = sys::monotonic_ns().saturating_sub(event.timestamp_ns);
        if q.latencies.len() == LATENCY_SAMPLES {
            q.latencies.pop_front();
        }
        q.latencies.push_back(latency);
    }

    fn delivery_loop(self: Arc<Self>) {
        let mut q = self.lock();
        loop {
            if q.closing {
                break;
            }
            if let (Some(cb), false) = (q.callback.clone(), q.events.is_empty()) {
                let event = q.events.pop_front().expect("not empty");
                Self::record_latency(&mut q, &event);
                q.in_flight = true;
                drop(q);
                if catch_unwind(AssertUnwindSafe(|| cb(&event))).is_err() {
                    self.callback_errors.fetch_add(1, Ordering::Relaxed);
                }
                q = self.lock();
                q.in_flight = false;
                self.cond.notify_all();
                continue;
            }
            q = self.cond.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Watches memory regions and reports their changes.
///
/// Any number of watchers may exist; they share one process-wide engine.
/// Dropping a watcher closes it.
pub struct Watcher {
    id: u32,
    backend: Backend,
    backend_reason: String,
    closed: AtomicBool,
    inner: Arc<WatcherInner>,
    engine: &'static Engine,
}

impl Watcher {
    /// Creates a watcher. Fails with [`Error::Unsupported`] when the chosen
    /// backend cannot work here, or [`Error::InvalidArgument`] for bad options.
    pub fn new(options: Options) -> Result<Watcher, Error> {
        if options.writable_window.is_zero() {
            return Err(Error::InvalidArgument("writable_window must be > 0".into()));
        }
        if options.poll_interval.is_zero() {
            return Err(Error::InvalidArgument("poll_interval must be > 0".into()));
        }
        if options.ring_capacity == 0 {
            return Err(Error::InvalidArgument("ring_capacity must be > 0".into()));
        }
        let engine = engine(options.ring_capacity)?;
        let inner = Arc::new(WatcherInner {
            queue: Mutex::new(Queue::default()),
            cond: Condvar::new(),
            events: AtomicU64::new(0),
            callback_errors: AtomicU64::new(0),
        });
        let (id, backend, backend_reason) = engine.add_watcher(Arc::downgrade(&inner), &options)?;
        Ok(Watcher { id, backend, backend_reason, closed: AtomicBool::new(false), inner, engine })
    }

    /// The backend this watcher's regions use (never `Auto`).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    fn check_open(&self) -> Result<(), Error> {
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
    /// ([`Error::ReadOnly`]; the poll backend accepts read-only memory,
    /// which another process may write), a range overlapping one of this watcher's
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
        self.engine.watch(self.id, addr as usize, len, name, metadata)
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
        let mut q = self.inner.lock();
        q.callback = callback;
        if q.callback.is_some() && q.delivery_thread.is_none() {
            let inner = Arc::clone(&self.inner);
            let handle = std::thread::Builder::new()
                .name("memwatch-delivery".into())
                .spawn(move || inner.delivery_loop())
                .map_err(|e| Error::Os(format!("cannot start the delivery thread: {e}")))?;
            q.delivery_thread_id = Some(handle.thread().id());
            q.delivery_thread = Some(handle);
        }
        self.inner.cond.notify_all();
        Ok(())
    }

    /// Detects changes now. Every write made before this call is in the
    /// result or was already delivered. With a callback set, the events go to
    /// the callback and this waits until they were delivered (unless called
    /// from the callback itself), returning an empty list.
    pub fn check_changes(&self) -> Result<Vec<ChangeEvent>, Error> {
        self.check_open()?;
        self.engine.scan_now(self.id);
        let mut q = self.inner.lock();
        if q.callback.is_none() {
            let events: Vec<ChangeEvent> = q.events.drain(..).collect();
            for e in &events {
                WatcherInner::record_latency(&mut q, e);
            }
            return Ok(events);
        }
        if q.delivery_thread_id == Some(std::thread::current().id()) {
            return Ok(Vec::new());
        }
        while (!q.events.is_empty() || q.in_flight) && !q.closing && q.callback.is_some() {
            q = self.inner.cond.wait(q).unwrap_or_else(|e| e.into_inner());
        }
        if q.callback.is_none() {
            // The callback was cleared while we waited: the rest is ours.
            return Ok(q.events.drain(..).collect());
        }
        Ok(Vec::new())
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
        self.inner.callback_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Statistics of this watcher.
    pub fn stats(&self) -> Stats {
        let (regions, native, snapshot, protected_pages, dropped) = self.engine.stats_of(self.id);
        let (fallback_regions, fallback_reason, gone_regions) = self.engine.fallback_of(self.id);
        let backend_reason = match (self.backend_reason.is_empty(), fallback_reason.is_empty()) {
            (_, true) => self.backend_reason.clone(),
            (true, false) => fallback_reason,
            (false, false) => format!("{}; {}", self.backend_reason, fallback_reason),
        };
        let q = self.inner.lock();
        let mut lat: Vec<u64> = q.latencies.iter().copied().collect();
        lat.sort_unstable();
        let pct = |p: usize| if lat.is_empty() { 0 } else { lat[(lat.len() - 1) * p / 100] };
        Stats {
            backend: Some(self.backend),
            backend_reason,
            regions,
            protected_pages,
            faults: crate::handler_state::get().faults.load(Ordering::Relaxed),
            events: self.inner.events.load(Ordering::Relaxed),
            fallback_regions,
            gone_regions,
            dropped_wheres: dropped,
            native_bytes: native,
            snapshot_bytes: snapshot,
            pending_events: q.events.len(),
            callback_errors: self.inner.callback_errors.load(Ordering::Relaxed),
            latency_p50_ns: pct(50),
            latency_p99_ns: pct(99),
        }
    }

    /// Bytes of the engine's own mappings (fault ring, page table), shared by
    /// all watchers and not counted in any watcher's `native_bytes`.
    pub fn engine_bytes(&self) -> usize {
        self.engine.shared_bytes()
    }

    /// True after [`Watcher::close`].
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Unwatches everything, stops the delivery thread (after the callback
    /// running now returns) and drops pending events. Idempotent; may be
    /// called from inside the callback.
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.engine.remove_watcher(self.id);
        let handle = {
            let mut q = self.inner.lock();
            q.closing = true;
            q.events.clear();
            self.inner.cond.notify_all();
            q.delivery_thread.take()
        };
        if let Some(h) = handle {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.close();
    }
}
