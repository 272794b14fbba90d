//! The data arena's allocator: TLSF with boundary tags (writer lock held).

use super::*;

impl Store {
    pub(super) fn corrupt(&self, what: &str) -> Error {
        Error::Corrupt { name: self.name.clone(), detail: what.to_string() }
    }

    pub(super) fn in_arena(&self, off: u64) -> bool {
        off % BLOCK_ALIGN == 0 && off <= self.layout.arena_size - MIN_BLOCK
    }

    pub(super) fn set_block(&self, off: u64, size: u64, used: bool, prev: u64) {
        self.aword(off).store(size | used as u64, Relaxed);
        self.aword(off + 8).store(prev, Relaxed);
    }

    pub(super) fn block_size_at(&self, off: u64) -> u64 {
        self.aword(off).load(Relaxed) & !(BLOCK_ALIGN - 1)
    }

    pub(super) fn block_used_at(&self, off: u64) -> bool {
        self.aword(off).load(Relaxed) & 1 == 1
    }

    pub(super) fn insert_free(&self, off: u64, size: u64) {
        let a = &self.header().alloc.0;
        let (f, s) = mapping(size);
        let head = a.heads[f][s].load(Relaxed);
        self.aword(off + 16).store(head, Relaxed);
        self.aword(off + 24).store(NIL64, Relaxed);
        if head != NIL64 && self.in_arena(head) {
            self.aword(head + 24).store(off, Relaxed);
        }
        a.heads[f][s].store(off, Relaxed);
        a.fl_bitmap.fetch_or(1 << f, Relaxed);
        a.sl_bitmap[f].fetch_or(1 << s, Relaxed);
    }

    pub(super) fn remove_free(&self, off: u64, size: u64) -> Result<()> {
        let a = &self.header().alloc.0;
        let (f, s) = mapping(size);
        let next = self.aword(off + 16).load(Relaxed);
        let prev = self.aword(off + 24).load(Relaxed);
        if (next != NIL64 && !self.in_arena(next)) || (prev != NIL64 && !self.in_arena(prev)) {
            return Err(self.corrupt("free-list link out of the arena"));
        }
        if prev != NIL64 {
            self.aword(prev + 16).store(next, Relaxed);
        } else {
            if a.heads[f][s].load(Relaxed) != off {
                return Err(self.corrupt("free block is not at the head of its list"));
            }
            a.heads[f][s].store(next, Relaxed);
            if next == NIL64 {
                let m = a.sl_bitmap[f].fetch_and(!(1 << s), Relaxed) & !(1 << s);
                if m == 0 {
                    a.fl_bitmap.fetch_and(!(1 << f), Relaxed);
                }
            }
        }
        if next != NIL64 {
            self.aword(next + 24).store(prev, Relaxed);
        }
        Ok(())
    }

    /// Allocates a block of at least `need` bytes (multiple of 16, >= 32);
    /// returns its offset and actual size, or `None` if no free block fits.
    pub(super) fn alloc_block(&self, need: u64) -> Result<Option<(u64, u64)>> {
        let a = &self.header().alloc.0;
        let (mut f, s) = mapping_search(need);
        if f >= FL_COUNT {
            return Ok(None);
        }
        let mut sl_map = a.sl_bitmap[f].load(Relaxed) & (!0u64 << s);
        if sl_map == 0 {
            let fl_map =
                if f + 1 >= 64 { 0 } else { a.fl_bitmap.load(Relaxed) & (!0u64 << (f + 1)) };
            if fl_map == 0 {
                return Ok(None);
            }
            f = fl_map.trailing_zeros() as usize;
            if f >= FL_COUNT {
                return Err(self.corrupt("allocator bitmap out of range"));
            }
            sl_map = a.sl_bitmap[f].load(Relaxed);
        }
        if sl_map == 0 {
            return Err(self.corrupt("allocator bitmaps disagree"));
        }
        let s = sl_map.trailing_zeros() as usize;
        if s >= SL_COUNT {
            return Err(self.corrupt("allocator bitmap out of range"));
        }
        let off = a.heads[f][s].load(Relaxed);
        if !self.in_arena(off) || self.block_used_at(off) {
            return Err(self.corrupt("free-list head is not a free block"));
        }
        let size = self.block_size_at(off);
        if size < need || size > self.layout.arena_size - off || mapping(size) != (f, s) {
            return Err(self.corrupt("free block size does not match its list"));
        }
        self.remove_free(off, size)?;
        let prev = self.aword(off + 8).load(Relaxed);
        let mut size = size;
        if size - need >= MIN_BLOCK {
            let rem = off + need;
            let rsize = size - need;
            self.set_block(rem, rsize, false, need);
            let after = rem + rsize;
            if after < self.layout.arena_size {
                self.aword(after + 8).store(rsize, Relaxed);
            }
            self.insert_free(rem, rsize);
            size = need;
        }
        self.set_block(off, size, true, prev);
        self.header().w.0.bytes_used.fetch_add(size, Relaxed);
        Ok(Some((off, size)))
    }

