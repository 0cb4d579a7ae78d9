//! The VMX capability MSRs (SDM vol. 3D appendix A, "VMX Capability Reporting Facility") as one value per core.
//!
//! Which MSRs exist depends on others, and reading one that does not exist raises #GP, so the order matters:
//!
//! - IA32_VMX_BASIC (0x480), PINBASED/PROCBASED/EXIT/ENTRY_CTLS (0x481-0x484), MISC (0x485), CR0/CR4 fixed bits
//!   (0x486-0x489) and VMCS_ENUM (0x48A) exist on every processor with VMX (A.1-A.9).
//! - IA32_VMX_TRUE_PINBASED/PROCBASED/EXIT/ENTRY_CTLS (0x48D-0x490) exist only when IA32_VMX_BASIC bit 55 is 1
//!   (A.2, "Reserved Controls and Default Settings").
//! - IA32_VMX_PROCBASED_CTLS2 (0x48B) exists only when the primary processor-based controls allow bit 31
//!   ("activate secondary controls") to be 1 (A.3.3, "Secondary Processor-Based VM-Execution Controls").
//! - IA32_VMX_EPT_VPID_CAP (0x48C) exists only when the secondary controls allow "enable EPT" (bit 1) or
//!   "enable VPID" (bit 5) to be 1 (A.10, "VPID and EPT Capabilities").
//!
//! Each control MSR reports allowed-0 settings in bits 31:0 (a 1 there means the control must be 1) and allowed-1
//! settings in bits 63:32 (a 0 there means the control must be 0).

use core::fmt;

use crate::vmx::basic::VmxBasic;
use crate::vmx::VmxCpu;
pub use crate::vmx::{
    IA32_VMX_BASIC, IA32_VMX_CR0_FIXED0, IA32_VMX_CR0_FIXED1, IA32_VMX_CR4_FIXED0,
    IA32_VMX_CR4_FIXED1, IA32_VMX_ENTRY_CTLS, IA32_VMX_EPT_VPID_CAP, IA32_VMX_EXIT_CTLS,
    IA32_VMX_MISC, IA32_VMX_PINBASED_CTLS, IA32_VMX_PROCBASED_CTLS, IA32_VMX_PROCBASED_CTLS2,
    IA32_VMX_TRUE_ENTRY_CTLS, IA32_VMX_TRUE_EXIT_CTLS, IA32_VMX_TRUE_PINBASED_CTLS,
    IA32_VMX_TRUE_PROCBASED_CTLS, IA32_VMX_VMCS_ENUM,
};

/// The architectural name of a VMX capability MSR.
pub const fn msr_name(msr: u32) -> &'static str {
    match msr {
        IA32_VMX_BASIC => "IA32_VMX_BASIC",
        IA32_VMX_PINBASED_CTLS => "IA32_VMX_PINBASED_CTLS",
        IA32_VMX_PROCBASED_CTLS => "IA32_VMX_PROCBASED_CTLS",
        IA32_VMX_EXIT_CTLS => "IA32_VMX_EXIT_CTLS",
        IA32_VMX_ENTRY_CTLS => "IA32_VMX_ENTRY_CTLS",
        IA32_VMX_MISC => "IA32_VMX_MISC",
        IA32_VMX_CR0_FIXED0 => "IA32_VMX_CR0_FIXED0",
        IA32_VMX_CR0_FIXED1 => "IA32_VMX_CR0_FIXED1",
        IA32_VMX_CR4_FIXED0 => "IA32_VMX_CR4_FIXED0",
        IA32_VMX_CR4_FIXED1 => "IA32_VMX_CR4_FIXED1",
        IA32_VMX_VMCS_ENUM => "IA32_VMX_VMCS_ENUM",
        IA32_VMX_PROCBASED_CTLS2 => "IA32_VMX_PROCBASED_CTLS2",
        IA32_VMX_EPT_VPID_CAP => "IA32_VMX_EPT_VPID_CAP",
        IA32_VMX_TRUE_PINBASED_CTLS => "IA32_VMX_TRUE_PINBASED_CTLS",
        IA32_VMX_TRUE_PROCBASED_CTLS => "IA32_VMX_TRUE_PROCBASED_CTLS",
        IA32_VMX_TRUE_EXIT_CTLS => "IA32_VMX_TRUE_EXIT_CTLS",
        IA32_VMX_TRUE_ENTRY_CTLS => "IA32_VMX_TRUE_ENTRY_CTLS",
        _ => "unknown MSR",
    }
}

