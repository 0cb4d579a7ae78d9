//! Negative VMX cases in the style of kvm-unit-tests' x86/vmx.c: each case puts the processor in a precise
//! state, executes one VMX instruction that must fail in a precise way, and restores the state.
//!
//! The cases are data ([`CASES`]); [`run_selftest`] walks them in three phases:
//! 1. [`Phase::BeforeLock`]: only when IA32_FEATURE_CONTROL arrived unlocked (nothing has locked it yet);
//! 2. [`Phase::OutsideVmx`]: feature control locked, CR0/CR4 ready, regions prepared, not in VMX operation;
//! 3. [`Phase::InRoot`]: in VMX root operation with the VMCS current (so failures are VMfailValid with a number).
//!
//! Expected results come from the instructions' operation pseudocode (SDM vol. 3C 31.3) and the error numbers
//! of 31.4. Cases that expect an exception need the kernel's fault fix-up ([`VmxCpu::can_catch_faults`]);
//! without it they are skipped.
//!
//! The run ends in the state it started in: a core in root operation leaves it for phase 2 and comes back with
//! the same regions and the same [`VmxState`] report; a core outside VMX operation ends outside (feature control
//! stays locked: a lock cannot be undone).

use core::fmt;

use super::basic::{Region, RegionPair, VmxBasic};
use super::caps::Caps;
use super::feature_control::{
    decide, enable_feature_control, hold_lock, Decision, FeatureControlReport, LOCK,
    VMX_OUTSIDE_SMX,
};
use super::fixed_bits::{prepare_control_registers, ControlRegister, CR4_VMXE};
use super::root::{enter_vmx_root, leave_vmx_root, VmxState};
use super::{
    Exception, InstrOutcome, InstructionError, RegionError, RegionKind, VmFail, VmxCpu, VmxError,
    VmxInstruction, IA32_FEATURE_CONTROL, IA32_VMX_BASIC, IA32_VMX_CR0_FIXED0, IA32_VMX_CR0_FIXED1,
    IA32_VMX_CR4_FIXED0, IA32_VMX_CR4_FIXED1,
};

/// Where a case runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    BeforeLock,
    OutsideVmx,
    InRoot,
}

/// What a case changes before its instruction (and restores after it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    Nothing,
    /// The VMXON region holds a revision identifier other than IA32_VMX_BASIC's.
    WrongRevision,
    /// The VMXON region holds the right revision identifier with bit 31 set.
    RevisionBit31,
    /// CR4.VMXE cleared.
    ClearCr4Vmxe,
    /// IA32_FEATURE_CONTROL written with bit 2 (VMX outside SMX) set and the lock bit clear.
    FeatureControlEnabledUnlocked,
}

/// The physical-address operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Address {
    VmxonRegion,
    /// VMXON region + 0x800.
    VmxonRegionUnaligned,
    /// VMXON region with the bit just above the physical-address width set.
    VmxonRegionBeyondWidth,
    VmcsRegion,
    /// VMCS region + 0x800.
    VmcsRegionUnaligned,
    /// VMCS region with the bit just above the physical-address width set.
    VmcsRegionBeyondWidth,
    /// The third page, prepared as a VMCS whose revision identifier is IA32_VMX_BASIC's plus one.
    ScratchWrongRevision,
}

/// Which fixed-bit rule a sweep breaks, one bit at a time (SDM vol. 3C 24.8; vol. 3D A.7, A.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FixedRule {
    /// Clear a bit IA32_VMX_CRn_FIXED0 requires to be 1 (a "fixed-1" bit).
    ClearFixed1,
    /// Set a bit IA32_VMX_CRn_FIXED1 requires to be 0 (a "fixed-0" bit).
    SetFixed0,
}

/// A sweep: every bit of `register` that `rule` names and [`sweepable`] allows, one VMXON each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sweep {
    pub register: ControlRegister,
    pub rule: FixedRule,
}

/// CR0 bits a case may change, either way, for the length of one VMXON without disturbing the running kernel:
/// MP, EM, TS, ET and NE (x87 behaviour only: the kernel runs no x87, MMX or SSE code), AM (alignment checks at
/// CPL 3 only) and the reserved bits 63:32 (a MOV that sets one raises #GP, SDM vol. 3A 2.5). Never PE or PG
/// (the paging mode), WP (the kernel's write protection), NW or CD (caching), nor the reserved bits of 31:0.
pub const CR0_SWEEPABLE: u64 = 0xFFFF_FFFF_0000_0000 | (1 << 18) | 0x3E;

/// CR4 bits a case may change: VME, PVI, TSD, DE, PSE, PGE, PCE and UMIP (virtual-8086 mode, CPL 3 and
/// debug-register behaviour; PSE is ignored under PAE; PGE only flushes global TLB entries), VMXE (outside VMX
/// operation), SMXE (enables GETSEC only) and the reserved bit 15 (#GP when set). Never PAE, LA57 or PCIDE
/// (the paging mode and CR3's format); never MCE, OSFXSR, OSXMMEXCPT, FSGSBASE or OSXSAVE (the kernel may
/// rely on them once set); never SMEP, SMAP, PKE, CET, PKS or bits 63:32 (access rights, shadow stacks, and
/// FRED at bit 32, which would redirect every exception on a processor that accepted it).
pub const CR4_SWEEPABLE: u64 = 0xE99F;

/// [`CR0_SWEEPABLE`] or [`CR4_SWEEPABLE`].
pub const fn sweepable(register: ControlRegister) -> u64 {
    match register {
        ControlRegister::Cr0 => CR0_SWEEPABLE,
        ControlRegister::Cr4 => CR4_SWEEPABLE,
    }
}

/// The bits a sweep changes, as a mask: for [`FixedRule::ClearFixed1`] every sweepable bit FIXED0 requires that
/// `value` has set; for [`FixedRule::SetFixed0`] every sweepable bit FIXED1 forbids that `value` has clear.
pub const fn sweep_bits(sweep: Sweep, fixed0: u64, fixed1: u64, value: u64) -> u64 {
    let allowed = sweepable(sweep.register);
    match sweep.rule {
        FixedRule::ClearFixed1 => fixed0 & allowed & value,
        FixedRule::SetFixed0 => !fixed1 & allowed & !value,
    }
}

