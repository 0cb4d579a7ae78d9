//! `cargo run -- soak`: boots the image many times to shake out races in the concurrent code
//! (parallel AP bring-up, the shared serial log, the VMX stage on every core).
//!
//! QEMU TCG boots cycle through core counts and both TCG threading modes (`-accel tcg,thread=multi`
//! = one host thread per vCPU, `-accel tcg,thread=single` = all vCPUs on one host thread, a
//! different interleaving) and the q35 and pc machines, with `vmx=off`; Bochs boots (VMX on) cycle through
//! its core counts. Every boot goes through the runner ([`crate::run`], so its timeout and crash
//! detection apply) and is judged by [`check`]:
//!
//! - **hang**: no summary line within the timeout (the runner killed the emulator);
//! - **crash**: the emulator exited without a summary line (reset, triple fault, emulator crash);
//! - **garbled**: a kernel line that does not follow docs/serial-log.md exactly, a timestamp going
//!   backwards, a second summary line;
//! - **mismatch**: the summary disagrees with the MADT (`cpus=` vs the `acpi: madt: ... state=usable`
//!   lines and the CPU count given to the emulator; `online=` vs the `smp: pcb` lines, one per core
//!   from that core; `failed=0`; `vmx_root=` vs the `vmx: root` lines). Above the kernel's per-core
//!   threshold the BSP's compact runs (`madt: entries`, `pcb cpus=`, `root cpus=`) list every core instead
//!   and are checked the same way, core by core (`crate::serial::per_core`);
//! - **verdict**: any verdict but `ok`, or an ERROR line;
//! - **budget**: above the kernel's per-core threshold (64 CPUs), a log over its budget (more than 100
//!   lines or 11.5 KB, or the summary later than twice `t_online_us`; `crate::serial::budget_problems`).
//!
//! It prints a table of counts per configuration and exits non-zero if any boot failed; each failed
//! boot's log is kept in `target/soak/`. See docs/reliability.md for the recorded counts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::args::{cpu_list, Args};
use crate::serial::{LogLine, MadtEntry, Pcb, Summary};
use crate::{Backend, Engine, Machine, Outcome, RunSpec, Status};

pub const USAGE: &str = "\
Usage: cargo run -- soak [--runs N] [--bochs-runs M] [--cpus LIST] [--bochs-cpus LIST] [--timeout S]

Boots the image N times in QEMU TCG (vmx=off; core counts from LIST, alternating -accel
tcg,thread=multi and tcg,thread=single, q35 and pc) and M times in Bochs (VMX on), and fails on any hang, crash,
garbled log line, summary that disagrees with the MADT, or verdict other than ok. Prints a table of
counts; exit status 0 when every boot passed, 1 otherwise (failed logs in target/soak/).

Options:
  --runs N            QEMU boots (default 200)
  --bochs-runs M      Bochs boots (default 20)
  --cpus LIST         QEMU CPU counts, comma-separated (default 1,2,3,4,6,8,12,16,24,32,48,64; up to 4096:
                      above 255 x2APIC on q35, QEMU 9.0 or later, e.g. 288,512,1024)
  --bochs-cpus LIST   Bochs CPU counts (default 1,2,4,8,15; at most 15)
  --timeout S         per-boot timeout in seconds (default 120 for QEMU, 300 for Bochs)
";

/// The most CPUs a soak boot may ask for: QEMU's q35 limit (above 255 the runner plans x2APIC, which needs QEMU
/// 9.0 or later, e.g. `--cpus 288,512,1024`).
pub const SOAK_MAX_CPUS: u32 = 4096;

pub const DEFAULT_QEMU_CPUS: &[u32] = &[1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64];
pub const DEFAULT_BOCHS_CPUS: &[u32] = &[1, 2, 4, 8, 15];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SoakSpec {
    pub runs: u32,
    pub bochs_runs: u32,
    pub cpus: Vec<u32>,
    pub bochs_cpus: Vec<u32>,
    /// Per-boot timeout; `None`: 120 s for QEMU, 300 s for Bochs.
    pub timeout: Option<Duration>,
}

