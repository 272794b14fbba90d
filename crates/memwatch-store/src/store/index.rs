//! The index: slots, hash chains and the LRU list (writer lock held).

use super::*;

impl Store {
    /// The slot holding `key`, under the lock.
    pub(super) fn find_locked(&self, key: &[u8], h: u64) -> Result<Option<u32>> {
        let mut idx = self.bucket(h as u32).load(Relaxed);
        let mut steps = 0;
        while idx != NIL {
            if idx >= self.layout.slot_count || steps > self.layout.slot_count {
                return Err(self.corrupt("hash chain out of range or cyclic"));
            }
            let s = self.slot(idx);
            if s.hash.load(Relaxed) == h && s.state.load(Relaxed) == SLOT_USED {
                if let Some(e) = self.entry_of(s, 0) {
                    if self.key_matches(&e, key) {
                        return Ok(Some(idx));
                    }
                }
            }
            idx = s.next.load(Relaxed);
            steps += 1;
        }
        Ok(None)
    }

    pub(super) fn chain_insert(&self, i: u32) {
        let h = self.header();
        let s = self.slot(i);
        let b = self.bucket(s.hash.load(Relaxed) as u32);
        h.index_seq.0.fetch_add(1, SeqCst);
        s.next.store(b.load(Relaxed), Release);
        b.store(i, Release);
        h.index_seq.0.fetch_add(1, SeqCst);
    }

    pub(super) fn chain_remove(&self, i: u32) -> Result<()> {
        let h = self.header();
        h.index_seq.0.fetch_add(1, SeqCst);
        let r = self.chain_remove_inner(i);
        h.index_seq.0.fetch_add(1, SeqCst);
        r
    }

    pub(super) fn chain_remove_raw(&self, i: u32) {
        let _ = self.chain_remove_inner(i);
    }

    pub(super) fn chain_remove_inner(&self, i: u32) -> Result<()> {
        let s = self.slot(i);
        let b = self.bucket(s.hash.load(Relaxed) as u32);
        let mut cur = b.load(Relaxed);
        if cur == i {
            b.store(s.next.load(Relaxed), Release);
            return Ok(());
        }
        let mut steps = 0;
        while cur != NIL {
            if cur >= self.layout.slot_count || steps > self.layout.slot_count {
                return Err(self.corrupt("hash chain out of range or cyclic"));
            }
            let c = self.slot(cur);
            let nx = c.next.load(Relaxed);
            if nx == i {
                c.next.store(s.next.load(Relaxed), Release);
                return Ok(());
            }
            cur = nx;
            steps += 1;
        }
        Err(self.corrupt("entry missing from its hash chain"))
    }

    pub(super) fn lru_push_head(&self, i: u32) {
        let w = &self.header().w.0;
        let s = self.slot(i);
        let head = w.lru_head.load(Relaxed);
        s.lru_prev.store(NIL, Relaxed);
        s.lru_next.store(head, Relaxed);
        if head != NIL && head < self.layout.slot_count {
            self.slot(head).lru_prev.store(i, Relaxed);
        } else {
            w.lru_tail.store(i, Relaxed);
        }
        w.lru_head.store(i, Relaxed);
    }

    pub(super) fn lru_remove(&self, i: u32) {
        let w = &self.header().w.0;
        let s = self.slot(i);
        let (p, nx) = (s.lru_prev.load(Relaxed), s.lru_next.load(Relaxed));
        if p != NIL && p < self.layout.slot_count {
            self.slot(p).lru_next.store(nx, Relaxed);
        } else if w.lru_head.load(Relaxed) == i {
            w.lru_head.store(nx, Relaxed);
        }
        if nx != NIL && nx < self.layout.slot_count {
            self.slot(nx).lru_prev.store(p, Relaxed);
        } else if w.lru_tail.load(Relaxed) == i {
            w.lru_tail.store(p, Relaxed);
        }
        s.lru_prev.store(NIL, Relaxed);
        s.lru_next.store(NIL, Relaxed);
    }

