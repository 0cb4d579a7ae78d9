//! Host-test helpers: crafted ACPI tables and a byte buffer acting as physical memory.

use crate::phys::PhysRead;
use acpi::{AcpiHandler, PhysicalMapping};
use core::cell::RefCell;
use core::ptr::NonNull;
use std::boxed::Box;
use std::rc::Rc;
use std::vec::Vec;

/// Sets byte `at` so that `bytes` sums to zero.
pub fn fix_checksum(bytes: &mut [u8], at: usize) {
    bytes[at] = 0;
    let sum = bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b));
    bytes[at] = 0u8.wrapping_sub(sum);
}

/// A system description table: 36-byte header + `body`, checksum fixed.
pub fn sdt(sig: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(sig);
    t.extend_from_slice(&((36 + body.len()) as u32).to_le_bytes());
    t.push(revision);
    t.push(0); // checksum
    t.extend_from_slice(b"SMPTST");
    t.extend_from_slice(b"SMPTESTT");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(b"RUST");
    t.extend_from_slice(&1u32.to_le_bytes());
    assert_eq!(t.len(), 36);
    t.extend_from_slice(body);
    fix_checksum(&mut t, 9);
    t
}

pub fn rsdt(entries: &[u32]) -> Vec<u8> {
    let body: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
    sdt(b"RSDT", 1, &body)
}

pub fn xsdt(entries: &[u64]) -> Vec<u8> {
    let body: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
    sdt(b"XSDT", 1, &body)
}

/// ACPI 1.0 RSDP (20 bytes).
pub fn rsdp_v0(rsdt: u32) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(b"RSD PTR ");
    r.push(0);
    r.extend_from_slice(b"SMPTST");
    r.push(0); // revision
    r.extend_from_slice(&rsdt.to_le_bytes());
    fix_checksum(&mut r, 8);
    r
}

/// ACPI 2.0+ RSDP (36 bytes), both checksums fixed.
pub fn rsdp_v2(rsdt: u32, xsdt: u64) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(b"RSD PTR ");
    r.push(0);
    r.extend_from_slice(b"SMPTST");
    r.push(2);
    r.extend_from_slice(&rsdt.to_le_bytes());
    r.extend_from_slice(&36u32.to_le_bytes());
    r.extend_from_slice(&xsdt.to_le_bytes());
    r.push(0); // extended checksum
    r.extend_from_slice(&[0; 3]);
    fix_checksum(&mut r[..20], 8);
    fix_checksum(&mut r, 32);
    r
}

/// Builds a MADT entry by entry.
pub struct MadtBuilder {
    revision: u8,
    lapic: u32,
    entries: Vec<u8>,
    length: Option<u32>,
}

impl MadtBuilder {
    pub fn new(revision: u8) -> Self {
        Self {
            revision,
            lapic: 0xFEE0_0000,
            entries: Vec::new(),
            length: None,
        }
    }

    /// Processor Local APIC (type 0).
    pub fn xapic(mut self, uid: u8, apic_id: u8, flags: u32) -> Self {
        self.entries.extend_from_slice(&[0, 8, uid, apic_id]);
        self.entries.extend_from_slice(&flags.to_le_bytes());
        self
    }

    /// Processor Local x2APIC (type 9).
    pub fn x2apic(mut self, apic_id: u32, flags: u32, uid: u32) -> Self {
        self.entries.extend_from_slice(&[9, 16, 0, 0]);
        self.entries.extend_from_slice(&apic_id.to_le_bytes());
        self.entries.extend_from_slice(&flags.to_le_bytes());
        self.entries.extend_from_slice(&uid.to_le_bytes());
        self
    }

    /// I/O APIC (type 1).
    pub fn ioapic(mut self, id: u8, addr: u32) -> Self {
        self.entries.extend_from_slice(&[1, 12, id, 0]);
        self.entries.extend_from_slice(&addr.to_le_bytes());
        self.entries.extend_from_slice(&0u32.to_le_bytes());
        self
    }

    /// Local APIC Address Override (type 5).
    pub fn lapic_override(mut self, addr: u64) -> Self {
        self.entries.extend_from_slice(&[5, 12, 0, 0]);
        self.entries.extend_from_slice(&addr.to_le_bytes());
        self
    }

    pub fn raw(mut self, bytes: &[u8]) -> Self {
        self.entries.extend_from_slice(bytes);
        self
    }

    /// Forces the header's length field (the checksum then covers that many bytes).
    pub fn with_length(mut self, length: u32) -> Self {
        self.length = Some(length);
        self
    }

