//! Shared helpers of the integration tests: each test boots the real image through `xtask::run`.
//!
//! A test that cannot run its emulator (tool missing and not installable, image build failed) fails
//! with the runner's reason; it never passes or skips silently.

#![allow(dead_code)]

use std::time::Duration;

use xtask::serial::Documented;
use xtask::{Backend, Boot, Level, LogLine, Machine, Outcome, RunSpec, Status};

/// A QEMU (TCG) run with one CPU and the given kernel command line, plus `vmx=off`: QEMU TCG has
/// no VMX, so with the VMX stage on the best verdict there is `degraded`.
pub fn qemu(append: &str) -> RunSpec {
    RunSpec {
        backend: Backend::Qemu,
        smp: "1".into(),
        append: format!("vmx=off {append}"),
        timeout: Some(Duration::from_secs(60)),
        // The serial log is part of every failure message (`context`); streaming it would bypass
        // the test harness' output capture.
        quiet: true,
        ..RunSpec::default()
    }
}

pub fn qemu_on(machine: Machine, boot: Boot) -> RunSpec {
    RunSpec {
        machine: Some(machine),
        boot: Some(boot),
        ..qemu("")
    }
}

/// A Bochs run (GRUB ISO) with one CPU.
pub fn bochs(append: &str) -> RunSpec {
    RunSpec {
        backend: Backend::Bochs,
        smp: "1".into(),
        append: append.into(),
        timeout: Some(Duration::from_secs(120)),
        quiet: true,
        ..RunSpec::default()
    }
}

/// Boots; a runner error (missing tool, build failure, ...) fails the test with its reason.
pub fn boot(spec: &RunSpec) -> Outcome {
    match xtask::run(spec) {
        Ok(o) => {
            // Shown by the test harness when the test fails.
            eprintln!("{}", o.report());
            o
        }
        Err(e) => panic!(
            "the runner could not boot the image (exit {}): {e}",
            e.exit_code()
        ),
    }
}

/// Everything worth seeing when an assertion about `o` fails.
pub fn context(o: &Outcome) -> String {
    format!(
        "\n--- command: {}\n--- cmdline: {}\n--- status {:?}, emulator exit {:?}, {:.2} s, notes {:?}\n--- serial log:\n{}\n--- emulator output (last 30 lines):\n{}\n",
        o.command,
        o.cmdline,
        o.status,
        o.emulator_exit,
        o.wall.as_secs_f64(),
        o.notes,
        o.log,
        o.emulator_output
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    )
}

pub fn assert_status(o: &Outcome, status: Status) {
    assert_eq!(o.status, status, "unexpected outcome{}", context(o));
}

/// `verdict=<v>` in the summary line.
pub fn assert_verdict(o: &Outcome, verdict: &str) {
    assert_eq!(
        o.summary_value("verdict"),
        Some(verdict),
        "expected verdict={verdict}{}",
        context(o)
    );
}

/// QEMU's exit status agrees with the verdict (isa-debug-exit: 33 ok, 35 fail, 37 degraded).
pub fn assert_qemu_exit(o: &Outcome, code: i32) {
    assert_eq!(
        o.emulator_exit,
        Some(code),
        "QEMU exit status{}",
        context(o)
    );
    assert!(
        !o.notes.iter().any(|n| n.contains("mismatch")),
        "exit status mismatch{}",
        context(o)
    );
}

/// The first line of `module` whose message contains `needle`; fails the test if there is none.
pub fn line(o: &Outcome, module: &str, needle: &str) -> LogLine {
    o.line_with(module, needle)
        .unwrap_or_else(|| panic!("no `{module}: ...{needle}...` line{}", context(o)))
}

/// Index in the log of the first line of `module` containing `needle`.
fn position(o: &Outcome, module: &str, needle: &str) -> usize {
    o.lines()
        .iter()
        .position(|l| l.module == module && l.message.contains(needle))
        .unwrap_or_else(|| panic!("no `{module}: ...{needle}...` line{}", context(o)))
}

