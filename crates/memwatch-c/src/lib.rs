//! The artifact crate of memwatch's C ABI: builds `libmemwatch.so` and
//! `libmemwatch.a` out of [`memwatch_capi`], which holds every `extern "C"`
//! function and the header `include/memwatch.h`. Nothing else lives here.

pub use memwatch_capi::*;
