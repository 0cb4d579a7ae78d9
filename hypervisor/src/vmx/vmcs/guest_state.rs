//! The control fields and the guest-state area of the test guest.
//!
//! [`write_controls`] writes the five control words chosen by `choose_controls` and the fields they make
//! meaningful (SDM vol. 3C 25.6 "VM-Execution Control Fields", 25.7 "VM-Exit Control Fields", 25.8 "VM-Entry
//! Control Fields"): EPTP and VPID when used, the MSR-bitmap address when used, and zero for every count and
//! bitmap the test guest does not use.
//!
//! [`GuestState::flat_64bit`] describes a flat 64-bit guest (25.4, "Guest-State Area"): CPL 0 in 64-bit mode
//! with paging, CS a 64-bit code segment, the data segments flat, LDTR unusable, TR a busy 64-bit TSS, RFLAGS
//! with only its fixed bit 1, RIP at the code page and RSP at the top of the stack page. The code and stack
//! pages are given as physical addresses and used as linear addresses, so the guest's paging (the given CR3)
//! and EPT (when used) must map them one to one. GDTR and IDTR have limit 0: the guest loads no descriptor, and
//! any exception it raises becomes a triple fault, which is a VM exit (exit reason 2), so a broken guest is
//! reported instead of running on. CR0/CR4 carry the VMX fixed bits (27.3.1.1 checks them) and the guest/host
//! masks own exactly those bits, so the guest reads the value it would expect without VMX.

use super::caps::VmxCapabilities;
use super::controls::{entry, primary, secondary, Controls, EPT_MEMORY_TYPE_WB};
use super::fields::{Field, GUEST_SEGMENTS};
use super::segment::AccessRights;
use super::{AccessError, VmcsAccess};

/// The addresses the control fields refer to, used only when the matching feature is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlRefs {
    /// Physical address of the EPT PML4 table (4 KiB aligned).
    pub ept_pml4: u64,
    /// Physical address of the 4 KiB MSR bitmap.
    pub msr_bitmap: u64,
    /// The VPID, which must not be 0 (a per-core number + 1 is a natural choice).
    pub vpid: u16,
}

/// The EPTP (25.6.11, "Extended-Page-Table Pointer (EPTP)"): memory type in bits 2:0, page-walk length minus 1
/// in bits 5:3 (3: four levels), no accessed/dirty flags, the PML4 address in bits N-1:12.
pub const fn eptp(pml4: u64, memory_type: u8) -> u64 {
    (pml4 & !0xFFF) | (3 << 3) | memory_type as u64
}

/// Writes the control fields.
pub fn write_controls(
    vmcs: &mut impl VmcsAccess,
    controls: &Controls,
    refs: &ControlRefs,
) -> Result<(), AccessError> {
    let words = [
        (Field::PIN_BASED_VM_EXEC_CONTROL, controls.pin),
        (Field::PRIMARY_PROC_BASED_VM_EXEC_CONTROL, controls.primary),
        (Field::VM_EXIT_CONTROLS, controls.exit),
        (Field::VM_ENTRY_CONTROLS, controls.entry),
    ];
    for (field, value) in words {
        vmcs.vmwrite(field, u64::from(value))?;
    }
    if controls.secondary_active() {
        vmcs.vmwrite(
            Field::SECONDARY_PROC_BASED_VM_EXEC_CONTROL,
            u64::from(controls.secondary),
        )?;
        if controls.secondary & secondary::ENABLE_EPT != 0 {
            let memory_type = controls.ept_memory_type.unwrap_or(EPT_MEMORY_TYPE_WB);
            vmcs.vmwrite(Field::EPT_POINTER, eptp(refs.ept_pml4, memory_type))?;
        }
        if controls.secondary & secondary::ENABLE_VPID != 0 {
            vmcs.vmwrite(Field::VPID, u64::from(refs.vpid))?;
        }
    }
    if controls.primary & primary::USE_MSR_BITMAPS != 0 {
        vmcs.vmwrite(Field::MSR_BITMAP, refs.msr_bitmap)?;
    }
    let zeroes = [
        Field::EXCEPTION_BITMAP,
        Field::PAGE_FAULT_ERROR_CODE_MASK,
        Field::PAGE_FAULT_ERROR_CODE_MATCH,
        Field::CR3_TARGET_COUNT,
        Field::VM_EXIT_MSR_STORE_COUNT,
        Field::VM_EXIT_MSR_LOAD_COUNT,
        Field::VM_ENTRY_MSR_LOAD_COUNT,
        Field::VM_ENTRY_INTERRUPTION_INFO,
        Field::VM_ENTRY_EXCEPTION_ERROR_CODE,
        Field::VM_ENTRY_INSTRUCTION_LENGTH,
        Field::TSC_OFFSET,
    ];
    for field in zeroes {
        vmcs.vmwrite(field, 0)?;
    }
    Ok(())
}

