//! Reliability: every failure mode is a reported outcome (docs/reliability.md).
//!
//! - Fault injection from the command line (`fault=`, `fault_cpu=`): an AP that never answers, an
//!   exception, a panic and a stack overflow on one AP, a panic on the BSP while the APs start.
//!   Each run must end within its timeout with the documented verdict, name the CPU and the cause,
//!   and lose no other core's lines (one `smp: pcb` line per core that came online, from that core;
//!   every kernel line well-formed and in time order; one summary).
//! - Broken or extra ACPI tables injected into QEMU with `-acpitable`, and no ACPI at all.
//! - A crashing emulator: the runner reports it with the last log lines (exit status 3).
//! - A short soak (`xtask::soak`, the same checks as `cargo run -- soak`).

mod common;

use std::time::Duration;

use common::*;
use xtask::soak::{self, Problem, SoakSpec};
use xtask::{Level, LogLine, Machine, Outcome, RunSpec, Status};

/// A QEMU run with `cpus` CPUs and `vmx=off` plus `append`.
fn qemu_smp(cpus: u32, append: &str) -> RunSpec {
    RunSpec {
        smp: cpus.to_string(),
        ..qemu(append)
    }
}

/// A Bochs run (VMX on) with `cpus` CPUs.
fn bochs_smp(cpus: u32, append: &str) -> RunSpec {
    RunSpec {
        smp: cpus.to_string(),
        ..bochs(append)
    }
}

/// Every kernel line follows docs/serial-log.md exactly, timestamps never go backwards, and there
/// is exactly one summary line; the run ended within its timeout.
fn assert_well_formed(o: &Outcome) {
    let garbled: Vec<String> = soak::check_log(&o.log, 0, false)
        .into_iter()
        .filter(|(p, _)| *p == Problem::Garbled)
        .map(|(_, why)| why)
        .collect();
    assert!(garbled.is_empty(), "garbled log: {garbled:?}{}", context(o));
    let summaries = o
        .log
        .lines()
        .filter(|l| xtask::Summary::parse_line(l).is_some())
        .count();
    assert_eq!(summaries, 1, "summary lines{}", context(o));
    assert_ne!(o.status, Status::Timeout, "{}", context(o));
    assert!(
        o.timeout.is_some_and(|t| o.wall < t),
        "the run took {:?}{}",
        o.wall,
        context(o)
    );
}

/// The `smp: pcb` line of logical CPU `cpu`, which must come from that core.
fn pcb(o: &Outcome, cpu: u32) -> Pcb {
    let p = pcb_lines(o)
        .into_iter()
        .find(|p| p.cpu == cpu)
        .unwrap_or_else(|| panic!("no `smp: pcb cpu={cpu}` line{}", context(o)));
    assert_eq!(
        p.logged_by,
        Some(cpu),
        "the pcb line comes from its own core{}",
        context(o)
    );
    p
}

/// Lines printed by logical CPU `cpu`.
fn lines_from(o: &Outcome, cpu: u32) -> Vec<LogLine> {
    o.lines()
        .into_iter()
        .filter(|l| l.cpu == Some(cpu))
        .collect()
}

/// The counts of the summary: (cpus, online, failed, vmx_root).
fn counts(o: &Outcome) -> (u64, u64, u64, u64) {
    (
        summary_num(o, "cpus"),
        summary_num(o, "online"),
        summary_num(o, "failed"),
        summary_num(o, "vmx_root"),
    )
}

// ------------------------------------------------------------------------------------------------
// An AP that never answers its SIPIs.

fn check_ap_hang(o: &Outcome, vmx: bool) {
    assert_well_formed(o);
    assert_status(o, Status::Degraded);
    assert_verdict(o, "degraded");
    assert_eq!(
        o.summary_value("reason"),
        Some("ap_timeout"),
        "{}",
        context(o)
    );
    let root = if vmx { 3 } else { 0 };
    assert_eq!(counts(o), (4, 3, 1, root), "{}", context(o));
    // The report names the CPU and the cause.
    let err = line(o, "smp", "cpu=2 apic_id=2 did not answer INIT-SIPI-SIPI");
    assert_eq!(err.level, Some(Level::Error), "{}", context(o));
    assert_eq!(err.cpu, Some(0), "{}", context(o));
    // Every other core is online with its own pcb line (and in VMX root under Bochs); cpu2 never
    // printed anything.
    for cpu in [0, 1, 3] {
        pcb(o, cpu);
        if vmx {
            let root = root_lines(o)
                .into_iter()
                .find(|r| r.logged_by == Some(cpu))
                .unwrap_or_else(|| panic!("no `vmx: root` line from cpu{cpu}{}", context(o)));
            assert_eq!(root.apic_id, cpu);
        }
    }
    assert!(lines_from(o, 2).is_empty(), "cpu2 printed{}", context(o));
}

