//! A [`Source`] with values set by the test, for unit tests of the views.

use crate::model::{
    FieldMeta, Kind, Liveness, ObjectMeta, Sample, Schema, SessionMeta, Source, Value,
};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct State {
    values: Vec<Value>,
    torn: Vec<bool>,
    dead: bool,
}

/// The test's side of a [`FakeSource`]: writes values, kills the producer.
#[derive(Clone)]
pub struct Handle(Arc<Mutex<State>>);

impl Handle {
    /// Sets field `i`.
    pub fn set(&self, i: usize, v: Value) {
        self.0.lock().unwrap().values[i] = v;
    }
    /// Marks field `i` torn.
    pub fn tear(&self, i: usize) {
        self.0.lock().unwrap().torn[i] = true;
    }
    /// The producer dies.
    pub fn kill(&self) {
        self.0.lock().unwrap().dead = true;
    }
}

/// A session whose values the test sets through a [`Handle`].
pub struct FakeSource {
    schema: Schema,
    state: Arc<Mutex<State>>,
    fresh: bool,
}

impl FakeSource {
    fn new(schema: Schema, values: Vec<Value>) -> (FakeSource, Handle) {
        let n = values.len();
        let state = Arc::new(Mutex::new(State { values, torn: vec![false; n], dead: false }));
        (FakeSource { schema, state: state.clone(), fresh: true }, Handle(state))
    }

    /// `n` objects `obj0..` of type Quote { bid: f64 USD, ask: f64 USD, count: u64 counter },
    /// starting at bid 1.5, ask 2.5, count 0.
    pub fn quotes(n: usize) -> (FakeSource, Handle) {
        let mut s = Schema::default();
        let mut values = Vec::new();
        for o in 0..n {
            let start = s.fields.len();
            for (i, (path, ty, unit, kind, v)) in [
                ("bid", "f64", "USD", Kind::Gauge, Value::Float(1.5)),
                ("ask", "f64", "USD", Kind::Gauge, Value::Float(2.5)),
                ("count", "u64", "", Kind::Counter, Value::Uint(0)),
            ]
            .into_iter()
            .enumerate()
            {
                s.fields.push(FieldMeta {
                    object: o,
                    path: path.into(),
                    ty: ty.into(),
                    unit: unit.into(),
                    help: format!("the {path}"),
                    kind: Some(kind),
                    atomicity: "seqlock".into(),
                    offset: i * 8,
                    size: 8,
                });
                values.push(v);
            }
            s.objects.push(ObjectMeta {
                label: format!("obj{o}"),
                type_name: "Quote".into(),
                fields: start..s.fields.len(),
                size: 24,
            });
        }
        FakeSource::new(s, values)
    }

    /// `n` u64 gauges, 100 per object: `obj0.f0` ... `obj{n/100-1}.f99`.
    pub fn many(n: usize) -> (FakeSource, Handle) {
        let mut s = Schema::default();
        for o in 0..n / 100 {
            let start = s.fields.len();
            for i in 0..100 {
                s.fields.push(FieldMeta {
                    object: o,
                    path: format!("f{i}"),
                    ty: "u64".into(),
                    unit: String::new(),
                    help: String::new(),
                    kind: Some(Kind::Gauge),
                    atomicity: "atomic".into(),
                    offset: i * 8,
                    size: 8,
                });
            }
            s.objects.push(ObjectMeta {
                label: format!("obj{o}"),
                type_name: "Wide".into(),
                fields: start..s.fields.len(),
                size: 800,
            });
        }
        FakeSource::new(s, (0..n as u64).map(Value::Uint).collect())
    }
}

impl Source for FakeSource {
    fn meta(&self) -> SessionMeta {
        SessionMeta { name: "fake".into(), pid: 42 }
    }
    fn refresh(&mut self) -> anyhow::Result<Option<Schema>> {
        Ok(std::mem::take(&mut self.fresh).then(|| self.schema.clone()))
    }
    fn schema(&self) -> &Schema {
        &self.schema
    }
    fn sample(&mut self, out: &mut Sample) -> anyhow::Result<()> {
        // Like a real source: a torn field is flagged and keeps the value
        // `out` already holds (the last consistent one).
        let st = self.state.lock().unwrap();
        out.values.resize(st.values.len(), Value::Missing);
        for (i, v) in st.values.iter().enumerate() {
            if !st.torn[i] {
                out.values[i] = v.clone();
            }
        }
        out.torn.clone_from(&st.torn);
        Ok(())
    }
    fn liveness(&mut self) -> Liveness {
        if self.state.lock().unwrap().dead {
            Liveness::Dead
        } else {
            Liveness::Alive
        }
    }
    fn object_bytes(&mut self, i: usize) -> Option<Vec<Option<u8>>> {
        let st = self.state.lock().unwrap();
        let o = self.schema.objects.get(i)?;
        let mut out = Vec::new();
        for f in o.fields.clone() {
            match st.values[f] {
                Value::Float(v) => out.extend(v.to_le_bytes()),
                Value::Uint(v) => out.extend(v.to_le_bytes()),
                Value::Int(v) => out.extend(v.to_le_bytes()),
                _ => out.extend([0; 8]),
            }
        }
        Some(out.into_iter().map(Some).collect())
    }
}
