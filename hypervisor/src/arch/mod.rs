//! Small typed wrappers around the instructions and registers the hypervisor touches. Everything above this
//! module (and `interrupts`, `percpu`) is safe code.

pub mod cpuid;
pub mod port;

use x86_64::registers::model_specific::Msr;

/// Reads the time-stamp counter.
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC reads a counter and has no side effects; CR4.TSD is never set, so it cannot fault at CPL 0.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Reads a model-specific register.
///
/// # Safety
/// The MSR must exist on this CPU (reading an unimplemented MSR raises #GP).
#[inline]
pub unsafe fn read_msr(index: u32) -> u64 {
    // SAFETY: the caller guarantees the MSR exists; RDMSR has no other side effects.
    unsafe { Msr::new(index).read() }
}

/// Writes a model-specific register.
///
/// # Safety
/// The MSR must exist and be writable with `value`, and the write must not break memory safety (e.g. EFER,
/// PAT or the GS base in use).
#[inline]
pub unsafe fn write_msr(index: u32, value: u64) {
    // SAFETY: forwarded to the caller's guarantee.
    unsafe { Msr::new(index).write(value) }
}

pub const IA32_GS_BASE: u32 = 0xC000_0101;

/// Stops this CPU for good: interrupts off, then HLT in a loop (an NMI would only resume the loop).
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// Waits for an interrupt without burning the CPU (emulated CPUs share two host cores).
#[inline]
pub fn pause() {
    core::hint::spin_loop();
}
