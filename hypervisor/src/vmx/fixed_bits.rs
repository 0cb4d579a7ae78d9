//! CR0/CR4 values allowed in VMX operation.
//!
//! SDM vol. 3C 24.8 "Restrictions on VMX operation" and vol. 3D A.7/A.8: a bit set in IA32_VMX_CRn_FIXED0 must be 1,
//! a bit clear in IA32_VMX_CRn_FIXED1 must be 0. VMXON checks them outside VMX operation (#GP otherwise), and in
//! VMX operation any MOV to CR0/CR4 that breaks them raises #GP. The value used is `required = value | FIXED0`,
//! with CR4.VMXE (bit 13) added first: VMXON raises #UD without it. A bit that is set and that FIXED1 forbids is
//! never cleared: the kernel set it because it relies on it (OSXSAVE, PCIDE, SMEP, CET, ...), so the stage
//! refuses with [`VmxError::FixedBitsWouldClear`] naming each such bit, and writes nothing.
//!
//! Bits that define the paging mode (CR0.PE, CR0.PG, CR4.PAE, CR4.LA57) cannot change while in 64-bit mode
//! without a #GP; if the fixed bits ask for that, nothing is written and the violation is reported instead.

use core::fmt;

use super::{VmxCpu, VmxError};
use super::{IA32_VMX_CR0_FIXED0, IA32_VMX_CR0_FIXED1, IA32_VMX_CR4_FIXED0, IA32_VMX_CR4_FIXED1};

pub const CR0_PE: u64 = 1 << 0;
pub const CR0_NE: u64 = 1 << 5;
pub const CR0_PG: u64 = 1 << 31;
pub const CR4_PAE: u64 = 1 << 5;
pub const CR4_LA57: u64 = 1 << 12;
/// CR4.VMXE: enables VMX instructions.
pub const CR4_VMXE: u64 = 1 << 13;
/// CR4.SMXE: enables GETSEC (see [`super::feature_control`] on why it is not set).
pub const CR4_SMXE: u64 = 1 << 14;

/// CR0 bits this module never changes (64-bit mode depends on them).
pub const CR0_MODE_BITS: u64 = CR0_PE | CR0_PG;
/// CR4 bits this module never changes.
pub const CR4_MODE_BITS: u64 = CR4_PAE | CR4_LA57;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlRegister {
    Cr0,
    Cr4,
}

impl ControlRegister {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Cr0 => "CR0",
            Self::Cr4 => "CR4",
        }
    }

    /// The architectural name of a bit (SDM vol. 3A 2.5), if it has one.
    pub const fn bit_name(self, bit: u8) -> Option<&'static str> {
        Some(match (self, bit) {
            (Self::Cr0, 0) => "PE",
            (Self::Cr0, 1) => "MP",
            (Self::Cr0, 2) => "EM",
            (Self::Cr0, 3) => "TS",
            (Self::Cr0, 4) => "ET",
            (Self::Cr0, 5) => "NE",
            (Self::Cr0, 16) => "WP",
            (Self::Cr0, 18) => "AM",
            (Self::Cr0, 29) => "NW",
            (Self::Cr0, 30) => "CD",
            (Self::Cr0, 31) => "PG",
            (Self::Cr4, 0) => "VME",
            (Self::Cr4, 1) => "PVI",
            (Self::Cr4, 2) => "TSD",
            (Self::Cr4, 3) => "DE",
            (Self::Cr4, 4) => "PSE",
            (Self::Cr4, 5) => "PAE",
            (Self::Cr4, 6) => "MCE",
            (Self::Cr4, 7) => "PGE",
            (Self::Cr4, 8) => "PCE",
            (Self::Cr4, 9) => "OSFXSR",
            (Self::Cr4, 10) => "OSXMMEXCPT",
            (Self::Cr4, 11) => "UMIP",
            (Self::Cr4, 12) => "LA57",
            (Self::Cr4, 13) => "VMXE",
            (Self::Cr4, 14) => "SMXE",
            (Self::Cr4, 16) => "FSGSBASE",
            (Self::Cr4, 17) => "PCIDE",
            (Self::Cr4, 18) => "OSXSAVE",
            (Self::Cr4, 19) => "KL",
            (Self::Cr4, 20) => "SMEP",
            (Self::Cr4, 21) => "SMAP",
            (Self::Cr4, 22) => "PKE",
            (Self::Cr4, 23) => "CET",
            (Self::Cr4, 24) => "PKS",
            (Self::Cr4, 25) => "UINTR",
            _ => return None,
        })
    }
}

