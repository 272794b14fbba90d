//! What every view of the command works on: the schema of one session (its
//! objects and their fields, with the metadata memglass declares), one sample
//! of all field values, and a tracker that turns consecutive samples into
//! change events, change times and short histories for charts.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Instant, SystemTime};

/// How a numeric field is meant to be read (memglass's declared semantics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only ever grows (a count of something): a Prometheus counter.
    Counter,
    /// Goes up and down (a level, a price): a Prometheus gauge.
    Gauge,
}

/// One field of one object, as its type declares it.
#[derive(Clone, Debug)]
pub struct FieldMeta {
    /// Index of the object this field belongs to in [`Schema::objects`].
    pub object: usize,
    /// Dotted path inside the object (`quote.bid`, `levels[3]`).
    pub path: String,
    /// Primitive type name (`f64`, `u32`, `bool`, `char[16]`, ...).
    pub ty: String,
    /// Declared unit (`ns`, `bytes`, ...), empty when none.
    pub unit: String,
    /// Declared help text, empty when none.
    pub help: String,
    /// Counter or gauge; `None` for fields that are not numbers.
    pub kind: Option<Kind>,
    /// How the producer publishes it (`none`, `atomic`, `seqlock`, `locked`).
    pub atomicity: String,
    /// Byte offset of the field inside its object (for the hex view).
    pub offset: usize,
    /// Size of the field in bytes.
    pub size: usize,
}

/// One object of a session.
#[derive(Clone, Debug)]
pub struct ObjectMeta {
    /// The label the producer gave it (unique in the session).
    pub label: String,
    /// Its type's name.
    pub type_name: String,
    /// The indices of its fields in [`Schema::fields`].
    pub fields: std::ops::Range<usize>,
    /// Size of the object in bytes.
    pub size: usize,
}

/// Objects and fields of one session; fields of an object are contiguous.
#[derive(Clone, Debug, Default)]
pub struct Schema {
    /// The objects in directory order.
    pub objects: Vec<ObjectMeta>,
    /// Every field of every object.
    pub fields: Vec<FieldMeta>,
}

impl Schema {
    /// `label.path` of field `i`, the name users search and filter by.
    pub fn full_path(&self, i: usize) -> String {
        let f = &self.fields[i];
        format!("{}.{}", self.objects[f.object].label, f.path)
    }
}

/// A field's value as read from the producer's memory.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Not read yet (or the object is gone).
    Missing,
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    Uint(u64),
    /// A floating-point number.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A fixed-size string or character array.
    Text(String),
}

impl Value {
    /// The value as a number for charts and Prometheus (booleans are 0/1).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Int(v) => Some(v as f64),
            Value::Uint(v) => Some(v as f64),
            Value::Float(v) => Some(v),
            Value::Bool(v) => Some(if v { 1.0 } else { 0.0 }),
            Value::Missing | Value::Text(_) => None,
        }
    }

    /// The value as JSON (numbers stay numbers; a non-finite float is a string).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Missing => J::Null,
            Value::Int(v) => J::from(*v),
            Value::Uint(v) => J::from(*v),
            Value::Float(v) if v.is_finite() => J::from(*v),
            Value::Float(v) => J::from(v.to_string()),
            Value::Bool(v) => J::from(*v),
            Value::Text(s) => J::from(s.as_str()),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Missing => f.write_str("-"),
            Value::Int(v) => write!(f, "{v}"),
            Value::Uint(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::Text(s) => write!(f, "{s:?}"),
        }
    }
}

/// Is the producer of a session still there?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// Its process runs and its heartbeat moves.
    Alive,
    /// Its process exists but its heartbeat stopped (hung or stopped).
    Stale,
    /// Its process is gone, restarted (another start time), or its heartbeat stopped.
    Dead,
}

impl Liveness {
    /// `alive`, `stale` or `dead`.
    pub fn name(self) -> &'static str {
        match self {
            Liveness::Alive => "alive",
            Liveness::Stale => "stale",
            Liveness::Dead => "dead",
        }
    }
}

/// One reading of every field of a session.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// `values[i]` is the value of `Schema::fields[i]`.
    pub values: Vec<Value>,
    /// `torn[i]`: the seqlock of field `i` kept moving during every attempt,
    /// so `values[i]` is the last consistent value, not a current one.
    pub torn: Vec<bool>,
}

/// A session's identity for headers and `ls`.
#[derive(Clone, Debug)]
pub struct SessionMeta {
    /// Session name.
    pub name: String,
    /// Producer process id.
    pub pid: u32,
}

/// Where samples come from: a memglass observer (or a fake one in tests).
pub trait Source: Send {
    /// Session name and producer pid.
    fn meta(&self) -> SessionMeta;
    /// Re-reads the structure if the producer changed it (objects created
    /// or destroyed); returns the new schema when it did.
    fn refresh(&mut self) -> anyhow::Result<Option<Schema>>;
    /// The current schema.
    fn schema(&self) -> &Schema;
    /// Reads every field into `out` (resized to the schema's field count).
    /// A field that cannot be read consistently is flagged in `out.torn`
    /// and keeps the value `out` held: pass the previous sample in.
    fn sample(&mut self, out: &mut Sample) -> anyhow::Result<()>;
    /// Producer liveness now.
    fn liveness(&mut self) -> Liveness;
    /// The bytes of object `i` (for the hex view), if still there; `None`
    /// for a byte the source cannot tell (padding between fields).
    fn object_bytes(&mut self, i: usize) -> Option<Vec<Option<u8>>>;
}