/// What the kernel decides about the test guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestSetup {
    /// Physical (= guest linear) address of the first instruction.
    pub code: u64,
    /// Physical (= guest linear) address of the 4 KiB stack page; RSP starts at its top.
    pub stack_page: u64,
    /// The guest's PML4 (identity-mapping at least the code and stack pages).
    pub cr3: u64,
    /// EFER.NXE for the guest (needed when its page tables set the XD bit).
    pub nxe: bool,
    /// IA32_PAT for the guest, used with the VM-entry control "load IA32_PAT".
    pub pat: u64,
}

/// One guest segment register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub selector: u16,
    pub base: u64,
    pub limit: u32,
    pub access_rights: AccessRights,
}

pub const GUEST_CODE_SELECTOR: u16 = 0x08;
pub const GUEST_DATA_SELECTOR: u16 = 0x10;
pub const GUEST_TSS_SELECTOR: u16 = 0x18;

/// CR0.PE, ET, NE, WP, PG: what a 64-bit kernel runs with.
const GUEST_CR0: u64 = (1 << 0) | (1 << 4) | (1 << 5) | (1 << 16) | (1 << 31);
/// CR4.PAE.
const GUEST_CR4: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const EFER_NXE: u64 = 1 << 11;

/// Every guest-state field the test guest needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestState {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub cr0_guest_host_mask: u64,
    pub cr0_read_shadow: u64,
    pub cr4_guest_host_mask: u64,
    pub cr4_read_shadow: u64,
    pub dr7: u64,
    pub rsp: u64,
    pub rip: u64,
    pub rflags: u64,
    /// ES, CS, SS, DS, FS, GS, LDTR, TR.
    pub segments: [Segment; 8],
    pub gdtr: (u64, u32),
    pub idtr: (u64, u32),
    pub debugctl: u64,
    pub sysenter_cs: u32,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    /// Written only with the VM-entry control "load IA32_EFER".
    pub efer: Option<u64>,
    /// Written only with the VM-entry control "load IA32_PAT".
    pub pat: Option<u64>,
    pub activity_state: u32,
    pub interruptibility_state: u32,
    pub pending_debug_exceptions: u64,
    pub vmcs_link_pointer: u64,
}

impl GuestState {
    pub fn flat_64bit(setup: &GuestSetup, caps: &VmxCapabilities, controls: &Controls) -> Self {
        let fixed = |value: u64, fixed0: u64, fixed1: u64| (value | fixed0) & fixed1;
        let owned = |fixed0: u64, fixed1: u64| (fixed0 | !fixed1) & 0xFFFF_FFFF;
        let code = Segment {
            selector: GUEST_CODE_SELECTOR,
            base: 0,
            limit: 0xFFFF_FFFF,
            access_rights: AccessRights::CODE64,
        };
        let data = Segment {
            selector: GUEST_DATA_SELECTOR,
            base: 0,
            limit: 0xFFFF_FFFF,
            access_rights: AccessRights::DATA,
        };
        let ldtr = Segment {
            selector: 0,
            base: 0,
            limit: 0,
            access_rights: AccessRights::UNUSABLE,
        };
        let tr = Segment {
            selector: GUEST_TSS_SELECTOR,
            base: 0,
            limit: 0x67,
            access_rights: AccessRights::TSS64_BUSY,
        };
        let loads = |mask: u32| controls.entry & mask != 0;
        let efer = EFER_LME | EFER_LMA | if setup.nxe { EFER_NXE } else { 0 };
        Self {
            cr0: fixed(GUEST_CR0, caps.cr0_fixed0, caps.cr0_fixed1),
            cr3: setup.cr3,
            cr4: fixed(GUEST_CR4, caps.cr4_fixed0, caps.cr4_fixed1),
            cr0_guest_host_mask: owned(caps.cr0_fixed0, caps.cr0_fixed1),
            cr0_read_shadow: GUEST_CR0,
            cr4_guest_host_mask: owned(caps.cr4_fixed0, caps.cr4_fixed1),
            cr4_read_shadow: GUEST_CR4,
            dr7: 0x400,
            rsp: setup.stack_page + 4096,
            rip: setup.code,
            rflags: 0x2,
            segments: [data, code, data, data, data, data, ldtr, tr],
            gdtr: (0, 0),
            idtr: (0, 0),
            debugctl: 0,
            sysenter_cs: 0,
            sysenter_esp: 0,
            sysenter_eip: 0,
            efer: loads(entry::LOAD_IA32_EFER).then_some(efer),
            pat: loads(entry::LOAD_IA32_PAT).then_some(setup.pat),
            activity_state: 0,
            interruptibility_state: 0,
            pending_debug_exceptions: 0,
            vmcs_link_pointer: u64::MAX,
        }
    }