impl Default for SoakSpec {
    fn default() -> Self {
        SoakSpec {
            runs: 200,
            bochs_runs: 20,
            cpus: DEFAULT_QEMU_CPUS.to_vec(),
            bochs_cpus: DEFAULT_BOCHS_CPUS.to_vec(),
            timeout: None,
        }
    }
}

/// Parses the arguments after `soak`. `Ok(None)` for `--help`.
pub fn parse_args(args: &[String]) -> Result<Option<SoakSpec>, String> {
    let mut spec = SoakSpec::default();
    let mut args = Args::new(args.iter().cloned());
    while let Some(opt) = args.next_opt() {
        match opt.name.as_str() {
            "-h" | "--help" => return Ok(None),
            "--runs" => spec.runs = args.number(&opt, |_| true, "expected a count")?,
            "--bochs-runs" => spec.bochs_runs = args.number(&opt, |_| true, "expected a count")?,
            // The boots cycle through the counts in the order given.
            "--cpus" => spec.cpus = cpu_list("--cpus", &args.value(&opt)?, SOAK_MAX_CPUS)?,
            "--bochs-cpus" => {
                spec.bochs_cpus =
                    cpu_list("--bochs-cpus", &args.value(&opt)?, crate::bochs::MAX_CPUS)?
            }
            "--timeout" => {
                let s = args.number(&opt, |&s: &u64| s > 0, "expected seconds > 0")?;
                spec.timeout = Some(Duration::from_secs(s));
            }
            other => return Err(format!("soak: unknown argument {other:?}")),
        }
    }
    Ok(Some(spec))
}

/// One planned boot: its engine, CPU count and (QEMU) machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub engine: Engine,
    pub cpus: u32,
    pub machine: Option<Machine>,
}

impl Config {
    pub fn describe(&self) -> String {
        match self.machine {
            Some(m) => format!(
                "{} {} cpus={}",
                self.engine.describe(),
                m.as_str(),
                self.cpus
            ),
            None => format!("{} cpus={}", self.engine.describe(), self.cpus),
        }
    }

    /// The runner's spec for this boot.
    pub fn run_spec(&self, timeout: Option<Duration>) -> RunSpec {
        match self.engine {
            Engine::Bochs => RunSpec {
                backend: Backend::Bochs,
                smp: self.cpus.to_string(),
                timeout: Some(timeout.unwrap_or(Duration::from_secs(300))),
                quiet: true,
                ..RunSpec::default()
            },
            Engine::TcgMulti | Engine::TcgSingle => RunSpec {
                backend: Backend::Qemu,
                smp: self.cpus.to_string(),
                machine: self.machine,
                append: "vmx=off".into(),
                // x2APIC counts take longer: QEMU alone spends about 100 s starting 1024 vCPUs here.
                timeout: Some(timeout.unwrap_or(Duration::from_secs(
                    if self.cpus > crate::qemu::XAPIC_MAX_CPUS {
                        120 + u64::from(self.cpus) / 4
                    } else {
                        120
                    },
                ))),
                quiet: true,
                // Explicit either way: the runner's default depends on the CPU count.
                extra_args: vec![
                    "-accel".into(),
                    self.engine.qemu_accel().unwrap_or("tcg").into(),
                ],
                ..RunSpec::default()
            },
        }
    }
}

/// The boots of a soak, in order: QEMU boots cycle through the CPU counts, each count once with
/// multi-threaded and once with single-threaded TCG, the machine alternating q35/pc per round;
/// then the Bochs boots cycle through their CPU counts.
pub fn plan(spec: &SoakSpec) -> Vec<Config> {
    let mut out = Vec::new();
    let n = spec.cpus.len().max(1);
    for i in 0..spec.runs as usize {
        let cpus = spec.cpus.get(i % n).copied().unwrap_or(1);
        let round = i / n;
        let engine = if round.is_multiple_of(2) {
            Engine::TcgMulti
        } else {
            Engine::TcgSingle
        };
        // The pc machine holds at most 255 CPUs: x2APIC counts boot on q35 only.
        let machine = if (round / 2).is_multiple_of(2) || cpus > crate::qemu::XAPIC_MAX_CPUS {
            Machine::Q35
        } else {
            Machine::Pc
        };
        out.push(Config {
            engine,
            cpus,
            machine: Some(machine),
        });
    }
    let m = spec.bochs_cpus.len().max(1);
    for i in 0..spec.bochs_runs as usize {
        out.push(Config {
            engine: Engine::Bochs,
            cpus: spec.bochs_cpus.get(i % m).copied().unwrap_or(1),
            machine: None,
        });
    }
    out
}