/// One field changed between two samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// Field index in the schema.
    pub field: usize,
    /// Value before.
    pub old: Value,
    /// Value now.
    pub new: Value,
}

/// How many points of history a numeric field keeps for its chart.
pub const HISTORY: usize = 120;

/// Keeps the last sample, when each field last changed, and a short history
/// of each numeric field; `update` reports what changed.
#[derive(Default)]
pub struct Tracker {
    /// The latest sample.
    pub current: Sample,
    /// When field `i` last changed (None: not since the tracker started).
    pub changed_at: Vec<Option<Instant>>,
    /// The last [`HISTORY`] values of each numeric field, oldest first.
    pub history: Vec<VecDeque<f64>>,
    /// How many samples were taken.
    pub samples: u64,
}

impl Tracker {
    /// Starts over for a new schema (objects created or destroyed).
    pub fn reset(&mut self, fields: usize) {
        self.current = Sample { values: vec![Value::Missing; fields], torn: vec![false; fields] };
        self.changed_at = vec![None; fields];
        self.history = vec![VecDeque::new(); fields];
        self.samples = 0;
    }

    /// Takes `next` as the current sample and returns the fields whose value
    /// changed (none on the first sample after a reset: nothing to compare).
    pub fn update(&mut self, next: Sample, now: Instant) -> Vec<Change> {
        let mut changes = Vec::new();
        let first = self.samples == 0;
        if self.changed_at.len() != next.values.len() {
            self.reset(next.values.len());
        }
        for (i, new) in next.values.iter().enumerate() {
            let old = &self.current.values[i];
            if !first && old != new {
                changes.push(Change { field: i, old: old.clone(), new: new.clone() });
                self.changed_at[i] = Some(now);
            }
            if let Some(v) = new.as_f64() {
                let h = &mut self.history[i];
                if h.len() == HISTORY {
                    h.pop_front();
                }
                h.push_back(v);
            }
        }
        self.current = next;
        self.samples += 1;
        changes
    }
}

/// The native-endian bytes of `v` stored as type `ty` in `size` bytes
/// (`None` for arrays other than text, which the model keeps as text).
pub fn encode(v: &Value, ty: &str, size: usize) -> Option<Vec<u8>> {
    let int = |u: u64| Some(u.to_ne_bytes()[..size.min(8)].to_vec());
    match (v, ty) {
        (Value::Float(f), "f64") => Some(f.to_ne_bytes().to_vec()),
        (Value::Float(f), "f32") => Some((*f as f32).to_ne_bytes().to_vec()),
        (Value::Uint(u), _) => int(*u),
        (Value::Int(i), _) => int(*i as u64),
        (Value::Bool(b), _) => Some(vec![u8::from(*b)]),
        (Value::Text(t), _) if ty.starts_with("char") => {
            let mut b = t.as_bytes().to_vec();
            b.resize(size, 0);
            Some(b)
        }
        _ => None,
    }
}

/// `SystemTime` as RFC 3339 UTC with milliseconds (`2026-12-06T21:00:00.123Z`).
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sample(v: &[Value]) -> Sample {
        Sample { values: v.to_vec(), torn: vec![false; v.len()] }
    }

    #[test]
    fn tracker_reports_exact_changes_and_keeps_history() {
        let mut t = Tracker::default();
        t.reset(2);
        let now = Instant::now();
        assert!(t.update(sample(&[Value::Int(1), Value::Text("a".into())]), now).is_empty());
        let c = t.update(sample(&[Value::Int(2), Value::Text("a".into())]), now);
        assert_eq!(c, vec![Change { field: 0, old: Value::Int(1), new: Value::Int(2) }]);
        assert_eq!(t.history[0], [1.0, 2.0]);
        assert!(t.history[1].is_empty());
        assert_eq!(t.changed_at[0], Some(now));
        assert_eq!(t.changed_at[1], None);
        for i in 0..200 {
            t.update(sample(&[Value::Int(i), Value::Text("a".into())]), now);
        }
        assert_eq!(t.history[0].len(), HISTORY);
        assert_eq!(t.history[0].back(), Some(&199.0));
    }

    #[test]
    fn encode_matches_the_native_layout() {
        assert_eq!(encode(&Value::Float(1.5), "f64", 8), Some(1.5f64.to_ne_bytes().to_vec()));
        assert_eq!(encode(&Value::Uint(0x0102), "u16", 2), Some(0x0102u16.to_ne_bytes().to_vec()));
        assert_eq!(encode(&Value::Int(-1), "i32", 4), Some(vec![0xff; 4]));
        assert_eq!(encode(&Value::Text("ab".into()), "char[4]", 4), Some(b"ab\0\0".to_vec()));
        assert_eq!(encode(&Value::Text("[1, 2]".into()), "u8[2]", 2), None);
    }

    #[test]
    fn rfc3339_formats_known_instants() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }
}
