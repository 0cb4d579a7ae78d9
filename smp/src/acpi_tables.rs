//! From the RSDP to the MADT bytes, with bounds checks at every step.
//!
//! Two entry points produce a [`ProcessorList`]:
//! - [`processors_from_phys`]: only our own walk, over any [`PhysRead`] (safe).
//! - [`processors_from_rsdp`]: the same walk through an [`AcpiHandler`], plus the `acpi` crate
//!   (`AcpiTables::from_rsdt` + `find_table::<Madt>()`) locating the MADT as a cross-check.
//!
//! Why our own walk guards the crate (acpi 5.2, read in its source):
//! - `AcpiTables::from_rsdp` maps 36 bytes for the RSDP but checksums `length` bytes (a bogus
//!   length reads past the mapping), and uses the XSDT for any revision other than 0, even a
//!   null XSDT address. We validate the RSDP ourselves and call `from_rsdt` with the root we chose.
//! - An RSDT/XSDT whose length is below the 36-byte header makes the crate compute
//!   `length - 36` (underflow). We check `36 <= length <= MAX_TABLE_LEN` before calling it.
//! - `find_table` maps a table's full `length` as soon as the signature matches, before any
//!   checksum, so a huge length is mapped and read. We check every "APIC" table's length first,
//!   and do not call the crate at all unless every root entry is readable and sane.
//! - Its MADT entry iterator is unsafe on bad entry lengths; entries are parsed in
//!   [`crate::madt`].

use crate::checksum::{check_sdt, ChecksumMismatch, ChecksumPolicy};
use crate::madt::{parse_madt_with, MadtError, ProcessorList, MADT_FIXED_LEN};
use crate::phys::{checksum_ok, le_u32, le_u64, read_array, read_vec, HandlerReader, PhysRead};
use acpi::{madt::Madt, AcpiHandler, AcpiTables};
use alloc::vec::Vec;
use core::fmt;

/// Largest RSDT/XSDT/MADT accepted (a MADT for 8192 x2APIC CPUs with NMI entries is ~230 KiB).
pub const MAX_TABLE_LEN: u32 = 1 << 20;
/// SDT header size (ACPI 6.5 §5.2.6).
pub const SDT_HEADER_LEN: usize = 36;
/// ACPI 1.0 RSDP size, covered by the first checksum (ACPI 6.5 §5.2.5.3).
pub const RSDP_V1_LEN: usize = 20;
/// ACPI 2.0+ RSDP size.
pub const RSDP_V2_LEN: usize = 36;
/// Largest RSDP `length` accepted (the structure is 36 bytes).
const RSDP_MAX_LEN: u32 = 4096;
const RSDP_SIGNATURE: &[u8; 8] = b"RSD PTR ";

/// BDA word holding the EBDA segment (ACPI 6.5 §5.2.5.1).
const EBDA_SEGMENT_PTR: u64 = 0x40E;
/// Bounds for a plausible EBDA base (as ACPICA checks).
const EBDA_MIN: u64 = 0x400;
const EBDA_END: u64 = 0xA_0000;
/// BIOS read-only area searched for the RSDP.
const BIOS_AREA: (u64, u64) = (0xE_0000, 0x10_0000);

/// Which root table the RSDP leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootKind {
    /// 32-bit entries.
    Rsdt,
    /// 64-bit entries.
    Xsdt,
}

impl RootKind {
    fn signature(self) -> &'static [u8; 4] {
        match self {
            RootKind::Rsdt => b"RSDT",
            RootKind::Xsdt => b"XSDT",
        }
    }

    fn entry_size(self) -> usize {
        match self {
            RootKind::Rsdt => 4,
            RootKind::Xsdt => 8,
        }
    }
}

impl fmt::Display for RootKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RootKind::Rsdt => "RSDT",
            RootKind::Xsdt => "XSDT",
        })
    }
}

/// A validated RSDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rsdp {
    /// Physical address of the RSDP.
    pub address: u64,
    /// 0 for ACPI 1.0; 2 or more for ACPI 2.0+.
    pub revision: u8,
    /// RSDT physical address (0 = none).
    pub rsdt: u32,
    /// XSDT physical address (revision >= 2 and non-zero only).
    pub xsdt: Option<u64>,
}

/// Why no processor list could be read from ACPI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    /// Physical memory could not be read.
    Unreadable { addr: u64, len: usize },
    /// No "RSD PTR " signature at the given address.
    RsdpSignature,
    /// The first 20 bytes of the RSDP do not sum to zero.
    RsdpChecksum,
    /// Revision >= 2: the `length` bytes do not sum to zero.
    RsdpExtChecksum,
    /// Revision >= 2: `length` below 36 or implausibly large.
    RsdpLength { length: u32 },
    /// Neither an XSDT nor an RSDT address.
    NoRootTable,
    /// The root table's signature is wrong.
    RootSignature { kind: RootKind },
    /// The root table's length is below its header or above [`MAX_TABLE_LEN`].
    RootLength { kind: RootKind, length: u32 },
    /// The root table's checksum is wrong.
    RootChecksum { kind: RootKind },
    /// No table with signature "APIC" in the root table.
    MadtMissing,
    /// A MADT's length is below its fixed part (truncated) or above [`MAX_TABLE_LEN`].
    MadtLength { addr: u64, length: u32 },
    /// A MADT's checksum is wrong.
    MadtChecksum { addr: u64 },
    /// The MADT is unusable as a whole.
    Madt(MadtError),
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcpiError::Unreadable { addr, len } => {
                write!(f, "cannot read {len} bytes of physical memory at {addr:#x}")
            }
            AcpiError::RsdpSignature => f.write_str("no RSDP signature"),
            AcpiError::RsdpChecksum => f.write_str("RSDP checksum mismatch"),
            AcpiError::RsdpExtChecksum => f.write_str("RSDP extended checksum mismatch"),
            AcpiError::RsdpLength { length } => write!(f, "RSDP length {length} invalid"),
            AcpiError::NoRootTable => f.write_str("RSDP has neither an XSDT nor an RSDT address"),
            AcpiError::RootSignature { kind } => write!(f, "{kind} signature mismatch"),
            AcpiError::RootLength { kind, length } => write!(f, "{kind} length {length} invalid"),
            AcpiError::RootChecksum { kind } => write!(f, "{kind} checksum mismatch"),
            AcpiError::MadtMissing => f.write_str("no MADT (\"APIC\") table"),
            AcpiError::MadtLength { addr, length } => {
                write!(f, "MADT at {addr:#x}: length {length} invalid")
            }
            AcpiError::MadtChecksum { addr } => write!(f, "MADT at {addr:#x}: checksum mismatch"),
            AcpiError::Madt(e) => write!(f, "{e}"),
        }
    }
}

