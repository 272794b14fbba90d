//! Writer location (Options::locate_writers) under protect: the event names
//! the writing statement's line, function and file, the thread, and the
//! caller chain in order. Needs frame pointers in this test binary (debug
//! builds keep them; ci/test.sh also passes -C force-frame-pointers=yes).

mod common;

use common::Pages;
use memwatch_core::*;

fn locating(depth: usize) -> Watcher {
    Watcher::new(Options {
        backend: Backend::Protect,
        locate_writers: true,
        stack_depth: depth,
        ..Options::default()
    })
    .unwrap()
}

/// Writes `v` at `p` and returns the line of the writing statement.
#[inline(never)]
fn inner_write(p: *mut u8, v: u8) -> u32 {
    // SAFETY: p points into a live mapping of the test.
    unsafe { *p = v };
    line!() - 1
}

/// Calls inner_write; returns (line of the write, line of the call).
#[inline(never)]
fn outer_call(p: *mut u8, v: u8) -> (u32, u32) {
    let lines = (inner_write(p, v), line!());
    std::hint::black_box(lines)
}

fn position(stack: &[Frame], name: &str) -> usize {
    stack
        .iter()
        .position(|f| f.function.ends_with(name))
        .unwrap_or_else(|| panic!("{name} not in the stack: {stack:#?}"))
}

#[test]
fn line_function_file_and_caller_chain_of_the_write() {
    let pages = Pages::new(1);
    let w = locating(8);
    // SAFETY: pages outlives the watch (closed below).
    unsafe { w.watch(pages.ptr, 64, "buf", None) }.unwrap();
    let (line, call_line) = outer_call(pages.ptr.wrapping_add(5), 0xab);
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.new_value.as_ref().unwrap()[5], 0xab);
    let wh = &e.where_;
    assert_eq!(wh.line, line, "{wh:#?}");
    assert!(wh.function.ends_with("inner_write"), "{wh:#?}");
    assert!(wh.file.ends_with("tests/location.rs"), "{wh:#?}");
    assert_eq!(wh.thread_id, Some(unsafe { libc::gettid() } as u32));
    assert_eq!(wh.unattributed_faults, 0);
    // The first frame is the faulting instruction itself.
    assert_eq!(wh.stack[0].ip, wh.fault_ip.unwrap());
    assert!(wh
        .module
        .ends_with(&*std::env::current_exe().unwrap().file_name().unwrap().to_string_lossy()));
    let inner = position(&wh.stack, "inner_write");
    let outer = position(&wh.stack, "outer_call");
    let test = position(&wh.stack, "line_function_file_and_caller_chain_of_the_write");
    assert!(inner < outer && outer < test, "{:#?}", wh.stack);
    // The caller frame's line is the call in outer_call.
    assert_eq!(wh.stack[outer].line, call_line, "{:#?}", wh.stack);
    w.close();
}
