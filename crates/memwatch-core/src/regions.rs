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

/// Bytes before the name in a region's data block: name length, then
/// metadata length + 1 (0: no metadata), both u32.
const HEADER: usize = 8;

/// One watched region: 48 bytes, plus one heap block holding
/// [header][name][metadata][snapshot (len bytes, when kept)].
pub struct Region {
    pub addr: usize,
    /// Bytes watched; private: the data block's layout depends on it.
    len: usize,
    /// xxh3 of the contents when last checked.
    pub hash: u64,
    /// Events so far; names the region's values in the value store.
    pub epoch: u64,
    data: NonNull<u8>,
    pub watcher: u32,
    pub kind: Kind,
    has_snapshot: bool,
}

// SAFETY: a Region owns its data block exclusively (like a Box<[u8]>) and has
// no interior mutability; moving it to another thread moves that ownership.
unsafe impl Send for Region {}

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
        let layout = Self::layout_for(name.len(), meta.len(), snapshot.map_or(0, |s| s.len()))
            .ok_or("region too large")?;
        // SAFETY: the layout has a non-zero size (HEADER bytes at least).
        let raw = unsafe { alloc::alloc(layout) };
        let Some(data) = NonNull::new(raw) else { alloc::handle_alloc_error(layout) };
        // SAFETY: the block is layout.size() = HEADER + name + meta + snapshot
        // bytes, 4-aligned; each copy below writes inside it, without overlap
        // with its (caller-owned) source.
        unsafe {
            let p = data.as_ptr();
            (p as *mut u32).write(name_len);
            (p.add(4) as *mut u32).write(meta_field);
            std::ptr::copy_nonoverlapping(name.as_ptr(), p.add(HEADER), name.len());
            std::ptr::copy_nonoverlapping(meta.as_ptr(), p.add(HEADER + name.len()), meta.len());
            if let Some(s) = snapshot {
                std::ptr::copy_nonoverlapping(
                    s.as_ptr(),
                    p.add(HEADER + name.len() + meta.len()),
                    s.len(),
                );
            }
        }
        Ok(Region {
            addr,
            len,
            hash,
            epoch: 0,
            data,
            watcher,
            kind,
            has_snapshot: snapshot.is_some(),
        })
    }

    fn layout_for(name: usize, meta: usize, snapshot: usize) -> Option<Layout> {
        let size = HEADER.checked_add(name)?.checked_add(meta)?.checked_add(snapshot)?;
        Layout::from_size_align(size, 4).ok()
    }

    /// (name length, metadata length + 1 or 0).
    fn header(&self) -> (usize, usize) {
        // SAFETY: the block starts with two u32 written in new(), 4-aligned.
        unsafe {
            let p = self.data.as_ptr() as *const u32;
            (p.read() as usize, p.add(1).read() as usize)
        }
    }

    fn bytes(&self, offset: usize, len: usize) -> &[u8] {
        // SAFETY: callers pass a range inside the block (from the header and
        // self.len), which lives as long as self.
        unsafe { std::slice::from_raw_parts(self.data.as_ptr().add(offset), len) }
    }

    fn layout(&self) -> Layout {
        let (name, meta) = self.header();
        let snap = if self.has_snapshot { self.len } else { 0 };
        Self::layout_for(name, meta.saturating_sub(1), snap).expect("was valid in new()")
    }

    /// Bytes watched.
    pub fn size(&self) -> usize {
        self.len
    }

    /// Name given at watch time.
    pub fn name(&self) -> &str {
        let (name, _) = self.header();
        // SAFETY: these bytes were copied from a &str in new().
        unsafe { std::str::from_utf8_unchecked(self.bytes(HEADER, name)) }
    }

    /// Metadata given at watch time.
    pub fn metadata(&self) -> Option<&str> {
        let (name, meta) = self.header();
        // SAFETY: these bytes were copied from a &str in new().
        (meta > 0)
            .then(|| unsafe { std::str::from_utf8_unchecked(self.bytes(HEADER + name, meta - 1)) })
    }

    fn snapshot_offset(&self) -> usize {
        let (name, meta) = self.header();
        HEADER + name + meta.saturating_sub(1)
    }

    /// The contents when last checked, if snapshots are kept.
    pub fn snapshot(&self) -> Option<&[u8]> {
        self.has_snapshot.then(|| self.bytes(self.snapshot_offset(), self.len))
    }

    /// Replaces the snapshot (if kept) with `current` (`len` bytes).
    /// Replaces `part.len()` bytes of the snapshot from `at` (a part of the
    /// region that was read again); no-op without a snapshot.
    pub fn set_snapshot_part(&mut self, at: usize, part: &[u8]) {
        if self.has_snapshot {
            assert!(at.checked_add(part.len()).is_some_and(|end| end <= self.len));
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

    pub fn set_snapshot(&mut self, current: &[u8]) {
        if self.has_snapshot {
            let offset = self.snapshot_offset();
            assert_eq!(current.len(), self.len);
            // SAFETY: the snapshot occupies [offset, offset + len) of the
            // block, which self owns exclusively (&mut self).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    current.as_ptr(),
                    self.data.as_ptr().add(offset),
                    self.len,
                )
            };
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
        // header, kind and len it is computed from never change).
        unsafe { alloc::dealloc(self.data.as_ptr(), self.layout()) };
    }
}

/// Slots per slab chunk: chunks are allocated whole and never move, so the
/// slab grows without the doubling (and copying) of one big vector.
const CHUNK: usize = 1024;

