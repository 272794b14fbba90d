//! A runtime's own frames (set_runtime_frames): the capture hook runs in the
//! SIGSEGV handler of a located write, reads the "interpreter's" state
//! through read_word (a bad address gives None, not a crash), and the
//! resolver's frames come first in the event: `where` names the runtime's
//! frame (or, with a skip predicate, the first one it does not skip), the
//! native frames follow in the stack.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::Pages;
use memwatch_core::*;

/// The simulated interpreter's "current line" (what a real runtime keeps
/// in its thread state).
static CURRENT_LINE: AtomicU64 = AtomicU64::new(0);
/// An address that cannot be read (set by the test before any fault).
static UNMAPPED: AtomicU64 = AtomicU64::new(0);

/// Writes: [ucontext non-null, the current line, 1 if the unreadable read
/// failed cleanly, then `ctx` more words of frame lines (depth test)].
unsafe extern "C" fn capture(
    ucontext: *mut libc::c_void,
    out: *mut u64,
    max_words: usize,
    ctx: *mut libc::c_void,
) -> usize {
    let line = read_word(CURRENT_LINE.as_ptr() as usize).unwrap_or(0);
    let bad = read_word(UNMAPPED.load(Ordering::Relaxed) as usize).is_none();
    let extra = ctx as usize;
    let n = (3 + extra).min(max_words);
    // SAFETY: out has room for max_words words (the hook's contract).
    unsafe {
        *out = !ucontext.is_null() as u64;
        *out.add(1) = line;
        *out.add(2) = bad as u64;
        for i in 3..n {
            *out.add(i) = line + i as u64;
        }
    }
    n
}

fn resolve(words: &[u64]) -> Vec<Frame> {
    assert_eq!(words[0], 1, "the hook got the ucontext");
    assert_eq!(words[2], 1, "read_word of a PROT_NONE page gave None");
    let mut frames = vec![frame("script_fn", words[1] as u32)];
    frames.extend(words[3..].iter().map(|&l| frame("caller_fn", l as u32)));
    frames
}

fn frame(function: &str, line: u32) -> Frame {
    Frame {
        ip: 0,
        module: "script.rt".into(),
        module_offset: 0,
        function: function.into(),
        file: "script.rt".into(),
        line,
        inlined: false,
    }
}

/// A PROT_NONE page kept for the whole test (an unmapped one could be
/// reused by the next mmap).
fn unreadable_address() -> u64 {
    // SAFETY: a fresh private anonymous mapping; nothing else uses it.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    p as u64
}

#[test]
fn runtime_frames_come_first_and_name_the_writer() {
    UNMAPPED.store(unreadable_address(), Ordering::Relaxed);
    set_runtime_frames(Some(RuntimeFrames { capture, ctx: 0, resolve: Arc::new(resolve) }));
    let pages = Pages::new(2);
    let w = Watcher::new(Options {
        backend: Backend::Protect,
        locate_writers: true,
        stack_depth: 4,
        ..Options::default()
    })
    .unwrap();
    // SAFETY: pages outlives the watch (closed below).
    unsafe { w.watch(pages.ptr, 8192, "buf", None) }.unwrap();

    CURRENT_LINE.store(42, Ordering::SeqCst);
    pages.write(3, 7);
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1);
    let wh = &events[0].where_;
    assert_eq!((wh.function.as_str(), wh.file.as_str(), wh.line), ("script_fn", "script.rt", 42));
    assert_eq!(wh.stack[0].function, "script_fn");
    // The native frames follow: the write itself is in Pages::write.
    assert!(wh.stack[1..].iter().any(|f| f.function.contains("write")), "{:#?}", wh.stack);

    // Ten runtime frames with stack_depth 4: four are kept.
    set_runtime_frames(Some(RuntimeFrames { capture, ctx: 9, resolve: Arc::new(resolve) }));
    CURRENT_LINE.store(100, Ordering::SeqCst);
    pages.write(4096 + 1, 9);
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1);
    let rt: Vec<u32> =
        events[0].where_.stack.iter().filter(|f| f.file == "script.rt").map(|f| f.line).collect();
    assert_eq!(rt, vec![100, 103, 104, 105]);

    // A skip predicate: the innermost runtime frames ("library" code) stay
    // in the stack, Where names the first frame it does not skip.
    set_runtime_skip(Some(Arc::new(|f: &Frame| f.line < 202)));
    CURRENT_LINE.store(200, Ordering::SeqCst);
    pages.write(4096 + 2, 3);
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1);
    let wh = &events[0].where_;
    assert_eq!((wh.function.as_str(), wh.line), ("caller_fn", 203));
    let rt: Vec<u32> = wh.stack.iter().filter(|f| f.file == "script.rt").map(|f| f.line).collect();
    assert_eq!(rt, vec![200, 203, 204, 205]);
    // Skipping them all: the native user frame is named, all stay in the stack.
    set_runtime_skip(Some(Arc::new(|_: &Frame| true)));
    pages.write(3, 4);
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1);
    let wh = &events[0].where_;
    assert!(wh.function.contains("write"), "{wh:#?}");
    assert_eq!(wh.stack.iter().filter(|f| f.file == "script.rt").count(), 4);
    set_runtime_skip(None);

    // Without the hook, the native frame is named again.
    set_runtime_frames(None);
    pages.write(2, 1);
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1);
    assert!(events[0].where_.stack.iter().all(|f| f.file != "script.rt"));
    assert!(!events[0].where_.function.is_empty());
    w.close();
}