/// One bit of CR0 or CR4 that has the wrong value for VMX operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedBitViolation {
    pub register: ControlRegister,
    pub bit: u8,
    /// The value the bit must have.
    pub must_be: bool,
}

impl fmt::Display for FixedBitViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let register = self.register.name();
        match self.register.bit_name(self.bit) {
            Some(name) => write!(f, "{register}.{name}")?,
            None => write!(f, "{register}.bit{}", self.bit)?,
        }
        write!(f, " must be {}", u8::from(self.must_be))
    }
}

/// Every violating bit of CR0 and CR4, as masks (no allocation); iterate with [`FixedBitViolations::iter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FixedBitViolations {
    pub cr0_must_be_1: u64,
    pub cr0_must_be_0: u64,
    pub cr4_must_be_1: u64,
    pub cr4_must_be_0: u64,
}

impl FixedBitViolations {
    pub const fn is_empty(&self) -> bool {
        self.cr0_must_be_1 | self.cr0_must_be_0 | self.cr4_must_be_1 | self.cr4_must_be_0 == 0
    }

    pub const fn len(&self) -> usize {
        (self.cr0_must_be_1.count_ones()
            + self.cr0_must_be_0.count_ones()
            + self.cr4_must_be_1.count_ones()
            + self.cr4_must_be_0.count_ones()) as usize
    }

    /// The violations in register order (CR0 then CR4), bit order within a register.
    pub fn iter(&self) -> impl Iterator<Item = FixedBitViolation> + '_ {
        [
            (ControlRegister::Cr0, self.cr0_must_be_1, self.cr0_must_be_0),
            (ControlRegister::Cr4, self.cr4_must_be_1, self.cr4_must_be_0),
        ]
        .into_iter()
        .flat_map(|(register, ones, zeros)| {
            (0..64u8).filter_map(move |bit| {
                let mask = 1u64 << bit;
                if ones & mask != 0 {
                    Some(FixedBitViolation {
                        register,
                        bit,
                        must_be: true,
                    })
                } else if zeros & mask != 0 {
                    Some(FixedBitViolation {
                        register,
                        bit,
                        must_be: false,
                    })
                } else {
                    None
                }
            })
        })
    }
}

impl fmt::Display for FixedBitViolations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        for (index, violation) in self.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{violation}")?;
        }
        Ok(())
    }
}

/// A register's pair of fixed-bit MSRs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedBits {
    /// Bits that must be 1.
    pub fixed0: u64,
    /// Bits that may be 1 (a clear bit must be 0).
    pub fixed1: u64,
}

impl FixedBits {
    /// Bits of `value` that must be 1 but are 0.
    pub const fn missing_ones(&self, value: u64) -> u64 {
        self.fixed0 & !value
    }

    /// Bits of `value` that must be 0 but are 1.
    pub const fn forbidden_ones(&self, value: u64) -> u64 {
        value & !self.fixed1
    }
}

/// The fixed bits of both registers. CR4.VMXE is added to CR4's must-be-1 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmxFixedBits {
    pub cr0: FixedBits,
    pub cr4: FixedBits,
}

impl VmxFixedBits {
    /// Reads IA32_VMX_CR0_FIXED0/1 and IA32_VMX_CR4_FIXED0/1 (only valid when CPUID reports VMX).
    pub fn read(cpu: &impl VmxCpu) -> Self {
        Self {
            cr0: FixedBits {
                fixed0: cpu.read_msr(IA32_VMX_CR0_FIXED0),
                fixed1: cpu.read_msr(IA32_VMX_CR0_FIXED1),
            },
            cr4: FixedBits {
                fixed0: cpu.read_msr(IA32_VMX_CR4_FIXED0) | CR4_VMXE,
                fixed1: cpu.read_msr(IA32_VMX_CR4_FIXED1),
            },
        }
    }

    /// The CR0 and CR4 values to use: each value with its FIXED0 bits added, except that paging-mode bits keep
    /// their current value (a later [`check`](Self::check) reports them). No bit is ever cleared: bits FIXED1
    /// forbids stay set, for [`would_clear`](Self::would_clear) to refuse.
    pub const fn required(&self, cr0: u64, cr4: u64) -> (u64, u64) {
        (
            cr0 | (self.cr0.fixed0 & !CR0_MODE_BITS),
            cr4 | (self.cr4.fixed0 & !CR4_MODE_BITS),
        )
    }

