//! The writewatch backend's kernel interface: userfaultfd write-protection in
//! asynchronous mode (UFFD_FEATURE_WP_ASYNC, Linux 6.7+) plus PAGEMAP_SCAN,
//! which returns the pages written since the last scan and write-protects
//! them again in the same call. No signals: a write to a protected page is
//! resolved by the kernel itself (it just marks the page written), so system
//! calls that write into watched memory succeed and are reported, and no
//! runtime's SIGSEGV handler is involved.
//!
//! Debian's kernel headers predate these, so the definitions below are taken
//! from the Linux uapi headers (linux/userfaultfd.h, linux/fs.h).

use std::sync::OnceLock;

use crate::sys::{self, PageRegion, PmScanArg, PAGEMAP_SCAN};

const UFFD_API: u64 = 0xAA;
const UFFD_USER_MODE_ONLY: i32 = 1;
const UFFD_FEATURE_WP_UNPOPULATED: u64 = 1 << 13;
const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;
const UFFDIO_API: u64 = 0xC018_AA3F;
const UFFDIO_REGISTER: u64 = 0xC020_AA00;
const UFFDIO_UNREGISTER: u64 = 0x8010_AA01;
const UFFDIO_WRITEPROTECT: u64 = 0xC018_AA06;
const USERFAULTFD_IOC_NEW: u64 = 0xAA00;
const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1 << 0;

const PAGE_IS_WRITTEN: u64 = 1 << 1;
const PM_SCAN_WP_MATCHING: u64 = 1 << 0;
const PM_SCAN_CHECK_WPASYNC: u64 = 1 << 1;

/// Environment variable that makes writewatch unavailable (auto then picks
/// protect): for testing the fallback and for kernels that misbehave.
pub const DISABLE_ENV: &str = "MEMWATCH_DISABLE_WRITEWATCH";

#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioRange {
    start: u64,
    len: u64,
}

#[repr(C)]
struct UffdioRegister {
    range: UffdioRange,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioWriteprotect {
    range: UffdioRange,
    mode: u64,
}

/// An open userfaultfd in WP_ASYNC mode and /proc/self/pagemap.
pub struct WriteWatch {
    uffd: i32,
    pagemap: i32,
}

fn ioctl(fd: i32, request: u64, arg: *mut libc::c_void) -> Result<i64, i32> {
    // SAFETY: every caller passes a pointer to the repr(C) struct the request
    // expects, valid for reads and writes for the duration of the call.
    let r = unsafe { libc::ioctl(fd, request as _, arg) };
    if r < 0 {
        Err(sys::errno())
    } else {
        Ok(r as i64)
    }
}

fn close(fd: i32) {
    // SAFETY: closing a descriptor we own.
    unsafe { libc::close(fd) };
}

/// A userfaultfd, trying the plain syscall, then user-mode-only, then /dev/userfaultfd.
fn open_uffd() -> Result<i32, String> {
    let flags = libc::O_CLOEXEC | libc::O_NONBLOCK;
    // SAFETY: the userfaultfd syscall takes flags only.
    let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, flags) } as i32;
    if fd >= 0 {
        return Ok(fd);
    }
    let plain = sys::errno();
    // Unprivileged userfaultfd off (vm.unprivileged_userfaultfd=0): user-mode-only
    // faults are still allowed, and WP_ASYNC needs nothing more.
    // SAFETY: as above.
    let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, flags | UFFD_USER_MODE_ONLY) } as i32;
    if fd >= 0 {
        return Ok(fd);
    }
    let user_mode = sys::errno();
    let path = b"/dev/userfaultfd\0";
    // SAFETY: NUL-terminated path.
    let dev =
        unsafe { libc::open(path.as_ptr() as *const libc::c_char, libc::O_RDWR | libc::O_CLOEXEC) };
    if dev >= 0 {
        // SAFETY: USERFAULTFD_IOC_NEW takes the new descriptor's flags by value.
        let fd = unsafe { libc::ioctl(dev, USERFAULTFD_IOC_NEW as _, flags) };
        let e = sys::errno();
        close(dev);
        if fd >= 0 {
            return Ok(fd);
        }
        return Err(format!("userfaultfd unavailable: syscall errno {plain}, user-mode-only errno {user_mode}, /dev/userfaultfd errno {e}"));
    }
    Err(format!(
        "userfaultfd unavailable: syscall errno {plain}, user-mode-only errno {user_mode}, /dev/userfaultfd errno {}",
        sys::errno()
    ))
}