/// What went wrong with one boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Problem {
    Hang,
    Crash,
    Garbled,
    Mismatch,
    Verdict,
    Budget,
}

impl Problem {
    pub const ALL: [Problem; 6] = [
        Problem::Hang,
        Problem::Crash,
        Problem::Garbled,
        Problem::Mismatch,
        Problem::Verdict,
        Problem::Budget,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Problem::Hang => "hang",
            Problem::Crash => "crash",
            Problem::Garbled => "garbled",
            Problem::Mismatch => "mismatch",
            Problem::Verdict => "verdict",
            Problem::Budget => "budget",
        }
    }
}

/// The findings about one boot: every problem with a line of explanation.
pub fn check(boot: &Config, o: &Outcome) -> Vec<(Problem, String)> {
    let mut out = Vec::new();
    match o.status {
        Status::Timeout => out.push((
            Problem::Hang,
            format!(
                "no summary line within {} s",
                o.timeout.map_or(0, |t| t.as_secs())
            ),
        )),
        Status::NoSummary | Status::TripleFault => out.push((
            Problem::Crash,
            format!(
                "the emulator ended without a summary line ({:?}, exit {:?})",
                o.status, o.emulator_exit
            ),
        )),
        _ => {}
    }
    out.extend(check_log(&o.log, boot.cpus, boot.engine == Engine::Bochs));
    out
}

