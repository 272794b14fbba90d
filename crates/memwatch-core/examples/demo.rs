//! Watches a few variables, changes them from two threads, prints each change.
//!
//! `cargo run -p memwatch-core --example demo` (backend auto), or with
//! `-- protect` / `-- poll` / `-- writewatch`. The writer's thread is known
//! to the protect backend only.

use std::sync::Arc;

use memwatch_core::{Backend, ChangeEvent, Options, Watcher};

#[repr(C, align(4096))]
struct State {
    counter: [u8; 8],
    name: [u8; 16],
    scores: [u8; 32],
}

fn show(bytes: &Option<Vec<u8>>) -> String {
    bytes.as_ref().map_or("-".into(), |b| b.iter().map(|x| format!("{x:02x}")).collect())
}

fn main() {
    let mut state =
        Box::new(State { counter: [0; 8], name: *b"memwatch\0\0\0\0\0\0\0\0", scores: [0; 32] });
    let backend = std::env::args()
        .nth(1)
        .map_or(Ok(Backend::Auto), |b| Backend::from_name(&b))
        .expect("backend name");
    let watcher = Watcher::new(Options { backend, ..Options::default() }).expect("watcher");
    println!("backend: {}", watcher.backend());
    // SAFETY: `state` outlives the watcher (closed at the end of main).
    unsafe {
        watcher.watch(state.counter.as_ptr(), 8, "counter", None).unwrap();
        watcher.watch(state.name.as_ptr(), 16, "name", Some("utf-8 text")).unwrap();
        watcher.watch(state.scores.as_ptr(), 32, "scores", None).unwrap();
    }
    watcher
        .set_callback(Some(Arc::new(|e: &ChangeEvent| {
            let ranges: Vec<String> =
                e.changed_ranges.iter().map(|r| format!("{}+{}", r.offset, r.len)).collect();
            println!(
                "#{:<3} {:<8} bytes [{}]  {} -> {}  (thread {})",
                e.seq,
                e.variable_name,
                ranges.join(","),
                show(&e.old_value),
                show(&e.new_value),
                e.where_.thread_id.map_or("unknown to this backend".into(), |t| t.to_string())
            );
        })))
        .unwrap();

    state.counter[0] = 1;
    watcher.check_changes().unwrap();
    state.name[..5].copy_from_slice(b"MEMWA");
    watcher.check_changes().unwrap();
    let scores = state.scores.as_mut_ptr() as usize;
    std::thread::spawn(move || {
        for i in 0..4 {
            // SAFETY: `scores` points into `state`, alive until after join.
            unsafe { *(scores as *mut u8).add(i * 8) = 10 * (i as u8 + 1) };
        }
    })
    .join()
    .unwrap();
    watcher.check_changes().unwrap();
    state.counter[0] = 2;
    watcher.check_changes().unwrap();
    let stats = watcher.stats();
    println!(
        "stats: {} regions, {} events, {} faults, backend {}",
        stats.regions,
        stats.events,
        stats.faults,
        watcher.backend()
    );
    watcher.close();
}