/// The early report of docs/serial-log.md, in order, with sane values. Returns the features line.
pub fn assert_early_report(o: &Outcome, loader: &str, memory_mib: u32) -> LogLine {
    let boot = line(o, "boot", "loader=");
    assert_eq!(boot.field("loader"), Some(loader), "loader{}", context(o));
    assert!(
        boot.field("cmdline")
            .is_some_and(|c| c.split_whitespace().any(|w| w == "on_done=exit")),
        "the loader's command line did not reach the kernel{}",
        context(o)
    );
    let mem = line(o, "boot", "memory usable_mib=");
    let usable: u32 = mem
        .field("usable_mib")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("usable_mib is not a number{}", context(o)));
    assert!(
        usable >= memory_mib / 2 && usable <= memory_mib,
        "usable_mib={usable} with {memory_mib} MiB of guest memory{}",
        context(o)
    );
    let rsdp = line(o, "boot", "rsdp=");
    assert!(
        rsdp.field("rsdp").is_some_and(|v| v.starts_with("0x")),
        "no RSDP found{}",
        context(o)
    );
    let vendor = line(o, "cpu", "vendor=");
    assert!(
        vendor.field("vendor").is_some_and(|v| !v.is_empty()),
        "empty vendor{}",
        context(o)
    );
    let features = line(o, "cpu", "features vmx=");
    for key in ["vmx", "maxphyaddr", "tsc_hz"] {
        assert!(
            features.field(key).is_some(),
            "no {key}= in the features line{}",
            context(o)
        );
    }
    let maxphyaddr: u32 = features
        .field("maxphyaddr")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        (32..=52).contains(&maxphyaddr),
        "maxphyaddr={maxphyaddr}{}",
        context(o)
    );
    let order = [
        position(o, "boot", "loader="),
        position(o, "boot", "memory usable_mib="),
        position(o, "boot", "rsdp="),
        position(o, "cpu", "vendor="),
        position(o, "cpu", "features vmx="),
    ];
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "early report out of order {order:?}{}",
        context(o)
    );
    features
}

/// A successful single-CPU boot: verdict=ok, the early report, one CPU online, no ERROR lines.
pub fn assert_good_boot(o: &Outcome, loader: &str, memory_mib: u32) -> LogLine {
    assert_good_smp_boot(o, loader, memory_mib, 1)
}

/// A successful boot of `cpus` CPUs: verdict=ok, the early report, every CPU online with its own
/// `smp: pcb` line, no failed CPU, no ERROR lines.
pub fn assert_good_smp_boot(o: &Outcome, loader: &str, memory_mib: u32, cpus: u32) -> LogLine {
    assert_status(o, Status::Ok);
    assert_verdict(o, "ok");
    let features = assert_early_report(o, loader, memory_mib);
    let n = cpus.to_string();
    assert_eq!(
        o.summary_value("cpus"),
        Some(n.as_str()),
        "cpus{}",
        context(o)
    );
    assert_eq!(
        o.summary_value("online"),
        Some(n.as_str()),
        "online{}",
        context(o)
    );
    assert_eq!(o.summary_value("failed"), Some("0"), "failed{}", context(o));
    for cpu in 0..cpus {
        let pcb = o
            .lines_with("smp", &format!("pcb cpu={cpu} "))
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no `smp: pcb cpu={cpu}` line{}", context(o)));
        assert_eq!(
            pcb.cpu,
            Some(cpu),
            "the pcb line comes from its own core{}",
            context(o)
        );
    }
    assert!(
        o.lines_at(Level::Error).is_empty(),
        "ERROR lines in a good boot{}",
        context(o)
    );
    features
}

// ---------------------------------------------------------------------------------------------
// SMP and VMX checks (tests/smp.rs, tests/vmx.rs, tests/kvm.rs).
// ---------------------------------------------------------------------------------------------

/// Boots that load the host heavily (QEMU with many vCPUs: the kernel's AP timeouts run on the host
/// clock under TCG) take this lock exclusively; every other boot of the same test binary takes it
/// shared. cargo runs the tests of one file in parallel threads, and a starved QEMU would time out.
static HEAVY: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Hold while running a boot that must have the host to itself.
pub fn exclusive_host() -> std::sync::RwLockWriteGuard<'static, ()> {
    HEAVY.write().unwrap_or_else(|e| e.into_inner())
}

