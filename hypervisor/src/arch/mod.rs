//! Small typed wrappers around the instructions and registers the hypervisor touches: one MSR layer
//! ([`msr`]), one CPUID ([`cpuid`]), port I/O, the local APIC drivers, the AP trampoline. The stages above
//! are safe code (`#![deny(unsafe_code)]`); the other modules with `unsafe` are the core services that own a
//! piece of hardware (`interrupts`, `logger`, `memory`, `percpu`, `time`) and `vmx::instructions`.

pub mod cpuid;
pub mod exception;
pub mod lapic;
pub mod msr;
pub mod port;
pub mod trampoline;

/// Reads the time-stamp counter.
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC reads a counter and has no side effects; CR4.TSD is never set, so it cannot fault at CPL 0.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// The TSC value the 32-bit entry code (boot/src/entry.s) read as its first act.
#[cfg(target_os = "none")]
pub fn boot_entry_tsc() -> u64 {
    extern "C" {
        static boot_entry_tsc: u64;
    }
    // SAFETY: entry.s wrote the TSC into this variable before jumping to long mode; nothing writes it after.
    unsafe { core::ptr::read_volatile(core::ptr::addr_of!(boot_entry_tsc)) }
}

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