/// The flexible bits a case may toggle: neither required by FIXED0 nor forbidden by FIXED1, and sweepable.
pub const fn flexible_bits(register: ControlRegister, fixed0: u64, fixed1: u64) -> u64 {
    !fixed0 & fixed1 & sweepable(register)
}

/// One bit changed by a sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BitChange {
    pub register: ControlRegister,
    pub bit: u8,
    /// Set (true) or cleared (false).
    pub set: bool,
}

/// `CR0.NE cleared`, `CR4.bit15 set`.
impl fmt::Display for BitChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let register = self.register.name();
        match self.register.bit_name(self.bit) {
            Some(name) => write!(f, "{register}.{name}")?,
            None => write!(f, "{register}.bit{}", self.bit)?,
        }
        f.write_str(if self.set { " set" } else { " cleared" })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Vmxon(Address),
    Vmclear(Address),
    Vmptrld(Address),
    Vmread(u64),
    Vmxoff,
    /// No instruction: the capability MSRs are checked for consistency ([`capability`]).
    CheckCapabilities,
    /// WRMSR of IA32_FEATURE_CONTROL's own value after it is locked (SDM vol. 3C 24.7: #GP, and the MSR keeps
    /// its value).
    WriteLockedFeatureControl,
    /// VMXON once per bit of the sweep, each with that one bit changed (SDM vol. 3C 31.3 VMXON: #GP when CR0
    /// or CR4 is not supported in VMX operation, #UD when CR4.VMXE is clear). A bit the MOV itself refuses
    /// (#GP) is the processor keeping the value out, which is as good.
    VmxonFixedSweep(Sweep),
    /// VMXON with every flexible bit (see [`flexible_bits`]) the processor takes toggled: must succeed.
    VmxonFlexibleToggled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// VMsucceed.
    Succeeds,
    VmFailInvalid,
    VmFailValid(InstructionError),
    Fault(Exception),
    /// The capability MSRs are consistent.
    Consistent,
}

impl Expect {
    const fn matches(self, outcome: InstrOutcome) -> bool {
        match (self, outcome) {
            (Self::Succeeds, InstrOutcome::Succeeded) => true,
            (Self::VmFailInvalid, InstrOutcome::VmFail(VmFail::Invalid)) => true,
            (Self::VmFailValid(want), InstrOutcome::VmFail(VmFail::Valid(got))) => want.0 == got.0,
            (Self::Fault(want), InstrOutcome::Fault(got)) => want.vector == got.vector,
            _ => false,
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Succeeds => f.write_str("VMsucceed"),
            Self::VmFailInvalid => f.write_str("VMfailInvalid"),
            Self::VmFailValid(error) => write!(f, "VMfailValid with {error}"),
            Self::Fault(exception) => write!(f, "{exception}"),
            Self::Consistent => f.write_str("consistent capability MSRs"),
        }
    }
}

/// One self-test case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Case {
    pub name: &'static str,
    pub phase: Phase,
    pub setup: Setup,
    pub operation: Operation,
    pub expect: Expect,
}

impl Case {
    /// Whether the case needs the kernel's fault fix-up: it expects a fault, or it probes which control-register
    /// values the processor takes (a refused MOV is a #GP).
    pub const fn needs_fixup(&self) -> bool {
        matches!(self.expect, Expect::Fault(_))
            || matches!(
                self.operation,
                Operation::VmxonFixedSweep(_) | Operation::VmxonFlexibleToggled
            )
    }
}

/// A VMCS field encoding with reserved bit 15 set: no processor supports it (SDM vol. 3D B, "field encoding").
pub const UNSUPPORTED_FIELD: u64 = 0x8000;

const fn case(
    name: &'static str,
    phase: Phase,
    setup: Setup,
    operation: Operation,
    expect: Expect,
) -> Case {
    Case {
        name,
        phase,
        setup,
        operation,
        expect,
    }
}

pub const CASE_COUNT: usize = 25;

