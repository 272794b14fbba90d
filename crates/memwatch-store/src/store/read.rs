//! Readers: lock-free seqlock reads with a locked fallback, zero-copy
//! views, iteration and stats.

use super::*;

impl Store {
    /// One optimistic probe for `key`. `Found` carries a stable (even)
    /// version that the caller must re-check after reading the block.
    pub(super) fn probe(&self, key: &[u8], h: u64, locked: bool) -> Probe {
        let hd = self.header();
        let is1 = hd.index_seq.0.load(Acquire);
        if is1 & 1 == 1 && !locked {
            return Probe::Retry;
        }
        let mut idx = self.bucket(h as u32).load(Acquire);
        let mut steps = 0u32;
        while idx != NIL {
            if idx >= self.layout.slot_count || steps > self.layout.slot_count {
                return if locked { Probe::Miss } else { Probe::Retry };
            }
            let s = self.slot(idx);
            let seq = s.seq.load(Acquire);
            if seq & 1 == 1 {
                return Probe::Retry;
            }
            if s.hash.load(Relaxed) == h && s.state.load(Relaxed) == SLOT_USED {
                if let Some(e) = self.entry_of(s, seq) {
                    if self.key_matches(&e, key) {
                        fence(Acquire);
                        if s.seq.load(Relaxed) == seq {
                            return Probe::Found(idx, e);
                        }
                        return Probe::Retry;
                    }
                }
            }
            // Not our key, judged from fields read after `seq`: only if the
            // slot did not change meanwhile. A value being replaced in place
            // (fields and key bytes rewritten under an odd seq) can look like
            // another key for a moment; without this check the probe went on
            // and reported a miss for a key that never left the store.
            fence(Acquire);
            if !locked && s.seq.load(Relaxed) != seq {
                return Probe::Retry;
            }
            idx = s.next.load(Acquire);
            steps += 1;
        }
        fence(Acquire);
        if locked || hd.index_seq.0.load(Relaxed) == is1 {
            Probe::Miss
        } else {
            Probe::Retry
        }
    }

    /// Runs `f` on a stable entry for `key`: `f` reads the block and the
    /// version is re-checked afterwards; torn reads are retried. Falls back to
    /// the writer lock after many failed optimistic tries, and takes the lock
    /// (recovering a dead writer's store) when a write seems stuck.
    pub(super) fn read_with<T>(
        &self,
        key: &[u8],
        mut f: impl FnMut(u32, &Entry) -> T,
    ) -> Result<Option<T>> {
        self.validate_key(key)?;
        let h = Store::hash(key);
        let mut tries = 0u32;
        let mut stall_start: Option<Instant> = None;
        loop {
            match self.probe(key, h, false) {
                Probe::Found(i, e) => {
                    let out = f(i, &e);
                    fence(Acquire);
                    if self.slot(i).seq.load(Relaxed) == e.seq {
                        self.touch(i);
                        return Ok(Some(out));
                    }
                }
                Probe::Miss => {
                    self.shard().misses.fetch_add(1, Relaxed);
                    return Ok(None);
                }
                Probe::Retry => {}
            }
            tries += 1;
            if tries >= OPTIMISTIC_TRIES {
                let start = *stall_start.get_or_insert_with(Instant::now);
                if start.elapsed() >= STALL || tries >= OPTIMISTIC_TRIES * 16 {
                    return self.read_locked(key, h, f);
                }
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }

    pub(super) fn read_locked<T>(
        &self,
        key: &[u8],
        h: u64,
        mut f: impl FnMut(u32, &Entry) -> T,
    ) -> Result<Option<T>> {
        let _g = self.lock()?;
        match self.probe(key, h, true) {
            Probe::Found(i, e) => {
                let out = f(i, &e);
                self.touch(i);
                Ok(Some(out))
            }
            _ => {
                self.shard().misses.fetch_add(1, Relaxed);
                Ok(None)
            }
        }
    }

    pub(super) fn shard(&self) -> &Shard {
        &self.header().shards[self.shard % SHARDS].0
    }

    pub(super) fn touch(&self, i: u32) {
        let s = self.slot(i);
        s.last_access.store(now_ns(), Relaxed);
        s.access_count.fetch_add(1, Relaxed);
        self.shard().hits.fetch_add(1, Relaxed);
    }

    pub(super) fn copy_value(&self, e: &Entry, out: &mut Vec<u8>) {
        out.clear();
        out.reserve(e.val_len as usize);
        // SAFETY: entry_of checked the value lies inside the arena; `out` has
        // capacity for val_len bytes. The bytes may be concurrently rewritten
        // by another process, in which case the seqlock check that follows
        // discards them (u8 has no invalid bit patterns).
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.arena_ptr(e.block_off + BLOCK_HDR + e.key_len),
                out.as_mut_ptr(),
                e.val_len as usize,
            );
            out.set_len(e.val_len as usize);
        }
    }

