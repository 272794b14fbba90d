//! The page table the SIGSEGV handler reads: page -> {active, dirty}.
//!
//! An open-addressing hash table in its own anonymous mapping, so it never
//! shares a page with watched memory. Only the engine (under its mutex)
//! inserts and removes; the signal handler only looks up and sets the dirty
//! bit with atomics. Growing publishes a new table through an atomic pointer,
//! waits until no handler is running on the old one, then carries over the
//! dirty bits set meanwhile and unmaps the old table.

use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering};

use crate::sys;

/// The page is watched by at least one region.
pub const ACTIVE: u32 = 1;
/// The page was written since the engine last took its dirty bit.
pub const DIRTY: u32 = 2;
/// Bits 4..7 of the state hold the page's own PROT_* bits, restored by the handler.
pub const PROT_SHIFT: u32 = 4;

/// How long after removal a fault on a page is still treated as ours (the
/// fault raced with unwatch): retried instead of forwarded.
pub const STALE_WINDOW_NS: u64 = 100_000_000;

#[repr(C)]
pub struct Slot {
    /// page index + 1; 0 = empty.
    key: AtomicUsize,
    pub state: AtomicU32,
    /// CLOCK_MONOTONIC milliseconds (wrapping) when the page stopped being
    /// watched (tombstone). 16-byte slots keep the table small.
    removed_at_ms: AtomicU32,
}

impl Slot {
    /// True if the page stopped being watched less than STALE_WINDOW_NS ago.
    /// Async-signal-safe.
    pub fn recently_removed(&self, now_ns: u64) -> bool {
        let now_ms = (now_ns / 1_000_000) as u32;
        let removed = self.removed_at_ms.load(Ordering::SeqCst);
        (now_ms.wrapping_sub(removed) as u64) < STALE_WINDOW_NS / 1_000_000
    }
}

pub struct Table {
    slots: *mut Slot,
    mask: usize,
    bytes: usize,
}

static CURRENT: AtomicPtr<Table> = AtomicPtr::new(std::ptr::null_mut());

fn hash(page: usize) -> usize {
    // Fibonacci hashing spreads consecutive pages.
    page.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl Table {
    fn new(capacity: usize) -> Option<Box<Table>> {
        let capacity = capacity.next_power_of_two().max(64);
        let bytes = capacity * std::mem::size_of::<Slot>();
        let slots = sys::mmap_anon(bytes)? as *mut Slot;
        Some(Box::new(Table { slots, mask: capacity - 1, bytes }))
    }

    fn slot(&self, i: usize) -> &Slot {
        // SAFETY: i is masked into [0, capacity); the mapping is zero-filled,
        // which is a valid Slot (all atomics zero), and lives as long as self.
        unsafe { &*self.slots.add(i & self.mask) }
    }

    /// Finds the slot of `page`. Async-signal-safe (atomics only).
    pub fn lookup(&self, page: usize) -> Option<&Slot> {
        let key = page + 1;
        let mut i = hash(page);
        for _ in 0..=self.mask {
            let s = self.slot(i);
            match s.key.load(Ordering::Acquire) {
                0 => return None,
                k if k == key => return Some(s),
                _ => i += 1,
            }
        }
        None
    }

    fn capacity(&self) -> usize {
        self.mask + 1
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        // SAFETY: slots/bytes come from the mmap_anon in Table::new and the
        // table is unreachable from handlers (see grow).
        unsafe { sys::munmap(self.slots as *mut u8, self.bytes) };
    }
}

/// The table handlers must use now (null before the first watch).
pub fn current() -> Option<&'static Table> {
    let p = CURRENT.load(Ordering::SeqCst);
    // SAFETY: a published table stays mapped until it is replaced AND no
    // handler is in flight (grow); callers outside handlers hold the engine
    // mutex, which serialises with grow.
    if p.is_null() {
        None
    } else {
        Some(unsafe { &*p })
    }
}

/// Writer side, owned by the engine state (called under the engine mutex).
pub struct PageTableWriter {
    used: usize,
}

impl PageTableWriter {
    pub fn new() -> PageTableWriter {
        PageTableWriter { used: 0 }
    }

    /// Bytes of the current table (for stats).
    pub fn bytes(&self) -> usize {
        current().map_or(0, |t| t.bytes)
    }

    /// Address range of the current table's mapping (watches may not cover it).
    pub fn range(&self) -> Option<(usize, usize)> {
        current().map(|t| (t.slots as usize, t.slots as usize + t.bytes))
    }

