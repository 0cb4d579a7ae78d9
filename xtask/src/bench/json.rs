//! `bench.json`: the machine, the versions, every run and every aggregate.

use serde_json::{Map, Number, Value};

use super::plan::Config;
use super::sample::Sample;
use super::stats::{Aggregate, Stats, TargetCheck, METRICS};
use crate::serial::Spread;

/// A JSON value as the benchmark builds it (objects keep their key order); [`Json::render`] writes it with
/// `serde_json`.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// Written with at most 6 decimals (µs in ms and ms in s, no float noise); not finite: `null`.
    Num(f64),
    Int(i64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub fn str(s: impl Into<String>) -> Json {
        Json::Str(s.into())
    }

    fn opt_u64(v: Option<u64>) -> Json {
        v.map_or(Json::Null, |v| Json::Int(v as i64))
    }

    fn opt_f(v: Option<f64>) -> Json {
        v.map_or(Json::Null, Json::Num)
    }

    /// The `serde_json` value.
    pub fn to_value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Int(i) => Value::from(*i),
            Json::Num(x) => {
                Number::from_f64((x * 1e6).round() / 1e6).map_or(Value::Null, Value::Number)
            }
            Json::Str(s) => Value::String(s.clone()),
            Json::Arr(items) => Value::Array(items.iter().map(Json::to_value).collect()),
            Json::Obj(items) => Value::Object(
                items
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_value()))
                    .collect::<Map<String, Value>>(),
            ),
        }
    }

    /// Pretty-printed with two-space indentation, ending with a newline.
    pub fn render(&self) -> String {
        let mut out = serde_json::to_string_pretty(&self.to_value())
            .expect("a JSON value built from strings and numbers serializes");
        out.push('\n');
        out
    }
}

fn stats_json(s: Option<Stats>) -> Json {
    match s {
        None => Json::Null,
        Some(s) => Json::Obj(vec![
            ("n".into(), Json::Int(s.n as i64)),
            ("min".into(), Json::Num(s.min)),
            ("median".into(), Json::Num(s.median)),
            ("max".into(), Json::Num(s.max)),
        ]),
    }
}

fn config_fields(c: &Config) -> Vec<(String, Json)> {
    vec![
        ("backend".into(), Json::str(c.backend.as_str())),
        ("accel".into(), Json::str(c.engine.as_str())),
        ("mode".into(), Json::str(c.mode.as_str())),
        ("cpus".into(), Json::Int(i64::from(c.cpus))),
    ]
}

fn spread_json(s: Option<Spread>) -> Json {
    s.map_or(Json::Null, |s| {
        Json::Obj(vec![
            ("min".into(), Json::Int(s.min as i64)),
            ("median".into(), Json::Int(s.median as i64)),
            ("max".into(), Json::Int(s.max as i64)),
        ])
    })
}

fn footprint_json(f: &[(String, u64)]) -> Json {
    Json::Obj(
        f.iter()
            .map(|(k, v)| (k.clone(), Json::Int(*v as i64)))
            .collect(),
    )
}

/// `bench.json`: `meta` (machine, versions, command), `metrics` (what each name means), `configs`
/// (aggregates), `targets`, `runs` (every boot).
pub fn to_json(
    meta: &[(String, Json)],
    samples: &[Sample],
    aggs: &[Aggregate],
    targets: &[TargetCheck],
) -> Json {
    let metrics = Json::Obj(
        METRICS
            .iter()
            .map(|m| {
                (
                    m.name.to_string(),
                    Json::str(format!("{} [{}]", m.what, m.unit)),
                )
            })
            .collect(),
    );
    let configs = aggs
        .iter()
        .map(|a| {
            let mut f = config_fields(&a.config);
            f.push(("runs".into(), Json::Int(a.runs as i64)));
            f.push(("ok".into(), Json::Int(a.ok as i64)));
            for (m, s) in METRICS.iter().zip(&a.stats) {
                f.push((format!("{}_{}", m.name, m.unit), stats_json(*s)));
            }
            f.push(("footprint".into(), footprint_json(&a.footprint)));
            Json::Obj(f)
        })
        .collect();
    let runs = samples
        .iter()
        .map(|s| {
            let g = &s.guest;
            let mut f = config_fields(&s.config);
            f.extend([
                ("run".into(), Json::Int(i64::from(s.run))),
                ("status".into(), Json::str(s.status.as_str())),
                (
                    "verdict".into(),
                    g.verdict.clone().map_or(Json::Null, Json::Str),
                ),
                (
                    "reason".into(),
                    g.reason.clone().map_or(Json::Null, Json::Str),
                ),
                ("online".into(), Json::opt_u64(g.online)),
                ("failed".into(), Json::opt_u64(g.failed)),
                ("vmx_root".into(), Json::opt_u64(g.vmx_root)),
                ("t_acpi_us".into(), Json::opt_u64(g.t_acpi_us)),
                ("t_first_sipi_us".into(), Json::opt_u64(g.t_first_sipi_us)),
                ("t_online_us".into(), Json::opt_u64(g.t_online_us)),
                ("t_vmx_us".into(), Json::opt_u64(g.t_vmx_us)),
                ("boot_us".into(), Json::opt_u64(g.boot_us)),
                ("bringup_us".into(), Json::opt_u64(g.bringup_us())),
                ("sipi_to_pcb_us".into(), spread_json(g.sipi_to_pcb_us)),
                ("sipi_to_vmx_us".into(), spread_json(g.sipi_to_vmx_us)),
                ("first_line_guest_us".into(), Json::opt_u64(g.first_line_us)),
                (
                    "wall_first_line_s".into(),
                    Json::opt_f(s.wall_first_line.map(|d| d.as_secs_f64())),
                ),
                (
                    "wall_summary_s".into(),
                    Json::opt_f(s.wall_summary.map(|d| d.as_secs_f64())),
                ),
                ("wall_exit_s".into(), Json::Num(s.wall_exit.as_secs_f64())),
                ("footprint".into(), footprint_json(&g.footprint)),
            ]);
            if !s.detail.is_empty() {
                f.push(("detail".into(), Json::str(s.detail.clone())));
            }
            Json::Obj(f)
        })
        .collect();
    let targets = targets
        .iter()
        .map(|t| {
            Json::Obj(vec![
                ("target".into(), Json::str(t.name.clone())),
                ("median".into(), Json::opt_f(t.value)),
                ("limit".into(), Json::Num(t.limit)),
                ("unit".into(), Json::str(t.unit)),
                ("met".into(), t.met.map_or(Json::Null, Json::Bool)),
            ])
        })
        .collect();
    Json::Obj(vec![
        ("meta".into(), Json::Obj(meta.to_vec())),
        ("metrics".into(), metrics),
        ("configs".into(), Json::Arr(configs)),
        ("targets".into(), Json::Arr(targets)),
        ("runs".into(), Json::Arr(runs)),
    ])
}
