//! Local APIC decisions: the interrupt command encoding, the register map, the x2APIC switch sequence and
//! the [`LocalApic`] trait the drivers implement. The drivers themselves (xAPIC MMIO, x2APIC MSRs, the CPUID
//! APIC id) are hardware access and live beside the image's other hardware wrappers (`hypervisor::arch::lapic`).
//!
//! References: Intel SDM Vol. 3A chapter "Advanced Programmable Interrupt Controller (APIC)"
//! (chapter 11 in current editions, 10 in older ones): §11.4 (IA32_APIC_BASE, register map),
//! §11.6.1 (Interrupt Command Register), §11.12 (x2APIC: MSR map, ICR in x2APIC mode, state
//! transitions), and §9.4.4 (MP initialization: INIT-SIPI-SIPI).

use core::fmt;

/// Architectural default physical address of the local APIC registers.
pub const DEFAULT_LAPIC_BASE: u64 = 0xFEE0_0000;

/// xAPIC register offsets in the 4 KiB MMIO page (SDM Table 11-1).
pub mod reg {
    /// Local APIC ID; xAPIC id in bits 31:24.
    pub const ID: u32 = 0x20;
    /// Version.
    pub const VERSION: u32 = 0x30;
    /// End Of Interrupt (write-only).
    pub const EOI: u32 = 0xB0;
    /// Spurious Interrupt Vector Register: bit 8 = APIC software enable, bits 7:0 = vector.
    pub const SVR: u32 = 0xF0;
    /// Error Status Register.
    pub const ESR: u32 = 0x280;
    /// Interrupt Command Register, low half (writing it sends the IPI).
    pub const ICR_LOW: u32 = 0x300;
    /// Interrupt Command Register, high half (destination in bits 31:24).
    pub const ICR_HIGH: u32 = 0x310;
}

/// IA32_APIC_BASE MSR (SDM §11.4.4).
pub const IA32_APIC_BASE: u32 = 0x1B;
/// IA32_APIC_BASE bit 8: this CPU is the BSP.
pub const APIC_BASE_BSP: u64 = 1 << 8;
/// IA32_APIC_BASE bit 10 (EXTD): x2APIC mode.
pub const APIC_BASE_EXTD: u64 = 1 << 10;
/// IA32_APIC_BASE bit 11 (EN): APIC global enable.
pub const APIC_BASE_EN: u64 = 1 << 11;

/// SVR bit 8: APIC software enable.
pub const SVR_ENABLE: u32 = 1 << 8;

/// ICR low-half fields (SDM Figure 11-12, §11.6.1).
pub mod icr_bits {
    /// Bits 10:8: delivery mode.
    pub const DELIVERY_MODE_SHIFT: u32 = 8;
    /// Bit 11: destination mode (0 physical, 1 logical).
    pub const DEST_LOGICAL: u32 = 1 << 11;
    /// Bit 12: delivery status (xAPIC only; 1 = send pending).
    pub const DELIVERY_STATUS: u32 = 1 << 12;
    /// Bit 14: level (0 de-assert, 1 assert).
    pub const LEVEL_ASSERT: u32 = 1 << 14;
    /// Bit 15: trigger mode (0 edge, 1 level).
    pub const TRIGGER_LEVEL: u32 = 1 << 15;
    /// Bits 19:18: destination shorthand.
    pub const SHORTHAND_SHIFT: u32 = 18;
}

/// The x2APIC MSR for the xAPIC register at MMIO offset `reg` (SDM §11.12.1.2: MSR
/// 0x800 + offset / 16).
pub const fn x2apic_msr(reg: u32) -> u32 {
    0x800 + (reg >> 4)
}

/// ICR delivery modes (bits 10:8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum DeliveryMode {
    Fixed = 0b000,
    LowestPriority = 0b001,
    Smi = 0b010,
    Nmi = 0b100,
    Init = 0b101,
    StartUp = 0b110,
}

