//! The safe API: a watched buffer the program owns through a guard, so that
//! ordinary Rust code writes no `unsafe`.
//!
//! - [`Watched`] owns its buffer (a `Vec<u8>`, `Box<[u8]>`, `Box<[u8; N]>`
//!   or `&'static mut [u8]`: anything [`StableBytes`]), derefs to `[u8]` for
//!   reading and writing, and unwatches when it is dropped or
//!   [`into_inner`](Watched::into_inner)ed.
//! - [`Watcher::watch_scoped`] watches a borrowed `&mut [u8]` for the
//!   duration of a closure and unwatches before it returns (or unwinds).
//!
//! # Why this is sound
//!
//! While a region is watched, the engine reads its bytes from its own
//! threads while safe code holds `&mut [u8]` to them and writes. What keeps
//! this within Rust's rules:
//!
//! 1. **The memory stays valid and in place until it is unwatched.** A
//!    [`Watched`] never hands out `&mut T`, only `&mut [u8]` of the watched
//!    bytes, so the buffer cannot be resized or reallocated; [`StableBytes`]
//!    (an `unsafe` trait) promises that the bytes do not move when the owner
//!    value moves and that it always returns the same range.
//!    The region is unwatched (synchronously: the engine forgets the
//!    address under its lock before `unwatch` returns) before the buffer is
//!    dropped or handed back. `mem::forget` of a `Watched` leaks the buffer
//!    with it, so the memory stays valid forever; only `&'static mut` borrows
//!    are accepted for the same reason. [`Watcher::watch_scoped`] keeps its
//!    unwatch guard in its own stack frame, out of the caller's reach.
//! 2. **The engine never accesses the bytes as Rust memory while safe code
//!    may.** At `watch` time the engine reads the initial snapshot while
//!    the constructor holds the buffer exclusively (no other access exists).
//!    Afterwards it copies the bytes with `process_vm_readv(2)`: the kernel
//!    reads them on the engine's behalf, like another process reading
//!    `/proc/self/mem`, into the engine's own buffer. No Rust reference to the
//!    watched bytes exists in the engine, so the program's `&mut` stays
//!    unique; the copy is plain bytes (every bit pattern is a valid `u8`)
//!    and may be torn by a concurrent write (part old, part new), which the
//!    engine reports as a change and completes at the next scan. Nothing the
//!    engine reads flows back into the program's memory.
//! 3. **Detection does not change what the program observes.** protect makes
//!    the pages read-only; the first write faults, memwatch's handler makes
//!    the page writable and the same instruction runs again and stores the
//!    same value. writewatch write-protects page-table entries in the kernel
//!    the same way. Neither alters the contents.
//!
//! One caveat outside this module: where `process_vm_readv` is refused
//! (a seccomp filter returning `EPERM`/`ENOSYS`), the engine falls back to
//! copying with an ordinary read, which is then a data race with a
//! concurrent write in the Rust memory model (in practice a torn copy as
//! above). Watched memory is a byte buffer whose readers are outside the
//! program: treat it like memory shared with a device or another process.

use std::ops::{Deref, DerefMut};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use crate::types::{Error, RegionId};
use crate::watcher::Watcher;

/// Byte buffers whose bytes stay at one address for as long as the value
/// lives, however the value itself is moved: what [`Watched`] can own.
///
/// # Safety
/// Implementors promise that, for one value, [`bytes`](Self::bytes) and
/// [`bytes_mut`](Self::bytes_mut) always return the same pointer and
/// length, that moving the value does not move the bytes, and that the
/// bytes stay valid until the value is dropped. (`[u8; N]` by value does not
/// qualify: it moves with its owner; box it.)
pub unsafe trait StableBytes {
    /// The bytes.
    fn bytes(&self) -> &[u8];
    /// The same bytes, writable.
    fn bytes_mut(&mut self) -> &mut [u8];
}

// SAFETY: a Vec's heap buffer moves only when it is resized, which needs
// `&mut Vec`; Watched never hands that out.
unsafe impl StableBytes for Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }
}

// SAFETY: a boxed slice's allocation never moves.
unsafe impl StableBytes for Box<[u8]> {
    fn bytes(&self) -> &[u8] {
        self
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }
}

// SAFETY: a boxed array's allocation never moves.
unsafe impl<const N: usize> StableBytes for Box<[u8; N]> {
    fn bytes(&self) -> &[u8] {
        &self[..]
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self[..]
    }
}

// SAFETY: borrowed for the rest of the program, so never freed or moved.
unsafe impl StableBytes for &'static mut [u8] {
    fn bytes(&self) -> &[u8] {
        self
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }
}

