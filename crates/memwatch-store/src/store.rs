//! The store: connect/open, readers (seqlock, lock-free), writers (robust
//! mutex), allocator, LRU, pins and crash recovery.

use crate::error::{Error, Result};
use crate::layout::*;
use crate::shm::{self, Mapping, OpenMode};
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering::*};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What a put does when the arena or the entry table is full. Chosen when the
/// store is created; stored in the segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum FullPolicy {
    /// Evict least recently used entries (by last get or put) until the new
    /// entry fits.
    EvictLru = 0,
    /// Refuse the put with [`Error::Full`].
    Refuse = 1,
}

impl FullPolicy {
    fn from_u32(v: u32) -> Option<FullPolicy> {
        match v {
            0 => Some(FullPolicy::EvictLru),
            1 => Some(FullPolicy::Refuse),
            _ => None,
        }
    }
}

/// Creation options for [`Store::connect_with`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Arena bytes for keys and values (each entry also takes a 16-byte block
    /// header, rounded up to 16 bytes). 4 KiB ..= 1 TiB.
    pub capacity: u64,
    /// Maximum number of entries; default `capacity / 256` clamped to 16 ..= 2^24.
    pub max_entries: Option<u64>,
    /// Longest key in bytes (default 1024, at most 65536).
    pub max_key_len: u32,
    /// What to do when full.
    pub policy: FullPolicy,
}

impl Options {
    /// Options with the given arena capacity and policy, defaults elsewhere.
    pub fn new(capacity: u64, policy: FullPolicy) -> Options {
        Options { capacity, max_entries: None, max_key_len: DEFAULT_MAX_KEY, policy }
    }

    /// Sets the maximum number of entries.
    pub fn max_entries(mut self, n: u64) -> Options {
        self.max_entries = Some(n);
        self
    }

    /// Sets the longest key.
    pub fn max_key_len(mut self, n: u32) -> Options {
        self.max_key_len = n;
        self
    }

    fn layout(&self) -> Result<Layout> {
        if !(MIN_CAPACITY..=MAX_CAPACITY).contains(&self.capacity) {
            return Err(Error::InvalidOptions(format!(
                "capacity {} is outside {}..={} bytes",
                self.capacity, MIN_CAPACITY, MAX_CAPACITY
            )));
        }
        let slots = self.max_entries.unwrap_or((self.capacity / 256).clamp(16, 1 << 24));
        if !(1..=MAX_SLOTS).contains(&slots) {
            return Err(Error::InvalidOptions(format!(
                "max_entries {slots} is outside 1..={MAX_SLOTS}"
            )));
        }
        if !(1..=MAX_KEY_LIMIT).contains(&self.max_key_len) {
            return Err(Error::InvalidOptions(format!(
                "max_key_len {} is outside 1..={MAX_KEY_LIMIT}",
                self.max_key_len
            )));
        }
        Ok(Layout::compute(self.capacity, slots, self.max_key_len))
    }
}

/// Store-wide statistics. `repr(C)`: the C API hands it out as
/// `cache_stats_t` (twelve `uint64_t`, in this order).
#[repr(C)]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Live entries.
    pub entries: u64,
    /// Entry limit.
    pub max_entries: u64,
    /// Arena size in bytes.
    pub capacity_bytes: u64,
    /// Arena bytes in allocated blocks (block headers and padding included;
    /// also blocks still pinned by a reader after their key changed).
    pub bytes_used: u64,
    /// Sum of key + value lengths of live entries.
    pub data_bytes: u64,
    /// Gets that found their key.
    pub hits: u64,
    /// Gets that did not.
    pub misses: u64,
    /// Entries evicted by `FullPolicy::EvictLru`.
    pub evictions: u64,
    /// Successful puts.
    pub puts: u64,
    /// Successful deletes (evictions not included).
    pub deletes: u64,
    /// Puts refused because the store was full.
    pub refusals: u64,
    /// Times the store was repaired after a process died holding the lock.
    pub recoveries: u64,
}

/// Per-key statistics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyStats {
    /// Value length in bytes.
    pub value_size: u64,
    /// When the key was first put (overwrites keep it).
    pub created_at: SystemTime,
    /// When the value was last replaced.
    pub updated_at: SystemTime,
    /// Last get (or put) of the key.
    pub last_access: SystemTime,
    /// Gets that found the key.
    pub access_count: u64,
}

/// Nanoseconds since the Unix epoch.
pub(crate) fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

fn ns_to_time(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

const LOCK_TIMEOUT: Duration = Duration::from_secs(10);
/// A reader that sees the same write in progress for this long suspects a
/// dead writer and takes the lock (which repairs the store if so).
const STALL: Duration = Duration::from_millis(2);
/// Pin-record owner value while a dead owner's record is being released.
const PIN_RELEASING: u32 = u32::MAX;
/// Optimistic attempts before a reader falls back to the lock.
const OPTIMISTIC_TRIES: u32 = 64;

/// A handle on a named shared-memory store. Cheap to share between threads
/// (`Store: Send + Sync`); each process connects on its own.
pub struct Store {
    map: Mapping,
    name: String,
    layout: Layout,
    policy: FullPolicy,
    shard: usize,
}

/// Key, value (if asked for) and stats of one slot.
type SlotRead = (Vec<u8>, Vec<u8>, KeyStats);

/// A block payload location, validated against the arena.
#[derive(Clone, Copy)]
struct Entry {
    seq: u64,
    block_off: u64,
    block_size: u64,
    key_len: u64,
    val_len: u64,
}

enum Probe {
    Found(u32, Entry),
    Miss,
    Retry,
}

/// A zero-copy view of a value in shared memory. While it lives the bytes are
/// pinned: a put, delete, eviction or clear of the key moves the key to new
/// storage and frees the old block only after the guard is dropped, so the
/// slice never changes under you. [`ValueRef::is_current`] tells whether the
/// key still maps to these bytes.
pub struct ValueRef<'a> {
    store: &'a Store,
    rec: usize,
    ptr: *const u8,
    len: usize,
    slot: u32,
    seq: u64,
}

impl std::ops::Deref for ValueRef<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr/len lie inside the arena mapping (validated when the
        // guard was made) which outlives `'a`; the block is pinned by our pin
        // record, so no cooperating process writes or frees it until drop.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl AsRef<[u8]> for ValueRef<'_> {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl ValueRef<'_> {
    /// True while the key still refers to exactly these bytes (no put, delete
    /// or eviction of the key since the guard was taken).
    pub fn is_current(&self) -> bool {
        self.store.slot(self.slot).seq.load(Acquire) == self.seq
    }
}

impl std::fmt::Debug for ValueRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValueRef").field("len", &self.len).finish()
    }
}

impl Drop for ValueRef<'_> {
    fn drop(&mut self) {
        self.store.unpin(self.rec);
    }
}

/// Holds the writer mutex; unlocks on drop.
struct WriteGuard<'a> {
    store: &'a Store,
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.store.header().w.0.dirty.store(0, Release);
        }
        // SAFETY: we hold this process-shared mutex (taken by `lock`), and the
        // mapping holding it is alive for `'a`.
        unsafe { libc::pthread_mutex_unlock(self.store.header().lock.0.get()) };
    }
}

impl Store {
    // ------------------------------------------------------------------
    // connect / open / unlink
    // ------------------------------------------------------------------

    /// Creates the store `name` with an arena of `capacity` bytes and the
    /// given full policy, or opens it if it exists (then its own capacity and
    /// policy apply; see [`Store::capacity`] and [`Store::policy`]).
    pub fn connect(name: &str, capacity: u64, policy: FullPolicy) -> Result<Store> {
        Store::connect_with(name, &Options::new(capacity, policy))
    }

    /// [`Store::connect`] with all creation options.
    pub fn connect_with(name: &str, opts: &Options) -> Result<Store> {
        let layout = opts.layout()?;
        Store::attach(name, Some((layout, opts.policy)))
    }

    /// Opens an existing store; [`Error::NotFound`] if there is none.
    pub fn open(name: &str) -> Result<Store> {
        Store::attach(name, None)
    }

    /// Removes the store's name. Processes that have it open keep working on
    /// it; the memory is freed when the last one closes.
    pub fn unlink(name: &str) -> Result<()> {
        let c = shm::shm_name(name)?;
        shm::unlink(&c, name)
    }

    /// Closes this handle (same as dropping it). Outstanding `ValueRef`s
    /// borrow the store, so they are gone by then.
    pub fn close(self) {}

