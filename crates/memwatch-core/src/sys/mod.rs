//! Thin, async-signal-safe wrappers over the system calls the engine uses,
//! and ([`maps`]) the reading of /proc/self/maps. Depends on nothing else in
//! the crate.

pub mod maps;

use std::sync::atomic::{AtomicUsize, Ordering};

static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);

/// The OS page size (asked once, then cached; never assumed to be 4096).
pub fn page_size() -> usize {
    let cached = PAGE_SIZE.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    // SAFETY: sysconf has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let size = if size > 0 { size as usize } else { 4096 };
    PAGE_SIZE.store(size, Ordering::Relaxed);
    size
}

/// Kernel thread id of the calling thread. Async-signal-safe.
pub fn gettid() -> u32 {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

/// CLOCK_MONOTONIC in nanoseconds. Async-signal-safe.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time the calling thread has used, in nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Page faults (minor + major) of the whole process so far, all threads,
/// living and exited (getrusage): never decreases.
pub fn process_faults() -> u64 {
    // SAFETY: an all-zero rusage is valid; getrusage only writes into it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: ru is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_minflt as u64 + ru.ru_majflt as u64
}

/// mprotect over whole pages; returns the errno on failure. Async-signal-safe.
pub fn mprotect(addr: usize, len: usize, prot: i32) -> Result<(), i32> {
    // SAFETY: mprotect only changes page permissions; callers pass page-aligned
    // ranges of pages the engine tracks and has verified to be mapped.
    let rc = unsafe { libc::mprotect(addr as *mut libc::c_void, len, prot) };
    if rc == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

/// The calling thread's errno.
pub fn errno() -> i32 {
    // SAFETY: __errno_location always returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Sets the calling thread's errno (the signal handler restores it on exit).
pub fn set_errno(value: i32) {
    // SAFETY: as in errno().
    unsafe { *libc::__errno_location() = value };
}

/// Anonymous private read-write mapping, zero-filled; the engine's own memory
/// (ring, page table) lives in such mappings so it never shares a page with
/// memory a user watches.
pub fn mmap_anon(len: usize) -> Option<*mut u8> {
    // SAFETY: an anonymous mapping with no address hint has no preconditions.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        None
    } else {
        Some(ptr as *mut u8)
    }
}

/// Unmaps a mapping made by mmap_anon.
///
/// # Safety
/// `ptr`/`len` must come from one mmap_anon call and nothing may use it after.
pub unsafe fn munmap(ptr: *mut u8, len: usize) {
    // SAFETY: guaranteed by the caller.
    unsafe { libc::munmap(ptr as *mut libc::c_void, len) };
}

/// An eventfd used to wake the worker; written from the signal handler.
pub struct EventFd(i32);

impl EventFd {
    /// Creates a non-blocking, close-on-exec eventfd.
    pub fn new() -> std::io::Result<EventFd> {
        // SAFETY: eventfd has no memory-safety preconditions.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(EventFd(fd))
        }
    }

    /// The raw descriptor (for the signal handler's lock-free wake).
    pub fn fd(&self) -> i32 {
        self.0
    }

    /// Waits until signalled or `timeout_ns` passes (None = forever), then
    /// resets (no read when it merely timed out). Nanosecond precision:
    /// writewatch scans are sub-millisecond apart. True when woken by a
    /// signal of the eventfd, false on the timeout.
    pub fn wait(&self, timeout_ns: Option<u64>) -> bool {
        let mut pfd = libc::pollfd { fd: self.0, events: libc::POLLIN, revents: 0 };
        let ts = timeout_ns.map(|ns| libc::timespec {
            tv_sec: (ns / 1_000_000_000) as _,
            tv_nsec: (ns % 1_000_000_000) as _,
        });
        let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: pfd is a valid pollfd array of length 1; ts_ptr is null or
        // points to a live timespec; no signal mask change.
        let ready = unsafe { libc::ppoll(&mut pfd, 1, ts_ptr, std::ptr::null()) };
        if ready > 0 {
            let mut buf = 0u64;
            // SAFETY: reading 8 bytes into a u64 from a non-blocking eventfd.
            unsafe { libc::read(self.0, &mut buf as *mut u64 as *mut libc::c_void, 8) };
        }
        ready > 0
    }
}

/// Signals an eventfd by descriptor. Async-signal-safe (one write(2)).
pub fn eventfd_signal(fd: i32) {
    let one = 1u64;
    // SAFETY: writes 8 bytes from a valid u64; errors (EAGAIN on overflow) are harmless.
    unsafe { libc::write(fd, &one as *const u64 as *const libc::c_void, 8) };
}

/// Copies `len` bytes at `addr` of this process without risking a fault:
/// None if any of it is not mapped (process_vm_readv reports EFAULT instead
/// of raising SIGSEGV). Falls back to a plain copy where the call is refused
/// (seccomp), after checking that the range is mapped ([`is_mapped`]).
pub fn read_self(addr: usize, len: usize) -> Option<Box<[u8]>> {
    let mut buf = vec![0u8; len].into_boxed_slice();
    let mut done = 0;
    while done < len {
        let local = libc::iovec {
            iov_base: buf[done..].as_mut_ptr() as *mut libc::c_void,
            iov_len: len - done,
        };
        let remote =
            libc::iovec { iov_base: (addr + done) as *mut libc::c_void, iov_len: len - done };
        // SAFETY: local points into our own buffer of the stated length; the
        // kernel checks the remote range and fails instead of faulting.
        let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
        if n > 0 {
            done += n as usize;
            continue;
        }
        let e = errno();
        if n < 0 && (e == libc::EPERM || e == libc::ENOSYS) {
            let ps = page_size();
            let start = addr / ps * ps;
            if !is_mapped(start, addr + len - start) {
                return None;
            }
            // SAFETY: the range is mapped (checked just above); watched
            // memory is readable.
            buf.copy_from_slice(unsafe { std::slice::from_raw_parts(addr as *const u8, len) });
            return Some(buf);
        }
        return None;
    }
    Some(buf)
}

/// True if every page of `[addr, addr+len)` (page-aligned) is mapped:
/// msync reports ENOMEM for a hole. One cheap syscall, no fault risk.
pub fn is_mapped(addr: usize, len: usize) -> bool {
    // SAFETY: MS_ASYNC on anonymous or file memory has no effect besides the
    // range check; the kernel validates the range.
    unsafe {
        libc::msync(addr as *mut libc::c_void, len, libc::MS_ASYNC) != -1 || errno() != libc::ENOMEM
    }
}

/// /proc/self/pagemap, opened once (-1 if it cannot be).
fn pagemap_fd() -> i32 {
    static PAGEMAP: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
    *PAGEMAP.get_or_init(|| {
        // SAFETY: NUL-terminated path.
        unsafe { libc::open(c"/proc/self/pagemap".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) }
    })
}

/// `PAGEMAP_SCAN` on /proc/self/pagemap (Linux 6.7+): `_IOWR('f', 16, struct pm_scan_arg)`.
pub const PAGEMAP_SCAN: u64 = 0xC060_6610;
/// PAGEMAP_SCAN page categories (linux/fs.h).
const PAGE_IS_PRESENT: u64 = 1 << 3;
const PAGE_IS_SWAPPED: u64 = 1 << 4;

/// `struct page_region` of linux/fs.h: a run of pages PAGEMAP_SCAN found.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct PageRegion {
    pub start: u64,
    pub end: u64,
    pub categories: u64,
}

