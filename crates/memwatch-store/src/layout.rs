//! The segment layout: header, pin records, hash buckets, slots, arena.
//!
//! Every field that lives in shared memory is an atomic (or the pthread mutex),
//! so no process ever holds a plain Rust reference to memory another process
//! may write. Immutable layout fields are copied into [`Layout`] and validated
//! once at open; they are never re-read from the segment afterwards.
//!
//! ```text
//! [ Header (page aligned) ][ PinRecord x 256 ][ buckets: u32 x 2^k ][ Slot x N ][ arena ]
//! ```

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU32, AtomicU64};

/// "MWSTORE1" little-endian.
pub const MAGIC: u64 = u64::from_le_bytes(*b"MWSTORE1");
/// Layout version; bump on any change to the structures below.
pub const VERSION: u32 = 1;
/// Pin records (zero-copy guards alive at once, all processes together).
pub const PIN_RECORDS: usize = 256;
/// Retired blocks (unlinked but pinned) tracked at once.
pub const RETIRED_MAX: usize = PIN_RECORDS;
/// TLSF first-level classes.
pub const FL_COUNT: usize = 48;
/// TLSF second-level classes per first level (log2).
pub const SL_LOG2: u32 = 3;
/// TLSF second-level classes per first level.
pub const SL_COUNT: usize = 1 << SL_LOG2;
/// Sharded hit/miss counters (by pid).
pub const SHARDS: usize = 16;
/// "No slot" in u32 links.
pub const NIL: u32 = u32::MAX;
/// "No block" in u64 links.
pub const NIL64: u64 = u64::MAX;
/// Page size used for layout rounding (a multiple of every Linux page size we run on
/// is not needed: mmap only needs the *file offset* aligned, and we map from 0).
pub const ALIGN_PAGE: u64 = 4096;
/// Slot states.
pub const SLOT_FREE: u32 = 0;
/// Slot holds a live entry.
pub const SLOT_USED: u32 = 1;
/// Default longest key.
pub const DEFAULT_MAX_KEY: u32 = 1024;
/// Hard upper limit on a store's key limit.
pub const MAX_KEY_LIMIT: u32 = 64 * 1024;
/// Smallest arena accepted.
pub const MIN_CAPACITY: u64 = 4096;
/// Largest arena accepted (1 TiB).
pub const MAX_CAPACITY: u64 = 1 << 40;
/// Largest slot count accepted.
pub const MAX_SLOTS: u64 = 1 << 26;

/// A value on its own cache line.
#[repr(C, align(64))]
pub struct Line<T>(pub T);

/// The single-slot redo journal for publishing a slot image.
#[repr(C)]
pub struct Journal {
    /// 1 while `slot` is being rewritten to the image below.
    pub active: AtomicU32,
    /// Slot index being published.
    pub slot: AtomicU32,
    /// Image: hash.
    pub hash: AtomicU64,
    /// Image: block offset.
    pub block_off: AtomicU64,
    /// Image: block size.
    pub block_size: AtomicU64,
    /// Image: value length.
    pub val_len: AtomicU64,
    /// Image: key length.
    pub key_len: AtomicU32,
    /// Image: state.
    pub state: AtomicU32,
    /// Image: created_at.
    pub created_at: AtomicU64,
    /// Image: lru stamp / updated_at.
    pub stamp: AtomicU64,
}

/// State only writers (lock holders) modify; readers only read the counters.
#[repr(C)]
pub struct WriterState {
    /// Redo journal.
    pub journal: Journal,
    /// Head of the free-slot list (linked through `Slot::lru_next`).
    pub free_slot_head: AtomicU32,
    /// Most recently used end of the LRU list.
    pub lru_head: AtomicU32,
    /// Least recently used end of the LRU list.
    pub lru_tail: AtomicU32,
    /// Entries in `retired`.
    pub retired_count: AtomicU32,
    /// Live entries.
    pub entries: AtomicU64,
    /// Arena bytes in allocated blocks (headers included).
    pub bytes_used: AtomicU64,
    /// Sum of key + value lengths of live entries.
    pub data_bytes: AtomicU64,
    /// Successful puts.
    pub puts: AtomicU64,
    /// Successful deletes.
    pub deletes: AtomicU64,
    /// Entries evicted by the LRU policy.
    pub evictions: AtomicU64,
    /// Times a writer repaired the store after a dead lock holder.
    pub recoveries: AtomicU64,
    /// Puts refused because the store was full.
    pub refusals: AtomicU64,
    /// Blocks lost because the retired list was full (should stay 0).
    pub leaked_blocks: AtomicU64,
    /// 1 while a lock holder may be changing the store; a holder that
    /// unwinds (panics) leaves it set and the next locker repairs.
    pub dirty: AtomicU32,
}

