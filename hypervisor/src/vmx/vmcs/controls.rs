//! The VMX controls the test guest needs, and how they are chosen from the capability MSRs.
//!
//! Bit positions: SDM vol. 3C 25.6.1 "Pin-Based VM-Execution Controls", 25.6.2 "Processor-Based VM-Execution
//! Controls", 25.7.1 "VM-Exit Controls", 25.8.1 "VM-Entry Controls". Choice: vol. 3D A.2 "Reserved Controls and
//! Default Settings" to A.5 "VM-Entry Controls".
//!
//! Each control word is `(wanted | allowed-0) & allowed-1` against the MSR VM entry checks (the TRUE MSR when
//! IA32_VMX_BASIC bit 55 is 1). `wanted` also holds the default1 reserved bits (allowed-0 of the non-TRUE MSR),
//! as A.2 asks of software that does not know a control, except the two this hypervisor knows it can clear
//! with EPT (CR3-load and CR3-store exiting). Then every required control must have survived.
//!
//! Required, because the hypervisor cannot run the test guest safely or at all without them:
//! - pin-based **external-interrupt exiting** and **NMI exiting**: host interrupts and NMIs (timers, IPIs, a
//!   panic broadcast) must come back to the host as VM exits, never through the guest's IDT;
//! - primary **HLT exiting**: the test guest ends with HLT, which is how the host learns that it ran;
//! - primary **unconditional I/O exiting**: without I/O bitmaps the guest would reach the host's ports (its
//!   serial log) directly;
//! - exit **host address-space size**: the host is 64-bit, and VM entry from IA-32e mode requires it
//!   (vol. 3C 27.2.4 "Checks Related to Address-Space Size");
//! - entry **IA-32e mode guest**: the test guest runs in 64-bit mode with paging.
//!
//! Optional, used only when allowed and wanted by the [`ControlPolicy`], reported in [`Features`]:
//! enable EPT (only with a 4-level page walk and a WB or UC EPTP memory type in IA32_VMX_EPT_VPID_CAP), enable
//! VPID, unrestricted guest (only with EPT; not needed for a paged 64-bit guest), use MSR bitmaps, load/save
//! IA32_EFER (entry load and exit load together), load/save IA32_PAT (likewise), acknowledge interrupt on exit.

use core::fmt;

use super::caps::{msr_name, VmxCapabilities};

/// Pin-based VM-execution controls (25.6.1).
pub mod pin {
    pub const EXTERNAL_INTERRUPT_EXITING: u32 = 1 << 0;
    pub const NMI_EXITING: u32 = 1 << 3;
    pub const VIRTUAL_NMIS: u32 = 1 << 5;
    pub const ACTIVATE_PREEMPTION_TIMER: u32 = 1 << 6;
    pub const PROCESS_POSTED_INTERRUPTS: u32 = 1 << 7;
}

/// Primary processor-based VM-execution controls (25.6.2).
pub mod primary {
    pub const INTERRUPT_WINDOW_EXITING: u32 = 1 << 2;
    pub const USE_TSC_OFFSETTING: u32 = 1 << 3;
    pub const HLT_EXITING: u32 = 1 << 7;
    pub const INVLPG_EXITING: u32 = 1 << 9;
    pub const MWAIT_EXITING: u32 = 1 << 10;
    pub const RDPMC_EXITING: u32 = 1 << 11;
    pub const RDTSC_EXITING: u32 = 1 << 12;
    pub const CR3_LOAD_EXITING: u32 = 1 << 15;
    pub const CR3_STORE_EXITING: u32 = 1 << 16;
    pub const ACTIVATE_TERTIARY_CONTROLS: u32 = 1 << 17;
    pub const CR8_LOAD_EXITING: u32 = 1 << 19;
    pub const CR8_STORE_EXITING: u32 = 1 << 20;
    pub const USE_TPR_SHADOW: u32 = 1 << 21;
    pub const NMI_WINDOW_EXITING: u32 = 1 << 22;
    pub const MOV_DR_EXITING: u32 = 1 << 23;
    pub const UNCONDITIONAL_IO_EXITING: u32 = 1 << 24;
    pub const USE_IO_BITMAPS: u32 = 1 << 25;
    pub const MONITOR_TRAP_FLAG: u32 = 1 << 27;
    pub const USE_MSR_BITMAPS: u32 = 1 << 28;
    pub const MONITOR_EXITING: u32 = 1 << 29;
    pub const PAUSE_EXITING: u32 = 1 << 30;
    pub const ACTIVATE_SECONDARY_CONTROLS: u32 = 1 << 31;
}