/// Hold while running any other boot (it waits while an exclusive boot runs).
pub fn shared_host() -> std::sync::RwLockReadGuard<'static, ()> {
    HEAVY.read().unwrap_or_else(|e| e.into_inner())
}

/// `0x1234` (or decimal) to a number: the log parser's.
pub use xtask::serial::lines::parse_num;

/// A numeric `key=` of `l`; fails the test with the log if it is missing or not a number.
pub fn num_field(o: &Outcome, l: &LogLine, key: &str) -> u64 {
    l.field(key)
        .and_then(parse_num)
        .unwrap_or_else(|| panic!("no numeric {key}= in `{}`{}", l.message, context(o)))
}

/// A numeric summary value; fails the test if it is missing or not a number.
pub fn summary_num(o: &Outcome, key: &str) -> u64 {
    o.summary_value(key)
        .and_then(parse_num)
        .unwrap_or_else(|| panic!("no numeric {key}= in the summary{}", context(o)))
}

/// The typed lines of the log parser (`xtask::serial`): `smp: pcb`, `acpi: madt: apic_id=`, `vmx: root`.
pub use xtask::serial::{MadtEntry, Pcb, VmxGuest, VmxRoot};

/// Every line of kind `T`, typed, in log order; a line of that kind that does not follow the contract fails
/// the test with the parser's reason.
pub fn typed<T: Documented>(o: &Outcome) -> Vec<T> {
    o.all_of::<T>()
        .unwrap_or_else(|e| panic!("malformed line: {e}{}", context(o)))
}

/// Every core's `smp: pcb` facts, sorted by index: the per-core lines, or above the kernel's per-core
/// threshold the BSP's `pcb cpus=` runs with the per-core lines present merged in (`xtask::serial::core_pcbs`:
/// a core listed twice or a per-core line that disagrees with its run fails the test). A core known only from
/// a run has `logged_by: None`.
pub fn pcb_lines(o: &Outcome) -> Vec<Pcb> {
    xtask::serial::core_pcbs(&o.lines())
        .unwrap_or_else(|e| panic!("malformed pcb lines: {e}{}", context(o)))
}

/// Every processor entry of the MADT report, in table order: the `madt: apic_id=` lines, or the `madt:
/// entries` runs above the threshold (both must agree where both are logged, `xtask::serial::madt_entries`).
pub fn madt_lines(o: &Outcome) -> Vec<MadtEntry> {
    xtask::serial::madt_entries(&o.lines())
        .unwrap_or_else(|e| panic!("malformed madt lines: {e}{}", context(o)))
}

/// Every core printed its own `smp: pcb` line (as at `log=debug`, or at or below the per-core threshold):
/// none is known only from the BSP's compact runs.
pub fn assert_own_pcb_lines(o: &Outcome, pcbs: &[Pcb]) {
    for p in pcbs {
        assert_eq!(
            p.logged_by,
            Some(p.cpu),
            "cpu={} has no `smp: pcb` line of its own{}",
            p.cpu,
            context(o)
        );
    }
}

/// The default-level log within its budget at any core count (`xtask::serial::budget_problems`: at most 100
/// lines and 11.5 KB, the summary within twice `t_online_us`).
pub fn assert_log_budget(o: &Outcome) {
    let size = xtask::serial::LogSize::of(&o.log);
    let summary = o
        .summary
        .as_ref()
        .unwrap_or_else(|| panic!("no summary{}", context(o)));
    let problems = xtask::serial::budget_problems(size, summary);
    assert!(
        problems.is_empty(),
        "over the log budget ({size:?}): {problems:?}{}",
        context(o)
    );
    eprintln!("log budget: {size:?}, {}", summary.line);
}

