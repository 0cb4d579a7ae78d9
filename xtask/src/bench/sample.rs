//! One boot's result: what its serial log says ([`GuestReport`], read through [`crate::serial`]) and when
//! its lines arrived ([`Sample`]).

use std::fmt::Write as _;
use std::time::Duration;

use super::plan::Config;
use crate::serial::Spread;
use crate::serial::{Documented, Footprint, LogLine, Phases, Summary, Timing};
use crate::session::Ended;

/// What one boot's serial log says about its timing and memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuestReport {
    pub verdict: Option<String>,
    pub reason: Option<String>,
    pub cpus: Option<u64>,
    pub online: Option<u64>,
    pub failed: Option<u64>,
    pub vmx_root: Option<u64>,
    /// Microseconds since the BSP's entry: processor list read.
    pub t_acpi_us: Option<u64>,
    /// First SIPI sent.
    pub t_first_sipi_us: Option<u64>,
    /// All APs online (bring-up finished).
    pub t_online_us: Option<u64>,
    /// Every core finished the VMX stage (absent with `vmx=off`).
    pub t_vmx_us: Option<u64>,
    /// The summary line.
    pub boot_us: Option<u64>,
    /// `smp: timing aps=`.
    pub aps: Option<u64>,
    pub sipi_to_pcb_us: Option<Spread>,
    pub sipi_to_vmx_us: Option<Spread>,
    /// `memory: footprint` key/value pairs, in order.
    pub footprint: Vec<(String, u64)>,
    /// The guest timestamp of the first serial line (µs).
    pub first_line_us: Option<u64>,
    /// The kernel's log: lines with a timestamp, and their bytes as sent (`\r\n` included); how the log
    /// grows with the core count (docs/serial-log.md, "Per-core lines at scale").
    pub log_lines: Option<u64>,
    pub log_bytes: Option<u64>,
}

impl GuestReport {
    /// Bring-up proper: processor list read until all APs online.
    pub fn bringup_us(&self) -> Option<u64> {
        Some(self.t_online_us?.saturating_sub(self.t_acpi_us?))
    }

    pub fn footprint_value(&self, key: &str) -> Option<u64> {
        self.footprint
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| *v)
    }

    /// Reads the lines the benchmark uses (through the typed parser of [`crate::serial`]); the first
    /// well-formed line of each kind counts. Summary values win over the `phases` line for the same phase.
    pub fn from_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> GuestReport {
        let mut r = GuestReport::default();
        let mut summary: Option<Summary> = None;
        let mut phases: Option<Phases> = None;
        let mut timing: Option<Timing> = None;
        let mut footprint: Option<Footprint> = None;
        fn first<T: Documented>(slot: &mut Option<T>, line: &LogLine) {
            if slot.is_none() {
                *slot = line.parse_as::<T>().and_then(Result::ok);
            }
        }
        let mut size = crate::serial::LogSize::default();
        for raw in lines {
            let Some(line) = LogLine::parse(raw) else {
                continue;
            };
            if line.ts_us.is_some() {
                size.lines += 1;
                size.bytes += raw.trim_end_matches(['\r', '\n']).len() + 2;
            }
            if r.first_line_us.is_none() {
                r.first_line_us = line.ts_us;
            }
            if summary.is_none() {
                summary = Summary::parse_line(raw);
                if summary.is_some() {
                    continue;
                }
            }
            first(&mut phases, &line);
            first(&mut timing, &line);
            first(&mut footprint, &line);
        }
        if size.lines > 0 {
            r.log_lines = Some(size.lines as u64);
            r.log_bytes = Some(size.bytes as u64);
        }
        if let Some(p) = phases {
            r.t_acpi_us = p.acpi_us;
            r.t_first_sipi_us = p.first_sipi_us;
            r.t_online_us = p.online_us;
            r.t_vmx_us = p.vmx_us;
            r.boot_us = p.summary_us;
        }
        if let Some(s) = &summary {
            let str_of = |k: &str| s.get(k).map(str::to_string);
            r.verdict = str_of("verdict");
            r.reason = str_of("reason");
            r.cpus = s.get_u64("cpus");
            r.online = s.get_u64("online");
            r.failed = s.get_u64("failed");
            r.vmx_root = s.get_u64("vmx_root");
            for (key, slot) in [
                ("t_acpi_us", &mut r.t_acpi_us),
                ("t_first_sipi_us", &mut r.t_first_sipi_us),
                ("t_online_us", &mut r.t_online_us),
                ("t_vmx_us", &mut r.t_vmx_us),
                ("boot_us", &mut r.boot_us),
            ] {
                if let Some(v) = s.get_u64(key) {
                    *slot = Some(v);
                }
            }
        }
        if let Some(t) = timing {
            r.aps = Some(t.aps);
            r.sipi_to_pcb_us = t.sipi_to_pcb_us;
            r.sipi_to_vmx_us = t.sipi_to_vmx_us;
        }
        if let Some(f) = footprint {
            r.footprint = f.0;
        }
        r
    }
}

