use super::*;
use crate::vmx::vmcs::caps::{
    IA32_VMX_EPT_VPID_CAP, IA32_VMX_EXIT_CTLS, IA32_VMX_PROCBASED_CTLS, IA32_VMX_PROCBASED_CTLS2,
    IA32_VMX_TRUE_ENTRY_CTLS, IA32_VMX_TRUE_EXIT_CTLS, IA32_VMX_TRUE_PINBASED_CTLS,
    IA32_VMX_TRUE_PROCBASED_CTLS,
};
use crate::vmx::vmcs::fixtures::{self, haswell_caps, penryn_caps};

#[test]
fn haswell_gets_every_required_control_and_every_optional_feature_but_unrestricted() {
    let caps = haswell_caps();
    let controls = choose_controls(&caps, &ControlPolicy::TEST_GUEST).unwrap();
    assert_eq!(
        format!("{}", controls.features),
        "ept=yes vpid=yes unrestricted=no msr_bitmaps=no efer=yes pat=yes ack_intr=no true_ctls=yes"
    );
    assert!(controls.features.save_efer && controls.features.save_pat);
    for control in Control::REQUIRED {
        let word = match control.word {
            ControlWord::PinBased => controls.pin,
            ControlWord::PrimaryProcBased => controls.primary,
            ControlWord::SecondaryProcBased => controls.secondary,
            ControlWord::Exit => controls.exit,
            ControlWord::Entry => controls.entry,
        };
        assert_ne!(word & control.mask, 0, "{control}");
    }
    assert!(controls.secondary_active());
    assert_eq!(
        controls.secondary,
        secondary::ENABLE_EPT | secondary::ENABLE_VPID
    );
    assert_eq!(controls.ept_memory_type, Some(EPT_MEMORY_TYPE_WB));
    // With EPT the CR3 exits (default1 in the non-TRUE MSR) are left out, which the TRUE MSR allows.
    assert_eq!(
        controls.primary & (primary::CR3_LOAD_EXITING | primary::CR3_STORE_EXITING),
        0
    );
    // Every other default1 bit is kept, and every word passes the MSR VM entry checks.
    assert_eq!(controls.primary & 0x0400_6172, 0x0400_6172);
    assert!(caps.effective_pinbased().permits(controls.pin));
    assert!(caps.effective_procbased().permits(controls.primary));
    assert!(caps.effective_procbased2().permits(controls.secondary));
    assert!(caps.effective_exit().permits(controls.exit));
    assert!(caps.effective_entry().permits(controls.entry));
    assert_eq!(
        controls.exit & exit::SAVE_DEBUG_CONTROLS,
        exit::SAVE_DEBUG_CONTROLS
    );
}

#[test]
fn unrestricted_guest_only_with_ept() {
    let caps = haswell_caps();
    let policy = ControlPolicy {
        unrestricted_guest: true,
        ..ControlPolicy::TEST_GUEST
    };
    let controls = choose_controls(&caps, &policy).unwrap();
    assert!(controls.features.unrestricted_guest);
    assert_ne!(controls.secondary & secondary::UNRESTRICTED_GUEST, 0);
    let no_ept = ControlPolicy {
        ept: false,
        ..policy
    };
    let controls = choose_controls(&caps, &no_ept).unwrap();
    assert!(!controls.features.ept && !controls.features.unrestricted_guest);
    assert_eq!(controls.secondary, secondary::ENABLE_VPID);
    assert_eq!(controls.ept_memory_type, None);
    // Without EPT the CR3 exits stay, as the non-TRUE MSR's default1 bits ask.
    assert_ne!(controls.primary & primary::CR3_LOAD_EXITING, 0);
}