/// A buffer watched by a [`Watcher`] for as long as this guard lives.
///
/// Derefs to `[u8]`: read and write it as a slice; every change is reported
/// like any other watched region's. Dropping it unwatches the region;
/// [`into_inner`](Self::into_inner) unwatches and returns the buffer.
/// Events already detected stay with the watcher, but unwatching does not
/// look for changes: call [`Watcher::check_changes`] first to be sure of a
/// write made just before.
///
/// ```
/// use memwatch_core::{Backend, Options, Watched, Watcher};
///
/// let w = Watcher::new(Options { backend: Backend::Poll, ..Options::default() })?;
/// let mut buf = Watched::new(&w, vec![0u8; 64], "buf")?;
/// buf[3] = 42;
/// let events = w.check_changes()?;
/// assert_eq!(events.len(), 1);
/// assert_eq!(events[0].region_id, buf.id());
/// assert_eq!(events[0].new_value.as_deref().unwrap()[3], 42);
/// let bytes: Vec<u8> = buf.into_inner(); // unwatched
/// assert_eq!(bytes[3], 42);
/// # Ok::<(), memwatch_core::Error>(())
/// ```
pub struct Watched<'w, T: StableBytes> {
    watcher: &'w Watcher,
    id: RegionId,
    // Some until into_inner takes it; Drop unwatches before it is dropped.
    buf: Option<T>,
}

impl<'w, T: StableBytes> Watched<'w, T> {
    /// Watches all bytes of `buf` under `name`. Errors as
    /// [`Watcher::watch`] (an empty buffer is [`Error::InvalidArgument`]);
    /// the buffer is dropped on error.
    pub fn new(watcher: &'w Watcher, buf: T, name: &str) -> Result<Self, Error> {
        Self::with_metadata(watcher, buf, name, None)
    }

    /// As [`new`](Self::new), with metadata carried by every event.
    pub fn with_metadata(
        watcher: &'w Watcher,
        mut buf: T,
        name: &str,
        metadata: Option<&str>,
    ) -> Result<Self, Error> {
        let bytes = buf.bytes_mut();
        // SAFETY: StableBytes keeps these bytes valid and in place until
        // `buf` is dropped, and Drop/into_inner unwatch before that.
        let id = unsafe { watcher.watch(bytes.as_ptr(), bytes.len(), name, metadata) }?;
        Ok(Watched { watcher, id, buf: Some(buf) })
    }

    /// The region id events of this buffer carry.
    pub fn id(&self) -> RegionId {
        self.id
    }

    /// The watcher this buffer is watched by.
    pub fn watcher(&self) -> &'w Watcher {
        self.watcher
    }

    /// Unwatches and returns the buffer.
    pub fn into_inner(mut self) -> T {
        self.unwatch();
        self.buf.take().expect("present until into_inner")
    }

    fn unwatch(&mut self) {
        // Closed watchers have forgotten their regions already.
        let _ = self.watcher.unwatch(self.id);
    }
}

impl<T: StableBytes> Deref for Watched<'_, T> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.buf.as_ref().expect("present until into_inner").bytes()
    }
}

impl<T: StableBytes> DerefMut for Watched<'_, T> {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.buf.as_mut().expect("present until into_inner").bytes_mut()
    }
}

impl<T: StableBytes> Drop for Watched<'_, T> {
    fn drop(&mut self) {
        if self.buf.is_some() {
            self.unwatch();
        }
    }
}

impl<T: StableBytes> std::fmt::Debug for Watched<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watched").field("id", &self.id).field("len", &self.len()).finish()
    }
}

impl Watcher {
    /// Watches the borrowed `buf` under `name` while `f` runs, and unwatches
    /// it before returning (also when `f` panics: the panic then continues).
    /// `f` gets the bytes and the region id. Errors as [`Watcher::watch`],
    /// before `f` runs.
    ///
    /// ```
    /// use memwatch_core::{Backend, Options, Watcher};
    ///
    /// let w = Watcher::new(Options { backend: Backend::Poll, ..Options::default() })?;
    /// let mut counters = [0u8; 16];
    /// let events = w.watch_scoped(&mut counters, "counters", |c, _id| {
    ///     c[0] = 7;
    ///     w.check_changes()
    /// })??;
    /// assert_eq!(events[0].changed_ranges[0].offset, 0);
    /// assert_eq!(counters[0], 7);
    /// # Ok::<(), memwatch_core::Error>(())
    /// ```
    pub fn watch_scoped<R>(
        &self,
        buf: &mut [u8],
        name: &str,
        f: impl FnOnce(&mut [u8], RegionId) -> R,
    ) -> Result<R, Error> {
        // SAFETY: `buf` is borrowed for this whole call and unwatched below
        // before the borrow ends, on return and on unwind alike.
        let id = unsafe { self.watch(buf.as_ptr(), buf.len(), name, None) }?;
        let result = catch_unwind(AssertUnwindSafe(|| f(&mut *buf, id)));
        let _ = self.unwatch(id);
        match result {
            Ok(r) => Ok(r),
            Err(panic) => resume_unwind(panic),
        }
    }
}
