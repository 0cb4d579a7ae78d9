//! The text tables printed at the end of a benchmark (and pasted into docs/performance.md).

use std::fmt::Write as _;

use super::stats::{Aggregate, Stats, TargetCheck};

fn cell(s: Option<Stats>, digits: usize) -> String {
    match s {
        None => "-".to_string(),
        Some(s) if s.n == 1 => format!("{:.*}", digits, s.median),
        Some(s) => format!(
            "{:.*} ({:.*}-{:.*})",
            digits, s.median, digits, s.min, digits, s.max
        ),
    }
}

/// Bytes as KB (1000 bytes).
fn kb(s: Option<Stats>) -> Option<Stats> {
    s.map(|s| Stats {
        min: s.min / 1e3,
        median: s.median / 1e3,
        max: s.max / 1e3,
        ..s
    })
}

/// The table printed at the end (medians, min-max in parentheses) and used in docs/performance.md.
pub fn table(aggs: &[Aggregate]) -> String {
    let header = [
        "backend",
        "accel",
        "cpus",
        "mode",
        "ok",
        "guest online ms",
        "bring-up ms",
        "guest vmx ms",
        "guest summary ms",
        "log lines",
        "log KB",
        "wall first line s",
        "wall summary s",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for a in aggs {
        rows.push(vec![
            a.config.backend.as_str().to_string(),
            a.config.engine.as_str().to_string(),
            a.config.cpus.to_string(),
            a.config.mode.as_str().to_string(),
            format!("{}/{}", a.ok, a.runs),
            cell(a.get("t_online"), 1),
            cell(a.get("bringup"), 1),
            cell(a.get("t_vmx"), 1),
            cell(a.get("boot"), 1),
            cell(a.get("log_lines"), 0),
            cell(kb(a.get("log_bytes")), 1),
            cell(a.get("wall_first_line"), 2),
            cell(a.get("wall_summary"), 2),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&rule.join("  "));
            out.push('\n');
        }
    }
    out
}

/// The same table as Markdown (for docs/performance.md).
pub fn markdown_table(aggs: &[Aggregate]) -> String {
    let mut out = String::from(
        "| backend | accel | CPUs | AP start | ok | guest: all online ms | guest: bring-up ms | guest: VMX done ms | guest: summary ms | log lines | log KB | wall: first line s | wall: summary s |\n\
         |---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for a in aggs {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {}/{} | {} | {} | {} | {} | {} | {} | {} | {} |",
            a.config.backend.label(),
            a.config.engine.as_str(),
            a.config.cpus,
            a.config.mode.as_str(),
            a.ok,
            a.runs,
            cell(a.get("t_online"), 1),
            cell(a.get("bringup"), 1),
            cell(a.get("t_vmx"), 1),
            cell(a.get("boot"), 1),
            cell(a.get("log_lines"), 0),
            cell(kb(a.get("log_bytes")), 1),
            cell(a.get("wall_first_line"), 2),
            cell(a.get("wall_summary"), 2),
        );
    }
    out
}

/// The footprint per backend and CPU count (first ok run with a footprint line).
pub fn footprint_table(aggs: &[Aggregate]) -> String {
    let mut out = String::new();
    let mut seen = std::collections::BTreeSet::new();
    for a in aggs {
        if a.footprint.is_empty() || !seen.insert((a.config.backend, a.config.cpus)) {
            continue;
        }
        let _ = writeln!(
            out,
            "{} cpus={}: {}",
            a.config.backend.as_str(),
            a.config.cpus,
            a.footprint
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    out
}

/// Text for the target checks.
pub fn targets_text(targets: &[TargetCheck]) -> String {
    let mut out = String::new();
    for t in targets {
        let verdict = match t.met {
            Some(true) => "MET",
            Some(false) => "MISSED",
            None => "not measured",
        };
        let value = t.value.map_or("-".to_string(), |v| format!("{v:.2}"));
        let cmp = if t.unit == "x" { "<=" } else { "<" };
        let _ = writeln!(
            out,
            "{verdict:<12} {}: {value} {} (target {cmp} {} {})",
            t.name, t.unit, t.limit, t.unit
        );
    }
    out
}

// --- SVG --------------------------------------------------------------------------------------