/// `struct pm_scan_arg` of linux/fs.h.
#[repr(C)]
#[derive(Default)]
pub struct PmScanArg {
    pub size: u64,
    pub flags: u64,
    pub start: u64,
    pub end: u64,
    pub walk_end: u64,
    pub vec: u64,
    pub vec_len: u64,
    pub max_pages: u64,
    pub category_inverted: u64,
    pub category_mask: u64,
    pub category_anyof_mask: u64,
    pub return_mask: u64,
}

/// The unpopulated pages of `[start, end)` asked of the kernel in runs
/// (PAGEMAP_SCAN, pages neither present nor swapped): one ioctl per 64
/// runs, however many pages. None where the kernel lacks it.
fn unpopulated_by_scan(fd: i32, start: usize, end: usize) -> Option<Vec<usize>> {
    let ps = page_size();
    let mut vec = [PageRegion::default(); 64];
    let mut out = Vec::new();
    let mut from = start as u64;
    loop {
        let mut arg = PmScanArg {
            size: std::mem::size_of::<PmScanArg>() as u64,
            start: from,
            end: end as u64,
            vec: vec.as_mut_ptr() as u64,
            vec_len: vec.len() as u64,
            category_inverted: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
            category_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
            return_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
            ..PmScanArg::default()
        };
        // SAFETY: arg is a pm_scan_arg of the size it declares; its vec
        // (vec_len entries) outlives the call.
        let n = unsafe { libc::ioctl(fd, PAGEMAP_SCAN as _, &mut arg as *mut PmScanArg) };
        if n < 0 {
            return None;
        }
        let n = n as usize;
        for r in &vec[..n.min(vec.len())] {
            out.extend(r.start as usize / ps..r.end as usize / ps);
        }
        if arg.walk_end >= end as u64 || n < vec.len() {
            return Some(out);
        }
        from = arg.walk_end;
    }
}