/// Where capability MSR values come from: RDMSR on the core itself, or a fake. `None` means the value could
/// not be read (a fake without it; the hardware implementation always returns `Some`).
pub trait CapabilityMsrs {
    fn read_msr(&mut self, msr: u32) -> Option<u64>;
}

/// The capability MSRs of a [`VmxCpu`] (RDMSR on the core that runs this).
pub struct CpuMsrs<'a, C: VmxCpu>(pub &'a C);

impl<C: VmxCpu> CapabilityMsrs for CpuMsrs<'_, C> {
    fn read_msr(&mut self, msr: u32) -> Option<u64> {
        Some(self.0.read_msr(msr))
    }
}

/// Why the capabilities could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    MsrUnreadable { msr: u32 },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MsrUnreadable { msr } => {
                write!(f, "{} (MSR 0x{msr:x}) could not be read", msr_name(*msr))
            }
        }
    }
}

/// One VMX control capability MSR (A.3-A.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowedBits {
    pub msr: u32,
    pub raw: u64,
}

impl AllowedBits {
    pub const fn new(msr: u32, raw: u64) -> Self {
        Self { msr, raw }
    }

    /// A control word with no control allowed to be 1 (what an absent PROCBASED_CTLS2 amounts to).
    pub const fn none(msr: u32) -> Self {
        Self { msr, raw: 0 }
    }

    /// Bits 31:0: controls that must be 1.
    pub const fn must_be_one(self) -> u32 {
        self.raw as u32
    }

    /// Bits 63:32: controls that may be 1.
    pub const fn may_be_one(self) -> u32 {
        (self.raw >> 32) as u32
    }

    /// `(wanted | allowed-0) & allowed-1`: the closest value VM entry accepts.
    pub const fn adjust(self, wanted: u32) -> u32 {
        (wanted | self.must_be_one()) & self.may_be_one()
    }

    /// Whether VM entry accepts `value` for this control word.
    pub const fn permits(self, value: u32) -> bool {
        value & self.must_be_one() == self.must_be_one() && value & !self.may_be_one() == 0
    }
}

/// IA32_VMX_MISC (A.6, "Miscellaneous Data").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmxMisc(pub u64);

impl VmxMisc {
    /// Bit 5: VM exits store EFER.LMA into the "IA-32e mode guest" VM-entry control.
    pub const fn stores_lma(self) -> bool {
        self.0 & (1 << 5) != 0
    }

    /// Bits 8:6: activity states 1 (HLT), 2 (shutdown), 3 (wait-for-SIPI) supported; 0 (active) always is.
    pub const fn supports_activity_state(self, state: u32) -> bool {
        match state {
            0 => true,
            1..=3 => self.0 & (1 << (5 + state)) != 0,
            _ => false,
        }
    }

    /// Bits 24:16: the number of CR3-target values.
    pub const fn cr3_targets(self) -> u32 {
        ((self.0 >> 16) & 0x1FF) as u32
    }

    /// Bits 27:25: the recommended maximum number of MSRs in each MSR list is 512 * (N + 1).
    pub const fn max_msr_list(self) -> u32 {
        512 * ((((self.0 >> 25) & 7) as u32) + 1)
    }

    /// Bit 29: VMWRITE may write any supported field, including the VM-exit information fields.
    pub const fn vmwrite_any_field(self) -> bool {
        self.0 & (1 << 29) != 0
    }

    /// Bit 30: software interrupts and exceptions may be injected with an instruction length of 0.
    pub const fn inject_with_zero_length(self) -> bool {
        self.0 & (1 << 30) != 0
    }
}

/// IA32_VMX_EPT_VPID_CAP (A.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EptVpidCap(pub u64);

