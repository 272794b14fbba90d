//! Checks a range against /proc/self/maps: mapped, writable, and with which
//! protection each page must be restored on unwatch.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::types::Error;

/// One mapping of /proc/self/maps.
#[derive(Clone, Copy, Debug)]
pub struct Mapping {
    pub start: usize,
    pub end: usize,
    /// PROT_* bits of the mapping.
    pub prot: i32,
    /// The main thread's stack (`[stack]`).
    pub is_stack: bool,
    /// Private anonymous memory (inode 0: heap, stacks, anonymous mmap).
    pub anon: bool,
    /// A shared mapping (MAP_SHARED, `s` in the maps): other processes, or
    /// writes through its file, may change it without touching our page
    /// tables.
    pub shared: bool,
    /// Shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS, `/dev/zero
    /// (deleted)`): only forked children can write it too.
    pub shared_anon: bool,
}

/// Shared anonymous memory by its name in the maps.
fn is_shared_anon_name(name: &[u8]) -> bool {
    name.starts_with(b"/dev/zero") || name.starts_with(b"[anon_shmem")
}

fn parse_line(line: &str) -> Option<Mapping> {
    let mut parts = line.split_whitespace();
    let range = parts.next()?;
    let perms = parts.next()?.as_bytes();
    let (start, end) = range.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let inode = parts.nth(2);
    let anon = inode == Some("0");
    let name = parts.next().unwrap_or("");
    let is_stack = name == "[stack]";
    let mut prot = 0;
    if perms.first() == Some(&b'r') {
        prot |= libc::PROT_READ;
    }
    if perms.get(1) == Some(&b'w') {
        prot |= libc::PROT_WRITE;
    }
    if perms.get(2) == Some(&b'x') {
        prot |= libc::PROT_EXEC;
    }
    let shared = perms.get(3) == Some(&b's');
    let shared_anon = shared && is_shared_anon_name(name.as_bytes());
    Some(Mapping { start, end, prot, is_stack, anon: anon && !shared, shared, shared_anon })
}

/// Every mapping of the process, in address order.
pub fn all() -> Result<Vec<Mapping>, Error> {
    let text = std::fs::read_to_string("/proc/self/maps")
        .map_err(|e| Error::Os(format!("cannot read /proc/self/maps: {e}")))?;
    Ok(text.lines().filter_map(parse_line).collect())
}

/// /proc/self/maps read at most once per engine pass, on first need. Only
/// valid while the engine lock is held: the protection states it is
/// consulted for (ours read-only or ours written) are both accepted, so the
/// engine's own mprotect calls during the pass do not make it stale.
#[derive(Default)]
pub struct MapsCache(Option<Result<Vec<Mapping>, ()>>);

impl MapsCache {
    /// The mappings, or None if /proc/self/maps cannot be read.
    pub fn get(&mut self) -> Option<&[Mapping]> {
        self.0.get_or_insert_with(|| all().map_err(|_| ())).as_deref().ok()
    }
}

/// The mappings covering `[addr, addr+len)`, in address order, after checking
/// that the range is fully mapped and writable. `own_prot(page_addr)` gives
/// the saved protection of pages the engine itself made read-only; their
/// current protection in the maps is ours, not the owner's.
pub fn writable_mappings(
    addr: usize,
    len: usize,
    own_prot: impl Fn(usize) -> Option<i32>,
) -> Result<Vec<Mapping>, Error> {
    let end = addr + len;
    let (mut found, covered) = match query_range(addr, end) {
        Some(found) => found,
        None => scan_range(addr, end)?,
    };
    if covered < end {
        return Err(Error::Unmapped(format!(
            "{len} bytes at {addr:#x}: no mapping at {covered:#x}"
        )));
    }
    let page_size = super::page_size();
    for m in found.iter_mut().filter(|m| m.prot & libc::PROT_WRITE == 0) {
        // Writable after all if every page of it inside the range is one we
        // protected ourselves.
        let first = m.start.max(addr) / page_size;
        let last = (m.end.min(end) - 1) / page_size;
        let saved: Option<Vec<i32>> = (first..=last).map(|p| own_prot(p * page_size)).collect();
        if let Some(saved) = saved {
            if saved.iter().all(|p| p & libc::PROT_WRITE != 0) {
                m.prot = saved[0];
            }
        }
    }
    if let Some(m) = found.iter().find(|m| m.prot & libc::PROT_WRITE == 0) {
        return Err(Error::ReadOnly(format!(
            "{len} bytes at {addr:#x}: mapping {:#x}-{:#x} is not writable",
            m.start, m.end
        )));
    }
    Ok(found)
}

