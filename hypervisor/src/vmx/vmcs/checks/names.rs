//! Every modelled VM-entry check with its area, its SDM section and a one-line statement of the rule.

/// Which part of VM entry a check belongs to; it decides the outcome (error 7, error 8 or exit reason 33).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    Controls,
    HostState,
    GuestState,
}

const EXEC: &str = "27.2.1.1, VM-Execution Control Fields";
const EXIT: &str = "27.2.1.2, VM-Exit Control Fields";
const ENTRY: &str = "27.2.1.3, VM-Entry Control Fields";
const HOST_CR: &str = "27.2.2, Checks on Host Control Registers and MSRs";
const HOST_SEG: &str = "27.2.3, Checks on Host Segment and Descriptor-Table Registers";
const HOST_SIZE: &str = "27.2.4, Checks Related to Address-Space Size";
const GUEST_CR: &str = "27.3.1.1, Checks on Guest Control Registers, Debug Registers, and MSRs";
const GUEST_SEG: &str = "27.3.1.2, Checks on Guest Segment Registers";
const GUEST_DT: &str = "27.3.1.3, Checks on Guest Descriptor-Table Registers";
const GUEST_RIP: &str = "27.3.1.4, Checks on Guest RIP and RFLAGS";
const GUEST_NR: &str = "27.3.1.5, Checks on Guest Non-Register State";

macro_rules! checks {
    ($( $variant:ident: $area:ident, $section:ident, $name:literal; )*) => {
        /// One rule of SDM vol. 3C ch. 27.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Check {
            $( $variant, )*
        }

        impl Check {
            /// Every check, in the order `check_vm_entry` applies them.
            pub const ALL: &'static [Check] = &[$( Check::$variant, )*];

            /// The rule, in words.
            pub const fn name(self) -> &'static str {
                match self {
                    $( Check::$variant => $name, )*
                }
            }

            pub const fn area(self) -> Area {
                match self {
                    $( Check::$variant => Area::$area, )*
                }
            }

            /// The SDM section (vol. 3C) with its title.
            pub const fn section(self) -> &'static str {
                match self {
                    $( Check::$variant => $section, )*
                }
            }
        }
    };
}