impl EptVpidCap {
    const fn bit(self, n: u32) -> bool {
        self.0 & (1 << n) != 0
    }
    /// Bit 0: execute-only EPT translations.
    pub const fn execute_only(self) -> bool {
        self.bit(0)
    }
    /// Bit 6: a page-walk length of 4.
    pub const fn walk_length_4(self) -> bool {
        self.bit(6)
    }
    /// Bit 7: a page-walk length of 5.
    pub const fn walk_length_5(self) -> bool {
        self.bit(7)
    }
    /// Bit 8: the EPT paging structures may be uncacheable (EPTP memory type 0).
    pub const fn memory_type_uc(self) -> bool {
        self.bit(8)
    }
    /// Bit 14: the EPT paging structures may be write-back (EPTP memory type 6).
    pub const fn memory_type_wb(self) -> bool {
        self.bit(14)
    }
    /// Bit 16: 2-MByte EPT pages.
    pub const fn pages_2m(self) -> bool {
        self.bit(16)
    }
    /// Bit 17: 1-GByte EPT pages.
    pub const fn pages_1g(self) -> bool {
        self.bit(17)
    }
    /// Bit 20: INVEPT.
    pub const fn invept(self) -> bool {
        self.bit(20)
    }
    /// Bit 25: single-context INVEPT (type 1).
    pub const fn invept_single_context(self) -> bool {
        self.bit(25)
    }

    /// Bit 26: all-context INVEPT (type 2).
    pub const fn invept_all_context(self) -> bool {
        self.bit(26)
    }

    /// Bit 21: accessed and dirty flags for EPT (EPTP bit 6 may be 1).
    pub const fn accessed_dirty(self) -> bool {
        self.bit(21)
    }
    /// Bit 32: INVVPID.
    pub const fn invvpid(self) -> bool {
        self.bit(32)
    }
}

/// Every VMX capability of one core, as read from its MSRs, plus MAXPHYADDR from CPUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmxCapabilities {
    pub basic: VmxBasic,
    pub pinbased: AllowedBits,
    pub procbased: AllowedBits,
    pub exit: AllowedBits,
    pub entry: AllowedBits,
    pub misc: VmxMisc,
    pub cr0_fixed0: u64,
    pub cr0_fixed1: u64,
    pub cr4_fixed0: u64,
    pub cr4_fixed1: u64,
    pub vmcs_enum: u64,
    /// Present when the primary controls allow "activate secondary controls".
    pub procbased2: Option<AllowedBits>,
    /// Present when the secondary controls allow "enable EPT" or "enable VPID".
    pub ept_vpid: Option<EptVpidCap>,
    /// Present when IA32_VMX_BASIC bit 55 is 1.
    pub true_pinbased: Option<AllowedBits>,
    pub true_procbased: Option<AllowedBits>,
    pub true_exit: Option<AllowedBits>,
    pub true_entry: Option<AllowedBits>,
    /// `CPUID.80000008H:EAX[7:0]` (see `vmx::caps`).
    pub maxphyaddr: u8,
}

/// Primary processor-based bit 31, "activate secondary controls".
const ACTIVATE_SECONDARY: u32 = 1 << 31;
/// Secondary bits 1 ("enable EPT") and 5 ("enable VPID").
const EPT_OR_VPID: u32 = (1 << 1) | (1 << 5);

impl VmxCapabilities {
    /// Reads every capability MSR that exists, in the dependency order above.
    pub fn read(msrs: &mut impl CapabilityMsrs, maxphyaddr: u8) -> Result<Self, ReadError> {
        let mut read = |msr: u32| msrs.read_msr(msr).ok_or(ReadError::MsrUnreadable { msr });
        let basic = VmxBasic::decode(read(IA32_VMX_BASIC)?);
        let pinbased = AllowedBits::new(IA32_VMX_PINBASED_CTLS, read(IA32_VMX_PINBASED_CTLS)?);
        let procbased = AllowedBits::new(IA32_VMX_PROCBASED_CTLS, read(IA32_VMX_PROCBASED_CTLS)?);
        let exit = AllowedBits::new(IA32_VMX_EXIT_CTLS, read(IA32_VMX_EXIT_CTLS)?);
        let entry = AllowedBits::new(IA32_VMX_ENTRY_CTLS, read(IA32_VMX_ENTRY_CTLS)?);
        let misc = VmxMisc(read(IA32_VMX_MISC)?);
        let cr0_fixed0 = read(IA32_VMX_CR0_FIXED0)?;
        let cr0_fixed1 = read(IA32_VMX_CR0_FIXED1)?;
        let cr4_fixed0 = read(IA32_VMX_CR4_FIXED0)?;
        let cr4_fixed1 = read(IA32_VMX_CR4_FIXED1)?;
        let vmcs_enum = read(IA32_VMX_VMCS_ENUM)?;
        let procbased2 = if procbased.may_be_one() & ACTIVATE_SECONDARY != 0 {
            Some(AllowedBits::new(
                IA32_VMX_PROCBASED_CTLS2,
                read(IA32_VMX_PROCBASED_CTLS2)?,
            ))
        } else {
            None
        };
        let ept_vpid = match procbased2 {
            Some(secondary) if secondary.may_be_one() & EPT_OR_VPID != 0 => {
                Some(EptVpidCap(read(IA32_VMX_EPT_VPID_CAP)?))
            }
            _ => None,
        };
        let mut true_msr = |msr: u32| -> Result<Option<AllowedBits>, ReadError> {
            if basic.true_controls {
                Ok(Some(AllowedBits::new(msr, read(msr)?)))
            } else {
                Ok(None)
            }
        };
        Ok(Self {
            basic,
            pinbased,
            procbased,
            exit,
            entry,
            misc,
            cr0_fixed0,
            cr0_fixed1,
            cr4_fixed0,
            cr4_fixed1,
            vmcs_enum,
            procbased2,
            ept_vpid,
            true_pinbased: true_msr(IA32_VMX_TRUE_PINBASED_CTLS)?,
            true_procbased: true_msr(IA32_VMX_TRUE_PROCBASED_CTLS)?,
            true_exit: true_msr(IA32_VMX_TRUE_EXIT_CTLS)?,
            true_entry: true_msr(IA32_VMX_TRUE_ENTRY_CTLS)?,
            maxphyaddr,
        })
    }

