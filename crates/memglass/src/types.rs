//! The type system shared by producers and observers.

use std::sync::atomic::{
    AtomicBool, AtomicI16, AtomicI32, AtomicI64, AtomicI8, AtomicU16, AtomicU32, AtomicU64,
    AtomicU8,
};

/// Primitive type of a field (of each element, for arrays).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Primitive {
    /// `bool`, one byte, 0 or 1.
    Bool = 1,
    /// `i8`.
    I8 = 2,
    /// `u8`.
    U8 = 3,
    /// `i16`.
    I16 = 4,
    /// `u16`.
    U16 = 5,
    /// `i32`.
    I32 = 6,
    /// `u32`.
    U32 = 7,
    /// `i64`.
    I64 = 8,
    /// `u64`.
    U64 = 9,
    /// `f32`.
    F32 = 10,
    /// `f64`.
    F64 = 11,
    /// A byte of text; an array of them is read as a NUL-terminated string.
    Char = 12,
}

impl Primitive {
    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            Primitive::Bool | Primitive::I8 | Primitive::U8 | Primitive::Char => 1,
            Primitive::I16 | Primitive::U16 => 2,
            Primitive::I32 | Primitive::U32 | Primitive::F32 => 4,
            Primitive::I64 | Primitive::U64 | Primitive::F64 => 8,
        }
    }

    /// Lower-case name: `bool`, `i8` ... `f64`, `char`.
    pub fn name(self) -> &'static str {
        match self {
            Primitive::Bool => "bool",
            Primitive::I8 => "i8",
            Primitive::U8 => "u8",
            Primitive::I16 => "i16",
            Primitive::U16 => "u16",
            Primitive::I32 => "i32",
            Primitive::U32 => "u32",
            Primitive::I64 => "i64",
            Primitive::U64 => "u64",
            Primitive::F32 => "f32",
            Primitive::F64 => "f64",
            Primitive::Char => "char",
        }
    }

    /// The primitive stored as `code` in a segment, if valid.
    pub fn from_code(code: u8) -> Option<Primitive> {
        use Primitive::*;
        [Bool, I8, U8, I16, U16, I32, U32, I64, U64, F32, F64, Char]
            .into_iter()
            .find(|p| *p as u8 == code)
    }
}

/// How a field is written by the producer, hence how the observer reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Atomicity {
    /// Plain memory: read as bytes, may be torn while it is being written.
    #[default]
    None = 0,
    /// An atomic of size 1, 2, 4 or 8, naturally aligned: one atomic load.
    Atomic = 1,
    /// Guarded by a [`crate::Seqlock`] (single writer): read consistently or
    /// reported torn.
    Seqlock = 2,
    /// Guarded by a [`crate::Locked`] (writers take a spin lock; observers,
    /// which cannot write, read it like a seqlock).
    Locked = 3,
}

impl Atomicity {
    /// Lower-case name: `none`, `atomic`, `seqlock`, `locked`.
    pub fn name(self) -> &'static str {
        match self {
            Atomicity::None => "none",
            Atomicity::Atomic => "atomic",
            Atomicity::Seqlock => "seqlock",
            Atomicity::Locked => "locked",
        }
    }

    /// The atomicity stored as `code` in a segment, if valid.
    pub fn from_code(code: u8) -> Option<Atomicity> {
        use Atomicity::*;
        [None, Atomic, Seqlock, Locked].into_iter().find(|a| *a as u8 == code)
    }
}

/// What a numeric field means over time (for Prometheus and similar).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Semantics {
    /// A value that goes up and down (the default).
    #[default]
    Gauge = 0,
    /// A monotonically increasing count.
    Counter = 1,
    /// A value that is not a metric (an id, a name, a flag).
    Discrete = 2,
}

impl Semantics {
    /// Lower-case name: `gauge`, `counter`, `discrete`.
    pub fn name(self) -> &'static str {
        match self {
            Semantics::Gauge => "gauge",
            Semantics::Counter => "counter",
            Semantics::Discrete => "discrete",
        }
    }

    /// The semantics stored as `code` in a segment, if valid.
    pub fn from_code(code: u8) -> Option<Semantics> {
        use Semantics::*;
        [Gauge, Counter, Discrete].into_iter().find(|s| *s as u8 == code)
    }
}

