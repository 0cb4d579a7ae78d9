//! The data the real-mode AP trampoline reads, and the choice of the trampoline page.
//!
//! Layout of the 4 KiB trampoline page (physical address `P`, below 1 MiB, SIPI vector
//! `P >> 12`): code from offset 0 (the AP starts in real mode at `CS = P >> 4, IP = 0`), and a
//! [`TrampolineParams`] at [`PARAMS_OFFSET`].
//!
//! Protocol (parallel bring-up in the style of Linux 6.5: no per-AP data is passed through the
//! trampoline, so all APs can run it at once):
//! 1. The BSP builds a table of [`ApSlot`]s (APIC id, logical index, stack top) in ordinary
//!    memory mapped by `cr3`, writes the code and a [`TrampolineParams`] into the page, and
//!    starts the APs.
//! 2. Each AP, in real mode: `lgdt` from `PARAMS_OFFSET + OFF_GDT_LIMIT` (CS-relative; the
//!    6-byte form reads the limit and the low 32 bits of [`TrampolineParams::gdt_base`]), sets
//!    CR0.PE, far-jumps to [`SEL_CODE32`]. In 32-bit mode: loads `cr4`, `cr3`, ORs `efer` into
//!    IA32_EFER, sets CR0.PG, far-jumps to [`SEL_CODE64`]. The trampoline page must be identity
//!    mapped in `cr3`'s tables for this switch.
//! 3. In 64-bit mode the AP reads its own APIC id (CPUID leaf 0xB/0x1F EDX when present, else
//!    leaf 1 `EBX[31:24]`, see [`crate::apic::cpuid_apic_id`]), scans the `ap_count` slots at
//!    `ap_table` (stride [`SLOT_SIZE`]) for it ([`find_slot`] is the reference), loads
//!    `stack_top` into RSP, `lock inc`s `ap_alive` and jumps to `entry64` (the kernel decides
//!    the register convention, e.g. RDI = slot address). No slot: `cli; hlt` forever.
//! 4. The AP's Rust code sets its slot's `alive` flag (what
//!    [`crate::bringup::Platform::ap_started`] reads).
//!
//! Until step 3 the trampoline must not use a stack shared by all APs, or must hold
//! `stack_lock` (a bit-spinlock word) while it does.

use crate::ProcessorList;
use alloc::vec::Vec;
use core::fmt;
use core::mem::{offset_of, size_of};
use core::sync::atomic::{AtomicU32, Ordering};

/// Page size.
pub const PAGE_SIZE: u64 = 0x1000;
/// Offset of [`TrampolineParams`] inside the trampoline page; code must fit below it.
pub const PARAMS_OFFSET: usize = 0xF00;
/// [`TrampolineParams::magic`]: "TRMP".
pub const PARAMS_MAGIC: u32 = u32::from_le_bytes(*b"TRMP");

/// Temporary GDT selectors.
pub const SEL_CODE32: u16 = 0x08;
pub const SEL_CODE64: u16 = 0x10;
pub const SEL_DATA: u16 = 0x18;

/// Temporary GDT (SDM Vol. 3A §3.4.5): null; 32-bit code (base 0, limit 4 GiB, G=1, D=1,
/// type 0xA execute/read); 64-bit code (L=1, D=0); data (base 0, limit 4 GiB, type 0x2
/// read/write).
pub const TEMP_GDT: [u64; 4] = [
    0,
    0x00CF_9A00_0000_FFFF,
    0x00AF_9A00_0000_FFFF,
    0x00CF_9200_0000_FFFF,
];

/// CR4.PAE (required before long mode).
pub const CR4_PAE: u32 = 1 << 5;
/// CR4.PCIDE: may only be set in IA-32e mode (#GP otherwise), so not from the trampoline.
pub const CR4_PCIDE: u32 = 1 << 17;
/// IA32_EFER.LME.
pub const EFER_LME: u32 = 1 << 8;
/// IA32_EFER.NXE (needed if the page tables use the XD bit).
pub const EFER_NXE: u32 = 1 << 11;

