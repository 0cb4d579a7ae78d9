//! Typed errors of the VMX stage, each printable as one line of words (no double quotes, so the kernel can wrap
//! the text in `error="..."`).
//!
//! VM-instruction error numbers: SDM vol. 3C 31.4, table 31-1 "VM-Instruction Error Numbers"; VMfailInvalid and
//! VMfailValid: SDM vol. 3C 31.2 "Conventions".

use core::fmt;

use super::fixed_bits::FixedBitViolations;

/// A VMX instruction, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmxInstruction {
    Vmxon,
    Vmxoff,
    Vmclear,
    Vmptrld,
    Vmptrst,
    Vmread,
}

impl VmxInstruction {
    pub const fn mnemonic(self) -> &'static str {
        match self {
            Self::Vmxon => "VMXON",
            Self::Vmxoff => "VMXOFF",
            Self::Vmclear => "VMCLEAR",
            Self::Vmptrld => "VMPTRLD",
            Self::Vmptrst => "VMPTRST",
            Self::Vmread => "VMREAD",
        }
    }
}

impl fmt::Display for VmxInstruction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mnemonic())
    }
}

/// The number a failing VMX instruction stores in the VM-instruction error field (VMCS encoding 0x4400) when it
/// reports VMfailValid. Any 32-bit value is representable, so a number from a newer SDM is still shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InstructionError(pub u32);

impl InstructionError {
    pub const VMCALL_IN_VMX_ROOT: Self = Self(1);
    pub const VMCLEAR_INVALID_ADDRESS: Self = Self(2);
    pub const VMCLEAR_VMXON_POINTER: Self = Self(3);
    pub const VMLAUNCH_NON_CLEAR_VMCS: Self = Self(4);
    pub const VMRESUME_NON_LAUNCHED_VMCS: Self = Self(5);
    pub const VMRESUME_AFTER_VMXOFF: Self = Self(6);
    pub const VM_ENTRY_INVALID_CONTROL_FIELDS: Self = Self(7);
    pub const VM_ENTRY_INVALID_HOST_STATE: Self = Self(8);
    pub const VMPTRLD_INVALID_ADDRESS: Self = Self(9);
    pub const VMPTRLD_VMXON_POINTER: Self = Self(10);
    pub const VMPTRLD_WRONG_REVISION: Self = Self(11);
    pub const UNSUPPORTED_VMCS_COMPONENT: Self = Self(12);
    pub const VMWRITE_READ_ONLY_COMPONENT: Self = Self(13);
    pub const VMXON_IN_VMX_ROOT: Self = Self(15);
    pub const VM_ENTRY_INVALID_EXECUTIVE_VMCS_POINTER: Self = Self(16);
    pub const VM_ENTRY_NON_LAUNCHED_EXECUTIVE_VMCS: Self = Self(17);
    pub const VM_ENTRY_EXECUTIVE_VMCS_NOT_VMXON_POINTER: Self = Self(18);
    pub const VMCALL_NON_CLEAR_VMCS: Self = Self(19);
    pub const VMCALL_INVALID_VM_EXIT_CONTROLS: Self = Self(20);
    pub const VMCALL_WRONG_MSEG_REVISION: Self = Self(22);
    pub const VMXOFF_UNDER_DUAL_MONITOR: Self = Self(23);
    pub const VMCALL_INVALID_SMM_MONITOR_FEATURES: Self = Self(24);
    pub const VM_ENTRY_INVALID_EXECUTIVE_CONTROLS: Self = Self(25);
    pub const VM_ENTRY_BLOCKED_BY_MOV_SS: Self = Self(26);
    pub const INVALID_INVEPT_INVVPID_OPERAND: Self = Self(28);

