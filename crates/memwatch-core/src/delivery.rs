//! Delivery of one watcher's events: its queue, its callback and the
//! delivery thread that calls it, and the latency samples for stats. The
//! engine only enqueues; nothing here knows about backends.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{JoinHandle, ThreadId};

use crate::event_queue::EventQueue;
use crate::sys;
use crate::types::{ChangeEvent, Error};

/// A change callback. Runs on the watcher's delivery thread, one event at a
/// time, never inside the signal handler.
pub type Callback = Arc<dyn Fn(&ChangeEvent) + Send + Sync + 'static>;

/// An event sink: sees every event of a watcher once, on the engine's side,
/// before it is queued for the callback or `check_changes()`. It runs with
/// the engine's lock held, so it must return quickly and never block (hand
/// the event to a bounded queue, for instance) and must not call back into
/// the watcher.
pub type EventSink = Arc<dyn Fn(&ChangeEvent) + Send + Sync + 'static>;

/// Identifies one sink added by [`crate::Watcher::add_event_sink`].
pub type SinkId = u64;

const LATENCY_SAMPLES: usize = 4096;

#[derive(Default)]
struct Queue {
    /// Pending events, bounded ([`crate::QUEUE_CAP`]); each has a ticket.
    events: EventQueue,
    /// Ticket of the event the callback is running on.
    in_flight_ticket: u64,
    callback: Option<Callback>,
    /// A callback call is running.
    in_flight: bool,
    closing: bool,
    latencies: VecDeque<u64>,
    delivery_thread: Option<JoinHandle<()>>,
    delivery_thread_id: Option<ThreadId>,
}

/// The delivery side of a watcher's stats.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeliveryCounts {
    /// Events produced for this watcher.
    pub events: u64,
    /// Events waiting for check_changes() or the callback.
    pub pending_events: usize,
    /// Changes merged into a pending event of the same region (queue cap).
    pub coalesced_events: u64,
    /// Callbacks that panicked or whose binding reported an error.
    pub callback_errors: u64,
    /// Median first-write-to-delivery latency, nanoseconds.
    pub latency_p50_ns: u64,
    /// 99th percentile of the same, nanoseconds.
    pub latency_p99_ns: u64,
}

/// One watcher's event queue and callback (the engine holds a weak reference).
pub struct Delivery {
    queue: Mutex<Queue>,
    cond: Condvar,
    events: AtomicU64,
    callback_errors: AtomicU64,
    sinks: Mutex<Vec<(SinkId, EventSink)>>,
    next_sink: AtomicU64,
}

