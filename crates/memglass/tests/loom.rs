//! Loom model of the seqlock protocol (the very code in src/seqlock.rs,
//! run over loom's atomics): every interleaving and every weak-memory
//! outcome loom allows. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p memglass --test loom --release`.
#![cfg(loom)]

use loom::sync::atomic::{fence, AtomicU64};
use loom::sync::Arc;
use memglass::protocol::{self, SeqCell};
use std::sync::atomic::Ordering;

/// A sequence word and two data words.
struct Cell {
    seq: AtomicU64,
    w: [AtomicU64; 2],
}

impl SeqCell for Cell {
    fn load_seq(&self, o: Ordering) -> u64 {
        self.seq.load(o)
    }
    fn store_seq(&self, v: u64, o: Ordering) {
        self.seq.store(v, o)
    }
    fn cas_seq(&self, c: u64, n: u64) -> bool {
        self.seq.compare_exchange(c, n, Ordering::AcqRel, Ordering::Relaxed).is_ok()
    }
    fn fence(o: Ordering) {
        fence(o)
    }
    fn store_data(&self, src: &[u8]) {
        for (i, c) in src.chunks(8).enumerate() {
            self.w[i].store(u64::from_ne_bytes(c.try_into().unwrap()), Ordering::Relaxed);
        }
    }
    fn load_data(&self, dst: &mut [u8]) {
        for (i, c) in dst.chunks_mut(8).enumerate() {
            c.copy_from_slice(&self.w[i].load(Ordering::Relaxed).to_ne_bytes());
        }
    }
    fn pause(_: u32) {
        loom::thread::yield_now();
    }
}

fn words(v: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&v.to_ne_bytes());
    b[8..].copy_from_slice(&v.to_ne_bytes());
    b
}

/// One writer publishes (1,1) then (2,2); one reader reads once (2
/// attempts). Returns normally iff no accepted read mixed the two words.
fn model(fenced: bool, locked: bool) {
    loom::model(move || {
        let c =
            Arc::new(Cell { seq: AtomicU64::new(0), w: [AtomicU64::new(0), AtomicU64::new(0)] });
        let wc = c.clone();
        let writer = loom::thread::spawn(move || {
            for v in 1..=2 {
                if locked {
                    protocol::write_locked(&*wc, &words(v));
                } else {
                    protocol::write(&*wc, &words(v), fenced);
                }
            }
        });
        let mut buf = [0u8; 16];
        if protocol::read(&*c, &mut buf, 2, fenced).is_ok() {
            let a = u64::from_ne_bytes(buf[..8].try_into().unwrap());
            let b = u64::from_ne_bytes(buf[8..].try_into().unwrap());
            assert_eq!(a, b, "mixed read: ({a}, {b})");
        }
        writer.join().unwrap();
    });
}

#[test]
fn fenced_seqlock_never_returns_a_mixed_value() {
    model(true, false);
}

#[test]
fn locked_write_never_returns_a_mixed_value() {
    model(true, true);
}

#[test]
fn unfenced_variant_is_caught() {
    // Without the writer's release fence and the reader's acquire fence a
    // reader can take new data with the old sequence: loom must find it.
    let r = std::panic::catch_unwind(|| model(false, false));
    assert!(r.is_err(), "loom found no mixed read in the unfenced variant");
}