/// The log checks of [`check`] (pure): format, order, one summary, summary against the MADT.
pub fn check_log(log: &str, expected_cpus: u32, vmx: bool) -> Vec<(Problem, String)> {
    let mut out = Vec::new();
    // Firmware and GRUB write to the serial port before the kernel: everything before the
    // kernel's first line is theirs. From there on every line is the kernel's.
    let lines: Vec<&str> = log.lines().collect();
    let first = lines.iter().position(|l| LogLine::parse_strict(l).is_ok());
    let mut last_ts = 0u64;
    let mut summaries = 0;
    for l in lines.iter().skip(first.unwrap_or(lines.len())) {
        if l.is_empty() {
            continue;
        }
        match LogLine::parse_strict(l) {
            Ok(LogLine {
                ts_us: Some(ts), ..
            }) => {
                if ts < last_ts {
                    out.push((
                        Problem::Garbled,
                        format!("timestamp goes backwards ({last_ts} us before): {l:?}"),
                    ));
                }
                last_ts = last_ts.max(ts);
            }
            Ok(_) => {}
            Err(e) => out.push((Problem::Garbled, e.to_string())),
        }
        if Summary::parse_line(l).is_some() {
            summaries += 1;
        }
    }
    if summaries > 1 {
        out.push((
            Problem::Garbled,
            format!("{summaries} summary lines (exactly one expected)"),
        ));
    }
    let parsed: Vec<LogLine> = crate::serial::parse_log(log);
    let Some(summary) = Summary::find_in(log) else {
        return out;
    };
    let get = |k: &str| summary.get_u64(k);
    if summary.get("verdict") != Some("ok") {
        out.push((
            Problem::Verdict,
            format!(
                "verdict={} reason={}",
                summary.get("verdict").unwrap_or("?"),
                summary.get("reason").unwrap_or("?")
            ),
        ));
    }
    for l in parsed
        .iter()
        .filter(|l| l.level == Some(crate::Level::Error))
    {
        out.push((
            Problem::Verdict,
            format!("ERROR line: {}: {}", l.module, l.message),
        ));
    }
    // The documented lines the checks compare; one that does not follow the contract is garbled.
    let madt: Vec<MadtEntry> = garbled_if_err(crate::serial::madt_entries(&parsed), &mut out);
    let usable: Vec<&MadtEntry> = madt.iter().filter(|m| m.state == "usable").collect();
    let pcbs: Vec<Pcb> = garbled_if_err(crate::serial::core_pcbs(&parsed), &mut out);
    let roots: Vec<u32> = garbled_if_err(crate::serial::vmx_root_apic_ids(&parsed), &mut out);
    let guests: Vec<u32> = garbled_if_err(crate::serial::guest_ok_apic_ids(&parsed), &mut out);
    let mut mismatch = |what: String| out.push((Problem::Mismatch, what));
    if get("cpus") != Some(u64::from(expected_cpus)) {
        mismatch(format!(
            "cpus={:?} but the emulator has {expected_cpus} CPUs",
            get("cpus")
        ));
    }
    if get("cpus") != Some(usable.len() as u64) {
        mismatch(format!(
            "cpus={:?} but {} usable MADT entries were logged",
            get("cpus"),
            usable.len()
        ));
    }
    if get("online") != get("cpus") || get("failed") != Some(0) {
        mismatch(format!(
            "online={:?} failed={:?} of cpus={:?}",
            get("online"),
            get("failed"),
            get("cpus")
        ));
    }
    if get("online") != Some(pcbs.len() as u64) {
        mismatch(format!(
            "online={:?} but {} pcb lines",
            get("online"),
            pcbs.len()
        ));
    }
    let mut by_index: BTreeMap<u64, usize> = BTreeMap::new();
    for p in &pcbs {
        // `None`: known from the BSP's compact run only (above the per-core threshold).
        if p.logged_by.is_none_or(|c| c == p.cpu) {
            *by_index.entry(u64::from(p.cpu)).or_default() += 1;
        } else {
            mismatch(format!(
                "pcb line not from its own core: cpu{:?} pcb cpu={} apic_id={}",
                p.logged_by, p.cpu, p.apic_id
            ));
        }
    }
    if by_index.values().any(|&n| n != 1) || by_index.keys().copied().ne(0..by_index.len() as u64) {
        mismatch(format!(
            "pcb lines are not one per core 0..{}: {by_index:?}",
            by_index.len()
        ));
    }
    let mut madt_ids: Vec<u32> = usable.iter().map(|m| m.apic_id).collect();
    let mut pcb_ids: Vec<u32> = pcbs.iter().map(|p| p.apic_id).collect();
    madt_ids.sort_unstable();
    pcb_ids.sort_unstable();
    if madt_ids != pcb_ids {
        mismatch(format!(
            "APIC ids of the pcb lines {pcb_ids:?} differ from the usable MADT entries {madt_ids:?}"
        ));
    }
    let roots_ids = roots.clone();
    let roots = roots.len() as u64;
    let want_root = if vmx { get("online") } else { Some(0) };
    if get("vmx_root") != want_root || get("vmx_root") != Some(roots) {
        mismatch(format!(
            "vmx_root={:?} with {roots} `vmx: root` lines (expected {want_root:?})",
            get("vmx_root")
        ));
    }
    // Each passing guest is a core in VMX root, and `guests=` counts exactly them (0 with guest=off).
    if let Some(n) = get("guests") {
        if n != guests.len() as u64 || guests.iter().any(|id| !roots_ids.contains(id)) {
            mismatch(format!(
                "guests={n} but the passing `vmx: guest` lines are {guests:?} (cores in VMX root {roots_ids:?})"
            ));
        }
    }
    if expected_cpus > crate::serial::per_core::KERNEL_PER_CORE_MAX {
        for why in crate::serial::budget_problems(crate::serial::LogSize::of(log), &summary) {
            out.push((Problem::Budget, why));
        }
    }
    out
}

/// The per-core facts, or nothing and a garbled line when the lines do not follow the contract.
fn garbled_if_err<T>(
    r: Result<Vec<T>, crate::serial::LineError>,
    out: &mut Vec<(Problem, String)>,
) -> Vec<T> {
    r.unwrap_or_else(|e| {
        out.push((Problem::Garbled, e.to_string()));
        Vec::new()
    })
}