/// Every region of the engine, by id. Ids are handed out by the engine,
/// increasing from 1 and never reused; slots are reused through a free list.
pub struct Regions {
    chunks: Vec<Box<[Option<Region>]>>,
    /// Slots below this have been used; the free list holds those emptied.
    used: u32,
    free: Vec<u32>,
    slots: HashMap<RegionId, u32>,
}

impl Regions {
    pub fn new() -> Regions {
        Regions { chunks: Vec::new(), used: 0, free: Vec::new(), slots: HashMap::new() }
    }

    fn at(&self, slot: u32) -> &Option<Region> {
        &self.chunks[slot as usize / CHUNK][slot as usize % CHUNK]
    }

    fn at_mut(&mut self, slot: u32) -> &mut Option<Region> {
        &mut self.chunks[slot as usize / CHUNK][slot as usize % CHUNK]
    }

    pub fn get(&self, id: RegionId) -> Option<&Region> {
        self.slots.get(&id).and_then(|&s| self.at(s).as_ref())
    }

    pub fn get_mut(&mut self, id: RegionId) -> Option<&mut Region> {
        let slot = *self.slots.get(&id)?;
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
        let old = self.slots.insert(id, slot);
        debug_assert!(old.is_none(), "region ids are never reused");
    }

    pub fn remove(&mut self, id: RegionId) -> Option<Region> {
        let slot = self.slots.remove(&id)?;
        let region = self.at_mut(slot).take();
        if self.slots.is_empty() {
            // The last region is gone: give all the storage back.
            *self = Regions::new();
        } else {
            self.free.push(slot);
        }
        region
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Every region with its id (in no particular order).
    pub fn iter(&self) -> impl Iterator<Item = (RegionId, &Region)> {
        self.slots.iter().filter_map(|(&id, &slot)| self.at(slot).as_ref().map(|r| (id, r)))
    }

    /// Heap bytes per region (for stats): its slab slot, and its share of the
    /// free list and the id map. The unused slots of the last chunk (at most
    /// 1023, 48 KiB) are the engine's, like the fault ring, and not charged
    /// to the regions: a watcher with one region is not 48 KiB big.
    pub fn bytes_per_region(&self) -> usize {
        let free = self.free.capacity() * std::mem::size_of::<u32>();
        // hashbrown: one (key, value) entry and one control byte per bucket,
        // buckets a power of two at most 7/8 full.
        let buckets = if self.slots.capacity() == 0 {
            0
        } else {
            (self.slots.capacity() * 8 / 7).next_power_of_two()
        };
        let map = buckets * (std::mem::size_of::<(RegionId, u32)>() + 1);
        std::mem::size_of::<Option<Region>>() + (free + map) / self.len().max(1)
    }
}

/// Regions on one page (ids, never 0): up to four inline, which covers the
/// common case without a heap allocation; more in a vector.
#[derive(Clone, Debug)]
pub enum IdList {
    /// Ids packed at the front, 0 after the last.
    Inline([RegionId; 4]),
    Heap(Vec<RegionId>),
}

impl IdList {
    pub fn new() -> IdList {
        IdList::Inline([0; 4])
    }

    pub fn as_slice(&self) -> &[RegionId] {
        match self {
            IdList::Inline(ids) => {
                let n = ids.iter().position(|&id| id == 0).unwrap_or(ids.len());
                &ids[..n]
            }
            IdList::Heap(ids) => ids,
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
        match self {
            IdList::Inline(ids) => match ids.iter().position(|&x| x == 0) {
                Some(i) => ids[i] = id,
                None => {
                    let mut v = ids.to_vec();
                    v.push(id);
                    *self = IdList::Heap(v);
                }
            },
            IdList::Heap(v) => v.push(id),
        }
    }

    /// Removes `id` if present.
    pub fn remove(&mut self, id: RegionId) {
        match self {
            IdList::Inline(ids) => {
                if let Some(i) = ids.iter().position(|&x| x == id) {
                    ids.copy_within(i + 1.., i);
                    ids[3] = 0;
                }
            }
            IdList::Heap(v) => {
                v.retain(|&x| x != id);
                if v.len() <= 4 {
                    let mut ids = [0; 4];
                    ids[..v.len()].copy_from_slice(v);
                    *self = IdList::Inline(ids);
                }
            }
        }
    }

    /// Heap bytes beyond the list itself.
    pub fn heap_bytes(&self) -> usize {
        match self {
            IdList::Inline(_) => 0,
            IdList::Heap(v) => v.capacity() * std::mem::size_of::<RegionId>(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(std::mem::size_of::<Region>(), 48);
        assert_eq!(std::mem::size_of::<Option<Region>>(), 48);
        // 24 where the compiler puts the tag in the Vec's niche (1.95 does).
        assert!(std::mem::size_of::<IdList>() <= 32);
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
        assert_eq!(r.block_bytes(), HEADER + 4 + 7 + 4);
        let r = Region::new(3, 0x1000, 4, Kind::Protect, "", Some(""), None, 7).unwrap();
        assert_eq!((r.name(), r.metadata(), r.snapshot()), ("", Some(""), None));
        let r = Region::new(3, 0x1000, 4, Kind::Protect, "x", None, None, 7).unwrap();
        assert_eq!((r.name(), r.metadata(), r.block_bytes()), ("x", None, HEADER + 1));
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
        assert!(matches!(l, IdList::Heap(_)));
        l.remove(2);
        l.remove(5);
        assert_eq!(l.as_slice(), &[1, 3, 4, 6]);
        assert!(matches!(l, IdList::Inline(_)));
        l.remove(9);
        l.remove(1);
        assert_eq!(l.as_slice(), &[3, 4, 6]);
        l.push(7);
        assert_eq!((l.len(), l.heap_bytes()), (4, 0));
    }
}
