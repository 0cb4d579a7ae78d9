//! The VMCS: capabilities, typed fields, control choice, the SDM's VM-entry checks and the state builders.
//!
//! Everything here is a decision in plain Rust; nothing touches hardware. The hardware layer implements
//! [`VmcsAccess`] with VMREAD/VMWRITE of the current VMCS and [`CapabilityMsrs`] with RDMSR, and executes
//! VMLAUNCH/VMRESUME as [`LaunchTracker`] says. Host tests use a fake VMCS (`fake.rs`) that models field widths,
//! read-only fields and unsupported encodings as the SDM describes them.
//!
//! The order of use on a core, once it is in VMX root operation with a current VMCS:
//!
//! 1. [`VmxCapabilities::read`] (SDM vol. 3D appendix A, "VMX Capability Reporting Facility"), and on an AP
//!    [`consistency::compare`] against the BSP's copy.
//! 2. [`choose_controls`] with a [`ControlPolicy`]: every required control allowed, or a [`CapabilityError`]
//!    naming it; the optional ones reported in [`Features`].
//! 3. [`write_controls`], [`HostState::write`] and [`GuestState::write`] through [`VmcsAccess`].
//! 4. [`check_vm_entry`] (SDM vol. 3C ch. 27, "VM Entries") on the same VMCS: a VMCS that passes it does not fail
//!    VM entry for any reason it models; one that fails names the check, the VM-instruction error (7 or 8) or
//!    the VM-entry failure exit reason (33) that the processor would give.
//! 5. VMLAUNCH, later VMRESUME, as [`LaunchTracker`] allows.
//!
//! Section numbers follow the edition named in docs/architecture.md (325462-086US): vol. 3C ch. 25 "Virtual
//! Machine Control Structures", ch. 27 "VM Entries", ch. 28 "VM Exits", ch. 31 "VMX Instruction Reference";
//! vol. 3D appendix A "VMX Capability Reporting Facility", B "Field Encoding in VMCS", C "VMX Basic Exit
//! Reasons". Older editions number these chapters one lower.
#![deny(unsafe_code)]

pub mod caps;
pub mod checks;
pub mod consistency;
pub mod controls;
pub mod errors;
pub mod fields;
pub mod guest_state;
pub mod host_state;
pub mod launch;
pub mod segment;

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
pub(crate) mod fixtures;

use core::fmt;

pub use caps::{
    AllowedBits, CapabilityMsrs, CpuMsrs, EptVpidCap, ReadError, VmxCapabilities, VmxMisc,
};
pub use checks::{check_vm_entry, Area, Check, EntryError};
pub use consistency::{compare, first_mismatch, Mismatch, Mismatches};
pub use controls::{choose_controls, CapabilityError, ControlPolicy, Controls, Features};
pub use errors::{ExitReason, InstructionError};
pub use fields::{AccessType, Field, FieldKind, Width};
pub use guest_state::{eptp, write_controls, ControlRefs, GuestSetup, GuestState};
pub use host_state::{HostState, HostView};
pub use launch::{EntryInstruction, LaunchError, LaunchState, LaunchTracker};

use super::VmFail;

/// VMREAD or VMWRITE, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessOp {
    Read,
    Write,
}

impl fmt::Display for AccessOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Read => "VMREAD",
            Self::Write => "VMWRITE",
        })
    }
}

/// A VMREAD or VMWRITE that failed (SDM vol. 3C 31.3, "VMX Instructions": VMREAD and VMWRITE fail with
/// VMfailInvalid without a current VMCS, and with VMfailValid error 12 for an unsupported component, 13 for a
/// VMWRITE to a read-only component).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessError {
    pub op: AccessOp,
    pub field: Field,
    pub fail: VmFail,
}

impl AccessError {
    /// The VM-instruction error number, when the failure was VMfailValid.
    pub const fn instruction_error(&self) -> Option<InstructionError> {
        match self.fail {
            VmFail::Valid(error) => Some(error),
            VmFail::Invalid | VmFail::FlagsUndefined => None,
        }
    }
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {} failed with {}", self.op, self.field, self.fail)
    }
}

/// The current VMCS as software sees it: VMREAD and VMWRITE by typed field (SDM vol. 3C 25.11.2, "VMREAD, VMWRITE,
/// and Encodings of VMCS Fields").
///
/// Values are passed as `u64` whatever the field's width, as the instructions do in 64-bit mode: a VMWRITE of a
/// 16-bit or 32-bit field ignores the bits above the width, and a VMREAD zero-extends. The HIGH access type of a
/// 64-bit field ([`Field::high`]) reads or writes bits 63:32 of that field.
///
/// The hardware implementation executes VMREAD/VMWRITE on the current VMCS. Its constructor is the place for the
/// `unsafe` contract (VMX root operation, CPL 0, a current VMCS); the methods themselves cannot break memory
/// safety: only VMLAUNCH/VMRESUME act on what was written.
pub trait VmcsAccess {
    /// VMREAD.
    fn vmread(&self, field: Field) -> Result<u64, AccessError>;

    /// VMWRITE.
    fn vmwrite(&mut self, field: Field, value: u64) -> Result<(), AccessError>;
}
