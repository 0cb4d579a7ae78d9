//! IA32_VMX_BASIC (MSR 0x480) and the VMXON/VMCS regions it describes.
//!
//! SDM vol. 3D A.1 "Basic VMX information": bits 30:0 VMCS revision identifier (bit 31 is always 0); bits 44:32
//! the number of bytes to allocate for the VMXON region and each VMCS region (0 < n <= 4096); bit 48 set means the
//! physical addresses of these regions (and of VMCS-referenced structures) are limited to 32 bits; bit 49 dual-
//! monitor treatment of SMIs; bits 53:50 the memory type the processor uses to access the VMCS (6 = write-back);
//! bit 54 INS/OUTS instruction information in VM exits; bit 55 the IA32_VMX_TRUE_*_CTLS MSRs exist.
//!
//! Region requirements, vol. 3C 25.11.5 "VMXON region" and 25.2 "Format of the VMCS region": 4-KiB aligned,
//! within the physical-address width, the first 4 bytes hold the revision identifier with bit 31 clear (bit 31
//! set would mean a shadow VMCS, which VMXON rejects).

use core::ptr;
use core::ptr::NonNull;

use super::errors::{RegionError, RegionKind};
use super::VmxError;

/// Bits of IA32_VMX_BASIC that are reserved (read as 0) in SDM vol. 3D A.1: bit 31, bits 47:45 and bits 63:57.
/// (Bit 56, "VM entry may deliver a hardware exception with or without an error code", is defined in the
/// edition this code cites; older editions listed 63:56 as reserved.)
pub const RESERVED_BITS: u64 = (1 << 31) | (0b111 << 45) | (0x7F << 57);
/// Bit 48: VMXON, VMCS and other VMX-referenced addresses limited to 32 bits.
pub const ADDRESSES_32BIT: u64 = 1 << 48;

/// Memory type 6, write-back: the only one this hypervisor supports for VMCS accesses.
pub const MEMORY_TYPE_WRITE_BACK: u8 = 6;

/// Decoded IA32_VMX_BASIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmxBasic {
    pub raw: u64,
    /// Bits 30:0.
    pub revision_id: u32,
    /// Bits 44:32: bytes to allocate for the VMXON region and each VMCS region.
    pub region_size: u16,
    /// Bit 48: region addresses limited to 32 bits.
    pub addresses_32bit: bool,
    /// Bit 49: dual-monitor treatment of SMIs and SMM supported.
    pub dual_monitor: bool,
    /// Bits 53:50.
    pub memory_type: u8,
    /// Bit 54: VM exits due to INS/OUTS report instruction information.
    pub ins_outs_info: bool,
    /// Bit 55: the IA32_VMX_TRUE_*_CTLS MSRs exist.
    pub true_controls: bool,
}

impl VmxBasic {
    pub const fn decode(raw: u64) -> Self {
        Self {
            raw,
            revision_id: (raw & 0x7FFF_FFFF) as u32,
            region_size: ((raw >> 32) & 0x1FFF) as u16,
            addresses_32bit: raw & (1 << 48) != 0,
            dual_monitor: raw & (1 << 49) != 0,
            memory_type: ((raw >> 50) & 0xF) as u8,
            ins_outs_info: raw & (1 << 54) != 0,
            true_controls: raw & (1 << 55) != 0,
        }
    }

    /// Rejects what this hypervisor cannot work with, in this order: reserved bits set (A.1 says they read as
    /// 0), bit 48 (A.1: "always 0 for processors that support Intel 64 architecture"; Linux's
    /// setup_vmcs_config and Xen's vmx_init_vmcs_config refuse it on 64-bit builds too, and this hypervisor is
    /// 64-bit only), a memory type other than write-back, a region size outside 1..=4096.
    pub const fn check(&self) -> Result<(), VmxError> {
        if self.raw & RESERVED_BITS != 0 {
            return Err(VmxError::BasicReservedBits {
                value: self.raw,
                bits: self.raw & RESERVED_BITS,
            });
        }
        if self.addresses_32bit {
            return Err(VmxError::Basic32BitAddresses { value: self.raw });
        }
        if self.memory_type != MEMORY_TYPE_WRITE_BACK {
            return Err(VmxError::MemoryTypeUnsupported(self.memory_type));
        }
        if self.region_size == 0 || self.region_size > 4096 {
            return Err(VmxError::RegionSizeInvalid(self.region_size));
        }
        Ok(())
    }