/// The cases, in the order they run.
pub static CASES: [Case; CASE_COUNT] = {
    use Address::*;
    use Operation::*;
    use Phase::*;
    use Setup::*;
    [
        case(
            "vmxon before feature control is locked",
            BeforeLock,
            Nothing,
            Vmxon(VmxonRegion),
            Expect::Fault(Exception::GP),
        ),
        case(
            "vmxon with feature control enabled but unlocked",
            BeforeLock,
            FeatureControlEnabledUnlocked,
            Vmxon(VmxonRegion),
            Expect::Fault(Exception::GP),
        ),
        case(
            "vmxon with CR4.VMXE clear",
            OutsideVmx,
            ClearCr4Vmxe,
            Vmxon(VmxonRegion),
            Expect::Fault(Exception::UD),
        ),
        case(
            "vmxon with a CR0 fixed-1 bit clear",
            OutsideVmx,
            Nothing,
            VmxonFixedSweep(Sweep {
                register: ControlRegister::Cr0,
                rule: FixedRule::ClearFixed1,
            }),
            Expect::Fault(Exception::GP),
        ),
        case(
            "vmxon with a CR4 fixed-1 bit clear",
            OutsideVmx,
            Nothing,
            VmxonFixedSweep(Sweep {
                register: ControlRegister::Cr4,
                rule: FixedRule::ClearFixed1,
            }),
            // #UD for CR4.VMXE (VMXON checks it first), #GP for any other bit.
            Expect::Fault(Exception::GP),
        ),
        case(
            "vmxon with a CR0 fixed-0 bit set",
            OutsideVmx,
            Nothing,
            VmxonFixedSweep(Sweep {
                register: ControlRegister::Cr0,
                rule: FixedRule::SetFixed0,
            }),
            Expect::Fault(Exception::GP),
        ),
        case(
            "vmxon with a CR4 fixed-0 bit set",
            OutsideVmx,
            Nothing,
            VmxonFixedSweep(Sweep {
                register: ControlRegister::Cr4,
                rule: FixedRule::SetFixed0,
            }),
            Expect::Fault(Exception::GP),
        ),
        case(
            "vmxon with the flexible CR0 and CR4 bits toggled",
            OutsideVmx,
            Nothing,
            VmxonFlexibleToggled,
            Expect::Succeeds,
        ),
        case(
            "vmxon with an unaligned pointer",
            OutsideVmx,
            Nothing,
            Vmxon(VmxonRegionUnaligned),
            Expect::VmFailInvalid,
        ),
        case(
            "vmxon with a pointer beyond MAXPHYADDR",
            OutsideVmx,
            Nothing,
            Vmxon(VmxonRegionBeyondWidth),
            Expect::VmFailInvalid,
        ),
        case(
            "vmxon with a wrong revision identifier",
            OutsideVmx,
            WrongRevision,
            Vmxon(VmxonRegion),
            Expect::VmFailInvalid,
        ),
        case(
            "vmxon with revision bit 31 set",
            OutsideVmx,
            RevisionBit31,
            Vmxon(VmxonRegion),
            Expect::VmFailInvalid,
        ),
        case(
            "vmxoff outside VMX operation",
            OutsideVmx,
            Nothing,
            Vmxoff,
            Expect::Fault(Exception::UD),
        ),
        case(
            "vmclear outside VMX operation",
            OutsideVmx,
            Nothing,
            Vmclear(VmcsRegion),
            Expect::Fault(Exception::UD),
        ),
        case(
            "wrmsr to feature control after it is locked",
            OutsideVmx,
            Nothing,
            WriteLockedFeatureControl,
            Expect::Fault(Exception::GP),
        ),
        case(
            "vmxon in VMX root operation",
            InRoot,
            Nothing,
            Vmxon(VmxonRegion),
            Expect::VmFailValid(InstructionError::VMXON_IN_VMX_ROOT),
        ),
        case(
            "vmclear of the VMXON pointer",
            InRoot,
            Nothing,
            Vmclear(VmxonRegion),
            Expect::VmFailValid(InstructionError::VMCLEAR_VMXON_POINTER),
        ),
        case(
            "vmptrld of the VMXON pointer",
            InRoot,
            Nothing,
            Vmptrld(VmxonRegion),
            Expect::VmFailValid(InstructionError::VMPTRLD_VMXON_POINTER),
        ),
        case(
            "vmclear with an unaligned address",
            InRoot,
            Nothing,
            Vmclear(VmcsRegionUnaligned),
            Expect::VmFailValid(InstructionError::VMCLEAR_INVALID_ADDRESS),
        ),
        case(
            "vmclear beyond MAXPHYADDR",
            InRoot,
            Nothing,
            Vmclear(VmcsRegionBeyondWidth),
            Expect::VmFailValid(InstructionError::VMCLEAR_INVALID_ADDRESS),
        ),
        case(
            "vmptrld with an unaligned address",
            InRoot,
            Nothing,
            Vmptrld(VmcsRegionUnaligned),
            Expect::VmFailValid(InstructionError::VMPTRLD_INVALID_ADDRESS),
        ),
        case(
            "vmptrld beyond MAXPHYADDR",
            InRoot,
            Nothing,
            Vmptrld(VmcsRegionBeyondWidth),
            Expect::VmFailValid(InstructionError::VMPTRLD_INVALID_ADDRESS),
        ),
        case(
            "vmptrld with a wrong revision identifier",
            InRoot,
            Nothing,
            Vmptrld(ScratchWrongRevision),
            Expect::VmFailValid(InstructionError::VMPTRLD_WRONG_REVISION),
        ),
        case(
            "vmread of an unsupported field",
            InRoot,
            Nothing,
            Vmread(UNSUPPORTED_FIELD),
            Expect::VmFailValid(InstructionError::UNSUPPORTED_VMCS_COMPONENT),
        ),
        case(
            "capability MSRs are consistent",
            InRoot,
            Nothing,
            CheckCapabilities,
            Expect::Consistent,
        ),
    ]
};

/// Why a case did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Not reached (an earlier problem stopped the run; see the other results).
    NotRun,
    VmxUnsupported,
    DisabledByFirmware {
        value: u64,
    },
    /// Feature control was already locked when the self-test started.
    FeatureControlAlreadyLocked {
        value: u64,
    },
    /// The case expects an exception and the kernel's fix-up is not available.
    NoFaultFixup,
    /// The sweep's MSR names no bit this self-test may change (e.g. FIXED0 requires only PE and PG).
    NothingToSweep(Sweep),
    /// No CR0 or CR4 bit is flexible, safe to toggle and taken by the processor.
    NoFlexibleBits,
    /// No third page was passed for the VMCS with a wrong revision identifier.
    NoScratchPage,
    /// The regions passed differ from those the core entered root operation with.
    RegionsDifferFromState,
    /// An earlier case left the processor in a state the runner could not restore.
    StateBroken,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotRun => f.write_str("not reached"),
            Self::VmxUnsupported => f.write_str("VMX is not supported by this processor"),
            Self::DisabledByFirmware { value } => {
                write!(
                    f,
                    "VMX is disabled by firmware (IA32_FEATURE_CONTROL=0x{value:x})"
                )
            }
            Self::FeatureControlAlreadyLocked { value } => {
                write!(f, "IA32_FEATURE_CONTROL was already locked (0x{value:x})")
            }
            Self::NoFaultFixup => {
                f.write_str("needs the kernel's fault fix-up, which is not available")
            }
            Self::NothingToSweep(sweep) => {
                let register = sweep.register.name();
                match sweep.rule {
                    FixedRule::ClearFixed1 => write!(
                        f,
                        "IA32_VMX_{register}_FIXED0 requires no bit this self-test may clear"
                    ),
                    FixedRule::SetFixed0 => write!(
                        f,
                        "IA32_VMX_{register}_FIXED1 forbids no bit this self-test may set"
                    ),
                }
            }
            Self::NoFlexibleBits => f.write_str(
                "no CR0 or CR4 bit is flexible, safe to toggle and taken by the processor",
            ),
            Self::NoScratchPage => f.write_str("no third page for a VMCS to load"),
            Self::RegionsDifferFromState => f.write_str(
                "the regions passed are not the ones this core entered root operation with",
            ),
            Self::StateBroken => {
                f.write_str("an earlier case left the processor in an unknown state")
            }
        }
    }
}

