//! C event structs and their ownership: every pointer inside a
//! `memwatch_change_event_t` handed out by this crate is an individually
//! boxed allocation (or NULL), so `events_free` can give each back.

use std::ffi::{c_char, CString};

use memwatch_core::{ChangeEvent, Frame, Where};

/// A run of changed bytes, `memwatch_range_t` in the header.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct memwatch_range_t {
    /// Offset from the start of the region.
    pub offset: usize,
    /// Number of bytes.
    pub length: usize,
}

/// One change, `memwatch_change_event_t` in the header.
#[repr(C)]
#[derive(Debug)]
pub struct memwatch_change_event_t {
    /// Process-wide, increasing.
    pub seq: u64,
    /// CLOCK_MONOTONIC nanoseconds.
    pub timestamp_ns: u64,
    /// Adapter id of the watcher.
    pub adapter_id: u32,
    /// Region that changed.
    pub region_id: u32,
    /// Name given at watch time.
    pub variable_name: *const c_char,
    /// Kernel tid of the writer; 0 = unknown.
    pub thread_id: u32,
    /// Instruction pointer of the write; 0 = unknown.
    pub fault_ip: u64,
    /// Source file of the user frame ("" unless located).
    pub file: *const c_char,
    /// Function of the user frame ("" unless located).
    pub function: *const c_char,
    /// Source line; 0 = unknown.
    pub line: u32,
    /// Region size in bytes.
    pub how_big: usize,
    /// Changed ranges, ascending.
    pub changed_ranges: *const memwatch_range_t,
    /// Number of changed ranges.
    pub changed_range_count: usize,
    /// First preview_bytes before the change.
    pub old_preview: *const u8,
    /// Length of old_preview.
    pub old_preview_len: usize,
    /// First preview_bytes after the change.
    pub new_preview: *const u8,
    /// Length of new_preview.
    pub new_preview_len: usize,
    /// Whole old value, or NULL.
    pub old_value: *const u8,
    /// Length of old_value.
    pub old_value_len: usize,
    /// Whole new value, or NULL.
    pub new_value: *const u8,
    /// Length of new_value.
    pub new_value_len: usize,
    /// Store key of a large old value, or NULL.
    pub storage_key_old: *const c_char,
    /// Store key of a large new value, or NULL.
    pub storage_key_new: *const c_char,
    /// Metadata given at watch time, or NULL.
    pub metadata: *const c_char,
    /// Writer location (locate_writers), or NULL when not located.
    pub location: *const memwatch_where_t,
    /// Changes this event stands for: 1, or more when later changes were
    /// merged into it while it waited in a full queue.
    pub coalesced: u32,
}

/// One stack frame, `memwatch_frame_t` in the header.
#[repr(C)]
#[derive(Debug)]
pub struct memwatch_frame_t {
    /// Instruction address (the write itself for frame 0, return address - 1 above).
    pub ip: u64,
    /// Module path; "" outside any module.
    pub module: *const c_char,
    /// ip relative to the module's load address.
    pub module_offset: u64,
    /// Function; "" without symbols.
    pub function: *const c_char,
    /// Source file; "" without debug info.
    pub file: *const c_char,
    /// Source line; 0 = unknown.
    pub line: u32,
    /// 1 = inlined into the next frame.
    pub inlined: i32,
}

/// Writer location, `memwatch_where_t` in the header.
#[repr(C)]
#[derive(Debug)]
pub struct memwatch_where_t {
    /// Name of the writing thread ("" if unknown).
    pub thread_name: *const c_char,
    /// Module of the user frame.
    pub module: *const c_char,
    /// Offset of the user frame in its module.
    pub module_offset: u64,
    /// Faults on other pages merged into the event without a location.
    pub unattributed_faults: u32,
    /// Number of frames.
    pub frame_count: u32,
    /// The stack, innermost first.
    pub frames: *const memwatch_frame_t,
}

fn frame_to_c(f: &Frame) -> memwatch_frame_t {
    memwatch_frame_t {
        ip: f.ip,
        module: str_into_raw(&f.module),
        module_offset: f.module_offset,
        function: str_into_raw(&f.function),
        file: str_into_raw(&f.file),
        line: f.line,
        inlined: i32::from(f.inlined),
    }
}

fn where_into_raw(w: &Where) -> *const memwatch_where_t {
    if w.stack.is_empty() {
        return std::ptr::null();
    }
    let frames: Box<[memwatch_frame_t]> = w.stack.iter().map(frame_to_c).collect();
    let frame_count = frames.len() as u32;
    let boxed = Box::new(memwatch_where_t {
        thread_name: str_into_raw(&w.thread_name),
        module: str_into_raw(&w.module),
        module_offset: w.module_offset,
        unattributed_faults: w.unattributed_faults,
        frame_count,
        frames: Box::into_raw(frames).cast::<memwatch_frame_t>(),
    });
    Box::into_raw(boxed)
}

