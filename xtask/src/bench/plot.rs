//! `bench.svg`: bring-up time against core count, log-log, one panel for guest time and one for wall time.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::plan::{ApStart, BenchSpec, TcgPolicy, TCG_SINGLE_ABOVE};
use super::stats::{Aggregate, Stats};
use crate::bochs;
use crate::{Backend, Engine};

/// A line in the plot.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub label: String,
    pub color: &'static str,
    pub dashed: bool,
    /// (cpus, stats), sorted by cpus.
    pub points: Vec<(u32, Stats)>,
}

/// The series of one metric: one per (backend, mode), and per TCG mode too when `by_accel`.
pub fn series(aggs: &[Aggregate], metric: &str, by_accel: bool) -> Vec<Series> {
    type Key = (Backend, Option<Engine>, ApStart);
    let mut map: BTreeMap<Key, Vec<(u32, Stats)>> = BTreeMap::new();
    for a in aggs {
        let key = (
            a.config.backend,
            by_accel.then_some(a.config.engine),
            a.config.mode,
        );
        let entry = map.entry(key).or_default();
        if let Some(s) = a.get(metric) {
            entry.push((a.config.cpus, s));
        }
    }
    map.into_iter()
        .filter(|(_, p)| !p.is_empty())
        .map(|((backend, accel, mode), mut points)| {
            points.sort_by_key(|p| p.0);
            let color = match (backend, accel) {
                (Backend::Bochs, _) => "#d62728",
                (Backend::Qemu, Some(Engine::TcgSingle)) => "#2ca02c",
                _ => "#1f77b4",
            };
            let label = match accel {
                Some(a) if backend == Backend::Qemu => {
                    format!("{} {} {}", backend.label(), a.as_str(), mode.as_str())
                }
                _ => format!("{} {}", backend.label(), mode.as_str()),
            };
            Series {
                label,
                color,
                dashed: mode == ApStart::Serial,
                points,
            }
        })
        .collect()
}

/// A target drawn as a red cross: (cpus, value, label).
pub type Mark = (u32, f64, String);

/// One panel of the plot.
pub struct Panel {
    pub title: String,
    pub y_label: String,
    pub series: Vec<Series>,
    pub marks: Vec<Mark>,
}

/// Nice log-scale ticks (1, 2, 5 x 10^k) covering `lo..=hi`.
pub fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut out = Vec::new();
    if !(lo > 0.0 && hi >= lo && hi.is_finite()) {
        return out;
    }
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi * 1.0001 {
        for m in [1.0, 2.0, 5.0] {
            let v = decade * m;
            if v >= lo * 0.9999 && v <= hi * 1.0001 {
                out.push(v);
            }
        }
        decade *= 10.0;
    }
    out
}

