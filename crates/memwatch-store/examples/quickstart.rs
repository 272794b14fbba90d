//! Quick start: `cargo run -p memwatch-store --example quickstart`
//!
//! Creates a store, writes and reads from two processes (this one and a child
//! it spawns), prints stats, and removes the store.

use memwatch_store::{FullPolicy, Store};
use std::process::Command;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(name) = std::env::var("QUICKSTART_CHILD") {
        // The child: open the parent's store and read what it wrote.
        let store = Store::open(&name)?;
        let v = store.get("greeting")?.expect("written by the parent");
        println!("child {} read: {}", std::process::id(), String::from_utf8_lossy(&v));
        store.put("reply", format!("hello from {}", std::process::id()))?;
        return Ok(());
    }
    let name = format!("quickstart-{}", std::process::id());
    let store = Store::connect(&name, 16 << 20, FullPolicy::EvictLru)?;
    store.put("greeting", "hello from the parent")?;
    let status = Command::new(std::env::current_exe()?).env("QUICKSTART_CHILD", &name).status()?;
    assert!(status.success());
    if let Some(reply) = store.get_ref("reply")? {
        // Zero-copy: `reply` borrows the bytes in shared memory.
        println!("parent read: {}", String::from_utf8_lossy(&reply));
    }
    for (key, stats) in store.entries()? {
        println!(
            "{:<10} {:>3} bytes, {} reads",
            String::from_utf8_lossy(&key),
            stats.value_size,
            stats.access_count
        );
    }
    println!("{:?}", store.stats());
    store.close();
    Store::unlink(&name)?;
    Ok(())
}
