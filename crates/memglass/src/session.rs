//! Session listing, liveness and removal of dead sessions' segments.

use crate::layout::{self, Header, FLAG_SHUTDOWN};
use crate::shm::{self, Dir};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Is the producer of a session still there?
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Liveness {
    /// The producer process runs (same pid and start time) and its heartbeat is fresh.
    Alive,
    /// The producer process exists but its heartbeat stopped (hung, stopped,
    /// or stuck in a long system call).
    Stale,
    /// The producer exited, was killed, shut down, or its pid now belongs to
    /// another process. Its segments can be removed ([`remove_stale`]).
    Dead,
}

impl Liveness {
    /// Lower-case name: `alive`, `stale`, `dead`.
    pub fn name(self) -> &'static str {
        match self {
            Liveness::Alive => "alive",
            Liveness::Stale => "stale",
            Liveness::Dead => "dead",
        }
    }
}

/// One session as found in the segment directory.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionInfo {
    /// Session name.
    pub name: String,
    /// Directory holding its segments.
    pub dir: PathBuf,
    /// Producer process id.
    pub pid: u32,
    /// Producer start time (clock ticks since boot, /proc/PID/stat field 22).
    pub start_time: u64,
    /// CLOCK_REALTIME nanoseconds when the session was created.
    pub created_ns: u64,
    /// Time since creation.
    pub age: Duration,
    /// Time since the producer's last heartbeat.
    pub heartbeat_age: Duration,
    /// Alive, stale or dead.
    pub liveness: Liveness,
    /// Why it is stale or dead ("" when alive).
    pub reason: String,
    /// Objects alive in it.
    pub object_count: u32,
    /// Types registered.
    pub type_count: u32,
    /// Data regions.
    pub region_count: u32,
    /// Structural sequence number.
    pub sequence: u64,
    /// Set when the header segment could not be read (truncated, corrupt,
    /// foreign): the other fields are then zero and `liveness` is `Dead`.
    pub problem: Option<String>,
}

/// Judges the producer of a mapped header.
pub(crate) fn judge(h: &Header) -> (Liveness, String) {
    if h.flags.load(Ordering::Acquire) & FLAG_SHUTDOWN != 0 {
        return (Liveness::Dead, "the producer shut down".into());
    }
    match shm::proc_stat(h.producer_pid) {
        None => return (Liveness::Dead, format!("process {} is gone", h.producer_pid)),
        Some(('Z' | 'X', _)) => {
            return (Liveness::Dead, format!("process {} exited", h.producer_pid));
        }
        Some((_, start)) if start != h.producer_start_time => {
            return (
                Liveness::Dead,
                format!("pid {} now belongs to another process", h.producer_pid),
            );
        }
        Some(_) => {}
    }
    let age = shm::now_ns().saturating_sub(h.heartbeat_ns.load(Ordering::Acquire));
    let limit = stale_after(h.heartbeat_interval_ns);
    if age > limit {
        return (Liveness::Stale, format!("no heartbeat for {} ms", age / 1_000_000));
    }
    (Liveness::Alive, String::new())
}

/// Heartbeat age after which a live process counts as stale.
fn stale_after(interval_ns: u64) -> u64 {
    interval_ns.saturating_mul(10).max(1_000_000_000)
}

pub(crate) fn info_of(name: &str, dir: &Path, h: &Header) -> SessionInfo {
    let (liveness, reason) = judge(h);
    let now = shm::now_ns();
    SessionInfo {
        name: name.to_string(),
        dir: dir.to_path_buf(),
        pid: h.producer_pid,
        start_time: h.producer_start_time,
        created_ns: h.created_ns,
        age: Duration::from_nanos(now.saturating_sub(h.created_ns)),
        heartbeat_age: Duration::from_nanos(
            now.saturating_sub(h.heartbeat_ns.load(Ordering::Acquire)),
        ),
        liveness,
        reason,
        object_count: h.live_objects.load(Ordering::Acquire),
        type_count: h.type_count.load(Ordering::Acquire),
        region_count: h.region_count.load(Ordering::Acquire),
        sequence: h.sequence.load(Ordering::Acquire),
        problem: None,
    }
}

fn broken(name: &str, dir: &Path, e: Error) -> SessionInfo {
    SessionInfo {
        name: name.to_string(),
        dir: dir.to_path_buf(),
        pid: 0,
        start_time: 0,
        created_ns: 0,
        age: Duration::ZERO,
        heartbeat_age: Duration::ZERO,
        liveness: Liveness::Dead,
        reason: e.to_string(),
        object_count: 0,
        type_count: 0,
        region_count: 0,
        sequence: 0,
        problem: Some(e.to_string()),
    }
}

