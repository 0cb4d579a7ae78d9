//! VM-instruction error numbers and VM-exit reasons.
//!
//! The VM-instruction error numbers (SDM vol. 3C 31.4, "VM Instruction Error Numbers", table 30-1) are already
//! complete in `vmx::errors::InstructionError` (1-28, with 14, 21 and 27 reserved); this module re-exports that
//! type instead of keeping a second table, and its test pins every number to the SDM's text.
//!
//! Exit reasons: SDM vol. 3C 25.9.1, "Basic VM-Exit Information" (the exit-reason field: bits 15:0 basic exit
//! reason, bit 31 VM-entry failure; bits 27-29, enclave mode, pending MTF and exit from VMX root, are not
//! decoded: the test guest uses none of those features), and vol. 3D appendix C, "VMX Basic Exit Reasons"
//! (table C-1).

use core::fmt;

pub use crate::vmx::errors::InstructionError;

/// The 32-bit exit-reason field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExitReason(pub u32);

/// Bit 31: VM-entry failure (the VM exit reports a failed VM entry, SDM vol. 3C 27.7 "VM-Entry Failures During
/// or After Loading Guest State").
pub const EXIT_REASON_ENTRY_FAILURE: u32 = 1 << 31;

impl ExitReason {
    pub const EXCEPTION_OR_NMI: u16 = 0;
    pub const EXTERNAL_INTERRUPT: u16 = 1;
    pub const TRIPLE_FAULT: u16 = 2;
    pub const CPUID: u16 = 10;
    pub const HLT: u16 = 12;
    pub const VMCALL: u16 = 18;
    pub const IO_INSTRUCTION: u16 = 30;
    pub const RDMSR: u16 = 31;
    pub const WRMSR: u16 = 32;
    /// VM-entry failure due to invalid guest state.
    pub const INVALID_GUEST_STATE: u16 = 33;
    /// VM-entry failure due to MSR loading.
    pub const MSR_LOADING: u16 = 34;
    /// VM-entry failure due to machine-check event.
    pub const MACHINE_CHECK: u16 = 41;
    pub const EPT_VIOLATION: u16 = 48;
    pub const EPT_MISCONFIGURATION: u16 = 49;

    /// The exit reason a VM-entry failure stores: the basic reason with bit 31 set.
    pub const fn entry_failure(basic: u16) -> Self {
        Self(EXIT_REASON_ENTRY_FAILURE | basic as u32)
    }

    /// Bits 15:0.
    pub const fn basic(self) -> u16 {
        self.0 as u16
    }

    /// Bit 31.
    pub const fn is_entry_failure(self) -> bool {
        self.0 & EXIT_REASON_ENTRY_FAILURE != 0
    }

    /// The name of the basic exit reason (table C-1), `None` for a number the table leaves unused.
    pub const fn name(self) -> Option<&'static str> {
        basic_exit_reason_name(self.basic())
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_entry_failure() {
            f.write_str("VM-entry failure: ")?;
        }
        match self.name() {
            Some(name) => write!(f, "exit reason {} ({name})", self.basic()),
            None => write!(f, "exit reason {} (not defined by the SDM)", self.basic()),
        }
    }
}

