//! The checks VMLAUNCH/VMRESUME make before entering the guest (SDM vol. 3C ch. 27, "VM Entries"), as a pure
//! function of the VMCS and the capability MSRs.
//!
//! Order and outcome, as the SDM gives them:
//!
//! 1. 27.2.1 "Checks on VMX Controls" (`controls.rs`): a failure is VMfailValid with VM-instruction error 7,
//!    "VM entry with invalid control field(s)".
//! 2. 27.2.2 "Checks on Host Control Registers and MSRs", 27.2.3 "Checks on Host Segment and Descriptor-Table
//!    Registers", 27.2.4 "Checks Related to Address-Space Size" (`host.rs`): VMfailValid with error 8, "VM entry
//!    with invalid host-state field(s)".
//! 3. 27.3.1 "Checks on the Guest State Area" (`guest.rs`): a VM-entry failure, a VM exit with exit reason 33
//!    ("VM-entry failure due to invalid guest state") and bit 31 set, and an exit qualification (0, or 4 for the
//!    VMCS link pointer, 3 for an NMI injected into STI blocking; 28.2.1 "Basic VM-Exit Information").
//!
//! The SDM does not order the checks inside one group (27.2: "the order in which these checks are performed is
//! implementation-specific"); here they follow the order of the SDM's lists, which is also what Bochs does in
//! the main. So the kind of failure (7, 8 or 33) is exact; the check named is the first broken rule in this
//! order, which is what a test that breaks exactly one rule sees.
//!
//! Assumptions: VM entry is executed in 64-bit mode (IA-32e mode) outside SMM and outside enclave mode, on a
//! processor with 48-bit linear addresses (canonical = bits 63:47 equal). Not modelled: checks that read memory
//! (the VMCS link pointer's revision identifier, PDPTEs, the virtual-APIC page), the executive-VMCS pointer,
//! MSR-load lists (exit reason 34) and machine checks (41), and the controls this hypervisor never sets
//! (posted interrupts, VMCS shadowing, PML, VM functions, sub-page permissions, CET, PKRS, FRED, tertiary and
//! secondary VM-exit controls).

mod controls;
mod guest;
mod host;
mod names;

use core::fmt;

pub use names::{Area, Check};

use super::caps::VmxCapabilities;
use super::errors::{ExitReason, InstructionError};
use super::fields::Field;
use super::{AccessError, VmcsAccess};

/// One broken rule: which check, the field it was found in and that field's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    pub check: Check,
    pub field: Field,
    pub value: u64,
}

/// Why VM entry would fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryError {
    /// A VMX rule is broken.
    Invalid(Violation),
    /// Reading the VMCS failed (not a VM-entry outcome: the check could not run).
    Access(AccessError),
}

impl From<AccessError> for EntryError {
    fn from(error: AccessError) -> Self {
        Self::Access(error)
    }
}

impl EntryError {
    pub const fn violation(&self) -> Option<Violation> {
        match self {
            Self::Invalid(violation) => Some(*violation),
            Self::Access(_) => None,
        }
    }

    pub const fn check(&self) -> Option<Check> {
        match self {
            Self::Invalid(violation) => Some(violation.check),
            Self::Access(_) => None,
        }
    }

    /// The VM-instruction error of a VMfailValid (7 or 8), `None` for a guest-state failure.
    pub const fn instruction_error(&self) -> Option<InstructionError> {
        match self.check() {
            Some(check) => match check.area() {
                Area::Controls => Some(InstructionError::VM_ENTRY_INVALID_CONTROL_FIELDS),
                Area::HostState => Some(InstructionError::VM_ENTRY_INVALID_HOST_STATE),
                Area::GuestState => None,
            },
            None => None,
        }
    }

    /// The exit reason of a VM-entry failure (33 with bit 31), `None` for a VMfailValid.
    pub const fn exit_reason(&self) -> Option<ExitReason> {
        match self.check() {
            Some(check) if matches!(check.area(), Area::GuestState) => {
                Some(ExitReason::entry_failure(ExitReason::INVALID_GUEST_STATE))
            }
            _ => None,
        }
    }