/// The data block at [`PARAMS_OFFSET`] in the trampoline page. Offsets are the `OFF_*` consts.
#[repr(C)]
#[derive(Debug)]
pub struct TrampolineParams {
    /// [`PARAMS_MAGIC`].
    pub magic: u32,
    /// Physical address of the PML4 (below 4 GiB: loaded from 32-bit mode).
    pub cr3: u32,
    /// CR4 to load before paging: must contain [`CR4_PAE`], must not contain [`CR4_PCIDE`].
    pub cr4: u32,
    /// Bits ORed into IA32_EFER (low half) before paging: [`EFER_LME`], plus [`EFER_NXE`] if
    /// the page tables use XD.
    pub efer: u32,
    /// 64-bit entry point (virtual address under `cr3`).
    pub entry64: u64,
    /// Virtual address (under `cr3`) of `[ApSlot; ap_count]`.
    pub ap_table: u64,
    /// Number of slots at `ap_table`.
    pub ap_count: u32,
    /// Incremented (lock inc) by each AP that found its slot.
    pub ap_alive: AtomicU32,
    /// Bit-spinlock for trampoline code that needs a shared stack (0 = free).
    pub stack_lock: AtomicU32,
    /// Padding so that `gdt_limit` sits at an offset = 2 mod 4 and `gdt_base` is aligned
    /// (SDM §3.5.1 recommends this alignment for the pseudo-descriptor).
    pub _reserved: u16,
    /// GDT pseudo-descriptor: limit (bytes - 1).
    pub gdt_limit: u16,
    /// GDT pseudo-descriptor: base, the physical address of `gdt` (also its address under
    /// `cr3`, the page being identity mapped).
    pub gdt_base: u64,
    /// The temporary GDT ([`TEMP_GDT`]).
    pub gdt: [u64; 4],
}

pub const OFF_MAGIC: usize = offset_of!(TrampolineParams, magic);
pub const OFF_CR3: usize = offset_of!(TrampolineParams, cr3);
pub const OFF_CR4: usize = offset_of!(TrampolineParams, cr4);
pub const OFF_EFER: usize = offset_of!(TrampolineParams, efer);
pub const OFF_ENTRY64: usize = offset_of!(TrampolineParams, entry64);
pub const OFF_AP_TABLE: usize = offset_of!(TrampolineParams, ap_table);
pub const OFF_AP_COUNT: usize = offset_of!(TrampolineParams, ap_count);
pub const OFF_AP_ALIVE: usize = offset_of!(TrampolineParams, ap_alive);
pub const OFF_STACK_LOCK: usize = offset_of!(TrampolineParams, stack_lock);
/// The `lgdt` operand (limit then base).
pub const OFF_GDT_LIMIT: usize = offset_of!(TrampolineParams, gdt_limit);
pub const OFF_GDT_BASE: usize = offset_of!(TrampolineParams, gdt_base);
pub const OFF_GDT: usize = offset_of!(TrampolineParams, gdt);
/// Size of [`TrampolineParams`].
pub const PARAMS_SIZE: usize = size_of::<TrampolineParams>();

const _: () = assert!(PARAMS_OFFSET + PARAMS_SIZE <= PAGE_SIZE as usize);
const _: () = assert!(PARAMS_OFFSET.is_multiple_of(16));

/// One AP's entry in the table the APs search.
#[repr(C)]
#[derive(Debug)]
pub struct ApSlot {
    /// APIC id as CPUID reports it on that AP.
    pub apic_id: u32,
    /// Logical CPU index.
    pub logical: u32,
    /// Initial RSP (16-byte aligned).
    pub stack_top: u64,
    /// Set to [`ALIVE`] by the AP once it runs on its own stack.
    pub alive: AtomicU32,
    pub _reserved: u32,
}