/// TLSF free-list heads and bitmaps (arena offsets, `NIL64` = empty).
#[repr(C)]
pub struct AllocState {
    /// Bit f set when some list of first level f is non-empty.
    pub fl_bitmap: AtomicU64,
    /// Bit s of entry f set when list (f, s) is non-empty.
    pub sl_bitmap: [AtomicU64; FL_COUNT],
    /// List heads.
    pub heads: [[AtomicU64; SL_COUNT]; FL_COUNT],
}

/// Hit/miss counters of one shard.
#[repr(C)]
pub struct Shard {
    /// Gets that found their key.
    pub hits: AtomicU64,
    /// Gets that did not.
    pub misses: AtomicU64,
}

/// The segment header.
#[repr(C, align(64))]
pub struct Header {
    /// `MAGIC`, written last at initialization.
    pub magic: AtomicU64,
    /// `VERSION`.
    pub version: AtomicU32,
    /// Size of this header region in bytes.
    pub header_size: AtomicU32,
    /// Total segment size.
    pub total_size: AtomicU64,
    /// Offset of the pin records.
    pub pins_off: AtomicU64,
    /// Offset of the bucket array.
    pub buckets_off: AtomicU64,
    /// Offset of the slot array.
    pub slots_off: AtomicU64,
    /// Offset of the arena.
    pub arena_off: AtomicU64,
    /// Arena bytes.
    pub arena_size: AtomicU64,
    /// Number of slots (max entries).
    pub slot_count: AtomicU32,
    /// Number of hash buckets (power of two).
    pub bucket_count: AtomicU32,
    /// Longest key.
    pub max_key_len: AtomicU32,
    /// `FullPolicy` as u32.
    pub policy: AtomicU32,
    /// Creation time (ns since the epoch).
    pub created_at: AtomicU64,
    /// xxh3 of the layout fields above (detects a scribbled header).
    pub layout_check: AtomicU64,
    /// Process-shared robust writer mutex.
    pub lock: Line<UnsafeCell<libc::pthread_mutex_t>>,
    /// Odd while a writer changes hash chains; readers retry misses when it moved.
    pub index_seq: Line<AtomicU64>,
    /// Writer state.
    pub w: Line<WriterState>,
    /// Allocator state.
    pub alloc: Line<AllocState>,
    /// Blocks removed from their slot while pinned, freed once unpinned.
    pub retired: Line<[AtomicU64; RETIRED_MAX]>,
    /// Bit i set while pin record i is in use.
    pub pin_bitmap: Line<[AtomicU64; PIN_RECORDS / 64]>,
    /// Hit/miss counters.
    pub shards: [Line<Shard>; SHARDS],
}

/// One zero-copy read pin (a hazard pointer on an arena block).
#[repr(C, align(64))]
pub struct PinRecord {
    /// Pid of the owning process, 0 = free.
    pub owner: AtomicU32,
    /// Offset of the pinned block, `NIL64` = none.
    pub block_off: AtomicU64,
    /// Size of the pinned block.
    pub block_size: AtomicU64,
}

/// One entry's metadata. The first cache line is what readers validate; the
/// second holds per-key stats and LRU links.
#[repr(C, align(128))]
pub struct Slot {
    /// Seqlock version: odd while being rewritten; never reset.
    pub seq: AtomicU64,
    /// xxh3 of the key.
    pub hash: AtomicU64,
    /// Arena offset of the block holding key then value.
    pub block_off: AtomicU64,
    /// Size of that block.
    pub block_size: AtomicU64,
    /// Value length.
    pub val_len: AtomicU64,
    /// Key length.
    pub key_len: AtomicU32,
    /// `SLOT_FREE` or `SLOT_USED`.
    pub state: AtomicU32,
    /// Next slot in the hash chain.
    pub next: AtomicU32,
    /// Previous slot in the LRU list.
    pub lru_prev: AtomicU32,
    /// Next slot in the LRU list (or the free-slot list).
    pub lru_next: AtomicU32,
    /// When the entry took its LRU position (ns since the epoch).
    pub lru_stamp: AtomicU64,
    /// When the key was first put (ns since the epoch).
    pub created_at: AtomicU64,
    /// Last get or put (ns since the epoch).
    pub last_access: AtomicU64,
    /// Number of gets that found this key.
    pub access_count: AtomicU64,
    /// Last put (ns since the epoch).
    pub updated_at: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<Slot>() == 128);
