//! SDM vol. 3C 27.3.1, "Checks on the Guest State Area" (VM-entry failure, exit reason 33).

use super::controls::{TYPE_EXTERNAL_INTERRUPT, TYPE_NMI};
use super::{
    canonical, require, valid_pat, within_width, Check, ControlWords, Outcome, EFER_LMA, EFER_LME,
    EFER_VALID,
};
use crate::vmx::vmcs::caps::VmxCapabilities;
use crate::vmx::vmcs::controls::{entry, pin, secondary};
use crate::vmx::vmcs::fields::{Field, SegmentFields, GUEST_SEGMENTS};
use crate::vmx::vmcs::segment::{rpl, ti, AccessRights};
use crate::vmx::vmcs::VmcsAccess;

const CR0_PE: u64 = 1 << 0;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const CR4_PCIDE: u64 = 1 << 17;
const RFLAGS_FIXED1: u64 = 1 << 1;
const RFLAGS_IF: u64 = 1 << 9;
const RFLAGS_VM: u64 = 1 << 17;
/// Bits 63:22, 15, 5 and 3.
const RFLAGS_RESERVED: u64 = 0xFFFF_FFFF_FFC0_8028;
/// IA32_DEBUGCTL bits that may be 1: 0, 1 and 6 to 15 (bits 5:2 and 63:16 are reserved).
const DEBUGCTL_VALID: u64 = 0xFFC3;
/// Pending debug exceptions: B3-B0 (3:0), enabled breakpoint (12), BS (14), RTM (16).
const PENDING_DEBUG_VALID: u64 = 0xF | (1 << 12) | (1 << 14) | (1 << 16);
const BLOCKING_BY_STI: u64 = 1 << 0;
const BLOCKING_BY_MOV_SS: u64 = 1 << 1;
const BLOCKING_BY_SMI: u64 = 1 << 2;
const BLOCKING_BY_NMI: u64 = 1 << 3;
const ACTIVITY_ACTIVE: u64 = 0;
const ACTIVITY_HLT: u64 = 1;

/// One segment register as read from the VMCS.
#[derive(Debug, Clone, Copy)]
struct Seg {
    fields: SegmentFields,
    selector: u16,
    base: u64,
    limit: u32,
    ar: AccessRights,
}

fn read_segment(vmcs: &impl VmcsAccess, fields: SegmentFields) -> Result<Seg, super::EntryError> {
    Ok(Seg {
        fields,
        selector: vmcs.vmread(fields.selector)? as u16,
        base: vmcs.vmread(fields.base)?,
        limit: vmcs.vmread(fields.limit)? as u32,
        ar: AccessRights(vmcs.vmread(fields.access_rights)? as u32),
    })
}

