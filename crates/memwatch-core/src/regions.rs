//! Compact storage for watched regions (the engine's native-memory budget is
//! <= 96 bytes per region): a chunked slab with a free list plus an
//! id -> slot map; one allocation per region for its name, metadata and
//! snapshot; and the short inline lists of region ids kept per page.

use std::alloc::{self, Layout};
use std::collections::HashMap;
use std::ptr::NonNull;

use crate::types::RegionId;

/// Which backend watches a region (fixed at watch time).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Protect,
    Poll,
    WriteWatch,
}

/// Bytes watched up to this are kept in the region itself (28 bits); a
/// longer region keeps its length (u64) at the start of its data block.
const INLINE_LEN_MAX: usize = (1 << 28) - 1;
/// The `packed` field: bits 0-1 the kind, bit 2 a snapshot is kept, bit 3
/// the length is in the data block, bits 4-31 the length otherwise.
const SNAPSHOT_BIT: u32 = 1 << 2;
const LONG_BIT: u32 = 1 << 3;
const LEN_SHIFT: u32 = 4;

/// One watched region: 40 bytes, plus one heap block holding
/// [length (u64, long regions only)][name length][metadata length + 1 (0: no
/// metadata)][name][metadata][snapshot (len bytes, when kept)], the two
/// lengths as LEB128 varints (one byte each below 128).
pub struct Region {
    pub addr: usize,
    /// xxh3 of the contents when last checked.
    pub hash: u64,
    /// Events so far; names the region's values in the value store.
    pub epoch: u64,
    data: NonNull<u8>,
    /// Kind, snapshot flag and length (see INLINE_LEN_MAX); private: the
    /// data block's layout depends on it.
    packed: u32,
    pub watcher: u32,
}

// SAFETY: a Region owns its data block exclusively (like a Box<[u8]>) and has
// no interior mutability; moving it to another thread moves that ownership.
unsafe impl Send for Region {}

/// Appends `v` as a LEB128 varint.
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a LEB128 varint at `*at` of `p`, advancing `*at`.
///
/// # Safety
/// `p + *at` must start a varint written by put_varint, inside one block.
unsafe fn get_varint(p: *const u8, at: &mut usize) -> usize {
    let (mut v, mut shift) = (0usize, 0);
    loop {
        // SAFETY: the caller's contract: the varint's bytes are in the block.
        let b = unsafe { p.add(*at).read() };
        *at += 1;
        v |= ((b & 0x7f) as usize) << shift;
        if b < 0x80 {
            return v;
        }
        shift += 7;
    }
}