/// One finished boot.
#[derive(Clone, Debug)]
pub struct BootResult {
    pub boot: Config,
    pub problems: Vec<(Problem, String)>,
    pub wall: Duration,
    /// Where the log of a failed boot was saved.
    pub saved: Option<std::path::PathBuf>,
}

/// Counts per configuration.
#[derive(Clone, Debug, Default)]
pub struct Row {
    pub boots: u32,
    pub passed: u32,
    pub problems: BTreeMap<Problem, u32>,
    pub max_wall: Duration,
    pub total_wall: Duration,
}

pub type Table = BTreeMap<(Engine, u32), Row>;

pub fn tabulate(results: &[BootResult]) -> Table {
    let mut t = Table::new();
    for r in results {
        let row = t.entry((r.boot.engine, r.boot.cpus)).or_default();
        row.boots += 1;
        if r.problems.is_empty() {
            row.passed += 1;
        }
        let mut seen: Vec<Problem> = r.problems.iter().map(|p| p.0).collect();
        seen.sort();
        seen.dedup();
        for p in seen {
            *row.problems.entry(p).or_default() += 1;
        }
        row.max_wall = row.max_wall.max(r.wall);
        row.total_wall += r.wall;
    }
    t
}

/// The table as printed (and pasted into docs/reliability.md): a Markdown table.
pub fn render(t: &Table) -> String {
    let mut s = String::new();
    let _ = write!(s, "| engine | cpus | boots | passed |");
    for p in Problem::ALL {
        let _ = write!(s, " {} |", p.name());
    }
    let _ = writeln!(s, " mean s | max s |");
    let _ = write!(s, "|---|---:|---:|---:|");
    for _ in Problem::ALL {
        let _ = write!(s, "---:|");
    }
    let _ = writeln!(s, "---:|---:|");
    let mut total = Row::default();
    for ((engine, cpus), row) in t {
        line(&mut s, engine.describe(), &cpus.to_string(), row);
        total.boots += row.boots;
        total.passed += row.passed;
        for (p, n) in &row.problems {
            *total.problems.entry(*p).or_default() += n;
        }
        total.max_wall = total.max_wall.max(row.max_wall);
        total.total_wall += row.total_wall;
    }
    line(&mut s, "**total**", "", &total);
    s
}

fn line(s: &mut String, engine: &str, cpus: &str, row: &Row) {
    let _ = write!(s, "| {engine} | {cpus} | {} | {} |", row.boots, row.passed);
    for p in Problem::ALL {
        let _ = write!(s, " {} |", row.problems.get(&p).copied().unwrap_or(0));
    }
    let mean = row.total_wall.as_secs_f64() / f64::from(row.boots.max(1));
    let _ = writeln!(s, " {mean:.2} | {:.2} |", row.max_wall.as_secs_f64());
}

/// Runs the boots of `plan`, calling `progress` after each. A runner error (missing emulator,
/// build failure) ends the soak with that error.
pub fn run_plan(
    boots: &[Config],
    timeout: Option<Duration>,
    mut progress: impl FnMut(usize, &BootResult),
) -> Result<Vec<BootResult>, crate::RunError> {
    let dir = crate::image::target_dir().join("soak");
    let mut results = Vec::new();
    for (i, boot) in boots.iter().enumerate() {
        let o = crate::run(&boot.run_spec(timeout))?;
        let problems = check(boot, &o);
        let saved = if problems.is_empty() {
            None
        } else {
            let _ = std::fs::create_dir_all(&dir);
            let path = dir.join(format!("failed-{}-{i}.log", std::process::id()));
            let mut text = format!("{}\n", boot.describe());
            for (p, why) in &problems {
                let _ = writeln!(text, "problem: {}: {why}", p.name());
            }
            let _ = write!(text, "{}\n--- serial log:\n{}\n", o.report(), o.log);
            let _ = writeln!(text, "--- emulator output:\n{}", o.emulator_output);
            std::fs::write(&path, text).ok().map(|_| path)
        };
        let r = BootResult {
            boot: boot.clone(),
            problems,
            wall: o.wall,
            saved,
        };
        progress(i, &r);
        results.push(r);
    }
    Ok(results)
}