pub(super) fn check(vmcs: &impl VmcsAccess, caps: &VmxCapabilities, w: &ControlWords) -> Outcome {
    let ia32e = w.entry & entry::IA32E_MODE_GUEST != 0;
    let unrestricted = w.secondary & secondary::UNRESTRICTED_GUEST != 0;

    // 27.3.1.1, Checks on Guest Control Registers, Debug Registers, and MSRs.
    let cr0 = vmcs.vmread(Field::GUEST_CR0)?;
    let fixed0 = if unrestricted {
        caps.cr0_fixed0 & !(CR0_PE | CR0_PG)
    } else {
        caps.cr0_fixed0
    };
    require(
        cr0 & fixed0 == fixed0 && cr0 & !caps.cr0_fixed1 == 0,
        Check::GuestCr0Fixed,
        Field::GUEST_CR0,
        cr0,
    )?;
    require(
        cr0 & CR0_PG == 0 || cr0 & CR0_PE != 0,
        Check::GuestCr0PgWithoutPe,
        Field::GUEST_CR0,
        cr0,
    )?;
    let cr4 = vmcs.vmread(Field::GUEST_CR4)?;
    require(
        cr4 & caps.cr4_fixed0 == caps.cr4_fixed0 && cr4 & !caps.cr4_fixed1 == 0,
        Check::GuestCr4Fixed,
        Field::GUEST_CR4,
        cr4,
    )?;
    let load_debug = w.entry & entry::LOAD_DEBUG_CONTROLS != 0;
    if load_debug {
        let debugctl = vmcs.vmread(Field::GUEST_IA32_DEBUGCTL)?;
        require(
            debugctl & !DEBUGCTL_VALID == 0,
            Check::GuestDebugctlReserved,
            Field::GUEST_IA32_DEBUGCTL,
            debugctl,
        )?;
    }
    if ia32e {
        require(
            cr0 & CR0_PG != 0,
            Check::GuestIa32eNeedsPaging,
            Field::GUEST_CR0,
            cr0,
        )?;
        require(
            cr4 & CR4_PAE != 0,
            Check::GuestIa32eNeedsPaging,
            Field::GUEST_CR4,
            cr4,
        )?;
    } else {
        require(
            cr4 & CR4_PCIDE == 0,
            Check::GuestPcideOutsideIa32e,
            Field::GUEST_CR4,
            cr4,
        )?;
    }
    let cr3 = vmcs.vmread(Field::GUEST_CR3)?;
    require(
        within_width(cr3, caps.maxphyaddr),
        Check::GuestCr3Width,
        Field::GUEST_CR3,
        cr3,
    )?;
    if load_debug {
        let dr7 = vmcs.vmread(Field::GUEST_DR7)?;
        require(dr7 >> 32 == 0, Check::GuestDr7High, Field::GUEST_DR7, dr7)?;
    }
    for field in [
        Field::GUEST_IA32_SYSENTER_ESP,
        Field::GUEST_IA32_SYSENTER_EIP,
    ] {
        let value = vmcs.vmread(field)?;
        require(
            canonical(value),
            Check::GuestSysenterCanonical,
            field,
            value,
        )?;
    }
    if w.entry & entry::LOAD_IA32_PAT != 0 {
        let pat = vmcs.vmread(Field::GUEST_IA32_PAT)?;
        require(valid_pat(pat), Check::GuestPat, Field::GUEST_IA32_PAT, pat)?;
    }
    if w.entry & entry::LOAD_IA32_EFER != 0 {
        let field = Field::GUEST_IA32_EFER;
        let efer = vmcs.vmread(field)?;
        require(
            efer & !EFER_VALID == 0,
            Check::GuestEferReserved,
            field,
            efer,
        )?;
        let lma = efer & EFER_LMA != 0;
        require(lma == ia32e, Check::GuestEferLma, field, efer)?;
        let lme = efer & EFER_LME != 0;
        require(
            cr0 & CR0_PG == 0 || lme == lma,
            Check::GuestEferLme,
            field,
            efer,
        )?;
    }

    // 27.3.1.2, Checks on Guest Segment Registers. Whether the guest will be in virtual-8086 mode is RFLAGS.VM
    // as VM entry loads it (whether VM may be 1 at all is checked with RFLAGS, 27.3.1.4).
    let rflags = vmcs.vmread(Field::GUEST_RFLAGS)?;
    let v86 = rflags & RFLAGS_VM != 0;
    let mut segs = [None; 8];
    for (slot, fields) in segs.iter_mut().zip(GUEST_SEGMENTS) {
        *slot = Some(read_segment(vmcs, fields)?);
    }
    let [es, cs, ss, ds, fs, gs, ldtr, tr] = segs.map(|seg| seg.expect("every segment was read"));
    let mode = SegmentMode {
        cr0,
        ia32e,
        unrestricted,
        v86,
    };
    segments(&mode, &[es, cs, ss, ds, fs, gs, ldtr, tr])?;

    // 27.3.1.3, Checks on Guest Descriptor-Table Registers.
    for field in [Field::GUEST_GDTR_BASE, Field::GUEST_IDTR_BASE] {
        let base = vmcs.vmread(field)?;
        require(
            canonical(base),
            Check::GuestDescriptorTableBase,
            field,
            base,
        )?;
    }
    for field in [Field::GUEST_GDTR_LIMIT, Field::GUEST_IDTR_LIMIT] {
        let limit = vmcs.vmread(field)?;
        require(
            limit >> 16 == 0,
            Check::GuestDescriptorTableLimit,
            field,
            limit,
        )?;
    }

    // 27.3.1.4, Checks on Guest RIP and RFLAGS.
    let rip = vmcs.vmread(Field::GUEST_RIP)?;
    if ia32e && cs.ar.long_mode() {
        require(
            canonical(rip),
            Check::GuestRipCanonical,
            Field::GUEST_RIP,
            rip,
        )?;
    } else {
        require(rip >> 32 == 0, Check::GuestRipHigh, Field::GUEST_RIP, rip)?;
    }
    require(
        rflags & RFLAGS_RESERVED == 0 && rflags & RFLAGS_FIXED1 != 0,
        Check::GuestRflagsReserved,
        Field::GUEST_RFLAGS,
        rflags,
    )?;
    require(
        rflags & RFLAGS_VM == 0 || (!ia32e && cr0 & CR0_PE != 0),
        Check::GuestRflagsVm,
        Field::GUEST_RFLAGS,
        rflags,
    )?;
    let injection = vmcs.vmread(Field::VM_ENTRY_INTERRUPTION_INFO)?;
    let injected_type = (injection & (1 << 31) != 0).then_some(((injection >> 8) & 7) as u32);
    require(
        injected_type != Some(TYPE_EXTERNAL_INTERRUPT) || rflags & RFLAGS_IF != 0,
        Check::GuestRflagsIfForExternalInterrupt,
        Field::GUEST_RFLAGS,
        rflags,
    )?;

    // 27.3.1.5, Checks on Guest Non-Register State.
    let activity = vmcs.vmread(Field::GUEST_ACTIVITY_STATE)?;
    require(
        activity <= 3 && caps.misc.supports_activity_state(activity as u32),
        Check::GuestActivityState,
        Field::GUEST_ACTIVITY_STATE,
        activity,
    )?;
    require(
        activity != ACTIVITY_HLT || ss.ar.dpl() == 0,
        Check::GuestHltNeedsSsDpl0,
        Field::GUEST_ACTIVITY_STATE,
        activity,
    )?;
    let field = Field::GUEST_INTERRUPTIBILITY_STATE;
    let blocking = vmcs.vmread(field)?;
    require(
        blocking >> 5 == 0,
        Check::GuestInterruptibilityReserved,
        field,
        blocking,
    )?;
    let sti_or_mov_ss = BLOCKING_BY_STI | BLOCKING_BY_MOV_SS;
    require(
        blocking & sti_or_mov_ss != sti_or_mov_ss,
        Check::GuestStiAndMovSs,
        field,
        blocking,
    )?;
    require(
        rflags & RFLAGS_IF != 0 || blocking & BLOCKING_BY_STI == 0,
        Check::GuestStiWithIfClear,
        field,
        blocking,
    )?;
    require(
        blocking & sti_or_mov_ss == 0 || activity == ACTIVITY_ACTIVE,
        Check::GuestBlockingNotActive,
        field,
        blocking,
    )?;
    require(
        blocking & BLOCKING_BY_SMI == 0,
        Check::GuestSmiBlockingOutsideSmm,
        field,
        blocking,
    )?;
    match injected_type {
        Some(TYPE_EXTERNAL_INTERRUPT) => {
            require(
                blocking & sti_or_mov_ss == 0,
                Check::GuestInjectionBlocked,
                field,
                blocking,
            )?;
        }
        Some(TYPE_NMI) => {
            require(
                blocking & BLOCKING_BY_MOV_SS == 0,
                Check::GuestInjectionBlocked,
                field,
                blocking,
            )?;
            let nmi_blocked = w.pin & pin::VIRTUAL_NMIS != 0 && blocking & BLOCKING_BY_NMI != 0;
            require(!nmi_blocked, Check::GuestInjectionBlocked, field, blocking)?;
            require(
                blocking & BLOCKING_BY_STI == 0,
                Check::GuestNmiInjectionBlockedBySti,
                field,
                blocking,
            )?;
        }
        _ => {}
    }
    let field = Field::GUEST_PENDING_DEBUG_EXCEPTIONS;
    let pending = vmcs.vmread(field)?;
    require(
        pending & !PENDING_DEBUG_VALID == 0,
        Check::GuestPendingDebugReserved,
        field,
        pending,
    )?;
    let link = vmcs.vmread(Field::VMCS_LINK_POINTER)?;
    require(
        link == u64::MAX,
        Check::VmcsLinkPointer,
        Field::VMCS_LINK_POINTER,
        link,
    )
}