/// The page numbers of the `count` pages from page-aligned `addr` that are
/// neither in memory nor swapped out (never touched since mapped, or
/// discarded): by PAGEMAP_SCAN, or where the kernel lacks it from
/// /proc/self/pagemap 4096 pages at a time (bits 63 and 62); None if
/// neither can be read.
pub fn unpopulated_pages(addr: usize, count: usize) -> Option<Vec<usize>> {
    let fd = pagemap_fd();
    if fd < 0 {
        return None;
    }
    unpopulated_by_scan(fd, addr, addr + count * page_size())
        .or_else(|| unpopulated_by_read(fd, addr, count))
}

/// unpopulated_pages from the 8-byte entries of /proc/self/pagemap.
fn unpopulated_by_read(fd: i32, addr: usize, count: usize) -> Option<Vec<usize>> {
    let first = addr / page_size();
    let mut out = Vec::new();
    let mut entries = vec![0u64; count.min(4096)];
    let mut done = 0;
    while done < count {
        let n = (count - done).min(entries.len());
        let bytes = n * 8;
        let mut got = 0;
        while got < bytes {
            let offset = ((first + done) * 8 + got) as libc::off_t;
            // SAFETY: reading into our own buffer, within its length.
            let r = unsafe {
                libc::pread(
                    fd,
                    (entries.as_mut_ptr() as *mut u8).add(got) as *mut libc::c_void,
                    bytes - got,
                    offset,
                )
            };
            if r <= 0 {
                return None;
            }
            got += r as usize;
        }
        let empty = entries[..n].iter().enumerate().filter(|(_, e)| **e & (3 << 62) == 0);
        out.extend(empty.map(|(i, _)| first + done + i));
        done += n;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PAGEMAP_SCAN and the pagemap entries agree on which pages were
    /// never touched (written or read), and both find exactly those.
    #[test]
    fn unpopulated_pages_are_found_by_scan_and_by_read() {
        let ps = page_size();
        let pages = 64;
        // SAFETY: anonymous private mapping, no preconditions.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                pages * ps,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        let addr = p as usize;
        for touched in [0, 2, 3, 40, 63] {
            // SAFETY: inside the mapping.
            unsafe { std::ptr::write_volatile((addr + touched * ps) as *mut u8, 1) };
        }
        // Read, not written: the zero page is mapped, so it is populated.
        // SAFETY: inside the mapping.
        let _ = unsafe { std::ptr::read_volatile((addr + 10 * ps) as *const u8) };
        let first = addr / ps;
        let want: Vec<usize> =
            (0..pages).filter(|i| ![0, 2, 3, 10, 40, 63].contains(i)).map(|i| first + i).collect();
        let fd = pagemap_fd();
        let scanned = unpopulated_by_scan(fd, addr, addr + pages * ps).expect("PAGEMAP_SCAN");
        assert_eq!(scanned, want);
        assert_eq!(unpopulated_by_read(fd, addr, pages).unwrap(), want);
        assert_eq!(unpopulated_pages(addr, pages).unwrap(), want);
        // SAFETY: the mapping made above.
        unsafe { libc::munmap(p, pages * ps) };
    }
}
