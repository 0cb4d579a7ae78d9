//! SDM vol. 3C 27.2.1, "Checks on VMX Controls" (VMfailValid, error 7).

use super::{require, within_width, Check, ControlWords, Outcome};
use crate::vmx::vmcs::caps::VmxCapabilities;
use crate::vmx::vmcs::controls::{entry, exit, pin, primary, secondary};
use crate::vmx::vmcs::fields::Field;
use crate::vmx::vmcs::VmcsAccess;

/// Interruption types (25.8.3, "VM-Entry Controls for Event Injection").
pub(crate) const TYPE_EXTERNAL_INTERRUPT: u32 = 0;
pub(crate) const TYPE_NMI: u32 = 2;
pub(crate) const TYPE_HARDWARE_EXCEPTION: u32 = 3;
pub(crate) const TYPE_OTHER_EVENT: u32 = 7;

pub(super) fn check(vmcs: &impl VmcsAccess, caps: &VmxCapabilities, w: &ControlWords) -> Outcome {
    execution(vmcs, caps, w)?;
    exit_controls(vmcs, caps, w)?;
    entry_controls(vmcs, caps, w)
}

/// A page-aligned address within the width of VMCS-referenced structures.
fn page_address(caps: &VmxCapabilities, address: u64) -> bool {
    address & 0xFFF == 0 && within_width(address, caps.structure_address_width())
}

/// An MSR area of `count` 16-byte entries: 16-byte aligned, and its last byte within the width.
fn msr_area(caps: &VmxCapabilities, address: u64, count: u64) -> bool {
    let width = caps.structure_address_width();
    let last = address.checked_add(count * 16 - 1);
    address & 0xF == 0
        && within_width(address, width)
        && last.is_some_and(|l| within_width(l, width))
}

/// 27.2.1.1, VM-Execution Control Fields.
fn execution(vmcs: &impl VmcsAccess, caps: &VmxCapabilities, w: &ControlWords) -> Outcome {
    let pin_cap = caps.effective_pinbased();
    require(
        pin_cap.permits(w.pin),
        Check::PinBasedAllowed,
        Field::PIN_BASED_VM_EXEC_CONTROL,
        w.pin.into(),
    )?;
    require(
        caps.effective_procbased().permits(w.primary),
        Check::PrimaryAllowed,
        Field::PRIMARY_PROC_BASED_VM_EXEC_CONTROL,
        w.primary.into(),
    )?;
    if w.primary & primary::ACTIVATE_SECONDARY_CONTROLS != 0 {
        require(
            caps.effective_procbased2().permits(w.secondary),
            Check::SecondaryAllowed,
            Field::SECONDARY_PROC_BASED_VM_EXEC_CONTROL,
            w.secondary.into(),
        )?;
    }
    let targets = vmcs.vmread(Field::CR3_TARGET_COUNT)?;
    require(
        targets <= u64::from(caps.misc.cr3_targets()),
        Check::Cr3TargetCount,
        Field::CR3_TARGET_COUNT,
        targets,
    )?;
    if w.primary & primary::USE_IO_BITMAPS != 0 {
        for field in [Field::IO_BITMAP_A, Field::IO_BITMAP_B] {
            let address = vmcs.vmread(field)?;
            require(
                page_address(caps, address),
                Check::IoBitmapAddress,
                field,
                address,
            )?;
        }
    }
    if w.primary & primary::USE_MSR_BITMAPS != 0 {
        let address = vmcs.vmread(Field::MSR_BITMAP)?;
        require(
            page_address(caps, address),
            Check::MsrBitmapAddress,
            Field::MSR_BITMAP,
            address,
        )?;
    }
    let needs_tpr_shadow = secondary::VIRTUALIZE_X2APIC_MODE
        | secondary::APIC_REGISTER_VIRTUALIZATION
        | secondary::VIRTUAL_INTERRUPT_DELIVERY;
    require(
        w.primary & primary::USE_TPR_SHADOW != 0 || w.secondary & needs_tpr_shadow == 0,
        Check::ApicVirtualizationWithoutTprShadow,
        Field::SECONDARY_PROC_BASED_VM_EXEC_CONTROL,
        w.secondary.into(),
    )?;
    require(
        w.pin & pin::NMI_EXITING != 0 || w.pin & pin::VIRTUAL_NMIS == 0,
        Check::VirtualNmisWithoutNmiExiting,
        Field::PIN_BASED_VM_EXEC_CONTROL,
        w.pin.into(),
    )?;
    require(
        w.pin & pin::VIRTUAL_NMIS != 0 || w.primary & primary::NMI_WINDOW_EXITING == 0,
        Check::NmiWindowWithoutVirtualNmis,
        Field::PRIMARY_PROC_BASED_VM_EXEC_CONTROL,
        w.primary.into(),
    )?;
    if w.secondary & secondary::ENABLE_EPT != 0 {
        eptp(vmcs, caps)?;
    }
    if w.secondary & secondary::ENABLE_VPID != 0 {
        let vpid = vmcs.vmread(Field::VPID)?;
        require(vpid != 0, Check::VpidZero, Field::VPID, vpid)?;
    }
    require(
        w.secondary & secondary::UNRESTRICTED_GUEST == 0
            || w.secondary & secondary::ENABLE_EPT != 0,
        Check::UnrestrictedGuestWithoutEpt,
        Field::SECONDARY_PROC_BASED_VM_EXEC_CONTROL,
        w.secondary.into(),
    )
}

