//! The allowed side of the guest-state rules (27.3.1): states the test guest never has but the SDM allows (a
//! 32-bit protected-mode guest, a real-mode guest with unrestricted guest, conforming code segments, segments
//! left unusable) pass, and the rules that depend on them fail exactly there.

use super::tests::{clear, or, set_nmi_controls, valid, Model};
use super::tests_guest::{protected_32, CODE_AND_DATA_SEGMENTS};
use super::*;
use crate::vmx::vmcs::controls::{entry, pin};
use crate::vmx::vmcs::fake::FakeVmcs;

const CANONICAL_HOLE: u64 = 0x0000_8000_0000_0000;
const CR0_PE: u64 = 1;
const CR0_PG: u64 = 1 << 31;
const UNUSABLE: u64 = 1 << 16;

fn outcome(vmcs: &FakeVmcs, caps: &VmxCapabilities) -> Option<Check> {
    check_vm_entry(vmcs, caps).err().and_then(|e| e.check())
}

/// A real-mode guest (needs "unrestricted guest"): CR0.PE and PG clear, every segment a 64 KiB read/write data
/// segment at DPL 0 (CS of type 3, as after reset).
fn real_mode(v: &mut FakeVmcs) {
    protected_32(v);
    clear(v, Field::GUEST_CR0, CR0_PE | CR0_PG);
    for seg in CODE_AND_DATA_SEGMENTS {
        v.set(seg.selector, 0);
        v.set(seg.base, 0);
        v.set(seg.limit, 0xFFFF);
        v.set(seg.access_rights, 0x93);
    }
}

/// 27.3.1.1 and 27.3.1.2 outside IA-32e mode: CR4.PCIDE is refused, a 16-bit busy TSS is allowed in TR.
#[test]
fn a_32_bit_protected_mode_guest_is_valid() {
    let (mut vmcs, caps) = valid(Model::Haswell);
    protected_32(&mut vmcs);
    assert_eq!(outcome(&vmcs, &caps), None);
    vmcs.set(Field::GUEST_TR_ACCESS_RIGHTS, 0x83);
    assert_eq!(outcome(&vmcs, &caps), None, "a busy 16-bit TSS");
    or(&mut vmcs, Field::GUEST_CR4, 1 << 17);
    assert_eq!(outcome(&vmcs, &caps), Some(Check::GuestPcideOutsideIa32e));
}

/// 27.3.1.1: the fields an entry control loads are checked only when that control is 1.
#[test]
fn fields_of_entry_controls_that_are_off_are_not_checked() {
    let (mut vmcs, caps) = valid(Model::Haswell);
    let loads = entry::LOAD_DEBUG_CONTROLS | entry::LOAD_IA32_PAT | entry::LOAD_IA32_EFER;
    let controls = vmcs.get(Field::VM_ENTRY_CONTROLS) as u32;
    assert_eq!(controls & loads, loads, "the test guest loads all three");
    assert!(caps.effective_entry().permits(controls & !loads));
    clear(&mut vmcs, Field::VM_ENTRY_CONTROLS, loads.into());
    vmcs.set(Field::GUEST_IA32_DEBUGCTL, 1 << 2);
    vmcs.set(Field::GUEST_DR7, 1 << 32);
    vmcs.set(Field::GUEST_IA32_PAT, 0x0007_0406_0007_0403);
    vmcs.set(Field::GUEST_IA32_EFER, 1 << 1);
    assert_eq!(outcome(&vmcs, &caps), None);
}

/// 27.3.1.1: EFER.LME must equal EFER.LMA only when CR0.PG is 1 (a guest with paging off, possible with
/// unrestricted guest, may have LME set while it prepares IA-32e mode).
#[test]
fn efer_lme_without_lma_is_valid_with_paging_off() {
    let (mut vmcs, caps) = valid(Model::HaswellUnrestricted);
    protected_32(&mut vmcs);
    or(&mut vmcs, Field::GUEST_IA32_EFER, 1 << 8);
    assert_eq!(outcome(&vmcs, &caps), Some(Check::GuestEferLme));
    clear(&mut vmcs, Field::GUEST_CR0, CR0_PG);
    assert_eq!(outcome(&vmcs, &caps), None);
}

