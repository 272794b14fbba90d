//! The store's C API: MemStream (crates/memwatch-store) as
//! `memwatch_store_*`, plus the seed's `cache_*` names as aliases
//! (`include/memwatch_store.h`).
//!
//! Both families share the library's one last-error slot (`last_error.rs`).
//! `memwatch_store_*` return `MEMWATCH_OK` or a `memwatch_error_t`
//! (`MEMWATCH_ERR_NOT_FOUND`, ...); the `cache_*` aliases return the seed's
//! `CACHE_ERR_*` numbers, which [`cache_code`] derives from those.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::UNIX_EPOCH;

use memwatch_store::{Error, FullPolicy, Options, Store, StoreStats};

use crate::last_error::{self, fail_internal, fail_with};
use crate::MEMWATCH_OK;

/// Key absent, or no such store (open, unlink).
pub const MEMWATCH_ERR_NOT_FOUND: c_int = -10;
/// Key longer than the store's limit.
pub const MEMWATCH_ERR_KEY_TOO_LONG: c_int = -11;
/// Key + value can never fit in this store.
pub const MEMWATCH_ERR_VALUE_TOO_LARGE: c_int = -12;
/// Store full (policy refuse, or everything evictable is pinned).
pub const MEMWATCH_ERR_FULL: c_int = -13;
/// Output buffer too small.
pub const MEMWATCH_ERR_BUFFER_TOO_SMALL: c_int = -14;
/// Not a (compatible, intact) store: bad magic, version, truncated, corrupt.
pub const MEMWATCH_ERR_CORRUPT: c_int = -15;
/// The store exists but its creator died before initializing it.
pub const MEMWATCH_ERR_NOT_INITIALIZED: c_int = -16;
/// The writer lock timed out or cannot be recovered.
pub const MEMWATCH_ERR_LOCK: c_int = -17;
/// Too many zero-copy pins alive.
pub const MEMWATCH_ERR_TOO_MANY_PINS: c_int = -18;
/// The writer lock is held elsewhere (memwatch_store_try_put).
pub const MEMWATCH_ERR_BUSY: c_int = -19;

const INVALID: c_int = crate::MEMWATCH_ERR_INVALID_ARGUMENT;

/// Policy: evict least recently used entries when full.
pub const MEMWATCH_STORE_EVICT_LRU: c_int = 0;
/// Policy: refuse puts when full.
pub const MEMWATCH_STORE_REFUSE: c_int = 1;

/// The opaque `memwatch_store_t` (alias `cache_t`): one open store.
pub struct memwatch_store_t {
    store: Store,
}

/// `memwatch_store_stats_t` (alias `cache_stats_t`): [`StoreStats`] itself,
/// laid out as the C struct (twelve `uint64_t`).
pub type memwatch_store_stats_t = StoreStats;

/// `memwatch_store_key_stats_t` (alias `cache_key_stats_t`); times in ns since the epoch.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct memwatch_store_key_stats_t {
    /// Value length.
    pub value_size: u64,
    /// First put.
    pub created_at_ns: u64,
    /// Last put.
    pub updated_at_ns: u64,
    /// Last get or put.
    pub last_access_ns: u64,
    /// Gets that found the key.
    pub access_count: u64,
}

/// The `memwatch_error_t` of a store error.
fn code_of(e: &Error) -> c_int {
    match e {
        Error::InvalidName { .. } | Error::EmptyKey | Error::InvalidOptions(_) => INVALID,
        Error::NotFound(_) => MEMWATCH_ERR_NOT_FOUND,
        Error::NotInitialized(_) => MEMWATCH_ERR_NOT_INITIALIZED,
        Error::KeyTooLong { .. } => MEMWATCH_ERR_KEY_TOO_LONG,
        Error::ValueTooLarge { .. } => MEMWATCH_ERR_VALUE_TOO_LARGE,
        Error::Full { .. } => MEMWATCH_ERR_FULL,
        Error::BadMagic { .. }
        | Error::VersionMismatch { .. }
        | Error::Truncated { .. }
        | Error::Corrupt { .. } => MEMWATCH_ERR_CORRUPT,
        Error::LockTimeout(_) | Error::NotRecoverable => MEMWATCH_ERR_LOCK,
        Error::TooManyPins(_) => MEMWATCH_ERR_TOO_MANY_PINS,
        Error::BufferTooSmall { .. } => MEMWATCH_ERR_BUFFER_TOO_SMALL,
        Error::Os { .. } => crate::MEMWATCH_ERR_OS,
    }
}

