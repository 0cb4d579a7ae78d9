//! Multiprocessor support for the hypervisor: processor discovery from ACPI, local APIC drivers,
//! the INIT-SIPI-SIPI start-up state machine and the choice of the trampoline page.
//!
//! Everything that can be decided without hardware is a pure function tested on the host
//! (`cargo test -p smp`); hardware access sits behind small traits:
//!
//! | module | what | hardware seam |
//! |---|---|---|
//! | [`acpi_tables`] | RSDP search, RSDT/XSDT walk, MADT location | [`PhysRead`], [`acpi::AcpiHandler`] |
//! | [`checksum`] | bad table checksums: warn and use (default) or refuse | none |
//! | [`madt`] | MADT entries -> [`ProcessorList`] (BSP first, limit, rejections) | none (bytes in) |
//! | [`apic`] | ICR encoding, x2APIC switch sequence, the [`LocalApic`] trait (drivers: `hypervisor::arch::lapic`) | the APIC itself |
//! | [`bringup`] | parallel / serial INIT-SIPI-SIPI with timeouts | [`bringup::Platform`] |
//! | [`trampoline`] | choice of the trampoline page below 1 MiB, SIPI vector | none |
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod acpi_tables;
pub mod apic;
pub mod bringup;
pub mod checksum;
pub mod madt;
pub mod phys;
pub mod trampoline;

#[cfg(test)]
mod testutil;

pub use acpi_tables::{find_rsdp, processors_from_phys, processors_from_rsdp, AcpiError};
pub use apic::{Icr, LocalApic};
pub use bringup::{BringupConfig, BringupReport, StartMode};
pub use checksum::{ChecksumMismatch, ChecksumPolicy};
pub use madt::{EntryKind, Processor, ProcessorList, ProcessorState, RejectReason, Rejected};
pub use phys::PhysRead;