/// Secondary processor-based VM-execution controls (25.6.2).
pub mod secondary {
    pub const VIRTUALIZE_APIC_ACCESSES: u32 = 1 << 0;
    pub const ENABLE_EPT: u32 = 1 << 1;
    pub const DESCRIPTOR_TABLE_EXITING: u32 = 1 << 2;
    pub const ENABLE_RDTSCP: u32 = 1 << 3;
    pub const VIRTUALIZE_X2APIC_MODE: u32 = 1 << 4;
    pub const ENABLE_VPID: u32 = 1 << 5;
    pub const WBINVD_EXITING: u32 = 1 << 6;
    pub const UNRESTRICTED_GUEST: u32 = 1 << 7;
    pub const APIC_REGISTER_VIRTUALIZATION: u32 = 1 << 8;
    pub const VIRTUAL_INTERRUPT_DELIVERY: u32 = 1 << 9;
    pub const PAUSE_LOOP_EXITING: u32 = 1 << 10;
    pub const ENABLE_INVPCID: u32 = 1 << 12;
    pub const ENABLE_VM_FUNCTIONS: u32 = 1 << 13;
    pub const VMCS_SHADOWING: u32 = 1 << 14;
    pub const ENABLE_PML: u32 = 1 << 17;
}

/// VM-exit controls (25.7.1).
pub mod exit {
    pub const SAVE_DEBUG_CONTROLS: u32 = 1 << 2;
    pub const HOST_ADDRESS_SPACE_SIZE: u32 = 1 << 9;
    pub const LOAD_IA32_PERF_GLOBAL_CTRL: u32 = 1 << 12;
    pub const ACKNOWLEDGE_INTERRUPT_ON_EXIT: u32 = 1 << 15;
    pub const SAVE_IA32_PAT: u32 = 1 << 18;
    pub const LOAD_IA32_PAT: u32 = 1 << 19;
    pub const SAVE_IA32_EFER: u32 = 1 << 20;
    pub const LOAD_IA32_EFER: u32 = 1 << 21;
    pub const SAVE_PREEMPTION_TIMER: u32 = 1 << 22;
}

/// VM-entry controls (25.8.1).
pub mod entry {
    pub const LOAD_DEBUG_CONTROLS: u32 = 1 << 2;
    pub const IA32E_MODE_GUEST: u32 = 1 << 9;
    pub const ENTRY_TO_SMM: u32 = 1 << 10;
    pub const DEACTIVATE_DUAL_MONITOR: u32 = 1 << 11;
    pub const LOAD_IA32_PERF_GLOBAL_CTRL: u32 = 1 << 13;
    pub const LOAD_IA32_PAT: u32 = 1 << 14;
    pub const LOAD_IA32_EFER: u32 = 1 << 15;
}

/// The five control words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlWord {
    PinBased,
    PrimaryProcBased,
    SecondaryProcBased,
    Exit,
    Entry,
}

impl ControlWord {
    pub const fn name(self) -> &'static str {
        match self {
            Self::PinBased => "pin-based VM-execution",
            Self::PrimaryProcBased => "primary processor-based VM-execution",
            Self::SecondaryProcBased => "secondary processor-based VM-execution",
            Self::Exit => "VM-exit",
            Self::Entry => "VM-entry",
        }
    }
}