/// The mappings covering `[addr, end)` from the whole text of
/// /proc/self/maps (O(all mappings)), and how far they cover it.
fn scan_range(addr: usize, end: usize) -> Result<(Vec<Mapping>, usize), Error> {
    let text = std::fs::read_to_string("/proc/self/maps")
        .map_err(|e| Error::Os(format!("cannot read /proc/self/maps: {e}")))?;
    let mut covered = addr;
    let mut found = Vec::new();
    for m in text.lines().filter_map(parse_line) {
        if m.end <= covered || m.start >= end {
            continue;
        }
        if m.start > covered {
            break; // a hole
        }
        found.push(m);
        covered = m.end;
        if covered >= end {
            break;
        }
    }
    Ok((found, covered))
}

/// `struct procmap_query` of linux/fs.h (Linux 6.11+).
#[repr(C)]
#[derive(Default)]
struct ProcmapQuery {
    size: u64,
    query_flags: u64,
    query_addr: u64,
    vma_start: u64,
    vma_end: u64,
    vma_flags: u64,
    vma_page_size: u64,
    vma_offset: u64,
    inode: u64,
    dev_major: u32,
    dev_minor: u32,
    vma_name_size: u32,
    build_id_size: u32,
    vma_name_addr: u64,
    build_id_addr: u64,
}

/// `_IOWR('f', 17, struct procmap_query)`.
const PROCMAP_QUERY: libc::c_ulong = 0xC000_0000
    | ((std::mem::size_of::<ProcmapQuery>() as libc::c_ulong) << 16)
    | ((b'f' as libc::c_ulong) << 8)
    | 17;

/// `PROCMAP_QUERY_COVERING_OR_NEXT_VMA`: the mapping at the address, or the
/// next one after it.
const COVERING_OR_NEXT: u64 = 0x10;

/// The mappings covering `[addr, end)` asked of the kernel one mapping at a
/// time (PROCMAP_QUERY: O(log n) each, no text), and how far they cover
/// it without a hole; None where the kernel lacks the ioctl (then the text
/// is read).
fn query_range(addr: usize, end: usize) -> Option<(Vec<Mapping>, usize)> {
    let mut covered = addr;
    let mut found = Vec::new();
    while covered < end {
        match query(covered, 0) {
            Query::Found(m) => {
                covered = m.end;
                found.push(m);
            }
            Query::None => break, // a hole
            Query::Unsupported => return None,
        }
    }
    Some((found, covered))
}

/// Every mapping that intersects `[addr, end)`, holes allowed, in address
/// order: from the kernel (PROCMAP_QUERY, one ioctl per mapping), or from
/// `text` (a whole /proc/self/maps) where the kernel lacks the ioctl. None
/// when neither can be read.
pub fn mappings_in(addr: usize, end: usize, text: &mut MapsCache) -> Option<Vec<Mapping>> {
    let mut found = Vec::new();
    let mut at = addr;
    while at < end {
        match query(at, COVERING_OR_NEXT) {
            Query::Found(m) if m.start < end => {
                at = m.end;
                found.push(m);
            }
            Query::Found(_) | Query::None => return Some(found),
            Query::Unsupported => return Some(intersecting(text.get()?, addr, end)),
        }
    }
    Some(found)
}