    /// The width, in bits, that a region's physical address must fit in.
    pub const fn address_width(&self, maxphyaddr: u8) -> u8 {
        if self.addresses_32bit && maxphyaddr > 32 {
            32
        } else {
            maxphyaddr
        }
    }
}

/// Checks a region's physical address and size against IA32_VMX_BASIC and MAXPHYADDR.
pub fn validate_region(
    phys: u64,
    size: usize,
    basic: &VmxBasic,
    maxphyaddr: u8,
) -> Result<(), RegionError> {
    if phys & 0xFFF != 0 {
        return Err(RegionError::Unaligned { phys });
    }
    if maxphyaddr < 64 && phys >> maxphyaddr != 0 {
        return Err(RegionError::BeyondPhysicalAddressWidth { phys, maxphyaddr });
    }
    if basic.addresses_32bit && phys >> 32 != 0 {
        return Err(RegionError::AboveFourGiB { phys });
    }
    if size < usize::from(basic.region_size) {
        return Err(RegionError::TooSmall {
            size,
            required: basic.region_size,
        });
    }
    Ok(())
}

/// Memory handed to VMX: a VMXON region or a VMCS region.
#[derive(Debug)]
pub struct Region {
    phys: u64,
    virt: NonNull<u8>,
    size: usize,
}

impl Region {
    /// # Safety
    /// `virt` must map the `size` bytes at physical address `phys` (the mapping used by this core), write-back
    /// cacheable, and those bytes must be reserved for this core's VMX use for the rest of the run: nothing else
    /// may read or write them, and they must never be freed or remapped. (While a region is in use the processor
    /// owns its contents; SDM vol. 3C 25.11.1 forbids software from touching them.)
    ///
    /// # Panics
    /// If `size` is less than 4 (the revision identifier alone takes 4 bytes).
    pub const unsafe fn new(phys: u64, virt: NonNull<u8>, size: usize) -> Self {
        assert!(
            size >= 4,
            "a VMX region holds at least the 4-byte revision identifier"
        );
        Self { phys, virt, size }
    }

    pub const fn phys(&self) -> u64 {
        self.phys
    }

    pub const fn virt(&self) -> NonNull<u8> {
        self.virt
    }

    /// The region in a frame the frame allocator handed out for good (4 KiB, identity-mapped).
    pub fn from_frame(frame: crate::memory::OwnedFrame) -> Self {
        let phys = frame.phys();
        // SAFETY: an `OwnedFrame` is a zeroed 4 KiB frame, identity-mapped (so `phys` is also its virtual
        // address, 4 KiB-aligned, write-back), never freed, and owned by whoever holds the value; it is
        // consumed here, so the region is its only user for the rest of the run.
        unsafe {
            Region::new(
                phys,
                NonNull::new(phys as *mut u8).expect("frames are never at 0"),
                4096,
            )
        }
    }

    /// [`validate_region`] plus a check of the virtual mapping's alignment.
    pub fn validate(&self, basic: &VmxBasic, maxphyaddr: u8) -> Result<(), RegionError> {
        validate_region(self.phys, self.size, basic, maxphyaddr)?;
        let virt = self.virt.as_ptr() as u64;
        if virt & 0xFFF != 0 {
            return Err(RegionError::VirtualUnaligned { virt });
        }
        Ok(())
    }

