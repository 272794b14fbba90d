//! The fault ring: a bounded multi-producer, single-consumer queue in its own
//! anonymous mapping. Producers are signal handlers (lock-free, no allocation);
//! the consumer is whoever holds the engine mutex. A full ring drops only the
//! *where* of a fault: the page's dirty bit still carries the change.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::backend::FaultRecord;
use crate::sys;

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

/// Most entries a ring may have: sequence numbers are 32-bit and compared as
/// signed differences, which stays exact while the capacity is below 2^31.
const MAX_CAPACITY: usize = 1 << 30;

/// One entry: a FaultRecord laid out without padding (32 bytes, not 40).
#[repr(C)]
struct Cell {
    /// Vyukov's sequence number (32-bit, wrapping) minus the cell's index:
    /// stored that way, a zero-filled mapping is a valid empty ring, so no
    /// page of the ring is touched (made resident) before a fault uses it.
    seq: AtomicU32,
    tid: UnsafeCell<u32>,
    page: UnsafeCell<usize>,
    ip: UnsafeCell<u64>,
    timestamp_ns: UnsafeCell<u64>,
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
    /// A ring of at least `capacity` entries (rounded up to a power of two,
    /// at most 2^30).
    pub fn new(capacity: usize) -> Option<Ring> {
        let capacity = capacity.clamp(2, MAX_CAPACITY).next_power_of_two();
        let bytes = HEADER_BYTES + capacity * std::mem::size_of::<Cell>();
        let base = sys::mmap_anon(bytes)?;
        // Pages of the ring become resident one by one as faults reach them,
        // not as a whole transparent huge page on the first fault.
        // SAFETY: advice on our own fresh mapping; it changes no contents.
        unsafe { libc::madvise(base as *mut libc::c_void, bytes, libc::MADV_NOHUGEPAGE) };
        let header = base as *const RingHeader;
        // SAFETY: the mapping is bytes long; cells start after the header.
        // Zero-filled memory is a valid empty ring (see Cell::seq).
        let cells = unsafe { base.add(HEADER_BYTES) } as *mut Cell;
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

    /// The sequence number of the cell of `pos` (see Cell::seq).
    fn seq(&self, pos: usize) -> u32 {
        self.cell(pos).seq.load(Ordering::Acquire).wrapping_add((pos & self.mask) as u32)
    }

    fn set_seq(&self, pos: usize, seq: usize) {
        self.cell(pos)
            .seq
            .store((seq as u32).wrapping_sub((pos & self.mask) as u32), Ordering::Release);
    }

    /// Pushes a record; false when full (counted; the caller flags the overflow).
    /// Async-signal-safe: atomics and plain stores into preallocated memory.
    #[cfg(test)]
    pub fn push(&self, rec: FaultRecord) -> bool {
        self.push_with(rec, |_| {})
    }

    /// Entries (a power of two): slot numbers passed to push_with/pop_with
    /// are below it.
    pub fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// push, calling `fill(slot)` while the cell is claimed and unpublished,
    /// so data kept beside the ring under the same slot number (the writer
    /// location's frames) is published with the record. `fill` must be
    /// async-signal-safe.
    pub fn push_with(&self, rec: FaultRecord, fill: impl FnOnce(usize)) -> bool {
        let h = self.header();
        let mut pos = h.tail.load(Ordering::Relaxed);
        loop {
            let diff = self.seq(pos).wrapping_sub(pos as u32) as i32;
            if diff == 0 {
                match h.tail.compare_exchange_weak(
                    pos,
                    pos + 1,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        let cell = self.cell(pos);
                        // SAFETY: we own this cell until we publish seq = pos + 1.
                        unsafe {
                            *cell.tid.get() = rec.tid;
                            *cell.page.get() = rec.page;
                            *cell.ip.get() = rec.ip;
                            *cell.timestamp_ns.get() = rec.timestamp_ns;
                        }
                        fill(pos & self.mask);
                        self.set_seq(pos, pos + 1);
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
    #[cfg(test)]
    pub fn pop(&self) -> Option<FaultRecord> {
        self.pop_with(|_, _| ()).map(|(rec, ())| rec)
    }

    /// pop, calling `take(slot, record)` before the cell is released (see
    /// push_with).
    pub fn pop_with<T>(
        &self,
        take: impl FnOnce(usize, &FaultRecord) -> T,
    ) -> Option<(FaultRecord, T)> {
        let pos = self.header().head.load(Ordering::Relaxed);
        if self.seq(pos) != (pos + 1) as u32 {
            return None;
        }
        let cell = self.cell(pos);
        // SAFETY: the producer published this cell (seq == pos + 1); we own it
        // until we release it with seq = pos + capacity.
        let rec = unsafe {
            FaultRecord {
                page: *cell.page.get(),
                ip: *cell.ip.get(),
                tid: *cell.tid.get(),
                timestamp_ns: *cell.timestamp_ns.get(),
                capture: 0,
                faults: 0,
            }
        };
        let taken = take(pos & self.mask, &rec);
        self.set_seq(pos, pos + self.mask + 1);
        self.header().head.store(pos + 1, Ordering::Relaxed);
        Some((rec, taken))
    }

    /// True when a published record is waiting.
    pub fn has_pending(&self) -> bool {
        let pos = self.header().head.load(Ordering::Relaxed);
        self.seq(pos) == (pos + 1) as u32
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: usize) -> FaultRecord {
        FaultRecord {
            page: i,
            ip: i as u64 * 3,
            tid: i as u32 + 7,
            timestamp_ns: i as u64 * 11,
            capture: 0,
            faults: 0,
        }
    }

    #[test]
    fn cells_are_unpadded() {
        assert_eq!(std::mem::size_of::<Cell>(), 32);
    }

    #[test]
    fn fifo_full_and_wrapping_positions() {
        let ring = Ring::new(4).unwrap();
        // Start near the 32-bit wrap of the sequence numbers.
        let start = u32::MAX as usize - 5;
        ring.header().head.store(start, Ordering::Relaxed);
        ring.header().tail.store(start, Ordering::Relaxed);
        for pos in start..start + 4 {
            ring.set_seq(pos, pos);
        }
        let mut next = 0;
        for round in 0..5 {
            for i in 0..4 {
                assert!(ring.push(rec(round * 4 + i)));
            }
            assert!(!ring.push(rec(99)), "full after 4");
            for _ in 0..4 {
                let r = ring.pop().unwrap();
                assert_eq!(
                    (r.page, r.ip, r.tid, r.timestamp_ns),
                    (next, next as u64 * 3, next as u32 + 7, next as u64 * 11)
                );
                next += 1;
            }
            assert!(ring.pop().is_none() && !ring.has_pending());
        }
        assert_eq!(ring.header().dropped.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn zero_filled_ring_is_empty_and_usable() {
        let ring = Ring::new(65_536).unwrap();
        assert!(ring.pop().is_none());
        assert!(ring.push(rec(1)));
        assert_eq!(ring.pop().unwrap().page, 1);
    }
}
