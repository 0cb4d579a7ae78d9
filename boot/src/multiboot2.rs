//! Multiboot2 boot information (multiboot2 specification, section 3.6), read defensively: every tag is
//! bounds-checked against `total_size` before a byte of it is used.

use crate::{BootInfo, HandoffError, Loader, PhysMem, Region, RegionKind};

/// The value the loader leaves in EAX (checked by entry.s before Rust runs).
pub const BOOTLOADER_MAGIC: u32 = 0x36D7_6289;

const TAG_END: u32 = 0;
const TAG_CMDLINE: u32 = 1;
const TAG_LOADER_NAME: u32 = 2;
const TAG_MMAP: u32 = 6;
const TAG_ACPI_OLD: u32 = 14;
const TAG_ACPI_NEW: u32 = 15;

/// GRUB's info stays well below this even with an EFI memory map; anything larger is corruption.
const MAX_TOTAL_SIZE: u32 = 1 << 20;
const MMAP_ENTRY_MIN: u32 = 24;

pub fn parse(mem: &impl PhysMem, info: u64) -> Result<BootInfo, HandoffError> {
    if info == 0 {
        return Err(HandoffError::NullInfo);
    }
    let total = mem
        .read_u32(info)
        .ok_or(HandoffError::Unreadable { paddr: info })?;
    if !(16..=MAX_TOTAL_SIZE).contains(&total) {
        return Err(HandoffError::BadTotalSize(total));
    }
    // A structure that would wrap around the end of the address space is as implausible as a huge one (and
    // from here on `info + offset` cannot overflow for any offset below `total`).
    let info_end = info
        .checked_add(u64::from(total))
        .ok_or(HandoffError::BadTotalSize(total))?;
    let mut boot = BootInfo::new(Loader::Multiboot2);
    boot.loader_data = (info, info_end);
    let mut saw_mmap = false;
    let mut rsdp_new = None;
    let mut rsdp_old = None;
    let mut offset: u32 = 8;
    loop {
        if offset.checked_add(8).is_none_or(|end| end > total) {
            return Err(HandoffError::NoEndTag);
        }
        let at = info + u64::from(offset);
        let kind = mem
            .read_u32(at)
            .ok_or(HandoffError::Unreadable { paddr: at })?;
        let size = mem
            .read_u32(at + 4)
            .ok_or(HandoffError::Unreadable { paddr: at + 4 })?;
        if size < 8 {
            return Err(HandoffError::BadTagSize { offset, size });
        }
        if offset.checked_add(size).is_none_or(|end| end > total) {
            return Err(HandoffError::TagOverrun { offset, size });
        }
        let body = at + 8;
        let body_len = (size - 8) as usize;
        match kind {
            TAG_END => break,
            TAG_CMDLINE | TAG_LOADER_NAME => {
                let mut buf = [0u8; crate::MAX_CMDLINE + 1];
                let n = body_len.min(buf.len());
                if !mem.read(body, &mut buf[..n]) {
                    return Err(HandoffError::Unreadable { paddr: body });
                }
                if kind == TAG_CMDLINE {
                    boot.set_cmdline(&buf[..n]);
                } else {
                    boot.set_loader_name(&buf[..n]);
                }
            }
            TAG_MMAP => {
                saw_mmap = true;
                // entry_size and entry_version come first: a shorter tag would make us read past it.
                if body_len < 8 {
                    return Err(HandoffError::BadTagSize { offset, size });
                }
                let entry_size = mem
                    .read_u32(body)
                    .ok_or(HandoffError::Unreadable { paddr: body })?;
                if entry_size < MMAP_ENTRY_MIN {
                    return Err(HandoffError::BadMmapEntrySize(entry_size));
                }
                let mut entry = body + 8;
                let end = at + u64::from(size);
                while entry
                    .checked_add(u64::from(MMAP_ENTRY_MIN))
                    .is_some_and(|e| e <= end)
                {
                    let unread = HandoffError::Unreadable { paddr: entry };
                    let start = mem.read_u64(entry).ok_or(unread)?;
                    let len = mem.read_u64(entry + 8).ok_or(unread)?;
                    let ty = mem.read_u32(entry + 16).ok_or(unread)?;
                    boot.push_region(Region {
                        start,
                        len,
                        kind: RegionKind::from_e820(ty),
                    });
                    match entry.checked_add(u64::from(entry_size)) {
                        Some(next) => entry = next,
                        None => break,
                    }
                }
            }
            // The tag holds a copy of the RSDP; its address is as good as the original's.
            TAG_ACPI_NEW if body_len >= 36 => rsdp_new = Some(body),
            TAG_ACPI_OLD if body_len >= 20 => rsdp_old = Some(body),
            _ => {}
        }
        offset = match offset.checked_add(size.next_multiple_of(8)) {
            Some(next) => next,
            None => return Err(HandoffError::NoEndTag),
        };
    }
    if !saw_mmap {
        return Err(HandoffError::NoMemoryMap);
    }
    if boot.usable_bytes() == 0 {
        return Err(HandoffError::NoUsableMemory);
    }
    boot.rsdp = rsdp_new.or(rsdp_old);
    Ok(boot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testmem::FakeMem;

    const BASE: u64 = 0x10000;

    struct Mbi(Vec<u8>);

    impl Mbi {
        fn new() -> Self {
            Mbi(vec![0; 8])
        }
        fn tag(mut self, kind: u32, body: &[u8]) -> Self {
            let size = 8 + body.len() as u32;
            self.0.extend_from_slice(&kind.to_le_bytes());
            self.0.extend_from_slice(&size.to_le_bytes());
            self.0.extend_from_slice(body);
            while !self.0.len().is_multiple_of(8) {
                self.0.push(0);
            }
            self
        }
        fn mmap(self, entries: &[(u64, u64, u32)]) -> Self {
            let mut body = Vec::new();
            body.extend_from_slice(&24u32.to_le_bytes());
            body.extend_from_slice(&0u32.to_le_bytes());
            for &(start, len, ty) in entries {
                body.extend_from_slice(&start.to_le_bytes());
                body.extend_from_slice(&len.to_le_bytes());
                body.extend_from_slice(&ty.to_le_bytes());
                body.extend_from_slice(&0u32.to_le_bytes());
            }
            self.tag(TAG_MMAP, &body)
        }
        fn finish(self) -> FakeMem {
            let mut bytes = self.tag(TAG_END, &[]).0;
            let total = bytes.len() as u32;
            bytes[..4].copy_from_slice(&total.to_le_bytes());
            let mut mem = FakeMem::new(BASE, 0x1000);
            mem.put(BASE, &bytes);
            mem
        }
    }

    fn typical() -> Mbi {
        Mbi::new()
            .tag(TAG_CMDLINE, b"log=debug on_done=exit\0")
            .tag(TAG_LOADER_NAME, b"GRUB 2.06\0")
            .mmap(&[
                (0, 0x9fc00, 1),
                (0x9fc00, 0x400, 2),
                (0x100000, 0x1ff00000, 1),
                (0xfffc0000, 0x40000, 2),
            ])
    }

    #[test]
    fn parses_a_grub_like_handoff() {
        let mut rsdp = b"RSD PTR ".to_vec();
        rsdp.resize(20, 0);
        let mem = typical().tag(TAG_ACPI_OLD, &rsdp).finish();
        let info = parse(&mem, BASE).unwrap();
        assert_eq!(info.loader, Loader::Multiboot2);
        assert_eq!(info.cmdline(), "log=debug on_done=exit");
        assert_eq!(info.loader_name(), "GRUB 2.06");
        assert_eq!(info.regions().len(), 4);
        assert_eq!(info.usable_bytes(), 0x9fc00 + 0x1ff00000);
        assert_eq!(info.highest_address(), 0x1_0000_0000);
        // The RSDP copy lives right after the header of the last tag before the end tag.
        let rsdp_addr = info.rsdp.unwrap();
        let mut sig = [0u8; 8];
        assert!(mem.read(rsdp_addr, &mut sig));
        assert_eq!(&sig, b"RSD PTR ");
    }

    #[test]
    fn a_command_line_of_the_maximum_length_is_read_whole() {
        let mut text = vec![b'x'; crate::MAX_CMDLINE];
        text.push(0);
        let info = parse(
            &Mbi::new()
                .tag(TAG_CMDLINE, &text)
                .mmap(&[(0x100000, 0x100000, 1)])
                .finish(),
            BASE,
        )
        .unwrap();
        assert_eq!(info.cmdline().len(), crate::MAX_CMDLINE);
        assert!(!info.cmdline_truncated);
        text.insert(0, b'y');
        let info = parse(
            &Mbi::new()
                .tag(TAG_CMDLINE, &text)
                .mmap(&[(0x100000, 0x100000, 1)])
                .finish(),
            BASE,
        )
        .unwrap();
        assert_eq!(info.cmdline().len(), crate::MAX_CMDLINE);
        assert!(info.cmdline_truncated);
    }

    #[test]
    fn an_unreadable_tag_header_names_the_field() {
        // The window ends 4 bytes into the second tag: its type is readable, its size is not.
        let Mbi(bytes) = typical().tag(TAG_END, &[]);
        let total = bytes.len() as u32;
        let first_tag_size = u32::from_le_bytes(bytes[12..16].try_into().unwrap());
        let second = 8 + first_tag_size.next_multiple_of(8);
        let mut mem = FakeMem::new(BASE, second as usize + 4);
        let mut head = bytes[..second as usize + 4].to_vec();
        head[..4].copy_from_slice(&total.to_le_bytes());
        mem.put(BASE, &head);
        assert_eq!(
            parse(&mem, BASE).unwrap_err(),
            HandoffError::Unreadable {
                paddr: BASE + u64::from(second) + 4
            }
        );
        // Cut one byte earlier, the type itself is unreadable.
        let mut mem = FakeMem::new(BASE, second as usize + 3);
        mem.put(BASE, &head[..second as usize + 3]);
        assert_eq!(
            parse(&mem, BASE).unwrap_err(),
            HandoffError::Unreadable {
                paddr: BASE + u64::from(second)
            }
        );
    }

    #[test]
    fn prefers_the_acpi2_rsdp() {
        let mem = typical()
            .tag(TAG_ACPI_OLD, &[0; 20])
            .tag(TAG_ACPI_NEW, &[0; 36])
            .finish();
        let info = parse(&mem, BASE).unwrap();
        // header 8, cmdline tag 32, loader-name tag 24, mmap tag 112, old ACPI tag 32, then the new tag's body.
        assert_eq!(info.rsdp, Some(BASE + 8 + 32 + 24 + 112 + 32 + 8));
    }

    #[test]
    fn rejects_missing_memory_map() {
        let mem = Mbi::new().tag(TAG_CMDLINE, b"x\0").finish();
        assert_eq!(parse(&mem, BASE).unwrap_err(), HandoffError::NoMemoryMap);
    }

    #[test]
    fn rejects_map_without_usable_ram() {
        let mem = Mbi::new().mmap(&[(0, 0x1000, 2)]).finish();
        assert_eq!(parse(&mem, BASE).unwrap_err(), HandoffError::NoUsableMemory);
    }

    #[test]
    fn rejects_null_and_absurd_sizes() {
        let mem = typical().finish();
        assert_eq!(parse(&mem, 0).unwrap_err(), HandoffError::NullInfo);
        let mut bad = typical().finish();
        bad.put(BASE, &0x7fff_ffffu32.to_le_bytes());
        assert_eq!(
            parse(&bad, BASE).unwrap_err(),
            HandoffError::BadTotalSize(0x7fff_ffff)
        );
        bad.put(BASE, &4u32.to_le_bytes());
        assert_eq!(
            parse(&bad, BASE).unwrap_err(),
            HandoffError::BadTotalSize(4)
        );
    }

    #[test]
    fn rejects_a_tag_running_past_the_end() {
        let mut mem = typical().finish();
        // Inflate the command-line tag's size beyond total_size.
        mem.put(BASE + 12, &0x4000u32.to_le_bytes());
        assert!(matches!(
            parse(&mem, BASE).unwrap_err(),
            HandoffError::TagOverrun { offset: 8, .. }
        ));
    }

    #[test]
    fn rejects_a_zero_sized_tag_instead_of_looping() {
        let mut mem = typical().finish();
        mem.put(BASE + 12, &0u32.to_le_bytes());
        assert_eq!(
            parse(&mem, BASE).unwrap_err(),
            HandoffError::BadTagSize { offset: 8, size: 0 }
        );
    }

    #[test]
    fn rejects_info_without_end_tag() {
        let mut mem = typical().finish();
        let total = mem.read_u32(BASE).unwrap();
        // Turn the end tag into an unknown tag that still fits: no end tag remains.
        mem.put(BASE + u64::from(total) - 8, &99u32.to_le_bytes());
        assert_eq!(parse(&mem, BASE).unwrap_err(), HandoffError::NoEndTag);
    }

    // Found by boot/tests/fuzz_handoff.rs: lengths that add up past u64::MAX panicked in `usable_bytes`
    // (debug) or wrapped (release, possibly to 0: "no usable RAM").
    #[test]
    fn usable_bytes_saturate_on_hostile_lengths() {
        let mem = Mbi::new()
            .mmap(&[(0x100000, 1 << 63, 1), (0x200000, 1 << 63, 1)])
            .finish();
        let info = parse(&mem, BASE).unwrap();
        assert_eq!(info.usable_bytes(), u64::MAX);
    }

    // Found by the fuzzer: an info structure at the very top of the address space overflowed `info + total`.
    #[test]
    fn info_wrapping_the_address_space_is_rejected() {
        let Mbi(mut bytes) = typical().tag(TAG_END, &[]);
        let total = bytes.len() as u32;
        bytes[..4].copy_from_slice(&total.to_le_bytes());
        let top = u64::MAX - 0xFFF;
        let mut mem = FakeMem::new(top, 0x1000);
        mem.put(u64::MAX - 0x7, &bytes[..8]);
        assert_eq!(
            parse(&mem, u64::MAX - 0x7).unwrap_err(),
            HandoffError::BadTotalSize(total)
        );
        mem.put(top, &bytes);
        assert_eq!(parse(&mem, top).unwrap().regions().len(), 4);
    }

    // Found by the fuzzer: a memory-map tag of size 8 had its (absent) entry_size read from beyond the tag.
    #[test]
    fn rejects_an_mmap_tag_without_its_header() {
        let mem = Mbi::new().tag(TAG_MMAP, &[]).finish();
        assert_eq!(
            parse(&mem, BASE).unwrap_err(),
            HandoffError::BadTagSize { offset: 8, size: 8 }
        );
    }

    #[test]
    fn rejects_tiny_mmap_entries() {
        let mut mem = typical().finish();
        // The mmap tag follows the header (8), the cmdline tag (32) and the loader-name tag (24).
        let mmap_body = BASE + 8 + 32 + 24 + 8;
        mem.put(mmap_body, &8u32.to_le_bytes());
        assert_eq!(
            parse(&mem, BASE).unwrap_err(),
            HandoffError::BadMmapEntrySize(8)
        );
    }
}