/// Why a case failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The instruction did something other than expected.
    Unexpected {
        expected: Expect,
        observed: InstrOutcome,
    },
    /// The phase's preparation failed, so the case could not run.
    Setup(VmxError),
    /// The instruction behaved as expected (or not) but the state could not be restored afterwards.
    NotRestored(VmxError),
    /// The capability MSRs contradict each other.
    Inconsistent(capability::Inconsistency),
    /// One bit of a sweep: VMXON did something other than expected with that bit changed.
    Bit {
        change: BitChange,
        expected: Exception,
        observed: InstrOutcome,
    },
    /// VMXON with the flexible bits toggled (CR0 ^ `cr0`, CR4 ^ `cr4`) did not succeed.
    Flexible {
        cr0: u64,
        cr4: u64,
        observed: InstrOutcome,
    },
    /// WRMSR to the locked IA32_FEATURE_CONTROL completed without a fault.
    WriteTaken { value: u64 },
    /// IA32_FEATURE_CONTROL changed although the write should have been refused.
    MsrChanged { before: u64, after: u64 },
    /// IA32_FEATURE_CONTROL was not locked when the case ran (the phase locks it first).
    FeatureControlUnlocked { value: u64 },
    /// A failed VMPTRLD changed the current-VMCS pointer (SDM vol. 3C 31.3: it only changes on success).
    CurrentVmcsChanged { expected: u64, found: u64 },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unexpected { expected, observed } => {
                write!(f, "expected {expected}, got {observed}")
            }
            Self::Setup(error) => write!(f, "could not prepare the case: {error}"),
            Self::NotRestored(error) => {
                write!(f, "could not restore the state afterwards: {error}")
            }
            Self::Inconsistent(inconsistency) => write!(f, "{inconsistency}"),
            Self::Bit {
                change,
                expected,
                observed,
            } => write!(f, "with {change}: expected {expected}, got {observed}"),
            Self::Flexible { cr0, cr4, observed } => write!(
                f,
                "with CR0 bits 0x{cr0:x} and CR4 bits 0x{cr4:x} toggled: expected VMsucceed, got {observed}"
            ),
            Self::WriteTaken { value } => write!(
                f,
                "expected #GP, but WRMSR of 0x{value:x} to the locked IA32_FEATURE_CONTROL completed"
            ),
            Self::MsrChanged { before, after } => write!(
                f,
                "IA32_FEATURE_CONTROL changed from 0x{before:x} to 0x{after:x} after the lock"
            ),
            Self::FeatureControlUnlocked { value } => {
                write!(f, "IA32_FEATURE_CONTROL=0x{value:x} is not locked")
            }
            Self::CurrentVmcsChanged { expected, found } => write!(
                f,
                "the failed VMPTRLD changed the current VMCS from 0x{expected:x} to 0x{found:x}"
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseOutcome {
    Pass,
    Fail(Failure),
    Skipped(SkipReason),
}

/// One case and what happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaseResult {
    pub case: &'static Case,
    pub outcome: CaseOutcome,
}

/// `case="<name>" result=pass|fail|skip [reason="<words>"]`.
impl fmt::Display for CaseResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "case=\"{}\" ", self.case.name)?;
        match &self.outcome {
            CaseOutcome::Pass => f.write_str("result=pass"),
            CaseOutcome::Fail(failure) => write!(f, "result=fail reason=\"{failure}\""),
            CaseOutcome::Skipped(reason) => write!(f, "result=skip reason=\"{reason}\""),
        }
    }
}

/// Counts of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

/// `passed=<n> failed=<n> skipped=<n>`.
impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "passed={} failed={} skipped={}",
            self.passed, self.failed, self.skipped
        )
    }
}

/// The results of [`run_selftest`], one per entry of [`CASES`], in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelftestReport {
    pub results: [CaseResult; CASE_COUNT],
    /// What the self-test did to IA32_FEATURE_CONTROL (None if it did not get that far).
    pub feature_control: Option<FeatureControlReport>,
    /// Set when the run could not put the core back in the state it started in (the core may then be in VMX
    /// root operation while the state says otherwise; a later `enter_vmx_root` reports the VMXON failure).
    pub restore_error: Option<VmxError>,
}

impl SelftestReport {
    fn new() -> Self {
        let mut results = [CaseResult {
            case: &CASES[0],
            outcome: CaseOutcome::Skipped(SkipReason::NotRun),
        }; CASE_COUNT];
        for (result, case) in results.iter_mut().zip(CASES.iter()) {
            result.case = case;
        }
        Self {
            results,
            feature_control: None,
            restore_error: None,
        }
    }

    pub fn summary(&self) -> Summary {
        let mut summary = Summary {
            passed: 0,
            failed: 0,
            skipped: 0,
        };
        for result in &self.results {
            match result.outcome {
                CaseOutcome::Pass => summary.passed += 1,
                CaseOutcome::Fail(_) => summary.failed += 1,
                CaseOutcome::Skipped(_) => summary.skipped += 1,
            }
        }
        summary
    }

    fn set_phase(&mut self, phase: Phase, outcome: CaseOutcome) {
        for result in self
            .results
            .iter_mut()
            .filter(|result| result.case.phase == phase)
        {
            result.outcome = outcome;
        }
    }

    /// The run stops because the state could not be restored: the cases not reached say so.
    fn stopped(mut self, error: VmxError) -> Self {
        for result in &mut self.results {
            if result.outcome == CaseOutcome::Skipped(SkipReason::NotRun) {
                result.outcome = CaseOutcome::Skipped(SkipReason::StateBroken);
            }
        }
        self.restore_error = Some(error);
        self
    }

    fn set_all(&mut self, outcome: CaseOutcome) {
        for result in &mut self.results {
            result.outcome = outcome;
        }
    }
}

/// What the cases need to know.
struct Context<'a> {
    basic: VmxBasic,
    /// Physical-address width regions must fit in.
    width: u8,
    /// IA32_VMX_CR0_FIXED0/1 and IA32_VMX_CR4_FIXED0/1.
    cr0_fixed: (u64, u64),
    cr4_fixed: (u64, u64),
    /// The third page (a VMCS that is never current), if one was passed.
    scratch: Option<&'a Region>,
}

