//! Gives libmemwatch.so the soname "libmemwatch.so", so programs record that
//! name (not a build path) and find the library through their rpath or
//! LD_LIBRARY_PATH wherever it is installed.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libmemwatch.so");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
