//! Build script: lets the cdylib link against symbols that Node.js provides
//! at load time, and compiles the V8 half of writer location
//! (src/v8_frames.cc) against Node's own headers.
use std::path::PathBuf;

/// Node's headers: $NODE_INCLUDE_DIR, else <prefix of the `node` on PATH>/include/node.
fn node_include_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("NODE_INCLUDE_DIR") {
        return PathBuf::from(dir);
    }
    let exec = std::process::Command::new("node")
        .args(["-p", "process.execPath"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let candidates = exec
        .and_then(|p| p.parent()?.parent().map(|prefix| prefix.join("include/node")))
        .into_iter()
        .chain([PathBuf::from("/usr/include/node"), PathBuf::from("/usr/local/include/node")]);
    for dir in candidates {
        if dir.join("v8.h").exists() {
            return dir;
        }
    }
    panic!(
        "memwatch-node: Node.js headers (v8.h) not found: install them with Node \
         (they ship in <prefix>/include/node) or set NODE_INCLUDE_DIR"
    );
}

fn main() {
    napi_build::setup();
    println!("cargo:rerun-if-changed=src/v8_frames.cc");
    println!("cargo:rerun-if-env-changed=NODE_INCLUDE_DIR");
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .file("src/v8_frames.cc")
        .include(node_include_dir())
        // Node is built without RTTI: a class derived from V8's must not
        // reference typeinfo that node does not export.
        .flag("-fno-rtti")
        .flag_if_supported("-fno-omit-frame-pointer")
        .flag_if_supported("-Wno-unused-parameter")
        .compile("memwatch_v8_frames");
    // Bind every symbol when Node loads the addon: the SIGSEGV handler calls
    // V8 (GetStackSample, TryGetCurrent) and must never run the dynamic
    // linker's lazy binding.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,now");
}
