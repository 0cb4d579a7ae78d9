//! A fake current VMCS for host tests: a field -> value map that behaves as VMREAD/VMWRITE do (SDM vol. 3C 31.3,
//! "VMX Instructions").
//!
//! - Without a current VMCS both instructions fail with VMfailInvalid.
//! - An encoding that is malformed or not one of the supported components fails with VMfailValid error 12.
//! - A VMWRITE to a read-only (VM-exit information) field fails with error 13, unless IA32_VMX_MISC bit 29 says
//!   that VMWRITE may write any supported field (vol. 3D A.6, "Miscellaneous Data").
//! - A VMWRITE keeps only the bits of the field's width; a VMREAD zero-extends; the HIGH access of a 64-bit
//!   field reads or writes its bits 63:32.
//! - Each VMfailValid stores its number in the VM-instruction error field, as the processor does.
//!
//! A field never written reads as 0 (a real VMCS after VMCLEAR holds implementation-specific data: a check
//! must never rely on that value).

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};

use super::fields::{AccessType, Field, ALL};
use super::{AccessError, AccessOp, InstructionError, VmcsAccess};
use crate::vmx::VmFail;

pub struct FakeVmcs {
    values: BTreeMap<Field, u64>,
    supported: BTreeSet<Field>,
    /// IA32_VMX_MISC bit 29.
    pub vmwrite_any_field: bool,
    /// Whether there is a current VMCS.
    pub current: bool,
    instruction_error: Cell<u32>,
    /// Every successful VMWRITE, in order.
    pub writes: Vec<(Field, u64)>,
}

impl Default for FakeVmcs {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeVmcs {
    /// A current VMCS that supports every field named in `fields::ALL`.
    pub fn new() -> Self {
        Self {
            values: BTreeMap::new(),
            supported: ALL.iter().map(|entry| entry.field).collect(),
            vmwrite_any_field: false,
            current: true,
            instruction_error: Cell::new(0),
            writes: Vec::new(),
        }
    }

    /// Removes a field from the supported components (a processor without that feature).
    pub fn unsupport(&mut self, field: Field) {
        self.supported.remove(&field.full());
    }

    /// What the processor writes on a VM exit or VM-instruction failure: no read-only check.
    pub fn set_by_processor(&mut self, field: Field, value: u64) {
        self.values
            .insert(field.full(), value & field.width().mask());
    }

    /// Test shorthand: a VMWRITE that must succeed.
    pub fn set(&mut self, field: Field, value: u64) {
        self.vmwrite(field, value)
            .unwrap_or_else(|error| panic!("{error}"));
    }

    /// Test shorthand: a VMREAD that must succeed.
    pub fn get(&self, field: Field) -> u64 {
        self.vmread(field).unwrap_or_else(|error| panic!("{error}"))
    }

    pub fn was_written(&self, field: Field) -> bool {
        self.writes
            .iter()
            .any(|&(written, _)| written.full() == field.full())
    }

    fn fail(&self, op: AccessOp, field: Field, error: InstructionError) -> AccessError {
        self.instruction_error.set(error.0);
        AccessError {
            op,
            field,
            fail: VmFail::Valid(error),
        }
    }

    fn supported(&self, field: Field) -> bool {
        field.check().is_ok() && self.supported.contains(&field.full())
    }
}

impl VmcsAccess for FakeVmcs {
    fn vmread(&self, field: Field) -> Result<u64, AccessError> {
        if !self.current {
            return Err(AccessError {
                op: AccessOp::Read,
                field,
                fail: VmFail::Invalid,
            });
        }
        if field == Field::VM_INSTRUCTION_ERROR {
            return Ok(u64::from(self.instruction_error.get()));
        }
        if !self.supported(field) {
            return Err(self.fail(
                AccessOp::Read,
                field,
                InstructionError::UNSUPPORTED_VMCS_COMPONENT,
            ));
        }
        let value = self.values.get(&field.full()).copied().unwrap_or(0);
        Ok(match field.access() {
            AccessType::Full => value,
            AccessType::High => value >> 32,
        })
    }