impl Context<'_> {
    const fn fixed(&self, register: ControlRegister) -> (u64, u64) {
        match register {
            ControlRegister::Cr0 => self.cr0_fixed,
            ControlRegister::Cr4 => self.cr4_fixed,
        }
    }
}

/// Runs [`CASES`] on the calling core (see the module documentation) and returns each result.
///
/// `regions` must be this core's regions: the same that [`enter_vmx_root`] is (or was) given. `scratch` is a
/// third page reserved for this core's VMX use (a VMCS with a wrong revision identifier, never made current by a
/// conforming processor); without it that case is skipped. Run it before any guest exists: it leaves and
/// re-enters VMX root operation.
pub fn run_selftest(
    cpu: &mut impl VmxCpu,
    state: &mut VmxState,
    regions: &RegionPair,
    scratch: Option<&Region>,
) -> SelftestReport {
    let mut report = SelftestReport::new();
    let caps = Caps::read(cpu);
    if !caps.vmx {
        report.set_all(CaseOutcome::Skipped(SkipReason::VmxUnsupported));
        return report;
    }
    let initial = *state;
    if initial
        .vmxon_phys()
        .is_some_and(|phys| phys != regions.vmxon.phys())
        || initial
            .vmcs_phys()
            .is_some_and(|phys| phys != regions.vmcs.phys())
    {
        report.set_all(CaseOutcome::Skipped(SkipReason::RegionsDifferFromState));
        return report;
    }
    let feature_control = cpu.read_msr(IA32_FEATURE_CONTROL);
    if let Decision::DisabledByFirmware(value) = decide(feature_control, caps.smx) {
        report.set_all(CaseOutcome::Skipped(SkipReason::DisabledByFirmware {
            value,
        }));
        return report;
    }
    let basic = VmxBasic::decode(cpu.read_msr(IA32_VMX_BASIC));
    if let Err(error) = basic
        .check()
        .and_then(|()| regions.validate(&basic, caps.maxphyaddr))
    {
        report.set_all(CaseOutcome::Fail(Failure::Setup(error)));
        return report;
    }
    let context = Context {
        basic,
        width: basic.address_width(caps.maxphyaddr),
        cr0_fixed: (
            cpu.read_msr(IA32_VMX_CR0_FIXED0),
            cpu.read_msr(IA32_VMX_CR0_FIXED1),
        ),
        cr4_fixed: (
            cpu.read_msr(IA32_VMX_CR4_FIXED0),
            cpu.read_msr(IA32_VMX_CR4_FIXED1),
        ),
        scratch,
    };
    let mut broken: Option<VmxError> = None;

    // Phase 1: before the lock (only possible if nobody locked it yet, so never when already in root). The
    // global lock keeps other cores from locking a shared MSR while the case runs.
    {
        let _guard = hold_lock();
        let feature_control = cpu.read_msr(IA32_FEATURE_CONTROL);
        if feature_control & LOCK == 0 && !initial.is_in_root() {
            match prepare_outside(cpu, regions, &basic) {
                Ok(()) => run_phase(
                    cpu,
                    regions,
                    &context,
                    Phase::BeforeLock,
                    &mut report,
                    &mut broken,
                ),
                Err(error) => {
                    report.set_phase(Phase::BeforeLock, CaseOutcome::Fail(Failure::Setup(error)))
                }
            }
        } else {
            let reason = SkipReason::FeatureControlAlreadyLocked {
                value: feature_control,
            };
            report.set_phase(Phase::BeforeLock, CaseOutcome::Skipped(reason));
        }
    }
    if let Some(error) = broken {
        return report.stopped(error);
    }

    // Phase 2: outside VMX operation, everything else in order.
    if let Err(error) = leave_vmx_root(cpu, state) {
        report.set_phase(Phase::OutsideVmx, CaseOutcome::Fail(Failure::Setup(error)));
        report.set_phase(Phase::InRoot, CaseOutcome::Fail(Failure::Setup(error)));
        return report;
    }
    let outside_ready = enable_feature_control(cpu).and_then(|fc| {
        report.feature_control = Some(fc);
        prepare_outside(cpu, regions, &basic)
    });
    match outside_ready {
        Ok(()) => run_phase(
            cpu,
            regions,
            &context,
            Phase::OutsideVmx,
            &mut report,
            &mut broken,
        ),
        Err(error) => report.set_phase(Phase::OutsideVmx, CaseOutcome::Fail(Failure::Setup(error))),
    }
    if let Some(error) = broken {
        return report.stopped(error);
    }

    // Phase 3: in root operation with the VMCS current.
    match enter_vmx_root(cpu, state, regions) {
        Ok(_) => run_phase(
            cpu,
            regions,
            &context,
            Phase::InRoot,
            &mut report,
            &mut broken,
        ),
        Err(error) => report.set_phase(Phase::InRoot, CaseOutcome::Fail(Failure::Setup(error))),
    }
    if let Some(error) = broken {
        return report.stopped(error);
    }

    // Back to where the core started.
    let restored = match initial {
        VmxState::NotEntered => leave_vmx_root(cpu, state),
        VmxState::InRoot(_) => enter_vmx_root(cpu, state, regions).map(|_| *state = initial),
    };
    report.restore_error = restored.err();
    report
}

/// Regions prepared (revision identifiers, zeroed) and CR0/CR4 ready for VMXON; only outside VMX operation.
fn prepare_outside(
    cpu: &mut impl VmxCpu,
    regions: &RegionPair,
    basic: &VmxBasic,
) -> Result<(), VmxError> {
    regions.vmxon.prepare(basic);
    regions.vmcs.prepare(basic);
    prepare_control_registers(cpu, false).map(|_| ())
}

fn run_phase(
    cpu: &mut impl VmxCpu,
    regions: &RegionPair,
    context: &Context,
    phase: Phase,
    report: &mut SelftestReport,
    broken: &mut Option<VmxError>,
) {
    for result in report
        .results
        .iter_mut()
        .filter(|result| result.case.phase == phase)
    {
        if broken.is_some() {
            result.outcome = CaseOutcome::Skipped(SkipReason::StateBroken);
            continue;
        }
        result.outcome = run_case(cpu, regions, context, result.case, broken);
    }
}

