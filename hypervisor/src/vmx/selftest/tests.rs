//! Host tests of the self-test against the fake CPU (kept apart so that selftest.rs stays readable).
use super::*;
use crate::vmx::fake::{FakeCpu, Instr, Quirk, TestRegions};
use crate::vmx::fixed_bits::CR0_NE;

fn outcome(report: &SelftestReport, name: &str) -> CaseOutcome {
    report
        .results
        .iter()
        .find(|result| result.case.name == name)
        .unwrap()
        .outcome
}

#[test]
fn the_case_list_is_consistent() {
    assert_eq!(CASES.len(), CASE_COUNT);
    for (index, case) in CASES.iter().enumerate() {
        assert!(
            CASES[..index].iter().all(|other| other.name != case.name),
            "duplicate {}",
            case.name
        );
        assert!(!case.name.contains('"'));
        // Phases are in running order.
        if index > 0 {
            assert!(
                CASES[index - 1].phase as u8 <= case.phase as u8,
                "{}",
                case.name
            );
        }
        // Setups that change the state outside VMX operation only run there.
        if case.setup != Setup::Nothing {
            assert_ne!(case.phase, Phase::InRoot, "{}", case.name);
        }
    }
}

#[test]
fn all_cases_pass_on_a_correct_processor_starting_unlocked() {
    let mut cpu = FakeCpu::bochs_haswell();
    cpu.set_feature_control(0);
    cpu.fault_fixup = true;
    let regions = TestRegions::new(&mut cpu);
    let mut state = VmxState::new();
    let (cr0, cr4) = (cpu.cr0, cpu.cr4);
    let report = run_selftest(&mut cpu, &mut state, &regions.pair);
    for result in &report.results {
        assert_eq!(result.outcome, CaseOutcome::Pass, "{result}");
    }
    assert_eq!(
        report.summary(),
        Summary {
            passed: CASE_COUNT,
            failed: 0,
            skipped: 0
        }
    );
    assert_eq!(
        format!("{}", report.summary()),
        "passed=19 failed=0 skipped=0"
    );
    assert_eq!(
        report.feature_control,
        Some(FeatureControlReport {
            before: 0,
            after: 5
        })
    );
    assert_eq!(report.restore_error, None);
    // Ends where it started: outside VMX, VMXE clear again (NE stays: the fixed bits put it there).
    assert_eq!(state, VmxState::NotEntered);
    assert!(!cpu.in_root());
    assert_eq!(cpu.cr4, cr4);
    assert_eq!(cpu.cr0, cr0 | CR0_NE);
    assert_eq!(regions.pair.vmxon.revision(), 0x2b);
    // The instruction log shows the #GP before the lock and the #UD with VMXE clear.
    assert!(cpu
        .executed
        .contains(&(Instr::Vmxon, InstrOutcome::Fault(Exception::GP))));
    assert!(cpu
        .executed
        .contains(&(Instr::Vmxon, InstrOutcome::Fault(Exception::UD))));
    // VMXOFF and VMCLEAR outside VMX operation raised #UD.
    assert!(cpu
        .executed
        .contains(&(Instr::Vmxoff, InstrOutcome::Fault(Exception::UD))));
    assert!(cpu
        .executed
        .contains(&(Instr::Vmclear, InstrOutcome::Fault(Exception::UD))));
    // And a normal entry works afterwards.
    assert!(enter_vmx_root(&mut cpu, &mut state, &regions.pair).is_ok());
}

#[test]
fn a_core_in_root_stays_in_root_with_its_report() {
    let mut cpu = FakeCpu::bochs_haswell();
    cpu.set_feature_control(0);
    cpu.fault_fixup = true;
    let regions = TestRegions::new(&mut cpu);
    let mut state = VmxState::new();
    let entered = enter_vmx_root(&mut cpu, &mut state, &regions.pair).unwrap();
    let report = run_selftest(&mut cpu, &mut state, &regions.pair);
    assert_eq!(
        report.summary(),
        Summary {
            passed: 17,
            failed: 0,
            skipped: 2
        }
    );
    assert_eq!(
        outcome(&report, "vmxon before feature control is locked"),
        CaseOutcome::Skipped(SkipReason::FeatureControlAlreadyLocked { value: 5 })
    );
    assert_eq!(
        state,
        VmxState::InRoot(entered),
        "the original report (feature_control 0x0->0x5) is kept"
    );
    assert!(cpu.in_root());
    assert_eq!(cpu.current_vmcs, Some(TestRegions::VMCS));
    assert_eq!(report.restore_error, None);
}

#[test]
fn bochs_bios_locked_msr_skips_only_the_lock_case() {
    let mut cpu = FakeCpu::bochs_haswell();
    cpu.fault_fixup = true;
    let regions = TestRegions::new(&mut cpu);
    let report = run_selftest(&mut cpu, &mut VmxState::new(), &regions.pair);
    assert_eq!(
        report.summary(),
        Summary {
            passed: 17,
            failed: 0,
            skipped: 2
        }
    );
    assert!(cpu.msr_writes.is_empty());
}

