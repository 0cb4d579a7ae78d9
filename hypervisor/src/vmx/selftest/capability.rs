//! Consistency of the VMX capability MSRs, as kvm-unit-tests' `test_vmx_caps` checks it (SDM vol. 3D appendix A
//! "VMX capability reporting facility").
//!
//! - A.3 "VM-execution controls", A.4 "VM-exit controls", A.5 "VM-entry controls": in each control MSR, bits
//!   31:0 are the allowed-0 settings (a 1 means the control must be 1) and bits 63:32 the allowed-1 settings (a
//!   0 means the control must be 0), so the allowed-0 bits lie within the allowed-1 bits. The legacy MSRs
//!   report every "default1" control as must-be-1 (A.2). With IA32_VMX_BASIC bit 55, each TRUE MSR has the same
//!   allowed-1 bits as its legacy MSR and the legacy allowed-0 bits are the TRUE ones plus the default1 class.
//! - A.7/A.8: every bit FIXED0 requires is allowed by FIXED1.
//! - A.9 "VMCS enumeration": bits 9:1 hold the highest index; bit 0 and bits 63:10 are reserved.
//! - A.10 "VPID and EPT capabilities": only defined bits may be set (read when secondary controls allow EPT or
//!   VPID).

use core::fmt;

pub use super::super::{
    IA32_VMX_BASIC, IA32_VMX_CR0_FIXED0, IA32_VMX_CR0_FIXED1, IA32_VMX_CR4_FIXED0,
    IA32_VMX_CR4_FIXED1, IA32_VMX_ENTRY_CTLS, IA32_VMX_EPT_VPID_CAP, IA32_VMX_EXIT_CTLS,
    IA32_VMX_PINBASED_CTLS, IA32_VMX_PROCBASED_CTLS, IA32_VMX_PROCBASED_CTLS2,
    IA32_VMX_TRUE_ENTRY_CTLS, IA32_VMX_TRUE_EXIT_CTLS, IA32_VMX_TRUE_PINBASED_CTLS,
    IA32_VMX_TRUE_PROCBASED_CTLS, IA32_VMX_VMCS_ENUM,
};

/// A control MSR, its TRUE counterpart and its default1 class (A.3.1, A.3.2, A.4, A.5).
struct Controls {
    name: &'static str,
    msr: u32,
    true_msr: u32,
    default1: u32,
}

const CONTROLS: [Controls; 4] = [
    Controls {
        name: "IA32_VMX_PINBASED_CTLS",
        msr: IA32_VMX_PINBASED_CTLS,
        true_msr: IA32_VMX_TRUE_PINBASED_CTLS,
        default1: 0x0000_0016,
    },
    Controls {
        name: "IA32_VMX_PROCBASED_CTLS",
        msr: IA32_VMX_PROCBASED_CTLS,
        true_msr: IA32_VMX_TRUE_PROCBASED_CTLS,
        default1: 0x0401_E172,
    },
    Controls {
        name: "IA32_VMX_EXIT_CTLS",
        msr: IA32_VMX_EXIT_CTLS,
        true_msr: IA32_VMX_TRUE_EXIT_CTLS,
        default1: 0x0003_6DFF,
    },
    Controls {
        name: "IA32_VMX_ENTRY_CTLS",
        msr: IA32_VMX_ENTRY_CTLS,
        true_msr: IA32_VMX_TRUE_ENTRY_CTLS,
        default1: 0x0000_11FF,
    },
];

/// Primary processor-based control 31: "activate secondary controls".
const ACTIVATE_SECONDARY: u64 = 1 << 31;
/// Secondary controls 1 ("enable EPT") and 5 ("enable VPID").
const EPT_OR_VPID: u64 = (1 << 1) | (1 << 5);
/// IA32_VMX_BASIC bit 55: the TRUE control MSRs exist.
const TRUE_CONTROLS: u64 = 1 << 55;
/// Bits IA32_VMX_EPT_VPID_CAP defines (A.10): execute-only (0), page-walk lengths 4 and 5 (6, 7), UC (8), WB (14),
/// 2-MByte and 1-GByte pages (16, 17), INVEPT (20), accessed/dirty flags (21), advanced VM-exit information (22),
/// supervisor shadow-stack control (23), single-context and all-context INVEPT (25, 26), INVVPID (32), its four
/// types (40-43) and the maximum HLAT prefix size (53:48).
const EPT_VPID_DEFINED: u64 = (1 << 0)
    | (1 << 6)
    | (1 << 7)
    | (1 << 8)
    | (1 << 14)
    | (1 << 16)
    | (1 << 17)
    | (0xF << 20)
    | (1 << 25)
    | (1 << 26)
    | (1 << 32)
    | (0xF << 40)
    | (0x3F << 48);
/// IA32_VMX_VMCS_ENUM bits 9:1, the highest index.
const VMCS_ENUM_INDEX: u64 = 0x3FE;
/// The smallest highest-index value (as stored, bits 9:1) kvm-unit-tests accepts.
const VMCS_ENUM_MIN: u64 = 0x2A;

