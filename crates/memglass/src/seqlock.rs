//! Seqlock-guarded values ([`Seqlock`], [`Locked`]) and the protocol both
//! use, written once over [`protocol::SeqCell`] so the loom model test runs
//! the very same code the producer and observer run.

use crate::types::{Atomicity, FieldDesc, FieldMeta, ObserveField};
use std::cell::UnsafeCell;
use std::sync::atomic::{fence, AtomicU64, AtomicU8, Ordering};

/// A seqlock read that kept seeing a write in progress or a changed
/// sequence on every one of its bounded attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadError {
    /// Attempts made.
    pub attempts: u32,
    /// Sequence value seen last (odd: a write was in progress).
    pub last_seq: u64,
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "value changed during all {} read attempts (sequence {})",
            self.attempts, self.last_seq
        )
    }
}

/// The seqlock protocol (Boehm, "Can seqlocks get along with programming
/// language memory models?"), generic over where the words live. Public for
/// the loom model test and the stress test only.
#[doc(hidden)]
pub mod protocol {
    use super::{Ordering, ReadError};

    /// A sequence word plus data accessed with relaxed atomics.
    pub trait SeqCell {
        /// Loads the sequence word.
        fn load_seq(&self, order: Ordering) -> u64;
        /// Stores the sequence word.
        fn store_seq(&self, value: u64, order: Ordering);
        /// Compare-exchange on the sequence word (writers of `Locked` only).
        fn cas_seq(&self, current: u64, new: u64) -> bool;
        /// A memory fence of this cell's atomics.
        fn fence(order: Ordering);
        /// Stores `src` into the data with relaxed atomic stores.
        fn store_data(&self, src: &[u8]);
        /// Loads the data into `dst` with relaxed atomic loads.
        fn load_data(&self, dst: &mut [u8]);
        /// Called between attempts that found a write in progress.
        fn pause(attempt: u32);
    }

    /// Writer (one at a time): odd sequence (relaxed), release fence, the
    /// data as relaxed atomic stores, even sequence with release.
    /// `fenced = false` is the deliberately broken variant for the tests.
    #[inline]
    pub fn write<C: SeqCell>(cell: &C, src: &[u8], fenced: bool) {
        let s = cell.load_seq(Ordering::Relaxed);
        cell.store_seq(s.wrapping_add(1), Ordering::Relaxed);
        if fenced {
            C::fence(Ordering::Release);
        }
        cell.store_data(src);
        cell.store_seq(s.wrapping_add(2), Ordering::Release);
    }

    /// Writer that first takes the lock: CAS the sequence from even to odd.
    pub fn write_locked<C: SeqCell>(cell: &C, src: &[u8]) {
        let mut attempt = 0;
        let s = loop {
            let s = cell.load_seq(Ordering::Relaxed);
            if s & 1 == 0 && cell.cas_seq(s, s.wrapping_add(1)) {
                break s;
            }
            C::pause(attempt);
            attempt = attempt.wrapping_add(1);
        };
        C::fence(Ordering::Release);
        cell.store_data(src);
        cell.store_seq(s.wrapping_add(2), Ordering::Release);
    }

    /// Reader: acquire-load the sequence (retry while odd), copy the data
    /// with relaxed loads, acquire fence, re-load the sequence; done when it
    /// is unchanged. At most `attempts` tries; then a [`ReadError`].
    /// Returns the (even) sequence the copy belongs to.
    #[inline]
    pub fn read<C: SeqCell>(
        cell: &C,
        dst: &mut [u8],
        attempts: u32,
        fenced: bool,
    ) -> Result<u64, ReadError> {
        let mut last = 0;
        for attempt in 0..attempts.max(1) {
            let s1 = cell.load_seq(Ordering::Acquire);
            last = s1;
            if s1 & 1 == 1 {
                C::pause(attempt);
                continue;
            }
            cell.load_data(dst);
            if fenced {
                C::fence(Ordering::Acquire);
            }
            let s2 = cell.load_seq(Ordering::Relaxed);
            if s1 == s2 {
                return Ok(s1);
            }
            last = s2;
            C::pause(attempt);
        }
        Err(ReadError { attempts: attempts.max(1), last_seq: last })
    }
}

/// Stores `src` at `dst` with relaxed atomic stores: 8-byte words where
/// aligned, single bytes elsewhere.
///
/// # Safety
/// `dst..dst+src.len()` must be valid for writes and only accessed atomically
/// (or by other processes) meanwhile.
#[inline]
pub(crate) unsafe fn store_relaxed(dst: *mut u8, src: &[u8]) {
    if (dst as usize) % 8 == 0 && src.len() % 8 == 0 {
        for (k, c) in src.chunks_exact(8).enumerate() {
            let w = u64::from_ne_bytes(c.try_into().expect("8 bytes"));
            // SAFETY: dst is 8-aligned and valid for src.len() bytes (caller).
            unsafe { (*(dst.add(8 * k) as *const AtomicU64)).store(w, Ordering::Relaxed) };
        }
        return;
    }
    let mut i = 0;
    while i < src.len() {
        let p = dst.wrapping_add(i);
        if (p as usize) % 8 == 0 && src.len() - i >= 8 {
            let mut w = [0u8; 8];
            w.copy_from_slice(&src[i..i + 8]);
            // SAFETY: p is 8-aligned and valid for 8 bytes (caller).
            unsafe { (*(p as *const AtomicU64)).store(u64::from_ne_bytes(w), Ordering::Relaxed) };
            i += 8;
        } else {
            // SAFETY: p is valid for one byte (caller).
            unsafe { (*(p as *const AtomicU8)).store(src[i], Ordering::Relaxed) };
            i += 1;
        }
    }
}

