//! Typed field values.

use crate::types::Primitive;

/// The value of one field, typed.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `bool`.
    Bool(bool),
    /// Any signed integer (`i8` .. `i64`).
    Int(i64),
    /// Any unsigned integer (`u8` .. `u64`).
    UInt(u64),
    /// `f32` (widened) or `f64`.
    Float(f64),
    /// A `char` array: the bytes up to the first NUL, lossy UTF-8.
    Str(String),
    /// A fixed array of any other primitive.
    Array(Vec<Value>),
}

impl Value {
    /// Decodes `bytes` (native endian) as `array_len` elements of `prim`
    /// (a scalar when `array_len` is 0).
    pub fn decode(prim: Primitive, array_len: u32, bytes: &[u8]) -> Value {
        if array_len == 0 {
            return Value::scalar(prim, bytes);
        }
        if prim == Primitive::Char {
            let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
            return Value::Str(String::from_utf8_lossy(&bytes[..end]).into_owned());
        }
        Value::Array(bytes.chunks_exact(prim.size()).map(|c| Value::scalar(prim, c)).collect())
    }

    fn scalar(prim: Primitive, b: &[u8]) -> Value {
        fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
            let mut a = [0u8; N];
            a.copy_from_slice(&b[..N]);
            a
        }
        match prim {
            Primitive::Bool => Value::Bool(b[0] != 0),
            Primitive::I8 => Value::Int(b[0] as i8 as i64),
            Primitive::U8 => Value::UInt(b[0] as u64),
            Primitive::Char => Value::Str(if b[0] == 0 {
                String::new()
            } else {
                String::from_utf8_lossy(&b[..1]).into_owned()
            }),
            Primitive::I16 => Value::Int(i16::from_ne_bytes(arr(b)) as i64),
            Primitive::U16 => Value::UInt(u16::from_ne_bytes(arr(b)) as u64),
            Primitive::I32 => Value::Int(i32::from_ne_bytes(arr(b)) as i64),
            Primitive::U32 => Value::UInt(u32::from_ne_bytes(arr(b)) as u64),
            Primitive::I64 => Value::Int(i64::from_ne_bytes(arr(b))),
            Primitive::U64 => Value::UInt(u64::from_ne_bytes(arr(b))),
            Primitive::F32 => Value::Float(f32::from_ne_bytes(arr(b)) as f64),
            Primitive::F64 => Value::Float(f64::from_ne_bytes(arr(b))),
        }
    }

    /// The value as a number (bools as 0/1); `None` for strings and arrays.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Bool(b) => Some(b as u8 as f64),
            Value::Int(i) => Some(i as f64),
            Value::UInt(u) => Some(u as f64),
            Value::Float(f) => Some(f),
            Value::Str(_) | Value::Array(_) => None,
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::UInt(u) => write!(f, "{u}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Array(v) => {
                f.write_str("[")?;
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{x}")?;
                }
                f.write_str("]")
            }
        }
    }
}
