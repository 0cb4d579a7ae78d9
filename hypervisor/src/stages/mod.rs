//! The stages, in the order the boot runs them:
//!
//! ```text
//! bsp ──> pipeline::run_core (BSP) ──> pcb line ─> faults ─> [smp: start the APs] ─> vmx (root ─> guest) ─> done
//!                                                               │
//!                                  ap::ap_entry (each AP) ──> pipeline::run_core ──> pcb line ─> faults ─> vmx (root ─> guest) ─> done
//! bsp ──> report (phase lines) ──> exit::finish (summary)
//! ```
//!
//! Stages call core services (`exit`, `interrupts`, `logger`, `memory`, `percpu`, `time`) and `arch`; no core
//! service calls a stage (a stage that must act on an event, like the VMX stage's NMI teardown, registers a
//! hook with the service). Stages only orchestrate: the hardware access they need sits in `arch`, `memory`,
//! `percpu` and `vmx::instructions`. The whole tree is `deny(unsafe_code)`.
#![deny(unsafe_code)]

pub mod ap;
#[cfg(target_os = "none")]
pub mod bsp;
#[cfg(target_os = "none")]
pub mod faults;
#[cfg(target_os = "none")]
pub mod guest;
#[cfg(target_os = "none")]
pub mod pipeline;
pub mod report;
#[cfg(target_os = "none")]
pub mod smp;
#[cfg(target_os = "none")]
pub mod vmx;