#[test]
fn penryn_has_no_ept_vpid_efer_or_pat_and_uses_the_non_true_msrs() {
    let caps = penryn_caps();
    let controls = choose_controls(&caps, &ControlPolicy::TEST_GUEST).unwrap();
    assert_eq!(
        format!("{}", controls.features),
        "ept=no vpid=no unrestricted=no msr_bitmaps=no efer=no pat=no ack_intr=no true_ctls=no"
    );
    assert!(!controls.secondary_active(), "no secondary feature is used");
    assert_eq!(controls.secondary, 0);
    assert_eq!(
        controls.exit & (exit::LOAD_IA32_EFER | exit::LOAD_IA32_PAT),
        0
    );
    assert_eq!(
        controls.entry & (entry::LOAD_IA32_EFER | entry::LOAD_IA32_PAT),
        0
    );
    assert!(caps.effective_procbased().permits(controls.primary));
    assert_eq!(caps.effective_procbased().msr, IA32_VMX_PROCBASED_CTLS);
}

#[test]
fn msr_bitmaps_only_when_asked_for_and_allowed() {
    let policy = ControlPolicy {
        msr_bitmaps: true,
        ..ControlPolicy::TEST_GUEST
    };
    let controls = choose_controls(&haswell_caps(), &policy).unwrap();
    assert!(controls.features.msr_bitmaps);
    assert_ne!(controls.primary & primary::USE_MSR_BITMAPS, 0);
    let mut msrs = fixtures::bochs_haswell();
    forbid(
        &mut msrs,
        IA32_VMX_TRUE_PROCBASED_CTLS,
        primary::USE_MSR_BITMAPS,
    );
    let caps = VmxCapabilities::read(&mut msrs, 40).unwrap();
    let controls = choose_controls(&caps, &policy).unwrap();
    assert!(!controls.features.msr_bitmaps);
    assert_eq!(controls.primary & primary::USE_MSR_BITMAPS, 0);
}

#[test]
fn minimal_policy_uses_no_optional_feature() {
    let controls = choose_controls(&haswell_caps(), &ControlPolicy::MINIMAL).unwrap();
    assert_eq!(
        controls.features,
        Features {
            true_controls: true,
            ..Features::default()
        }
    );
    assert!(!controls.secondary_active());
    assert_eq!(controls.primary & primary::USE_MSR_BITMAPS, 0);
}

#[test]
fn ept_is_not_used_without_a_usable_eptp_format() {
    for cap in [
        0x0000_0f01_0633_4101, // no 4-level walk
        0x0000_0f01_0633_0041, // neither UC nor WB
    ] {
        let mut msrs = fixtures::bochs_haswell();
        msrs.set(IA32_VMX_EPT_VPID_CAP, cap);
        let caps = VmxCapabilities::read(&mut msrs, 40).unwrap();
        let controls = choose_controls(&caps, &ControlPolicy::TEST_GUEST).unwrap();
        assert!(!controls.features.ept, "{cap:x}");
        assert!(controls.features.vpid);
    }
    let mut msrs = fixtures::bochs_haswell();
    msrs.set(IA32_VMX_EPT_VPID_CAP, 0x0000_0f01_0633_0141); // UC only
    let caps = VmxCapabilities::read(&mut msrs, 40).unwrap();
    let controls = choose_controls(&caps, &ControlPolicy::TEST_GUEST).unwrap();
    assert_eq!(controls.ept_memory_type, Some(EPT_MEMORY_TYPE_UC));
}

#[test]
fn efer_switching_needs_both_the_entry_and_the_exit_control() {
    let mut msrs = fixtures::bochs_haswell();
    let true_exit = msrs.get(IA32_VMX_TRUE_EXIT_CTLS);
    msrs.set(
        IA32_VMX_TRUE_EXIT_CTLS,
        true_exit & !(u64::from(exit::LOAD_IA32_EFER) << 32),
    );
    let caps = VmxCapabilities::read(&mut msrs, 40).unwrap();
    let controls = choose_controls(&caps, &ControlPolicy::TEST_GUEST).unwrap();
    assert!(!controls.features.load_efer && !controls.features.save_efer);
    assert_eq!(controls.entry & entry::LOAD_IA32_EFER, 0);
    assert!(controls.features.load_pat);
}

/// Clears `mask` in the allowed-1 half of `msr`.
fn forbid(msrs: &mut fixtures::FakeMsrs, msr: u32, mask: u32) {
    let value = msrs.get(msr);
    msrs.set(msr, value & !(u64::from(mask) << 32));
}

