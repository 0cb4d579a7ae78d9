//! The VMX stage on each core (docs/vmx.md): regions from the frame allocator, the optional conformance
//! self-test, VMX root operation with a current VMCS, and teardown when the run exits.

use crate::exit::{self, Reason, TALLY};
use crate::percpu::{self, status, Pcb, VmxCore};
use crate::vmx::{self, HardwareCpu, Region, RegionPair, VmxError, VmxState};
use crate::{apic, memory, time};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use smp::LocalApic;

static ENABLED: AtomicBool = AtomicBool::new(true);
static SELFTEST: AtomicBool = AtomicBool::new(false);
static UNSUPPORTED: AtomicU32 = AtomicU32::new(0);
static FIRMWARE_DISABLED: AtomicU32 = AtomicU32::new(0);
static OTHER_FAILURES: AtomicU32 = AtomicU32::new(0);
static SELFTEST_PASS: AtomicU32 = AtomicU32::new(0);
static SELFTEST_FAIL: AtomicU32 = AtomicU32::new(0);
static STOPPING: AtomicBool = AtomicBool::new(false);
static LEFT: AtomicU32 = AtomicU32::new(0);

/// Reads `vmx=on|off` and `selftest=vmx` (set by the BSP before any AP starts).
pub fn configure(vmx: Option<&str>, selftest: Option<&str>) {
    match vmx {
        None | Some("on") => {}
        Some("off") => ENABLED.store(false, Ordering::Relaxed),
        Some(other) => log::warn!(target: "vmx", "vmx={other} is not on|off; VMX stays on"),
    }
    match selftest {
        None => {}
        Some("vmx") => SELFTEST.store(true, Ordering::Relaxed),
        Some(other) => {
            log::warn!(target: "vmx", "selftest={other} is unknown (only selftest=vmx exists)")
        }
    }
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

fn region(phys: u64) -> Region {
    // SAFETY: `phys` is a zeroed 4 KiB frame from the frame allocator, identity-mapped (so `phys` is also its
    // virtual address, 4 KiB-aligned, write-back), reserved for this core's VMX use for the rest of the run.
    unsafe {
        Region::new(
            phys,
            NonNull::new(phys as *mut u8).expect("frames are never at 0"),
            4096,
        )
    }
}

/// Runs the stage on the calling core. Every outcome is logged and counted; nothing here ends the run.
/// Returns when the stage finished (microseconds since boot, taken before its log lines), None if VMX is off.
pub fn run_on_this_cpu(pcb: &'static Pcb) -> Option<u64> {
    if !enabled() {
        return None;
    }
    let apic_id = pcb.apic_id;
    // SAFETY: this HardwareCpu is used only on this core, for this stage; the IDT with the fix-up table is
    // loaded on this core, so expected faults in the self-test are caught.
    let mut cpu = unsafe { HardwareCpu::new() }.with_fault_fixup();
    let (Some(vmxon), Some(vmcs)) = (memory::alloc_zeroed(1, 4096), memory::alloc_zeroed(1, 4096))
    else {
        log::error!(target: "vmx", "failed apic_id={apic_id} error=\"no memory for the VMXON and VMCS regions\"");
        OTHER_FAILURES.fetch_add(1, Ordering::AcqRel);
        return Some(time::now_us());
    };
    let mut core = VmxCore {
        state: VmxState::NotEntered,
        regions: RegionPair {
            vmxon: region(vmxon),
            vmcs: region(vmcs),
        },
    };

    if SELFTEST.load(Ordering::Relaxed) {
        let report = vmx::run_selftest(&mut cpu, &mut core.state, &core.regions);
        for result in report.results.iter() {
            log::info!(target: "vmx", "selftest apic_id={apic_id} {result}");
        }
        let summary = report.summary();
        log::info!(target: "vmx", "selftest apic_id={apic_id} {summary}");
        if let Some(e) = report.restore_error {
            log::error!(target: "vmx", "selftest apic_id={apic_id} could not restore the core's state: {e}");
        }
        SELFTEST_PASS.fetch_add(summary.passed as u32, Ordering::AcqRel);
        SELFTEST_FAIL.fetch_add(
            summary.failed as u32 + u32::from(report.restore_error.is_some()),
            Ordering::AcqRel,
        );
    }

    let entered = vmx::enter_vmx_root(&mut cpu, &mut core.state, &core.regions);
    let done_us = time::now_us();
    match entered {
        Ok(report) => {
            pcb.set_status(status::VMX_CAPABLE | status::VMX_ROOT);
            TALLY.vmx_root.fetch_add(1, Ordering::AcqRel);
            log::info!(target: "vmx", "root apic_id={apic_id} {report}");
            // Entering again must be a no-op (the PCB's VMX_ROOT status), never a second VMXON.
            match vmx::enter_vmx_root(&mut cpu, &mut core.state, &core.regions) {
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
            UNSUPPORTED.fetch_add(1, Ordering::AcqRel);
        }
        Err(e) => {
            log::error!(target: "vmx", "failed apic_id={apic_id} error=\"{e}\"");
            if let VmxError::DisabledByFirmware { .. } = e {
                FIRMWARE_DISABLED.fetch_add(1, Ordering::AcqRel);
            } else {
                OTHER_FAILURES.fetch_add(1, Ordering::AcqRel);
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
    exit::add_summary_value("t_vmx_us", last_done_us);
    if SELFTEST.load(Ordering::Relaxed) {
        exit::add_summary_value(
            "selftest_pass",
            u64::from(SELFTEST_PASS.load(Ordering::Acquire)),
        );
        exit::add_summary_value(
            "selftest_fail",
            u64::from(SELFTEST_FAIL.load(Ordering::Acquire)),
        );
    }
    let in_root = TALLY.vmx_root.load(Ordering::Acquire);
    log::info!(target: "vmx", "stage done vmx_root={in_root} online={online}");
    if SELFTEST_FAIL.load(Ordering::Acquire) > 0 {
        return Some((exit::Verdict::Fail, Reason::SelftestFailed));
    }
    if in_root == online {
        return None;
    }
    let reason = if UNSUPPORTED.load(Ordering::Acquire) > 0 {
        Reason::VmxUnsupported
    } else if FIRMWARE_DISABLED.load(Ordering::Acquire) > 0 {
        Reason::VmxDisabledByFirmware
    } else {
        Reason::VmxFailed
    };
    Some((exit::Verdict::Degraded, reason))
}

/// Leaves VMX operation on the calling core if it is in it, and logs it.
fn leave_on_this_cpu(pcb: &Pcb) {
    let mut slot = pcb.vmx.lock();
    let Some(core) = slot.as_mut() else { return };
    if !pcb.has_status(status::VMX_ROOT) {
        return;
    }
    // SAFETY: as in `run_on_this_cpu`: used only on this core.
    let mut cpu = unsafe { HardwareCpu::new() };
    match vmx::leave_vmx_root(&mut cpu, &mut core.state) {
        Ok(()) => {
            pcb.clear_status(status::VMX_ROOT);
            log::info!(target: "vmx", "left apic_id={} (VMCLEAR, VMXOFF, CR4.VMXE cleared)", pcb.apic_id);
        }
        Err(e) => log::error!(target: "vmx", "leave failed apic_id={} error=\"{e}\"", pcb.apic_id),
    }
    LEFT.fetch_add(1, Ordering::AcqRel);
}

/// The NMI handler's hook: during teardown an NMI means "leave VMX and stop". Returns false otherwise.
pub fn on_nmi() -> bool {
    if !STOPPING.load(Ordering::Acquire) {
        return false;
    }
    if let Some(pcb) = percpu::this_cpu() {
        leave_on_this_cpu(pcb);
    }
    crate::arch::halt_forever()
}

/// On the BSP before the run exits: every core in VMX root leaves it (APs are woken with an NMI).
pub fn teardown_all(timeout_us: u64) {
    let me = percpu::this_cpu();
    let cores: alloc::vec::Vec<&'static Pcb> = percpu::ALL.lock().clone();
    let others: alloc::vec::Vec<_> = cores
        .iter()
        .filter(|p| p.has_status(status::VMX_ROOT) && me.is_none_or(|m| m.index != p.index))
        .collect();
    STOPPING.store(true, Ordering::Release);
    let lapic = apic::local();
    for pcb in &others {
        let icr = smp::apic::Icr::new(0, smp::apic::DeliveryMode::Nmi, true, false, pcb.apic_id);
        if let Err(e) = lapic.send_ipi(icr) {
            log::warn!(target: "vmx", "NMI to apic_id={} failed: {e}", pcb.apic_id);
        }
    }
    let me_in_root = me.is_some_and(|m| m.has_status(status::VMX_ROOT));
    if let Some(me) = me.filter(|_| me_in_root) {
        leave_on_this_cpu(me);
    }
    let want = others.len() as u32 + u32::from(me_in_root);
    let deadline = time::now_us() + timeout_us;
    while LEFT.load(Ordering::Acquire) < want && time::now_us() < deadline {
        crate::arch::pause();
    }
    let left = LEFT.load(Ordering::Acquire);
    if left < want {
        log::warn!(target: "vmx", "teardown: only {left} of {want} cores confirmed leaving VMX operation");
    }
}
