//! The seed's C API (`cache_connect`, `cache_put`, `cache_get`, ...), enabled
//! by the `capi` feature. Documented in `include/memwatch_store.h`.
//!
//! Conventions: functions return `CACHE_OK` (0) or a negative `CACHE_ERR_*`
//! code; `cache_connect`/`cache_open` return NULL on error. After any error,
//! `cache_last_error()` gives a message for the calling thread. No function
//! unwinds into C: a Rust panic becomes `CACHE_ERR_PANIC`.

use crate::{Error, FullPolicy, Options, Store, StoreStats};
use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::UNIX_EPOCH;

/// Success.
pub const CACHE_OK: c_int = 0;
/// Key not present (or store not found for `cache_open`/`cache_unlink`).
pub const CACHE_ERR_NOT_FOUND: c_int = -1;
/// Invalid argument: NULL pointer, bad name, bad option, empty key.
pub const CACHE_ERR_INVALID: c_int = -2;
/// Key longer than the store's limit.
pub const CACHE_ERR_KEY_TOO_LONG: c_int = -3;
/// Key + value can never fit in this store.
pub const CACHE_ERR_VALUE_TOO_LARGE: c_int = -4;
/// Store full (policy "refuse", or everything evictable is pinned).
pub const CACHE_ERR_FULL: c_int = -5;
/// Output buffer too small.
pub const CACHE_ERR_BUFFER_TOO_SMALL: c_int = -6;
/// Segment is not a (compatible, intact) store: bad magic, version, truncated, corrupt.
pub const CACHE_ERR_CORRUPT: c_int = -7;
/// The store exists but was never initialized.
pub const CACHE_ERR_NOT_INITIALIZED: c_int = -8;
/// Writer lock timed out or is unrecoverable.
pub const CACHE_ERR_LOCK: c_int = -9;
/// Too many zero-copy guards alive.
pub const CACHE_ERR_TOO_MANY_PINS: c_int = -10;
/// A system call failed.
pub const CACHE_ERR_OS: c_int = -11;
/// Internal error (a Rust panic was caught).
pub const CACHE_ERR_PANIC: c_int = -12;
/// The writer lock is held by someone else (`cache_try_put32` only).
pub const CACHE_ERR_BUSY: c_int = -13;

/// Policy value: evict least recently used entries when full.
pub const CACHE_POLICY_EVICT_LRU: c_int = 0;
/// Policy value: refuse puts when full.
pub const CACHE_POLICY_REFUSE: c_int = 1;

/// Opaque store handle for C (`cache_t`).
pub struct CacheHandle {
    store: Store,
}

/// Store-wide statistics for C (`cache_stats_t`): [`StoreStats`] itself,
/// laid out as C's struct.
pub type CacheStats = StoreStats;

/// Per-key statistics for C (`cache_key_stats_t`); times in ns since the epoch.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct CacheKeyStats {
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

thread_local! {
    /// This thread's last error: its code and message.
    static LAST_ERROR: RefCell<(c_int, CString)> = RefCell::new((CACHE_OK, CString::default()));
}

fn set_error(code: c_int, msg: String) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = (code, c));
}

fn code_of(e: &Error) -> c_int {
    match e {
        Error::InvalidName { .. } | Error::EmptyKey | Error::InvalidOptions(_) => CACHE_ERR_INVALID,
        Error::NotFound(_) => CACHE_ERR_NOT_FOUND,
        Error::NotInitialized(_) => CACHE_ERR_NOT_INITIALIZED,
        Error::KeyTooLong { .. } => CACHE_ERR_KEY_TOO_LONG,
        Error::ValueTooLarge { .. } => CACHE_ERR_VALUE_TOO_LARGE,
        Error::Full { .. } => CACHE_ERR_FULL,
        Error::BadMagic { .. }
        | Error::VersionMismatch { .. }
        | Error::Truncated { .. }
        | Error::Corrupt { .. } => CACHE_ERR_CORRUPT,
        Error::LockTimeout(_) | Error::NotRecoverable => CACHE_ERR_LOCK,
        Error::TooManyPins(_) => CACHE_ERR_TOO_MANY_PINS,
        Error::BufferTooSmall { .. } => CACHE_ERR_BUFFER_TOO_SMALL,
        Error::Os { .. } => CACHE_ERR_OS,
    }
}

fn fail(e: Error) -> c_int {
    let c = code_of(&e);
    set_error(c, e.to_string());
    c
}

fn invalid(msg: &str) -> c_int {
    set_error(CACHE_ERR_INVALID, msg.to_string());
    CACHE_ERR_INVALID
}