/// One control, by its SDM name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Control {
    pub word: ControlWord,
    pub mask: u32,
    pub name: &'static str,
}

impl Control {
    pub const EXTERNAL_INTERRUPT_EXITING: Self = Self::new(
        ControlWord::PinBased,
        pin::EXTERNAL_INTERRUPT_EXITING,
        "external-interrupt exiting",
    );
    pub const NMI_EXITING: Self = Self::new(ControlWord::PinBased, pin::NMI_EXITING, "NMI exiting");
    pub const HLT_EXITING: Self = Self::new(
        ControlWord::PrimaryProcBased,
        primary::HLT_EXITING,
        "HLT exiting",
    );
    pub const UNCONDITIONAL_IO_EXITING: Self = Self::new(
        ControlWord::PrimaryProcBased,
        primary::UNCONDITIONAL_IO_EXITING,
        "unconditional I/O exiting",
    );
    pub const HOST_ADDRESS_SPACE_SIZE: Self = Self::new(
        ControlWord::Exit,
        exit::HOST_ADDRESS_SPACE_SIZE,
        "host address-space size",
    );
    pub const IA32E_MODE_GUEST: Self = Self::new(
        ControlWord::Entry,
        entry::IA32E_MODE_GUEST,
        "IA-32e mode guest",
    );

    /// The controls the test guest cannot run without, in the order they are checked.
    pub const REQUIRED: [Self; 6] = [
        Self::EXTERNAL_INTERRUPT_EXITING,
        Self::NMI_EXITING,
        Self::HLT_EXITING,
        Self::UNCONDITIONAL_IO_EXITING,
        Self::HOST_ADDRESS_SPACE_SIZE,
        Self::IA32E_MODE_GUEST,
    ];

    pub const fn new(word: ControlWord, mask: u32, name: &'static str) -> Self {
        Self { word, mask, name }
    }

    pub const fn bit(self) -> u32 {
        self.mask.trailing_zeros()
    }
}

impl fmt::Display for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} control bit {})",
            self.name,
            self.word.name(),
            self.bit()
        )
    }
}

/// Why the controls cannot be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapabilityError {
    /// A required control is not allowed to be 1 by the capability MSR that VM entry checks.
    RequiredControlUnavailable { control: Control, msr: u32 },
}

impl fmt::Display for CapabilityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RequiredControlUnavailable { control, msr } => write!(
                f,
                "required control {control} is not allowed to be 1 by {} (MSR 0x{msr:x})",
                msr_name(*msr)
            ),
        }
    }
}

/// Which optional features the hypervisor would like; each is used only when the processor allows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlPolicy {
    pub ept: bool,
    pub vpid: bool,
    pub unrestricted_guest: bool,
    pub msr_bitmaps: bool,
    pub efer: bool,
    pub pat: bool,
    pub acknowledge_interrupt_on_exit: bool,
}

impl ControlPolicy {
    /// The test guest: EPT, VPID, EFER and PAT switching when available. No unrestricted guest (the guest is
    /// paged 64-bit code). No MSR bitmaps: without them every RDMSR/WRMSR exits, which is what a test guest
    /// should get (a zeroed bitmap would instead let it reach every host MSR in range). No interrupt
    /// acknowledgement on exit: a pending host interrupt is then taken through the host's own IDT once the host
    /// enables interrupts, with no vector to dispatch by hand.
    pub const TEST_GUEST: Self = Self {
        ept: true,
        vpid: true,
        unrestricted_guest: false,
        msr_bitmaps: false,
        efer: true,
        pat: true,
        acknowledge_interrupt_on_exit: false,
    };

    /// Only what is required.
    pub const MINIMAL: Self = Self {
        ept: false,
        vpid: false,
        unrestricted_guest: false,
        msr_bitmaps: false,
        efer: false,
        pat: false,
        acknowledge_interrupt_on_exit: false,
    };
}

