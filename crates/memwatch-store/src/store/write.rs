//! Writers: put, delete, clear and repair, under the writer lock.

use super::*;

impl Store {
    /// Stores `value` under `key`, replacing any previous value. The new value
    /// becomes visible atomically: readers see the old or the new bytes, never
    /// a mix.
    pub fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        self.put_vectored(key, &[value.as_ref()])
    }

    /// Like [`Store::put`] with the value given in pieces (concatenated),
    /// copied straight into shared memory: no intermediate buffer. Useful for
    /// a header + payload, or a large value assembled from parts.
    pub fn put_vectored(&self, key: impl AsRef<[u8]>, parts: &[&[u8]]) -> Result<()> {
        let key = key.as_ref();
        self.put_inner(key, parts, true).map(|_| ())
    }

    /// Like [`Store::put`] but never waits for the writer lock: returns
    /// `Ok(false)` (and stores nothing) if another writer holds it. Lets a
    /// caller that must not block (e.g. one holding an interpreter lock)
    /// take a fast path and fall back to a blocking put.
    pub fn try_put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<bool> {
        self.put_inner(key.as_ref(), &[value.as_ref()], false)
    }

    pub(super) fn put_inner(&self, key: &[u8], parts: &[&[u8]], wait: bool) -> Result<bool> {
        self.validate_key(key)?;
        let val_len: usize = parts.iter().map(|p| p.len()).sum();
        let total = key.len() as u64 + val_len as u64;
        let need = round_up(BLOCK_HDR + total, BLOCK_ALIGN).max(MIN_BLOCK);
        if need > self.layout.arena_size {
            return Err(Error::ValueTooLarge { len: total as usize, max: self.max_entry_bytes() });
        }
        let h = Store::hash(key);
        let Some(_g) = self.lock_inner(wait)? else { return Ok(false) };
        match self.put_locked(key, h, parts, val_len as u64, need) {
            Err(Error::Corrupt { .. }) => {
                // A derived structure is damaged: repair from the slots and retry once.
                self.rebuild();
                self.put_locked(key, h, parts, val_len as u64, need)
            }
            r => r,
        }
        .map(|_| true)
    }

    pub(super) fn full_error(&self, need: u64) -> Error {
        let w = &self.header().w.0;
        w.refusals.fetch_add(1, Relaxed);
        let available = self.layout.arena_size.saturating_sub(w.bytes_used.load(Relaxed));
        Error::Full {
            needed: need,
            available,
            fragmented: available >= need,
            entries: w.entries.load(Relaxed),
            max_entries: self.layout.slot_count as u64,
        }
    }

    pub(super) fn put_locked(
        &self,
        key: &[u8],
        h: u64,
        parts: &[&[u8]],
        val_len: u64,
        need: u64,
    ) -> Result<()> {
        let w = &self.header().w.0;
        self.reclaim_retired()?;
        // 1. space for the block.
        let (block, bsize) = loop {
            if let Some(b) = self.alloc_block(need)? {
                break b;
            }
            if self.policy == FullPolicy::Refuse || !self.evict_one()? {
                return Err(self.full_error(need));
            }
        };
        // 2. the slot: the key's own, else a free one (evicting if allowed).
        let existing = match self.find_locked(key, h) {
            Ok(e) => e,
            Err(e) => {
                let _ = self.free_block(block, bsize);
                return Err(e);
            }
        };
        let (slot, is_new) = match existing {
            Some(i) => (i, false),
            None => loop {
                match self.slot_alloc() {
                    Ok(Some(i)) => break (i, true),
                    Ok(None) => {}
                    Err(e) => {
                        let _ = self.free_block(block, bsize);
                        return Err(e);
                    }
                }
                let evicted =
                    if self.policy == FullPolicy::EvictLru { self.evict_one() } else { Ok(false) };
                match evicted {
                    Ok(true) => continue,
                    Ok(false) => {
                        let _ = self.free_block(block, bsize);
                        return Err(self.full_error(need));
                    }
                    Err(e) => {
                        let _ = self.free_block(block, bsize);
                        return Err(e);
                    }
                }
            },
        };
        // 3. fill the block (invisible to readers until published).
        let mut dst = self.arena_ptr(block + BLOCK_HDR);
        // SAFETY: the block [block, block+need) is allocated to us and
        // unreferenced by any slot; key + value fit in need - BLOCK_HDR.
        unsafe {
            std::ptr::copy_nonoverlapping(key.as_ptr(), dst, key.len());
            dst = dst.add(key.len());
            for p in parts {
                std::ptr::copy_nonoverlapping(p.as_ptr(), dst, p.len());
                dst = dst.add(p.len());
            }
        }
        // 4. publish through the journal.
        let s = self.slot(slot);
        let now = now_ns();
        let (old_off, old_size, old_data) = if is_new {
            (NIL64, 0, 0)
        } else {
            (
                s.block_off.load(Relaxed),
                s.block_size.load(Relaxed),
                s.key_len.load(Relaxed) as u64 + s.val_len.load(Relaxed),
            )
        };
        let created = if is_new { now } else { s.created_at.load(Relaxed) };
        let j = &w.journal;
        j.slot.store(slot, Relaxed);
        j.hash.store(h, Relaxed);
        j.block_off.store(block, Relaxed);
        j.block_size.store(bsize, Relaxed);
        j.key_len.store(key.len() as u32, Relaxed);
        j.val_len.store(val_len, Relaxed);
        j.state.store(SLOT_USED, Relaxed);
        j.created_at.store(created, Relaxed);
        j.stamp.store(now, Relaxed);
        j.active.store(1, Release);
        let q = s.seq.load(Relaxed);
        s.seq.store(q.wrapping_add(1), SeqCst);
        fence(Release);
        s.hash.store(h, Relaxed);
        s.block_off.store(block, Relaxed);
        s.block_size.store(bsize, Relaxed);
        s.key_len.store(key.len() as u32, Relaxed);
        s.val_len.store(val_len, Relaxed);
        s.state.store(SLOT_USED, Relaxed);
        s.created_at.store(created, Relaxed);
        s.updated_at.store(now, Relaxed);
        s.lru_stamp.store(now, Relaxed);
        s.last_access.store(now, Relaxed);
        if is_new {
            s.access_count.store(0, Relaxed);
        }
        s.seq.store(q.wrapping_add(2), SeqCst);
        j.active.store(0, Release);
        // 5. derived structures.
        if is_new {
            self.chain_insert(slot);
            w.entries.fetch_add(1, Relaxed);
        } else {
            self.lru_remove(slot);
        }
        self.lru_push_head(slot);
        w.data_bytes.fetch_add(key.len() as u64 + val_len, Relaxed);
        w.data_bytes.fetch_sub(old_data.min(w.data_bytes.load(Relaxed)), Relaxed);
        w.puts.fetch_add(1, Relaxed);
        if !is_new {
            self.free_or_retire(old_off, old_size)?;
        }
        Ok(())
    }

    /// Removes `key`; returns whether it was present.
    pub fn delete(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        let key = key.as_ref();
        self.validate_key(key)?;
        let h = Store::hash(key);
        let _g = self.lock()?;
        let run = || -> Result<bool> {
            self.reclaim_retired()?;
            match self.find_locked(key, h)? {
                Some(i) => {
                    self.remove_entry(i)?;
                    self.header().w.0.deletes.fetch_add(1, Relaxed);
                    Ok(true)
                }
                None => Ok(false),
            }
        };
        match run() {
            Err(Error::Corrupt { .. }) => {
                self.rebuild();
                run()
            }
            r => r,
        }
    }

    /// Removes every entry.
    pub fn clear(&self) -> Result<()> {
        let _g = self.lock()?;
        let run = || -> Result<()> {
            self.reclaim_retired()?;
            for i in 0..self.layout.slot_count {
                if self.slot(i).state.load(Relaxed) == SLOT_USED {
                    self.remove_entry(i)?;
                }
            }
            Ok(())
        };
        match run() {
            Err(Error::Corrupt { .. }) => {
                self.rebuild();
                run()
            }
            r => r,
        }
    }

    /// Checks and repairs the store: rebuilds all derived structures from the
    /// entries (what recovery after a crashed writer does). Returns the stats
    /// afterwards.
    pub fn repair(&self) -> Result<StoreStats> {
        let _g = self.lock()?;
        self.rebuild();
        Ok(self.stats())
    }
}