checks! {
    PinBasedAllowed: Controls, EXEC, "pin-based VM-execution controls within the allowed-0 and allowed-1 settings";
    PrimaryAllowed: Controls, EXEC, "primary processor-based VM-execution controls within the allowed-0 and allowed-1 settings";
    SecondaryAllowed: Controls, EXEC, "secondary processor-based VM-execution controls within the allowed settings of IA32_VMX_PROCBASED_CTLS2";
    Cr3TargetCount: Controls, EXEC, "CR3-target count not greater than IA32_VMX_MISC bits 24:16";
    IoBitmapAddress: Controls, EXEC, "I/O-bitmap addresses 4-KByte aligned and within the physical-address width";
    MsrBitmapAddress: Controls, EXEC, "MSR-bitmap address 4-KByte aligned and within the physical-address width";
    ApicVirtualizationWithoutTprShadow: Controls, EXEC, "virtualize x2APIC mode, APIC-register virtualization and virtual-interrupt delivery require use TPR shadow";
    VirtualNmisWithoutNmiExiting: Controls, EXEC, "virtual NMIs requires NMI exiting";
    NmiWindowWithoutVirtualNmis: Controls, EXEC, "NMI-window exiting requires virtual NMIs";
    EptMemoryType: Controls, EXEC, "EPTP memory type uncacheable or write-back, as IA32_VMX_EPT_VPID_CAP allows";
    EptWalkLength: Controls, EXEC, "EPTP page-walk length 4 (bits 5:3 = 3), or 5 where IA32_VMX_EPT_VPID_CAP allows it";
    EptAccessedDirty: Controls, EXEC, "EPTP bit 6 (accessed and dirty flags) only where IA32_VMX_EPT_VPID_CAP bit 21 allows it";
    EptReservedBits: Controls, EXEC, "EPTP bits 11:7 and bits beyond the physical-address width 0";
    VpidZero: Controls, EXEC, "VPID not 0000H when enable VPID is 1";
    UnrestrictedGuestWithoutEpt: Controls, EXEC, "unrestricted guest requires enable EPT";
    ExitAllowed: Controls, EXIT, "VM-exit controls within the allowed-0 and allowed-1 settings";
    SavePreemptionTimerWithoutTimer: Controls, EXIT, "save VMX-preemption timer value requires activate VMX-preemption timer";
    ExitMsrStoreAddress: Controls, EXIT, "VM-exit MSR-store address 16-byte aligned with the whole area within the physical-address width";
    ExitMsrLoadAddress: Controls, EXIT, "VM-exit MSR-load address 16-byte aligned with the whole area within the physical-address width";
    EntryAllowed: Controls, ENTRY, "VM-entry controls within the allowed-0 and allowed-1 settings";
    EventInjectionReservedBits: Controls, ENTRY, "VM-entry interruption-information bits 30:12 0";
    EventInjectionType: Controls, ENTRY, "VM-entry interruption type not 1 (reserved), and 7 (other event) only with monitor trap flag support";
    EventInjectionVector: Controls, ENTRY, "injected NMI has vector 2, hardware exception vector at most 31, other event vector 0";
    EventInjectionDeliverErrorCode: Controls, ENTRY, "deliver-error-code bit 1 exactly for hardware exceptions 8, 10-14 and 17 in protected mode";
    EventInjectionErrorCode: Controls, ENTRY, "VM-entry exception error code bits 31:16 0 when an error code is delivered";
    EventInjectionInstructionLength: Controls, ENTRY, "VM-entry instruction length 1 to 15 for software interrupts and exceptions";
    EntryMsrLoadAddress: Controls, ENTRY, "VM-entry MSR-load address 16-byte aligned with the whole area within the physical-address width";
    EntryToSmmOutsideSmm: Controls, ENTRY, "entry to SMM and deactivate dual-monitor treatment 0 outside SMM";
    HostCr0Fixed: HostState, HOST_CR, "host CR0 satisfies IA32_VMX_CR0_FIXED0 and IA32_VMX_CR0_FIXED1";
    HostCr4Fixed: HostState, HOST_CR, "host CR4 satisfies IA32_VMX_CR4_FIXED0 and IA32_VMX_CR4_FIXED1";
    HostCr3Width: HostState, HOST_CR, "host CR3 bits beyond the physical-address width 0";
    HostSysenterCanonical: HostState, HOST_CR, "host IA32_SYSENTER_ESP and IA32_SYSENTER_EIP canonical";
    HostPat: HostState, HOST_CR, "host IA32_PAT holds valid memory types (with load IA32_PAT)";
    HostEferReserved: HostState, HOST_CR, "host IA32_EFER reserved bits 0 (with load IA32_EFER)";
    HostEferLmaLme: HostState, HOST_CR, "host IA32_EFER.LMA and LME equal host address-space size (with load IA32_EFER)";
    HostSelectorRplTi: HostState, HOST_SEG, "host selector RPL and TI 0";
    HostCsZero: HostState, HOST_SEG, "host CS selector not 0000H";
    HostTrZero: HostState, HOST_SEG, "host TR selector not 0000H";
    HostSsZero: HostState, HOST_SEG, "host SS selector not 0000H when host address-space size is 0";
    HostBaseCanonical: HostState, HOST_SEG, "host FS, GS, TR, GDTR and IDTR bases canonical";
    HostAddressSpaceSize: HostState, HOST_SIZE, "host address-space size 1 when VM entry is executed in IA-32e mode";
    HostCr4Pae: HostState, HOST_SIZE, "host CR4.PAE 1 when host address-space size is 1";
    HostRipCanonical: HostState, HOST_SIZE, "host RIP canonical when host address-space size is 1";
    GuestCr0Fixed: GuestState, GUEST_CR, "guest CR0 satisfies the fixed bits (PE and PG relaxed for unrestricted guest)";
    GuestCr0PgWithoutPe: GuestState, GUEST_CR, "guest CR0.PG 1 requires CR0.PE 1";
    GuestCr4Fixed: GuestState, GUEST_CR, "guest CR4 satisfies IA32_VMX_CR4_FIXED0 and IA32_VMX_CR4_FIXED1";
    GuestDebugctlReserved: GuestState, GUEST_CR, "guest IA32_DEBUGCTL reserved bits 0 (with load debug controls)";
    GuestIa32eNeedsPaging: GuestState, GUEST_CR, "IA-32e mode guest requires guest CR0.PG 1 and CR4.PAE 1";
    GuestPcideOutsideIa32e: GuestState, GUEST_CR, "guest CR4.PCIDE 0 when IA-32e mode guest is 0";
    GuestCr3Width: GuestState, GUEST_CR, "guest CR3 bits beyond the physical-address width 0";
    GuestDr7High: GuestState, GUEST_CR, "guest DR7 bits 63:32 0 (with load debug controls)";
    GuestSysenterCanonical: GuestState, GUEST_CR, "guest IA32_SYSENTER_ESP and IA32_SYSENTER_EIP canonical";
    GuestPat: GuestState, GUEST_CR, "guest IA32_PAT holds valid memory types (with load IA32_PAT)";
    GuestEferReserved: GuestState, GUEST_CR, "guest IA32_EFER reserved bits 0 (with load IA32_EFER)";
    GuestEferLma: GuestState, GUEST_CR, "guest IA32_EFER.LMA equals IA-32e mode guest (with load IA32_EFER)";
    GuestEferLme: GuestState, GUEST_CR, "guest IA32_EFER.LME equals LMA when CR0.PG is 1 (with load IA32_EFER)";
    GuestTrTi: GuestState, GUEST_SEG, "guest TR selector TI 0";
    GuestLdtrTi: GuestState, GUEST_SEG, "guest LDTR selector TI 0 when LDTR is usable";
    GuestSsCsRpl: GuestState, GUEST_SEG, "guest SS.RPL equals CS.RPL (not unrestricted guest, not virtual-8086 mode)";
    GuestV86Base: GuestState, GUEST_SEG, "guest CS, SS, DS, ES, FS, GS base equals the selector shifted left 4 bits in virtual-8086 mode";
    GuestBaseCanonical: GuestState, GUEST_SEG, "guest TR, FS, GS and usable LDTR bases canonical";
    GuestBaseHigh: GuestState, GUEST_SEG, "guest CS and usable SS, DS, ES bases bits 63:32 0";
    GuestCsType: GuestState, GUEST_SEG, "guest CS type 9, 11, 13 or 15 (3 with unrestricted guest)";
    GuestSsType: GuestState, GUEST_SEG, "guest SS type 3 or 7 when usable";
    GuestDataAccessed: GuestState, GUEST_SEG, "guest DS, ES, FS, GS accessed (type bit 0) when usable";
    GuestDataCodeReadable: GuestState, GUEST_SEG, "guest DS, ES, FS, GS code segments readable (type bit 1) when usable";
    GuestSegmentS: GuestState, GUEST_SEG, "guest CS and usable SS, DS, ES, FS, GS have S = 1";
    GuestCsDpl: GuestState, GUEST_SEG, "guest CS.DPL equals SS.DPL (non-conforming), at most SS.DPL (conforming), 0 for type 3";
    GuestSsDpl: GuestState, GUEST_SEG, "guest SS.DPL equals SS.RPL (not unrestricted guest)";
    GuestDataDpl: GuestState, GUEST_SEG, "guest DS, ES, FS, GS DPL not below RPL for data and non-conforming code (not unrestricted guest)";
    GuestSegmentPresent: GuestState, GUEST_SEG, "guest CS and usable SS, DS, ES, FS, GS present";
    GuestSegmentReserved: GuestState, GUEST_SEG, "guest segment access-rights bits 11:8 and 31:17 0";
    GuestCsLongAndDefault: GuestState, GUEST_SEG, "guest CS.D 0 when CS.L is 1 in an IA-32e mode guest";
    GuestSegmentGranularity: GuestState, GUEST_SEG, "guest segment limit and G bit consistent";
    GuestV86Limit: GuestState, GUEST_SEG, "guest CS, SS, DS, ES, FS, GS limit 0000FFFFH in virtual-8086 mode";
    GuestV86AccessRights: GuestState, GUEST_SEG, "guest CS, SS, DS, ES, FS, GS access rights 000000F3H in virtual-8086 mode";
    GuestTrType: GuestState, GUEST_SEG, "guest TR type 11 (busy 64-bit TSS) in an IA-32e mode guest, 3 or 11 otherwise";
    GuestTrSystem: GuestState, GUEST_SEG, "guest TR is a system segment (S = 0)";
    GuestTrPresent: GuestState, GUEST_SEG, "guest TR present";
    GuestTrUnusable: GuestState, GUEST_SEG, "guest TR usable";
    GuestLdtrType: GuestState, GUEST_SEG, "guest LDTR type 2, S = 0 and present when usable";
    GuestDescriptorTableBase: GuestState, GUEST_DT, "guest GDTR and IDTR bases canonical";
    GuestDescriptorTableLimit: GuestState, GUEST_DT, "guest GDTR and IDTR limits bits 31:16 0";
    GuestRipHigh: GuestState, GUEST_RIP, "guest RIP bits 63:32 0 outside 64-bit mode";
    GuestRipCanonical: GuestState, GUEST_RIP, "guest RIP canonical in 64-bit mode";
    GuestRflagsReserved: GuestState, GUEST_RIP, "guest RFLAGS bits 63:22, 15, 5 and 3 0 and bit 1 1";
    GuestRflagsVm: GuestState, GUEST_RIP, "guest RFLAGS.VM 0 in an IA-32e mode guest or with CR0.PE 0";
    GuestRflagsIfForExternalInterrupt: GuestState, GUEST_RIP, "guest RFLAGS.IF 1 when an external interrupt is injected";
    GuestActivityState: GuestState, GUEST_NR, "guest activity state 0 to 3 and supported by IA32_VMX_MISC bits 8:6";
    GuestHltNeedsSsDpl0: GuestState, GUEST_NR, "guest HLT activity state requires SS.DPL 0";
    GuestInterruptibilityReserved: GuestState, GUEST_NR, "guest interruptibility-state bits 31:5 0";
    GuestStiAndMovSs: GuestState, GUEST_NR, "guest blocking by STI and by MOV SS not both 1";
    GuestStiWithIfClear: GuestState, GUEST_NR, "guest blocking by STI 0 when RFLAGS.IF is 0";
    GuestBlockingNotActive: GuestState, GUEST_NR, "guest blocking by STI or MOV SS only in the active state";
    GuestSmiBlockingOutsideSmm: GuestState, GUEST_NR, "guest blocking by SMI 0 outside SMM";
    GuestInjectionBlocked: GuestState, GUEST_NR, "no blocking by STI or MOV SS when an external interrupt or NMI is injected";
    GuestNmiInjectionBlockedBySti: GuestState, GUEST_NR, "no blocking by STI when an NMI is injected";
    GuestPendingDebugReserved: GuestState, GUEST_NR, "guest pending debug exceptions reserved bits 0";
    VmcsLinkPointer: GuestState, GUEST_NR, "VMCS link pointer FFFFFFFF_FFFFFFFFH (this hypervisor uses no shadow VMCS)";
}

impl Check {
    /// The exit qualification a guest-state failure reports (28.2.1, "Basic VM-Exit Information"): 4 for the
    /// VMCS link pointer, 3 for an NMI injected into blocking by STI, 0 otherwise.
    pub const fn qualification(self) -> u64 {
        match self {
            Self::VmcsLinkPointer => 4,
            Self::GuestNmiInjectionBlockedBySti => 3,
            _ => 0,
        }
    }
}