    /// The SDM's description (table 31-1) of this error number, or `None` for 0, the reserved numbers 14, 21 and
    /// 27, and numbers above 28.
    pub const fn description(self) -> Option<&'static str> {
        Some(match self.0 {
            1 => "VMCALL executed in VMX root operation",
            2 => "VMCLEAR with invalid physical address",
            3 => "VMCLEAR with VMXON pointer",
            4 => "VMLAUNCH with non-clear VMCS",
            5 => "VMRESUME with non-launched VMCS",
            6 => "VMRESUME after VMXOFF (VMXOFF and VMXON between VMLAUNCH and VMRESUME)",
            7 => "VM entry with invalid control field(s)",
            8 => "VM entry with invalid host-state field(s)",
            9 => "VMPTRLD with invalid physical address",
            10 => "VMPTRLD with VMXON pointer",
            11 => "VMPTRLD with incorrect VMCS revision identifier",
            12 => "VMREAD/VMWRITE from/to unsupported VMCS component",
            13 => "VMWRITE to read-only VMCS component",
            15 => "VMXON executed in VMX root operation",
            16 => "VM entry with invalid executive-VMCS pointer",
            17 => "VM entry with non-launched executive VMCS",
            18 => "VM entry with executive-VMCS pointer not VMXON pointer",
            19 => "VMCALL with non-clear VMCS",
            20 => "VMCALL with invalid VM-exit control fields",
            22 => "VMCALL with incorrect MSEG revision identifier",
            23 => "VMXOFF under dual-monitor treatment of SMIs and SMM",
            24 => "VMCALL with invalid SMM-monitor features",
            25 => "VM entry with invalid VM-execution control fields in executive VMCS",
            26 => "VM entry with events blocked by MOV SS",
            28 => "Invalid operand to INVEPT/INVVPID",
            _ => return None,
        })
    }
}

impl fmt::Display for InstructionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.description() {
            Some(text) => write!(f, "VM-instruction error {} ({})", self.0, text),
            None => write!(
                f,
                "VM-instruction error {} (not defined by the SDM)",
                self.0
            ),
        }
    }
}

/// How a VMX instruction failed without faulting (SDM vol. 3C 31.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmFail {
    /// VMfailInvalid: RFLAGS.CF = 1; there is no current VMCS to hold an error number.
    Invalid,
    /// VMfailValid: RFLAGS.ZF = 1; the number was read from the VM-instruction error field.
    Valid(InstructionError),
    /// CF = 1 and ZF = 1 together, which no VMX instruction reports (SDM vol. 3C 31.2).
    FlagsUndefined,
}

impl fmt::Display for VmFail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid => f.write_str("VMfailInvalid"),
            Self::Valid(error) => write!(f, "VMfailValid with {error}"),
            Self::FlagsUndefined => f.write_str("CF and ZF both set (no defined VMX status)"),
        }
    }
}

/// An exception raised by an instruction and caught by the kernel's fix-up table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exception {
    pub vector: u8,
}

impl Exception {
    /// Invalid opcode.
    pub const UD: Self = Self { vector: 6 };
    /// General protection.
    pub const GP: Self = Self { vector: 13 };

    pub fn mnemonic(self) -> &'static str {
        crate::arch::exception::name(u64::from(self.vector))
    }
}

impl fmt::Display for Exception {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (vector {})", self.mnemonic(), self.vector)
    }
}

/// What one execution of a VMX instruction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstrOutcome {
    /// VMsucceed: CF = ZF = 0.
    Succeeded,
    /// VMfailInvalid or VMfailValid.
    VmFail(VmFail),
    /// The instruction faulted and the kernel's fix-up resumed after it.
    Fault(Exception),
}

impl From<Result<(), VmFail>> for InstrOutcome {
    fn from(result: Result<(), VmFail>) -> Self {
        match result {
            Ok(()) => Self::Succeeded,
            Err(fail) => Self::VmFail(fail),
        }
    }
}

impl fmt::Display for InstrOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Succeeded => f.write_str("VMsucceed"),
            Self::VmFail(fail) => write!(f, "{fail}"),
            Self::Fault(exception) => write!(f, "{exception}"),
        }
    }
}