/// A `log=debug` boot above the per-core threshold with `madt_entries` MADT processor entries: the compact runs
/// at INFO and every per-core line at DEBUG (the BSP's own pcb line at INFO, logged before the core count was
/// known), both forms present in full; [`pcb_lines`] and [`madt_lines`] have checked that they agree.
pub fn assert_compact_runs_with_debug_lines(o: &Outcome, madt_entries: usize) {
    assert_compact_log(o);
    let lines = o.lines();
    let each_madt: Vec<&LogLine> = lines.iter().filter(|l| l.is::<MadtEntry>()).collect();
    assert_eq!(
        each_madt.len(),
        madt_entries,
        "one `madt: apic_id=` line per entry at log=debug{}",
        context(o)
    );
    assert!(
        each_madt.iter().all(|l| l.level == Some(Level::Debug)),
        "{}",
        context(o)
    );
    let each_pcb: Vec<&LogLine> = lines.iter().filter(|l| l.is::<Pcb>()).collect();
    assert_eq!(each_pcb.len(), pcb_lines(o).len(), "{}", context(o));
    for l in each_pcb {
        let want = if l.cpu == Some(0) {
            Level::Info
        } else {
            Level::Debug
        };
        assert_eq!(
            l.level,
            Some(want),
            "{}: {}{}",
            l.module,
            l.message,
            context(o)
        );
    }
}

/// The log is in the compact form above the per-core threshold (docs/serial-log.md, "Per-core lines at
/// scale"): the BSP's `pcb cpus=` and `madt: entries` runs, no per-core INFO line but the BSP's own pcb line.
pub fn assert_compact_log(o: &Outcome) {
    let lines = o.lines();
    assert!(
        lines.iter().any(|l| l.is::<xtask::serial::PcbRun>()),
        "no `smp: pcb cpus=` line{}",
        context(o)
    );
    assert!(
        lines.iter().any(|l| l.is::<xtask::serial::MadtRun>()),
        "no `acpi: madt: entries` line{}",
        context(o)
    );
    for l in lines.iter().filter(|l| l.level == Some(Level::Info)) {
        assert!(
            !(l.is::<MadtEntry>() || l.is::<VmxRoot>() || (l.is::<Pcb>() && l.cpu != Some(0))),
            "a per-core line at INFO above the threshold: {}: {}{}",
            l.module,
            l.message,
            context(o)
        );
    }
}

/// The APIC ids of the MADT lines with `state=<state>`, in table order.
pub fn madt_ids_with_state(o: &Outcome, state: &str) -> Vec<u32> {
    madt_lines(o)
        .into_iter()
        .filter(|m| m.state == state)
        .map(|m| m.apic_id)
        .collect()
}

/// The summary says `cpus=n online=n failed=0`.
pub fn assert_all_online(o: &Outcome, n: u32) {
    for (key, want) in [("cpus", n), ("online", n), ("failed", 0)] {
        assert_eq!(
            summary_num(o, key),
            u64::from(want),
            "summary {key}= (expected {want}){}",
            context(o)
        );
    }
}