    pub fn build(self) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&self.lapic.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes()); // PCAT_COMPAT
        body.extend_from_slice(&self.entries);
        let mut t = sdt(b"APIC", self.revision, &body);
        if let Some(len) = self.length {
            t[4..8].copy_from_slice(&len.to_le_bytes());
            let n = (len as usize).min(t.len());
            fix_checksum(&mut t[..n], 9);
        }
        t
    }
}

/// "Physical memory" for tests: a shared byte buffer starting at physical address 0.
///
/// As a [`PhysRead`] it refuses ranges outside the buffer. As an [`AcpiHandler`] (which cannot
/// fail) it behaves like unpopulated physical address space: bytes beyond it read as 0xFF, and
/// every such mapping is counted in [`TestMem::open_bus_maps`].
#[derive(Clone)]
pub struct TestMem {
    bytes: Rc<Vec<u8>>,
    open_bus: Rc<RefCell<Vec<Box<[u8]>>>>,
}

impl TestMem {
    /// How many handler mappings fell outside the buffer.
    pub fn open_bus_maps(&self) -> usize {
        self.open_bus.borrow().len()
    }
}

pub struct MemBuilder {
    bytes: Vec<u8>,
}

/// Size of test memory: the first MiB, enough for the BIOS RSDP search areas.
pub const MEM_SIZE: usize = 0x10_0000;
pub const RSDP_ADDR: u64 = 0xE_0010;
pub const RSDT_ADDR: u64 = 0x1_0000;
pub const XSDT_ADDR: u64 = 0x1_0800;
pub const FACP_ADDR: u64 = 0x1_2000;
pub const MADT_ADDR: u64 = 0x1_1000;

impl MemBuilder {
    pub fn new() -> Self {
        Self {
            bytes: vec![0; MEM_SIZE],
        }
    }

    pub fn put(mut self, addr: u64, data: &[u8]) -> Self {
        let a = addr as usize;
        self.bytes[a..a + data.len()].copy_from_slice(data);
        self
    }

    pub fn build(self) -> TestMem {
        TestMem {
            bytes: Rc::new(self.bytes),
            open_bus: Rc::default(),
        }
    }

    /// RSDP v0 at [`RSDP_ADDR`] -> RSDT -> {FACP, MADT}.
    pub fn v0(madt: &[u8]) -> Self {
        Self::new()
            .put(RSDP_ADDR, &rsdp_v0(RSDT_ADDR as u32))
            .put(RSDT_ADDR, &rsdt(&[FACP_ADDR as u32, MADT_ADDR as u32]))
            .put(FACP_ADDR, &sdt(b"FACP", 6, &[0; 80]))
            .put(MADT_ADDR, madt)
    }

    /// RSDP v2 at [`RSDP_ADDR`] -> XSDT -> {FACP, MADT}; the RSDT lists only the FACP, so a
    /// result that has the MADT proves the XSDT was used.
    pub fn v2(madt: &[u8]) -> Self {
        Self::new()
            .put(RSDP_ADDR, &rsdp_v2(RSDT_ADDR as u32, XSDT_ADDR))
            .put(RSDT_ADDR, &rsdt(&[FACP_ADDR as u32]))
            .put(XSDT_ADDR, &xsdt(&[FACP_ADDR, MADT_ADDR]))
            .put(FACP_ADDR, &sdt(b"FACP", 6, &[0; 80]))
            .put(MADT_ADDR, madt)
    }
}

impl PhysRead for TestMem {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        let Some(end) = addr.checked_add(buf.len() as u64) else {
            return false;
        };
        if end > self.bytes.len() as u64 {
            return false;
        }
        buf.copy_from_slice(&self.bytes[addr as usize..end as usize]);
        true
    }
}

impl AcpiHandler for TestMem {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        let in_range = physical_address
            .checked_add(size)
            .is_some_and(|e| e <= self.bytes.len());
        let ptr = if in_range {
            // SAFETY: in bounds (checked above).
            unsafe { self.bytes.as_ptr().add(physical_address) }
        } else {
            // Beyond the buffer reads as 0xFF (open bus); the copy lives as long as the memory.
            let mut buf = vec![0xFFu8; size.max(1)].into_boxed_slice();
            if let Some(avail) = self.bytes.get(physical_address..) {
                let n = avail.len().min(size);
                buf[..n].copy_from_slice(&avail[..n]);
            }
            let p = buf.as_ptr();
            self.open_bus.borrow_mut().push(buf);
            p
        } as *mut T;
        // The acpi crate only reads through mappings; the types it maps are `repr(C, packed)`
        // (alignment 1) or `u8`.
        // SAFETY: `ptr` is non-null and valid for `size` bytes while the buffers live (the
        // mapping holds a clone of both `Rc`s; boxed slices never move).
        unsafe {
            PhysicalMapping::new(
                physical_address,
                NonNull::new(ptr).unwrap(),
                size,
                size,
                self.clone(),
            )
        }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}