    pub fn write(&self, vmcs: &mut impl VmcsAccess) -> Result<(), AccessError> {
        for (fields, segment) in GUEST_SEGMENTS.iter().zip(self.segments) {
            vmcs.vmwrite(fields.selector, u64::from(segment.selector))?;
            vmcs.vmwrite(fields.base, segment.base)?;
            vmcs.vmwrite(fields.limit, u64::from(segment.limit))?;
            vmcs.vmwrite(fields.access_rights, u64::from(segment.access_rights.0))?;
        }
        let fields = [
            (Field::GUEST_CR0, self.cr0),
            (Field::GUEST_CR3, self.cr3),
            (Field::GUEST_CR4, self.cr4),
            (Field::CR0_GUEST_HOST_MASK, self.cr0_guest_host_mask),
            (Field::CR0_READ_SHADOW, self.cr0_read_shadow),
            (Field::CR4_GUEST_HOST_MASK, self.cr4_guest_host_mask),
            (Field::CR4_READ_SHADOW, self.cr4_read_shadow),
            (Field::GUEST_DR7, self.dr7),
            (Field::GUEST_RSP, self.rsp),
            (Field::GUEST_RIP, self.rip),
            (Field::GUEST_RFLAGS, self.rflags),
            (Field::GUEST_GDTR_BASE, self.gdtr.0),
            (Field::GUEST_GDTR_LIMIT, u64::from(self.gdtr.1)),
            (Field::GUEST_IDTR_BASE, self.idtr.0),
            (Field::GUEST_IDTR_LIMIT, u64::from(self.idtr.1)),
            (Field::GUEST_IA32_DEBUGCTL, self.debugctl),
            (Field::GUEST_IA32_SYSENTER_CS, u64::from(self.sysenter_cs)),
            (Field::GUEST_IA32_SYSENTER_ESP, self.sysenter_esp),
            (Field::GUEST_IA32_SYSENTER_EIP, self.sysenter_eip),
            (Field::GUEST_ACTIVITY_STATE, u64::from(self.activity_state)),
            (
                Field::GUEST_INTERRUPTIBILITY_STATE,
                u64::from(self.interruptibility_state),
            ),
            (
                Field::GUEST_PENDING_DEBUG_EXCEPTIONS,
                self.pending_debug_exceptions,
            ),
            (Field::VMCS_LINK_POINTER, self.vmcs_link_pointer),
        ];
        for (field, value) in fields {
            vmcs.vmwrite(field, value)?;
        }
        if let Some(efer) = self.efer {
            vmcs.vmwrite(Field::GUEST_IA32_EFER, efer)?;
        }
        if let Some(pat) = self.pat {
            vmcs.vmwrite(Field::GUEST_IA32_PAT, pat)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmx::vmcs::controls::{choose_controls, ControlPolicy};
    use crate::vmx::vmcs::fake::FakeVmcs;
    use crate::vmx::vmcs::fixtures::{haswell_caps, penryn_caps, GUEST_SETUP as SETUP};

    #[test]
    fn the_flat_guest_carries_the_fixed_bits_and_hides_them_behind_the_masks() {
        let caps = haswell_caps();
        let controls = choose_controls(&caps, &ControlPolicy::TEST_GUEST).unwrap();
        let guest = GuestState::flat_64bit(&SETUP, &caps, &controls);
        assert_eq!(guest.cr0, 0x8001_0031);
        assert_eq!(
            guest.cr4, 0x2020,
            "CR4.VMXE is a fixed-1 bit in VMX operation"
        );
        assert_eq!(
            guest.cr4_read_shadow, 0x20,
            "the guest reads CR4 without VMXE"
        );
        assert_ne!(guest.cr4_guest_host_mask & (1 << 13), 0);
        assert_eq!(guest.cr0_guest_host_mask, 0x8000_0021);
        assert_eq!(
            guest.cr0_read_shadow, 0x8001_0031,
            "the guest reads CR0.PE, ET, NE, WP, PG as a 64-bit kernel sets them"
        );
        assert_eq!(guest.rip, 0x0050_0000);
        assert_eq!(guest.rsp, 0x0050_2000);
        assert_eq!(guest.efer, Some(0xD00));
        assert_eq!(guest.pat, Some(SETUP.pat));
        let mut vmcs = FakeVmcs::new();
        guest.write(&mut vmcs).unwrap();
        assert_eq!(vmcs.get(Field::GUEST_CS_ACCESS_RIGHTS), 0xA09B);
        assert_eq!(vmcs.get(Field::GUEST_TR_SELECTOR), 0x18);
        assert_eq!(vmcs.get(Field::GUEST_LDTR_ACCESS_RIGHTS), 0x1_0000);
        assert_eq!(vmcs.get(Field::VMCS_LINK_POINTER), u64::MAX);
        assert_eq!(vmcs.get(Field::GUEST_IA32_EFER), 0xD00);
    }

    #[test]
    fn without_the_entry_controls_efer_and_pat_are_not_written() {
        let caps = penryn_caps();
        let controls = choose_controls(&caps, &ControlPolicy::TEST_GUEST).unwrap();
        let guest = GuestState::flat_64bit(&SETUP, &caps, &controls);
        assert_eq!((guest.efer, guest.pat), (None, None));
        let mut vmcs = FakeVmcs::new();
        guest.write(&mut vmcs).unwrap();
        assert!(!vmcs.was_written(Field::GUEST_IA32_EFER));
        assert!(!vmcs.was_written(Field::GUEST_IA32_PAT));
    }

    #[test]
    fn controls_write_eptp_and_vpid_only_when_used() {
        let refs = ControlRefs {
            ept_pml4: 0x0070_0000,
            msr_bitmap: 0x0071_0000,
            vpid: 1,
        };
        let controls = choose_controls(&haswell_caps(), &ControlPolicy::TEST_GUEST).unwrap();
        let mut vmcs = FakeVmcs::new();
        write_controls(&mut vmcs, &controls, &refs).unwrap();
        assert_eq!(vmcs.get(Field::EPT_POINTER), 0x0070_001E);
        assert_eq!(vmcs.get(Field::VPID), 1);
        assert_eq!(vmcs.get(Field::SECONDARY_PROC_BASED_VM_EXEC_CONTROL), 0x22);
        assert!(!vmcs.was_written(Field::MSR_BITMAP));
        assert_eq!(
            vmcs.get(Field::PRIMARY_PROC_BASED_VM_EXEC_CONTROL),
            u64::from(controls.primary)
        );

        let controls = choose_controls(&penryn_caps(), &ControlPolicy::TEST_GUEST).unwrap();
        let mut vmcs = FakeVmcs::new();
        write_controls(&mut vmcs, &controls, &refs).unwrap();
        for field in [
            Field::EPT_POINTER,
            Field::VPID,
            Field::SECONDARY_PROC_BASED_VM_EXEC_CONTROL,
        ] {
            assert!(!vmcs.was_written(field), "{field}");
        }
        assert_eq!(eptp(0x1234_5000, 0), 0x1234_5018);

        // Secondary controls active for VPID alone: no EPTP; and for EPT alone: no VPID.
        for (ept, vpid) in [(false, true), (true, false)] {
            let policy = ControlPolicy {
                ept,
                vpid,
                ..ControlPolicy::MINIMAL
            };
            let controls = choose_controls(&haswell_caps(), &policy).unwrap();
            assert!(controls.secondary_active());
            let mut vmcs = FakeVmcs::new();
            write_controls(&mut vmcs, &controls, &refs).unwrap();
            assert_eq!(vmcs.was_written(Field::EPT_POINTER), ept, "ept={ept}");
            assert_eq!(vmcs.was_written(Field::VPID), vpid, "vpid={vpid}");
        }
    }
}
