//! Per-core facts at any core count (docs/serial-log.md, "Per-core lines at scale"). Up to the kernel's
//! per-core threshold each core prints its own `smp: pcb` and `vmx: root` line and the BSP one `acpi: madt:
//! apic_id=` line per MADT processor entry; above it those lines are DEBUG and the BSP prints compact lines,
//! one per run of cores (or entries) whose facts advance in step. The functions here give the per-core
//! facts either way, every core (entry) once:
//!
//! - where compact lines are present they list every core (entry); a per-core line that is present too
//!   (all of them at `log=debug`, the BSP's own `pcb` line, which it logs before it knows the core count)
//!   must agree with its core's entry, and appears at most once;
//! - without compact lines the per-core lines are the list.

use std::collections::BTreeMap;

use super::lines::Fields;
use super::{
    all_of, Documented, LineError, LogLine, MadtEntry, Pcb, VmxGuest, VmxRoot, MADT_STATES,
};

/// A span of values: the first and how many.
type Span = (u32, u32);

/// `<a>` or `<a>-<b>` (b > a): the first value and how many.
pub fn parse_span(v: &str) -> Option<Span> {
    let num = |s: &str| -> Option<u32> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match v.split_once('-') {
        None => Some((num(v)?, 1)),
        Some((a, b)) => {
            let (a, b) = (num(a)?, num(b)?);
            (b > a).then(|| (a, b - a + 1))
        }
    }
}

impl Fields<'_> {
    fn span(&self, key: &str) -> Result<Span, LineError> {
        let v = self.text(key)?;
        parse_span(v).ok_or_else(|| self.error(format!("{key}={v} is not <n> or <first>-<last>")))
    }

    /// Two spans of the same length.
    fn spans(&self, a: &str, b: &str) -> Result<(Span, Span), LineError> {
        let (x, y) = (self.span(a)?, self.span(b)?);
        if x.1 != y.1 {
            return Err(self.error(format!("{a}= lists {} values but {b}= {}", x.1, y.1)));
        }
        Ok((x, y))
    }
}

/// `acpi: madt: entries apic_ids=<a>[-<b>] uids=<c>[-<d>] entry=<xapic|x2apic> state=<state>`: a run of MADT
/// processor entries in table order, APIC id and UID each one more than the entry before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MadtRun(pub Vec<MadtEntry>);

impl Documented for MadtRun {
    const MODULE: &'static str = "acpi";
    const PREFIX: &'static str = "madt: entries ";

    fn from_line(line: &LogLine) -> Result<MadtRun, LineError> {
        let f = Fields::of(line);
        let ((id, n), (uid, _)) = f.spans("apic_ids", "uids")?;
        let entry = f.one_of("entry", &["xapic", "x2apic"])?;
        let state = f.one_of("state", MADT_STATES)?;
        Ok(MadtRun(
            (0..n)
                .map(|k| MadtEntry {
                    apic_id: id + k,
                    uid: uid + k,
                    entry: entry.to_string(),
                    state: state.to_string(),
                })
                .collect(),
        ))
    }
}

/// `smp: pcb cpus=<a>[-<b>] apic_ids=<c>[-<d>] x2apic=<yes|no> stack=0x<bottom>-0x<top> guard=0x<g>
/// step=0x<s>`: a run of cores, index and APIC id one more from core to core, stack and guard page `step`
/// bytes higher (a guard of 0, none, stays 0); `stack=` and `guard=` are the first core's. Its [`Pcb`]s
/// have `logged_by: None` (the BSP printed them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PcbRun(pub Vec<Pcb>);

impl Documented for PcbRun {
    const MODULE: &'static str = "smp";
    const PREFIX: &'static str = "pcb cpus=";

