//! Generates the cxx bridge (C++ side of src/lib.rs) and compiles it with
//! src/callback.cc into the crate; the static library then carries both.

fn main() {
    cxx_build::bridge("src/lib.rs")
        .file("src/callback.cc")
        .include("include")
        .std("c++17")
        .flag_if_supported("-Wall")
        .compile("memwatch-cxx-bridge");
    println!("cargo:rerun-if-changed=src/lib.rs");
    println!("cargo:rerun-if-changed=src/callback.cc");
    println!("cargo:rerun-if-changed=include/memwatch/callback.h");
}