impl Region {
    /// A region with a copy of `name`, `metadata` and, if given, `snapshot`
    /// (which must be `len` bytes). Err if a text is longer than u32 allows.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        watcher: u32,
        addr: usize,
        len: usize,
        kind: Kind,
        name: &str,
        metadata: Option<&str>,
        snapshot: Option<&[u8]>,
        hash: u64,
    ) -> Result<Region, String> {
        let too_long = |what: &str| format!("{what} is longer than {} bytes", u32::MAX - 1);
        let name_len = u32::try_from(name.len()).map_err(|_| too_long("name"))?;
        let meta_field = match metadata {
            None => 0,
            Some(m) => u32::try_from(m.len())
                .ok()
                .and_then(|l| l.checked_add(1))
                .ok_or_else(|| too_long("metadata"))?,
        };
        assert!(snapshot.iter().all(|s| s.len() == len), "a snapshot is the region's length");
        let meta = metadata.unwrap_or("").as_bytes();
        let long = len > INLINE_LEN_MAX;
        let mut head = Vec::with_capacity(18);
        if long {
            head.extend_from_slice(&(len as u64).to_ne_bytes());
        }
        put_varint(&mut head, u64::from(name_len));
        put_varint(&mut head, u64::from(meta_field));
        let size = [name.len(), meta.len(), snapshot.map_or(0, |s| s.len())]
            .iter()
            .try_fold(head.len(), |a, &b| a.checked_add(b))
            .ok_or("region too large")?;
        let layout = Layout::from_size_align(size, 1).map_err(|_| "region too large")?;
        // SAFETY: the layout has a non-zero size (two varint bytes at least).
        let raw = unsafe { alloc::alloc(layout) };
        let Some(data) = NonNull::new(raw) else { alloc::handle_alloc_error(layout) };
        // SAFETY: the block is layout.size() = head + name + meta + snapshot
        // bytes; each copy below writes inside it, without overlap with its
        // (caller-owned) source.
        unsafe {
            let p = data.as_ptr();
            std::ptr::copy_nonoverlapping(head.as_ptr(), p, head.len());
            let p = p.add(head.len());
            std::ptr::copy_nonoverlapping(name.as_ptr(), p, name.len());
            std::ptr::copy_nonoverlapping(meta.as_ptr(), p.add(name.len()), meta.len());
            if let Some(s) = snapshot {
                std::ptr::copy_nonoverlapping(s.as_ptr(), p.add(name.len() + meta.len()), s.len());
            }
        }
        let kind_bits = match kind {
            Kind::Protect => 0,
            Kind::Poll => 1,
            Kind::WriteWatch => 2,
        };
        let len_bits = if long { LONG_BIT } else { (len as u32) << LEN_SHIFT };
        let snapshot_bit = if snapshot.is_some() { SNAPSHOT_BIT } else { 0 };
        Ok(Region {
            addr,
            hash,
            epoch: 0,
            data,
            packed: kind_bits | snapshot_bit | len_bits,
            watcher,
        })
    }

    /// (offset of the name, name length, metadata length + 1 or 0).
    fn header(&self) -> (usize, usize, usize) {
        let mut at = if self.packed & LONG_BIT != 0 { 8 } else { 0 };
        // SAFETY: new() wrote the (optional length and) two varints there.
        let (name, meta) = unsafe {
            (get_varint(self.data.as_ptr(), &mut at), get_varint(self.data.as_ptr(), &mut at))
        };
        (at, name, meta)
    }

    fn bytes(&self, offset: usize, len: usize) -> &[u8] {
        // SAFETY: callers pass a range inside the block (from the header and
        // the length), which lives as long as self.
        unsafe { std::slice::from_raw_parts(self.data.as_ptr().add(offset), len) }
    }

    fn has_snapshot(&self) -> bool {
        self.packed & SNAPSHOT_BIT != 0
    }

    fn layout(&self) -> Layout {
        let (at, name, meta) = self.header();
        let snap = if self.has_snapshot() { self.size() } else { 0 };
        Layout::from_size_align(at + name + meta.saturating_sub(1) + snap, 1)
            .expect("was valid in new()")
    }

    /// The backend watching it.
    pub fn kind(&self) -> Kind {
        match self.packed & 3 {
            0 => Kind::Protect,
            1 => Kind::Poll,
            _ => Kind::WriteWatch,
        }
    }

    /// Bytes watched.
    pub fn size(&self) -> usize {
        if self.packed & LONG_BIT == 0 {
            (self.packed >> LEN_SHIFT) as usize
        } else {
            let mut len = [0u8; 8];
            len.copy_from_slice(self.bytes(0, 8));
            u64::from_ne_bytes(len) as usize
        }
    }

    /// Name given at watch time.
    pub fn name(&self) -> &str {
        let (at, name, _) = self.header();
        // SAFETY: these bytes were copied from a &str in new().
        unsafe { std::str::from_utf8_unchecked(self.bytes(at, name)) }
    }

    /// Metadata given at watch time.
    pub fn metadata(&self) -> Option<&str> {
        let (at, name, meta) = self.header();
        // SAFETY: these bytes were copied from a &str in new().
        (meta > 0)
            .then(|| unsafe { std::str::from_utf8_unchecked(self.bytes(at + name, meta - 1)) })
    }

    fn snapshot_offset(&self) -> usize {
        let (at, name, meta) = self.header();
        at + name + meta.saturating_sub(1)
    }

    /// The contents when last checked, if snapshots are kept.
    pub fn snapshot(&self) -> Option<&[u8]> {
        self.has_snapshot().then(|| self.bytes(self.snapshot_offset(), self.size()))
    }

    /// Replaces `part.len()` bytes of the snapshot from `at` (a part of the
    /// region that was read again); no-op without a snapshot.
    pub fn set_snapshot_part(&mut self, at: usize, part: &[u8]) {
        if self.has_snapshot() {
            assert!(at.checked_add(part.len()).is_some_and(|end| end <= self.size()));
            let offset = self.snapshot_offset() + at;
            // SAFETY: [offset, offset + part.len()) lies inside the snapshot
            // (asserted), which self owns exclusively (&mut self).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    part.as_ptr(),
                    self.data.as_ptr().add(offset),
                    part.len(),
                )
            };
        }
    }

    /// Replaces the snapshot (if kept) with `current` (`len` bytes).
    pub fn set_snapshot(&mut self, current: &[u8]) {
        if self.has_snapshot() {
            assert_eq!(current.len(), self.size());
            self.set_snapshot_part(0, current);
        }
    }

    /// Heap bytes of the data block (name, metadata, snapshot, header).
    pub fn block_bytes(&self) -> usize {
        self.layout().size()
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: data was allocated in new() with this same layout (the
        // header and packed bits it is computed from never change).
        unsafe { alloc::dealloc(self.data.as_ptr(), self.layout()) };
    }
}