    fn from_line(line: &LogLine) -> Result<PcbRun, LineError> {
        let f = Fields::of(line);
        let ((cpu, n), (apic_id, _)) = f.spans("cpus", "apic_ids")?;
        let x2apic = f.one_of("x2apic", &["yes", "no"])? == "yes";
        let (bottom, top) = f.hex_pair("stack", "-")?;
        let guard = f.hex("guard")?;
        let step = f.hex("step")?;
        if n > 1 && step == 0 {
            return Err(f.error("step=0x0 in a run of more than one core".into()));
        }
        let at = |base: u64, k: u32| {
            step.checked_mul(u64::from(k))
                .and_then(|d| base.checked_add(d))
                .ok_or_else(|| f.error("the run goes past the end of the address space".into()))
        };
        let mut pcbs = Vec::new();
        for k in 0..n {
            pcbs.push(Pcb {
                cpu: cpu + k,
                logged_by: None,
                apic_id: apic_id + k,
                x2apic,
                stack_bottom: at(bottom, k)?,
                stack_top: at(top, k)?,
                guard: if guard == 0 { 0 } else { at(guard, k)? },
            });
        }
        Ok(PcbRun(pcbs))
    }
}

/// `vmx: root cpus=<a>[-<b>] apic_ids=<c>[-<d>]`: a run of cores in VMX root operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmxRootRun(pub Vec<(u32, u32)>);

impl Documented for VmxRootRun {
    const MODULE: &'static str = "vmx";
    const PREFIX: &'static str = "root cpus=";

    fn from_line(line: &LogLine) -> Result<VmxRootRun, LineError> {
        let f = Fields::of(line);
        let ((cpu, n), (apic_id, _)) = f.spans("cpus", "apic_ids")?;
        Ok(VmxRootRun((0..n).map(|k| (cpu + k, apic_id + k)).collect()))
    }
}

/// `vmx: guest cpus=<a>[-<b>] apic_ids=<c>[-<d>] result=ok`: a run of cores whose test guest passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmxGuestRun(pub Vec<(u32, u32)>);

impl Documented for VmxGuestRun {
    const MODULE: &'static str = "vmx";
    const PREFIX: &'static str = "guest cpus=";

    fn from_line(line: &LogLine) -> Result<VmxGuestRun, LineError> {
        let f = Fields::of(line);
        let ((cpu, n), (apic_id, _)) = f.spans("cpus", "apic_ids")?;
        f.one_of("result", &["ok"])?;
        Ok(VmxGuestRun(
            (0..n).map(|k| (cpu + k, apic_id + k)).collect(),
        ))
    }
}

/// The APIC ids of the cores whose test guest passed, each once, sorted: the `vmx: guest cpus=` runs, or
/// without them the per-core `vmx: guest ... result=ok` lines (each of which must then be in a run too).
pub fn guest_ok_apic_ids(lines: &[LogLine]) -> Result<Vec<u32>, LineError> {
    let each: Vec<u32> = all_of::<VmxGuest>(lines)?
        .into_iter()
        .filter(|g| g.ok)
        .map(|g| g.apic_id)
        .collect();
    let runs: Vec<VmxGuestRun> = all_of(lines)?;
    apic_ids_once(
        each,
        runs.iter().map(|r| r.0.as_slice()),
        "a passing `vmx: guest` line",
        "`guest cpus=`",
        "a core's guest is listed twice",
    )
}

/// The APIC ids of a per-core fact, each once, sorted: from the compact runs (`(cpu, apic_id)` pairs) when there
/// are any, each per-core line's id (`each`) then having to be in a run too; without runs, from `each`.
fn apic_ids_once<'a>(
    each: Vec<u32>,
    runs: impl Iterator<Item = &'a [(u32, u32)]>,
    line: &str,
    run: &str,
    twice: &str,
) -> Result<Vec<u32>, LineError> {
    let listed: Vec<u32> = runs.flat_map(|r| r.iter().map(|c| c.1)).collect();
    let mut ids = if listed.is_empty() {
        each
    } else {
        if let Some(id) = each.iter().find(|id| !listed.contains(id)) {
            return Err(LineError::new(
                format!("apic_id={id} has {line} but is in no {run} run"),
                &format!("{listed:?}"),
            ));
        }
        listed
    };
    ids.sort_unstable();
    let n = ids.len();
    ids.dedup();
    if ids.len() != n {
        return Err(LineError::new(twice, &format!("{ids:?}")));
    }
    Ok(ids)
}