    /// The bits set in `cr0`/`cr4` that IA32_VMX_CRn_FIXED1 forbids in VMX operation (as must-be-0
    /// violations): applying the fixed bits would have to clear them.
    pub const fn would_clear(&self, cr0: u64, cr4: u64) -> Result<(), FixedBitViolations> {
        let cleared = FixedBitViolations {
            cr0_must_be_1: 0,
            cr0_must_be_0: self.cr0.forbidden_ones(cr0),
            cr4_must_be_1: 0,
            cr4_must_be_0: self.cr4.forbidden_ones(cr4),
        };
        if cleared.is_empty() {
            Ok(())
        } else {
            Err(cleared)
        }
    }

    /// Every bit of `cr0`/`cr4` that breaks the fixed bits (CR4.VMXE included).
    pub const fn check(&self, cr0: u64, cr4: u64) -> Result<(), FixedBitViolations> {
        let violations = FixedBitViolations {
            cr0_must_be_1: self.cr0.missing_ones(cr0),
            cr0_must_be_0: self.cr0.forbidden_ones(cr0),
            cr4_must_be_1: self.cr4.missing_ones(cr4),
            cr4_must_be_0: self.cr4.forbidden_ones(cr4),
        };
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }
}

/// Brings CR0 and CR4 to values allowed in VMX operation (CR4.VMXE set), writes only what changes, reads both
/// back and verifies them. Returns the CR0 and CR4 in force.
pub fn prepare_control_registers(
    cpu: &mut impl VmxCpu,
    smx_in_use: bool,
) -> Result<(u64, u64), VmxError> {
    let fixed = VmxFixedBits::read(cpu);
    let (cr0, cr4) = (cpu.read_cr0(), cpu.read_cr4());
    // Never silently clear a bit the kernel set (SDM vol. 3D A.7/A.8: FIXED1 clear = must be 0).
    fixed
        .would_clear(cr0, cr4)
        .map_err(VmxError::FixedBitsWouldClear)?;
    let (new_cr0, new_cr4) = fixed.required(cr0, cr4 | wanted_cr4(&fixed, smx_in_use));
    if let Err(violations) = fixed.check(new_cr0, new_cr4) {
        // The fixed bits contradict themselves or ask to change the paging mode: write nothing.
        return Err(VmxError::FixedBits(violations));
    }
    if new_cr0 != cr0 {
        // SAFETY: only bits the VMX fixed-bit MSRs dictate change (in practice CR0.NE is set); PE and PG keep
        // their value, so the paging mode and the memory map are untouched.
        unsafe { cpu.write_cr0(new_cr0) };
    }
    if new_cr4 != cr4 {
        // SAFETY: as for CR0: CR4.VMXE (and whatever FIXED0/FIXED1 dictate) changes; PAE and LA57 keep their
        // value. Setting VMXE only enables the VMX instructions.
        unsafe { cpu.write_cr4(new_cr4) };
    }
    let (cr0, cr4) = (cpu.read_cr0(), cpu.read_cr4());
    fixed.check(cr0, cr4).map_err(VmxError::FixedBits)?;
    Ok((cr0, cr4))
}

