//! Capability MSR values of two processor models, for host tests.
//!
//! - `bochs_haswell`: IA32_VMX_BASIC and the CR0/CR4 fixed bits as measured on Bochs 2.7's haswell model; the
//!   control, MISC and EPT/VPID values as Bochs' VMX capability initialisation derives them for the haswell
//!   feature set (reserved default1 bits, TRUE MSRs that clear CR3-load/store exiting and the debug-controls
//!   bits, EPT with 4-level walks, UC and WB, 2M/1G pages, accessed/dirty flags, VPID and INVVPID).
//! - `penryn_t9600`: the values of a real Core 2 Duo T9600 as recorded in Bochs' penryn model: no TRUE MSRs
//!   (IA32_VMX_BASIC bit 55 clear), secondary controls limited to APIC-access virtualization and WBINVD exiting,
//!   so no EPT, no VPID, no EPT_VPID_CAP MSR, and no EFER/PAT VM-exit or VM-entry controls.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use super::caps::*;
use super::controls::{choose_controls, ControlPolicy, Controls};
use super::fake::FakeVmcs;
use super::guest_state::{write_controls, ControlRefs, GuestSetup, GuestState};
use super::host_state::{HostState, HostView};
use super::CapabilityMsrs;
use crate::vmx::{
    IA32_VMX_BASIC, IA32_VMX_CR0_FIXED0, IA32_VMX_CR0_FIXED1, IA32_VMX_CR4_FIXED0,
    IA32_VMX_CR4_FIXED1,
};

/// MSR values of a fake processor; reading an absent one gives `None` (on hardware: #GP).
#[derive(Debug, Clone, Default)]
pub struct FakeMsrs {
    values: BTreeMap<u32, u64>,
    read: RefCell<BTreeSet<u32>>,
}

impl FakeMsrs {
    pub fn from(values: &[(u32, u64)]) -> Self {
        Self {
            values: values.iter().copied().collect(),
            read: RefCell::default(),
        }
    }

    pub fn set(&mut self, msr: u32, value: u64) {
        self.values.insert(msr, value);
    }

    pub fn get(&self, msr: u32) -> u64 {
        self.values[&msr]
    }

    pub fn remove(&mut self, msr: u32) {
        self.values.remove(&msr);
    }

    pub fn was_read(&self, msr: u32) -> bool {
        self.read.borrow().contains(&msr)
    }
}

impl CapabilityMsrs for FakeMsrs {
    fn read_msr(&mut self, msr: u32) -> Option<u64> {
        self.read.borrow_mut().insert(msr);
        self.values.get(&msr).copied()
    }
}

pub fn bochs_haswell() -> FakeMsrs {
    FakeMsrs::from(&[
        (IA32_VMX_BASIC, 0x00d8_1000_0000_002b),
        (IA32_VMX_PINBASED_CTLS, 0x0000_007f_0000_0016),
        (IA32_VMX_PROCBASED_CTLS, 0xfff9_fffe_0401_e172),
        (IA32_VMX_EXIT_CTLS, 0x007f_ffff_0003_6dff),
        (IA32_VMX_ENTRY_CTLS, 0x0000_ffff_0000_11ff),
        (IA32_VMX_MISC, 0x2004_01e0),
        (IA32_VMX_CR0_FIXED0, 0x8000_0021),
        (IA32_VMX_CR0_FIXED1, 0xffff_ffff),
        (IA32_VMX_CR4_FIXED0, 0x2000),
        (IA32_VMX_CR4_FIXED1, 0x1727ff),
        (IA32_VMX_VMCS_ENUM, 0x54),
        (IA32_VMX_PROCBASED_CTLS2, 0x0004_7fff_0000_0000),
        (IA32_VMX_EPT_VPID_CAP, 0x0000_0f01_0633_4141),
        (IA32_VMX_TRUE_PINBASED_CTLS, 0x0000_007f_0000_0016),
        (IA32_VMX_TRUE_PROCBASED_CTLS, 0xfff9_fffe_0400_6172),
        (IA32_VMX_TRUE_EXIT_CTLS, 0x007f_ffff_0003_6dfb),
        (IA32_VMX_TRUE_ENTRY_CTLS, 0x0000_ffff_0000_11fb),
    ])
}

