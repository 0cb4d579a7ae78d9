//! Per-core entry into and exit from VMX root operation (SDM vol. 3C 24.7 "Enabling and entering VMX operation",
//! 25.11.3 "Initializing a VMCS", VMXON/VMCLEAR/VMPTRLD/VMPTRST/VMXOFF in 31.3).

use core::fmt;

use super::basic::{RegionPair, VmxBasic};
use super::caps::Caps;
use super::errors::VmxInstruction;
use super::feature_control::{enable_feature_control, FeatureControlReport};
use super::fixed_bits::{prepare_control_registers, CR4_SMXE, CR4_VMXE};
use super::{InstrOutcome, VmxCpu, VmxError, IA32_VMX_BASIC};

/// Everything the per-core log line needs, from one successful [`enter_vmx_root`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootReport {
    /// True when the core was already in VMX root operation and nothing was done.
    pub already: bool,
    pub feature_control: FeatureControlReport,
    /// CR0 and CR4 in force when VMXON executed.
    pub cr0: u64,
    pub cr4: u64,
    pub basic: VmxBasic,
    pub maxphyaddr: u8,
    pub vmxon_phys: u64,
    pub vmcs_phys: u64,
}

impl RootReport {
    /// The VMCS revision identifier written into both regions.
    pub const fn revision_id(&self) -> u32 {
        self.basic.revision_id
    }
}

/// The fields of the log line after `apic_id=<n>`:
/// `feature_control=0x<before>->0x<after> cr0=0x.. cr4=0x.. revision=0x.. vmxon=0x.. vmcs=0x..`.
impl fmt::Display for RootReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "feature_control=0x{:x}->0x{:x} cr0=0x{:x} cr4=0x{:x} revision=0x{:x} vmxon=0x{:x} vmcs=0x{:x}",
            self.feature_control.before,
            self.feature_control.after,
            self.cr0,
            self.cr4,
            self.basic.revision_id,
            self.vmxon_phys,
            self.vmcs_phys
        )
    }
}

/// One core's VMX state (keep it in the per-CPU block).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VmxState {
    #[default]
    NotEntered,
    /// In VMX root operation with the VMCS current; holds the report of the entry.
    InRoot(RootReport),
}

impl VmxState {
    pub const fn new() -> Self {
        Self::NotEntered
    }

    pub const fn is_in_root(&self) -> bool {
        matches!(self, Self::InRoot(_))
    }

    pub const fn vmxon_phys(&self) -> Option<u64> {
        match self {
            Self::InRoot(report) => Some(report.vmxon_phys),
            Self::NotEntered => None,
        }
    }

    pub const fn vmcs_phys(&self) -> Option<u64> {
        match self {
            Self::InRoot(report) => Some(report.vmcs_phys),
            Self::NotEntered => None,
        }
    }
}