    /// Returns a copy of the value of `key`, or `None`.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        let mut v = Vec::new();
        Ok(self.get_into(key, &mut v)?.map(|_| v))
    }

    /// Copies the value of `key` into `out` (replacing its contents) and
    /// returns its length, or `None` (then `out` is unspecified). Reusing
    /// `out` avoids an allocation per get.
    pub fn get_into(&self, key: impl AsRef<[u8]>, out: &mut Vec<u8>) -> Result<Option<usize>> {
        self.read_with(key.as_ref(), |_, e| {
            self.copy_value(e, out);
            e.val_len as usize
        })
    }

    /// Copies the value of `key` into `buf` if it fits. Returns the value's
    /// length (`Some(len)` with `len > buf.len()` means nothing was copied),
    /// or `None` if the key is absent.
    pub fn get_to_slice(&self, key: impl AsRef<[u8]>, buf: &mut [u8]) -> Result<Option<usize>> {
        let ptr = buf.as_mut_ptr();
        let cap = buf.len();
        self.read_with(key.as_ref(), |_, e| {
            let n = e.val_len as usize;
            if n <= cap {
                // SAFETY: the source is inside the arena (entry_of); the
                // destination has `cap >= n` bytes. Torn copies are discarded
                // by the caller's seqlock check and redone.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        self.arena_ptr(e.block_off + BLOCK_HDR + e.key_len),
                        ptr,
                        n,
                    )
                };
            }
            n
        })
    }

    /// Whether `key` is present (does not count as a hit or miss).
    pub fn contains(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        let key = key.as_ref();
        self.validate_key(key)?;
        let h = Store::hash(key);
        for _ in 0..OPTIMISTIC_TRIES {
            match self.probe(key, h, false) {
                Probe::Found(..) => return Ok(true),
                Probe::Miss => return Ok(false),
                Probe::Retry => std::hint::spin_loop(),
            }
        }
        let _g = self.lock()?;
        Ok(matches!(self.probe(key, h, true), Probe::Found(..)))
    }

    /// A zero-copy, pinned view of the value of `key` (see [`ValueRef`]).
    pub fn get_ref(&self, key: impl AsRef<[u8]>) -> Result<Option<ValueRef<'_>>> {
        let key = key.as_ref();
        self.validate_key(key)?;
        let rec = self.claim_pin()?;
        let mut out = None;
        let r = self.read_with(key, |i, e| {
            let p = self.pin(rec);
            p.block_size.store(e.block_size, SeqCst);
            p.block_off.store(e.block_off, SeqCst);
            // The full fence orders the pin before read_with's version
            // re-check (store-load order), which makes the record a hazard
            // pointer: a writer that unlinks the block after our check sees
            // the pin (its own version store and pin load are SeqCst too).
            fence(SeqCst);
            out = Some((i, *e));
        });
        match r {
            Ok(Some(())) => {
                let (i, e) = out.expect("set on success");
                Ok(Some(ValueRef {
                    store: self,
                    rec,
                    ptr: self.arena_ptr(e.block_off + BLOCK_HDR + e.key_len),
                    len: e.val_len as usize,
                    slot: i,
                    seq: e.seq,
                }))
            }
            other => {
                self.unpin(rec);
                other.map(|_| None)
            }
        }
    }

    /// Keys of all entries (a snapshot; concurrent writes may or may not show).
    pub fn keys(&self) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for i in 0..self.layout.slot_count {
            if let Some(k) = self.read_slot(i, false)? {
                out.push(k.0);
            }
        }
        Ok(out)
    }

    /// Iterates over (key, value) copies of all entries, slot by slot.
    pub fn iter(&self) -> Iter<'_> {
        Iter { store: self, next: 0 }
    }

    /// Keys with their statistics (for analytics).
    pub fn entries(&self) -> Result<Vec<(Vec<u8>, KeyStats)>> {
        let mut out = Vec::new();
        for i in 0..self.layout.slot_count {
            if let Some((k, _, st)) = self.read_slot(i, false)? {
                out.push((k, st));
            }
        }
        Ok(out)
    }

    /// Reads slot `i`'s key (and value if asked) consistently.
    pub(super) fn read_slot(&self, i: u32, with_value: bool) -> Result<Option<SlotRead>> {
        for _ in 0..OPTIMISTIC_TRIES {
            let s = self.slot(i);
            let seq = s.seq.load(Acquire);
            if seq & 1 == 1 {
                std::thread::yield_now();
                continue;
            }
            if s.state.load(Relaxed) != SLOT_USED {
                fence(Acquire);
                if s.seq.load(Relaxed) == seq {
                    return Ok(None);
                }
                continue;
            }
            let Some(e) = self.entry_of(s, seq) else {
                fence(Acquire);
                if s.seq.load(Relaxed) == seq {
                    return Ok(None); // corrupt slot: skipped (repaired by the next recovery)
                }
                continue;
            };
            // SAFETY: entry_of checked the key is inside the arena; a torn
            // copy is discarded by the version check below.
            let key = unsafe {
                std::slice::from_raw_parts(
                    self.arena_ptr(e.block_off + BLOCK_HDR),
                    e.key_len as usize,
                )
            }
            .to_vec();
            let mut val = Vec::new();
            if with_value {
                self.copy_value(&e, &mut val);
            }
            let st = self.key_stats_of(s, &e);
            fence(Acquire);
            if s.seq.load(Relaxed) == seq {
                return Ok(Some((key, val, st)));
            }
        }
        // Persistently changing or a stuck writer: read under the lock.
        let _g = self.lock()?;
        let s = self.slot(i);
        let seq = s.seq.load(Acquire);
        if s.state.load(Relaxed) != SLOT_USED {
            return Ok(None);
        }
        let Some(e) = self.entry_of(s, seq) else { return Ok(None) };
        // SAFETY: as above; under the lock no writer changes the block.
        let key = unsafe {
            std::slice::from_raw_parts(self.arena_ptr(e.block_off + BLOCK_HDR), e.key_len as usize)
        }
        .to_vec();
        let mut val = Vec::new();
        if with_value {
            self.copy_value(&e, &mut val);
        }
        let st = self.key_stats_of(s, &e);
        Ok(Some((key, val, st)))
    }

    pub(super) fn key_stats_of(&self, s: &Slot, e: &Entry) -> KeyStats {
        KeyStats {
            value_size: e.val_len,
            created_at: ns_to_time(s.created_at.load(Relaxed)),
            updated_at: ns_to_time(s.updated_at.load(Relaxed)),
            last_access: ns_to_time(s.last_access.load(Relaxed)),
            access_count: s.access_count.load(Relaxed),
        }
    }

    /// Statistics of one key, or `None`. Does not count as an access.
    pub fn key_stats(&self, key: impl AsRef<[u8]>) -> Result<Option<KeyStats>> {
        let key = key.as_ref();
        self.validate_key(key)?;
        let h = Store::hash(key);
        for _ in 0..OPTIMISTIC_TRIES {
            match self.probe(key, h, false) {
                Probe::Found(i, e) => {
                    let s = self.slot(i);
                    let st = self.key_stats_of(s, &e);
                    fence(Acquire);
                    if s.seq.load(Relaxed) == e.seq {
                        return Ok(Some(st));
                    }
                }
                Probe::Miss => return Ok(None),
                Probe::Retry => std::hint::spin_loop(),
            }
        }
        let _g = self.lock()?;
        Ok(match self.probe(key, h, true) {
            Probe::Found(i, e) => Some(self.key_stats_of(self.slot(i), &e)),
            _ => None,
        })
    }

    /// Store-wide statistics.
    pub fn stats(&self) -> StoreStats {
        let h = self.header();
        let w = &h.w.0;
        let (mut hits, mut misses) = (0, 0);
        for s in &h.shards {
            hits = s.0.hits.load(Relaxed).wrapping_add(hits);
            misses = s.0.misses.load(Relaxed).wrapping_add(misses);
        }
        StoreStats {
            entries: w.entries.load(Relaxed),
            max_entries: self.layout.slot_count as u64,
            capacity_bytes: self.layout.arena_size,
            bytes_used: w.bytes_used.load(Relaxed),
            data_bytes: w.data_bytes.load(Relaxed),
            hits,
            misses,
            evictions: w.evictions.load(Relaxed),
            puts: w.puts.load(Relaxed),
            deletes: w.deletes.load(Relaxed),
            refusals: w.refusals.load(Relaxed),
            recoveries: w.recoveries.load(Relaxed),
        }
    }
}