/// Validates the RSDP at `addr` (ACPI 6.5 §5.2.5.3): signature, checksum of the first 20
/// bytes, and for revision >= 2 the length and the extended checksum over `length` bytes.
/// Revision 1 is not defined by ACPI; it is treated like revision 0.
pub fn validate_rsdp(mem: &impl PhysRead, addr: u64) -> Result<Rsdp, AcpiError> {
    let v1: [u8; RSDP_V1_LEN] = read_array(mem, addr).ok_or(AcpiError::Unreadable {
        addr,
        len: RSDP_V1_LEN,
    })?;
    if &v1[0..8] != RSDP_SIGNATURE {
        return Err(AcpiError::RsdpSignature);
    }
    if !checksum_ok(&v1) {
        return Err(AcpiError::RsdpChecksum);
    }
    let revision = v1[15];
    let rsdt = le_u32(&v1, 16);
    let mut xsdt = None;
    if revision >= 2 {
        let v2: [u8; RSDP_V2_LEN] = read_array(mem, addr).ok_or(AcpiError::Unreadable {
            addr,
            len: RSDP_V2_LEN,
        })?;
        let length = le_u32(&v2, 20);
        if !(RSDP_V2_LEN as u32..=RSDP_MAX_LEN).contains(&length) {
            return Err(AcpiError::RsdpLength { length });
        }
        let full = read_vec(mem, addr, length as usize).ok_or(AcpiError::Unreadable {
            addr,
            len: length as usize,
        })?;
        if !checksum_ok(&full) {
            return Err(AcpiError::RsdpExtChecksum);
        }
        xsdt = Some(le_u64(&v2, 24)).filter(|&x| x != 0);
    }
    Ok(Rsdp {
        address: addr,
        revision,
        rsdt,
        xsdt,
    })
}

/// Searches the BIOS areas for a valid RSDP (ACPI 6.5 §5.2.5.1): the first KiB of the EBDA
/// (segment in the BDA word at 0x40E), then 0xE0000..0x100000, on 16-byte boundaries.
/// Candidates with a bad checksum are skipped. Returns the RSDP's physical address.
pub fn find_rsdp(mem: &impl PhysRead) -> Option<u64> {
    let ebda =
        read_array::<2>(mem, EBDA_SEGMENT_PTR).map(|w| u64::from(u16::from_le_bytes(w)) << 4);
    if let Some(base) = ebda.filter(|b| (EBDA_MIN + 1..EBDA_END).contains(b)) {
        if let Some(a) = scan_for_rsdp(mem, base, (base + 1024).min(EBDA_END)) {
            return Some(a);
        }
    }
    scan_for_rsdp(mem, BIOS_AREA.0, BIOS_AREA.1)
}

/// Scans `[start, end)` (start 16-byte aligned) in 1 KiB chunks.
fn scan_for_rsdp(mem: &impl PhysRead, start: u64, end: u64) -> Option<u64> {
    const CHUNK: u64 = 1024;
    let mut chunk = [0u8; CHUNK as usize];
    let mut base = start;
    while base < end {
        let n = (end - base).min(CHUNK) as usize;
        if mem.read(base, &mut chunk[..n]) {
            for off in (0..n).step_by(16) {
                let sig_here = chunk[off..n].get(..8) == Some(&RSDP_SIGNATURE[..]);
                let addr = base + off as u64;
                if sig_here && validate_rsdp(mem, addr).is_ok() {
                    return Some(addr);
                }
            }
        }
        base += CHUNK;
    }
    None
}

/// A validated RSDT or XSDT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootTable {
    pub address: u64,
    pub kind: RootKind,
    /// Physical addresses of the tables it lists (a trailing partial entry is ignored, as
    /// ACPICA does).
    pub entries: Vec<u64>,
    /// Bytes of a trailing partial entry (0 in a well-formed table). The acpi crate turns them
    /// into one more, zero-extended, table address and maps a header there.
    pub trailing_bytes: usize,
    /// Set when the table was used although its checksum is wrong ([`ChecksumPolicy::Warn`]).
    pub checksum_mismatch: Option<ChecksumMismatch>,
}

/// Reads and validates a root table (ACPI 6.5 §5.2.7, §5.2.8).
pub fn read_root_table(
    mem: &impl PhysRead,
    address: u64,
    kind: RootKind,
    checksum: ChecksumPolicy,
) -> Result<RootTable, AcpiError> {
    let header: [u8; SDT_HEADER_LEN] = read_array(mem, address).ok_or(AcpiError::Unreadable {
        addr: address,
        len: SDT_HEADER_LEN,
    })?;
    if &header[0..4] != kind.signature() {
        return Err(AcpiError::RootSignature { kind });
    }
    let length = le_u32(&header, 4);
    if !(SDT_HEADER_LEN as u32..=MAX_TABLE_LEN).contains(&length) {
        return Err(AcpiError::RootLength { kind, length });
    }
    let bytes = read_vec(mem, address, length as usize).ok_or(AcpiError::Unreadable {
        addr: address,
        len: length as usize,
    })?;
    let checksum_mismatch =
        check_sdt(&bytes, address, checksum).map_err(|_| AcpiError::RootChecksum { kind })?;
    let chunks = bytes[SDT_HEADER_LEN..].chunks_exact(kind.entry_size());
    let trailing_bytes = chunks.remainder().len();
    let entries = chunks
        .map(|c| match kind {
            RootKind::Rsdt => u64::from(le_u32(c, 0)),
            RootKind::Xsdt => le_u64(c, 0),
        })
        .collect();
    Ok(RootTable {
        address,
        kind,
        entries,
        trailing_bytes,
        checksum_mismatch,
    })
}