#[test]
fn ap_that_never_answers_degrades_the_run() {
    let o = boot(&qemu_smp(4, "fault=ap_hang fault_cpu=2"));
    check_ap_hang(&o, false);
    assert_qemu_exit(&o, 37);
}

#[test]
fn bochs_ap_that_never_answers_leaves_the_others_in_vmx_root() {
    let o = boot(&bochs_smp(4, "fault=ap_hang fault_cpu=2"));
    check_ap_hang(&o, true);
}

// ------------------------------------------------------------------------------------------------
// A test guest that goes wrong on one core (Bochs, VMX on, 4 cores).

/// Core `cpu`'s guest ended with an ERROR line whose cause starts with `cause`; every other core's
/// guest passed; all four cores are in VMX root and leave it; `degraded reason=guest_failed guests=3`.
fn check_guest_fault(o: &Outcome, cpu: u32, cause: &str) {
    assert_well_formed(o);
    assert_status(o, Status::Degraded);
    assert_verdict(o, "degraded");
    assert_eq!(
        o.summary_value("reason"),
        Some("guest_failed"),
        "{}",
        context(o)
    );
    assert_eq!(counts(o), (4, 4, 0, 4), "{}", context(o));
    assert_eq!(summary_num(o, "guests"), 3, "{}", context(o));
    let guests = guest_lines(o);
    assert_eq!(guests.len(), 4, "one guest line per core{}", context(o));
    for g in &guests {
        if g.logged_by == Some(cpu) {
            assert!(!g.ok, "cpu{cpu}'s guest must fail{}", context(o));
            let error = g.error.as_deref().unwrap_or("");
            assert!(
                error.starts_with(cause),
                "cpu{cpu}: {error:?} should start with {cause:?}{}",
                context(o)
            );
        } else {
            assert!(
                g.ok,
                "apic_id={} failed: {:?}{}",
                g.apic_id,
                g.error,
                context(o)
            );
            assert_eq!(
                (g.cpuid, g.hlt, g.vmcall, g.other),
                (2, 1, 2, 0),
                "{}",
                context(o)
            );
        }
    }
    let failed = o.lines_with("vmx", "result=fail");
    assert_eq!(failed.len(), 1, "{}", context(o));
    assert_eq!(failed[0].level, Some(Level::Error), "{}", context(o));
    line(o, "vmx", "teardown: 4 of 4 cores out of VMX operation");
}

#[test]
fn bochs_guest_with_an_unexpected_exit_fails_on_its_core_only() {
    let o = boot(&bochs_smp(4, "fault=guest_io fault_cpu=1"));
    check_guest_fault(
        &o,
        1,
        "unexpected VM exit: reason 30 (I/O instruction) qualification 0x800000",
    );
}

/// An AP whose VMX capabilities differ from the BSP's (`fault=vmx_caps_mismatch`: one bit of its
/// IA32_VMX_VMCS_ENUM flipped as read) is reported with the MSR and both values and does not launch.
#[test]
fn bochs_ap_whose_capabilities_differ_does_not_launch() {
    let o = boot(&bochs_smp(4, "fault=vmx_caps_mismatch fault_cpu=3"));
    check_guest_fault(
        &o,
        3,
        "1 VMX capabilities differ from the BSP: IA32_VMX_VMCS_ENUM (0x48a) bsp=0x",
    );
    let g = guest_lines(&o)
        .into_iter()
        .find(|g| g.logged_by == Some(3))
        .expect("cpu3's guest line");
    assert_eq!(
        (g.exits, g.bytes, g.ept),
        (0, 0, None),
        "not launched{}",
        context(&o)
    );
    assert!(
        g.error.unwrap_or_default().ends_with("; not launched"),
        "{}",
        context(&o)
    );
}

