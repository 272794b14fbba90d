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

#[test]
fn a_second_thread_is_named_and_located() {
    let pages = Pages::new(1);
    let w = locating(8);
    // SAFETY: pages outlives the watch (closed below).
    unsafe { w.watch(pages.ptr, 16, "buf", None) }.unwrap();
    let addr = pages.ptr as usize;
    let (tid, (line, _)) = std::thread::Builder::new()
        .name("writer-7".into())
        .spawn(move || {
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() } as u32;
            (tid, outer_call((addr + 3) as *mut u8, 9))
        })
        .unwrap()
        .join()
        .unwrap();
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1);
    let wh = &events[0].where_;
    assert_eq!(wh.thread_id, Some(tid));
    assert_eq!(wh.thread_name, "writer-7");
    assert_eq!(wh.line, line);
    assert!(position(&wh.stack, "inner_write") < position(&wh.stack, "outer_call"));
    w.close();
}

#[test]
fn only_the_first_fault_is_attributed_the_others_are_counted() {
    let pages = Pages::new(3);
    let w = locating(4);
    // SAFETY: pages outlives the watch (closed below).
    unsafe { w.watch(pages.ptr, pages.len, "three", None) }.unwrap();
    let ps = page_size();
    let (line, _) = outer_call(pages.ptr, 1);
    pages.write(ps + 1, 2);
    pages.write(2 * ps + 2, 3);
    pages.write(2 * ps + 3, 4); // same page again: no fault, merged unseen
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(
        e.changed_ranges,
        vec![
            ByteRange { offset: 0, len: 1 },
            ByteRange { offset: ps + 1, len: 1 },
            ByteRange { offset: 2 * ps + 2, len: 2 }
        ]
    );
    assert_eq!(e.where_.line, line);
    assert_eq!(e.where_.unattributed_faults, 2);
    assert!(e.where_.stack.len() <= 4 + 4, "depth 4 plus inlined frames");
    w.close();
}

#[test]
fn stack_depth_bounds_the_walk() {
    let pages = Pages::new(1);
    let w = locating(2);
    // SAFETY: pages outlives the watch (closed below).
    unsafe { w.watch(pages.ptr, 16, "buf", None) }.unwrap();
    outer_call(pages.ptr, 1);
    let events = w.check_changes().unwrap();
    let stack = &events[0].where_.stack;
    // Two captured frames (inner_write, outer_call), no inlining at opt-level 0.
    let names: Vec<&str> = stack.iter().map(|f| f.function.as_str()).collect();
    assert_eq!(names, ["location::inner_write", "location::outer_call"], "{stack:#?}");
    w.close();
}

#[test]
fn a_first_write_outside_the_region_locates_nothing_for_it() {
    let pages = Pages::new(1);
    let w = locating(8);
    // SAFETY: pages outlives the watch (closed below).
    unsafe { w.watch(pages.ptr.wrapping_add(64), 16, "inner", None) }.unwrap();
    pages.write(0, 1); // same page, another object: this fault opens the page
    outer_call(pages.ptr.wrapping_add(64), 2); // no fault: merged unseen
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1);
    let wh = &events[0].where_;
    assert_eq!(events[0].new_value.as_ref().unwrap()[0], 2);
    assert_eq!((wh.stack.len(), wh.line, wh.function.as_str()), (0, 0, ""));
    assert_eq!((wh.thread_id, wh.fault_ip), (None, None));
    assert_eq!(wh.unattributed_faults, 1);
    w.close();
}

#[test]
fn without_locate_writers_nothing_is_located() {
    let pages = Pages::new(1);
    let w = Watcher::new(Options { backend: Backend::Protect, ..Options::default() }).unwrap();
    // SAFETY: pages outlives the watch (closed below).
    unsafe { w.watch(pages.ptr, 16, "buf", None) }.unwrap();
    outer_call(pages.ptr, 1);
    let events = w.check_changes().unwrap();
    let wh = &events[0].where_;
    assert!(wh.thread_id.is_some() && wh.fault_ip.is_some());
    assert_eq!((wh.stack.len(), wh.line, wh.thread_name.as_str()), (0, 0, ""));
    assert_eq!(wh.function, "");
    w.close();
}