/// 27.3.1.3: a limit up to 0xFFFF is valid.
#[test]
fn descriptor_table_limits_up_to_0xffff_are_valid() {
    let (mut vmcs, caps) = valid(Model::Haswell);
    vmcs.set(Field::GUEST_GDTR_LIMIT, 0xFFFF);
    vmcs.set(Field::GUEST_IDTR_LIMIT, 0xFFFF);
    assert_eq!(outcome(&vmcs, &caps), None);
}

/// 27.3.1.4 and 27.3.1.5: an interruption-information field without its valid bit injects nothing, so the
/// rules about what is injected do not apply.
#[test]
fn an_injection_without_the_valid_bit_is_not_looked_at() {
    let (mut vmcs, caps) = valid(Model::Haswell);
    assert_eq!(vmcs.get(Field::GUEST_RFLAGS) & (1 << 9), 0, "IF is clear");
    vmcs.set(Field::VM_ENTRY_INTERRUPTION_INFO, 0x20);
    assert_eq!(outcome(&vmcs, &caps), None);
    vmcs.set(Field::VM_ENTRY_INTERRUPTION_INFO, (2 << 8) | 2);
    vmcs.set(Field::GUEST_INTERRUPTIBILITY_STATE, 2);
    assert_eq!(outcome(&vmcs, &caps), None);
}

/// 27.3.1.5: blocking by NMI stops an NMI from being injected only with "virtual NMIs" (without it the bit
/// is the real NMI blocking, which the injected NMI does not go through).
#[test]
fn nmi_blocking_stops_an_injected_nmi_only_with_virtual_nmis() {
    let nmi_blocked = |pin_bits: u32, blocking: u64| {
        let (mut vmcs, caps) = valid(Model::Haswell);
        set_nmi_controls(&mut vmcs, pin_bits);
        vmcs.set(Field::VM_ENTRY_INTERRUPTION_INFO, (1 << 31) | (2 << 8) | 2);
        vmcs.set(Field::GUEST_INTERRUPTIBILITY_STATE, blocking);
        outcome(&vmcs, &caps)
    };
    let virtual_nmis = pin::NMI_EXITING | pin::VIRTUAL_NMIS;
    assert_eq!(nmi_blocked(pin::NMI_EXITING, 1 << 3), None);
    assert_eq!(nmi_blocked(virtual_nmis, 0), None);
    assert_eq!(
        nmi_blocked(virtual_nmis, 1 << 3),
        Some(Check::GuestInjectionBlocked)
    );
}

/// 27.3.1.5: every defined pending-debug-exception bit (B3-B0, enabled breakpoint, BS, RTM) may be 1 in an
/// active guest that is not blocked.
#[test]
fn every_defined_pending_debug_exception_bit_is_valid() {
    let (mut vmcs, caps) = valid(Model::Haswell);
    vmcs.set(
        Field::GUEST_PENDING_DEBUG_EXCEPTIONS,
        0xF | (1 << 12) | (1 << 14) | (1 << 16),
    );
    assert_eq!(outcome(&vmcs, &caps), None);
}

/// 27.3.1.2: LDTR's base is checked only when LDTR is usable; FS's (and GS's, TR's) always; SS's bits 63:32
/// only when SS is usable.
#[test]
fn bases_of_unusable_segments() {
    let (mut vmcs, caps) = valid(Model::Haswell);
    assert_eq!(vmcs.get(Field::GUEST_LDTR_ACCESS_RIGHTS), UNUSABLE);
    vmcs.set(Field::GUEST_LDTR_BASE, CANONICAL_HOLE);
    assert_eq!(outcome(&vmcs, &caps), None);

    vmcs.set(Field::GUEST_SS_ACCESS_RIGHTS, UNUSABLE);
    vmcs.set(Field::GUEST_SS_BASE, 1 << 32);
    assert_eq!(outcome(&vmcs, &caps), None);

    vmcs.set(Field::GUEST_FS_ACCESS_RIGHTS, UNUSABLE);
    vmcs.set(Field::GUEST_FS_BASE, CANONICAL_HOLE);
    assert_eq!(outcome(&vmcs, &caps), Some(Check::GuestBaseCanonical));
}