#[test]
fn bochs_guest_with_an_ept_violation_fails_on_its_core_only() {
    let o = boot(&bochs_smp(4, "fault=guest_ept fault_cpu=2"));
    check_guest_fault(&o, 2, "EPT violation at guest-physical 0x0");
}

// ------------------------------------------------------------------------------------------------
// An exception, a panic, a stack overflow on one AP: only that core stops; the run fails.

/// Checks a run where logical CPU `cpu` faulted with `reason` after coming online.
fn check_ap_fault(o: &Outcome, cpu: u32, reason: &str, vmx: bool) {
    assert_well_formed(o);
    assert_status(o, Status::Fail);
    assert_verdict(o, "fail");
    assert_eq!(o.summary_value("reason"), Some(reason), "{}", context(o));
    let root = if vmx { 3 } else { 0 };
    assert_eq!(counts(o), (4, 3, 1, root), "{}", context(o));
    let stopped = line(o, "hypervisor", &format!("cpu={cpu} stopped: {reason}"));
    assert_eq!(stopped.cpu, Some(cpu), "{}", context(o));
    assert_eq!(stopped.level, Some(Level::Error), "{}", context(o));
    // No core's lines are lost: every core came online and printed its pcb line, the faulting one
    // included (it faults after its PCB).
    for c in 0..4 {
        pcb(o, c);
    }
    if vmx {
        let roots: Vec<u32> = root_lines(o).iter().filter_map(|r| r.logged_by).collect();
        let mut want: Vec<u32> = (0..4).filter(|&c| c != cpu).collect();
        let mut got = roots.clone();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "vmx: root lines{}", context(o));
    }
}

fn check_exception_line(o: &Outcome, cpu: u32, mnemonic: &str, vector: &str) {
    let fault = o
        .lines_containing("fault: exception=")
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no `fault: exception=` line{}", context(o)));
    assert_eq!(fault.level, Some(Level::Error), "{}", context(o));
    assert_eq!(fault.cpu, Some(cpu), "{}", context(o));
    assert_eq!(fault.field("exception"), Some(mnemonic), "{}", context(o));
    assert_eq!(fault.field("vector"), Some(vector), "{}", context(o));
    assert_eq!(
        fault.field("cpu"),
        Some(cpu.to_string().as_str()),
        "{}",
        context(o)
    );
    for key in ["error_code", "rip", "cr2", "rsp"] {
        assert!(fault.field(key).is_some(), "no {key}={}", context(o));
    }
    assert_exception_values(o, &fault);
}

#[test]
fn exceptions_on_one_ap_stop_only_that_core() {
    for (kind, cpu, mnemonic, vector) in [
        ("ud", 1, "#UD", "6"),
        ("pf", 2, "#PF", "14"),
        ("gp", 3, "#GP", "13"),
        ("de", 1, "#DE", "0"),
    ] {
        let o = boot(&qemu_smp(4, &format!("fault={kind} fault_cpu={cpu}")));
        check_ap_fault(&o, cpu, "exception", false);
        check_exception_line(&o, cpu, mnemonic, vector);
        assert_qemu_exit(&o, 35);
    }
}

#[test]
fn bochs_exception_on_one_ap_leaves_the_others_in_vmx_root() {
    let o = boot(&bochs_smp(4, "fault=ud fault_cpu=1"));
    check_ap_fault(&o, 1, "exception", true);
    check_exception_line(&o, 1, "#UD", "6");
}

#[test]
fn stack_overflow_on_one_ap_is_caught_by_its_guard_page() {
    let o = boot(&qemu_smp(4, "fault=stack_overflow fault_cpu=3"));
    check_ap_fault(&o, 3, "stack_overflow", false);
    let overflow = line(&o, "fault", "stack overflow: guard page ");
    assert_eq!(overflow.cpu, Some(3), "{}", context(&o));
    assert_eq!(overflow.level, Some(Level::Error), "{}", context(&o));
    assert_eq!(overflow.field("cpu"), Some("3"), "{}", context(&o));
    // The guard page it names is the one below cpu3's stack (its pcb line).
    let guard = format!("{:#x}", pcb(&o, 3).guard);
    assert!(
        overflow.message.contains(&format!("guard page {guard} ")),
        "the overflow names guard page {guard}{}",
        context(&o)
    );
    assert_qemu_exit(&o, 35);
}

