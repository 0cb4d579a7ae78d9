//! Each check broken alone on a VMCS that the builders made valid; the outcome must be exactly that check, with
//! the error 7, error 8 or exit reason 33 of its area. The guest-state cases are in `tests_guest.rs`.

use super::*;
use crate::vmx::vmcs::caps::EptVpidCap;
use crate::vmx::vmcs::controls::{entry, exit, pin, primary, secondary, ControlPolicy};
use crate::vmx::vmcs::fake::FakeVmcs;
use crate::vmx::vmcs::fixtures::{built_vmcs, haswell_caps, penryn_caps};

/// Which valid starting point a case breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Model {
    /// Bochs haswell with the test-guest policy: EPT, VPID, EFER/PAT loading, TRUE controls.
    Haswell,
    /// Haswell with unrestricted guest as well.
    HaswellUnrestricted,
    /// Penryn: no EPT, VPID, EFER or PAT controls, no TRUE MSRs.
    Penryn,
}

pub(super) struct Case {
    pub check: Check,
    pub model: Model,
    pub caps: fn(&mut VmxCapabilities),
    pub breaks: fn(&mut FakeVmcs),
}

pub(super) const fn case(check: Check, breaks: fn(&mut FakeVmcs)) -> Case {
    Case {
        check,
        model: Model::Haswell,
        caps: |_| {},
        breaks,
    }
}

pub(super) const fn on(model: Model, check: Check, breaks: fn(&mut FakeVmcs)) -> Case {
    Case {
        check,
        model,
        caps: |_| {},
        breaks,
    }
}

pub(super) fn valid(model: Model) -> (FakeVmcs, VmxCapabilities) {
    let (caps, policy) = match model {
        Model::Haswell => (haswell_caps(), ControlPolicy::TEST_GUEST),
        Model::HaswellUnrestricted => (
            haswell_caps(),
            ControlPolicy {
                unrestricted_guest: true,
                ..ControlPolicy::TEST_GUEST
            },
        ),
        Model::Penryn => (penryn_caps(), ControlPolicy::TEST_GUEST),
    };
    let (vmcs, _) = built_vmcs(&caps, &policy);
    (vmcs, caps)
}

/// `field |= bits`.
pub(super) fn or(vmcs: &mut FakeVmcs, field: Field, bits: u64) {
    let value = vmcs.get(field);
    vmcs.set(field, value | bits);
}

/// `field &= !bits`.
pub(super) fn clear(vmcs: &mut FakeVmcs, field: Field, bits: u64) {
    let value = vmcs.get(field);
    vmcs.set(field, value & !bits);
}

/// The pin-based NMI controls ("NMI exiting", "virtual NMIs") set to exactly `bits`.
pub(super) fn set_nmi_controls(vmcs: &mut FakeVmcs, bits: u32) {
    clear(
        vmcs,
        Field::PIN_BASED_VM_EXEC_CONTROL,
        (pin::NMI_EXITING | pin::VIRTUAL_NMIS).into(),
    );
    or(vmcs, Field::PIN_BASED_VM_EXEC_CONTROL, bits.into());
}

pub(super) fn run(cases: &[Case]) {
    for case in cases {
        let (mut vmcs, mut caps) = valid(case.model);
        (case.caps)(&mut caps);
        assert_eq!(
            check_vm_entry(&vmcs, &caps),
            Ok(()),
            "{:?}: the starting point must be valid",
            case.check
        );
        (case.breaks)(&mut vmcs);
        let error = check_vm_entry(&vmcs, &caps).expect_err(case.check.name());
        assert_eq!(error.check(), Some(case.check), "{error}");
        match case.check.area() {
            Area::Controls => {
                assert_eq!(error.instruction_error(), Some(InstructionError(7)));
                assert_eq!(error.exit_reason(), None);
            }
            Area::HostState => {
                assert_eq!(error.instruction_error(), Some(InstructionError(8)));
                assert_eq!(error.exit_reason(), None);
            }
            Area::GuestState => {
                assert_eq!(error.instruction_error(), None);
                assert_eq!(error.exit_reason(), Some(ExitReason(0x8000_0021)));
                assert_eq!(error.qualification(), Some(case.check.qualification()));
            }
        }
    }
}

const GP_INFO: u64 = (1 << 31) | (3 << 8) | 13;