    fn attach(name: &str, create: Option<(Layout, FullPolicy)>) -> Result<Store> {
        let cname = shm::shm_name(name)?;
        let mode = if create.is_some() { OpenMode::CreateOrOpen } else { OpenMode::OpenOnly };
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let (fd, _created) = shm::open(
                &cname,
                name,
                match mode {
                    OpenMode::CreateOrOpen => OpenMode::CreateOrOpen,
                    OpenMode::OpenOnly => OpenMode::OpenOnly,
                },
            )?;
            shm::lock_exclusive(&fd)?;
            let size = shm::size(&fd)?;
            if size > 0 && size < 8 {
                shm::unlock(&fd);
                return Err(Error::Truncated {
                    name: name.to_string(),
                    size,
                    expected: Layout::compute(MIN_CAPACITY, 1, 1).total_size,
                });
            }
            let initialized = size >= 8 && {
                let m = Mapping::map(&fd, 8.max(size.min(4096)) as usize)?;
                // SAFETY: the mapping is at least 8 bytes and page aligned.
                let magic = unsafe { &*(m.ptr as *const AtomicU64) }.load(Acquire);
                magic != 0
            };
            if initialized {
                let r = Store::validate_and_map(&fd, name, size);
                shm::unlock(&fd);
                return r;
            }
            match create {
                Some((layout, policy)) => {
                    let r = Store::initialize(&fd, name, layout, policy);
                    shm::unlock(&fd);
                    return r;
                }
                None => {
                    shm::unlock(&fd);
                    drop(fd);
                    // Size 0: the creator may not have taken the init lock yet.
                    // Sized but no magic: its creator died while initializing.
                    if size > 0 || Instant::now() > deadline {
                        return Err(Error::NotInitialized(name.to_string()));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }

    fn initialize(fd: &shm::Fd, name: &str, layout: Layout, policy: FullPolicy) -> Result<Store> {
        shm::truncate(fd, 0)?;
        shm::truncate(fd, layout.total_size)?;
        let map = Mapping::map(fd, layout.total_size as usize)?;
        let store = Store { map, name: name.to_string(), layout, policy, shard: shard_of_pid() };
        let h = store.header();
        h.version.store(VERSION, Relaxed);
        h.header_size.store(layout.header_size as u32, Relaxed);
        h.total_size.store(layout.total_size, Relaxed);
        h.pins_off.store(layout.pins_off, Relaxed);
        h.buckets_off.store(layout.buckets_off, Relaxed);
        h.slots_off.store(layout.slots_off, Relaxed);
        h.arena_off.store(layout.arena_off, Relaxed);
        h.arena_size.store(layout.arena_size, Relaxed);
        h.slot_count.store(layout.slot_count, Relaxed);
        h.bucket_count.store(layout.bucket_count, Relaxed);
        h.max_key_len.store(layout.max_key_len, Relaxed);
        h.policy.store(policy as u32, Relaxed);
        h.created_at.store(now_ns(), Relaxed);
        h.layout_check.store(layout.check(VERSION, policy as u32), Relaxed);
        store.init_mutex()?;
        for b in 0..layout.bucket_count {
            store.bucket(b).store(NIL, Relaxed);
        }
        for i in 0..PIN_RECORDS {
            let p = store.pin(i);
            p.owner.store(0, Relaxed);
            p.block_off.store(NIL64, Relaxed);
            p.block_size.store(0, Relaxed);
        }
        for i in 0..layout.slot_count {
            let s = store.slot(i);
            s.seq.store(0, Relaxed);
            s.state.store(SLOT_FREE, Relaxed);
            s.next.store(NIL, Relaxed);
            s.lru_prev.store(NIL, Relaxed);
            s.lru_next.store(NIL, Relaxed);
        }
        // Everything else is derived: build it the way recovery does.
        store.rebuild();
        h.index_seq.0.store(0, Relaxed);
        h.magic.store(MAGIC, Release);
        Ok(store)
    }

    fn init_mutex(&self) -> Result<()> {
        let m = self.header().lock.0.get();
        // SAFETY: attr is initialized by pthread_mutexattr_init before use and
        // destroyed after; `m` points into our live mapping, and no other
        // process uses the mutex yet (we hold the init flock and magic is 0).
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            if libc::pthread_mutexattr_init(&mut attr) != 0 {
                return Err(Error::os("pthread_mutexattr_init"));
            }
            let r1 = libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
            let r2 = libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST);
            let r3 = libc::pthread_mutex_init(m, &attr);
            libc::pthread_mutexattr_destroy(&mut attr);
            for (r, op) in [
                (r1, "pthread_mutexattr_setpshared"),
                (r2, "pthread_mutexattr_setrobust"),
                (r3, "pthread_mutex_init"),
            ] {
                if r != 0 {
                    return Err(Error::os_code(op, r));
                }
            }
        }
        Ok(())
    }

    fn validate_and_map(fd: &shm::Fd, name: &str, size: u64) -> Result<Store> {
        let corrupt = |detail: String| Error::Corrupt { name: name.to_string(), detail };
        let hsize = round_up(std::mem::size_of::<Header>() as u64, ALIGN_PAGE);
        // Map what is there (at least the header page) to read the header.
        let peek = Mapping::map(fd, size.min(hsize) as usize)?;
        // SAFETY: the mapping is at least 8 bytes long and page aligned.
        let magic = unsafe { &*(peek.ptr as *const AtomicU64) }.load(Acquire);
        if magic != MAGIC {
            return Err(Error::BadMagic { name: name.to_string(), found: magic });
        }
        if size < 16 {
            return Err(Error::Truncated { name: name.to_string(), size, expected: hsize });
        }
        // SAFETY: offset 8 is inside the mapping (size >= 16) and 4-aligned.
        let version = unsafe { &*(peek.ptr.add(8) as *const AtomicU32) }.load(Relaxed);
        if version != VERSION {
            return Err(Error::VersionMismatch {
                name: name.to_string(),
                found: version,
                expected: VERSION,
            });
        }
        if size < hsize {
            return Err(Error::Truncated { name: name.to_string(), size, expected: hsize });
        }
        // SAFETY: the mapping covers a whole Header (size >= hsize), is page
        // aligned, and every Header field is an atomic, valid for any bits.
        let h = unsafe { &*(peek.ptr as *const Header) };
        let arena_size = h.arena_size.load(Relaxed);
        let slots = h.slot_count.load(Relaxed) as u64;
        let max_key = h.max_key_len.load(Relaxed);
        let policy_raw = h.policy.load(Relaxed);
        if !(MIN_CAPACITY..=MAX_CAPACITY + BLOCK_ALIGN).contains(&arena_size)
            || arena_size % BLOCK_ALIGN != 0
        {
            return Err(corrupt(format!("arena size {arena_size} out of range")));
        }
        if !(1..=MAX_SLOTS).contains(&slots) {
            return Err(corrupt(format!("slot count {slots} out of range")));
        }
        if !(1..=MAX_KEY_LIMIT).contains(&max_key) {
            return Err(corrupt(format!("key limit {max_key} out of range")));
        }
        let policy = FullPolicy::from_u32(policy_raw)
            .ok_or_else(|| corrupt(format!("unknown full policy {policy_raw}")))?;
        let layout = Layout::compute(arena_size, slots, max_key);
        let stored = Layout {
            header_size: h.header_size.load(Relaxed) as u64,
            pins_off: h.pins_off.load(Relaxed),
            buckets_off: h.buckets_off.load(Relaxed),
            slots_off: h.slots_off.load(Relaxed),
            arena_off: h.arena_off.load(Relaxed),
            arena_size,
            total_size: h.total_size.load(Relaxed),
            slot_count: slots as u32,
            bucket_count: h.bucket_count.load(Relaxed),
            max_key_len: max_key,
        };
        if stored != layout {
            return Err(corrupt(format!(
                "layout fields do not match: stored {stored:?}, expected {layout:?}"
            )));
        }
        if h.layout_check.load(Relaxed) != layout.check(VERSION, policy_raw) {
            return Err(corrupt("header checksum mismatch".to_string()));
        }
        if size < layout.total_size {
            return Err(Error::Truncated {
                name: name.to_string(),
                size,
                expected: layout.total_size,
            });
        }
        drop(peek);
        let map = Mapping::map(fd, layout.total_size as usize)?;
        Ok(Store { map, name: name.to_string(), layout, policy, shard: shard_of_pid() })
    }

    // ------------------------------------------------------------------
    // accessors into the mapping
    // ------------------------------------------------------------------

    fn header(&self) -> &Header {
        // SAFETY: the mapping starts with a Header (validated or initialized
        // at attach), is page aligned and lives as long as `self`; all of its
        // fields are atomics or the pthread mutex (in an UnsafeCell).
        unsafe { &*(self.map.ptr as *const Header) }
    }

    fn slot(&self, i: u32) -> &Slot {
        debug_assert!(i < self.layout.slot_count);
        let i = i.min(self.layout.slot_count - 1);
        // SAFETY: i < slot_count (clamped), so the slot lies inside the slot
        // array of the mapping, 128-aligned; all fields are atomics.
        unsafe {
            &*(self.map.ptr.add((self.layout.slots_off + i as u64 * 128) as usize) as *const Slot)
        }
    }

    fn bucket(&self, b: u32) -> &AtomicU32 {
        let b = b & (self.layout.bucket_count - 1);
        // SAFETY: b < bucket_count (masked), inside the bucket array, 4-aligned.
        unsafe {
            &*(self.map.ptr.add((self.layout.buckets_off + b as u64 * 4) as usize)
                as *const AtomicU32)
        }
    }

    fn pin(&self, i: usize) -> &PinRecord {
        let i = i % PIN_RECORDS;
        // SAFETY: i < PIN_RECORDS, inside the pin array, 64-aligned.
        unsafe { &*(self.map.ptr.add(self.layout.pins_off as usize + i * 64) as *const PinRecord) }
    }

    /// The arena word at byte offset `off` (must be 8-aligned and in bounds;
    /// callers check with `in_arena`).
    fn aword(&self, off: u64) -> &AtomicU64 {
        let off = (off & !7).min(self.layout.arena_size - 8);
        // SAFETY: off is 8-aligned and off + 8 <= arena_size (clamped), so
        // the word lies inside the arena of the mapping.
        unsafe { &*(self.map.ptr.add((self.layout.arena_off + off) as usize) as *const AtomicU64) }
    }

    fn arena_ptr(&self, off: u64) -> *mut u8 {
        debug_assert!(off <= self.layout.arena_size);
        // SAFETY: off <= arena_size (callers validate), so the pointer is
        // inside the mapping or one past the arena's end.
        unsafe {
            self.map.ptr.add((self.layout.arena_off + off.min(self.layout.arena_size)) as usize)
        }
    }

    fn hash(key: &[u8]) -> u64 {
        xxhash_rust::xxh3::xxh3_64(key)
    }

    /// Checks a slot's block fields against the arena; returns the entry.
    fn entry_of(&self, s: &Slot, seq: u64) -> Option<Entry> {
        let block_off = s.block_off.load(Relaxed);
        let block_size = s.block_size.load(Relaxed);
        let key_len = s.key_len.load(Relaxed) as u64;
        let val_len = s.val_len.load(Relaxed);
        let a = self.layout.arena_size;
        let ok = block_off % BLOCK_ALIGN == 0
            && block_size % BLOCK_ALIGN == 0
            && block_size >= MIN_BLOCK
            && block_off < a
            && block_size <= a - block_off
            && key_len >= 1
            && key_len <= self.layout.max_key_len as u64
            && val_len <= block_size
            && BLOCK_HDR + key_len + val_len <= block_size;
        ok.then_some(Entry { seq, block_off, block_size, key_len, val_len })
    }

    fn key_matches(&self, e: &Entry, key: &[u8]) -> bool {
        if e.key_len != key.len() as u64 {
            return false;
        }
        // SAFETY: entry_of checked the key lies inside the arena. Another
        // process may be rewriting these bytes; the caller discards the result
        // unless the slot's seqlock version is unchanged afterwards.
        let stored = unsafe {
            std::slice::from_raw_parts(self.arena_ptr(e.block_off + BLOCK_HDR), key.len())
        };
        stored == key
    }

    fn validate_key(&self, key: &[u8]) -> Result<()> {
        if key.is_empty() {
            return Err(Error::EmptyKey);
        }
        if key.len() > self.layout.max_key_len as usize {
            return Err(Error::KeyTooLong {
                len: key.len(),
                max: self.layout.max_key_len as usize,
            });
        }
        Ok(())
    }

    // ------------------------------------------------------------------
    // public info
    // ------------------------------------------------------------------

    /// The store's name as given to connect/open.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Arena capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.layout.arena_size
    }

