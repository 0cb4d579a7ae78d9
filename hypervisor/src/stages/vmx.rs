//! The VMX stage on each core (docs/vmx.md): regions from the frame allocator, the optional conformance
//! self-test, VMX root operation with a current VMCS, and teardown when the run exits.
#![deny(unsafe_code)]

use crate::exit::{self, Reason, SummaryKey, TALLY};
use crate::percpu::{self, Pcb};
use crate::vmx::{HardwareCpu, Region, RegionPair, VmxCore, VmxError};
use crate::{arch, config, interrupts, memory, time, verdict};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use smp::LocalApic;

/// What each core needs from the frame allocator for this stage: its VMXON region and its VMCS.
pub const BYTES_PER_CORE: u64 = 2 * memory::PAGE_SIZE;

/// The stage's counts over all cores (the cores in VMX root are `exit::TALLY.vmx_root`).
struct VmxTally {
    unsupported: AtomicU32,
    firmware_disabled: AtomicU32,
    other_failures: AtomicU32,
    selftest_pass: AtomicU32,
    selftest_fail: AtomicU32,
    /// Cores that left VMX operation during the teardown.
    left: AtomicU32,
    /// Set when the teardown starts: an NMI then means "leave VMX and stop".
    stopping: AtomicBool,
}

static STAGE: VmxTally = VmxTally {
    unsupported: AtomicU32::new(0),
    firmware_disabled: AtomicU32::new(0),
    other_failures: AtomicU32::new(0),
    selftest_pass: AtomicU32::new(0),
    selftest_fail: AtomicU32::new(0),
    left: AtomicU32::new(0),
    stopping: AtomicBool::new(false),
};

/// `vmx=on|off` from the command line.
pub fn enabled() -> bool {
    config::get().vmx
}

/// Runs the stage on the calling core. Every outcome is logged and counted; nothing here ends the run.
/// Returns when the stage finished (microseconds since boot, taken before its log lines), None if VMX is off.
pub fn run_on_this_cpu(pcb: &'static Pcb) -> Option<u64> {
    if !enabled() {
        return None;
    }
    let apic_id = pcb.apic_id;
    // The IDT with the fix-up table is loaded on this core, so expected faults in the self-test are caught.
    let mut cpu = HardwareCpu::this_core().with_fault_fixup();
    let (Some(vmxon), Some(vmcs)) = (memory::alloc_owned_frame(), memory::alloc_owned_frame())
    else {
        log::error!(target: "vmx", "failed apic_id={apic_id} error=\"no memory for the VMXON and VMCS regions\"");
        STAGE.other_failures.fetch_add(1, Ordering::AcqRel);
        return Some(time::now_us());
    };
    let mut core = VmxCore::new(RegionPair {
        vmxon: Region::from_frame(vmxon),
        vmcs: Region::from_frame(vmcs),
    });

    if config::get().selftest {
        let report = core.selftest(&mut cpu);
        for result in report.results.iter() {
            log::info!(target: "vmx", "selftest apic_id={apic_id} {result}");
        }
        let summary = report.summary();
        log::info!(target: "vmx", "selftest apic_id={apic_id} {summary}");
        if let Some(e) = report.restore_error {
            log::error!(target: "vmx", "selftest apic_id={apic_id} could not restore the core's state: {e}");
        }
        STAGE
            .selftest_pass
            .fetch_add(summary.passed as u32, Ordering::AcqRel);
        STAGE.selftest_fail.fetch_add(
            summary.failed as u32 + u32::from(report.restore_error.is_some()),
            Ordering::AcqRel,
        );
    }

    let entered = core.enter(&mut cpu);
    let done_us = time::now_us();
    match entered {
        Ok(report) => {
            TALLY.vmx_root.fetch_add(1, Ordering::AcqRel);
            log::info!(target: "vmx", "root apic_id={apic_id} {report}");
            // Entering again must be a no-op (the core's state says it is in root), never a second VMXON.
            match core.enter(&mut cpu) {
                Ok(again) if again.already => {
                    log::debug!(target: "vmx", "apic_id={apic_id} second entry is a no-op")
                }
                Ok(_) => {
                    log::error!(target: "vmx", "apic_id={apic_id} second entry was not recognized as a no-op")
                }
                Err(e) => log::error!(target: "vmx", "apic_id={apic_id} second entry failed: {e}"),
            }
        }
        Err(VmxError::Unsupported) => {
            log::warn!(target: "vmx", "unsupported apic_id={apic_id} (CPUID.1:ECX.VMX[bit 5] = 0)");
            STAGE.unsupported.fetch_add(1, Ordering::AcqRel);
        }
        Err(e) => {
            log::error!(target: "vmx", "failed apic_id={apic_id} error=\"{e}\"");
            if let VmxError::DisabledByFirmware { .. } = e {
                STAGE.firmware_disabled.fetch_add(1, Ordering::AcqRel);
            } else {
                STAGE.other_failures.fetch_add(1, Ordering::AcqRel);
            }
        }
    }
    *pcb.vmx.lock() = Some(core);
    Some(done_us)
}