    fn vmwrite(&mut self, field: Field, value: u64) -> Result<(), AccessError> {
        if !self.current {
            return Err(AccessError {
                op: AccessOp::Write,
                field,
                fail: VmFail::Invalid,
            });
        }
        if !self.supported(field) {
            return Err(self.fail(
                AccessOp::Write,
                field,
                InstructionError::UNSUPPORTED_VMCS_COMPONENT,
            ));
        }
        if field.is_read_only() && !self.vmwrite_any_field {
            return Err(self.fail(
                AccessOp::Write,
                field,
                InstructionError::VMWRITE_READ_ONLY_COMPONENT,
            ));
        }
        let full = field.full();
        let stored = match field.access() {
            AccessType::Full => value & field.width().mask(),
            AccessType::High => {
                let old = self.values.get(&full).copied().unwrap_or(0);
                (old & 0xFFFF_FFFF) | ((value & 0xFFFF_FFFF) << 32)
            }
        };
        self.values.insert(full, stored);
        self.writes.push((field, value));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_keep_only_the_width_of_the_field() {
        let mut vmcs = FakeVmcs::new();
        vmcs.set(Field::GUEST_CS_SELECTOR, 0x1234_5678);
        assert_eq!(vmcs.get(Field::GUEST_CS_SELECTOR), 0x5678);
        vmcs.set(Field::GUEST_CS_LIMIT, 0xAAAA_BBBB_CCCC_DDDD);
        assert_eq!(vmcs.get(Field::GUEST_CS_LIMIT), 0xCCCC_DDDD);
        vmcs.set(Field::GUEST_RIP, 0xFFFF_8000_0000_1000);
        assert_eq!(vmcs.get(Field::GUEST_RIP), 0xFFFF_8000_0000_1000);
        vmcs.set(Field::EPT_POINTER, 0x1122_3344_5566_7788);
        assert_eq!(vmcs.get(Field::EPT_POINTER), 0x1122_3344_5566_7788);
        assert!(vmcs.was_written(Field::GUEST_RIP));
        assert!(!vmcs.was_written(Field::GUEST_RSP));
    }

    #[test]
    fn the_high_access_is_bits_63_to_32_of_a_64_bit_field() {
        let mut vmcs = FakeVmcs::new();
        vmcs.set(Field::VMCS_LINK_POINTER, 0x0000_0000_FFFF_FFFF);
        vmcs.set(Field::VMCS_LINK_POINTER.high(), 0x1_FFFF_FFFF);
        assert_eq!(vmcs.get(Field::VMCS_LINK_POINTER), u64::MAX);
        assert_eq!(vmcs.get(Field::VMCS_LINK_POINTER.high()), 0xFFFF_FFFF);
    }

    #[test]
    fn read_only_fields_reject_vmwrite_with_error_13_unless_misc_bit_29() {
        let mut vmcs = FakeVmcs::new();
        let error = vmcs.vmwrite(Field::EXIT_REASON, 12).unwrap_err();
        assert_eq!(error.instruction_error(), Some(InstructionError(13)));
        assert_eq!(error.op, AccessOp::Write);
        assert_eq!(vmcs.get(Field::VM_INSTRUCTION_ERROR), 13);
        assert_eq!(
            format!("{error}"),
            "VMWRITE of EXIT_REASON (0x4402) failed with VMfailValid with VM-instruction error 13 \
             (VMWRITE to read-only VMCS component)"
        );
        vmcs.set_by_processor(Field::EXIT_REASON, 12);
        assert_eq!(vmcs.get(Field::EXIT_REASON), 12);
        vmcs.vmwrite_any_field = true;
        vmcs.set(Field::EXIT_REASON, 30);
        assert_eq!(vmcs.get(Field::EXIT_REASON), 30);
    }

    #[test]
    fn unsupported_or_malformed_encodings_fail_with_error_12() {
        let mut vmcs = FakeVmcs::new();
        for raw in [0x8000, 0x4c02, 0x6801, 0x1000] {
            let field = Field::from_raw(raw);
            let read = vmcs.vmread(field).unwrap_err();
            assert_eq!(
                read.instruction_error(),
                Some(InstructionError(12)),
                "{raw:x}"
            );
            let write = vmcs.vmwrite(field, 0).unwrap_err();
            assert_eq!(
                write.instruction_error(),
                Some(InstructionError(12)),
                "{raw:x}"
            );
        }
        vmcs.unsupport(Field::EPT_POINTER);
        assert_eq!(
            vmcs.vmwrite(Field::EPT_POINTER.high(), 0)
                .unwrap_err()
                .instruction_error(),
            Some(InstructionError(12))
        );
        assert_eq!(vmcs.get(Field::VM_INSTRUCTION_ERROR), 12);
        assert!(vmcs.writes.is_empty());
    }

    #[test]
    fn without_a_current_vmcs_both_fail_with_vmfail_invalid() {
        let mut vmcs = FakeVmcs::new();
        vmcs.current = false;
        assert_eq!(
            vmcs.vmread(Field::GUEST_RIP).unwrap_err().fail,
            VmFail::Invalid
        );
        let error = vmcs.vmwrite(Field::GUEST_RIP, 1).unwrap_err();
        assert_eq!(error.fail, VmFail::Invalid);
        assert_eq!(error.instruction_error(), None);
    }
}
