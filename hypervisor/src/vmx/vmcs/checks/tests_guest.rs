//! The guest-state checks (27.3.1), each broken alone: a VM-entry failure with exit reason 33 | bit 31.

use super::tests::{case, clear, on, or, run, Case, Model};
use super::*;
use crate::vmx::vmcs::controls::entry;
use crate::vmx::vmcs::fake::FakeVmcs;
use crate::vmx::vmcs::fields::{SegmentFields, GUEST_SEGMENTS};

const CANONICAL_HOLE: u64 = 0x0000_8000_0000_0000;
const IF: u64 = 1 << 9;

/// CS and SS at CPL 3 (selectors with RPL 3, DPL 3), everything else as built.
fn ring3(v: &mut FakeVmcs) {
    v.set(Field::GUEST_CS_SELECTOR, 0x0B);
    v.set(Field::GUEST_CS_ACCESS_RIGHTS, 0xA0FB);
    v.set(Field::GUEST_SS_SELECTOR, 0x13);
    v.set(Field::GUEST_SS_ACCESS_RIGHTS, 0xC0F3);
}

/// The built 64-bit guest turned into a 32-bit protected-mode guest: no "IA-32e mode guest", EFER.LME and LMA
/// clear, CS a 32-bit code segment (D/B set, L clear).
pub(super) fn protected_32(v: &mut FakeVmcs) {
    clear(v, Field::VM_ENTRY_CONTROLS, entry::IA32E_MODE_GUEST.into());
    clear(v, Field::GUEST_IA32_EFER, (1 << 8) | (1 << 10));
    v.set(Field::GUEST_CS_ACCESS_RIGHTS, 0xC09B);
}

/// ES, CS, SS, DS, FS and GS: the guest segments but LDTR and TR.
pub(super) const CODE_AND_DATA_SEGMENTS: &[SegmentFields] = GUEST_SEGMENTS.split_at(6).0;

/// CS, SS, DS, ES, FS and GS as virtual-8086 mode needs them (27.3.1.2): base = selector << 4, limit 0xFFFF,
/// access rights 0xF3; and RFLAGS.VM set.
pub(super) fn virtual_8086(v: &mut FakeVmcs) {
    for (i, seg) in CODE_AND_DATA_SEGMENTS.iter().enumerate() {
        let selector = 0x1000 + 0x100 * i as u64;
        v.set(seg.selector, selector);
        v.set(seg.base, selector << 4);
        v.set(seg.limit, 0xFFFF);
        v.set(seg.access_rights, 0xF3);
    }
    or(v, Field::GUEST_RFLAGS, 1 << 17);
}

/// A virtual-8086 guest: 32-bit protected mode with RFLAGS.VM.
fn v86_guest(v: &mut FakeVmcs) {
    protected_32(v);
    virtual_8086(v);
}