/// A failure: its `memwatch_error_t` and message, stored in the last-error
/// slot by [`run`].
struct Fail(c_int, String);

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail(code_of(&e), e.to_string())
    }
}

fn invalid(msg: &str) -> Fail {
    Fail(INVALID, msg.to_owned())
}

/// Runs `f` with panics caught: `Ok(v)` is returned as is, a failure is
/// stored as the thread's last error and its code returned (as `on_err`
/// makes it: an `i64`, a NULL pointer, ...).
fn run<T>(on_err: impl Fn(c_int) -> T, f: impl FnOnce() -> Result<T, Fail>) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(Fail(code, msg))) => on_err(fail_with(code, &msg)),
        Err(p) => on_err(fail_internal(p)),
    }
}

/// # Safety
/// `p` is NULL or valid for `len` bytes.
unsafe fn bytes<'a>(p: *const c_void, len: usize, what: &str) -> Result<&'a [u8], Fail> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(invalid(&format!("{what} is NULL with a non-zero length")));
    }
    // SAFETY: the caller guarantees p is valid for len bytes.
    Ok(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) })
}

/// # Safety
/// `buf` is NULL or valid for `len` writable bytes.
unsafe fn bytes_mut<'a>(buf: *mut c_void, len: usize) -> Result<&'a mut [u8], Fail> {
    if len == 0 {
        return Ok(&mut []);
    }
    if buf.is_null() {
        return Err(invalid("buf is NULL with a non-zero length"));
    }
    // SAFETY: the caller guarantees buf is valid for len writable bytes.
    Ok(unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), len) })
}

/// # Safety
/// `s` is NULL or a live handle from `memwatch_store_connect`.
unsafe fn handle<'a>(s: *mut memwatch_store_t) -> Result<&'a Store, Fail> {
    // SAFETY: NULL or live per the caller's contract; only shared access is made.
    unsafe { s.as_ref() }.map(|h| &h.store).ok_or_else(|| invalid("store handle is NULL"))
}

/// # Safety
/// `name` is NULL or a NUL-terminated string.
unsafe fn name_of<'a>(name: *const c_char) -> Result<&'a str, Fail> {
    if name.is_null() {
        return Err(invalid("name is NULL"));
    }
    // SAFETY: NUL-terminated per the caller's contract.
    unsafe { CStr::from_ptr(name) }.to_str().map_err(|_| invalid("name is not UTF-8"))
}

fn ns(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

// ---------------------------------------------------------------------------
// memwatch_store_*

/// Creates (capacity > 0) or opens (capacity 0) the store `name`; NULL on error.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn memwatch_store_connect(
    name: *const c_char,
    capacity: u64,
    policy: c_int,
) -> *mut memwatch_store_t {
    run(
        |_| std::ptr::null_mut(),
        || {
            // SAFETY: forwarded caller contract.
            let name = unsafe { name_of(name) }?;
            let store = if capacity == 0 {
                Store::open(name)?
            } else {
                let policy = match policy {
                    MEMWATCH_STORE_EVICT_LRU => FullPolicy::EvictLru,
                    MEMWATCH_STORE_REFUSE => FullPolicy::Refuse,
                    other => {
                        return Err(invalid(&format!(
                            "policy must be MEMWATCH_STORE_EVICT_LRU (0) or \
                             MEMWATCH_STORE_REFUSE (1), got {other}"
                        )))
                    }
                };
                Store::connect_with(name, &Options::new(capacity, policy))?
            };
            Ok(Box::into_raw(Box::new(memwatch_store_t { store })))
        },
    )
}

/// Opens an existing store; NULL on error (`MEMWATCH_ERR_NOT_FOUND`: no such store).
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn memwatch_store_open(name: *const c_char) -> *mut memwatch_store_t {
    // SAFETY: forwarded caller contract.
    unsafe { memwatch_store_connect(name, 0, 0) }
}

/// Stores a copy of `value` under `key`.
///
/// # Safety
/// `s` is a live handle; `key`/`value` are valid for their lengths.
#[no_mangle]
pub unsafe extern "C" fn memwatch_store_put(
    s: *mut memwatch_store_t,
    key: *const c_void,
    key_len: usize,
    value: *const c_void,
    value_len: usize,
) -> c_int {
    run(
        |c| c,
        || {
            // SAFETY: forwarded caller contract.
            let (s, k, v) = unsafe {
                (handle(s)?, bytes(key, key_len, "key")?, bytes(value, value_len, "value")?)
            };
            s.put(k, v)?;
            Ok(MEMWATCH_OK)
        },
    )
}