/// Why the VMX stage failed on a core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmxError {
    /// CPUID.1:ECX.VMX[bit 5] = 0.
    Unsupported,
    /// IA32_FEATURE_CONTROL is locked with "enable VMX outside SMX" clear.
    DisabledByFirmware { value: u64 },
    /// The value read back from IA32_FEATURE_CONTROL differs from the value written.
    FeatureControlWriteFailed { wrote: u64, read_back: u64 },
    /// CR0/CR4 do not (or could not be made to) satisfy the VMX fixed bits.
    FixedBits(FixedBitViolations),
    /// IA32_VMX_CRn_FIXED1 forbids bits that are set in CR0/CR4 (each listed as `must be 0`); they are not
    /// cleared, because the kernel relies on every bit it set.
    FixedBitsWouldClear(FixedBitViolations),
    /// IA32_VMX_BASIC has a reserved bit set (SDM vol. 3D A.1); `bits` are the offending ones.
    BasicReservedBits { value: u64, bits: u64 },
    /// IA32_VMX_BASIC bit 48 (32-bit VMX addresses) is set, which no 64-bit processor reports (A.1).
    Basic32BitAddresses { value: u64 },
    /// IA32_VMX_BASIC reports a memory type for VMCS accesses other than write-back.
    MemoryTypeUnsupported(u8),
    /// IA32_VMX_BASIC reports a region size outside 1..=4096 (SDM vol. 3D A.1 says 0 < size <= 4096).
    RegionSizeInvalid(u16),
    /// A VMXON or VMCS region cannot be used.
    RegionInvalid {
        region: RegionKind,
        error: RegionError,
    },
    /// VMfailInvalid.
    VmFailInvalid { instr: VmxInstruction },
    /// VMfailValid.
    VmFailValid {
        instr: VmxInstruction,
        error: InstructionError,
    },
    /// The instruction left CF and ZF both set, which is not a VMX status (SDM vol. 3C 31.2).
    VmStatusUndefined { instr: VmxInstruction },
    /// After VMCLEAR + VMPTRLD, VMPTRST did not return the VMCS's address.
    VmcsNotCurrent { expected: u64, found: u64 },
    /// VMXON raised #UD or #GP(0) although every condition the kernel can check held (SDM 31.3 "VMXON": e.g.
    /// A20M mode, or SMX operation with bit 1 of IA32_FEATURE_CONTROL clear); caught by the fix-up. `smxe` is
    /// CR4.SMXE at the time (set when the policy uses bit 1, "VMX inside SMX").
    VmxonFaulted { exception: Exception, smxe: bool },
}

impl VmxError {
    /// Maps a [`VmFail`] of `instr` to the matching error.
    pub const fn from_vmfail(instr: VmxInstruction, fail: VmFail) -> Self {
        match fail {
            VmFail::Invalid => Self::VmFailInvalid { instr },
            VmFail::Valid(error) => Self::VmFailValid { instr, error },
            VmFail::FlagsUndefined => Self::VmStatusUndefined { instr },
        }
    }
}

/// Which of a core's two regions an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionKind {
    Vmxon,
    Vmcs,
}

impl fmt::Display for RegionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Vmxon => "VMXON region",
            Self::Vmcs => "VMCS region",
        })
    }
}

/// Name of a memory type encoding (SDM vol. 3D A.1 and vol. 3A ch. 12, "Memory cache control").
pub const fn memory_type_name(memory_type: u8) -> &'static str {
    match memory_type {
        0 => "uncacheable",
        1 => "write-combining",
        4 => "write-through",
        5 => "write-protected",
        6 => "write-back",
        _ => "reserved",
    }
}

