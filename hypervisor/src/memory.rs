//! Physical memory: a frame allocator over the loader's memory map, the 4 KiB page-table edits that guard pages
//! need, and the kernel heap (boot-time allocations only: nothing is ever freed).
//!
//! Everything below 4 GiB is identity-mapped by entry.s, so a frame's physical address is also its virtual one.

use boot::{Region, RegionKind};

pub const PAGE_SIZE: u64 = 4096;
/// The allocator hands out memory from here up: the first MiB holds firmware data and the AP trampoline page.
pub const ALLOC_FLOOR: u64 = 1 << 20;
/// ... and below here, the end of the identity map.
pub const ALLOC_CEILING: u64 = boot::IDENTITY_MAPPED_END;

const MAX_RANGES: usize = 64;

/// Free physical ranges, sorted and disjoint; allocation takes from the lowest range that fits.
#[derive(Clone, Debug)]
pub struct FrameAllocator {
    ranges: [(u64, u64); MAX_RANGES],
    count: usize,
    pub allocated_bytes: u64,
}

impl FrameAllocator {
    /// Usable RAM from `regions`, clipped to [ALLOC_FLOOR, ALLOC_CEILING), minus every `reserved` range
    /// (the image, the loader's structures, ...). Page-aligned inwards.
    pub fn new(regions: &[Region], reserved: &[(u64, u64)]) -> Self {
        let mut fa = FrameAllocator {
            ranges: [(0, 0); MAX_RANGES],
            count: 0,
            allocated_bytes: 0,
        };
        for r in regions.iter().filter(|r| r.kind == RegionKind::Usable) {
            let start = r.start.max(ALLOC_FLOOR).next_multiple_of(PAGE_SIZE);
            let end = r.end().min(ALLOC_CEILING) & !(PAGE_SIZE - 1);
            if start < end {
                fa.add(start, end);
            }
        }
        // Overlapping "usable" entries (firmware bugs) must not hand out a frame twice: a non-usable entry wins.
        for r in regions.iter().filter(|r| r.kind != RegionKind::Usable) {
            fa.remove(r.start, r.end());
        }
        for &(start, end) in reserved {
            fa.remove(start & !(PAGE_SIZE - 1), end.next_multiple_of(PAGE_SIZE));
        }
        fa
    }

    fn add(&mut self, start: u64, end: u64) {
        // Merge with overlapping or adjacent ranges, keep sorted.
        let mut s = start;
        let mut e = end;
        let mut out = [(0u64, 0u64); MAX_RANGES];
        let mut n = 0;
        let mut placed = false;
        for &(rs, re) in &self.ranges[..self.count] {
            if re < s {
                out[n] = (rs, re);
                n += 1;
            } else if rs > e {
                if !placed {
                    out[n] = (s, e);
                    n += 1;
                    placed = true;
                }
                if n < MAX_RANGES {
                    out[n] = (rs, re);
                    n += 1;
                }
            } else {
                s = s.min(rs);
                e = e.max(re);
            }
        }
        if !placed && n < MAX_RANGES {
            out[n] = (s, e);
            n += 1;
        }
        self.ranges = out;
        self.count = n;
    }

    fn remove(&mut self, start: u64, end: u64) {
        let mut out = [(0u64, 0u64); MAX_RANGES];
        let mut n = 0;
        // A split can need one more slot than there is: once the table is full, further ranges are dropped (that
        // memory is lost, never handed out twice). Writing past `out` here panicked the kernel on maps with 64 or more
        // usable ranges (UEFI) and on fragmentation by aligned allocations (tests/frame_allocator_maps.rs).
        for &(rs, re) in &self.ranges[..self.count] {
            if re <= start || rs >= end {
                if n < MAX_RANGES {
                    out[n] = (rs, re);
                    n += 1;
                }
                continue;
            }
            if rs < start && n < MAX_RANGES {
                out[n] = (rs, start);
                n += 1;
            }
            if re > end && n < MAX_RANGES {
                out[n] = (end, re);
                n += 1;
            }
        }
        self.ranges = out;
        self.count = n;
    }