/// SDM vol. 3D table C-1 "Basic Exit Reasons".
pub const fn basic_exit_reason_name(basic: u16) -> Option<&'static str> {
    Some(match basic {
        0 => "exception or non-maskable interrupt (NMI)",
        1 => "external interrupt",
        2 => "triple fault",
        3 => "INIT signal",
        4 => "start-up IPI (SIPI)",
        5 => "I/O system-management interrupt (SMI)",
        6 => "other SMI",
        7 => "interrupt window",
        8 => "NMI window",
        9 => "task switch",
        10 => "CPUID",
        11 => "GETSEC",
        12 => "HLT",
        13 => "INVD",
        14 => "INVLPG",
        15 => "RDPMC",
        16 => "RDTSC",
        17 => "RSM",
        18 => "VMCALL",
        19 => "VMCLEAR",
        20 => "VMLAUNCH",
        21 => "VMPTRLD",
        22 => "VMPTRST",
        23 => "VMREAD",
        24 => "VMRESUME",
        25 => "VMWRITE",
        26 => "VMXOFF",
        27 => "VMXON",
        28 => "control-register accesses",
        29 => "MOV DR",
        30 => "I/O instruction",
        31 => "RDMSR",
        32 => "WRMSR",
        33 => "VM-entry failure due to invalid guest state",
        34 => "VM-entry failure due to MSR loading",
        36 => "MWAIT",
        37 => "monitor trap flag",
        39 => "MONITOR",
        40 => "PAUSE",
        41 => "VM-entry failure due to machine-check event",
        43 => "TPR below threshold",
        44 => "APIC access",
        45 => "virtualized EOI",
        46 => "access to GDTR or IDTR",
        47 => "access to LDTR or TR",
        48 => "EPT violation",
        49 => "EPT misconfiguration",
        50 => "INVEPT",
        51 => "RDTSCP",
        52 => "VMX-preemption timer expired",
        53 => "INVVPID",
        54 => "WBINVD or WBNOINVD",
        55 => "XSETBV",
        56 => "APIC write",
        57 => "RDRAND",
        58 => "INVPCID",
        59 => "VMFUNC",
        60 => "ENCLS",
        61 => "RDSEED",
        62 => "page-modification log full",
        63 => "XSAVES",
        64 => "XRSTORS",
        65 => "PCONFIG",
        66 => "SPP-related event",
        67 => "UMWAIT",
        68 => "TPAUSE",
        69 => "LOADIWKEY",
        70 => "ENCLV",
        72 => "ENQCMD PASID translation failure",
        73 => "ENQCMDS PASID translation failure",
        74 => "bus lock",
        75 => "instruction timeout",
        76 => "SEAMCALL",
        77 => "TDCALL",
        78 => "RDMSRLIST",
        79 => "WRMSRLIST",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SDM vol. 3C table 30-1, every defined number with its text.
    const SDM_TABLE_30_1: &[(u32, &str)] = &[
        (1, "VMCALL executed in VMX root operation"),
        (2, "VMCLEAR with invalid physical address"),
        (3, "VMCLEAR with VMXON pointer"),
        (4, "VMLAUNCH with non-clear VMCS"),
        (5, "VMRESUME with non-launched VMCS"),
        (
            6,
            "VMRESUME after VMXOFF (VMXOFF and VMXON between VMLAUNCH and VMRESUME)",
        ),
        (7, "VM entry with invalid control field(s)"),
        (8, "VM entry with invalid host-state field(s)"),
        (9, "VMPTRLD with invalid physical address"),
        (10, "VMPTRLD with VMXON pointer"),
        (11, "VMPTRLD with incorrect VMCS revision identifier"),
        (12, "VMREAD/VMWRITE from/to unsupported VMCS component"),
        (13, "VMWRITE to read-only VMCS component"),
        (15, "VMXON executed in VMX root operation"),
        (16, "VM entry with invalid executive-VMCS pointer"),
        (17, "VM entry with non-launched executive VMCS"),
        (18, "VM entry with executive-VMCS pointer not VMXON pointer"),
        (19, "VMCALL with non-clear VMCS"),
        (20, "VMCALL with invalid VM-exit control fields"),
        (22, "VMCALL with incorrect MSEG revision identifier"),
        (23, "VMXOFF under dual-monitor treatment of SMIs and SMM"),
        (24, "VMCALL with invalid SMM-monitor features"),
        (
            25,
            "VM entry with invalid VM-execution control fields in executive VMCS",
        ),
        (26, "VM entry with events blocked by MOV SS"),
        (28, "Invalid operand to INVEPT/INVVPID"),
    ];

    #[test]
    fn every_vm_instruction_error_of_table_30_1_has_its_sdm_text() {
        for &(number, text) in SDM_TABLE_30_1 {
            assert_eq!(
                InstructionError(number).description(),
                Some(text),
                "{number}"
            );
        }
        for number in [0, 14, 21, 27, 29, 30, 255, u32::MAX] {
            assert_eq!(InstructionError(number).description(), None, "{number}");
        }
        assert_eq!(
            format!("{}", InstructionError(7)),
            "VM-instruction error 7 (VM entry with invalid control field(s))"
        );
    }

    #[test]
    fn exit_reasons_decode_bit_31_and_the_basic_reason() {
        let failure = ExitReason::entry_failure(ExitReason::INVALID_GUEST_STATE);
        assert_eq!(failure.0, 0x8000_0021);
        assert!(failure.is_entry_failure());
        assert_eq!(failure.basic(), 33);
        assert_eq!(
            format!("{failure}"),
            "VM-entry failure: exit reason 33 (VM-entry failure due to invalid guest state)"
        );
        assert_eq!(
            format!("{}", ExitReason::entry_failure(ExitReason::MSR_LOADING)),
            "VM-entry failure: exit reason 34 (VM-entry failure due to MSR loading)"
        );
        assert_eq!(
            ExitReason::entry_failure(ExitReason::MACHINE_CHECK).name(),
            Some("VM-entry failure due to machine-check event")
        );
        let hlt = ExitReason(12);
        assert!(!hlt.is_entry_failure());
        assert_eq!(format!("{hlt}"), "exit reason 12 (HLT)");
        assert_eq!(
            format!("{}", ExitReason(35)),
            "exit reason 35 (not defined by the SDM)"
        );
    }

    #[test]
    fn basic_exit_reasons_0_to_79_are_named_except_the_unused_ones() {
        let unnamed: Vec<u16> = (0..=80)
            .filter(|&n| basic_exit_reason_name(n).is_none())
            .collect();
        assert_eq!(unnamed, vec![35, 38, 42, 71, 80]);
        assert_eq!(
            basic_exit_reason_name(0),
            Some("exception or non-maskable interrupt (NMI)")
        );
        assert_eq!(basic_exit_reason_name(48), Some("EPT violation"));
        assert_eq!(basic_exit_reason_name(69), Some("LOADIWKEY"));
    }
}