    /// Maximum number of entries.
    pub fn max_entries(&self) -> u64 {
        self.layout.slot_count as u64
    }

    /// Longest key accepted.
    pub fn max_key_len(&self) -> usize {
        self.layout.max_key_len as usize
    }

    /// Largest key + value one entry can hold.
    pub fn max_entry_bytes(&self) -> usize {
        (self.layout.arena_size - BLOCK_HDR) as usize
    }

    /// The policy chosen when the store was created.
    pub fn policy(&self) -> FullPolicy {
        self.policy
    }

    // ------------------------------------------------------------------
    // readers
    // ------------------------------------------------------------------

    /// One optimistic probe for `key`. `Found` carries a stable (even)
    /// version that the caller must re-check after reading the block.
    fn probe(&self, key: &[u8], h: u64, locked: bool) -> Probe {
        let hd = self.header();
        let is1 = hd.index_seq.0.load(Acquire);
        if is1 & 1 == 1 && !locked {
            return Probe::Retry;
        }
        let mut idx = self.bucket(h as u32).load(Acquire);
        let mut steps = 0u32;
        while idx != NIL {
            if idx >= self.layout.slot_count || steps > self.layout.slot_count {
                return if locked { Probe::Miss } else { Probe::Retry };
            }
            let s = self.slot(idx);
            let seq = s.seq.load(Acquire);
            if seq & 1 == 1 {
                return Probe::Retry;
            }
            if s.hash.load(Relaxed) == h && s.state.load(Relaxed) == SLOT_USED {
                if let Some(e) = self.entry_of(s, seq) {
                    if self.key_matches(&e, key) {
                        fence(Acquire);
                        if s.seq.load(Relaxed) == seq {
                            return Probe::Found(idx, e);
                        }
                        return Probe::Retry;
                    }
                }
            }
            // Not our key, judged from fields read after `seq`: only if the
            // slot did not change meanwhile. A value being replaced in place
            // (fields and key bytes rewritten under an odd seq) can look like
            // another key for a moment; without this check the probe went on
            // and reported a miss for a key that never left the store.
            fence(Acquire);
            if !locked && s.seq.load(Relaxed) != seq {
                return Probe::Retry;
            }
            idx = s.next.load(Acquire);
            steps += 1;
        }
        fence(Acquire);
        if locked || hd.index_seq.0.load(Relaxed) == is1 {
            Probe::Miss
        } else {
            Probe::Retry
        }
    }

    /// Runs `f` on a stable entry for `key`: `f` reads the block and the
    /// version is re-checked afterwards; torn reads are retried. Falls back to
    /// the writer lock after many failed optimistic tries, and takes the lock
    /// (recovering a dead writer's store) when a write seems stuck.
    fn read_with<T>(&self, key: &[u8], mut f: impl FnMut(u32, &Entry) -> T) -> Result<Option<T>> {
        self.validate_key(key)?;
        let h = Store::hash(key);
        let mut tries = 0u32;
        let mut stall_start: Option<Instant> = None;
        loop {
            match self.probe(key, h, false) {
                Probe::Found(i, e) => {
                    let out = f(i, &e);
                    fence(Acquire);
                    if self.slot(i).seq.load(Relaxed) == e.seq {
                        self.touch(i);
                        return Ok(Some(out));
                    }
                }
                Probe::Miss => {
                    self.shard().misses.fetch_add(1, Relaxed);
                    return Ok(None);
                }
                Probe::Retry => {}
            }
            tries += 1;
            if tries >= OPTIMISTIC_TRIES {
                let start = *stall_start.get_or_insert_with(Instant::now);
                if start.elapsed() >= STALL || tries >= OPTIMISTIC_TRIES * 16 {
                    return self.read_locked(key, h, f);
                }
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }

    fn read_locked<T>(
        &self,
        key: &[u8],
        h: u64,
        mut f: impl FnMut(u32, &Entry) -> T,
    ) -> Result<Option<T>> {
        let _g = self.lock()?;
        match self.probe(key, h, true) {
            Probe::Found(i, e) => {
                let out = f(i, &e);
                self.touch(i);
                Ok(Some(out))
            }
            _ => {
                self.shard().misses.fetch_add(1, Relaxed);
                Ok(None)
            }
        }
    }

    fn shard(&self) -> &Shard {
        &self.header().shards[self.shard % SHARDS].0
    }

    fn touch(&self, i: u32) {
        let s = self.slot(i);
        s.last_access.store(now_ns(), Relaxed);
        s.access_count.fetch_add(1, Relaxed);
        self.shard().hits.fetch_add(1, Relaxed);
    }

    fn copy_value(&self, e: &Entry, out: &mut Vec<u8>) {
        out.clear();
        out.reserve(e.val_len as usize);
        // SAFETY: entry_of checked the value lies inside the arena; `out` has
        // capacity for val_len bytes. The bytes may be concurrently rewritten
        // by another process, in which case the seqlock check that follows
        // discards them (u8 has no invalid bit patterns).
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.arena_ptr(e.block_off + BLOCK_HDR + e.key_len),
                out.as_mut_ptr(),
                e.val_len as usize,
            );
            out.set_len(e.val_len as usize);
        }
    }