    /// The exit qualification of a VM-entry failure.
    pub const fn qualification(&self) -> Option<u64> {
        match self.check() {
            Some(check) if matches!(check.area(), Area::GuestState) => Some(check.qualification()),
            _ => None,
        }
    }
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Access(error) => write!(f, "VM-entry checks could not read the VMCS: {error}"),
            Self::Invalid(violation) => {
                match (self.instruction_error(), self.exit_reason()) {
                    (Some(error), _) => write!(f, "VMfailValid with {error}")?,
                    (None, Some(reason)) => write!(
                        f,
                        "{reason} with exit qualification {}",
                        violation.check.qualification()
                    )?,
                    (None, None) => unreachable!("every area has an outcome"),
                }
                write!(
                    f,
                    ": {} ({} = 0x{:x}; SDM vol. 3C {})",
                    violation.check.name(),
                    violation.field,
                    violation.value,
                    violation.check.section()
                )
            }
        }
    }
}

/// The result of one group of checks.
pub(crate) type Outcome = Result<(), EntryError>;

/// Fails with `check` when `ok` is false.
pub(crate) fn require(ok: bool, check: Check, field: Field, value: u64) -> Outcome {
    if ok {
        Ok(())
    } else {
        Err(EntryError::Invalid(Violation {
            check,
            field,
            value,
        }))
    }
}

/// Bits 63:47 all equal (48-bit linear addresses).
pub(crate) const fn canonical(address: u64) -> bool {
    let top = address >> 47;
    top == 0 || top == 0x1_FFFF
}

/// No bit set at or above `width`.
pub(crate) const fn within_width(address: u64, width: u8) -> bool {
    width >= 64 || address >> width == 0
}

/// Each of the eight PAT entries is a valid memory type (0, 1, 4, 5, 6, 7) and bits 7:3 of each are 0.
pub(crate) const fn valid_pat(pat: u64) -> bool {
    let mut i = 0;
    while i < 8 {
        let entry = (pat >> (i * 8)) & 0xFF;
        if !matches!(entry, 0 | 1 | 4 | 5 | 6 | 7) {
            return false;
        }
        i += 1;
    }
    true
}

/// IA32_EFER bits that may be 1: SCE (0), LME (8), LMA (10), NXE (11).
pub(crate) const EFER_VALID: u64 = (1 << 0) | (1 << 8) | (1 << 10) | (1 << 11);
pub(crate) const EFER_LME: u64 = 1 << 8;
pub(crate) const EFER_LMA: u64 = 1 << 10;

/// The control words as VM entry sees them (the secondary word is 0 unless activated).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ControlWords {
    pub pin: u32,
    pub primary: u32,
    pub secondary: u32,
    pub exit: u32,
    pub entry: u32,
}

impl ControlWords {
    pub(crate) fn read(vmcs: &impl VmcsAccess) -> Result<Self, AccessError> {
        let word = |field| vmcs.vmread(field).map(|value| value as u32);
        let primary = word(Field::PRIMARY_PROC_BASED_VM_EXEC_CONTROL)?;
        let secondary = if primary & super::controls::primary::ACTIVATE_SECONDARY_CONTROLS != 0 {
            word(Field::SECONDARY_PROC_BASED_VM_EXEC_CONTROL)?
        } else {
            0
        };
        Ok(Self {
            pin: word(Field::PIN_BASED_VM_EXEC_CONTROL)?,
            primary,
            secondary,
            exit: word(Field::VM_EXIT_CONTROLS)?,
            entry: word(Field::VM_ENTRY_CONTROLS)?,
        })
    }
}

/// Runs every modelled VM-entry check on the VMCS, in the SDM's order, and returns the first failure.
pub fn check_vm_entry(vmcs: &impl VmcsAccess, caps: &VmxCapabilities) -> Result<(), EntryError> {
    let words = ControlWords::read(vmcs)?;
    controls::check(vmcs, caps, &words)?;
    host::check(vmcs, caps, &words)?;
    guest::check(vmcs, caps, &words)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_controls;
#[cfg(test)]
mod tests_guest;
#[cfg(test)]
mod tests_guest_valid;