/// `memwatch_store_put` that never waits for the writer lock:
/// `MEMWATCH_ERR_BUSY` (nothing stored) if another writer holds it.
///
/// # Safety
/// As `memwatch_store_put`.
#[no_mangle]
pub unsafe extern "C" fn memwatch_store_try_put(
    s: *mut memwatch_store_t,
    key: *const c_void,
    key_len: usize,
    value: *const c_void,
    value_len: usize,
) -> c_int {
    run(
        |c| c,
        || {
            // SAFETY: forwarded caller contract.
            let (s, k, v) = unsafe {
                (handle(s)?, bytes(key, key_len, "key")?, bytes(value, value_len, "value")?)
            };
            if s.try_put(k, v)? {
                Ok(MEMWATCH_OK)
            } else {
                Err(Fail(MEMWATCH_ERR_BUSY, "the writer lock is held by another writer".into()))
            }
        },
    )
}

/// Copies the value of `key` into `buf` if it fits; returns its length
/// (>= 0; nothing copied if greater than `buf_len`) or a negative error.
///
/// # Safety
/// `s` is a live handle; `key` is valid for `key_len` bytes; `buf` is valid
/// for `buf_len` writable bytes (NULL when `buf_len` is 0).
#[no_mangle]
pub unsafe extern "C" fn memwatch_store_get(
    s: *mut memwatch_store_t,
    key: *const c_void,
    key_len: usize,
    buf: *mut c_void,
    buf_len: usize,
) -> i64 {
    run(i64::from, || {
        // SAFETY: forwarded caller contract.
        let (s, k, out) =
            unsafe { (handle(s)?, bytes(key, key_len, "key")?, bytes_mut(buf, buf_len)?) };
        match s.get_to_slice(k, out)? {
            Some(n) => Ok(n as i64),
            None => Err(Fail(MEMWATCH_ERR_NOT_FOUND, "key not found".into())),
        }
    })
}

/// Deletes `key`: `MEMWATCH_OK`, or `MEMWATCH_ERR_NOT_FOUND`.
///
/// # Safety
/// `s` is a live handle; `key` is valid for `key_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn memwatch_store_delete(
    s: *mut memwatch_store_t,
    key: *const c_void,
    key_len: usize,
) -> c_int {
    run(
        |c| c,
        || {
            // SAFETY: forwarded caller contract.
            let (s, k) = unsafe { (handle(s)?, bytes(key, key_len, "key")?) };
            if s.delete(k)? {
                Ok(MEMWATCH_OK)
            } else {
                Err(Fail(MEMWATCH_ERR_NOT_FOUND, "key not found".into()))
            }
        },
    )
}

/// 1 if `key` is present, 0 if not, or a negative error.
///
/// # Safety
/// `s` is a live handle; `key` is valid for `key_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn memwatch_store_contains(
    s: *mut memwatch_store_t,
    key: *const c_void,
    key_len: usize,
) -> c_int {
    run(
        |c| c,
        || {
            // SAFETY: forwarded caller contract.
            let (s, k) = unsafe { (handle(s)?, bytes(key, key_len, "key")?) };
            Ok(c_int::from(s.contains(k)?))
        },
    )
}

/// Fills `*out` with store-wide statistics.
///
/// # Safety
/// `s` is a live handle; `out` is NULL or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn memwatch_store_stats(
    s: *mut memwatch_store_t,
    out: *mut memwatch_store_stats_t,
) -> c_int {
    run(
        |c| c,
        || {
            // SAFETY: forwarded caller contract.
            let s = unsafe { handle(s) }?;
            if out.is_null() {
                return Err(invalid("out is NULL"));
            }
            // SAFETY: non-NULL and valid for one write per the caller's contract.
            unsafe { out.write(s.stats()) };
            Ok(MEMWATCH_OK)
        },
    )
}