/// The first inconsistency found, naming the MSR and the rule it breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inconsistency {
    /// A default1 control is not reported as must-be-1.
    Default1NotSet { msr: &'static str, missing: u32 },
    /// A control must be 1 (allowed-0) but may not be 1 (allowed-1).
    Allowed0OutsideAllowed1 { msr: &'static str, bits: u32 },
    /// A TRUE MSR disagrees with its legacy MSR.
    TrueDisagrees {
        msr: &'static str,
        value: u64,
        true_value: u64,
    },
    /// FIXED0 requires a bit FIXED1 forbids.
    FixedBits { register: &'static str, bits: u64 },
    /// IA32_VMX_VMCS_ENUM has reserved bits set or too small a highest index.
    VmcsEnum { value: u64 },
    /// IA32_VMX_EPT_VPID_CAP has undefined bits set.
    EptVpidReserved { value: u64, bits: u64 },
}

impl fmt::Display for Inconsistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default1NotSet { msr, missing } => {
                write!(f, "{msr} does not report default1 controls 0x{missing:x} as must-be-1")
            }
            Self::Allowed0OutsideAllowed1 { msr, bits } => {
                write!(f, "{msr} requires controls 0x{bits:x} that its allowed-1 half forbids")
            }
            Self::TrueDisagrees {
                msr,
                value,
                true_value,
            } => write!(
                f,
                "{msr}=0x{value:x} disagrees with its TRUE MSR 0x{true_value:x}"
            ),
            Self::FixedBits { register, bits } => write!(
                f,
                "IA32_VMX_{register}_FIXED0 requires bits 0x{bits:x} that IA32_VMX_{register}_FIXED1 forbids"
            ),
            Self::VmcsEnum { value } => write!(
                f,
                "IA32_VMX_VMCS_ENUM=0x{value:x} has reserved bits set or a highest index below 0x15"
            ),
            Self::EptVpidReserved { value, bits } => write!(
                f,
                "IA32_VMX_EPT_VPID_CAP=0x{value:x} sets undefined bits 0x{bits:x}"
            ),
        }
    }
}