/// Value of [`ApSlot::alive`] once the AP is up.
pub const ALIVE: u32 = 1;
pub const SLOT_SIZE: usize = size_of::<ApSlot>();
pub const SLOT_OFF_APIC_ID: usize = offset_of!(ApSlot, apic_id);
pub const SLOT_OFF_LOGICAL: usize = offset_of!(ApSlot, logical);
pub const SLOT_OFF_STACK_TOP: usize = offset_of!(ApSlot, stack_top);
pub const SLOT_OFF_ALIVE: usize = offset_of!(ApSlot, alive);

impl ApSlot {
    /// Whether the AP has reported in (acquire: what it wrote before is visible).
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire) == ALIVE
    }

    /// Called by the AP itself once it runs on its own stack.
    pub fn mark_alive(&self) {
        self.alive.store(ALIVE, Ordering::Release);
    }
}

/// Why a [`TrampolineParams`] cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrampolineError {
    /// The page is not a valid SIPI target (see [`sipi_vector`]).
    BadPage { page_phys: u64 },
    /// CR3 must be below 4 GiB and 4 KiB aligned.
    BadCr3 { cr3: u64 },
    /// CR4 lacks PAE or has PCIDE.
    BadCr4 { cr4: u32 },
    /// EFER lacks LME.
    BadEfer { efer: u32 },
    /// Null entry point.
    NoEntry,
    /// A non-empty slot table at address 0, or too many slots.
    BadApTable,
    /// Stack tops must be non-zero and 16-byte aligned.
    BadStack { logical: u32 },
}

impl fmt::Display for TrampolineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrampolineError::BadPage { page_phys } => {
                write!(f, "{page_phys:#x} is not a usable SIPI page")
            }
            TrampolineError::BadCr3 { cr3 } => {
                write!(f, "CR3 {cr3:#x} not below 4 GiB or not page aligned")
            }
            TrampolineError::BadCr4 { cr4 } => write!(f, "CR4 {cr4:#x} lacks PAE or has PCIDE"),
            TrampolineError::BadEfer { efer } => write!(f, "EFER {efer:#x} lacks LME"),
            TrampolineError::NoEntry => f.write_str("null 64-bit entry point"),
            TrampolineError::BadApTable => f.write_str("invalid AP slot table"),
            TrampolineError::BadStack { logical } => {
                write!(f, "cpu {logical}: stack top null or misaligned")
            }
        }
    }
}

/// What the kernel knows when it fills the trampoline.
#[derive(Clone, Copy, Debug)]
pub struct ParamsInput {
    /// Physical address of the trampoline page.
    pub page_phys: u64,
    pub cr3: u64,
    pub cr4: u32,
    pub efer: u32,
    pub entry64: u64,
    /// Address of the slot table (see [`TrampolineParams::ap_table`]) and its length.
    pub ap_table: u64,
    pub ap_count: usize,
}

impl TrampolineParams {
    /// Builds the block for a trampoline page at `input.page_phys`, with the temporary GDT and
    /// its pseudo-descriptor filled in, after checking the values.
    pub fn new(input: &ParamsInput) -> Result<Self, TrampolineError> {
        sipi_vector(input.page_phys).ok_or(TrampolineError::BadPage {
            page_phys: input.page_phys,
        })?;
        let cr3 = u32::try_from(input.cr3)
            .ok()
            .filter(|c| u64::from(*c).is_multiple_of(PAGE_SIZE) && *c != 0)
            .ok_or(TrampolineError::BadCr3 { cr3: input.cr3 })?;
        if input.cr4 & CR4_PAE == 0 || input.cr4 & CR4_PCIDE != 0 {
            return Err(TrampolineError::BadCr4 { cr4: input.cr4 });
        }
        if input.efer & EFER_LME == 0 {
            return Err(TrampolineError::BadEfer { efer: input.efer });
        }
        if input.entry64 == 0 {
            return Err(TrampolineError::NoEntry);
        }
        let ap_count = u32::try_from(input.ap_count).map_err(|_| TrampolineError::BadApTable)?;
        if ap_count > 0 && input.ap_table == 0 {
            return Err(TrampolineError::BadApTable);
        }
        Ok(Self {
            magic: PARAMS_MAGIC,
            cr3,
            cr4: input.cr4,
            efer: input.efer,
            entry64: input.entry64,
            ap_table: input.ap_table,
            ap_count,
            ap_alive: AtomicU32::new(0),
            stack_lock: AtomicU32::new(0),
            _reserved: 0,
            gdt_limit: (size_of::<[u64; 4]>() - 1) as u16,
            gdt_base: input.page_phys + (PARAMS_OFFSET + OFF_GDT) as u64,
            gdt: TEMP_GDT,
        })
    }