/// Unit, help text and semantics of a field, from `#[observe(...)]` attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldMeta {
    /// Unit, e.g. `"ns"`, `"bytes"`, `"USD"` (at most 15 bytes); may be empty.
    pub unit: String,
    /// One line of help text (at most 95 bytes); may be empty.
    pub help: String,
    /// Counter, gauge or discrete.
    pub semantics: Semantics,
}

/// One flattened field of a type, as a producer declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldDesc {
    /// Dotted path, e.g. `quote.bid_price` (at most 63 bytes).
    pub path: String,
    /// Byte offset of the value inside the object.
    pub offset: u32,
    /// Primitive type of the value (of each element for arrays).
    pub prim: Primitive,
    /// 0 for a scalar, else the number of elements of a fixed array.
    pub array_len: u32,
    /// How the value is written and read.
    pub atomicity: Atomicity,
    /// For [`Atomicity::Seqlock`] and [`Atomicity::Locked`]: byte offset of
    /// the guarding 8-byte sequence word inside the object; else 0.
    pub guard_offset: u32,
    /// Unit, help text, semantics.
    pub meta: FieldMeta,
}

impl FieldDesc {
    /// A scalar field without atomicity or metadata.
    pub fn new(path: &str, offset: u32, prim: Primitive) -> FieldDesc {
        FieldDesc {
            path: path.to_string(),
            offset,
            prim,
            array_len: 0,
            atomicity: Atomicity::None,
            guard_offset: 0,
            meta: FieldMeta::default(),
        }
    }

    /// Size of the value in bytes (all elements for arrays).
    pub fn size(&self) -> usize {
        self.prim.size() * (self.array_len.max(1) as usize)
    }
}

/// A type as registered: name, size, alignment, flattened fields. Built by
/// `#[derive(Observe)]`, or by hand (C ABI, Python) from a layout read elsewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeDesc {
    /// Type name (at most 63 bytes).
    pub name: String,
    /// `size_of` the type in bytes.
    pub size: u32,
    /// `align_of` the type (a power of two, at most 4096).
    pub align: u32,
    /// The flattened fields, in offset order.
    pub fields: Vec<FieldDesc>,
}

/// A field as an observer sees it: the descriptor plus its index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldInfo {
    /// Position of the field in its type's field list.
    pub index: usize,
    /// Dotted path.
    pub path: String,
    /// Byte offset inside the object.
    pub offset: u32,
    /// Size in bytes (all elements).
    pub size: u32,
    /// Primitive type.
    pub prim: Primitive,
    /// 0 for a scalar, else the element count.
    pub array_len: u32,
    /// Atomicity.
    pub atomicity: Atomicity,
    /// Offset of the guarding sequence word (seqlock/locked), else 0.
    pub guard_offset: u32,
    /// Unit (may be empty).
    pub unit: String,
    /// Help text (may be empty).
    pub help: String,
    /// Counter, gauge or discrete.
    pub semantics: Semantics,
}

/// A registered type as an observer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeInfo {
    /// Index of the type in the session's registry.
    pub index: u32,
    /// Type name.
    pub name: String,
    /// Size in bytes.
    pub size: u32,
    /// Alignment.
    pub align: u32,
    /// Flattened fields.
    pub fields: Vec<FieldInfo>,
}

impl TypeInfo {
    /// The field of this dotted path.
    pub fn field(&self, path: &str) -> Option<&FieldInfo> {
        self.fields.iter().find(|f| f.path == path)
    }
}

/// State of an object directory slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ObjectState {
    /// Never used, or reclaimed and not yet reused.
    Free = 0,
    /// Published: readable.
    Alive = 1,
    /// Destroyed; its slot and memory are reused only after the grace period.
    Destroyed = 2,
}