    /// The pin-based settings VM entry checks against: the TRUE MSR when it exists (A.2).
    pub fn effective_pinbased(&self) -> AllowedBits {
        self.true_pinbased.unwrap_or(self.pinbased)
    }

    pub fn effective_procbased(&self) -> AllowedBits {
        self.true_procbased.unwrap_or(self.procbased)
    }

    pub fn effective_exit(&self) -> AllowedBits {
        self.true_exit.unwrap_or(self.exit)
    }

    pub fn effective_entry(&self) -> AllowedBits {
        self.true_entry.unwrap_or(self.entry)
    }

    /// The secondary settings; with no IA32_VMX_PROCBASED_CTLS2 no secondary control may be 1.
    pub fn effective_procbased2(&self) -> AllowedBits {
        self.procbased2
            .unwrap_or(AllowedBits::none(IA32_VMX_PROCBASED_CTLS2))
    }

    /// The EPT/VPID capabilities; none without the MSR.
    pub fn effective_ept_vpid(&self) -> EptVpidCap {
        self.ept_vpid.unwrap_or(EptVpidCap(0))
    }

    /// The width of physical addresses of structures a VMCS points to (bitmaps, MSR areas): MAXPHYADDR, or 32
    /// when IA32_VMX_BASIC bit 48 is 1 (A.1).
    pub fn structure_address_width(&self) -> u8 {
        self.basic.address_width(self.maxphyaddr)
    }