/// `cargo run -- soak`: returns the process exit status.
pub fn run_soak(spec: &SoakSpec) -> i32 {
    let boots = plan(spec);
    eprintln!(
        "soak: {} boots ({} QEMU TCG, {} Bochs)",
        boots.len(),
        spec.runs,
        spec.bochs_runs
    );
    let n = boots.len();
    let started = std::time::Instant::now();
    let results = match run_plan(&boots, spec.timeout, |i, r| {
        let verdict = if r.problems.is_empty() {
            "pass".to_string()
        } else {
            let names: Vec<&str> = r.problems.iter().map(|p| p.0.name()).collect();
            format!("FAIL ({})", names.join(", "))
        };
        eprintln!(
            "soak: [{}/{n}] {} {verdict} {:.2} s",
            i + 1,
            r.boot.describe(),
            r.wall.as_secs_f64()
        );
        for (p, why) in r.problems.iter().take(5) {
            eprintln!("soak:     {}: {why}", p.name());
        }
        if let Some(path) = &r.saved {
            eprintln!("soak:     log saved to {}", path.display());
        }
    }) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("soak: {e}");
            return e.exit_code();
        }
    };
    let table = tabulate(&results);
    println!("{}", render(&table));
    let failed = results.iter().filter(|r| !r.problems.is_empty()).count();
    println!(
        "soak: {} boots, {} passed, {failed} failed, {:.0} s",
        results.len(),
        results.len() - failed,
        started.elapsed().as_secs_f64()
    );
    i32::from(failed > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_options() {
        let s = parse_args(&args(&["--runs", "5", "--bochs-runs=2", "--cpus", "1,64"]))
            .unwrap()
            .unwrap();
        assert_eq!((s.runs, s.bochs_runs, s.cpus.clone()), (5, 2, vec![1, 64]));
        assert_eq!(parse_args(&args(&["--help"])).unwrap(), None);
        for bad in [
            &["--runs"][..],
            &["--runs", "x"],
            &["--cpus", "0"],
            &["--bochs-cpus", "16"],
            &["--timeout", "0"],
            &["stray"],
        ] {
            assert!(parse_args(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn x2apic_counts_boot_on_q35_only() {
        let spec = SoakSpec {
            runs: 8,
            bochs_runs: 0,
            cpus: vec![4, 1024],
            bochs_cpus: vec![],
            timeout: None,
        };
        let p = plan(&spec);
        assert!(p
            .iter()
            .filter(|b| b.cpus == 1024)
            .all(|b| b.machine == Some(Machine::Q35)));
        assert!(p
            .iter()
            .any(|b| b.cpus == 4 && b.machine == Some(Machine::Pc)));
    }

    #[test]
    fn plan_cycles_counts_threading_and_machines() {
        let spec = SoakSpec {
            runs: 8,
            bochs_runs: 3,
            cpus: vec![1, 4],
            bochs_cpus: vec![2, 15],
            timeout: None,
        };
        let p = plan(&spec);
        assert_eq!(p.len(), 11);
        let q: Vec<(Engine, u32, Option<Machine>)> =
            p.iter().map(|b| (b.engine, b.cpus, b.machine)).collect();
        use Engine::*;
        use Machine::*;
        assert_eq!(
            q[..8],
            [
                (TcgMulti, 1, Some(Q35)),
                (TcgMulti, 4, Some(Q35)),
                (TcgSingle, 1, Some(Q35)),
                (TcgSingle, 4, Some(Q35)),
                (TcgMulti, 1, Some(Pc)),
                (TcgMulti, 4, Some(Pc)),
                (TcgSingle, 1, Some(Pc)),
                (TcgSingle, 4, Some(Pc)),
            ]
        );
        assert_eq!(
            q[8..],
            [(Bochs, 2, None), (Bochs, 15, None), (Bochs, 2, None)]
        );
        let single = p[2].run_spec(None);
        assert_eq!(single.extra_args, ["-accel", "tcg,thread=single"]);
        assert_eq!(single.append, "vmx=off");
        assert_eq!(
            p[0].run_spec(None).extra_args,
            ["-accel", "tcg,thread=multi"]
        );
        assert_eq!(p[8].run_spec(None).backend, Backend::Bochs);
    }

    const GOOD: &str = "\
SeaBIOS noise
[    0.017593] cpu0  INFO  boot: loader=pvh cmdline=\"vmx=off on_done=exit\"
[    0.023956] cpu0  INFO  smp: pcb cpu=0 apic_id=0 x2apic=no stack=0x101000-0x111000 guard=0x100000
[    0.038525] cpu0  INFO  acpi: madt: apic_id=0 uid=0 entry=xapic state=usable
[    0.038809] cpu0  INFO  acpi: madt: apic_id=1 uid=1 entry=xapic state=usable
[    0.064515] cpu1  INFO  smp: pcb cpu=1 apic_id=1 x2apic=no stack=0x130000-0x140000 guard=0x12f000
[    0.071162] cpu0  INFO  hypervisor: summary: cpus=2 online=2 failed=0 vmx_root=0 verdict=ok boot_us=70970 reason=none";

    #[test]
    fn a_good_log_passes() {
        assert_eq!(check_log(GOOD, 2, false), vec![]);
    }

    fn kinds(log: &str, cpus: u32, vmx: bool) -> Vec<Problem> {
        let mut k: Vec<Problem> = check_log(log, cpus, vmx).into_iter().map(|p| p.0).collect();
        k.dedup();
        k
    }

    #[test]
    fn problems_are_found() {
        // Wrong CPU count for the emulator.
        assert_eq!(kinds(GOOD, 3, false), [Problem::Mismatch]);
        // VMX expected on every core.
        assert_eq!(kinds(GOOD, 2, true), [Problem::Mismatch]);
        // A pcb line lost.
        let lost = GOOD.replace(
            "[    0.064515] cpu1  INFO  smp: pcb cpu=1 apic_id=1 x2apic=no stack=0x130000-0x140000 guard=0x12f000\n",
            "",
        );
        assert_eq!(kinds(&lost, 2, false), [Problem::Mismatch]);
        // A pcb line printed by the wrong core.
        let wrong = GOOD.replace("[    0.064515] cpu1 ", "[    0.064515] cpu0 ");
        assert_eq!(kinds(&wrong, 2, false), [Problem::Mismatch]);
        // A pcb line that does not follow the contract.
        let bad = GOOD.replace("guard=0x12f000", "guard=?");
        assert!(kinds(&bad, 2, false).contains(&Problem::Garbled));
        // Two lines run together (a lost line break), and a torn line.
        let torn = GOOD.replace("usable\n[    0.038809]", "usable[    0.038809]");
        assert!(kinds(&torn, 2, false).contains(&Problem::Garbled));
        let torn = GOOD.replace("[    0.038809] cpu0  INFO  acpi", "[    0.038809] cpu0  IN");
        assert!(kinds(&torn, 2, false).contains(&Problem::Garbled));
        // Time going backwards.
        let back = GOOD.replace("[    0.064515]", "[    0.010000]");
        assert_eq!(kinds(&back, 2, false), [Problem::Garbled]);
        // Two summaries.
        let two = format!(
            "{GOOD}\n[    0.071163] cpu0  INFO  hypervisor: summary: cpus=2 online=2 failed=0 vmx_root=0 verdict=ok boot_us=70970 reason=none"
        );
        assert_eq!(kinds(&two, 2, false), [Problem::Garbled]);
        // A degraded run.
        let degraded = GOOD
            .replace("online=2 failed=0", "online=1 failed=1")
            .replace("verdict=ok", "verdict=degraded");
        assert!(kinds(&degraded, 2, false).contains(&Problem::Verdict));
        assert!(kinds(&degraded, 2, false).contains(&Problem::Mismatch));
    }

    /// 100 CPUs above the threshold: the BSP's own pcb line and the compact runs.
    fn compact(cpus: u32) -> String {
        let last = cpus - 1;
        format!(
            "\
[    0.017593] cpu0  INFO  boot: loader=pvh cmdline=\"vmx=off on_done=exit\"
[    0.023956] cpu0  INFO  smp: pcb cpu=0 apic_id=0 x2apic=no stack=0x101000-0x111000 guard=0x100000
[    0.060000] cpu0  INFO  acpi: madt: entries apic_ids=0-{last} uids=0-{last} entry=xapic state=usable
[    0.060100] cpu0  INFO  smp: pcb cpus=0 apic_ids=0 x2apic=no stack=0x101000-0x111000 guard=0x100000 step=0x0
[    0.060200] cpu0  INFO  smp: pcb cpus=1-{last} apic_ids=1-{last} x2apic=no stack=0x130000-0x140000 guard=0x12f000 step=0x11000
[    0.071162] cpu0  INFO  hypervisor: summary: cpus={cpus} online={cpus} failed=0 vmx_root=0 verdict=ok boot_us=70970 reason=none t_online_us=50000"
        )
    }

    #[test]
    fn a_compact_log_is_checked_core_by_core() {
        assert_eq!(check_log(&compact(100), 100, false), vec![]);
        // A run that lists one core too few for the MADT and the summary.
        let short = compact(100).replace("cpus=1-99 apic_ids=1-99", "cpus=1-98 apic_ids=1-98");
        assert_eq!(kinds(&short, 100, false), [Problem::Mismatch]);
        // A core listed twice.
        let twice = compact(100).replace("cpus=1-99 apic_ids=1-99", "cpus=0-98 apic_ids=0-98");
        assert!(kinds(&twice, 100, false).contains(&Problem::Garbled));
        // The BSP's own line disagrees with its run.
        let moved = compact(100).replacen(
            "stack=0x101000-0x111000 guard=0x100000\n",
            "stack=0x102000-0x112000 guard=0x101000\n",
            1,
        );
        assert!(kinds(&moved, 100, false).contains(&Problem::Garbled));
        // The summary later than twice t_online_us.
        let late = compact(100).replace("boot_us=70970", "boot_us=100001");
        assert_eq!(kinds(&late, 100, false), [Problem::Budget]);
        // Per-core INFO lines above the threshold: over the budget.
        let each: String = (1..100)
            .map(|i| format!("[    0.060300] cpu0  INFO  boot: filler line {i} with some text to make it long enough\n"))
            .collect();
        let long = compact(100).replace("[    0.071162]", &format!("{each}[    0.071162]"));
        assert_eq!(kinds(&long, 100, false), [Problem::Budget]);
        // At or below the threshold the budget is not checked (a line each per core at INFO).
        assert_eq!(
            kinds(
                &late
                    .replace("cpus=100 online=100", "cpus=64 online=64")
                    .replace("-99", "-63"),
                64,
                false
            ),
            []
        );
    }

    #[test]
    fn table_counts() {
        let boot = Config {
            engine: Engine::TcgMulti,
            cpus: 2,
            machine: Some(Machine::Q35),
        };
        let r = |problems: Vec<(Problem, String)>| BootResult {
            boot: boot.clone(),
            problems,
            wall: Duration::from_millis(500),
            saved: None,
        };
        let t = tabulate(&[
            r(vec![]),
            r(vec![(Problem::Hang, "x".into())]),
            r(vec![
                (Problem::Garbled, "a".into()),
                (Problem::Garbled, "b".into()),
            ]),
        ]);
        let row = &t[&(Engine::TcgMulti, 2)];
        assert_eq!((row.boots, row.passed), (3, 1));
        assert_eq!(row.problems[&Problem::Garbled], 1);
        let text = render(&t);
        assert!(
            text.contains(
                "| qemu tcg,thread=multi | 2 | 3 | 1 | 1 | 0 | 1 | 0 | 0 | 0 | 0.50 | 0.50 |"
            ),
            "{text}"
        );
        assert!(text.contains("| **total** |  | 3 | 1 |"), "{text}");
    }
}
