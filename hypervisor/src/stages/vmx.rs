//! The VMX stage on each core (docs/vmx.md): regions from the frame allocator, the optional conformance
//! self-test, VMX root operation with a current VMCS, and teardown when the run exits.
#![deny(unsafe_code)]

use crate::exit::{self, Reason, SummaryKey, TALLY};
use crate::percpu::{self, Pcb};
use crate::vmx::{HardwareCpu, Region, RegionPair, VmxCore, VmxError};
use crate::{arch, config, interrupts, memory, time, verdict};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use smp::LocalApic;

/// What each core needs from the frame allocator for this stage: its VMXON region and its VMCS, the self-test's
/// third page (a VMCS with a wrong revision identifier, allocated only with `selftest=vmx`), and the test
/// guest's pages.
pub const BYTES_PER_CORE: u64 = REGION_BYTES + super::guest::BYTES_PER_CORE;

/// The VMXON region, the VMCS and the self-test's third page of a core.
pub const REGION_BYTES: u64 = 3 * memory::PAGE_SIZE;

/// The stage's counts over all cores (the cores in VMX root are `exit::TALLY.vmx_root`).
struct VmxTally {
    unsupported: AtomicU32,
    firmware_disabled: AtomicU32,
    other_failures: AtomicU32,
    selftest_pass: AtomicU32,
    selftest_fail: AtomicU32,
    /// Set when the teardown starts: an NMI then means "leave VMX and stop".
    stopping: AtomicBool,
}

static STAGE: VmxTally = VmxTally {
    unsupported: AtomicU32::new(0),
    firmware_disabled: AtomicU32::new(0),
    other_failures: AtomicU32::new(0),
    selftest_pass: AtomicU32::new(0),
    selftest_fail: AtomicU32::new(0),
    stopping: AtomicBool::new(false),
};

/// `vmx=on|off` from the command line.
pub fn enabled() -> bool {
    config::get().vmx
}

/// Runs the stage on the calling core. Every outcome is logged and counted; nothing here ends the run.
/// Returns when the stage finished (microseconds since boot, taken before its log lines), None if VMX is off
/// or the run is already ending (the teardown started: the core does not enter VMX operation).
pub fn run_on_this_cpu(pcb: &'static Pcb) -> Option<u64> {
    if !enabled() {
        return None;
    }
    exit::set_teardown_hook(on_exit);
    // SeqCst pairs with `teardown_all`: either it sees this core in the stage and waits for it, or the core
    // sees the teardown and stays out of VMX operation.
    pcb.status
        .fetch_or(percpu::status::VMX_STAGE, Ordering::SeqCst);
    let done = if STAGE.stopping.load(Ordering::SeqCst) {
        None
    } else {
        Some(stage_on_this_cpu(pcb))
    };
    pcb.clear_status(percpu::status::VMX_STAGE);
    done
}