pub(super) const CONTROL_CASES: &[Case] = &[
    case(Check::PinBasedAllowed, |v| {
        clear(v, Field::PIN_BASED_VM_EXEC_CONTROL, 1 << 1)
    }),
    case(Check::PinBasedAllowed, |v| {
        or(
            v,
            Field::PIN_BASED_VM_EXEC_CONTROL,
            pin::PROCESS_POSTED_INTERRUPTS.into(),
        )
    }),
    case(Check::PrimaryAllowed, |v| {
        or(v, Field::PRIMARY_PROC_BASED_VM_EXEC_CONTROL, 1)
    }),
    case(Check::PrimaryAllowed, |v| {
        clear(v, Field::PRIMARY_PROC_BASED_VM_EXEC_CONTROL, 1 << 1)
    }),
    on(Model::Penryn, Check::PrimaryAllowed, |v| {
        clear(
            v,
            Field::PRIMARY_PROC_BASED_VM_EXEC_CONTROL,
            primary::CR3_LOAD_EXITING.into(),
        )
    }),
    case(Check::SecondaryAllowed, |v| {
        or(v, Field::SECONDARY_PROC_BASED_VM_EXEC_CONTROL, 1 << 15)
    }),
    case(Check::Cr3TargetCount, |v| v.set(Field::CR3_TARGET_COUNT, 5)),
    case(Check::IoBitmapAddress, |v| {
        or(
            v,
            Field::PRIMARY_PROC_BASED_VM_EXEC_CONTROL,
            primary::USE_IO_BITMAPS.into(),
        );
        v.set(Field::IO_BITMAP_A, 0x2000);
        v.set(Field::IO_BITMAP_B, 0x2800);
    }),
    case(Check::MsrBitmapAddress, |v| {
        or(
            v,
            Field::PRIMARY_PROC_BASED_VM_EXEC_CONTROL,
            primary::USE_MSR_BITMAPS.into(),
        );
        v.set(Field::MSR_BITMAP, 1 << 40);
    }),
    case(Check::ApicVirtualizationWithoutTprShadow, |v| {
        or(
            v,
            Field::SECONDARY_PROC_BASED_VM_EXEC_CONTROL,
            secondary::VIRTUALIZE_X2APIC_MODE.into(),
        )
    }),
    case(Check::VirtualNmisWithoutNmiExiting, |v| {
        clear(v, Field::PIN_BASED_VM_EXEC_CONTROL, pin::NMI_EXITING.into());
        or(
            v,
            Field::PIN_BASED_VM_EXEC_CONTROL,
            pin::VIRTUAL_NMIS.into(),
        );
    }),
    case(Check::NmiWindowWithoutVirtualNmis, |v| {
        or(
            v,
            Field::PRIMARY_PROC_BASED_VM_EXEC_CONTROL,
            primary::NMI_WINDOW_EXITING.into(),
        )
    }),
    case(Check::EptMemoryType, |v| {
        let eptp = v.get(Field::EPT_POINTER);
        v.set(Field::EPT_POINTER, (eptp & !7) | 1);
    }),
    case(Check::EptWalkLength, |v| {
        let eptp = v.get(Field::EPT_POINTER);
        v.set(Field::EPT_POINTER, (eptp & !0x38) | (4 << 3));
    }),
    Case {
        check: Check::EptAccessedDirty,
        model: Model::Haswell,
        caps: |caps| {
            let cap = caps.ept_vpid.unwrap().0;
            caps.ept_vpid = Some(EptVpidCap(cap & !(1 << 21)));
        },
        breaks: |v| or(v, Field::EPT_POINTER, 1 << 6),
    },
    case(Check::EptReservedBits, |v| {
        or(v, Field::EPT_POINTER, 1 << 8)
    }),
    case(Check::EptReservedBits, |v| {
        or(v, Field::EPT_POINTER, 1 << 40)
    }),
    case(Check::VpidZero, |v| v.set(Field::VPID, 0)),
    case(Check::UnrestrictedGuestWithoutEpt, |v| {
        clear(
            v,
            Field::SECONDARY_PROC_BASED_VM_EXEC_CONTROL,
            secondary::ENABLE_EPT.into(),
        );
        or(
            v,
            Field::SECONDARY_PROC_BASED_VM_EXEC_CONTROL,
            secondary::UNRESTRICTED_GUEST.into(),
        );
    }),
    case(Check::ExitAllowed, |v| clear(v, Field::VM_EXIT_CONTROLS, 1)),
    case(Check::ExitAllowed, |v| {
        or(v, Field::VM_EXIT_CONTROLS, 1 << 31)
    }),
    case(Check::SavePreemptionTimerWithoutTimer, |v| {
        or(
            v,
            Field::VM_EXIT_CONTROLS,
            exit::SAVE_PREEMPTION_TIMER.into(),
        )
    }),
    case(Check::ExitMsrStoreAddress, |v| {
        v.set(Field::VM_EXIT_MSR_STORE_COUNT, 1);
        v.set(Field::VM_EXIT_MSR_STORE_ADDRESS, 0x1008);
    }),
    case(Check::ExitMsrLoadAddress, |v| {
        v.set(Field::VM_EXIT_MSR_LOAD_COUNT, 2);
        v.set(Field::VM_EXIT_MSR_LOAD_ADDRESS, (1 << 40) - 16);
    }),
    case(Check::EntryAllowed, |v| {
        or(v, Field::VM_ENTRY_CONTROLS, 1 << 31)
    }),
    case(Check::EntryAllowed, |v| {
        clear(v, Field::VM_ENTRY_CONTROLS, 1)
    }),
    case(Check::EventInjectionReservedBits, |v| {
        v.set(Field::VM_ENTRY_INTERRUPTION_INFO, (1 << 31) | (1 << 20))
    }),
    case(Check::EventInjectionType, |v| {
        v.set(Field::VM_ENTRY_INTERRUPTION_INFO, (1 << 31) | (1 << 8))
    }),
    case(Check::EventInjectionVector, |v| {
        v.set(Field::VM_ENTRY_INTERRUPTION_INFO, (1 << 31) | (2 << 8) | 3)
    }),
    case(Check::EventInjectionVector, |v| {
        v.set(Field::VM_ENTRY_INTERRUPTION_INFO, (1 << 31) | (3 << 8) | 32)
    }),
    case(Check::EventInjectionDeliverErrorCode, |v| {
        v.set(Field::VM_ENTRY_INTERRUPTION_INFO, GP_INFO)
    }),
    case(Check::EventInjectionDeliverErrorCode, |v| {
        v.set(
            Field::VM_ENTRY_INTERRUPTION_INFO,
            (1 << 31) | (1 << 11) | (3 << 8) | 6,
        )
    }),
    case(Check::EventInjectionErrorCode, |v| {
        v.set(Field::VM_ENTRY_INTERRUPTION_INFO, GP_INFO | (1 << 11));
        v.set(Field::VM_ENTRY_EXCEPTION_ERROR_CODE, 0x1_0000);
    }),
    case(Check::EventInjectionInstructionLength, |v| {
        v.set(
            Field::VM_ENTRY_INTERRUPTION_INFO,
            (1 << 31) | (4 << 8) | 0x80,
        );
        v.set(Field::VM_ENTRY_INSTRUCTION_LENGTH, 0);
    }),
    case(Check::EventInjectionInstructionLength, |v| {
        v.set(Field::VM_ENTRY_INTERRUPTION_INFO, (1 << 31) | (6 << 8) | 3);
        v.set(Field::VM_ENTRY_INSTRUCTION_LENGTH, 16);
    }),
    case(Check::EntryMsrLoadAddress, |v| {
        v.set(Field::VM_ENTRY_MSR_LOAD_COUNT, 1);
        v.set(Field::VM_ENTRY_MSR_LOAD_ADDRESS, 0x1004);
    }),
    case(Check::EntryToSmmOutsideSmm, |v| {
        or(v, Field::VM_ENTRY_CONTROLS, entry::ENTRY_TO_SMM.into())
    }),
];