/// Checks the capability MSRs read through `read` (only call it when CPUID reports VMX).
pub fn check_capabilities(read: impl Fn(u32) -> u64) -> Result<(), Inconsistency> {
    let basic = read(IA32_VMX_BASIC);
    for controls in &CONTROLS {
        let value = read(controls.msr);
        let (allowed0, allowed1) = (value as u32, (value >> 32) as u32);
        let missing = controls.default1 & !allowed0;
        if missing != 0 {
            return Err(Inconsistency::Default1NotSet {
                msr: controls.name,
                missing,
            });
        }
        let bits = allowed0 & !allowed1;
        if bits != 0 {
            return Err(Inconsistency::Allowed0OutsideAllowed1 {
                msr: controls.name,
                bits,
            });
        }
        if basic & TRUE_CONTROLS != 0 {
            let true_value = read(controls.true_msr);
            let (true0, true1) = (true_value as u32, (true_value >> 32) as u32);
            if true1 != allowed1 || true0 | controls.default1 != allowed0 {
                return Err(Inconsistency::TrueDisagrees {
                    msr: controls.name,
                    value,
                    true_value,
                });
            }
        }
    }
    for (register, fixed0, fixed1) in [
        ("CR0", IA32_VMX_CR0_FIXED0, IA32_VMX_CR0_FIXED1),
        ("CR4", IA32_VMX_CR4_FIXED0, IA32_VMX_CR4_FIXED1),
    ] {
        let bits = read(fixed0) & !read(fixed1);
        if bits != 0 {
            return Err(Inconsistency::FixedBits { register, bits });
        }
    }
    let value = read(IA32_VMX_VMCS_ENUM);
    if value & !VMCS_ENUM_INDEX != 0 || value & VMCS_ENUM_INDEX < VMCS_ENUM_MIN {
        return Err(Inconsistency::VmcsEnum { value });
    }
    if read(IA32_VMX_PROCBASED_CTLS) & (ACTIVATE_SECONDARY << 32) != 0
        && read(IA32_VMX_PROCBASED_CTLS2) & (EPT_OR_VPID << 32) != 0
    {
        let value = read(IA32_VMX_EPT_VPID_CAP);
        let bits = value & !EPT_VPID_DEFINED;
        if bits != 0 {
            return Err(Inconsistency::EptVpidReserved { value, bits });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmx::fake::FakeCpu;
    use crate::vmx::VmxCpu;

    fn check(cpu: &FakeCpu) -> Result<(), Inconsistency> {
        check_capabilities(|msr| cpu.read_msr(msr))
    }

    #[test]
    fn the_fake_bochs_haswell_is_consistent() {
        assert_eq!(check(&FakeCpu::bochs_haswell()), Ok(()));
    }

    #[test]
    fn each_rule_is_caught_and_named() {
        type Change = fn(u64) -> u64;
        let cases: [(u32, Change, &str); 7] = [
            (
                IA32_VMX_PINBASED_CTLS,
                |v| v & !0x2,
                "IA32_VMX_PINBASED_CTLS does not report default1 controls 0x2 as must-be-1",
            ),
            (
                IA32_VMX_EXIT_CTLS,
                |v| v | (1 << 23),
                "IA32_VMX_EXIT_CTLS requires controls 0x800000 that its allowed-1 half forbids",
            ),
            (
                IA32_VMX_TRUE_ENTRY_CTLS,
                |v| v & !(1u64 << 41),
                "IA32_VMX_ENTRY_CTLS=",
            ),
            (
                IA32_VMX_CR4_FIXED0,
                |v| v | (1 << 14),
                "IA32_VMX_CR4_FIXED0 requires bits 0x4000 that IA32_VMX_CR4_FIXED1 forbids",
            ),
            (IA32_VMX_VMCS_ENUM, |v| v | 1, "IA32_VMX_VMCS_ENUM=0x"),
            (IA32_VMX_VMCS_ENUM, |_| 0x28, "IA32_VMX_VMCS_ENUM=0x28"),
            (
                IA32_VMX_EPT_VPID_CAP,
                |v| v | (1 << 1),
                "IA32_VMX_EPT_VPID_CAP=0x",
            ),
        ];
        for (msr, change, text) in cases {
            let mut cpu = FakeCpu::bochs_haswell();
            let value = cpu.read_msr(msr);
            cpu.set_msr(msr, change(value));
            let error = check(&cpu).unwrap_err();
            assert!(format!("{error}").starts_with(text), "{error}");
        }
    }

    #[test]
    fn true_msrs_and_ept_are_only_read_when_they_exist() {
        let mut cpu = FakeCpu::bochs_haswell();
        let basic = cpu.read_msr(IA32_VMX_BASIC);
        cpu.set_msr(IA32_VMX_BASIC, basic & !TRUE_CONTROLS);
        cpu.set_msr(IA32_VMX_TRUE_PINBASED_CTLS, 0);
        cpu.set_msr(IA32_VMX_EPT_VPID_CAP, u64::MAX);
        let procbased = cpu.read_msr(IA32_VMX_PROCBASED_CTLS);
        cpu.set_msr(
            IA32_VMX_PROCBASED_CTLS,
            procbased & !(ACTIVATE_SECONDARY << 32),
        );
        assert_eq!(check(&cpu), Ok(()));
    }

    /// The smallest highest index accepted is 0x2A as stored (index 21), the one below it is not.
    #[test]
    fn the_vmcs_enum_boundary() {
        for (value, ok) in [(0x2A, true), (0x28, false), (0x3FE, true)] {
            let mut cpu = FakeCpu::bochs_haswell();
            cpu.set_msr(IA32_VMX_VMCS_ENUM, value);
            assert_eq!(check(&cpu).is_ok(), ok, "{value:#x}");
        }
    }

    /// SDM vol. 3D A.10: exactly these bits of IA32_VMX_EPT_VPID_CAP are defined; any other is reserved.
    #[test]
    fn every_defined_ept_vpid_cap_bit_is_accepted_and_no_other() {
        let defined: Vec<u32> = [
            0, 6, 7, 8, 14, 16, 17, 20, 21, 22, 23, 25, 26, 32, 40, 41, 42, 43,
        ]
        .into_iter()
        .chain(48..=53)
        .collect();
        for bit in 0..64 {
            let mut cpu = FakeCpu::bochs_haswell();
            cpu.set_msr(IA32_VMX_EPT_VPID_CAP, 1 << bit);
            assert_eq!(check(&cpu).is_ok(), defined.contains(&bit), "bit {bit}");
        }
    }

    /// IA32_VMX_EPT_VPID_CAP exists when the secondary controls allow "enable EPT" or "enable VPID" (A.10):
    /// either one alone is enough for its reserved bits to be checked, neither means it is not read.
    #[test]
    fn ept_vpid_cap_is_checked_with_either_ept_or_vpid() {
        let secondary = |allowed: u64| {
            let mut cpu = FakeCpu::bochs_haswell();
            let value = cpu.read_msr(IA32_VMX_PROCBASED_CTLS2);
            cpu.set_msr(
                IA32_VMX_PROCBASED_CTLS2,
                (value & !(EPT_OR_VPID << 32)) | (allowed << 32),
            );
            cpu.set_msr(IA32_VMX_EPT_VPID_CAP, 1 << 1);
            check(&cpu).err()
        };
        for allowed in [1 << 1, 1 << 5] {
            assert!(
                matches!(
                    secondary(allowed),
                    Some(Inconsistency::EptVpidReserved { bits: 2, .. })
                ),
                "secondary allowed-1 {allowed:#x}"
            );
        }
        assert_eq!(secondary(0), None);
    }
}