/// Slots per slab chunk: chunks are allocated whole and never move, so the
/// slab grows without the doubling (and copying) of one big vector.
const CHUNK: usize = 1024;

/// Ids per chunk of the id -> slot index.
const INDEX_CHUNK: usize = 64;

/// Hashes the id index's keys (region id / INDEX_CHUNK: small integers the
/// engine hands out in order, never chosen by an attacker) with one
/// multiplication. std's SipHash was about a quarter of an idle poll pass
/// over 100 000 regions (each region's length and bytes are looked up by id).
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: the high bits (hashbrown's tag) mix every key
        // bit; the low bits (its bucket) stay distinct for consecutive keys.
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// HashMap with [`IdHasher`].
pub(crate) type IdMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<IdHasher>>;

/// Region id -> slab slot, ~4 bytes a region: ids are handed out in order,
/// so consecutive ids share a chunk of INDEX_CHUNK entries (slot + 1, 0 =
/// none), found by id / INDEX_CHUNK. A chunk is freed when its last region
/// goes, so what the index holds follows the live regions (at most one
/// chunk, 256 bytes, per live region when survivors are scattered), not
/// every id ever handed out.
#[derive(Default)]
struct SlotIndex {
    chunks: IdMap<u32, Box<[u32; INDEX_CHUNK]>>,
    len: usize,
}

impl SlotIndex {
    fn split(id: RegionId) -> (u32, usize) {
        (id / INDEX_CHUNK as u32, id as usize % INDEX_CHUNK)
    }

    fn get(&self, id: RegionId) -> Option<u32> {
        let (chunk, i) = Self::split(id);
        let s = self.chunks.get(&chunk)?[i];
        s.checked_sub(1)
    }

    /// Maps `id` to `slot` (below u32::MAX); false if `id` was mapped.
    fn insert(&mut self, id: RegionId, slot: u32) -> bool {
        let (chunk, i) = Self::split(id);
        let entry = &mut self.chunks.entry(chunk).or_insert_with(|| Box::new([0; INDEX_CHUNK]))[i];
        let fresh = *entry == 0;
        *entry = slot + 1;
        self.len += usize::from(fresh);
        fresh
    }

    fn remove(&mut self, id: RegionId) -> Option<u32> {
        let (chunk, i) = Self::split(id);
        let entries = self.chunks.get_mut(&chunk)?;
        let slot = std::mem::take(&mut entries[i]).checked_sub(1)?;
        self.len -= 1;
        if entries.iter().all(|&s| s == 0) {
            self.chunks.remove(&chunk);
        }
        Some(slot)
    }

    /// (id, slot) of every mapped id, in no particular order.
    fn iter(&self) -> impl Iterator<Item = (RegionId, u32)> + '_ {
        self.chunks.iter().flat_map(|(&chunk, entries)| {
            entries
                .iter()
                .enumerate()
                .filter(|(_, &s)| s != 0)
                .map(move |(i, &s)| (chunk * INDEX_CHUNK as u32 + i as u32, s - 1))
        })
    }

    /// Heap bytes: the chunks and the map's buckets (hashbrown: a power of
    /// two at most 7/8 full, one control byte each).
    fn bytes(&self) -> usize {
        let cap = self.chunks.capacity();
        let buckets = if cap == 0 { 0 } else { (cap * 8 / 7).next_power_of_two() };
        buckets * (std::mem::size_of::<(u32, Box<[u32; INDEX_CHUNK]>)>() + 1)
            + self.chunks.len() * std::mem::size_of::<[u32; INDEX_CHUNK]>()
    }
}