/// ICR destination shorthands (bits 19:18).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Shorthand {
    None = 0b00,
    SelfOnly = 0b01,
    AllIncludingSelf = 0b10,
    AllExcludingSelf = 0b11,
}

/// An interrupt command: the ICR low half plus a physical destination APIC id.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Icr {
    low: u32,
    dest: u32,
}

impl Icr {
    /// General form, physical destination mode, no shorthand.
    pub const fn new(
        vector: u8,
        mode: DeliveryMode,
        assert: bool,
        level_trigger: bool,
        dest: u32,
    ) -> Icr {
        let mut low = vector as u32 | (mode as u32) << icr_bits::DELIVERY_MODE_SHIFT;
        if assert {
            low |= icr_bits::LEVEL_ASSERT;
        }
        if level_trigger {
            low |= icr_bits::TRIGGER_LEVEL;
        }
        Icr { low, dest }
    }

    /// INIT, level assert (SDM §11.6.1; Linux also sets the level trigger bit; the trigger mode
    /// is ignored for INIT assert).
    pub const fn init_assert(dest: u32) -> Icr {
        Icr::new(0, DeliveryMode::Init, true, true, dest)
    }

    /// INIT level de-assert: level 0, trigger level (SDM §11.6.1). Only P6-family and older
    /// processors need it; later ones ignore it.
    pub const fn init_deassert(dest: u32) -> Icr {
        Icr::new(0, DeliveryMode::Init, false, true, dest)
    }

    /// STARTUP IPI: the AP starts in real mode at `CS:IP = (page << 8):0000`, i.e. physical
    /// address `page << 12`. Level assert, edge (as SDM §9.4.4.1's example, 0x46XX).
    pub const fn startup(dest: u32, page: u8) -> Icr {
        Icr::new(page, DeliveryMode::StartUp, true, false, dest)
    }

    /// A fixed interrupt with `vector`.
    pub const fn fixed(dest: u32, vector: u8) -> Icr {
        Icr::new(vector, DeliveryMode::Fixed, true, false, dest)
    }

    /// Replaces the destination with a shorthand (the destination field is then ignored).
    pub const fn with_shorthand(self, s: Shorthand) -> Icr {
        Icr {
            low: (self.low & !(0b11 << icr_bits::SHORTHAND_SHIFT))
                | (s as u32) << icr_bits::SHORTHAND_SHIFT,
            dest: self.dest,
        }
    }

    /// The ICR low half (identical in xAPIC and x2APIC mode, SDM §11.12.9).
    pub const fn low(self) -> u32 {
        self.low
    }

    /// Destination APIC id.
    pub const fn destination(self) -> u32 {
        self.dest
    }

    /// The 64-bit x2APIC ICR value (MSR 0x830): destination in bits 63:32.
    pub const fn x2apic_value(self) -> u64 {
        (self.dest as u64) << 32 | self.low as u64
    }

    /// The xAPIC ICR high half (destination in bits 31:24), or `None` if the destination does
    /// not fit in 8 bits.
    pub const fn xapic_high(self) -> Option<u32> {
        if self.dest > 0xFF {
            None
        } else {
            Some(self.dest << 24)
        }
    }
}

impl fmt::Debug for Icr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Icr {{ low: {:#010x}, dest: {} }}", self.low, self.dest)
    }
}

/// Why an IPI was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApicError {
    /// xAPIC mode addresses only APIC ids 0..=255.
    DestinationOutOfRange { apic_id: u32 },
    /// The previous IPI was still pending after [`ICR_IDLE_POLLS`] polls.
    IcrBusy,
}

impl fmt::Display for ApicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApicError::DestinationOutOfRange { apic_id } => {
                write!(f, "APIC id {apic_id} cannot be addressed in xAPIC mode")
            }
            ApicError::IcrBusy => f.write_str("ICR still busy with the previous IPI"),
        }
    }
}

/// The local APIC's Error Status Register bits (SDM vol. 3A 11.5.3 "Error Handling", Figure 11-9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Esr(pub u32);