/// Runs `f`, turning a panic into `CACHE_ERR_PANIC`.
fn guard<T>(on_panic: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => {
            set_error(CACHE_ERR_PANIC, "internal error (panic) in memwatch-store".into());
            on_panic
        }
    }
}

/// # Safety
/// `p` is NULL or valid for `len` bytes.
unsafe fn bytes<'a>(p: *const c_void, len: usize) -> Option<&'a [u8]> {
    if len == 0 {
        return Some(&[]);
    }
    if p.is_null() {
        return None;
    }
    // SAFETY: the caller guarantees p is valid for len bytes.
    Some(unsafe { std::slice::from_raw_parts(p as *const u8, len) })
}

/// # Safety
/// `c` is NULL or a handle from `cache_connect`/`cache_open` not yet closed.
unsafe fn handle<'a>(c: *mut CacheHandle) -> Option<&'a Store> {
    // SAFETY: per the contract above.
    unsafe { c.as_ref() }.map(|h| &h.store)
}

/// # Safety
/// `name` is NULL or a NUL-terminated string.
unsafe fn name_of<'a>(name: *const c_char) -> Result<&'a str, c_int> {
    if name.is_null() {
        return Err(invalid("name is NULL"));
    }
    // SAFETY: name is a NUL-terminated string per the contract.
    unsafe { CStr::from_ptr(name) }.to_str().map_err(|_| invalid("name is not UTF-8"))
}

/// Creates (capacity > 0) or opens (capacity 0) the store `name`.
/// `policy`: `CACHE_POLICY_EVICT_LRU` or `CACHE_POLICY_REFUSE`.
/// Returns NULL on error (see `cache_last_error`).
///
/// # Safety
/// `name` must be NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn cache_connect(
    name: *const c_char,
    capacity: u64,
    policy: c_int,
) -> *mut CacheHandle {
    guard(std::ptr::null_mut(), || {
        // SAFETY: forwarded caller contract.
        let name = match unsafe { name_of(name) } {
            Ok(n) => n,
            Err(_) => return std::ptr::null_mut(),
        };
        let r = if capacity == 0 {
            Store::open(name)
        } else {
            let policy = match policy {
                CACHE_POLICY_EVICT_LRU => FullPolicy::EvictLru,
                CACHE_POLICY_REFUSE => FullPolicy::Refuse,
                _ => {
                    invalid("policy must be CACHE_POLICY_EVICT_LRU (0) or CACHE_POLICY_REFUSE (1)");
                    return std::ptr::null_mut();
                }
            };
            Store::connect_with(name, &Options::new(capacity, policy))
        };
        match r {
            Ok(store) => Box::into_raw(Box::new(CacheHandle { store })),
            Err(e) => {
                fail(e);
                std::ptr::null_mut()
            }
        }
    })
}

/// Opens an existing store; NULL on error.
///
/// # Safety
/// `name` must be NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn cache_open(name: *const c_char) -> *mut CacheHandle {
    // SAFETY: forwarded caller contract.
    unsafe { cache_connect(name, 0, 0) }
}

/// Stores a value. Returns `CACHE_OK` or a negative error.
///
/// # Safety
/// `c` is a live handle; `key`/`value` are valid for their lengths.
#[no_mangle]
pub unsafe extern "C" fn cache_put(
    c: *mut CacheHandle,
    key: *const c_void,
    key_len: usize,
    value: *const c_void,
    value_len: usize,
) -> c_int {
    guard(CACHE_ERR_PANIC, || {
        // SAFETY: forwarded caller contract.
        let (Some(s), Some(k), Some(v)) =
            (unsafe { handle(c) }, unsafe { bytes(key, key_len) }, unsafe {
                bytes(value, value_len)
            })
        else {
            return invalid("NULL handle, key or value");
        };
        match s.put(k, v) {
            Ok(()) => CACHE_OK,
            Err(e) => fail(e),
        }
    })
}