/// The mappings of the sorted list `all` that intersect `[addr, end)`.
fn intersecting(all: &[Mapping], addr: usize, end: usize) -> Vec<Mapping> {
    let first = all.partition_point(|m| m.end <= addr);
    all[first..].iter().take_while(|m| m.start < end).copied().collect()
}

enum Query {
    Found(Mapping),
    /// No mapping there (or after it, with COVERING_OR_NEXT).
    None,
    /// The kernel has no PROCMAP_QUERY (Linux < 6.11) or /proc is unreadable.
    Unsupported,
}

/// One PROCMAP_QUERY: the mapping at `addr` (or, with COVERING_OR_NEXT,
/// the next one).
fn query(addr: usize, flags: u64) -> Query {
    use std::os::fd::AsRawFd;
    // Kept open, with the process it names: after a fork the fd would
    // still query the parent, so a child opens its own (a fork handler
    // counts forks: no getpid per query).
    static FILE: std::sync::Mutex<Option<(u64, std::fs::File)>> = std::sync::Mutex::new(None);
    static FORKS: AtomicU64 = AtomicU64::new(0);
    extern "C" fn forked() {
        FORKS.fetch_add(1, Ordering::Relaxed);
    }
    static HOOK: std::sync::Once = std::sync::Once::new();
    // SAFETY: registers a child handler that only bumps an atomic.
    HOOK.call_once(|| unsafe {
        libc::pthread_atfork(None, None, Some(forked));
    });
    let mut kept = FILE.lock().unwrap_or_else(|e| e.into_inner());
    let pid = FORKS.load(Ordering::Relaxed);
    if kept.as_ref().map(|(p, _)| *p) != Some(pid) {
        match std::fs::File::open("/proc/self/maps") {
            Ok(f) => *kept = Some((pid, f)),
            Err(_) => return Query::Unsupported,
        }
    }
    let file = &kept.as_ref().expect("just set").1;
    let mut name = [0u8; 4096];
    let mut q = ProcmapQuery {
        size: std::mem::size_of::<ProcmapQuery>() as u64,
        query_flags: flags,
        query_addr: addr as u64,
        vma_name_size: name.len() as u32,
        vma_name_addr: name.as_mut_ptr() as u64,
        ..ProcmapQuery::default()
    };
    // SAFETY: q is a valid procmap_query of the size it declares, and
    // its name buffer (name.len() bytes) outlives the call.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), PROCMAP_QUERY, &mut q) };
    if r != 0 {
        return match super::errno() {
            libc::ENOENT => Query::None,
            _ => Query::Unsupported,
        };
    }
    let mut prot = 0;
    for (bit, p) in [(1, libc::PROT_READ), (2, libc::PROT_WRITE), (4, libc::PROT_EXEC)] {
        if q.vma_flags & bit != 0 {
            prot |= p;
        }
    }
    let shared = q.vma_flags & 8 != 0;
    let name_len = (q.vma_name_size as usize).saturating_sub(1).min(name.len());
    Query::Found(Mapping {
        start: q.vma_start as usize,
        end: q.vma_end as usize,
        prot,
        is_stack: &name[..name_len] == b"[stack]",
        anon: q.inode == 0 && !shared,
        shared,
        shared_anon: shared && is_shared_anon_name(&name[..name_len]),
    })
}

/// Protection of the page at `page_addr`, from mappings returned above.
pub fn prot_at(mappings: &[Mapping], page_addr: usize) -> i32 {
    mappings
        .iter()
        .find(|m| m.start <= page_addr && page_addr < m.end)
        .map(|m| m.prot)
        .unwrap_or(libc::PROT_READ | libc::PROT_WRITE)
}

/// True if `[addr, addr+len)` touches a thread stack: the main thread's
/// `[stack]` mapping or the calling thread's own stack. A stack page must
/// never be read-only under the protect backend: the kernel could not push
/// the signal frame for the fault onto it and would kill the process.
pub fn on_a_stack(mappings: &[Mapping], addr: usize, len: usize) -> bool {
    if mappings.iter().any(|m| m.is_stack) {
        return true;
    }
    let (base, top) = own_stack();
    addr < top && addr + len > base
}