#[test]
fn stack_overflow_on_the_bsp_ends_the_run() {
    let o = boot(&qemu_smp(1, "fault=stack_overflow"));
    assert_well_formed(&o);
    assert_status(&o, Status::Fail);
    assert_eq!(
        o.summary_value("reason"),
        Some("stack_overflow"),
        "{}",
        context(&o)
    );
    let overflow = line(&o, "fault", "stack overflow: guard page ");
    assert_eq!(overflow.cpu, Some(0), "{}", context(&o));
    let guard = format!("{:#x}", pcb(&o, 0).guard);
    assert!(
        overflow.message.contains(&format!("guard page {guard} ")),
        "{}",
        context(&o)
    );
    assert_qemu_exit(&o, 35);
}

#[test]
fn panic_on_one_ap_stops_only_that_core() {
    let o = boot(&qemu_smp(4, "fault=panic fault_cpu=2"));
    check_ap_fault(&o, 2, "panic", false);
    let p = line(&o, "panic", " at ");
    assert_eq!(p.cpu, Some(2), "{}", context(&o));
    assert_eq!(p.field("cpu"), Some("2"), "{}", context(&o));
    assert_qemu_exit(&o, 35);
}

// ------------------------------------------------------------------------------------------------
// A panic on the BSP while the APs are starting.

#[test]
fn bsp_panic_during_bringup_ends_the_run() {
    let o = boot(&qemu_smp(4, "fault=panic_during_bringup"));
    assert_well_formed(&o);
    assert_status(&o, Status::Fail);
    assert_verdict(&o, "fail");
    assert_eq!(o.summary_value("reason"), Some("panic"), "{}", context(&o));
    let p = line(&o, "panic", "deliberate panic");
    assert_eq!(p.level, Some(Level::Error), "{}", context(&o));
    assert_eq!(p.cpu, Some(0), "{}", context(&o));
    assert_eq!(p.field("cpu"), Some("0"), "{}", context(&o));
    assert!(p.message.contains(" at "), "no location{}", context(&o));
    // The SIPIs went out before the panic.
    line(&o, "smp", "starting 3 APs");
    // Whatever the APs printed before the end is intact: each pcb line from its own core, once.
    // The BSP logs its pcb line before it starts the APs; each AP may or may not have logged its own before
    // the end.
    let pcbs = pcb_lines(&o);
    assert!(
        (1..=4).contains(&pcbs.len()) && pcbs.iter().any(|p| p.cpu == 0),
        "expected cpu0's pcb line and at most one per core, got {} lines{}",
        pcbs.len(),
        context(&o)
    );
    for p in &pcbs {
        assert_eq!(p.logged_by, Some(p.cpu), "{}", context(&o));
        assert_eq!(pcbs.iter().filter(|q| q.cpu == p.cpu).count(), 1);
    }
    assert_qemu_exit(&o, 35);
}

// ------------------------------------------------------------------------------------------------
// ACPI tables injected with `-acpitable`.

/// An SDT with a valid checksum (or a broken one), `length` in the header possibly a lie.
fn sdt(sig: &[u8; 4], body: &[u8], length: Option<u32>, bad_checksum: bool) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(sig);
    t.extend_from_slice(&length.unwrap_or(36 + body.len() as u32).to_le_bytes());
    t.push(5);
    t.push(0);
    t.extend_from_slice(b"RELTST");
    t.extend_from_slice(b"INJECTED");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(b"TEST");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(body);
    let sum = t.iter().fold(0u8, |s, &b| s.wrapping_add(b));
    t[9] = 0u8.wrapping_sub(sum);
    if bad_checksum {
        t[9] ^= 0x5A;
    }
    t
}

/// A MADT body listing 8 enabled processors with APIC ids 0x10..0x17 (none of QEMU's).
fn madt_body(entries: usize) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0xFEE0_0000u32.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    for i in 0..entries as u8 {
        b.extend_from_slice(&[0, 8, 0x10 + i, 0x10 + i]);
        b.extend_from_slice(&1u32.to_le_bytes());
    }
    b
}

