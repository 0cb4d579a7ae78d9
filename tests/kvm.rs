//! VMX on every core under QEMU with KVM (`-accel kvm -cpu host`): the same per-core checks as the
//! Bochs tests in `tests/vmx.rs`, on a real Intel CPU through nested VT-x, each core's test guest
//! included (EPT or not, as the host's nested VMX offers).
//!
//! Ignored by default: they need an Intel host with nested VT-x. Run them with
//! `cargo test --test kvm -- --ignored`. On a host without nested VT-x they FAIL and say why (the
//! same probe `--backend auto` uses: `xtask::host::HostProbe`); they never pass without booting.

mod common;

use common::*;
use xtask::host::HostProbe;
use xtask::{Backend, RunSpec};

/// Fails the test unless this host can run VMX guests under KVM.
fn require_nested_vtx() {
    if let Err(why) = HostProbe::read().nested_vtx() {
        panic!(
            "these tests need an Intel host with nested VT-x (/dev/kvm usable read-write, the vmx \
             flag in /proc/cpuinfo, kvm_intel nested=Y), but {why}; the VMX stage is covered by \
             the Bochs tests (cargo test --test vmx)"
        );
    }
}

fn kvm_vmx_everywhere(n: u32) {
    require_nested_vtx();
    let spec = RunSpec {
        backend: Backend::Kvm,
        smp: n.to_string(),
        append: String::new(),
        ..qemu("")
    };
    let o = {
        let _host = shared_host();
        boot(&spec)
    };
    assert_eq!(o.backend, Backend::Kvm, "{}", context(&o));
    assert!(
        o.command.contains("-accel kvm"),
        "QEMU must run with KVM{}",
        context(&o)
    );
    let features = assert_early_report(&o, "pvh", 512);
    assert_eq!(
        features.field("vmx"),
        Some("yes"),
        "nested VT-x exposes VMX to the guest{}",
        context(&o)
    );
    let pcbs = assert_smp_ok(&o, n, n as usize);
    // The revision id is the host CPU's: the same on every core, whatever it is.
    assert_vmx_root_everywhere(&o, &pcbs, None);
    assert_guest_ok_everywhere(&o, &pcbs, None);
    assert_left_vmx_before_summary(&o, &pcbs);
    assert_qemu_exit(&o, 33);
}

#[test]
#[ignore = "needs an Intel host with nested VT-x (/dev/kvm + vmx flag); run with cargo test -- --ignored"]
fn kvm_vmx_root_1_cpu() {
    kvm_vmx_everywhere(1);
}

#[test]
#[ignore = "needs an Intel host with nested VT-x (/dev/kvm + vmx flag); run with cargo test -- --ignored"]
fn kvm_vmx_root_2_cpus() {
    kvm_vmx_everywhere(2);
}

#[test]
#[ignore = "needs an Intel host with nested VT-x (/dev/kvm + vmx flag); run with cargo test -- --ignored"]
fn kvm_vmx_root_4_cpus() {
    kvm_vmx_everywhere(4);
}

#[test]
#[ignore = "needs an Intel host with nested VT-x (/dev/kvm + vmx flag); run with cargo test -- --ignored"]
fn kvm_vmx_root_8_cpus() {
    kvm_vmx_everywhere(8);
}
