//! Where the test guest lives: one block of frames holding its code, its stack, its own 4-level page tables
//! and the EPT paging structures, and the entries that map exactly the guest's pages and nothing else.
//!
//! The guest runs in 64-bit mode with paging, so it walks its own tables (SDM vol. 3A 4.5, "4-Level Paging and
//! 5-Level Paging"). With EPT every guest-physical address it uses, the tables its walk reads (and sets
//! accessed bits in) included, must be mapped by the EPT (vol. 3C 29.3, "The Extended Page Table Mechanism
//! (EPT)"). Guest-physical equals host-physical for each mapped page (an identity map), so the same layout
//! serves the fallback without EPT, where the guest's own tables are the only thing confining it (documented
//! in docs/vmx.md: the test guest never changes CR3).
//!
//! The block is [`BLOCK_PAGES`] frames aligned to [`BLOCK_ALIGN`], so it never crosses a 2 MiB boundary and one
//! page table (one EPT page table) at each level is enough.

/// Frames in the block.
pub const BLOCK_PAGES: u64 = 10;
/// Alignment of the block: a power of two at least its size, so it lies inside one 2 MiB region.
pub const BLOCK_ALIGN: u64 = 64 * 1024;
/// What the block costs at most in the per-CPU budget (the alignment can waste frames).
pub const BLOCK_BUDGET_BYTES: u64 = BLOCK_ALIGN;

const PAGE: u64 = 4096;

/// The pages of the block, by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Page {
    Code = 0,
    Stack = 1,
    Pml4 = 2,
    Pdpt = 3,
    Pd = 4,
    Pt = 5,
    EptPml4 = 6,
    EptPdpt = 7,
    EptPd = 8,
    EptPt = 9,
}

/// The pages the guest itself touches: its code and stack (through its linear mapping) and its page tables
/// (through its page walk). These, and only these, are EPT-mapped.
pub const GUEST_PAGES: [Page; 6] = [
    Page::Code,
    Page::Stack,
    Page::Pml4,
    Page::Pdpt,
    Page::Pd,
    Page::Pt,
];

// 4-level paging entry bits (vol. 3A 4.5.4, tables 4-15 to 4-20).
pub const PTE_PRESENT: u64 = 1 << 0;
pub const PTE_WRITABLE: u64 = 1 << 1;

// EPT entry bits (vol. 3C 29.3.2, tables 29-1 to 29-6): read, write, execute, and the memory type of a leaf.
pub const EPT_READ: u64 = 1 << 0;
pub const EPT_WRITE: u64 = 1 << 1;
pub const EPT_EXECUTE: u64 = 1 << 2;
/// EPT memory type write-back (6) in bits 5:3 of a leaf entry.
pub const EPT_LEAF_WB: u64 = 6 << 3;

/// The block's address and the entries to write into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestLayout {
    base: u64,
}

/// The error for a block the layout cannot use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Misaligned(pub u64);

impl core::fmt::Display for Misaligned {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "guest block at 0x{:x} is not {BLOCK_ALIGN}-byte aligned",
            self.0
        )
    }
}

impl GuestLayout {
    pub const fn new(base: u64) -> Result<Self, Misaligned> {
        if !base.is_multiple_of(BLOCK_ALIGN) {
            return Err(Misaligned(base));
        }
        Ok(Self { base })
    }

    pub const fn base(&self) -> u64 {
        self.base
    }

    /// Physical (and guest-physical, and guest-linear) address of a page.
    pub const fn page(&self, page: Page) -> u64 {
        self.base + page as u64 * PAGE
    }

    /// The guest's CR3: its PML4, no PCID, cacheable walks.
    pub const fn guest_cr3(&self) -> u64 {
        self.page(Page::Pml4)
    }

    /// The EPT PML4 for the EPTP.
    pub const fn ept_pml4(&self) -> u64 {
        self.page(Page::EptPml4)
    }

