//! Segments: files in a per-user directory on tmpfs, mapped shared.

use crate::{Error, Result};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Environment variable naming the segment directory (overrides the default).
pub const DIR_ENV: &str = "MEMGLASS_DIR";

/// The segment directory: `$MEMGLASS_DIR` if set, else
/// `/dev/shm/memglass-<uid>` (tmpfs, so no disk writeback stalls).
pub fn default_dir() -> PathBuf {
    match std::env::var_os(DIR_ENV) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        // SAFETY: geteuid has no preconditions.
        _ => PathBuf::from(format!("/dev/shm/memglass-{}", unsafe { libc::geteuid() })),
    }
}

/// Checks a session name: 1 to 63 bytes of `A-Z a-z 0-9 _ - .`, not starting
/// with `.`. Segment file names are built from it, so nothing else is allowed.
pub fn validate_name(name: &str) -> Result<()> {
    let ok_chars = name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if name.is_empty() || name.len() > 63 || !ok_chars || name.starts_with('.') {
        return Err(Error::InvalidArgument(format!(
            "session name {name:?}: use 1 to 63 characters of A-Z a-z 0-9 _ - . (not starting with '.')"
        )));
    }
    Ok(())
}

/// Checks a label or type/field name: 1 to 63 bytes, no NUL or control characters.
pub fn validate_label(what: &str, s: &str) -> Result<()> {
    if s.is_empty() || s.len() > 63 || s.chars().any(|c| c.is_control()) {
        return Err(Error::InvalidArgument(format!(
            "{what} {s:?}: use 1 to 63 bytes without control characters"
        )));
    }
    Ok(())
}

pub(crate) fn os_err(what: &str) -> Error {
    Error::Os(format!("{what}: {}", std::io::Error::last_os_error()))
}

fn cpath(p: &Path) -> Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::InvalidArgument(format!("{} contains a NUL", p.display())))
}

/// An open segment directory, checked: a real directory (not a symlink),
/// owned by `owner`, not writable by group or others.
pub(crate) struct Dir {
    pub fd: OwnedFd,
    pub path: PathBuf,
    pub owner: u32,
}

impl Dir {
    /// Opens (creating it 0700 when `create`) and checks the directory.
    /// `owner`: the uid that must own it (default: ours).
    pub fn open(path: &Path, create: bool, owner: Option<u32>) -> Result<Dir> {
        let c = cpath(path)?;
        if create {
            // SAFETY: c is a valid C string.
            let r = unsafe { libc::mkdir(c.as_ptr(), 0o700) };
            if r != 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
                return Err(os_err(&format!("mkdir {}", path.display())));
            }
        }
        // SAFETY: c is a valid C string; the fd is owned below.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            return Err(if e.raw_os_error() == Some(libc::ENOENT) {
                Error::NotFound(format!("segment directory {} does not exist", path.display()))
            } else {
                Error::Os(format!("open {} (a directory, not a symlink): {e}", path.display()))
            });
        }
        // SAFETY: fd is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let st = fstat(fd.as_raw_fd())?;
        // SAFETY: geteuid has no preconditions.
        let want = owner.unwrap_or_else(|| unsafe { libc::geteuid() });
        if st.st_uid != want {
            return Err(Error::BadSegment(format!(
                "segment directory {} is owned by uid {}, not {want}",
                path.display(),
                st.st_uid
            )));
        }
        if st.st_mode & 0o022 != 0 {
            return Err(Error::BadSegment(format!(
                "segment directory {} is writable by group or others (mode {:o})",
                path.display(),
                st.st_mode & 0o7777
            )));
        }
        Ok(Dir { fd, path: path.to_path_buf(), owner: want })
    }

    /// Opens `name` in the directory with `flags | O_NOFOLLOW | O_CLOEXEC`.
    pub fn openat(&self, name: &str, flags: i32, mode: u32) -> std::io::Result<OwnedFd> {
        let c = CString::new(name).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        // SAFETY: valid dirfd and C string; the fd is owned below.
        let fd = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                mode as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor we own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Removes `name` from the directory (ENOENT is not an error).
    pub fn unlink(&self, name: &str) -> Result<()> {
        let c = CString::new(name).map_err(|_| Error::InvalidArgument(name.into()))?;
        // SAFETY: valid dirfd and C string.
        let r = unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) };
        if r != 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOENT) {
            return Err(os_err(&format!("unlink {name}")));
        }
        Ok(())
    }

    /// Atomically renames `from` to `to` inside the directory.
    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        let a = CString::new(from).map_err(|_| Error::InvalidArgument(from.into()))?;
        let b = CString::new(to).map_err(|_| Error::InvalidArgument(to.into()))?;
        let d = self.fd.as_raw_fd();
        // SAFETY: valid dirfd and C strings.
        if unsafe { libc::renameat(d, a.as_ptr(), d, b.as_ptr()) } != 0 {
            return Err(os_err(&format!("rename {from} -> {to}")));
        }
        Ok(())
    }

    /// Names of the directory's entries.
    pub fn list(&self) -> Result<Vec<String>> {
        let rd = std::fs::read_dir(&self.path)
            .map_err(|e| Error::Os(format!("read {}: {e}", self.path.display())))?;
        Ok(rd.filter_map(|e| e.ok()).filter_map(|e| e.file_name().into_string().ok()).collect())
    }
}

