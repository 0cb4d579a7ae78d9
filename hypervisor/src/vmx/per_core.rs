//! One core's VMX state: the regions it enters VMX operation with and where it stands ([`VmxState`]). This is
//! the only representation of a core's VMX state: the VMX stage keeps one in each core's PCB, and every entry,
//! self-test and exit goes through it, so the same regions are used on every call (docs/vmx.md).
//!
//! A later step (a guest on every core) extends this type: the guest's VMCS and its launch state belong here.

use super::{
    enter_vmx_root, leave_vmx_root, run_selftest, Region, RegionPair, RootReport, SelftestReport,
    VmxCpu, VmxError, VmxState,
};

pub struct VmxCore {
    regions: RegionPair,
    state: VmxState,
}

// SAFETY: the regions' pointers refer to frames reserved for this core's VMX use for the whole run (the
// contract of `Region::new`); the value lives in that core's PCB and only that core enters or leaves VMX
// operation with it (other cores only ask `in_root` under the PCB's lock).
unsafe impl Send for VmxCore {}

impl VmxCore {
    /// A core outside VMX operation that will use `regions` (validated and prepared on entry).
    pub const fn new(regions: RegionPair) -> Self {
        Self {
            regions,
            state: VmxState::NotEntered,
        }
    }

    pub const fn state(&self) -> &VmxState {
        &self.state
    }

    /// In VMX root operation with the VMCS current (SDM vol. 3C 24.3).
    pub const fn in_root(&self) -> bool {
        self.state.is_in_root()
    }

    /// [`enter_vmx_root`] with this core's regions; a second call is a no-op that returns the first report.
    pub fn enter(&mut self, cpu: &mut impl VmxCpu) -> Result<RootReport, VmxError> {
        enter_vmx_root(cpu, &mut self.state, &self.regions)
    }

    /// [`run_selftest`] with this core's regions and `scratch`, a third page reserved for this core's VMX use
    /// (the VMCS with a wrong revision identifier); it ends in the state it started in.
    pub fn selftest(&mut self, cpu: &mut impl VmxCpu, scratch: Option<&Region>) -> SelftestReport {
        run_selftest(cpu, &mut self.state, &self.regions, scratch)
    }

    /// [`leave_vmx_root`]: VMCLEAR, VMXOFF, CR4.VMXE cleared. Does nothing outside VMX operation.
    pub fn leave(&mut self, cpu: &mut impl VmxCpu) -> Result<(), VmxError> {
        leave_vmx_root(cpu, &mut self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmx::fake::{FakeCpu, Instr, TestRegions};

    /// One core's whole VMX life on its own regions: enter (twice, the second a no-op), leave (twice, the
    /// second a no-op).
    #[test]
    fn a_core_enters_once_and_leaves_once_on_its_own_regions() {
        let mut cpu = FakeCpu::bochs_haswell();
        let regions = TestRegions::new(&mut cpu);
        let mut core = VmxCore::new(regions.pair_for_owner());
        assert!(!core.in_root());
        let first = core.enter(&mut cpu).unwrap();
        assert!(core.in_root() && cpu.in_root());
        assert_eq!(core.state().vmxon_phys(), Some(TestRegions::VMXON));
        assert!(core.enter(&mut cpu).unwrap().already);
        assert_eq!(first.vmcs_phys, TestRegions::VMCS);
        core.leave(&mut cpu).unwrap();
        assert!(!core.in_root() && !cpu.in_root());
        core.leave(&mut cpu).unwrap();
        assert_eq!((cpu.count(Instr::Vmxon), cpu.count(Instr::Vmxoff)), (1, 1));
    }
}