/// Every region of the engine, by id. Ids are handed out by the engine,
/// increasing from 1 and never reused; slots are reused through a free list.
pub struct Regions {
    chunks: Vec<Box<[Option<Region>]>>,
    /// Slots below this have been used; the free list holds those emptied.
    used: u32,
    free: Vec<u32>,
    slots: SlotIndex,
}

impl Regions {
    pub fn new() -> Regions {
        Regions { chunks: Vec::new(), used: 0, free: Vec::new(), slots: SlotIndex::default() }
    }

    fn at(&self, slot: u32) -> &Option<Region> {
        &self.chunks[slot as usize / CHUNK][slot as usize % CHUNK]
    }

    fn at_mut(&mut self, slot: u32) -> &mut Option<Region> {
        &mut self.chunks[slot as usize / CHUNK][slot as usize % CHUNK]
    }

    pub fn get(&self, id: RegionId) -> Option<&Region> {
        self.slots.get(id).and_then(|s| self.at(s).as_ref())
    }

    pub fn get_mut(&mut self, id: RegionId) -> Option<&mut Region> {
        let slot = self.slots.get(id)?;
        self.at_mut(slot).as_mut()
    }

    /// Stores a region under a new id.
    pub fn insert(&mut self, id: RegionId, region: Region) {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                if self.used as usize == self.chunks.len() * CHUNK {
                    self.chunks.push((0..CHUNK).map(|_| None).collect());
                }
                self.used += 1;
                self.used - 1
            }
        };
        *self.at_mut(slot) = Some(region);
        let fresh = self.slots.insert(id, slot);
        debug_assert!(fresh, "region ids are never reused");
    }

    pub fn remove(&mut self, id: RegionId) -> Option<Region> {
        let slot = self.slots.remove(id)?;
        let region = self.at_mut(slot).take();
        if self.slots.len == 0 {
            // The last region is gone: give all the storage back.
            *self = Regions::new();
        } else {
            self.free.push(slot);
        }
        region
    }

    pub fn len(&self) -> usize {
        self.slots.len
    }

    /// Every region with its id (in no particular order).
    pub fn iter(&self) -> impl Iterator<Item = (RegionId, &Region)> {
        self.slots.iter().filter_map(|(id, slot)| self.at(slot).as_ref().map(|r| (id, r)))
    }

    /// Heap bytes per region (for stats): its slab slot, and its share of the
    /// free list and the id index. The unused slots of the last chunk (at
    /// most 1023, 40 KiB) are the engine's, like the fault ring, and not
    /// charged to the regions: a watcher with one region is not 40 KiB big.
    pub fn bytes_per_region(&self) -> usize {
        let free = self.free.capacity() * std::mem::size_of::<u32>();
        std::mem::size_of::<Option<Region>>() + (free + self.slots.bytes()) / self.len().max(1)
    }
}

/// Regions on one page (ids, never 0), 16 bytes: up to four inline, which
/// covers the common case without a heap allocation; more in a boxed
/// vector whose pointer the same 16 bytes hold, marked by a first word of 0
/// (an inline list packs its ids at the front, so an inline list starting
/// with 0 is empty and all zero) and a second of HEAP_MARK.
pub struct IdList {
    raw: [u32; 4],
}

/// IdList: the second word of a list kept on the heap.
const HEAP_MARK: u32 = u32::MAX;

impl IdList {
    pub fn new() -> IdList {
        IdList { raw: [0; 4] }
    }

    fn heap(&self) -> Option<*mut Vec<RegionId>> {
        (self.raw[0] == 0 && self.raw[1] == HEAP_MARK)
            .then(|| (u64::from(self.raw[2]) | u64::from(self.raw[3]) << 32) as usize as *mut _)
    }

    fn from_vec(v: Vec<RegionId>) -> IdList {
        let p = Box::into_raw(Box::new(v)) as usize as u64;
        IdList { raw: [0, HEAP_MARK, p as u32, (p >> 32) as u32] }
    }

    fn heap_vec(&mut self) -> Option<&mut Vec<RegionId>> {
        // SAFETY: the pointer came from Box::into_raw in from_vec and is
        // owned by this list until drop or the switch back inline.
        self.heap().map(|p| unsafe { &mut *p })
    }

