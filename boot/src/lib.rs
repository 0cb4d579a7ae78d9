//! From the loader's hand-off to the first Rust function.
//!
//! `entry.s` holds the 32-bit entry points (PVH and multiboot2), builds the early identity map, switches to long
//! mode and calls `boot_rust_entry(loader_kind, info_paddr)` (defined by the image). This crate's Rust side turns
//! either loader's structures into one [`BootInfo`]; the parsers read physical memory only through [`PhysMem`], so
//! they are tested on the host against crafted hand-offs.
#![cfg_attr(not(test), no_std)]

#[cfg(target_os = "none")]
core::arch::global_asm!(include_str!("entry.s"), options(att_syntax));

mod info;
pub mod multiboot2;
pub mod pvh;

pub use info::{BootInfo, HandoffError, Loader, Region, RegionKind, MAX_CMDLINE, MAX_REGIONS};

/// Read access to physical memory, so the hand-off parsers never dereference a loader pointer directly.
pub trait PhysMem {
    /// Fills `buf` from physical address `paddr`; false when the range is not readable.
    fn read(&self, paddr: u64, buf: &mut [u8]) -> bool;

    fn read_u32(&self, paddr: u64) -> Option<u32> {
        let mut b = [0u8; 4];
        self.read(paddr, &mut b).then(|| u32::from_le_bytes(b))
    }

    fn read_u64(&self, paddr: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        self.read(paddr, &mut b).then(|| u64::from_le_bytes(b))
    }
}

/// Physical memory as the entry code left it: identity-mapped from 0 to 4 GiB.
pub struct IdentityMapped;

/// The early page tables map exactly this much.
pub const IDENTITY_MAPPED_END: u64 = 4 << 30;

impl PhysMem for IdentityMapped {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> bool {
        let Some(end) = paddr.checked_add(buf.len() as u64) else {
            return false;
        };
        if paddr == 0 || end > IDENTITY_MAPPED_END {
            return false;
        }
        // SAFETY: the range lies inside the identity map built by entry.s (checked above), which maps every
        // address below 4 GiB, and `buf` is our own buffer of exactly that length. The bytes are copied out, so
        // no reference into loader memory escapes and its contents are only ever treated as untrusted data.
        unsafe { core::ptr::copy_nonoverlapping(paddr as *const u8, buf.as_mut_ptr(), buf.len()) };
        true
    }
}

/// Parses the loader's hand-off. `loader_kind` is the value entry.s passes: 1 = multiboot2, 2 = PVH.
pub fn parse_handoff(
    mem: &impl PhysMem,
    loader_kind: u32,
    info_paddr: u64,
) -> Result<BootInfo, HandoffError> {
    match loader_kind {
        1 => multiboot2::parse(mem, info_paddr),
        2 => pvh::parse(mem, info_paddr),
        other => Err(HandoffError::UnknownLoader(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Only empty reads are tried on the host (a non-empty one would dereference the address): they reach the
    // copy exactly when the range passes the bounds checks.
    #[test]
    fn the_identity_map_covers_exactly_the_low_4_gib_without_address_0() {
        assert_eq!(IDENTITY_MAPPED_END, 0x1_0000_0000);
        assert!(IdentityMapped.read(0x1000, &mut []));
        assert!(IdentityMapped.read(IDENTITY_MAPPED_END, &mut []));
        assert!(!IdentityMapped.read(0, &mut []));
        assert!(!IdentityMapped.read(IDENTITY_MAPPED_END + 1, &mut []));
        assert!(!IdentityMapped.read(IDENTITY_MAPPED_END, &mut [0u8; 1]));
        assert!(!IdentityMapped.read(IDENTITY_MAPPED_END - 1, &mut [0u8; 2]));
        assert!(!IdentityMapped.read(0, &mut [0u8; 8]));
        assert!(!IdentityMapped.read(u64::MAX, &mut [0u8; 2]));
    }

    #[test]
    fn unknown_loader_kinds_are_refused() {
        let mem = testmem::FakeMem::new(0x1000, 0x100);
        assert_eq!(
            parse_handoff(&mem, 3, 0x1000).unwrap_err(),
            HandoffError::UnknownLoader(3)
        );
        assert_eq!(
            parse_handoff(&mem, 0, 0x1000).unwrap_err(),
            HandoffError::UnknownLoader(0)
        );
    }
}

#[cfg(test)]
pub(crate) mod testmem {
    use super::PhysMem;

    /// A window of fake physical memory starting at `base`.
    pub struct FakeMem {
        pub base: u64,
        pub bytes: Vec<u8>,
    }

    impl FakeMem {
        pub fn new(base: u64, size: usize) -> Self {
            FakeMem {
                base,
                bytes: vec![0; size],
            }
        }
        pub fn put(&mut self, paddr: u64, data: &[u8]) {
            let off = (paddr - self.base) as usize;
            self.bytes[off..off + data.len()].copy_from_slice(data);
        }
    }

    impl PhysMem for FakeMem {
        fn read(&self, paddr: u64, buf: &mut [u8]) -> bool {
            let Some(off) = paddr.checked_sub(self.base) else {
                return false;
            };
            let off = off as usize;
            match self.bytes.get(off..off + buf.len()) {
                Some(src) => {
                    buf.copy_from_slice(src);
                    true
                }
                None => false,
            }
        }
    }
}
