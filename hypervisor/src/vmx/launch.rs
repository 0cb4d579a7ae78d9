//! The test guest on this core, from capability MSRs to the final VM exit (docs/vmx.md, "The test guest"):
//! capabilities read and compared with the BSP's, controls chosen, the guest's block mapped, the VMCS's
//! control, host-state and guest-state areas written, checked as VM entry will check them, then VMLAUNCH and
//! VMRESUME until the guest's program ends, each exit handled by [`GuestRun`].
//!
//! The order is SDM vol. 3C 25.11.3 "Initializing a VMCS" (the VMCS is current after `enter_vmx_root`) and
//! 27.1-27.3 for what VM entry checks; [`check_vm_entry`] runs the same checks first, so a VMCS this code built
//! wrong is named by the rule it breaks before the processor sees it.

use core::fmt;

use super::guest::entry_cases::{broken_value, Breaks, CaseOutcome, EntryCase, Seen, ENTRY_CASES};
use super::guest::{
    ExitInfo, GuestFailure, GuestLayout, GuestProgram, GuestRegs, GuestRun, Page, Step,
    BLOCK_ALIGN, BLOCK_PAGES,
};
use super::vm_entry::{
    host_view, test_guest_entry, test_guest_program, DescriptorTables, HardwareVmcs,
};
use super::vmcs::{
    check_vm_entry, choose_controls, compare, write_controls, AccessError, CapabilityError,
    ControlPolicy, ControlRefs, CpuMsrs, EntryError, EntryInstruction, ExitReason, Features, Field,
    GuestSetup, GuestState, HostState, LaunchTracker, Mismatches, ReadError, VmcsAccess,
    VmxCapabilities,
};
use super::{VmFail, VmxCpu};
use crate::{arch, memory};

/// The BSP's capabilities, which every other core must match before it launches (Linux's
/// `vmx_check_processor_compat`, Xen's `vmx_init_vmcs_config` on APs).
static BSP_CAPS: spin::Once<Result<VmxCapabilities, ReadError>> = spin::Once::new();

/// On the BSP, before the APs start: reads and keeps its capability MSRs (only if CPUID reports VMX: the MSRs
/// do not exist otherwise).
pub fn publish_bsp_capabilities(cpu: &impl VmxCpu, maxphyaddr: u8) {
    if super::caps::Caps::read(cpu).vmx {
        BSP_CAPS.call_once(|| VmxCapabilities::read(&mut CpuMsrs(cpu), maxphyaddr));
    }
}

/// What the launch needs to know about the core.
#[derive(Debug, Clone, Copy)]
pub struct CoreInput {
    pub index: u32,
    pub apic_id: u32,
    pub is_bsp: bool,
    pub maxphyaddr: u8,
    /// The core's TSS (its PCB) and the top of its kernel stack.
    pub tss: u64,
    pub stack_top: u64,
    /// Timed CPUID round trips the guest makes (`guest_loops=`).
    pub loops: u64,
    pub program: GuestProgram,
    /// `fault=vmx_caps_mismatch`: flip bit 1 of this core's IA32_VMX_VMCS_ENUM as read (an AP that differs).
    pub perturb_caps: bool,
    /// `selftest=vmx`: run the VM-entry failure cases ([`ENTRY_CASES`]) before and during the good launch.
    pub selftest: bool,
}

/// Why a core did not run its guest to the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaunchFailure {
    Capabilities(ReadError),
    NoBspCapabilities,
    Mismatch(Mismatches),
    Controls(CapabilityError),
    NoMemory,
    Layout,
    Access(AccessError),
    /// The VMCS breaks a VM-entry rule (found by [`check_vm_entry`] before VMLAUNCH).
    Check(EntryError),
    Invept(VmFail),
    /// VMLAUNCH or VMRESUME failed (VMfailInvalid, or VMfailValid with the error number).
    Entry {
        instr: EntryInstruction,
        fail: VmFail,
    },
    Guest(GuestFailure),
}

impl fmt::Display for LaunchFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Capabilities(e) => write!(f, "capabilities: {e}"),
            Self::NoBspCapabilities => {
                f.write_str("the BSP reported no VMX capabilities to compare with")
            }
            Self::Mismatch(m) => write!(f, "{m} not launched"),
            Self::Controls(e) => write!(f, "{e}"),
            Self::NoMemory => f.write_str("no memory for the guest's pages"),
            Self::Layout => f.write_str("the guest's pages could not be written"),
            Self::Access(e) => write!(f, "{e}"),
            Self::Check(e) => write!(f, "VM entry would fail: {e}"),
            Self::Invept(fail) => write!(f, "INVEPT failed with {fail}"),
            Self::Entry { instr, fail } => write!(f, "{instr} failed with {fail}"),
            Self::Guest(g) => write!(f, "{g}"),
        }
    }
}

impl From<AccessError> for LaunchFailure {
    fn from(e: AccessError) -> Self {
        Self::Access(e)
    }
}