impl Esr {
    /// Bit number and name of each defined error.
    pub const BITS: [(u32, &'static str); 8] = [
        (0, "send checksum"),
        (1, "receive checksum"),
        (2, "send accept"),
        (3, "receive accept"),
        (4, "redirectable IPI"),
        (5, "send illegal vector"),
        (6, "receive illegal vector"),
        (7, "illegal register address"),
    ];
}

/// `esr=0x<hex> (<name>, <name>, ...)`; bits outside 0..7 are listed as `bit <n>`.
impl fmt::Display for Esr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "esr=0x{:x} (", self.0)?;
        let mut first = true;
        for bit in (0..32).filter(|b| self.0 & (1 << b) != 0) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            match Self::BITS.iter().find(|(b, _)| *b == bit) {
                Some((_, name)) => f.write_str(name)?,
                None => write!(f, "bit {bit}")?,
            }
        }
        f.write_str(")")
    }
}

/// How many times the xAPIC delivery status is polled before giving up.
pub const ICR_IDLE_POLLS: u32 = 1_000_000;

/// The executing CPU's local APIC.
pub trait LocalApic {
    /// APIC id of the executing CPU (xAPIC: 8 bits, x2APIC: 32 bits).
    fn id(&self) -> u32;
    /// Sends one IPI.
    fn send_ipi(&self, icr: Icr) -> Result<(), ApicError>;
    /// Whether the previous IPI is still pending (xAPIC ICR bit 12; always `false` in x2APIC
    /// mode, which has no delivery status).
    fn icr_busy(&self) -> bool;
    /// Signals end of interrupt.
    fn eoi(&self);
    /// Software-enables the APIC with `spurious_vector` (SVR bit 8).
    fn enable(&self, spurious_vector: u8);
    /// Reads the Error Status Register after writing it, which latches the current errors
    /// (SDM §11.5.3).
    fn error_status(&self) -> u32;

    /// INIT (level assert) to `apic_id`.
    fn send_init(&self, apic_id: u32) -> Result<(), ApicError> {
        self.send_ipi(Icr::init_assert(apic_id))
    }
    /// INIT level de-assert to `apic_id`.
    fn send_init_deassert(&self, apic_id: u32) -> Result<(), ApicError> {
        self.send_ipi(Icr::init_deassert(apic_id))
    }
    /// STARTUP to `apic_id`, entry at physical `vector_page << 12`.
    fn send_sipi(&self, apic_id: u32, vector_page: u8) -> Result<(), ApicError> {
        self.send_ipi(Icr::startup(apic_id, vector_page))
    }
    /// Polls [`LocalApic::icr_busy`] up to `max_polls` times; `true` once idle.
    fn wait_icr_idle(&self, max_polls: u32) -> bool {
        for _ in 0..max_polls {
            if !self.icr_busy() {
                return true;
            }
            core::hint::spin_loop();
        }
        !self.icr_busy()
    }
}

/// The IA32_APIC_BASE values to write, in order, to go from `current` to x2APIC mode
/// (SDM §11.12.5: disabled -> x2APIC directly is illegal and raises #GP; go through xAPIC).
pub const fn x2apic_enable_sequence(current: u64) -> [Option<u64>; 2] {
    let both = APIC_BASE_EN | APIC_BASE_EXTD;
    if current & both == both {
        [None, None]
    } else if current & APIC_BASE_EN == 0 {
        [
            Some((current & !APIC_BASE_EXTD) | APIC_BASE_EN),
            Some(current | both),
        ]
    } else {
        [Some(current | both), None]
    }
}

