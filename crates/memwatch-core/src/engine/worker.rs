//! The worker thread: runs every backend's due work, delivers the events,
//! and sleeps until the earliest backend deadline or a wake-up (a fault, a
//! new watcher or region). While writewatch has nothing to do but wait for
//! a write (its [`QuietGate`]), the worker checks the process's fault count
//! without taking the engine lock, and takes it only once the count moved
//! or another deadline came.

use std::sync::atomic::Ordering;

use super::Engine;
use crate::backend::writewatch::QuietGate;
use crate::backend::{Detector, Pass};
use crate::regions::Kind;
use crate::sys;

impl Engine {
    pub(super) fn worker_loop(&'static self) {
        // Smoothed CPU cost of one quiet check (wake-up, getrusage, clocks).
        let mut check_cpu_ns: u64 = 0;
        // The quiet gate's last check that found the fault count unchanged.
        let mut quiet_check = None;
        loop {
            self.let_waiters_go_first();
            let (next, page_deadline_pending, gate) = {
                let mut st = self.lock();
                if let Some((faults, at)) = quiet_check.take() {
                    st.backends.writewatch.note_quiet_check(faults, at);
                }
                let now = sys::monotonic_ns();
                let mut events = Vec::new();
                for kind in [Kind::Protect, Kind::Poll, Kind::WriteWatch] {
                    st.detect(kind, now, Pass::Due, &mut events);
                }
                st.reap_gone();
                self.deliver(&st, events);
                st.backends.writewatch.note_pass(now);
                // Next wake-up: the earliest page deadline, scan or poll.
                let b = &st.backends;
                let reg = &st.registry;
                let gate = b.writewatch.quiet_gate();
                let ww = if gate.is_some() { None } else { b.writewatch.next_deadline(reg) };
                let page_deadline = [b.protect.next_deadline(reg), ww].into_iter().flatten().min();
                let next = page_deadline
                    .into_iter()
                    .chain(b.poll.next_deadline(reg))
                    .chain(b.protect.next_sweep())
                    .chain(gate.map(|g| g.until))
                    .min();
                (next, page_deadline.is_some(), gate)
            };
            match gate {
                Some(gate) => {
                    quiet_check = self.wait_quietly(gate, next, &mut check_cpu_ns);
                }
                None => {
                    // With a page deadline pending the worker wakes by then
                    // anyway and collects new faults; without one, the next
                    // fault must wake it: tell the handler so (unless a fault
                    // came meanwhile).
                    if !page_deadline_pending && !self.idle.going_idle() {
                        continue;
                    }
                    let now = sys::monotonic_ns();
                    self.wake.wait(next.map(|d| d.saturating_sub(now)));
                    self.idle.awake();
                }
            }
        }
    }

    /// Sleeps in steps (QuietGate::step) until `next`, a wake-up or a
    /// protect fault, or until the fault count differs from the gate's: then
    /// a pass is due. No engine lock: each step costs a wake-up and a
    /// getrusage, measured into `check_cpu_ns`. Returns the count and time
    /// of the last check that found it unchanged (whether a scan group had
    /// a scan to skip then: its heat).
    fn wait_quietly(
        &self,
        gate: QuietGate,
        next: Option<u64>,
        check_cpu_ns: &mut u64,
    ) -> Option<(u64, u64)> {
        let mut mark = sys::thread_cpu_ns();
        let mut quiet = None;
        loop {
            // Protect faults wake the worker through the handler meanwhile.
            if !self.idle.going_idle() {
                return quiet;
            }
            let now = sys::monotonic_ns();
            let until = next.map_or(u64::MAX, |d| d.min(gate.until));
            if now >= until {
                self.idle.awake();
                return quiet;
            }
            let step = gate.step(now, *check_cpu_ns);
            let woken = self.wake.wait(Some(until.min(now.saturating_add(step)) - now));
            self.idle.awake();
            let checked = sys::monotonic_ns();
            if woken || sys::process_faults() != gate.faults {
                return quiet;
            }
            quiet = Some((gate.faults, checked));
            let cpu = sys::thread_cpu_ns();
            let spent = cpu.saturating_sub(mark);
            mark = cpu;
            *check_cpu_ns =
                if *check_cpu_ns == 0 { spent } else { (*check_cpu_ns * 7 + spent) / 8 };
        }
    }

    /// Between the slices of a long pass the worker takes the lock again at
    /// once, and a mutex need not be fair: other threads waiting for it
    /// (a check_changes, a watch) get it first, for up to 10 ms in all.
    pub(super) fn let_waiters_go_first(&self) {
        let start = std::time::Instant::now();
        while self.waiting.load(Ordering::SeqCst) > 0 && start.elapsed().as_millis() < 10 {
            std::thread::yield_now();
        }
    }
}