    pub fn free_bytes(&self) -> u64 {
        self.ranges[..self.count].iter().map(|(s, e)| e - s).sum()
    }

    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges[..self.count]
    }

    /// `pages` contiguous frames aligned to `align` bytes (a power of two, at least 4 KiB). Not zeroed.
    pub fn alloc(&mut self, pages: u64, align: u64) -> Option<u64> {
        let size = pages.checked_mul(PAGE_SIZE)?;
        let align = align.max(PAGE_SIZE);
        for i in 0..self.count {
            let (rs, re) = self.ranges[i];
            let start = rs.next_multiple_of(align);
            if start.checked_add(size).is_some_and(|end| end <= re) {
                self.remove(start, start + size);
                self.allocated_bytes += size;
                return Some(start);
            }
        }
        None
    }
}

/// A zeroed 4 KiB frame from the frame allocator, identity-mapped write-back, handed out once and never freed:
/// its owner may give it to the processor (a VMX region). Only [`alloc_owned_frame`] makes one.
#[derive(Debug)]
pub struct OwnedFrame {
    phys: u64,
}

impl OwnedFrame {
    /// Its physical address, which is also its virtual address (identity map).
    pub fn phys(&self) -> u64 {
        self.phys
    }
}

/// Zeroed contiguous frames for one owner, identity-mapped write-back, never freed: memory the owner gives to
/// a guest (its code, stack and page tables) and to the processor (EPT tables). Only [`alloc_owned_block`]
/// makes one; it is written only through its bounds-checked methods while no guest runs on it.
#[derive(Debug)]
pub struct OwnedBlock {
    phys: u64,
    bytes: u64,
}

impl OwnedBlock {
    /// Its physical address, which is also its virtual address (identity map).
    pub fn phys(&self) -> u64 {
        self.phys
    }

    /// Whether `[phys, phys + len)` lies inside the block.
    pub fn contains(&self, phys: u64, len: u64) -> bool {
        phys >= self.phys && len <= self.bytes && phys - self.phys <= self.bytes - len
    }
}

#[cfg(target_os = "none")]
pub use hw::*;

#[cfg(target_os = "none")]
mod hw {
    use super::*;
    use core::alloc::{GlobalAlloc, Layout};
    use x86_64::registers::control::Cr3;
    use x86_64::structures::paging::PageTableFlags;

    pub static FRAMES: spin::Mutex<Option<FrameAllocator>> = spin::Mutex::new(None);

    extern "C" {
        static __image_start: u8;
        static __image_end: u8;
    }

    /// The image's physical range (it runs where it was loaded).
    pub fn image_range() -> (u64, u64) {
        (
            core::ptr::addr_of!(__image_start) as u64,
            core::ptr::addr_of!(__image_end) as u64,
        )
    }

    /// Hands the usable RAM of `regions` (normally `info.regions()`) to the frame allocator, minus the image
    /// and the loader's data; returns the free bytes.
    pub fn init(info: &boot::BootInfo, regions: &[boot::Region]) -> u64 {
        let fa = FrameAllocator::new(regions, &[image_range(), info.loader_data]);
        let free = fa.free_bytes();
        *FRAMES.lock() = Some(fa);
        free
    }

    /// Zeroed, contiguous, aligned frames; None when memory is exhausted (the caller reports it).
    pub fn alloc_zeroed(pages: u64, align: u64) -> Option<u64> {
        let addr = alloc(pages, align)?;
        // SAFETY: the frames were just taken from the free list, lie in the identity map below 4 GiB, and are
        // not referenced by anything else.
        unsafe { core::ptr::write_bytes(addr as *mut u8, 0, (pages * PAGE_SIZE) as usize) };
        Some(addr)
    }

    /// Contiguous, aligned frames with whatever they held: for stacks, which are written before they are read
    /// (zeroing every core's stacks is most of the BSP's bring-up preparation under emulation).
    pub fn alloc(pages: u64, align: u64) -> Option<u64> {
        FRAMES.lock().as_mut()?.alloc(pages, align)
    }

    pub fn allocated_bytes() -> u64 {
        FRAMES.lock().as_ref().map_or(0, |f| f.allocated_bytes)
    }

    const PRESENT: u64 = PageTableFlags::PRESENT.bits();
    const HUGE: u64 = PageTableFlags::HUGE_PAGE.bits();
    /// Bits 51:12 of an entry: the physical address of the next table or page.
    const ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;

    /// Serializes page-table edits. Guard pages are made by the BSP before the APs start, so no other core
    /// can hold a stale TLB entry for them.
    static PAGING: spin::Mutex<()> = spin::Mutex::new(());