/// On the BSP, once every online core finished its per-core work: the verdict's VMX part. `last_done_us` is
/// when the last core finished the stage (the summary's `t_vmx_us`).
pub fn judge(last_done_us: u64) -> Option<(exit::Verdict, Reason)> {
    if !enabled() {
        return None;
    }
    let online = TALLY.online.load(Ordering::Acquire);
    exit::set_summary_value(SummaryKey::VmxUs, last_done_us);
    let selftest_fail = STAGE.selftest_fail.load(Ordering::Acquire);
    if config::get().selftest {
        let pass = STAGE.selftest_pass.load(Ordering::Acquire);
        exit::set_summary_value(SummaryKey::SelftestPass, u64::from(pass));
        exit::set_summary_value(SummaryKey::SelftestFail, u64::from(selftest_fail));
    }
    let in_root = TALLY.vmx_root.load(Ordering::Acquire);
    log::info!(target: "vmx", "stage done vmx_root={in_root} online={online}");
    verdict::judge_vmx(verdict::VmxCounts {
        online,
        vmx_root: in_root,
        unsupported: STAGE.unsupported.load(Ordering::Acquire),
        firmware_disabled: STAGE.firmware_disabled.load(Ordering::Acquire),
        selftest_fail,
    })
}

/// Leaves VMX operation on the calling core if it is in it, and logs it.
fn leave_on_this_cpu(pcb: &Pcb) {
    let mut slot = pcb.vmx.lock();
    let Some(core) = slot.as_mut().filter(|c| c.in_root()) else {
        return;
    };
    let mut cpu = HardwareCpu::this_core();
    match core.leave(&mut cpu) {
        Ok(()) => {
            log::info!(target: "vmx", "left apic_id={} (VMCLEAR, VMXOFF, CR4.VMXE cleared)", pcb.apic_id)
        }
        Err(e) => log::error!(target: "vmx", "leave failed apic_id={} error=\"{e}\"", pcb.apic_id),
    }
    STAGE.left.fetch_add(1, Ordering::AcqRel);
}

/// Whether `pcb`'s core is in VMX root operation.
fn in_root(pcb: &Pcb) -> bool {
    pcb.vmx.lock().as_ref().is_some_and(VmxCore::in_root)
}

/// The NMI hook (registered by [`teardown_all`]): during teardown an NMI means "leave VMX and stop".
/// Returns false otherwise.
fn on_nmi() -> bool {
    if !STAGE.stopping.load(Ordering::Acquire) {
        return false;
    }
    if let Some(pcb) = percpu::this_cpu() {
        leave_on_this_cpu(pcb);
    }
    arch::halt_forever()
}

/// On the BSP before the run exits: every core in VMX root leaves it (APs are woken with an NMI).
pub fn teardown_all(timeout_us: u64) {
    let me = percpu::this_cpu();
    let cores: alloc::vec::Vec<&'static Pcb> = percpu::ALL.lock().clone();
    let others: alloc::vec::Vec<_> = cores
        .iter()
        .filter(|p| me.is_none_or(|m| m.index != p.index) && in_root(p))
        .collect();
    interrupts::set_nmi_hook(on_nmi);
    STAGE.stopping.store(true, Ordering::Release);
    let lapic = arch::lapic::local();
    for pcb in &others {
        let icr = smp::apic::Icr::new(0, smp::apic::DeliveryMode::Nmi, true, false, pcb.apic_id);
        if let Err(e) = lapic.send_ipi(icr) {
            log::warn!(target: "vmx", "NMI to apic_id={} failed: {e}", pcb.apic_id);
        }
    }
    let me_in_root = me.is_some_and(in_root);
    if let Some(me) = me.filter(|_| me_in_root) {
        leave_on_this_cpu(me);
    }
    let want = others.len() as u32 + u32::from(me_in_root);
    let deadline = time::now_us() + timeout_us;
    while STAGE.left.load(Ordering::Acquire) < want && time::now_us() < deadline {
        arch::pause();
    }
    let left = STAGE.left.load(Ordering::Acquire);
    if left < want {
        log::warn!(target: "vmx", "teardown: only {left} of {want} cores confirmed leaving VMX operation");
    }
}
