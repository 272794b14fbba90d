//! The fault ring: a bounded multi-producer, single-consumer queue in its own
//! anonymous mapping. Producers are signal handlers (lock-free, no allocation);
//! the consumer is whoever holds the engine mutex. A full ring drops only the
//! *where* of a fault: the page's dirty bit still carries the change.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::cell::UnsafeCell;

use crate::sys;

/// Who wrote a page first in its writable window.
#[derive(Clone, Copy, Debug, Default)]
pub struct FaultRecord {
    pub page: usize,
    pub ip: u64,
    pub tid: u32,
    pub timestamp_ns: u64,
}

/// The ring's atomics, kept in its own mapping (see handler_state.rs).
#[repr(C)]
pub struct RingHeader {
    tail: AtomicUsize,
    head: AtomicUsize,
    /// Set when a push found the ring full: the consumer must sweep the page table.
    pub overflowed: AtomicBool,
    pub dropped: AtomicU64,
}

/// Bytes reserved for the header at the start of the mapping.
const HEADER_BYTES: usize = 128;

#[repr(C)]
struct Cell {
    seq: AtomicUsize,
    data: UnsafeCell<FaultRecord>,
}

/// Handle to the ring: pointers into its mapping, read-only after creation
/// (so the handle itself may sit on a watched page).
pub struct Ring {
    header: *const RingHeader,
    cells: *mut Cell,
    mask: usize,
    bytes: usize,
}

// SAFETY: cells are only accessed through the seq protocol below (Vyukov's
// bounded queue): a producer owns a cell between claiming and publishing it,
// the single consumer between observing it published and releasing it.
unsafe impl Sync for Ring {}
// SAFETY: as above; the raw pointer is to a process-wide mapping.
unsafe impl Send for Ring {}

impl Ring {
    /// A ring of at least `capacity` entries (rounded up to a power of two).
    pub fn new(capacity: usize) -> Option<Ring> {
        let capacity = capacity.max(2).next_power_of_two();
        let bytes = HEADER_BYTES + capacity * std::mem::size_of::<Cell>();
        let base = sys::mmap_anon(bytes)?;
        let header = base as *const RingHeader;
        // SAFETY: the mapping is bytes long; cells start after the header.
        let cells = unsafe { base.add(HEADER_BYTES) } as *mut Cell;
        for i in 0..capacity {
            // SAFETY: i < capacity, inside the fresh mapping; Cell is repr(C)
            // and zeroed memory is valid for it; we set each seq to its index.
            unsafe { (*cells.add(i)).seq.store(i, Ordering::Relaxed) };
        }
        Some(Ring { header, cells, mask: capacity - 1, bytes })
    }

    /// The shared atomics (zero-filled mapping = all zero/false to start).
    pub fn header(&self) -> &RingHeader {
        // SAFETY: header points at the start of the ring's mapping, which
        // lives for the process; all-zero is a valid RingHeader.
        unsafe { &*self.header }
    }

    fn cell(&self, pos: usize) -> &Cell {
        // SAFETY: masked index inside the mapping, which lives for the process.
        unsafe { &*self.cells.add(pos & self.mask) }
    }

    /// Pushes a record; false when full (counted; the caller flags the overflow).
    /// Async-signal-safe: atomics and plain stores into preallocated memory.
    pub fn push(&self, rec: FaultRecord) -> bool {
        let h = self.header();
        let mut pos = h.tail.load(Ordering::Relaxed);
        loop {
            let cell = self.cell(pos);
            let seq = cell.seq.load(Ordering::Acquire);
            let diff = seq as isize - pos as isize;
            if diff == 0 {
                match h.tail.compare_exchange_weak(pos, pos + 1, Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => {
                        // SAFETY: we own this cell until we publish seq = pos + 1.
                        unsafe { *cell.data.get() = rec };
                        cell.seq.store(pos + 1, Ordering::Release);
                        return true;
                    }
                    Err(actual) => pos = actual,
                }
            } else if diff < 0 {
                h.dropped.fetch_add(1, Ordering::Relaxed);
                return false;
            } else {
                pos = h.tail.load(Ordering::Relaxed);
            }
        }
    }

    /// Pops the oldest published record. Only one consumer at a time (the
    /// engine mutex holder). None when empty or the next cell is mid-push.
    pub fn pop(&self) -> Option<FaultRecord> {
        let pos = self.header().head.load(Ordering::Relaxed);
        let cell = self.cell(pos);
        if cell.seq.load(Ordering::Acquire) != pos + 1 {
            return None;
        }
        // SAFETY: the producer published this cell (seq == pos + 1); we own it
        // until we release it with seq = pos + capacity.
        let rec = unsafe { *cell.data.get() };
        cell.seq.store(pos + self.mask + 1, Ordering::Release);
        self.header().head.store(pos + 1, Ordering::Relaxed);
        Some(rec)
    }

    /// True when a published record is waiting.
    pub fn has_pending(&self) -> bool {
        let pos = self.header().head.load(Ordering::Relaxed);
        self.cell(pos).seq.load(Ordering::Acquire) == pos + 1
    }

    /// Bytes of the ring's mapping.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Address range of the ring's mapping (watches may not cover it).
    pub fn range(&self) -> (usize, usize) {
        (self.header as usize, self.header as usize + self.bytes)
    }
}