pub fn penryn_t9600() -> FakeMsrs {
    FakeMsrs::from(&[
        (IA32_VMX_BASIC, 0x005a_0800_0000_000d),
        (IA32_VMX_PINBASED_CTLS, 0x0000_003f_0000_0016),
        (IA32_VMX_PROCBASED_CTLS, 0xf7f9_fffe_0401_e172),
        (IA32_VMX_EXIT_CTLS, 0x0003_ffff_0003_6dff),
        (IA32_VMX_ENTRY_CTLS, 0x0000_3fff_0000_11ff),
        (IA32_VMX_MISC, 0x0004_03c0),
        (IA32_VMX_CR0_FIXED0, 0x8000_0021),
        (IA32_VMX_CR0_FIXED1, 0xffff_ffff),
        (IA32_VMX_CR4_FIXED0, 0x2000),
        (IA32_VMX_CR4_FIXED1, 0x0004_67ff),
        (IA32_VMX_VMCS_ENUM, 0x2c),
        (IA32_VMX_PROCBASED_CTLS2, 0x0000_0041_0000_0000),
    ])
}

/// Haswell capabilities as read, with a 40-bit MAXPHYADDR.
pub fn haswell_caps() -> VmxCapabilities {
    VmxCapabilities::read(&mut bochs_haswell(), 40).unwrap()
}

/// Penryn capabilities as read, with a 36-bit MAXPHYADDR.
pub fn penryn_caps() -> VmxCapabilities {
    VmxCapabilities::read(&mut penryn_t9600(), 36).unwrap()
}

/// A 64-bit host as this kernel sets one up: CR0 PE|MP|ET|NE|WP|PG, CR4 PAE|VMXE, EFER SCE|LME|LMA|NXE, the
/// power-on PAT, GDT selectors 08h/10h/28h.
pub fn typical_host_view() -> HostView {
    HostView {
        cr0: 0x8001_0033,
        cr3: 0x0010_0000,
        cr4: 0x2020,
        cs: 0x08,
        ss: 0x10,
        ds: 0x10,
        es: 0x10,
        fs: 0,
        gs: 0,
        tr: 0x28,
        fs_base: 0,
        gs_base: 0x0030_1000,
        tr_base: 0x0030_2000,
        gdtr_base: 0x0030_3000,
        idtr_base: 0x0030_4000,
        sysenter_cs: 0,
        sysenter_esp: 0,
        sysenter_eip: 0,
        efer: 0xD01,
        pat: 0x0007_0406_0007_0406,
        rip: 0x0020_1000,
        rsp: 0x0040_0000,
    }
}

pub const GUEST_SETUP: GuestSetup = GuestSetup {
    code: 0x0050_0000,
    stack_page: 0x0050_1000,
    cr3: 0x0060_0000,
    nxe: true,
    pat: 0x0007_0406_0007_0406,
};

pub const CONTROL_REFS: ControlRefs = ControlRefs {
    ept_pml4: 0x0070_0000,
    msr_bitmap: 0x0071_0000,
    vpid: 1,
};

/// A VMCS written by the builders, as the kernel will write it, with the controls chosen for `policy`.
pub fn built_vmcs(caps: &VmxCapabilities, policy: &ControlPolicy) -> (FakeVmcs, Controls) {
    let controls = choose_controls(caps, policy).unwrap();
    let mut vmcs = FakeVmcs::new();
    write_controls(&mut vmcs, &controls, &CONTROL_REFS).unwrap();
    HostState::new(&typical_host_view(), &controls)
        .write(&mut vmcs)
        .unwrap();
    GuestState::flat_64bit(&GUEST_SETUP, caps, &controls)
        .write(&mut vmcs)
        .unwrap();
    (vmcs, controls)
}
