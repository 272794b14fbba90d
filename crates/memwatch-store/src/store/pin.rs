//! Pin records: a zero-copy view pins its block so writers free it only
//! after the view is dropped (or its process died).

use super::*;

impl Store {
    pub(super) fn claim_pin(&self) -> Result<usize> {
        let pid = current_pid();
        let h = self.header();
        let start = (pid as usize).wrapping_mul(31) ^ thread_salt();
        for k in 0..PIN_RECORDS {
            let i = (start + k) % PIN_RECORDS;
            let p = self.pin(i);
            if p.owner.load(Relaxed) == 0
                && p.owner.compare_exchange(0, pid, SeqCst, Relaxed).is_ok()
            {
                p.block_off.store(NIL64, SeqCst);
                h.pin_bitmap.0[i / 64].fetch_or(1 << (i % 64), SeqCst);
                return Ok(i);
            }
        }
        // Maybe dead processes hold records: reclaim them and try once more.
        for i in 0..PIN_RECORDS {
            let p = self.pin(i);
            let o = p.owner.load(Relaxed);
            if o != 0 && o != PIN_RELEASING && !pid_alive(o) {
                self.release_dead_pin(i, o);
            }
        }
        for i in 0..PIN_RECORDS {
            let p = self.pin(i);
            if p.owner.compare_exchange(0, pid, SeqCst, Relaxed).is_ok() {
                p.block_off.store(NIL64, SeqCst);
                h.pin_bitmap.0[i / 64].fetch_or(1 << (i % 64), SeqCst);
                return Ok(i);
            }
        }
        Err(Error::TooManyPins(PIN_RECORDS))
    }

    pub(super) fn release_pin_record(&self, i: usize) {
        let p = self.pin(i);
        p.block_off.store(NIL64, SeqCst);
        self.header().pin_bitmap.0[i / 64].fetch_and(!(1 << (i % 64)), SeqCst);
        p.owner.store(0, SeqCst);
    }

    pub(super) fn unpin(&self, rec: usize) {
        self.release_pin_record(rec);
    }

    /// Releases record `i` if it still belongs to `dead` (a process that no
    /// longer exists); a no-op if someone else released or re-claimed it.
    pub(super) fn release_dead_pin(&self, i: usize, dead: u32) {
        let p = self.pin(i);
        if p.owner.compare_exchange(dead, PIN_RELEASING, SeqCst, Relaxed).is_ok() {
            p.block_off.store(NIL64, SeqCst);
            self.header().pin_bitmap.0[i / 64].fetch_and(!(1 << (i % 64)), SeqCst);
            p.owner.store(0, SeqCst);
        }
    }

    /// Whether a live process pins the block at `off` (dead pins are released).
    pub(super) fn is_pinned(&self, off: u64) -> bool {
        let h = self.header();
        for w in 0..PIN_RECORDS / 64 {
            let mut bits = h.pin_bitmap.0[w].load(SeqCst);
            while bits != 0 {
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let i = w * 64 + b;
                let p = self.pin(i);
                if p.block_off.load(SeqCst) == off {
                    let o = p.owner.load(SeqCst);
                    if o == 0 || o == PIN_RELEASING {
                        continue; // being released
                    }
                    if pid_alive(o) {
                        return true;
                    }
                    self.release_dead_pin(i, o);
                }
            }
        }
        false
    }
}