/// The per-core SMP contract for a run that started `n` CPUs from a MADT with `madt_entries`
/// processor entries:
/// - exactly `madt_entries` processor entries (`acpi: madt: apic_id=` lines, or above the per-core threshold
///   the entries of the `madt: entries` runs), no malformed-entry line, and exactly `n` of them
///   `state=usable`, with distinct APIC ids;
/// - exactly one `smp: pcb` line (or run entry, above the threshold) per CPU index `0..n`, each line logged
///   by that CPU (its `cpu<N>` column equals `cpu=<i>`); every core has a line of its own unless the log
///   is in the compact form (then [`assert_own_pcb_lines`] is the caller's choice, e.g. at `log=debug`);
/// - the PCB lines' APIC ids are distinct and are exactly the usable MADT ids; CPU 0 has the BSP's
///   id from the `smp: local apic` line;
/// - every stack is non-empty with its guard page just below it, and no stack or guard page
///   overlaps another core's.
///
/// Returns the PCB lines sorted by CPU index.
pub fn assert_pcbs_match_madt(o: &Outcome, n: u32, madt_entries: usize) -> Vec<Pcb> {
    let madt = madt_lines(o);
    assert_eq!(
        madt.len(),
        madt_entries,
        "number of `acpi: madt: apic_id=` lines{}",
        context(o)
    );
    assert!(
        o.lines_with("acpi", "madt: bad entry").is_empty(),
        "malformed MADT entries reported{}",
        context(o)
    );
    let mut usable = madt_ids_with_state(o, "usable");
    assert_eq!(
        usable.len(),
        n as usize,
        "number of `state=usable` MADT lines{}",
        context(o)
    );
    usable.sort_unstable();
    assert!(
        usable.windows(2).all(|w| w[0] != w[1]),
        "usable MADT entries repeat an APIC id {usable:?}{}",
        context(o)
    );

    let pcbs = pcb_lines(o);
    let indices: Vec<u32> = pcbs.iter().map(|p| p.cpu).collect();
    assert_eq!(
        indices,
        (0..n).collect::<Vec<_>>(),
        "expected exactly one `smp: pcb` line (or run entry) for each CPU 0..{n}{}",
        context(o)
    );
    // A core known only from the BSP's runs (above the threshold, at INFO) has no line of its own; every
    // line of its own must come from that core.
    for p in &pcbs {
        if let Some(by) = p.logged_by {
            assert_eq!(
                by,
                p.cpu,
                "the `smp: pcb cpu={}` line must be logged by cpu{} itself{}",
                p.cpu,
                p.cpu,
                context(o)
            );
        }
    }
    if !xtask::serial::is_compact(&o.lines()) {
        assert_own_pcb_lines(o, &pcbs);
    }
    let mut ids: Vec<u32> = pcbs.iter().map(|p| p.apic_id).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        usable,
        "the PCB lines' APIC ids must be exactly the usable MADT entries{}",
        context(o)
    );
    let bsp = line(o, "smp", "local apic mode=");
    assert_eq!(
        u64::from(pcbs[0].apic_id),
        num_field(o, &bsp, "bsp_apic_id"),
        "cpu 0 is the BSP{}",
        context(o)
    );

    // Stacks: [guard, top) per core, guard page right below the stack, all disjoint.
    let mut spans: Vec<(u64, u64, u32)> = Vec::new();
    for p in &pcbs {
        assert!(
            p.stack_bottom < p.stack_top,
            "cpu={} has an empty stack{}",
            p.cpu,
            context(o)
        );
        assert_eq!(
            p.guard,
            p.stack_bottom.wrapping_sub(0x1000),
            "cpu={}: the guard page must be the page just below its stack{}",
            p.cpu,
            context(o)
        );
        assert!(
            p.guard % 0x1000 == 0 && p.stack_top % 0x1000 == 0,
            "cpu={}: stack and guard must be page aligned{}",
            p.cpu,
            context(o)
        );
        spans.push((p.guard, p.stack_top, p.cpu));
    }
    spans.sort_unstable();
    for w in spans.windows(2) {
        assert!(
            w[0].1 <= w[1].0,
            "the stacks (with guard pages) of cpu={} and cpu={} overlap{}",
            w[0].2,
            w[1].2,
            context(o)
        );
    }
    pcbs
}

/// A good SMP boot of `n` CPUs: status and verdict ok, `cpus=n online=n failed=0`, no ERROR line,
/// the bring-up line agreeing, and [`assert_pcbs_match_madt`].
pub fn assert_smp_ok(o: &Outcome, n: u32, madt_entries: usize) -> Vec<Pcb> {
    assert_status(o, Status::Ok);
    assert_verdict(o, "ok");
    assert_eq!(o.summary_value("reason"), Some("none"), "{}", context(o));
    assert_all_online(o, n);
    assert!(
        o.lines_at(Level::Error).is_empty(),
        "ERROR lines in a good boot{}",
        context(o)
    );
    assert_time_ordered(o);
    if n > 1 {
        let done = line(o, "smp", "bring-up done");
        assert_eq!(
            num_field(o, &done, "online"),
            u64::from(n),
            "{}",
            context(o)
        );
        assert_eq!(num_field(o, &done, "failed"), 0, "{}", context(o));
        let bringup = line(o, "smp::bringup", "mode=");
        assert_eq!(
            num_field(o, &bringup, "aps"),
            u64::from(n - 1),
            "{}",
            context(o)
        );
        // `timed_out=` may be nonzero: it counts APs that had not answered within `ap_timeout_us` of
        // their first SIPI while the state machine polled (with 255 vCPUs on one TCG thread some
        // answer later and still come online while the stage waits for the others' PCBs); the
        // summary's `failed=` and the PCB lines are what count.
    }
    assert_pcbs_match_madt(o, n, madt_entries)
}