/// The XSDT when the RSDP has one, else the RSDT. An XSDT that fails validation falls back to
/// the RSDT when there is one (logged); the XSDT's error is returned if both fail.
pub fn select_root_table(
    mem: &impl PhysRead,
    rsdp: &Rsdp,
    checksum: ChecksumPolicy,
) -> Result<RootTable, AcpiError> {
    if let Some(x) = rsdp.xsdt {
        match read_root_table(mem, x, RootKind::Xsdt, checksum) {
            Ok(t) => return Ok(t),
            Err(e) if rsdp.rsdt != 0 => {
                return read_root_table(mem, u64::from(rsdp.rsdt), RootKind::Rsdt, checksum)
                    .inspect(|_| log::warn!("acpi: XSDT unusable ({e}); using the RSDT"))
                    .map_err(|_| e);
            }
            Err(e) => return Err(e),
        }
    }
    if rsdp.rsdt == 0 {
        return Err(AcpiError::NoRootTable);
    }
    read_root_table(mem, u64::from(rsdp.rsdt), RootKind::Rsdt, checksum)
}

/// Result of our own search for the MADT.
struct MadtScan {
    /// First "APIC" table with a sane length and a checksum the policy accepts: (address,
    /// bytes, the mismatch when a bad checksum was accepted).
    found: Result<(u64, Vec<u8>, Option<ChecksumMismatch>), AcpiError>,
    /// Every entry header was readable, every "APIC" table had a sane length and there is no
    /// trailing partial entry: the acpi crate's `find_table` can walk this root table without
    /// reading out of bounds.
    crate_safe: bool,
}

fn scan_for_madt(mem: &impl PhysRead, root: &RootTable, checksum: ChecksumPolicy) -> MadtScan {
    let mut found = None;
    let mut first_err = None;
    // The crate makes a table address of a trailing partial entry too (smp/tests/fuzz.rs found
    // it mapping 36 bytes at such an address, which our walk never reads).
    let mut crate_safe = root.trailing_bytes == 0;
    for &addr in &root.entries {
        let Some(h) = read_array::<SDT_HEADER_LEN>(mem, addr) else {
            crate_safe = false;
            continue;
        };
        if &h[0..4] != b"APIC" {
            continue;
        }
        let length = le_u32(&h, 4);
        if !(MADT_FIXED_LEN as u32..=MAX_TABLE_LEN).contains(&length) {
            crate_safe = false;
            first_err.get_or_insert(AcpiError::MadtLength { addr, length });
            continue;
        }
        let Some(bytes) = read_vec(mem, addr, length as usize) else {
            crate_safe = false;
            first_err.get_or_insert(AcpiError::Unreadable {
                addr,
                len: length as usize,
            });
            continue;
        };
        match check_sdt(&bytes, addr, checksum) {
            Ok(mismatch) => {
                found.get_or_insert((addr, bytes, mismatch));
            }
            Err(_) => {
                first_err.get_or_insert(AcpiError::MadtChecksum { addr });
            }
        }
    }
    MadtScan {
        found: found.ok_or(first_err.unwrap_or(AcpiError::MadtMissing)),
        crate_safe,
    }
}

/// Parses the MADT found by the scan and records the tables used despite a bad checksum, each
/// also logged as a WARN (target `acpi`) when it is found.
fn list_from(
    root: &RootTable,
    madt: (Vec<u8>, Option<ChecksumMismatch>),
    bsp_apic_id: u32,
    limit: usize,
    checksum: ChecksumPolicy,
) -> Result<ProcessorList, AcpiError> {
    let (bytes, madt_mismatch) = madt;
    let mut list =
        parse_madt_with(&bytes, bsp_apic_id, limit, checksum).map_err(AcpiError::Madt)?;
    list.checksum_mismatches = root
        .checksum_mismatch
        .into_iter()
        .chain(madt_mismatch)
        .collect();
    for m in &list.checksum_mismatches {
        log::warn!(target: "acpi", "{m}; used anyway (acpi_checksum=strict refuses it)");
    }
    Ok(list)
}

/// Reads the processor list from the ACPI tables through `mem`, without the `acpi` crate.
///
/// `bsp_apic_id` is the running CPU's APIC id (from CPUID, `hypervisor::arch::lapic::cpuid_apic_id`);
/// `limit` is the maximum number of processors, BSP included (see [`crate::madt::parse_madt`]);
/// `checksum` says what a root table or MADT with a bad checksum gets (see [`crate::checksum`]).
pub fn processors_from_phys(
    mem: &impl PhysRead,
    rsdp_addr: u64,
    bsp_apic_id: u32,
    limit: usize,
    checksum: ChecksumPolicy,
) -> Result<ProcessorList, AcpiError> {
    strict_first(checksum, |c| {
        walk_phys(mem, rsdp_addr, bsp_apic_id, limit, c)
    })
}

/// Walks strictly first, so that a table with a good checksum wins wherever there is a choice
/// (XSDT or RSDT, several MADTs); only when that finds no list and `policy` allows it are bad
/// checksums forgiven. So the warn policy never gives another list than strict where strict
/// finds one.
fn strict_first(
    policy: ChecksumPolicy,
    mut walk: impl FnMut(ChecksumPolicy) -> Result<ProcessorList, AcpiError>,
) -> Result<ProcessorList, AcpiError> {
    match walk(ChecksumPolicy::Strict) {
        Err(_) if policy == ChecksumPolicy::Warn => walk(ChecksumPolicy::Warn),
        strict => strict,
    }
}

fn walk_phys(
    mem: &impl PhysRead,
    rsdp_addr: u64,
    bsp_apic_id: u32,
    limit: usize,
    checksum: ChecksumPolicy,
) -> Result<ProcessorList, AcpiError> {
    let rsdp = validate_rsdp(mem, rsdp_addr)?;
    let root = select_root_table(mem, &rsdp, checksum)?;
    let (_, bytes, mismatch) = scan_for_madt(mem, &root, checksum).found?;
    list_from(&root, (bytes, mismatch), bsp_apic_id, limit, checksum)
}