    /// Frees the block at `off` of `size`, coalescing with free neighbours.
    pub(super) fn free_block(&self, off: u64, size: u64) -> Result<()> {
        let arena = self.layout.arena_size;
        if !self.in_arena(off)
            || !self.block_used_at(off)
            || self.block_size_at(off) != size
            || size < MIN_BLOCK
            || size > arena - off
        {
            return Err(self.corrupt("freeing a block that is not allocated"));
        }
        let w = &self.header().w.0;
        w.bytes_used.fetch_sub(size.min(w.bytes_used.load(Relaxed)), Relaxed);
        let (mut off, mut size) = (off, size);
        let next = off + size;
        if next < arena && self.in_arena(next) && !self.block_used_at(next) {
            let nsize = self.block_size_at(next);
            if nsize < MIN_BLOCK || nsize > arena - next {
                return Err(self.corrupt("neighbour block size out of range"));
            }
            self.remove_free(next, nsize)?;
            size += nsize;
        }
        let prev_size = self.aword(off + 8).load(Relaxed);
        if prev_size != 0 {
            if prev_size > off || prev_size % BLOCK_ALIGN != 0 {
                return Err(self.corrupt("previous-block size out of range"));
            }
            let p = off - prev_size;
            if self.block_size_at(p) != prev_size {
                return Err(self.corrupt("boundary tags disagree"));
            }
            if !self.block_used_at(p) {
                self.remove_free(p, prev_size)?;
                off = p;
                size += prev_size;
            }
        }
        let prev = self.aword(off + 8).load(Relaxed);
        self.set_block(off, size, false, prev);
        if off + size < arena {
            self.aword(off + size + 8).store(size, Relaxed);
        }
        self.insert_free(off, size);
        Ok(())
    }

    /// Frees a block no slot refers to any more, or retires it while pinned.
    pub(super) fn free_or_retire(&self, off: u64, size: u64) -> Result<()> {
        if self.is_pinned(off) {
            let w = &self.header().w.0;
            let c = w.retired_count.load(Relaxed) as usize;
            if c < RETIRED_MAX {
                self.header().retired.0[c].store(off, Relaxed);
                w.retired_count.store(c as u32 + 1, Relaxed);
            } else {
                w.leaked_blocks.fetch_add(1, Relaxed);
            }
            return Ok(());
        }
        self.free_block(off, size)
    }

    /// Frees retired blocks whose pins are gone.
    pub(super) fn reclaim_retired(&self) -> Result<()> {
        let h = self.header();
        let w = &h.w.0;
        let mut c = (w.retired_count.load(Relaxed) as usize).min(RETIRED_MAX);
        let mut i = 0;
        while i < c {
            let off = h.retired.0[i].load(Relaxed);
            if self.is_pinned(off) {
                i += 1;
                continue;
            }
            if !self.in_arena(off) {
                return Err(self.corrupt("retired block out of the arena"));
            }
            let size = self.block_size_at(off);
            self.free_block(off, size)?;
            c -= 1;
            h.retired.0[i].store(h.retired.0[c].load(Relaxed), Relaxed);
            w.retired_count.store(c as u32, Relaxed);
        }
        Ok(())
    }
}