pub(super) const GUEST_CASES: &[Case] = &[
    case(Check::GuestCr0Fixed, |v| clear(v, Field::GUEST_CR0, 1 << 5)),
    case(Check::GuestCr0Fixed, |v| {
        clear(v, Field::GUEST_CR0, 1 << 31)
    }),
    on(
        Model::HaswellUnrestricted,
        Check::GuestCr0PgWithoutPe,
        |v| clear(v, Field::GUEST_CR0, 1),
    ),
    // With unrestricted guest, PE and PG leave the fixed bits; the 64-bit guest then lacks paging.
    on(
        Model::HaswellUnrestricted,
        Check::GuestIa32eNeedsPaging,
        |v| clear(v, Field::GUEST_CR0, (1 << 31) | 1),
    ),
    case(Check::GuestCr4Fixed, |v| {
        clear(v, Field::GUEST_CR4, 1 << 13)
    }),
    case(Check::GuestDebugctlReserved, |v| {
        v.set(Field::GUEST_IA32_DEBUGCTL, 1 << 2)
    }),
    case(Check::GuestIa32eNeedsPaging, |v| {
        clear(v, Field::GUEST_CR4, 1 << 5)
    }),
    case(Check::GuestPcideOutsideIa32e, |v| {
        clear(v, Field::VM_ENTRY_CONTROLS, entry::IA32E_MODE_GUEST.into());
        or(v, Field::GUEST_CR4, 1 << 17);
    }),
    case(Check::GuestCr3Width, |v| v.set(Field::GUEST_CR3, 1 << 40)),
    on(Model::Penryn, Check::GuestCr3Width, |v| {
        v.set(Field::GUEST_CR3, 1 << 36)
    }),
    case(Check::GuestDr7High, |v| {
        v.set(Field::GUEST_DR7, (1 << 32) | 0x400)
    }),
    case(Check::GuestSysenterCanonical, |v| {
        v.set(Field::GUEST_IA32_SYSENTER_ESP, CANONICAL_HOLE)
    }),
    case(Check::GuestPat, |v| {
        v.set(Field::GUEST_IA32_PAT, 0x0007_0406_0007_0403)
    }),
    case(Check::GuestEferReserved, |v| {
        or(v, Field::GUEST_IA32_EFER, 1 << 1)
    }),
    case(Check::GuestEferLma, |v| {
        clear(v, Field::GUEST_IA32_EFER, 1 << 10)
    }),
    case(Check::GuestEferLme, |v| {
        clear(v, Field::GUEST_IA32_EFER, 1 << 8)
    }),
    case(Check::GuestTrTi, |v| v.set(Field::GUEST_TR_SELECTOR, 0x1C)),
    case(Check::GuestLdtrTi, |v| {
        v.set(Field::GUEST_LDTR_SELECTOR, 0x24);
        v.set(Field::GUEST_LDTR_ACCESS_RIGHTS, 0x82);
    }),
    case(Check::GuestSsCsRpl, |v| {
        v.set(Field::GUEST_SS_SELECTOR, 0x13)
    }),
    case(Check::GuestV86Base, |v| {
        v86_guest(v);
        v.set(Field::GUEST_DS_BASE, 0x13001);
    }),
    case(Check::GuestV86Base, |v| {
        or(v, Field::GUEST_RFLAGS, 1 << 17);
    }),
    case(Check::GuestBaseCanonical, |v| {
        v.set(Field::GUEST_FS_BASE, CANONICAL_HOLE)
    }),
    case(Check::GuestBaseCanonical, |v| {
        v.set(Field::GUEST_TR_BASE, 1 << 60)
    }),
    case(Check::GuestBaseHigh, |v| {
        v.set(Field::GUEST_DS_BASE, 1 << 32)
    }),
    case(Check::GuestBaseHigh, |v| {
        v.set(Field::GUEST_CS_BASE, 1 << 40)
    }),
    case(Check::GuestCsType, |v| {
        v.set(Field::GUEST_CS_ACCESS_RIGHTS, 0xA093)
    }),
    case(Check::GuestSsType, |v| {
        v.set(Field::GUEST_SS_ACCESS_RIGHTS, 0xC09B)
    }),
    case(Check::GuestDataAccessed, |v| {
        v.set(Field::GUEST_DS_ACCESS_RIGHTS, 0xC092)
    }),
    case(Check::GuestDataCodeReadable, |v| {
        v.set(Field::GUEST_ES_ACCESS_RIGHTS, 0xC099)
    }),
    case(Check::GuestSegmentS, |v| {
        v.set(Field::GUEST_FS_ACCESS_RIGHTS, 0xC083)
    }),
    case(Check::GuestCsDpl, |v| {
        v.set(Field::GUEST_CS_ACCESS_RIGHTS, 0xA0FB)
    }),
    case(Check::GuestSsDpl, |v| {
        v.set(Field::GUEST_CS_ACCESS_RIGHTS, 0xA0FB);
        v.set(Field::GUEST_SS_ACCESS_RIGHTS, 0xC0F3);
    }),
    case(Check::GuestDataDpl, |v| {
        v.set(Field::GUEST_DS_SELECTOR, 0x13)
    }),
    case(Check::GuestSegmentPresent, |v| {
        v.set(Field::GUEST_GS_ACCESS_RIGHTS, 0xC013)
    }),
    case(Check::GuestSegmentReserved, |v| {
        or(v, Field::GUEST_DS_ACCESS_RIGHTS, 1 << 8)
    }),
    case(Check::GuestSegmentReserved, |v| {
        or(v, Field::GUEST_TR_ACCESS_RIGHTS, 1 << 20)
    }),
    case(Check::GuestCsLongAndDefault, |v| {
        v.set(Field::GUEST_CS_ACCESS_RIGHTS, 0xE09B)
    }),
    case(Check::GuestSegmentGranularity, |v| {
        v.set(Field::GUEST_SS_LIMIT, 0xFFFF_F000)
    }),
    case(Check::GuestSegmentGranularity, |v| {
        v.set(Field::GUEST_TR_LIMIT, 0x0010_0067)
    }),
    case(Check::GuestV86Limit, |v| {
        v86_guest(v);
        v.set(Field::GUEST_ES_LIMIT, 0xFFFE);
    }),
    case(Check::GuestV86AccessRights, |v| {
        v86_guest(v);
        v.set(Field::GUEST_FS_ACCESS_RIGHTS, 0xF2);
    }),
    case(Check::GuestV86AccessRights, |v| {
        v86_guest(v);
        v.set(Field::GUEST_CS_ACCESS_RIGHTS, 0xFB);
    }),
    case(Check::GuestTrType, |v| {
        v.set(Field::GUEST_TR_ACCESS_RIGHTS, 0x83)
    }),
    case(Check::GuestTrSystem, |v| {
        v.set(Field::GUEST_TR_ACCESS_RIGHTS, 0x9B)
    }),
    case(Check::GuestTrPresent, |v| {
        v.set(Field::GUEST_TR_ACCESS_RIGHTS, 0x0B)
    }),
    case(Check::GuestTrUnusable, |v| {
        v.set(Field::GUEST_TR_ACCESS_RIGHTS, 0x1_008B)
    }),
    case(Check::GuestLdtrType, |v| {
        v.set(Field::GUEST_LDTR_ACCESS_RIGHTS, 0x83)
    }),
    case(Check::GuestDescriptorTableBase, |v| {
        v.set(Field::GUEST_GDTR_BASE, CANONICAL_HOLE)
    }),
    case(Check::GuestDescriptorTableLimit, |v| {
        v.set(Field::GUEST_IDTR_LIMIT, 0x1_0000)
    }),
    case(Check::GuestRipHigh, |v| {
        v.set(Field::GUEST_CS_ACCESS_RIGHTS, 0xC09B);
        v.set(Field::GUEST_RIP, 1 << 32);
    }),
    case(Check::GuestRipCanonical, |v| {
        v.set(Field::GUEST_RIP, CANONICAL_HOLE)
    }),
    case(Check::GuestRflagsReserved, |v| {
        v.set(Field::GUEST_RFLAGS, 0)
    }),
    case(Check::GuestRflagsReserved, |v| {
        v.set(Field::GUEST_RFLAGS, 0x2 | (1 << 15))
    }),
    case(Check::GuestRflagsReserved, |v| {
        v.set(Field::GUEST_RFLAGS, 0x2 | (1 << 22))
    }),
    // Virtual-8086 segments in an IA-32e mode guest, and in real mode.
    case(Check::GuestRflagsVm, virtual_8086),
    on(Model::HaswellUnrestricted, Check::GuestRflagsVm, |v| {
        v86_guest(v);
        clear(v, Field::GUEST_CR0, (1 << 31) | 1);
    }),
    case(Check::GuestRflagsIfForExternalInterrupt, |v| {
        v.set(Field::VM_ENTRY_INTERRUPTION_INFO, (1 << 31) | 0x20)
    }),
    case(Check::GuestActivityState, |v| {
        v.set(Field::GUEST_ACTIVITY_STATE, 4)
    }),
    case(Check::GuestHltNeedsSsDpl0, |v| {
        ring3(v);
        v.set(Field::GUEST_ACTIVITY_STATE, 1);
    }),
    case(Check::GuestInterruptibilityReserved, |v| {
        v.set(Field::GUEST_INTERRUPTIBILITY_STATE, 1 << 5)
    }),
    case(Check::GuestStiAndMovSs, |v| {
        or(v, Field::GUEST_RFLAGS, IF);
        v.set(Field::GUEST_INTERRUPTIBILITY_STATE, 3);
    }),
    case(Check::GuestStiWithIfClear, |v| {
        v.set(Field::GUEST_INTERRUPTIBILITY_STATE, 1)
    }),
    case(Check::GuestBlockingNotActive, |v| {
        v.set(Field::GUEST_INTERRUPTIBILITY_STATE, 2);
        v.set(Field::GUEST_ACTIVITY_STATE, 1);
    }),
    case(Check::GuestSmiBlockingOutsideSmm, |v| {
        v.set(Field::GUEST_INTERRUPTIBILITY_STATE, 4)
    }),
    case(Check::GuestInjectionBlocked, |v| {
        v.set(Field::VM_ENTRY_INTERRUPTION_INFO, (1 << 31) | (2 << 8) | 2);
        v.set(Field::GUEST_INTERRUPTIBILITY_STATE, 2);
    }),
    case(Check::GuestInjectionBlocked, |v| {
        or(v, Field::GUEST_RFLAGS, IF);
        v.set(Field::VM_ENTRY_INTERRUPTION_INFO, (1 << 31) | 0x20);
        v.set(Field::GUEST_INTERRUPTIBILITY_STATE, 1);
    }),
    case(Check::GuestNmiInjectionBlockedBySti, |v| {
        or(v, Field::GUEST_RFLAGS, IF);
        v.set(Field::VM_ENTRY_INTERRUPTION_INFO, (1 << 31) | (2 << 8) | 2);
        v.set(Field::GUEST_INTERRUPTIBILITY_STATE, 1);
    }),
    case(Check::GuestPendingDebugReserved, |v| {
        v.set(Field::GUEST_PENDING_DEBUG_EXCEPTIONS, 1 << 4)
    }),
    case(Check::VmcsLinkPointer, |v| {
        v.set(Field::VMCS_LINK_POINTER, 0)
    }),
    on(Model::Penryn, Check::VmcsLinkPointer, |v| {
        v.set(Field::VMCS_LINK_POINTER, 0x0080_0000)
    }),
];