/// How one boot ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStatus {
    Ok,
    Degraded,
    Fail,
    /// The emulator exited without a summary line.
    NoSummary,
    /// No summary line within the timeout.
    Timeout,
    /// The emulator reported a triple fault and there is no summary line.
    TripleFault,
    /// The emulator could not be started.
    Error,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Ok => "ok",
            RunStatus::Degraded => "degraded",
            RunStatus::Fail => "fail",
            RunStatus::NoSummary => "no_summary",
            RunStatus::Timeout => "timeout",
            RunStatus::TripleFault => "triple_fault",
            RunStatus::Error => "error",
        }
    }
}

pub use crate::session::Timed;

/// One boot's result.
#[derive(Clone, Debug)]
pub struct Sample {
    pub config: Config,
    /// 1-based.
    pub run: u32,
    pub status: RunStatus,
    pub guest: GuestReport,
    /// Emulator start to the first serial line of the kernel (emulator start-up, firmware, loader).
    pub wall_first_line: Option<Duration>,
    /// Emulator start to the summary line.
    pub wall_summary: Option<Duration>,
    /// Emulator start to its exit (or kill).
    pub wall_exit: Duration,
    /// For a failed run: what went wrong and the last lines.
    pub detail: String,
}

impl Sample {
    /// Builds a sample from a finished emulator session.
    pub fn from_session(config: Config, run: u32, ended: &Ended) -> Sample {
        Sample::from_ending(
            config,
            run,
            &ended.lines,
            ended.timed_out,
            ended.triple_fault,
            ended.wall,
        )
    }

    /// Builds a sample from the timestamped serial lines of a boot (no triple fault reported).
    pub fn from_timed(
        config: Config,
        run: u32,
        lines: &[Timed],
        timed_out: bool,
        wall_exit: Duration,
    ) -> Sample {
        Sample::from_ending(config, run, lines, timed_out, false, wall_exit)
    }

    pub(super) fn from_ending(
        config: Config,
        run: u32,
        lines: &[Timed],
        timed_out: bool,
        triple_fault: bool,
        wall_exit: Duration,
    ) -> Sample {
        let guest = GuestReport::from_lines(lines.iter().map(|t| t.line.as_str()));
        let wall_first_line = lines
            .iter()
            .find(|t| LogLine::parse(&t.line).is_some_and(|l| l.ts_us.is_some()))
            .map(|t| t.at);
        let wall_summary = lines
            .iter()
            .find(|t| Summary::parse_line(&t.line).is_some())
            .map(|t| t.at);
        let status = match (wall_summary, guest.verdict.as_deref()) {
            (Some(_), Some("ok")) => RunStatus::Ok,
            (Some(_), Some("degraded")) => RunStatus::Degraded,
            (Some(_), _) => RunStatus::Fail,
            (None, _) if timed_out => RunStatus::Timeout,
            (None, _) if triple_fault => RunStatus::TripleFault,
            (None, _) => RunStatus::NoSummary,
        };
        let mut detail = String::new();
        if status != RunStatus::Ok {
            let _ = write!(
                detail,
                "status={} verdict={} reason={}; last lines:",
                status.as_str(),
                guest.verdict.as_deref().unwrap_or("none"),
                guest.reason.as_deref().unwrap_or("none")
            );
            for t in &lines[lines.len().saturating_sub(8)..] {
                let _ = write!(detail, "\n    | {}", crate::serial::strip_ansi(&t.line));
            }
        }
        Sample {
            config,
            run,
            status,
            guest,
            wall_first_line,
            wall_summary,
            wall_exit,
            detail,
        }
    }

    /// A sample for a boot that could not be started.
    pub fn error(config: Config, run: u32, message: String) -> Sample {
        Sample {
            config,
            run,
            status: RunStatus::Error,
            guest: GuestReport::default(),
            wall_first_line: None,
            wall_summary: None,
            wall_exit: Duration::ZERO,
            detail: message,
        }
    }

    /// One line for the progress output.
    pub fn progress(&self) -> String {
        let ms = |v: Option<u64>| v.map_or("-".to_string(), |v| format!("{:.1}", v as f64 / 1e3));
        let s =
            |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{:.2}", d.as_secs_f64()));
        format!(
            "{} online={}/{} guest online={} ms vmx={} ms boot={} ms | wall first-line={} s summary={} s",
            self.status.as_str(),
            self.guest.online.map_or("-".into(), |v| v.to_string()),
            self.guest.cpus.map_or("-".into(), |v| v.to_string()),
            ms(self.guest.t_online_us),
            ms(self.guest.t_vmx_us),
            ms(self.guest.boot_us),
            s(self.wall_first_line),
            s(self.wall_summary),
        )
    }
}
