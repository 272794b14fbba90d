//! Facts about the recording process: host, pid, start time, clocks.

use memwatch_core::Watcher;

use crate::Meta;

fn clock_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid, writable timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Nanoseconds since the Unix epoch.
pub(crate) fn unix_ns() -> i64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// The host name (gethostname), "" if unknown.
fn host() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its length; gethostname NUL-terminates
    // within it or truncates.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// When this process started, in Unix nanoseconds (from /proc: the boot
/// time plus field 22 of /proc/self/stat); 0 if unknown.
fn process_start_ns() -> i64 {
    let btime = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines().find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse::<i64>().ok()))
    });
    let start_ticks = std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| {
        // The command name (field 2) may hold spaces: count from its ')'.
        let rest = &s[s.rfind(')')? + 2..];
        rest.split(' ').nth(19)?.parse::<i64>().ok()
    });
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    match (btime, start_ticks) {
        (Some(b), Some(t)) if hz > 0 => b * 1_000_000_000 + t * (1_000_000_000 / hz as i64),
        _ => 0,
    }
}

/// A random positive id for a recording.
fn random_id() -> i64 {
    let mut b = [0u8; 8];
    // SAFETY: b is writable for 8 bytes.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    let mut v = u64::from_ne_bytes(b);
    if n != 8 {
        v = (unix_ns() as u64) ^ ((std::process::id() as u64) << 40);
    }
    (v >> 1) as i64 | 1
}

/// The `memwatch_recordings` row of a new recording of `watcher`.
pub(crate) fn meta(watcher: &Watcher) -> Meta {
    let real = unix_ns();
    let mono = clock_ns(libc::CLOCK_MONOTONIC);
    Meta {
        recording_id: random_id(),
        host: host(),
        pid: std::process::id() as i64,
        process_start_ns: process_start_ns(),
        watcher: watcher.id() as i64,
        backend: watcher.backend().name().to_string(),
        started_ns: real,
        clock_offset_ns: real - mono,
    }
}