/// Fills `*out` with the statistics of `key`; `MEMWATCH_ERR_NOT_FOUND` if absent.
///
/// # Safety
/// `s` is a live handle; `key` is valid for `key_len` bytes; `out` is NULL or
/// valid for one write.
#[no_mangle]
pub unsafe extern "C" fn memwatch_store_key_stats(
    s: *mut memwatch_store_t,
    key: *const c_void,
    key_len: usize,
    out: *mut memwatch_store_key_stats_t,
) -> c_int {
    run(
        |c| c,
        || {
            // SAFETY: forwarded caller contract.
            let (s, k) = unsafe { (handle(s)?, bytes(key, key_len, "key")?) };
            if out.is_null() {
                return Err(invalid("out is NULL"));
            }
            let st = s
                .key_stats(k)?
                .ok_or_else(|| Fail(MEMWATCH_ERR_NOT_FOUND, "key not found".into()))?;
            let v = memwatch_store_key_stats_t {
                value_size: st.value_size,
                created_at_ns: ns(st.created_at),
                updated_at_ns: ns(st.updated_at),
                last_access_ns: ns(st.last_access),
                access_count: st.access_count,
            };
            // SAFETY: non-NULL and valid for one write per the caller's contract.
            unsafe { out.write(v) };
            Ok(MEMWATCH_OK)
        },
    )
}

/// Writes all keys into `buf` as (u32 little-endian length, bytes) records;
/// returns the bytes the list needs (written only if <= `buf_len`).
///
/// # Safety
/// `s` is a live handle; `buf` is valid for `buf_len` writable bytes (NULL
/// when `buf_len` is 0).
#[no_mangle]
pub unsafe extern "C" fn memwatch_store_keys(
    s: *mut memwatch_store_t,
    buf: *mut c_void,
    buf_len: usize,
) -> i64 {
    run(i64::from, || {
        // SAFETY: forwarded caller contract.
        let (s, out) = unsafe { (handle(s)?, bytes_mut(buf, buf_len)?) };
        let keys = s.keys()?;
        let need: usize = keys.iter().map(|k| 4 + k.len()).sum();
        if need <= out.len() {
            let mut at = 0;
            for k in &keys {
                out[at..at + 4].copy_from_slice(&(k.len() as u32).to_le_bytes());
                out[at + 4..at + 4 + k.len()].copy_from_slice(k);
                at += 4 + k.len();
            }
        }
        Ok(need as i64)
    })
}

/// Removes every entry.
///
/// # Safety
/// `s` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn memwatch_store_clear(s: *mut memwatch_store_t) -> c_int {
    run(
        |c| c,
        || {
            // SAFETY: forwarded caller contract.
            unsafe { handle(s) }?.clear()?;
            Ok(MEMWATCH_OK)
        },
    )
}

/// Closes the handle (NULL is ignored); the store stays until unlinked.
///
/// # Safety
/// `s` is NULL or a live handle, not used again afterwards.
#[no_mangle]
pub unsafe extern "C" fn memwatch_store_close(s: *mut memwatch_store_t) -> c_int {
    run(
        |c| c,
        || {
            if !s.is_null() {
                // SAFETY: s came from Box::into_raw in memwatch_store_connect
                // and is closed once per the caller's contract.
                drop(unsafe { Box::from_raw(s) });
            }
            Ok(MEMWATCH_OK)
        },
    )
}

/// Removes the store's name (open handles keep working).
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn memwatch_store_unlink(name: *const c_char) -> c_int {
    run(
        |c| c,
        || {
            // SAFETY: forwarded caller contract.
            Store::unlink(unsafe { name_of(name) }?)?;
            Ok(MEMWATCH_OK)
        },
    )
}

// ---------------------------------------------------------------------------
// The seed's cache_* names (include/memwatch_store.h): the same functions,
// returning the seed's CACHE_ERR_* numbers.