#[test]
fn each_guest_state_check_fails_with_exit_reason_33() {
    run(GUEST_CASES);
}

#[test]
fn a_ring_3_guest_and_a_usable_ldtr_are_valid() {
    let (mut vmcs, caps) = super::tests::valid(Model::Haswell);
    ring3(&mut vmcs);
    vmcs.set(Field::GUEST_LDTR_SELECTOR, 0x20);
    vmcs.set(Field::GUEST_LDTR_ACCESS_RIGHTS, 0x82);
    vmcs.set(Field::GUEST_LDTR_LIMIT, 0xFFFF);
    assert_eq!(check_vm_entry(&vmcs, &caps), Ok(()));
}

#[test]
fn unusable_data_segments_are_not_checked() {
    let (mut vmcs, caps) = super::tests::valid(Model::Penryn);
    for field in [
        Field::GUEST_DS_ACCESS_RIGHTS,
        Field::GUEST_ES_ACCESS_RIGHTS,
        Field::GUEST_FS_ACCESS_RIGHTS,
        Field::GUEST_GS_ACCESS_RIGHTS,
        Field::GUEST_SS_ACCESS_RIGHTS,
    ] {
        vmcs.set(field, 0x1_0000);
    }
    vmcs.set(Field::GUEST_DS_BASE, 1 << 40);
    assert_eq!(check_vm_entry(&vmcs, &caps), Ok(()));
}