/// What the segment rules depend on.
struct SegmentMode {
    cr0: u64,
    ia32e: bool,
    unrestricted: bool,
    /// RFLAGS.VM: the guest will be in virtual-8086 mode.
    v86: bool,
}

/// The access-rights field of a segment and its value, as a violation names them.
fn ar(seg: Seg) -> (Field, u64) {
    (seg.fields.access_rights, u64::from(seg.ar.0))
}

/// The segment-register rules of 27.3.1.2, in the SDM's order: selectors, bases, then limits and access
/// rights (those of CS, SS, DS, ES, FS and GS are fixed in virtual-8086 mode), then TR and LDTR.
fn segments(mode: &SegmentMode, segs: &[Seg; 8]) -> Outcome {
    let [es, cs, ss, ds, fs, gs, ldtr, tr] = *segs;
    let (ia32e, unrestricted) = (mode.ia32e, mode.unrestricted);

    // Selector fields.
    require(
        !ti(tr.selector),
        Check::GuestTrTi,
        tr.fields.selector,
        tr.selector.into(),
    )?;
    require(
        ldtr.ar.unusable() || !ti(ldtr.selector),
        Check::GuestLdtrTi,
        ldtr.fields.selector,
        ldtr.selector.into(),
    )?;
    require(
        unrestricted || mode.v86 || rpl(ss.selector) == rpl(cs.selector),
        Check::GuestSsCsRpl,
        ss.fields.selector,
        ss.selector.into(),
    )?;

    // Base-address fields.
    if mode.v86 {
        for seg in [cs, ss, ds, es, fs, gs] {
            require(
                seg.base == u64::from(seg.selector) << 4,
                Check::GuestV86Base,
                seg.fields.base,
                seg.base,
            )?;
        }
    }
    for seg in [tr, fs, gs, ldtr] {
        if seg.fields.name != "LDTR" || !seg.ar.unusable() {
            require(
                canonical(seg.base),
                Check::GuestBaseCanonical,
                seg.fields.base,
                seg.base,
            )?;
        }
    }
    for seg in [cs, ss, ds, es] {
        if seg.fields.name == "CS" || !seg.ar.unusable() {
            require(
                seg.base >> 32 == 0,
                Check::GuestBaseHigh,
                seg.fields.base,
                seg.base,
            )?;
        }
    }

    if mode.v86 {
        virtual_8086(&[cs, ss, ds, es, fs, gs])?;
    } else {
        code_and_data_access_rights(mode, &[cs, ss, ds, es, fs, gs])?;
    }

    // TR.
    let (field, value) = ar(tr);
    let tr_type_ok = match tr.ar.segment_type() {
        11 => true,
        3 => !ia32e,
        _ => false,
    };
    require(tr_type_ok, Check::GuestTrType, field, value)?;
    require(!tr.ar.code_or_data(), Check::GuestTrSystem, field, value)?;
    require(tr.ar.present(), Check::GuestTrPresent, field, value)?;
    require(
        tr.ar.reserved_bits() == 0,
        Check::GuestSegmentReserved,
        field,
        value,
    )?;
    require(
        tr.ar.limit_consistent(tr.limit),
        Check::GuestSegmentGranularity,
        field,
        value,
    )?;
    require(!tr.ar.unusable(), Check::GuestTrUnusable, field, value)?;

    // LDTR, when usable.
    if !ldtr.ar.unusable() {
        let (field, value) = ar(ldtr);
        require(
            ldtr.ar.segment_type() == 2 && !ldtr.ar.code_or_data() && ldtr.ar.present(),
            Check::GuestLdtrType,
            field,
            value,
        )?;
        require(
            ldtr.ar.reserved_bits() == 0,
            Check::GuestSegmentReserved,
            field,
            value,
        )?;
        require(
            ldtr.ar.limit_consistent(ldtr.limit),
            Check::GuestSegmentGranularity,
            field,
            value,
        )?;
    }
    Ok(())
}