    /// Makes the 4 KiB page at `addr` not-present, splitting its 2 MiB mapping if needed.
    /// Returns false if a page table could not be allocated.
    pub fn unmap_guard_page(addr: u64) -> bool {
        let _lock = PAGING.lock();
        let (pml4, _) = Cr3::read_raw();
        let pml4 = pml4.start_address().as_u64() as *mut u64;
        let index = |level: u32| ((addr >> (12 + 9 * level)) & 0x1FF) as usize;
        // SAFETY: every table below 4 GiB is identity-mapped and owned by this module (entry.s built them, the
        // PAGING lock serializes edits); indices are 9-bit so they stay inside the 512-entry tables.
        unsafe {
            let pdpt = (*pml4.add(index(3)) & ADDR_MASK) as *mut u64;
            let pd = (*pdpt.add(index(2)) & ADDR_MASK) as *mut u64;
            let pde = pd.add(index(1));
            if *pde & HUGE != 0 {
                let Some(pt) = alloc_zeroed(1, PAGE_SIZE) else {
                    return false;
                };
                let base = *pde & ADDR_MASK & !0x1F_FFFF;
                // Same attributes, 4 KiB granularity (bit 7 becomes PAT in a PTE: keep it clear).
                let flags = *pde & 0x1F;
                for i in 0..512u64 {
                    *((pt as *mut u64).add(i as usize)) = (base + i * PAGE_SIZE) | flags;
                }
                *pde = pt | (*pde & 0x1F);
                x86_64::instructions::tlb::flush_all();
            }
            let pt = (*pde & ADDR_MASK) as *mut u64;
            *pt.add(index(0)) &= !PRESENT;
            x86_64::instructions::tlb::flush(x86_64::VirtAddr::new(addr));
        }
        true
    }

    /// A stack of `pages` usable pages with an unmapped guard page below it: (guard, bottom, top).
    pub fn alloc_guarded_stack(pages: u64) -> Option<(u64, u64, u64)> {
        let guard = alloc(pages + 1, PAGE_SIZE)?;
        if !unmap_guard_page(guard) {
            return None;
        }
        Some((guard, guard + PAGE_SIZE, guard + (pages + 1) * PAGE_SIZE))
    }

    /// `pages` zeroed frames aligned to `align` for their owner alone (see [`OwnedBlock`]).
    pub fn alloc_owned_block(pages: u64, align: u64) -> Option<OwnedBlock> {
        alloc_zeroed(pages, align).map(|phys| OwnedBlock {
            phys,
            bytes: pages * PAGE_SIZE,
        })
    }

    impl OwnedBlock {
        /// Writes `value` at the 8-byte aligned physical address `phys` inside the block; false (nothing
        /// written) if it is outside or misaligned.
        pub fn write_u64(&mut self, phys: u64, value: u64) -> bool {
            if !phys.is_multiple_of(8) || !self.contains(phys, 8) {
                return false;
            }
            // SAFETY: inside the block (checked), which this value owns alone (`alloc_owned_block`), aligned,
            // identity-mapped; `&mut self` excludes other writers through this handle.
            unsafe { (phys as *mut u64).write_volatile(value) };
            true
        }