fn stage_on_this_cpu(pcb: &'static Pcb) -> u64 {
    let apic_id = pcb.apic_id;
    // The IDT with the fix-up table is loaded on this core, so expected faults in the self-test are caught.
    let mut cpu = HardwareCpu::this_core().with_fault_fixup();
    let (Some(vmxon), Some(vmcs)) = (memory::alloc_owned_frame(), memory::alloc_owned_frame())
    else {
        log::error!(target: "vmx", "failed apic_id={apic_id} error=\"no memory for the VMXON and VMCS regions\"");
        STAGE.other_failures.fetch_add(1, Ordering::AcqRel);
        return time::now_us();
    };
    let mut core = VmxCore::new(RegionPair {
        vmxon: Region::from_frame(vmxon),
        vmcs: Region::from_frame(vmcs),
    });

    if config::get().selftest {
        let scratch = memory::alloc_owned_frame().map(Region::from_frame);
        let report = core.selftest(&mut cpu, scratch.as_ref());
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
            log::log!(target: "vmx", crate::log_scale::level(), "root apic_id={apic_id} {report}");
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
            if super::guest::enabled() {
                let (passed, failed) = super::guest::run_on_this_cpu(pcb, &cpu);
                STAGE.selftest_pass.fetch_add(passed, Ordering::AcqRel);
                STAGE.selftest_fail.fetch_add(failed, Ordering::AcqRel);
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
    let in_root = core.in_root();
    *pcb.vmx.lock() = Some(core);
    if in_root {
        // Only now, with the state recorded, may the teardown see this core in VMX root (SeqCst pairs with
        // `teardown_all`'s `stopping` store: if it started meanwhile, this core leaves again itself).
        pcb.status
            .fetch_or(percpu::status::VMX_ROOT, Ordering::SeqCst);
        TALLY.vmx_root.fetch_add(1, Ordering::AcqRel);
        if STAGE.stopping.load(Ordering::SeqCst) {
            leave_on_this_cpu(pcb);
        }
    }
    done_us
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
    let guests = super::guest::enabled().then(|| super::guest::PASSED.load(Ordering::Acquire));
    exit::set_summary_value(SummaryKey::Guests, u64::from(guests.unwrap_or(0)));
    log::info!(target: "vmx", "stage done vmx_root={in_root} online={online}");
    verdict::judge_vmx(verdict::VmxCounts {
        online,
        vmx_root: in_root,
        unsupported: STAGE.unsupported.load(Ordering::Acquire),
        firmware_disabled: STAGE.firmware_disabled.load(Ordering::Acquire),
        selftest_fail,
        guests,
    })
}

/// How long the teardown waits for the cores to leave VMX operation.
pub const TEARDOWN_TIMEOUT_US: u64 = 1_000_000;

/// Leaves VMX operation on the calling core if it is in it, and logs it. Runs in the NMI handler too, so it
/// only tries the core's `vmx` lock: if the interrupted code holds it (it was recording or changing the
/// state), the state cannot be trusted and the core stays in VMX operation, said in an ERROR line.
fn leave_on_this_cpu(pcb: &Pcb) {
    if !pcb.has_status(percpu::status::VMX_ROOT) {
        return;
    }
    let Some(mut slot) = pcb.vmx.try_lock() else {
        log::error!(target: "vmx", "leave failed apic_id={} error=\"VMX state busy: interrupted while it was being changed\"", pcb.apic_id);
        return;
    };
    let Some(core) = slot.as_mut().filter(|c| c.in_root()) else {
        return;
    };
    let mut cpu = HardwareCpu::this_core();
    match core.leave(&mut cpu) {
        Ok(()) => {
            pcb.clear_status(percpu::status::VMX_ROOT);
            // A per-core line (`log_scale`): above the threshold the teardown's count line says it for all.
            log::log!(
                target: "vmx",
                crate::log_scale::level(),
                "left apic_id={} (VMCLEAR, VMXOFF, CR4.VMXE cleared)",
                pcb.apic_id
            )
        }
        Err(e) => log::error!(target: "vmx", "leave failed apic_id={} error=\"{e}\"", pcb.apic_id),
    }
}

/// The NMI hook (registered by [`teardown_all`]): during teardown an NMI means "leave VMX and stop". A core
/// still in its VMX stage, not yet recorded in VMX root, goes on (it leaves again itself at the end of the
/// stage). Returns false outside the teardown.
fn on_nmi() -> bool {
    if !STAGE.stopping.load(Ordering::SeqCst) {
        return false;
    }
    let Some(pcb) = percpu::this_cpu() else {
        arch::halt_forever()
    };
    if pcb.has_status(percpu::status::VMX_STAGE) && !pcb.has_status(percpu::status::VMX_ROOT) {
        return true;
    }
    leave_on_this_cpu(pcb);
    arch::halt_forever()
}

/// The exit hook (registered by the stage on its first core): every way out of the run (the summary after
/// any verdict, a fatal error on the BSP, `on_done=halt|exit|reboot`) first takes every core out of VMX
/// root operation, as Linux's emergency disable does before a reboot.
fn on_exit() {
    teardown_all(TEARDOWN_TIMEOUT_US);
}

/// On the BSP before the run ends: every core in VMX root leaves it (the others are sent an NMI); a core still
/// in its VMX stage is waited for (it leaves itself). Takes no other core's lock (it reads each core's status
/// word), so it may run in an exception handler. Bounded by `timeout_us`; a core that did not leave is a WARN.
pub fn teardown_all(timeout_us: u64) {
    use percpu::status::{VMX_ROOT, VMX_STAGE};
    interrupts::set_nmi_hook(on_nmi);
    STAGE.stopping.store(true, Ordering::SeqCst);
    let me = percpu::this_cpu();
    let cores: alloc::vec::Vec<&'static Pcb> = match percpu::ALL.try_lock() {
        Some(all) => all.clone(),
        None => {
            log::error!(target: "vmx", "teardown: the core list is busy; only this core leaves VMX operation");
            me.into_iter().collect()
        }
    };
    let is_me = |p: &Pcb| me.is_some_and(|m| m.index == p.index);
    // Another core is pending while it is in VMX root or in its VMX stage; this core while in VMX root.
    let pending = |p: &Pcb| {
        let bits = p.status.load(Ordering::SeqCst);
        bits & VMX_ROOT != 0 || (!is_me(p) && bits & VMX_STAGE != 0)
    };
    let want = cores.iter().filter(|p| pending(p)).count();
    if want == 0 {
        return;
    }
    let lapic = arch::lapic::local();
    for pcb in cores.iter().filter(|p| !is_me(p) && pending(p)) {
        let icr = smp::apic::Icr::new(0, smp::apic::DeliveryMode::Nmi, true, false, pcb.apic_id);
        if let Err(e) = lapic.send_ipi(icr) {
            log::warn!(target: "vmx", "NMI to apic_id={} failed: {e}", pcb.apic_id);
        }
    }
    if let Some(me) = me {
        leave_on_this_cpu(me);
    }
    let still = || cores.iter().filter(|p| pending(p)).count();
    let deadline = time::now_us() + timeout_us;
    while still() > 0 && time::now_us() < deadline {
        arch::pause();
    }
    let left = want.saturating_sub(still());
    if left < want {
        log::warn!(target: "vmx", "teardown: only {left} of {want} cores confirmed leaving VMX operation");
    } else {
        log::info!(target: "vmx", "teardown: {left} of {want} cores out of VMX operation");
    }
}
