//! VMCS field encodings as types.
//!
//! SDM vol. 3C 25.11.2, "VMREAD, VMWRITE, and Encodings of VMCS Fields" (table "Structure of VMCS Component
//! Encoding"): bit 0 access type (0 full, 1 high; high is only for 64-bit fields), bits 9:1 index, bits 11:10
//! type (0 control, 1 VM-exit information, 2 guest state, 3 host state), bit 12 reserved (0), bits 14:13 width
//! (0 16-bit, 1 64-bit, 2 32-bit, 3 natural-width), bits 31:15 reserved (0). The encodings of the named fields
//! are those of SDM vol. 3D appendix B, "Field Encoding in VMCS" (B.1 16-bit, B.2 64-bit, B.3 32-bit, B.4
//! natural-width fields), written here as the SDM prints them so that a test can check each against the type
//! and width it claims.

use core::fmt;

/// Bits 14:13 of an encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Width {
    Bits16,
    Bits64,
    Bits32,
    /// 64 bits on processors that support Intel 64 (this hypervisor runs only on those).
    Natural,
}

impl Width {
    /// The mask a VMWRITE keeps of its operand (SDM vol. 3C 31.3, VMWRITE: the bits above the field's width are
    /// ignored).
    pub const fn mask(self) -> u64 {
        match self {
            Self::Bits16 => 0xFFFF,
            Self::Bits32 => 0xFFFF_FFFF,
            Self::Bits64 | Self::Natural => u64::MAX,
        }
    }
}

/// Bits 11:10 of an encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FieldKind {
    Control,
    /// VM-exit information, also called read-only data fields.
    ExitInformation,
    GuestState,
    HostState,
}

/// Bit 0 of an encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessType {
    Full,
    /// Bits 63:32 of a 64-bit field.
    High,
}

/// Why an encoding is not a VMCS component encoding at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodingError {
    /// Bit 12 or any of bits 31:15 is set.
    ReservedBits(u32),
    /// The HIGH access type of a field that is not 64 bits wide.
    HighOfNon64Bit(u32),
}

impl fmt::Display for EncodingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReservedBits(raw) => {
                write!(f, "encoding 0x{raw:x} sets reserved bit 12 or bits 31:15")
            }
            Self::HighOfNon64Bit(raw) => {
                write!(
                    f,
                    "encoding 0x{raw:x} asks for the high half of a field that is not 64-bit"
                )
            }
        }
    }
}

/// A VMCS component encoding (the register operand of VMREAD/VMWRITE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Field(u32);

const RESERVED_BITS: u32 = 0xFFFF_8000 | (1 << 12);

impl Field {
    /// The full-access encoding of the field of this width, type and index.
    pub const fn new(width: Width, kind: FieldKind, index: u16) -> Self {
        let width = match width {
            Width::Bits16 => 0,
            Width::Bits64 => 1,
            Width::Bits32 => 2,
            Width::Natural => 3,
        };
        let kind = match kind {
            FieldKind::Control => 0,
            FieldKind::ExitInformation => 1,
            FieldKind::GuestState => 2,
            FieldKind::HostState => 3,
        };
        Self((width << 13) | (kind << 10) | (((index as u32) & 0x1FF) << 1))
    }

    /// Any 32-bit value, as a VMREAD/VMWRITE operand; [`Field::check`] says whether it is well formed.
    pub const fn from_raw(raw: u32) -> Self {
        Self(raw)
    }

    pub const fn encoding(self) -> u32 {
        self.0
    }

    pub const fn access(self) -> AccessType {
        if self.0 & 1 == 0 {
            AccessType::Full
        } else {
            AccessType::High
        }
    }

    /// Bits 9:1.
    pub const fn index(self) -> u16 {
        ((self.0 >> 1) & 0x1FF) as u16
    }

    pub const fn kind(self) -> FieldKind {
        match (self.0 >> 10) & 3 {
            0 => FieldKind::Control,
            1 => FieldKind::ExitInformation,
            2 => FieldKind::GuestState,
            _ => FieldKind::HostState,
        }
    }

    pub const fn width(self) -> Width {
        match (self.0 >> 13) & 3 {
            0 => Width::Bits16,
            1 => Width::Bits64,
            2 => Width::Bits32,
            _ => Width::Natural,
        }
    }

    /// The HIGH access of this (64-bit) field: bits 63:32 as a 32-bit value.
    pub const fn high(self) -> Self {
        Self(self.0 | 1)
    }