/// 27.3.1.2: a data segment may be read-only data, or readable code (conforming or not); only execute-only
/// code is refused.
#[test]
fn data_segments_may_be_read_only_or_readable_code() {
    for ar in [0xC091, 0xC09B, 0xC09F] {
        let (mut vmcs, caps) = valid(Model::Haswell);
        vmcs.set(Field::GUEST_DS_ACCESS_RIGHTS, ar);
        assert_eq!(outcome(&vmcs, &caps), None, "DS access rights {ar:#x}");
    }
}

/// 27.3.1.2: the DPL of a data segment must be at least its selector's RPL, unless the segment is unusable
/// or conforming code (type 12 to 15).
#[test]
fn data_dpl_is_not_checked_for_unusable_or_conforming_segments() {
    let (mut vmcs, caps) = valid(Model::Haswell);
    vmcs.set(Field::GUEST_DS_SELECTOR, 0x13);
    assert_eq!(outcome(&vmcs, &caps), Some(Check::GuestDataDpl));
    vmcs.set(Field::GUEST_DS_ACCESS_RIGHTS, 0xC09F);
    assert_eq!(outcome(&vmcs, &caps), None, "conforming code");
    vmcs.set(Field::GUEST_DS_ACCESS_RIGHTS, UNUSABLE);
    assert_eq!(outcome(&vmcs, &caps), None, "unusable");
}

/// 27.3.1.2: CS's DPL equals SS's for non-conforming code and is at most SS's for conforming code.
#[test]
fn cs_dpl_against_ss_dpl_for_conforming_and_non_conforming_code() {
    // A ring-3 stack: SS selector 0x13, DPL 3; CS selector RPL 3 to match.
    let with_cs = |cs_ar: u64, cs_selector: u64, ss_ar: u64, ss_selector: u64| {
        let (mut vmcs, caps) = valid(Model::Haswell);
        vmcs.set(Field::GUEST_CS_ACCESS_RIGHTS, cs_ar);
        vmcs.set(Field::GUEST_CS_SELECTOR, cs_selector);
        vmcs.set(Field::GUEST_SS_ACCESS_RIGHTS, ss_ar);
        vmcs.set(Field::GUEST_SS_SELECTOR, ss_selector);
        outcome(&vmcs, &caps)
    };
    let ring3_ss = (0xC0F3, 0x13);
    let ring0_ss = (0xC093, 0x10);
    let cases = [
        // Non-conforming (type 11): equal DPLs only.
        (0xA0FB, 0x0B, ring3_ss, None),
        (0xA09B, 0x0B, ring3_ss, Some(Check::GuestCsDpl)),
        // Conforming (type 15): CS DPL 0 runs at CPL 3; DPL 3 above SS's 0 is refused.
        (0xA09F, 0x0B, ring3_ss, None),
        (0xA0FF, 0x08, ring0_ss, Some(Check::GuestCsDpl)),
    ];
    for (cs_ar, cs_selector, (ss_ar, ss_selector), expected) in cases {
        assert_eq!(
            with_cs(cs_ar, cs_selector, ss_ar, ss_selector),
            expected,
            "CS {cs_ar:#x}"
        );
    }
}

