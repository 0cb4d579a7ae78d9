//! The guest step of the VMX stage (docs/vmx.md, "The test guest"): on each core that entered VMX root, the
//! test guest runs to the end of its program, and the core reports how it went in one line. Runs inside the
//! VMX stage (the core is in it, not yet recorded in VMX root), so the teardown's protocol covers it: an NMI
//! then ends the guest with a VM exit, and the stage leaves VMX operation itself.
#![deny(unsafe_code)]

use core::sync::atomic::{AtomicU32, Ordering};

use super::faults;
use crate::config;
use crate::percpu::Pcb;
use crate::vmx::guest::ExitCounts;
use crate::vmx::launch::{self, CoreInput, GuestOutcome};
use crate::vmx::HardwareCpu;

/// What the guest step asks of the frame allocator per core (the block, with its alignment slack).
pub const BYTES_PER_CORE: u64 = crate::vmx::guest::BLOCK_BUDGET_BYTES;

/// Cores whose guest passed, and whose guest did not.
pub static PASSED: AtomicU32 = AtomicU32::new(0);
pub static FAILED: AtomicU32 = AtomicU32::new(0);

/// `guest=on|off`.
pub fn enabled() -> bool {
    config::get().guest
}

/// On the BSP before the APs start: its capabilities become the reference the other cores are checked against.
pub fn prepare_on_bsp(pcb: &Pcb) {
    if enabled() {
        launch::publish_bsp_capabilities(&HardwareCpu::this_core(), pcb.maxphyaddr);
    }
}

/// Runs the test guest on this core (in VMX root, its VMCS current) and reports it, with the self-test's
/// entry-failure cases first under `selftest=vmx`. Returns the cases (passed, failed) for the self-test count.
pub fn run_on_this_cpu(pcb: &Pcb, cpu: &HardwareCpu) -> (u32, u32) {
    let (program, perturb_caps) = faults::guest_faults_for(pcb.index);
    let input = CoreInput {
        index: pcb.index,
        apic_id: pcb.apic_id,
        is_bsp: pcb.index == 0,
        maxphyaddr: pcb.maxphyaddr,
        tss: &pcb.tss as *const _ as u64,
        stack_top: pcb.stack.1,
        loops: config::get().guest_loops,
        program,
        perturb_caps,
        selftest: config::get().selftest,
    };
    let outcome = launch::run_test_guest(cpu, &input);
    let bytes = outcome.bytes;
    let (mut passed, mut failed) = (0, 0);
    for case in &outcome.cases {
        log::info!(target: "vmx", "selftest apic_id={} {case}", pcb.apic_id);
        if case.passed() {
            passed += 1;
        } else if !case.skipped() {
            failed += 1;
        }
    }
    if report(pcb.apic_id, &outcome, bytes) {
        pcb.set_status(crate::percpu::status::GUEST_OK);
    }
    (passed, failed)
}

/// `vmx: guest apic_id=<id> result=ok|fail <counts> [round_trip_cycles=<n>] <features> bytes=<n> [error="..."]`:
/// a passing guest's line is a per-core line (`log_scale`: DEBUG above the threshold, where the BSP prints the
/// compact `vmx: guest cpus=` runs), a failing one is always an ERROR. Returns whether the guest passed.
fn report(apic_id: u32, outcome: &GuestOutcome, bytes: u64) -> bool {
    let counts: ExitCounts = outcome.run.counts;
    let features = outcome
        .features
        .map(|f| alloc::format!(" {f}"))
        .unwrap_or_default();
    let cycles = outcome
        .run
        .cycles_per_round_trip()
        .map(|c| alloc::format!(" loops={} round_trip_cycles={c}", outcome.run.loops))
        .unwrap_or_default();
    match &outcome.result {
        Ok(()) => {
            PASSED.fetch_add(1, Ordering::AcqRel);
            log::log!(
                target: "vmx",
                crate::log_scale::level(),
                "guest apic_id={apic_id} result=ok {counts}{cycles}{features} bytes={bytes}"
            );
            true
        }
        Err(e) => {
            FAILED.fetch_add(1, Ordering::AcqRel);
            log::error!(
                target: "vmx",
                "guest apic_id={apic_id} result=fail {counts}{features} bytes={bytes} error=\"{e}\""
            );
            false
        }
    }
}
