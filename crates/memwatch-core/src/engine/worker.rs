//! The worker thread: runs every backend's due work, delivers the events,
//! and sleeps until the earliest backend deadline or a wake-up (a fault, a
//! new watcher or region).

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
        loop {
            let cpu_now = sys::thread_cpu_ns();
            let spent = cpu_now.saturating_sub(cpu_mark);
            cpu_mark = cpu_now;
            if last_was_idle {
                idle_cpu_ns = if idle_cpu_ns == 0 { spent } else { (idle_cpu_ns * 7 + spent) / 8 };
            }
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
}
