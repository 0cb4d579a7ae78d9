//! The control rules of 27.2.1 from both sides: a control that is off leaves its fields unchecked, and each
//! capability variant (UC or WB EPT structures, 5-level walks, zero-length injection, unrestricted guest in
//! real mode) allows exactly what it says. Only the control checks run here, so a control word can be tried
//! with guest state that only a guest using it would have.

use super::tests::{clear, or, set_nmi_controls, valid, Model};
use super::*;
use crate::vmx::vmcs::caps::{AllowedBits, EptVpidCap, VmxMisc};
use crate::vmx::vmcs::controls::{entry, pin, primary, secondary};
use crate::vmx::vmcs::fake::FakeVmcs;

/// The first control rule the VMCS breaks, or `None`.
fn control_check(vmcs: &FakeVmcs, caps: &VmxCapabilities) -> Option<Check> {
    let words = ControlWords::read(vmcs).unwrap();
    controls::check(vmcs, caps, &words)
        .err()
        .and_then(|e| e.check())
}

/// `allowed` with `bits` added to what may be 1.
fn also_allowing(allowed: AllowedBits, bits: u32) -> AllowedBits {
    AllowedBits::new(allowed.msr, allowed.raw | (u64::from(bits) << 32))
}

const VALID: u64 = 1 << 31;
const DELIVER: u64 = 1 << 11;
const HARDWARE_EXCEPTION: u64 = 3 << 8;
const GP: u64 = VALID | HARDWARE_EXCEPTION | 13;
const UD: u64 = VALID | HARDWARE_EXCEPTION | 6;

#[test]
fn bitmap_addresses_are_checked_only_when_their_control_is_on() {
    // Misaligned bitmap addresses, with neither bitmap control on.
    let unused = || {
        let (mut vmcs, caps) = valid(Model::Haswell);
        let used = primary::USE_IO_BITMAPS | primary::USE_MSR_BITMAPS;
        assert_eq!(
            vmcs.get(Field::PRIMARY_PROC_BASED_VM_EXEC_CONTROL) & u64::from(used),
            0,
            "the test guest uses neither bitmap"
        );
        vmcs.set(Field::IO_BITMAP_A, 0x1234);
        vmcs.set(Field::IO_BITMAP_B, 0x1);
        vmcs.set(Field::MSR_BITMAP, 0x5);
        (vmcs, caps)
    };
    let (vmcs, caps) = unused();
    assert_eq!(control_check(&vmcs, &caps), None);

    let (mut io, caps) = unused();
    or(
        &mut io,
        Field::PRIMARY_PROC_BASED_VM_EXEC_CONTROL,
        primary::USE_IO_BITMAPS.into(),
    );
    assert_eq!(control_check(&io, &caps), Some(Check::IoBitmapAddress));
    io.set(Field::IO_BITMAP_A, 0x2000);
    assert_eq!(
        control_check(&io, &caps),
        Some(Check::IoBitmapAddress),
        "bitmap B is checked too"
    );
    io.set(Field::IO_BITMAP_B, 0x3000);
    assert_eq!(control_check(&io, &caps), None);

    let (mut msr, caps) = unused();
    or(
        &mut msr,
        Field::PRIMARY_PROC_BASED_VM_EXEC_CONTROL,
        primary::USE_MSR_BITMAPS.into(),
    );
    assert_eq!(control_check(&msr, &caps), Some(Check::MsrBitmapAddress));
    msr.set(Field::MSR_BITMAP, 0x4000);
    assert_eq!(control_check(&msr, &caps), None);
}

/// 27.2.1.1: the secondary controls are checked against their capability only when "activate secondary
/// controls" is 1; without it they are 0 whatever the field holds, even for a capability MSR that (against
/// A.3.3) requires a secondary control.
#[test]
fn secondary_controls_are_checked_only_when_activated() {
    let (mut vmcs, mut caps) = valid(Model::Haswell);
    caps.procbased2 = caps
        .procbased2
        .map(|a| AllowedBits::new(a.msr, a.raw | (1 << 15)));
    clear(
        &mut vmcs,
        Field::PRIMARY_PROC_BASED_VM_EXEC_CONTROL,
        primary::ACTIVATE_SECONDARY_CONTROLS.into(),
    );
    assert_eq!(control_check(&vmcs, &caps), None);
    or(
        &mut vmcs,
        Field::PRIMARY_PROC_BASED_VM_EXEC_CONTROL,
        primary::ACTIVATE_SECONDARY_CONTROLS.into(),
    );
    assert_eq!(control_check(&vmcs, &caps), Some(Check::SecondaryAllowed));
}

