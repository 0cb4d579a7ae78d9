//! `bench-runs.csv` and `bench-summary.csv`, written and (for `--replot`) read back.

use std::time::Duration;

use super::plan::{ApStart, Config};
use super::sample::{GuestReport, RunStatus, Sample};
use super::stats::{Aggregate, METRICS};
use crate::serial::Spread;
use crate::{Backend, Engine};

/// One CSV field (quoted when it holds a comma, a quote or a line break).
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv_line(fields: &[String]) -> String {
    let mut line = fields
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",");
    line.push('\n');
    line
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn fmt_f(v: f64) -> String {
    // Enough digits for µs in ms and ms in s, no float noise.
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// Footprint keys given their own CSV columns (any others are in the JSON): the documented ones.
pub use crate::serial::lines::FOOTPRINT_KEYS;

/// `bench-runs.csv`: one row per boot.
pub fn runs_csv(samples: &[Sample]) -> String {
    let mut header: Vec<String> = [
        "backend",
        "accel",
        "mode",
        "cpus",
        "run",
        "status",
        "verdict",
        "reason",
        "online",
        "failed",
        "vmx_root",
        "t_acpi_us",
        "t_first_sipi_us",
        "t_online_us",
        "t_vmx_us",
        "boot_us",
        "bringup_us",
        "sipi_to_pcb_min_us",
        "sipi_to_pcb_median_us",
        "sipi_to_pcb_max_us",
        "sipi_to_vmx_min_us",
        "sipi_to_vmx_median_us",
        "sipi_to_vmx_max_us",
        "wall_first_line_s",
        "wall_summary_s",
        "wall_exit_s",
        "log_lines",
        "log_bytes",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    header.extend(FOOTPRINT_KEYS.iter().map(|s| s.to_string()));
    let mut out = csv_line(&header);
    for s in samples {
        let g = &s.guest;
        let spread = |x: Option<Spread>| -> [String; 3] {
            match x {
                Some(x) => [x.min.to_string(), x.median.to_string(), x.max.to_string()],
                None => Default::default(),
            }
        };
        let secs = |d: Option<Duration>| d.map(|d| fmt_f(d.as_secs_f64())).unwrap_or_default();
        let mut row = vec![
            s.config.backend.as_str().to_string(),
            s.config.engine.as_str().to_string(),
            s.config.mode.as_str().to_string(),
            s.config.cpus.to_string(),
            s.run.to_string(),
            s.status.as_str().to_string(),
            opt(g.verdict.clone()),
            opt(g.reason.clone()),
            opt(g.online),
            opt(g.failed),
            opt(g.vmx_root),
            opt(g.t_acpi_us),
            opt(g.t_first_sipi_us),
            opt(g.t_online_us),
            opt(g.t_vmx_us),
            opt(g.boot_us),
            opt(g.bringup_us()),
        ];
        row.extend(spread(g.sipi_to_pcb_us));
        row.extend(spread(g.sipi_to_vmx_us));
        row.push(secs(s.wall_first_line));
        row.push(secs(s.wall_summary));
        row.push(secs(Some(s.wall_exit)));
        row.push(opt(g.log_lines));
        row.push(opt(g.log_bytes));
        row.extend(FOOTPRINT_KEYS.iter().map(|k| opt(g.footprint_value(k))));
        out.push_str(&csv_line(&row));
    }
    out
}

/// `bench-summary.csv`: one row per configuration, min/median/max of every metric over ok runs.
pub fn summary_csv(aggs: &[Aggregate]) -> String {
    let mut header: Vec<String> = ["backend", "accel", "mode", "cpus", "runs", "ok"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for m in METRICS {
        for stat in ["min", "median", "max"] {
            header.push(format!("{}_{stat}_{}", m.name, m.unit));
        }
    }
    header.extend(FOOTPRINT_KEYS.iter().map(|s| s.to_string()));
    let mut out = csv_line(&header);
    for a in aggs {
        let mut row = vec![
            a.config.backend.as_str().to_string(),
            a.config.engine.as_str().to_string(),
            a.config.mode.as_str().to_string(),
            a.config.cpus.to_string(),
            a.runs.to_string(),
            a.ok.to_string(),
        ];
        for s in &a.stats {
            match s {
                Some(s) => row.extend([fmt_f(s.min), fmt_f(s.median), fmt_f(s.max)]),
                None => row.extend([String::new(), String::new(), String::new()]),
            }
        }
        row.extend(FOOTPRINT_KEYS.iter().map(|k| {
            opt(a
                .footprint
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| *v))
        }));
        out.push_str(&csv_line(&row));
    }
    out
}

/// Splits one CSV line (RFC 4180 quoting, no line breaks inside fields).
pub fn split_csv_line(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

/// Reads `bench-runs.csv` back into samples (what [`runs_csv`] wrote; `detail` is not kept).
pub fn parse_runs_csv(text: &str) -> Result<Vec<Sample>, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = split_csv_line(lines.next().ok_or("empty bench-runs.csv")?);
    let col = |name: &str| header.iter().position(|h| h == name);
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        let row = split_csv_line(line);
        let bad = |what: &str| format!("bench-runs.csv row {}: bad {what}", i + 2);
        let get = |name: &str| col(name).and_then(|c| row.get(c)).map(String::as_str);
        let num = |name: &str| get(name).and_then(|v| v.parse::<u64>().ok());
        let secs = |name: &str| {
            get(name)
                .and_then(|v| v.parse::<f64>().ok())
                .map(Duration::from_secs_f64)
        };
        let spread = |stem: &str| {
            Some(Spread {
                min: num(&format!("{stem}_min_us"))?,
                median: num(&format!("{stem}_median_us"))?,
                max: num(&format!("{stem}_max_us"))?,
            })
        };
        let backend = match get("backend") {
            Some("qemu") => Backend::Qemu,
            Some("bochs") => Backend::Bochs,
            _ => return Err(bad("backend")),
        };
        let accel = match get("accel") {
            Some("tcg") => Engine::TcgMulti,
            Some("tcg-single") => Engine::TcgSingle,
            Some("bochs") => Engine::Bochs,
            _ => return Err(bad("accel")),
        };
        let mode = match get("mode") {
            Some("parallel") => ApStart::Parallel,
            Some("serial") => ApStart::Serial,
            _ => return Err(bad("mode")),
        };
        let status = [
            RunStatus::Ok,
            RunStatus::Degraded,
            RunStatus::Fail,
            RunStatus::NoSummary,
            RunStatus::Timeout,
            RunStatus::TripleFault,
            RunStatus::Error,
        ]
        .into_iter()
        .find(|s| Some(s.as_str()) == get("status"))
        .ok_or_else(|| bad("status"))?;
        let text = |name: &str| get(name).filter(|v| !v.is_empty()).map(str::to_string);
        let guest = GuestReport {
            verdict: text("verdict"),
            reason: text("reason"),
            online: num("online"),
            failed: num("failed"),
            vmx_root: num("vmx_root"),
            t_acpi_us: num("t_acpi_us"),
            t_first_sipi_us: num("t_first_sipi_us"),
            t_online_us: num("t_online_us"),
            t_vmx_us: num("t_vmx_us"),
            boot_us: num("boot_us"),
            sipi_to_pcb_us: spread("sipi_to_pcb"),
            sipi_to_vmx_us: spread("sipi_to_vmx"),
            log_lines: num("log_lines"),
            log_bytes: num("log_bytes"),
            footprint: FOOTPRINT_KEYS
                .iter()
                .filter_map(|k| Some((k.to_string(), num(k)?)))
                .collect(),
            ..GuestReport::default()
        };
        let cpus = num("cpus")
            .and_then(|n| u32::try_from(n).ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| bad("cpus"))?;
        let run = num("run")
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad("run"))?;
        out.push(Sample {
            config: Config {
                backend,
                engine: accel,
                cpus,
                mode,
            },
            run,
            status,
            guest,
            wall_first_line: secs("wall_first_line_s"),
            wall_summary: secs("wall_summary_s"),
            wall_exit: secs("wall_exit_s").unwrap_or_default(),
            detail: String::new(),
        });
    }
    Ok(out)
}