/// Whether the log is in the compact form (any compact line of the three kinds).
pub fn is_compact(lines: &[LogLine]) -> bool {
    lines.iter().any(|l| {
        l.is::<MadtRun>() || l.is::<PcbRun>() || l.is::<VmxRootRun>() || l.is::<VmxGuestRun>()
    })
}

/// The MADT's processor entries in table order: the `madt: entries` runs, or without them the
/// `madt: apic_id=` lines. When both are present (`log=debug` above the threshold) they must be the same list.
pub fn madt_entries(lines: &[LogLine]) -> Result<Vec<MadtEntry>, LineError> {
    let each: Vec<MadtEntry> = all_of(lines)?;
    let runs: Vec<MadtRun> = all_of(lines)?;
    if runs.is_empty() {
        return Ok(each);
    }
    let listed: Vec<MadtEntry> = runs.into_iter().flat_map(|r| r.0).collect();
    if !each.is_empty() && each != listed {
        let first = each
            .iter()
            .zip(&listed)
            .position(|(a, b)| a != b)
            .unwrap_or(each.len().min(listed.len()));
        return Err(LineError::new(
            format!(
                "the {} `madt: apic_id=` lines and the {} entries of the `madt: entries` lines differ from \
                 entry {first} on",
                each.len(),
                listed.len()
            ),
            &format!("{:?}", each.get(first)),
        ));
    }
    Ok(listed)
}

/// Every core's `smp: pcb` facts, sorted by index: the `pcb cpus=` runs with the per-core lines present
/// merged in (their `logged_by` set), or without runs the per-core lines. A core listed twice, or a
/// per-core line that disagrees with its run or has none, is the error.
pub fn core_pcbs(lines: &[LogLine]) -> Result<Vec<Pcb>, LineError> {
    let each: Vec<Pcb> = all_of(lines)?;
    let runs: Vec<PcbRun> = all_of(lines)?;
    let twice =
        |p: &Pcb| LineError::new(format!("cpu={} is listed twice", p.cpu), &format!("{p:?}"));
    if runs.is_empty() {
        let mut by_cpu: BTreeMap<u32, Pcb> = BTreeMap::new();
        for p in each {
            if by_cpu.insert(p.cpu, p.clone()).is_some() {
                return Err(twice(&p));
            }
        }
        return Ok(by_cpu.into_values().collect());
    }
    let mut by_cpu: BTreeMap<u32, Pcb> = BTreeMap::new();
    for p in runs.into_iter().flat_map(|r| r.0) {
        if by_cpu.insert(p.cpu, p.clone()).is_some() {
            return Err(twice(&p));
        }
    }
    for p in each {
        let Some(listed) = by_cpu.get_mut(&p.cpu) else {
            return Err(LineError::new(
                format!("cpu={} has a pcb line but is in no `pcb cpus=` run", p.cpu),
                &format!("{p:?}"),
            ));
        };
        if listed.logged_by.is_some() {
            return Err(twice(&p));
        }
        let mut own = p.clone();
        own.logged_by = None;
        if own != *listed {
            return Err(LineError::new(
                format!("cpu={}'s pcb line disagrees with its run {listed:?}", p.cpu),
                &format!("{p:?}"),
            ));
        }
        listed.logged_by = p.logged_by;
    }
    Ok(by_cpu.into_values().collect())
}

