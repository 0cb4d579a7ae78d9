//! VMX on every core, under Bochs (the only VMX-capable backend without nested VT-x), booting the
//! GRUB ISO: every core enters VMX root operation with its own VMXON and VMCS regions, the self-test
//! passes on every core, the feature-control paths (locked by the BIOS, unlocked under SeaBIOS) and a
//! CPU without VMX end as documented, and every core leaves VMX operation before the summary.
//!
//! Bochs runs are single-threaded and their guest clock does not follow the host's, so two of them
//! in parallel (cargo's default here) are safe; they still take the shared host lock so that a run
//! needing the whole host (tests/common) waits for them.

mod common;

use common::*;
use xtask::{BochsRom, Level, Outcome, RunSpec, Status};

/// Bochs with `n` CPUs, the given CPU model (`None`: the default `corei7_haswell_4770`) and ROM.
fn bochs_spec(n: u32, model: Option<&str>, bios: Option<BochsRom>, append: &str) -> RunSpec {
    RunSpec {
        smp: n.to_string(),
        cpu_model: model.map(str::to_string),
        bios,
        ..bochs(append)
    }
}

fn boot_bochs(spec: &RunSpec) -> Outcome {
    let _host = shared_host();
    boot(spec)
}

/// The early report says VMX is there, on the vendor expected.
fn assert_features(o: &Outcome, vmx: &str, vendor: &str) -> CpuFacts {
    let features = assert_early_report(o, "multiboot2", 512);
    assert_eq!(features.field("vmx"), Some(vmx), "{}", context(o));
    let cpu = line(o, "cpu", "vendor=");
    assert_eq!(cpu.field("vendor"), Some(vendor), "{}", context(o));
    CpuFacts {
        smx: features.field("smx") == Some("yes"),
    }
}

/// What the tests need from the `cpu:` lines.
struct CpuFacts {
    smx: bool,
}

/// `n` cores of `model` all in VMX root with `revision`, IA32_FEATURE_CONTROL found locked by the
/// Bochs BIOS as 0x5 and left alone, each core's test guest run to the end (with EPT where `ept`), and
/// all of them out of VMX operation before the summary.
fn bochs_vmx_everywhere(n: u32, model: Option<&str>, revision: &str) -> Outcome {
    bochs_guests_everywhere(n, model, revision, true)
}

fn bochs_guests_everywhere(n: u32, model: Option<&str>, revision: &str, ept: bool) -> Outcome {
    let o = boot_bochs(&bochs_spec(n, model, None, ""));
    assert_features(&o, "yes", "GenuineIntel");
    let pcbs = assert_smp_ok(&o, n, n as usize);
    let roots = assert_vmx_root_everywhere(&o, &pcbs, Some(revision));
    for r in &roots {
        assert_eq!(
            (r.fc_before, r.fc_after),
            (0x5, 0x5),
            "apic_id={}: the Bochs BIOS locks IA32_FEATURE_CONTROL as 0x5; it must be read, not written{}",
            r.apic_id,
            context(&o)
        );
    }
    assert_guest_ok_everywhere(&o, &pcbs, Some(ept));
    assert_left_vmx_before_summary(&o, &pcbs);
    o
}

#[test]
fn bochs_vmx_root_1_cpu() {
    bochs_vmx_everywhere(1, None, "0x2b");
}

#[test]
fn bochs_vmx_root_2_cpus() {
    bochs_vmx_everywhere(2, None, "0x2b");
}

#[test]
fn bochs_vmx_root_4_cpus() {
    bochs_vmx_everywhere(4, None, "0x2b");
}

#[test]
fn bochs_vmx_root_8_cpus() {
    bochs_vmx_everywhere(8, None, "0x2b");
}

/// Bochs' maximum.
#[test]
fn bochs_vmx_root_15_cpus() {
    bochs_vmx_everywhere(15, None, "0x2b");
}

