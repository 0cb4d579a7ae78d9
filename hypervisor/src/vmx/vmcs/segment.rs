//! Segment access rights as the VMCS stores them (SDM vol. 3C 25.4.1, "Guest Register State", table "Format of
//! Access Rights"): bits 3:0 segment type, 4 S (descriptor type, 1 = code or data), 6:5 DPL, 7 P, 11:8 reserved,
//! 12 AVL, 13 L (64-bit mode, CS only), 14 D/B, 15 G, 16 segment unusable, 31:17 reserved.

/// A 32-bit access-rights field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessRights(pub u32);

impl AccessRights {
    /// Bits 11:8 and 31:17.
    pub const RESERVED: u32 = 0xFFFE_0F00;
    /// A 64-bit code segment: type 11 (execute/read, accessed), S, DPL 0, P, L, G.
    pub const CODE64: Self = Self(0xA09B);
    /// A flat data segment: type 3 (read/write, accessed), S, DPL 0, P, D/B, G.
    pub const DATA: Self = Self(0xC093);
    /// A busy 64-bit TSS: type 11, S = 0, DPL 0, P.
    pub const TSS64_BUSY: Self = Self(0x008B);
    /// An LDT: type 2, S = 0, P.
    pub const LDT: Self = Self(0x0082);
    /// The segment is unusable (bit 16).
    pub const UNUSABLE: Self = Self(1 << 16);

    pub const fn segment_type(self) -> u8 {
        (self.0 & 0xF) as u8
    }
    /// S = 1: a code or data segment (0: a system segment).
    pub const fn code_or_data(self) -> bool {
        self.0 & (1 << 4) != 0
    }
    pub const fn dpl(self) -> u8 {
        ((self.0 >> 5) & 3) as u8
    }
    pub const fn present(self) -> bool {
        self.0 & (1 << 7) != 0
    }
    pub const fn long_mode(self) -> bool {
        self.0 & (1 << 13) != 0
    }
    pub const fn default_big(self) -> bool {
        self.0 & (1 << 14) != 0
    }
    pub const fn granularity(self) -> bool {
        self.0 & (1 << 15) != 0
    }
    pub const fn unusable(self) -> bool {
        self.0 & (1 << 16) != 0
    }
    pub const fn reserved_bits(self) -> u32 {
        self.0 & Self::RESERVED
    }
    /// Type bit 3: a code segment (when S = 1).
    pub const fn is_code(self) -> bool {
        self.0 & 0x8 != 0
    }

    /// The SDM's limit/granularity rule: if any of limit bits 11:0 is 0, G must be 0; if any of bits 31:20 is 1,
    /// G must be 1.
    pub const fn limit_consistent(self, limit: u32) -> bool {
        if limit & 0xFFF != 0xFFF && self.granularity() {
            return false;
        }
        limit & 0xFFF0_0000 == 0 || self.granularity()
    }
}

/// A selector's RPL (bits 1:0).
pub const fn rpl(selector: u16) -> u8 {
    (selector & 3) as u8
}

/// A selector's TI bit (bit 2: 1 = LDT).
pub const fn ti(selector: u16) -> bool {
    selector & 4 != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_named_access_rights_decode_as_documented() {
        let cs = AccessRights::CODE64;
        assert_eq!(cs.segment_type(), 11);
        assert!(cs.code_or_data() && cs.present() && cs.long_mode() && cs.granularity());
        assert!(!cs.default_big() && !cs.unusable());
        assert_eq!(cs.dpl(), 0);
        let data = AccessRights::DATA;
        assert_eq!(data.segment_type(), 3);
        assert!(data.default_big() && !data.is_code());
        assert!(
            AccessRights::CODE64.is_code(),
            "type bit 3 of a code segment"
        );
        let tss = AccessRights::TSS64_BUSY;
        assert_eq!(tss.segment_type(), 11);
        assert!(!tss.code_or_data() && tss.present());
        assert!(AccessRights::UNUSABLE.unusable());
        assert_eq!(AccessRights(0x0001_0F00).reserved_bits(), 0x0F00);
        assert_eq!(AccessRights(1 << 17).reserved_bits(), 1 << 17);
        assert_eq!(AccessRights(0xE09B).dpl(), 0);
        assert_eq!(AccessRights(0x00F3).dpl(), 3);
    }

    #[test]
    fn limit_and_granularity() {
        assert!(AccessRights::CODE64.limit_consistent(0xFFFF_FFFF));
        assert!(
            !AccessRights::CODE64.limit_consistent(0xFFFF_F000),
            "G=1 needs limit[11:0] all 1"
        );
        assert!(AccessRights::TSS64_BUSY.limit_consistent(0x67));
        assert!(
            !AccessRights::TSS64_BUSY.limit_consistent(0x0010_0000),
            "G=0 needs limit[31:20] 0"
        );
        assert!(AccessRights(0x808B).limit_consistent(0x000F_FFFF));
        assert_eq!((rpl(0x13), ti(0x13)), (3, false));
        assert!(ti(0x0C));
    }
}