/// Boots QEMU (2 CPUs) with `table` injected and checks that QEMU's own MADT was used: the
/// documented rule is "first valid MADT in the root table wins", and QEMU lists injected tables
/// after its own (and recomputes their length and checksum).
fn boot_with_table(name: &str, table: &[u8]) -> Outcome {
    let path = xtask::image::target_dir()
        .join("test-images")
        .join(format!("{name}-{}.aml", std::process::id()));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, table).unwrap();
    let o = boot(&RunSpec {
        extra_args: vec!["-acpitable".into(), format!("file={}", path.display())],
        ..qemu_smp(2, "")
    });
    let _ = std::fs::remove_file(&path);
    assert_well_formed(&o);
    assert_status(&o, Status::Ok);
    assert_eq!(counts(&o), (2, 2, 0, 0), "{}", context(&o));
    let madt: Vec<String> = o
        .lines_with("acpi", "madt: apic_id=")
        .iter()
        .map(|l| l.message.clone())
        .collect();
    assert_eq!(
        madt,
        [
            "madt: apic_id=0 uid=0 entry=xapic state=usable",
            "madt: apic_id=1 uid=1 entry=xapic state=usable"
        ],
        "QEMU's MADT, not the injected one{}",
        context(&o)
    );
    assert!(
        o.lines()
            .iter()
            .all(|l| l.module != "acpi" || l.level == Some(Level::Info)),
        "no acpi warnings: the injected table never reaches the parser{}",
        context(&o)
    );
    o
}

/// QEMU recomputes the checksum of an injected table, so the kernel never sees the bad checksum (its
/// checksum policy is tested on the host, smp/src/acpi_tables.rs): what this proves is that a second
/// MADT, whatever its checksum was, loses to QEMU's.
#[test]
fn injected_madt_with_a_bad_checksum_repaired_by_qemu_loses_to_the_first() {
    boot_with_table(
        "madt-bad-checksum",
        &sdt(b"APIC", &madt_body(8), None, true),
    );
}

#[test]
fn injected_second_madt_loses_to_the_first() {
    boot_with_table("madt-second", &sdt(b"APIC", &madt_body(8), None, false));
}

/// QEMU repairs an injected table's length (and says so), so the kernel never sees the truncation (its
/// length checks are tested on the host): what this proves is that a second MADT, repaired by QEMU, loses to
/// QEMU's.
#[test]
fn injected_truncated_madt_repaired_by_qemu_loses_to_the_first() {
    // The header claims 200 bytes, the file has 52, and its last entry claims 16 bytes where 8 are.
    let mut body = madt_body(1);
    body[9] = 16;
    let o = boot_with_table("madt-truncated", &sdt(b"APIC", &body, Some(200), false));
    assert!(
        o.emulator_output.contains("ACPI table has wrong length"),
        "QEMU repairs the length and says so{}",
        context(&o)
    );
}

#[test]
fn no_acpi_at_all_runs_on_the_bsp_alone() {
    let o = boot(&RunSpec {
        machine: Some(Machine::Pc),
        extra_args: vec!["-machine".into(), "acpi=off".into()],
        ..qemu_smp(2, "")
    });
    assert_well_formed(&o);
    assert_status(&o, Status::Degraded);
    assert_eq!(
        o.summary_value("reason"),
        Some("acpi_error"),
        "{}",
        context(&o)
    );
    assert_eq!(counts(&o), (1, 1, 0, 0), "{}", context(&o));
    let rsdp = line(&o, "boot", "rsdp=");
    assert_eq!(rsdp.field("rsdp"), Some("none"), "{}", context(&o));
    let err = line(&o, "acpi", "no RSDP");
    assert_eq!(err.level, Some(Level::Error), "{}", context(&o));
    pcb(&o, 0);
    assert_qemu_exit(&o, 37);
}

// ------------------------------------------------------------------------------------------------
// The runner never hangs: a crashing emulator.