/// Frees what where_into_raw made.
///
/// # Safety
/// `p` is NULL or came from where_into_raw and is freed once.
unsafe fn free_where(p: *const memwatch_where_t) {
    if p.is_null() {
        return;
    }
    // SAFETY: per the contract: a Box made by where_into_raw, whose frames
    // are a boxed slice of frame_count frames with strings from str_into_raw.
    unsafe {
        let w = Box::from_raw(p.cast_mut());
        let n = w.frame_count as usize;
        let frames = std::slice::from_raw_parts(w.frames, n);
        for f in frames {
            free_str(f.module);
            free_str(f.function);
            free_str(f.file);
        }
        free_slice(w.frames, n);
        free_str(w.thread_name);
        free_str(w.module);
    }
}

/// A C string of `s`, cut at the first NUL byte (C strings cannot hold one).
fn cstring(s: &str) -> CString {
    let bytes = s.as_bytes();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    // The slice has no NUL byte by construction.
    CString::new(&bytes[..end]).unwrap_or_default()
}

fn str_into_raw(s: &str) -> *const c_char {
    cstring(s).into_raw()
}

fn opt_str_into_raw(s: Option<&str>) -> *const c_char {
    s.map_or(std::ptr::null(), str_into_raw)
}

fn bytes_into_raw(b: &[u8]) -> (*const u8, usize) {
    if b.is_empty() {
        return (std::ptr::null(), 0);
    }
    let boxed: Box<[u8]> = b.into();
    let len = boxed.len();
    (Box::into_raw(boxed).cast::<u8>(), len)
}

/// Builds a C event whose pointers own fresh allocations.
pub(crate) fn to_c(ev: &ChangeEvent) -> memwatch_change_event_t {
    let ranges: Box<[memwatch_range_t]> = ev
        .changed_ranges
        .iter()
        .map(|r| memwatch_range_t { offset: r.offset, length: r.len })
        .collect();
    let range_count = ranges.len();
    let ranges_ptr = if range_count == 0 {
        std::ptr::null()
    } else {
        Box::into_raw(ranges).cast::<memwatch_range_t>().cast_const()
    };
    let (old_preview, old_preview_len) = bytes_into_raw(&ev.old_preview);
    let (new_preview, new_preview_len) = bytes_into_raw(&ev.new_preview);
    let (old_value, old_value_len) =
        ev.old_value.as_deref().map_or((std::ptr::null(), 0), bytes_into_raw);
    let (new_value, new_value_len) =
        ev.new_value.as_deref().map_or((std::ptr::null(), 0), bytes_into_raw);
    memwatch_change_event_t {
        seq: ev.seq,
        timestamp_ns: ev.timestamp_ns,
        adapter_id: ev.adapter_id,
        region_id: ev.region_id,
        variable_name: str_into_raw(&ev.variable_name),
        thread_id: ev.where_.thread_id.unwrap_or(0),
        fault_ip: ev.where_.fault_ip.unwrap_or(0),
        file: str_into_raw(&ev.where_.file),
        function: str_into_raw(&ev.where_.function),
        line: ev.where_.line,
        how_big: ev.how_big,
        changed_ranges: ranges_ptr,
        changed_range_count: range_count,
        old_preview,
        old_preview_len,
        new_preview,
        new_preview_len,
        old_value,
        old_value_len,
        new_value,
        new_value_len,
        storage_key_old: opt_str_into_raw(ev.storage_key_old.as_deref()),
        storage_key_new: opt_str_into_raw(ev.storage_key_new.as_deref()),
        metadata: opt_str_into_raw(ev.metadata.as_deref()),
        location: where_into_raw(&ev.where_),
        coalesced: ev.coalesced,
    }
}

/// Gives back a string made by `str_into_raw`.
///
/// # Safety
/// `p` is NULL or came from `CString::into_raw` and is freed once.
unsafe fn free_str(p: *const c_char) {
    if !p.is_null() {
        // SAFETY: per the function contract.
        drop(unsafe { CString::from_raw(p.cast_mut()) });
    }
}

/// Gives back a byte or range slice made by `Box::into_raw`.
///
/// # Safety
/// `p` is NULL or came from `Box<[T]>::into_raw` with exactly `len` elements.
unsafe fn free_slice<T>(p: *const T, len: usize) {
    if !p.is_null() {
        // SAFETY: per the function contract.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(p.cast_mut(), len)) });
    }
}

