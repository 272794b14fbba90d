//! Writer location: which function, file and line wrote the watched bytes.
//! `cargo run -p memwatch-core --example locate`

use memwatch_core::{Options, Watcher};

#[inline(never)]
fn bump(counters: &mut [u8]) {
    counters[3] += 1; // reported as this line
}

fn main() -> Result<(), memwatch_core::Error> {
    // 256 KiB: its own mapping, so no other object shares its pages (only
    // the first write to a page in a window is located).
    let mut counters = vec![0u8; 256 << 10];
    // auto picks protect: the backend whose fault handler sees the writer.
    let w = Watcher::new(Options { locate_writers: true, stack_depth: 8, ..Options::default() })?;
    // SAFETY: `counters` outlives the watch (the watcher is closed first).
    unsafe { w.watch(counters.as_ptr(), counters.len(), "counters", None) }?;
    bump(&mut counters);
    for e in w.check_changes()? {
        let at = &e.where_;
        println!("{} written by thread {:?} ({})", e.variable_name, at.thread_id, at.thread_name);
        println!("  at {} ({}:{})", at.function, at.file, at.line);
        for f in &at.stack {
            println!(
                "    {} {}:{}  [{}+{:#x}]",
                f.function, f.file, f.line, f.module, f.module_offset
            );
        }
    }
    println!("backend {}: {}", w.backend(), w.stats().backend_reason);
    w.close();
    Ok(())
}