#[test]
fn a_missing_required_control_is_named_with_its_msr() {
    let cases = [
        (
            IA32_VMX_TRUE_PINBASED_CTLS,
            pin::EXTERNAL_INTERRUPT_EXITING,
            "external-interrupt exiting",
        ),
        (IA32_VMX_TRUE_PINBASED_CTLS, pin::NMI_EXITING, "NMI exiting"),
        (
            IA32_VMX_TRUE_PROCBASED_CTLS,
            primary::HLT_EXITING,
            "HLT exiting",
        ),
        (
            IA32_VMX_TRUE_PROCBASED_CTLS,
            primary::UNCONDITIONAL_IO_EXITING,
            "unconditional I/O exiting",
        ),
        (
            IA32_VMX_TRUE_EXIT_CTLS,
            exit::HOST_ADDRESS_SPACE_SIZE,
            "host address-space size",
        ),
        (
            IA32_VMX_TRUE_ENTRY_CTLS,
            entry::IA32E_MODE_GUEST,
            "IA-32e mode guest",
        ),
    ];
    for (msr, mask, name) in cases {
        let mut msrs = fixtures::bochs_haswell();
        forbid(&mut msrs, msr, mask);
        let caps = VmxCapabilities::read(&mut msrs, 40).unwrap();
        let error = choose_controls(&caps, &ControlPolicy::TEST_GUEST).unwrap_err();
        let CapabilityError::RequiredControlUnavailable {
            control,
            msr: named,
        } = error;
        assert_eq!(control.name, name);
        assert_eq!(named, msr, "{name}");
    }
    let mut msrs = fixtures::bochs_haswell();
    forbid(
        &mut msrs,
        IA32_VMX_TRUE_PROCBASED_CTLS,
        primary::HLT_EXITING,
    );
    let caps = VmxCapabilities::read(&mut msrs, 40).unwrap();
    assert_eq!(
        format!(
            "{}",
            choose_controls(&caps, &ControlPolicy::MINIMAL).unwrap_err()
        ),
        "required control HLT exiting (primary processor-based VM-execution control bit 7) is not \
         allowed to be 1 by IA32_VMX_TRUE_PROCBASED_CTLS (MSR 0x48e)"
    );
    // Without TRUE MSRs the error names the MSR that VM entry checks instead.
    let mut msrs = fixtures::penryn_t9600();
    forbid(&mut msrs, IA32_VMX_EXIT_CTLS, exit::HOST_ADDRESS_SPACE_SIZE);
    let caps = VmxCapabilities::read(&mut msrs, 36).unwrap();
    assert_eq!(
        choose_controls(&caps, &ControlPolicy::TEST_GUEST),
        Err(CapabilityError::RequiredControlUnavailable {
            control: Control::HOST_ADDRESS_SPACE_SIZE,
            msr: IA32_VMX_EXIT_CTLS
        })
    );
}

#[test]
fn secondary_features_are_dropped_when_secondary_controls_cannot_be_activated() {
    let mut msrs = fixtures::bochs_haswell();
    forbid(
        &mut msrs,
        IA32_VMX_TRUE_PROCBASED_CTLS,
        primary::ACTIVATE_SECONDARY_CONTROLS,
    );
    let caps = VmxCapabilities::read(&mut msrs, 40).unwrap();
    let controls = choose_controls(&caps, &ControlPolicy::TEST_GUEST).unwrap();
    assert!(!controls.features.ept && !controls.features.vpid);
    assert!(!controls.secondary_active());
    assert_eq!(controls.secondary, 0);
    // Forbidding VPID in PROCBASED_CTLS2 drops only VPID.
    let mut msrs = fixtures::bochs_haswell();
    forbid(&mut msrs, IA32_VMX_PROCBASED_CTLS2, secondary::ENABLE_VPID);
    let caps = VmxCapabilities::read(&mut msrs, 40).unwrap();
    let controls = choose_controls(&caps, &ControlPolicy::TEST_GUEST).unwrap();
    assert!(controls.features.ept && !controls.features.vpid);
}