/// The APIC id QEMU gives CPU `index` of a `sockets x cores x threads` topology: each level takes
/// the bits its count needs (ceil(log2)), threads lowest.
pub fn topology_apic_id(index: u32, cores: u32, threads: u32) -> u32 {
    let bits = |n: u32| {
        if n <= 1 {
            0
        } else {
            32 - (n - 1).leading_zeros()
        }
    };
    let thread = index % threads;
    let core = (index / threads) % cores;
    let socket = index / (threads * cores);
    (socket << (bits(cores) + bits(threads))) | (core << bits(threads)) | thread
}

/// Every `vmx: root` line, in log order.
pub fn root_lines(o: &Outcome) -> Vec<VmxRoot> {
    typed(o)
}

/// The CPU index whose PCB line has `apic_id`.
fn cpu_of(o: &Outcome, pcbs: &[Pcb], apic_id: u32) -> u32 {
    pcbs.iter()
        .find(|p| p.apic_id == apic_id)
        .map(|p| p.cpu)
        .unwrap_or_else(|| panic!("no `smp: pcb` line with apic_id={apic_id}{}", context(o)))
}

/// Checks that the lines of `module` containing `needle` are exactly one per core of `pcbs`, each
/// logged by the core whose APIC id it names (`apic_id=`). Returns them in log order.
pub fn assert_one_per_core(o: &Outcome, pcbs: &[Pcb], module: &str, needle: &str) -> Vec<LogLine> {
    let lines = o.lines_with(module, needle);
    let mut ids: Vec<u32> = lines
        .iter()
        .map(|l| num_field(o, l, "apic_id") as u32)
        .collect();
    for (l, id) in lines.iter().zip(&ids) {
        let cpu = cpu_of(o, pcbs, *id);
        assert_eq!(
            l.cpu,
            Some(cpu),
            "`{module}: {}` names apic_id={id} (cpu={cpu}) but was logged by another core{}",
            l.message,
            context(o)
        );
    }
    ids.sort_unstable();
    let mut want: Vec<u32> = pcbs.iter().map(|p| p.apic_id).collect();
    want.sort_unstable();
    assert_eq!(
        ids,
        want,
        "expected exactly one `{module}: {needle}...` line per core{}",
        context(o)
    );
    lines
}

