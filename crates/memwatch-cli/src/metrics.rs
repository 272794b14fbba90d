//! `/metrics`: every numeric field of every served session in the Prometheus
//! text format (0.0.4), encoded by `prometheus-client`.
//!
//! One metric family per (type, field path): `memglass_<type>_<path>[_<unit>]`,
//! a counter (`_total`) or a gauge by the field's declared semantics, with the
//! field's help text and the labels `session`, `object` and `field`. Fields
//! declared discrete, and text fields, are not metrics and are left out, and
//! so are all fields of a session whose producer is dead (its series go
//! stale); `memglass_producer_up{session}` says which.

use crate::model::{Kind, Liveness, Sample, Schema, SessionMeta, Value};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What `/metrics` reports of one session.
#[derive(Clone, Debug)]
pub struct SessionSnapshot {
    /// Name and pid.
    pub meta: SessionMeta,
    /// Its objects and fields.
    pub schema: Arc<Schema>,
    /// The latest values.
    pub sample: Sample,
    /// Producer liveness at that sample.
    pub liveness: Liveness,
}

/// `[A-Za-z0-9_]` only, everything else `_`, never starting with a digit.
pub fn sanitize(s: &str) -> String {
    let mut out: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn unit_of(u: &str) -> Option<Unit> {
    match u {
        "" => None,
        "s" | "sec" | "seconds" => Some(Unit::Seconds),
        "B" | "bytes" => Some(Unit::Bytes),
        other => Some(Unit::Other(sanitize(&other.to_lowercase()))),
    }
}

#[derive(Debug)]
struct Fields(Vec<SessionSnapshot>);

type Labels<'a> = [(&'static str, &'a str); 3];

impl Collector for Fields {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Group fields into families: (type, path) -> [(session, field)].
        let mut families: BTreeMap<(String, String), Vec<(usize, usize)>> = BTreeMap::new();
        for (si, s) in self.0.iter().enumerate() {
            if s.liveness == Liveness::Dead {
                continue; // its values are history: the series go stale
            }
            for (fi, f) in s.schema.fields.iter().enumerate() {
                if f.kind.is_some() && s.sample.values.get(fi).and_then(|v| v.as_f64()).is_some() {
                    let o = &s.schema.objects[f.object];
                    let key = (sanitize(&o.type_name).to_lowercase(), sanitize(&f.path));
                    families.entry(key).or_default().push((si, fi));
                }
            }
        }
        for ((ty, path), members) in families {
            let (s0, f0) = members[0];
            let first = &self.0[s0].schema.fields[f0];
            let name = format!("memglass_{ty}_{path}");
            let unit = unit_of(&first.unit);
            let help = if first.help.is_empty() {
                format!(
                    "field {} of {}",
                    first.path, self.0[s0].schema.objects[first.object].type_name
                )
            } else {
                first.help.clone()
            };
            let counter = first.kind == Some(Kind::Counter);
            let ty = if counter { MetricType::Counter } else { MetricType::Gauge };
            let mut m = enc.encode_descriptor(&name, &help, unit.as_ref(), ty)?;
            for (si, fi) in members {
                let s = &self.0[si];
                let f = &s.schema.fields[fi];
                let labels: Labels = [
                    ("session", s.meta.name.as_str()),
                    ("object", s.schema.objects[f.object].label.as_str()),
                    ("field", f.path.as_str()),
                ];
                let v = s.sample.values[fi].as_f64().unwrap_or(f64::NAN);
                let fam = m.encode_family(&labels)?;
                // A family's members share its type; a field declared a
                // counter in one type and a gauge in another has its own
                // family (the type is part of the name).
                if let (true, Value::Uint(u)) = (counter, &s.sample.values[fi]) {
                    ConstCounter::new(*u).encode(fam)?;
                } else if counter {
                    ConstCounter::new(v).encode(fam)?;
                } else {
                    ConstGauge::new(v).encode(fam)?;
                }
            }
        }
        // One liveness gauge per session.
        let mut m = enc.encode_descriptor(
            "memglass_producer_up",
            "1 while the session's producer is alive",
            None,
            MetricType::Gauge,
        )?;
        for s in &self.0 {
            let labels = [("session", s.meta.name.as_str())];
            let up = i64::from(s.liveness == Liveness::Alive);
            ConstGauge::new(up).encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// The Prometheus text exposition of `sessions`.
pub fn encode(sessions: Vec<SessionSnapshot>) -> String {
    let mut reg = Registry::default();
    reg.register_collector(Box::new(Fields(sessions)));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &reg)
        .expect("encoding into a String cannot fail");
    out
}

/// The `Content-Type` of [`encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Source;
    use crate::testing::FakeSource;

    fn snap(n: usize) -> SessionSnapshot {
        let (mut src, h) = FakeSource::quotes(n);
        let schema = Arc::new(src.refresh().unwrap().unwrap());
        h.set(0, Value::Float(101.25));
        h.set(2, Value::Uint(7));
        let mut sample = Sample::default();
        src.sample(&mut sample).unwrap();
        SessionSnapshot { meta: src.meta(), schema, sample, liveness: Liveness::Alive }
    }

    #[test]
    fn gauges_counters_labels_help_and_units() {
        let text = encode(vec![snap(2)]);
        assert!(text.contains("# HELP memglass_quote_bid_usd the bid\n"), "{text}");
        assert!(text.contains("# TYPE memglass_quote_bid_usd gauge\n"), "{text}");
        assert!(
            text.contains(
                "memglass_quote_bid_usd{session=\"fake\",object=\"obj0\",field=\"bid\"} 101.25\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            "memglass_quote_bid_usd{session=\"fake\",object=\"obj1\",field=\"bid\"} 1.5\n"
        ));
        assert!(text.contains("# TYPE memglass_quote_count_total counter\n"), "{text}");
        assert!(
            text.contains(
                "memglass_quote_count_total{session=\"fake\",object=\"obj0\",field=\"count\"} 7\n"
            ),
            "{text}"
        );
        assert!(text.contains("memglass_producer_up{session=\"fake\"} 1\n"));
        // 3 families of fields + producer_up, 2 objects each.
        assert_eq!(text.matches("# TYPE").count(), 4);
        assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 3 * 2 + 1);
    }

    #[test]
    fn a_dead_producer_exports_only_up_0() {
        let mut s = snap(1);
        s.liveness = Liveness::Dead;
        let text = encode(vec![s]);
        assert_eq!(
            text,
            "# HELP memglass_producer_up 1 while the session's producer is alive\n\
             # TYPE memglass_producer_up gauge\n\
             memglass_producer_up{session=\"fake\"} 0\n"
        );
    }

    #[test]
    fn sanitizes_names() {
        assert_eq!(sanitize("levels[3].px"), "levels_3__px");
        assert_eq!(sanitize("9lives"), "_9lives");
        assert_eq!(unit_of("ns"), Some(Unit::Other("ns".into())));
        assert_eq!(unit_of("bytes"), Some(Unit::Bytes));
    }
}