/// The calling thread's stack `[base, top)` ((0, 0) if unknown), asked once
/// per thread: for the main thread glibc's pthread_getattr_np reads all of
/// /proc/self/maps, which every watch() would pay again.
fn own_stack() -> (usize, usize) {
    thread_local! {
        static STACK: std::cell::Cell<Option<(usize, usize)>> = const { std::cell::Cell::new(None) };
    }
    STACK.with(|cached| {
        if let Some(range) = cached.get() {
            return range;
        }
        // SAFETY: pthread_getattr_np fills a pthread_attr_t we own and destroy.
        let range = unsafe {
            let mut attr: libc::pthread_attr_t = std::mem::zeroed();
            if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
                return (0, 0); // not cached: asked again next time
            }
            let mut base: *mut libc::c_void = std::ptr::null_mut();
            let mut size: libc::size_t = 0;
            let ok = libc::pthread_attr_getstack(&attr, &mut base, &mut size) == 0;
            libc::pthread_attr_destroy(&mut attr);
            if !ok {
                return (0, 0);
            }
            (base as usize, base as usize + size)
        };
        cached.set(Some(range));
        range
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ioctl and the text agree on every mapping of this process
    /// (skipped nowhere: a kernel without the ioctl fails this test, so
    /// that the fallback is known to be the one in use).
    #[test]
    fn the_kernel_query_matches_the_text() {
        let text = all().unwrap();
        let mut compared = 0;
        for m in text.iter().filter(|m| !m.is_stack && m.prot & libc::PROT_READ != 0) {
            let (q, covered) = query_range(m.start, m.end).expect("PROCMAP_QUERY (Linux 6.11+)");
            if q.len() != 1 || covered != m.end {
                continue; // the process changed its mappings meanwhile
            }
            let q = q[0];
            assert_eq!(
                (q.start, q.end, q.prot, q.shared, q.anon),
                (m.start, m.end, m.prot, m.shared, m.anon)
            );
            compared += 1;
        }
        assert!(compared > 5, "{compared}");
        let stack = text.iter().find(|m| m.is_stack).expect("[stack]");
        assert!(query_range(stack.start, stack.end).unwrap().0[0].is_stack);
        // A hole: nothing covers it.
        let (q, covered) = query_range(0x1000, 0x2000).unwrap();
        assert!(q.is_empty() && covered == 0x1000);
        // Across holes: the same mappings as the text.
        let (from, to) = (text[0].start, text[text.len() - 1].end);
        let across = mappings_in(from, to, &mut MapsCache::default()).unwrap();
        let key = |m: &Mapping| (m.start, m.end, m.prot);
        let text_keys: Vec<_> = intersecting(&all().unwrap(), from, to).iter().map(key).collect();
        let query_keys: Vec<_> = across.iter().map(key).collect();
        // The process may map or unmap meanwhile (other tests' threads):
        // most mappings agree.
        let same = query_keys.iter().filter(|k| text_keys.contains(k)).count();
        assert!(same * 10 >= text_keys.len() * 9, "{same} of {}", text_keys.len());
        assert!(mappings_in(0x1000, 0x2000, &mut MapsCache::default()).unwrap().is_empty());
        // The text fallback's range filter: partial overlaps in, neighbours out.
        let m = |start, end| Mapping { start, end, ..text[0] };
        let list = [m(0x1000, 0x3000), m(0x5000, 0x6000), m(0x6000, 0x8000), m(0x9000, 0xa000)];
        let hit: Vec<_> = intersecting(&list, 0x2000, 0x6001).iter().map(|m| m.start).collect();
        assert_eq!(hit, [0x1000, 0x5000, 0x6000]);
        assert!(intersecting(&list, 0x3000, 0x5000).is_empty());
    }
}
