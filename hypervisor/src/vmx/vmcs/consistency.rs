//! Cross-core consistency of the VMX capabilities.
//!
//! The controls, the fixed bits and the VMCS revision are chosen once, from the BSP's capability MSRs; an AP
//! whose MSRs differ could fail VM entry with a VMCS that is valid on the BSP (or reject its VMCS region with
//! VMPTRLD error 11 for another revision). SDM vol. 3D appendix A describes each MSR per logical processor;
//! nothing guarantees they agree across a system (mixed steppings, firmware that programs cores differently,
//! hypervisors underneath that virtualize them per vCPU), so each AP compares its own copy with the BSP's.

use alloc::vec::Vec;
use core::fmt;

use super::caps::{msr_name, VmxCapabilities};

/// One capability MSR whose value differs (`None`: the MSR does not exist on that core).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mismatch {
    pub msr: u32,
    pub bsp: Option<u64>,
    pub core: Option<u64>,
}

/// A capability that is not an MSR but is compared all the same: `CPUID.80000008H:EAX[7:0]`.
pub const MAXPHYADDR: u32 = 0x8000_0008;

fn value(value: Option<u64>) -> impl fmt::Display {
    struct Shown(Option<u64>);
    impl fmt::Display for Shown {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self.0 {
                Some(value) => write!(f, "0x{value:x}"),
                None => f.write_str("absent"),
            }
        }
    }
    Shown(value)
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.msr == MAXPHYADDR {
            write!(f, "MAXPHYADDR (CPUID 0x80000008)")?;
        } else {
            write!(f, "{} (0x{:x})", msr_name(self.msr), self.msr)?;
        }
        write!(f, " bsp={} cpu={}", value(self.bsp), value(self.core))
    }
}

/// Every mismatch, in MSR order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mismatches(pub Vec<Mismatch>);

impl Mismatches {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn first(&self) -> Option<&Mismatch> {
        self.0.first()
    }
}

impl fmt::Display for Mismatches {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} VMX capabilities differ from the BSP:", self.0.len())?;
        for mismatch in &self.0 {
            write!(f, " {mismatch};")?;
        }
        Ok(())
    }
}

/// Compares a core's capabilities with the BSP's: `Ok` when every MSR (and MAXPHYADDR) is the same.
pub fn compare(bsp: &VmxCapabilities, core: &VmxCapabilities) -> Result<(), Mismatches> {
    let mut mismatches: Vec<Mismatch> = bsp
        .msr_values()
        .iter()
        .zip(core.msr_values().iter())
        .filter(|(ours, theirs)| ours.1 != theirs.1)
        .map(|(&(msr, bsp), &(_, core))| Mismatch { msr, bsp, core })
        .collect();
    if bsp.maxphyaddr != core.maxphyaddr {
        mismatches.push(Mismatch {
            msr: MAXPHYADDR,
            bsp: Some(bsp.maxphyaddr.into()),
            core: Some(core.maxphyaddr.into()),
        });
    }
    if mismatches.is_empty() {
        Ok(())
    } else {
        Err(Mismatches(mismatches))
    }
}

/// The first mismatch only, for a short log line.
pub fn first_mismatch(bsp: &VmxCapabilities, core: &VmxCapabilities) -> Option<Mismatch> {
    compare(bsp, core)
        .err()
        .and_then(|all| all.first().copied())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmx::vmcs::caps::{
        IA32_VMX_EPT_VPID_CAP, IA32_VMX_PROCBASED_CTLS2, IA32_VMX_TRUE_PROCBASED_CTLS,
    };
    use crate::vmx::vmcs::fixtures::{self, haswell_caps, penryn_caps};
    use crate::vmx::IA32_VMX_CR4_FIXED1;

    #[test]
    fn no_mismatch_is_empty_and_one_is_not() {
        assert!(Mismatches::default().is_empty());
        let one = Mismatches(alloc::vec![Mismatch {
            msr: IA32_VMX_CR4_FIXED1,
            bsp: Some(1),
            core: Some(2),
        }]);
        assert!(!one.is_empty());
        assert_eq!(one.first().map(|m| m.core), Some(Some(2)));
    }

    #[test]
    fn identical_cores_are_consistent() {
        assert_eq!(compare(&haswell_caps(), &haswell_caps()), Ok(()));
        assert_eq!(compare(&penryn_caps(), &penryn_caps()), Ok(()));
        assert_eq!(first_mismatch(&haswell_caps(), &haswell_caps()), None);
    }

    #[test]
    fn one_differing_msr_is_named_with_both_values() {
        let bsp = haswell_caps();
        let mut msrs = fixtures::bochs_haswell();
        msrs.set(IA32_VMX_CR4_FIXED1, 0x3727ff);
        let core = VmxCapabilities::read(&mut msrs, 40).unwrap();
        let mismatches = compare(&bsp, &core).unwrap_err();
        assert_eq!(
            mismatches.0,
            vec![Mismatch {
                msr: IA32_VMX_CR4_FIXED1,
                bsp: Some(0x1727ff),
                core: Some(0x3727ff)
            }]
        );
        assert_eq!(
            format!("{}", mismatches.0[0]),
            "IA32_VMX_CR4_FIXED1 (0x489) bsp=0x1727ff cpu=0x3727ff"
        );
    }

    #[test]
    fn all_mismatches_are_listed_in_msr_order_with_absent_msrs() {
        let bsp = haswell_caps();
        let core = penryn_caps();
        let mismatches = compare(&bsp, &core).unwrap_err();
        let msrs: Vec<u32> = mismatches.0.iter().map(|m| m.msr).collect();
        assert_eq!(msrs[0], crate::vmx::IA32_VMX_BASIC);
        assert!(msrs.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(msrs.contains(&IA32_VMX_PROCBASED_CTLS2));
        assert_eq!(*msrs.last().unwrap(), MAXPHYADDR);
        let ept = mismatches
            .0
            .iter()
            .find(|m| m.msr == IA32_VMX_EPT_VPID_CAP)
            .unwrap();
        assert_eq!((ept.bsp, ept.core), (Some(0x0000_0f01_0633_4141), None));
        assert_eq!(
            format!("{ept}"),
            "IA32_VMX_EPT_VPID_CAP (0x48c) bsp=0xf0106334141 cpu=absent"
        );
        let text = format!("{mismatches}");
        assert!(text.starts_with(&format!(
            "{} VMX capabilities differ from the BSP: IA32_VMX_BASIC",
            msrs.len()
        )));
        assert!(text.ends_with("MAXPHYADDR (CPUID 0x80000008) bsp=0x28 cpu=0x24;"));
        assert!(!text.contains('"') && !text.contains('\n'));
        assert_eq!(
            first_mismatch(&bsp, &core).unwrap().msr,
            crate::vmx::IA32_VMX_BASIC
        );
    }

    #[test]
    fn a_true_msr_difference_is_caught_even_when_the_plain_one_agrees() {
        let bsp = haswell_caps();
        let mut msrs = fixtures::bochs_haswell();
        msrs.set(IA32_VMX_TRUE_PROCBASED_CTLS, 0xfff9_fffe_0401_e172);
        let core = VmxCapabilities::read(&mut msrs, 40).unwrap();
        assert_eq!(
            first_mismatch(&bsp, &core).map(|m| m.msr),
            Some(IA32_VMX_TRUE_PROCBASED_CTLS)
        );
        let narrower = VmxCapabilities::read(&mut fixtures::bochs_haswell(), 39).unwrap();
        assert_eq!(
            first_mismatch(&bsp, &narrower).map(|m| m.msr),
            Some(MAXPHYADDR)
        );
    }
}
