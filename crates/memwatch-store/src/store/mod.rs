//! The store: the handle, its public types, and the accessors into the
//! mapping every part uses. The parts, one file each: [`segment`]
//! (connect/open/unlink), [`read`] (seqlock readers, lock-free), [`pin`]
//! (zero-copy pins), [`lock`] (robust writer mutex and crash recovery),
//! [`arena`] (TLSF allocator), [`index`] (slots, hash chains, LRU),
//! [`write`] (put, delete, clear, repair).

mod arena;
#[cfg(feature = "test-hooks")]
mod hooks;
mod index;
mod lock;
mod pin;
mod read;
mod segment;
mod write;

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