/// QEMU dies of SIGSEGV in the middle of a boot (the kernel is stalled in the bring-up: an AP that
/// never answers and a 60 s answer timeout). The runner must notice at once, exit with status 3
/// and show the last serial lines.
#[test]
fn crashing_emulator_is_reported_with_the_last_log_lines() {
    use std::os::unix::fs::PermissionsExt;
    let real = xtask::host::which(xtask::qemu::QEMU_PROGRAM).expect("qemu-system-x86_64");
    let dir = xtask::image::target_dir()
        .join("test-images")
        .join(format!("crashing-qemu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wrapper = dir.join(xtask::qemu::QEMU_PROGRAM);
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n# A QEMU that crashes (SIGSEGV) 3 s after it starts.\n\
             (sleep 3; kill -SEGV $$) &\nexec {} \"$@\"\n",
            real.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let started = std::time::Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "--backend",
            "qemu",
            "--smp",
            "2",
            "--timeout",
            "60",
            "--append",
            "vmx=off fault=ap_hang fault_cpu=1 ap_timeout_us=60000000",
        ])
        .env("PATH", path)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run the xtask binary");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let show = format!(
        "\n--- status {:?}\n--- stdout:\n{}\n--- stderr:\n{stderr}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(out.status.code(), Some(3), "{show}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the runner noticed late{show}"
    );
    assert!(stderr.contains("no summary line"), "{show}");
    assert!(
        stderr.contains("killed by the runner or a signal"),
        "{show}"
    );
    assert!(stderr.contains("last "), "{show}");
    // The last serial lines are shown: the kernel got as far as starting the AP.
    let tail = stderr
        .split("serial log lines:")
        .nth(1)
        .unwrap_or_else(|| panic!("no serial tail{show}"));
    assert!(tail.contains("smp: starting 1 APs"), "{show}");
}

/// A Bochs run that never reaches a summary line is killed at the runner's timeout: status 4 and
/// the report says so. The kernel is the runner's tiny multiboot2 test ELF with its code replaced
/// by `jmp $` (GRUB boots it, then nothing ever happens).
#[test]
fn hung_bochs_is_killed_at_the_timeout() {
    let mut elf = xtask::image::triple_fault_multiboot2_elf_bytes();
    let entry = xtask::image::parse_elf64(&elf).unwrap().entry;
    let code = (entry - 0x10_0000) as usize; // loaded at 1 MiB from file offset 0
    elf[code..code + 2].copy_from_slice(&[0xEB, 0xFE]);
    let kernel = xtask::image::target_dir()
        .join("test-images")
        .join(format!("spin-mb2-{}.elf", std::process::id()));
    std::fs::create_dir_all(kernel.parent().unwrap()).unwrap();
    std::fs::write(&kernel, &elf).unwrap();
    let o = boot(&RunSpec {
        timeout: Some(Duration::from_secs(8)),
        kernel: Some(kernel.clone()),
        ..bochs_smp(1, "")
    });
    let _ = std::fs::remove_file(&kernel);
    assert_status(&o, Status::Timeout);
    assert_eq!(o.exit_code(), 4);
    assert_eq!(o.emulator_exit, None, "killed, not exited{}", context(&o));
    assert!(
        o.wall < Duration::from_secs(20),
        "killed {:?} after the start{}",
        o.wall,
        context(&o)
    );
    let report = o.report();
    assert!(
        report.contains("timeout after 8 s without a summary line; killed bochs"),
        "{report}"
    );
}

// ------------------------------------------------------------------------------------------------
// The short soak.

