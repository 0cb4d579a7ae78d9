//! SDM vol. 3C 27.2.2 to 27.2.4, the checks on the host-state area (VMfailValid, error 8).

use super::{
    canonical, require, valid_pat, within_width, Check, ControlWords, Outcome, EFER_LMA, EFER_LME,
    EFER_VALID,
};
use crate::vmx::vmcs::caps::VmxCapabilities;
use crate::vmx::vmcs::controls::exit;
use crate::vmx::vmcs::fields::Field;
use crate::vmx::vmcs::VmcsAccess;

const CR4_PAE: u64 = 1 << 5;

pub(super) fn check(vmcs: &impl VmcsAccess, caps: &VmxCapabilities, w: &ControlWords) -> Outcome {
    let host_64 = w.exit & exit::HOST_ADDRESS_SPACE_SIZE != 0;

    // 27.2.2, Checks on Host Control Registers and MSRs.
    let cr0 = vmcs.vmread(Field::HOST_CR0)?;
    require(
        cr0 & caps.cr0_fixed0 == caps.cr0_fixed0 && cr0 & !caps.cr0_fixed1 == 0,
        Check::HostCr0Fixed,
        Field::HOST_CR0,
        cr0,
    )?;
    let cr4 = vmcs.vmread(Field::HOST_CR4)?;
    require(
        cr4 & caps.cr4_fixed0 == caps.cr4_fixed0 && cr4 & !caps.cr4_fixed1 == 0,
        Check::HostCr4Fixed,
        Field::HOST_CR4,
        cr4,
    )?;
    let cr3 = vmcs.vmread(Field::HOST_CR3)?;
    require(
        within_width(cr3, caps.maxphyaddr),
        Check::HostCr3Width,
        Field::HOST_CR3,
        cr3,
    )?;
    for field in [Field::HOST_IA32_SYSENTER_ESP, Field::HOST_IA32_SYSENTER_EIP] {
        let value = vmcs.vmread(field)?;
        require(canonical(value), Check::HostSysenterCanonical, field, value)?;
    }
    if w.exit & exit::LOAD_IA32_PAT != 0 {
        let pat = vmcs.vmread(Field::HOST_IA32_PAT)?;
        require(valid_pat(pat), Check::HostPat, Field::HOST_IA32_PAT, pat)?;
    }
    if w.exit & exit::LOAD_IA32_EFER != 0 {
        let efer = vmcs.vmread(Field::HOST_IA32_EFER)?;
        require(
            efer & !EFER_VALID == 0,
            Check::HostEferReserved,
            Field::HOST_IA32_EFER,
            efer,
        )?;
        let lma = efer & EFER_LMA != 0;
        let lme = efer & EFER_LME != 0;
        require(
            lma == host_64 && lme == host_64,
            Check::HostEferLmaLme,
            Field::HOST_IA32_EFER,
            efer,
        )?;
    }

    // 27.2.3, Checks on Host Segment and Descriptor-Table Registers.
    let selectors = [
        Field::HOST_ES_SELECTOR,
        Field::HOST_CS_SELECTOR,
        Field::HOST_SS_SELECTOR,
        Field::HOST_DS_SELECTOR,
        Field::HOST_FS_SELECTOR,
        Field::HOST_GS_SELECTOR,
        Field::HOST_TR_SELECTOR,
    ];
    for field in selectors {
        let selector = vmcs.vmread(field)?;
        require(selector & 7 == 0, Check::HostSelectorRplTi, field, selector)?;
    }
    let cs = vmcs.vmread(Field::HOST_CS_SELECTOR)?;
    require(cs != 0, Check::HostCsZero, Field::HOST_CS_SELECTOR, cs)?;
    let tr = vmcs.vmread(Field::HOST_TR_SELECTOR)?;
    require(tr != 0, Check::HostTrZero, Field::HOST_TR_SELECTOR, tr)?;
    let ss = vmcs.vmread(Field::HOST_SS_SELECTOR)?;
    require(
        host_64 || ss != 0,
        Check::HostSsZero,
        Field::HOST_SS_SELECTOR,
        ss,
    )?;
    let bases = [
        Field::HOST_FS_BASE,
        Field::HOST_GS_BASE,
        Field::HOST_GDTR_BASE,
        Field::HOST_IDTR_BASE,
        Field::HOST_TR_BASE,
    ];
    for field in bases {
        let base = vmcs.vmread(field)?;
        require(canonical(base), Check::HostBaseCanonical, field, base)?;
    }

    // 27.2.4, Checks Related to Address-Space Size. VM entry is always executed in IA-32e mode here.
    require(
        host_64,
        Check::HostAddressSpaceSize,
        Field::VM_EXIT_CONTROLS,
        w.exit.into(),
    )?;
    require(cr4 & CR4_PAE != 0, Check::HostCr4Pae, Field::HOST_CR4, cr4)?;
    let rip = vmcs.vmread(Field::HOST_RIP)?;
    require(
        canonical(rip),
        Check::HostRipCanonical,
        Field::HOST_RIP,
        rip,
    )
}