    /// The FULL access of this field.
    pub const fn full(self) -> Self {
        Self(self.0 & !1)
    }

    /// Whether the encoding is well formed (reserved bits clear, HIGH only for 64-bit fields). A well-formed
    /// encoding may still name a component the processor does not support (VM-instruction error 12).
    pub const fn check(self) -> Result<(), EncodingError> {
        if self.0 & RESERVED_BITS != 0 {
            return Err(EncodingError::ReservedBits(self.0));
        }
        if matches!(self.access(), AccessType::High) && !matches!(self.width(), Width::Bits64) {
            return Err(EncodingError::HighOfNon64Bit(self.0));
        }
        Ok(())
    }

    pub const fn is_read_only(self) -> bool {
        matches!(self.kind(), FieldKind::ExitInformation)
    }

    /// The name of a field listed in [`ALL`] (its FULL access), e.g. `GUEST_CS_SELECTOR`.
    pub fn name(self) -> Option<&'static str> {
        let full = self.full();
        ALL.iter()
            .find(|entry| entry.field == full)
            .map(|entry| entry.name)
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.name(), self.access()) {
            (Some(name), AccessType::Full) => write!(f, "{name} (0x{:x})", self.0),
            (Some(name), AccessType::High) => write!(f, "{name}_HIGH (0x{:x})", self.0),
            (None, _) => write!(f, "field 0x{:x}", self.0),
        }
    }
}

/// One named field with the width and type the SDM lists it under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamedField {
    pub field: Field,
    pub name: &'static str,
    pub width: Width,
    pub kind: FieldKind,
}