const CANONICAL_HOLE: u64 = 0x0000_8000_0000_0000;

pub(super) const HOST_CASES: &[Case] = &[
    case(Check::HostCr0Fixed, |v| clear(v, Field::HOST_CR0, 1 << 5)),
    case(Check::HostCr0Fixed, |v| or(v, Field::HOST_CR0, 1 << 32)),
    case(Check::HostCr4Fixed, |v| clear(v, Field::HOST_CR4, 1 << 13)),
    case(Check::HostCr4Fixed, |v| or(v, Field::HOST_CR4, 1 << 12)),
    case(Check::HostCr3Width, |v| v.set(Field::HOST_CR3, 1 << 40)),
    case(Check::HostSysenterCanonical, |v| {
        v.set(Field::HOST_IA32_SYSENTER_EIP, CANONICAL_HOLE)
    }),
    case(Check::HostPat, |v| {
        v.set(Field::HOST_IA32_PAT, 0x0007_0406_0007_0402)
    }),
    case(Check::HostPat, |v| {
        v.set(Field::HOST_IA32_PAT, 0x0007_0406_0007_0416)
    }),
    case(Check::HostEferReserved, |v| {
        or(v, Field::HOST_IA32_EFER, 1 << 9)
    }),
    case(Check::HostEferLmaLme, |v| {
        clear(v, Field::HOST_IA32_EFER, 1 << 10)
    }),
    case(Check::HostEferLmaLme, |v| {
        clear(v, Field::HOST_IA32_EFER, 1 << 8)
    }),
    case(Check::HostSelectorRplTi, |v| {
        v.set(Field::HOST_DS_SELECTOR, 0x13)
    }),
    case(Check::HostSelectorRplTi, |v| {
        v.set(Field::HOST_TR_SELECTOR, 0x2C)
    }),
    case(Check::HostCsZero, |v| v.set(Field::HOST_CS_SELECTOR, 0)),
    case(Check::HostTrZero, |v| v.set(Field::HOST_TR_SELECTOR, 0)),
    on(Model::Penryn, Check::HostSsZero, |v| {
        clear(
            v,
            Field::VM_EXIT_CONTROLS,
            exit::HOST_ADDRESS_SPACE_SIZE.into(),
        );
        v.set(Field::HOST_SS_SELECTOR, 0);
    }),
    case(Check::HostBaseCanonical, |v| {
        v.set(Field::HOST_GS_BASE, 1 << 48)
    }),
    case(Check::HostBaseCanonical, |v| {
        v.set(Field::HOST_TR_BASE, CANONICAL_HOLE)
    }),
    case(Check::HostBaseCanonical, |v| {
        v.set(Field::HOST_IDTR_BASE, CANONICAL_HOLE)
    }),
    on(Model::Penryn, Check::HostAddressSpaceSize, |v| {
        clear(
            v,
            Field::VM_EXIT_CONTROLS,
            exit::HOST_ADDRESS_SPACE_SIZE.into(),
        )
    }),
    case(Check::HostAddressSpaceSize, |v| {
        // With "load IA32_EFER" the EFER check (27.2.2) comes first.
        clear(v, Field::VM_EXIT_CONTROLS, exit::LOAD_IA32_EFER.into());
        clear(
            v,
            Field::VM_EXIT_CONTROLS,
            exit::HOST_ADDRESS_SPACE_SIZE.into(),
        );
    }),
    case(Check::HostCr4Pae, |v| clear(v, Field::HOST_CR4, 1 << 5)),
    case(Check::HostRipCanonical, |v| {
        v.set(Field::HOST_RIP, CANONICAL_HOLE)
    }),
];