/// More of Bochs' Intel models, each with every core's guest run: Sandy Bridge, Skylake-X and Ice Lake
/// (revision 0x4) with EPT, and Penryn without EPT (hence without unrestricted guest, which needs EPT):
/// its guest runs on its own page tables with CR3-load exiting forced on, the documented fallback.
#[test]
fn bochs_guests_on_sandy_bridge() {
    bochs_guests_everywhere(2, Some("corei7_sandy_bridge_2600k"), "0x2b", true);
}

#[test]
fn bochs_guests_on_skylake_x() {
    bochs_guests_everywhere(2, Some("corei7_skylake_x"), "0x2b", true);
}

#[test]
fn bochs_guests_on_icelake_u() {
    bochs_guests_everywhere(2, Some("corei7_icelake_u"), "0x4", true);
}

#[test]
fn bochs_guests_on_penryn_without_ept() {
    bochs_guests_everywhere(4, Some("core2_penryn_t9600"), "0x2b", false);
}

#[test]
fn bochs_guests_on_arrandale() {
    bochs_guests_everywhere(2, Some("corei5_arrandale_m520"), "0x2b", true);
}

/// `guest=off`: every core in VMX root, no guest launched, `guests=0`, verdict ok as before the guest.
#[test]
fn bochs_guest_off_launches_nothing() {
    let o = boot_bochs(&bochs_spec(2, None, None, "guest=off"));
    let pcbs = assert_smp_ok(&o, 2, 2);
    assert_vmx_root_everywhere(&o, &pcbs, Some("0x2b"));
    assert!(
        guest_lines(&o).is_empty(),
        "a guest ran with guest=off{}",
        context(&o)
    );
    assert_eq!(summary_num(&o, "guests"), 0, "{}", context(&o));
}

/// Another Intel model with another VMCS revision id (IA32_VMX_BASIC[30:0] = 0x4 on Bochs'
/// tigerlake): the regions are stamped with what the CPU reports, not a constant.
#[test]
fn bochs_tigerlake_reports_revision_4() {
    let o = bochs_vmx_everywhere(2, Some("tigerlake"), "0x4");
    let cpu = line(&o, "cpu", "vendor=");
    assert_ne!(
        cpu.field("model"),
        Some("60"),
        "tigerlake must not be the haswell model{}",
        context(&o)
    );
}

/// `on_done=reboot`: every core leaves VMX root before the summary and the reset (INIT is blocked
/// in VMX root, SDM vol. 3C 24.8; a warm reset could hang a real board).
#[test]
fn bochs_reboot_leaves_vmx_root_on_every_core_first() {
    let o = boot_bochs(&bochs_spec(4, None, None, "on_done=reboot"));
    let pcbs = assert_smp_ok(&o, 4, 4);
    assert_vmx_root_everywhere(&o, &pcbs, None);
    assert_left_vmx_before_summary(&o, &pcbs);
    let teardown = line(&o, "vmx", "teardown: ");
    assert_eq!(
        teardown.message,
        "teardown: 4 of 4 cores out of VMX operation",
        "{}",
        context(&o)
    );
}

