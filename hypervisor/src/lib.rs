//! The hypervisor image: core services (serial log, time, exceptions, per-CPU state) and the stages that run
//! on them. `main.rs` only wires the loader's entry and the panic handler to [`start`].
//!
//! Everything that decides something is plain Rust tested on the host; hardware access sits in `arch`,
//! `interrupts` and `percpu`, and in the `cfg(target_os = "none")` parts.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod apic;
pub mod arch;
pub mod bringup;
pub mod cmdline;
pub mod exit;
pub mod interrupts;
pub mod logger;
pub mod memory;
pub mod percpu;
pub mod time;
pub mod vmx;

#[cfg(target_os = "none")]
mod bsp;
#[cfg(target_os = "none")]
mod faults;
#[cfg(target_os = "none")]
mod smp_stage;
#[cfg(target_os = "none")]
mod vmx_stage;
#[cfg(target_os = "none")]
pub use bsp::{report_panic, start};