#[test]
fn vmcs_built_by_the_builders_passes_on_haswell_penryn_and_with_unrestricted_guest() {
    for model in [Model::Haswell, Model::HaswellUnrestricted, Model::Penryn] {
        let (vmcs, caps) = valid(model);
        assert_eq!(check_vm_entry(&vmcs, &caps), Ok(()), "{model:?}");
    }
}

#[test]
fn each_control_check_fails_with_error_7() {
    run(CONTROL_CASES);
}

#[test]
fn each_host_state_check_fails_with_error_8() {
    run(HOST_CASES);
}

#[test]
fn every_check_has_a_case_that_breaks_exactly_it() {
    let cases: Vec<Check> = CONTROL_CASES
        .iter()
        .chain(HOST_CASES)
        .chain(super::tests_guest::GUEST_CASES)
        .map(|case| case.check)
        .collect();
    for check in Check::ALL {
        assert!(cases.contains(check), "no test breaks {check:?}");
    }
}

#[test]
fn secondary_controls_are_ignored_without_activate_secondary_controls() {
    let (mut vmcs, caps) = valid(Model::Penryn);
    vmcs.set(Field::SECONDARY_PROC_BASED_VM_EXEC_CONTROL, 1 << 15 | 0x7F);
    assert_eq!(check_vm_entry(&vmcs, &caps), Ok(()));
    or(
        &mut vmcs,
        Field::PRIMARY_PROC_BASED_VM_EXEC_CONTROL,
        primary::ACTIVATE_SECONDARY_CONTROLS.into(),
    );
    assert_eq!(
        check_vm_entry(&vmcs, &caps).unwrap_err().check(),
        Some(Check::SecondaryAllowed)
    );
}