/// Loads `dst.len()` bytes at `src` with relaxed atomic loads (the mirror of
/// [`store_relaxed`]). Works on read-only mappings: loads only.
///
/// # Safety
/// `src..src+dst.len()` must be valid for reads.
#[inline]
pub(crate) unsafe fn load_relaxed(src: *const u8, dst: &mut [u8]) {
    if (src as usize) % 8 == 0 && dst.len() % 8 == 0 {
        for (k, c) in dst.chunks_exact_mut(8).enumerate() {
            // SAFETY: src is 8-aligned and valid for dst.len() bytes (caller).
            let w = unsafe { (*(src.add(8 * k) as *const AtomicU64)).load(Ordering::Relaxed) };
            c.copy_from_slice(&w.to_ne_bytes());
        }
        return;
    }
    let mut i = 0;
    while i < dst.len() {
        let p = src.wrapping_add(i);
        if (p as usize) % 8 == 0 && dst.len() - i >= 8 {
            // SAFETY: p is 8-aligned and valid for 8 bytes (caller).
            let w = unsafe { (*(p as *const AtomicU64)).load(Ordering::Relaxed) };
            dst[i..i + 8].copy_from_slice(&w.to_ne_bytes());
            i += 8;
        } else {
            // SAFETY: p is valid for one byte (caller).
            dst[i] = unsafe { (*(p as *const AtomicU8)).load(Ordering::Relaxed) };
            i += 1;
        }
    }
}

/// A sequence word and a data range in memory (ours or a read-only mapping).
pub(crate) struct RawCell {
    pub seq: *const AtomicU64,
    pub data: *mut u8,
}