/// The APIC ids of the cores in VMX root operation, each once, sorted: the `vmx: root cpus=` runs, or
/// without them the per-core `vmx: root apic_id=` lines (each of which must then be in a run too).
pub fn vmx_root_apic_ids(lines: &[LogLine]) -> Result<Vec<u32>, LineError> {
    let each: Vec<u32> = all_of::<VmxRoot>(lines)?
        .iter()
        .map(|r| r.apic_id)
        .collect();
    let runs: Vec<VmxRootRun> = all_of(lines)?;
    apic_ids_once(
        each,
        runs.iter().map(|r| r.0.as_slice()),
        "a `vmx: root` line",
        "`root cpus=`",
        "a core is listed in VMX root twice",
    )
}

/// The kernel's default `log_per_core_max` (`hypervisor/src/log_scale.rs`, `DEFAULT_MAX_EACH`): above this many
/// CPUs a default boot's log is in the compact form and held to the budget below.
pub const KERNEL_PER_CORE_MAX: u32 = 64;

/// The default (INFO) log's budget at any core count (issue 12, "a log that scales"): at most this many
/// kernel lines...
pub const LOG_LINES_MAX: usize = 100;
/// ...and bytes (with their `\r\n`; under 1 s at 115200 baud).
pub const LOG_BYTES_MAX: usize = 11_500;
/// The summary line at most this many times as late as the last AP came online (`boot_us` against
/// `t_online_us`).
pub const SUMMARY_PER_ONLINE_MAX: u64 = 2;

/// The size of a log: its kernel lines (those with a timestamp) and their bytes as sent, `\r\n` included.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogSize {
    pub lines: usize,
    pub bytes: usize,
}

impl LogSize {
    pub fn of(log: &str) -> LogSize {
        let mut size = LogSize::default();
        for raw in log.lines() {
            if LogLine::parse(raw).is_some_and(|l| l.ts_us.is_some()) {
                size.lines += 1;
                size.bytes += raw.trim_end_matches('\r').len() + 2;
            }
        }
        size
    }
}

