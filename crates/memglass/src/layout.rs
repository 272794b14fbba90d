//! The shared-memory layout (version 1). All integers native-endian; every
//! word a producer changes after publication is an atomic. See README.md.

use std::sync::atomic::{AtomicU32, AtomicU64};

/// "MEMGLASS" as a little-endian u64.
pub const HEADER_MAGIC: u64 = u64::from_le_bytes(*b"MEMGLASS");
/// "MGREGION".
pub const REGION_MAGIC: u64 = u64::from_le_bytes(*b"MGREGION");
/// Layout version; observers refuse any other.
pub const VERSION: u32 = 1;
/// Bytes of a name (session, type, field path, label) including the NUL.
pub const NAME_LEN: usize = 64;
/// Bytes of a unit including the NUL.
pub const UNIT_LEN: usize = 16;
/// Bytes of a help text including the NUL.
pub const HELP_LEN: usize = 96;

/// Header flag: the producer shut down cleanly.
pub const FLAG_SHUTDOWN: u32 = 1;

/// The first bytes of the header segment `<session>.header`.
#[repr(C)]
pub struct Header {
    pub magic: u64,
    pub version: u32,
    pub header_size: u32,
    pub segment_size: u64,
    /// Incremented (release) after every structural change: type registered,
    /// object created or destroyed, region added.
    pub sequence: AtomicU64,
    /// CLOCK_REALTIME nanoseconds of the producer's last heartbeat.
    pub heartbeat_ns: AtomicU64,
    pub heartbeat_interval_ns: u64,
    /// CLOCK_REALTIME nanoseconds when the session was created.
    pub created_ns: u64,
    /// Start time of the producer process, field 22 of /proc/PID/stat
    /// (clock ticks since boot): a reused pid has another.
    pub producer_start_time: u64,
    pub producer_pid: u32,
    pub flags: AtomicU32,
    pub session_name: [u8; NAME_LEN],
    pub types_offset: u64,
    pub types_capacity: u32,
    pub type_count: AtomicU32,
    pub fields_offset: u64,
    pub fields_capacity: u32,
    pub field_count: AtomicU32,
    pub objects_offset: u64,
    pub objects_capacity: u32,
    /// Directory slots ever used (slots at and past it are untouched).
    pub object_slots: AtomicU32,
    /// Objects alive now.
    pub live_objects: AtomicU32,
    /// Id of the first data region (1); regions chain by `next_region`.
    pub first_region: AtomicU32,
    pub region_count: AtomicU32,
    pub _reserved: [u32; 7],
}

/// One registered type.
#[repr(C)]
pub struct TypeEntry {
    pub name: [u8; NAME_LEN],
    pub size: u32,
    pub align: u32,
    /// Index of its first field in the field pool.
    pub first_field: u32,
    pub field_count: u32,
}

/// One flattened field.
#[repr(C)]
pub struct FieldEntry {
    pub path: [u8; NAME_LEN],
    pub offset: u32,
    pub size: u32,
    pub array_len: u32,
    pub guard_offset: u32,
    pub prim: u8,
    pub atomicity: u8,
    pub semantics: u8,
    pub _pad: [u8; 5],
    pub unit: [u8; UNIT_LEN],
    pub help: [u8; HELP_LEN],
}

/// One object directory slot. `generation` works like a seqlock for the
/// slot itself: odd while the producer rewrites a reclaimed slot.
#[repr(C)]
pub struct ObjectEntry {
    /// [`crate::ObjectState`] as u32 (release-stored last on publication).
    pub state: AtomicU32,
    pub type_index: u32,
    pub generation: AtomicU64,
    pub region: u32,
    pub count: u32,
    pub offset: u64,
    pub size: u64,
    /// CLOCK_REALTIME ns of the destroy (0 while alive).
    pub destroyed_ns: u64,
    pub label: [u8; NAME_LEN],
}

/// The first bytes of every data region segment `<session>.region.<id>`.
#[repr(C)]
pub struct RegionHeader {
    pub magic: u64,
    pub region_id: u32,
    /// Id of the next region, 0 until one is chained (release-stored).
    pub next_region: AtomicU32,
    pub size: u64,
    /// Bytes handed out so far (bump allocator), from the region's start.
    pub used: AtomicU64,
    pub _reserved: [u64; 4],
}

/// Bytes at the start of a region before the first object.
pub const REGION_DATA_START: u64 = 64;

const _: () = assert!(std::mem::size_of::<RegionHeader>() as u64 <= REGION_DATA_START);
const _: () = assert!(std::mem::size_of::<Header>() <= 4096);

/// Offsets of the tables in a header segment of these capacities, and its size.
pub fn header_layout(types: u32, fields: u32, objects: u32) -> (u64, u64, u64, u64) {
    let page = 4096u64;
    let types_off = page;
    let fields_off = round_up(types_off + types as u64 * size_of::<TypeEntry>() as u64, 64);
    let objects_off = round_up(fields_off + fields as u64 * size_of::<FieldEntry>() as u64, 64);
    let size = round_up(objects_off + objects as u64 * size_of::<ObjectEntry>() as u64, page);
    (types_off, fields_off, objects_off, size)
}

/// `v` rounded up to a multiple of `to` (a power of two).
pub fn round_up(v: u64, to: u64) -> u64 {
    (v + to - 1) & !(to - 1)
}

fn size_of<T>() -> usize {
    std::mem::size_of::<T>()
}

/// `s` as a NUL-padded fixed array (the caller checked the length).
pub fn put_str<const N: usize>(s: &str) -> [u8; N] {
    let mut a = [0u8; N];
    let n = s.len().min(N - 1);
    a[..n].copy_from_slice(&s.as_bytes()[..n]);
    a
}

/// The text of a NUL-padded fixed array.
pub fn get_str(a: &[u8]) -> String {
    let end = a.iter().position(|&b| b == 0).unwrap_or(a.len());
    String::from_utf8_lossy(&a[..end]).into_owned()
}