    pub fn as_slice(&self) -> &[RegionId] {
        match self.heap() {
            // SAFETY: as in heap_vec; the vector lives as long as self.
            Some(p) => unsafe { &*p },
            None => {
                let n = self.raw.iter().position(|&id| id == 0).unwrap_or(4);
                &self.raw[..n]
            }
        }
    }

    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    pub fn push(&mut self, id: RegionId) {
        debug_assert_ne!(id, 0);
        if let Some(v) = self.heap_vec() {
            v.push(id);
            return;
        }
        match self.raw.iter().position(|&x| x == 0) {
            Some(i) => self.raw[i] = id,
            None => {
                let mut v = self.raw.to_vec();
                v.push(id);
                *self = IdList::from_vec(v);
            }
        }
    }

    /// Removes `id` if present.
    pub fn remove(&mut self, id: RegionId) {
        if let Some(v) = self.heap_vec() {
            v.retain(|&x| x != id);
            if v.len() <= 4 {
                let mut ids = [0; 4];
                ids[..v.len()].copy_from_slice(v);
                *self = IdList { raw: ids }; // drops the boxed vector
            }
        } else if let Some(i) = self.raw.iter().position(|&x| x == id) {
            self.raw.copy_within(i + 1.., i);
            self.raw[3] = 0;
        }
    }

    /// Heap bytes beyond the list itself.
    pub fn heap_bytes(&self) -> usize {
        self.heap().map_or(0, |p| {
            // SAFETY: as in heap_vec.
            let cap = unsafe { &*p }.capacity();
            std::mem::size_of::<Vec<RegionId>>() + cap * std::mem::size_of::<RegionId>()
        })
    }
}

impl Drop for IdList {
    fn drop(&mut self) {
        if let Some(p) = self.heap() {
            // SAFETY: the pointer came from Box::into_raw in from_vec and
            // this list owns it; it is not used after this.
            drop(unsafe { Box::from_raw(p) });
        }
    }
}

impl Clone for IdList {
    fn clone(&self) -> IdList {
        match self.heap() {
            Some(_) => IdList::from_vec(self.as_slice().to_vec()),
            None => IdList { raw: self.raw },
        }
    }
}

