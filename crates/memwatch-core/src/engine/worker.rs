//! The worker thread: runs every backend's due work, delivers the events,
//! and sleeps until the earliest backend deadline or a wake-up (a fault, a
//! new watcher or region).

use std::sync::atomic::Ordering;

use super::Engine;
use crate::backend::{Detector, Pass};
use crate::regions::Kind;
use crate::sys;

impl Engine {
    pub(super) fn worker_loop(&'static self) {
        // Smoothed CPU cost of one idle worker iteration (nothing written),
        // wake-up and scan included.
        let mut idle_cpu_ns: u64 = 0;
        let mut cpu_mark = sys::thread_cpu_ns();
        let mut last_was_idle = false;
        let mut scan_cost_ns = 0;
        loop {
            let cpu_now = sys::thread_cpu_ns();
            // Writewatch's scans are paced by their own cost (see take_scan_cost).
            let spent = cpu_now.saturating_sub(cpu_mark).saturating_sub(scan_cost_ns);
            cpu_mark = cpu_now;
            if last_was_idle {
                idle_cpu_ns = if idle_cpu_ns == 0 { spent } else { (idle_cpu_ns * 7 + spent) / 8 };
            }
            self.let_waiters_go_first();
            let (timeout_ns, page_deadline_pending) = {
                let mut st = self.lock();
                let now = sys::monotonic_ns();
                let had_writewatch = !st.backends.writewatch.is_empty();
                let mut events = Vec::new();
                for kind in [Kind::Protect, Kind::Poll, Kind::WriteWatch] {
                    st.detect(kind, now, Pass::Due, &mut events);
                }
                st.reap_gone();
                last_was_idle = events.is_empty() && !st.backends.writewatch.found_writes();
                self.deliver(&st, events);
                scan_cost_ns = st.backends.writewatch.take_scan_cost();
                st.backends.writewatch.pace(now, had_writewatch, last_was_idle, idle_cpu_ns);
                // Next wake-up: the earliest page deadline, scan or poll.
                let b = &st.backends;
                let reg = &st.registry;
                let pages = [b.protect.next_deadline(reg), b.writewatch.next_deadline(reg)];
                let page_deadline = pages.into_iter().flatten().min();
                let next = page_deadline
                    .into_iter()
                    .chain(b.poll.next_deadline(reg))
                    .chain(b.protect.next_sweep())
                    .min();
                let now = sys::monotonic_ns();
                (next.map(|d| d.saturating_sub(now)), page_deadline.is_some())
            };
            // With a page deadline pending the worker wakes by then anyway
            // and collects new faults; without one, the next fault must wake
            // it: tell the handler so (unless a fault came meanwhile).
            if !page_deadline_pending && !self.idle.going_idle() {
                continue;
            }
            self.wake.wait(timeout_ns);
            self.idle.awake();
        }
    }

    /// Between the slices of a long pass the worker takes the lock again at
    /// once, and a mutex need not be fair: other threads waiting for it
    /// (a check_changes, a watch) get it first, for up to 10 ms in all.
    fn let_waiters_go_first(&self) {
        let start = std::time::Instant::now();
        while self.waiting.load(Ordering::SeqCst) > 0 && start.elapsed().as_millis() < 10 {
            std::thread::yield_now();
        }
    }
}
