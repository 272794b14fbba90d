//! Test hooks (feature `test-hooks`): ways to hold, damage or leak the
//! writer lock that only tests need. Not part of the API.

use super::*;

impl Store {
    #[doc(hidden)]
    /// Test hook: runs `f` while holding the writer lock.
    pub fn __with_lock<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        let _g = self.lock()?;
        Ok(f())
    }

    #[doc(hidden)]
    /// Test hook: takes the writer lock, damages a derived structure (the
    /// first hash bucket) and panics while holding it.
    pub fn __panic_while_locked(&self) {
        let _g = self.lock().expect("lock");
        self.bucket(0).store(self.layout.slot_count + 5, Relaxed);
        panic!("test panic while holding the writer lock");
    }

    #[doc(hidden)]
    /// Test hook: takes the writer lock and never releases it (the process is
    /// expected to die, e.g. from SIGKILL).
    pub fn __lock_and_leak(&self) -> Result<()> {
        let g = self.lock()?;
        std::mem::forget(g);
        Ok(())
    }

    #[doc(hidden)]
    /// Test hook: the bucket array's offset in the segment and its length in
    /// bytes (tests scribble over it to damage a derived structure).
    pub fn __buckets(&self) -> (u64, u64) {
        (self.layout.buckets_off, self.layout.bucket_count as u64 * 4)
    }
}
