//! Helpers shared by the integration tests.
#![allow(dead_code)]

use memwatch_core::page_size;

/// A page-aligned anonymous mapping, unmapped on drop.
pub struct Pages {
    pub ptr: *mut u8,
    pub len: usize,
}

// SAFETY: plain memory; tests synchronise their own accesses.
unsafe impl Send for Pages {}
// SAFETY: as above.
unsafe impl Sync for Pages {}

impl Pages {
    pub fn new(pages: usize) -> Pages {
        let len = pages * page_size();
        // SAFETY: anonymous private mapping, no preconditions.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED);
        Pages { ptr: ptr as *mut u8, len }
    }

    pub fn write(&self, offset: usize, byte: u8) {
        assert!(offset < self.len);
        // SAFETY: in bounds; volatile so the store really happens.
        unsafe { std::ptr::write_volatile(self.ptr.add(offset), byte) };
    }

    pub fn read(&self, offset: usize, len: usize) -> Vec<u8> {
        assert!(offset + len <= self.len);
        // SAFETY: in bounds of the mapping.
        unsafe { std::slice::from_raw_parts(self.ptr.add(offset), len) }.to_vec()
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        // SAFETY: the mapping made in new().
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

/// Waits up to `limit` for a child; Some(status) if it ended.
pub fn wait_child(pid: libc::pid_t, limit: std::time::Duration) -> Option<i32> {
    let start = std::time::Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return Some(status);
        }
        if start.elapsed() > limit {
            // SAFETY: killing our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            // SAFETY: reaping it.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

impl Pages {
    /// A mapping of at least `len` bytes (whole pages), every byte `fill`.
    pub fn filled(len: usize, fill: u8) -> Pages {
        let pages = Pages::new(len.div_ceil(page_size()).max(1));
        // SAFETY: fresh writable mapping of pages.len >= len bytes.
        unsafe { std::ptr::write_bytes(pages.ptr, fill, len) };
        pages
    }

    /// Stores `bytes` at `offset`, one volatile store each (a plain write by this thread).
    pub fn write_all(&self, offset: usize, bytes: &[u8]) {
        for (i, b) in bytes.iter().enumerate() {
            self.write(offset + i, *b);
        }
    }
}

/// A watcher's events, sent to a channel by its callback (the worker's).
pub fn events_to_channel(
    w: &memwatch_core::Watcher,
) -> std::sync::mpsc::Receiver<memwatch_core::ChangeEvent> {
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    w.set_callback(Some(std::sync::Arc::new(move |e: &memwatch_core::ChangeEvent| {
        tx.lock().unwrap().send(e.clone()).unwrap();
    })))
    .unwrap();
    rx
}
