//! The one normalized description of the machine that every loader's hand-off turns into.

use core::fmt;

pub const MAX_REGIONS: usize = 128;
pub const MAX_CMDLINE: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loader {
    Multiboot2,
    Pvh,
}

impl Loader {
    pub fn name(self) -> &'static str {
        match self {
            Loader::Multiboot2 => "multiboot2",
            Loader::Pvh => "pvh",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionKind {
    Usable,
    Reserved,
    AcpiReclaimable,
    AcpiNvs,
    Defective,
}

impl RegionKind {
    /// E820 / multiboot2 / PVH all use the same type numbers (ACPI "address range types").
    pub fn from_e820(kind: u32) -> Self {
        match kind {
            1 => RegionKind::Usable,
            3 => RegionKind::AcpiReclaimable,
            4 => RegionKind::AcpiNvs,
            5 => RegionKind::Defective,
            _ => RegionKind::Reserved,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub len: u64,
    pub kind: RegionKind,
}

impl Region {
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.len)
    }
}

/// What the loader told us, copied out of its structures (which may then be reused).
#[derive(Clone, Debug)]
pub struct BootInfo {
    pub loader: Loader,
    /// Bootloader name, where the protocol carries one (multiboot2 tag 2).
    loader_name: [u8; 64],
    loader_name_len: usize,
    regions: [Region; MAX_REGIONS],
    region_count: usize,
    /// More regions than `MAX_REGIONS` were offered; the rest were dropped.
    pub regions_truncated: bool,
    cmdline: [u8; MAX_CMDLINE],
    cmdline_len: usize,
    pub cmdline_truncated: bool,
    /// Physical address of an RSDP the loader gave us (PVH `rsdp_paddr`, or the copy inside multiboot2 tag 14/15).
    pub rsdp: Option<u64>,
    /// Physical range of the loader's own structures that must stay intact while `rsdp` points into them.
    pub loader_data: (u64, u64),
}

impl BootInfo {
    pub(crate) fn new(loader: Loader) -> Self {
        BootInfo {
            loader,
            loader_name: [0; 64],
            loader_name_len: 0,
            regions: [Region {
                start: 0,
                len: 0,
                kind: RegionKind::Reserved,
            }; MAX_REGIONS],
            region_count: 0,
            regions_truncated: false,
            cmdline: [0; MAX_CMDLINE],
            cmdline_len: 0,
            cmdline_truncated: false,
            rsdp: None,
            loader_data: (0, 0),
        }
    }

    pub(crate) fn push_region(&mut self, region: Region) {
        if region.len == 0 {
            return;
        }
        if self.region_count == MAX_REGIONS {
            self.regions_truncated = true;
            return;
        }
        self.regions[self.region_count] = region;
        self.region_count += 1;
    }

    pub(crate) fn set_cmdline(&mut self, bytes: &[u8]) {
        let text = bytes.split(|&b| b == 0).next().unwrap_or(&[]);
        let n = text.len().min(MAX_CMDLINE);
        self.cmdline_truncated = text.len() > MAX_CMDLINE;
        self.cmdline[..n].copy_from_slice(&text[..n]);
        self.cmdline_len = n;
    }

    pub(crate) fn set_loader_name(&mut self, bytes: &[u8]) {
        let text = bytes.split(|&b| b == 0).next().unwrap_or(&[]);
        let n = text.len().min(self.loader_name.len());
        self.loader_name[..n].copy_from_slice(&text[..n]);
        self.loader_name_len = n;
    }

    pub fn regions(&self) -> &[Region] {
        &self.regions[..self.region_count]
    }

    /// The command line; bytes that are not UTF-8 end it early rather than being trusted.
    pub fn cmdline(&self) -> &str {
        utf8_prefix(&self.cmdline[..self.cmdline_len])
    }

    pub fn loader_name(&self) -> &str {
        utf8_prefix(&self.loader_name[..self.loader_name_len])
    }

    /// Sum of the usable regions' lengths, saturating: a hostile map's lengths may add up past `u64::MAX` (a
    /// wrapped sum could even come out as 0 and reject a map that has usable RAM).
    pub fn usable_bytes(&self) -> u64 {
        self.regions()
            .iter()
            .filter(|r| r.kind == RegionKind::Usable)
            .fold(0u64, |sum, r| sum.saturating_add(r.len))
    }

    pub fn highest_address(&self) -> u64 {
        self.regions().iter().map(Region::end).max().unwrap_or(0)
    }
}

fn utf8_prefix(bytes: &[u8]) -> &str {
    match core::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or(""),
    }
}

/// Why a hand-off was rejected. Each one ends the boot with a log line naming it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandoffError {
    UnknownLoader(u32),
    NullInfo,
    Unreadable { paddr: u64 },
    BadMagic { found: u32 },
    BadTotalSize(u32),
    TagOverrun { offset: u32, size: u32 },
    BadTagSize { offset: u32, size: u32 },
    NoEndTag,
    BadMmapEntrySize(u32),
    NoMemoryMap,
    NoUsableMemory,
    UnsupportedPvhVersion(u32),
}