    /// Returns a copy of the value of `key`, or `None`.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        let mut v = Vec::new();
        Ok(self.get_into(key, &mut v)?.map(|_| v))
    }

    /// Copies the value of `key` into `out` (replacing its contents) and
    /// returns its length, or `None` (then `out` is unspecified). Reusing
    /// `out` avoids an allocation per get.
    pub fn get_into(&self, key: impl AsRef<[u8]>, out: &mut Vec<u8>) -> Result<Option<usize>> {
        self.read_with(key.as_ref(), |_, e| {
            self.copy_value(e, out);
            e.val_len as usize
        })
    }

    /// Copies the value of `key` into `buf` if it fits. Returns the value's
    /// length (`Some(len)` with `len > buf.len()` means nothing was copied),
    /// or `None` if the key is absent.
    pub fn get_to_slice(&self, key: impl AsRef<[u8]>, buf: &mut [u8]) -> Result<Option<usize>> {
        let ptr = buf.as_mut_ptr();
        let cap = buf.len();
        self.read_with(key.as_ref(), |_, e| {
            let n = e.val_len as usize;
            if n <= cap {
                // SAFETY: the source is inside the arena (entry_of); the
                // destination has `cap >= n` bytes. Torn copies are discarded
                // by the caller's seqlock check and redone.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        self.arena_ptr(e.block_off + BLOCK_HDR + e.key_len),
                        ptr,
                        n,
                    )
                };
            }
            n
        })
    }

    /// Whether `key` is present (does not count as a hit or miss).
    pub fn contains(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        let key = key.as_ref();
        self.validate_key(key)?;
        let h = Store::hash(key);
        for _ in 0..OPTIMISTIC_TRIES {
            match self.probe(key, h, false) {
                Probe::Found(..) => return Ok(true),
                Probe::Miss => return Ok(false),
                Probe::Retry => std::hint::spin_loop(),
            }
        }
        let _g = self.lock()?;
        Ok(matches!(self.probe(key, h, true), Probe::Found(..)))
    }

    /// A zero-copy, pinned view of the value of `key` (see [`ValueRef`]).
    pub fn get_ref(&self, key: impl AsRef<[u8]>) -> Result<Option<ValueRef<'_>>> {
        let key = key.as_ref();
        self.validate_key(key)?;
        let rec = self.claim_pin()?;
        let mut out = None;
        let r = self.read_with(key, |i, e| {
            let p = self.pin(rec);
            p.block_size.store(e.block_size, SeqCst);
            p.block_off.store(e.block_off, SeqCst);
            // The full fence orders the pin before read_with's version
            // re-check (store-load order), which makes the record a hazard
            // pointer: a writer that unlinks the block after our check sees
            // the pin (its own version store and pin load are SeqCst too).
            fence(SeqCst);
            out = Some((i, *e));
        });
        match r {
            Ok(Some(())) => {
                let (i, e) = out.expect("set on success");
                Ok(Some(ValueRef {
                    store: self,
                    rec,
                    ptr: self.arena_ptr(e.block_off + BLOCK_HDR + e.key_len),
                    len: e.val_len as usize,
                    slot: i,
                    seq: e.seq,
                }))
            }
            other => {
                self.unpin(rec);
                other.map(|_| None)
            }
        }
    }

    fn claim_pin(&self) -> Result<usize> {
        let pid = current_pid();
        let h = self.header();
        let start = (pid as usize).wrapping_mul(31) ^ thread_salt();
        for k in 0..PIN_RECORDS {
            let i = (start + k) % PIN_RECORDS;
            let p = self.pin(i);
            if p.owner.load(Relaxed) == 0
                && p.owner.compare_exchange(0, pid, SeqCst, Relaxed).is_ok()
            {
                p.block_off.store(NIL64, SeqCst);
                h.pin_bitmap.0[i / 64].fetch_or(1 << (i % 64), SeqCst);
                return Ok(i);
            }
        }
        // Maybe dead processes hold records: reclaim them and try once more.
        for i in 0..PIN_RECORDS {
            let p = self.pin(i);
            let o = p.owner.load(Relaxed);
            if o != 0 && o != PIN_RELEASING && !pid_alive(o) {
                self.release_dead_pin(i, o);
            }
        }
        for i in 0..PIN_RECORDS {
            let p = self.pin(i);
            if p.owner.compare_exchange(0, pid, SeqCst, Relaxed).is_ok() {
                p.block_off.store(NIL64, SeqCst);
                h.pin_bitmap.0[i / 64].fetch_or(1 << (i % 64), SeqCst);
                return Ok(i);
            }
        }
        Err(Error::TooManyPins(PIN_RECORDS))
    }

    fn release_pin_record(&self, i: usize) {
        let p = self.pin(i);
        p.block_off.store(NIL64, SeqCst);
        self.header().pin_bitmap.0[i / 64].fetch_and(!(1 << (i % 64)), SeqCst);
        p.owner.store(0, SeqCst);
    }

    fn unpin(&self, rec: usize) {
        self.release_pin_record(rec);
    }

    /// Releases record `i` if it still belongs to `dead` (a process that no
    /// longer exists); a no-op if someone else released or re-claimed it.
    fn release_dead_pin(&self, i: usize, dead: u32) {
        let p = self.pin(i);
        if p.owner.compare_exchange(dead, PIN_RELEASING, SeqCst, Relaxed).is_ok() {
            p.block_off.store(NIL64, SeqCst);
            self.header().pin_bitmap.0[i / 64].fetch_and(!(1 << (i % 64)), SeqCst);
            p.owner.store(0, SeqCst);
        }
    }

    /// Whether a live process pins the block at `off` (dead pins are released).
    fn is_pinned(&self, off: u64) -> bool {
        let h = self.header();
        for w in 0..PIN_RECORDS / 64 {
            let mut bits = h.pin_bitmap.0[w].load(SeqCst);
            while bits != 0 {
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let i = w * 64 + b;
                let p = self.pin(i);
                if p.block_off.load(SeqCst) == off {
                    let o = p.owner.load(SeqCst);
                    if o == 0 || o == PIN_RELEASING {
                        continue; // being released
                    }
                    if pid_alive(o) {
                        return true;
                    }
                    self.release_dead_pin(i, o);
                }
            }
        }
        false
    }

    /// Keys of all entries (a snapshot; concurrent writes may or may not show).
    pub fn keys(&self) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for i in 0..self.layout.slot_count {
            if let Some(k) = self.read_slot(i, false)? {
                out.push(k.0);
            }
        }
        Ok(out)
    }

    /// Iterates over (key, value) copies of all entries, slot by slot.
    pub fn iter(&self) -> Iter<'_> {
        Iter { store: self, next: 0 }
    }

    /// Keys with their statistics (for analytics).
    pub fn entries(&self) -> Result<Vec<(Vec<u8>, KeyStats)>> {
        let mut out = Vec::new();
        for i in 0..self.layout.slot_count {
            if let Some((k, _, st)) = self.read_slot(i, false)? {
                out.push((k, st));
            }
        }
        Ok(out)
    }

    /// Reads slot `i`'s key (and value if asked) consistently.
    fn read_slot(&self, i: u32, with_value: bool) -> Result<Option<SlotRead>> {
        for _ in 0..OPTIMISTIC_TRIES {
            let s = self.slot(i);
            let seq = s.seq.load(Acquire);
            if seq & 1 == 1 {
                std::thread::yield_now();
                continue;
            }
            if s.state.load(Relaxed) != SLOT_USED {
                fence(Acquire);
                if s.seq.load(Relaxed) == seq {
                    return Ok(None);
                }
                continue;
            }
            let Some(e) = self.entry_of(s, seq) else {
                fence(Acquire);
                if s.seq.load(Relaxed) == seq {
                    return Ok(None); // corrupt slot: skipped (repaired by the next recovery)
                }
                continue;
            };
            // SAFETY: entry_of checked the key is inside the arena; a torn
            // copy is discarded by the version check below.
            let key = unsafe {
                std::slice::from_raw_parts(
                    self.arena_ptr(e.block_off + BLOCK_HDR),
                    e.key_len as usize,
                )
            }
            .to_vec();
            let mut val = Vec::new();
            if with_value {
                self.copy_value(&e, &mut val);
            }
            let st = self.key_stats_of(s, &e);
            fence(Acquire);
            if s.seq.load(Relaxed) == seq {
                return Ok(Some((key, val, st)));
            }
        }
        // Persistently changing or a stuck writer: read under the lock.
        let _g = self.lock()?;
        let s = self.slot(i);
        let seq = s.seq.load(Acquire);
        if s.state.load(Relaxed) != SLOT_USED {
            return Ok(None);
        }
        let Some(e) = self.entry_of(s, seq) else { return Ok(None) };
        // SAFETY: as above; under the lock no writer changes the block.
        let key = unsafe {
            std::slice::from_raw_parts(self.arena_ptr(e.block_off + BLOCK_HDR), e.key_len as usize)
        }
        .to_vec();
        let mut val = Vec::new();
        if with_value {
            self.copy_value(&e, &mut val);
        }
        let st = self.key_stats_of(s, &e);
        Ok(Some((key, val, st)))
    }

    fn key_stats_of(&self, s: &Slot, e: &Entry) -> KeyStats {
        KeyStats {
            value_size: e.val_len,
            created_at: ns_to_time(s.created_at.load(Relaxed)),
            updated_at: ns_to_time(s.updated_at.load(Relaxed)),
            last_access: ns_to_time(s.last_access.load(Relaxed)),
            access_count: s.access_count.load(Relaxed),
        }
    }

    /// Statistics of one key, or `None`. Does not count as an access.
    pub fn key_stats(&self, key: impl AsRef<[u8]>) -> Result<Option<KeyStats>> {
        let key = key.as_ref();
        self.validate_key(key)?;
        let h = Store::hash(key);
        for _ in 0..OPTIMISTIC_TRIES {
            match self.probe(key, h, false) {
                Probe::Found(i, e) => {
                    let s = self.slot(i);
                    let st = self.key_stats_of(s, &e);
                    fence(Acquire);
                    if s.seq.load(Relaxed) == e.seq {
                        return Ok(Some(st));
                    }
                }
                Probe::Miss => return Ok(None),
                Probe::Retry => std::hint::spin_loop(),
            }
        }
        let _g = self.lock()?;
        Ok(match self.probe(key, h, true) {
            Probe::Found(i, e) => Some(self.key_stats_of(self.slot(i), &e)),
            _ => None,
        })
    }

    /// Store-wide statistics.
    pub fn stats(&self) -> StoreStats {
        let h = self.header();
        let w = &h.w.0;
        let (mut hits, mut misses) = (0, 0);
        for s in &h.shards {
            hits = s.0.hits.load(Relaxed).wrapping_add(hits);
            misses = s.0.misses.load(Relaxed).wrapping_add(misses);
        }
        StoreStats {
            entries: w.entries.load(Relaxed),
            max_entries: self.layout.slot_count as u64,
            capacity_bytes: self.layout.arena_size,
            bytes_used: w.bytes_used.load(Relaxed),
            data_bytes: w.data_bytes.load(Relaxed),
            hits,
            misses,
            evictions: w.evictions.load(Relaxed),
            puts: w.puts.load(Relaxed),
            deletes: w.deletes.load(Relaxed),
            refusals: w.refusals.load(Relaxed),
            recoveries: w.recoveries.load(Relaxed),
        }
    }

    // ------------------------------------------------------------------
    // writer lock and recovery
    // ------------------------------------------------------------------

    fn lock(&self) -> Result<WriteGuard<'_>> {
        Ok(self.lock_inner(true)?.expect("a waiting lock returns a guard"))
    }

    /// Takes the writer lock; with `wait == false` returns `None` instead of
    /// waiting when another holder has it.
    fn lock_inner(&self, wait: bool) -> Result<Option<WriteGuard<'_>>> {
        let m = self.header().lock.0.get();
        // SAFETY: `m` points to the process-shared robust mutex initialized at
        // creation, inside the mapping that outlives the guard.
        let mut r = unsafe { libc::pthread_mutex_trylock(m) };
        if r == libc::EBUSY {
            if !wait {
                return Ok(None);
            }
            let deadline = SystemTime::now() + LOCK_TIMEOUT;
            let d = deadline.duration_since(UNIX_EPOCH).unwrap_or_default();
            let ts = libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            };
            // SAFETY: as above; `ts` is a valid absolute CLOCK_REALTIME time.
            r = unsafe { libc::pthread_mutex_timedlock(m, &ts) };
        }
        Ok(Some(match r {
            0 => {
                let w = &self.header().w.0;
                if w.dirty.load(Acquire) != 0 {
                    // The previous holder unwound mid-change: repair.
                    self.rebuild();
                    w.recoveries.fetch_add(1, Relaxed);
                }
                w.dirty.store(1, Relaxed);
                WriteGuard { store: self }
            }
            libc::EOWNERDEAD => {
                // A process died holding the lock, possibly mid-write. We own
                // the lock now: repair everything derivable, then mark the
                // mutex consistent so it stays usable.
                self.rebuild();
                self.header().w.0.recoveries.fetch_add(1, Relaxed);
                // SAFETY: we hold the mutex after EOWNERDEAD, which is the
                // precondition of pthread_mutex_consistent.
                let c = unsafe { libc::pthread_mutex_consistent(m) };
                if c != 0 {
                    // SAFETY: we hold the mutex.
                    unsafe { libc::pthread_mutex_unlock(m) };
                    return Err(Error::os_code("pthread_mutex_consistent", c));
                }
                self.header().w.0.dirty.store(1, Relaxed);
                WriteGuard { store: self }
            }
            libc::ETIMEDOUT => return Err(Error::LockTimeout(LOCK_TIMEOUT)),
            libc::ENOTRECOVERABLE => return Err(Error::NotRecoverable),
            libc::EDEADLK => {
                return Err(Error::Corrupt {
                    name: self.name.clone(),
                    detail: "writer lock already held by this thread (re-entrant call)".into(),
                })
            }
            e => return Err(Error::os_code("pthread_mutex_timedlock", e)),
        }))
    }

    /// Rebuilds every derived structure (hash chains, LRU list, free-slot
    /// list, allocator, counters, retired blocks) from the ground truth: the
    /// slots and the live pin records. Rolls the journal forward first; drops
    /// slots whose write was cut off or whose fields are invalid. Must hold
    /// the lock (or be initializing).
    fn rebuild(&self) {
        let h = self.header();
        let w = &h.w.0;
        let n = self.layout.slot_count;
        // Odd while we work (a dead writer may have left it odd already).
        let iseq = h.index_seq.0.load(Relaxed) | 1;
        h.index_seq.0.store(iseq, SeqCst);
        let bump_free = |s: &Slot| {
            let q = s.seq.load(Relaxed);
            s.seq.store(q | 1, SeqCst); // odd
            s.state.store(SLOT_FREE, Relaxed);
            s.seq.store((q | 1).wrapping_add(1), SeqCst); // even, > q
        };
        // 1. journal: roll the interrupted publish forward.
        let j = &w.journal;
        if j.active.load(Acquire) == 1 {
            let i = j.slot.load(Relaxed);
            if i < n {
                let s = self.slot(i);
                let q = s.seq.load(Relaxed);
                s.seq.store(q | 1, SeqCst);
                s.hash.store(j.hash.load(Relaxed), Relaxed);
                s.block_off.store(j.block_off.load(Relaxed), Relaxed);
                s.block_size.store(j.block_size.load(Relaxed), Relaxed);
                s.key_len.store(j.key_len.load(Relaxed), Relaxed);
                s.val_len.store(j.val_len.load(Relaxed), Relaxed);
                s.state.store(j.state.load(Relaxed), Relaxed);
                s.created_at.store(j.created_at.load(Relaxed), Relaxed);
                s.lru_stamp.store(j.stamp.load(Relaxed), Relaxed);
                s.updated_at.store(j.stamp.load(Relaxed), Relaxed);
                s.seq.store((q | 1).wrapping_add(1), SeqCst);
            }
            j.active.store(0, Release);
        }
        // 2. validate slots; collect used blocks.
        let mut used: Vec<(u64, u64, u32)> = Vec::new(); // (off, size, slot or NIL)
        for i in 0..n {
            let s = self.slot(i);
            let q = s.seq.load(Relaxed);
            if q & 1 == 1 {
                bump_free(s); // a delete or publish cut off: the delete wins
                continue;
            }
            if s.state.load(Relaxed) != SLOT_USED {
                if s.state.load(Relaxed) != SLOT_FREE {
                    bump_free(s);
                }
                continue;
            }
            let valid = self.entry_of(s, q).filter(|e| {
                // SAFETY: entry_of checked the key is inside the arena; we
                // hold the lock, so no writer changes it.
                let key = unsafe {
                    std::slice::from_raw_parts(
                        self.arena_ptr(e.block_off + BLOCK_HDR),
                        e.key_len as usize,
                    )
                };
                Store::hash(key) == s.hash.load(Relaxed)
            });
            match valid {
                Some(e) => used.push((e.block_off, e.block_size, i)),
                None => bump_free(s),
            }
        }
        used.sort_unstable();
        let mut kept: Vec<(u64, u64, u32)> = Vec::with_capacity(used.len());
        for b in used {
            if let Some(last) = kept.last() {
                if b.0 < last.0 + last.1 {
                    bump_free(self.slot(b.2)); // overlapping blocks: drop the later
                    continue;
                }
            }
            kept.push(b);
        }
        // 3. live pins on blocks no slot holds become retired blocks.
        let mut retired: Vec<(u64, u64)> = Vec::new();
        for i in 0..PIN_RECORDS {
            let p = self.pin(i);
            let o = p.owner.load(SeqCst);
            if o == 0 || o == PIN_RELEASING {
                continue;
            }
            if !pid_alive(o) {
                self.release_dead_pin(i, o);
                continue;
            }
            let (off, size) = (p.block_off.load(SeqCst), p.block_size.load(SeqCst));
            if off == NIL64
                || off % BLOCK_ALIGN != 0
                || size % BLOCK_ALIGN != 0
                || size < MIN_BLOCK
                || off >= self.layout.arena_size
                || size > self.layout.arena_size - off
            {
                continue;
            }
            let pos = kept.partition_point(|b| b.0 < off);
            let overlaps_next = pos < kept.len() && kept[pos].0 < off + size;
            let overlaps_prev = pos > 0 && kept[pos - 1].0 + kept[pos - 1].1 > off;
            if kept.get(pos).map(|b| b.0) == Some(off) || overlaps_next || overlaps_prev {
                continue; // still referenced by its slot, or not a real block
            }
            if retired.iter().all(|r| r.0 + r.1 <= off || off + size <= r.0) {
                retired.push((off, size));
            }
        }
        let mut all: Vec<(u64, u64, u32)> = kept;
        all.extend(retired.iter().map(|&(o, s)| (o, s, NIL)));
        all.sort_unstable();
        // 4. lay the arena out again: used blocks as they are, gaps free.
        let alloc = &h.alloc.0;
        alloc.fl_bitmap.store(0, Relaxed);
        for f in 0..FL_COUNT {
            alloc.sl_bitmap[f].store(0, Relaxed);
            for s in 0..SL_COUNT {
                alloc.heads[f][s].store(NIL64, Relaxed);
            }
        }
        let arena = self.layout.arena_size;
        let mut final_blocks: Vec<(u64, u64, u32)> = Vec::with_capacity(all.len());
        let mut cursor = 0u64;
        for b in all {
            let gap = b.0 - cursor;
            if gap != 0 && gap < MIN_BLOCK {
                // Cannot happen from a consistent state; drop the block.
                if b.2 != NIL {
                    bump_free(self.slot(b.2));
                }
                continue;
            }
            final_blocks.push(b);
            cursor = b.0 + b.1;
        }
        while let Some(last) = final_blocks.last() {
            let tail = arena - (last.0 + last.1);
            if tail == 0 || tail >= MIN_BLOCK {
                break;
            }
            if last.2 != NIL {
                bump_free(self.slot(last.2));
            }
            final_blocks.pop();
        }
        let mut cursor = 0u64;
        let mut prev = 0u64;
        let mut bytes_used = 0u64;
        for &(off, size, _) in &final_blocks {
            if off > cursor {
                self.set_block(cursor, off - cursor, false, prev);
                self.insert_free(cursor, off - cursor);
                prev = off - cursor;
            }
            self.set_block(off, size, true, prev);
            bytes_used += size;
            prev = size;
            cursor = off + size;
        }
        if cursor < arena {
            self.set_block(cursor, arena - cursor, false, prev);
            self.insert_free(cursor, arena - cursor);
        }
        w.retired_count.store(0, Relaxed);
        for &(off, _, s) in &final_blocks {
            if s == NIL {
                let c = w.retired_count.load(Relaxed) as usize;
                h.retired.0[c].store(off, Relaxed);
                w.retired_count.store(c as u32 + 1, Relaxed);
            }
        }
        // 5. hash chains, LRU, free-slot list, counters.
        for b in 0..self.layout.bucket_count {
            self.bucket(b).store(NIL, SeqCst);
        }
        let mut live: Vec<(u64, u32)> = final_blocks
            .iter()
            .filter(|b| b.2 != NIL)
            .map(|b| (self.slot(b.2).lru_stamp.load(Relaxed), b.2))
            .collect();
        live.sort_unstable();
        w.lru_head.store(NIL, Relaxed);
        w.lru_tail.store(NIL, Relaxed);
        let mut is_live = vec![false; n as usize];
        let (mut entries, mut data_bytes) = (0u64, 0u64);
        for &(_, i) in &live {
            let s = self.slot(i);
            // Duplicate key (corruption only): keep the newer entry.
            if let Some(dup) = self.find_locked_slot(i) {
                let (a, b) = (self.slot(dup).updated_at.load(Relaxed), s.updated_at.load(Relaxed));
                let loser = if a <= b { dup } else { i };
                if loser == dup {
                    self.chain_remove_raw(dup);
                    self.lru_remove(dup);
                    is_live[dup as usize] = false;
                    entries -= 1;
                    data_bytes -= self.slot(dup).key_len.load(Relaxed) as u64
                        + self.slot(dup).val_len.load(Relaxed);
                    let (o, sz) = (
                        self.slot(dup).block_off.load(Relaxed),
                        self.slot(dup).block_size.load(Relaxed),
                    );
                    bump_free(self.slot(dup));
                    bytes_used -= sz;
                    let _ = self.free_block(o, sz);
                } else {
                    let (o, sz) = (s.block_off.load(Relaxed), s.block_size.load(Relaxed));
                    bump_free(s);
                    bytes_used -= sz;
                    let _ = self.free_block(o, sz);
                    continue;
                }
            }
            let b = s.hash.load(Relaxed) as u32 & (self.layout.bucket_count - 1);
            s.next.store(self.bucket(b).load(Relaxed), Relaxed);
            self.bucket(b).store(i, SeqCst);
            self.lru_push_head(i);
            is_live[i as usize] = true;
            entries += 1;
            data_bytes += s.key_len.load(Relaxed) as u64 + s.val_len.load(Relaxed);
        }
        w.free_slot_head.store(NIL, Relaxed);
        for i in (0..n).rev() {
            if !is_live[i as usize] {
                let s = self.slot(i);
                if s.state.load(Relaxed) != SLOT_FREE {
                    bump_free(s);
                }
                s.lru_next.store(w.free_slot_head.load(Relaxed), Relaxed);
                w.free_slot_head.store(i, Relaxed);
            }
        }
        w.entries.store(entries, Relaxed);
        w.data_bytes.store(data_bytes, Relaxed);
        w.bytes_used.store(bytes_used, Relaxed);
        h.index_seq.0.store(iseq.wrapping_add(1), SeqCst); // even again
    }

    /// Another live slot with the same key as slot `i`, in i's chain (rebuild only).
    fn find_locked_slot(&self, i: u32) -> Option<u32> {
        let s = self.slot(i);
        let e = self.entry_of(s, 0)?;
        // SAFETY: entry_of validated the key range; we hold the lock.
        let key = unsafe {
            std::slice::from_raw_parts(self.arena_ptr(e.block_off + BLOCK_HDR), e.key_len as usize)
        }
        .to_vec();
        self.find_locked(&key, s.hash.load(Relaxed)).ok().flatten().filter(|&d| d != i)
    }

    // ------------------------------------------------------------------
    // allocator (TLSF with boundary tags; lock held)
    // ------------------------------------------------------------------

    fn corrupt(&self, what: &str) -> Error {
        Error::Corrupt { name: self.name.clone(), detail: what.to_string() }
    }

    fn in_arena(&self, off: u64) -> bool {
        off % BLOCK_ALIGN == 0 && off <= self.layout.arena_size - MIN_BLOCK
    }

    fn set_block(&self, off: u64, size: u64, used: bool, prev: u64) {
        self.aword(off).store(size | used as u64, Relaxed);
        self.aword(off + 8).store(prev, Relaxed);
    }

    fn block_size_at(&self, off: u64) -> u64 {
        self.aword(off).load(Relaxed) & !(BLOCK_ALIGN - 1)
    }

    fn block_used_at(&self, off: u64) -> bool {
        self.aword(off).load(Relaxed) & 1 == 1
    }

    fn insert_free(&self, off: u64, size: u64) {
        let a = &self.header().alloc.0;
        let (f, s) = mapping(size);
        let head = a.heads[f][s].load(Relaxed);
        self.aword(off + 16).store(head, Relaxed);
        self.aword(off + 24).store(NIL64, Relaxed);
        if head != NIL64 && self.in_arena(head) {
            self.aword(head + 24).store(off, Relaxed);
        }
        a.heads[f][s].store(off, Relaxed);
        a.fl_bitmap.fetch_or(1 << f, Relaxed);
        a.sl_bitmap[f].fetch_or(1 << s, Relaxed);
    }

    fn remove_free(&self, off: u64, size: u64) -> Result<()> {
        let a = &self.header().alloc.0;
        let (f, s) = mapping(size);
        let next = self.aword(off + 16).load(Relaxed);
        let prev = self.aword(off + 24).load(Relaxed);
        if (next != NIL64 && !self.in_arena(next)) || (prev != NIL64 && !self.in_arena(prev)) {
            return Err(self.corrupt("free-list link out of the arena"));
        }
        if prev != NIL64 {
            self.aword(prev + 16).store(next, Relaxed);
        } else {
            if a.heads[f][s].load(Relaxed) != off {
                return Err(self.corrupt("free block is not at the head of its list"));
            }
            a.heads[f][s].store(next, Relaxed);
            if next == NIL64 {
                let m = a.sl_bitmap[f].fetch_and(!(1 << s), Relaxed) & !(1 << s);
                if m == 0 {
                    a.fl_bitmap.fetch_and(!(1 << f), Relaxed);
                }
            }
        }
        if next != NIL64 {
            self.aword(next + 24).store(prev, Relaxed);
        }
        Ok(())
    }

    /// Allocates a block of at least `need` bytes (multiple of 16, >= 32);
    /// returns its offset and actual size, or `None` if no free block fits.
    fn alloc_block(&self, need: u64) -> Result<Option<(u64, u64)>> {
        let a = &self.header().alloc.0;
        let (mut f, s) = mapping_search(need);
        if f >= FL_COUNT {
            return Ok(None);
        }
        let mut sl_map = a.sl_bitmap[f].load(Relaxed) & (!0u64 << s);
        if sl_map == 0 {
            let fl_map =
                if f + 1 >= 64 { 0 } else { a.fl_bitmap.load(Relaxed) & (!0u64 << (f + 1)) };
            if fl_map == 0 {
                return Ok(None);
            }
            f = fl_map.trailing_zeros() as usize;
            if f >= FL_COUNT {
                return Err(self.corrupt("allocator bitmap out of range"));
            }
            sl_map = a.sl_bitmap[f].load(Relaxed);
        }
        if sl_map == 0 {
            return Err(self.corrupt("allocator bitmaps disagree"));
        }
        let s = sl_map.trailing_zeros() as usize;
        if s >= SL_COUNT {
            return Err(self.corrupt("allocator bitmap out of range"));
        }
        let off = a.heads[f][s].load(Relaxed);
        if !self.in_arena(off) || self.block_used_at(off) {
            return Err(self.corrupt("free-list head is not a free block"));
        }
        let size = self.block_size_at(off);
        if size < need || size > self.layout.arena_size - off || mapping(size) != (f, s) {
            return Err(self.corrupt("free block size does not match its list"));
        }
        self.remove_free(off, size)?;
        let prev = self.aword(off + 8).load(Relaxed);
        let mut size = size;
        if size - need >= MIN_BLOCK {
            let rem = off + need;
            let rsize = size - need;
            self.set_block(rem, rsize, false, need);
            let after = rem + rsize;
            if after < self.layout.arena_size {
                self.aword(after + 8).store(rsize, Relaxed);
            }
            self.insert_free(rem, rsize);
            size = need;
        }
        self.set_block(off, size, true, prev);
        self.header().w.0.bytes_used.fetch_add(size, Relaxed);
        Ok(Some((off, size)))
    }

    /// Frees the block at `off` of `size`, coalescing with free neighbours.
    fn free_block(&self, off: u64, size: u64) -> Result<()> {
        let arena = self.layout.arena_size;
        if !self.in_arena(off)
            || !self.block_used_at(off)
            || self.block_size_at(off) != size
            || size < MIN_BLOCK
            || size > arena - off
        {
            return Err(self.corrupt("freeing a block that is not allocated"));
        }
        let w = &self.header().w.0;
        w.bytes_used.fetch_sub(size.min(w.bytes_used.load(Relaxed)), Relaxed);
        let (mut off, mut size) = (off, size);
        let next = off + size;
        if next < arena && self.in_arena(next) && !self.block_used_at(next) {
            let nsize = self.block_size_at(next);
            if nsize < MIN_BLOCK || nsize > arena - next {
                return Err(self.corrupt("neighbour block size out of range"));
            }
            self.remove_free(next, nsize)?;
            size += nsize;
        }
        let prev_size = self.aword(off + 8).load(Relaxed);
        if prev_size != 0 {
            if prev_size > off || prev_size % BLOCK_ALIGN != 0 {
                return Err(self.corrupt("previous-block size out of range"));
            }
            let p = off - prev_size;
            if self.block_size_at(p) != prev_size {
                return Err(self.corrupt("boundary tags disagree"));
            }
            if !self.block_used_at(p) {
                self.remove_free(p, prev_size)?;
                off = p;
                size += prev_size;
            }
        }
        let prev = self.aword(off + 8).load(Relaxed);
        self.set_block(off, size, false, prev);
        if off + size < arena {
            self.aword(off + size + 8).store(size, Relaxed);
        }
        self.insert_free(off, size);
        Ok(())
    }

    /// Frees a block no slot refers to any more, or retires it while pinned.
    fn free_or_retire(&self, off: u64, size: u64) -> Result<()> {
        if self.is_pinned(off) {
            let w = &self.header().w.0;
            let c = w.retired_count.load(Relaxed) as usize;
            if c < RETIRED_MAX {
                self.header().retired.0[c].store(off, Relaxed);
                w.retired_count.store(c as u32 + 1, Relaxed);
            } else {
                w.leaked_blocks.fetch_add(1, Relaxed);
            }
            return Ok(());
        }
        self.free_block(off, size)
    }

    /// Frees retired blocks whose pins are gone.
    fn reclaim_retired(&self) -> Result<()> {
        let h = self.header();
        let w = &h.w.0;
        let mut c = (w.retired_count.load(Relaxed) as usize).min(RETIRED_MAX);
        let mut i = 0;
        while i < c {
            let off = h.retired.0[i].load(Relaxed);
            if self.is_pinned(off) {
                i += 1;
                continue;
            }
            if !self.in_arena(off) {
                return Err(self.corrupt("retired block out of the arena"));
            }
            let size = self.block_size_at(off);
            self.free_block(off, size)?;
            c -= 1;
            h.retired.0[i].store(h.retired.0[c].load(Relaxed), Relaxed);
            w.retired_count.store(c as u32, Relaxed);
        }
        Ok(())
    }

    // ------------------------------------------------------------------
    // slots, chains, LRU (lock held)
    // ------------------------------------------------------------------

    /// The slot holding `key`, under the lock.
    fn find_locked(&self, key: &[u8], h: u64) -> Result<Option<u32>> {
        let mut idx = self.bucket(h as u32).load(Relaxed);
        let mut steps = 0;
        while idx != NIL {
            if idx >= self.layout.slot_count || steps > self.layout.slot_count {
                return Err(self.corrupt("hash chain out of range or cyclic"));
            }
            let s = self.slot(idx);
            if s.hash.load(Relaxed) == h && s.state.load(Relaxed) == SLOT_USED {
                if let Some(e) = self.entry_of(s, 0) {
                    if self.key_matches(&e, key) {
                        return Ok(Some(idx));
                    }
                }
            }
            idx = s.next.load(Relaxed);
            steps += 1;
        }
        Ok(None)
    }

    fn chain_insert(&self, i: u32) {
        let h = self.header();
        let s = self.slot(i);
        let b = self.bucket(s.hash.load(Relaxed) as u32);
        h.index_seq.0.fetch_add(1, SeqCst);
        s.next.store(b.load(Relaxed), Release);
        b.store(i, Release);
        h.index_seq.0.fetch_add(1, SeqCst);
    }

    fn chain_remove(&self, i: u32) -> Result<()> {
        let h = self.header();
        h.index_seq.0.fetch_add(1, SeqCst);
        let r = self.chain_remove_inner(i);
        h.index_seq.0.fetch_add(1, SeqCst);
        r
    }

    fn chain_remove_raw(&self, i: u32) {
        let _ = self.chain_remove_inner(i);
    }

    fn chain_remove_inner(&self, i: u32) -> Result<()> {
        let s = self.slot(i);
        let b = self.bucket(s.hash.load(Relaxed) as u32);
        let mut cur = b.load(Relaxed);
        if cur == i {
            b.store(s.next.load(Relaxed), Release);
            return Ok(());
        }
        let mut steps = 0;
        while cur != NIL {
            if cur >= self.layout.slot_count || steps > self.layout.slot_count {
                return Err(self.corrupt("hash chain out of range or cyclic"));
            }
            let c = self.slot(cur);
            let nx = c.next.load(Relaxed);
            if nx == i {
                c.next.store(s.next.load(Relaxed), Release);
                return Ok(());
            }
            cur = nx;
            steps += 1;
        }
        Err(self.corrupt("entry missing from its hash chain"))
    }

    fn lru_push_head(&self, i: u32) {
        let w = &self.header().w.0;
        let s = self.slot(i);
        let head = w.lru_head.load(Relaxed);
        s.lru_prev.store(NIL, Relaxed);
        s.lru_next.store(head, Relaxed);
        if head != NIL && head < self.layout.slot_count {
            self.slot(head).lru_prev.store(i, Relaxed);
        } else {
            w.lru_tail.store(i, Relaxed);
        }
        w.lru_head.store(i, Relaxed);
    }

    fn lru_remove(&self, i: u32) {
        let w = &self.header().w.0;
        let s = self.slot(i);
        let (p, nx) = (s.lru_prev.load(Relaxed), s.lru_next.load(Relaxed));
        if p != NIL && p < self.layout.slot_count {
            self.slot(p).lru_next.store(nx, Relaxed);
        } else if w.lru_head.load(Relaxed) == i {
            w.lru_head.store(nx, Relaxed);
        }
        if nx != NIL && nx < self.layout.slot_count {
            self.slot(nx).lru_prev.store(p, Relaxed);
        } else if w.lru_tail.load(Relaxed) == i {
            w.lru_tail.store(p, Relaxed);
        }
        s.lru_prev.store(NIL, Relaxed);
        s.lru_next.store(NIL, Relaxed);
    }

    fn slot_alloc(&self) -> Result<Option<u32>> {
        let w = &self.header().w.0;
        let i = w.free_slot_head.load(Relaxed);
        if i == NIL {
            return Ok(None);
        }
        if i >= self.layout.slot_count || self.slot(i).state.load(Relaxed) != SLOT_FREE {
            return Err(self.corrupt("free-slot list is broken"));
        }
        w.free_slot_head.store(self.slot(i).lru_next.load(Relaxed), Relaxed);
        Ok(Some(i))
    }

    /// Deletes the entry in slot `i` (lock held).
    fn remove_entry(&self, i: u32) -> Result<()> {
        let h = self.header();
        let w = &h.w.0;
        let s = self.slot(i);
        let (off, size) = (s.block_off.load(Relaxed), s.block_size.load(Relaxed));
        let data = (s.key_len.load(Relaxed) as u64).saturating_add(s.val_len.load(Relaxed));
        let q = s.seq.load(Relaxed);
        s.seq.store(q.wrapping_add(1), SeqCst);
        s.state.store(SLOT_FREE, Relaxed);
        s.seq.store(q.wrapping_add(2), SeqCst);
        self.chain_remove(i)?;
        self.lru_remove(i);
        s.lru_next.store(w.free_slot_head.load(Relaxed), Relaxed);
        w.free_slot_head.store(i, Relaxed);
        w.entries.fetch_sub(1, Relaxed);
        w.data_bytes.fetch_sub(data.min(w.data_bytes.load(Relaxed)), Relaxed);
        self.free_or_retire(off, size)
    }

    /// Evicts the least recently used entry; false if there is none.
    fn evict_one(&self) -> Result<bool> {
        let w = &self.header().w.0;
        let mut promotions = 0u32;
        loop {
            let t = w.lru_tail.load(Relaxed);
            if t == NIL {
                return Ok(false);
            }
            if t >= self.layout.slot_count {
                return Err(self.corrupt("LRU list out of range"));
            }
            let s = self.slot(t);
            let la = s.last_access.load(Relaxed);
            if promotions <= self.layout.slot_count && la > s.lru_stamp.load(Relaxed) {
                // Read since it took its position: it is not the LRU entry.
                self.lru_remove(t);
                s.lru_stamp.store(la, Relaxed);
                self.lru_push_head_sorted(t, la);
                promotions += 1;
                continue;
            }
            self.remove_entry(t)?;
            w.evictions.fetch_add(1, Relaxed);
            return Ok(true);
        }
    }

    /// Inserts `i` with stamp `la` so that the list stays ordered by stamp
    /// (walking from the head; promoted entries are usually recent).
    fn lru_push_head_sorted(&self, i: u32, la: u64) {
        let w = &self.header().w.0;
        let mut cur = w.lru_head.load(Relaxed);
        let mut steps = 0;
        // Find the first node (from the head) whose stamp <= la.
        while cur != NIL && cur < self.layout.slot_count && steps < 64 {
            if self.slot(cur).lru_stamp.load(Relaxed) <= la {
                break;
            }
            cur = self.slot(cur).lru_next.load(Relaxed);
            steps += 1;
        }
        if cur == w.lru_head.load(Relaxed)
            || steps >= 64
            || cur >= self.layout.slot_count && cur != NIL
        {
            self.lru_push_head(i);
            return;
        }
        let s = self.slot(i);
        if cur == NIL {
            // Append at the tail.
            let t = w.lru_tail.load(Relaxed);
            s.lru_prev.store(t, Relaxed);
            s.lru_next.store(NIL, Relaxed);
            if t != NIL {
                self.slot(t).lru_next.store(i, Relaxed);
            }
            w.lru_tail.store(i, Relaxed);
            if w.lru_head.load(Relaxed) == NIL {
                w.lru_head.store(i, Relaxed);
            }
            return;
        }
        // Insert before `cur`.
        let p = self.slot(cur).lru_prev.load(Relaxed);
        s.lru_prev.store(p, Relaxed);
        s.lru_next.store(cur, Relaxed);
        self.slot(cur).lru_prev.store(i, Relaxed);
        if p != NIL {
            self.slot(p).lru_next.store(i, Relaxed);
        } else {
            w.lru_head.store(i, Relaxed);
        }
    }

    // ------------------------------------------------------------------
    // writers
    // ------------------------------------------------------------------

    /// Stores `value` under `key`, replacing any previous value. The new value
    /// becomes visible atomically: readers see the old or the new bytes, never
    /// a mix.
    pub fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        self.put_vectored(key, &[value.as_ref()])
    }

    /// Like [`Store::put`] with the value given in pieces (concatenated),
    /// copied straight into shared memory: no intermediate buffer. Useful for
    /// a header + payload, or a large value assembled from parts.
    pub fn put_vectored(&self, key: impl AsRef<[u8]>, parts: &[&[u8]]) -> Result<()> {
        let key = key.as_ref();
        self.put_inner(key, parts, true).map(|_| ())
    }

    /// Like [`Store::put`] but never waits for the writer lock: returns
    /// `Ok(false)` (and stores nothing) if another writer holds it. Lets a
    /// caller that must not block (e.g. one holding an interpreter lock)
    /// take a fast path and fall back to a blocking put.
    pub fn try_put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<bool> {
        self.put_inner(key.as_ref(), &[value.as_ref()], false)
    }

    fn put_inner(&self, key: &[u8], parts: &[&[u8]], wait: bool) -> Result<bool> {
        self.validate_key(key)?;
        let val_len: usize = parts.iter().map(|p| p.len()).sum();
        let total = key.len() as u64 + val_len as u64;
        let need = round_up(BLOCK_HDR + total, BLOCK_ALIGN).max(MIN_BLOCK);
        if need > self.layout.arena_size {
            return Err(Error::ValueTooLarge { len: total as usize, max: self.max_entry_bytes() });
        }
        let h = Store::hash(key);
        let Some(_g) = self.lock_inner(wait)? else { return Ok(false) };
        match self.put_locked(key, h, parts, val_len as u64, need) {
            Err(Error::Corrupt { .. }) => {
                // A derived structure is damaged: repair from the slots and retry once.
                self.rebuild();
                self.put_locked(key, h, parts, val_len as u64, need)
            }
            r => r,
        }
        .map(|_| true)
    }

    fn full_error(&self, need: u64) -> Error {
        let w = &self.header().w.0;
        w.refusals.fetch_add(1, Relaxed);
        let available = self.layout.arena_size.saturating_sub(w.bytes_used.load(Relaxed));
        Error::Full {
            needed: need,
            available,
            fragmented: available >= need,
            entries: w.entries.load(Relaxed),
            max_entries: self.layout.slot_count as u64,
        }
    }

    fn put_locked(
        &self,
        key: &[u8],
        h: u64,
        parts: &[&[u8]],
        val_len: u64,
        need: u64,
    ) -> Result<()> {
        let w = &self.header().w.0;
        self.reclaim_retired()?;
        // 1. space for the block.
        let (block, bsize) = loop {
            if let Some(b) = self.alloc_block(need)? {
                break b;
            }
            if self.policy == FullPolicy::Refuse || !self.evict_one()? {
                return Err(self.full_error(need));
            }
        };
        // 2. the slot: the key's own, else a free one (evicting if allowed).
        let existing = match self.find_locked(key, h) {
            Ok(e) => e,
            Err(e) => {
                let _ = self.free_block(block, bsize);
                return Err(e);
            }
        };
        let (slot, is_new) = match existing {
            Some(i) => (i, false),
            None => loop {
                match self.slot_alloc() {
                    Ok(Some(i)) => break (i, true),
                    Ok(None) => {}
                    Err(e) => {
                        let _ = self.free_block(block, bsize);
                        return Err(e);
                    }
                }
                let evicted =
                    if self.policy == FullPolicy::EvictLru { self.evict_one() } else { Ok(false) };
                match evicted {
                    Ok(true) => continue,
                    Ok(false) => {
                        let _ = self.free_block(block, bsize);
                        return Err(self.full_error(need));
                    }
                    Err(e) => {
                        let _ = self.free_block(block, bsize);
                        return Err(e);
                    }
                }
            },
        };
        // 3. fill the block (invisible to readers until published).
        let mut dst = self.arena_ptr(block + BLOCK_HDR);
        // SAFETY: the block [block, block+need) is allocated to us and
        // unreferenced by any slot; key + value fit in need - BLOCK_HDR.
        unsafe {
            std::ptr::copy_nonoverlapping(key.as_ptr(), dst, key.len());
            dst = dst.add(key.len());
            for p in parts {
                std::ptr::copy_nonoverlapping(p.as_ptr(), dst, p.len());
                dst = dst.add(p.len());
            }
        }
        // 4. publish through the journal.
        let s = self.slot(slot);
        let now = now_ns();
        let (old_off, old_size, old_data) = if is_new {
            (NIL64, 0, 0)
        } else {
            (
                s.block_off.load(Relaxed),
                s.block_size.load(Relaxed),
                s.key_len.load(Relaxed) as u64 + s.val_len.load(Relaxed),
            )
        };
        let created = if is_new { now } else { s.created_at.load(Relaxed) };
        let j = &w.journal;
        j.slot.store(slot, Relaxed);
        j.hash.store(h, Relaxed);
        j.block_off.store(block, Relaxed);
        j.block_size.store(bsize, Relaxed);
        j.key_len.store(key.len() as u32, Relaxed);
        j.val_len.store(val_len, Relaxed);
        j.state.store(SLOT_USED, Relaxed);
        j.created_at.store(created, Relaxed);
        j.stamp.store(now, Relaxed);
        j.active.store(1, Release);
        let q = s.seq.load(Relaxed);
        s.seq.store(q.wrapping_add(1), SeqCst);
        fence(Release);
        s.hash.store(h, Relaxed);
        s.block_off.store(block, Relaxed);
        s.block_size.store(bsize, Relaxed);
        s.key_len.store(key.len() as u32, Relaxed);
        s.val_len.store(val_len, Relaxed);
        s.state.store(SLOT_USED, Relaxed);
        s.created_at.store(created, Relaxed);
        s.updated_at.store(now, Relaxed);
        s.lru_stamp.store(now, Relaxed);
        s.last_access.store(now, Relaxed);
        if is_new {
            s.access_count.store(0, Relaxed);
        }
        s.seq.store(q.wrapping_add(2), SeqCst);
        j.active.store(0, Release);
        // 5. derived structures.
        if is_new {
            self.chain_insert(slot);
            w.entries.fetch_add(1, Relaxed);
        } else {
            self.lru_remove(slot);
        }
        self.lru_push_head(slot);
        w.data_bytes.fetch_add(key.len() as u64 + val_len, Relaxed);
        w.data_bytes.fetch_sub(old_data.min(w.data_bytes.load(Relaxed)), Relaxed);
        w.puts.fetch_add(1, Relaxed);
        if !is_new {
            self.free_or_retire(old_off, old_size)?;
        }
        Ok(())
    }

    /// Removes `key`; returns whether it was present.
    pub fn delete(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        let key = key.as_ref();
        self.validate_key(key)?;
        let h = Store::hash(key);
        let _g = self.lock()?;
        let run = || -> Result<bool> {
            self.reclaim_retired()?;
            match self.find_locked(key, h)? {
                Some(i) => {
                    self.remove_entry(i)?;
                    self.header().w.0.deletes.fetch_add(1, Relaxed);
                    Ok(true)
                }
                None => Ok(false),
            }
        };
        match run() {
            Err(Error::Corrupt { .. }) => {
                self.rebuild();
                run()
            }
            r => r,
        }
    }

    /// Removes every entry.
    pub fn clear(&self) -> Result<()> {
        let _g = self.lock()?;
        let run = || -> Result<()> {
            self.reclaim_retired()?;
            for i in 0..self.layout.slot_count {
                if self.slot(i).state.load(Relaxed) == SLOT_USED {
                    self.remove_entry(i)?;
                }
            }
            Ok(())
        };
        match run() {
            Err(Error::Corrupt { .. }) => {
                self.rebuild();
                run()
            }
            r => r,
        }
    }

    /// Checks and repairs the store: rebuilds all derived structures from the
    /// entries (what recovery after a crashed writer does). Returns the stats
    /// afterwards.
    pub fn repair(&self) -> Result<StoreStats> {
        let _g = self.lock()?;
        self.rebuild();
        Ok(self.stats())
    }

    #[doc(hidden)]
    /// Test hook: runs `f` while holding the writer lock.
    pub fn __with_lock<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        let _g = self.lock()?;
        Ok(f())
    }

    #[doc(hidden)]
    /// Test hook: takes the writer lock, damages a derived structure (the
    /// first hash bucket) and panics while holding it.
    pub fn __panic_while_locked(&self) {
        let _g = self.lock().expect("lock");
        self.bucket(0).store(self.layout.slot_count + 5, Relaxed);
        panic!("test panic while holding the writer lock");
    }

    #[doc(hidden)]
    /// Test hook: takes the writer lock and never releases it (the process is
    /// expected to die, e.g. from SIGKILL).
    pub fn __lock_and_leak(&self) -> Result<()> {
        let g = self.lock()?;
        std::mem::forget(g);
        Ok(())
    }
}

