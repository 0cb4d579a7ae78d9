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

use super::basic::{RegionPair, VmxBasic};
use super::caps::Caps;
use super::feature_control::{
    decide, enable_feature_control, hold_lock, Decision, FeatureControlReport, LOCK,
    VMX_OUTSIDE_SMX,
};
use super::fixed_bits::{prepare_control_registers, CR0_MODE_BITS, CR4_VMXE};
use super::root::{enter_vmx_root, leave_vmx_root, VmxState};
use super::{
    Exception, InstrOutcome, InstructionError, VmFail, VmxCpu, VmxError, IA32_FEATURE_CONTROL,
    IA32_VMX_BASIC, IA32_VMX_CR0_FIXED0,
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
    /// One CR0 bit that IA32_VMX_CR0_FIXED0 requires (other than PE/PG, e.g. NE) cleared.
    ClearCr0FixedOne,
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    VmFailInvalid,
    VmFailValid(InstructionError),
    Fault(Exception),
    /// The capability MSRs are consistent.
    Consistent,
}

impl Expect {
    const fn matches(self, outcome: InstrOutcome) -> bool {
        match (self, outcome) {
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

pub const CASE_COUNT: usize = 19;

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
            ClearCr0FixedOne,
            Vmxon(VmxonRegion),
            Expect::Fault(Exception::GP),
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
    /// IA32_VMX_CR0_FIXED0 requires no CR0 bit besides PE and PG, so there is nothing to clear.
    NoClearableCr0Bit,
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
            Self::NoClearableCr0Bit => {
                f.write_str("IA32_VMX_CR0_FIXED0 requires no bit other than PE and PG")
            }
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
struct Context {
    basic: VmxBasic,
    /// Physical-address width regions must fit in.
    width: u8,
    cr0_fixed0: u64,
}

/// Runs [`CASES`] on the calling core (see the module documentation) and returns each result.
///
/// `regions` must be this core's regions: the same that [`enter_vmx_root`] is (or was) given. Run it before any
/// guest exists: it leaves and re-enters VMX root operation.
pub fn run_selftest(
    cpu: &mut impl VmxCpu,
    state: &mut VmxState,
    regions: &RegionPair,
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
        cr0_fixed0: cpu.read_msr(IA32_VMX_CR0_FIXED0),
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
    Cr0(u64),
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
    let expects_fault = matches!(case.expect, Expect::Fault(_));
    if expects_fault && !cpu.can_catch_faults() {
        return CaseOutcome::Skipped(SkipReason::NoFaultFixup);
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
        Setup::ClearCr0FixedOne => {
            let cr0 = cpu.read_cr0();
            let candidates = context.cr0_fixed0 & !CR0_MODE_BITS & cr0;
            if candidates == 0 {
                return CaseOutcome::Skipped(SkipReason::NoClearableCr0Bit);
            }
            let bit = candidates & candidates.wrapping_neg();
            // SAFETY: outside VMX operation; the bit is neither PE nor PG (in practice it is NE, which only
            // selects how x87 errors are reported, and no x87 code runs meanwhile). Restored right after.
            unsafe { cpu.write_cr0(cr0 & !bit) };
            Undo::Cr0(cr0)
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
            // SAFETY: in VMX root; the address is the VMXON pointer or invalid, which VMPTRLD rejects.
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
    };

    // Restore, most recent change first: an unexpected VMXON success is undone before CR0/CR4 change back.
    let mut restore: Result<(), VmxError> = Ok(());
    if matches!(case.operation, Operation::Vmxon(_))
        && case.phase != Phase::InRoot
        && observed == InstrOutcome::Succeeded
    {
        // SAFETY: VMXON just succeeded, so this core is in VMX root operation with no current VMCS.
        restore = unsafe { cpu.vmxoff() }
            .map_err(|fail| VmxError::from_vmfail(super::VmxInstruction::Vmxoff, fail));
    }
    if restore.is_ok() {
        match undo {
            Undo::Nothing => {}
            Undo::Revision(value) => regions.vmxon.write_revision(value),
            // SAFETY: the value read before the case; outside VMX operation.
            Undo::Cr0(value) => unsafe { cpu.write_cr0(value) },
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

    if case.expect.matches(observed) {
        CaseOutcome::Pass
    } else {
        CaseOutcome::Fail(Failure::Unexpected {
            expected: case.expect,
            observed,
        })
    }
}

/// Makes the VMCS current again if a case disturbed it.
fn ensure_current(cpu: &mut impl VmxCpu, vmcs_phys: u64) -> Result<(), VmxError> {
    use super::VmxInstruction;
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