#[test]
fn a_null_host_ss_is_allowed_with_a_64_bit_host() {
    let (mut vmcs, caps) = valid(Model::Haswell);
    vmcs.set(Field::HOST_SS_SELECTOR, 0);
    assert_eq!(check_vm_entry(&vmcs, &caps), Ok(()));
}

#[test]
fn injecting_a_page_fault_with_its_error_code_is_valid() {
    let (mut vmcs, caps) = valid(Model::Haswell);
    vmcs.set(
        Field::VM_ENTRY_INTERRUPTION_INFO,
        (1 << 31) | (1 << 11) | (3 << 8) | 14,
    );
    vmcs.set(Field::VM_ENTRY_EXCEPTION_ERROR_CODE, 2);
    assert_eq!(check_vm_entry(&vmcs, &caps), Ok(()));
}

#[test]
fn errors_print_the_outcome_the_rule_the_field_and_the_section() {
    let (mut vmcs, caps) = valid(Model::Haswell);
    vmcs.set(Field::VPID, 0);
    assert_eq!(
        format!("{}", check_vm_entry(&vmcs, &caps).unwrap_err()),
        "VMfailValid with VM-instruction error 7 (VM entry with invalid control field(s)): VPID not \
         0000H when enable VPID is 1 (VPID (0x0) = 0x0; SDM vol. 3C 27.2.1.1, VM-Execution Control Fields)"
    );
    let (mut vmcs, caps) = valid(Model::Haswell);
    vmcs.set(Field::VMCS_LINK_POINTER, 0);
    let error = check_vm_entry(&vmcs, &caps).unwrap_err();
    assert_eq!(error.qualification(), Some(4));
    assert_eq!(
        format!("{error}"),
        "VM-entry failure: exit reason 33 (VM-entry failure due to invalid guest state) with exit \
         qualification 4: VMCS link pointer FFFFFFFF_FFFFFFFFH (this hypervisor uses no shadow VMCS) \
         (VMCS_LINK_POINTER (0x2800) = 0x0; SDM vol. 3C 27.3.1.5, Checks on Guest Non-Register State)"
    );
}

#[test]
fn a_vmread_failure_is_reported_as_such() {
    let (mut vmcs, caps) = valid(Model::Haswell);
    vmcs.unsupport(Field::HOST_CR0);
    let error = check_vm_entry(&vmcs, &caps).unwrap_err();
    assert!(matches!(error, EntryError::Access(access) if access.field == Field::HOST_CR0));
    assert_eq!(
        (error.instruction_error(), error.exit_reason()),
        (None, None)
    );
    vmcs.current = false;
    assert!(format!("{}", check_vm_entry(&vmcs, &caps).unwrap_err()).contains("VMfailInvalid"));
}

#[test]
fn checks_run_in_sdm_order_controls_then_host_then_guest() {
    let (mut vmcs, caps) = valid(Model::Haswell);
    vmcs.set(Field::GUEST_RFLAGS, 0);
    vmcs.set(Field::HOST_CS_SELECTOR, 0);
    vmcs.set(Field::VPID, 0);
    assert_eq!(
        check_vm_entry(&vmcs, &caps).unwrap_err().check(),
        Some(Check::VpidZero)
    );
    vmcs.set(Field::VPID, 1);
    assert_eq!(
        check_vm_entry(&vmcs, &caps).unwrap_err().check(),
        Some(Check::HostCsZero)
    );
    vmcs.set(Field::HOST_CS_SELECTOR, 8);
    assert_eq!(
        check_vm_entry(&vmcs, &caps).unwrap_err().check(),
        Some(Check::GuestRflagsReserved)
    );
}