/// Every online core is in VMX root operation:
/// - the summary says `vmx_root=<cores>` and there is a `vmx: stage done vmx_root=<n> online=<n>` line;
/// - exactly one `vmx: root` line per core, logged by that core;
/// - IA32_FEATURE_CONTROL ends locked with VMX outside SMX enabled (bits 0 and 2), CR0.PE/NE/PG and
///   CR4.VMXE are set;
/// - the VMXON and VMCS regions are 4 KiB aligned, nonzero and pairwise distinct over all cores;
/// - every core reports the same revision id, `revision` when given.
///
/// Returns the root lines in log order.
pub fn assert_vmx_root_everywhere(
    o: &Outcome,
    pcbs: &[Pcb],
    revision: Option<&str>,
) -> Vec<VmxRoot> {
    let n = pcbs.len() as u64;
    assert_eq!(summary_num(o, "vmx_root"), n, "vmx_root={n}{}", context(o));
    let done = line(o, "vmx", "stage done");
    assert_eq!(num_field(o, &done, "vmx_root"), n, "{}", context(o));
    assert_eq!(num_field(o, &done, "online"), n, "{}", context(o));
    assert!(
        o.lines_with("vmx", "failed apic_id=").is_empty()
            && o.lines_with("vmx", "unsupported apic_id=").is_empty(),
        "a core reported a VMX failure{}",
        context(o)
    );
    assert_one_per_core(o, pcbs, "vmx", "root apic_id=");
    let roots = root_lines(o);
    let mut regions: Vec<u64> = Vec::new();
    for r in &roots {
        assert_eq!(
            r.fc_after & 0x5,
            0x5,
            "apic_id={}: IA32_FEATURE_CONTROL must end locked with VMX outside SMX enabled{}",
            r.apic_id,
            context(o)
        );
        assert_eq!(
            r.cr0 & 0x8000_0021,
            0x8000_0021,
            "apic_id={}: CR0.PE, CR0.NE and CR0.PG must be set in VMX operation{}",
            r.apic_id,
            context(o)
        );
        assert!(
            r.cr4 & 0x2000 != 0,
            "apic_id={}: CR4.VMXE must be set in VMX operation{}",
            r.apic_id,
            context(o)
        );
        for (what, addr) in [("vmxon", r.vmxon), ("vmcs", r.vmcs)] {
            assert!(
                addr != 0 && addr % 4096 == 0,
                "apic_id={}: {what}={addr:#x} is not a 4 KiB aligned region{}",
                r.apic_id,
                context(o)
            );
            regions.push(addr);
        }
        let want = revision.unwrap_or(&roots[0].revision);
        assert!(
            r.revision == want && parse_num(want).is_some_and(|v| v != 0),
            "apic_id={}: revision={} (expected {want}, the same on every core){}",
            r.apic_id,
            r.revision,
            context(o)
        );
    }
    let mut sorted = regions.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        regions.len(),
        "VMXON/VMCS regions must be distinct over all cores {regions:#x?}{}",
        context(o)
    );
    roots
}

/// With `on_done=exit`, every core that entered VMX root logs `vmx: left apic_id=<id>` itself, before
/// the summary line.
pub fn assert_left_vmx_before_summary(o: &Outcome, pcbs: &[Pcb]) {
    let left = assert_one_per_core(o, pcbs, "vmx", "left apic_id=");
    let lines = o.lines();
    let summary_at = lines
        .iter()
        .position(|l| l.message.starts_with("summary: "))
        .unwrap_or_else(|| panic!("no summary line{}", context(o)));
    for l in &left {
        let at = lines
            .iter()
            .position(|x| x == l)
            .expect("the line came from this log");
        assert!(
            at < summary_at,
            "`vmx: {}` comes after the summary line{}",
            l.message,
            context(o)
        );
    }
    assert!(
        o.lines_with("vmx", "leave failed").is_empty()
            && o.lines_with("vmx", "teardown: only").is_empty(),
        "a core did not leave VMX operation cleanly{}",
        context(o)
    );
}

/// docs/serial-log.md: timestamps are taken under the log-queue lock and lines leave the queue in order,
/// so the log reads in time order across cores.
pub fn assert_time_ordered(o: &Outcome) {
    let stamps: Vec<u64> = o.lines().iter().filter_map(|l| l.ts_us).collect();
    if let Some(i) = stamps.windows(2).position(|w| w[1] < w[0]) {
        panic!(
            "log line {} is stamped {} us, before the line above it ({} us){}",
            i + 1,
            stamps[i + 1],
            stamps[i],
            context(o)
        );
    }
}