/// An AMD model: no VMX (CPUID.1:ECX.VMX = 0). Every core says so at WARN and the run is
/// `degraded`, not failed; no VMX instruction is executed, so nothing is torn down.
#[test]
fn bochs_ryzen_without_vmx_is_degraded() {
    let o = boot_bochs(&bochs_spec(2, Some("ryzen"), None, ""));
    assert_features(&o, "no", "AuthenticAMD");
    assert_status(&o, Status::Degraded);
    assert_verdict(&o, "degraded");
    assert_eq!(
        o.summary_value("reason"),
        Some("vmx_unsupported"),
        "{}",
        context(&o)
    );
    assert_eq!(summary_num(&o, "vmx_root"), 0, "{}", context(&o));
    assert_all_online(&o, 2);
    let pcbs = assert_pcbs_match_madt(&o, 2, 2);
    let unsupported = assert_one_per_core(&o, &pcbs, "vmx", "unsupported apic_id=");
    assert!(
        unsupported.iter().all(|l| l.level == Some(Level::Warn)),
        "`vmx: unsupported` is a warning{}",
        context(&o)
    );
    let done = line(&o, "vmx", "stage done");
    assert_eq!(num_field(&o, &done, "vmx_root"), 0, "{}", context(&o));
    assert!(
        root_lines(&o).is_empty()
            && o.lines_with("vmx", "left apic_id=").is_empty()
            && o.lines_with("vmx", "failed apic_id=").is_empty(),
        "no core may enter, leave or fail VMX without VMX{}",
        context(&o)
    );
    assert!(
        o.lines_at(Level::Error).is_empty(),
        "no ERROR line: a CPU without VMX is not an error{}",
        context(&o)
    );
}

/// SeaBIOS leaves IA32_FEATURE_CONTROL unlocked (0x0): the kernel sets bit 2 (VMX outside SMX) and
/// the lock bit itself, and bit 1 only if the CPU has SMX. SeaBIOS' MADT lists a single processor
/// even with 2 CPUs configured, so one core runs.
#[test]
fn bochs_seabios_feature_control_locked_by_the_kernel() {
    let o = boot_bochs(&bochs_spec(2, None, Some(BochsRom::SeaBios), ""));
    let cpu = assert_features(&o, "yes", "GenuineIntel");
    let pcbs = assert_smp_ok(&o, 1, 1);
    let roots = assert_vmx_root_everywhere(&o, &pcbs, Some("0x2b"));
    let want_after = if cpu.smx { 0x7 } else { 0x5 };
    assert_eq!(
        (roots[0].fc_before, roots[0].fc_after),
        (0x0, want_after),
        "feature_control must go from 0x0 (unlocked) to {want_after:#x} (smx={}){}",
        cpu.smx,
        context(&o)
    );
    assert_eq!(want_after, 0x5, "Bochs haswell has no SMX{}", context(&o));
    assert_left_vmx_before_summary(&o, &pcbs);
}

/// `fault=vmx_locked_off` under SeaBIOS (IA32_FEATURE_CONTROL arrives unlocked): the core locks it with
/// VMX off before its VMX stage, as a firmware that disables VMX would; the stage then refuses VMXON and the
/// run ends `degraded reason=vmx_disabled_by_firmware`, with no core in VMX root.
#[test]
fn bochs_seabios_feature_control_locked_with_vmx_off_is_disabled_by_firmware() {
    let o = boot_bochs(&bochs_spec(
        2,
        None,
        Some(BochsRom::SeaBios),
        "fault=vmx_locked_off",
    ));
    assert_features(&o, "yes", "GenuineIntel");
    assert_status(&o, Status::Degraded);
    assert_verdict(&o, "degraded");
    assert_eq!(
        o.summary_value("reason"),
        Some("vmx_disabled_by_firmware"),
        "{}",
        context(&o)
    );
    assert_eq!(summary_num(&o, "cpus"), 1, "{}", context(&o));
    assert_eq!(summary_num(&o, "vmx_root"), 0, "{}", context(&o));
    let locked = line(&o, "boot", "feature_control=0x0->0x1 locked with VMX off");
    assert_eq!(locked.cpu, Some(0), "{}", context(&o));
    let failed = line(&o, "vmx", "failed apic_id=");
    assert_eq!(failed.level, Some(Level::Error), "{}", context(&o));
    assert!(
        failed.message.contains("disabled by firmware"),
        "{}",
        context(&o)
    );
    assert!(
        root_lines(&o).is_empty() && o.lines_with("vmx", "left ").is_empty(),
        "no core may execute VMXON{}",
        context(&o)
    );
}

