//! The AP trampoline (trampoline.s): the real-mode code a SIPI starts an AP in, copied to a free page below
//! 1 MiB and patched with where to go next (SDM vol. 3A 9.4.4, "MP initialization example").

use core::fmt;

/// Offsets inside the trampoline, exported by trampoline.s (in this order).
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct TrampolineOffsets {
    pub gdt: u64,
    pub gdtr: u64,
    pub far32: u64,
    pub pm32: u64,
    pub far64: u64,
    pub lm64: u64,
    pub cr3: u64,
    pub entry: u64,
    pub table: u64,
    pub count: u64,
    pub x2apic: u64,
    pub strays: u64,
    pub stray_id: u64,
}

/// The patches the BSP applies to the copied trampoline at `page`: (offset, value, width) triples.
pub fn trampoline_patches(
    page: u64,
    off: &TrampolineOffsets,
    cr3: u64,
    entry: u64,
    table: u64,
    count: u64,
    x2apic: bool,
) -> [(u64, u64, usize); 10] {
    [
        (off.gdtr + 2, page + off.gdt, 4),
        (off.far32, page + off.pm32, 4),
        (off.far64, page + off.lm64, 4),
        (off.cr3, cr3, 8),
        (off.entry, entry, 8),
        (off.table, table, 8),
        (off.count, count, 8),
        (off.x2apic, u64::from(x2apic), 8),
        (off.strays, 0, 4),
        (off.stray_id, 0, 4),
    ]
}

/// Why no trampoline could be installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrampolineError {
    /// The memory map has no free page below 1 MiB.
    NoPage,
    /// The page found cannot be named by a SIPI vector.
    NoVector { page: u64 },
}

impl fmt::Display for TrampolineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoPage => f.write_str("no free page below 1 MiB for the AP trampoline"),
            Self::NoVector { page } => {
                write!(
                    f,
                    "trampoline page 0x{page:x} cannot be named by a SIPI vector"
                )
            }
        }
    }
}

/// Where the trampoline went: its page and the SIPI vector that names it.
#[derive(Clone, Copy, Debug)]
pub struct Installed {
    pub page: u64,
    pub vector: u8,
    /// Offsets of the stray counter and the last stray APIC id in the page (read on the target only).
    #[cfg_attr(not(target_os = "none"), allow(dead_code))]
    strays_at: (u64, u64),
}

/// CPUs that ran the trampoline with an APIC id no slot has (they halted there, on no stack).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Strays {
    pub count: u32,
    pub last_apic_id: u32,
}

#[cfg(target_os = "none")]
pub use hw::install;

#[cfg(target_os = "none")]
mod hw {
    use super::*;
    use crate::memory;

    core::arch::global_asm!(include_str!("trampoline.s"), options(att_syntax));

    extern "C" {
        static trampoline_start: u8;
        static trampoline_end: u8;
        static trampoline_offsets: TrampolineOffsets;
    }

    /// Picks a free page below 1 MiB from the loader's memory map (`info`), copies the trampoline there and
    /// points it at `entry` with the table `slots` (whose layout trampoline.s reads: APIC id at offset 0, stack
    /// top at offset 8, a stride of `size_of::<T>()` = 128 bytes).
    pub fn install<T: Sync>(
        info: &boot::BootInfo,
        entry: extern "C" fn(&'static T) -> !,
        slots: &'static [T],
        x2apic: bool,
    ) -> Result<Installed, TrampolineError> {
        let exclude = [info.loader_data];
        let regions = info
            .regions()
            .iter()
            .map(|r| (r.start, r.len, r.kind == boot::RegionKind::Usable));
        let page = smp::trampoline::pick_trampoline_page(regions, &exclude)
            .ok_or(TrampolineError::NoPage)?;
        let vector =
            smp::trampoline::sipi_vector(page).ok_or(TrampolineError::NoVector { page })?;
        let start = core::ptr::addr_of!(trampoline_start);
        let len = core::ptr::addr_of!(trampoline_end) as usize - start as usize;
        assert!(
            len <= memory::PAGE_SIZE as usize,
            "trampoline larger than a page"
        );
        // SAFETY: the exported offsets table is a plain array of u64 in .rodata.
        let off = unsafe { core::ptr::addr_of!(trampoline_offsets).read() };
        let (cr3, _) = x86_64::registers::control::Cr3::read_raw();
        let cr3 = cr3.start_address().as_u64();
        assert!(cr3 < 1 << 32, "the APs' 32-bit code loads CR3 from 32 bits");
        let patches = trampoline_patches(
            page,
            &off,
            cr3,
            entry as *const () as u64,
            slots.as_ptr() as u64,
            slots.len() as u64,
            x2apic,
        );
        // SAFETY: the page is usable RAM below 1 MiB (identity-mapped) that the frame allocator never hands out
        // (its floor is 1 MiB) and that holds no loader data, so nothing else uses it while the APs start; the
        // copy and the patches stay inside the `len` bytes copied (the offsets come from the same assembly);
        // `slots` is 'static, so it outlives the bring-up.
        unsafe {
            core::ptr::copy_nonoverlapping(start, page as *mut u8, len);
            for (at, value, width) in patches {
                let dst = (page + at) as *mut u8;
                core::ptr::copy_nonoverlapping(value.to_le_bytes().as_ptr(), dst, width);
            }
        }
        Ok(Installed {
            page,
            vector,
            strays_at: (off.strays, off.stray_id),
        })
    }

    impl Installed {
        /// What the trampoline counted of CPUs whose APIC id matched no slot.
        pub fn strays(&self) -> Strays {
            let read = |at: u64| {
                // SAFETY: `at` is inside the trampoline page installed above (identity-mapped RAM below 1 MiB,
                // kept for the trampoline); APs write it with locked or aligned 32-bit stores, so a volatile
                // aligned read sees a whole value.
                unsafe { core::ptr::read_volatile((self.page + at) as *const u32) }
            };
            Strays {
                count: read(self.strays_at.0),
                last_apic_id: read(self.strays_at.1),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_point_into_the_copied_page() {
        let off = TrampolineOffsets {
            gdt: 0x100,
            gdtr: 0x120,
            far32: 0x128,
            pm32: 0x20,
            far64: 0x130,
            lm64: 0x60,
            cr3: 0x138,
            entry: 0x140,
            table: 0x148,
            count: 0x150,
            x2apic: 0x158,
            strays: 0x160,
            stray_id: 0x164,
        };
        let p = trampoline_patches(0x8000, &off, 0x1000, 0x20_1234, 0x30_0000, 7, true);
        assert_eq!(p[0], (0x122, 0x8100, 4));
        assert_eq!(p[1], (0x128, 0x8020, 4));
        assert_eq!(p[2], (0x130, 0x8060, 4));
        assert_eq!(p[6], (0x150, 7, 8));
        assert_eq!(p[7], (0x158, 1, 8));
        assert_eq!(p[8], (0x160, 0, 4));
        assert_eq!(p[9], (0x164, 0, 4));
        let x = trampoline_patches(0x8000, &off, 0x1000, 0x20_1234, 0x30_0000, 7, false);
        assert_eq!(x[7], (0x158, 0, 8));
        // Every patch stays inside the page.
        assert!(p.iter().all(|&(at, _, w)| at + w as u64 <= 4096));
    }
}