/// Maps and checks a session's header segment read-only.
pub(crate) fn open_header(dir: &Dir, name: &str) -> Result<shm::Mapping> {
    let m = shm::open_segment(dir, &shm::header_name(name), 4096, None)?;
    // SAFETY: the mapping is at least 4096 bytes, more than a Header.
    let h = unsafe { &*(m.ptr as *const Header) };
    let magic = h.magic;
    if magic != layout::HEADER_MAGIC {
        return Err(Error::BadSegment(format!("{name}: not a memglass header (magic {magic:#x})")));
    }
    if h.version != layout::VERSION {
        return Err(Error::BadSegment(format!(
            "{name}: layout version {}, this memglass reads {}",
            h.version,
            layout::VERSION
        )));
    }
    if h.header_size as usize != std::mem::size_of::<Header>() {
        return Err(Error::BadSegment(format!("{name}: header size {}", h.header_size)));
    }
    if h.segment_size as usize > m.len {
        return Err(Error::BadSegment(format!(
            "{name} is truncated: {} bytes, the header says {}",
            m.len, h.segment_size
        )));
    }
    let (t, f, o, size) =
        layout::header_layout(h.types_capacity, h.fields_capacity, h.objects_capacity);
    if (t, f, o, size) != (h.types_offset, h.fields_offset, h.objects_offset, h.segment_size) {
        return Err(Error::BadSegment(format!(
            "{name}: table offsets do not match the capacities"
        )));
    }
    Ok(m)
}

/// Sessions in `dir` (default [`crate::default_dir`]), sorted by name. A
/// header that cannot be read is listed with `problem` set.
/// A missing directory gives an empty list.
pub fn list_sessions(dir: Option<&Path>) -> Result<Vec<SessionInfo>> {
    let path = dir.map(Path::to_path_buf).unwrap_or_else(shm::default_dir);
    let d = match Dir::open(&path, false, None) {
        Ok(d) => d,
        Err(Error::NotFound(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    let mut names: Vec<String> = d
        .list()?
        .into_iter()
        .filter_map(|f| f.strip_suffix(".header").map(str::to_string))
        .filter(|n| shm::validate_name(n).is_ok())
        .collect();
    names.sort();
    for name in names {
        match open_header(&d, &name) {
            // SAFETY: open_header checked the mapping holds a Header.
            Ok(m) => out.push(info_of(&name, &path, unsafe { &*(m.ptr as *const Header) })),
            Err(e) => out.push(broken(&name, &path, e)),
        }
    }
    Ok(out)
}

/// Removes all segments of session `name` unless its producer is alive or
/// stale (then [`Error::AlreadyExists`]). A header that cannot be read at
/// all counts as dead. Observers that have it mapped keep their mapping.
pub fn remove_session(name: &str, dir: Option<&Path>) -> Result<()> {
    shm::validate_name(name)?;
    let path = dir.map(Path::to_path_buf).unwrap_or_else(shm::default_dir);
    let d = Dir::open(&path, false, None)?;
    match open_header(&d, name) {
        Ok(m) => {
            // SAFETY: open_header checked the mapping holds a Header.
            let (l, _) = judge(unsafe { &*(m.ptr as *const Header) });
            if l != Liveness::Dead {
                return Err(Error::AlreadyExists(format!(
                    "session {name} has a {} producer",
                    l.name()
                )));
            }
        }
        Err(Error::NotFound(m)) => return Err(Error::NotFound(m)),
        Err(_) => {}
    }
    remove_files(&d, name)
}

/// Unlinks the header and region segments of `name` (region files first,
/// so a listing never shows regions without their header).
pub(crate) fn remove_files(d: &Dir, name: &str) -> Result<()> {
    let prefix = format!("{name}.region.");
    for f in d.list()? {
        if f.strip_prefix(&prefix).is_some_and(|id| id.parse::<u32>().is_ok()) {
            d.unlink(&f)?;
        }
    }
    d.unlink(&shm::header_name(name))
}

/// Removes the segments of every dead session in `dir` (default
/// [`crate::default_dir`]); returns their names. Alive and stale sessions
/// are left alone.
pub fn remove_stale(dir: Option<&Path>) -> Result<Vec<String>> {
    let path = dir.map(Path::to_path_buf).unwrap_or_else(shm::default_dir);
    let mut removed = Vec::new();
    for s in list_sessions(Some(&path))? {
        if s.liveness == Liveness::Dead && remove_session(&s.name, Some(&path)).is_ok() {
            removed.push(s.name);
        }
    }
    Ok(removed)
}