/// Copies the value of `key` into `buf` if it fits. Returns the value's
/// length (>= 0; if greater than `buf_len` nothing was copied: call again
/// with a bigger buffer), or a negative error (`CACHE_ERR_NOT_FOUND`).
///
/// # Safety
/// `c` is a live handle; `key` is valid for `key_len` bytes; `buf` is valid
/// for `buf_len` writable bytes (may be NULL when `buf_len` is 0).
#[no_mangle]
pub unsafe extern "C" fn cache_get(
    c: *mut CacheHandle,
    key: *const c_void,
    key_len: usize,
    buf: *mut c_void,
    buf_len: usize,
) -> i64 {
    guard(CACHE_ERR_PANIC as i64, || {
        // SAFETY: forwarded caller contract.
        let (Some(s), Some(k)) = (unsafe { handle(c) }, unsafe { bytes(key, key_len) }) else {
            return invalid("NULL handle or key") as i64;
        };
        if buf.is_null() && buf_len != 0 {
            return invalid("NULL buffer with non-zero length") as i64;
        }
        let out: &mut [u8] = if buf_len == 0 {
            &mut []
        } else {
            // SAFETY: buf is valid for buf_len writable bytes per the contract.
            unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, buf_len) }
        };
        match s.get_to_slice(k, out) {
            Ok(Some(n)) => n as i64,
            Ok(None) => {
                set_error(CACHE_ERR_NOT_FOUND, "key not found".into());
                CACHE_ERR_NOT_FOUND as i64
            }
            Err(e) => fail(e) as i64,
        }
    })
}

/// `cache_put` with 32-bit lengths, for FFIs that pass plain ints without
/// declared argument types (Python ctypes' fast path).
///
/// # Safety
/// As `cache_put`.
#[no_mangle]
pub unsafe extern "C" fn cache_put32(
    c: *mut CacheHandle,
    key: *const c_void,
    key_len: u32,
    value: *const c_void,
    value_len: u32,
) -> c_int {
    // SAFETY: forwarded caller contract.
    unsafe { cache_put(c, key, key_len as usize, value, value_len as usize) }
}

/// `cache_put32` that never waits for the writer lock: returns
/// `CACHE_ERR_BUSY` (and stores nothing) if another writer holds it. For
/// callers that must not block while holding a lock of their own (Python's
/// GIL): try this first, then fall back to `cache_put32`.
///
/// # Safety
/// As `cache_put`.
#[no_mangle]
pub unsafe extern "C" fn cache_try_put32(
    c: *mut CacheHandle,
    key: *const c_void,
    key_len: u32,
    value: *const c_void,
    value_len: u32,
) -> c_int {
    guard(CACHE_ERR_PANIC, || {
        // SAFETY: forwarded caller contract.
        let (Some(s), Some(k), Some(v)) =
            (unsafe { handle(c) }, unsafe { bytes(key, key_len as usize) }, unsafe {
                bytes(value, value_len as usize)
            })
        else {
            return invalid("NULL handle, key or value");
        };
        match s.try_put(k, v) {
            Ok(true) => CACHE_OK,
            Ok(false) => CACHE_ERR_BUSY,
            Err(e) => fail(e),
        }
    })
}

/// `cache_get` with 32-bit lengths, for FFIs that pass plain ints without
/// declared argument types (Python ctypes' fast path).
///
/// # Safety
/// As `cache_get`.
#[no_mangle]
pub unsafe extern "C" fn cache_get32(
    c: *mut CacheHandle,
    key: *const c_void,
    key_len: u32,
    buf: *mut c_void,
    buf_len: u32,
) -> i64 {
    // SAFETY: forwarded caller contract.
    unsafe { cache_get(c, key, key_len as usize, buf, buf_len as usize) }
}

/// Deletes `key`. Returns `CACHE_OK`, `CACHE_ERR_NOT_FOUND`, or an error.
///
/// # Safety
/// `c` is a live handle; `key` is valid for `key_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn cache_delete(
    c: *mut CacheHandle,
    key: *const c_void,
    key_len: usize,
) -> c_int {
    guard(CACHE_ERR_PANIC, || {
        // SAFETY: forwarded caller contract.
        let (Some(s), Some(k)) = (unsafe { handle(c) }, unsafe { bytes(key, key_len) }) else {
            return invalid("NULL handle or key");
        };
        match s.delete(k) {
            Ok(true) => CACHE_OK,
            Ok(false) => {
                set_error(CACHE_ERR_NOT_FOUND, "key not found".into());
                CACHE_ERR_NOT_FOUND
            }
            Err(e) => fail(e),
        }
    })
}

/// 1 if `key` is present, 0 if not, or a negative error.
///
/// # Safety
/// `c` is a live handle; `key` is valid for `key_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn cache_contains(
    c: *mut CacheHandle,
    key: *const c_void,
    key_len: usize,
) -> c_int {
    guard(CACHE_ERR_PANIC, || {
        // SAFETY: forwarded caller contract.
        let (Some(s), Some(k)) = (unsafe { handle(c) }, unsafe { bytes(key, key_len) }) else {
            return invalid("NULL handle or key");
        };
        match s.contains(k) {
            Ok(b) => b as c_int,
            Err(e) => fail(e),
        }
    })
}