/// Iterator over (key, value) copies; see [`Store::iter`].
pub struct Iter<'a> {
    store: &'a Store,
    next: u32,
}

impl Iterator for Iter<'_> {
    type Item = Result<(Vec<u8>, Vec<u8>)>;
    fn next(&mut self) -> Option<Self::Item> {
        while self.next < self.store.layout.slot_count {
            let i = self.next;
            self.next += 1;
            match self.store.read_slot(i, true) {
                Ok(Some((k, v, _))) => return Some(Ok((k, v))),
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
        }
        None
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("name", &self.name)
            .field("capacity", &self.layout.arena_size)
            .field("max_entries", &self.layout.slot_count)
            .field("policy", &self.policy)
            .finish()
    }
}

fn shard_of_pid() -> usize {
    current_pid() as usize % SHARDS
}

/// This process's id, without a getpid system call per zero-copy read: cached,
/// and forgotten in the child of a fork (pthread_atfork), which has its own.
fn current_pid() -> u32 {
    static PID: AtomicU32 = AtomicU32::new(0);
    static AT_FORK: std::sync::Once = std::sync::Once::new();
    extern "C" fn forget_in_child() {
        PID.store(0, Relaxed);
    }
    AT_FORK.call_once(|| {
        // SAFETY: registers a plain function that only stores to an atomic,
        // which is async-signal-safe as a fork child handler must be.
        unsafe { libc::pthread_atfork(None, None, Some(forget_in_child)) };
    });
    match PID.load(Relaxed) {
        0 => {
            let pid = std::process::id();
            PID.store(pid, Relaxed);
            pid
        }
        pid => pid,
    }
}

fn thread_salt() -> usize {
    thread_local!(static SALT: usize = {
        let x = 0u8;
        (&x as *const u8 as usize) >> 4
    });
    SALT.with(|s| *s)
}

/// Whether process `pid` exists (a zombie or a reused pid counts as alive;
/// both are harmless here: a pin just lingers a little longer).
fn pid_alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 sends nothing; it only checks existence.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || shm::errno() != libc::ESRCH
}

#[cfg(test)]
mod tests {
    use super::current_pid;

    #[test]
    fn cached_pid_is_the_childs_own_after_fork() {
        assert_eq!(current_pid(), std::process::id());
        // SAFETY: the child only compares two pids and exits with _exit.
        let child = unsafe { libc::fork() };
        assert!(child >= 0, "fork failed");
        if child == 0 {
            let ok = current_pid() == std::process::id();
            // SAFETY: leaving the forked child without running the test harness's destructors.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child saw a stale pid: {status:#x}"
        );
        assert_eq!(current_pid(), std::process::id());
    }
}