/// The `[start, end)` address ranges of the image's `PT_LOAD` segments (the kernel runs identity-mapped, so
/// these are the addresses its code runs at).
pub fn image_ranges() -> Vec<(u64, u64)> {
    let path = xtask::image::image_path();
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let elf =
        xtask::image::parse_elf64(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    elf.loads
        .iter()
        .map(|l| (l.paddr, l.paddr + l.memsz))
        .collect()
}

/// The address `fault=pf` reads (canonical, never mapped): the #PF's CR2.
pub const INJECTED_PF_ADDRESS: u64 = 0x5_0000_0000;

/// The values of a `fault: exception=` line that the test knows: `rip` inside the image, `rsp` on the
/// faulting core's stack (its `smp: pcb` line), and for the injected #PF `cr2=0x500000000` with
/// `error_code=0x0` (a supervisor read of a page that is not present), for the injected #GP (a
/// non-canonical address) `error_code=0x0`.
pub fn assert_exception_values(o: &Outcome, fault: &LogLine) {
    let cpu = num_field(o, fault, "cpu");
    let rip = num_field(o, fault, "rip");
    let rsp = num_field(o, fault, "rsp");
    let cr2 = num_field(o, fault, "cr2");
    let error_code = num_field(o, fault, "error_code");
    let ranges = image_ranges();
    assert!(
        ranges.iter().any(|&(a, b)| (a..b).contains(&rip)),
        "rip={rip:#x} is outside the image {ranges:x?}{}",
        context(o)
    );
    let pcbs: Vec<Pcb> = pcb_lines(o)
        .into_iter()
        .filter(|p| u64::from(p.cpu) == cpu)
        .collect();
    // An AP that faults in its early window (before its PCB, `fault=early_ap_ud`) has no pcb line to give
    // its stack: then the kernel must say so, and only `rip` is checked.
    let before_pcb = o.lines().into_iter().any(|l| {
        l.cpu == Some(cpu as u32)
            && l.module == "hypervisor"
            && l.message.contains("stopped before its PCB was installed")
    });
    if !(pcbs.is_empty() && before_pcb) {
        assert_eq!(pcbs.len(), 1, "one `smp: pcb cpu={cpu}` line{}", context(o));
        let p = &pcbs[0];
        assert!(
            (p.stack_bottom..p.stack_top).contains(&rsp),
            "rsp={rsp:#x} is not on cpu{cpu}'s stack {:#x}-{:#x}{}",
            p.stack_bottom,
            p.stack_top,
            context(o)
        );
    }
    match fault.field("exception") {
        Some("#PF") => {
            assert_eq!(
                cr2,
                INJECTED_PF_ADDRESS,
                "cr2 of the injected #PF{}",
                context(o)
            );
            assert_eq!(
                error_code,
                0,
                "error_code of the injected #PF{}",
                context(o)
            );
        }
        Some("#GP") => assert_eq!(
            error_code,
            0,
            "error_code of the injected #GP{}",
            context(o)
        ),
        _ => {}
    }
}

/// Every `vmx: guest` line, in log order.
pub fn guest_lines(o: &Outcome) -> Vec<VmxGuest> {
    typed(o)
}

/// Every core of `pcbs` ran the test guest to the end of its program: one `vmx: guest` line per core,
/// from that core, `result=ok` with exactly the program's exits (2 CPUID, 1 HLT, 2 VMCALL), EPT used as
/// `ept` says (`None`: either, as on a real CPU under nested KVM), the guest's pages counted, and
/// `guests=<n>` in the summary. Returns the lines.
pub fn assert_guest_ok_everywhere(o: &Outcome, pcbs: &[Pcb], ept: Option<bool>) -> Vec<VmxGuest> {
    assert_one_per_core(o, pcbs, "vmx", "guest apic_id=");
    let guests = guest_lines(o);
    for g in &guests {
        let cpu = cpu_of(o, pcbs, g.apic_id);
        assert_eq!(
            g.logged_by,
            Some(cpu),
            "guest line of apic_id={}{}",
            g.apic_id,
            context(o)
        );
        assert!(
            g.ok,
            "apic_id={}: guest failed: {:?}{}",
            g.apic_id,
            g.error,
            context(o)
        );
        assert_eq!(
            (g.cpuid, g.hlt, g.vmcall, g.other),
            (2, 1, 2, 0),
            "apic_id={}: the program's exits{}",
            g.apic_id,
            context(o)
        );
        assert!(
            g.ept.is_some(),
            "apic_id={}: no features{}",
            g.apic_id,
            context(o)
        );
        if let Some(ept) = ept {
            assert_eq!(
                g.ept,
                Some(ept),
                "apic_id={}: ept={ept}{}",
                g.apic_id,
                context(o)
            );
        }
        assert!(
            g.bytes >= 10 * 4096,
            "apic_id={}: the guest's pages{}",
            g.apic_id,
            context(o)
        );
    }
    assert_eq!(
        summary_num(o, "guests"),
        pcbs.len() as u64,
        "guests={}{}",
        pcbs.len(),
        context(o)
    );
    guests
}