/// Reads the processor list from the ACPI tables, mapping memory with `handler`.
///
/// Same result as [`processors_from_phys`]. In addition, when our walk found the root table
/// sane, the `acpi` crate locates the MADT too and a disagreement is logged (our bounds-checked
/// result is used; the crate also refuses tables whose OEM ids are not UTF-8).
///
/// # Safety
///
/// `handler.map_physical_region` must return a readable mapping for any physical range it is
/// asked for: the RSDP, the root table and every address that table lists (see
/// [`HandlerReader::new`]).
pub unsafe fn processors_from_rsdp<H: AcpiHandler>(
    handler: H,
    rsdp_addr: u64,
    bsp_apic_id: u32,
    limit: usize,
    checksum: ChecksumPolicy,
) -> Result<ProcessorList, AcpiError> {
    // SAFETY: forwarded from this function's contract.
    strict_first(checksum, |c| unsafe {
        walk_handler(handler.clone(), rsdp_addr, bsp_apic_id, limit, c)
    })
}

/// One walk of [`processors_from_rsdp`] under one policy.
///
/// # Safety
///
/// As [`processors_from_rsdp`].
unsafe fn walk_handler<H: AcpiHandler>(
    handler: H,
    rsdp_addr: u64,
    bsp_apic_id: u32,
    limit: usize,
    checksum: ChecksumPolicy,
) -> Result<ProcessorList, AcpiError> {
    // SAFETY: forwarded from this function's contract.
    let mem = unsafe { HandlerReader::new(handler.clone()) };
    let rsdp = validate_rsdp(&mem, rsdp_addr)?;
    let root = select_root_table(&mem, &rsdp, checksum)?;
    let scan = scan_for_madt(&mem, &root, checksum);
    let (addr, bytes, mismatch) = scan.found?;
    if scan.crate_safe {
        // SAFETY: the root table and every table it lists were checked above (see
        // `crate_locate_madt`), and the handler contract is this function's.
        match unsafe { crate_locate_madt(handler, &root) } {
            Ok(a) if a == addr => {}
            Ok(a) => log::warn!(
                "acpi: acpi crate found a MADT at {a:#x}, own walk at {addr:#x}; using {addr:#x}"
            ),
            Err(e) => log::warn!("acpi: acpi crate did not find the MADT ({e:?}); using {addr:#x}"),
        }
    } else {
        log::warn!("acpi: malformed {} entries; acpi crate not used", root.kind);
    }
    list_from(&root, (bytes, mismatch), bsp_apic_id, limit, checksum)
}

