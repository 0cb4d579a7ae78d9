//! Reading physical memory through a small trait, so table parsing never dereferences raw
//! pointers itself and host tests can use a byte buffer as "physical memory".

use acpi::AcpiHandler;

/// Read access to physical memory.
pub trait PhysRead {
    /// Copies `buf.len()` bytes starting at physical address `addr` into `buf`.
    ///
    /// Returns `false` (and leaves `buf` unspecified) if any byte of the range is not readable
    /// (not RAM/ROM, outside the mapped window, address overflow).
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool;
}

/// Reads `N` bytes at `addr`.
pub(crate) fn read_array<const N: usize>(mem: &impl PhysRead, addr: u64) -> Option<[u8; N]> {
    let mut buf = [0u8; N];
    mem.read(addr, &mut buf).then_some(buf)
}

/// Reads `len` bytes at `addr` into a new vector.
pub(crate) fn read_vec(mem: &impl PhysRead, addr: u64, len: usize) -> Option<alloc::vec::Vec<u8>> {
    let mut buf = alloc::vec![0u8; len];
    mem.read(addr, &mut buf).then_some(buf)
}

/// Little-endian field readers over a byte slice whose length the caller has checked.
pub(crate) fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(crate) fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

/// ACPI checksum rule (ACPI 6.5 §5.2.5.3, §5.2.6): all bytes sum to zero modulo 256.
pub(crate) fn checksum_ok(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b)) == 0
}

/// A [`PhysRead`] on top of an [`AcpiHandler`]: each read maps the range, copies it and unmaps it.
#[derive(Clone, Debug)]
pub struct HandlerReader<H: AcpiHandler> {
    handler: H,
}

impl<H: AcpiHandler> HandlerReader<H> {
    /// Wraps `handler`.
    ///
    /// # Safety
    ///
    /// `handler.map_physical_region` must return, for any physical range this reader is asked
    /// for (the RSDP, the RSDT/XSDT and every table address found in it, which firmware may put
    /// anywhere), a mapping that is valid to read for the requested length. A handler backed by
    /// a linear map of all physical memory satisfies this.
    pub unsafe fn new(handler: H) -> Self {
        Self { handler }
    }
}

impl<H: AcpiHandler> PhysRead for HandlerReader<H> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        if buf.is_empty() {
            return true;
        }
        let Ok(start) = usize::try_from(addr) else {
            return false;
        };
        if start.checked_add(buf.len()).is_none() {
            return false;
        }
        // SAFETY: `HandlerReader::new`'s contract: the handler maps any requested physical
        // range readable for `buf.len()` bytes; `u8` has no validity or alignment requirement.
        let mapping = unsafe { self.handler.map_physical_region::<u8>(start, buf.len()) };
        // SAFETY: the mapping covers `buf.len()` readable bytes starting at `virtual_start` (same
        // contract) and lives until the end of this function; nothing writes to it meanwhile.
        let src =
            unsafe { core::slice::from_raw_parts(mapping.virtual_start().as_ptr(), buf.len()) };
        buf.copy_from_slice(src);
        true
    }
}
