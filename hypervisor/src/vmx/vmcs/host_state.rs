//! The host-state area (SDM vol. 3C 25.5, "Host-State Area"), built from what the kernel knows about the core.
//!
//! The kernel fills a [`HostView`] from the core's PCB (its GDT selectors, TSS, IDT, stacks, CR0/CR3/CR4 and
//! MSRs) and the address of its VM-exit entry point; [`HostState::new`] keeps IA32_EFER and IA32_PAT only when
//! the chosen VM-exit controls load them (25.7.1: without "load IA32_EFER"/"load IA32_PAT" those fields are not
//! used, and a processor without the controls may not even support them), and [`HostState::write`] writes every
//! field through [`VmcsAccess`].

use super::controls::{exit, Controls};
use super::fields::Field;
use super::{AccessError, VmcsAccess};

/// The core's own state as the kernel sees it, with no decision in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HostView {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub cs: u16,
    pub ss: u16,
    pub ds: u16,
    pub es: u16,
    pub fs: u16,
    pub gs: u16,
    pub tr: u16,
    pub fs_base: u64,
    pub gs_base: u64,
    pub tr_base: u64,
    pub gdtr_base: u64,
    pub idtr_base: u64,
    pub sysenter_cs: u32,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    pub efer: u64,
    pub pat: u64,
    /// The VM-exit entry point.
    pub rip: u64,
    /// The stack the VM-exit entry point starts on.
    pub rsp: u64,
}

/// The host-state fields to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostState {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub cs: u16,
    pub ss: u16,
    pub ds: u16,
    pub es: u16,
    pub fs: u16,
    pub gs: u16,
    pub tr: u16,
    pub fs_base: u64,
    pub gs_base: u64,
    pub tr_base: u64,
    pub gdtr_base: u64,
    pub idtr_base: u64,
    pub sysenter_cs: u32,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    /// Written only with the VM-exit control "load IA32_EFER".
    pub efer: Option<u64>,
    /// Written only with the VM-exit control "load IA32_PAT".
    pub pat: Option<u64>,
    pub rip: u64,
    pub rsp: u64,
}

impl HostState {
    pub fn new(view: &HostView, controls: &Controls) -> Self {
        let loads = |mask: u32| controls.exit & mask != 0;
        Self {
            cr0: view.cr0,
            cr3: view.cr3,
            cr4: view.cr4,
            cs: view.cs,
            ss: view.ss,
            ds: view.ds,
            es: view.es,
            fs: view.fs,
            gs: view.gs,
            tr: view.tr,
            fs_base: view.fs_base,
            gs_base: view.gs_base,
            tr_base: view.tr_base,
            gdtr_base: view.gdtr_base,
            idtr_base: view.idtr_base,
            sysenter_cs: view.sysenter_cs,
            sysenter_esp: view.sysenter_esp,
            sysenter_eip: view.sysenter_eip,
            efer: loads(exit::LOAD_IA32_EFER).then_some(view.efer),
            pat: loads(exit::LOAD_IA32_PAT).then_some(view.pat),
            rip: view.rip,
            rsp: view.rsp,
        }
    }

    /// Every field with its value, in appendix B order.
    pub fn fields(&self) -> impl Iterator<Item = (Field, u64)> {
        let always = [
            (Field::HOST_ES_SELECTOR, u64::from(self.es)),
            (Field::HOST_CS_SELECTOR, u64::from(self.cs)),
            (Field::HOST_SS_SELECTOR, u64::from(self.ss)),
            (Field::HOST_DS_SELECTOR, u64::from(self.ds)),
            (Field::HOST_FS_SELECTOR, u64::from(self.fs)),
            (Field::HOST_GS_SELECTOR, u64::from(self.gs)),
            (Field::HOST_TR_SELECTOR, u64::from(self.tr)),
            (Field::HOST_IA32_SYSENTER_CS, u64::from(self.sysenter_cs)),
            (Field::HOST_CR0, self.cr0),
            (Field::HOST_CR3, self.cr3),
            (Field::HOST_CR4, self.cr4),
            (Field::HOST_FS_BASE, self.fs_base),
            (Field::HOST_GS_BASE, self.gs_base),
            (Field::HOST_TR_BASE, self.tr_base),
            (Field::HOST_GDTR_BASE, self.gdtr_base),
            (Field::HOST_IDTR_BASE, self.idtr_base),
            (Field::HOST_IA32_SYSENTER_ESP, self.sysenter_esp),
            (Field::HOST_IA32_SYSENTER_EIP, self.sysenter_eip),
            (Field::HOST_RSP, self.rsp),
            (Field::HOST_RIP, self.rip),
        ];
        let optional = [
            self.pat.map(|pat| (Field::HOST_IA32_PAT, pat)),
            self.efer.map(|efer| (Field::HOST_IA32_EFER, efer)),
        ];
        always.into_iter().chain(optional.into_iter().flatten())
    }

    pub fn write(&self, vmcs: &mut impl VmcsAccess) -> Result<(), AccessError> {
        for (field, value) in self.fields() {
            vmcs.vmwrite(field, value)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmx::vmcs::controls::{choose_controls, ControlPolicy};
    use crate::vmx::vmcs::fake::FakeVmcs;
    use crate::vmx::vmcs::fixtures::{haswell_caps, penryn_caps, typical_host_view};

    #[test]
    fn efer_and_pat_are_written_only_when_the_exit_controls_load_them() {
        let view = typical_host_view();
        let controls = choose_controls(&haswell_caps(), &ControlPolicy::TEST_GUEST).unwrap();
        let state = HostState::new(&view, &controls);
        assert_eq!((state.efer, state.pat), (Some(0xD01), Some(view.pat)));
        let mut vmcs = FakeVmcs::new();
        state.write(&mut vmcs).unwrap();
        assert_eq!(vmcs.get(Field::HOST_IA32_EFER), 0xD01);
        assert_eq!(vmcs.get(Field::HOST_IA32_PAT), view.pat);
        assert_eq!(vmcs.get(Field::HOST_TR_SELECTOR), 0x28);
        assert_eq!(vmcs.get(Field::HOST_RIP), view.rip);
        assert_eq!(vmcs.get(Field::HOST_GS_BASE), view.gs_base);
        assert_eq!(vmcs.writes.len(), 22);

        let controls = choose_controls(&penryn_caps(), &ControlPolicy::TEST_GUEST).unwrap();
        let state = HostState::new(&view, &controls);
        assert_eq!((state.efer, state.pat), (None, None));
        let mut vmcs = FakeVmcs::new();
        vmcs.unsupport(Field::HOST_IA32_EFER);
        vmcs.unsupport(Field::HOST_IA32_PAT);
        state.write(&mut vmcs).unwrap();
        assert!(!vmcs.was_written(Field::HOST_IA32_EFER));
        assert!(!vmcs.was_written(Field::HOST_IA32_PAT));
        assert_eq!(vmcs.writes.len(), 20);
    }

    #[test]
    fn a_failing_vmwrite_is_returned() {
        let controls = choose_controls(&haswell_caps(), &ControlPolicy::TEST_GUEST).unwrap();
        let state = HostState::new(&typical_host_view(), &controls);
        let mut vmcs = FakeVmcs::new();
        vmcs.unsupport(Field::HOST_IA32_PAT);
        let error = state.write(&mut vmcs).unwrap_err();
        assert_eq!(error.field, Field::HOST_IA32_PAT);
        assert_eq!(
            error.instruction_error(),
            Some(crate::vmx::InstructionError(12))
        );
    }
}
