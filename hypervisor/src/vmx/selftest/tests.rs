//! Host tests of the self-test against the fake CPU (kept apart so that selftest.rs stays readable).
use super::*;
use crate::vmx::fake::{FakeCpu, Instr, Quirk, TestRegions};
use crate::vmx::fixed_bits::{CR0_NE, CR0_PE, CR0_PG};
use crate::vmx::IA32_VMX_CR0_FIXED1;

fn outcome(report: &SelftestReport, name: &str) -> CaseOutcome {
    report
        .results
        .iter()
        .find(|result| result.case.name == name)
        .unwrap()
        .outcome
}

/// Runs the self-test from outside VMX operation on `cpu` with regions of its own; the regions are returned
/// because the fake maps their pages for as long as the test uses it.
fn selftest_outside_vmx(cpu: &mut FakeCpu) -> (SelftestReport, TestRegions) {
    let regions = TestRegions::new(cpu);
    let report = run_selftest(
        cpu,
        &mut VmxState::new(),
        &regions.pair,
        Some(&regions.scratch),
    );
    (report, regions)
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
    let report = run_selftest(&mut cpu, &mut state, &regions.pair, Some(&regions.scratch));
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
        "passed=25 failed=0 skipped=0"
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
    // WRMSR to the locked MSR raised #GP and left it as it was.
    assert!(cpu
        .executed
        .contains(&(Instr::Wrmsr, InstrOutcome::Fault(Exception::GP))));
    assert_eq!(cpu.feature_control(), 5);
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
    let report = run_selftest(&mut cpu, &mut state, &regions.pair, Some(&regions.scratch));
    assert_eq!(
        report.summary(),
        Summary {
            passed: 23,
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
    let (report, _regions) = selftest_outside_vmx(&mut cpu);
    assert_eq!(
        report.summary(),
        Summary {
            passed: 23,
            failed: 0,
            skipped: 2
        }
    );
    // The only write is the self-test's WRMSR to the locked MSR, which raised #GP and changed nothing.
    assert_eq!(cpu.msr_writes, [(IA32_FEATURE_CONTROL, 5)]);
    assert_eq!(cpu.feature_control(), 5);
}

#[test]
fn without_the_fixup_fault_cases_are_skipped() {
    let mut cpu = FakeCpu::bochs_haswell();
    cpu.set_feature_control(0);
    let (report, _regions) = selftest_outside_vmx(&mut cpu);
    assert_eq!(
        report.summary(),
        Summary {
            passed: 14,
            failed: 0,
            skipped: 11
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
    let (report, _regions) = selftest_outside_vmx(&mut cpu);
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
    let (report, _regions) = selftest_outside_vmx(&mut cpu);
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
    let report = run_selftest(&mut cpu, &mut state, &regions.pair, Some(&regions.scratch));
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
            passed: 22,
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
    // The first VMXOFF is the one after the flexible case's VMXON (the first that succeeds).
    cpu.inject(
        Instr::Vmxoff,
        VmFail::Valid(InstructionError::VMXOFF_UNDER_DUAL_MONITOR),
    );
    let regions = TestRegions::new(&mut cpu);
    let mut state = VmxState::new();
    let report = run_selftest(&mut cpu, &mut state, &regions.pair, Some(&regions.scratch));
    let error = VmxError::VmFailValid {
        instr: crate::vmx::VmxInstruction::Vmxoff,
        error: InstructionError::VMXOFF_UNDER_DUAL_MONITOR,
    };
    assert_eq!(
        outcome(&report, "vmxon with the flexible CR0 and CR4 bits toggled"),
        CaseOutcome::Fail(Failure::NotRestored(error))
    );
    for name in [
        "vmxon with an unaligned pointer",
        "vmxon in VMX root operation",
    ] {
        assert_eq!(
            outcome(&report, name),
            CaseOutcome::Skipped(SkipReason::StateBroken),
            "{name}"
        );
    }
    assert_eq!(report.restore_error, Some(error));
    // The core is stuck in VMX root operation, but with the kernel's CR0 and CR4 (not the toggled bits); a
    // later entry reports the VMXON failure instead of crashing.
    assert!(cpu.in_root());
    assert_eq!((cpu.cr0, cpu.cr4), (0x8000_0031, 0x2020));
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
    let (report, _regions) = selftest_outside_vmx(&mut cpu);
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
    let (report, _regions) = selftest_outside_vmx(&mut cpu);
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
    let report = run_selftest(&mut cpu, &mut state, &other.pair, Some(&other.scratch));
    assert_eq!(
        report.results[0].outcome,
        CaseOutcome::Skipped(SkipReason::RegionsDifferFromState)
    );
    assert_eq!(cpu.executed.len(), executed);
}

#[test]
fn regions_that_differ_in_one_region_only_are_refused_too() {
    for (vmxon, vmcs) in [
        (TestRegions::VMXON, 0x10_1000),
        (0x10_0000, TestRegions::VMCS),
    ] {
        let mut cpu = FakeCpu::bochs_haswell();
        let regions = TestRegions::new(&mut cpu);
        let mut state = VmxState::new();
        enter_vmx_root(&mut cpu, &mut state, &regions.pair).unwrap();
        let other = TestRegions::at(&mut cpu, vmxon, vmcs);
        let executed = cpu.executed.len();
        let report = run_selftest(&mut cpu, &mut state, &other.pair, Some(&other.scratch));
        assert_eq!(
            report.results[0].outcome,
            CaseOutcome::Skipped(SkipReason::RegionsDifferFromState),
            "VMXON {vmxon:#x}, VMCS {vmcs:#x}"
        );
        assert_eq!(cpu.executed.len(), executed);
    }
}

/// The flexible case's VMXON runs with every flexible bit of CR0 and CR4 flipped from the kernel's value
/// (set bits cleared, clear bits set), and the kernel's values are back after it.
#[test]
fn the_flexible_case_flips_every_flexible_bit() {
    // As the kernel runs, and with the highest flexible bit of each register set (the last one flipped).
    for highest_set in [false, true] {
        let mut cpu = FakeCpu::bochs_haswell();
        cpu.fault_fixup = true;
        let regions = TestRegions::new(&mut cpu);
        let mut state = VmxState::new();
        enter_vmx_root(&mut cpu, &mut state, &regions.pair).unwrap();
        leave_vmx_root(&mut cpu, &mut state).unwrap();
        let fixed = crate::vmx::fixed_bits::VmxFixedBits::read(&cpu);
        let cr0_flexible = flexible_bits(ControlRegister::Cr0, fixed.cr0.fixed0, fixed.cr0.fixed1);
        let cr4_flexible = flexible_bits(ControlRegister::Cr4, fixed.cr4.fixed0, fixed.cr4.fixed1);
        if highest_set {
            cpu.cr0 |= 1 << (63 - cr0_flexible.leading_zeros());
            cpu.cr4 |= 1 << (63 - cr4_flexible.leading_zeros());
        }
        assert_ne!(cpu.cr0 & cr0_flexible, 0, "some flexible CR0 bit is set");
        assert_ne!(cr0_flexible & !cpu.cr0, 0, "and some is clear");
        let (cr0, cr4) = (cpu.cr0 | CR0_NE, cpu.cr4 | crate::vmx::fixed_bits::CR4_VMXE);
        cpu.vmxon_control_registers.clear();
        let report = run_selftest(&mut cpu, &mut state, &regions.pair, Some(&regions.scratch));
        assert_eq!(
            outcome(&report, "vmxon with the flexible CR0 and CR4 bits toggled"),
            CaseOutcome::Pass
        );
        assert!(
            cpu.vmxon_control_registers
                .contains(&(cr0 ^ cr0_flexible, cr4 ^ cr4_flexible)),
            "{:x?}, flexible {cr0_flexible:#x} {cr4_flexible:#x} of {cr0:#x} {cr4:#x}",
            cpu.vmxon_control_registers
        );
    }
}

/// The locked-write case needs a locked MSR, and only #GP is the answer it accepts.
#[test]
fn the_locked_write_case_refuses_an_unlocked_msr_and_a_wrong_exception() {
    use crate::vmx::feature_control::VMX_OUTSIDE_SMX;
    let mut cpu = FakeCpu::bochs_haswell();
    cpu.fault_fixup = true;
    cpu.set_feature_control(VMX_OUTSIDE_SMX);
    assert_eq!(
        write_locked_feature_control(&mut cpu),
        CaseOutcome::Fail(Failure::FeatureControlUnlocked {
            value: VMX_OUTSIDE_SMX
        })
    );
    let mut cpu = FakeCpu::bochs_haswell();
    cpu.fault_fixup = true;
    cpu.inject_fault(Instr::Wrmsr, Exception::UD);
    assert!(matches!(
        write_locked_feature_control(&mut cpu),
        CaseOutcome::Fail(Failure::Unexpected { .. })
    ));
}

/// A scratch page that is one of the core's regions is refused before anything runs on it.
#[test]
fn a_scratch_page_that_is_a_region_is_refused() {
    for which in ["VMXON", "VMCS"] {
        let mut cpu = FakeCpu::bochs_haswell();
        cpu.fault_fixup = true;
        let regions = TestRegions::new(&mut cpu);
        let scratch = if which == "VMXON" {
            &regions.pair.vmxon
        } else {
            &regions.pair.vmcs
        };
        let mut state = VmxState::new();
        let report = run_selftest(&mut cpu, &mut state, &regions.pair, Some(scratch));
        let result = report
            .results
            .iter()
            .find(|r| r.case.operation == Operation::Vmptrld(Address::ScratchWrongRevision))
            .unwrap();
        assert!(
            matches!(
                result.outcome,
                CaseOutcome::Fail(Failure::Setup(VmxError::RegionInvalid {
                    error: RegionError::Overlapping { .. },
                    ..
                }))
            ),
            "{which}: {result}"
        );
    }
}

/// The unlocked case writes bit 2 set and the lock clear, also when firmware left bit 2 set but unlocked.
#[test]
fn the_unlocked_case_writes_bit_2_set_and_the_lock_clear() {
    use crate::vmx::feature_control::{LOCK, VMX_OUTSIDE_SMX};
    use crate::vmx::IA32_FEATURE_CONTROL;
    for before in [0, VMX_OUTSIDE_SMX] {
        let mut cpu = FakeCpu::bochs_haswell();
        cpu.set_feature_control(before);
        cpu.fault_fixup = true;
        let (report, _regions) = selftest_outside_vmx(&mut cpu);
        assert_eq!(
            outcome(&report, "vmxon with feature control enabled but unlocked"),
            CaseOutcome::Pass
        );
        let writes: Vec<u64> = cpu
            .msr_writes
            .iter()
            .filter(|(msr, _)| *msr == IA32_FEATURE_CONTROL)
            .map(|(_, value)| *value)
            .collect();
        assert_eq!(
            writes,
            [VMX_OUTSIDE_SMX, before, VMX_OUTSIDE_SMX | LOCK, VMX_OUTSIDE_SMX | LOCK],
            "the case's write, its undo, the lock, the probe of the locked MSR (firmware value {before:#x})"
        );
    }
}

/// The two revision cases put exactly the identifier they name in the VMXON region (the revision plus one,
/// and the revision with bit 31), and the good revision is back for the VMXON after them.
#[test]
fn the_revision_cases_write_the_identifiers_they_name() {
    let mut cpu = FakeCpu::bochs_haswell();
    cpu.fault_fixup = true;
    let regions = TestRegions::new(&mut cpu);
    let mut state = VmxState::new();
    let revision = cpu.read_msr(crate::vmx::IA32_VMX_BASIC) as u32 & 0x7FFF_FFFF;
    run_selftest(&mut cpu, &mut state, &regions.pair, Some(&regions.scratch));
    let seen = &cpu.vmxon_revisions;
    let wrong: Vec<u32> = seen.iter().copied().filter(|&r| r != revision).collect();
    assert_eq!(wrong, [revision + 1, revision | 0x8000_0000]);
    assert_eq!(seen.last(), Some(&revision));
}

/// Which outcomes satisfy which expectation: the kind, and the error number or vector too.
#[test]
fn expectations_match_only_their_own_outcome() {
    use InstrOutcome as O;
    let outcomes = [
        O::Succeeded,
        O::VmFail(VmFail::Invalid),
        O::VmFail(VmFail::Valid(InstructionError(3))),
        O::VmFail(VmFail::Valid(InstructionError(4))),
        O::Fault(Exception::GP),
        O::Fault(Exception::UD),
    ];
    let expectations = [
        (Expect::Succeeds, 0),
        (Expect::VmFailInvalid, 1),
        (Expect::VmFailValid(InstructionError(3)), 2),
        (Expect::VmFailValid(InstructionError(4)), 3),
        (Expect::Fault(Exception::GP), 4),
        (Expect::Fault(Exception::UD), 5),
    ];
    for (expect, only) in expectations {
        for (i, outcome) in outcomes.iter().enumerate() {
            assert_eq!(
                expect.matches(*outcome),
                i == only,
                "{expect} vs {outcome:?}"
            );
        }
    }
    assert!(!Expect::Consistent.matches(O::Succeeded));
}

#[test]
fn cr0_case_is_skipped_when_only_pe_and_pg_are_fixed() {
    let mut cpu = FakeCpu::bochs_haswell();
    cpu.fault_fixup = true;
    cpu.set_msr(IA32_VMX_CR0_FIXED0, 0x8000_0001);
    let (report, _regions) = selftest_outside_vmx(&mut cpu);
    assert_eq!(
        outcome(&report, "vmxon with a CR0 fixed-1 bit clear"),
        CaseOutcome::Skipped(SkipReason::NothingToSweep(Sweep {
            register: ControlRegister::Cr0,
            rule: FixedRule::ClearFixed1
        }))
    );
    assert_eq!(
        format!(
            "{}",
            SkipReason::NothingToSweep(Sweep {
                register: ControlRegister::Cr0,
                rule: FixedRule::ClearFixed1
            })
        ),
        "IA32_VMX_CR0_FIXED0 requires no bit this self-test may clear"
    );
}

#[test]
fn a_processor_that_ignores_the_feature_control_lock_is_caught_and_the_msr_restored() {
    let mut cpu = FakeCpu::bochs_haswell();
    cpu.set_feature_control(0);
    cpu.fault_fixup = true;
    cpu.quirk = Some(Quirk::VmxonIgnoresFeatureControlLock);
    let (report, _regions) = selftest_outside_vmx(&mut cpu);
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
    let (report, _regions) = selftest_outside_vmx(&mut cpu);
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

/// The bits each sweep and the flexible case change, from Bochs haswell's fixed-bit MSRs and the values the
/// OutsideVmx phase runs with (CR0 = PG|NE|ET|PE, CR4 = VMXE|PAE).
#[test]
fn sweep_bits_on_bochs_haswell() {
    let (cr0, cr4) = (0x8000_0031, 0x2020);
    let (cr0_fixed, cr4_fixed) = ((0x8000_0021, 0xffff_ffff), (0x2000, 0x1727ff));
    let sweep = |register, rule| Sweep { register, rule };
    use ControlRegister::{Cr0, Cr4};
    use FixedRule::{ClearFixed1, SetFixed0};
    // Fixed-1 bits cleared: CR0.NE (never PE or PG), CR4.VMXE.
    assert_eq!(
        sweep_bits(sweep(Cr0, ClearFixed1), cr0_fixed.0, cr0_fixed.1, cr0),
        1 << 5
    );
    assert_eq!(
        sweep_bits(sweep(Cr4, ClearFixed1), cr4_fixed.0, cr4_fixed.1, cr4),
        1 << 13
    );
    // Fixed-0 bits set: CR0 bits 63:32; CR4 UMIP, SMXE and bit 15 (never LA57, SMAP, CET, PKS, FRED...).
    assert_eq!(
        sweep_bits(sweep(Cr0, SetFixed0), cr0_fixed.0, cr0_fixed.1, cr0),
        0xffff_ffff_0000_0000
    );
    assert_eq!(
        sweep_bits(sweep(Cr4, SetFixed0), cr4_fixed.0, cr4_fixed.1, cr4),
        (1 << 11) | (1 << 14) | (1 << 15)
    );
    // Flexible: CR0 MP, EM, TS, ET, AM; CR4 VME, PVI, TSD, DE, PSE, PGE, PCE.
    assert_eq!(flexible_bits(Cr0, cr0_fixed.0, cr0_fixed.1), 0x4_001e);
    assert_eq!(flexible_bits(Cr4, cr4_fixed.0, cr4_fixed.1), 0x19f);
    // Whatever the MSRs say, no case touches the bits the kernel runs on.
    let never_cr0 = CR0_PE | CR0_PG | (1 << 16) | (1 << 29) | (1 << 30);
    let never_cr4 = crate::vmx::fixed_bits::CR4_PAE
        | crate::vmx::fixed_bits::CR4_LA57
        | [6, 9, 10, 16, 17, 18, 20, 21, 22, 23, 24, 32]
            .iter()
            .fold(0u64, |mask, bit| mask | 1 << bit);
    for (register, never) in [(Cr0, never_cr0), (Cr4, never_cr4)] {
        assert_eq!(sweepable(register) & never, 0, "{register:?}");
        for rule in [ClearFixed1, SetFixed0] {
            for value in [0, u64::MAX] {
                let bits = sweep_bits(sweep(register, rule), u64::MAX, 0, value);
                assert_eq!(bits & never, 0, "{register:?} {rule:?}");
            }
        }
        assert_eq!(flexible_bits(register, 0, u64::MAX) & never, 0);
    }
}

#[test]
fn the_sweeps_run_vmxon_or_see_the_mov_refused_and_restore_the_registers() {
    let mut cpu = FakeCpu::bochs_haswell();
    cpu.fault_fixup = true;
    let (report, _regions) = selftest_outside_vmx(&mut cpu);
    for name in [
        "vmxon with a CR0 fixed-1 bit clear",
        "vmxon with a CR4 fixed-1 bit clear",
        "vmxon with a CR0 fixed-0 bit set",
        "vmxon with a CR4 fixed-0 bit set",
        "vmxon with the flexible CR0 and CR4 bits toggled",
    ] {
        assert_eq!(outcome(&report, name), CaseOutcome::Pass, "{name}");
    }
    let refused = |instr| {
        cpu.executed
            .iter()
            .filter(|e| **e == (instr, InstrOutcome::Fault(Exception::GP)))
            .count()
    };
    // Every fixed-0 bit was refused by the MOV itself: CR0 bits 63:32, CR4 UMIP, SMXE and bit 15.
    assert_eq!(refused(Instr::MovCr0), 32);
    assert_eq!(refused(Instr::MovCr4), 3);
    // VMXON ran with CR0.NE clear (#GP) and with CR4.VMXE clear (#UD, here and in the VMXE case), and once
    // with the flexible bits toggled (VMsucceed, undone by VMXOFF).
    let vmxon = |result| {
        cpu.executed
            .iter()
            .filter(|e| **e == (Instr::Vmxon, result))
            .count()
    };
    assert_eq!(vmxon(InstrOutcome::Fault(Exception::UD)), 2);
    assert!(vmxon(InstrOutcome::Fault(Exception::GP)) >= 1);
    // Ends with the registers the run started with (NE kept, as the fixed bits demand).
    assert_eq!((cpu.cr0, cpu.cr4), (0x8000_0031, 0x20));
}

/// Each new case against a fake that breaks exactly the rule the case checks: the case fails, by name and with
/// the bit or value, and every other case still passes.
#[test]
fn each_rule_broken_fails_its_case_and_only_that_one() {
    type Break = fn(&mut FakeCpu);
    let cases: [(&str, Break, &str); 7] = [
        (
            "wrmsr to feature control after it is locked",
            |cpu| cpu.quirk = Some(Quirk::FeatureControlWritableAfterLock),
            "expected #GP, but WRMSR of 0x5 to the locked IA32_FEATURE_CONTROL completed",
        ),
        (
            "vmxon with a CR0 fixed-1 bit clear",
            |cpu| cpu.quirk = Some(Quirk::VmxonIgnoresFixed0),
            "with CR0.NE cleared: expected #GP (vector 13), got VMsucceed",
        ),
        (
            // A processor whose MOV takes CR0.AM while IA32_VMX_CR0_FIXED1 forbids it.
            "vmxon with a CR0 fixed-0 bit set",
            |cpu| {
                cpu.set_msr(IA32_VMX_CR0_FIXED1, 0xfffb_ffff);
                cpu.quirk = Some(Quirk::VmxonIgnoresFixed1);
            },
            "with CR0.AM set: expected #GP (vector 13), got VMsucceed",
        ),
        (
            // A processor whose MOV takes CR4.SMXE while IA32_VMX_CR4_FIXED1 forbids it.
            "vmxon with a CR4 fixed-0 bit set",
            |cpu| {
                cpu.cr4_accepts |= 1 << 14;
                cpu.quirk = Some(Quirk::VmxonIgnoresFixed1);
            },
            "with CR4.SMXE set: expected #GP (vector 13), got VMsucceed",
        ),
        (
            "vmxon with the flexible CR0 and CR4 bits toggled",
            |cpu| cpu.quirk = Some(Quirk::VmxonFaultsOnFlexibleCr4Bits),
            "with CR0 bits 0x4001e and CR4 bits 0x19f toggled: expected VMsucceed, got #GP (vector 13)",
        ),
        (
            "vmptrld with a wrong revision identifier",
            |cpu| cpu.quirk = Some(Quirk::VmptrldIgnoresRevision),
            "expected VMfailValid with VM-instruction error 11 (VMPTRLD with incorrect VMCS revision \
             identifier), got VMsucceed",
        ),
        (
            "vmptrld with a wrong revision identifier",
            |cpu| cpu.quirk = Some(Quirk::VmptrldFailureChangesCurrent),
            "the failed VMPTRLD changed the current VMCS from 0x7e000 to 0x7d000",
        ),
    ];
    for (name, break_rule, reason) in cases {
        let mut cpu = FakeCpu::bochs_haswell();
        cpu.fault_fixup = true;
        break_rule(&mut cpu);
        let regions = TestRegions::new(&mut cpu);
        let mut state = VmxState::new();
        let report = run_selftest(&mut cpu, &mut state, &regions.pair, Some(&regions.scratch));
        let result = report.results.iter().find(|r| r.case.name == name).unwrap();
        assert_eq!(
            format!("{result}"),
            format!("case=\"{name}\" result=fail reason=\"{reason}\""),
        );
        assert_eq!(
            report.summary(),
            Summary {
                passed: CASE_COUNT - 3,
                failed: 1,
                skipped: 2
            },
            "{name}: {:?}",
            report
                .results
                .iter()
                .filter(|r| r.outcome != CaseOutcome::Pass)
                .collect::<Vec<_>>()
        );
        // The run still ends where it started, with the registers and the VMCS of a correct run.
        assert_eq!(report.restore_error, None, "{name}");
        assert_eq!(state, VmxState::NotEntered, "{name}");
        assert!(!cpu.in_root(), "{name}");
        assert_eq!((cpu.cr0, cpu.cr4), (0x8000_0031, 0x20), "{name}");
        assert_eq!(cpu.feature_control(), 5, "{name}");
    }
}

#[test]
fn without_a_third_page_the_vmptrld_revision_case_is_skipped() {
    let mut cpu = FakeCpu::bochs_haswell();
    cpu.fault_fixup = true;
    let regions = TestRegions::new(&mut cpu);
    let report = run_selftest(&mut cpu, &mut VmxState::new(), &regions.pair, None);
    assert_eq!(
        outcome(&report, "vmptrld with a wrong revision identifier"),
        CaseOutcome::Skipped(SkipReason::NoScratchPage)
    );
    // The scratch page must be a page of its own: the VMCS itself is refused, not overwritten.
    let report = run_selftest(
        &mut cpu,
        &mut VmxState::new(),
        &regions.pair,
        Some(&regions.pair.vmcs),
    );
    assert!(matches!(
        outcome(&report, "vmptrld with a wrong revision identifier"),
        CaseOutcome::Fail(Failure::Setup(VmxError::RegionInvalid { .. }))
    ));
    assert_eq!(report.summary().failed, 1);
}

#[test]
fn the_vmptrld_revision_case_plants_revision_plus_one_on_the_third_page() {
    let mut cpu = FakeCpu::bochs_haswell();
    cpu.fault_fixup = true;
    let (report, regions) = selftest_outside_vmx(&mut cpu);
    assert_eq!(
        outcome(&report, "vmptrld with a wrong revision identifier"),
        CaseOutcome::Pass
    );
    assert_eq!(regions.scratch.phys(), TestRegions::SCRATCH);
    assert_eq!(regions.scratch.revision(), 0x2c);
    assert!(cpu.executed.contains(&(
        Instr::Vmptrld,
        InstrOutcome::VmFail(VmFail::Valid(InstructionError::VMPTRLD_WRONG_REVISION))
    )));
}