    /// Every capability MSR with its value (`None`: it does not exist on this core), in MSR order.
    pub fn msr_values(&self) -> [(u32, Option<u64>); 17] {
        let raw = |bits: Option<AllowedBits>| bits.map(|b| b.raw);
        [
            (IA32_VMX_BASIC, Some(self.basic.raw)),
            (IA32_VMX_PINBASED_CTLS, Some(self.pinbased.raw)),
            (IA32_VMX_PROCBASED_CTLS, Some(self.procbased.raw)),
            (IA32_VMX_EXIT_CTLS, Some(self.exit.raw)),
            (IA32_VMX_ENTRY_CTLS, Some(self.entry.raw)),
            (IA32_VMX_MISC, Some(self.misc.0)),
            (IA32_VMX_CR0_FIXED0, Some(self.cr0_fixed0)),
            (IA32_VMX_CR0_FIXED1, Some(self.cr0_fixed1)),
            (IA32_VMX_CR4_FIXED0, Some(self.cr4_fixed0)),
            (IA32_VMX_CR4_FIXED1, Some(self.cr4_fixed1)),
            (IA32_VMX_VMCS_ENUM, Some(self.vmcs_enum)),
            (IA32_VMX_PROCBASED_CTLS2, raw(self.procbased2)),
            (IA32_VMX_EPT_VPID_CAP, self.ept_vpid.map(|cap| cap.0)),
            (IA32_VMX_TRUE_PINBASED_CTLS, raw(self.true_pinbased)),
            (IA32_VMX_TRUE_PROCBASED_CTLS, raw(self.true_procbased)),
            (IA32_VMX_TRUE_EXIT_CTLS, raw(self.true_exit)),
            (IA32_VMX_TRUE_ENTRY_CTLS, raw(self.true_entry)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmx::vmcs::fixtures::{self, FakeMsrs};

    /// Each decoder reads the bit vol. 3D A.6 / A.10 gives it, and only that bit.
    #[test]
    fn every_capability_bit_is_read_from_its_sdm_position() {
        type Decoder = fn(EptVpidCap) -> bool;
        let ept: [(Decoder, u32); 13] = [
            (EptVpidCap::execute_only, 0),
            (EptVpidCap::walk_length_4, 6),
            (EptVpidCap::walk_length_5, 7),
            (EptVpidCap::memory_type_uc, 8),
            (EptVpidCap::memory_type_wb, 14),
            (EptVpidCap::pages_2m, 16),
            (EptVpidCap::pages_1g, 17),
            (EptVpidCap::invept, 20),
            (EptVpidCap::accessed_dirty, 21),
            (EptVpidCap::invept_single_context, 25),
            (EptVpidCap::invept_all_context, 26),
            (EptVpidCap::invvpid, 32),
            (EptVpidCap::execute_only, 0),
        ];
        for (decode, n) in ept {
            assert!(decode(EptVpidCap(1 << n)), "EPT_VPID_CAP bit {n}");
            assert!(!decode(EptVpidCap(!(1u64 << n))), "only bit {n}");
        }
        type MiscDecoder = fn(VmxMisc) -> bool;
        let misc: [(MiscDecoder, u32); 3] = [
            (VmxMisc::stores_lma, 5),
            (VmxMisc::vmwrite_any_field, 29),
            (VmxMisc::inject_with_zero_length, 30),
        ];
        for (decode, n) in misc {
            assert!(decode(VmxMisc(1 << n)), "VMX_MISC bit {n}");
            assert!(!decode(VmxMisc(!(1u64 << n))), "only bit {n}");
        }
        assert_eq!(VmxMisc(0).max_msr_list(), 512);
        assert_eq!(VmxMisc(3 << 25).max_msr_list(), 2048);
        assert_eq!(VmxMisc(!0).max_msr_list(), 4096);
        assert_eq!(VmxMisc(0x1FF << 16).cr3_targets(), 511);
    }

    #[test]
    fn every_capability_msr_has_its_architectural_name() {
        for (msr, name) in [
            (0x480, "IA32_VMX_BASIC"),
            (0x481, "IA32_VMX_PINBASED_CTLS"),
            (0x482, "IA32_VMX_PROCBASED_CTLS"),
            (0x483, "IA32_VMX_EXIT_CTLS"),
            (0x484, "IA32_VMX_ENTRY_CTLS"),
            (0x485, "IA32_VMX_MISC"),
            (0x486, "IA32_VMX_CR0_FIXED0"),
            (0x487, "IA32_VMX_CR0_FIXED1"),
            (0x488, "IA32_VMX_CR4_FIXED0"),
            (0x489, "IA32_VMX_CR4_FIXED1"),
            (0x48A, "IA32_VMX_VMCS_ENUM"),
            (0x48B, "IA32_VMX_PROCBASED_CTLS2"),
            (0x48C, "IA32_VMX_EPT_VPID_CAP"),
            (0x48D, "IA32_VMX_TRUE_PINBASED_CTLS"),
            (0x48E, "IA32_VMX_TRUE_PROCBASED_CTLS"),
            (0x48F, "IA32_VMX_TRUE_EXIT_CTLS"),
            (0x490, "IA32_VMX_TRUE_ENTRY_CTLS"),
            (0x491, "unknown MSR"),
        ] {
            assert_eq!(msr_name(msr), name, "0x{msr:x}");
        }
    }

    /// `CpuMsrs` reads through the `VmxCpu` (RDMSR on that core): the same values as the MSRs hold.
    #[test]
    fn capabilities_read_through_a_vmx_cpu_are_its_msrs() {
        let cpu = crate::vmx::fake::FakeCpu::bochs_haswell();
        let mut msrs = CpuMsrs(&cpu);
        assert_eq!(msrs.read_msr(IA32_VMX_BASIC), Some(0x00d8_1000_0000_002b));
        assert_eq!(
            msrs.read_msr(IA32_VMX_PINBASED_CTLS),
            Some(0x0000_007f_0000_0016)
        );
        assert_eq!(msrs.read_msr(IA32_VMX_CR4_FIXED1), Some(0x1727ff));
    }

    #[test]
    fn haswell_reads_every_msr_including_true_controls_and_ept() {
        let mut msrs = fixtures::bochs_haswell();
        let caps = VmxCapabilities::read(&mut msrs, 40).unwrap();
        assert_eq!(caps.basic.revision_id, 0x2b);
        assert!(caps.basic.true_controls);
        assert!(caps.procbased2.is_some());
        let ept = caps.ept_vpid.unwrap();
        assert!(ept.walk_length_4() && ept.memory_type_wb() && ept.memory_type_uc());
        assert!(!ept.walk_length_5());
        assert_eq!(caps.effective_procbased().msr, IA32_VMX_TRUE_PROCBASED_CTLS);
        assert_eq!(caps.effective_procbased().must_be_one(), 0x0400_6172);
        assert_eq!(caps.procbased.must_be_one(), 0x0401_E172);
        assert_eq!(caps.misc.cr3_targets(), 4);
        assert!(caps.misc.supports_activity_state(1));
        assert!(!caps.misc.supports_activity_state(4));
        assert!(caps.misc.vmwrite_any_field());
        assert_eq!(caps.misc.max_msr_list(), 512);
        assert!(caps.msr_values().iter().all(|(_, value)| value.is_some()));
        assert_eq!(caps.structure_address_width(), 40);
    }

    #[test]
    fn penryn_has_no_true_controls_and_no_ept_msr_so_neither_is_read() {
        let mut msrs = fixtures::penryn_t9600();
        let caps = VmxCapabilities::read(&mut msrs, 36).unwrap();
        assert!(!caps.basic.true_controls);
        assert_eq!(caps.true_procbased, None);
        assert_eq!(caps.effective_procbased().msr, IA32_VMX_PROCBASED_CTLS);
        assert_eq!(caps.procbased2.unwrap().may_be_one(), 0x41);
        assert_eq!(caps.ept_vpid, None);
        for msr in [
            IA32_VMX_EPT_VPID_CAP,
            IA32_VMX_TRUE_PINBASED_CTLS,
            IA32_VMX_TRUE_ENTRY_CTLS,
        ] {
            assert!(!msrs.was_read(msr), "{} must not be read", msr_name(msr));
        }
    }

    #[test]
    fn procbased2_is_read_only_when_activate_secondary_may_be_1() {
        let mut msrs = fixtures::penryn_t9600();
        let procbased = msrs.get(IA32_VMX_PROCBASED_CTLS);
        msrs.set(IA32_VMX_PROCBASED_CTLS, procbased & !(1 << 63));
        msrs.remove(IA32_VMX_PROCBASED_CTLS2);
        let caps = VmxCapabilities::read(&mut msrs, 36).unwrap();
        assert_eq!(caps.procbased2, None);
        assert!(!msrs.was_read(IA32_VMX_PROCBASED_CTLS2));
        assert_eq!(caps.effective_procbased2().may_be_one(), 0);
    }

    #[test]
    fn a_missing_msr_is_named() {
        let mut msrs = fixtures::bochs_haswell();
        msrs.remove(IA32_VMX_TRUE_EXIT_CTLS);
        let error = VmxCapabilities::read(&mut msrs, 40).unwrap_err();
        assert_eq!(error, ReadError::MsrUnreadable { msr: 0x48F });
        assert_eq!(
            format!("{error}"),
            "IA32_VMX_TRUE_EXIT_CTLS (MSR 0x48f) could not be read"
        );
        let mut empty = FakeMsrs::default();
        assert_eq!(
            VmxCapabilities::read(&mut empty, 40),
            Err(ReadError::MsrUnreadable {
                msr: IA32_VMX_BASIC
            })
        );
    }

    #[test]
    fn adjust_applies_allowed_0_then_allowed_1() {
        let bits = AllowedBits::new(IA32_VMX_PINBASED_CTLS, 0x0000_007F_0000_0016);
        assert_eq!(bits.adjust(0), 0x16);
        assert_eq!(bits.adjust(1 << 3), 0x1E);
        assert_eq!(bits.adjust(1 << 7), 0x16, "bit 7 is not allowed to be 1");
        assert!(bits.permits(0x17));
        assert!(!bits.permits(0x14), "bit 1 must be 1");
        assert!(!bits.permits(0x96), "bit 7 must be 0");
    }
}
