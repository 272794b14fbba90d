//! The example of crates/memwatch-core/README.md, kept compiling and running.

use memwatch_core::{Options, Watcher};

// Heap memory on purpose: its pointer escapes into the watcher, so the write
// below is a real store (a local array's write could be optimised away).
#[allow(clippy::useless_vec)]
fn main() -> Result<(), memwatch_core::Error> {
    let mut counters = vec![0u8; 64];
    let w = Watcher::new(Options::default())?; // auto: writewatch, else protect
                                               // SAFETY: `counters` outlives the watch (the watcher is closed first).
    let id = unsafe { w.watch(counters.as_ptr(), counters.len(), "counters", None) }?;
    counters[3] = 42;
    for e in w.check_changes()? {
        assert_eq!(e.region_id, id);
        println!(
            "{} changed at {:?}: {:?} -> {:?}",
            e.variable_name,
            e.changed_ranges,
            e.old_value.as_deref().map(|v| v[3]),
            e.new_value.as_deref().map(|v| v[3])
        );
    }
    println!("backend {}", w.backend());
    w.close();
    Ok(())
}