/// Locates the MADT with the `acpi` crate; returns its physical address.
///
/// # Safety
///
/// `root` must come from [`select_root_table`] over the same memory and [`scan_for_madt`] must
/// have reported it crate-safe (root length >= 36, no trailing partial entry, every entry header
/// readable, every "APIC" table 44..=MAX_TABLE_LEN bytes); the handler must satisfy
/// [`processors_from_rsdp`]'s contract.
unsafe fn crate_locate_madt<H: AcpiHandler>(
    handler: H,
    root: &RootTable,
) -> Result<u64, acpi::AcpiError> {
    let revision = match root.kind {
        RootKind::Rsdt => 0,
        RootKind::Xsdt => 2,
    };
    // SAFETY: the root table was validated (signature, length, checksum) and the handler maps
    // what it is asked for (this function's contract).
    let tables = unsafe { AcpiTables::from_rsdt(handler, revision, root.address as usize) }?;
    let madt = tables.find_table::<Madt>()?;
    Ok(madt.physical_start() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::madt::{BspNote, RejectReason};
    use crate::testutil::*;

    fn madt_small() -> Vec<u8> {
        MadtBuilder::new(5)
            .xapic(0, 0, 1)
            .x2apic(256, 1, 1)
            .xapic(2, 2, 0)
            .xapic(3, 3, 1)
            .build()
    }

    fn ids(l: &ProcessorList) -> Vec<u32> {
        l.cpus.iter().map(|p| p.apic_id).collect()
    }

    /// Through the handler (and the acpi crate) only.
    fn via_handler_with(
        mem: &TestMem,
        bsp: u32,
        limit: usize,
        policy: ChecksumPolicy,
    ) -> Result<ProcessorList, AcpiError> {
        // SAFETY: TestMem's handler maps any range (open bus outside its buffer).
        unsafe { processors_from_rsdp(mem.clone(), RSDP_ADDR, bsp, limit, policy) }
    }

    fn via_handler(mem: &TestMem, bsp: u32, limit: usize) -> Result<ProcessorList, AcpiError> {
        via_handler_with(mem, bsp, limit, ChecksumPolicy::Strict)
    }

    /// Both entry points under `policy`, which must agree, and nothing (ours or the crate's)
    /// may have mapped memory outside the tables.
    fn both_with(
        mem: &TestMem,
        bsp: u32,
        limit: usize,
        policy: ChecksumPolicy,
    ) -> Result<ProcessorList, AcpiError> {
        let a = processors_from_phys(mem, RSDP_ADDR, bsp, limit, policy);
        let b = via_handler_with(mem, bsp, limit, policy);
        assert_eq!(a, b);
        assert_eq!(mem.open_bus_maps(), 0, "mapping outside test memory");
        a
    }

    /// Both entry points, strict about checksums.
    fn both(mem: &TestMem, bsp: u32, limit: usize) -> Result<ProcessorList, AcpiError> {
        both_with(mem, bsp, limit, ChecksumPolicy::Strict)
    }

    #[test]
    fn rsdp_v0_rsdt_madt() {
        let mem = MemBuilder::v0(&madt_small()).build();
        let l = both(&mem, 0, 64).unwrap();
        assert_eq!(ids(&l), [0, 256, 3]);
        assert_eq!(l.rejected[0].reason, RejectReason::Disabled);
        let rsdp = validate_rsdp(&mem, RSDP_ADDR).unwrap();
        let root = select_root_table(&mem, &rsdp, ChecksumPolicy::Strict).unwrap();
        assert_eq!(root.kind, RootKind::Rsdt);
        assert!(scan_for_madt(&mem, &root, ChecksumPolicy::Strict).crate_safe);
        // SAFETY: the root table comes from `select_root_table` and was found crate-safe just
        // above; TestMem's handler maps any range.
        let found = unsafe { crate_locate_madt(mem.clone(), &root) };
        assert_eq!(found.unwrap(), MADT_ADDR);
    }

    #[test]
    fn rsdp_v2_xsdt_madt() {
        let mem = MemBuilder::v2(&madt_small()).build();
        let l = both(&mem, 3, 64).unwrap();
        assert_eq!(ids(&l), [3, 0, 256]);
        let rsdp = validate_rsdp(&mem, RSDP_ADDR).unwrap();
        assert_eq!(rsdp.revision, 2);
        assert_eq!(rsdp.xsdt, Some(XSDT_ADDR));
        let root = select_root_table(&mem, &rsdp, ChecksumPolicy::Strict).unwrap();
        assert_eq!(root.kind, RootKind::Xsdt);
        assert_eq!(root.entries, [FACP_ADDR, MADT_ADDR]);
        assert!(scan_for_madt(&mem, &root, ChecksumPolicy::Strict).crate_safe);
        // SAFETY: the root table comes from `select_root_table` and was found crate-safe just
        // above; TestMem's handler maps any range.
        let found = unsafe { crate_locate_madt(mem.clone(), &root) };
        assert_eq!(found.unwrap(), MADT_ADDR);
    }

    #[test]
    fn bsp_missing_and_limit_through_tables() {
        let mem = MemBuilder::v0(&madt_small()).build();
        let l = both(&mem, 9, 2).unwrap();
        assert_eq!(ids(&l), [9, 0]);
        assert_eq!(l.bsp_note, Some(BspNote::NotInMadt));
    }

    #[test]
    fn bad_rsdp_checksums() {
        let mut r = rsdp_v0(RSDT_ADDR as u32);
        r[10] ^= 0x55;
        let mem = MemBuilder::v0(&madt_small()).put(RSDP_ADDR, &r).build();
        assert_eq!(both(&mem, 0, 8), Err(AcpiError::RsdpChecksum));

        let mut r = rsdp_v2(RSDT_ADDR as u32, XSDT_ADDR);
        r[33] = 0x77; // reserved byte: only the extended checksum covers it
        let mem = MemBuilder::v2(&madt_small()).put(RSDP_ADDR, &r).build();
        assert_eq!(both(&mem, 0, 8), Err(AcpiError::RsdpExtChecksum));

        let mut r = rsdp_v2(RSDT_ADDR as u32, XSDT_ADDR);
        r[20..24].copy_from_slice(&20u32.to_le_bytes());
        fix_checksum(&mut r, 32);
        let mem = MemBuilder::v2(&madt_small()).put(RSDP_ADDR, &r).build();
        assert_eq!(both(&mem, 0, 8), Err(AcpiError::RsdpLength { length: 20 }));

        let mem = MemBuilder::new().build();
        assert_eq!(both(&mem, 0, 8), Err(AcpiError::RsdpSignature));
        assert_eq!(
            processors_from_phys(&mem, MEM_SIZE as u64 - 4, 0, 8, ChecksumPolicy::Strict),
            Err(AcpiError::Unreadable {
                addr: MEM_SIZE as u64 - 4,
                len: 20
            })
        );
    }

    #[test]
    fn bad_root_tables() {
        let mut t = rsdt(&[FACP_ADDR as u32, MADT_ADDR as u32]);
        t[40] ^= 1;
        let mem = MemBuilder::v0(&madt_small()).put(RSDT_ADDR, &t).build();
        assert_eq!(
            both(&mem, 0, 8),
            Err(AcpiError::RootChecksum {
                kind: RootKind::Rsdt
            })
        );

        // Length below the header: the acpi crate would underflow `length - 36`.
        let mut t = rsdt(&[]);
        t[4..8].copy_from_slice(&20u32.to_le_bytes());
        fix_checksum(&mut t[..20], 9);
        let mem = MemBuilder::v0(&madt_small()).put(RSDT_ADDR, &t).build();
        assert_eq!(
            both(&mem, 0, 8),
            Err(AcpiError::RootLength {
                kind: RootKind::Rsdt,
                length: 20
            })
        );

        // Length running past the end of memory: unreadable, or all-ones through a handler.
        let mut t = rsdt(&[MADT_ADDR as u32]);
        t[4..8].copy_from_slice(&(MAX_TABLE_LEN).to_le_bytes());
        let mem = MemBuilder::v0(&madt_small()).put(RSDT_ADDR, &t).build();
        assert_eq!(
            processors_from_phys(&mem, RSDP_ADDR, 0, 8, ChecksumPolicy::Strict),
            Err(AcpiError::Unreadable {
                addr: RSDT_ADDR,
                len: MAX_TABLE_LEN as usize
            })
        );
        // Through a handler the bytes past the end read as 0xFF (the test handler's open bus);
        // the outcome depends on that garbage. It must just not panic.
        let _ = via_handler(&mem, 0, 8);

        let mem = MemBuilder::v0(&madt_small())
            .put(RSDT_ADDR, b"XXXX")
            .build();
        assert_eq!(
            both(&mem, 0, 8),
            Err(AcpiError::RootSignature {
                kind: RootKind::Rsdt
            })
        );

        let mem = MemBuilder::v0(&madt_small())
            .put(RSDP_ADDR, &rsdp_v0(0))
            .build();
        assert_eq!(both(&mem, 0, 8), Err(AcpiError::NoRootTable));
    }

    #[test]
    fn broken_xsdt_falls_back_to_rsdt() {
        let mem = MemBuilder::v2(&madt_small())
            .put(RSDT_ADDR, &rsdt(&[MADT_ADDR as u32]))
            .put(XSDT_ADDR, b"JUNK")
            .build();
        assert_eq!(ids(&both(&mem, 0, 8).unwrap()), [0, 256, 3]);
        // Without an RSDT the XSDT's error is reported.
        let mem = MemBuilder::v2(&madt_small())
            .put(RSDP_ADDR, &rsdp_v2(0, XSDT_ADDR))
            .put(XSDT_ADDR, b"JUNK")
            .build();
        assert_eq!(
            both(&mem, 0, 8),
            Err(AcpiError::RootSignature {
                kind: RootKind::Xsdt
            })
        );
        // A null XSDT address uses the RSDT.
        let mem = MemBuilder::v2(&madt_small())
            .put(RSDP_ADDR, &rsdp_v2(RSDT_ADDR as u32, 0))
            .put(RSDT_ADDR, &rsdt(&[MADT_ADDR as u32]))
            .build();
        assert_eq!(ids(&both(&mem, 0, 8).unwrap()), [0, 256, 3]);
    }

    #[test]
    fn bad_madt_checksum() {
        let mut m = madt_small();
        m[50] ^= 0x10;
        let mem = MemBuilder::v0(&m).build();
        assert_eq!(
            both(&mem, 0, 8),
            Err(AcpiError::MadtChecksum { addr: MADT_ADDR })
        );
    }

    #[test]
    fn first_good_madt_wins() {
        let mut bad = madt_small();
        bad[50] ^= 0x10;
        let good = MadtBuilder::new(5).xapic(0, 7, 1).build();
        let mem = MemBuilder::v0(&bad)
            .put(RSDT_ADDR, &rsdt(&[MADT_ADDR as u32, 0x1_3000]))
            .put(0x1_3000, &good)
            .build();
        assert_eq!(ids(&both(&mem, 7, 8).unwrap()), [7]);
    }

    #[test]
    fn bad_checksums_are_warned_about_and_the_tables_used_by_default() {
        // A MADT whose checksum byte is off by 0x10 (stale after a patch, as on real boards).
        let good = madt_small();
        let mut m = good.clone();
        m[9] = m[9].wrapping_add(0x10);
        let mem = MemBuilder::v0(&m).build();
        let l = both_with(&mem, 0, 8, ChecksumPolicy::Warn).unwrap();
        assert_eq!(ids(&l), [0, 256, 3]);
        assert_eq!(
            l.checksum_mismatches,
            [ChecksumMismatch {
                signature: *b"APIC",
                addr: MADT_ADDR,
                stored: good[9].wrapping_add(0x10),
                computed: good[9],
            }]
        );
        assert_eq!(
            both_with(&mem, 0, 8, ChecksumPolicy::Strict),
            Err(AcpiError::MadtChecksum { addr: MADT_ADDR })
        );
        // A good table records nothing.
        let mem = MemBuilder::v0(&good).build();
        let l = both_with(&mem, 0, 8, ChecksumPolicy::Warn).unwrap();
        assert!(l.checksum_mismatches.is_empty());

        // A root table with a bad checksum, and the MADT behind it too: both recorded, root first.
        let mut t = rsdt(&[FACP_ADDR as u32, MADT_ADDR as u32]);
        let stored = t[9];
        t[9] = stored.wrapping_sub(1);
        let mem = MemBuilder::v0(&m).put(RSDT_ADDR, &t).build();
        let l = both_with(&mem, 0, 8, ChecksumPolicy::Warn).unwrap();
        assert_eq!(ids(&l), [0, 256, 3]);
        let sigs: Vec<[u8; 4]> = l.checksum_mismatches.iter().map(|m| m.signature).collect();
        assert_eq!(sigs, [*b"RSDT", *b"APIC"]);
        assert_eq!(l.checksum_mismatches[0].addr, RSDT_ADDR);
        assert_eq!(l.checksum_mismatches[0].computed, stored);
        assert_eq!(
            both_with(&mem, 0, 8, ChecksumPolicy::Strict),
            Err(AcpiError::RootChecksum {
                kind: RootKind::Rsdt
            })
        );
    }

    #[test]
    fn a_bad_checksum_does_not_excuse_a_broken_structure() {
        // Under the warn policy a MADT must still be structurally valid: a bad length is refused.
        let mut m = MadtBuilder::new(5).with_length(40).build();
        m[9] ^= 0x44;
        let mem = MemBuilder::v0(&m).build();
        assert_eq!(
            both_with(&mem, 0, 8, ChecksumPolicy::Warn),
            Err(AcpiError::MadtLength {
                addr: MADT_ADDR,
                length: 40
            })
        );
        // And the RSDP's checksum stays strict (it is how a scan recognises the RSDP).
        let mut r = rsdp_v0(RSDT_ADDR as u32);
        r[10] ^= 0x55;
        let mem = MemBuilder::v0(&madt_small()).put(RSDP_ADDR, &r).build();
        assert_eq!(
            both_with(&mem, 0, 8, ChecksumPolicy::Warn),
            Err(AcpiError::RsdpChecksum)
        );
    }

    #[test]
    fn a_good_checksum_is_preferred_wherever_there_is_a_choice() {
        // Two MADTs, the first with a bad checksum: the good second one is used, as strict does.
        let mut bad = madt_small();
        bad[50] ^= 0x10;
        let second = MadtBuilder::new(5).xapic(0, 7, 1).build();
        let mem = MemBuilder::v0(&bad)
            .put(RSDT_ADDR, &rsdt(&[MADT_ADDR as u32, 0x1_3000]))
            .put(0x1_3000, &second)
            .build();
        let l = both_with(&mem, 7, 8, ChecksumPolicy::Warn).unwrap();
        assert_eq!(ids(&l), [7]);
        assert!(l.checksum_mismatches.is_empty());
        assert_eq!(Ok(l), both(&mem, 7, 8));

        // An XSDT with a bad checksum and a good RSDT: the RSDT is used, nothing forgiven.
        let mut x = xsdt(&[FACP_ADDR]);
        x[9] = x[9].wrapping_add(1);
        let mem = MemBuilder::v2(&madt_small())
            .put(RSDT_ADDR, &rsdt(&[MADT_ADDR as u32]))
            .put(XSDT_ADDR, &x)
            .build();
        let l = both_with(&mem, 0, 8, ChecksumPolicy::Warn).unwrap();
        assert_eq!(ids(&l), [0, 256, 3]);
        assert!(l.checksum_mismatches.is_empty());
        // Without the RSDT the XSDT is forgiven; it lists no MADT, which is the error then.
        let mem = MemBuilder::v2(&madt_small())
            .put(RSDP_ADDR, &rsdp_v2(0, XSDT_ADDR))
            .put(XSDT_ADDR, &x)
            .build();
        assert_eq!(
            both_with(&mem, 0, 8, ChecksumPolicy::Warn),
            Err(AcpiError::MadtMissing)
        );
        assert_eq!(
            both(&mem, 0, 8),
            Err(AcpiError::RootChecksum {
                kind: RootKind::Xsdt
            })
        );
    }

    #[test]
    fn truncated_madt() {
        // Header says 40 bytes (checksum valid over them): below the 44-byte fixed part.
        let m = MadtBuilder::new(5).with_length(40).build();
        let mem = MemBuilder::v0(&m).build();
        assert_eq!(
            both(&mem, 0, 8),
            Err(AcpiError::MadtLength {
                addr: MADT_ADDR,
                length: 40
            })
        );
        // Huge length: rejected before anything (ours or the crate's) maps it.
        let m = MadtBuilder::new(5)
            .xapic(0, 0, 1)
            .with_length(u32::MAX)
            .build();
        let mem = MemBuilder::v0(&m).build();
        assert_eq!(
            both(&mem, 0, 8),
            Err(AcpiError::MadtLength {
                addr: MADT_ADDR,
                length: u32::MAX
            })
        );
        // Length past the end of memory.
        let m = MadtBuilder::new(5)
            .xapic(0, 0, 1)
            .with_length(0x2000)
            .build();
        let mem = MemBuilder::new()
            .put(RSDP_ADDR, &rsdp_v0(RSDT_ADDR as u32))
            .put(RSDT_ADDR, &rsdt(&[MEM_SIZE as u32 - 0x1000]))
            .put(MEM_SIZE as u64 - 0x1000, &m[..52])
            .build();
        assert_eq!(
            processors_from_phys(&mem, RSDP_ADDR, 0, 8, ChecksumPolicy::Strict),
            Err(AcpiError::Unreadable {
                addr: MEM_SIZE as u64 - 0x1000,
                len: 0x2000
            })
        );
        let _ = via_handler(&mem, 0, 8);
    }

    #[test]
    fn malformed_entries_through_tables() {
        let m = MadtBuilder::new(5)
            .xapic(0, 0, 1)
            .raw(&[0, 0])
            .xapic(1, 1, 1)
            .build();
        let mem = MemBuilder::v2(&m).build();
        let l = both(&mem, 0, 8).unwrap();
        assert_eq!(ids(&l), [0]);
        assert_eq!(
            l.rejected[0].reason,
            RejectReason::ZeroLengthEntry { length: 0 }
        );

        let m = MadtBuilder::new(5)
            .xapic(0, 0, 1)
            .raw(&[9, 200, 0, 0])
            .build();
        let mem = MemBuilder::v2(&m).build();
        let l = both(&mem, 0, 8).unwrap();
        assert_eq!(
            l.rejected[0].reason,
            RejectReason::PastTableEnd {
                length: 200,
                remaining: 4
            }
        );
    }

    #[test]
    fn missing_madt_and_dangling_root_entries() {
        let mem = MemBuilder::v0(&madt_small())
            .put(RSDT_ADDR, &rsdt(&[FACP_ADDR as u32]))
            .build();
        assert_eq!(both(&mem, 0, 8), Err(AcpiError::MadtMissing));
        // An entry pointing outside memory is skipped.
        let mem = MemBuilder::v0(&madt_small())
            .put(
                RSDT_ADDR,
                &rsdt(&[0xFFFF_F000, FACP_ADDR as u32, MADT_ADDR as u32]),
            )
            .build();
        let a = processors_from_phys(&mem, RSDP_ADDR, 0, 8, ChecksumPolicy::Strict);
        assert_eq!(ids(a.as_ref().unwrap()), [0, 256, 3]);
        assert_eq!(via_handler(&mem, 0, 8), a);
        let rsdp = validate_rsdp(&mem, RSDP_ADDR).unwrap();
        let root = select_root_table(&mem, &rsdp, ChecksumPolicy::Strict).unwrap();
        assert!(!scan_for_madt(&mem, &root, ChecksumPolicy::Strict).crate_safe);
    }

    // Found by smp/tests/fuzz.rs: with the MADT refused by the acpi crate (non-UTF-8 OEM id), the
    // crate went on to a trailing partial RSDT entry, made an address of its 3 bytes and mapped a
    // header there, outside the tables.
    #[test]
    fn trailing_partial_root_entry_keeps_the_crate_out() {
        let mut m = madt_small();
        m[10] = 0xFF;
        fix_checksum(&mut m, 9);
        let mut body = Vec::new();
        body.extend_from_slice(&(FACP_ADDR as u32).to_le_bytes());
        body.extend_from_slice(&(MADT_ADDR as u32).to_le_bytes());
        body.extend_from_slice(&[0x00, 0x00, 0xF0]);
        let mem = MemBuilder::v0(&m)
            .put(RSDT_ADDR, &sdt(b"RSDT", 1, &body))
            .build();
        let rsdp = validate_rsdp(&mem, RSDP_ADDR).unwrap();
        let root = select_root_table(&mem, &rsdp, ChecksumPolicy::Strict).unwrap();
        assert_eq!(root.entries, [FACP_ADDR, MADT_ADDR]);
        assert_eq!(root.trailing_bytes, 3);
        assert!(!scan_for_madt(&mem, &root, ChecksumPolicy::Strict).crate_safe);
        // `both` checks that nothing mapped outside the test memory.
        assert_eq!(ids(&both(&mem, 0, 8).unwrap()), [0, 256, 3]);
    }

    #[test]
    fn non_utf8_oem_id_still_parsed() {
        // The acpi crate refuses non-UTF-8 OEM ids; our walk does not care.
        let mut m = madt_small();
        m[10] = 0xFF;
        fix_checksum(&mut m, 9);
        let mem = MemBuilder::v0(&m).build();
        assert_eq!(ids(&both(&mem, 0, 8).unwrap()), [0, 256, 3]);
    }

    #[test]
    fn find_rsdp_in_bios_area() {
        let mem = MemBuilder::v0(&madt_small()).build();
        assert_eq!(find_rsdp(&mem), Some(RSDP_ADDR));
        let mem = MemBuilder::v2(&madt_small()).build();
        assert_eq!(find_rsdp(&mem), Some(RSDP_ADDR));
        // Near the end of the area.
        let mem = MemBuilder::new()
            .put(0xF_FFE0, &rsdp_v0(RSDT_ADDR as u32))
            .build();
        assert_eq!(find_rsdp(&mem), Some(0xF_FFE0));
    }

    #[test]
    fn find_rsdp_prefers_ebda_and_checks_alignment_and_checksums() {
        let ebda = 0x9_FC00u64;
        let seg = ((ebda >> 4) as u16).to_le_bytes();
        let mem = MemBuilder::v0(&madt_small())
            .put(0x40E, &seg)
            .put(ebda + 0x20, &rsdp_v0(RSDT_ADDR as u32))
            .build();
        assert_eq!(find_rsdp(&mem), Some(ebda + 0x20));

        // Misaligned copy (not on a 16-byte boundary) is not found; bad checksum is skipped.
        let mut bad = rsdp_v0(RSDT_ADDR as u32);
        bad[9] ^= 1;
        let mut bad_ext = rsdp_v2(RSDT_ADDR as u32, XSDT_ADDR);
        bad_ext[35] ^= 1;
        let mem = MemBuilder::new()
            .put(0x40E, &seg)
            .put(ebda + 0x08, &rsdp_v0(RSDT_ADDR as u32))
            .put(0xE_0000, &bad)
            .put(0xE_0040, &bad_ext)
            .put(0xF_0000, &rsdp_v0(RSDT_ADDR as u32))
            .build();
        assert_eq!(find_rsdp(&mem), Some(0xF_0000));

        // Only the first KiB of the EBDA is searched.
        let mem = MemBuilder::new()
            .put(0x40E, &seg)
            .put(ebda + 0x400, &rsdp_v0(1))
            .build();
        assert_eq!(find_rsdp(&mem), None);
        // Nothing at all.
        assert_eq!(find_rsdp(&MemBuilder::new().build()), None);
    }

    #[test]
    fn the_ebda_scan_covers_exactly_its_first_kib() {
        // An EBDA low enough that its first KiB ends well below 0xA0000.
        let ebda = 0x9_0000u64;
        let seg = ((ebda >> 4) as u16).to_le_bytes();
        // The last 16-byte slot of the first KiB is searched ...
        let mem = MemBuilder::new()
            .put(0x40E, &seg)
            .put(ebda + 0x3F0, &rsdp_v0(RSDT_ADDR as u32))
            .build();
        assert_eq!(find_rsdp(&mem), Some(ebda + 0x3F0));
        // ... the first slot after it is not.
        let mem = MemBuilder::new()
            .put(0x40E, &seg)
            .put(ebda + 0x400, &rsdp_v0(RSDT_ADDR as u32))
            .build();
        assert_eq!(find_rsdp(&mem), None);
        // An EBDA whose first KiB would run past 0xA0000 is cut there: nothing at 0xA0000 is read.
        let ebda = 0x9_FE00u64;
        let seg = ((ebda >> 4) as u16).to_le_bytes();
        let mem = MemBuilder::new()
            .put(0x40E, &seg)
            .put(0xA_0000, &rsdp_v0(RSDT_ADDR as u32))
            .build();
        assert_eq!(find_rsdp(&mem), None);
    }

    #[test]
    fn an_ebda_segment_at_the_bda_itself_is_not_searched() {
        // ACPICA searches the EBDA only when its base is above 0x400 (the BIOS data area).
        // (The candidate sits past the segment word at 0x40E, which it must not overwrite.)
        let seg = ((0x400u64 >> 4) as u16).to_le_bytes();
        let mem = MemBuilder::new()
            .put(0x40E, &seg)
            .put(0x420, &rsdp_v0(RSDT_ADDR as u32))
            .build();
        assert_eq!(find_rsdp(&mem), None);
        let seg = ((0x410u64 >> 4) as u16).to_le_bytes();
        let mem = MemBuilder::new()
            .put(0x40E, &seg)
            .put(0x420, &rsdp_v0(RSDT_ADDR as u32))
            .build();
        assert_eq!(find_rsdp(&mem), Some(0x420));
    }

    #[test]
    fn a_broken_xsdt_without_an_rsdt_never_reads_an_rsdt_at_address_0() {
        // A valid RSDT at physical address 0 must not be used when the RSDP names none (rsdt = 0).
        let mem = MemBuilder::v2(&madt_small())
            .put(RSDP_ADDR, &rsdp_v2(0, XSDT_ADDR))
            .put(XSDT_ADDR, b"JUNK")
            .put(0, &rsdt(&[MADT_ADDR as u32]))
            .build();
        assert_eq!(
            processors_from_phys(&mem, RSDP_ADDR, 0, 8, ChecksumPolicy::Strict),
            Err(AcpiError::RootSignature {
                kind: RootKind::Xsdt
            })
        );
    }

    #[test]
    fn error_display() {
        assert_eq!(
            AcpiError::RootChecksum {
                kind: RootKind::Xsdt
            }
            .to_string(),
            "XSDT checksum mismatch"
        );
        assert_eq!(
            AcpiError::MadtLength {
                addr: 0x1000,
                length: 3
            }
            .to_string(),
            "MADT at 0x1000: length 3 invalid"
        );
        assert_eq!(
            AcpiError::Madt(MadtError::BadChecksum).to_string(),
            "MADT checksum mismatch"
        );
    }
}