const _: () = assert!(std::mem::size_of::<PinRecord>() == 64);

/// Arena block header size; payload follows.
pub const BLOCK_HDR: u64 = 16;
/// Smallest block (header + two free-list links).
pub const MIN_BLOCK: u64 = 32;
/// Block alignment.
pub const BLOCK_ALIGN: u64 = 16;

/// Validated, immutable layout of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Header region bytes.
    pub header_size: u64,
    /// Pin records offset.
    pub pins_off: u64,
    /// Buckets offset.
    pub buckets_off: u64,
    /// Slots offset.
    pub slots_off: u64,
    /// Arena offset.
    pub arena_off: u64,
    /// Arena size.
    pub arena_size: u64,
    /// Total segment size.
    pub total_size: u64,
    /// Slot count.
    pub slot_count: u32,
    /// Bucket count (power of two).
    pub bucket_count: u32,
    /// Longest key.
    pub max_key_len: u32,
}

/// Rounds `v` up to a multiple of `a` (a power of two).
pub const fn round_up(v: u64, a: u64) -> u64 {
    (v + a - 1) & !(a - 1)
}

impl Layout {
    /// Computes the layout for an arena of `capacity` bytes and `slots` slots.
    pub fn compute(capacity: u64, slots: u64, max_key_len: u32) -> Layout {
        let header_size = round_up(std::mem::size_of::<Header>() as u64, ALIGN_PAGE);
        let pins_off = header_size;
        let buckets_off = pins_off + (PIN_RECORDS * std::mem::size_of::<PinRecord>()) as u64;
        let bucket_count = (slots.max(16)).next_power_of_two();
        let slots_off = round_up(buckets_off + bucket_count * 4, 128);
        let arena_off = round_up(slots_off + slots * 128, ALIGN_PAGE);
        let arena_size = round_up(capacity, BLOCK_ALIGN);
        let total_size = round_up(arena_off + arena_size, ALIGN_PAGE);
        Layout {
            header_size,
            pins_off,
            buckets_off,
            slots_off,
            arena_off,
            arena_size,
            total_size,
            slot_count: slots as u32,
            bucket_count: bucket_count as u32,
            max_key_len,
        }
    }

    /// Checksum over the layout fields as stored in the header.
    pub fn check(&self, version: u32, policy: u32) -> u64 {
        let words = [
            version as u64,
            self.header_size,
            self.total_size,
            self.pins_off,
            self.buckets_off,
            self.slots_off,
            self.arena_off,
            self.arena_size,
            self.slot_count as u64,
            self.bucket_count as u64,
            self.max_key_len as u64,
            policy as u64,
        ];
        let mut bytes = [0u8; 12 * 8];
        for (i, w) in words.iter().enumerate() {
            bytes[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        xxhash_rust::xxh3::xxh3_64(&bytes)
    }
}

/// TLSF mapping of a block size to its (first, second) level list.
pub fn mapping(size: u64) -> (usize, usize) {
    // Clamped so that corrupt sizes map to some valid list instead of panicking.
    let size = size.clamp(MIN_BLOCK, (1u64 << FL_COUNT) - 1);
    let fl = 63 - size.leading_zeros();
    let sl = (size >> (fl - SL_LOG2)) as usize - SL_COUNT;
    (fl as usize, sl)
}

/// TLSF mapping for a search: the first list whose blocks all fit `size`.
pub fn mapping_search(size: u64) -> (usize, usize) {
    let size = size.clamp(MIN_BLOCK, 1u64 << (FL_COUNT - 2));
    let fl = 63 - size.leading_zeros();
    let rounded = size + (1u64 << (fl - SL_LOG2)) - 1;
    mapping(rounded)
}