/// What is over the budget of a default-level log with summary `summary` (empty: within it): the line and
/// byte counts ([`LOG_LINES_MAX`], [`LOG_BYTES_MAX`]) and, when APs were started, `boot_us` against
/// `t_online_us` ([`SUMMARY_PER_ONLINE_MAX`]).
pub fn budget_problems(size: LogSize, summary: &super::Summary) -> Vec<String> {
    let mut out = Vec::new();
    if size.lines > LOG_LINES_MAX {
        out.push(format!(
            "{} log lines (at most {LOG_LINES_MAX})",
            size.lines
        ));
    }
    if size.bytes > LOG_BYTES_MAX {
        out.push(format!(
            "{} log bytes (at most {LOG_BYTES_MAX})",
            size.bytes
        ));
    }
    match (summary.get_u64("boot_us"), summary.get_u64("t_online_us")) {
        (Some(boot), Some(online)) if boot > online.saturating_mul(SUMMARY_PER_ONLINE_MAX) => out.push(format!(
            "the summary at boot_us={boot}, more than {SUMMARY_PER_ONLINE_MAX}x t_online_us={online}"
        )),
        (None, _) => out.push("no boot_us= in the summary".into()),
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_runs_and_per_core_guest_lines_agree() {
        let log = "\
[    0.100000] cpu0  INFO  vmx: guest cpus=0-2 apic_ids=0-2 result=ok
[    0.050000] cpu1  DEBUG vmx: guest apic_id=1 result=ok exits=5 cpuid=2 hlt=1 vmcall=2 other=0 bytes=40960
";
        let lines = crate::serial::parse_log(log);
        assert_eq!(guest_ok_apic_ids(&lines).unwrap(), [0, 1, 2]);
        assert!(is_compact(&lines));
        let stray = log.replace("apic_id=1 result=ok", "apic_id=7 result=ok");
        assert!(guest_ok_apic_ids(&crate::serial::parse_log(&stray)).is_err());
        let twice =
            format!("{log}[    0.100001] cpu0  INFO  vmx: guest cpus=2 apic_ids=2 result=ok\n");
        assert!(guest_ok_apic_ids(&crate::serial::parse_log(&twice)).is_err());
        let failed_run = log.replace("apic_ids=0-2 result=ok", "apic_ids=0-2 result=fail");
        assert!(guest_ok_apic_ids(&crate::serial::parse_log(&failed_run)).is_err());
        // Without runs, the passing per-core lines.
        let each = "[    0.050000] cpu1  INFO  vmx: guest apic_id=1 result=ok exits=5 cpuid=2 hlt=1 vmcall=2 other=0 bytes=1\n";
        assert_eq!(
            guest_ok_apic_ids(&crate::serial::parse_log(each)).unwrap(),
            [1]
        );
    }
    use crate::serial::parse_log;

    fn lines(text: &str) -> Vec<LogLine> {
        parse_log(text)
    }

    const BSP: &str = "[    0.017320] cpu0  INFO  smp: pcb cpu=0 apic_id=0 x2apic=yes stack=0x101000-0x111000 guard=0x100000";
    const RUNS: &str = "\
[    1.700000] cpu0  INFO  smp: pcb cpus=0 apic_ids=0 x2apic=yes stack=0x101000-0x111000 guard=0x100000 step=0x0
[    1.700001] cpu0  INFO  smp: pcb cpus=1-1023 apic_ids=1-1023 x2apic=yes stack=0x130000-0x140000 guard=0x12f000 step=0x11000
";

    #[test]
    fn spans() {
        assert_eq!(parse_span("7"), Some((7, 1)));
        assert_eq!(parse_span("0-1023"), Some((0, 1024)));
        for bad in [
            "", "-", "3-3", "4-3", "1-", "-1", "+1", "1-+2", "0x1", "a-b", "1-2-3",
        ] {
            assert_eq!(parse_span(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn pcb_runs_expand_to_every_core() {
        let pcbs = core_pcbs(&lines(&format!("{BSP}\n{RUNS}"))).unwrap();
        assert_eq!(pcbs.len(), 1024);
        assert_eq!(
            pcbs[0].logged_by,
            Some(0),
            "the BSP's own line is merged in"
        );
        assert!(pcbs[1..].iter().all(|p| p.logged_by.is_none()));
        let last = &pcbs[1023];
        assert_eq!((last.cpu, last.apic_id), (1023, 1023));
        assert_eq!(last.stack_bottom, 0x130000 + 1022 * 0x11000);
        assert_eq!(last.stack_top, 0x140000 + 1022 * 0x11000);
        assert_eq!(last.guard, last.stack_bottom - 0x1000);
        assert!(is_compact(&lines(RUNS)));
        assert!(!is_compact(&lines(BSP)));
    }

    #[test]
    fn per_core_lines_must_agree_with_their_run() {
        let ap = "[    0.030000] cpu5  DEBUG smp: pcb cpu=5 apic_id=5 x2apic=yes stack=0x174000-0x184000 guard=0x173000";
        let pcbs = core_pcbs(&lines(&format!("{BSP}\n{ap}\n{RUNS}"))).unwrap();
        assert_eq!(pcbs[5].logged_by, Some(5));
        for (bad, why) in [
            (ap.replace("0x174000-", "0x175000-"), "disagrees"),
            (ap.replace("apic_id=5", "apic_id=6"), "disagrees"),
            (ap.replace("x2apic=yes", "x2apic=no"), "disagrees"),
            (ap.replace("cpu=5", "cpu=1024"), "in no `pcb cpus=` run"),
            (format!("{ap}\n{ap}"), "listed twice"),
        ] {
            let e = core_pcbs(&lines(&format!("{BSP}\n{bad}\n{RUNS}"))).unwrap_err();
            assert!(e.why.contains(why), "{bad}: {e}");
        }
        // Two runs that list one core twice.
        let e = core_pcbs(&lines(&format!("{RUNS}{RUNS}"))).unwrap_err();
        assert!(e.why.contains("listed twice"), "{e}");
        // Without runs, the per-core lines are the list, each core once.
        assert_eq!(core_pcbs(&lines(&format!("{BSP}\n{ap}"))).unwrap().len(), 2);
        assert!(core_pcbs(&lines(&format!("{BSP}\n{BSP}"))).is_err());
    }

    #[test]
    fn malformed_pcb_runs() {
        let run = "[    1.700001] cpu0  INFO  smp: pcb cpus=1-3 apic_ids=1-3 x2apic=yes stack=0x130000-0x140000 guard=0x12f000 step=0x11000";
        assert_eq!(core_pcbs(&lines(run)).unwrap().len(), 3);
        for (from, to) in [
            ("apic_ids=1-3", "apic_ids=1-4"),
            ("cpus=1-3", "cpus=3-1"),
            ("step=0x11000", "step=0x0"),
            ("step=0x11000", "step=11000"),
            (" step=0x11000", ""),
            ("guard=0x12f000", "guard=x"),
            ("x2apic=yes", "x2apic=1"),
            ("step=0x11000", "step=0xffffffffffffffff"),
        ] {
            assert!(core_pcbs(&lines(&run.replace(from, to))).is_err(), "{to}");
        }
        let no_guard = run.replace("guard=0x12f000", "guard=0x0");
        assert!(core_pcbs(&lines(&no_guard))
            .unwrap()
            .iter()
            .all(|p| p.guard == 0));
    }

    const MADT: &str = "\
[    1.800000] cpu0  INFO  acpi: madt: entries apic_ids=0-254 uids=0-254 entry=xapic state=usable
[    1.800001] cpu0  INFO  acpi: madt: entries apic_ids=255-1023 uids=255-1023 entry=x2apic state=usable
";

    #[test]
    fn madt_runs_expand_in_table_order() {
        let m = madt_entries(&lines(MADT)).unwrap();
        assert_eq!(m.len(), 1024);
        assert_eq!((m[254].apic_id, m[254].entry.as_str()), (254, "xapic"));
        assert_eq!(
            (m[255].apic_id, m[255].uid, m[255].entry.as_str()),
            (255, 255, "x2apic")
        );
        // At log=debug the per-entry lines are there too: they must be the same list.
        let each: String = (0..1024)
            .map(|i| {
                let kind = if i < 255 { "xapic" } else { "x2apic" };
                format!("[    1.700000] cpu0  DEBUG acpi: madt: apic_id={i} uid={i} entry={kind} state=usable\n")
            })
            .collect();
        assert_eq!(madt_entries(&lines(&format!("{each}{MADT}"))).unwrap(), m);
        let moved = each.replace(
            "apic_id=7 uid=7 entry=xapic state=usable",
            "apic_id=7 uid=7 entry=xapic state=disabled",
        );
        let e = madt_entries(&lines(&format!("{moved}{MADT}"))).unwrap_err();
        assert!(e.why.contains("differ from entry 7 on"), "{e}");
        let short: String = each.lines().take(1000).map(|l| format!("{l}\n")).collect();
        assert!(madt_entries(&lines(&format!("{short}{MADT}"))).is_err());
        for (from, to) in [
            ("uids=0-254", "uids=0-253"),
            ("state=usable", "state=fine"),
            ("entry=xapic", "entry=apic"),
            ("apic_ids=0-254", "apic_ids=0-x"),
        ] {
            assert!(
                madt_entries(&lines(&MADT.replacen(from, to, 1))).is_err(),
                "{to}"
            );
        }
    }

    #[test]
    fn log_size_and_budget() {
        let log = "noise from the firmware\n\
                   [    0.000010] cpu0  INFO  boot: x\r\n\
                   boot32: no timestamp\n\
                   [    0.000020] cpu0  INFO  boot: yz\n";
        let size = LogSize::of(log);
        let sent = "[    0.000010] cpu0  INFO  boot: x\r\n".len()
            + "[    0.000020] cpu0  INFO  boot: yz\r\n".len();
        assert_eq!(
            size,
            LogSize {
                lines: 2,
                bytes: sent
            }
        );
        let summary = |boot: u64, online: Option<u64>| {
            let online = online.map_or(String::new(), |o| format!(" t_online_us={o}"));
            crate::serial::Summary::parse_line(&format!(
                "[    0.000001] cpu0  INFO  hypervisor: summary: verdict=ok boot_us={boot}{online}"
            ))
            .unwrap()
        };
        let ok = LogSize {
            lines: 100,
            bytes: 11_500,
        };
        assert!(budget_problems(ok, &summary(2000, Some(1000))).is_empty());
        assert!(
            budget_problems(ok, &summary(2000, None)).is_empty(),
            "no APs: no timing bound"
        );
        let late = budget_problems(ok, &summary(2001, Some(1000)));
        assert_eq!(
            late,
            ["the summary at boot_us=2001, more than 2x t_online_us=1000"]
        );
        let big = budget_problems(
            LogSize {
                lines: 101,
                bytes: 11_501,
            },
            &summary(1, Some(1)),
        );
        assert_eq!(
            big,
            [
                "101 log lines (at most 100)",
                "11501 log bytes (at most 11500)"
            ]
        );
        let none = crate::serial::Summary::parse_line(
            "[    0.000001] cpu0  INFO  hypervisor: summary: verdict=ok",
        )
        .unwrap();
        assert_eq!(budget_problems(ok, &none), ["no boot_us= in the summary"]);
    }

    /// A run pairs each logical index with its APIC id, both counting up from the run's first core.
    #[test]
    fn vmx_runs_pair_indices_and_apic_ids() {
        let root = lines("[    0.400000] cpu0  INFO  vmx: root cpus=1-3 apic_ids=4-6\n");
        let guest =
            lines("[    0.400000] cpu0  INFO  vmx: guest cpus=1-3 apic_ids=4-6 result=ok\n");
        let pairs = vec![(1, 4), (2, 5), (3, 6)];
        assert_eq!(
            root[0].parse_as::<VmxRootRun>().unwrap().unwrap(),
            VmxRootRun(pairs.clone())
        );
        assert_eq!(
            guest[0].parse_as::<VmxGuestRun>().unwrap().unwrap(),
            VmxGuestRun(pairs)
        );
    }

    #[test]
    fn vmx_root_runs() {
        let root = "[    0.389609] cpu1  DEBUG vmx: root apic_id=1 feature_control=0x5->0x5 cr0=0x80010033 cr4=0x2020 revision=0x2b vmxon=0x189000 vmcs=0x18a000";
        let runs = "[    0.400000] cpu0  INFO  vmx: root cpus=0-3 apic_ids=0-3\n";
        assert_eq!(vmx_root_apic_ids(&lines(runs)).unwrap(), [0, 1, 2, 3]);
        assert_eq!(
            vmx_root_apic_ids(&lines(&format!("{root}\n{runs}"))).unwrap(),
            [0, 1, 2, 3]
        );
        assert_eq!(vmx_root_apic_ids(&lines(root)).unwrap(), [1]);
        let outside = root.replace("apic_id=1", "apic_id=9");
        assert!(vmx_root_apic_ids(&lines(&format!("{outside}\n{runs}"))).is_err());
        assert!(vmx_root_apic_ids(&lines(&format!("{runs}{runs}"))).is_err());
        assert!(vmx_root_apic_ids(&lines(&runs.replace("apic_ids=0-3", "apic_ids=0-2"))).is_err());
    }
}