impl ObjectState {
    /// Lower-case name: `free`, `alive`, `destroyed`.
    pub fn name(self) -> &'static str {
        match self {
            ObjectState::Free => "free",
            ObjectState::Alive => "alive",
            ObjectState::Destroyed => "destroyed",
        }
    }
}

/// Identity of one object: its directory slot and the slot's generation.
/// A reused slot has a new generation, so an id never names another object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId {
    /// Directory slot.
    pub slot: u32,
    /// Generation of the slot when the object was created.
    pub generation: u64,
}

/// An object as an observer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Slot and generation.
    pub id: ObjectId,
    /// Label given at create time (unique among live objects of a session).
    pub label: String,
    /// Index of its type in the registry.
    pub type_index: u32,
    /// Name of its type.
    pub type_name: String,
    /// Elements: 1 for `create`, n for `create_array`.
    pub count: u32,
    /// State when last refreshed.
    pub state: ObjectState,
    /// Data region holding it.
    pub region: u32,
    /// Byte offset of its data inside that region.
    pub offset: u64,
}

/// A fixed-capacity text field (NUL-padded bytes), observed as a string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(transparent)]
pub struct FixedStr<const N: usize>(pub [u8; N]);

impl<const N: usize> Default for FixedStr<N> {
    fn default() -> Self {
        FixedStr([0; N])
    }
}

impl<const N: usize> FixedStr<N> {
    /// `s` truncated to N bytes (at a char boundary), NUL-padded.
    pub fn new(s: &str) -> Self {
        let mut out = [0u8; N];
        let mut end = s.len().min(N);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        out[..end].copy_from_slice(&s.as_bytes()[..end]);
        FixedStr(out)
    }

    /// The text up to the first NUL (lossy UTF-8).
    pub fn as_string(&self) -> String {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(N);
        String::from_utf8_lossy(&self.0[..end]).into_owned()
    }
}

/// A type whose layout memglass can publish: implemented by
/// `#[derive(Observe)]` on `#[repr(C)]` structs.
///
/// # Safety
/// `fields()` must describe the type's real layout (offsets, sizes and
/// atomicity inside `size_of::<Self>()`), and the type must be valid when
/// all its bytes are zero (objects start zeroed in shared memory).
pub unsafe trait Observe: Sized + Send + Sync + 'static {
    /// Type name published to observers.
    const TYPE_NAME: &'static str;

    /// Appends this type's flattened fields to `out`, paths prefixed with
    /// `prefix` (empty or ending in '.'), offsets shifted by `base`.
    fn describe(
        prefix: &str,
        base: u32,
        atomicity: Atomicity,
        guard: u32,
        out: &mut Vec<FieldDesc>,
    );

    /// The full type descriptor.
    fn type_desc() -> TypeDesc {
        let mut fields = Vec::new();
        Self::describe("", 0, Atomicity::None, 0, &mut fields);
        TypeDesc {
            name: Self::TYPE_NAME.to_string(),
            size: std::mem::size_of::<Self>() as u32,
            align: std::mem::align_of::<Self>() as u32,
            fields,
        }
    }
}

/// A type that can be a field of an `Observe` struct: primitives, atomics,
/// fixed arrays of primitives, [`FixedStr`], [`crate::Seqlock`],
/// [`crate::Locked`] and nested `Observe` structs.
///
/// # Safety
/// `describe_field` must describe the real layout of `Self` at `offset`.
pub unsafe trait ObserveField {
    /// Appends the field(s) for a value of this type at `offset` named `path`.
    /// `atomicity`/`guard` are inherited from an enclosing seqlock or lock.
    fn describe_field(
        path: &str,
        offset: u32,
        atomicity: Atomicity,
        guard: u32,
        meta: &FieldMeta,
        out: &mut Vec<FieldDesc>,
    );
}

#[allow(clippy::too_many_arguments)]
fn push(
    out: &mut Vec<FieldDesc>,
    path: &str,
    offset: u32,
    prim: Primitive,
    array_len: u32,
    atomicity: Atomicity,
    guard: u32,
    meta: &FieldMeta,
) {
    out.push(FieldDesc {
        path: path.to_string(),
        offset,
        prim,
        array_len,
        atomicity,
        guard_offset: guard,
        meta: meta.clone(),
    });
}