    /// Zeroes the first `basic.region_size` bytes and writes the revision identifier, bit 31 clear, into the
    /// first 4 bytes. Only call it while the processor is not using the region (before VMXON for the VMXON
    /// region; before VMPTRLD, or after VMCLEAR, for a VMCS).
    pub fn prepare(&self, basic: &VmxBasic) {
        let len = usize::from(basic.region_size).min(self.size);
        // SAFETY: `Region::new`'s contract makes the `size` bytes at `virt` writable and reserved for us; `len`
        // does not exceed `size`. Volatile, because the processor reads these bytes behind the compiler's back.
        unsafe {
            for offset in 0..len {
                ptr::write_volatile(self.virt.as_ptr().add(offset), 0);
            }
        }
        self.write_revision(basic.revision_id & 0x7FFF_FFFF);
    }

    /// The first 4 bytes of the region (little-endian), read byte by byte so no alignment is assumed.
    pub fn revision(&self) -> u32 {
        let mut bytes = [0u8; 4];
        for (offset, byte) in bytes.iter_mut().enumerate() {
            // SAFETY: `Region::new` guarantees at least 4 readable bytes at `virt`, reserved for this core.
            *byte = unsafe { ptr::read_volatile(self.virt.as_ptr().add(offset)) };
        }
        u32::from_le_bytes(bytes)
    }

    /// Overwrites the first 4 bytes (the self-test uses this to plant a wrong revision identifier).
    pub fn write_revision(&self, value: u32) {
        for (offset, byte) in value.to_le_bytes().into_iter().enumerate() {
            // SAFETY: `Region::new` guarantees at least 4 writable bytes at `virt`, reserved for this core.
            unsafe { ptr::write_volatile(self.virt.as_ptr().add(offset), byte) };
        }
    }
}

/// One core's VMXON region and VMCS region.
#[derive(Debug)]
pub struct RegionPair {
    pub vmxon: Region,
    pub vmcs: Region,
}