#[test]
fn guest_state_sees_the_hlt_state_the_test_guest_may_be_resumed_in() {
    let (mut vmcs, caps) = super::tests::valid(Model::Haswell);
    vmcs.set(Field::GUEST_ACTIVITY_STATE, 1);
    assert_eq!(check_vm_entry(&vmcs, &caps), Ok(()));
    let mut caps = caps;
    caps.misc = crate::vmx::vmcs::caps::VmxMisc(caps.misc.0 & !(1 << 6));
    assert_eq!(
        check_vm_entry(&vmcs, &caps).unwrap_err().check(),
        Some(Check::GuestActivityState)
    );
}

/// 27.3.1.2: a virtual-8086 guest is valid with its fixed segments; the protected-mode rules (SS and CS RPL,
/// access-rights types and DPLs) do not apply to it.
#[test]
fn a_virtual_8086_guest_is_valid() {
    let (mut vmcs, caps) = super::tests::valid(Model::Haswell);
    v86_guest(&mut vmcs);
    assert_eq!(check_vm_entry(&vmcs, &caps), Ok(()));
    vmcs.set(Field::GUEST_SS_SELECTOR, 0x1103);
    vmcs.set(Field::GUEST_SS_BASE, 0x11030);
    assert_eq!(check_vm_entry(&vmcs, &caps), Ok(()), "SS RPL 3, CS RPL 0");
}