#[test]
fn auto_picks_protect_and_says_why_bad_options_are_refused() {
    let w = Watcher::new(Options { locate_writers: true, ..Options::default() }).unwrap();
    assert_eq!(w.backend(), Backend::Protect);
    let stats = w.stats();
    assert!(stats.backend_reason.contains("locate_writers"), "{}", stats.backend_reason);
    w.close();
    for depth in [0, MAX_STACK_DEPTH + 1] {
        let bad = Options { locate_writers: true, stack_depth: depth, ..Options::default() };
        assert!(
            matches!(Watcher::new(bad), Err(Error::InvalidArgument(m)) if m.contains("stack_depth"))
        );
    }
    for backend in [Backend::WriteWatch, Backend::Poll] {
        let bad = Options { locate_writers: true, backend, ..Options::default() };
        assert!(
            matches!(Watcher::new(bad), Err(Error::InvalidArgument(m)) if m.contains("protect"))
        );
    }
}

#[test]
fn fault_storm_of_10000_pages_with_capture_on() {
    const N: usize = 10_000;
    let pages = Pages::new(N);
    let w = locating(8);
    let ps = page_size();
    // One region per page: every fault is its own region's first write.
    let mut index = std::collections::HashMap::new();
    for i in 0..N {
        // SAFETY: pages outlives the watch (closed below).
        let id = unsafe { w.watch(pages.ptr.wrapping_add(i * ps), ps, "page", None) }.unwrap();
        index.insert(id, i);
    }
    for i in 0..N {
        pages.write(i * ps + i % 64, (i % 251) as u8 + 1);
    }
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), N);
    let mut seen = vec![false; N];
    for e in &events {
        assert_eq!(e.changed_ranges.len(), 1);
        let off = e.changed_ranges[0].offset;
        let i = index[&e.region_id];
        assert!(!seen[i], "each region once");
        seen[i] = true;
        assert_eq!((off, e.new_value.as_ref().unwrap()[off]), (i % 64, (i % 251) as u8 + 1));
        let wh = &e.where_;
        assert!(wh.function.ends_with("Pages::write"), "{wh:#?}");
        assert_eq!(wh.unattributed_faults, 0);
        assert_eq!(wh.stack[0].ip, wh.fault_ip.unwrap());
    }
    assert_eq!(w.stats().dropped_wheres, 0);
    w.close();
}

/// A write made with a frame pointer that points at a PROT_NONE page above
/// the stack pointer: the walk's probe read faults, is recovered, and the
/// event still carries the faulting instruction.
#[cfg(target_arch = "x86_64")]
#[test]
fn a_bad_frame_pointer_ends_the_walk_without_a_crash() {
    let pages = Pages::new(1);
    let w = locating(8);
    // SAFETY: pages outlives the watch (closed below).
    unsafe { w.watch(pages.ptr, 16, "buf", None) }.unwrap();
    let sp = &pages as *const Pages as usize;
    let ps = page_size();
    // A PROT_NONE page 64 MiB..1 GiB above this stack (the first free one).
    let trap = (1..16)
        .map(|i| (sp & !(ps - 1)) + (i << 26))
        .find(|&hint| {
            // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
            let p = unsafe {
                libc::mmap(
                    hint as *mut libc::c_void,
                    ps,
                    libc::PROT_NONE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                    -1,
                    0,
                )
            };
            p as usize == hint
        })
        .expect("a free page above the stack");
    // SAFETY: rbp is saved and restored around one store into the watched
    // page; nothing in between reads rbp.
    unsafe {
        std::arch::asm!(
            "push rbp",
            "mov rbp, {trap}",
            "mov byte ptr [{p}], 7",
            "pop rbp",
            trap = in(reg) trap,
            p = in(reg) pages.ptr,
        );
    }
    let events = w.check_changes().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].new_value.as_ref().unwrap()[0], 7);
    let wh = &events[0].where_;
    assert_eq!(wh.stack.len(), 1, "{:#?}", wh.stack);
    assert_eq!(wh.stack[0].ip, wh.fault_ip.unwrap());
    assert!(wh.function.ends_with("a_bad_frame_pointer_ends_the_walk_without_a_crash"));
    // SAFETY: the page mapped above.
    unsafe { libc::munmap(trap as *mut libc::c_void, ps) };
    w.close();
}
