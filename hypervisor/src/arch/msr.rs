//! Model-specific registers: the image's one RDMSR/WRMSR (through the x86_64 crate's `Msr`), and the
//! architectural MSRs the x86_64 crate already types (IA32_GS_BASE, IA32_EFER), used through its registers.
//! Intel SDM vol. 4, ch. 2 lists the MSRs.

pub use x86_64::registers::model_specific::{Efer, EferFlags, FsBase, GsBase};

/// IA32_APIC_BASE (SDM vol. 3A 11.4.4).
pub const IA32_APIC_BASE: u32 = 0x1B;

/// RDMSR.
///
/// # Safety
/// The MSR must exist on this CPU (reading an unimplemented MSR raises #GP), and reading it must have no side
/// effect the caller does not expect.
#[inline]
pub unsafe fn read(msr: u32) -> u64 {
    // SAFETY: forwarded to the caller's guarantee.
    unsafe { x86_64::registers::model_specific::Msr::new(msr).read() }
}

/// WRMSR.
///
/// # Safety
/// The MSR must exist and accept `value` (otherwise #GP), and the write must not break memory safety or
/// anything the kernel relies on (EFER, PAT, the GS base in use, the APIC mode, ...).
#[inline]
pub unsafe fn write(msr: u32, value: u64) {
    // SAFETY: forwarded to the caller's guarantee.
    unsafe { x86_64::registers::model_specific::Msr::new(msr).write(value) }
}

/// For `fault=vmx_locked_off` (docs/reliability.md): locks IA32_FEATURE_CONTROL (MSR 0x3A) with "enable VMX
/// inside SMX" (bit 1) and "outside SMX" (bit 2) clear, as a firmware that disables VMX does. Returns the value
/// found and whether it was written: a locked MSR is left alone (WRMSR would raise #GP), and so is a CPU
/// without VMX or SMX (it has no such MSR).
pub fn lock_feature_control_with_vmx_off() -> (u64, bool) {
    const IA32_FEATURE_CONTROL: u32 = 0x3A;
    const LOCK: u64 = 1;
    let info = super::cpuid::CpuInfo::read();
    if !info.vmx && !info.smx {
        return (0, false);
    }
    // SAFETY: the MSR exists on a CPU with VMX or SMX (SDM vol. 4 table 2-2); reading it has no side effect.
    let found = unsafe { read(IA32_FEATURE_CONTROL) };
    if found & LOCK != 0 {
        return (found, false);
    }
    // SAFETY: the MSR exists and is unlocked, so WRMSR of the lock bit alone is accepted; it only gates a
    // later VMXON, which then fails cleanly with "disabled by firmware".
    unsafe { write(IA32_FEATURE_CONTROL, LOCK) };
    (found, true)
}