/// One core's guest: what ran and how it ended.
#[derive(Debug, Clone)]
pub struct GuestOutcome {
    pub run: GuestRun,
    pub features: Option<Features>,
    pub result: Result<(), LaunchFailure>,
    /// The self-test's entry-failure cases that ran, in order.
    pub cases: alloc::vec::Vec<CaseOutcome>,
    /// What the guest took from the frame allocator (its block; 0 before it got one).
    pub bytes: u64,
}

/// Launches the test guest on this core, which is in VMX root operation with its VMCS current.
pub fn run_test_guest(cpu: &impl VmxCpu, input: &CoreInput) -> GuestOutcome {
    let mut outcome = GuestOutcome {
        run: GuestRun::new(input.apic_id, input.loops),
        features: None,
        result: Ok(()),
        cases: alloc::vec::Vec::new(),
        bytes: 0,
    };
    outcome.result = launch(cpu, input, &mut outcome);
    outcome
}

fn launch(
    cpu: &impl VmxCpu,
    input: &CoreInput,
    outcome: &mut GuestOutcome,
) -> Result<(), LaunchFailure> {
    let mut caps = VmxCapabilities::read(&mut CpuMsrs(cpu), input.maxphyaddr)
        .map_err(LaunchFailure::Capabilities)?;
    if input.perturb_caps {
        caps.vmcs_enum ^= 1 << 1;
    }
    if !input.is_bsp {
        match BSP_CAPS.get() {
            Some(Ok(bsp)) => compare(bsp, &caps).map_err(LaunchFailure::Mismatch)?,
            _ => return Err(LaunchFailure::NoBspCapabilities),
        }
    }
    let controls =
        choose_controls(&caps, &ControlPolicy::TEST_GUEST).map_err(LaunchFailure::Controls)?;
    outcome.features = Some(controls.features);
    let ept = controls.features.ept;

    let mut block =
        memory::alloc_owned_block(BLOCK_PAGES, BLOCK_ALIGN).ok_or(LaunchFailure::NoMemory)?;
    outcome.bytes = BLOCK_PAGES * memory::PAGE_SIZE;
    let layout = GuestLayout::new(block.phys()).map_err(|_| LaunchFailure::Layout)?;
    let written = layout
        .table_entries(ept)
        .all(|(addr, value)| block.write_u64(addr, value))
        && block.write_bytes(layout.page(Page::Code), test_guest_program());
    if !written {
        return Err(LaunchFailure::Layout);
    }

    // SAFETY: the caller is in VMX root operation with this core's VMCS current (`enter_vmx_root`), which
    // nothing else changes while this runs; the host state written below is this core's own (`host_view`)
    // and the guest's memory is the block reserved above.
    let mut vmcs = unsafe { HardwareVmcs::current() };
    let refs = ControlRefs {
        ept_pml4: layout.ept_pml4(),
        msr_bitmap: 0,
        // VPID 0 is the host's (SDM vol. 3C 29.1); one per core.
        vpid: (input.index % 0xFFFF) as u16 + 1,
    };
    write_controls(&mut vmcs, &controls, &refs)?;
    let view = host_view(input.tss, input.stack_top);
    HostState::new(&view, &controls).write(&mut vmcs)?;
    let setup = GuestSetup {
        code: layout.page(Page::Code) + test_guest_entry(input.program),
        stack_page: layout.page(Page::Stack),
        cr3: layout.guest_cr3(),
        nxe: false,
        pat: view.pat,
    };
    GuestState::flat_64bit(&setup, &caps, &controls).write(&mut vmcs)?;
    check_vm_entry(&vmcs, &caps).map_err(LaunchFailure::Check)?;
    if ept {
        let eptp = vmcs.vmread(Field::EPT_POINTER)?;
        invalidate_ept(&mut vmcs, &caps, eptp)?;
    }

    let tables = DescriptorTables::save();
    let mut tracker = LaunchTracker::new();
    let mut regs = GuestRegs {
        rcx: outcome.run.loops,
        ..GuestRegs::default()
    };
    if input.selftest {
        for case in ENTRY_CASES.iter().filter(|c| !c.after_launch()) {
            let seen = entry_case(&mut vmcs, &caps, case, &mut tracker, &mut regs);
            outcome.cases.push(CaseOutcome { case, seen });
        }
    }
    let result = run_until_done(
        &mut vmcs,
        &mut outcome.run,
        &mut tracker,
        &mut regs,
        |vmcs, regs| {
            // After the first exit the VMCS is launched: the last self-test case.
            let case = ENTRY_CASES.iter().find(|c| c.after_launch());
            if let (true, Some(case)) = (input.selftest, case) {
                let entered = vmcs.enter(regs, EntryInstruction::Vmlaunch);
                let seen = seen_of(vmcs, entered);
                outcome.cases.push(CaseOutcome { case, seen });
            }
        },
    );
    tables.restore();
    result
}

