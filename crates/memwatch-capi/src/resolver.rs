//! `memwatch_register_resolver`: an embedding runtime (a JIT, an
//! interpreter) names its own frames of located writes.

use std::ffi::{c_char, c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use memwatch_core::Frame;

/// What a resolver fills in, `memwatch_resolved_frame_t` in the header.
#[repr(C)]
pub struct memwatch_resolved_frame_t {
    /// Function name, NUL-terminated.
    pub function: [c_char; 256],
    /// Source file, NUL-terminated ("" if unknown).
    pub file: [c_char; 512],
    /// Module or script name, NUL-terminated ("" if unknown).
    pub module: [c_char; 256],
    /// Source line; 0 = unknown.
    pub line: u32,
}

/// The resolver type of the header.
pub type memwatch_resolver_t = Option<
    unsafe extern "C-unwind" fn(
        ip: u64,
        out: *mut memwatch_resolved_frame_t,
        user_ctx: *mut c_void,
    ) -> c_int,
>;

/// The context pointer, passed back to the resolver on memwatch's threads.
struct Ctx(*mut c_void);
// SAFETY: the pointer is only handed back to the caller's resolver, which
// the header documents as called from memwatch's threads.
unsafe impl Send for Ctx {}
// SAFETY: as above.
unsafe impl Sync for Ctx {}

fn text(buf: &[c_char]) -> String {
    let bytes: Vec<u8> = buf.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Sets (or, with a NULL `resolver`, removes) the process-wide frame
/// resolver. See the header for when it runs.
///
/// # Safety
/// `resolver` is NULL or a function with the header's signature that stays
/// callable, with `user_ctx`, until it is replaced or removed.
#[no_mangle]
pub unsafe extern "C" fn memwatch_register_resolver(
    resolver: memwatch_resolver_t,
    user_ctx: *mut c_void,
) -> c_int {
    crate::guard(|| {
        let Some(f) = resolver else {
            memwatch_core::set_frame_resolver(None);
            return Ok(crate::MEMWATCH_OK);
        };
        let ctx = Ctx(user_ctx);
        memwatch_core::set_frame_resolver(Some(Arc::new(move |ip: u64| {
            // SAFETY: all-zero is a valid memwatch_resolved_frame_t (empty strings).
            let mut out: memwatch_resolved_frame_t = unsafe { std::mem::zeroed() };
            let ctx = &ctx;
            // SAFETY: the resolver's contract (header); out is valid for writes.
            let rc = catch_unwind(AssertUnwindSafe(|| unsafe { f(ip, &mut out, ctx.0) }));
            if !matches!(rc, Ok(1)) {
                return None;
            }
            // Force termination in case the resolver filled a field completely.
            out.function[255] = 0;
            out.file[511] = 0;
            out.module[255] = 0;
            Some(Frame {
                ip,
                module: text(&out.module),
                module_offset: ip,
                function: text(&out.function),
                file: text(&out.file),
                line: out.line,
                inlined: false,
            })
        })));
        Ok(crate::MEMWATCH_OK)
    })
}