impl WriteWatch {
    fn open() -> Result<WriteWatch, String> {
        if std::env::var_os(DISABLE_ENV).is_some_and(|v| !v.is_empty() && v != "0") {
            return Err(format!("disabled by {DISABLE_ENV}"));
        }
        // Probe the features on one descriptor, enable them on another (the
        // API handshake can be done once per descriptor).
        let probe = open_uffd()?;
        let mut api = UffdioApi { api: UFFD_API, features: 0, ioctls: 0 };
        let r = ioctl(probe, UFFDIO_API, &mut api as *mut _ as *mut libc::c_void);
        close(probe);
        r.map_err(|e| format!("UFFDIO_API failed: errno {e}"))?;
        if api.features & UFFD_FEATURE_WP_ASYNC == 0 {
            return Err("kernel lacks UFFD_FEATURE_WP_ASYNC (needs Linux 6.7+)".into());
        }
        let wanted = UFFD_FEATURE_WP_ASYNC | (api.features & UFFD_FEATURE_WP_UNPOPULATED);
        let uffd = open_uffd()?;
        let mut api = UffdioApi { api: UFFD_API, features: wanted, ioctls: 0 };
        if let Err(e) = ioctl(uffd, UFFDIO_API, &mut api as *mut _ as *mut libc::c_void) {
            close(uffd);
            return Err(format!("UFFDIO_API with WP_ASYNC failed: errno {e}"));
        }
        let path = b"/proc/self/pagemap\0";
        // SAFETY: NUL-terminated path.
        let pagemap = unsafe {
            libc::open(path.as_ptr() as *const libc::c_char, libc::O_RDONLY | libc::O_CLOEXEC)
        };
        if pagemap < 0 {
            close(uffd);
            return Err(format!("cannot open /proc/self/pagemap: errno {}", sys::errno()));
        }
        let ww = WriteWatch { uffd, pagemap };
        // PAGEMAP_SCAN needs Linux 6.7: check it on an empty range.
        let mut none = Vec::new();
        if let Err(e) = ww.scan(0, 0, &mut none) {
            return Err(format!("PAGEMAP_SCAN unavailable: errno {e}"));
        }
        Ok(ww)
    }

    /// Registers whole pages `[start, start+len)` for write-protect tracking
    /// and write-protects them. Fails (errno) for mappings userfaultfd
    /// refuses; the caller then falls back for that region.
    pub fn register(&self, start: usize, len: usize) -> Result<(), i32> {
        let mut reg = UffdioRegister {
            range: UffdioRange { start: start as u64, len: len as u64 },
            mode: UFFDIO_REGISTER_MODE_WP,
            ioctls: 0,
        };
        ioctl(self.uffd, UFFDIO_REGISTER, &mut reg as *mut _ as *mut libc::c_void)?;
        let mut wp = UffdioWriteprotect {
            range: UffdioRange { start: start as u64, len: len as u64 },
            mode: UFFDIO_WRITEPROTECT_MODE_WP,
        };
        if let Err(e) =
            ioctl(self.uffd, UFFDIO_WRITEPROTECT, &mut wp as *mut _ as *mut libc::c_void)
        {
            self.unregister(start, len);
            return Err(e);
        }
        Ok(())
    }

    /// Registers whole pages without write-protecting them: repairs pages
    /// whose mapping was replaced (the new mapping is not registered). Such
    /// pages show up as written at the next scan, which protects them.
    pub fn reregister(&self, start: usize, len: usize) -> Result<(), i32> {
        let mut reg = UffdioRegister {
            range: UffdioRange { start: start as u64, len: len as u64 },
            mode: UFFDIO_REGISTER_MODE_WP,
            ioctls: 0,
        };
        ioctl(self.uffd, UFFDIO_REGISTER, &mut reg as *mut _ as *mut libc::c_void).map(|_| ())
    }

    /// Write-protects whole registered pages again (hot pages cooling down).
    pub fn protect(&self, start: usize, len: usize) -> Result<(), i32> {
        let mut wp = UffdioWriteprotect {
            range: UffdioRange { start: start as u64, len: len as u64 },
            mode: UFFDIO_WRITEPROTECT_MODE_WP,
        };
        ioctl(self.uffd, UFFDIO_WRITEPROTECT, &mut wp as *mut _ as *mut libc::c_void).map(|_| ())
    }

    /// Stops tracking whole pages (errors ignored: the range may be gone).
    pub fn unregister(&self, start: usize, len: usize) {
        let mut range = UffdioRange { start: start as u64, len: len as u64 };
        let _ = ioctl(self.uffd, UFFDIO_UNREGISTER, &mut range as *mut _ as *mut libc::c_void);
    }

    /// Appends the written pages of `[start, end)` to `out` as page-aligned
    /// `(start, end)` ranges and write-protects them again, atomically.
    pub fn scan(&self, start: usize, end: usize, out: &mut Vec<(usize, usize)>) -> Result<(), i32> {
        let mut vec = [PageRegion::default(); 64];
        let mut from = start as u64;
        loop {
            let mut arg = PmScanArg {
                size: std::mem::size_of::<PmScanArg>() as u64,
                flags: PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
                start: from,
                end: end as u64,
                vec: vec.as_mut_ptr() as u64,
                vec_len: vec.len() as u64,
                category_mask: PAGE_IS_WRITTEN,
                return_mask: PAGE_IS_WRITTEN,
                ..PmScanArg::default()
            };
            let n = ioctl(self.pagemap, PAGEMAP_SCAN, &mut arg as *mut _ as *mut libc::c_void)?
                as usize;
            for r in &vec[..n.min(vec.len())] {
                out.push((r.start as usize, r.end as usize));
            }
            if arg.walk_end >= end as u64 || n < vec.len() {
                return Ok(());
            }
            from = arg.walk_end;
        }
    }
}

static WRITEWATCH: OnceLock<Result<WriteWatch, String>> = OnceLock::new();

/// The process's writewatch instance, or why it is unavailable.
pub fn get() -> Result<&'static WriteWatch, &'static str> {
    WRITEWATCH.get_or_init(WriteWatch::open).as_ref().map_err(|e| e.as_str())
}