/// State changed by a case's setup, to put back.
enum Undo {
    Nothing,
    Revision(u32),
    Cr4(u64),
    FeatureControl(u64),
}

fn run_case(
    cpu: &mut impl VmxCpu,
    regions: &RegionPair,
    context: &Context,
    case: &Case,
    broken: &mut Option<VmxError>,
) -> CaseOutcome {
    if case.needs_fixup() && !cpu.can_catch_faults() {
        return CaseOutcome::Skipped(SkipReason::NoFaultFixup);
    }
    match case.operation {
        Operation::VmxonFixedSweep(sweep) => {
            return run_sweep(cpu, regions, context, sweep, broken)
        }
        Operation::VmxonFlexibleToggled => return run_flexible(cpu, regions, context, broken),
        Operation::WriteLockedFeatureControl => return write_locked_feature_control(cpu),
        _ => {}
    }

    // Setup. All of these are legal outside VMX operation only, which is where such cases run.
    let revision = context.basic.revision_id & 0x7FFF_FFFF;
    let undo = match case.setup {
        Setup::Nothing => Undo::Nothing,
        Setup::WrongRevision => {
            regions
                .vmxon
                .write_revision(revision.wrapping_add(1) & 0x7FFF_FFFF);
            Undo::Revision(revision)
        }
        Setup::RevisionBit31 => {
            regions.vmxon.write_revision(revision | 0x8000_0000);
            Undo::Revision(revision)
        }
        Setup::ClearCr4Vmxe => {
            let cr4 = cpu.read_cr4();
            // SAFETY: outside VMX operation clearing CR4.VMXE only disables the VMX instructions.
            unsafe { cpu.write_cr4(cr4 & !CR4_VMXE) };
            Undo::Cr4(cr4)
        }
        Setup::FeatureControlEnabledUnlocked => {
            let value = cpu.read_msr(IA32_FEATURE_CONTROL);
            // SAFETY: BeforeLock phase: the MSR is unlocked and the global feature-control lock is held, so no
            // core locks it meanwhile; setting bit 2 is allowed with VMX (SDM vol. 3C 24.7) and touches no
            // memory. Restored right after.
            unsafe { cpu.write_msr(IA32_FEATURE_CONTROL, (value | VMX_OUTSIDE_SMX) & !LOCK) };
            Undo::FeatureControl(value)
        }
    };

    let scratch_phys = if case.operation == Operation::Vmptrld(Address::ScratchWrongRevision) {
        match prepare_scratch(context, regions) {
            Ok(phys) => phys,
            Err(outcome) => return outcome,
        }
    } else {
        0
    };
    let address = |which: Address| -> u64 {
        let beyond = if context.width < 64 {
            1u64 << context.width
        } else {
            0
        };
        match which {
            Address::VmxonRegion => regions.vmxon.phys(),
            Address::VmxonRegionUnaligned => regions.vmxon.phys() + 0x800,
            Address::VmxonRegionBeyondWidth => regions.vmxon.phys() | beyond,
            Address::VmcsRegion => regions.vmcs.phys(),
            Address::VmcsRegionUnaligned => regions.vmcs.phys() + 0x800,
            Address::VmcsRegionBeyondWidth => regions.vmcs.phys() | beyond,
            Address::ScratchWrongRevision => scratch_phys,
        }
    };

    let observed = match case.operation {
        Operation::Vmxon(which) => {
            let phys = address(which);
            if cpu.can_catch_faults() {
                // SAFETY: CPL 0; the address is the VMXON region or an invalid address that VMXON rejects before
                // touching memory. Should VMXON accept it anyway, it is undone below before anything else runs.
                unsafe { cpu.vmxon_probe(phys) }
            } else {
                // SAFETY: as above; this case expects no fault (fault cases were skipped without the fix-up).
                InstrOutcome::from(unsafe { cpu.vmxon(phys) })
            }
        }
        Operation::Vmclear(which) => {
            let phys = address(which);
            if case.phase == Phase::InRoot {
                // SAFETY: in VMX root (InRoot phase); the address is the VMXON pointer or invalid (unaligned or
                // beyond the physical-address width), which VMCLEAR rejects without writing memory.
                InstrOutcome::from(unsafe { cpu.vmclear(phys) })
            } else {
                // SAFETY: outside VMX operation VMCLEAR raises #UD before touching memory, and this case runs
                // only with the fix-up (it expects a fault); the address is this core's VMCS region anyway.
                unsafe { cpu.vmclear_probe(phys) }
            }
        }
        Operation::Vmxoff => {
            // SAFETY: outside VMX operation VMXOFF raises #UD, which the fix-up returns (fault cases run only
            // with it); were the core in VMX root operation, VMXOFF would only leave it, with no VMCS active
            // whose data matters.
            unsafe { cpu.vmxoff_probe() }
        }
        Operation::Vmptrld(which) => {
            // SAFETY: in VMX root; the address is the VMXON pointer, invalid, or the scratch page (reserved for
            // this core's VMX use, so it may become a VMCS should the processor load it anyway).
            InstrOutcome::from(unsafe { cpu.vmptrld(address(which)) })
        }
        Operation::CheckCapabilities => {
            // No instruction and no setup (so nothing to restore): the MSRs are only read.
            return match capability::check_capabilities(|msr| cpu.read_msr(msr)) {
                Ok(()) => CaseOutcome::Pass,
                Err(inconsistency) => CaseOutcome::Fail(Failure::Inconsistent(inconsistency)),
            };
        }
        Operation::Vmread(field) => {
            // SAFETY: in VMX root with a current VMCS; VMREAD into a register touches no software memory.
            InstrOutcome::from(unsafe { cpu.vmread(field) }.map(|_| ()))
        }
        Operation::VmxonFixedSweep(_)
        | Operation::VmxonFlexibleToggled
        | Operation::WriteLockedFeatureControl => unreachable!("run above"),
    };

    // A VMPTRLD that fails leaves the current-VMCS pointer as it was (SDM vol. 3C 31.3, VMPTRLD).
    let mut vmcs_moved = None;
    if matches!(case.operation, Operation::Vmptrld(_)) && observed != InstrOutcome::Succeeded {
        // SAFETY: in VMX root operation (InRoot phase).
        match unsafe { cpu.vmptrst() } {
            Ok(found) if found != regions.vmcs.phys() => vmcs_moved = Some(found),
            Ok(_) => {}
            Err(fail) => {
                let error = VmxError::from_vmfail(VmxInstruction::Vmptrst, fail);
                *broken = Some(error);
                return CaseOutcome::Fail(Failure::NotRestored(error));
            }
        }
    }

    // Restore, most recent change first: an unexpected VMXON success is undone before CR0/CR4 change back.
    let mut restore: Result<(), VmxError> = Ok(());
    if matches!(case.operation, Operation::Vmxon(_))
        && case.phase != Phase::InRoot
        && observed == InstrOutcome::Succeeded
    {
        restore = undo_vmxon(cpu, observed);
    }
    if restore.is_ok() {
        match undo {
            Undo::Nothing => {}
            Undo::Revision(value) => regions.vmxon.write_revision(value),
            // SAFETY: the value read before the case; outside VMX operation.
            Undo::Cr4(value) => unsafe { cpu.write_cr4(value) },
            // SAFETY: the value read before the case; the MSR is still unlocked (the case's VMXON faulted or
            // was undone) and the global lock is still held.
            Undo::FeatureControl(value) => unsafe { cpu.write_msr(IA32_FEATURE_CONTROL, value) },
        }
    }
    if restore.is_ok() && case.phase == Phase::InRoot {
        restore = ensure_current(cpu, regions.vmcs.phys());
    }
    if let Err(error) = restore {
        *broken = Some(error);
        return CaseOutcome::Fail(Failure::NotRestored(error));
    }

    if !case.expect.matches(observed) {
        return CaseOutcome::Fail(Failure::Unexpected {
            expected: case.expect,
            observed,
        });
    }
    match vmcs_moved {
        Some(found) => CaseOutcome::Fail(Failure::CurrentVmcsChanged {
            expected: regions.vmcs.phys(),
            found,
        }),
        None => CaseOutcome::Pass,
    }
}

