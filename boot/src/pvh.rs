//! PVH boot (Xen's `hvm_start_info`, as QEMU's `-kernel` uses it for an ELF with a PHYS32_ENTRY note).

use crate::{BootInfo, HandoffError, Loader, PhysMem, Region, RegionKind, MAX_CMDLINE};

pub const START_INFO_MAGIC: u32 = 0x336E_C578;

// Offsets inside `struct hvm_start_info` (xen/include/public/arch-x86/hvm/start_info.h).
const OFF_VERSION: u64 = 4;
const OFF_CMDLINE: u64 = 24;
const OFF_RSDP: u64 = 32;
const OFF_MEMMAP: u64 = 40;
const OFF_MEMMAP_ENTRIES: u64 = 48;
const START_INFO_SIZE: u64 = 56;
const MEMMAP_ENTRY_SIZE: u64 = 24;
/// More entries than this is corruption, not a machine.
const MAX_MEMMAP_ENTRIES: u32 = 4096;

pub fn parse(mem: &impl PhysMem, info: u64) -> Result<BootInfo, HandoffError> {
    if info == 0 {
        return Err(HandoffError::NullInfo);
    }
    // The structure must not wrap around the end of the address space (then `info + off` cannot overflow).
    if info.checked_add(START_INFO_SIZE).is_none() {
        return Err(HandoffError::Unreadable { paddr: info });
    }
    let field = |off: u64| HandoffError::Unreadable { paddr: info + off };
    let magic = mem.read_u32(info).ok_or(field(0))?;
    if magic != START_INFO_MAGIC {
        return Err(HandoffError::BadMagic { found: magic });
    }
    let version = mem.read_u32(info + OFF_VERSION).ok_or(field(OFF_VERSION))?;
    if version < 1 {
        return Err(HandoffError::UnsupportedPvhVersion(version));
    }
    let mut boot = BootInfo::new(Loader::Pvh);
    boot.loader_data = (info, info + START_INFO_SIZE);

    let cmdline = mem.read_u64(info + OFF_CMDLINE).ok_or(field(OFF_CMDLINE))?;
    if cmdline != 0 {
        let mut buf = [0u8; MAX_CMDLINE + 1];
        // Read what is readable: a command line near the end of memory may be shorter than the buffer.
        let mut n = buf.len();
        while n > 0 && !mem.read(cmdline, &mut buf[..n]) {
            n /= 2;
        }
        if n == 0 {
            return Err(HandoffError::Unreadable { paddr: cmdline });
        }
        boot.set_cmdline(&buf[..n]);
    }

    let rsdp = mem.read_u64(info + OFF_RSDP).ok_or(field(OFF_RSDP))?;
    boot.rsdp = (rsdp != 0).then_some(rsdp);

    let map = mem.read_u64(info + OFF_MEMMAP).ok_or(field(OFF_MEMMAP))?;
    let entries = mem
        .read_u32(info + OFF_MEMMAP_ENTRIES)
        .ok_or(field(OFF_MEMMAP_ENTRIES))?;
    if map == 0 || entries == 0 {
        return Err(HandoffError::NoMemoryMap);
    }
    for i in 0..u64::from(entries.min(MAX_MEMMAP_ENTRIES)) {
        // A map running off the end of the address space is unreadable, not a wrap-around to address 0.
        let at = map
            .checked_add(i * MEMMAP_ENTRY_SIZE)
            .filter(|a| a.checked_add(MEMMAP_ENTRY_SIZE).is_some())
            .ok_or(HandoffError::Unreadable { paddr: map })?;
        let unread = HandoffError::Unreadable { paddr: at };
        let start = mem.read_u64(at).ok_or(unread)?;
        let len = mem.read_u64(at + 8).ok_or(unread)?;
        let ty = mem.read_u32(at + 16).ok_or(unread)?;
        boot.push_region(Region {
            start,
            len,
            kind: RegionKind::from_e820(ty),
        });
    }
    if entries > MAX_MEMMAP_ENTRIES {
        boot.regions_truncated = true;
    }
    if boot.usable_bytes() == 0 {
        return Err(HandoffError::NoUsableMemory);
    }
    Ok(boot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testmem::FakeMem;

    const INFO: u64 = 0x6000;
    const CMDLINE: u64 = 0x6100;
    const MAP: u64 = 0x6200;

    fn start_info(version: u32, entries: &[(u64, u64, u32)]) -> FakeMem {
        let mut mem = FakeMem::new(0x6000, 0x1000);
        let mut si = Vec::new();
        si.extend_from_slice(&START_INFO_MAGIC.to_le_bytes());
        si.extend_from_slice(&version.to_le_bytes());
        si.extend_from_slice(&0u32.to_le_bytes()); // flags
        si.extend_from_slice(&0u32.to_le_bytes()); // nr_modules
        si.extend_from_slice(&0u64.to_le_bytes()); // modlist
        si.extend_from_slice(&CMDLINE.to_le_bytes());
        si.extend_from_slice(&0xf5a40u64.to_le_bytes()); // rsdp
        si.extend_from_slice(&MAP.to_le_bytes());
        si.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        si.extend_from_slice(&0u32.to_le_bytes());
        mem.put(INFO, &si);
        mem.put(CMDLINE, b"log=debug smp=2\0");
        for (i, &(start, len, ty)) in entries.iter().enumerate() {
            let mut e = Vec::new();
            e.extend_from_slice(&start.to_le_bytes());
            e.extend_from_slice(&len.to_le_bytes());
            e.extend_from_slice(&ty.to_le_bytes());
            e.extend_from_slice(&0u32.to_le_bytes());
            mem.put(MAP + 24 * i as u64, &e);
        }
        mem
    }

    #[test]
    fn parses_a_qemu_like_start_info() {
        let mem = start_info(
            1,
            &[
                (0, 0x9fc00, 1),
                (0xf0000, 0x10000, 2),
                (0x100000, 0x1fee0000, 1),
            ],
        );
        let info = parse(&mem, INFO).unwrap();
        assert_eq!(info.loader, Loader::Pvh);
        assert_eq!(info.cmdline(), "log=debug smp=2");
        assert_eq!(info.rsdp, Some(0xf5a40));
        assert_eq!(info.regions().len(), 3);
        assert_eq!(info.regions()[1].kind, RegionKind::Reserved);
        assert_eq!(info.usable_bytes(), 0x9fc00 + 0x1fee0000);
    }

    #[test]
    fn rejects_wrong_magic_version_and_missing_map() {
        let mut mem = start_info(1, &[(0, 0x1000, 1)]);
        mem.put(INFO, &0xdeadbeefu32.to_le_bytes());
        assert_eq!(
            parse(&mem, INFO).unwrap_err(),
            HandoffError::BadMagic { found: 0xdeadbeef }
        );
        let old = start_info(0, &[(0, 0x1000, 1)]);
        assert_eq!(
            parse(&old, INFO).unwrap_err(),
            HandoffError::UnsupportedPvhVersion(0)
        );
        let empty = start_info(1, &[]);
        assert_eq!(parse(&empty, INFO).unwrap_err(), HandoffError::NoMemoryMap);
        assert_eq!(parse(&empty, 0).unwrap_err(), HandoffError::NullInfo);
    }

    #[test]
    fn a_map_pointer_outside_memory_is_reported() {
        let mut mem = start_info(1, &[(0, 0x1000, 1)]);
        mem.put(INFO + OFF_MEMMAP, &0xffff_0000u64.to_le_bytes());
        assert_eq!(
            parse(&mem, INFO).unwrap_err(),
            HandoffError::Unreadable { paddr: 0xffff_0000 }
        );
    }

    // Found by boot/tests/fuzz_handoff.rs: `info + 56` and `map + i * 24` overflowed near the top of the
    // address space.
    #[test]
    fn structures_wrapping_the_address_space_are_unreadable() {
        let top = u64::MAX - 0xFFF;
        let mut mem = FakeMem::new(top, 0x1000);
        mem.put(u64::MAX - 0x1F, &START_INFO_MAGIC.to_le_bytes());
        mem.put(u64::MAX - 0x1B, &1u32.to_le_bytes());
        assert_eq!(
            parse(&mem, u64::MAX - 0x1F).unwrap_err(),
            HandoffError::Unreadable {
                paddr: u64::MAX - 0x1F
            }
        );
        // A start_info that fits, with a memory map whose second entry would wrap.
        let map = u64::MAX - 0x1F;
        let mut si = Vec::new();
        si.extend_from_slice(&START_INFO_MAGIC.to_le_bytes());
        si.extend_from_slice(&1u32.to_le_bytes());
        si.extend_from_slice(&[0; 24]);
        si.extend_from_slice(&0u64.to_le_bytes()); // rsdp
        si.extend_from_slice(&map.to_le_bytes());
        si.extend_from_slice(&2u32.to_le_bytes());
        si.extend_from_slice(&0u32.to_le_bytes());
        mem.put(top, &si);
        let mut e = Vec::new();
        e.extend_from_slice(&0x100000u64.to_le_bytes());
        e.extend_from_slice(&0x100000u64.to_le_bytes());
        e.extend_from_slice(&1u32.to_le_bytes());
        mem.put(map, &e);
        assert_eq!(
            parse(&mem, top).unwrap_err(),
            HandoffError::Unreadable { paddr: map }
        );
    }

    #[test]
    fn the_start_info_is_kept_as_loader_data() {
        let info = parse(&start_info(1, &[(0x100000, 0x100000, 1)]), INFO).unwrap();
        assert_eq!(info.loader_data, (INFO, INFO + 56));
    }

    #[test]
    fn a_command_line_of_the_maximum_length_is_read_whole() {
        // Away from the map (the usual command line sits just below it).
        const LONG: u64 = 0x6800;
        let mut mem = start_info(1, &[(0x100000, 0x100000, 1)]);
        mem.put(INFO + OFF_CMDLINE, &LONG.to_le_bytes());
        let mut text = vec![b'x'; MAX_CMDLINE];
        text.push(0);
        mem.put(LONG, &text);
        let info = parse(&mem, INFO).unwrap();
        assert_eq!(info.cmdline().len(), MAX_CMDLINE);
        assert!(!info.cmdline_truncated);
        mem.put(LONG + MAX_CMDLINE as u64, b"y\0");
        let info = parse(&mem, INFO).unwrap();
        assert_eq!(info.cmdline().len(), MAX_CMDLINE);
        assert!(info.cmdline_truncated);
    }

    #[test]
    fn the_entry_cap_is_inclusive() {
        // 4096 entries (the cap), all but one empty (empty ones are dropped): nothing is truncated.
        let mut mem = FakeMem::new(0x6000, 0x20_0000);
        let si = start_info(1, &[(0x100000, 0x100000, 1)]);
        mem.put(0x6000, &si.bytes);
        mem.put(INFO + OFF_MEMMAP_ENTRIES, &MAX_MEMMAP_ENTRIES.to_le_bytes());
        let info = parse(&mem, INFO).unwrap();
        assert_eq!(info.regions().len(), 1);
        assert!(!info.regions_truncated);
        // One more: the 4097th is not read and the map is marked truncated.
        mem.put(
            INFO + OFF_MEMMAP_ENTRIES,
            &(MAX_MEMMAP_ENTRIES + 1).to_le_bytes(),
        );
        let info = parse(&mem, INFO).unwrap();
        assert_eq!(info.regions().len(), 1);
        assert!(info.regions_truncated);
    }

    #[test]
    fn absurd_entry_counts_are_capped() {
        let mut mem = start_info(1, &[(0x100000, 0x100000, 1)]);
        mem.put(INFO + OFF_MEMMAP_ENTRIES, &u32::MAX.to_le_bytes());
        // The reads past the fake window fail: reported, not looped over four billion times.
        assert!(matches!(
            parse(&mem, INFO).unwrap_err(),
            HandoffError::Unreadable { .. }
        ));
    }
}