impl fmt::Display for HandoffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            HandoffError::UnknownLoader(k) => write!(f, "unknown loader kind {k}"),
            HandoffError::NullInfo => write!(f, "the loader passed a null info pointer"),
            HandoffError::Unreadable { paddr } => {
                write!(f, "loader data at {paddr:#x} is outside mapped memory")
            }
            HandoffError::BadMagic { found } => write!(f, "bad start_info magic {found:#x}"),
            HandoffError::BadTotalSize(n) => {
                write!(f, "multiboot2 info total_size {n} is implausible")
            }
            HandoffError::TagOverrun { offset, size } => {
                write!(
                    f,
                    "multiboot2 tag at offset {offset} (size {size}) runs past the info structure"
                )
            }
            HandoffError::BadTagSize { offset, size } => {
                write!(
                    f,
                    "multiboot2 tag at offset {offset} has invalid size {size}"
                )
            }
            HandoffError::NoEndTag => write!(f, "multiboot2 info has no end tag"),
            HandoffError::BadMmapEntrySize(n) => {
                write!(f, "memory map entry size {n} is too small")
            }
            HandoffError::NoMemoryMap => write!(f, "the loader passed no memory map"),
            HandoffError::NoUsableMemory => write!(f, "the memory map has no usable RAM"),
            HandoffError::UnsupportedPvhVersion(v) => {
                write!(
                    f,
                    "PVH start_info version {v} has no memory map (version 1 or later is required)"
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e820_types_map_to_their_kinds_and_only_type_1_is_usable() {
        // ACPI 6.5 Table 15.312 (address range types): 1 memory, 2 reserved, 3 ACPI reclaim,
        // 4 ACPI NVS, 5 unusable; anything else (undefined, persistent memory) is reserved.
        let kinds = [
            (1, RegionKind::Usable),
            (2, RegionKind::Reserved),
            (3, RegionKind::AcpiReclaimable),
            (4, RegionKind::AcpiNvs),
            (5, RegionKind::Defective),
            (0, RegionKind::Reserved),
            (6, RegionKind::Reserved),
            (7, RegionKind::Reserved),
            (12, RegionKind::Reserved),
            (u32::MAX, RegionKind::Reserved),
        ];
        for (ty, kind) in kinds {
            assert_eq!(RegionKind::from_e820(ty), kind, "E820 type {ty}");
        }
        // ACPI reclaimable memory still holds the tables the SMP stage reads, and NVS belongs to the
        // firmware: neither may count as RAM to allocate from.
        let mut info = BootInfo::new(Loader::Pvh);
        for (i, ty) in (1..=7).enumerate() {
            info.push_region(Region {
                start: (i as u64) << 20,
                len: 0x1000 << i,
                kind: RegionKind::from_e820(ty),
            });
        }
        assert_eq!(info.usable_bytes(), 0x1000);
    }

    #[test]
    fn loader_names() {
        assert_eq!(Loader::Pvh.name(), "pvh");
        assert_eq!(Loader::Multiboot2.name(), "multiboot2");
    }

    #[test]
    fn a_command_line_of_exactly_the_maximum_is_kept_whole() {
        let mut info = BootInfo::new(Loader::Pvh);
        let full = [b'a'; MAX_CMDLINE];
        info.set_cmdline(&full);
        assert_eq!(info.cmdline().len(), MAX_CMDLINE);
        assert!(!info.cmdline_truncated);
        let mut long = [b'b'; MAX_CMDLINE + 1];
        long[MAX_CMDLINE] = b'c';
        info.set_cmdline(&long);
        assert_eq!(
            info.cmdline(),
            core::str::from_utf8(&long[..MAX_CMDLINE]).unwrap()
        );
        assert!(info.cmdline_truncated);
        // The text ends at the first NUL.
        info.set_cmdline(b"smp=2\0junk");
        assert_eq!(info.cmdline(), "smp=2");
        assert!(!info.cmdline_truncated);
    }
}
