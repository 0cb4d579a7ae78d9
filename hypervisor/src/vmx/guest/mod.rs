//! The test guest each core launches once it is in VMX root operation (docs/vmx.md, "The test guest"): where
//! its pages are and how they are mapped ([`layout`]), and how its VM exits are handled and judged ([`exits`]).
//! Plain decisions, tested on the host; `vmx::vm_entry` runs them on the processor.
#![deny(unsafe_code)]

pub mod entry_cases;
pub mod exits;
pub mod layout;

pub use exits::{
    ExitCounts, ExitInfo, GuestFailure, GuestRegs, GuestReport, GuestRun, Step, LEAF_APIC_ID,
    LEAF_SIGNATURE, SIGNATURE, VMCALL_DONE, VMCALL_REPORT,
};
pub use layout::{GuestLayout, Page, BLOCK_ALIGN, BLOCK_BUDGET_BYTES, BLOCK_PAGES};

/// Which entry of the test guest's program runs: the program itself, or a deliberate fault for the tests
/// (`fault=guest_io`, `fault=guest_ept`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestProgram {
    Normal,
    IoExit,
    EptViolation,
}