impl protocol::SeqCell for RawCell {
    #[inline]
    fn load_seq(&self, order: Ordering) -> u64 {
        // SAFETY: seq points at a live, 8-aligned sequence word (constructor's contract).
        unsafe { (*self.seq).load(order) }
    }
    #[inline]
    fn store_seq(&self, value: u64, order: Ordering) {
        // SAFETY: as above; only the producer (writable mapping) stores.
        unsafe { (*self.seq).store(value, order) }
    }
    #[inline]
    fn cas_seq(&self, current: u64, new: u64) -> bool {
        // SAFETY: as above.
        unsafe {
            (*self.seq).compare_exchange(current, new, Ordering::AcqRel, Ordering::Relaxed).is_ok()
        }
    }
    #[inline]
    fn fence(order: Ordering) {
        fence(order)
    }
    #[inline]
    fn store_data(&self, src: &[u8]) {
        // SAFETY: data is valid for src.len() bytes (constructor's contract).
        unsafe { store_relaxed(self.data, src) }
    }
    #[inline]
    fn load_data(&self, dst: &mut [u8]) {
        // SAFETY: data is valid for dst.len() bytes (constructor's contract).
        unsafe { load_relaxed(self.data, dst) }
    }
    #[inline]
    fn pause(attempt: u32) {
        if attempt % 64 == 63 {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Publishes `src` into a seqlock-guarded range in raw memory (for
/// producers in other languages, through the C ABI): `guard` is the 8-byte
/// sequence word, `data` the guarded bytes. Single writer per guard.
///
/// # Safety
/// `guard` must be 8-aligned and valid; `data..data+src.len()` valid for
/// writes; both inside a live object of this producer.
pub unsafe fn write_guarded(guard: *const AtomicU64, data: *mut u8, src: &[u8]) {
    protocol::write(&RawCell { seq: guard, data }, src, true);
}

#[inline]
fn bytes_of<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: any T: Copy is readable as size_of::<T>() bytes for the copy;
    // padding bytes are copied as they are (observers never interpret them).
    unsafe { std::slice::from_raw_parts(v as *const T as *const u8, std::mem::size_of::<T>()) }
}

/// Default bound on read attempts of [`Seqlock::read`] and [`Locked::read`].
pub const READ_ATTEMPTS: u32 = 10_000;

/// A value guarded by a sequence lock: one writer (`write` takes `&mut self`),
/// readers in any process get a consistent copy or a [`ReadError`].
/// Layout: an 8-byte sequence word, then the value (at offset 8).
#[repr(C, align(8))]
pub struct Seqlock<T: Copy> {
    seq: AtomicU64,
    value: UnsafeCell<T>,
}

// SAFETY: the value is only written through &mut self and read through the
// seqlock protocol with atomic accesses, so sharing &Seqlock is sound.
unsafe impl<T: Copy + Send> Sync for Seqlock<T> {}

impl<T: Copy + Default> Default for Seqlock<T> {
    fn default() -> Self {
        Seqlock::new(T::default())
    }
}

impl<T: Copy> Seqlock<T> {
    /// A seqlock holding `value`, sequence 0.
    pub fn new(value: T) -> Self {
        Seqlock { seq: AtomicU64::new(0), value: UnsafeCell::new(value) }
    }

    #[inline]
    fn cell(&self) -> RawCell {
        RawCell { seq: &self.seq, data: self.value.get() as *mut u8 }
    }

    /// Publishes a new value.
    #[inline]
    pub fn write(&mut self, value: T) {
        protocol::write(&self.cell(), bytes_of(&value), true);
    }

    /// Reads, changes and publishes the value.
    pub fn update(&mut self, f: impl FnOnce(&mut T)) {
        let mut v = self.get();
        f(&mut v);
        self.write(v);
    }

    /// The value, read by its only writer (no retry needed).
    pub fn get(&self) -> T {
        let mut v = std::mem::MaybeUninit::<T>::uninit();
        // SAFETY: we are the writer (or a reader of a stable value); the
        // copy reads size_of::<T>() initialised bytes.
        unsafe {
            let dst =
                std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, std::mem::size_of::<T>());
            load_relaxed(self.value.get() as *const u8, dst);
            v.assume_init()
        }
    }

    /// A consistent copy of the value, or a [`ReadError`] after
    /// [`READ_ATTEMPTS`] attempts that all overlapped a write.
    #[inline]
    pub fn read(&self) -> Result<T, ReadError> {
        let mut v = std::mem::MaybeUninit::<T>::uninit();
        // SAFETY: the buffer is size_of::<T>() bytes; it is only assumed
        // initialised after a consistent copy of a T written by `write`.
        unsafe {
            let dst =
                std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, std::mem::size_of::<T>());
            protocol::read(&self.cell(), dst, READ_ATTEMPTS, true)?;
            Ok(v.assume_init())
        }
    }

    /// The sequence word (even when no write is in progress).
    pub fn sequence(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }
}

/// A value guarded by a spin lock whose word is also a sequence: writers in
/// any thread take the lock (`write(&self)`), readers (including read-only
/// observers, which cannot take a lock) read it like a seqlock.
#[repr(C, align(8))]
pub struct Locked<T: Copy> {
    seq: AtomicU64,
    value: UnsafeCell<T>,
}

// SAFETY: writers exclude each other through the lock word; readers use the
// seqlock protocol; all accesses are atomic.
unsafe impl<T: Copy + Send> Sync for Locked<T> {}

impl<T: Copy + Default> Default for Locked<T> {
    fn default() -> Self {
        Locked::new(T::default())
    }
}

impl<T: Copy> Locked<T> {
    /// A lock holding `value`.
    pub fn new(value: T) -> Self {
        Locked { seq: AtomicU64::new(0), value: UnsafeCell::new(value) }
    }

    #[inline]
    fn cell(&self) -> RawCell {
        RawCell { seq: &self.seq, data: self.value.get() as *mut u8 }
    }

    /// Takes the lock, publishes `value`, releases the lock.
    #[inline]
    pub fn write(&self, value: T) {
        protocol::write_locked(&self.cell(), bytes_of(&value));
    }

    /// A consistent copy, or a [`ReadError`] after [`READ_ATTEMPTS`] attempts.
    #[inline]
    pub fn read(&self) -> Result<T, ReadError> {
        let mut v = std::mem::MaybeUninit::<T>::uninit();
        // SAFETY: as in Seqlock::read.
        unsafe {
            let dst =
                std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, std::mem::size_of::<T>());
            protocol::read(&self.cell(), dst, READ_ATTEMPTS, true)?;
            Ok(v.assume_init())
        }
    }
}

const VALUE_OFFSET: u32 = 8;

// SAFETY: the value of a Seqlock sits at offset 8 (repr(C), 8-byte sequence
// first); its fields are described there, guarded by the word at `offset`.
unsafe impl<T: Copy + ObserveField> ObserveField for Seqlock<T> {
    fn describe_field(
        path: &str,
        offset: u32,
        _atomicity: Atomicity,
        _guard: u32,
        meta: &FieldMeta,
        out: &mut Vec<FieldDesc>,
    ) {
        T::describe_field(path, offset + VALUE_OFFSET, Atomicity::Seqlock, offset, meta, out);
    }
}

// SAFETY: same layout as Seqlock.
unsafe impl<T: Copy + ObserveField> ObserveField for Locked<T> {
    fn describe_field(
        path: &str,
        offset: u32,
        _atomicity: Atomicity,
        _guard: u32,
        meta: &FieldMeta,
        out: &mut Vec<FieldDesc>,
    ) {
        T::describe_field(path, offset + VALUE_OFFSET, Atomicity::Locked, offset, meta, out);
    }
}
