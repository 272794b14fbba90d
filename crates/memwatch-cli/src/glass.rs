//! The [`Source`] over a memglass [`Observer`]: translates memglass's
//! objects, fields and values into the command's model. memglass decides
//! (layout, atomicity, seqlock reads, liveness); this only translates.

use crate::model::{
    self, FieldMeta, Kind, Liveness, ObjectMeta, Sample, Schema, SessionMeta, Source, Value,
};
use memglass::{Atomicity, Error, ObjectInfo, Observer, Semantics};

/// One connected session.
pub struct GlassSource {
    obs: Observer,
    schema: Schema,
    /// The observer's object per schema object.
    objects: Vec<ObjectInfo>,
    /// Set after connect so the first `refresh` hands out the schema.
    fresh: bool,
    /// When a dead producer's successor was last looked for.
    last_retry: Option<std::time::Instant>,
}

/// How often a dead session is looked up again for a restarted producer.
const RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// What to tell the user when connecting fails.
pub fn connect_hint(session: &str, e: &Error) -> String {
    match e {
        Error::NotFound(_) => format!(
            "no session {session:?} in {} ({e}). Run `memwatch ls` to see the sessions; is the \
             producer running, as this user, with the same MEMGLASS_DIR?",
            memglass::default_dir().display()
        ),
        Error::InvalidArgument(_) => format!(
            "{e}. Session names are 1-63 characters of A-Z a-z 0-9 _ - . (see `memwatch ls`)"
        ),
        Error::BadSegment(_) => format!(
            "session {session:?} cannot be read: {e}. If its producer is dead, `memwatch clean` \
             removes it"
        ),
        _ => format!("cannot connect to session {session:?}: {e}"),
    }
}

impl GlassSource {
    /// Connects to `session` read-only.
    pub fn connect(session: &str) -> anyhow::Result<GlassSource> {
        let obs =
            Observer::connect(session).map_err(|e| anyhow::anyhow!(connect_hint(session, &e)))?;
        let mut s = GlassSource {
            obs,
            schema: Schema::default(),
            objects: Vec::new(),
            fresh: true,
            last_retry: None,
        };
        s.rebuild()?;
        Ok(s)
    }

    fn rebuild(&mut self) -> anyhow::Result<()> {
        let mut schema = Schema::default();
        let mut objects = Vec::new();
        for obj in self.obs.objects() {
            let t = self.obs.type_of(obj)?;
            let oi = schema.objects.len();
            let start = schema.fields.len();
            for elem in 0..obj.count {
                let prefix = if obj.count > 1 { format!("[{elem}].") } else { String::new() };
                for f in &t.fields {
                    let numeric = f.array_len == 0 && f.prim != memglass::Primitive::Char;
                    let kind = match f.semantics {
                        _ if !numeric => None,
                        Semantics::Counter => Some(Kind::Counter),
                        Semantics::Gauge => Some(Kind::Gauge),
                        Semantics::Discrete => None,
                    };
                    let ty = if f.array_len > 0 {
                        format!("{}[{}]", f.prim.name(), f.array_len)
                    } else {
                        f.prim.name().to_string()
                    };
                    schema.fields.push(FieldMeta {
                        object: oi,
                        path: format!("{prefix}{}", f.path),
                        ty,
                        unit: f.unit.clone(),
                        help: f.help.clone(),
                        kind,
                        atomicity: atomicity_name(f.atomicity).to_string(),
                        offset: elem as usize * t.size as usize + f.offset as usize,
                        size: f.size as usize,
                    });
                }
            }
            schema.objects.push(ObjectMeta {
                label: obj.label.clone(),
                type_name: obj.type_name.clone(),
                fields: start..schema.fields.len(),
                size: t.size as usize * obj.count as usize,
            });
            objects.push(obj.clone());
        }
        self.schema = schema;
        self.objects = objects;
        Ok(())
    }

