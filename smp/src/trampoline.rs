//! Where the AP start-up trampoline goes: the choice of its page below 1 MiB and the SIPI vector that names it.
//!
//! The trampoline itself (real mode -> protected mode -> long mode, then each AP looks up its own slot by APIC
//! id, Linux 6.5-style parallel bring-up) is assembly in the image, `hypervisor/src/trampoline.s`, with its data
//! layout beside it in `hypervisor/src/bringup.rs`.

use alloc::vec::Vec;

/// Page size.
pub const PAGE_SIZE: u64 = 0x1000;

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
    use std::vec;

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