/// The self-test cases of docs/vmx.md, in order.
const SELFTEST_CASES: [&str; 25] = [
    "vmxon before feature control is locked",
    "vmxon with feature control enabled but unlocked",
    "vmxon with CR4.VMXE clear",
    "vmxon with a CR0 fixed-1 bit clear",
    "vmxon with a CR4 fixed-1 bit clear",
    "vmxon with a CR0 fixed-0 bit set",
    "vmxon with a CR4 fixed-0 bit set",
    "vmxon with the flexible CR0 and CR4 bits toggled",
    "vmxon with an unaligned pointer",
    "vmxon with a pointer beyond MAXPHYADDR",
    "vmxon with a wrong revision identifier",
    "vmxon with revision bit 31 set",
    "vmxoff outside VMX operation",
    "vmclear outside VMX operation",
    "wrmsr to feature control after it is locked",
    "vmxon in VMX root operation",
    "vmclear of the VMXON pointer",
    "vmptrld of the VMXON pointer",
    "vmclear with an unaligned address",
    "vmclear beyond MAXPHYADDR",
    "vmptrld with an unaligned address",
    "vmptrld beyond MAXPHYADDR",
    "vmptrld with a wrong revision identifier",
    "vmread of an unsupported field",
    "capability MSRs are consistent",
];

/// The VM-entry failure cases (docs/vmx.md, "Entry failures in the self-test"), run on the core's real
/// VMCS after VMX root and before its good guest, in order; not in the per-core count line.
const ENTRY_CASES: [&str; 5] = [
    "VMRESUME on a clear VMCS",
    "VMLAUNCH with a required pin-based control clear",
    "VMLAUNCH with HOST_CR4.VMXE clear",
    "VMLAUNCH with guest RFLAGS bit 1 clear",
    "VMLAUNCH on a launched VMCS",
];

/// Checks the self-test report of every core: all cases in the documented order (the VMXON cases,
/// then the entry-failure cases), logged by that core, each `pass` or a `skip` that
/// `allowed_skip(case, reason)` accepts (an entry-failure case must pass); the per-core count line
/// agrees with the VMXON cases; the summary's `selftest_pass` is the sum of all and `selftest_fail=0`;
/// and each core's good guest still ran afterwards. Returns the summed number of skips.
fn assert_selftest_passes(
    o: &Outcome,
    pcbs: &[Pcb],
    allowed_skip: impl Fn(&str, &str) -> bool,
) -> u64 {
    let counts = assert_one_per_core(o, pcbs, "vmx", " passed=");
    let mut total_pass = 0;
    let mut total_skip = 0;
    for p in pcbs {
        let cases: Vec<_> = o
            .lines_with("vmx", &format!("selftest apic_id={} case=", p.apic_id))
            .into_iter()
            .collect();
        let names: Vec<&str> = cases
            .iter()
            .map(|l| l.field("case").unwrap_or(""))
            .collect();
        let expected: Vec<&str> = SELFTEST_CASES.iter().chain(&ENTRY_CASES).copied().collect();
        assert_eq!(
            names,
            expected,
            "apic_id={}: the self-test cases, in order{}",
            p.apic_id,
            context(o)
        );
        for c in &cases[SELFTEST_CASES.len()..] {
            assert_eq!(
                c.field("result"),
                Some("pass"),
                "apic_id={}: entry-failure case {:?}{}",
                p.apic_id,
                c.field("case"),
                context(o)
            );
            assert_eq!(c.cpu, Some(p.cpu), "{}", context(o));
        }
        let (mut pass, mut skip) = (0, 0);
        for c in &cases[..SELFTEST_CASES.len()] {
            assert_eq!(
                c.cpu,
                Some(p.cpu),
                "apic_id={}'s self-test runs on its own core{}",
                p.apic_id,
                context(o)
            );
            let case = c.field("case").unwrap_or("");
            match c.field("result") {
                Some("pass") => pass += 1,
                Some("skip") => {
                    let reason = c.field("reason").unwrap_or("");
                    assert!(
                        !reason.is_empty() && allowed_skip(case, reason),
                        "apic_id={}: case \"{case}\" skipped without an accepted reason ({reason:?}){}",
                        p.apic_id,
                        context(o)
                    );
                    skip += 1;
                }
                other => panic!(
                    "apic_id={}: case \"{case}\" result={other:?}{}",
                    p.apic_id,
                    context(o)
                ),
            }
        }
        let count = counts
            .iter()
            .find(|l| l.field("apic_id") == Some(p.apic_id.to_string().as_str()))
            .expect("one count line per core");
        assert_eq!(
            (
                num_field(o, count, "passed"),
                num_field(o, count, "failed"),
                num_field(o, count, "skipped")
            ),
            (pass, 0, skip),
            "apic_id={}: the count line disagrees with the case lines{}",
            p.apic_id,
            context(o)
        );
        total_pass += pass + ENTRY_CASES.len() as u64;
        total_skip += skip;
    }
    assert_guest_ok_everywhere(o, pcbs, Some(true));
    assert_eq!(summary_num(o, "selftest_fail"), 0, "{}", context(o));
    assert_eq!(
        summary_num(o, "selftest_pass"),
        total_pass,
        "selftest_pass is the sum over the cores{}",
        context(o)
    );
    assert!(total_pass > 0, "{}", context(o));
    total_skip
}