impl std::fmt::Debug for IdList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(std::mem::size_of::<Region>(), 40);
        assert_eq!(std::mem::size_of::<Option<Region>>(), 40);
        assert_eq!(std::mem::size_of::<IdList>(), 16);
    }

    #[test]
    fn region_texts_and_snapshot() {
        let mut r =
            Region::new(3, 0x1000, 4, Kind::Poll, "név", Some("{\"a\":1}"), Some(&[1, 2, 3, 4]), 7)
                .unwrap();
        assert_eq!(
            (r.name(), r.metadata(), r.snapshot()),
            ("név", Some("{\"a\":1}"), Some(&[1u8, 2, 3, 4][..]))
        );
        r.set_snapshot(&[9, 8, 7, 6]);
        assert_eq!(r.snapshot(), Some(&[9u8, 8, 7, 6][..]));
        assert_eq!(r.block_bytes(), 2 + 4 + 7 + 4);
        let r = Region::new(3, 0x1000, 4, Kind::Protect, "", Some(""), None, 7).unwrap();
        assert_eq!((r.name(), r.metadata(), r.snapshot()), ("", Some(""), None));
        let r = Region::new(3, 0x1000, 4, Kind::Protect, "x", None, None, 7).unwrap();
        assert_eq!((r.name(), r.metadata(), r.block_bytes()), ("x", None, 2 + 1));
    }

    #[test]
    fn packed_length_kind_and_long_texts_round_trip() {
        let long_name = "n".repeat(300); // a two-byte varint
        let meta = "m".repeat(20_000); // three bytes
        for (len, kind) in [
            (1, Kind::Protect),
            (INLINE_LEN_MAX, Kind::Poll),
            (INLINE_LEN_MAX + 1, Kind::WriteWatch),
            (5 << 40, Kind::Protect),
        ] {
            let r =
                Region::new(u32::MAX, 0x1000, len, kind, &long_name, Some(&meta), None, 1).unwrap();
            assert_eq!((r.size(), r.kind(), r.watcher), (len, kind, u32::MAX));
            assert_eq!((r.name(), r.metadata()), (&long_name[..], Some(&meta[..])));
            assert_eq!(r.snapshot(), None);
            let head = if len > INLINE_LEN_MAX { 8 } else { 0 } + 2 + 3;
            assert_eq!(r.block_bytes(), head + 300 + 20_000);
        }
        let mut r =
            Region::new(1, 0x1000, 3, Kind::WriteWatch, "", None, Some(&[1, 2, 3]), 1).unwrap();
        r.set_snapshot_part(1, &[7, 8]);
        assert_eq!(
            (r.snapshot(), r.kind(), r.size()),
            (Some(&[1u8, 7, 8][..]), Kind::WriteWatch, 3)
        );
    }

    #[test]
    fn slot_index_round_trip_and_frees_empty_chunks() {
        let mut index = SlotIndex::default();
        let ids = [1u32, 2, 63, 64, 65, 1000, u32::MAX];
        for (slot, &id) in ids.iter().enumerate() {
            assert!(index.insert(id, slot as u32 * 3));
        }
        assert!(!index.insert(2, 3), "an id mapped again is reported");
        assert_eq!(index.len, ids.len());
        for (slot, &id) in ids.iter().enumerate() {
            assert_eq!(index.get(id), Some(slot as u32 * 3));
        }
        assert_eq!((index.get(0), index.get(3), index.get(66)), (None, None, None));
        let mut all: Vec<(u32, u32)> = index.iter().collect();
        all.sort_unstable();
        assert_eq!(all.len(), ids.len());
        assert_eq!(all[3], (64, 9));
        assert_eq!(index.chunks.len(), 4); // 0..64, 64..128, 1000, u32::MAX
        assert_eq!((index.remove(63), index.remove(63)), (Some(6), None));
        assert_eq!(index.chunks.len(), 4);
        index.remove(1);
        index.remove(2);
        assert_eq!(index.chunks.len(), 3, "an emptied chunk is freed");
        assert_eq!((index.get(64), index.get(65)), (Some(9), Some(12)));
        for id in [64, 65, 1000, u32::MAX] {
            assert!(index.remove(id).is_some());
        }
        assert!(index.chunks.is_empty() && index.len == 0);
    }

    #[test]
    fn slab_reuses_slots_and_frees_when_empty() {
        let mut regions = Regions::new();
        let region =
            |i: usize| Region::new(1, i, 1, Kind::Poll, &format!("r{i}"), None, None, 0).unwrap();
        for id in 1..=2500u32 {
            regions.insert(id, region(id as usize));
        }
        assert_eq!(regions.chunks.len(), 3);
        for id in (1..=2500u32).step_by(2) {
            assert_eq!(regions.remove(id).unwrap().addr, id as usize);
        }
        assert!(regions.get(1).is_none() && regions.remove(1).is_none());
        for id in 2501..=3750u32 {
            regions.insert(id, region(id as usize));
        }
        assert_eq!(regions.chunks.len(), 3, "freed slots are reused");
        assert_eq!(regions.len(), 2500);
        for (id, r) in regions.iter() {
            assert_eq!(r.addr, id as usize);
            assert_eq!(r.name(), format!("r{id}"));
        }
        regions.get_mut(2).unwrap().epoch = 5;
        assert_eq!(regions.get(2).unwrap().epoch, 5);
        let ids: Vec<u32> = regions.iter().map(|(id, _)| id).collect();
        for id in ids {
            regions.remove(id);
        }
        assert!(regions.chunks.is_empty() && regions.free.capacity() == 0);
    }

    #[test]
    fn id_list_inline_then_heap_and_back() {
        let mut l = IdList::new();
        assert!(l.is_empty());
        for id in 1..=6 {
            l.push(id);
        }
        assert_eq!(l.as_slice(), &[1, 2, 3, 4, 5, 6]);
        assert!(l.heap().is_some() && l.heap_bytes() > 0);
        l.remove(2);
        l.remove(5);
        assert_eq!(l.as_slice(), &[1, 3, 4, 6]);
        assert!(l.heap().is_none());
        l.remove(9);
        l.remove(1);
        assert_eq!(l.as_slice(), &[3, 4, 6]);
        l.push(7);
        assert_eq!((l.len(), l.heap_bytes()), (4, 0));
        for id in 8..=40 {
            l.push(id);
        }
        let copy = l.clone();
        l.remove(3);
        assert_eq!(copy.len(), 37);
        assert_eq!(l.as_slice()[..4], [4, 6, 7, 8]);
        assert_eq!(format!("{:?}", IdList::new()), "[]");
    }
}