/// Undoes a VMXON that succeeded outside VMX operation (expected or not) with VMXOFF.
fn undo_vmxon(cpu: &mut impl VmxCpu, observed: InstrOutcome) -> Result<(), VmxError> {
    if observed != InstrOutcome::Succeeded {
        return Ok(());
    }
    // SAFETY: VMXON just succeeded, so this core is in VMX root operation with no current VMCS.
    unsafe { cpu.vmxoff() }.map_err(|fail| VmxError::from_vmfail(VmxInstruction::Vmxoff, fail))
}

fn read_cr(cpu: &impl VmxCpu, register: ControlRegister) -> u64 {
    match register {
        ControlRegister::Cr0 => cpu.read_cr0(),
        ControlRegister::Cr4 => cpu.read_cr4(),
    }
}

/// Puts back a value read before the case.
///
/// # Safety
/// `value` was read from `register` on this core before the case changed it, and satisfies the VMX fixed bits
/// when the core is in VMX operation.
unsafe fn restore_cr(cpu: &mut impl VmxCpu, register: ControlRegister, value: u64) {
    match register {
        // SAFETY: the caller's guarantee: the value the kernel ran with.
        ControlRegister::Cr0 => unsafe { cpu.write_cr0(value) },
        // SAFETY: as above.
        ControlRegister::Cr4 => unsafe { cpu.write_cr4(value) },
    }
}

/// MOV to the register under the fix-up.
///
/// # Safety
/// Outside VMX operation, with the fix-up available, and `value` differing from the current value only in
/// [`sweepable`] bits (none of which the running kernel depends on for the length of a case).
unsafe fn probe_cr(
    cpu: &mut impl VmxCpu,
    register: ControlRegister,
    value: u64,
) -> Result<(), Exception> {
    match register {
        // SAFETY: the caller's guarantee.
        ControlRegister::Cr0 => unsafe { cpu.write_cr0_probe(value) },
        // SAFETY: the caller's guarantee.
        ControlRegister::Cr4 => unsafe { cpu.write_cr4_probe(value) },
    }
}

/// The bits of `mask`, lowest first.
fn bits_of(mask: u64) -> impl Iterator<Item = u8> {
    (0..64u8).filter(move |bit| mask & (1 << bit) != 0)
}

/// A fixed-bit sweep (OutsideVmx phase, fix-up available): for each bit, the register with that bit changed,
/// VMXON, the register put back. A bit the MOV refuses (#GP) never reaches VMXON and counts as kept out by the
/// processor. The first bit with another outcome than expected fails the case.
fn run_sweep(
    cpu: &mut impl VmxCpu,
    regions: &RegionPair,
    context: &Context,
    sweep: Sweep,
    broken: &mut Option<VmxError>,
) -> CaseOutcome {
    let (fixed0, fixed1) = context.fixed(sweep.register);
    let original = read_cr(cpu, sweep.register);
    let bits = sweep_bits(sweep, fixed0, fixed1, original);
    if bits == 0 {
        return CaseOutcome::Skipped(SkipReason::NothingToSweep(sweep));
    }
    for bit in bits_of(bits) {
        let mask = 1u64 << bit;
        // SAFETY: OutsideVmx phase with the fix-up (the case needs it); only a sweepable bit changes.
        if unsafe { probe_cr(cpu, sweep.register, original ^ mask) }.is_err() {
            continue;
        }
        let expected = if sweep.register == ControlRegister::Cr4 && mask == CR4_VMXE {
            Exception::UD
        } else {
            Exception::GP
        };
        // SAFETY: CPL 0; the VMXON region is prepared and reserved for VMX; should VMXON succeed, it is
        // undone right below, before the register is put back.
        let observed = unsafe { cpu.vmxon_probe(regions.vmxon.phys()) };
        let left = undo_vmxon(cpu, observed);
        // SAFETY: `original` is the value read before the sweep, which satisfies the fixed bits (the phase
        // prepared it), so it may be written even if VMXOFF failed and the core is still in VMX operation.
        unsafe { restore_cr(cpu, sweep.register, original) };
        if let Err(error) = left {
            *broken = Some(error);
            return CaseOutcome::Fail(Failure::NotRestored(error));
        }
        if !Expect::Fault(expected).matches(observed) {
            let change = BitChange {
                register: sweep.register,
                bit,
                set: sweep.rule == FixedRule::SetFixed0,
            };
            return CaseOutcome::Fail(Failure::Bit {
                change,
                expected,
                observed,
            });
        }
    }
    CaseOutcome::Pass
}