/// The APIC id from CPUID values: the x2APIC id (EDX of leaf 0x1F or 0xB, sub-leaf 0) when a
/// topology leaf is available, else the initial APIC id in `CPUID.01H:EBX[31:24]`.
pub const fn apic_id_from_cpuid(leaf1_ebx: u32, topology_edx: Option<u32>) -> u32 {
    match topology_edx {
        Some(edx) => edx,
        None => leaf1_ebx >> 24,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x2apic_msr_numbers() {
        assert_eq!(x2apic_msr(reg::ID), 0x802);
        assert_eq!(x2apic_msr(reg::VERSION), 0x803);
        assert_eq!(x2apic_msr(reg::EOI), 0x80B);
        assert_eq!(x2apic_msr(reg::SVR), 0x80F);
        assert_eq!(x2apic_msr(reg::ESR), 0x828);
        assert_eq!(x2apic_msr(reg::ICR_LOW), 0x830);
    }

    /// Field extraction per SDM Figure 11-12.
    fn fields(low: u32) -> (u32, u32, u32, u32, u32, u32) {
        let vector = low & 0xFF;
        let mode = (low >> 8) & 0b111;
        let dest_mode = (low >> 11) & 1;
        let level = (low >> 14) & 1;
        let trigger = (low >> 15) & 1;
        let shorthand = (low >> 18) & 0b11;
        (vector, mode, dest_mode, level, trigger, shorthand)
    }

    #[test]
    fn init_assert_encoding() {
        let i = Icr::init_assert(3);
        assert_eq!(fields(i.low()), (0, 0b101, 0, 1, 1, 0));
        assert_eq!(i.low(), 0x0000_C500);
        assert_eq!(i.xapic_high(), Some(0x0300_0000));
        assert_eq!(i.x2apic_value(), 0x0000_0003_0000_C500);
    }

    #[test]
    fn init_deassert_encoding() {
        let i = Icr::init_deassert(0x12);
        assert_eq!(fields(i.low()), (0, 0b101, 0, 0, 1, 0));
        assert_eq!(i.low(), 0x0000_8500);
        assert_eq!(i.xapic_high(), Some(0x1200_0000));
    }

    #[test]
    fn startup_encoding() {
        let i = Icr::startup(1, 0x08);
        assert_eq!(fields(i.low()), (0x08, 0b110, 0, 1, 0, 0));
        assert_eq!(i.low(), 0x0000_4608);
        // SDM §9.4.4.1's broadcast example: 000C46XXH.
        assert_eq!(
            i.with_shorthand(Shorthand::AllExcludingSelf).low(),
            0x000C_4608
        );
        // x2APIC: 32-bit destination in bits 63:32.
        let i = Icr::startup(0x1_0000, 0x9F);
        assert_eq!(i.x2apic_value(), 0x0001_0000_0000_469F);
        assert_eq!(i.xapic_high(), None);
    }

    #[test]
    fn fixed_and_shorthand_encoding() {
        let i = Icr::fixed(2, 0x40);
        assert_eq!(fields(i.low()), (0x40, 0, 0, 1, 0, 0));
        let s = i.with_shorthand(Shorthand::SelfOnly);
        assert_eq!(fields(s.low()).5, 0b01);
        assert_eq!(
            fields(s.with_shorthand(Shorthand::None).low()),
            fields(i.low())
        );
        assert_eq!(
            format!("{:?}", Icr::init_assert(1)),
            "Icr { low: 0x0000c500, dest: 1 }"
        );
    }

    #[test]
    fn x2apic_enable_sequence_follows_sdm_transitions() {
        let base = DEFAULT_LAPIC_BASE | APIC_BASE_BSP;
        // xAPIC -> x2APIC: one write.
        assert_eq!(
            x2apic_enable_sequence(base | APIC_BASE_EN),
            [Some(base | APIC_BASE_EN | APIC_BASE_EXTD), None]
        );
        // Disabled -> xAPIC -> x2APIC.
        assert_eq!(
            x2apic_enable_sequence(base),
            [
                Some(base | APIC_BASE_EN),
                Some(base | APIC_BASE_EN | APIC_BASE_EXTD)
            ]
        );
        // Already x2APIC: nothing.
        assert_eq!(
            x2apic_enable_sequence(base | APIC_BASE_EN | APIC_BASE_EXTD),
            [None, None]
        );
    }

    #[test]
    fn apic_id_selection() {
        assert_eq!(apic_id_from_cpuid(0x0500_0800, None), 5);
        assert_eq!(apic_id_from_cpuid(0x0500_0800, Some(0x105)), 0x105);
    }

    #[test]
    fn register_bits_are_the_sdms() {
        // SDM vol. 3A Figure 11-5 (IA32_APIC_BASE), Figure 11-23 (SVR), Figure 11-12 (ICR).
        assert_eq!(APIC_BASE_BSP, 0x100);
        assert_eq!(APIC_BASE_EXTD, 0x400);
        assert_eq!(APIC_BASE_EN, 0x800);
        assert_eq!(SVR_ENABLE, 0x100);
        assert_eq!(icr_bits::DEST_LOGICAL, 0x800);
        assert_eq!(icr_bits::DELIVERY_STATUS, 0x1000);
        assert_eq!(icr_bits::LEVEL_ASSERT, 0x4000);
        assert_eq!(icr_bits::TRIGGER_LEVEL, 0x8000);
    }

    #[test]
    fn destinations_in_both_modes() {
        let i = Icr::startup(0x1_2345, 0x9A);
        assert_eq!(i.destination(), 0x1_2345);
        assert_eq!(i.x2apic_value(), 0x0001_2345_0000_469A);
        assert_eq!(i.xapic_high(), None);
        assert_eq!(Icr::startup(0xFF, 1).xapic_high(), Some(0xFF00_0000));
        assert_eq!(Icr::startup(0, 1).xapic_high(), Some(0));
    }

    #[test]
    fn x2apic_enable_from_the_invalid_extd_without_en_state() {
        // EXTD set with EN clear is invalid (SDM 11.12.5): go through xAPIC first, EXTD cleared.
        let base = DEFAULT_LAPIC_BASE | APIC_BASE_EXTD;
        assert_eq!(
            x2apic_enable_sequence(base),
            [
                Some(DEFAULT_LAPIC_BASE | APIC_BASE_EN),
                Some(DEFAULT_LAPIC_BASE | APIC_BASE_EN | APIC_BASE_EXTD)
            ]
        );
    }

    /// Records the ICRs sent; reports busy for the first `busy_polls` polls.
    struct Recorder {
        sent: core::cell::RefCell<Vec<Icr>>,
        busy_polls: core::cell::Cell<u32>,
    }

    impl LocalApic for Recorder {
        fn id(&self) -> u32 {
            0
        }
        fn send_ipi(&self, icr: Icr) -> Result<(), ApicError> {
            self.sent.borrow_mut().push(icr);
            Ok(())
        }
        fn icr_busy(&self) -> bool {
            let left = self.busy_polls.get();
            self.busy_polls.set(left.saturating_sub(1));
            left > 0
        }
        fn eoi(&self) {}
        fn enable(&self, _: u8) {}
        fn error_status(&self) -> u32 {
            0
        }
    }

    #[test]
    fn the_ipi_helpers_send_the_encodings() {
        let r = Recorder {
            sent: Default::default(),
            busy_polls: core::cell::Cell::new(0),
        };
        r.send_init(7).unwrap();
        r.send_init_deassert(7).unwrap();
        r.send_sipi(7, 0x9A).unwrap();
        assert_eq!(
            *r.sent.borrow(),
            [
                Icr::init_assert(7),
                Icr::init_deassert(7),
                Icr::startup(7, 0x9A)
            ]
        );
    }

    #[test]
    fn waiting_for_the_icr() {
        let r = |busy| Recorder {
            sent: Default::default(),
            busy_polls: core::cell::Cell::new(busy),
        };
        assert!(r(0).wait_icr_idle(0));
        assert!(r(0).wait_icr_idle(3));
        // Busy for 3 polls: idle on the 4th.
        assert!(r(3).wait_icr_idle(3));
        assert!(!r(4).wait_icr_idle(3));
        assert!(!r(1).wait_icr_idle(0));
    }

    #[test]
    fn error_display() {
        assert_eq!(
            ApicError::DestinationOutOfRange { apic_id: 300 }.to_string(),
            "APIC id 300 cannot be addressed in xAPIC mode"
        );
    }
}