/// The EPTP (25.6.11, "Extended-Page-Table Pointer (EPTP)").
fn eptp(vmcs: &impl VmcsAccess, caps: &VmxCapabilities) -> Outcome {
    let eptp = vmcs.vmread(Field::EPT_POINTER)?;
    let cap = caps.effective_ept_vpid();
    let memory_type_ok = match eptp & 7 {
        0 => cap.memory_type_uc(),
        6 => cap.memory_type_wb(),
        _ => false,
    };
    require(
        memory_type_ok,
        Check::EptMemoryType,
        Field::EPT_POINTER,
        eptp,
    )?;
    let walk_ok = match (eptp >> 3) & 7 {
        3 => cap.walk_length_4(),
        4 => cap.walk_length_5(),
        _ => false,
    };
    require(walk_ok, Check::EptWalkLength, Field::EPT_POINTER, eptp)?;
    require(
        eptp & (1 << 6) == 0 || cap.accessed_dirty(),
        Check::EptAccessedDirty,
        Field::EPT_POINTER,
        eptp,
    )?;
    require(
        eptp & 0xF80 == 0 && within_width(eptp, caps.maxphyaddr),
        Check::EptReservedBits,
        Field::EPT_POINTER,
        eptp,
    )
}

/// 27.2.1.2, VM-Exit Control Fields.
fn exit_controls(vmcs: &impl VmcsAccess, caps: &VmxCapabilities, w: &ControlWords) -> Outcome {
    require(
        caps.effective_exit().permits(w.exit),
        Check::ExitAllowed,
        Field::VM_EXIT_CONTROLS,
        w.exit.into(),
    )?;
    require(
        w.pin & pin::ACTIVATE_PREEMPTION_TIMER != 0 || w.exit & exit::SAVE_PREEMPTION_TIMER == 0,
        Check::SavePreemptionTimerWithoutTimer,
        Field::VM_EXIT_CONTROLS,
        w.exit.into(),
    )?;
    let areas = [
        (
            Field::VM_EXIT_MSR_STORE_COUNT,
            Field::VM_EXIT_MSR_STORE_ADDRESS,
            Check::ExitMsrStoreAddress,
        ),
        (
            Field::VM_EXIT_MSR_LOAD_COUNT,
            Field::VM_EXIT_MSR_LOAD_ADDRESS,
            Check::ExitMsrLoadAddress,
        ),
    ];
    for (count_field, address_field, check) in areas {
        let count = vmcs.vmread(count_field)?;
        if count > 0 {
            let address = vmcs.vmread(address_field)?;
            require(
                msr_area(caps, address, count),
                check,
                address_field,
                address,
            )?;
        }
    }
    Ok(())
}

/// 27.2.1.3, VM-Entry Control Fields.
fn entry_controls(vmcs: &impl VmcsAccess, caps: &VmxCapabilities, w: &ControlWords) -> Outcome {
    require(
        caps.effective_entry().permits(w.entry),
        Check::EntryAllowed,
        Field::VM_ENTRY_CONTROLS,
        w.entry.into(),
    )?;
    event_injection(vmcs, caps, w)?;
    let count = vmcs.vmread(Field::VM_ENTRY_MSR_LOAD_COUNT)?;
    if count > 0 {
        let address = vmcs.vmread(Field::VM_ENTRY_MSR_LOAD_ADDRESS)?;
        require(
            msr_area(caps, address, count),
            Check::EntryMsrLoadAddress,
            Field::VM_ENTRY_MSR_LOAD_ADDRESS,
            address,
        )?;
    }
    require(
        w.entry & (entry::ENTRY_TO_SMM | entry::DEACTIVATE_DUAL_MONITOR) == 0,
        Check::EntryToSmmOutsideSmm,
        Field::VM_ENTRY_CONTROLS,
        w.entry.into(),
    )
}