impl fmt::Display for VmxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unsupported => f.write_str("VMX is not supported by this processor (CPUID.1:ECX bit 5 is 0)"),
            Self::DisabledByFirmware { value } => write!(
                f,
                "VMX is disabled by firmware: IA32_FEATURE_CONTROL=0x{value:x} is locked with bit 2 \
                 (enable VMX outside SMX) clear"
            ),
            Self::FeatureControlWriteFailed { wrote, read_back } => write!(
                f,
                "IA32_FEATURE_CONTROL did not take the write: wrote 0x{wrote:x}, read back 0x{read_back:x}"
            ),
            Self::FixedBits(violations) => write!(f, "VMX fixed bits not satisfied: {violations}"),
            Self::FixedBitsWouldClear(violations) => write!(
                f,
                "VMX operation forbids bits the kernel has set, refusing to clear {violations}"
            ),
            Self::BasicReservedBits { value, bits } => write!(
                f,
                "IA32_VMX_BASIC=0x{value:x} has reserved bits set (0x{bits:x}): bit 31, bits 47:45 and bits 63:57 \
                 must be 0"
            ),
            Self::Basic32BitAddresses { value } => write!(
                f,
                "IA32_VMX_BASIC=0x{value:x} sets bit 48 (VMX addresses limited to 32 bits), which a 64-bit \
                 processor never reports"
            ),
            Self::MemoryTypeUnsupported(memory_type) => write!(
                f,
                "IA32_VMX_BASIC reports VMCS memory type {memory_type} ({}); only 6 (write-back) is supported",
                memory_type_name(*memory_type)
            ),
            Self::RegionSizeInvalid(size) => {
                write!(f, "IA32_VMX_BASIC reports a region size of {size} bytes; it must be 1 to 4096")
            }
            Self::RegionInvalid { region, error } => write!(f, "{region} unusable: {error}"),
            Self::VmFailInvalid { instr } => write!(f, "{instr} failed with VMfailInvalid"),
            Self::VmFailValid { instr, error } => write!(f, "{instr} failed with VMfailValid: {error}"),
            Self::VmStatusUndefined { instr } => write!(
                f,
                "{instr} left CF and ZF both set, which is no defined VMX status"
            ),
            Self::VmcsNotCurrent { expected, found } => write!(
                f,
                "VMPTRST returned 0x{found:x} after VMPTRLD of 0x{expected:x}: the VMCS is not current"
            ),
            Self::VmxonFaulted { exception, smxe: true } => write!(
                f,
                "VMXON raised {exception} with CR4.SMXE set: inside SMX operation (VMX inside SMX refused)"
            ),
            Self::VmxonFaulted { exception, smxe: false } => write!(
                f,
                "VMXON raised {exception} although feature control and CR0/CR4 allow it (A20M mode, SMX operation or a firmware quirk)"
            ),
        }
    }
}

/// Why a region cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionError {
    /// Not 4-KiB aligned.
    Unaligned { phys: u64 },
    /// Sets bits at or above MAXPHYADDR.
    BeyondPhysicalAddressWidth { phys: u64, maxphyaddr: u8 },
    /// At or above 4 GiB while IA32_VMX_BASIC bit 48 limits region addresses to 32 bits.
    AboveFourGiB { phys: u64 },
    /// Smaller than IA32_VMX_BASIC bits 44:32.
    TooSmall { size: usize, required: u16 },
    /// The virtual mapping is not 4-KiB aligned, so it cannot be the mapping of an aligned physical page.
    VirtualUnaligned { virt: u64 },
    /// The VMXON region and the VMCS region share a page.
    Overlapping { phys: u64 },
}

