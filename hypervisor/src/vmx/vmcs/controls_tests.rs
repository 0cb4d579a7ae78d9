use super::*;
use crate::vmx::vmcs::caps::{
    AllowedBits, IA32_VMX_EPT_VPID_CAP, IA32_VMX_EXIT_CTLS, IA32_VMX_PROCBASED_CTLS,
    IA32_VMX_PROCBASED_CTLS2, IA32_VMX_TRUE_ENTRY_CTLS, IA32_VMX_TRUE_EXIT_CTLS,
    IA32_VMX_TRUE_PINBASED_CTLS, IA32_VMX_TRUE_PROCBASED_CTLS,
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

/// Every control bit of the five words at the bit the SDM gives it (vol. 3C tables 25-5 to 25-7, 25-13,
/// 25-15): the constants are the specification, so each is pinned to its number here.
#[test]
fn every_control_constant_is_at_its_sdm_bit() {
    let bit = |n: u32| 1u32 << n;
    for (value, n) in [
        (pin::EXTERNAL_INTERRUPT_EXITING, 0),
        (pin::NMI_EXITING, 3),
        (pin::VIRTUAL_NMIS, 5),
        (pin::ACTIVATE_PREEMPTION_TIMER, 6),
        (pin::PROCESS_POSTED_INTERRUPTS, 7),
        (primary::INTERRUPT_WINDOW_EXITING, 2),
        (primary::USE_TSC_OFFSETTING, 3),
        (primary::HLT_EXITING, 7),
        (primary::INVLPG_EXITING, 9),
        (primary::MWAIT_EXITING, 10),
        (primary::RDPMC_EXITING, 11),
        (primary::RDTSC_EXITING, 12),
        (primary::CR3_LOAD_EXITING, 15),
        (primary::CR3_STORE_EXITING, 16),
        (primary::ACTIVATE_TERTIARY_CONTROLS, 17),
        (primary::CR8_LOAD_EXITING, 19),
        (primary::CR8_STORE_EXITING, 20),
        (primary::USE_TPR_SHADOW, 21),
        (primary::NMI_WINDOW_EXITING, 22),
        (primary::MOV_DR_EXITING, 23),
        (primary::UNCONDITIONAL_IO_EXITING, 24),
        (primary::USE_IO_BITMAPS, 25),
        (primary::MONITOR_TRAP_FLAG, 27),
        (primary::USE_MSR_BITMAPS, 28),
        (primary::MONITOR_EXITING, 29),
        (primary::PAUSE_EXITING, 30),
        (primary::ACTIVATE_SECONDARY_CONTROLS, 31),
        (secondary::VIRTUALIZE_APIC_ACCESSES, 0),
        (secondary::ENABLE_EPT, 1),
        (secondary::DESCRIPTOR_TABLE_EXITING, 2),
        (secondary::ENABLE_RDTSCP, 3),
        (secondary::VIRTUALIZE_X2APIC_MODE, 4),
        (secondary::ENABLE_VPID, 5),
        (secondary::WBINVD_EXITING, 6),
        (secondary::UNRESTRICTED_GUEST, 7),
        (secondary::APIC_REGISTER_VIRTUALIZATION, 8),
        (secondary::VIRTUAL_INTERRUPT_DELIVERY, 9),
        (secondary::PAUSE_LOOP_EXITING, 10),
        (secondary::ENABLE_INVPCID, 12),
        (secondary::ENABLE_VM_FUNCTIONS, 13),
        (secondary::VMCS_SHADOWING, 14),
        (secondary::ENABLE_PML, 17),
        (exit::SAVE_DEBUG_CONTROLS, 2),
        (exit::HOST_ADDRESS_SPACE_SIZE, 9),
        (exit::LOAD_IA32_PERF_GLOBAL_CTRL, 12),
        (exit::ACKNOWLEDGE_INTERRUPT_ON_EXIT, 15),
        (exit::SAVE_IA32_PAT, 18),
        (exit::LOAD_IA32_PAT, 19),
        (exit::SAVE_IA32_EFER, 20),
        (exit::LOAD_IA32_EFER, 21),
        (exit::SAVE_PREEMPTION_TIMER, 22),
        (entry::LOAD_DEBUG_CONTROLS, 2),
        (entry::IA32E_MODE_GUEST, 9),
        (entry::ENTRY_TO_SMM, 10),
        (entry::DEACTIVATE_DUAL_MONITOR, 11),
        (entry::LOAD_IA32_PERF_GLOBAL_CTRL, 13),
        (entry::LOAD_IA32_PAT, 14),
        (entry::LOAD_IA32_EFER, 15),
    ] {
        assert_eq!(value, bit(n), "bit {n}");
    }
}

/// A policy that wants every optional feature.
const EVERYTHING: ControlPolicy = ControlPolicy {
    ept: true,
    vpid: true,
    unrestricted_guest: true,
    msr_bitmaps: true,
    efer: true,
    pat: true,
    acknowledge_interrupt_on_exit: true,
};

/// `caps` with `mask` removed from the allowed-1 settings of the MSR that VM entry checks for `word`.
fn without(mut caps: VmxCapabilities, word: ControlWord, mask: u32) -> VmxCapabilities {
    let cut = |a: AllowedBits| AllowedBits::new(a.msr, a.raw & !(u64::from(mask) << 32));
    match word {
        ControlWord::PrimaryProcBased => {
            caps.procbased = cut(caps.procbased);
            caps.true_procbased = caps.true_procbased.map(cut);
        }
        ControlWord::SecondaryProcBased => caps.procbased2 = caps.procbased2.map(cut),
        ControlWord::Exit => {
            caps.exit = cut(caps.exit);
            caps.true_exit = caps.true_exit.map(cut);
        }
        ControlWord::Entry => {
            caps.entry = cut(caps.entry);
            caps.true_entry = caps.true_entry.map(cut);
        }
        ControlWord::PinBased => {
            caps.pinbased = cut(caps.pinbased);
            caps.true_pinbased = caps.true_pinbased.map(cut);
        }
    }
    caps
}

/// Each optional control is set exactly when the policy wants it and the capability MSRs allow it (both the
/// exit and the entry side for the EFER and PAT pairs); taking one away drops that feature and its bits only.
#[test]
fn each_optional_control_follows_the_policy_and_the_capability() {
    let caps = haswell_caps();
    let all = choose_controls(&caps, &EVERYTHING).unwrap();
    let f = all.features;
    assert!(f.ept && f.vpid && f.unrestricted_guest && f.msr_bitmaps);
    assert!(
        f.load_efer && f.save_efer && f.load_pat && f.save_pat && f.acknowledge_interrupt_on_exit
    );
    assert_ne!(all.primary & primary::USE_MSR_BITMAPS, 0);
    assert_eq!(
        all.secondary
            & (secondary::ENABLE_EPT | secondary::ENABLE_VPID | secondary::UNRESTRICTED_GUEST),
        secondary::ENABLE_EPT | secondary::ENABLE_VPID | secondary::UNRESTRICTED_GUEST
    );
    let exit_all = exit::LOAD_IA32_EFER
        | exit::SAVE_IA32_EFER
        | exit::LOAD_IA32_PAT
        | exit::SAVE_IA32_PAT
        | exit::ACKNOWLEDGE_INTERRUPT_ON_EXIT;
    assert_eq!(all.exit & exit_all, exit_all);
    assert_eq!(
        all.entry & (entry::LOAD_IA32_EFER | entry::LOAD_IA32_PAT),
        entry::LOAD_IA32_EFER | entry::LOAD_IA32_PAT
    );

    type Case = (
        ControlWord,
        u32,
        fn(&Features) -> bool,
        &'static [(ControlWord, u32)],
    );
    let cases: [Case; 7] = [
        (
            ControlWord::PrimaryProcBased,
            primary::USE_MSR_BITMAPS,
            |f| f.msr_bitmaps,
            &[(ControlWord::PrimaryProcBased, primary::USE_MSR_BITMAPS)],
        ),
        (
            ControlWord::Exit,
            exit::SAVE_IA32_EFER,
            |f| f.save_efer,
            &[(ControlWord::Exit, exit::SAVE_IA32_EFER)],
        ),
        (
            ControlWord::Exit,
            exit::SAVE_IA32_PAT,
            |f| f.save_pat,
            &[(ControlWord::Exit, exit::SAVE_IA32_PAT)],
        ),
        (
            ControlWord::Exit,
            exit::ACKNOWLEDGE_INTERRUPT_ON_EXIT,
            |f| f.acknowledge_interrupt_on_exit,
            &[(ControlWord::Exit, exit::ACKNOWLEDGE_INTERRUPT_ON_EXIT)],
        ),
        // The pairs: without the entry side the exit side is not used either.
        (
            ControlWord::Entry,
            entry::LOAD_IA32_EFER,
            |f| f.load_efer || f.save_efer,
            &[
                (
                    ControlWord::Exit,
                    exit::LOAD_IA32_EFER | exit::SAVE_IA32_EFER,
                ),
                (ControlWord::Entry, entry::LOAD_IA32_EFER),
            ],
        ),
        (
            ControlWord::Entry,
            entry::LOAD_IA32_PAT,
            |f| f.load_pat || f.save_pat,
            &[
                (ControlWord::Exit, exit::LOAD_IA32_PAT | exit::SAVE_IA32_PAT),
                (ControlWord::Entry, entry::LOAD_IA32_PAT),
            ],
        ),
        (
            ControlWord::Exit,
            exit::LOAD_IA32_EFER,
            |f| f.load_efer || f.save_efer,
            &[
                (
                    ControlWord::Exit,
                    exit::LOAD_IA32_EFER | exit::SAVE_IA32_EFER,
                ),
                (ControlWord::Entry, entry::LOAD_IA32_EFER),
            ],
        ),
    ];
    let word_of = |c: &Controls, w: ControlWord| match w {
        ControlWord::PinBased => c.pin,
        ControlWord::PrimaryProcBased => c.primary,
        ControlWord::SecondaryProcBased => c.secondary,
        ControlWord::Exit => c.exit,
        ControlWord::Entry => c.entry,
    };
    for (word, mask, feature, cleared) in cases {
        let c = choose_controls(&without(caps, word, mask), &EVERYTHING).unwrap();
        assert!(!feature(&c.features), "{} 0x{mask:x}", word.name());
        for &(w, m) in cleared {
            assert_eq!(word_of(&c, w) & m, 0, "{} 0x{m:x}", w.name());
        }
        // Everything else is as with the full capabilities.
        for w in [
            ControlWord::PinBased,
            ControlWord::PrimaryProcBased,
            ControlWord::SecondaryProcBased,
            ControlWord::Exit,
            ControlWord::Entry,
        ] {
            let m = cleared
                .iter()
                .filter(|(cw, _)| *cw == w)
                .fold(0, |acc, (_, m)| acc | m);
            assert_eq!(word_of(&c, w) & !m, word_of(&all, w) & !m, "{}", w.name());
        }
    }
    // The policy alone turns each one off too.
    let none = choose_controls(&caps, &ControlPolicy::MINIMAL).unwrap();
    assert_eq!(none.primary & primary::USE_MSR_BITMAPS, 0);
    assert_eq!(none.exit & exit_all, 0);
    assert_eq!(
        none.entry & (entry::LOAD_IA32_EFER | entry::LOAD_IA32_PAT),
        0
    );
    assert!(!none.secondary_active());
}