/// Fills `*out` with store-wide statistics.
///
/// # Safety
/// `c` is a live handle; `out` is valid for writing one `cache_stats_t`.
#[no_mangle]
pub unsafe extern "C" fn cache_stats(c: *mut CacheHandle, out: *mut CacheStats) -> c_int {
    guard(CACHE_ERR_PANIC, || {
        // SAFETY: forwarded caller contract.
        let Some(s) = (unsafe { handle(c) }) else { return invalid("NULL handle") };
        if out.is_null() {
            return invalid("NULL output");
        }
        let v = s.stats();
        // SAFETY: out is non-NULL and valid for one write per the contract.
        unsafe { out.write(v) };
        CACHE_OK
    })
}

fn ns(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// Fills `*out` with the statistics of `key`; `CACHE_ERR_NOT_FOUND` if absent.
///
/// # Safety
/// `c` is a live handle; `key` is valid for `key_len` bytes; `out` is valid
/// for writing one `cache_key_stats_t`.
#[no_mangle]
pub unsafe extern "C" fn cache_key_stats(
    c: *mut CacheHandle,
    key: *const c_void,
    key_len: usize,
    out: *mut CacheKeyStats,
) -> c_int {
    guard(CACHE_ERR_PANIC, || {
        // SAFETY: forwarded caller contract.
        let (Some(s), Some(k)) = (unsafe { handle(c) }, unsafe { bytes(key, key_len) }) else {
            return invalid("NULL handle or key");
        };
        if out.is_null() {
            return invalid("NULL output");
        }
        match s.key_stats(k) {
            Ok(Some(st)) => {
                let v = CacheKeyStats {
                    value_size: st.value_size,
                    created_at_ns: ns(st.created_at),
                    updated_at_ns: ns(st.updated_at),
                    last_access_ns: ns(st.last_access),
                    access_count: st.access_count,
                };
                // SAFETY: out is non-NULL and valid for one write.
                unsafe { out.write(v) };
                CACHE_OK
            }
            Ok(None) => {
                set_error(CACHE_ERR_NOT_FOUND, "key not found".into());
                CACHE_ERR_NOT_FOUND
            }
            Err(e) => fail(e),
        }
    })
}

/// Writes all keys into `buf` as a sequence of (u32 little-endian length,
/// key bytes). Returns the number of bytes the whole list needs (>= 0); the
/// list was written only if that is <= `buf_len`. Negative on error.
///
/// # Safety
/// `c` is a live handle; `buf` is valid for `buf_len` writable bytes (may be
/// NULL when `buf_len` is 0).
#[no_mangle]
pub unsafe extern "C" fn cache_keys(c: *mut CacheHandle, buf: *mut c_void, buf_len: usize) -> i64 {
    guard(CACHE_ERR_PANIC as i64, || {
        // SAFETY: forwarded caller contract.
        let Some(s) = (unsafe { handle(c) }) else { return invalid("NULL handle") as i64 };
        if buf.is_null() && buf_len != 0 {
            return invalid("NULL buffer with non-zero length") as i64;
        }
        let keys = match s.keys() {
            Ok(k) => k,
            Err(e) => return fail(e) as i64,
        };
        let need: usize = keys.iter().map(|k| 4 + k.len()).sum();
        if need <= buf_len && need > 0 {
            // SAFETY: buf is valid for buf_len >= need writable bytes.
            let out = unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, buf_len) };
            let mut at = 0;
            for k in &keys {
                out[at..at + 4].copy_from_slice(&(k.len() as u32).to_le_bytes());
                out[at + 4..at + 4 + k.len()].copy_from_slice(k);
                at += 4 + k.len();
            }
        }
        need as i64
    })
}

/// Removes every entry.
///
/// # Safety
/// `c` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn cache_clear(c: *mut CacheHandle) -> c_int {
    guard(CACHE_ERR_PANIC, || {
        // SAFETY: forwarded caller contract.
        let Some(s) = (unsafe { handle(c) }) else { return invalid("NULL handle") };
        match s.clear() {
            Ok(()) => CACHE_OK,
            Err(e) => fail(e),
        }
    })
}

/// Closes the handle (NULL is allowed). The store stays; see `cache_unlink`.
///
/// # Safety
/// `c` is NULL or a live handle, not used again afterwards.
#[no_mangle]
pub unsafe extern "C" fn cache_close(c: *mut CacheHandle) -> c_int {
    guard(CACHE_ERR_PANIC, || {
        if !c.is_null() {
            // SAFETY: c came from Box::into_raw in cache_connect and is
            // closed once per the contract.
            drop(unsafe { Box::from_raw(c) });
        }
        CACHE_OK
    })
}

