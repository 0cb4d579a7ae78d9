//! Deliberate failures from the command line (`fault=`, `fault_cpu=`), so that tests prove every failure path
//! is reported with the right CPU, cause and verdict (docs/reliability.md).

#![deny(unsafe_code)]

use crate::arch::exception;
use crate::config::{self, Fault};

/// The fault armed for logical CPU `cpu` by the command line, if any.
pub fn armed_for(cpu: u32) -> Option<Fault> {
    config::get().fault_on(cpu)
}

/// Raises the armed fault now if it targets `cpu` and is one that happens "now" (not `ap_hang`,
/// `panic_during_bringup` or `ud_after_vmx`, which their stages raise at the right moment).
pub fn inject_if_targeted(cpu: u32) {
    match armed_for(cpu) {
        Some(
            Fault::ApHang
            | Fault::PanicDuringBringup
            | Fault::NoMemory
            | Fault::InvalidOpcodeAfterVmx
            | Fault::EarlyApInvalidOpcode
            | Fault::GuestIo
            | Fault::GuestEpt
            | Fault::VmxCapsMismatch,
        )
        | None => {}
        Some(fault) => raise(fault, cpu),
    }
}

/// Raises `early_ap_ud` if it targets AP `cpu` (called in the AP's early window, before its PCB).
pub fn inject_early_ap_if_targeted(cpu: u32) {
    if cpu != 0 && armed_for(cpu) == Some(Fault::EarlyApInvalidOpcode) {
        raise(Fault::EarlyApInvalidOpcode, cpu);
    }
}

/// Raises `ud_after_vmx` if it targets `cpu` (called by the pipeline right after the core's VMX stage).
pub fn inject_after_vmx_if_targeted(cpu: u32) {
    if armed_for(cpu) == Some(Fault::InvalidOpcodeAfterVmx) {
        raise(Fault::InvalidOpcodeAfterVmx, cpu);
    }
}

/// The WARN line every injected fault is announced with, just before it happens.
pub fn announce(fault: Fault, cpu: u32) {
    log::warn!(target: "boot", "injecting fault={} on cpu={cpu} as asked on the command line", fault.word());
}

fn raise(fault: Fault, cpu: u32) {
    announce(fault, cpu);
    // Each arm raises the exception it names; the handler reports it and stops the core (or ends the run), so
    // execution never continues past the faulting instruction.
    match fault {
        Fault::InvalidOpcode | Fault::InvalidOpcodeAfterVmx | Fault::EarlyApInvalidOpcode => {
            exception::raise_invalid_opcode()
        }
        Fault::PageFault => exception::raise_page_fault(),
        Fault::GeneralProtection => exception::raise_general_protection(),
        Fault::DivideError => exception::raise_divide_error(),
        Fault::Panic | Fault::PanicDuringBringup => {
            panic!("deliberate panic (fault= on the command line)")
        }
        Fault::StackOverflow => overflow(1),
        Fault::VmxLockedOff => {
            let (found, written) = crate::arch::msr::lock_feature_control_with_vmx_off();
            if written {
                log::warn!(target: "boot", "feature_control=0x{found:x}->0x1 locked with VMX off on cpu={cpu}");
            } else {
                log::warn!(target: "boot", "feature_control=0x{found:x} left alone on cpu={cpu}: already locked, or no such MSR");
            }
        }
        Fault::ApHang
        | Fault::NoMemory
        | Fault::GuestIo
        | Fault::GuestEpt
        | Fault::VmxCapsMismatch => {}
    }
}

/// The test guest's program on `cpu`, and whether its capabilities are read perturbed: a deliberate guest
/// fault if one targets it (announced here).
pub fn guest_faults_for(cpu: u32) -> (crate::vmx::guest::GuestProgram, bool) {
    use crate::vmx::guest::GuestProgram;
    let faults = match armed_for(cpu) {
        Some(Fault::GuestIo) => (GuestProgram::IoExit, false),
        Some(Fault::GuestEpt) => (GuestProgram::EptViolation, false),
        Some(Fault::VmxCapsMismatch) if cpu != 0 => (GuestProgram::Normal, true),
        _ => return (GuestProgram::Normal, false),
    };
    if let Some(fault) = armed_for(cpu) {
        announce(fault, cpu);
    }
    faults
}

/// Panics if `panic_during_bringup` is armed (called by the BSP right after the SIPIs went out).
pub fn panic_during_bringup_if_armed() {
    if armed_for(0) == Some(Fault::PanicDuringBringup) {
        raise(Fault::PanicDuringBringup, 0);
    }
}

#[inline(never)]
fn overflow(depth: u64) {
    if depth == u64::MAX {
        return;
    }
    let frame = [depth; 64];
    // The recursion is real: black_box keeps the frame and the call alive.
    overflow(core::hint::black_box(frame)[0] + 1);
}
