//! The writer lock (a process-shared robust mutex) and crash recovery:
//! rolling the journal forward and rebuilding every derived structure.

use super::*;

impl Store {
    pub(super) fn lock(&self) -> Result<WriteGuard<'_>> {
        Ok(self.lock_inner(true)?.expect("a waiting lock returns a guard"))
    }

    /// Takes the writer lock; with `wait == false` returns `None` instead of
    /// waiting when another holder has it.
    pub(super) fn lock_inner(&self, wait: bool) -> Result<Option<WriteGuard<'_>>> {
        let m = self.header().lock.0.get();
        // SAFETY: `m` points to the process-shared robust mutex initialized at
        // creation, inside the mapping that outlives the guard.
        let mut r = unsafe { libc::pthread_mutex_trylock(m) };
        if r == libc::EBUSY {
            if !wait {
                return Ok(None);
            }
            let deadline = SystemTime::now() + LOCK_TIMEOUT;
            let d = deadline.duration_since(UNIX_EPOCH).unwrap_or_default();
            let ts = libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            };
            // SAFETY: as above; `ts` is a valid absolute CLOCK_REALTIME time.
            r = unsafe { libc::pthread_mutex_timedlock(m, &ts) };
        }
        Ok(Some(match r {
            0 => {
                let w = &self.header().w.0;
                if w.dirty.load(Acquire) != 0 {
                    // The previous holder unwound mid-change: repair.
                    self.rebuild();
                    w.recoveries.fetch_add(1, Relaxed);
                }
                w.dirty.store(1, Relaxed);
                WriteGuard { store: self }
            }
            libc::EOWNERDEAD => {
                // A process died holding the lock, possibly mid-write. We own
                // the lock now: repair everything derivable, then mark the
                // mutex consistent so it stays usable.
                self.rebuild();
                self.header().w.0.recoveries.fetch_add(1, Relaxed);
                // SAFETY: we hold the mutex after EOWNERDEAD, which is the
                // precondition of pthread_mutex_consistent.
                let c = unsafe { libc::pthread_mutex_consistent(m) };
                if c != 0 {
                    // SAFETY: we hold the mutex.
                    unsafe { libc::pthread_mutex_unlock(m) };
                    return Err(Error::os_code("pthread_mutex_consistent", c));
                }
                self.header().w.0.dirty.store(1, Relaxed);
                WriteGuard { store: self }
            }
            libc::ETIMEDOUT => return Err(Error::LockTimeout(LOCK_TIMEOUT)),
            libc::ENOTRECOVERABLE => return Err(Error::NotRecoverable),
            libc::EDEADLK => {
                return Err(Error::Corrupt {
                    name: self.name.clone(),
                    detail: "writer lock already held by this thread (re-entrant call)".into(),
                })
            }
            e => return Err(Error::os_code("pthread_mutex_timedlock", e)),
        }))
    }

    /// Rebuilds every derived structure (hash chains, LRU list, free-slot
    /// list, allocator, counters, retired blocks) from the ground truth: the
    /// slots and the live pin records. Rolls the journal forward first; drops
    /// slots whose write was cut off or whose fields are invalid. Must hold
    /// the lock (or be initializing).
    pub(super) fn rebuild(&self) {
        let h = self.header();
        let w = &h.w.0;
        let n = self.layout.slot_count;
        // Odd while we work (a dead writer may have left it odd already).
        let iseq = h.index_seq.0.load(Relaxed) | 1;
        h.index_seq.0.store(iseq, SeqCst);
        let bump_free = |s: &Slot| {
            let q = s.seq.load(Relaxed);
            s.seq.store(q | 1, SeqCst); // odd
            s.state.store(SLOT_FREE, Relaxed);
            s.seq.store((q | 1).wrapping_add(1), SeqCst); // even, > q
        };
        // 1. journal: roll the interrupted publish forward.
        let j = &w.journal;
        if j.active.load(Acquire) == 1 {
            let i = j.slot.load(Relaxed);
            if i < n {
                let s = self.slot(i);
                let q = s.seq.load(Relaxed);
                s.seq.store(q | 1, SeqCst);
                s.hash.store(j.hash.load(Relaxed), Relaxed);
                s.block_off.store(j.block_off.load(Relaxed), Relaxed);
                s.block_size.store(j.block_size.load(Relaxed), Relaxed);
                s.key_len.store(j.key_len.load(Relaxed), Relaxed);
                s.val_len.store(j.val_len.load(Relaxed), Relaxed);
                s.state.store(j.state.load(Relaxed), Relaxed);
                s.created_at.store(j.created_at.load(Relaxed), Relaxed);
                s.lru_stamp.store(j.stamp.load(Relaxed), Relaxed);
                s.updated_at.store(j.stamp.load(Relaxed), Relaxed);
                s.seq.store((q | 1).wrapping_add(1), SeqCst);
            }
            j.active.store(0, Release);
        }
        // 2. validate slots; collect used blocks.
        let mut used: Vec<(u64, u64, u32)> = Vec::new(); // (off, size, slot or NIL)
        for i in 0..n {
            let s = self.slot(i);
            let q = s.seq.load(Relaxed);
            if q & 1 == 1 {
                bump_free(s); // a delete or publish cut off: the delete wins
                continue;
            }
            if s.state.load(Relaxed) != SLOT_USED {
                if s.state.load(Relaxed) != SLOT_FREE {
                    bump_free(s);
                }
                continue;
            }
            let valid = self.entry_of(s, q).filter(|e| {
                // SAFETY: entry_of checked the key is inside the arena; we
                // hold the lock, so no writer changes it.
                let key = unsafe {
                    std::slice::from_raw_parts(
                        self.arena_ptr(e.block_off + BLOCK_HDR),
                        e.key_len as usize,
                    )
                };
                Store::hash(key) == s.hash.load(Relaxed)
            });
            match valid {
                Some(e) => used.push((e.block_off, e.block_size, i)),
                None => bump_free(s),
            }
        }
        used.sort_unstable();
        let mut kept: Vec<(u64, u64, u32)> = Vec::with_capacity(used.len());
        for b in used {
            if let Some(last) = kept.last() {
                if b.0 < last.0 + last.1 {
                    bump_free(self.slot(b.2)); // overlapping blocks: drop the later
                    continue;
                }
            }
            kept.push(b);
        }
        // 3. live pins on blocks no slot holds become retired blocks.
        let mut retired: Vec<(u64, u64)> = Vec::new();
        for i in 0..PIN_RECORDS {
            let p = self.pin(i);
            let o = p.owner.load(SeqCst);
            if o == 0 || o == PIN_RELEASING {
                continue;
            }
            if !pid_alive(o) {
                self.release_dead_pin(i, o);
                continue;
            }
            let (off, size) = (p.block_off.load(SeqCst), p.block_size.load(SeqCst));
            if off == NIL64
                || off % BLOCK_ALIGN != 0
                || size % BLOCK_ALIGN != 0
                || size < MIN_BLOCK
                || off >= self.layout.arena_size
                || size > self.layout.arena_size - off
            {
                continue;
            }
            let pos = kept.partition_point(|b| b.0 < off);
            let overlaps_next = pos < kept.len() && kept[pos].0 < off + size;
            let overlaps_prev = pos > 0 && kept[pos - 1].0 + kept[pos - 1].1 > off;
            if kept.get(pos).map(|b| b.0) == Some(off) || overlaps_next || overlaps_prev {
                continue; // still referenced by its slot, or not a real block
            }
            if retired.iter().all(|r| r.0 + r.1 <= off || off + size <= r.0) {
                retired.push((off, size));
            }
        }
        let mut all: Vec<(u64, u64, u32)> = kept;
        all.extend(retired.iter().map(|&(o, s)| (o, s, NIL)));
        all.sort_unstable();
        // 4. lay the arena out again: used blocks as they are, gaps free.
        let alloc = &h.alloc.0;
        alloc.fl_bitmap.store(0, Relaxed);
        for f in 0..FL_COUNT {
            alloc.sl_bitmap[f].store(0, Relaxed);
            for s in 0..SL_COUNT {
                alloc.heads[f][s].store(NIL64, Relaxed);
            }
        }
        let arena = self.layout.arena_size;
        let mut final_blocks: Vec<(u64, u64, u32)> = Vec::with_capacity(all.len());
        let mut cursor = 0u64;
        for b in all {
            let gap = b.0 - cursor;
            if gap != 0 && gap < MIN_BLOCK {
                // Cannot happen from a consistent state; drop the block.
                if b.2 != NIL {
                    bump_free(self.slot(b.2));
                }
                continue;
            }
            final_blocks.push(b);
            cursor = b.0 + b.1;
        }
        while let Some(last) = final_blocks.last() {
            let tail = arena - (last.0 + last.1);
            if tail == 0 || tail >= MIN_BLOCK {
                break;
            }
            if last.2 != NIL {
                bump_free(self.slot(last.2));
            }
            final_blocks.pop();
        }
        let mut cursor = 0u64;
        let mut prev = 0u64;
        let mut bytes_used = 0u64;
        for &(off, size, _) in &final_blocks {
            if off > cursor {
                self.set_block(cursor, off - cursor, false, prev);
                self.insert_free(cursor, off - cursor);
                prev = off - cursor;
            }
            self.set_block(off, size, true, prev);
            bytes_used += size;
            prev = size;
            cursor = off + size;
        }
        if cursor < arena {
            self.set_block(cursor, arena - cursor, false, prev);
            self.insert_free(cursor, arena - cursor);
        }
        w.retired_count.store(0, Relaxed);
        for &(off, _, s) in &final_blocks {
            if s == NIL {
                let c = w.retired_count.load(Relaxed) as usize;
                h.retired.0[c].store(off, Relaxed);
                w.retired_count.store(c as u32 + 1, Relaxed);
            }
        }
        // 5. hash chains, LRU, free-slot list, counters.
        for b in 0..self.layout.bucket_count {
            self.bucket(b).store(NIL, SeqCst);
        }
        let mut live: Vec<(u64, u32)> = final_blocks
            .iter()
            .filter(|b| b.2 != NIL)
            .map(|b| (self.slot(b.2).lru_stamp.load(Relaxed), b.2))
            .collect();
        live.sort_unstable();
        w.lru_head.store(NIL, Relaxed);
        w.lru_tail.store(NIL, Relaxed);
        let mut is_live = vec![false; n as usize];
        let (mut entries, mut data_bytes) = (0u64, 0u64);
        for &(_, i) in &live {
            let s = self.slot(i);
            // Duplicate key (corruption only): keep the newer entry.
            if let Some(dup) = self.find_locked_slot(i) {
                let (a, b) = (self.slot(dup).updated_at.load(Relaxed), s.updated_at.load(Relaxed));
                let loser = if a <= b { dup } else { i };
                if loser == dup {
                    self.chain_remove_raw(dup);
                    self.lru_remove(dup);
                    is_live[dup as usize] = false;
                    entries -= 1;
                    data_bytes -= self.slot(dup).key_len.load(Relaxed) as u64
                        + self.slot(dup).val_len.load(Relaxed);
                    let (o, sz) = (
                        self.slot(dup).block_off.load(Relaxed),
                        self.slot(dup).block_size.load(Relaxed),
                    );
                    bump_free(self.slot(dup));
                    bytes_used -= sz;
                    let _ = self.free_block(o, sz);
                } else {
                    let (o, sz) = (s.block_off.load(Relaxed), s.block_size.load(Relaxed));
                    bump_free(s);
                    bytes_used -= sz;
                    let _ = self.free_block(o, sz);
                    continue;
                }
            }
            let b = s.hash.load(Relaxed) as u32 & (self.layout.bucket_count - 1);
            s.next.store(self.bucket(b).load(Relaxed), Relaxed);
            self.bucket(b).store(i, SeqCst);
            self.lru_push_head(i);
            is_live[i as usize] = true;
            entries += 1;
            data_bytes += s.key_len.load(Relaxed) as u64 + s.val_len.load(Relaxed);
        }
        w.free_slot_head.store(NIL, Relaxed);
        for i in (0..n).rev() {
            if !is_live[i as usize] {
                let s = self.slot(i);
                if s.state.load(Relaxed) != SLOT_FREE {
                    bump_free(s);
                }
                s.lru_next.store(w.free_slot_head.load(Relaxed), Relaxed);
                w.free_slot_head.store(i, Relaxed);
            }
        }
        w.entries.store(entries, Relaxed);
        w.data_bytes.store(data_bytes, Relaxed);
        w.bytes_used.store(bytes_used, Relaxed);
        h.index_seq.0.store(iseq.wrapping_add(1), SeqCst); // even again
    }

    /// Another live slot with the same key as slot `i`, in i's chain (rebuild only).
    pub(super) fn find_locked_slot(&self, i: u32) -> Option<u32> {
        let s = self.slot(i);
        let e = self.entry_of(s, 0)?;
        // SAFETY: entry_of validated the key range; we hold the lock.
        let key = unsafe {
            std::slice::from_raw_parts(self.arena_ptr(e.block_off + BLOCK_HDR), e.key_len as usize)
        }
        .to_vec();
        self.find_locked(&key, s.hash.load(Relaxed)).ok().flatten().filter(|&d| d != i)
    }
}
