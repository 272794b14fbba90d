//! The example of crates/memwatch-core/README.md, kept compiling and running
//! (`cargo run -p memwatch-core --example readme`).

use memwatch_core::{Options, Watched, Watcher};

fn main() -> Result<(), memwatch_core::Error> {
    let w = Watcher::new(Options::default())?; // auto: writewatch, else protect
    let mut counters = Watched::new(&w, vec![0u8; 64], "counters")?; // unwatched on drop
    counters[3] = 42;
    for e in w.check_changes()? {
        assert_eq!(e.region_id, counters.id());
        println!(
            "{} changed at {:?}: {:?} -> {:?}",
            e.variable_name,
            e.changed_ranges,
            e.old_value.as_deref().map(|v| v[3]),
            e.new_value.as_deref().map(|v| v[3])
        );
    }
    println!("backend {}", w.backend());
    Ok(())
}