/// Brings the calling core into VMX root operation with `regions.vmcs` as the current VMCS.
///
/// If `state` already says [`VmxState::InRoot`], returns that report with `already = true` and executes nothing.
/// On failure the core is left outside VMX operation (a VMXON that succeeded is undone with VMXOFF) and `state`
/// stays [`VmxState::NotEntered`]; CR0.NE/CR4.VMXE may remain set.
///
/// `regions` must be this core's regions, the same on every call (they stay in use while in root operation).
pub fn enter_vmx_root(
    cpu: &mut impl VmxCpu,
    state: &mut VmxState,
    regions: &RegionPair,
) -> Result<RootReport, VmxError> {
    if let VmxState::InRoot(report) = state {
        return Ok(RootReport {
            already: true,
            ..*report
        });
    }

    let caps = Caps::read(cpu);
    if !caps.vmx {
        return Err(VmxError::Unsupported);
    }
    let feature_control = enable_feature_control(cpu)?;

    let basic = VmxBasic::decode(cpu.read_msr(IA32_VMX_BASIC));
    basic.check()?;
    regions.validate(&basic, caps.maxphyaddr)?;
    // Neither region is in use: this core is not in VMX operation (state NotEntered).
    regions.vmxon.prepare(&basic);
    regions.vmcs.prepare(&basic);

    let smx_in_use = feature_control.after & super::feature_control::VMX_INSIDE_SMX != 0;
    let (cr0, cr4) = prepare_control_registers(cpu, smx_in_use)?;

    let vmxon_phys = regions.vmxon.phys();
    let vmcs_phys = regions.vmcs.phys();

    // SAFETY: CPL 0 (kernel). The VMXON region was validated (aligned, within the address width, big enough),
    // holds the revision identifier, and `Region::new`'s contract reserves it for VMX for the rest of the run.
    // Feature control is locked with VMX enabled and CR0/CR4 satisfy the fixed bits with VMXE set, so none of
    // VMXON's #GP(0) conditions the kernel can see holds (SDM 31.3 "VMXON"). It can still fault on ones it cannot
    // see (A20M mode, SMX operation entered by firmware with bit 1 of IA32_FEATURE_CONTROL clear): that #GP
    // (or a #UD) is caught by the fix-up and becomes `VmxError::VmxonFaulted` on this core.
    // SAFETY: as above.
    unsafe { vmxon_under_fixup(cpu, vmxon_phys) }?;

    if let Err(error) = make_current(cpu, vmcs_phys) {
        abandon_root(cpu, vmcs_phys);
        return Err(error);
    }

    let report = RootReport {
        already: false,
        feature_control,
        cr0,
        cr4,
        basic,
        maxphyaddr: caps.maxphyaddr,
        vmxon_phys,
        vmcs_phys,
    };
    *state = VmxState::InRoot(report);
    Ok(report)
}

/// VMCLEAR (initializes the VMCS and makes its launch state clear), VMPTRLD, then VMPTRST to confirm.
fn make_current(cpu: &mut impl VmxCpu, vmcs_phys: u64) -> Result<(), VmxError> {
    // SAFETY: in VMX root operation (VMXON succeeded); the VMCS region is validated, carries the revision
    // identifier and is reserved for VMX by `Region::new`'s contract. The same holds for the next two.
    unsafe { cpu.vmclear(vmcs_phys) }
        .map_err(|fail| VmxError::from_vmfail(VmxInstruction::Vmclear, fail))?;
    // SAFETY: see above.
    unsafe { cpu.vmptrld(vmcs_phys) }
        .map_err(|fail| VmxError::from_vmfail(VmxInstruction::Vmptrld, fail))?;
    // SAFETY: see above.
    let found = unsafe { cpu.vmptrst() }
        .map_err(|fail| VmxError::from_vmfail(VmxInstruction::Vmptrst, fail))?;
    if found != vmcs_phys {
        return Err(VmxError::VmcsNotCurrent {
            expected: vmcs_phys,
            found,
        });
    }
    Ok(())
}

/// Best-effort exit after a failure past VMXON: VMCLEAR, VMXOFF, and clear CR4.VMXE if VMXOFF worked.
/// VMXON, under the kernel's fix-up when the core has it: #UD and #GP become [`VmxError::VmxonFaulted`] and
/// CR4.VMXE is cleared again (VMXON leaves the core outside VMX operation when it faults). Any other vector
/// cannot be VMXON's (the IDT dispatcher applies the fix-up to #UD and #GP only), so it is not expected here.
///
/// # Safety
/// As [`VmxCpu::vmxon`].
unsafe fn vmxon_under_fixup(cpu: &mut impl VmxCpu, phys: u64) -> Result<(), VmxError> {
    if !cpu.can_catch_faults() {
        // SAFETY: forwarded to the caller's guarantee.
        return unsafe { cpu.vmxon(phys) }
            .map_err(|fail| VmxError::from_vmfail(VmxInstruction::Vmxon, fail));
    }
    // SAFETY: forwarded to the caller's guarantee.
    match unsafe { cpu.vmxon_probe(phys) } {
        InstrOutcome::Succeeded => Ok(()),
        InstrOutcome::VmFail(fail) => Err(VmxError::from_vmfail(VmxInstruction::Vmxon, fail)),
        InstrOutcome::Fault(exception) => {
            let smxe = cpu.read_cr4() & CR4_SMXE != 0;
            clear_vmxe(cpu);
            Err(VmxError::VmxonFaulted { exception, smxe })
        }
    }
}