    /// Marks `page` active (inserting it if needed) with a clear dirty bit.
    pub fn activate(&mut self, page: usize, prot: i32) -> Result<(), String> {
        let full = match current() {
            None => true,
            Some(t) => (self.used + 1) * 2 > t.capacity(),
        };
        if full {
            self.grow()?;
        }
        let t = current().expect("table exists after grow");
        let key = page + 1;
        let mut i = hash(page);
        loop {
            let s = t.slot(i);
            let k = s.key.load(Ordering::Acquire);
            if k == key || k == 0 {
                s.state.store(ACTIVE | ((prot as u32 & 7) << PROT_SHIFT), Ordering::SeqCst);
                if k == 0 {
                    s.key.store(key, Ordering::Release);
                    self.used += 1;
                }
                return Ok(());
            }
            i += 1;
        }
    }

    /// Marks `page` no longer watched, keeping a timestamped tombstone so a
    /// fault that raced with the unwatch is retried rather than forwarded.
    pub fn deactivate(&self, page: usize) {
        if let Some(s) = current().and_then(|t| t.lookup(page)) {
            s.removed_at_ms.store((sys::monotonic_ns() / 1_000_000) as u32, Ordering::SeqCst);
            s.state.store(0, Ordering::SeqCst);
        }
    }

    /// Stops treating `page` as watched at once, with no grace period: its
    /// mapping was replaced, so a fault there is not a race with unwatch
    /// and goes to the previous handler.
    pub fn forget(&self, page: usize) {
        if let Some(s) = current().and_then(|t| t.lookup(page)) {
            let long_ago = (sys::monotonic_ns() / 1_000_000) as u32 ^ 0x8000_0000; // half the wrapping range away
            s.removed_at_ms.store(long_ago, Ordering::SeqCst);
            s.state.store(0, Ordering::SeqCst);
        }
    }

    /// Takes the dirty bit of `page`: true if it was set.
    pub fn take_dirty(&self, page: usize) -> bool {
        current()
            .and_then(|t| t.lookup(page))
            .is_some_and(|s| s.state.fetch_and(!DIRTY, Ordering::SeqCst) & DIRTY != 0)
    }

    /// Every active page whose dirty bit is set, taking the bits.
    pub fn take_all_dirty(&self) -> Vec<usize> {
        let mut pages = Vec::new();
        if let Some(t) = current() {
            for i in 0..t.capacity() {
                let s = t.slot(i);
                let k = s.key.load(Ordering::Acquire);
                if k != 0
                    && s.state.load(Ordering::Acquire) & DIRTY != 0
                    && s.state.fetch_and(!DIRTY, Ordering::SeqCst) & DIRTY != 0
                {
                    pages.push(k - 1);
                }
            }
        }
        pages
    }

    fn grow(&mut self) -> Result<(), String> {
        let old = current();
        let want = old.map_or(1024, |t| t.capacity() * 2);
        let new = Table::new(want).ok_or("cannot map the page table")?;
        let now = sys::monotonic_ns();
        let mut used = 0;
        if let Some(old) = old {
            for i in 0..old.capacity() {
                let s = old.slot(i);
                let k = s.key.load(Ordering::Acquire);
                let state = s.state.load(Ordering::Acquire);
                let removed = s.removed_at_ms.load(Ordering::Acquire);
                let keep = k != 0 && (state & ACTIVE != 0 || s.recently_removed(now));
                if keep {
                    let mut j = hash(k - 1);
                    while new.slot(j).key.load(Ordering::Relaxed) != 0 {
                        j += 1;
                    }
                    let d = new.slot(j);
                    d.state.store(state, Ordering::Relaxed);
                    d.removed_at_ms.store(removed, Ordering::Relaxed);
                    d.key.store(k, Ordering::Release);
                    used += 1;
                }
            }
        }
        let new_ptr = Box::into_raw(new);
        let old_ptr = CURRENT.swap(new_ptr, Ordering::SeqCst);
        self.used = used;
        if !old_ptr.is_null() {
            // Handlers that loaded the old pointer have finished once none is
            // in flight after the swap.
            super::handler_state::wait_for_handlers();
            // SAFETY: old_ptr came from Box::into_raw and no handler uses it now.
            let old = unsafe { Box::from_raw(old_ptr) };
            // Carry over dirty bits set between the copy and the swap.
            // SAFETY: new_ptr is the live table.
            let newt = unsafe { &*new_ptr };
            for i in 0..old.capacity() {
                let s = old.slot(i);
                let k = s.key.load(Ordering::Acquire);
                if k != 0 && s.state.load(Ordering::Acquire) & DIRTY != 0 {
                    if let Some(d) = newt.lookup(k - 1) {
                        d.state.fetch_or(DIRTY, Ordering::SeqCst);
                    }
                }
            }
        }
        Ok(())
    }
}