/// The optional features in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features {
    pub ept: bool,
    pub vpid: bool,
    pub unrestricted_guest: bool,
    pub msr_bitmaps: bool,
    /// Entry "load IA32_EFER" and exit "load IA32_EFER".
    pub load_efer: bool,
    /// Exit "save IA32_EFER" (with `load_efer`).
    pub save_efer: bool,
    /// Entry "load IA32_PAT" and exit "load IA32_PAT".
    pub load_pat: bool,
    /// Exit "save IA32_PAT" (with `load_pat`).
    pub save_pat: bool,
    pub acknowledge_interrupt_on_exit: bool,
    /// IA32_VMX_BASIC bit 55: the TRUE MSRs were used.
    pub true_controls: bool,
}

impl fmt::Display for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes = |b: bool| if b { "yes" } else { "no" };
        write!(
            f,
            "ept={} vpid={} unrestricted={} msr_bitmaps={} efer={} pat={} ack_intr={} true_ctls={}",
            yes(self.ept),
            yes(self.vpid),
            yes(self.unrestricted_guest),
            yes(self.msr_bitmaps),
            yes(self.load_efer),
            yes(self.load_pat),
            yes(self.acknowledge_interrupt_on_exit),
            yes(self.true_controls)
        )
    }
}

/// Memory type 6, write-back, in the EPTP.
pub const EPT_MEMORY_TYPE_WB: u8 = 6;
/// Memory type 0, uncacheable, in the EPTP.
pub const EPT_MEMORY_TYPE_UC: u8 = 0;

/// The chosen control words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Controls {
    pub pin: u32,
    pub primary: u32,
    /// 0 unless "activate secondary controls" is set in `primary`.
    pub secondary: u32,
    pub exit: u32,
    pub entry: u32,
    pub features: Features,
    /// The EPTP memory type for the EPT paging structures, when EPT is used (WB preferred, else UC).
    pub ept_memory_type: Option<u8>,
}

impl Controls {
    pub const fn secondary_active(&self) -> bool {
        self.primary & primary::ACTIVATE_SECONDARY_CONTROLS != 0
    }
}