macro_rules! prim_field {
    ($($t:ty => $p:ident, $a:ty;)*) => {$(
        // SAFETY: a primitive is one value of its own size at `offset`.
        unsafe impl ObserveField for $t {
            fn describe_field(path: &str, offset: u32, atomicity: Atomicity, guard: u32,
                              meta: &FieldMeta, out: &mut Vec<FieldDesc>) {
                push(out, path, offset, Primitive::$p, 0, atomicity, guard, meta);
            }
        }
        // SAFETY: an atomic has the size and layout of its primitive.
        unsafe impl ObserveField for $a {
            fn describe_field(path: &str, offset: u32, _atomicity: Atomicity, _guard: u32,
                              meta: &FieldMeta, out: &mut Vec<FieldDesc>) {
                push(out, path, offset, Primitive::$p, 0, Atomicity::Atomic, 0, meta);
            }
        }
        // SAFETY: an array of N primitives is N contiguous values.
        unsafe impl<const N: usize> ObserveField for [$t; N] {
            fn describe_field(path: &str, offset: u32, atomicity: Atomicity, guard: u32,
                              meta: &FieldMeta, out: &mut Vec<FieldDesc>) {
                push(out, path, offset, Primitive::$p, N as u32, atomicity, guard, meta);
            }
        }
    )*};
}

prim_field! {
    bool => Bool, AtomicBool;
    i8 => I8, AtomicI8;
    u8 => U8, AtomicU8;
    i16 => I16, AtomicI16;
    u16 => U16, AtomicU16;
    i32 => I32, AtomicI32;
    u32 => U32, AtomicU32;
    i64 => I64, AtomicI64;
    u64 => U64, AtomicU64;
}

// SAFETY: f32 is 4 bytes.
unsafe impl ObserveField for f32 {
    fn describe_field(
        path: &str,
        offset: u32,
        atomicity: Atomicity,
        guard: u32,
        meta: &FieldMeta,
        out: &mut Vec<FieldDesc>,
    ) {
        push(out, path, offset, Primitive::F32, 0, atomicity, guard, meta);
    }
}

// SAFETY: f64 is 8 bytes.
unsafe impl ObserveField for f64 {
    fn describe_field(
        path: &str,
        offset: u32,
        atomicity: Atomicity,
        guard: u32,
        meta: &FieldMeta,
        out: &mut Vec<FieldDesc>,
    ) {
        push(out, path, offset, Primitive::F64, 0, atomicity, guard, meta);
    }
}

// SAFETY: an array of N f32 is N contiguous values.
unsafe impl<const N: usize> ObserveField for [f32; N] {
    fn describe_field(
        path: &str,
        offset: u32,
        atomicity: Atomicity,
        guard: u32,
        meta: &FieldMeta,
        out: &mut Vec<FieldDesc>,
    ) {
        push(out, path, offset, Primitive::F32, N as u32, atomicity, guard, meta);
    }
}

// SAFETY: an array of N f64 is N contiguous values.
unsafe impl<const N: usize> ObserveField for [f64; N] {
    fn describe_field(
        path: &str,
        offset: u32,
        atomicity: Atomicity,
        guard: u32,
        meta: &FieldMeta,
        out: &mut Vec<FieldDesc>,
    ) {
        push(out, path, offset, Primitive::F64, N as u32, atomicity, guard, meta);
    }
}

// SAFETY: FixedStr<N> is repr(transparent) over [u8; N].
unsafe impl<const N: usize> ObserveField for FixedStr<N> {
    fn describe_field(
        path: &str,
        offset: u32,
        atomicity: Atomicity,
        guard: u32,
        meta: &FieldMeta,
        out: &mut Vec<FieldDesc>,
    ) {
        push(out, path, offset, Primitive::Char, N as u32, atomicity, guard, meta);
    }
}