macro_rules! named_fields {
    ($( $(#[$doc:meta])* $name:ident = $raw:literal, $width:ident, $kind:ident; )*) => {
        impl Field {
            $( $(#[$doc])* pub const $name: Field = Field($raw); )*
        }

        /// Every named field, in appendix B order.
        pub const ALL: &[NamedField] = &[
            $( NamedField {
                field: Field::$name,
                name: stringify!($name),
                width: Width::$width,
                kind: FieldKind::$kind,
            }, )*
        ];
    };
}

named_fields! {
    // B.1.1 16-Bit Control Fields
    /// Virtual-processor identifier (VPID, SDM vol. 3C 25.6.12).
    VPID = 0x0000, Bits16, Control;
    POSTED_INTERRUPT_NOTIFICATION_VECTOR = 0x0002, Bits16, Control;
    EPTP_INDEX = 0x0004, Bits16, Control;
    // B.1.2 16-Bit Guest-State Fields
    GUEST_ES_SELECTOR = 0x0800, Bits16, GuestState;
    GUEST_CS_SELECTOR = 0x0802, Bits16, GuestState;
    GUEST_SS_SELECTOR = 0x0804, Bits16, GuestState;
    GUEST_DS_SELECTOR = 0x0806, Bits16, GuestState;
    GUEST_FS_SELECTOR = 0x0808, Bits16, GuestState;
    GUEST_GS_SELECTOR = 0x080A, Bits16, GuestState;
    GUEST_LDTR_SELECTOR = 0x080C, Bits16, GuestState;
    GUEST_TR_SELECTOR = 0x080E, Bits16, GuestState;
    GUEST_INTERRUPT_STATUS = 0x0810, Bits16, GuestState;
    GUEST_PML_INDEX = 0x0812, Bits16, GuestState;
    // B.1.3 16-Bit Host-State Fields
    HOST_ES_SELECTOR = 0x0C00, Bits16, HostState;
    HOST_CS_SELECTOR = 0x0C02, Bits16, HostState;
    HOST_SS_SELECTOR = 0x0C04, Bits16, HostState;
    HOST_DS_SELECTOR = 0x0C06, Bits16, HostState;
    HOST_FS_SELECTOR = 0x0C08, Bits16, HostState;
    HOST_GS_SELECTOR = 0x0C0A, Bits16, HostState;
    HOST_TR_SELECTOR = 0x0C0C, Bits16, HostState;
    // B.2.1 64-Bit Control Fields
    IO_BITMAP_A = 0x2000, Bits64, Control;
    IO_BITMAP_B = 0x2002, Bits64, Control;
    MSR_BITMAP = 0x2004, Bits64, Control;
    VM_EXIT_MSR_STORE_ADDRESS = 0x2006, Bits64, Control;
    VM_EXIT_MSR_LOAD_ADDRESS = 0x2008, Bits64, Control;
    VM_ENTRY_MSR_LOAD_ADDRESS = 0x200A, Bits64, Control;
    EXECUTIVE_VMCS_POINTER = 0x200C, Bits64, Control;
    PML_ADDRESS = 0x200E, Bits64, Control;
    TSC_OFFSET = 0x2010, Bits64, Control;
    VIRTUAL_APIC_ADDRESS = 0x2012, Bits64, Control;
    APIC_ACCESS_ADDRESS = 0x2014, Bits64, Control;
    POSTED_INTERRUPT_DESCRIPTOR_ADDRESS = 0x2016, Bits64, Control;
    VM_FUNCTION_CONTROLS = 0x2018, Bits64, Control;
    /// Extended-page-table pointer (EPTP, SDM vol. 3C 25.6.11).
    EPT_POINTER = 0x201A, Bits64, Control;
    EPTP_LIST_ADDRESS = 0x2024, Bits64, Control;
    VMREAD_BITMAP_ADDRESS = 0x2026, Bits64, Control;
    VMWRITE_BITMAP_ADDRESS = 0x2028, Bits64, Control;
    XSS_EXITING_BITMAP = 0x202C, Bits64, Control;
    TSC_MULTIPLIER = 0x2032, Bits64, Control;
    // B.2.2 64-Bit Read-Only Data Field
    GUEST_PHYSICAL_ADDRESS = 0x2400, Bits64, ExitInformation;
    // B.2.3 64-Bit Guest-State Fields
    /// VMCS link pointer: all ones unless VMCS shadowing is used (SDM vol. 3C 25.4.2).
    VMCS_LINK_POINTER = 0x2800, Bits64, GuestState;
    GUEST_IA32_DEBUGCTL = 0x2802, Bits64, GuestState;
    GUEST_IA32_PAT = 0x2804, Bits64, GuestState;
    GUEST_IA32_EFER = 0x2806, Bits64, GuestState;
    GUEST_IA32_PERF_GLOBAL_CTRL = 0x2808, Bits64, GuestState;
    GUEST_PDPTE0 = 0x280A, Bits64, GuestState;
    GUEST_PDPTE1 = 0x280C, Bits64, GuestState;
    GUEST_PDPTE2 = 0x280E, Bits64, GuestState;
    GUEST_PDPTE3 = 0x2810, Bits64, GuestState;
    // B.2.4 64-Bit Host-State Fields
    HOST_IA32_PAT = 0x2C00, Bits64, HostState;
    HOST_IA32_EFER = 0x2C02, Bits64, HostState;
    HOST_IA32_PERF_GLOBAL_CTRL = 0x2C04, Bits64, HostState;
    // B.3.1 32-Bit Control Fields
    PIN_BASED_VM_EXEC_CONTROL = 0x4000, Bits32, Control;
    PRIMARY_PROC_BASED_VM_EXEC_CONTROL = 0x4002, Bits32, Control;
    EXCEPTION_BITMAP = 0x4004, Bits32, Control;
    PAGE_FAULT_ERROR_CODE_MASK = 0x4006, Bits32, Control;
    PAGE_FAULT_ERROR_CODE_MATCH = 0x4008, Bits32, Control;
    CR3_TARGET_COUNT = 0x400A, Bits32, Control;
    VM_EXIT_CONTROLS = 0x400C, Bits32, Control;
    VM_EXIT_MSR_STORE_COUNT = 0x400E, Bits32, Control;
    VM_EXIT_MSR_LOAD_COUNT = 0x4010, Bits32, Control;
    VM_ENTRY_CONTROLS = 0x4012, Bits32, Control;
    VM_ENTRY_MSR_LOAD_COUNT = 0x4014, Bits32, Control;
    VM_ENTRY_INTERRUPTION_INFO = 0x4016, Bits32, Control;
    VM_ENTRY_EXCEPTION_ERROR_CODE = 0x4018, Bits32, Control;
    VM_ENTRY_INSTRUCTION_LENGTH = 0x401A, Bits32, Control;
    TPR_THRESHOLD = 0x401C, Bits32, Control;
    SECONDARY_PROC_BASED_VM_EXEC_CONTROL = 0x401E, Bits32, Control;
    PLE_GAP = 0x4020, Bits32, Control;
    PLE_WINDOW = 0x4022, Bits32, Control;
    // B.3.2 32-Bit Read-Only Data Fields
    VM_INSTRUCTION_ERROR = 0x4400, Bits32, ExitInformation;
    EXIT_REASON = 0x4402, Bits32, ExitInformation;
    VM_EXIT_INTERRUPTION_INFO = 0x4404, Bits32, ExitInformation;
    VM_EXIT_INTERRUPTION_ERROR_CODE = 0x4406, Bits32, ExitInformation;
    IDT_VECTORING_INFO = 0x4408, Bits32, ExitInformation;
    IDT_VECTORING_ERROR_CODE = 0x440A, Bits32, ExitInformation;
    VM_EXIT_INSTRUCTION_LENGTH = 0x440C, Bits32, ExitInformation;
    VM_EXIT_INSTRUCTION_INFO = 0x440E, Bits32, ExitInformation;
    // B.3.3 32-Bit Guest-State Fields
    GUEST_ES_LIMIT = 0x4800, Bits32, GuestState;
    GUEST_CS_LIMIT = 0x4802, Bits32, GuestState;
    GUEST_SS_LIMIT = 0x4804, Bits32, GuestState;
    GUEST_DS_LIMIT = 0x4806, Bits32, GuestState;
    GUEST_FS_LIMIT = 0x4808, Bits32, GuestState;
    GUEST_GS_LIMIT = 0x480A, Bits32, GuestState;
    GUEST_LDTR_LIMIT = 0x480C, Bits32, GuestState;
    GUEST_TR_LIMIT = 0x480E, Bits32, GuestState;
    GUEST_GDTR_LIMIT = 0x4810, Bits32, GuestState;
    GUEST_IDTR_LIMIT = 0x4812, Bits32, GuestState;
    GUEST_ES_ACCESS_RIGHTS = 0x4814, Bits32, GuestState;
    GUEST_CS_ACCESS_RIGHTS = 0x4816, Bits32, GuestState;
    GUEST_SS_ACCESS_RIGHTS = 0x4818, Bits32, GuestState;
    GUEST_DS_ACCESS_RIGHTS = 0x481A, Bits32, GuestState;
    GUEST_FS_ACCESS_RIGHTS = 0x481C, Bits32, GuestState;
    GUEST_GS_ACCESS_RIGHTS = 0x481E, Bits32, GuestState;
    GUEST_LDTR_ACCESS_RIGHTS = 0x4820, Bits32, GuestState;
    GUEST_TR_ACCESS_RIGHTS = 0x4822, Bits32, GuestState;
    GUEST_INTERRUPTIBILITY_STATE = 0x4824, Bits32, GuestState;
    GUEST_ACTIVITY_STATE = 0x4826, Bits32, GuestState;
    GUEST_SMBASE = 0x4828, Bits32, GuestState;
    GUEST_IA32_SYSENTER_CS = 0x482A, Bits32, GuestState;
    VMX_PREEMPTION_TIMER_VALUE = 0x482E, Bits32, GuestState;
    // B.3.4 32-Bit Host-State Field
    HOST_IA32_SYSENTER_CS = 0x4C00, Bits32, HostState;
    // B.4.1 Natural-Width Control Fields
    CR0_GUEST_HOST_MASK = 0x6000, Natural, Control;
    CR4_GUEST_HOST_MASK = 0x6002, Natural, Control;
    CR0_READ_SHADOW = 0x6004, Natural, Control;
    CR4_READ_SHADOW = 0x6006, Natural, Control;
    CR3_TARGET_VALUE0 = 0x6008, Natural, Control;
    CR3_TARGET_VALUE1 = 0x600A, Natural, Control;
    CR3_TARGET_VALUE2 = 0x600C, Natural, Control;
    CR3_TARGET_VALUE3 = 0x600E, Natural, Control;
    // B.4.2 Natural-Width Read-Only Data Fields
    EXIT_QUALIFICATION = 0x6400, Natural, ExitInformation;
    IO_RCX = 0x6402, Natural, ExitInformation;
    IO_RSI = 0x6404, Natural, ExitInformation;
    IO_RDI = 0x6406, Natural, ExitInformation;
    IO_RIP = 0x6408, Natural, ExitInformation;
    GUEST_LINEAR_ADDRESS = 0x640A, Natural, ExitInformation;
    // B.4.3 Natural-Width Guest-State Fields
    GUEST_CR0 = 0x6800, Natural, GuestState;
    GUEST_CR3 = 0x6802, Natural, GuestState;
    GUEST_CR4 = 0x6804, Natural, GuestState;
    GUEST_ES_BASE = 0x6806, Natural, GuestState;
    GUEST_CS_BASE = 0x6808, Natural, GuestState;
    GUEST_SS_BASE = 0x680A, Natural, GuestState;
    GUEST_DS_BASE = 0x680C, Natural, GuestState;
    GUEST_FS_BASE = 0x680E, Natural, GuestState;
    GUEST_GS_BASE = 0x6810, Natural, GuestState;
    GUEST_LDTR_BASE = 0x6812, Natural, GuestState;
    GUEST_TR_BASE = 0x6814, Natural, GuestState;
    GUEST_GDTR_BASE = 0x6816, Natural, GuestState;
    GUEST_IDTR_BASE = 0x6818, Natural, GuestState;
    GUEST_DR7 = 0x681A, Natural, GuestState;
    GUEST_RSP = 0x681C, Natural, GuestState;
    GUEST_RIP = 0x681E, Natural, GuestState;
    GUEST_RFLAGS = 0x6820, Natural, GuestState;
    GUEST_PENDING_DEBUG_EXCEPTIONS = 0x6822, Natural, GuestState;
    GUEST_IA32_SYSENTER_ESP = 0x6824, Natural, GuestState;
    GUEST_IA32_SYSENTER_EIP = 0x6826, Natural, GuestState;
    // B.4.4 Natural-Width Host-State Fields
    HOST_CR0 = 0x6C00, Natural, HostState;
    HOST_CR3 = 0x6C02, Natural, HostState;
    HOST_CR4 = 0x6C04, Natural, HostState;
    HOST_FS_BASE = 0x6C06, Natural, HostState;
    HOST_GS_BASE = 0x6C08, Natural, HostState;
    HOST_TR_BASE = 0x6C0A, Natural, HostState;
    HOST_GDTR_BASE = 0x6C0C, Natural, HostState;
    HOST_IDTR_BASE = 0x6C0E, Natural, HostState;
    HOST_IA32_SYSENTER_ESP = 0x6C10, Natural, HostState;
    HOST_IA32_SYSENTER_EIP = 0x6C12, Natural, HostState;
    HOST_RSP = 0x6C14, Natural, HostState;
    HOST_RIP = 0x6C16, Natural, HostState;
}

/// The guest segment registers in VMCS order (ES, CS, SS, DS, FS, GS, LDTR, TR: the index order of
/// appendix B), with their four fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentFields {
    pub name: &'static str,
    pub selector: Field,
    pub base: Field,
    pub limit: Field,
    pub access_rights: Field,
}

pub const GUEST_SEGMENTS: [SegmentFields; 8] = {
    const fn seg(name: &'static str, i: u16) -> SegmentFields {
        SegmentFields {
            name,
            selector: Field::new(Width::Bits16, FieldKind::GuestState, i),
            base: Field::new(Width::Natural, FieldKind::GuestState, 3 + i),
            limit: Field::new(Width::Bits32, FieldKind::GuestState, i),
            access_rights: Field::new(Width::Bits32, FieldKind::GuestState, 10 + i),
        }
    }
    [
        seg("ES", 0),
        seg("CS", 1),
        seg("SS", 2),
        seg("DS", 3),
        seg("FS", 4),
        seg("GS", 5),
        seg("LDTR", 6),
        seg("TR", 7),
    ]
};

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// The type a field's name implies, independently of the encoding.
    fn expected_kind(name: &str) -> FieldKind {
        const EXIT_INFORMATION: &[&str] = &[
            "GUEST_PHYSICAL_ADDRESS",
            "GUEST_LINEAR_ADDRESS",
            "VM_INSTRUCTION_ERROR",
            "EXIT_REASON",
            "EXIT_QUALIFICATION",
            "VM_EXIT_INTERRUPTION_INFO",
            "VM_EXIT_INTERRUPTION_ERROR_CODE",
            "IDT_VECTORING_INFO",
            "IDT_VECTORING_ERROR_CODE",
            "VM_EXIT_INSTRUCTION_LENGTH",
            "VM_EXIT_INSTRUCTION_INFO",
            "IO_RCX",
            "IO_RSI",
            "IO_RDI",
            "IO_RIP",
        ];
        if EXIT_INFORMATION.contains(&name) {
            FieldKind::ExitInformation
        } else if name.starts_with("GUEST_")
            || name == "VMCS_LINK_POINTER"
            || name == "VMX_PREEMPTION_TIMER_VALUE"
        {
            FieldKind::GuestState
        } else if name.starts_with("HOST_") {
            FieldKind::HostState
        } else {
            FieldKind::Control
        }
    }

    #[test]
    fn every_named_field_decodes_to_the_width_and_type_it_claims() {
        for entry in ALL {
            let field = entry.field;
            assert_eq!(field.check(), Ok(()), "{}", entry.name);
            assert_eq!(field.width(), entry.width, "{} width", entry.name);
            assert_eq!(field.kind(), entry.kind, "{} type", entry.name);
            assert_eq!(field.access(), AccessType::Full, "{}", entry.name);
            assert_eq!(
                Field::new(entry.width, entry.kind, field.index()),
                field,
                "{}: rebuilt from its parts",
                entry.name
            );
            let prefix_kind = expected_kind(entry.name);
            assert_eq!(
                prefix_kind, entry.kind,
                "{}: name and type disagree",
                entry.name
            );
            assert_eq!(field.name(), Some(entry.name));
        }
        let distinct: HashSet<u32> = ALL.iter().map(|e| e.field.encoding()).collect();
        assert_eq!(distinct.len(), ALL.len(), "duplicate encodings");
    }

    #[test]
    fn known_encodings_and_parts() {
        assert_eq!(Field::VM_INSTRUCTION_ERROR.encoding(), 0x4400);
        assert_eq!(
            Field::VM_INSTRUCTION_ERROR.encoding() as u64,
            crate::vmx::VMCS_VM_INSTRUCTION_ERROR
        );
        assert_eq!(Field::GUEST_CS_SELECTOR.index(), 1);
        assert_eq!(Field::HOST_RIP.index(), 11);
        assert!(Field::EXIT_REASON.is_read_only());
        assert!(!Field::GUEST_RIP.is_read_only());
        assert_eq!(Field::EPT_POINTER.high().encoding(), 0x201B);
        assert_eq!(Field::EPT_POINTER.high().access(), AccessType::High);
        assert_eq!(Field::EPT_POINTER.high().full(), Field::EPT_POINTER);
        // Both are idempotent: the high access of the high access is still the high access.
        assert_eq!(Field::EPT_POINTER.high().high(), Field::EPT_POINTER.high());
        assert_eq!(Field::EPT_POINTER.full().full(), Field::EPT_POINTER);
        assert_eq!(Field::EPT_POINTER.high().check(), Ok(()));
        assert_eq!(
            format!("{}", Field::EPT_POINTER.high()),
            "EPT_POINTER_HIGH (0x201b)"
        );
        assert_eq!(format!("{}", Field::GUEST_RIP), "GUEST_RIP (0x681e)");
        assert_eq!(format!("{}", Field::from_raw(0x4c02)), "field 0x4c02");
    }

    #[test]
    fn malformed_encodings_are_rejected() {
        assert_eq!(
            Field::from_raw(0x8000).check(),
            Err(EncodingError::ReservedBits(0x8000))
        );
        assert_eq!(
            Field::from_raw(0x1000).check(),
            Err(EncodingError::ReservedBits(0x1000))
        );
        assert_eq!(
            Field::GUEST_CR0.high().check(),
            Err(EncodingError::HighOfNon64Bit(0x6801))
        );
        assert_eq!(
            Field::GUEST_CS_SELECTOR.high().check(),
            Err(EncodingError::HighOfNon64Bit(0x0803))
        );
        assert_eq!(
            format!("{}", EncodingError::ReservedBits(0x8000)),
            "encoding 0x8000 sets reserved bit 12 or bits 31:15"
        );
        assert_eq!(
            format!("{}", EncodingError::HighOfNon64Bit(0x6801)),
            "encoding 0x6801 asks for the high half of a field that is not 64-bit"
        );
    }

    #[test]
    fn segment_table_matches_the_named_fields() {
        let cs = GUEST_SEGMENTS[1];
        assert_eq!(cs.selector, Field::GUEST_CS_SELECTOR);
        assert_eq!(cs.base, Field::GUEST_CS_BASE);
        assert_eq!(cs.limit, Field::GUEST_CS_LIMIT);
        assert_eq!(cs.access_rights, Field::GUEST_CS_ACCESS_RIGHTS);
        let tr = GUEST_SEGMENTS[7];
        assert_eq!(tr.selector, Field::GUEST_TR_SELECTOR);
        assert_eq!(tr.base, Field::GUEST_TR_BASE);
        assert_eq!(tr.limit, Field::GUEST_TR_LIMIT);
        assert_eq!(tr.access_rights, Field::GUEST_TR_ACCESS_RIGHTS);
        assert_eq!(GUEST_SEGMENTS[6].base, Field::GUEST_LDTR_BASE);
    }
}
