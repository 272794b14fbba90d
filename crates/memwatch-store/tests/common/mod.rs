//! Test helpers: unique store names that are unlinked at the end, and
//! key-derived values with a checksum so every read can be verified.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique store name (includes the pid); unlinked when dropped.
pub struct Name(pub String);

impl Name {
    pub fn new(tag: &str) -> Name {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Name(format!("mwtest-{tag}-{}-{n}", std::process::id()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = memwatch_store::Store::unlink(&self.0);
    }
}

/// Value for (key, version): a pattern derived from both, `len` bytes, with
/// the key hash, version and an xxh3 checksum of the body in the first 24 bytes.
pub fn make_value(key: &[u8], version: u64, len: usize) -> Vec<u8> {
    let len = len.max(24);
    let seed = xxhash_rust::xxh3::xxh3_64(key) ^ version.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut body = Vec::with_capacity(len - 24);
    let mut x = seed | 1;
    for _ in 0..len - 24 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        body.push(x as u8);
    }
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(key).to_le_bytes());
    v.extend_from_slice(&version.to_le_bytes());
    v.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&body).to_le_bytes());
    v.extend_from_slice(&body);
    v
}

/// Checks a value made by `make_value` for `key`; returns its version.
pub fn check_value(key: &[u8], v: &[u8]) -> Result<u64, String> {
    if v.len() < 24 {
        return Err(format!("value for {:?} too short: {}", String::from_utf8_lossy(key), v.len()));
    }
    let kh = u64::from_le_bytes(v[0..8].try_into().unwrap());
    if kh != xxhash_rust::xxh3::xxh3_64(key) {
        return Err(format!("value for {:?} belongs to another key", String::from_utf8_lossy(key)));
    }
    let version = u64::from_le_bytes(v[8..16].try_into().unwrap());
    let sum = u64::from_le_bytes(v[16..24].try_into().unwrap());
    if sum != xxhash_rust::xxh3::xxh3_64(&v[24..]) {
        return Err(format!(
            "torn/corrupt value for {:?} (checksum)",
            String::from_utf8_lossy(key)
        ));
    }
    // Full pattern check for small values (the checksum covers the rest).
    if v.len() <= 4096 && make_value(key, version, v.len()) != v {
        return Err(format!(
            "value for {:?} does not match its pattern",
            String::from_utf8_lossy(key)
        ));
    }
    Ok(version)
}
