//! The hypervisor image. `main.rs` only wires the loader's entry and the panic handler to [`start`].
//!
//! | layer | modules | may call |
//! |---|---|---|
//! | stages | `stages::{bsp, smp, ap, pipeline, vmx, faults, report}` | everything below |
//! | configuration | `config` (the command line, parsed once) | `exit` (for `OnDone`), the `smp` crate |
//! | core services | `exit`, `verdict` (how the outcomes decide the verdict), `interrupts`, `logger`, `log_scale` (per-core lines at scale), `memory`, `percpu`, `time` | each other, `arch` |
//! | VMX | `vmx` (decisions against `VmxCpu`; `vmx::instructions` is the real CPU) | `arch` |
//! | hardware | `arch` (MSRs, CPUID, ports, local APIC, trampoline, exception names) | nothing above |
//!
//! Everything that decides something is plain Rust tested on the host; hardware access sits in `arch`,
//! `memory`, `percpu`, `interrupts`, `logger`, `time` and `vmx::instructions`, in `cfg(target_os = "none")`
//! parts where it cannot run on the host. See docs/architecture.md.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod arch;
pub mod config;
pub mod exit;
pub mod interrupts;
pub mod log_scale;
pub mod logger;
pub mod memory;
pub mod percpu;
pub mod stages;
pub mod time;
pub mod verdict;
pub mod vmx;

#[cfg(target_os = "none")]
pub use stages::bsp::{report_panic, start};