/// 27.2.1.1: "virtualize x2APIC mode", "APIC-register virtualization" and "virtual-interrupt delivery" each
/// need "use TPR shadow".
#[test]
fn each_apic_virtualization_control_needs_the_tpr_shadow() {
    for bit in [
        secondary::VIRTUALIZE_X2APIC_MODE,
        secondary::APIC_REGISTER_VIRTUALIZATION,
        secondary::VIRTUAL_INTERRUPT_DELIVERY,
    ] {
        let (mut vmcs, mut caps) = valid(Model::Haswell);
        caps.procbased2 = caps.procbased2.map(|a| also_allowing(a, bit));
        or(
            &mut vmcs,
            Field::SECONDARY_PROC_BASED_VM_EXEC_CONTROL,
            bit.into(),
        );
        clear(
            &mut vmcs,
            Field::PRIMARY_PROC_BASED_VM_EXEC_CONTROL,
            primary::USE_TPR_SHADOW.into(),
        );
        assert_eq!(
            control_check(&vmcs, &caps),
            Some(Check::ApicVirtualizationWithoutTprShadow),
            "secondary bit {bit:#x}"
        );
        or(
            &mut vmcs,
            Field::PRIMARY_PROC_BASED_VM_EXEC_CONTROL,
            primary::USE_TPR_SHADOW.into(),
        );
        assert_eq!(control_check(&vmcs, &caps), None, "secondary bit {bit:#x}");
    }
}

/// 27.2.1.1: virtual NMIs need NMI exiting, NMI-window exiting needs virtual NMIs; every other combination is
/// valid.
#[test]
fn nmi_controls_pass_in_every_allowed_combination() {
    let combinations = [
        (0, 0),
        (pin::NMI_EXITING, 0),
        (pin::NMI_EXITING | pin::VIRTUAL_NMIS, 0),
        (
            pin::NMI_EXITING | pin::VIRTUAL_NMIS,
            primary::NMI_WINDOW_EXITING,
        ),
    ];
    for (pin_bits, primary_bits) in combinations {
        let (mut vmcs, caps) = valid(Model::Haswell);
        set_nmi_controls(&mut vmcs, pin_bits);
        or(
            &mut vmcs,
            Field::PRIMARY_PROC_BASED_VM_EXEC_CONTROL,
            primary_bits.into(),
        );
        assert_eq!(
            control_check(&vmcs, &caps),
            None,
            "pin {pin_bits:#x}, primary {primary_bits:#x}"
        );
    }
}

/// 25.6.11 with A.10: the EPTP's memory type and walk length are valid exactly when IA32_VMX_EPT_VPID_CAP
/// offers them (bit 8 UC, bit 14 WB, bit 6 four levels, bit 7 five levels).
#[test]
fn eptp_memory_type_and_walk_length_follow_the_capability() {
    const UC: u64 = 1 << 8;
    const WB: u64 = 1 << 14;
    const WALK_4: u64 = 1 << 6;
    const WALK_5: u64 = 1 << 7;
    let cases = [
        (UC | WALK_4, 0, 3, None),
        (WB | WALK_4, 0, 3, Some(Check::EptMemoryType)),
        (WB | WALK_4, 6, 3, None),
        (UC | WALK_4, 6, 3, Some(Check::EptMemoryType)),
        (WB | WALK_5, 6, 4, None),
        (WB | WALK_4, 6, 4, Some(Check::EptWalkLength)),
        (WB | WALK_5, 6, 3, Some(Check::EptWalkLength)),
    ];
    for (offered, memory_type, walk_minus_one, expected) in cases {
        let (mut vmcs, mut caps) = valid(Model::Haswell);
        let cap = caps.ept_vpid.unwrap().0 & !(UC | WB | WALK_4 | WALK_5);
        caps.ept_vpid = Some(EptVpidCap(cap | offered));
        let eptp = vmcs.get(Field::EPT_POINTER) & !0x3F;
        vmcs.set(
            Field::EPT_POINTER,
            eptp | (walk_minus_one << 3) | memory_type,
        );
        assert_eq!(
            control_check(&vmcs, &caps),
            expected,
            "cap {offered:#x}, type {memory_type}, walk {}",
            walk_minus_one + 1
        );
    }
}

