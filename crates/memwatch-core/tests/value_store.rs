//! Large values go to the MemStream value store; another process reads them
//! back by the keys in the event.

mod common;

use std::sync::Arc;

use common::Pages;
use memwatch_core::store::{FullPolicy, Store};
use memwatch_core::{page_size, Backend, Options, Watcher};

const NAME_ENV: &str = "MEMWATCH_TEST_STORE";

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[test]
fn large_values_read_back_from_another_process() {
    for backend in [Backend::Protect, Backend::WriteWatch, Backend::Poll] {
        let name = format!("mw-test-values-{}-{}", std::process::id(), backend);
        let store = Arc::new(Store::connect(&name, 8 << 20, FullPolicy::EvictLru).unwrap());
        let len = 3 * page_size();
        let mem = Pages::new(3);
        let w =
            Watcher::new(Options { backend, max_value_bytes: 64, ..Options::default() }).unwrap();
        w.set_value_store(Some(Arc::clone(&store))).unwrap();
        let initial = pattern(len, 1);
        // SAFETY: inside the mapping.
        unsafe { std::ptr::copy_nonoverlapping(initial.as_ptr(), mem.ptr, len) };
        // SAFETY: mem outlives the watcher.
        let id = unsafe { w.watch(mem.ptr, len, "tensor", None) }.unwrap();
        mem.write(10, 0xee);
        mem.write(len - 1, 0xdd);
        let events = w.check_changes().unwrap();
        assert_eq!(events.len(), 1, "{backend}");
        let e = &events[0];
        assert_eq!(
            (e.old_value.as_ref(), e.new_value.as_ref()),
            (None, None),
            "too large to carry"
        );
        let old_key = e.storage_key_old.clone().expect("old value stored");
        let new_key = e.storage_key_new.clone().expect("new value stored");
        assert_eq!(old_key, format!("memwatch/0/{id}/0"));
        assert_eq!(new_key, format!("memwatch/0/{id}/1"));
        let mut expected_new = initial.clone();
        expected_new[10] = 0xee;
        expected_new[len - 1] = 0xdd;
        // Another process opens the store by name and checks both values.
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "child_reads_values", "--nocapture", "--test-threads=1"])
            .env(NAME_ENV, format!("{name} {old_key} {new_key} {len}"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("1 passed"),
            "{backend}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The next event's old key is this event's new key.
        mem.write(20, 0x01);
        let next = w.check_changes().unwrap();
        assert_eq!(next[0].storage_key_old.as_deref(), Some(new_key.as_str()));
        assert_eq!(
            store.get(next[0].storage_key_new.as_ref().unwrap()).unwrap().unwrap()[20],
            0x01
        );
        w.close();
        Store::unlink(&name).unwrap();
    }
}

/// Run in a child process by large_values_read_back_from_another_process.
#[test]
#[ignore = "run in a child process by large_values_read_back_from_another_process"]
fn child_reads_values() {
    let arg = std::env::var(NAME_ENV).unwrap();
    let parts: Vec<&str> = arg.split(' ').collect();
    let (name, old_key, new_key, len) =
        (parts[0], parts[1], parts[2], parts[3].parse::<usize>().unwrap());
    let store = Store::open(name).unwrap();
    let old = store.get(old_key).unwrap().expect("old value present");
    let new = store.get(new_key).unwrap().expect("new value present");
    let initial = pattern(len, 1);
    assert_eq!(old, initial);
    let mut expected = initial;
    expected[10] = 0xee;
    expected[len - 1] = 0xdd;
    assert_eq!(new, expected);
}