/// Virtual-8086 mode: CS, SS, DS, ES, FS and GS each with limit 0xFFFF and access rights 0xF3 (the base was
/// checked with the other bases).
fn virtual_8086(segs: &[Seg; 6]) -> Outcome {
    for seg in segs {
        require(
            seg.limit == 0xFFFF,
            Check::GuestV86Limit,
            seg.fields.limit,
            seg.limit.into(),
        )?;
    }
    for &seg in segs {
        let (field, value) = ar(seg);
        require(value == 0xF3, Check::GuestV86AccessRights, field, value)?;
    }
    Ok(())
}

/// Outside virtual-8086 mode: the access rights of CS (always) and of SS, DS, ES, FS, GS when usable, with
/// their limits against the granularity bit.
fn code_and_data_access_rights(mode: &SegmentMode, segs: &[Seg; 6]) -> Outcome {
    let [cs, ss, ds, es, fs, gs] = *segs;
    let (cr0, ia32e, unrestricted) = (mode.cr0, mode.ia32e, mode.unrestricted);
    let (field, value) = ar(cs);
    let cs_type = cs.ar.segment_type();
    require(
        matches!(cs_type, 9 | 11 | 13 | 15) || (unrestricted && cs_type == 3),
        Check::GuestCsType,
        field,
        value,
    )?;
    if !ss.ar.unusable() {
        let (field, value) = ar(ss);
        require(
            matches!(ss.ar.segment_type(), 3 | 7),
            Check::GuestSsType,
            field,
            value,
        )?;
    }
    for seg in [ds, es, fs, gs] {
        if seg.ar.unusable() {
            continue;
        }
        let (field, value) = ar(seg);
        let kind = seg.ar.segment_type();
        require(kind & 1 != 0, Check::GuestDataAccessed, field, value)?;
        require(
            kind & 8 == 0 || kind & 2 != 0,
            Check::GuestDataCodeReadable,
            field,
            value,
        )?;
    }
    for seg in [cs, ss, ds, es, fs, gs] {
        if seg.fields.name == "CS" || !seg.ar.unusable() {
            let (field, value) = ar(seg);
            require(seg.ar.code_or_data(), Check::GuestSegmentS, field, value)?;
        }
    }
    let cs_dpl_ok = match cs_type {
        3 => cs.ar.dpl() == 0,
        9 | 11 => cs.ar.dpl() == ss.ar.dpl(),
        _ => cs.ar.dpl() <= ss.ar.dpl(),
    };
    let (field, value) = ar(cs);
    require(cs_dpl_ok, Check::GuestCsDpl, field, value)?;
    let ss_dpl_ok = if unrestricted {
        !(cs_type == 3 || cr0 & CR0_PE == 0) || ss.ar.dpl() == 0
    } else {
        ss.ar.dpl() == rpl(ss.selector)
    };
    let (field, value) = ar(ss);
    require(ss_dpl_ok, Check::GuestSsDpl, field, value)?;
    if !unrestricted {
        for seg in [ds, es, fs, gs] {
            if !seg.ar.unusable() && seg.ar.segment_type() <= 11 {
                let (field, value) = ar(seg);
                require(
                    seg.ar.dpl() >= rpl(seg.selector),
                    Check::GuestDataDpl,
                    field,
                    value,
                )?;
            }
        }
    }
    for seg in [cs, ss, ds, es, fs, gs] {
        if seg.fields.name == "CS" || !seg.ar.unusable() {
            let (field, value) = ar(seg);
            require(seg.ar.present(), Check::GuestSegmentPresent, field, value)?;
            require(
                seg.ar.reserved_bits() == 0,
                Check::GuestSegmentReserved,
                field,
                value,
            )?;
        }
    }
    let (field, value) = ar(cs);
    require(
        !(ia32e && cs.ar.long_mode() && cs.ar.default_big()),
        Check::GuestCsLongAndDefault,
        field,
        value,
    )?;
    for seg in [cs, ss, ds, es, fs, gs] {
        if seg.fields.name == "CS" || !seg.ar.unusable() {
            let (field, value) = ar(seg);
            require(
                seg.ar.limit_consistent(seg.limit),
                Check::GuestSegmentGranularity,
                field,
                value,
            )?;
        }
    }
    Ok(())
}