/// 27.2.1.3: an "other event" (type 7, MTF) is injected with vector 0 only.
#[test]
fn an_other_event_has_vector_0() {
    let (mut vmcs, caps) = valid(Model::Haswell);
    vmcs.set(Field::VM_ENTRY_INTERRUPTION_INFO, VALID | (7 << 8));
    assert_eq!(control_check(&vmcs, &caps), None);
    vmcs.set(Field::VM_ENTRY_INTERRUPTION_INFO, VALID | (7 << 8) | 1);
    assert_eq!(
        control_check(&vmcs, &caps),
        Some(Check::EventInjectionVector)
    );
}

/// 27.2.1.3: software events may have instruction length 0 only where IA32_VMX_MISC bit 30 says so.
#[test]
fn a_zero_instruction_length_follows_ia32_vmx_misc_bit_30() {
    let (mut vmcs, mut caps) = valid(Model::Haswell);
    vmcs.set(Field::VM_ENTRY_INTERRUPTION_INFO, VALID | (4 << 8) | 0x80);
    vmcs.set(Field::VM_ENTRY_INSTRUCTION_LENGTH, 0);
    caps.misc = VmxMisc(caps.misc.0 & !(1 << 30));
    assert_eq!(
        control_check(&vmcs, &caps),
        Some(Check::EventInjectionInstructionLength)
    );
    caps.misc = VmxMisc(caps.misc.0 | (1 << 30));
    assert_eq!(control_check(&vmcs, &caps), None);
}

/// 27.2.1.3: a hardware exception pushes its error code only in protected mode: with "unrestricted guest" and
/// CR0.PE = 0 (real mode) no exception has one, and IA32_VMX_BASIC bit 56 does not change that; without
/// "unrestricted guest" the guest is in protected mode whatever CR0 says (its CR0 is checked later, 27.3.1.1).
#[test]
fn error_codes_follow_the_guests_mode() {
    let with_cr0 = |model: Model, cr0_pe: bool, bit56: bool, info: u64| {
        let (mut vmcs, mut caps) = valid(model);
        if bit56 {
            caps.basic.raw |= 1 << 56;
        }
        let cr0 = vmcs.get(Field::GUEST_CR0) & !((1 << 31) | 1);
        vmcs.set(
            Field::GUEST_CR0,
            if cr0_pe { cr0 | (1 << 31) | 1 } else { cr0 },
        );
        vmcs.set(Field::VM_ENTRY_INTERRUPTION_INFO, info);
        control_check(&vmcs, &caps)
    };
    let error = Some(Check::EventInjectionDeliverErrorCode);
    let cases = [
        // Real mode with unrestricted guest: no error code, even for #GP, even with bit 56.
        (Model::HaswellUnrestricted, false, false, GP, None),
        (
            Model::HaswellUnrestricted,
            false,
            false,
            GP | DELIVER,
            error,
        ),
        (Model::HaswellUnrestricted, false, true, UD | DELIVER, error),
        // Protected mode with unrestricted guest: #GP pushes one.
        (Model::HaswellUnrestricted, true, false, GP | DELIVER, None),
        (Model::HaswellUnrestricted, true, false, GP, error),
        (Model::HaswellUnrestricted, true, true, UD | DELIVER, None),
        // Without unrestricted guest, CR0.PE is not looked at here.
        (Model::Haswell, false, false, GP | DELIVER, None),
        (Model::Haswell, false, false, GP, error),
        (Model::Haswell, false, true, UD | DELIVER, None),
    ];
    for (model, cr0_pe, bit56, info, expected) in cases {
        assert_eq!(
            with_cr0(model, cr0_pe, bit56, info),
            expected,
            "{model:?}, CR0.PE {cr0_pe}, bit 56 {bit56}, info {info:#x}"
        );
    }
}

/// 27.2.1.3: "entry to SMM" and "deactivate dual-monitor treatment" must each be 0 outside SMM.
#[test]
fn each_smm_entry_control_is_refused_outside_smm() {
    for bit in [entry::ENTRY_TO_SMM, entry::DEACTIVATE_DUAL_MONITOR] {
        let (mut vmcs, mut caps) = valid(Model::Haswell);
        caps.entry = also_allowing(caps.entry, bit);
        caps.true_entry = caps.true_entry.map(|a| also_allowing(a, bit));
        or(&mut vmcs, Field::VM_ENTRY_CONTROLS, bit.into());
        assert_eq!(
            control_check(&vmcs, &caps),
            Some(Check::EntryToSmmOutsideSmm),
            "entry bit {bit:#x}"
        );
    }
}
