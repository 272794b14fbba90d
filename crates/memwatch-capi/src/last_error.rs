//! The thread-local "last error" slot behind `memwatch_last_error()`.

use std::any::Any;
use std::cell::RefCell;
use std::ffi::{c_char, c_int, CString};

use memwatch_core::Error;

use crate::MEMWATCH_ERR_INTERNAL;

thread_local! {
    static LAST: RefCell<(c_int, CString)> = RefCell::new((0, CString::default()));
}

fn set(code: c_int, msg: &str) {
    let clean: Vec<u8> = msg.bytes().map(|b| if b == 0 { b'?' } else { b }).collect();
    let c = CString::new(clean).unwrap_or_default();
    // try_with: during thread teardown the slot may be gone; then only the code is returned.
    let _ = LAST.try_with(|l| *l.borrow_mut() = (code, c));
}

/// Records `code` and `msg` as this thread's last error and returns `code`
/// (for errors of other crates, e.g. memglass).
pub(crate) fn fail_with(code: c_int, msg: &str) -> c_int {
    set(code, msg);
    code
}

/// Records `e` as this thread's last error and returns its code.
pub(crate) fn fail(e: &Error) -> c_int {
    set(e.code(), &e.to_string());
    e.code()
}

/// Records a caught panic as this thread's last error; returns MEMWATCH_ERR_INTERNAL.
pub(crate) fn fail_internal(payload: Box<dyn Any + Send>) -> c_int {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    set(MEMWATCH_ERR_INTERNAL, &format!("internal error (caught panic): {what}"));
    MEMWATCH_ERR_INTERNAL
}

/// Pointer to this thread's last message; stable until the next failure in this thread.
pub(crate) fn message_ptr() -> *const c_char {
    LAST.try_with(|l| l.borrow().1.as_ptr()).unwrap_or(cstr!(""))
}

/// This thread's last error code (0 if none).
pub(crate) fn code() -> c_int {
    LAST.try_with(|l| l.borrow().0).unwrap_or(0)
}