/// CR4 bits wanted beyond the fixed bits: CR4.SMXE when feature control enables VMX inside SMX (bit 1), as
/// long as IA32_VMX_CR4_FIXED1 allows it in VMX operation. VMXON outside SMX does not check it (vol. 3C 31.3),
/// so where FIXED1 forbids it, it is simply not set.
pub fn wanted_cr4(fixed: &VmxFixedBits, smx_in_use: bool) -> u64 {
    if smx_in_use && fixed.cr4.fixed1 & CR4_SMXE != 0 {
        CR4_SMXE
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmx::fake::FakeCpu;

    #[test]
    fn smxe_joins_the_required_bits_when_smx_is_in_use_and_allowed() {
        let mut fixed = bochs();
        // Bochs haswell forbids SMXE in VMX operation: never wanted there.
        assert_eq!(wanted_cr4(&fixed, true), 0);
        fixed.cr4.fixed1 |= CR4_SMXE;
        assert_eq!(wanted_cr4(&fixed, true), CR4_SMXE);
        assert_eq!(wanted_cr4(&fixed, false), 0);
        let mut cpu = FakeCpu::bochs_haswell();
        cpu.set_msr(IA32_VMX_CR4_FIXED1, 0x1727ff | CR4_SMXE);
        let (_, cr4) = prepare_control_registers(&mut cpu, true).unwrap();
        assert_ne!(cr4 & CR4_SMXE, 0);
        let mut cpu = FakeCpu::bochs_haswell();
        let (_, cr4) = prepare_control_registers(&mut cpu, true).unwrap();
        assert_eq!(cr4 & CR4_SMXE, 0);
    }

    /// CR4.VMXE is required even where IA32_VMX_CR4_FIXED0 does not list it (VMXON raises #UD without it), and
    /// a CR4.SMXE the kernel already set is kept when SMX is in use.
    #[test]
    fn vmxe_is_always_required_and_a_set_smxe_is_kept() {
        let mut cpu = FakeCpu::bochs_haswell();
        cpu.set_msr(IA32_VMX_CR4_FIXED0, 0);
        assert_ne!(VmxFixedBits::read(&cpu).cr4.fixed0 & CR4_VMXE, 0);
        let (_, cr4) = prepare_control_registers(&mut cpu, false).unwrap();
        assert_ne!(cr4 & CR4_VMXE, 0);

        let mut cpu = FakeCpu::bochs_haswell();
        let fixed1 = cpu.read_msr(IA32_VMX_CR4_FIXED1);
        cpu.set_msr(IA32_VMX_CR4_FIXED1, fixed1 | CR4_SMXE);
        cpu.cr4 |= CR4_SMXE;
        let (_, cr4) = prepare_control_registers(&mut cpu, true).unwrap();
        assert_ne!(cr4 & CR4_SMXE, 0);
        assert_ne!(cpu.read_cr4() & CR4_SMXE, 0);
    }

    /// Bochs haswell: CR0 fixed0/1 = 0x80000021/0xffffffff, CR4 fixed0/1 = 0x2000/0x1727ff.
    fn bochs() -> VmxFixedBits {
        VmxFixedBits::read(&FakeCpu::bochs_haswell())
    }

    #[test]
    fn required_values_follow_the_formula() {
        let fixed = bochs();
        // PE|ET|PG without NE; PAE|PGE.
        let (cr0, cr4) = fixed.required(0x8000_0011, 0xA0);
        assert_eq!(cr0, 0x8000_0031);
        assert_eq!(cr4, 0x20A0);
        assert_eq!(fixed.check(cr0, cr4), Ok(()));
        // Bits outside FIXED1 are never cleared: SMXE (14) and SMAP (21), which Bochs forbids, stay set and
        // `would_clear` names them.
        let (_, cr4) = fixed.required(0x8000_0031, 0x20 | CR4_SMXE | (1 << 21));
        assert_eq!(cr4, 0x2020 | CR4_SMXE | (1 << 21));
        assert_eq!(
            format!("{}", fixed.would_clear(0x8000_0031, cr4).unwrap_err()),
            "CR4.SMXE must be 0, CR4.SMAP must be 0"
        );
        assert_eq!(fixed.would_clear(0x8000_0031, 0x2020), Ok(()));
    }

    /// A bit the kernel relies on that FIXED1 forbids is refused by name, and neither register is written.
    #[test]
    fn kernel_bits_forbidden_by_fixed1_are_refused_not_cleared() {
        const CR4_PCIDE: u64 = 1 << 17;
        const CR4_OSXSAVE: u64 = 1 << 18;
        const CR4_SMEP: u64 = 1 << 20;
        const CR4_CET: u64 = 1 << 23;
        const CR0_WP: u64 = 1 << 16;
        for (cr0_bit, cr4_bit, named) in [
            (0, CR4_OSXSAVE, "CR4.OSXSAVE must be 0"),
            (0, CR4_PCIDE, "CR4.PCIDE must be 0"),
            (0, CR4_SMEP, "CR4.SMEP must be 0"),
            (0, CR4_CET, "CR4.CET must be 0"),
            (CR0_WP, 0, "CR0.WP must be 0"),
            (
                CR0_WP,
                CR4_OSXSAVE,
                "CR0.WP must be 0, CR4.OSXSAVE must be 0",
            ),
        ] {
            let mut cpu = FakeCpu::bochs_haswell();
            cpu.cr0 |= cr0_bit;
            cpu.cr4 |= cr4_bit;
            cpu.set_msr(IA32_VMX_CR0_FIXED1, 0xffff_ffff & !cr0_bit);
            cpu.set_msr(IA32_VMX_CR4_FIXED1, 0x1727ff & !cr4_bit);
            let (cr0, cr4) = (cpu.cr0, cpu.cr4);
            let error = prepare_control_registers(&mut cpu, false).unwrap_err();
            assert!(
                matches!(error, VmxError::FixedBitsWouldClear(_)),
                "{error:?}"
            );
            assert_eq!(
                format!("{error}"),
                format!("VMX operation forbids bits the kernel has set, refusing to clear {named}")
            );
            assert_eq!((cpu.cr0, cpu.cr4), (cr0, cr4), "{named}: nothing written");
            assert_eq!(cpu.cr_writes, (0, 0), "{named}");
        }
    }

    #[test]
    fn every_violating_bit_is_named() {
        let fixed = bochs();
        let violations = fixed
            .check(0x8000_0011, 0x20 | CR4_SMXE | (1 << 26))
            .unwrap_err();
        assert_eq!(violations.len(), 4);
        let listed: Vec<FixedBitViolation> = violations.iter().collect();
        assert_eq!(
            listed,
            vec![
                FixedBitViolation {
                    register: ControlRegister::Cr0,
                    bit: 5,
                    must_be: true
                },
                FixedBitViolation {
                    register: ControlRegister::Cr4,
                    bit: 13,
                    must_be: true
                },
                FixedBitViolation {
                    register: ControlRegister::Cr4,
                    bit: 14,
                    must_be: false
                },
                FixedBitViolation {
                    register: ControlRegister::Cr4,
                    bit: 26,
                    must_be: false
                },
            ]
        );
        assert_eq!(
            format!("{violations}"),
            "CR0.NE must be 1, CR4.VMXE must be 1, CR4.SMXE must be 0, CR4.bit26 must be 0"
        );
        assert_eq!(format!("{}", FixedBitViolations::default()), "none");
    }

    #[test]
    fn paging_mode_bits_are_reported_not_changed() {
        let mut cpu = FakeCpu::bochs_haswell();
        // Fixed bits that would clear CR0.PG: impossible in 64-bit mode.
        cpu.set_msr(IA32_VMX_CR0_FIXED1, 0x7FFF_FFFF);
        let (cr0, cr4) = (cpu.cr0, cpu.cr4);
        let error = prepare_control_registers(&mut cpu, false).unwrap_err();
        let VmxError::FixedBitsWouldClear(violations) = error else {
            panic!("{error:?}")
        };
        assert_eq!(format!("{violations}"), "CR0.PG must be 0");
        assert_eq!((cpu.cr0, cpu.cr4), (cr0, cr4), "nothing written");
        // Fixed bits that would set CR0.PG when it is clear are refused too (the check after `required`).
        let mut cpu = FakeCpu::bochs_haswell();
        cpu.cr0 &= !CR0_PG;
        let error = prepare_control_registers(&mut cpu, false).unwrap_err();
        assert_eq!(
            format!("{error}"),
            "VMX fixed bits not satisfied: CR0.PG must be 1"
        );
        assert_eq!(cpu.cr_writes, (0, 0), "nothing written");
    }

    /// Empty only when no field has a bit: the same bit in two fields (CR0.NE and CR4.PAE are both bit 5) is
    /// two violations, not none.
    #[test]
    fn violations_are_empty_only_when_every_field_is_zero() {
        assert!(FixedBitViolations::default().is_empty());
        let one = |field: usize| {
            let mut v = FixedBitViolations::default();
            *[
                &mut v.cr0_must_be_1,
                &mut v.cr0_must_be_0,
                &mut v.cr4_must_be_1,
                &mut v.cr4_must_be_0,
            ][field] = 1 << 5;
            v
        };
        for a in 0..4 {
            for b in 0..4 {
                let (x, y) = (one(a), one(b));
                let both = FixedBitViolations {
                    cr0_must_be_1: x.cr0_must_be_1 | y.cr0_must_be_1,
                    cr0_must_be_0: x.cr0_must_be_0 | y.cr0_must_be_0,
                    cr4_must_be_1: x.cr4_must_be_1 | y.cr4_must_be_1,
                    cr4_must_be_0: x.cr4_must_be_0 | y.cr4_must_be_0,
                };
                assert!(!both.is_empty(), "fields {a} and {b}");
                assert_eq!(both.len(), if a == b { 1 } else { 2 });
            }
        }
    }

    /// CR4.PAE and CR4.LA57 set the paging mode too: FIXED0 asking for one the kernel runs without is reported,
    /// and nothing is written.
    #[test]
    fn cr4_paging_mode_bits_are_reported_not_changed() {
        for (bit, name) in [(CR4_LA57, "LA57"), (CR4_PAE, "PAE")] {
            let mut cpu = FakeCpu::bochs_haswell();
            cpu.cr4 &= !bit;
            let fixed0 = cpu.read_msr(IA32_VMX_CR4_FIXED0);
            cpu.set_msr(IA32_VMX_CR4_FIXED0, fixed0 | bit);
            let fixed1 = cpu.read_msr(IA32_VMX_CR4_FIXED1);
            cpu.set_msr(IA32_VMX_CR4_FIXED1, fixed1 | bit);
            let error = prepare_control_registers(&mut cpu, false).unwrap_err();
            assert_eq!(
                format!("{error}"),
                format!("VMX fixed bits not satisfied: CR4.{name} must be 1")
            );
            assert_eq!(cpu.cr_writes, (0, 0), "nothing written");
        }
    }

    /// SDM vol. 3A 2.5, "Control Registers": every named bit of CR0 and CR4, and no name for the others.
    #[test]
    fn control_register_bits_have_their_sdm_names() {
        let named = |register: ControlRegister| -> Vec<(u8, &str)> {
            (0..64)
                .filter_map(|bit| register.bit_name(bit).map(|name| (bit, name)))
                .collect()
        };
        assert_eq!(
            named(ControlRegister::Cr0),
            [
                (0, "PE"),
                (1, "MP"),
                (2, "EM"),
                (3, "TS"),
                (4, "ET"),
                (5, "NE"),
                (16, "WP"),
                (18, "AM"),
                (29, "NW"),
                (30, "CD"),
                (31, "PG")
            ]
        );
        let cr4 = [
            "VME",
            "PVI",
            "TSD",
            "DE",
            "PSE",
            "PAE",
            "MCE",
            "PGE",
            "PCE",
            "OSFXSR",
            "OSXMMEXCPT",
            "UMIP",
            "LA57",
            "VMXE",
            "SMXE",
            "",
            "FSGSBASE",
            "PCIDE",
            "OSXSAVE",
            "KL",
            "SMEP",
            "SMAP",
            "PKE",
            "CET",
            "PKS",
            "UINTR",
        ];
        let expected: Vec<(u8, &str)> = cr4
            .iter()
            .enumerate()
            .filter(|(_, name)| !name.is_empty())
            .map(|(bit, name)| (bit as u8, *name))
            .collect();
        assert_eq!(named(ControlRegister::Cr4), expected);
    }

    #[test]
    fn contradictory_fixed_bits_are_reported() {
        let mut cpu = FakeCpu::bochs_haswell();
        // VMXE is required but FIXED1 does not allow it: once added, FIXED1 reports it.
        cpu.set_msr(IA32_VMX_CR4_FIXED1, 0x1707FF);
        let error = prepare_control_registers(&mut cpu, false).unwrap_err();
        assert_eq!(
            format!("{error}"),
            "VMX fixed bits not satisfied: CR4.VMXE must be 0"
        );
        assert_eq!(cpu.cr_writes, (0, 0), "nothing written");
    }

    #[test]
    fn prepare_sets_ne_and_vmxe_and_writes_only_changes() {
        let mut cpu = FakeCpu::bochs_haswell();
        cpu.cr0 = 0x8000_0011;
        cpu.cr4 = 0x20;
        assert_eq!(
            prepare_control_registers(&mut cpu, false),
            Ok((0x8000_0031, 0x2020))
        );
        assert_eq!((cpu.cr_writes.0, cpu.cr_writes.1), (1, 1));
        // Already right: nothing is written again.
        assert_eq!(
            prepare_control_registers(&mut cpu, false),
            Ok((0x8000_0031, 0x2020))
        );
        assert_eq!((cpu.cr_writes.0, cpu.cr_writes.1), (1, 1));
    }

    #[test]
    fn a_write_that_does_not_take_is_caught_by_the_read_back() {
        let mut cpu = FakeCpu::bochs_haswell();
        cpu.cr0 = 0x8000_0011;
        cpu.cr0_ignores_writes = true;
        let error = prepare_control_registers(&mut cpu, false).unwrap_err();
        assert_eq!(
            format!("{error}"),
            "VMX fixed bits not satisfied: CR0.NE must be 1"
        );
    }
}