/// 25.8.3 and the event-injection rules of 27.2.1.3.
fn event_injection(vmcs: &impl VmcsAccess, caps: &VmxCapabilities, w: &ControlWords) -> Outcome {
    let info = vmcs.vmread(Field::VM_ENTRY_INTERRUPTION_INFO)?;
    if info & (1 << 31) == 0 {
        return Ok(());
    }
    let field = Field::VM_ENTRY_INTERRUPTION_INFO;
    let vector = (info & 0xFF) as u32;
    let kind = ((info >> 8) & 7) as u32;
    let deliver_error_code = info & (1 << 11) != 0;
    require(
        info & 0x7FFF_F000 == 0,
        Check::EventInjectionReservedBits,
        field,
        info,
    )?;
    let mtf_supported = caps.effective_procbased().may_be_one() & primary::MONITOR_TRAP_FLAG != 0;
    require(
        kind != 1 && (kind != TYPE_OTHER_EVENT || mtf_supported),
        Check::EventInjectionType,
        field,
        info,
    )?;
    let vector_ok = match kind {
        TYPE_NMI => vector == 2,
        TYPE_HARDWARE_EXCEPTION => vector <= 31,
        TYPE_OTHER_EVENT => vector == 0,
        _ => true,
    };
    require(vector_ok, Check::EventInjectionVector, field, info)?;
    // IA32_VMX_BASIC bit 56: any hardware exception may be delivered with or without an error code.
    let any_error_code = caps.basic.raw & (1 << 56) != 0;
    let unrestricted = w.secondary & secondary::UNRESTRICTED_GUEST != 0;
    let protected_mode = !unrestricted || vmcs.vmread(Field::GUEST_CR0)? & 1 != 0;
    let pushes =
        kind == TYPE_HARDWARE_EXCEPTION && protected_mode && matches!(vector, 8 | 10..=14 | 17);
    let error_code_ok = if kind == TYPE_HARDWARE_EXCEPTION && protected_mode && any_error_code {
        true
    } else {
        deliver_error_code == pushes
    };
    require(
        error_code_ok,
        Check::EventInjectionDeliverErrorCode,
        field,
        info,
    )?;
    if deliver_error_code {
        let code = vmcs.vmread(Field::VM_ENTRY_EXCEPTION_ERROR_CODE)?;
        require(
            code & 0xFFFF_0000 == 0,
            Check::EventInjectionErrorCode,
            Field::VM_ENTRY_EXCEPTION_ERROR_CODE,
            code,
        )?;
    }
    if matches!(kind, 4..=6) {
        let length = vmcs.vmread(Field::VM_ENTRY_INSTRUCTION_LENGTH)?;
        let ok = (1..=15).contains(&length) || (length == 0 && caps.misc.inject_with_zero_length());
        require(
            ok,
            Check::EventInjectionInstructionLength,
            Field::VM_ENTRY_INSTRUCTION_LENGTH,
            length,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod address_tests {
    use super::*;
    use crate::vmx::vmcs::fixtures::haswell_caps;

    /// Page-aligned and within MAXPHYADDR (40 bits on the Haswell fixture), as 27.2.1.1 asks of the bitmap
    /// and EPTP-list addresses.
    #[test]
    fn page_addresses() {
        let caps = haswell_caps();
        assert_eq!(caps.structure_address_width(), 40);
        assert!(page_address(&caps, 0));
        assert!(page_address(&caps, 0x1000));
        assert!(page_address(&caps, (1 << 40) - 0x1000));
        assert!(!page_address(&caps, 0x1008), "not page-aligned");
        assert!(!page_address(&caps, 0x800), "not page-aligned");
        assert!(!page_address(&caps, 1 << 40), "beyond the width");
    }

    /// 16-byte aligned and its last byte within the width (27.2.1.2: VM-exit MSR-store and -load areas).
    #[test]
    fn msr_areas() {
        let caps = haswell_caps();
        assert!(msr_area(&caps, 0x1000, 1));
        assert!(msr_area(&caps, 0x1010, 4));
        assert!(!msr_area(&caps, 0x1008, 1), "not 16-byte aligned");
        assert!(!msr_area(&caps, 0x1004, 1), "not 16-byte aligned");
        // Ends exactly at the last byte of the width: allowed; one entry more: not.
        let top = 1u64 << 40;
        assert!(msr_area(&caps, top - 32, 2));
        assert!(!msr_area(&caps, top - 32, 3));
        assert!(!msr_area(&caps, top, 1));
        // An area whose end overflows 64 bits is refused, not wrapped.
        assert!(!msr_area(&caps, u64::MAX - 15, 2));
    }
}