/// Removes the store's name (open handles keep working).
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn cache_unlink(name: *const c_char) -> c_int {
    guard(CACHE_ERR_PANIC, || {
        // SAFETY: forwarded caller contract.
        let name = match unsafe { name_of(name) } {
            Ok(n) => n,
            Err(code) => return code,
        };
        match Store::unlink(name) {
            Ok(()) => CACHE_OK,
            Err(e) => fail(e),
        }
    })
}

/// The message of the calling thread's last error ("" if none). Valid until
/// the next call into this library from the same thread.
#[no_mangle]
pub extern "C" fn cache_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().1.as_ptr())
}

/// The code (`CACHE_ERR_*`) of the calling thread's last error, `CACHE_OK`
/// if none: tells why `cache_connect`/`cache_open` returned NULL
/// (`CACHE_ERR_NOT_FOUND`: no such store).
#[no_mangle]
pub extern "C" fn cache_last_error_code() -> c_int {
    LAST_ERROR.with(|e| e.borrow().0)
}

/// The library version, e.g. "0.1.0".
#[no_mangle]
pub extern "C" fn cache_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_api_roundtrip() {
        let name = CString::new(format!("mwtest-capi-{}", std::process::id())).unwrap();
        // SAFETY: all pointers below are valid for the given lengths.
        unsafe {
            let c = cache_connect(name.as_ptr(), 1 << 20, CACHE_POLICY_REFUSE);
            assert!(!c.is_null());
            assert_eq!(
                cache_put(c, b"k".as_ptr().cast(), 1, b"value".as_ptr().cast(), 5),
                CACHE_OK
            );
            let mut buf = [0u8; 16];
            assert_eq!(cache_get(c, b"k".as_ptr().cast(), 1, buf.as_mut_ptr().cast(), 16), 5);
            assert_eq!(&buf[..5], b"value");
            assert_eq!(cache_get(c, b"k".as_ptr().cast(), 1, buf.as_mut_ptr().cast(), 2), 5);
            assert_eq!(
                cache_get(c, b"zz".as_ptr().cast(), 2, buf.as_mut_ptr().cast(), 16),
                CACHE_ERR_NOT_FOUND as i64
            );
            assert_eq!(cache_contains(c, b"k".as_ptr().cast(), 1), 1);
            let mut st = CacheStats::default();
            assert_eq!(cache_stats(c, &mut st), CACHE_OK);
            assert_eq!(st.entries, 1);
            let mut ks = CacheKeyStats::default();
            assert_eq!(cache_key_stats(c, b"k".as_ptr().cast(), 1, &mut ks), CACHE_OK);
            assert_eq!(ks.value_size, 5);
            let need = cache_keys(c, std::ptr::null_mut(), 0);
            assert_eq!(need, 5);
            let mut kb = vec![0u8; need as usize];
            assert_eq!(cache_keys(c, kb.as_mut_ptr().cast(), kb.len()), 5);
            assert_eq!(&kb, &[1, 0, 0, 0, b'k']);
            let long = vec![b'x'; 5000];
            assert_eq!(
                cache_put(c, long.as_ptr().cast(), long.len(), b"v".as_ptr().cast(), 1),
                CACHE_ERR_KEY_TOO_LONG
            );
            let msg = CStr::from_ptr(cache_last_error()).to_str().unwrap();
            assert!(msg.contains("longer than"), "{msg}");
            assert_eq!(
                cache_put(std::ptr::null_mut(), b"k".as_ptr().cast(), 1, b"v".as_ptr().cast(), 1),
                CACHE_ERR_INVALID
            );
            assert_eq!(cache_delete(c, b"k".as_ptr().cast(), 1), CACHE_OK);
            assert_eq!(cache_delete(c, b"k".as_ptr().cast(), 1), CACHE_ERR_NOT_FOUND);
            assert_eq!(cache_clear(c), CACHE_OK);
            assert_eq!(cache_close(c), CACHE_OK);
            assert!(cache_connect(std::ptr::null(), 1, 0).is_null());
            let bad = CString::new("a/b").unwrap();
            assert!(cache_connect(bad.as_ptr(), 1 << 20, 0).is_null());
            assert!(CStr::from_ptr(cache_last_error())
                .to_str()
                .unwrap()
                .contains("invalid store name"));
            assert!(cache_connect(name.as_ptr(), 1 << 20, 7).is_null());
            assert_eq!(cache_unlink(name.as_ptr()), CACHE_OK);
            assert_eq!(cache_unlink(name.as_ptr()), CACHE_ERR_NOT_FOUND);
            assert!(cache_open(name.as_ptr()).is_null());
        }
    }
}