/// Frees the allocations inside one event made by `to_c`.
///
/// # Safety
/// `ev` was made by `to_c`, unchanged since, and is freed once.
pub(crate) unsafe fn free_c(ev: &memwatch_change_event_t) {
    // SAFETY: every pointer below was made by to_c with the recorded length.
    unsafe {
        free_str(ev.variable_name);
        free_str(ev.file);
        free_str(ev.function);
        free_slice(ev.changed_ranges, ev.changed_range_count);
        free_slice(ev.old_preview, ev.old_preview_len);
        free_slice(ev.new_preview, ev.new_preview_len);
        free_slice(ev.old_value, ev.old_value_len);
        free_slice(ev.new_value, ev.new_value_len);
        free_str(ev.storage_key_old);
        free_str(ev.storage_key_new);
        free_str(ev.metadata);
        free_where(ev.location);
    }
}

/// An event lent to a callback: freed on drop.
pub(crate) struct OwnedEvent(memwatch_change_event_t);

impl OwnedEvent {
    /// Converts `ev` for the duration of a callback.
    pub(crate) fn new(ev: &ChangeEvent) -> Self {
        OwnedEvent(to_c(ev))
    }

    /// Pointer valid while `self` lives.
    pub(crate) fn as_ptr(&self) -> *const memwatch_change_event_t {
        &self.0
    }
}

impl Drop for OwnedEvent {
    fn drop(&mut self) {
        // SAFETY: self.0 was made by to_c and is freed only here.
        unsafe { free_c(&self.0) }
    }
}

/// Converts a batch of events to a C array (NULL, 0 when empty).
pub(crate) fn events_into_raw(events: &[ChangeEvent]) -> (*mut memwatch_change_event_t, usize) {
    if events.is_empty() {
        return (std::ptr::null_mut(), 0);
    }
    let arr: Box<[memwatch_change_event_t]> = events.iter().map(to_c).collect();
    let n = arr.len();
    (Box::into_raw(arr).cast::<memwatch_change_event_t>(), n)
}

/// Frees an array made by `events_into_raw`.
///
/// # Safety
/// `events`/`count` are exactly what `events_into_raw` returned, freed once.
pub(crate) unsafe fn events_free(events: *mut memwatch_change_event_t, count: usize) {
    if events.is_null() || count == 0 {
        return;
    }
    // SAFETY: the array came from Box<[_]>::into_raw with `count` elements.
    let arr = unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(events, count)) };
    for ev in arr.iter() {
        // SAFETY: each element was made by to_c and is freed once, here.
        unsafe { free_c(ev) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memwatch_core::{ByteRange, Where};

    fn sample() -> ChangeEvent {
        ChangeEvent {
            seq: 7,
            timestamp_ns: 11,
            adapter_id: 1,
            region_id: 3,
            variable_name: "x\0y".into(),
            where_: Where { thread_id: Some(5), fault_ip: None, ..Where::default() },
            how_big: 4,
            changed_ranges: vec![ByteRange { offset: 1, len: 2 }],
            old_preview: vec![0, 0, 0, 0],
            new_preview: vec![0, 1, 2, 0],
            old_value: Some(vec![0, 0, 0, 0]),
            new_value: None,
            storage_key_old: None,
            storage_key_new: None,
            metadata: Some("m".into()),
            coalesced: 3,
        }
    }

    #[test]
    fn round_trip_frees_and_keeps_fields() {
        let (p, n) = events_into_raw(&[sample(), sample()]);
        assert_eq!(n, 2);
        // SAFETY: p holds n events made just above.
        let evs = unsafe { std::slice::from_raw_parts(p, n) };
        let e = &evs[1];
        assert_eq!(e.seq, 7);
        assert_eq!(e.thread_id, 5);
        assert_eq!(e.fault_ip, 0);
        // SAFETY: variable_name is a NUL-terminated string made by to_c.
        assert_eq!(unsafe { std::ffi::CStr::from_ptr(e.variable_name) }.to_bytes(), b"x");
        assert_eq!(e.changed_range_count, 1);
        // SAFETY: one range, made by to_c.
        assert_eq!(unsafe { *e.changed_ranges }, memwatch_range_t { offset: 1, length: 2 });
        assert!(e.new_value.is_null());
        assert_eq!(e.new_value_len, 0);
        assert_eq!(e.old_value_len, 4);
        assert_eq!(e.coalesced, 3);
        assert!(e.storage_key_old.is_null());
        assert!(e.location.is_null(), "not located: no location");
        // SAFETY: exactly what events_into_raw returned.
        unsafe { events_free(p, n) };
    }
}