/// 20 QEMU boots (1 to 8 CPUs, multi- and single-threaded TCG, q35 and pc) and 2 Bochs boots
/// (VMX on): no hang, crash, garbled line or summary that disagrees with the MADT. The long soak
/// is `cargo run -- soak` (docs/reliability.md).
#[test]
fn short_soak() {
    let spec = SoakSpec {
        runs: 20,
        bochs_runs: 2,
        cpus: vec![1, 2, 3, 4, 8],
        bochs_cpus: vec![2, 4],
        timeout: None,
    };
    let boots = soak::plan(&spec);
    let results = soak::run_plan(&boots, None, |_, _| {})
        .unwrap_or_else(|e| panic!("the runner could not boot the image: {e}"));
    let table = soak::render(&soak::tabulate(&results));
    eprintln!("{table}");
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.problems.is_empty())
        .map(|r| {
            format!(
                "{}: {:?} (log: {:?})",
                r.boot.describe(),
                r.problems,
                r.saved
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "soak failures:\n{}\n{table}",
        failed.join("\n")
    );
}

// ------------------------------------------------------------------------------------------------
// A fatal error after the VMX stage: every way out of the run leaves VMX root on every core first
// (INIT is blocked in VMX root, SDM vol. 3C 24.8, so a reset could hang on a real board).

/// Every core that logged `vmx: root` logs `vmx: left` itself before the summary, and the BSP's
/// `vmx: teardown: <n> of <n> cores out of VMX operation` line counts them.
fn assert_every_root_core_left(o: &Outcome) {
    let mut roots: Vec<u32> = root_lines(o).iter().map(|r| r.apic_id).collect();
    roots.sort_unstable();
    assert!(!roots.is_empty(), "no core entered VMX root{}", context(o));
    let lines = o.lines();
    let summary_at = lines
        .iter()
        .position(|l| l.message.starts_with("summary: "))
        .unwrap_or_else(|| panic!("no summary line{}", context(o)));
    let left: Vec<&LogLine> = lines[..summary_at]
        .iter()
        .filter(|l| l.module == "vmx" && l.message.starts_with("left apic_id="))
        .collect();
    let mut left_ids: Vec<u32> = left
        .iter()
        .map(|l| num_field(o, l, "apic_id") as u32)
        .collect();
    left_ids.sort_unstable();
    assert_eq!(
        left_ids,
        roots,
        "every core in VMX root must leave it before the summary{}",
        context(o)
    );
    let pcbs = pcb_lines(o);
    for l in &left {
        let id = num_field(o, l, "apic_id") as u32;
        let cpu = pcbs.iter().find(|p| p.apic_id == id).map(|p| p.cpu);
        assert_eq!(
            l.cpu,
            cpu,
            "`vmx: {}` from its own core{}",
            l.message,
            context(o)
        );
    }
    let n = roots.len();
    let teardown = line(o, "vmx", "teardown: ");
    assert_eq!(
        teardown.message,
        format!("teardown: {n} of {n} cores out of VMX operation"),
        "{}",
        context(o)
    );
    assert!(
        o.lines_with("vmx", "leave failed").is_empty(),
        "a core did not leave VMX operation cleanly{}",
        context(o)
    );
}

#[test]
fn bochs_fault_after_vmx_on_an_ap_takes_every_core_out_of_vmx_root() {
    let o = boot(&bochs_smp(4, "fault=ud_after_vmx fault_cpu=2"));
    assert_well_formed(&o);
    assert_status(&o, Status::Fail);
    assert_eq!(
        o.summary_value("reason"),
        Some("exception"),
        "{}",
        context(&o)
    );
    // cpu2 entered VMX root before its #UD: it is counted there, and it leaves from its halt.
    assert_eq!(counts(&o), (4, 3, 1, 4), "{}", context(&o));
    check_exception_line(&o, 2, "#UD", "6");
    assert_every_root_core_left(&o);
}

#[test]
fn bochs_fault_after_vmx_on_the_bsp_takes_every_core_out_of_vmx_root() {
    // The BSP's fatal path runs in its #UD handler; APs may still be in their VMX stage then (one
    // that has not entered VMX root yet stays out of it).
    let o = boot(&bochs_smp(4, "fault=ud_after_vmx"));
    assert_well_formed(&o);
    assert_status(&o, Status::Fail);
    assert_eq!(
        o.summary_value("reason"),
        Some("exception"),
        "{}",
        context(&o)
    );
    check_exception_line(&o, 0, "#UD", "6");
    assert_every_root_core_left(&o);
}

// ------------------------------------------------------------------------------------------------
// An exception on an AP in its early window (in Rust, before its PCB's GDT and TSS are loaded):
// reported by that core, which is counted as failed; the other cores come up.

#[test]
fn exception_in_the_early_ap_window_is_reported() {
    let o = boot(&qemu_smp(4, "fault=early_ap_ud fault_cpu=2"));
    assert_well_formed(&o);
    assert_status(&o, Status::Fail);
    assert_verdict(&o, "fail");
    assert_eq!(
        o.summary_value("reason"),
        Some("exception"),
        "{}",
        context(&o)
    );
    assert_eq!(counts(&o), (4, 3, 1, 0), "{}", context(&o));
    check_exception_line(&o, 2, "#UD", "6");
    let stopped = line(
        &o,
        "hypervisor",
        "cpu=2 stopped before its PCB was installed: exception",
    );
    assert_eq!(stopped.cpu, Some(2), "{}", context(&o));
    assert_eq!(stopped.level, Some(Level::Error), "{}", context(&o));
    let failed = line(&o, "smp", "answered but did not come online");
    assert_eq!(failed.field("cpu"), Some("2"), "{}", context(&o));
    for c in [0, 1, 3] {
        pcb(&o, c);
    }
    assert!(
        pcb_lines(&o).iter().all(|p| p.cpu != 2),
        "cpu2 never built its PCB{}",
        context(&o)
    );
    assert_qemu_exit(&o, 35);
}