impl fmt::Display for RegionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unaligned { phys } => write!(f, "physical address 0x{phys:x} is not 4 KiB aligned"),
            Self::BeyondPhysicalAddressWidth { phys, maxphyaddr } => write!(
                f,
                "physical address 0x{phys:x} does not fit in the {maxphyaddr}-bit physical-address width"
            ),
            Self::AboveFourGiB { phys } => write!(
                f,
                "physical address 0x{phys:x} is above 4 GiB but IA32_VMX_BASIC bit 48 limits it to 32 bits"
            ),
            Self::TooSmall { size, required } => {
                write!(f, "{size} bytes is smaller than the {required} bytes IA32_VMX_BASIC asks for")
            }
            Self::VirtualUnaligned { virt } => write!(f, "virtual address 0x{virt:x} is not 4 KiB aligned"),
            Self::Overlapping { phys } => {
                write!(f, "the VMXON and VMCS regions share the page at 0x{phys:x}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SDM vol. 3D A.1 (the memory types IA32_VMX_BASIC bits 53:50 may report) and vol. 3A 12.3.
    #[test]
    fn memory_types_have_their_sdm_names() {
        let names: Vec<&str> = (0..=7).map(memory_type_name).collect();
        assert_eq!(
            names,
            [
                "uncacheable",
                "write-combining",
                "reserved",
                "reserved",
                "write-through",
                "write-protected",
                "write-back",
                "reserved"
            ]
        );
    }

    #[test]
    fn every_sdm_error_number_has_its_name_and_reserved_ones_have_none() {
        let named: Vec<u32> = (0..=40)
            .filter(|&n| InstructionError(n).description().is_some())
            .collect();
        let expected: Vec<u32> = (1..=28).filter(|n| ![14, 21, 27].contains(n)).collect();
        assert_eq!(named, expected);
        assert_eq!(
            InstructionError(2).description(),
            Some("VMCLEAR with invalid physical address")
        );
        assert_eq!(
            InstructionError(3).description(),
            Some("VMCLEAR with VMXON pointer")
        );
        assert_eq!(
            InstructionError(9).description(),
            Some("VMPTRLD with invalid physical address")
        );
        assert_eq!(
            InstructionError(10).description(),
            Some("VMPTRLD with VMXON pointer")
        );
        assert_eq!(
            InstructionError(11).description(),
            Some("VMPTRLD with incorrect VMCS revision identifier")
        );
        assert_eq!(
            InstructionError(15).description(),
            Some("VMXON executed in VMX root operation")
        );
        assert_eq!(
            InstructionError(28).description(),
            Some("Invalid operand to INVEPT/INVVPID")
        );
        assert_eq!(InstructionError::VMXON_IN_VMX_ROOT, InstructionError(15));
        assert_eq!(
            InstructionError::VMPTRLD_VMXON_POINTER,
            InstructionError(10)
        );
    }

    #[test]
    fn errors_print_as_one_line_of_words_without_quotes() {
        let samples = [
            VmxError::Unsupported,
            VmxError::DisabledByFirmware { value: 1 },
            VmxError::FeatureControlWriteFailed {
                wrote: 5,
                read_back: 0,
            },
            VmxError::MemoryTypeUnsupported(0),
            VmxError::RegionSizeInvalid(0),
            VmxError::BasicReservedBits {
                value: 1 << 31,
                bits: 1 << 31,
            },
            VmxError::Basic32BitAddresses { value: 1 << 48 },
            VmxError::RegionInvalid {
                region: RegionKind::Vmcs,
                error: RegionError::Unaligned { phys: 0x1001 },
            },
            VmxError::VmFailInvalid {
                instr: VmxInstruction::Vmxon,
            },
            VmxError::VmFailValid {
                instr: VmxInstruction::Vmclear,
                error: InstructionError(3),
            },
            VmxError::VmFailValid {
                instr: VmxInstruction::Vmptrld,
                error: InstructionError(27),
            },
            VmxError::VmcsNotCurrent {
                expected: 0x2000,
                found: u64::MAX,
            },
            VmxError::VmStatusUndefined {
                instr: VmxInstruction::Vmxon,
            },
        ];
        for error in samples {
            let text = format!("{error}");
            assert!(
                !text.is_empty() && !text.contains('"') && !text.contains('\n'),
                "{text}"
            );
        }
        assert_eq!(
            format!(
                "{}",
                VmxError::VmFailValid {
                    instr: VmxInstruction::Vmclear,
                    error: InstructionError(3)
                }
            ),
            "VMCLEAR failed with VMfailValid: VM-instruction error 3 (VMCLEAR with VMXON pointer)"
        );
        assert_eq!(
            format!("{}", VmxError::DisabledByFirmware { value: 1 }),
            "VMX is disabled by firmware: IA32_FEATURE_CONTROL=0x1 is locked with bit 2 (enable VMX outside SMX) clear"
        );
        assert_eq!(
            format!("{}", InstructionError(14)),
            "VM-instruction error 14 (not defined by the SDM)"
        );
        assert_eq!(format!("{}", Exception::GP), "#GP (vector 13)");
        assert_eq!(
            format!(
                "{}",
                VmxError::from_vmfail(VmxInstruction::Vmxon, VmFail::FlagsUndefined)
            ),
            "VMXON left CF and ZF both set, which is no defined VMX status"
        );
    }
}