#[test]
fn without_the_fixup_fault_cases_are_skipped() {
    let mut cpu = FakeCpu::bochs_haswell();
    cpu.set_feature_control(0);
    let regions = TestRegions::new(&mut cpu);
    let report = run_selftest(&mut cpu, &mut VmxState::new(), &regions.pair);
    assert_eq!(
        report.summary(),
        Summary {
            passed: 13,
            failed: 0,
            skipped: 6
        }
    );
    assert_eq!(
        outcome(&report, "vmxon with CR4.VMXE clear"),
        CaseOutcome::Skipped(SkipReason::NoFaultFixup)
    );
    // The fake panics on an uncaught fault, so reaching here also proves no fault was raised unprotected.
    assert!(cpu
        .executed
        .iter()
        .all(|(_, outcome)| !matches!(outcome, InstrOutcome::Fault(_))));
}

#[test]
fn no_vmx_or_disabled_firmware_skips_everything_and_touches_nothing() {
    let mut cpu = FakeCpu::bochs_haswell();
    cpu.vmx = false;
    let regions = TestRegions::new(&mut cpu);
    let report = run_selftest(&mut cpu, &mut VmxState::new(), &regions.pair);
    assert_eq!(
        report.summary(),
        Summary {
            passed: 0,
            failed: 0,
            skipped: CASE_COUNT
        }
    );
    assert!(cpu.executed.is_empty());

    let mut cpu = FakeCpu::bochs_haswell();
    cpu.set_feature_control(1);
    let regions = TestRegions::new(&mut cpu);
    let report = run_selftest(&mut cpu, &mut VmxState::new(), &regions.pair);
    assert_eq!(report.summary().skipped, CASE_COUNT);
    assert_eq!(
        report.results[3].outcome,
        CaseOutcome::Skipped(SkipReason::DisabledByFirmware { value: 1 })
    );
    assert!(cpu.executed.is_empty() && cpu.msr_writes.is_empty());
}

#[test]
fn a_processor_that_ignores_alignment_fails_that_case_and_the_run_goes_on() {
    let mut cpu = FakeCpu::bochs_haswell();
    cpu.fault_fixup = true;
    cpu.quirk = Some(Quirk::VmxonIgnoresAlignment);
    let regions = TestRegions::new(&mut cpu);
    let mut state = VmxState::new();
    let report = run_selftest(&mut cpu, &mut state, &regions.pair);
    assert_eq!(
        outcome(&report, "vmxon with an unaligned pointer"),
        CaseOutcome::Fail(Failure::Unexpected {
            expected: Expect::VmFailInvalid,
            observed: InstrOutcome::Succeeded
        })
    );
    let line = format!(
        "{}",
        report
            .results
            .iter()
            .find(|r| r.case.name == "vmxon with an unaligned pointer")
            .unwrap()
    );
    assert_eq!(
        line,
        "case=\"vmxon with an unaligned pointer\" result=fail reason=\"expected VMfailInvalid, got VMsucceed\""
    );
    // The unexpected VMXON was undone, so every later case still ran and passed.
    assert_eq!(
        report.summary(),
        Summary {
            passed: 16,
            failed: 1,
            skipped: 2
        }
    );
    assert_eq!(state, VmxState::NotEntered);
    assert!(!cpu.in_root());
}

#[test]
fn an_unrestorable_state_stops_the_run_and_is_reported() {
    let mut cpu = FakeCpu::bochs_haswell();
    cpu.fault_fixup = true;
    cpu.quirk = Some(Quirk::VmxonIgnoresAlignment);
    cpu.inject(
        Instr::Vmxoff,
        VmFail::Valid(InstructionError::VMXOFF_UNDER_DUAL_MONITOR),
    );
    let regions = TestRegions::new(&mut cpu);
    let mut state = VmxState::new();
    let report = run_selftest(&mut cpu, &mut state, &regions.pair);
    let error = VmxError::VmFailValid {
        instr: crate::vmx::VmxInstruction::Vmxoff,
        error: InstructionError::VMXOFF_UNDER_DUAL_MONITOR,
    };
    assert_eq!(
        outcome(&report, "vmxon with an unaligned pointer"),
        CaseOutcome::Fail(Failure::NotRestored(error))
    );
    assert_eq!(
        outcome(&report, "vmxon in VMX root operation"),
        CaseOutcome::Skipped(SkipReason::StateBroken)
    );
    assert_eq!(report.restore_error, Some(error));
    // The core is stuck in VMX root operation with a VMXON pointer nobody chose; a later entry reports the
    // VMXON failure instead of crashing.
    assert!(cpu.in_root());
    assert_eq!(state, VmxState::NotEntered);
    assert_eq!(
        enter_vmx_root(&mut cpu, &mut state, &regions.pair),
        Err(VmxError::VmFailInvalid {
            instr: crate::vmx::VmxInstruction::Vmxon
        })
    );
}