/// Events that the SDM allows to be injected (25.8.3, 27.2.1.3) pass the checks: each type with a vector it
/// permits, an error code exactly where the exception pushes one (and any 16-bit value), the instruction
/// length 1 to 15 for software events. Together with the failing cases above this pins each rule from both
/// sides.
#[test]
fn valid_event_injections_pass() {
    const VALID: u64 = 1 << 31;
    const DELIVER: u64 = 1 << 11;
    let caps = haswell_caps();
    assert_ne!(
        caps.effective_procbased().may_be_one() & primary::MONITOR_TRAP_FLAG,
        0,
        "the fixture offers MTF, so type 7 may be injected"
    );
    let events: [(&str, u64, Option<u64>, Option<u64>); 12] = [
        ("external interrupt 0x20", VALID | 0x20, None, None),
        ("NMI", VALID | (2 << 8) | 2, None, None),
        (
            "#UD without an error code",
            VALID | (3 << 8) | 6,
            None,
            None,
        ),
        ("#DE, vector 0", VALID | (3 << 8), None, None),
        ("vector 31", VALID | (3 << 8) | 31, None, None),
        (
            "#GP with error code 0",
            VALID | DELIVER | (3 << 8) | 13,
            Some(0),
            None,
        ),
        (
            "#PF with error code 0xFFFF",
            VALID | DELIVER | (3 << 8) | 14,
            Some(0xFFFF),
            None,
        ),
        (
            "#DF with its error code",
            VALID | DELIVER | (3 << 8) | 8,
            Some(0),
            None,
        ),
        ("INT 0x80, length 2", VALID | (4 << 8) | 0x80, None, Some(2)),
        (
            "privileged software exception, length 1",
            VALID | (5 << 8) | 1,
            None,
            Some(1),
        ),
        ("INT3, length 15", VALID | (6 << 8) | 3, None, Some(15)),
        ("other event (MTF), vector 0", VALID | (7 << 8), None, None),
    ];
    for (name, info, code, length) in events {
        let (mut vmcs, _) = built_vmcs(&caps, &ControlPolicy::TEST_GUEST);
        vmcs.set(Field::VM_ENTRY_INTERRUPTION_INFO, info);
        if let Some(code) = code {
            vmcs.set(Field::VM_ENTRY_EXCEPTION_ERROR_CODE, code);
        }
        if let Some(length) = length {
            vmcs.set(Field::VM_ENTRY_INSTRUCTION_LENGTH, length);
        }
        // An external interrupt is injected into a guest that has interrupts enabled (27.3.1.4).
        if (info >> 8) & 7 == 0 {
            vmcs.set(Field::GUEST_RFLAGS, 0x202);
        }
        assert_eq!(check_vm_entry(&vmcs, &caps), Ok(()), "{name}");
    }
    // Not valid: nothing to check.
    let (mut vmcs, _) = built_vmcs(&caps, &ControlPolicy::TEST_GUEST);
    vmcs.set(Field::VM_ENTRY_INTERRUPTION_INFO, (3 << 8) | 32);
    assert_eq!(check_vm_entry(&vmcs, &caps), Ok(()));
}

/// The injection rules that depend on the capabilities: type 7 (other event) only where MTF is offered, and a
/// hardware exception with an error code it does not push only with IA32_VMX_BASIC bit 56 (A.1).
#[test]
fn injection_rules_that_follow_the_capabilities() {
    use crate::vmx::vmcs::caps::AllowedBits;
    const MTF_EVENT: u64 = (1 << 31) | (7 << 8);
    const UD_WITH_CODE: u64 = (1 << 31) | (1 << 11) | (3 << 8) | 6;
    let check_with = |caps: &VmxCapabilities, info: u64| {
        let (mut vmcs, _) = built_vmcs(caps, &ControlPolicy::TEST_GUEST);
        vmcs.set(Field::VM_ENTRY_INTERRUPTION_INFO, info);
        check_vm_entry(&vmcs, caps).err().and_then(|e| e.check())
    };
    let caps = haswell_caps();
    assert_eq!(check_with(&caps, MTF_EVENT), None);
    fn without_mtf(a: AllowedBits) -> AllowedBits {
        AllowedBits::new(
            a.msr,
            a.raw & !(u64::from(primary::MONITOR_TRAP_FLAG) << 32),
        )
    }
    let mut no_mtf = caps;
    no_mtf.procbased = without_mtf(no_mtf.procbased);
    no_mtf.true_procbased = no_mtf.true_procbased.map(without_mtf);
    assert_eq!(
        check_with(&no_mtf, MTF_EVENT),
        Some(Check::EventInjectionType)
    );

    assert_eq!(caps.basic.raw & (1 << 56), 0, "the fixture has no bit 56");
    assert_eq!(
        check_with(&caps, UD_WITH_CODE),
        Some(Check::EventInjectionDeliverErrorCode)
    );
    let mut bit56 = caps;
    bit56.basic.raw |= 1 << 56;
    assert_eq!(check_with(&bit56, UD_WITH_CODE), None);
}