fn abandon_root(cpu: &mut impl VmxCpu, vmcs_phys: u64) {
    // SAFETY: in VMX root operation; the VMCS region is reserved for VMX. A failure here changes nothing.
    let _ = unsafe { cpu.vmclear(vmcs_phys) };
    // SAFETY: in VMX root operation; the VMCS data was just written back by VMCLEAR.
    if unsafe { cpu.vmxoff() }.is_ok() {
        clear_vmxe(cpu);
    }
}

/// Clears CR4.VMXE (only legal outside VMX operation). Every caller has just left or failed to enter VMX
/// operation with VMXE set, so there is always something to clear.
fn clear_vmxe(cpu: &mut impl VmxCpu) {
    let cr4 = cpu.read_cr4();
    // SAFETY: outside VMX operation clearing VMXE only disables the VMX instructions; no other bit changes.
    unsafe { cpu.write_cr4(cr4 & !CR4_VMXE) };
}

/// Leaves VMX root operation on the calling core: VMCLEAR of the VMCS (its data is written back to memory),
/// VMXOFF, CR4.VMXE cleared, `state` back to [`VmxState::NotEntered`]. Does nothing when not in root operation.
/// On failure `state` is unchanged (still in root operation).
pub fn leave_vmx_root(cpu: &mut impl VmxCpu, state: &mut VmxState) -> Result<(), VmxError> {
    let VmxState::InRoot(report) = *state else {
        return Ok(());
    };
    // SAFETY: `state` says this core is in VMX root operation with this VMCS; the region is reserved for VMX.
    unsafe { cpu.vmclear(report.vmcs_phys) }
        .map_err(|fail| VmxError::from_vmfail(VmxInstruction::Vmclear, fail))?;
    // SAFETY: in VMX root operation; the VMCS was just cleared, so nothing is lost.
    unsafe { cpu.vmxoff() }.map_err(|fail| VmxError::from_vmfail(VmxInstruction::Vmxoff, fail))?;
    *state = VmxState::NotEntered;
    clear_vmxe(cpu);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmx::fake::{FakeCpu, Instr, TestRegions};
    use crate::vmx::fixed_bits::CR0_NE;
    use crate::vmx::IA32_VMX_CR4_FIXED1;
    use crate::vmx::{Exception, InstructionError, RegionError, RegionKind, VmFail};

    #[test]
    fn a_faulting_vmxon_is_a_typed_error_under_the_fixup() {
        for exception in [Exception::GP, Exception::UD] {
            let mut cpu = FakeCpu::bochs_haswell();
            cpu.fault_fixup = true;
            let regions = TestRegions::new(&mut cpu);
            cpu.inject_fault(Instr::Vmxon, exception);
            let mut state = VmxState::new();
            let error = enter_vmx_root(&mut cpu, &mut state, &regions.pair).unwrap_err();
            assert_eq!(
                error,
                VmxError::VmxonFaulted {
                    exception,
                    smxe: false
                }
            );
            assert_eq!(state, VmxState::NotEntered);
            assert_eq!(cpu.read_cr4() & CR4_VMXE, 0, "CR4.VMXE is cleared again");
            assert!(!cpu.in_root());
            assert!(format!("{error}").starts_with(&format!("VMXON raised {exception} although")));
        }
    }

    #[test]
    fn a_vmxon_fault_with_smxe_set_is_reported_as_inside_smx() {
        let mut cpu = FakeCpu::bochs_haswell();
        cpu.fault_fixup = true;
        let regions = TestRegions::new(&mut cpu);
        // An SMX-capable CPU with feature control unlocked: the policy sets bit 1 and CR4.SMXE.
        // IA32_VMX_CR4_FIXED1 (0x489) must allow CR4.SMXE (Bochs' haswell does not).
        cpu.smx = true;
        cpu.set_feature_control(0);
        let fixed1 = cpu.read_msr(0x489);
        cpu.set_msr(0x489, fixed1 | CR4_SMXE);
        cpu.inject_fault(Instr::Vmxon, Exception::GP);
        let mut state = VmxState::new();
        let error = enter_vmx_root(&mut cpu, &mut state, &regions.pair).unwrap_err();
        assert_eq!(
            error,
            VmxError::VmxonFaulted {
                exception: Exception::GP,
                smxe: true
            }
        );
        assert!(format!("{error}").contains("inside SMX operation"));
    }

    #[test]
    fn enters_root_on_bochs_haswell() {
        let mut cpu = FakeCpu::bochs_haswell();
        let regions = TestRegions::new(&mut cpu);
        let mut state = VmxState::new();
        let report = enter_vmx_root(&mut cpu, &mut state, &regions.pair).unwrap();
        assert!(!report.already);
        assert_eq!(
            report.feature_control,
            FeatureControlReport {
                before: 5,
                after: 5
            }
        );
        assert_eq!(report.cr0, 0x8000_0031);
        assert_eq!(report.cr4, 0x2020);
        assert_eq!(report.revision_id(), 0x2b);
        assert_eq!(
            (report.vmxon_phys, report.vmcs_phys),
            (TestRegions::VMXON, TestRegions::VMCS)
        );
        assert_eq!(state, VmxState::InRoot(report));
        assert!(cpu.in_root());
        assert_eq!(cpu.current_vmcs, Some(TestRegions::VMCS));
        assert_eq!(cpu.count(Instr::Vmxon), 1);
        assert_eq!(regions.pair.vmxon.revision(), 0x2b);
        assert_eq!(regions.pair.vmcs.revision(), 0x2b);
        assert_eq!(
            format!("{report}"),
            "feature_control=0x5->0x5 cr0=0x80000031 cr4=0x2020 revision=0x2b vmxon=0x7f000 vmcs=0x7e000"
        );
    }

    /// The state names the regions in use only while in root operation.
    #[test]
    fn the_state_reports_the_regions_only_in_root_operation() {
        let mut cpu = FakeCpu::bochs_haswell();
        let regions = TestRegions::new(&mut cpu);
        let mut state = VmxState::new();
        assert!(!state.is_in_root());
        assert_eq!((state.vmxon_phys(), state.vmcs_phys()), (None, None));
        enter_vmx_root(&mut cpu, &mut state, &regions.pair).unwrap();
        assert!(state.is_in_root());
        assert_eq!(
            (state.vmxon_phys(), state.vmcs_phys()),
            (Some(TestRegions::VMXON), Some(TestRegions::VMCS))
        );
    }

    /// CR4.SMXE is set only when feature control enables VMX inside SMX (bit 1), even where FIXED1 allows it.
    #[test]
    fn smxe_follows_feature_control_bit_1() {
        for (smx, expected) in [(false, 0), (true, CR4_SMXE)] {
            let mut cpu = FakeCpu::bochs_haswell();
            cpu.smx = smx;
            cpu.set_feature_control(0);
            let fixed1 = cpu.read_msr(IA32_VMX_CR4_FIXED1);
            cpu.set_msr(IA32_VMX_CR4_FIXED1, fixed1 | CR4_SMXE);
            let regions = TestRegions::new(&mut cpu);
            let mut state = VmxState::new();
            let report = enter_vmx_root(&mut cpu, &mut state, &regions.pair).unwrap();
            assert_eq!(report.cr4 & CR4_SMXE, expected, "SMX {smx}");
            assert_eq!(cpu.read_cr4() & CR4_SMXE, expected, "SMX {smx}");
        }
    }

    #[test]
    fn entering_twice_executes_one_vmxon() {
        let mut cpu = FakeCpu::bochs_haswell();
        let regions = TestRegions::new(&mut cpu);
        let mut state = VmxState::new();
        let first = enter_vmx_root(&mut cpu, &mut state, &regions.pair).unwrap();
        let executed = cpu.executed.len();
        let (reads, writes) = (cpu.msr_reads(), cpu.cr_writes);
        let second = enter_vmx_root(&mut cpu, &mut state, &regions.pair).unwrap();
        assert!(second.already);
        assert_eq!(
            RootReport {
                already: false,
                ..second
            },
            first
        );
        assert_eq!(cpu.executed.len(), executed, "no VMX instruction at all");
        assert_eq!(
            (cpu.msr_reads(), cpu.cr_writes),
            (reads, writes),
            "no MSR or CR access either"
        );
        assert_eq!(cpu.count(Instr::Vmxon), 1);
    }

    #[test]
    fn unlocked_feature_control_is_locked_first() {
        let mut cpu = FakeCpu::bochs_haswell();
        cpu.set_feature_control(0);
        let regions = TestRegions::new(&mut cpu);
        let report = enter_vmx_root(&mut cpu, &mut VmxState::new(), &regions.pair).unwrap();
        assert_eq!(
            report.feature_control,
            FeatureControlReport {
                before: 0,
                after: 5
            }
        );
        assert!(format!("{report}").starts_with("feature_control=0x0->0x5 "));
    }

    #[test]
    fn firmware_disabled_never_executes_vmxon() {
        let mut cpu = FakeCpu::bochs_haswell();
        cpu.set_feature_control(0x1);
        let regions = TestRegions::new(&mut cpu);
        let mut state = VmxState::new();
        let error = enter_vmx_root(&mut cpu, &mut state, &regions.pair).unwrap_err();
        assert_eq!(error, VmxError::DisabledByFirmware { value: 1 });
        assert!(cpu.executed.is_empty());
        assert!(cpu.msr_writes.is_empty());
        assert_eq!(state, VmxState::NotEntered);
    }

    #[test]
    fn no_vmx_means_no_vmx_msr_access() {
        let mut cpu = FakeCpu::bochs_haswell();
        cpu.vmx = false;
        let regions = TestRegions::new(&mut cpu);
        let error = enter_vmx_root(&mut cpu, &mut VmxState::new(), &regions.pair).unwrap_err();
        assert_eq!(error, VmxError::Unsupported);
        assert_eq!(cpu.msr_reads(), 0);
        assert!(cpu.executed.is_empty());
    }

    #[test]
    fn unsupported_memory_type_and_bad_regions_stop_before_vmxon() {
        let mut cpu = FakeCpu::bochs_haswell();
        cpu.set_msr(crate::vmx::IA32_VMX_BASIC, 0x0000_1000_0000_002b);
        let regions = TestRegions::new(&mut cpu);
        let error = enter_vmx_root(&mut cpu, &mut VmxState::new(), &regions.pair).unwrap_err();
        assert_eq!(error, VmxError::MemoryTypeUnsupported(0));
        assert!(cpu.executed.is_empty());

        let mut cpu = FakeCpu::bochs_haswell();
        cpu.maxphyaddr = 16;
        let regions = TestRegions::new(&mut cpu);
        let error = enter_vmx_root(&mut cpu, &mut VmxState::new(), &regions.pair).unwrap_err();
        assert_eq!(
            error,
            VmxError::RegionInvalid {
                region: RegionKind::Vmxon,
                error: RegionError::BeyondPhysicalAddressWidth {
                    phys: TestRegions::VMXON,
                    maxphyaddr: 16
                }
            }
        );
        assert!(cpu.executed.is_empty());
    }

    #[test]
    fn each_vmfail_is_reported_and_the_core_left_outside_vmx() {
        let cases = [
            (
                Instr::Vmxon,
                VmFail::Invalid,
                VmxError::VmFailInvalid {
                    instr: VmxInstruction::Vmxon,
                },
            ),
            (
                Instr::Vmxon,
                VmFail::Valid(InstructionError(15)),
                VmxError::VmFailValid {
                    instr: VmxInstruction::Vmxon,
                    error: InstructionError(15),
                },
            ),
            (
                Instr::Vmclear,
                VmFail::Invalid,
                VmxError::VmFailInvalid {
                    instr: VmxInstruction::Vmclear,
                },
            ),
            (
                Instr::Vmclear,
                VmFail::Valid(InstructionError(2)),
                VmxError::VmFailValid {
                    instr: VmxInstruction::Vmclear,
                    error: InstructionError(2),
                },
            ),
            (
                Instr::Vmptrld,
                VmFail::Invalid,
                VmxError::VmFailInvalid {
                    instr: VmxInstruction::Vmptrld,
                },
            ),
            (
                Instr::Vmptrld,
                VmFail::Valid(InstructionError(11)),
                VmxError::VmFailValid {
                    instr: VmxInstruction::Vmptrld,
                    error: InstructionError(11),
                },
            ),
            (
                Instr::Vmptrst,
                VmFail::Invalid,
                VmxError::VmFailInvalid {
                    instr: VmxInstruction::Vmptrst,
                },
            ),
        ];
        for (instr, fail, expected) in cases {
            let mut cpu = FakeCpu::bochs_haswell();
            let regions = TestRegions::new(&mut cpu);
            cpu.inject(instr, fail);
            let mut state = VmxState::new();
            let error = enter_vmx_root(&mut cpu, &mut state, &regions.pair).unwrap_err();
            assert_eq!(error, expected, "{instr:?}");
            assert_eq!(state, VmxState::NotEntered);
            assert!(
                !cpu.in_root(),
                "{instr:?}: VMXOFF undoes a VMXON that succeeded"
            );
            let vmxe_expected = instr == Instr::Vmxon;
            assert_eq!(cpu.cr4 & CR4_VMXE != 0, vmxe_expected, "{instr:?}");
            // The failed core can try again and succeed.
            assert!(enter_vmx_root(&mut cpu, &mut state, &regions.pair).is_ok());
        }
    }

    #[test]
    fn vmptrst_mismatch_is_reported() {
        let mut cpu = FakeCpu::bochs_haswell();
        let regions = TestRegions::new(&mut cpu);
        cpu.vmptrst_lies = Some(0x1234_5000);
        let error = enter_vmx_root(&mut cpu, &mut VmxState::new(), &regions.pair).unwrap_err();
        assert_eq!(
            error,
            VmxError::VmcsNotCurrent {
                expected: TestRegions::VMCS,
                found: 0x1234_5000
            }
        );
        assert_eq!(
            format!("{error}"),
            "VMPTRST returned 0x12345000 after VMPTRLD of 0x7e000: the VMCS is not current"
        );
        assert!(!cpu.in_root());
    }

    #[test]
    fn fixed_bit_failure_stops_before_vmxon() {
        let mut cpu = FakeCpu::bochs_haswell();
        cpu.cr0_ignores_writes = true;
        let regions = TestRegions::new(&mut cpu);
        let error = enter_vmx_root(&mut cpu, &mut VmxState::new(), &regions.pair).unwrap_err();
        assert_eq!(
            format!("{error}"),
            "VMX fixed bits not satisfied: CR0.NE must be 1"
        );
        assert!(cpu.executed.is_empty());
    }

    #[test]
    fn leave_clears_vmxoffs_and_resets_state() {
        let mut cpu = FakeCpu::bochs_haswell();
        let regions = TestRegions::new(&mut cpu);
        let mut state = VmxState::new();
        enter_vmx_root(&mut cpu, &mut state, &regions.pair).unwrap();
        leave_vmx_root(&mut cpu, &mut state).unwrap();
        assert_eq!(state, VmxState::NotEntered);
        assert!(!cpu.in_root());
        assert_eq!(cpu.cr4 & CR4_VMXE, 0);
        assert_eq!(cpu.cr0 & CR0_NE, CR0_NE, "CR0.NE is left on");
        let tail: Vec<Instr> = cpu
            .executed
            .iter()
            .rev()
            .take(2)
            .rev()
            .map(|(instr, _)| *instr)
            .collect();
        assert_eq!(tail, vec![Instr::Vmclear, Instr::Vmxoff]);
        // Leaving again does nothing; entering again works.
        let executed = cpu.executed.len();
        leave_vmx_root(&mut cpu, &mut state).unwrap();
        assert_eq!(cpu.executed.len(), executed);
        assert!(
            !enter_vmx_root(&mut cpu, &mut state, &regions.pair)
                .unwrap()
                .already
        );
        assert_eq!(cpu.count(Instr::Vmxon), 2);
    }
}