/// `CACHE_OK`.
pub const CACHE_OK: c_int = 0;
/// `CACHE_ERR_NOT_FOUND`.
pub const CACHE_ERR_NOT_FOUND: c_int = -1;
/// `CACHE_ERR_INVALID`.
pub const CACHE_ERR_INVALID: c_int = -2;
/// `CACHE_ERR_KEY_TOO_LONG`.
pub const CACHE_ERR_KEY_TOO_LONG: c_int = -3;
/// `CACHE_ERR_VALUE_TOO_LARGE`.
pub const CACHE_ERR_VALUE_TOO_LARGE: c_int = -4;
/// `CACHE_ERR_FULL`.
pub const CACHE_ERR_FULL: c_int = -5;
/// `CACHE_ERR_BUFFER_TOO_SMALL`.
pub const CACHE_ERR_BUFFER_TOO_SMALL: c_int = -6;
/// `CACHE_ERR_CORRUPT`.
pub const CACHE_ERR_CORRUPT: c_int = -7;
/// `CACHE_ERR_NOT_INITIALIZED`.
pub const CACHE_ERR_NOT_INITIALIZED: c_int = -8;
/// `CACHE_ERR_LOCK`.
pub const CACHE_ERR_LOCK: c_int = -9;
/// `CACHE_ERR_TOO_MANY_PINS`.
pub const CACHE_ERR_TOO_MANY_PINS: c_int = -10;
/// `CACHE_ERR_OS`.
pub const CACHE_ERR_OS: c_int = -11;
/// `CACHE_ERR_PANIC`.
pub const CACHE_ERR_PANIC: c_int = -12;
/// `CACHE_ERR_BUSY`.
pub const CACHE_ERR_BUSY: c_int = -13;

/// The seed's `CACHE_ERR_*` number of a `memwatch_error_t` (non-negative
/// values pass unchanged). Errors of the watcher API, which the seed's store
/// API never returns, become `CACHE_ERR_INVALID`.
pub fn cache_code(code: c_int) -> c_int {
    match code {
        c if c >= 0 => c,
        MEMWATCH_ERR_NOT_FOUND => CACHE_ERR_NOT_FOUND,
        MEMWATCH_ERR_KEY_TOO_LONG => CACHE_ERR_KEY_TOO_LONG,
        MEMWATCH_ERR_VALUE_TOO_LARGE => CACHE_ERR_VALUE_TOO_LARGE,
        MEMWATCH_ERR_FULL => CACHE_ERR_FULL,
        MEMWATCH_ERR_BUFFER_TOO_SMALL => CACHE_ERR_BUFFER_TOO_SMALL,
        MEMWATCH_ERR_CORRUPT => CACHE_ERR_CORRUPT,
        MEMWATCH_ERR_NOT_INITIALIZED => CACHE_ERR_NOT_INITIALIZED,
        MEMWATCH_ERR_LOCK => CACHE_ERR_LOCK,
        MEMWATCH_ERR_TOO_MANY_PINS => CACHE_ERR_TOO_MANY_PINS,
        MEMWATCH_ERR_BUSY => CACHE_ERR_BUSY,
        crate::MEMWATCH_ERR_OS => CACHE_ERR_OS,
        crate::MEMWATCH_ERR_INTERNAL => CACHE_ERR_PANIC,
        _ => CACHE_ERR_INVALID,
    }
}

fn cache_code64(v: i64) -> i64 {
    if v >= 0 {
        v
    } else {
        i64::from(cache_code(c_int::try_from(v).unwrap_or(crate::MEMWATCH_ERR_INTERNAL)))
    }
}

/// Alias of `memwatch_store_connect`.
///
/// # Safety
/// As `memwatch_store_connect`.
#[no_mangle]
pub unsafe extern "C" fn cache_connect(
    name: *const c_char,
    capacity: u64,
    policy: c_int,
) -> *mut memwatch_store_t {
    // SAFETY: forwarded caller contract.
    unsafe { memwatch_store_connect(name, capacity, policy) }
}

/// Alias of `memwatch_store_open`.
///
/// # Safety
/// As `memwatch_store_open`.
#[no_mangle]
pub unsafe extern "C" fn cache_open(name: *const c_char) -> *mut memwatch_store_t {
    // SAFETY: forwarded caller contract.
    unsafe { memwatch_store_open(name) }
}

/// Alias of `memwatch_store_put` (`CACHE_ERR_*` codes).
///
/// # Safety
/// As `memwatch_store_put`.
#[no_mangle]
pub unsafe extern "C" fn cache_put(
    s: *mut memwatch_store_t,
    key: *const c_void,
    key_len: usize,
    value: *const c_void,
    value_len: usize,
) -> c_int {
    // SAFETY: forwarded caller contract.
    cache_code(unsafe { memwatch_store_put(s, key, key_len, value, value_len) })
}

/// Alias of `memwatch_store_get` (`CACHE_ERR_*` codes).
///
/// # Safety
/// As `memwatch_store_get`.
#[no_mangle]
pub unsafe extern "C" fn cache_get(
    s: *mut memwatch_store_t,
    key: *const c_void,
    key_len: usize,
    buf: *mut c_void,
    buf_len: usize,
) -> i64 {
    // SAFETY: forwarded caller contract.
    cache_code64(unsafe { memwatch_store_get(s, key, key_len, buf, buf_len) })
}