/// Chooses the five control words for the test guest on a core with these capabilities.
pub fn choose_controls(
    caps: &VmxCapabilities,
    policy: &ControlPolicy,
) -> Result<Controls, CapabilityError> {
    let mut features = Features {
        true_controls: caps.basic.true_controls,
        ..Features::default()
    };

    // Secondary controls first: whether they are used decides "activate secondary controls".
    let primary_cap = caps.effective_procbased();
    let secondary_cap = caps.effective_procbased2();
    let secondary_possible = primary_cap.may_be_one() & primary::ACTIVATE_SECONDARY_CONTROLS != 0;
    let ept_cap = caps.effective_ept_vpid();
    let ept_memory_type = if ept_cap.memory_type_wb() {
        Some(EPT_MEMORY_TYPE_WB)
    } else if ept_cap.memory_type_uc() {
        Some(EPT_MEMORY_TYPE_UC)
    } else {
        None
    };
    let allowed2 = |mask: u32| secondary_possible && secondary_cap.may_be_one() & mask != 0;
    features.ept = policy.ept
        && allowed2(secondary::ENABLE_EPT)
        && ept_cap.walk_length_4()
        && ept_memory_type.is_some();
    features.vpid = policy.vpid && allowed2(secondary::ENABLE_VPID);
    features.unrestricted_guest =
        policy.unrestricted_guest && features.ept && allowed2(secondary::UNRESTRICTED_GUEST);
    let mut secondary_wanted = 0;
    if features.ept {
        secondary_wanted |= secondary::ENABLE_EPT;
    }
    if features.vpid {
        secondary_wanted |= secondary::ENABLE_VPID;
    }
    if features.unrestricted_guest {
        secondary_wanted |= secondary::UNRESTRICTED_GUEST;
    }

    let pin_cap = caps.effective_pinbased();
    let pin = pin_cap
        .adjust(caps.pinbased.must_be_one() | pin::EXTERNAL_INTERRUPT_EXITING | pin::NMI_EXITING);

    let mut primary_default1 = caps.procbased.must_be_one();
    if features.ept {
        primary_default1 &= !(primary::CR3_LOAD_EXITING | primary::CR3_STORE_EXITING);
    }
    let mut primary_wanted =
        primary_default1 | primary::HLT_EXITING | primary::UNCONDITIONAL_IO_EXITING;
    features.msr_bitmaps =
        policy.msr_bitmaps && primary_cap.may_be_one() & primary::USE_MSR_BITMAPS != 0;
    if features.msr_bitmaps {
        primary_wanted |= primary::USE_MSR_BITMAPS;
    }
    if secondary_wanted != 0 {
        primary_wanted |= primary::ACTIVATE_SECONDARY_CONTROLS;
    }
    let primary = primary_cap.adjust(primary_wanted);
    let secondary = if primary & primary::ACTIVATE_SECONDARY_CONTROLS != 0 {
        secondary_cap.adjust(secondary_wanted)
    } else {
        0
    };

    let exit_cap = caps.effective_exit();
    let entry_cap = caps.effective_entry();
    let both = |exit_mask: u32, entry_mask: u32| {
        exit_cap.may_be_one() & exit_mask != 0 && entry_cap.may_be_one() & entry_mask != 0
    };
    features.load_efer = policy.efer && both(exit::LOAD_IA32_EFER, entry::LOAD_IA32_EFER);
    features.save_efer = features.load_efer && exit_cap.may_be_one() & exit::SAVE_IA32_EFER != 0;
    features.load_pat = policy.pat && both(exit::LOAD_IA32_PAT, entry::LOAD_IA32_PAT);
    features.save_pat = features.load_pat && exit_cap.may_be_one() & exit::SAVE_IA32_PAT != 0;
    features.acknowledge_interrupt_on_exit = policy.acknowledge_interrupt_on_exit
        && exit_cap.may_be_one() & exit::ACKNOWLEDGE_INTERRUPT_ON_EXIT != 0;

    let mut exit_wanted = caps.exit.must_be_one() | exit::HOST_ADDRESS_SPACE_SIZE;
    let mut entry_wanted = caps.entry.must_be_one() | entry::IA32E_MODE_GUEST;
    if features.load_efer {
        exit_wanted |= exit::LOAD_IA32_EFER;
        entry_wanted |= entry::LOAD_IA32_EFER;
    }
    if features.save_efer {
        exit_wanted |= exit::SAVE_IA32_EFER;
    }
    if features.load_pat {
        exit_wanted |= exit::LOAD_IA32_PAT;
        entry_wanted |= entry::LOAD_IA32_PAT;
    }
    if features.save_pat {
        exit_wanted |= exit::SAVE_IA32_PAT;
    }
    if features.acknowledge_interrupt_on_exit {
        exit_wanted |= exit::ACKNOWLEDGE_INTERRUPT_ON_EXIT;
    }
    let exit = exit_cap.adjust(exit_wanted);
    let entry = entry_cap.adjust(entry_wanted);

    let controls = Controls {
        pin,
        primary,
        secondary,
        exit,
        entry,
        features,
        ept_memory_type: if features.ept { ept_memory_type } else { None },
    };
    for control in Control::REQUIRED {
        let (value, msr) = match control.word {
            ControlWord::PinBased => (controls.pin, pin_cap.msr),
            ControlWord::PrimaryProcBased => (controls.primary, primary_cap.msr),
            ControlWord::SecondaryProcBased => (controls.secondary, secondary_cap.msr),
            ControlWord::Exit => (controls.exit, exit_cap.msr),
            ControlWord::Entry => (controls.entry, entry_cap.msr),
        };
        if value & control.mask == 0 {
            return Err(CapabilityError::RequiredControlUnavailable { control, msr });
        }
    }
    Ok(controls)
}

#[cfg(test)]
#[path = "controls_tests.rs"]
mod tests;