    pub(super) fn slot_alloc(&self) -> Result<Option<u32>> {
        let w = &self.header().w.0;
        let i = w.free_slot_head.load(Relaxed);
        if i == NIL {
            return Ok(None);
        }
        if i >= self.layout.slot_count || self.slot(i).state.load(Relaxed) != SLOT_FREE {
            return Err(self.corrupt("free-slot list is broken"));
        }
        w.free_slot_head.store(self.slot(i).lru_next.load(Relaxed), Relaxed);
        Ok(Some(i))
    }

    /// Deletes the entry in slot `i` (lock held).
    pub(super) fn remove_entry(&self, i: u32) -> Result<()> {
        let h = self.header();
        let w = &h.w.0;
        let s = self.slot(i);
        let (off, size) = (s.block_off.load(Relaxed), s.block_size.load(Relaxed));
        let data = (s.key_len.load(Relaxed) as u64).saturating_add(s.val_len.load(Relaxed));
        let q = s.seq.load(Relaxed);
        s.seq.store(q.wrapping_add(1), SeqCst);
        s.state.store(SLOT_FREE, Relaxed);
        s.seq.store(q.wrapping_add(2), SeqCst);
        self.chain_remove(i)?;
        self.lru_remove(i);
        s.lru_next.store(w.free_slot_head.load(Relaxed), Relaxed);
        w.free_slot_head.store(i, Relaxed);
        w.entries.fetch_sub(1, Relaxed);
        w.data_bytes.fetch_sub(data.min(w.data_bytes.load(Relaxed)), Relaxed);
        self.free_or_retire(off, size)
    }

    /// Evicts the least recently used entry; false if there is none.
    pub(super) fn evict_one(&self) -> Result<bool> {
        let w = &self.header().w.0;
        let mut promotions = 0u32;
        loop {
            let t = w.lru_tail.load(Relaxed);
            if t == NIL {
                return Ok(false);
            }
            if t >= self.layout.slot_count {
                return Err(self.corrupt("LRU list out of range"));
            }
            let s = self.slot(t);
            let la = s.last_access.load(Relaxed);
            if promotions <= self.layout.slot_count && la > s.lru_stamp.load(Relaxed) {
                // Read since it took its position: it is not the LRU entry.
                self.lru_remove(t);
                s.lru_stamp.store(la, Relaxed);
                self.lru_push_head_sorted(t, la);
                promotions += 1;
                continue;
            }
            self.remove_entry(t)?;
            w.evictions.fetch_add(1, Relaxed);
            return Ok(true);
        }
    }

    /// Inserts `i` with stamp `la` so that the list stays ordered by stamp
    /// (walking from the head; promoted entries are usually recent).
    pub(super) fn lru_push_head_sorted(&self, i: u32, la: u64) {
        let w = &self.header().w.0;
        let mut cur = w.lru_head.load(Relaxed);
        let mut steps = 0;
        // Find the first node (from the head) whose stamp <= la.
        while cur != NIL && cur < self.layout.slot_count && steps < 64 {
            if self.slot(cur).lru_stamp.load(Relaxed) <= la {
                break;
            }
            cur = self.slot(cur).lru_next.load(Relaxed);
            steps += 1;
        }
        if cur == w.lru_head.load(Relaxed)
            || steps >= 64
            || cur >= self.layout.slot_count && cur != NIL
        {
            self.lru_push_head(i);
            return;
        }
        let s = self.slot(i);
        if cur == NIL {
            // Append at the tail.
            let t = w.lru_tail.load(Relaxed);
            s.lru_prev.store(t, Relaxed);
            s.lru_next.store(NIL, Relaxed);
            if t != NIL {
                self.slot(t).lru_next.store(i, Relaxed);
            }
            w.lru_tail.store(i, Relaxed);
            if w.lru_head.load(Relaxed) == NIL {
                w.lru_head.store(i, Relaxed);
            }
            return;
        }
        // Insert before `cur`.
        let p = self.slot(cur).lru_prev.load(Relaxed);
        s.lru_prev.store(p, Relaxed);
        s.lru_next.store(cur, Relaxed);
        self.slot(cur).lru_prev.store(i, Relaxed);
        if p != NIL {
            self.slot(p).lru_next.store(i, Relaxed);
        } else {
            w.lru_head.store(i, Relaxed);
        }
    }
}