#[test]
fn a_processor_that_loads_the_vmxon_pointer_is_caught_and_the_vmcs_restored() {
    let mut cpu = FakeCpu::bochs_haswell();
    cpu.fault_fixup = true;
    cpu.quirk = Some(Quirk::VmptrldAcceptsVmxonPointer);
    let regions = TestRegions::new(&mut cpu);
    let report = run_selftest(&mut cpu, &mut VmxState::new(), &regions.pair);
    assert!(matches!(
        outcome(&report, "vmptrld of the VMXON pointer"),
        CaseOutcome::Fail(Failure::Unexpected {
            observed: InstrOutcome::Succeeded,
            ..
        })
    ));
    // ensure_current re-loaded the VMCS, so the cases after it still see error numbers.
    assert_eq!(
        outcome(&report, "vmclear with an unaligned address"),
        CaseOutcome::Pass
    );
    assert_eq!(report.summary().failed, 1);
}

#[test]
fn wrong_error_numbers_are_reported_in_words() {
    let mut cpu = FakeCpu::bochs_haswell();
    cpu.fault_fixup = true;
    cpu.quirk = Some(Quirk::VmclearReportsWrongError);
    let regions = TestRegions::new(&mut cpu);
    let report = run_selftest(&mut cpu, &mut VmxState::new(), &regions.pair);
    let result = report
        .results
        .iter()
        .find(|r| r.case.name == "vmclear of the VMXON pointer")
        .unwrap();
    assert_eq!(
        format!("{result}"),
        "case=\"vmclear of the VMXON pointer\" result=fail reason=\"expected VMfailValid with \
         VM-instruction error 3 (VMCLEAR with VMXON pointer), got VMfailValid with VM-instruction error 2 \
         (VMCLEAR with invalid physical address)\""
    );
}

#[test]
fn regions_other_than_the_entered_ones_are_refused() {
    let mut cpu = FakeCpu::bochs_haswell();
    let regions = TestRegions::new(&mut cpu);
    let other = TestRegions::at(&mut cpu, 0x10_0000, 0x10_1000);
    let mut state = VmxState::new();
    enter_vmx_root(&mut cpu, &mut state, &regions.pair).unwrap();
    let executed = cpu.executed.len();
    let report = run_selftest(&mut cpu, &mut state, &other.pair);
    assert_eq!(
        report.results[0].outcome,
        CaseOutcome::Skipped(SkipReason::RegionsDifferFromState)
    );
    assert_eq!(cpu.executed.len(), executed);
}

#[test]
fn cr0_case_is_skipped_when_only_pe_and_pg_are_fixed() {
    let mut cpu = FakeCpu::bochs_haswell();
    cpu.fault_fixup = true;
    cpu.set_msr(IA32_VMX_CR0_FIXED0, 0x8000_0001);
    let regions = TestRegions::new(&mut cpu);
    let report = run_selftest(&mut cpu, &mut VmxState::new(), &regions.pair);
    assert_eq!(
        outcome(&report, "vmxon with a CR0 fixed-1 bit clear"),
        CaseOutcome::Skipped(SkipReason::NoClearableCr0Bit)
    );
}

#[test]
fn a_processor_that_ignores_the_feature_control_lock_is_caught_and_the_msr_restored() {
    let mut cpu = FakeCpu::bochs_haswell();
    cpu.set_feature_control(0);
    cpu.fault_fixup = true;
    cpu.quirk = Some(Quirk::VmxonIgnoresFeatureControlLock);
    let regions = TestRegions::new(&mut cpu);
    let report = run_selftest(&mut cpu, &mut VmxState::new(), &regions.pair);
    let result = report
        .results
        .iter()
        .find(|result| result.case.name == "vmxon with feature control enabled but unlocked")
        .unwrap();
    assert_eq!(
        format!("{result}"),
        "case=\"vmxon with feature control enabled but unlocked\" result=fail \
         reason=\"expected #GP (vector 13), got VMsucceed\""
    );
    // The unexpected VMXON was undone and the MSR put back unlocked, so the later phases ran normally.
    assert_eq!(
        report.summary(),
        Summary {
            passed: CASE_COUNT - 1,
            failed: 1,
            skipped: 0
        }
    );
    assert_eq!(
        report.feature_control,
        Some(FeatureControlReport {
            before: 0,
            after: 5
        })
    );
    assert_eq!(report.restore_error, None);
}

#[test]
fn inconsistent_capability_msrs_fail_their_case_by_name() {
    let mut cpu = FakeCpu::bochs_haswell();
    cpu.fault_fixup = true;
    cpu.set_msr(capability::IA32_VMX_PINBASED_CTLS, 0x0000_007f_0000_0006);
    let regions = TestRegions::new(&mut cpu);
    let report = run_selftest(&mut cpu, &mut VmxState::new(), &regions.pair);
    assert_eq!(
        outcome(&report, "capability MSRs are consistent"),
        CaseOutcome::Fail(Failure::Inconsistent(
            capability::Inconsistency::Default1NotSet {
                msr: "IA32_VMX_PINBASED_CTLS",
                missing: 0x10
            }
        ))
    );
    assert_eq!(report.summary().failed, 1);
}