impl RegionPair {
    /// Validates both regions and that they are distinct pages.
    pub fn validate(&self, basic: &VmxBasic, maxphyaddr: u8) -> Result<(), VmxError> {
        self.vmxon
            .validate(basic, maxphyaddr)
            .map_err(|error| VmxError::RegionInvalid {
                region: RegionKind::Vmxon,
                error,
            })?;
        self.vmcs
            .validate(basic, maxphyaddr)
            .map_err(|error| VmxError::RegionInvalid {
                region: RegionKind::Vmcs,
                error,
            })?;
        if self.vmxon.phys() & !0xFFF == self.vmcs.phys() & !0xFFF {
            return Err(VmxError::RegionInvalid {
                region: RegionKind::Vmcs,
                error: RegionError::Overlapping {
                    phys: self.vmcs.phys(),
                },
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmx::fake::Page;

    const BOCHS_HASWELL: u64 = 0x00d8_1000_0000_002b;

    #[test]
    fn bochs_haswell_value_decodes() {
        let basic = VmxBasic::decode(BOCHS_HASWELL);
        assert_eq!(basic.revision_id, 0x2b);
        assert_eq!(basic.region_size, 0x1000);
        assert!(!basic.addresses_32bit);
        assert!(!basic.dual_monitor);
        assert_eq!(basic.memory_type, 6);
        assert!(basic.ins_outs_info);
        assert!(basic.true_controls);
        assert_eq!(basic.check(), Ok(()));
    }

    #[test]
    fn icelake_style_value_decodes() {
        // Revision 4 (Bochs icelake_u/tigerlake), 4096 bytes, write-back, INS/OUTS and true controls.
        let raw = (1 << 55) | (1 << 54) | (6 << 50) | (0x1000 << 32) | 0x4;
        let basic = VmxBasic::decode(raw);
        assert_eq!(basic.revision_id, 0x4);
        assert_eq!(basic.region_size, 4096);
        assert_eq!(basic.check(), Ok(()));
    }

    #[test]
    fn bit_31_and_the_32_bit_limit_decode() {
        let basic =
            VmxBasic::decode((1 << 48) | (1 << 49) | (6 << 50) | (0x400 << 32) | 0x8000_0001);
        assert_eq!(
            basic.revision_id, 1,
            "bit 31 is not part of the revision identifier"
        );
        assert_eq!(basic.region_size, 0x400);
        assert!(basic.addresses_32bit && basic.dual_monitor);
        assert!(!basic.ins_outs_info && !basic.true_controls);
        assert_eq!(basic.address_width(40), 32);
        assert_eq!(basic.address_width(31), 31);
        assert_eq!(VmxBasic::decode(BOCHS_HASWELL).address_width(40), 40);
    }

    #[test]
    fn every_reserved_bit_is_refused_by_name() {
        for bit in [31u32, 45, 46, 47, 57, 58, 59, 60, 61, 62, 63] {
            let raw = BOCHS_HASWELL | (1 << bit);
            assert_eq!(
                VmxBasic::decode(raw).check(),
                Err(VmxError::BasicReservedBits {
                    value: raw,
                    bits: 1 << bit
                }),
                "bit {bit}"
            );
        }
        // Bit 56 is defined (SDM 086 A.1) and bits 49, 54, 55 are features: all accepted.
        for bit in [49u32, 54, 55, 56] {
            assert_eq!(
                VmxBasic::decode(BOCHS_HASWELL | (1 << bit)).check(),
                Ok(()),
                "bit {bit}"
            );
        }
        assert_eq!(
            format!(
                "{}",
                VmxBasic::decode(BOCHS_HASWELL | (1 << 31)).check().unwrap_err()
            ),
            "IA32_VMX_BASIC=0xd810008000002b has reserved bits set (0x80000000): bit 31, bits 47:45 and \
             bits 63:57 must be 0"
        );
    }

    #[test]
    fn the_32_bit_address_limit_is_refused_on_a_64_bit_processor() {
        let raw = BOCHS_HASWELL | ADDRESSES_32BIT;
        assert_eq!(
            VmxBasic::decode(raw).check(),
            Err(VmxError::Basic32BitAddresses { value: raw })
        );
        assert_eq!(
            format!("{}", VmxBasic::decode(raw).check().unwrap_err()),
            "IA32_VMX_BASIC=0xd910000000002b sets bit 48 (VMX addresses limited to 32 bits), which a 64-bit \
             processor never reports"
        );
    }

    #[test]
    fn only_write_back_is_accepted() {
        for memory_type in 0..16u64 {
            let basic = VmxBasic::decode((memory_type << 50) | (0x1000 << 32) | 1);
            let expected = if memory_type == 6 {
                Ok(())
            } else {
                Err(VmxError::MemoryTypeUnsupported(memory_type as u8))
            };
            assert_eq!(basic.check(), expected);
        }
        assert_eq!(
            format!("{}", VmxError::MemoryTypeUnsupported(0)),
            "IA32_VMX_BASIC reports VMCS memory type 0 (uncacheable); only 6 (write-back) is supported"
        );
    }

    #[test]
    fn region_size_must_be_1_to_4096() {
        assert_eq!(
            VmxBasic::decode(6 << 50).check(),
            Err(VmxError::RegionSizeInvalid(0))
        );
        assert_eq!(
            VmxBasic::decode((6 << 50) | (0x1001 << 32)).check(),
            Err(VmxError::RegionSizeInvalid(0x1001))
        );
        assert_eq!(VmxBasic::decode((6 << 50) | (1 << 32)).check(), Ok(()));
    }

    #[test]
    fn region_validation_edge_cases() {
        let basic = VmxBasic::decode(BOCHS_HASWELL);
        let ok = |phys, size, width| validate_region(phys, size, &basic, width);
        assert_eq!(ok(0x1000, 4096, 40), Ok(()));
        assert_eq!(ok(0, 4096, 40), Ok(()));
        assert_eq!(
            ok(0x1008, 4096, 40),
            Err(RegionError::Unaligned { phys: 0x1008 })
        );
        assert_eq!(
            ok(0x1800, 4096, 40),
            Err(RegionError::Unaligned { phys: 0x1800 })
        );
        // A width of 64 bits limits nothing (and must not shift by 64).
        assert_eq!(ok(1 << 63, 4096, 64), Ok(()));
        // Last page below MAXPHYADDR is fine; the first page at 2^MAXPHYADDR is not.
        assert_eq!(ok((1 << 40) - 0x1000, 4096, 40), Ok(()));
        assert_eq!(
            ok(1 << 40, 4096, 40),
            Err(RegionError::BeyondPhysicalAddressWidth {
                phys: 1 << 40,
                maxphyaddr: 40
            })
        );
        assert_eq!(
            ok(1 << 63, 4096, 52),
            Err(RegionError::BeyondPhysicalAddressWidth {
                phys: 1 << 63,
                maxphyaddr: 52
            })
        );
        assert_eq!(
            ok(0x1000, 4095, 40),
            Err(RegionError::TooSmall {
                size: 4095,
                required: 4096
            })
        );
        assert_eq!(ok(0x1000, 8192, 40), Ok(()));

        let limited = VmxBasic::decode(BOCHS_HASWELL | (1 << 48));
        assert_eq!(validate_region(0xFFFF_F000, 4096, &limited, 40), Ok(()));
        assert_eq!(
            validate_region(0x1_0000_0000, 4096, &limited, 40),
            Err(RegionError::AboveFourGiB {
                phys: 0x1_0000_0000
            })
        );
        assert_eq!(validate_region(0x1_0000_0000, 4096, &basic, 40), Ok(()));
    }

    #[test]
    fn prepare_zeroes_and_writes_the_revision_with_bit_31_clear() {
        let mut page = Page::new();
        page.0.fill(0xAA);
        // SAFETY: the page is owned by this test and outlives the region.
        let region =
            unsafe { Region::new(0x5000, NonNull::new(page.0.as_mut_ptr()).unwrap(), 4096) };
        let basic = VmxBasic::decode(BOCHS_HASWELL);
        region.prepare(&basic);
        assert_eq!(region.revision(), 0x2b);
        assert_eq!(&page.0[..4], &[0x2b, 0, 0, 0]);
        assert!(page.0[4..].iter().all(|&b| b == 0));
    }

    #[test]
    fn pairs_must_be_valid_and_distinct() {
        let basic = VmxBasic::decode(BOCHS_HASWELL);
        let mut a = Page::new();
        let mut b = Page::new();
        let region = |phys, page: &mut Page| {
            // SAFETY: pages owned by this test, outliving the regions.
            unsafe { Region::new(phys, NonNull::new(page.0.as_mut_ptr()).unwrap(), 4096) }
        };
        let pair = RegionPair {
            vmxon: region(0x1000, &mut a),
            vmcs: region(0x2000, &mut b),
        };
        assert_eq!(pair.validate(&basic, 40), Ok(()));
        let pair = RegionPair {
            vmxon: region(0x1000, &mut a),
            vmcs: region(0x1000, &mut b),
        };
        assert_eq!(
            pair.validate(&basic, 40),
            Err(VmxError::RegionInvalid {
                region: RegionKind::Vmcs,
                error: RegionError::Overlapping { phys: 0x1000 }
            })
        );
        let pair = RegionPair {
            vmxon: region(0x1001, &mut a),
            vmcs: region(0x2000, &mut b),
        };
        assert_eq!(
            format!("{}", pair.validate(&basic, 40).unwrap_err()),
            "VMXON region unusable: physical address 0x1001 is not 4 KiB aligned"
        );
        // SAFETY: as above; the pointer is deliberately misaligned and never dereferenced.
        let misaligned =
            unsafe { Region::new(0x3000, NonNull::new(b.0.as_mut_ptr().add(8)).unwrap(), 4096) };
        assert!(matches!(
            misaligned.validate(&basic, 40),
            Err(RegionError::VirtualUnaligned { .. })
        ));
    }
}