/// VMXON with the flexible bits toggled (OutsideVmx phase, fix-up available): each candidate bit is toggled
/// on top of the ones taken before it, and kept only if the MOV takes it; then VMXON must succeed.
fn run_flexible(
    cpu: &mut impl VmxCpu,
    regions: &RegionPair,
    context: &Context,
    broken: &mut Option<VmxError>,
) -> CaseOutcome {
    let registers = [ControlRegister::Cr0, ControlRegister::Cr4];
    let original = registers.map(|register| read_cr(cpu, register));
    let mut toggled = [0u64; 2];
    for (index, register) in registers.into_iter().enumerate() {
        let (fixed0, fixed1) = context.fixed(register);
        for bit in bits_of(flexible_bits(register, fixed0, fixed1)) {
            let value = original[index] ^ toggled[index] ^ (1 << bit);
            // SAFETY: OutsideVmx phase with the fix-up; only sweepable bits differ from the kernel's value.
            if unsafe { probe_cr(cpu, register, value) }.is_ok() {
                toggled[index] |= 1 << bit;
            }
        }
    }
    let observed = if toggled == [0, 0] {
        None
    } else {
        // SAFETY: CPL 0; the VMXON region is prepared and reserved for VMX; undone right below.
        Some(unsafe { cpu.vmxon_probe(regions.vmxon.phys()) })
    };
    let left = observed.map_or(Ok(()), |observed| undo_vmxon(cpu, observed));
    for (index, register) in registers.into_iter().enumerate() {
        // SAFETY: the values read before the case, which satisfy the fixed bits (the phase prepared them), so
        // they may be written even if VMXOFF failed and the core is still in VMX operation.
        unsafe { restore_cr(cpu, register, original[index]) };
    }
    if let Err(error) = left {
        *broken = Some(error);
        return CaseOutcome::Fail(Failure::NotRestored(error));
    }
    match observed {
        None => CaseOutcome::Skipped(SkipReason::NoFlexibleBits),
        Some(InstrOutcome::Succeeded) => CaseOutcome::Pass,
        Some(observed) => CaseOutcome::Fail(Failure::Flexible {
            cr0: toggled[0],
            cr4: toggled[1],
            observed,
        }),
    }
}

/// WRMSR of IA32_FEATURE_CONTROL's own value once it is locked: #GP, and the value unchanged (SDM vol. 3C 24.7).
fn write_locked_feature_control(cpu: &mut impl VmxCpu) -> CaseOutcome {
    let before = cpu.read_msr(IA32_FEATURE_CONTROL);
    if before & LOCK == 0 {
        return CaseOutcome::Fail(Failure::FeatureControlUnlocked { value: before });
    }
    // SAFETY: the MSR is locked, so the processor must refuse the write with #GP, which the fix-up returns (the
    // case runs only with it). Should it take the write anyway, the value is the one already there.
    let written = unsafe { cpu.write_msr_probe(IA32_FEATURE_CONTROL, before) };
    let after = cpu.read_msr(IA32_FEATURE_CONTROL);
    if after != before {
        return CaseOutcome::Fail(Failure::MsrChanged { before, after });
    }
    match written {
        Err(exception) if exception.vector == Exception::GP.vector => CaseOutcome::Pass,
        Err(exception) => CaseOutcome::Fail(Failure::Unexpected {
            expected: Expect::Fault(Exception::GP),
            observed: InstrOutcome::Fault(exception),
        }),
        Ok(()) => CaseOutcome::Fail(Failure::WriteTaken { value: before }),
    }
}

/// Prepares the scratch page as a VMCS with IA32_VMX_BASIC's revision identifier plus one; returns its
/// address, or the outcome when there is no usable page.
fn prepare_scratch(context: &Context, regions: &RegionPair) -> Result<u64, CaseOutcome> {
    let Some(scratch) = context.scratch else {
        return Err(CaseOutcome::Skipped(SkipReason::NoScratchPage));
    };
    let page = scratch.phys() & !0xFFF;
    let invalid = |error| {
        CaseOutcome::Fail(Failure::Setup(VmxError::RegionInvalid {
            region: RegionKind::Vmcs,
            error,
        }))
    };
    if page == regions.vmxon.phys() & !0xFFF || page == regions.vmcs.phys() & !0xFFF {
        return Err(invalid(RegionError::Overlapping {
            phys: scratch.phys(),
        }));
    }
    scratch
        .validate(&context.basic, context.width)
        .map_err(invalid)?;
    // The page is not current and never was (a conforming VMPTRLD refuses it), so software may write it.
    scratch.prepare(&context.basic);
    let revision = context.basic.revision_id & 0x7FFF_FFFF;
    scratch.write_revision(revision.wrapping_add(1) & 0x7FFF_FFFF);
    Ok(scratch.phys())
}

/// Makes the VMCS current again if a case disturbed it.
fn ensure_current(cpu: &mut impl VmxCpu, vmcs_phys: u64) -> Result<(), VmxError> {
    // SAFETY: in VMX root operation (InRoot phase).
    let current = unsafe { cpu.vmptrst() }
        .map_err(|fail| VmxError::from_vmfail(VmxInstruction::Vmptrst, fail))?;
    if current != vmcs_phys {
        // SAFETY: in VMX root operation; the VMCS region is reserved for VMX and carries the revision.
        unsafe { cpu.vmptrld(vmcs_phys) }
            .map_err(|fail| VmxError::from_vmfail(VmxInstruction::Vmptrld, fail))?;
    }
    Ok(())
}

pub mod capability;

#[cfg(test)]
mod tests;