        /// Copies `bytes` to `phys` inside the block; false (nothing written) if it does not fit.
        pub fn write_bytes(&mut self, phys: u64, bytes: &[u8]) -> bool {
            if !self.contains(phys, bytes.len() as u64) {
                return false;
            }
            // SAFETY: as `write_u64`; the source is a live slice that cannot overlap the block (the block was
            // taken from the free frames and is referenced only through this handle).
            unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), phys as *mut u8, bytes.len()) };
            true
        }
    }

    /// One zeroed frame for its owner alone (see [`OwnedFrame`]).
    pub fn alloc_owned_frame() -> Option<OwnedFrame> {
        alloc_zeroed(1, PAGE_SIZE).map(|phys| OwnedFrame { phys })
    }

    /// A guarded stack that nothing runs on yet, from [`alloc_fresh_stack`]; [`FreshStack::switch_to`] consumes it.
    pub struct FreshStack {
        bounds: (u64, u64, u64),
    }

    impl FreshStack {
        /// (guard page, bottom, top).
        pub fn bounds(&self) -> (u64, u64, u64) {
            self.bounds
        }

        /// Continues on this stack, calling `entry`, which never returns.
        pub fn switch_to(self, entry: extern "C" fn() -> !) -> ! {
            // SAFETY: the stack is mapped, fresh and owned by the caller (the value is consumed, so no second
            // switch to it can happen); `entry` takes no arguments and never returns, so nothing on the old
            // stack is used again. RBP is cleared to end the frame-pointer chain.
            unsafe {
                core::arch::asm!(
                    "mov rsp, {top}",
                    "xor ebp, ebp",
                    "call {entry}",
                    top = in(reg) self.bounds.2,
                    entry = in(reg) entry,
                    options(noreturn)
                )
            }
        }
    }

    /// A stack for the calling core to switch to (see [`alloc_guarded_stack`]).
    pub fn alloc_fresh_stack(pages: u64) -> Option<FreshStack> {
        alloc_guarded_stack(pages).map(|bounds| FreshStack { bounds })
    }

    /// The kernel heap: bump allocation from 64 KiB chunks of frames. Boot-time data only; never freed.
    struct BumpHeap {
        cursor: spin::Mutex<(u64, u64)>,
    }

    /// 64 KiB.
    const CHUNK: u64 = 0x1_0000;

    // SAFETY: allocations come from frames exclusively owned by the heap, aligned as requested, never reused.
    unsafe impl GlobalAlloc for BumpHeap {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let mut cur = self.cursor.lock();
            let align = layout.align() as u64;
            let size = layout.size() as u64;
            let mut start = cur.0.next_multiple_of(align);
            if cur.0 == 0 || start + size > cur.1 {
                let pages = size.max(CHUNK).div_ceil(PAGE_SIZE);
                let Some(frames) = alloc_zeroed(pages, align) else {
                    return core::ptr::null_mut();
                };
                *cur = (frames, frames + pages * PAGE_SIZE);
                start = frames;
            }
            cur.0 = start + size;
            start as *mut u8
        }

        unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
    }

    #[global_allocator]
    static HEAP: BumpHeap = BumpHeap {
        cursor: spin::Mutex::new((0, 0)),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usable(start: u64, len: u64) -> Region {
        Region {
            start,
            len,
            kind: RegionKind::Usable,
        }
    }

    #[test]
    fn clips_to_the_window_and_removes_reserved_ranges() {
        let regions = [
            usable(0, 0x9fc00),
            Region {
                start: 0x9fc00,
                len: 0x400,
                kind: RegionKind::Reserved,
            },
            usable(0x100000, 0x1ff00000),
            usable(0x1_0000_0000, 0x4000_0000),
        ];
        let fa = FrameAllocator::new(&regions, &[(0x200000, 0x22d123), (0x9000, 0x9100)]);
        assert_eq!(fa.ranges(), &[(0x100000, 0x200000), (0x22e000, 0x20000000)]);
    }

    #[test]
    fn overlapping_firmware_entries_never_yield_reserved_frames() {
        let regions = [
            usable(0x100000, 0x100000),
            Region {
                start: 0x180000,
                len: 0x1000,
                kind: RegionKind::AcpiNvs,
            },
        ];
        let fa = FrameAllocator::new(&regions, &[]);
        assert_eq!(fa.ranges(), &[(0x100000, 0x180000), (0x181000, 0x200000)]);
    }

    #[test]
    fn allocations_are_aligned_disjoint_and_bounded() {
        let mut fa = FrameAllocator::new(&[usable(0x100000, 0x10_0000)], &[]);
        let a = fa.alloc(1, PAGE_SIZE).unwrap();
        let b = fa.alloc(3, 0x10000).unwrap();
        assert_eq!(a, 0x100000);
        assert_eq!(b % 0x10000, 0);
        assert!(b >= a + PAGE_SIZE);
        assert_eq!(fa.allocated_bytes, 4 * PAGE_SIZE);
        // What is left is free, and no more than that can be had.
        let left = fa.free_bytes() / PAGE_SIZE;
        assert!(fa.alloc(left + 1, PAGE_SIZE).is_none());
        assert!(fa.alloc(u64::MAX, PAGE_SIZE).is_none());
    }

    #[test]
    fn a_full_range_table_survives_splits() {
        // 64 disjoint usable ranges (a fragmented UEFI map), then the image splits the first one.
        let regions: Vec<Region> = (0..MAX_RANGES as u64)
            .map(|i| usable(0x100000 + i * 0x20000, 0x10000))
            .collect();
        let mut fa = FrameAllocator::new(&regions, &[(0x104000, 0x105000)]);
        assert_eq!(fa.ranges().len(), MAX_RANGES);
        assert_eq!(fa.ranges()[0], (0x100000, 0x104000));
        assert_eq!(fa.ranges()[1], (0x105000, 0x110000));
        // Aligned allocations that split ranges keep working; nothing is handed out twice.
        let mut got = Vec::new();
        while let Some(a) = fa.alloc(1, 0x8000) {
            got.push(a);
        }
        got.sort_unstable();
        got.dedup();
        assert!(got.len() >= MAX_RANGES);
    }

    fn empty() -> FrameAllocator {
        FrameAllocator::new(&[], &[])
    }

    /// Ranges added in any order come out sorted; adjacent and overlapping ones merge.
    #[test]
    fn added_ranges_are_sorted_and_merged() {
        let mut fa = empty();
        fa.add(0x5000, 0x6000);
        fa.add(0x1000, 0x2000);
        fa.add(0x3000, 0x4000);
        assert_eq!(
            fa.ranges(),
            &[(0x1000, 0x2000), (0x3000, 0x4000), (0x5000, 0x6000)]
        );
        fa.add(0x2000, 0x3000);
        assert_eq!(fa.ranges(), &[(0x1000, 0x4000), (0x5000, 0x6000)]);
        fa.add(0x3800, 0x5800);
        assert_eq!(fa.ranges(), &[(0x1000, 0x6000)]);
        assert_eq!(fa.free_bytes(), 0x5000);
    }

    /// With the table full, a range that sorts first is kept and the highest one is dropped (lost, never
    /// handed out twice); one that sorts last is dropped itself.
    #[test]
    fn a_full_table_keeps_the_lowest_ranges() {
        let full = || {
            let mut fa = empty();
            for i in 0..MAX_RANGES as u64 {
                fa.add(0x10_0000 + i * 0x2000, 0x10_1000 + i * 0x2000);
            }
            assert_eq!(fa.ranges().len(), MAX_RANGES);
            fa
        };
        let highest = *full().ranges().last().unwrap();
        let mut fa = full();
        fa.add(0x1000, 0x2000);
        assert_eq!(fa.ranges().len(), MAX_RANGES);
        assert_eq!(fa.ranges()[0], (0x1000, 0x2000));
        assert_eq!(fa.ranges()[1], (0x10_0000, 0x10_1000));
        assert!(!fa.ranges().contains(&highest));
        let mut fa = full();
        fa.add(0x100_0000, 0x100_1000);
        assert_eq!(fa.ranges(), full().ranges());
        // One that merges with a range needs no slot.
        let mut fa = full();
        fa.add(0x10_1000, 0x10_2000);
        assert_eq!(fa.ranges()[0], (0x10_0000, 0x10_3000));
        assert_eq!(fa.ranges().len(), MAX_RANGES - 1);
    }

    /// Removing the start or the end of a range leaves exactly the rest, with no empty range.
    #[test]
    fn removing_at_a_range_boundary_leaves_no_empty_range() {
        let mut fa = empty();
        fa.add(0x1000, 0x4000);
        fa.remove(0x1000, 0x2000);
        assert_eq!(fa.ranges(), &[(0x2000, 0x4000)]);
        fa.remove(0x3000, 0x4000);
        assert_eq!(fa.ranges(), &[(0x2000, 0x3000)]);
        fa.remove(0x2000, 0x3000);
        assert_eq!(fa.ranges(), &[]);
        assert_eq!(fa.free_bytes(), 0);
    }

    /// `[phys, phys + len)` inside the block, at both edges, without overflowing on huge arguments.
    #[test]
    fn an_owned_block_contains_exactly_its_bytes() {
        let block = OwnedBlock {
            phys: 0x10000,
            bytes: 0x3000,
        };
        assert_eq!(block.phys(), 0x10000);
        assert_eq!(OwnedFrame { phys: 0x7000 }.phys(), 0x7000);
        for (phys, len, inside) in [
            (0x10000, 0x3000, true),
            (0x10000, 0x3001, false),
            (0x12FFF, 1, true),
            (0x12FFF, 2, false),
            (0x13000, 1, false),
            (0x13000, 0, true),
            (0xFFFF, 1, false),
            (0x11000, 0x1000, true),
            (0x10000, u64::MAX, false),
            (u64::MAX, 1, false),
        ] {
            assert_eq!(block.contains(phys, len), inside, "{phys:#x} + {len:#x}");
        }
    }

    #[test]
    fn adjacent_usable_regions_merge() {
        let fa = FrameAllocator::new(&[usable(0x100000, 0x1000), usable(0x101000, 0x1000)], &[]);
        assert_eq!(fa.ranges(), &[(0x100000, 0x102000)]);
    }
}