/// `selftest=vmx` on 4 cores with the Bochs BIOS: the MSR arrives locked, so cases 1 and 2 (which
/// need it unlocked) are the only cases that may skip, and they say why; every other case passes on
/// every core, and every core still ends in VMX root.
#[test]
fn bochs_selftest_4_cpus() {
    let o = boot_bochs(&bochs_spec(4, None, None, "selftest=vmx"));
    let pcbs = assert_smp_ok(&o, 4, 4);
    let skipped = assert_selftest_passes(&o, &pcbs, |case, reason| {
        SELFTEST_CASES[..2].contains(&case) && reason.contains("already locked")
    });
    assert_eq!(
        skipped,
        8,
        "cases 1 and 2 skip on each of the 4 cores{}",
        context(&o)
    );
    assert_eq!(
        summary_num(&o, "selftest_pass"),
        4 * (23 + 5),
        "{}",
        context(&o)
    );
    assert_vmx_root_everywhere(&o, &pcbs, Some("0x2b"));
    assert_left_vmx_before_summary(&o, &pcbs);
}

/// `selftest=vmx` under SeaBIOS: IA32_FEATURE_CONTROL is unlocked, so cases 1 and 2 (VMXON before the
/// lock, and with bit 2 set but unlocked, must raise #GP) run and pass, and no case is skipped. The self-test leaves the MSR locked,
/// which the root line then shows as found locked.
#[test]
fn bochs_selftest_seabios_runs_the_unlocked_case() {
    let o = boot_bochs(&bochs_spec(
        1,
        None,
        Some(BochsRom::SeaBios),
        "selftest=vmx",
    ));
    let pcbs = assert_smp_ok(&o, 1, 1);
    let skipped = assert_selftest_passes(&o, &pcbs, |_, _| false);
    assert_eq!(skipped, 0, "{}", context(&o));
    assert_eq!(summary_num(&o, "selftest_pass"), 25 + 5, "{}", context(&o));
    for case in &SELFTEST_CASES[..2] {
        let line = line(&o, "vmx", case);
        assert_eq!(line.field("result"), Some("pass"), "{case}{}", context(&o));
    }
    let roots = assert_vmx_root_everywhere(&o, &pcbs, Some("0x2b"));
    assert_eq!(
        (roots[0].fc_before, roots[0].fc_after),
        (0x5, 0x5),
        "the self-test locked IA32_FEATURE_CONTROL before VMX root was entered{}",
        context(&o)
    );
    assert_left_vmx_before_summary(&o, &pcbs);
}
