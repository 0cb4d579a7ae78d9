//! Shared helpers of the integration tests: each test boots the real image through `xtask::run`.
//!
//! A test that cannot run its emulator (tool missing and not installable, image build failed) fails
//! with the runner's reason; it never passes or skips silently.

#![allow(dead_code)]

use std::time::Duration;

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