/// `cache_put` with 32-bit lengths, for FFIs that pass plain ints without
/// declared argument types (Python ctypes' fast path).
///
/// # Safety
/// As `memwatch_store_put`.
#[no_mangle]
pub unsafe extern "C" fn cache_put32(
    s: *mut memwatch_store_t,
    key: *const c_void,
    key_len: u32,
    value: *const c_void,
    value_len: u32,
) -> c_int {
    // SAFETY: forwarded caller contract.
    unsafe { cache_put(s, key, key_len as usize, value, value_len as usize) }
}

/// `memwatch_store_try_put` with 32-bit lengths and `CACHE_ERR_*` codes.
///
/// # Safety
/// As `memwatch_store_put`.
#[no_mangle]
pub unsafe extern "C" fn cache_try_put32(
    s: *mut memwatch_store_t,
    key: *const c_void,
    key_len: u32,
    value: *const c_void,
    value_len: u32,
) -> c_int {
    // SAFETY: forwarded caller contract.
    cache_code(unsafe {
        memwatch_store_try_put(s, key, key_len as usize, value, value_len as usize)
    })
}

/// `cache_get` with 32-bit lengths.
///
/// # Safety
/// As `memwatch_store_get`.
#[no_mangle]
pub unsafe extern "C" fn cache_get32(
    s: *mut memwatch_store_t,
    key: *const c_void,
    key_len: u32,
    buf: *mut c_void,
    buf_len: u32,
) -> i64 {
    // SAFETY: forwarded caller contract.
    unsafe { cache_get(s, key, key_len as usize, buf, buf_len as usize) }
}

/// Alias of `memwatch_store_delete` (`CACHE_ERR_*` codes).
///
/// # Safety
/// As `memwatch_store_delete`.
#[no_mangle]
pub unsafe extern "C" fn cache_delete(
    s: *mut memwatch_store_t,
    key: *const c_void,
    key_len: usize,
) -> c_int {
    // SAFETY: forwarded caller contract.
    cache_code(unsafe { memwatch_store_delete(s, key, key_len) })
}

/// Alias of `memwatch_store_contains` (`CACHE_ERR_*` codes).
///
/// # Safety
/// As `memwatch_store_contains`.
#[no_mangle]
pub unsafe extern "C" fn cache_contains(
    s: *mut memwatch_store_t,
    key: *const c_void,
    key_len: usize,
) -> c_int {
    // SAFETY: forwarded caller contract.
    cache_code(unsafe { memwatch_store_contains(s, key, key_len) })
}

/// Alias of `memwatch_store_stats` (`CACHE_ERR_*` codes).
///
/// # Safety
/// As `memwatch_store_stats`.
#[no_mangle]
pub unsafe extern "C" fn cache_stats(
    s: *mut memwatch_store_t,
    out: *mut memwatch_store_stats_t,
) -> c_int {
    // SAFETY: forwarded caller contract.
    cache_code(unsafe { memwatch_store_stats(s, out) })
}

/// Alias of `memwatch_store_key_stats` (`CACHE_ERR_*` codes).
///
/// # Safety
/// As `memwatch_store_key_stats`.
#[no_mangle]
pub unsafe extern "C" fn cache_key_stats(
    s: *mut memwatch_store_t,
    key: *const c_void,
    key_len: usize,
    out: *mut memwatch_store_key_stats_t,
) -> c_int {
    // SAFETY: forwarded caller contract.
    cache_code(unsafe { memwatch_store_key_stats(s, key, key_len, out) })
}

/// Alias of `memwatch_store_keys` (`CACHE_ERR_*` codes).
///
/// # Safety
/// As `memwatch_store_keys`.
#[no_mangle]
pub unsafe extern "C" fn cache_keys(
    s: *mut memwatch_store_t,
    buf: *mut c_void,
    buf_len: usize,
) -> i64 {
    // SAFETY: forwarded caller contract.
    cache_code64(unsafe { memwatch_store_keys(s, buf, buf_len) })
}

/// Alias of `memwatch_store_clear` (`CACHE_ERR_*` codes).
///
/// # Safety
/// As `memwatch_store_clear`.
#[no_mangle]
pub unsafe extern "C" fn cache_clear(s: *mut memwatch_store_t) -> c_int {
    // SAFETY: forwarded caller contract.
    cache_code(unsafe { memwatch_store_clear(s) })
}