pub(super) fn tick_label(v: f64) -> String {
    if v >= 1.0 {
        format!("{}", v.round() as i64)
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Renders panels side by side: x = CPU count (log2), y = time (log10), median with min-max bars.
pub fn svg(title: &str, subtitle: &str, panels: &[Panel], footnotes: &[String]) -> String {
    const PW: f64 = 470.0; // panel width
    const PH: f64 = 380.0; // panel height
    const ML: f64 = 70.0; // margins inside a panel
    const MR: f64 = 20.0;
    const MT: f64 = 40.0;
    const MB: f64 = 50.0;
    const TOP: f64 = 56.0; // title area
    const LEGEND: f64 = 70.0;
    let width = PW * panels.len().max(1) as f64;
    let height = TOP + PH + LEGEND + 14.0 * footnotes.len() as f64;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">"#
    );
    let _ = writeln!(
        s,
        r#"<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" font-size="17" text-anchor="middle" font-weight="bold">{}</text>"#,
        width / 2.0,
        xml_escape(title)
    );
    let _ = writeln!(
        s,
        r##"<text x="{}" y="44" font-size="12" text-anchor="middle" fill="#444">{}</text>"##,
        width / 2.0,
        xml_escape(subtitle)
    );
    let mut legend: Vec<(String, &'static str, bool)> = Vec::new();
    for (pi, panel) in panels.iter().enumerate() {
        let x0 = pi as f64 * PW;
        let (left, right) = (x0 + ML, x0 + PW - MR);
        let (top, bottom) = (TOP + MT, TOP + PH - MB);
        let mut cpus: Vec<u32> = panel
            .series
            .iter()
            .flat_map(|se| se.points.iter().map(|p| p.0))
            .chain(panel.marks.iter().map(|m| m.0))
            .collect();
        cpus.sort_unstable();
        cpus.dedup();
        let mut ys: Vec<f64> = panel
            .series
            .iter()
            .flat_map(|se| se.points.iter().flat_map(|p| [p.1.min, p.1.max]))
            .chain(panel.marks.iter().map(|m| m.1))
            .filter(|v| *v > 0.0 && v.is_finite())
            .collect();
        ys.sort_by(f64::total_cmp);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" font-size="14" text-anchor="middle" font-weight="bold">{}</text>"#,
            (left + right) / 2.0,
            top - 14.0,
            xml_escape(&panel.title)
        );
        let _ = writeln!(
            s,
            r##"<rect x="{left}" y="{top}" width="{}" height="{}" fill="none" stroke="#888"/>"##,
            right - left,
            bottom - top
        );
        if cpus.is_empty() || ys.is_empty() {
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" font-size="13" text-anchor="middle">no data</text>"#,
                (left + right) / 2.0,
                (top + bottom) / 2.0
            );
            continue;
        }
        // x: log2 of the CPU count.
        let (cx_lo, cx_hi) = (
            f64::from(cpus[0]).log2(),
            f64::from(*cpus.last().unwrap()).log2(),
        );
        let span_x = (cx_hi - cx_lo).max(1.0);
        let px =
            |c: u32| left + 14.0 + (f64::from(c).log2() - cx_lo) / span_x * (right - left - 28.0);
        // y: log10, padded to the enclosing 1-2-5 ticks.
        let ticks_all = log_ticks(ys[0] / 10.0, ys[ys.len() - 1] * 10.0);
        let y_lo = ticks_all
            .iter()
            .copied()
            .filter(|t| *t <= ys[0])
            .fold(ys[0], |_, t| t);
        let y_hi = ticks_all
            .iter()
            .copied()
            .find(|t| *t >= ys[ys.len() - 1])
            .unwrap_or(ys[ys.len() - 1]);
        let (ly_lo, ly_hi) = (y_lo.log10(), y_hi.log10());
        let span_y = (ly_hi - ly_lo).max(1e-9);
        let py =
            |v: f64| bottom - 8.0 - (v.max(y_lo).log10() - ly_lo) / span_y * (bottom - top - 16.0);
        let mut last_label_x = f64::NEG_INFINITY;
        for &c in &cpus {
            let x = px(c);
            // A label too close to the previous one (15 next to 16) goes one row lower.
            let row = if x - last_label_x < 22.0 { 11.0 } else { 0.0 };
            if row == 0.0 {
                last_label_x = x;
            }
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{bottom}" stroke="#eee"/><text x="{x:.1}" y="{}" font-size="11" text-anchor="middle">{c}</text>"##,
                bottom + 15.0 + row
            );
        }
        for t in log_ticks(y_lo, y_hi) {
            let y = py(t);
            let _ = writeln!(
                s,
                r##"<line x1="{left}" y1="{y:.1}" x2="{right}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
                left - 5.0,
                y + 4.0,
                tick_label(t)
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" font-size="12" text-anchor="middle">CPUs (log scale)</text>"#,
            (left + right) / 2.0,
            bottom + 44.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" font-size="12" text-anchor="middle" transform="rotate(-90 {} {})">{}</text>"#,
            x0 + 18.0,
            (top + bottom) / 2.0,
            x0 + 18.0,
            (top + bottom) / 2.0,
            xml_escape(&panel.y_label)
        );
        for se in &panel.series {
            let pts: Vec<String> = se
                .points
                .iter()
                .map(|(c, st)| format!("{:.1},{:.1}", px(*c), py(st.median)))
                .collect();
            let dash = if se.dashed {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            };
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"#,
                pts.join(" "),
                se.color
            );
            for (c, st) in &se.points {
                let (x, ymin, ymax, ymed) = (px(*c), py(st.min), py(st.max), py(st.median));
                let _ = writeln!(
                    s,
                    r#"<line x1="{x:.1}" y1="{ymin:.1}" x2="{x:.1}" y2="{ymax:.1}" stroke="{c2}" stroke-width="1.5"/><line x1="{:.1}" y1="{ymin:.1}" x2="{:.1}" y2="{ymin:.1}" stroke="{c2}"/><line x1="{:.1}" y1="{ymax:.1}" x2="{:.1}" y2="{ymax:.1}" stroke="{c2}"/><circle cx="{x:.1}" cy="{ymed:.1}" r="3.5" fill="{fill}" stroke="{c2}" stroke-width="1.5"/>"#,
                    x - 4.0,
                    x + 4.0,
                    x - 4.0,
                    x + 4.0,
                    c2 = se.color,
                    fill = if se.dashed { "white" } else { se.color },
                );
            }
            if !legend.iter().any(|l| l.0 == se.label) {
                legend.push((se.label.clone(), se.color, se.dashed));
            }
        }
        for (c, v, label) in &panel.marks {
            let (x, y) = (px(*c), py(*v));
            let _ = writeln!(
                s,
                r##"<path d="M{:.1},{:.1} L{:.1},{:.1} M{:.1},{:.1} L{:.1},{:.1}" stroke="#000" stroke-width="2"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end" fill="#000">{}</text>"##,
                x - 5.0,
                y - 5.0,
                x + 5.0,
                y + 5.0,
                x - 5.0,
                y + 5.0,
                x + 5.0,
                y - 5.0,
                x - 7.0,
                y - 6.0,
                xml_escape(label)
            );
        }
    }
    // Legend: series, then the target marker.
    let mut lx = 20.0;
    let ly = TOP + PH + 20.0;
    let mut row = 0.0;
    let entries = legend.len() + 1;
    for (i, (label, color, dashed)) in legend.iter().enumerate() {
        let dash = if *dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{y}" x2="{}" y2="{y}" stroke="{color}" stroke-width="2"{dash}/><circle cx="{}" cy="{y}" r="3.5" fill="{}" stroke="{color}" stroke-width="1.5"/><text x="{}" y="{}" font-size="12">{}</text>"#,
            lx + 30.0,
            lx + 15.0,
            if *dashed { "white" } else { color },
            lx + 36.0,
            ly + row + 4.0,
            xml_escape(label),
            y = ly + row
        );
        lx += 60.0 + 7.0 * label.len() as f64;
        if lx > width - 200.0 && i + 1 < entries {
            lx = 20.0;
            row += 20.0;
        }
    }
    let _ = writeln!(
        s,
        r##"<path d="M{:.1},{:.1} L{:.1},{:.1} M{:.1},{:.1} L{:.1},{:.1}" stroke="#000" stroke-width="2"/><text x="{}" y="{}" font-size="12">target (issue 6)</text>"##,
        lx + 10.0,
        ly + row - 5.0,
        lx + 20.0,
        ly + row + 5.0,
        lx + 10.0,
        ly + row + 5.0,
        lx + 20.0,
        ly + row - 5.0,
        lx + 28.0,
        ly + row + 4.0
    );
    let _ = writeln!(
        s,
        r##"<text x="20" y="{}" font-size="11" fill="#444">dots: median; bars: min to max over the runs; solid: parallel AP start-up, dashed: serial</text>"##,
        TOP + PH + LEGEND - 8.0
    );
    for (i, note) in footnotes.iter().enumerate() {
        let _ = writeln!(
            s,
            r##"<text x="20" y="{}" font-size="11" fill="#444">{}</text>"##,
            TOP + PH + LEGEND - 8.0 + 14.0 * (i + 1) as f64,
            xml_escape(note)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// The plot's subtitle: what ran (versions from `qemu --version` and the Bochs package), how often.
pub fn plot_subtitle(
    spec: &BenchSpec,
    qemu_version: &str,
    bochs_version: &str,
    host_cpus: usize,
) -> String {
    let mut parts = Vec::new();
    if spec.backends.contains(&Backend::Qemu) {
        let v = qemu_version
            .split_whitespace()
            .skip_while(|w| *w != "version")
            .nth(1)
            .unwrap_or("");
        let threads = match spec.tcg {
            TcgPolicy::Auto => format!(", thread=single above {TCG_SINGLE_ABOVE} CPUs"),
            TcgPolicy::Single => ", thread=single".into(),
            TcgPolicy::Multi => ", multi-threaded".into(),
            TcgPolicy::Both => String::new(),
        };
        parts.push(format!("QEMU {v} TCG (vmx=off{threads})"));
    }
    if spec.backends.contains(&Backend::Bochs) {
        let v = bochs_version.split(['+', '-']).next().unwrap_or("");
        parts.push(format!("Bochs {v} (VMX on)"));
    }
    let mut text = parts.join(" and ").replace("  ", " ");
    let _ = write!(text, "; {} runs each; {host_cpus} host CPUs", spec.runs);
    if !spec.append.is_empty() {
        let _ = write!(text, "; append \"{}\"", spec.append);
    }
    text
}

/// The benchmark's plot: guest time to all online, and wall time to the summary line.
pub fn bench_svg(aggs: &[Aggregate], by_accel: bool, subtitle: &str) -> String {
    let guest = Panel {
        title: "Guest: BSP entry to all CPUs online".into(),
        y_label: "guest time, ms (log scale)".into(),
        series: series(aggs, "t_online", by_accel),
        marks: vec![(64, 50.0, "50 ms @ 64".into())],
    };
    let mut marks = vec![
        (64, 1.5, "1.5 s @ 64".into()),
        (255, 5.0, "5 s @ 255".into()),
    ];
    if aggs.iter().any(|a| a.config.backend == Backend::Bochs) {
        marks.push((15, 8.0, "Bochs 8 s @ 15".into()));
    }
    let wall = Panel {
        title: "Wall: emulator start to summary line".into(),
        y_label: "wall time, s (log scale)".into(),
        series: series(aggs, "wall_summary", by_accel),
        marks,
    };
    // Keep marks only inside the measured CPU range.
    let clip = |mut p: Panel| {
        let cpus: Vec<u32> = p
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|x| x.0))
            .collect();
        let (lo, hi) = (
            cpus.iter().copied().min().unwrap_or(0),
            cpus.iter().copied().max().unwrap_or(0),
        );
        p.marks.retain(|m| m.0 >= lo && m.0 <= hi);
        p
    };
    let mut notes = vec![
        "guest time: calibrated TSC since the BSP's entry; under QEMU TCG it follows host time (emulation included)"
            .to_string(),
    ];
    if aggs.iter().any(|a| a.config.backend == Backend::Bochs) {
        notes.push(format!(
            "Bochs guest time is emulated time ({} M instructions per emulated second): exact, but not comparable to QEMU's",
            bochs::IPS / 1_000_000
        ));
    }
    svg(
        "Bring-up time against core count",
        subtitle,
        &[clip(guest), clip(wall)],
        &notes,
    )
}
