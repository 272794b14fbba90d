//! Build script: lets the cdylib link against symbols that Node.js provides at load time.
fn main() {
    napi_build::setup();
}