/// Alias of `memwatch_store_close`.
///
/// # Safety
/// As `memwatch_store_close`.
#[no_mangle]
pub unsafe extern "C" fn cache_close(s: *mut memwatch_store_t) -> c_int {
    // SAFETY: forwarded caller contract.
    cache_code(unsafe { memwatch_store_close(s) })
}

/// Alias of `memwatch_store_unlink` (`CACHE_ERR_*` codes).
///
/// # Safety
/// As `memwatch_store_unlink`.
#[no_mangle]
pub unsafe extern "C" fn cache_unlink(name: *const c_char) -> c_int {
    // SAFETY: forwarded caller contract.
    cache_code(unsafe { memwatch_store_unlink(name) })
}

/// Alias of `memwatch_last_error`: the library's one last-error slot.
#[no_mangle]
pub extern "C" fn cache_last_error() -> *const c_char {
    crate::memwatch_last_error()
}

/// `memwatch_last_error_code` as a `CACHE_ERR_*` number.
#[no_mangle]
pub extern "C" fn cache_last_error_code() -> c_int {
    cache_code(catch_unwind(last_error::code).unwrap_or(crate::MEMWATCH_ERR_INTERNAL))
}

/// Alias of `memwatch_version`.
#[no_mangle]
pub extern "C" fn cache_version() -> *const c_char {
    crate::memwatch_version()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    fn last() -> (c_int, String) {
        // SAFETY: memwatch_last_error returns a NUL-terminated string.
        let msg = unsafe { CStr::from_ptr(crate::memwatch_last_error()) };
        (crate::memwatch_last_error_code(), msg.to_string_lossy().into_owned())
    }

    #[test]
    fn store_roundtrip_and_one_error_slot() {
        let name = CString::new(format!("mwtest-capi-store-{}", std::process::id())).unwrap();
        // SAFETY: every pointer below is valid for the length given with it.
        unsafe {
            let s = memwatch_store_connect(name.as_ptr(), 1 << 20, MEMWATCH_STORE_REFUSE);
            assert!(!s.is_null());
            let put = memwatch_store_put(s, b"k".as_ptr().cast(), 1, b"value".as_ptr().cast(), 5);
            assert_eq!(put, MEMWATCH_OK);
            let mut buf = [0u8; 16];
            assert_eq!(
                memwatch_store_get(s, b"k".as_ptr().cast(), 1, buf.as_mut_ptr().cast(), 16),
                5
            );
            assert_eq!(&buf[..5], b"value");
            assert_eq!(
                memwatch_store_get(s, b"k".as_ptr().cast(), 1, buf.as_mut_ptr().cast(), 2),
                5
            );
            let miss = memwatch_store_get(s, b"zz".as_ptr().cast(), 2, buf.as_mut_ptr().cast(), 16);
            assert_eq!(miss, i64::from(MEMWATCH_ERR_NOT_FOUND));
            assert_eq!(last().0, MEMWATCH_ERR_NOT_FOUND);
            // The alias returns the seed's number for the same failure, and
            // reads the same slot.
            let miss = cache_get(s, b"zz".as_ptr().cast(), 2, buf.as_mut_ptr().cast(), 16);
            assert_eq!(miss, i64::from(CACHE_ERR_NOT_FOUND));
            assert_eq!(cache_last_error_code(), CACHE_ERR_NOT_FOUND);
            assert_eq!(memwatch_store_contains(s, b"k".as_ptr().cast(), 1), 1);
            let mut st = memwatch_store_stats_t::default();
            assert_eq!(memwatch_store_stats(s, &mut st), MEMWATCH_OK);
            assert_eq!(st.entries, 1);
            let mut ks = memwatch_store_key_stats_t::default();
            assert_eq!(memwatch_store_key_stats(s, b"k".as_ptr().cast(), 1, &mut ks), MEMWATCH_OK);
            assert_eq!(ks.value_size, 5);
            assert_eq!(memwatch_store_keys(s, std::ptr::null_mut(), 0), 5);
            let mut kb = [0u8; 5];
            assert_eq!(memwatch_store_keys(s, kb.as_mut_ptr().cast(), kb.len()), 5);
            assert_eq!(kb, [1, 0, 0, 0, b'k']);
            let long = vec![b'x'; 5000];
            let rc = memwatch_store_put(s, long.as_ptr().cast(), 5000, b"v".as_ptr().cast(), 1);
            assert_eq!(rc, MEMWATCH_ERR_KEY_TOO_LONG);
            let (code, msg) = last();
            assert_eq!(code, MEMWATCH_ERR_KEY_TOO_LONG);
            assert!(msg.contains("longer than"), "{msg}");
            let rc = cache_put(s, long.as_ptr().cast(), 5000, b"v".as_ptr().cast(), 1);
            assert_eq!(rc, CACHE_ERR_KEY_TOO_LONG);
            let null = std::ptr::null_mut();
            let rc = memwatch_store_put(null, b"k".as_ptr().cast(), 1, b"v".as_ptr().cast(), 1);
            assert_eq!(rc, crate::MEMWATCH_ERR_INVALID_ARGUMENT);
            assert_eq!(
                cache_put(null, b"k".as_ptr().cast(), 1, b"v".as_ptr().cast(), 1),
                CACHE_ERR_INVALID
            );
            assert_eq!(memwatch_store_delete(s, b"k".as_ptr().cast(), 1), MEMWATCH_OK);
            assert_eq!(memwatch_store_delete(s, b"k".as_ptr().cast(), 1), MEMWATCH_ERR_NOT_FOUND);
            assert_eq!(memwatch_store_clear(s), MEMWATCH_OK);
            assert_eq!(memwatch_store_close(s), MEMWATCH_OK);
            assert!(memwatch_store_connect(name.as_ptr(), 1 << 20, 7).is_null());
            assert_eq!(last().0, crate::MEMWATCH_ERR_INVALID_ARGUMENT);
            let bad = CString::new("a/b").unwrap();
            assert!(memwatch_store_connect(bad.as_ptr(), 1 << 20, 0).is_null());
            assert!(last().1.contains("invalid store name"), "{}", last().1);
            assert_eq!(memwatch_store_unlink(name.as_ptr()), MEMWATCH_OK);
            assert_eq!(memwatch_store_unlink(name.as_ptr()), MEMWATCH_ERR_NOT_FOUND);
            assert!(memwatch_store_open(name.as_ptr()).is_null());
            assert_eq!(last().0, MEMWATCH_ERR_NOT_FOUND);
            assert_eq!(cache_last_error_code(), CACHE_ERR_NOT_FOUND);
        }
    }

    #[test]
    fn every_memwatch_code_has_one_cache_code() {
        let pairs = [
            (MEMWATCH_ERR_NOT_FOUND, CACHE_ERR_NOT_FOUND),
            (crate::MEMWATCH_ERR_INVALID_ARGUMENT, CACHE_ERR_INVALID),
            (MEMWATCH_ERR_KEY_TOO_LONG, CACHE_ERR_KEY_TOO_LONG),
            (MEMWATCH_ERR_VALUE_TOO_LARGE, CACHE_ERR_VALUE_TOO_LARGE),
            (MEMWATCH_ERR_FULL, CACHE_ERR_FULL),
            (MEMWATCH_ERR_BUFFER_TOO_SMALL, CACHE_ERR_BUFFER_TOO_SMALL),
            (MEMWATCH_ERR_CORRUPT, CACHE_ERR_CORRUPT),
            (MEMWATCH_ERR_NOT_INITIALIZED, CACHE_ERR_NOT_INITIALIZED),
            (MEMWATCH_ERR_LOCK, CACHE_ERR_LOCK),
            (MEMWATCH_ERR_TOO_MANY_PINS, CACHE_ERR_TOO_MANY_PINS),
            (crate::MEMWATCH_ERR_OS, CACHE_ERR_OS),
            (crate::MEMWATCH_ERR_INTERNAL, CACHE_ERR_PANIC),
            (MEMWATCH_ERR_BUSY, CACHE_ERR_BUSY),
        ];
        for (mw, cache) in pairs {
            assert_eq!(cache_code(mw), cache, "{mw}");
        }
        assert_eq!(cache_code(MEMWATCH_OK), CACHE_OK);
        assert_eq!(cache_code(5), 5);
        assert_eq!(cache_code(memwatch_core::Error::Closed.code()), CACHE_ERR_INVALID);
        let invalid = memwatch_core::Error::InvalidArgument(String::new()).code();
        assert_eq!(invalid, crate::MEMWATCH_ERR_INVALID_ARGUMENT);
    }
}