    /// How many APs have found their slot.
    pub fn alive_count(&self) -> u32 {
        self.ap_alive.load(Ordering::Acquire)
    }
}

/// The slot table for the startable APs of `list`; `stack_top(logical)` gives each AP's
/// initial RSP.
pub fn build_ap_slots(
    list: &ProcessorList,
    mut stack_top: impl FnMut(usize) -> u64,
) -> Result<Vec<ApSlot>, TrampolineError> {
    list.startable_aps()
        .map(|(logical, p)| {
            let logical = u32::try_from(logical).map_err(|_| TrampolineError::BadApTable)?;
            let top = stack_top(logical as usize);
            if top == 0 || !top.is_multiple_of(16) {
                return Err(TrampolineError::BadStack { logical });
            }
            Ok(ApSlot {
                apic_id: p.apic_id,
                logical,
                stack_top: top,
                alive: AtomicU32::new(0),
                _reserved: 0,
            })
        })
        .collect()
}

/// What an AP does with its APIC id: the index of its slot (linear scan, first match).
pub fn find_slot(slots: &[ApSlot], apic_id: u32) -> Option<usize> {
    slots.iter().position(|s| s.apic_id == apic_id)
}

/// The SIPI vector for a trampoline page: `page_phys >> 12` if the page is 4 KiB aligned,
/// below 1 MiB, not page 0 and not in 0xA0000..0xC0000 (SDM §11.6.1: vectors 0xA0-0xBF are
/// reserved for STARTUP IPIs).
pub fn sipi_vector(page_phys: u64) -> Option<u8> {
    if !page_phys.is_multiple_of(PAGE_SIZE) || page_phys == 0 || page_phys >= 0x10_0000 {
        return None;
    }
    let v = (page_phys >> 12) as u8;
    (!(0xA0..=0xBF).contains(&v)).then_some(v)
}

/// Lowest page considered (page 0 holds the real-mode IVT and the BDA).
pub const TRAMPOLINE_MIN: u64 = 0x1000;
/// Pages must end at or below this (the EBDA usually starts just below 0xA0000).
pub const TRAMPOLINE_END: u64 = 0x9_F000;