    /// Reads one object's fields into `out` (its slice of the sample).
    fn sample_object(
        &self,
        oi: usize,
        values: &mut [Value],
        torn: &mut [bool],
    ) -> anyhow::Result<()> {
        let obj = &self.objects[oi];
        match self.obs.snapshot(obj) {
            Ok(snap) => {
                for (i, (_, v)) in snap.values.into_iter().enumerate() {
                    values[i] = convert(v);
                    torn[i] = false;
                }
            }
            // One seqlock group kept tearing: read field by field, so only
            // the torn fields are flagged (keeping their last value).
            Err(Error::Torn(_)) => {
                let t = self.obs.type_of(obj)?;
                let n = t.fields.len();
                for elem in 0..obj.count {
                    for (k, f) in t.fields.iter().enumerate() {
                        let i = elem as usize * n + k;
                        match self.obs.read_field(obj, elem, f) {
                            Ok(v) => {
                                values[i] = convert(v);
                                torn[i] = false;
                            }
                            Err(Error::Torn(_)) => torn[i] = true,
                            Err(Error::Gone(_)) => values[i] = Value::Missing,
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
            }
            // Destroyed since the last refresh: the next refresh drops it.
            Err(Error::Gone(_)) => values.iter_mut().for_each(|v| *v = Value::Missing),
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }
}

fn atomicity_name(a: Atomicity) -> &'static str {
    a.name()
}

/// memglass's value as the model's.
pub fn convert(v: memglass::Value) -> Value {
    match v {
        memglass::Value::Bool(b) => Value::Bool(b),
        memglass::Value::Int(i) => Value::Int(i),
        memglass::Value::UInt(u) => Value::Uint(u),
        memglass::Value::Float(f) => Value::Float(f),
        memglass::Value::Str(s) => Value::Text(s),
        a @ memglass::Value::Array(_) => Value::Text(a.to_string()),
    }
}

impl Source for GlassSource {
    fn meta(&self) -> SessionMeta {
        let info = self.obs.session_info();
        SessionMeta { name: self.obs.session().to_string(), pid: info.pid }
    }

    /// While the producer lives: the observer's structure when it moved.
    /// Once it is dead: the last structure stays (a shutdown destroys every
    /// object, and the user wants to see what was there), and every second
    /// the session is looked up again; a new producer of the same name
    /// (memglass replaces a dead one's segments) is connected to and its
    /// structure handed out.
    fn refresh(&mut self) -> anyhow::Result<Option<Schema>> {
        if self.obs.liveness() == memglass::Liveness::Dead {
            if self.last_retry.is_some_and(|t| t.elapsed() < RETRY) {
                return Ok(std::mem::take(&mut self.fresh).then(|| self.schema.clone()));
            }
            self.last_retry = Some(std::time::Instant::now());
            let old = self.obs.session_info();
            match Observer::connect(self.obs.session()) {
                Ok(obs)
                    if obs.liveness() != memglass::Liveness::Dead
                        && (obs.session_info().pid, obs.session_info().start_time)
                            != (old.pid, old.start_time) =>
                {
                    self.obs = obs;
                    self.rebuild()?;
                    self.fresh = false;
                    return Ok(Some(self.schema.clone()));
                }
                _ => return Ok(std::mem::take(&mut self.fresh).then(|| self.schema.clone())),
            }
        }
        let changed = self.obs.refresh()?;
        if changed {
            self.rebuild()?;
        }
        Ok((changed || std::mem::take(&mut self.fresh)).then(|| self.schema.clone()))
    }

    fn schema(&self) -> &Schema {
        &self.schema
    }

    fn sample(&mut self, out: &mut Sample) -> anyhow::Result<()> {
        let n = self.schema.fields.len();
        out.values.resize(n, Value::Missing);
        out.torn.resize(n, false);
        for oi in 0..self.objects.len() {
            let r = self.schema.objects[oi].fields.clone();
            let (v, t) = (&mut out.values[r.clone()], &mut out.torn[r]);
            self.sample_object(oi, v, t)?;
        }
        Ok(())
    }

    fn liveness(&mut self) -> Liveness {
        match self.obs.liveness() {
            memglass::Liveness::Alive => Liveness::Alive,
            memglass::Liveness::Stale => Liveness::Stale,
            memglass::Liveness::Dead => Liveness::Dead,
        }
    }

    fn object_bytes(&mut self, i: usize) -> Option<Vec<Option<u8>>> {
        // The observer gives typed reads, not raw bytes: the bytes of each
        // field are its value re-encoded; bytes outside every field (padding)
        // are shown as unknown.
        let o = self.schema.objects.get(i)?;
        let mut out = vec![None; o.size];
        let mut values = vec![Value::Missing; o.fields.len()];
        let mut torn = vec![false; o.fields.len()];
        self.sample_object(i, &mut values, &mut torn).ok()?;
        for (k, fi) in o.fields.clone().enumerate() {
            let f = &self.schema.fields[fi];
            if let Some(bytes) = model::encode(&values[k], &f.ty, f.size) {
                for (j, b) in bytes.into_iter().enumerate() {
                    if let Some(slot) = out.get_mut(f.offset + j) {
                        *slot = Some(b);
                    }
                }
            }
        }
        Some(out)
    }
}
