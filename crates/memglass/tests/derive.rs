//! #[derive(Observe)]: the published layout is the compiler's layout.

use memglass::{Atomicity, FieldMeta, FixedStr, Locked, Observe, Primitive, Semantics, Seqlock};
use std::mem::offset_of;
use std::sync::atomic::{AtomicI32, AtomicU64};

#[derive(Observe, Clone, Copy, Default)]
#[repr(C)]
struct Inner {
    x: i32,
    y: u8,
    z: [u16; 3],
}

#[derive(Observe)]
#[repr(C)]
struct Outer {
    flag: bool,
    #[observe(unit = "ms", help = "how long", counter)]
    total: AtomicU64,
    inner: Inner,
    guarded: Seqlock<Inner>,
    locked: Locked<f64>,
    name: FixedStr<12>,
    gauge: AtomicI32,
    #[observe(skip)]
    _private: u64,
}

#[test]
fn fields_match_the_compiler_layout() {
    let d = Outer::type_desc();
    assert_eq!((d.name.as_str(), d.size as usize), ("Outer", std::mem::size_of::<Outer>()));
    assert_eq!(d.align as usize, std::mem::align_of::<Outer>());
    let got: Vec<(&str, u32, Primitive, u32, Atomicity, u32)> = d
        .fields
        .iter()
        .map(|f| (f.path.as_str(), f.offset, f.prim, f.array_len, f.atomicity, f.guard_offset))
        .collect();
    let inner = offset_of!(Outer, inner) as u32;
    let g = offset_of!(Outer, guarded) as u32;
    let l = offset_of!(Outer, locked) as u32;
    use Atomicity::*;
    use Primitive as P;
    assert_eq!(
        got,
        vec![
            ("flag", 0, P::Bool, 0, None, 0),
            ("total", offset_of!(Outer, total) as u32, P::U64, 0, Atomic, 0),
            ("inner.x", inner, P::I32, 0, None, 0),
            ("inner.y", inner + 4, P::U8, 0, None, 0),
            ("inner.z", inner + offset_of!(Inner, z) as u32, P::U16, 3, None, 0),
            ("guarded.x", g + 8, P::I32, 0, Seqlock, g),
            ("guarded.y", g + 12, P::U8, 0, Seqlock, g),
            ("guarded.z", g + 8 + offset_of!(Inner, z) as u32, P::U16, 3, Seqlock, g),
            ("locked", l + 8, P::F64, 0, Locked, l),
            ("name", offset_of!(Outer, name) as u32, P::Char, 12, None, 0),
            ("gauge", offset_of!(Outer, gauge) as u32, P::I32, 0, Atomic, 0),
        ]
    );
    assert_eq!(
        d.fields[1].meta,
        FieldMeta { unit: "ms".into(), help: "how long".into(), semantics: Semantics::Counter }
    );
}

#[test]
fn seqlock_and_locked_round_trip_in_process() {
    let mut s = Seqlock::new(Inner::default());
    s.write(Inner { x: 5, y: 6, z: [7, 8, 9] });
    let r = s.read().unwrap();
    assert_eq!((r.x, r.y, r.z), (5, 6, [7, 8, 9]));
    assert_eq!(s.sequence(), 2);
    let l = Locked::new(1.5f64);
    l.write(2.5);
    assert_eq!(l.read().unwrap(), 2.5);
}