/// Picks the trampoline page from a memory map of `(start, length, usable)` regions: the
/// highest 4 KiB page in `TRAMPOLINE_MIN..TRAMPOLINE_END` that lies wholly inside one usable
/// region and overlaps neither a non-usable region nor one of the `exclude` ranges
/// (`(start, end)`, end exclusive: boot information, the kernel image, ...).
pub fn pick_trampoline_page(
    regions: impl IntoIterator<Item = (u64, u64, bool)>,
    exclude: &[(u64, u64)],
) -> Option<u64> {
    let regions: Vec<(u64, u64, bool)> = regions.into_iter().collect();
    let overlaps = |page: u64, start: u64, end: u64| start < page + PAGE_SIZE && page < end;
    let mut page = TRAMPOLINE_END - PAGE_SIZE;
    loop {
        let end = page + PAGE_SIZE;
        let inside = regions
            .iter()
            .any(|&(s, len, usable)| usable && s <= page && end <= s.saturating_add(len));
        let clash = regions
            .iter()
            .any(|&(s, len, usable)| !usable && overlaps(page, s, s.saturating_add(len)))
            || exclude.iter().any(|&(s, e)| overlaps(page, s, e));
        if inside && !clash {
            return Some(page);
        }
        if page == TRAMPOLINE_MIN {
            return None;
        }
        page -= PAGE_SIZE;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::align_of;
    use std::vec;

    #[test]
    fn params_layout_is_stable() {
        assert_eq!(OFF_MAGIC, 0x00);
        assert_eq!(OFF_CR3, 0x04);
        assert_eq!(OFF_CR4, 0x08);
        assert_eq!(OFF_EFER, 0x0C);
        assert_eq!(OFF_ENTRY64, 0x10);
        assert_eq!(OFF_AP_TABLE, 0x18);
        assert_eq!(OFF_AP_COUNT, 0x20);
        assert_eq!(OFF_AP_ALIVE, 0x24);
        assert_eq!(OFF_STACK_LOCK, 0x28);
        assert_eq!(OFF_GDT_LIMIT, 0x2E);
        assert_eq!(OFF_GDT_BASE, 0x30);
        assert_eq!(OFF_GDT, 0x38);
        assert_eq!(PARAMS_SIZE, 0x58);
        assert_eq!(align_of::<TrampolineParams>(), 8);
        // lgdt pseudo-descriptor: limit immediately followed by the base, base aligned.
        assert_eq!(OFF_GDT_LIMIT + 2, OFF_GDT_BASE);
        assert_eq!(OFF_GDT_LIMIT % 4, 2);
        assert_eq!(OFF_GDT % 8, 0);
        // Atomics have the layout of the plain integers the assembly uses.
        assert_eq!(size_of::<AtomicU32>(), 4);
        assert_eq!(align_of::<AtomicU32>(), 4);
    }

    #[test]
    fn slot_layout_is_stable() {
        assert_eq!(SLOT_OFF_APIC_ID, 0);
        assert_eq!(SLOT_OFF_LOGICAL, 4);
        assert_eq!(SLOT_OFF_STACK_TOP, 8);
        assert_eq!(SLOT_OFF_ALIVE, 16);
        assert_eq!(SLOT_SIZE, 24);
        assert_eq!(align_of::<ApSlot>(), 8);
    }

    #[test]
    fn temp_gdt_descriptors() {
        let field = |d: u64, lo: u32, n: u32| (d >> lo) & ((1 << n) - 1);
        for (i, &d) in TEMP_GDT.iter().enumerate().skip(1) {
            assert_eq!(field(d, 47, 1), 1, "present {i}");
            assert_eq!(field(d, 44, 1), 1, "code/data {i}");
            assert_eq!(
                field(d, 0, 16) | field(d, 48, 4) << 16,
                0xF_FFFF,
                "limit {i}"
            );
            assert_eq!(field(d, 16, 24) | field(d, 56, 8) << 24, 0, "base {i}");
            assert_eq!(field(d, 55, 1), 1, "granularity {i}");
        }
        let code32 = TEMP_GDT[usize::from(SEL_CODE32 >> 3)];
        let code64 = TEMP_GDT[usize::from(SEL_CODE64 >> 3)];
        let data = TEMP_GDT[usize::from(SEL_DATA >> 3)];
        // Type: code execute/read 0xA, data read/write 0x2.
        assert_eq!(field(code32, 40, 4), 0xA);
        assert_eq!(field(code64, 40, 4), 0xA);
        assert_eq!(field(data, 40, 4), 0x2);
        // L and D bits (SDM §5.2.1: L=1 requires D=0).
        assert_eq!((field(code32, 53, 1), field(code32, 54, 1)), (0, 1));
        assert_eq!((field(code64, 53, 1), field(code64, 54, 1)), (1, 0));
        assert_eq!(TEMP_GDT[0], 0);
    }

    fn input() -> ParamsInput {
        ParamsInput {
            page_phys: 0x8000,
            cr3: 0x10_0000,
            cr4: CR4_PAE | (1 << 7),
            efer: EFER_LME | EFER_NXE,
            entry64: 0xFFFF_8000_0010_0000,
            ap_table: 0xFFFF_8000_0020_0000,
            ap_count: 3,
        }
    }

    #[test]
    fn params_new_fills_gdt_pointer() {
        let p = TrampolineParams::new(&input()).unwrap();
        assert_eq!(p.magic, PARAMS_MAGIC);
        assert_eq!(p.cr3, 0x10_0000);
        assert_eq!(p.gdt_limit, 31);
        assert_eq!(p.gdt_base, 0x8000 + 0xF00 + 0x38);
        assert_eq!(p.gdt, TEMP_GDT);
        assert_eq!(p.ap_count, 3);
        assert_eq!(p.alive_count(), 0);
        // Bytes as the assembly sees them.
        // SAFETY: `p` is a live, initialized `repr(C)` value without padding bytes (offsets
        // above are contiguous), so all PARAMS_SIZE bytes are initialized.
        let bytes = unsafe {
            core::slice::from_raw_parts((&p as *const TrampolineParams).cast::<u8>(), PARAMS_SIZE)
        };
        assert_eq!(&bytes[OFF_MAGIC..OFF_MAGIC + 4], b"TRMP");
        assert_eq!(
            &bytes[OFF_GDT_LIMIT..OFF_GDT_LIMIT + 2],
            &31u16.to_le_bytes()
        );
        assert_eq!(
            &bytes[OFF_GDT_BASE..OFF_GDT_BASE + 4],
            &(0x8F38u32).to_le_bytes()
        );
        assert_eq!(
            &bytes[OFF_ENTRY64..OFF_ENTRY64 + 8],
            &0xFFFF_8000_0010_0000u64.to_le_bytes()
        );
    }

    #[test]
    fn params_new_rejects_bad_values() {
        let bad = |f: fn(&mut ParamsInput)| {
            let mut i = input();
            f(&mut i);
            TrampolineParams::new(&i).unwrap_err()
        };
        assert_eq!(
            bad(|i| i.page_phys = 0xA_0000),
            TrampolineError::BadPage {
                page_phys: 0xA_0000
            }
        );
        assert_eq!(
            bad(|i| i.cr3 = 0x1_0000_0000),
            TrampolineError::BadCr3 { cr3: 0x1_0000_0000 }
        );
        assert_eq!(
            bad(|i| i.cr3 = 0x1_0010),
            TrampolineError::BadCr3 { cr3: 0x1_0010 }
        );
        assert!(matches!(bad(|i| i.cr4 = 0), TrampolineError::BadCr4 { .. }));
        assert!(matches!(
            bad(|i| i.cr4 |= CR4_PCIDE),
            TrampolineError::BadCr4 { .. }
        ));
        assert!(matches!(
            bad(|i| i.efer = EFER_NXE),
            TrampolineError::BadEfer { .. }
        ));
        assert_eq!(bad(|i| i.entry64 = 0), TrampolineError::NoEntry);
        assert_eq!(bad(|i| i.ap_table = 0), TrampolineError::BadApTable);
        let mut i = input();
        i.ap_table = 0;
        i.ap_count = 0;
        assert!(TrampolineParams::new(&i).is_ok());
        assert_eq!(
            TrampolineError::NoEntry.to_string(),
            "null 64-bit entry point"
        );
    }

    #[test]
    fn slots_and_lookup() {
        use crate::testutil::MadtBuilder;
        let t = MadtBuilder::new(5)
            .xapic(0, 0, 1)
            .x2apic(260, 1, 1)
            .xapic(2, 5, 2)
            .xapic(3, 3, 1)
            .build();
        let list = crate::madt::parse_madt(&t, 3, 16).unwrap();
        let slots = build_ap_slots(&list, |l| 0x10_0000 * (l as u64 + 1)).unwrap();
        let got: Vec<(u32, u32, u64)> = slots
            .iter()
            .map(|s| (s.apic_id, s.logical, s.stack_top))
            .collect();
        // BSP (apic 3) is logical 0; hot-pluggable apic 5 gets no slot.
        assert_eq!(got, [(0, 1, 0x20_0000), (260, 2, 0x30_0000)]);
        assert_eq!(find_slot(&slots, 260), Some(1));
        assert_eq!(find_slot(&slots, 3), None);
        assert!(!slots[0].is_alive());
        slots[0].mark_alive();
        assert!(slots[0].is_alive());
        assert_eq!(
            build_ap_slots(&list, |_| 0x1008).unwrap_err(),
            TrampolineError::BadStack { logical: 1 }
        );
    }

    #[test]
    fn sipi_vectors() {
        assert_eq!(sipi_vector(0x8000), Some(0x08));
        assert_eq!(sipi_vector(0x9E000), Some(0x9E));
        assert_eq!(sipi_vector(0xF_F000), Some(0xFF));
        assert_eq!(sipi_vector(0), None);
        assert_eq!(sipi_vector(0x8800), None);
        assert_eq!(sipi_vector(0xA_0000), None);
        assert_eq!(sipi_vector(0xB_F000), None);
        assert_eq!(sipi_vector(0xC_0000), Some(0xC0));
        assert_eq!(sipi_vector(0x10_0000), None);
    }

    #[test]
    fn trampoline_page_choice() {
        // Typical BIOS map: 0..0x9FC00 usable, EBDA and above reserved.
        let map = vec![
            (0, 0x9_FC00, true),
            (0x9_FC00, 0x400, false),
            (0xF_0000, 0x1_0000, false),
            (0x10_0000, 0x1000_0000, true),
        ];
        assert_eq!(
            pick_trampoline_page(map.iter().copied(), &[]),
            Some(0x9_E000)
        );
        // A reserved hole (e.g. boot info) overlapping the top pages is avoided.
        let mut m = map.clone();
        m.push((0x9_E800, 0x10, false));
        assert_eq!(pick_trampoline_page(m, &[]), Some(0x9_D000));
        // Unaligned usable region: only whole pages inside it.
        assert_eq!(
            pick_trampoline_page([(0x1800, 0x2000, true)], &[]),
            Some(0x2000)
        );
        assert_eq!(pick_trampoline_page([(0x1800, 0x1000, true)], &[]), None);
        // Page 0 is never chosen, nor anything at or above 1 MiB.
        assert_eq!(pick_trampoline_page([(0, 0x1000, true)], &[]), None);
        assert_eq!(
            pick_trampoline_page([(0x10_0000, 0x10_0000, true)], &[]),
            None
        );
        // Usable memory only above TRAMPOLINE_END (e.g. 0x9F000..0xA0000) is not used.
        assert_eq!(pick_trampoline_page([(0x9_F000, 0x1000, true)], &[]), None);
        assert_eq!(
            pick_trampoline_page([(0x1000, 0x1000, true)], &[]),
            Some(0x1000)
        );
        // Nothing usable.
        assert_eq!(pick_trampoline_page(core::iter::empty(), &[]), None);
        // Excluded ranges (end exclusive) are avoided; one ending exactly at a page start is not
        // a clash.
        assert_eq!(
            pick_trampoline_page(map.iter().copied(), &[(0x9_D000, 0x9_F000)]),
            Some(0x9_C000)
        );
        assert_eq!(
            pick_trampoline_page(map.iter().copied(), &[(0x9_EFFF, 0x9_F001)]),
            Some(0x9_D000)
        );
        assert_eq!(
            pick_trampoline_page(map.iter().copied(), &[(0x9_0000, 0x9_E000)]),
            Some(0x9_E000)
        );
        // Huge lengths do not overflow.
        assert_eq!(
            pick_trampoline_page([(0x1000, u64::MAX, true)], &[]),
            Some(0x9_E000)
        );
        assert!(sipi_vector(0x9_E000).is_some());
    }
}