/// One field or launch-state case before the good launch: break, enter, record, restore.
fn entry_case(
    vmcs: &mut HardwareVmcs,
    caps: &VmxCapabilities,
    case: &EntryCase,
    tracker: &mut LaunchTracker,
    regs: &mut GuestRegs,
) -> Seen {
    let seen = match case.breaks {
        Breaks::ResumeWhileClear => {
            let entered = vmcs.enter(regs, EntryInstruction::Vmresume);
            seen_of(vmcs, entered)
        }
        Breaks::Field { field, clear, .. } => {
            let Ok(good) = vmcs.vmread(field) else {
                return Seen::NotRun("VMREAD of the field failed");
            };
            let Some(bad) = broken_value(good, clear(caps)) else {
                return Seen::NotRun("the capability MSRs leave nothing to break");
            };
            if vmcs.vmwrite(field, bad).is_err() {
                return Seen::NotRun("VMWRITE of the broken value failed");
            }
            let entered = vmcs.enter(regs, EntryInstruction::Vmlaunch);
            let seen = seen_of(vmcs, entered);
            if vmcs.vmwrite(field, good).is_err() {
                return Seen::NotRun("VMWRITE restoring the field failed");
            }
            seen
        }
        Breaks::LaunchWhileLaunched => Seen::NotRun("runs after the first exit"),
    };
    // A case that entered the guest after all launched the VMCS: the good run then resumes it.
    if let Seen::Exit(reason) = seen {
        tracker.exited(EntryInstruction::Vmlaunch, ExitReason(reason));
    }
    seen
}

fn seen_of(vmcs: &HardwareVmcs, entered: Result<(), VmFail>) -> Seen {
    match entered {
        Ok(()) => Seen::Exit(
            vmcs.vmread(Field::EXIT_REASON)
                .map_or(u32::MAX, |r| r as u32),
        ),
        Err(VmFail::Valid(error)) => Seen::VmFailValid(error.0),
        Err(VmFail::Invalid | VmFail::FlagsUndefined) => Seen::VmFailInvalid,
    }
}

/// INVEPT after building the EPT (SDM vol. 3C 29.4.3.1: cached translations for an EPTP may exist before
/// its first use): single-context where supported, else all-context; neither type means INVEPT is not
/// offered, and a fresh EPTP has nothing cached.
fn invalidate_ept(
    vmcs: &mut HardwareVmcs,
    caps: &VmxCapabilities,
    eptp: u64,
) -> Result<(), LaunchFailure> {
    let Some(cap) = caps.ept_vpid else {
        return Ok(());
    };
    let kind = if !cap.invept() {
        return Ok(());
    } else if cap.invept_single_context() {
        1
    } else if cap.invept_all_context() {
        2
    } else {
        return Ok(());
    };
    vmcs.invept(kind, eptp).map_err(LaunchFailure::Invept)
}

/// VMLAUNCH, then VMRESUME after each handled exit, until the program ends; `after_first_exit` runs once,
/// when the VMCS has just become launched.
fn run_until_done(
    vmcs: &mut HardwareVmcs,
    run: &mut GuestRun,
    tracker: &mut LaunchTracker,
    regs: &mut GuestRegs,
    mut after_first_exit: impl FnMut(&mut HardwareVmcs, &mut GuestRegs),
) -> Result<(), LaunchFailure> {
    let mut first = true;
    loop {
        let instr = tracker.next();
        vmcs.enter(regs, instr)
            .map_err(|fail| LaunchFailure::Entry { instr, fail })?;
        let exit = read_exit(vmcs)?;
        tracker.exited(instr, ExitReason(exit.reason));
        if core::mem::take(&mut first) && !ExitReason(exit.reason).is_entry_failure() {
            after_first_exit(vmcs, regs);
        }
        match run
            .on_exit(&exit, regs, arch::cpuid::cpuid)
            .map_err(LaunchFailure::Guest)?
        {
            Step::Resume { rip } => vmcs.vmwrite(Field::GUEST_RIP, rip)?,
            Step::Finished => return Ok(()),
        }
    }
}

/// The exit-information fields the exit's handling needs: three VMREADs for the exits the program makes,
/// more for the ones that end it (the exit path is measured: docs/performance.md).
#[inline]
fn read_exit(vmcs: &HardwareVmcs) -> Result<ExitInfo, AccessError> {
    let read = |field: Field| vmcs.vmread(field);
    let reason = read(Field::EXIT_REASON)? as u32;
    let mut exit = ExitInfo {
        reason,
        instruction_length: read(Field::VM_EXIT_INSTRUCTION_LENGTH)? as u32,
        guest_rip: read(Field::GUEST_RIP)?,
        ..ExitInfo::default()
    };
    let basic = ExitReason(reason).basic();
    if !matches!(
        basic,
        ExitReason::CPUID | ExitReason::HLT | ExitReason::VMCALL
    ) {
        exit.qualification = read(Field::EXIT_QUALIFICATION)?;
        exit.interruption_info = read(Field::VM_EXIT_INTERRUPTION_INFO)? as u32;
        if matches!(
            basic,
            ExitReason::EPT_VIOLATION | ExitReason::EPT_MISCONFIGURATION
        ) {
            exit.guest_physical = read(Field::GUEST_PHYSICAL_ADDRESS)?;
        }
    }
    Ok(exit)
}
