//! Boot tests: the image reaches `verdict=ok` with the early report on every backend and loader path.
//!
//! The loader tests use one CPU; `*_smp_*` start several. QEMU runs use `vmx=off` (QEMU TCG has no
//! VMX); Bochs runs keep the VMX stage on and check that every core reached VMX root.

mod common;

use common::*;
use xtask::{Boot, Machine, RunSpec, Status};

#[test]
fn qemu_pvh_q35() {
    let o = boot(&qemu_on(Machine::Q35, Boot::Pvh));
    let features = assert_good_boot(&o, "pvh", 512);
    assert_eq!(
        features.field("vmx"),
        Some("no"),
        "QEMU TCG has no VMX{}",
        context(&o)
    );
    assert_qemu_exit(&o, 33);
}

#[test]
fn qemu_pvh_pc() {
    let o = boot(&qemu_on(Machine::Pc, Boot::Pvh));
    assert_good_boot(&o, "pvh", 512);
    assert_qemu_exit(&o, 33);
}

#[test]
fn qemu_grub_iso_bios() {
    let o = boot(&qemu_on(Machine::Q35, Boot::Iso));
    assert_good_boot(&o, "multiboot2", 512);
    assert_qemu_exit(&o, 33);
}

#[test]
fn qemu_grub_iso_uefi() {
    let spec = RunSpec {
        uefi: true,
        timeout: Some(std::time::Duration::from_secs(120)),
        ..qemu_on(Machine::Q35, Boot::Iso)
    };
    let o = boot(&spec);
    assert_good_boot(&o, "multiboot2", 512);
    assert_qemu_exit(&o, 33);
}

#[test]
fn bochs_grub_iso() {
    let o = boot(&bochs(""));
    let features = assert_good_boot(&o, "multiboot2", 512);
    assert_eq!(
        features.field("vmx"),
        Some("yes"),
        "Bochs (corei7_haswell_4770) emulates VMX{}",
        context(&o)
    );
    let vendor = line(&o, "cpu", "vendor=");
    assert_eq!(
        vendor.field("vendor"),
        Some("GenuineIntel"),
        "{}",
        context(&o)
    );
    assert_eq!(o.summary_value("vmx_root"), Some("1"), "{}", context(&o));
}

/// With the VMX stage on, QEMU TCG (no VMX) ends `degraded` and exits with 0x12 (status 37).
#[test]
fn qemu_without_vmx_is_degraded() {
    let spec = RunSpec {
        append: String::new(),
        ..qemu("")
    };
    let o = boot(&spec);
    assert_status(&o, Status::Degraded);
    assert_verdict(&o, "degraded");
    assert_eq!(
        o.summary_value("reason"),
        Some("vmx_unsupported"),
        "{}",
        context(&o)
    );
    assert!(
        !o.lines_with("vmx", "unsupported").is_empty(),
        "no `vmx: unsupported` line{}",
        context(&o)
    );
    assert_qemu_exit(&o, 37);
}

#[test]
fn qemu_smp_4() {
    let spec = RunSpec {
        smp: "4".into(),
        ..qemu("")
    };
    let o = boot(&spec);
    assert_good_smp_boot(&o, "pvh", 512, 4);
    assert_qemu_exit(&o, 33);
}

#[test]
fn bochs_smp_4_vmx_root_everywhere() {
    let spec = RunSpec {
        smp: "4".into(),
        ..bochs("")
    };
    let o = boot(&spec);
    assert_good_smp_boot(&o, "multiboot2", 512, 4);
    assert_eq!(o.summary_value("vmx_root"), Some("4"), "{}", context(&o));
    assert_eq!(
        o.lines_with("vmx", "root apic_id=").len(),
        4,
        "one `vmx: root` line per core{}",
        context(&o)
    );
}

/// `on_done=reboot` resets the machine after the summary through the chipset or the keyboard controller; the
/// triple fault is only the last resort and must not be what happens on QEMU (with -no-reboot a reset ends QEMU
/// with status 0).
#[test]
fn on_done_reboot_resets_without_a_triple_fault() {
    for machine in [Machine::Q35, Machine::Pc] {
        let mut spec = qemu("on_done=reboot");
        spec.machine = Some(machine);
        let o = boot(&spec);
        assert_eq!(o.status, Status::Ok, "{}", context(&o));
        assert_eq!(
            o.emulator_exit,
            Some(0),
            "a reset ends QEMU -no-reboot with 0{}",
            context(&o)
        );
        assert!(
            !o.notes.iter().any(|n| n.contains("triple fault")),
            "the reset fell back to a triple fault: {:?}{}",
            o.notes,
            context(&o)
        );
    }
}

/// `log_defer=off` writes every line at once instead of holding routine lines until the BSP waits: the log
/// must be the same contract either way (every early line, every core's pcb line, time order), and a value
/// that is not on|off is named in a warning.
#[test]
fn qemu_smp_4_with_log_defer_off_and_a_bad_value() {
    for append in ["log_defer=off", "log_defer=sometimes"] {
        let spec = RunSpec {
            smp: "4".into(),
            ..qemu(append)
        };
        let o = boot(&spec);
        assert_good_smp_boot(&o, "pvh", 512, 4);
        let warned = o
            .lines_with("boot", "log_defer=sometimes is not on|off")
            .len();
        assert_eq!(
            warned,
            usize::from(append.ends_with("sometimes")),
            "{append}{}",
            context(&o)
        );
        assert_qemu_exit(&o, 33);
    }
}
