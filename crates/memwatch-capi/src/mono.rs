//! `memwatch_enable_mono_frames`: managed frames of located writes when
//! libmemwatch runs inside Mono (the C# binding calls it).
//!
//! - Capture, in the SIGSEGV handler: `mono_stack_walk_async_safe` with the
//!   signal's context (documented by Mono as callable from a signal handler;
//!   its log profiler samples with it) gives each managed frame's code start
//!   and native offset; their sum, the frame's address in JIT code, is one
//!   word. A thread Mono does not know yields nothing.
//! - The frames come first in the event's stack, unnamed (module and
//!   function ""): Mono's naming functions (`mono_jit_info_table_find`,
//!   `mono_method_full_name`, `mono_debug_lookup_source_location`) want a
//!   thread attached to Mono, and attaching memwatch's worker from here hung
//!   Mono's next stop-the-world collection, so the binding names them on its
//!   own (managed) thread when it converts the event.
//!
//! `mono_stack_walk_async_safe` is found with `dlsym` when frames are
//! enabled, never through a PLT entry in the handler.

use std::ffi::{c_int, c_void};
use std::sync::{Arc, OnceLock};

use memwatch_core::{Error, Frame};

type Walker = unsafe extern "C" fn(
    method: *mut c_void,
    domain: *mut c_void,
    base_address: *mut c_void,
    offset: c_int,
    data: *mut c_void,
) -> c_int;

type StackWalk = unsafe extern "C" fn(Walker, *mut c_void, *mut c_void);

static WALK: OnceLock<Result<StackWalk, String>> = OnceLock::new();

fn load() -> Result<StackWalk, String> {
    let name = c"mono_stack_walk_async_safe";
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    if p.is_null() {
        return Err("mono_stack_walk_async_safe not found: this process does not run Mono".into());
    }
    // SAFETY: p is mono_stack_walk_async_safe, whose signature (mono/metadata/
    // loader.h) is StackWalk; function and data pointers have one size here.
    Ok(unsafe { std::mem::transmute::<*mut c_void, StackWalk>(p) })
}

/// Where the walk callback writes: the fault slot's words.
#[repr(C)]
struct Out {
    words: *mut u64,
    max: usize,
    n: usize,
}

/// The walk callback: one managed frame -> its address in JIT code.
/// Returns nonzero (stop) once the slot is full. Async-signal-safe.
unsafe extern "C" fn on_frame(
    _method: *mut c_void,
    _domain: *mut c_void,
    base: *mut c_void,
    offset: c_int,
    data: *mut c_void,
) -> c_int {
    // SAFETY: data is the Out of capture() below, alive for the walk.
    let out = unsafe { &mut *(data as *mut Out) };
    if base.is_null() {
        return 0;
    }
    if out.n >= out.max {
        return 1;
    }
    // SAFETY: n < max words of the slot.
    unsafe { *out.words.add(out.n) = (base as u64).wrapping_add(offset.max(0) as u64) };
    out.n += 1;
    c_int::from(out.n >= out.max)
}

/// memwatch_core::RuntimeCapture: in the SIGSEGV handler.
unsafe extern "C" fn capture(
    ucontext: *mut c_void,
    out: *mut u64,
    max_words: usize,
    _ctx: *mut c_void,
) -> usize {
    let Some(Ok(walk)) = WALK.get() else { return 0 };
    if ucontext.is_null() {
        return 0;
    }
    let mut o = Out { words: out, max: max_words, n: 0 };
    // SAFETY: Mono documents mono_stack_walk_async_safe for signal
    // handlers; it walks from the signal's context and calls on_frame with
    // our Out, which lives until it returns.
    unsafe { walk(on_frame, ucontext, (&mut o as *mut Out).cast()) };
    o.n
}

/// The managed frames as unnamed frames at their JIT code addresses.
fn resolve(words: &[u64]) -> Vec<Frame> {
    words.iter().map(|&ip| Frame { ip, module_offset: ip, ..Frame::default() }).collect()
}

/// Turns managed frames on for located writes (idempotent): the capture
/// hook above, registered with memwatch-core's runtime frames.
/// `MEMWATCH_ERR_UNSUPPORTED` when this process does not run Mono.
#[no_mangle]
pub extern "C" fn memwatch_enable_mono_frames() -> c_int {
    crate::guard(|| {
        if let Err(why) = WALK.get_or_init(load) {
            return Err(Error::Unsupported(why.clone()));
        }
        static REGISTERED: OnceLock<()> = OnceLock::new();
        REGISTERED.get_or_init(|| {
            memwatch_core::set_runtime_frames(Some(memwatch_core::RuntimeFrames {
                capture,
                ctx: 0,
                resolve: Arc::new(resolve),
            }));
        });
        Ok(crate::MEMWATCH_OK)
    })
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    use super::*;

    #[test]
    fn outside_mono_it_is_unsupported_with_a_reason() {
        assert_eq!(memwatch_enable_mono_frames(), -5, "MEMWATCH_ERR_UNSUPPORTED");
        // SAFETY: memwatch_last_error returns a NUL-terminated string.
        let msg =
            unsafe { CStr::from_ptr(crate::memwatch_last_error()) }.to_string_lossy().into_owned();
        assert!(msg.contains("mono_stack_walk_async_safe not found"), "{msg}");
        // The failed lookup is remembered: the same answer again, no hook registered.
        assert_eq!(memwatch_enable_mono_frames(), -5);
    }
}
