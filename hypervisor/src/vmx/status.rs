//! The status a VMX instruction reports in RFLAGS, decoded by one pure function that every wrapper uses.
//!
//! SDM vol. 3C 31.2 "Conventions": VMsucceed clears CF and ZF; VMfailInvalid sets CF (and clears ZF);
//! VMfailValid sets ZF (and clears CF). No VMX instruction sets both: [`FlagStatus::BothSet`] is reported as a
//! defined failure instead of being read as one of the three (it is also what the self-test sees when an
//! instruction leaves the flags it preset untouched).

use super::{InstructionError, VmFail};

/// The status CF and ZF encode after a VMX instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagStatus {
    /// CF = 0, ZF = 0.
    Succeed,
    /// CF = 1, ZF = 0: no current VMCS holds an error number.
    FailInvalid,
    /// CF = 0, ZF = 1: the error number is in the current VMCS's VM-instruction error field.
    FailValid,
    /// CF = 1, ZF = 1: not a status the SDM defines.
    BothSet,
}

/// Decodes the CF and ZF values captured (by SETC/SETZ, so any nonzero byte means "set") right after a VMX
/// instruction.
pub const fn decode_flags(cf: u8, zf: u8) -> FlagStatus {
    match (cf != 0, zf != 0) {
        (false, false) => FlagStatus::Succeed,
        (true, false) => FlagStatus::FailInvalid,
        (false, true) => FlagStatus::FailValid,
        (true, true) => FlagStatus::BothSet,
    }
}

/// The result of a VMX instruction from its captured CF and ZF: `Ok` for VMsucceed, [`VmFail::Invalid`],
/// [`VmFail::Valid`] with the number `error_number` returns (called only then: it reads the VM-instruction
/// error field, which exists only with a current VMCS), or [`VmFail::FlagsUndefined`] for CF = ZF = 1.
pub fn vmx_result(cf: u8, zf: u8, error_number: impl FnOnce() -> u32) -> Result<(), VmFail> {
    match decode_flags(cf, zf) {
        FlagStatus::Succeed => Ok(()),
        FlagStatus::FailInvalid => Err(VmFail::Invalid),
        FlagStatus::FailValid => Err(VmFail::Valid(InstructionError(error_number()))),
        FlagStatus::BothSet => Err(VmFail::FlagsUndefined),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// All four combinations, so a decoder that looks at only one flag (e.g. VMXON checking CF alone, which
    /// would score VMfailValid as success) fails here.
    #[test]
    fn all_four_flag_combinations() {
        assert_eq!(decode_flags(0, 0), FlagStatus::Succeed);
        assert_eq!(decode_flags(1, 0), FlagStatus::FailInvalid);
        assert_eq!(decode_flags(0, 1), FlagStatus::FailValid);
        assert_eq!(decode_flags(1, 1), FlagStatus::BothSet);
    }

    #[test]
    fn any_nonzero_byte_counts_as_set() {
        assert_eq!(decode_flags(0xFF, 0), FlagStatus::FailInvalid);
        assert_eq!(decode_flags(0, 0x80), FlagStatus::FailValid);
        assert_eq!(decode_flags(2, 3), FlagStatus::BothSet);
    }

    #[test]
    fn results_of_all_four_combinations_and_the_error_is_read_only_on_vmfail_valid() {
        let mut reads = 0;
        let mut read = |cf, zf| {
            vmx_result(cf, zf, || {
                reads += 1;
                11
            })
        };
        assert_eq!(read(0, 0), Ok(()));
        assert_eq!(read(1, 0), Err(VmFail::Invalid));
        assert_eq!(read(1, 1), Err(VmFail::FlagsUndefined));
        assert_eq!(read(0, 1), Err(VmFail::Valid(InstructionError(11))));
        assert_eq!(reads, 1);
    }
}