impl Delivery {
    /// An empty queue without a callback.
    pub fn new() -> Arc<Delivery> {
        Arc::new(Delivery {
            queue: Mutex::new(Queue::default()),
            cond: Condvar::new(),
            events: AtomicU64::new(0),
            callback_errors: AtomicU64::new(0),
            sinks: Mutex::new(Vec::new()),
            next_sink: AtomicU64::new(1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Called by the engine (under its mutex) for each detected change.
    pub fn enqueue(&self, event: ChangeEvent) {
        self.events.fetch_add(1, Ordering::Relaxed);
        let mut q = self.lock();
        if q.closing {
            return;
        }
        for (_, sink) in self.sinks.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            if catch_unwind(AssertUnwindSafe(|| sink(&event))).is_err() {
                self.callback_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        if q.events.push(event) {
            self.cond.notify_all();
        }
    }

    /// Takes the front event (its ticket becomes the one in flight).
    fn pop(q: &mut Queue) -> Option<ChangeEvent> {
        let (ticket, event) = q.events.pop()?;
        q.in_flight_ticket = ticket;
        Some(event)
    }

    /// Every queued event, in order.
    fn take_all(q: &mut Queue) -> Vec<ChangeEvent> {
        q.events.take_all()
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
                let event = Self::pop(&mut q).expect("not empty");
                Self::record_latency(&mut q, &event);
                q.in_flight = true;
                drop(q);
                if catch_unwind(AssertUnwindSafe(|| cb(&event))).is_err() {
                    self.callback_errors.fetch_add(1, Ordering::Relaxed);
                }
                // Outside the lock: if the callback was replaced or cleared
                // meanwhile, this is its last reference (a binding's drop may
                // call back into memwatch).
                drop(cb);
                q = self.lock();
                q.in_flight = false;
                self.cond.notify_all();
                continue;
            }
            q = self.cond.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Sets or clears the callback, starting the delivery thread the first
    /// time one is set. Queued events go to the new callback.
    ///
    /// The replaced callback is dropped after the queue lock is released
    /// (a binding's drop may call back into memwatch); if it is running, the
    /// delivery thread's reference drops it when that call returns.
    pub fn set_callback(self: &Arc<Self>, callback: Option<Callback>) -> Result<(), Error> {
        let mut q = self.lock();
        let old = std::mem::replace(&mut q.callback, callback);
        if q.callback.is_some() && q.delivery_thread.is_none() {
            let me = Arc::clone(self);
            let started = std::thread::Builder::new()
                .name("memwatch-delivery".into())
                .spawn(move || me.delivery_loop());
            match started {
                Ok(handle) => {
                    q.delivery_thread_id = Some(handle.thread().id());
                    q.delivery_thread = Some(handle);
                }
                Err(e) => {
                    // Nothing can deliver to the new callback: keep the old state.
                    let new = std::mem::replace(&mut q.callback, old);
                    drop(q);
                    drop(new);
                    return Err(Error::Os(format!("cannot start the delivery thread: {e}")));
                }
            }
        }
        self.cond.notify_all();
        drop(q);
        drop(old);
        Ok(())
    }

    /// After the engine's synchronous pass: without a callback, the queued
    /// events; with one, waits until the callback got every event queued
    /// now (unless called from the callback itself), not those queued
    /// later, and returns none.
    pub fn drain_or_wait(&self) -> Vec<ChangeEvent> {
        match self.fence() {
            Fence::Drained(events) => events,
            Fence::Wait(ticket) => {
                self.wait_fence(ticket, None);
                self.take_if_no_callback()
            }
        }
    }

    /// What check_changes() waits for, taken right after the engine's pass:
    /// without a callback (or on the delivery thread) the queued events
    /// now; with one, the ticket every event queued now is below.
    pub fn fence(&self) -> Fence {
        let mut q = self.lock();
        if q.callback.is_none() {
            let events = Self::take_all(&mut q);
            for e in &events {
                Self::record_latency(&mut q, e);
            }
            return Fence::Drained(events);
        }
        if q.delivery_thread_id == Some(std::thread::current().id()) {
            return Fence::Drained(Vec::new());
        }
        Fence::Wait(q.events.end_ticket())
    }

    /// Waits until the callback returned from every event with a ticket
    /// below `ticket` (true), or `timeout` passed (false). Also true when
    /// the watcher closes or its callback is cleared (the rest then waits
    /// for check_changes: [`Delivery::take_if_no_callback`]).
    pub fn wait_fence(&self, ticket: u64, timeout: Option<std::time::Duration>) -> bool {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        let mut q = self.lock();
        loop {
            let front_pending = q.events.front_ticket() < ticket && !q.events.is_empty();
            let running = q.in_flight && q.in_flight_ticket < ticket;
            if !(front_pending || running) || q.closing || q.callback.is_none() {
                return true;
            }
            q = match deadline {
                None => self.cond.wait(q).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    self.cond.wait_timeout(q, left).unwrap_or_else(|e| e.into_inner()).0
                }
            };
        }
    }

    /// The queued events if no callback is set (it was cleared while
    /// check_changes waited), else none.
    pub fn take_if_no_callback(&self) -> Vec<ChangeEvent> {
        let mut q = self.lock();
        if q.callback.is_none() {
            return Self::take_all(&mut q);
        }
        Vec::new()
    }

    /// True while a callback is set.
    pub fn has_callback(&self) -> bool {
        self.lock().callback.is_some()
    }

    /// Adds an event sink (see [`EventSink`]).
    pub fn add_sink(&self, sink: EventSink) -> SinkId {
        let id = self.next_sink.fetch_add(1, Ordering::Relaxed);
        self.sinks.lock().unwrap_or_else(|e| e.into_inner()).push((id, sink));
        id
    }

    /// Removes a sink; false if the id is unknown. Waits for a call of it
    /// in progress (enqueue holds the sinks' lock while calling them).
    pub fn remove_sink(&self, id: SinkId) -> bool {
        let mut sinks = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        let before = sinks.len();
        sinks.retain(|(i, _)| *i != id);
        sinks.len() != before
    }

    /// Counts an error a binding's callback raised.
    pub fn report_callback_error(&self) {
        self.callback_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Counters and latency percentiles.
    pub fn counts(&self) -> DeliveryCounts {
        let q = self.lock();
        let mut lat: Vec<u64> = q.latencies.iter().copied().collect();
        lat.sort_unstable();
        let pct = |p: usize| if lat.is_empty() { 0 } else { lat[(lat.len() - 1) * p / 100] };
        DeliveryCounts {
            events: self.events.load(Ordering::Relaxed),
            pending_events: q.events.len(),
            coalesced_events: q.events.coalesced(),
            callback_errors: self.callback_errors.load(Ordering::Relaxed),
            latency_p50_ns: pct(50),
            latency_p99_ns: pct(99),
        }
    }

    /// Stops delivery: drops queued events and the callback, and joins the
    /// delivery thread (after the callback running now returns; not when
    /// called from it, then the delivery thread drops its last reference to
    /// the callback when that call returns).
    pub fn close(&self) {
        let (handle, callback) = {
            let mut q = self.lock();
            q.closing = true;
            Self::take_all(&mut q);
            self.cond.notify_all();
            (q.delivery_thread.take(), q.callback.take())
        };
        if let Some(h) = handle {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
        drop(callback);
    }
}

/// What check_changes() got from [`Delivery::fence`].
pub enum Fence {
    /// The events, now (no callback, or called from it).
    Drained(Vec<ChangeEvent>),
    /// Wait for the callback to finish every event below this ticket.
    Wait(u64),
}