/// 27.3.1.1 and 27.3.1.2 with unrestricted guest: real mode is valid, with CS of type 3 at DPL 0 and SS at
/// DPL 0; in protected mode SS's DPL need not match its RPL.
#[test]
fn a_real_mode_guest_is_valid_with_unrestricted_guest() {
    let (mut vmcs, caps) = valid(Model::HaswellUnrestricted);
    real_mode(&mut vmcs);
    assert_eq!(outcome(&vmcs, &caps), None);

    let (mut vmcs, caps) = valid(Model::HaswellUnrestricted);
    real_mode(&mut vmcs);
    vmcs.set(Field::GUEST_SS_ACCESS_RIGHTS, 0xF3);
    assert_eq!(outcome(&vmcs, &caps), Some(Check::GuestSsDpl), "SS DPL 3");

    let (mut vmcs, caps) = valid(Model::HaswellUnrestricted);
    real_mode(&mut vmcs);
    vmcs.set(Field::GUEST_CS_ACCESS_RIGHTS, 0xF3);
    assert_eq!(outcome(&vmcs, &caps), Some(Check::GuestCsDpl), "CS DPL 3");

    // CS of type 3 is at DPL 0 whatever SS's DPL is.
    let (mut vmcs, caps) = valid(Model::HaswellUnrestricted);
    real_mode(&mut vmcs);
    vmcs.set(Field::GUEST_CS_ACCESS_RIGHTS, 0xB3);
    vmcs.set(Field::GUEST_SS_ACCESS_RIGHTS, 0xF3);
    assert_eq!(outcome(&vmcs, &caps), Some(Check::GuestCsDpl), "CS DPL 1");

    // SS is at DPL 0 with CS of type 3 even in protected mode, and in real mode even with a code CS.
    let (mut vmcs, caps) = valid(Model::HaswellUnrestricted);
    vmcs.set(Field::GUEST_CS_ACCESS_RIGHTS, 0xA093);
    vmcs.set(Field::GUEST_SS_ACCESS_RIGHTS, 0xC0F3);
    assert_eq!(
        outcome(&vmcs, &caps),
        Some(Check::GuestSsDpl),
        "protected mode, CS type 3"
    );
    let (mut vmcs, caps) = valid(Model::HaswellUnrestricted);
    real_mode(&mut vmcs);
    vmcs.set(Field::GUEST_CS_ACCESS_RIGHTS, 0xFB);
    vmcs.set(Field::GUEST_SS_ACCESS_RIGHTS, 0xF3);
    assert_eq!(
        outcome(&vmcs, &caps),
        Some(Check::GuestSsDpl),
        "real mode, CS type 11"
    );

    let (mut vmcs, caps) = valid(Model::HaswellUnrestricted);
    real_mode(&mut vmcs);
    vmcs.set(Field::GUEST_CS_ACCESS_RIGHTS, 0x91);
    assert_eq!(outcome(&vmcs, &caps), Some(Check::GuestCsType), "CS type 1");

    // Without unrestricted guest, type 3 is no code segment.
    let (mut vmcs, caps) = valid(Model::Haswell);
    vmcs.set(Field::GUEST_CS_ACCESS_RIGHTS, 0xA093);
    assert_eq!(outcome(&vmcs, &caps), Some(Check::GuestCsType));

    // Protected mode, ring-3 code and stack, SS selector RPL 0: allowed with unrestricted guest only.
    for (model, expected) in [
        (Model::HaswellUnrestricted, None),
        (Model::Haswell, Some(Check::GuestSsCsRpl)),
    ] {
        let (mut vmcs, caps) = valid(model);
        vmcs.set(Field::GUEST_CS_ACCESS_RIGHTS, 0xA0FB);
        vmcs.set(Field::GUEST_SS_ACCESS_RIGHTS, 0xC0F3);
        vmcs.set(Field::GUEST_CS_SELECTOR, 0x0B);
        assert_eq!(outcome(&vmcs, &caps), expected, "{model:?}");
    }
}

/// 28.2.1: the exit qualification of a VM-entry failure is 4 for the VMCS link pointer, 3 for an NMI injected
/// into blocking by STI, 0 for every other guest-state check.
#[test]
fn exit_qualifications_of_guest_state_failures() {
    for check in Check::ALL {
        let expected = match check {
            Check::VmcsLinkPointer => 4,
            Check::GuestNmiInjectionBlockedBySti => 3,
            _ => 0,
        };
        assert_eq!(check.qualification(), expected, "{check:?}");
    }
}
