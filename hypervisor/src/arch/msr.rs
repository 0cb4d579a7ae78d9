//! Model-specific registers: the image's one RDMSR/WRMSR (through the x86_64 crate's `Msr`), and the
//! architectural MSRs the x86_64 crate already types (IA32_GS_BASE, IA32_EFER), used through its registers.
//! Intel SDM vol. 4, ch. 2 lists the MSRs.

pub use x86_64::registers::model_specific::{Efer, EferFlags, GsBase};

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
