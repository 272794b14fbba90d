//! POSIX shared-memory segments: names, shm_open, flock, mmap.

use crate::error::{Error, Result};
use std::ffi::CString;

/// Longest store name accepted (without the leading '/'); NAME_MAX is 255.
pub const MAX_NAME_LEN: usize = 200;

/// Checks a store name and returns the shm name ("/" + name).
///
/// Accepted: 1..=200 characters from `[A-Za-z0-9._-]`, optionally with one
/// leading '/', not "." or "..".
pub fn shm_name(name: &str) -> Result<CString> {
    let bad = |reason| Err(Error::InvalidName { name: name.to_string(), reason });
    let bare = name.strip_prefix('/').unwrap_or(name);
    if bare.is_empty() {
        return bad("empty");
    }
    if bare.len() > MAX_NAME_LEN {
        return bad("longer than 200 bytes");
    }
    if bare == "." || bare == ".." {
        return bad("'.' and '..' are not names");
    }
    if !bare.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        return bad(
            "only letters, digits, '.', '_' and '-' are allowed (one leading '/' is optional)",
        );
    }
    // No NUL possible after the check above.
    Ok(CString::new(format!("/{bare}")).expect("validated name has no NUL"))
}

/// An open shm file descriptor, closed on drop.
pub struct Fd(pub libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: we own this descriptor and close it exactly once.
        unsafe { libc::close(self.0) };
    }
}

/// How `open` should behave when the segment does not exist.
pub enum OpenMode {
    /// Create it if missing (O_CREAT|O_EXCL first, mode 0600).
    CreateOrOpen,
    /// Fail with `NotFound` if missing.
    OpenOnly,
}

/// Opens (or creates) the segment. Returns the fd and whether we created it.
pub fn open(name: &CString, display: &str, mode: OpenMode) -> Result<(Fd, bool)> {
    loop {
        if let OpenMode::CreateOrOpen = mode {
            // SAFETY: `name` is a valid NUL-terminated C string.
            let fd = unsafe {
                libc::shm_open(name.as_ptr(), libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, 0o600)
            };
            if fd >= 0 {
                let fd = Fd(fd);
                // The umask can only clear bits of 0600, but be explicit.
                // SAFETY: fd is a valid open descriptor.
                unsafe { libc::fchmod(fd.0, 0o600) };
                return Ok((fd, true));
            }
            let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            if e != libc::EEXIST {
                return Err(Error::os_code("shm_open(O_CREAT)", e));
            }
        }
        // SAFETY: `name` is a valid NUL-terminated C string.
        let fd = unsafe { libc::shm_open(name.as_ptr(), libc::O_RDWR, 0) };
        if fd >= 0 {
            return Ok((Fd(fd), false));
        }
        let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        if e == libc::ENOENT {
            match mode {
                // Unlinked between our two calls: try creating again.
                OpenMode::CreateOrOpen => continue,
                OpenMode::OpenOnly => return Err(Error::NotFound(display.to_string())),
            }
        }
        return Err(Error::os_code("shm_open", e));
    }
}

/// Takes an exclusive flock on the segment (used to serialize initialization).
pub fn lock_exclusive(fd: &Fd) -> Result<()> {
    loop {
        // SAFETY: fd is a valid open descriptor.
        if unsafe { libc::flock(fd.0, libc::LOCK_EX) } == 0 {
            return Ok(());
        }
        let e = errno();
        if e != libc::EINTR {
            return Err(Error::os_code("flock", e));
        }
    }
}

/// Releases the flock.
pub fn unlock(fd: &Fd) {
    // SAFETY: fd is a valid open descriptor.
    unsafe { libc::flock(fd.0, libc::LOCK_UN) };
}

/// The calling thread's errno.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Size of the segment in bytes.
pub fn size(fd: &Fd) -> Result<u64> {
    // SAFETY: all-zero is a valid `stat`; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd is valid and `st` is a writable stat.
    if unsafe { libc::fstat(fd.0, &mut st) } != 0 {
        return Err(Error::os("fstat"));
    }
    Ok(st.st_size as u64)
}

/// Sets the segment's size.
pub fn truncate(fd: &Fd, len: u64) -> Result<()> {
    // SAFETY: fd is a valid descriptor.
    if unsafe { libc::ftruncate(fd.0, len as libc::off_t) } != 0 {
        return Err(Error::os("ftruncate"));
    }
    Ok(())
}

/// A shared read-write mapping, unmapped on drop.
pub struct Mapping {
    /// Start of the mapping.
    pub ptr: *mut u8,
    /// Length in bytes.
    pub len: usize,
}

// SAFETY: the mapping is plain shared memory; all access to it goes through
// atomics or the store's locking protocol, never through Rust references that
// assume exclusivity.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of the segment shared and read-write.
    pub fn map(fd: &Fd, len: usize) -> Result<Mapping> {
        // SAFETY: mapping a valid fd with a non-zero length at an address the
        // kernel chooses has no preconditions on our memory.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.0,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error::os("mmap"));
        }
        Ok(Mapping { ptr: p as *mut u8, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned; nothing refers to
        // the mapping once its owner (the Store) is dropped.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

/// Removes the name (existing mappings stay valid until unmapped).
pub fn unlink(name: &CString, display: &str) -> Result<()> {
    // SAFETY: `name` is a valid NUL-terminated C string.
    if unsafe { libc::shm_unlink(name.as_ptr()) } != 0 {
        let e = errno();
        if e == libc::ENOENT {
            return Err(Error::NotFound(display.to_string()));
        }
        return Err(Error::os_code("shm_unlink", e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(shm_name("abc").is_ok());
        assert!(shm_name("/a.b_c-1").is_ok());
        assert_eq!(shm_name("/x").unwrap().to_str().unwrap(), "/x");
        for bad in ["", "/", "a/b", "//a", ".", "..", "a b", "é", "a\0b"] {
            assert!(shm_name(bad).is_err(), "{bad:?}");
        }
        assert!(shm_name(&"a".repeat(201)).is_err());
        assert!(shm_name(&"a".repeat(200)).is_ok());
    }
}