pub(crate) fn fstat(fd: i32) -> Result<libc::stat> {
    // SAFETY: st is plain data filled by fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and out-pointer.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(os_err("fstat"));
    }
    Ok(st)
}

/// A mapped segment. Read-only mappings never store.
pub(crate) struct Mapping {
    pub ptr: *mut u8,
    pub len: usize,
}

// SAFETY: the mapping is plain shared memory; all concurrent accesses go
// through atomics or the seqlock protocol.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` shared, writable or read-only.
    pub fn map(fd: &OwnedFd, len: usize, writable: bool) -> Result<Mapping> {
        let prot = if writable { libc::PROT_READ | libc::PROT_WRITE } else { libc::PROT_READ };
        // SAFETY: a fresh shared mapping of a file we hold open; checked below.
        let p = unsafe {
            libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, fd.as_raw_fd(), 0)
        };
        if p == libc::MAP_FAILED {
            return Err(os_err("mmap"));
        }
        Ok(Mapping { ptr: p as *mut u8, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len came from our mmap and nothing borrows it past drop.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

/// Creates a new segment file `name` of `len` bytes (O_EXCL), mode 0600 or
/// 0640, mapped read-write and zero-filled.
pub(crate) fn create_segment(
    dir: &Dir,
    name: &str,
    len: usize,
    group_readable: bool,
) -> Result<Mapping> {
    let mode = if group_readable { 0o640 } else { 0o600 };
    let fd = dir
        .openat(name, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, mode)
        .map_err(|e| Error::Os(format!("create {}/{name}: {e}", dir.path.display())))?;
    // SAFETY: valid fd; fchmod overrides the umask's say on group read.
    if unsafe { libc::fchmod(fd.as_raw_fd(), mode) } != 0 {
        return Err(os_err("fchmod"));
    }
    // SAFETY: valid fd.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } != 0 {
        let _ = dir.unlink(name);
        return Err(os_err(&format!("ftruncate {name} to {len} bytes")));
    }
    Mapping::map(&fd, len, true)
}

/// Opens an existing segment read-only (O_RDONLY | O_NOFOLLOW): a regular
/// file owned by the directory's owner, at least `min_len` bytes. Maps
/// exactly `want_len` bytes (or the file's size when None).
pub(crate) fn open_segment(
    dir: &Dir,
    name: &str,
    min_len: usize,
    want_len: Option<usize>,
) -> Result<Mapping> {
    let fd = dir.openat(name, libc::O_RDONLY, 0).map_err(|e| {
        if e.raw_os_error() == Some(libc::ENOENT) {
            Error::NotFound(format!("{}/{name} does not exist", dir.path.display()))
        } else if e.raw_os_error() == Some(libc::ELOOP) {
            Error::BadSegment(format!("{}/{name} is a symlink", dir.path.display()))
        } else {
            Error::Os(format!("open {}/{name}: {e}", dir.path.display()))
        }
    })?;
    let st = fstat(fd.as_raw_fd())?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(Error::BadSegment(format!("{name} is not a regular file")));
    }
    if st.st_uid != dir.owner {
        return Err(Error::BadSegment(format!(
            "{name} is owned by uid {}, not by the directory's owner {}",
            st.st_uid, dir.owner
        )));
    }
    let size = st.st_size as usize;
    let want = want_len.unwrap_or(size);
    if size < min_len.max(want) || want < min_len {
        return Err(Error::BadSegment(format!(
            "{name} is truncated: {size} bytes, expected at least {}",
            min_len.max(want)
        )));
    }
    Mapping::map(&fd, want, false)
}

/// CLOCK_REALTIME in nanoseconds.
pub(crate) fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// State letter and start time (field 22) of process `pid` from
/// /proc/PID/stat; None if there is no such process.
pub(crate) fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = &s[s.rfind(')')? + 2..];
    let mut it = rest.split(' ');
    let state = it.next()?.chars().next()?;
    // rest starts at field 3; field 22 is the 19th after it.
    let start = it.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Header segment file name of a session.
pub(crate) fn header_name(session: &str) -> String {
    format!("{session}.header")
}

/// Data region segment file name.
pub(crate) fn region_name(session: &str, id: u32) -> String {
    format!("{session}.region.{id}")
}