    /// Every non-zero 8-byte entry of the guest's page tables, as (physical address of the entry, value); with
    /// `ept`, the EPT's too. The block is zeroed before they are written, so every other entry is not present.
    pub fn table_entries(&self, ept: bool) -> impl Iterator<Item = (u64, u64)> + '_ {
        let guest = self.walk_entries(
            [Page::Pml4, Page::Pdpt, Page::Pd, Page::Pt],
            PTE_PRESENT | PTE_WRITABLE,
            [
                (Page::Code, PTE_PRESENT),
                (Page::Stack, PTE_PRESENT | PTE_WRITABLE),
            ],
        );
        let ept_leaf = |page: Page| match page {
            Page::Code => EPT_READ | EPT_EXECUTE | EPT_LEAF_WB,
            // The stack and the guest's own tables (the walk sets accessed bits) are written, never executed.
            _ => EPT_READ | EPT_WRITE | EPT_LEAF_WB,
        };
        let ept_entries = self.walk_entries(
            [Page::EptPml4, Page::EptPdpt, Page::EptPd, Page::EptPt],
            EPT_READ | EPT_WRITE | EPT_EXECUTE,
            GUEST_PAGES.map(|p| (p, ept_leaf(p))),
        );
        guest
            .into_iter()
            .chain(ept_entries.into_iter().filter(move |_| ept))
    }

    /// The three table entries leading to the one last-level table, then one leaf per mapped page (the block is
    /// in one 2 MiB region, so the upper entries are shared).
    fn walk_entries<const N: usize>(
        &self,
        tables: [Page; 4],
        upper_flags: u64,
        leaves: [(Page, u64); N],
    ) -> alloc::vec::Vec<(u64, u64)> {
        let index = |level: u32| (self.base >> (12 + 9 * level)) & 0x1FF;
        let mut entries = alloc::vec::Vec::with_capacity(3 + N);
        for level in 0..3 {
            let table = self.page(tables[level]);
            let next = self.page(tables[level + 1]);
            entries.push((table + 8 * index(3 - level as u32), next | upper_flags));
        }
        let last = self.page(tables[3]);
        for (page, flags) in leaves {
            let addr = self.page(page);
            entries.push((last + 8 * ((addr >> 12) & 0x1FF), addr | flags));
        }
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Memory holding the entries, and a 4-level walk over it as the processor does it: the leaf's address
    /// and the flags every level allows (AND of the levels' permission bits), None if any level is not present.
    struct Tables(BTreeMap<u64, u64>);

    impl Tables {
        fn new(layout: &GuestLayout, ept: bool) -> Self {
            let mut memory = BTreeMap::new();
            for (addr, value) in layout.table_entries(ept) {
                assert_eq!(addr % 8, 0);
                assert!(
                    memory.insert(addr, value).is_none(),
                    "0x{addr:x} written twice"
                );
            }
            Self(memory)
        }

        fn walk(&self, root: u64, addr: u64, present: u64, perms: u64) -> Option<(u64, u64)> {
            let mut table = root;
            let mut allowed = perms;
            for level in (0..4).rev() {
                let index = (addr >> (12 + 9 * level)) & 0x1FF;
                let entry = *self.0.get(&(table + 8 * index)).unwrap_or(&0);
                if entry & present == 0 {
                    return None;
                }
                allowed &= entry;
                table = entry & 0x000F_FFFF_FFFF_F000;
            }
            Some((table | (addr & 0xFFF), allowed & perms))
        }
    }

    const BASE: u64 = 0x0123_0000;

    #[test]
    fn the_guest_maps_its_code_read_only_and_its_stack_writable_one_to_one() {
        let layout = GuestLayout::new(BASE).unwrap();
        let t = Tables::new(&layout, false);
        let walk = |addr| t.walk(layout.guest_cr3(), addr, PTE_PRESENT, PTE_WRITABLE);
        assert_eq!(walk(layout.page(Page::Code) + 0x10), Some((BASE + 0x10, 0)));
        let stack = layout.page(Page::Stack) + 0xFF8;
        assert_eq!(walk(stack), Some((stack, PTE_WRITABLE)));
    }

    #[test]
    fn the_guest_maps_nothing_else() {
        let layout = GuestLayout::new(BASE).unwrap();
        let t = Tables::new(&layout, true);
        for addr in [
            0,
            BASE - PAGE,
            layout.page(Page::Pml4),
            layout.page(Page::EptPml4),
            BASE + BLOCK_PAGES * PAGE,
            BASE + (2 << 20),
            1 << 39,
        ] {
            assert_eq!(
                t.walk(layout.guest_cr3(), addr, PTE_PRESENT, 0),
                None,
                "0x{addr:x}"
            );
        }
    }

    #[test]
    fn the_ept_maps_exactly_the_guest_pages_with_their_rights() {
        let layout = GuestLayout::new(BASE).unwrap();
        let t = Tables::new(&layout, true);
        let rwx = EPT_READ | EPT_WRITE | EPT_EXECUTE;
        let ept = |addr| t.walk(layout.ept_pml4(), addr, rwx, rwx);
        assert_eq!(
            ept(layout.page(Page::Code)),
            Some((layout.page(Page::Code), EPT_READ | EPT_EXECUTE))
        );
        for page in [Page::Stack, Page::Pml4, Page::Pdpt, Page::Pd, Page::Pt] {
            let addr = layout.page(page);
            assert_eq!(ept(addr), Some((addr, EPT_READ | EPT_WRITE)), "{page:?}");
        }
        for page in [Page::EptPml4, Page::EptPdpt, Page::EptPd, Page::EptPt] {
            assert_eq!(
                ept(layout.page(page)),
                None,
                "{page:?} must not be guest-visible"
            );
        }
        assert_eq!(ept(0), None);
        assert_eq!(ept(BASE + BLOCK_PAGES * PAGE), None);
        // Every EPT leaf is write-back.
        for (addr, value) in layout.table_entries(true) {
            if addr >> 12 == layout.page(Page::EptPt) >> 12 {
                assert_eq!(value & (7 << 3), EPT_LEAF_WB);
            }
        }
    }

    #[test]
    fn without_ept_no_ept_entry_is_written() {
        let layout = GuestLayout::new(BASE).unwrap();
        assert!(layout
            .table_entries(false)
            .all(|(addr, _)| addr < layout.page(Page::EptPml4)));
        assert_eq!(layout.table_entries(false).count(), 5);
        assert_eq!(layout.table_entries(true).count(), 5 + 9);
    }

    /// The entry bits are the SDM's (vol. 3A table 4-19, vol. 3C table 29-6), and the entries for one block
    /// are exactly these values.
    #[test]
    fn the_entries_have_the_sdm_bits() {
        assert_eq!((PTE_PRESENT, PTE_WRITABLE), (1, 2));
        assert_eq!(
            (EPT_READ, EPT_WRITE, EPT_EXECUTE, EPT_LEAF_WB),
            (1, 2, 4, 0x30)
        );
        let layout = GuestLayout::new(0x0040_0000).unwrap();
        assert_eq!(layout.base(), 0x0040_0000);
        let entries: Vec<(u64, u64)> = layout.table_entries(true).collect();
        let page = |n: u64| 0x0040_0000 + n * PAGE;
        assert_eq!(
            entries,
            [
                // Guest: PML4[0] -> PDPT, PDPT[0] -> PD, PD[2] -> PT (P|RW), PT[0] code (P), PT[1] stack (P|RW).
                (page(2), page(3) | 3),
                (page(3), page(4) | 3),
                (page(4) + 16, page(5) | 3),
                (page(5), page(0) | 1),
                (page(5) + 8, page(1) | 3),
                // EPT: the same walk with RWX upper entries, then R+X code and R+W WB leaves.
                (page(6), page(7) | 7),
                (page(7), page(8) | 7),
                (page(8) + 16, page(9) | 7),
                (page(9), page(0) | 0x35),
                (page(9) + 8, page(1) | 0x33),
                (page(9) + 16, page(2) | 0x33),
                (page(9) + 24, page(3) | 0x33),
                (page(9) + 32, page(4) | 0x33),
                (page(9) + 40, page(5) | 0x33),
            ]
        );
    }

    #[test]
    fn a_block_must_be_aligned_so_that_it_stays_in_one_2mib_region() {
        assert_eq!(GuestLayout::new(BASE + PAGE), Err(Misaligned(BASE + PAGE)));
        assert_eq!(
            Misaligned(0x1234).to_string(),
            "guest block at 0x1234 is not 65536-byte aligned"
        );
        const { assert!(BLOCK_PAGES * PAGE <= BLOCK_ALIGN) };
        const { assert!(BLOCK_ALIGN.is_power_of_two() && (2 << 20) % BLOCK_ALIGN == 0) };
        // A block at the last aligned slot of a 2 MiB region.
        let layout = GuestLayout::new((4 << 20) - BLOCK_ALIGN).unwrap();
        let t = Tables::new(&layout, true);
        let code = layout.page(Page::Code);
        assert_eq!(
            t.walk(layout.guest_cr3(), code, PTE_PRESENT, 0),
            Some((code, 0))
        );
    }
}
