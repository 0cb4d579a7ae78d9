//! MADT (signature "APIC", ACPI 6.5 §5.2.12) to processor list.
//!
//! The entry list is parsed here from the raw table bytes with explicit bounds checks, not with
//! `acpi::madt::MadtEntryIter`: in acpi 5.2 that iterator loops forever on a zero-length entry,
//! underflows its remaining length on an entry that runs past the table end, and reads a whole
//! entry structure even when the entry's length field is shorter.
//!
//! Rules applied (each rejection carries a [`RejectReason`]):
//! - Local APIC flags (ACPI 6.5 Table 5.23): `Enabled` (bit 0) set -> usable; clear with
//!   `Online Capable` (bit 1, defined since ACPI 6.3 = MADT revision 5) set -> hot-pluggable
//!   (listed, not started); both clear -> unusable, rejected. In MADT revisions below 5 bit 1 is
//!   reserved and ignored.
//! - APIC id 0xFF (xAPIC entry) or 0xFFFF_FFFF (x2APIC entry) is the broadcast id: rejected.
//! - A repeated APIC id (in either entry kind) among enabled or online-capable entries is
//!   rejected as a duplicate; the first entry is kept. An entry with neither flag never claims
//!   an id: firmware fills tables with such disabled placeholders (dozens of them, often all
//!   with id 0), so one that repeats an enabled entry's id is reported `disabled`, not
//!   `duplicate`. A disabled entry with the BSP's id stands for the BSP only when no enabled
//!   entry has that id.
//! - The BSP is found by its own APIC id (from CPUID), not by entry order, and goes first
//!   (logical index 0); APs follow in MADT order. A MADT that does not list the BSP still
//!   yields a list with the BSP (see [`BspNote`]).
//! - `limit` caps the list length (BSP included); usable APs are kept before hot-pluggable ones,
//!   the excess is rejected with [`RejectReason::OverLimit`].

use crate::checksum::{ChecksumMismatch, ChecksumPolicy};
use crate::phys::{checksum_ok, le_u32, le_u64};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Size of the fixed part of the MADT: SDT header (36) + Local Interrupt Controller Address (4)
/// + Flags (4).
pub const MADT_FIXED_LEN: usize = 44;

/// MADT interrupt controller structure types used here (ACPI 6.5 Table 5.21).
const TYPE_LOCAL_APIC: u8 = 0;
const TYPE_LAPIC_ADDRESS_OVERRIDE: u8 = 5;
const TYPE_LOCAL_X2APIC: u8 = 9;

/// Minimum lengths of those structures (ACPI 6.5 Tables 5.22, 5.31, 5.39).
const LEN_LOCAL_APIC: usize = 8;
const LEN_LAPIC_ADDRESS_OVERRIDE: usize = 12;
const LEN_LOCAL_X2APIC: usize = 16;

const FLAG_ENABLED: u32 = 1 << 0;
const FLAG_ONLINE_CAPABLE: u32 = 1 << 1;
/// First MADT revision that defines the Online Capable flag (ACPI 6.3).
const MADT_REV_ONLINE_CAPABLE: u8 = 5;

/// `uid` of a BSP that the MADT does not list.
pub const UNKNOWN_UID: u32 = u32::MAX;

/// Which MADT structure described the processor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// Processor Local APIC structure (type 0): 8-bit APIC id and ACPI processor id.
    XApic,
    /// Processor Local x2APIC structure (type 9): 32-bit x2APIC id and ACPI processor UID.
    X2Apic,
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EntryKind::XApic => "xapic",
            EntryKind::X2Apic => "x2apic",
        })
    }
}

/// What the MADT flags say about a processor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessorState {
    /// `Enabled` set: start it.
    Usable,
    /// `Enabled` clear, `Online Capable` set: may appear at run time; not started.
    HotPluggable,
    /// Both clear: unusable; such entries only appear in [`ProcessorList::rejected`].
    Disabled,
}

impl fmt::Display for ProcessorState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProcessorState::Usable => "usable",
            ProcessorState::HotPluggable => "hot-pluggable",
            ProcessorState::Disabled => "disabled",
        })
    }
}

/// One processor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Processor {
    /// Local APIC id (xAPIC: 8 bits; x2APIC: 32 bits).
    pub apic_id: u32,
    /// ACPI processor UID ([`UNKNOWN_UID`] for a BSP missing from the MADT).
    pub uid: u32,
    /// MADT structure type.
    pub kind: EntryKind,
    /// State from the flags (always [`ProcessorState::Usable`] for the BSP in `cpus`).
    pub state: ProcessorState,
    /// Byte offset of the entry inside the MADT; `None` for a BSP the MADT does not list.
    pub madt_offset: Option<usize>,
}

/// Why a MADT entry is not in [`ProcessorList::cpus`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// Neither `Enabled` nor `Online Capable`: the processor is unusable.
    Disabled,
    /// The APIC id is the broadcast id (0xFF for xAPIC, 0xFFFF_FFFF for x2APIC).
    InvalidApicId,
    /// The APIC id is 255 or more and the local APICs run in xAPIC mode, whose 8-bit destinations cannot
    /// name it (SDM vol. 3A 11.6.1; 0xFF is the broadcast id).
    XapicUnaddressable,
    /// The APIC id was already listed by the entry at `first_offset`.
    DuplicateApicId { first_offset: usize },
    /// More processors than the limit (BSP included).
    OverLimit { limit: usize },
    /// The entry's length is smaller than its structure; the entry is skipped.
    EntryTooShort { length: usize, min: usize },
    /// Entry length 0 or 1: the list cannot be walked further; the rest of the table is ignored.
    ZeroLengthEntry { length: usize },
    /// The entry (or its 2-byte header) runs past the table end; the rest of the table is ignored.
    PastTableEnd { length: usize, remaining: usize },
}

impl RejectReason {
    /// One word for the `state=` field of the log line.
    pub fn short_name(&self) -> &'static str {
        match self {
            RejectReason::Disabled => "disabled",
            RejectReason::InvalidApicId | RejectReason::XapicUnaddressable => "invalid-id",
            RejectReason::DuplicateApicId { .. } => "duplicate",
            RejectReason::OverLimit { .. } => "over-limit",
            RejectReason::EntryTooShort { .. } => "too-short",
            RejectReason::ZeroLengthEntry { .. } => "zero-length",
            RejectReason::PastTableEnd { .. } => "past-end",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::Disabled => f.write_str("processor neither enabled nor online-capable"),
            RejectReason::InvalidApicId => f.write_str("APIC id is the broadcast id"),
            RejectReason::XapicUnaddressable => {
                f.write_str("APIC id 255 or above cannot be addressed in xAPIC mode")
            }
            RejectReason::DuplicateApicId { first_offset } => {
                write!(
                    f,
                    "APIC id already listed by the entry at MADT offset {first_offset:#x}"
                )
            }
            RejectReason::OverLimit { limit } => write!(f, "more than {limit} processors"),
            RejectReason::EntryTooShort { length, min } => {
                write!(f, "entry length {length} below the structure size {min}")
            }
            RejectReason::ZeroLengthEntry { length } => {
                write!(f, "entry length {length}: rest of the MADT ignored")
            }
            RejectReason::PastTableEnd { length, remaining } => write!(
                f,
                "entry length {length} exceeds the {remaining} bytes left in the MADT: rest ignored"
            ),
        }
    }
}

/// A MADT entry that was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// Byte offset of the entry inside the MADT.
    pub offset: usize,
    /// MADT structure type byte.
    pub entry_type: u8,
    /// The decoded processor, when the entry was long enough to decode one.
    pub processor: Option<Processor>,
    pub reason: RejectReason,
}

/// Something odd about the BSP; the system still runs on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BspNote {
    /// No MADT entry has the BSP's APIC id; the BSP was added with [`UNKNOWN_UID`].
    NotInMadt,
    /// The BSP's entry does not have `Enabled` set (it is running, so it is used anyway).
    EntryNotEnabled,
}

impl fmt::Display for BspNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BspNote::NotInMadt => "the MADT does not list the BSP's APIC id; it was added",
            BspNote::EntryNotEnabled => "the BSP's MADT entry is not marked enabled; used anyway",
        })
    }
}

/// The processors of the machine, BSP first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessorList {
    /// Physical address of the local APIC registers (MADT field, or the 64-bit Local APIC
    /// Address Override entry when present).
    pub lapic_base: u64,
    /// Index of the BSP in `cpus`: `Some(0)` for every list built by [`parse_madt`].
    pub bsp: Option<usize>,
    /// BSP (logical index 0), then APs in MADT order; states `Usable` or `HotPluggable`.
    pub cpus: Vec<Processor>,
    /// Entries not taken, in MADT order.
    pub rejected: Vec<Rejected>,
    /// Set when the BSP needed special treatment (warning-worthy).
    pub bsp_note: Option<BspNote>,
    /// MADT revision (5 or more: ACPI 6.3 flags).
    pub madt_revision: u8,
    /// Tables on the way to this list that were used although their checksum is wrong
    /// ([`ChecksumPolicy::Warn`]); empty from [`parse_madt`] alone.
    pub checksum_mismatches: Vec<ChecksumMismatch>,
}

impl ProcessorList {
    /// APs to start: `(logical index, processor)` for every usable processor except the BSP.
    pub fn startable_aps(&self) -> impl Iterator<Item = (usize, &Processor)> {
        self.cpus
            .iter()
            .enumerate()
            .filter(move |(i, p)| Some(*i) != self.bsp && p.state == ProcessorState::Usable)
    }

    /// For local APICs in xAPIC mode: moves every processor whose APIC id is 255 or more (an x2APIC entry,
    /// as QEMU lists ids from 255 on) from `cpus` to `rejected` as [`RejectReason::XapicUnaddressable`]; an
    /// xAPIC INIT or SIPI cannot be sent to it (SDM vol. 3A 11.6.1). The BSP stays: it is running. Returns how
    /// many were moved. Call it before the logical indices are used.
    pub fn restrict_to_xapic(&mut self) -> usize {
        let bsp = self.bsp.map(|i| self.cpus[i].apic_id);
        let (keep, drop): (Vec<Processor>, Vec<Processor>) = self
            .cpus
            .iter()
            .partition(|p| p.apic_id < 0xFF || Some(p.apic_id) == bsp);
        let moved = drop.len();
        for p in drop {
            self.rejected.push(Rejected {
                offset: p.madt_offset.unwrap_or(0),
                entry_type: match p.kind {
                    EntryKind::XApic => 0,
                    EntryKind::X2Apic => 9,
                },
                processor: Some(p),
                reason: RejectReason::XapicUnaddressable,
            });
        }
        self.rejected.sort_by_key(|r| r.offset);
        self.bsp = bsp.and_then(|id| keep.iter().position(|p| p.apic_id == id));
        self.cpus = keep;
        moved
    }

    /// Number of usable processors, BSP included.
    pub fn usable_count(&self) -> usize {
        self.cpus
            .iter()
            .filter(|p| p.state == ProcessorState::Usable)
            .count()
    }
}

/// Why the MADT as a whole cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MadtError {
    /// Fewer bytes than the fixed part (44) were given.
    Truncated { available: usize },
    /// The header's length field is below the fixed part.
    LengthTooSmall { length: u32 },
    /// The header's length field is larger than the bytes available.
    LengthPastBuffer { length: u32, available: usize },
    /// The signature is not "APIC".
    BadSignature,
    /// The bytes do not sum to zero.
    BadChecksum,
}

impl fmt::Display for MadtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MadtError::Truncated { available } => {
                write!(
                    f,
                    "MADT truncated: {available} bytes, need at least {MADT_FIXED_LEN}"
                )
            }
            MadtError::LengthTooSmall { length } => {
                write!(
                    f,
                    "MADT length {length} below the fixed part ({MADT_FIXED_LEN})"
                )
            }
            MadtError::LengthPastBuffer { length, available } => {
                write!(
                    f,
                    "MADT length {length} exceeds the {available} bytes available"
                )
            }
            MadtError::BadSignature => f.write_str("MADT signature is not \"APIC\""),
            MadtError::BadChecksum => f.write_str("MADT checksum mismatch"),
        }
    }
}

/// A processor entry after flag decoding, before BSP/limit placement.
struct Candidate {
    proc: Processor,
}

/// Decodes the flags of a Local APIC / Local x2APIC structure.
fn state_from_flags(flags: u32, online_capable_defined: bool) -> ProcessorState {
    if flags & FLAG_ENABLED != 0 {
        ProcessorState::Usable
    } else if online_capable_defined && flags & FLAG_ONLINE_CAPABLE != 0 {
        ProcessorState::HotPluggable
    } else {
        ProcessorState::Disabled
    }
}

/// Parses a whole MADT (header included) into a [`ProcessorList`], refusing a bad checksum.
///
/// `table` may be longer than the table (only the header's length is used). `bsp_apic_id` is
/// the APIC id of the CPU running this code (from CPUID; the image reads it with `hypervisor::arch::lapic::cpuid_apic_id`).
/// `limit` is the maximum number of processors (BSP included); 0 is treated as 1.
pub fn parse_madt(
    table: &[u8],
    bsp_apic_id: u32,
    limit: usize,
) -> Result<ProcessorList, MadtError> {
    parse_madt_with(table, bsp_apic_id, limit, ChecksumPolicy::Strict)
}

/// [`parse_madt`] with a checksum policy: under [`ChecksumPolicy::Warn`] the checksum is not
/// looked at (the table layer records the mismatch, see [`crate::checksum`]).
pub fn parse_madt_with(
    table: &[u8],
    bsp_apic_id: u32,
    limit: usize,
    checksum: ChecksumPolicy,
) -> Result<ProcessorList, MadtError> {
    if table.len() < MADT_FIXED_LEN {
        return Err(MadtError::Truncated {
            available: table.len(),
        });
    }
    if &table[0..4] != b"APIC" {
        return Err(MadtError::BadSignature);
    }
    let length = le_u32(table, 4);
    if (length as usize) < MADT_FIXED_LEN {
        return Err(MadtError::LengthTooSmall { length });
    }
    if length as usize > table.len() {
        return Err(MadtError::LengthPastBuffer {
            length,
            available: table.len(),
        });
    }
    let table = &table[..length as usize];
    if checksum == ChecksumPolicy::Strict && !checksum_ok(table) {
        return Err(MadtError::BadChecksum);
    }
    let revision = table[8];
    let online_capable_defined = revision >= MADT_REV_ONLINE_CAPABLE;
    let mut lapic_base = u64::from(le_u32(table, 36));
    let mut lapic_override: Option<u64> = None;

    let mut rejected: Vec<Rejected> = Vec::new();
    let mut candidates: Vec<Candidate> = Vec::new();
    // APIC id -> offset of the entry that claimed it (only accepted entries claim ids).
    let mut seen: BTreeMap<u32, usize> = BTreeMap::new();
    let mut bsp: Option<Processor> = None;
    let mut bsp_note = None;
    // The first disabled entry with the BSP's id, kept aside until the walk shows whether an
    // enabled entry describes the BSP: (processor, entry type).
    let mut disabled_bsp: Option<(Processor, u8)> = None;

    let mut off = MADT_FIXED_LEN;
    while off < table.len() {
        let remaining = table.len() - off;
        let entry_type = table[off];
        if remaining < 2 {
            // Not even a full {type, length} header.
            rejected.push(Rejected {
                offset: off,
                entry_type,
                processor: None,
                reason: RejectReason::PastTableEnd {
                    length: 2,
                    remaining,
                },
            });
            break;
        }
        let len = usize::from(table[off + 1]);
        if len < 2 {
            rejected.push(Rejected {
                offset: off,
                entry_type,
                processor: None,
                reason: RejectReason::ZeroLengthEntry { length: len },
            });
            break;
        }
        if len > remaining {
            rejected.push(Rejected {
                offset: off,
                entry_type,
                processor: None,
                reason: RejectReason::PastTableEnd {
                    length: len,
                    remaining,
                },
            });
            break;
        }
        let e = &table[off..off + len];
        let too_short = |min: usize| Rejected {
            offset: off,
            entry_type,
            processor: None,
            reason: RejectReason::EntryTooShort { length: len, min },
        };
        let decoded = match entry_type {
            TYPE_LOCAL_APIC if len < LEN_LOCAL_APIC => {
                rejected.push(too_short(LEN_LOCAL_APIC));
                None
            }
            // ACPI 6.5 Table 5.22: ACPI Processor UID (1), APIC ID (1), Flags (4).
            TYPE_LOCAL_APIC => Some(Processor {
                apic_id: u32::from(e[3]),
                uid: u32::from(e[2]),
                kind: EntryKind::XApic,
                state: state_from_flags(le_u32(e, 4), online_capable_defined),
                madt_offset: Some(off),
            }),
            TYPE_LOCAL_X2APIC if len < LEN_LOCAL_X2APIC => {
                rejected.push(too_short(LEN_LOCAL_X2APIC));
                None
            }
            // ACPI 6.5 Table 5.39: Reserved (2), X2APIC ID (4), Flags (4), ACPI Processor UID (4).
            TYPE_LOCAL_X2APIC => Some(Processor {
                apic_id: le_u32(e, 4),
                uid: le_u32(e, 12),
                kind: EntryKind::X2Apic,
                state: state_from_flags(le_u32(e, 8), online_capable_defined),
                madt_offset: Some(off),
            }),
            TYPE_LAPIC_ADDRESS_OVERRIDE if len < LEN_LAPIC_ADDRESS_OVERRIDE => {
                rejected.push(too_short(LEN_LAPIC_ADDRESS_OVERRIDE));
                None
            }
            // ACPI 6.5 Table 5.31: Reserved (2), Local APIC Address (8). At most one is allowed;
            // the first one wins.
            TYPE_LAPIC_ADDRESS_OVERRIDE => {
                lapic_override.get_or_insert(le_u64(e, 4));
                None
            }
            _ => None,
        };
        off += len;

        let Some(p) = decoded else { continue };
        let reject = |reason| Rejected {
            offset: p.madt_offset.unwrap_or(0),
            entry_type,
            processor: Some(p),
            reason,
        };
        let broadcast = match p.kind {
            EntryKind::XApic => 0xFF,
            EntryKind::X2Apic => u32::MAX,
        };
        if p.apic_id == broadcast {
            rejected.push(reject(RejectReason::InvalidApicId));
        } else if p.state == ProcessorState::Disabled {
            // A placeholder: it claims no id, so it can never make an enabled entry a duplicate.
            if p.apic_id == bsp_apic_id && bsp.is_none() && disabled_bsp.is_none() {
                disabled_bsp = Some((p, entry_type));
            } else {
                rejected.push(reject(RejectReason::Disabled));
            }
        } else if let Some(&first_offset) = seen.get(&p.apic_id) {
            rejected.push(reject(RejectReason::DuplicateApicId { first_offset }));
        } else if p.apic_id == bsp_apic_id {
            // We are running on it, whatever the flags say.
            if p.state != ProcessorState::Usable {
                bsp_note = Some(BspNote::EntryNotEnabled);
            }
            seen.insert(p.apic_id, off - len);
            bsp = Some(Processor {
                state: ProcessorState::Usable,
                ..p
            });
        } else {
            seen.insert(p.apic_id, off - len);
            candidates.push(Candidate { proc: p });
        }
    }
    if let Some(a) = lapic_override {
        lapic_base = a;
    }
    match disabled_bsp {
        // No enabled entry has the BSP's id: this one describes it (we are running on it).
        Some((p, _)) if bsp.is_none() => {
            bsp_note = Some(BspNote::EntryNotEnabled);
            bsp = Some(Processor {
                state: ProcessorState::Usable,
                ..p
            });
        }
        Some((p, entry_type)) => rejected.push(Rejected {
            offset: p.madt_offset.unwrap_or(0),
            entry_type,
            processor: Some(p),
            reason: RejectReason::Disabled,
        }),
        None => {}
    }

    let bsp = bsp.unwrap_or_else(|| {
        bsp_note = Some(BspNote::NotInMadt);
        Processor {
            apic_id: bsp_apic_id,
            uid: UNKNOWN_UID,
            kind: if bsp_apic_id < 0xFF {
                EntryKind::XApic
            } else {
                EntryKind::X2Apic
            },
            state: ProcessorState::Usable,
            madt_offset: None,
        }
    });

    // Limit: usable APs first, then hot-pluggable ones, each in MADT order.
    let limit = limit.max(1);
    let mut budget = limit - 1;
    let mut keep = alloc::vec![false; candidates.len()];
    for wanted in [ProcessorState::Usable, ProcessorState::HotPluggable] {
        for (k, c) in keep.iter_mut().zip(&candidates) {
            if c.proc.state == wanted && budget > 0 {
                *k = true;
                budget -= 1;
            }
        }
    }
    let mut cpus = Vec::with_capacity(limit.min(candidates.len() + 1));
    cpus.push(bsp);
    for (k, c) in keep.into_iter().zip(candidates) {
        if k {
            cpus.push(c.proc);
        } else {
            rejected.push(Rejected {
                offset: c.proc.madt_offset.unwrap_or(0),
                entry_type: match c.proc.kind {
                    EntryKind::XApic => TYPE_LOCAL_APIC,
                    EntryKind::X2Apic => TYPE_LOCAL_X2APIC,
                },
                processor: Some(c.proc),
                reason: RejectReason::OverLimit { limit },
            });
        }
    }
    rejected.sort_by_key(|r| r.offset);

    Ok(ProcessorList {
        lapic_base,
        bsp: Some(0),
        cpus,
        rejected,
        bsp_note,
        madt_revision: revision,
        checksum_mismatches: Vec::new(),
    })
}

/// Severity of a line from [`log_lines`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineLevel {
    Info,
    Warn,
}

/// The log lines describing `list`, in MADT order:
///
/// - one `Info` line per processor entry:
///   `madt: apic_id=<n> uid=<n> entry=<xapic|x2apic> state=<s>` where `<s>` is `usable` or
///   `hot-pluggable` for taken entries and the [`RejectReason::short_name`] (`disabled`,
///   `duplicate`, `over-limit`, `invalid-id`) for rejected ones;
/// - one `Warn` line per malformed entry: `madt: bad entry offset=0x<hex> type=<n> state=<s> reason="<text>"`;
/// - one `Warn` line for a [`BspNote`]: `madt: bsp apic_id=<n> note="<text>"`.
pub fn log_lines(list: &ProcessorList) -> Vec<(LineLevel, String)> {
    let mut by_offset: Vec<(usize, LineLevel, String)> = Vec::new();
    let line = |p: &Processor, state: &dyn fmt::Display| {
        format!(
            "madt: apic_id={} uid={} entry={} state={}",
            p.apic_id, p.uid, p.kind, state
        )
    };
    for p in &list.cpus {
        if let Some(off) = p.madt_offset {
            by_offset.push((off, LineLevel::Info, line(p, &p.state)));
        }
    }
    for r in &list.rejected {
        let text = match &r.processor {
            Some(p) => line(p, &r.reason.short_name()),
            None => format!(
                "madt: bad entry offset={:#x} type={} state={} reason=\"{}\"",
                r.offset,
                r.entry_type,
                r.reason.short_name(),
                r.reason
            ),
        };
        let level = if r.processor.is_some() {
            LineLevel::Info
        } else {
            LineLevel::Warn
        };
        by_offset.push((r.offset, level, text));
    }
    by_offset.sort_by_key(|(off, _, _)| *off);
    let mut out: Vec<(LineLevel, String)> = by_offset.into_iter().map(|(_, l, s)| (l, s)).collect();
    if let (Some(note), Some(b)) = (list.bsp_note, list.bsp.and_then(|i| list.cpus.get(i))) {
        out.push((
            LineLevel::Warn,
            format!("madt: bsp apic_id={} note=\"{}\"", b.apic_id, note),
        ));
    }
    out
}

/// The processor entries of `list` as compact lines, in MADT order: one line per run of consecutive entries
/// with the same entry kind and state whose APIC id and UID both go up by one from entry to entry:
/// `madt: entries apic_ids=<a>[-<b>] uids=<c>[-<d>] entry=<xapic|x2apic> state=<s>` (`<s>` as in
/// [`log_lines`]). QEMU's 1024-CPU table takes two lines (ids 0-254 as xAPIC entries, 255-1023 as x2APIC
/// entries). Malformed entries and the BSP note are not processor entries: they keep their [`log_lines`] line.
pub fn compact_lines(list: &ProcessorList) -> Vec<String> {
    let mut entries: Vec<(usize, &Processor, &'static str)> = Vec::new();
    for p in &list.cpus {
        if let Some(off) = p.madt_offset {
            let state = match p.state {
                ProcessorState::Usable => "usable",
                ProcessorState::HotPluggable => "hot-pluggable",
                ProcessorState::Disabled => "disabled",
            };
            entries.push((off, p, state));
        }
    }
    for r in &list.rejected {
        if let Some(p) = &r.processor {
            entries.push((r.offset, p, r.reason.short_name()));
        }
    }
    entries.sort_by_key(|(off, _, _)| *off);
    // (first entry, its state, entries in the run)
    let mut runs: Vec<(&Processor, &'static str, u32)> = Vec::new();
    for (_, p, state) in entries {
        match runs.last_mut() {
            Some((first, first_state, n))
                if first.kind == p.kind
                    && *first_state == state
                    && first.apic_id.checked_add(*n) == Some(p.apic_id)
                    && first.uid.checked_add(*n) == Some(p.uid) =>
            {
                *n += 1
            }
            _ => runs.push((p, state, 1)),
        }
    }
    let span = |first: u32, n: u32| {
        if n == 1 {
            format!("{first}")
        } else {
            format!("{first}-{}", first + (n - 1))
        }
    };
    runs.into_iter()
        .map(|(p, state, n)| {
            format!(
                "madt: entries apic_ids={} uids={} entry={} state={state}",
                span(p.apic_id, n),
                span(p.uid, n),
                p.kind
            )
        })
        .collect()
}

/// Emits the report of `list` through the `log` crate (target `acpi`, so a line reads `acpi: madt: ...`):
/// the [`log_lines`], their `Info` lines at `each`; with `compact`, then the [`compact_lines`] at INFO.
pub fn log_processor_list(list: &ProcessorList, each: log::Level, compact: bool) {
    for (level, text) in log_lines(list) {
        match level {
            LineLevel::Info => log::log!(target: "acpi", each, "{text}"),
            LineLevel::Warn => log::warn!(target: "acpi", "{text}"),
        }
    }
    if compact {
        for text in compact_lines(list) {
            log::info!(target: "acpi", "{text}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::MadtBuilder;

    fn apic_ids(l: &ProcessorList) -> Vec<u32> {
        l.cpus.iter().map(|p| p.apic_id).collect()
    }

    #[test]
    fn bsp_first_then_madt_order_mixed_entry_kinds() {
        let t = MadtBuilder::new(5)
            .xapic(0, 0, 1)
            .x2apic(300, 1, 7)
            .xapic(2, 2, 1) // BSP, not first in the table
            .ioapic(1, 0xFEC0_0000)
            .xapic(3, 3, 1)
            .build();
        let l = parse_madt(&t, 2, 64).unwrap();
        assert_eq!(apic_ids(&l), [2, 0, 300, 3]);
        assert_eq!(l.bsp, Some(0));
        assert_eq!(l.bsp_note, None);
        assert_eq!(l.cpus[2].kind, EntryKind::X2Apic);
        assert_eq!(l.cpus[2].uid, 7);
        assert_eq!(l.cpus[0].uid, 2);
        assert!(l.rejected.is_empty());
        assert_eq!(l.lapic_base, 0xFEE0_0000);
        assert_eq!(l.usable_count(), 4);
        let aps: Vec<usize> = l.startable_aps().map(|(i, _)| i).collect();
        assert_eq!(aps, [1, 2, 3]);
    }

    #[test]
    fn flags_online_capable_and_disabled() {
        // enabled, online-capable only, neither.
        let t = MadtBuilder::new(5)
            .xapic(0, 0, 1)
            .xapic(1, 1, 2)
            .xapic(2, 2, 0)
            .x2apic(9, 2, 3)
            .build();
        let l = parse_madt(&t, 0, 64).unwrap();
        assert_eq!(apic_ids(&l), [0, 1, 9]);
        assert_eq!(l.cpus[1].state, ProcessorState::HotPluggable);
        assert_eq!(l.cpus[2].state, ProcessorState::HotPluggable);
        assert_eq!(l.rejected.len(), 1);
        assert_eq!(l.rejected[0].reason, RejectReason::Disabled);
        assert_eq!(
            l.rejected[0].processor.unwrap().state,
            ProcessorState::Disabled
        );
        assert_eq!(l.startable_aps().count(), 0);
        assert_eq!(l.usable_count(), 1);
    }

    #[test]
    fn online_capable_bit_ignored_before_madt_revision_5() {
        let t = MadtBuilder::new(4).xapic(0, 0, 1).xapic(1, 1, 2).build();
        let l = parse_madt(&t, 0, 64).unwrap();
        assert_eq!(apic_ids(&l), [0]);
        assert_eq!(l.rejected[0].reason, RejectReason::Disabled);
    }

    #[test]
    fn duplicate_apic_id_keeps_first() {
        let t = MadtBuilder::new(5)
            .xapic(0, 0, 1)
            .xapic(1, 1, 1)
            .x2apic(1, 1, 9) // same id, other entry kind
            .xapic(5, 0, 1) // duplicate of the BSP
            .build();
        let l = parse_madt(&t, 0, 64).unwrap();
        assert_eq!(apic_ids(&l), [0, 1]);
        assert_eq!(l.cpus[1].uid, 1);
        assert_eq!(l.rejected.len(), 2);
        assert_eq!(
            l.rejected[0].reason,
            RejectReason::DuplicateApicId { first_offset: 52 }
        );
        assert_eq!(l.rejected[0].processor.unwrap().kind, EntryKind::X2Apic);
        assert_eq!(
            l.rejected[1].reason,
            RejectReason::DuplicateApicId { first_offset: 44 }
        );
    }

    #[test]
    fn disabled_placeholders_repeating_enabled_ids_are_disabled_not_duplicates() {
        // As real firmware builds them: the enabled entries, then disabled placeholders that
        // all carry id 0 (the BSP's) or repeat other enabled ids.
        let t = MadtBuilder::new(5)
            .xapic(0, 0, 1)
            .xapic(1, 1, 1)
            .xapic(2, 0, 0)
            .xapic(3, 0, 0)
            .xapic(4, 1, 0)
            .x2apic(1, 0, 5)
            .xapic(6, 1, 1) // an enabled repeat stays a duplicate
            .build();
        let l = parse_madt(&t, 0, 64).unwrap();
        assert_eq!(apic_ids(&l), [0, 1]);
        assert_eq!(l.bsp_note, None);
        let reasons: Vec<RejectReason> = l.rejected.iter().map(|r| r.reason).collect();
        assert_eq!(
            reasons,
            [
                RejectReason::Disabled,
                RejectReason::Disabled,
                RejectReason::Disabled,
                RejectReason::Disabled,
                RejectReason::DuplicateApicId { first_offset: 52 },
            ]
        );
        let states: Vec<String> = log_lines(&l)
            .into_iter()
            .map(|(_, s)| s.rsplit("state=").next().unwrap().to_string())
            .collect();
        assert_eq!(
            states,
            [
                "usable",
                "usable",
                "disabled",
                "disabled",
                "disabled",
                "disabled",
                "duplicate"
            ]
        );
    }

    #[test]
    fn a_disabled_entry_with_the_bsp_id_before_its_enabled_entry() {
        // The placeholder comes first: the enabled entry still describes the BSP, no note.
        let t = MadtBuilder::new(5)
            .xapic(9, 0, 0)
            .xapic(1, 0, 1)
            .xapic(2, 1, 1)
            .build();
        let l = parse_madt(&t, 0, 64).unwrap();
        assert_eq!(apic_ids(&l), [0, 1]);
        assert_eq!(l.cpus[0].uid, 1);
        assert_eq!(l.bsp_note, None);
        assert_eq!(l.rejected.len(), 1);
        assert_eq!(l.rejected[0].reason, RejectReason::Disabled);
        assert_eq!(l.rejected[0].offset, MADT_FIXED_LEN);
        // Only disabled entries with the BSP's id: the first one is the BSP, used anyway.
        let t = MadtBuilder::new(5).xapic(9, 0, 0).xapic(8, 0, 0).build();
        let l = parse_madt(&t, 0, 64).unwrap();
        assert_eq!(apic_ids(&l), [0]);
        assert_eq!(l.cpus[0].uid, 9);
        assert_eq!(l.bsp_note, Some(BspNote::EntryNotEnabled));
        assert_eq!(l.rejected.len(), 1);
        assert_eq!(l.rejected[0].reason, RejectReason::Disabled);
    }

    #[test]
    fn bsp_missing_is_added_with_note() {
        let t = MadtBuilder::new(5).xapic(0, 1, 1).xapic(1, 2, 1).build();
        let l = parse_madt(&t, 7, 64).unwrap();
        assert_eq!(apic_ids(&l), [7, 1, 2]);
        assert_eq!(l.bsp_note, Some(BspNote::NotInMadt));
        assert_eq!(l.cpus[0].uid, UNKNOWN_UID);
        assert_eq!(l.cpus[0].madt_offset, None);
        let lines = log_lines(&l);
        assert_eq!(lines.last().unwrap().0, LineLevel::Warn);
        assert!(lines
            .last()
            .unwrap()
            .1
            .starts_with("madt: bsp apic_id=7 note="));
    }

    #[test]
    fn a_bsp_missing_from_the_madt_gets_the_entry_kind_its_id_needs() {
        let t = MadtBuilder::new(5).xapic(0, 1, 1).build();
        for (bsp, kind) in [
            (7, EntryKind::XApic),
            (0xFE, EntryKind::XApic),
            (0xFF, EntryKind::X2Apic),
            (300, EntryKind::X2Apic),
        ] {
            let l = parse_madt(&t, bsp, 64).unwrap();
            assert_eq!(l.cpus[0].apic_id, bsp);
            assert_eq!(l.cpus[0].kind, kind, "bsp apic_id={bsp}");
        }
    }

    #[test]
    fn bsp_note_texts() {
        assert_eq!(
            BspNote::NotInMadt.to_string(),
            "the MADT does not list the BSP's APIC id; it was added"
        );
        assert_eq!(
            BspNote::EntryNotEnabled.to_string(),
            "the BSP's MADT entry is not marked enabled; used anyway"
        );
    }

    #[test]
    fn bsp_entry_not_enabled_still_used() {
        let t = MadtBuilder::new(5).xapic(0, 0, 0).xapic(1, 1, 1).build();
        let l = parse_madt(&t, 0, 64).unwrap();
        assert_eq!(apic_ids(&l), [0, 1]);
        assert_eq!(l.cpus[0].state, ProcessorState::Usable);
        assert_eq!(l.bsp_note, Some(BspNote::EntryNotEnabled));
    }

    #[test]
    fn limit_prefers_usable_and_reports_excess() {
        let t = MadtBuilder::new(5)
            .xapic(0, 0, 1)
            .xapic(1, 1, 2) // hot-pluggable, before usable ones
            .xapic(2, 2, 1)
            .xapic(3, 3, 1)
            .xapic(4, 4, 1)
            .build();
        let l = parse_madt(&t, 0, 3).unwrap();
        assert_eq!(apic_ids(&l), [0, 2, 3]);
        let over: Vec<u32> = l
            .rejected
            .iter()
            .filter(|r| r.reason == RejectReason::OverLimit { limit: 3 })
            .map(|r| r.processor.unwrap().apic_id)
            .collect();
        assert_eq!(over, [1, 4]);
        // Rejections are in MADT order.
        assert!(l.rejected.windows(2).all(|w| w[0].offset < w[1].offset));

        // limit 0 behaves as 1: the BSP alone.
        let l = parse_madt(&t, 0, 0).unwrap();
        assert_eq!(apic_ids(&l), [0]);
        assert_eq!(l.rejected.len(), 4);

        // A large limit keeps hot-pluggable entries after usable ones, in MADT order.
        let l = parse_madt(&t, 0, 100).unwrap();
        assert_eq!(apic_ids(&l), [0, 1, 2, 3, 4]);
    }

    #[test]
    fn broadcast_ids_rejected() {
        let t = MadtBuilder::new(5)
            .xapic(0, 0, 1)
            .xapic(1, 0xFF, 1)
            .x2apic(u32::MAX, 2, 1)
            .build();
        let l = parse_madt(&t, 0, 64).unwrap();
        assert_eq!(apic_ids(&l), [0]);
        assert!(l
            .rejected
            .iter()
            .all(|r| r.reason == RejectReason::InvalidApicId));
        assert_eq!(l.rejected.len(), 2);
    }

    #[test]
    fn xapic_mode_rejects_ids_from_255_as_invalid_id_and_keeps_mixed_tables() {
        // As QEMU builds it: xAPIC entries below 255, x2APIC entries from 255 on.
        let t = MadtBuilder::new(5)
            .xapic(0, 0, 1)
            .xapic(1, 1, 1)
            .xapic(2, 254, 1)
            .x2apic(255, 1, 3)
            .x2apic(300, 1, 4)
            .build();
        let mut l = parse_madt(&t, 0, 64).unwrap();
        assert_eq!(
            apic_ids(&l),
            [0, 1, 254, 255, 300],
            "x2APIC mode uses them all"
        );
        assert_eq!(l.restrict_to_xapic(), 2);
        assert_eq!(apic_ids(&l), [0, 1, 254]);
        assert_eq!(l.bsp, Some(0));
        assert_eq!(
            l.startable_aps().map(|(i, _)| i).collect::<Vec<_>>(),
            [1, 2]
        );
        let r: Vec<(u32, &str)> = l
            .rejected
            .iter()
            .map(|r| (r.processor.unwrap().apic_id, r.reason.short_name()))
            .collect();
        assert_eq!(r, [(255, "invalid-id"), (300, "invalid-id")]);
        assert!(l.rejected.windows(2).all(|w| w[0].offset < w[1].offset));
        assert!(l.rejected[0].reason.to_string().contains("xAPIC mode"));
        assert_eq!(l.rejected[0].entry_type, 9);
        // A running BSP with a large id stays.
        let t = MadtBuilder::new(5).x2apic(300, 1, 0).xapic(1, 1, 1).build();
        let mut l = parse_madt(&t, 300, 64).unwrap();
        assert_eq!(l.restrict_to_xapic(), 0);
        assert_eq!(apic_ids(&l), [300, 1]);
        assert_eq!(l.bsp, Some(0));
    }

    #[test]
    fn lapic_address_override() {
        let t = MadtBuilder::new(5)
            .xapic(0, 0, 1)
            .lapic_override(0x1_2345_6000)
            .lapic_override(0x9000)
            .build();
        let l = parse_madt(&t, 0, 64).unwrap();
        assert_eq!(l.lapic_base, 0x1_2345_6000);
    }

    #[test]
    fn header_errors() {
        let good = MadtBuilder::new(5).xapic(0, 0, 1).build();
        assert_eq!(
            parse_madt(&good[..40], 0, 8),
            Err(MadtError::Truncated { available: 40 })
        );
        assert_eq!(
            parse_madt(&good[..50], 0, 8),
            Err(MadtError::LengthPastBuffer {
                length: 52,
                available: 50
            })
        );
        let mut bad = good.clone();
        bad[20] ^= 1;
        assert_eq!(parse_madt(&bad, 0, 8), Err(MadtError::BadChecksum));
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(parse_madt(&bad, 0, 8), Err(MadtError::BadSignature));
        // Length field below the fixed part (checksum fixed so only the length is wrong).
        let bad = MadtBuilder::new(5).with_length(40).build();
        assert_eq!(
            parse_madt(&bad, 0, 8),
            Err(MadtError::LengthTooSmall { length: 40 })
        );
        // Trailing bytes after the table are ignored.
        let mut long = good.clone();
        long.extend_from_slice(&[0xAA; 16]);
        assert_eq!(parse_madt(&long, 0, 8).unwrap().cpus.len(), 1);
    }

    #[test]
    fn zero_length_entry_stops_without_looping() {
        let t = MadtBuilder::new(5)
            .xapic(0, 0, 1)
            .raw(&[0, 0, 0, 0, 0, 0, 0, 0])
            .xapic(1, 1, 1)
            .build();
        let l = parse_madt(&t, 0, 64).unwrap();
        assert_eq!(apic_ids(&l), [0]);
        assert_eq!(l.rejected.len(), 1);
        assert_eq!(
            l.rejected[0].reason,
            RejectReason::ZeroLengthEntry { length: 0 }
        );
        assert_eq!(l.rejected[0].offset, 52);
        // Length 1 cannot hold the header either.
        let t = MadtBuilder::new(5).xapic(0, 0, 1).raw(&[9, 1]).build();
        let l = parse_madt(&t, 0, 64).unwrap();
        assert_eq!(
            l.rejected[0].reason,
            RejectReason::ZeroLengthEntry { length: 1 }
        );
    }

    #[test]
    fn entry_past_table_end_is_rejected() {
        // An x2APIC entry claiming 16 bytes with only 8 left.
        let t = MadtBuilder::new(5)
            .xapic(0, 0, 1)
            .raw(&[9, 16, 0, 0, 1, 0, 0, 0])
            .build();
        let l = parse_madt(&t, 0, 64).unwrap();
        assert_eq!(apic_ids(&l), [0]);
        assert_eq!(
            l.rejected[0].reason,
            RejectReason::PastTableEnd {
                length: 16,
                remaining: 8
            }
        );
        // A single trailing byte (half an entry header).
        let t = MadtBuilder::new(5).xapic(0, 0, 1).raw(&[0]).build();
        let l = parse_madt(&t, 0, 64).unwrap();
        assert_eq!(
            l.rejected[0].reason,
            RejectReason::PastTableEnd {
                length: 2,
                remaining: 1
            }
        );
    }

    #[test]
    fn short_entries_skipped_and_walk_continues() {
        let t = MadtBuilder::new(5)
            .xapic(0, 0, 1)
            .raw(&[0, 6, 1, 1, 1, 0]) // local APIC entry 6 bytes long
            .raw(&[9, 12, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0]) // x2APIC entry 12 bytes long
            .raw(&[5, 4, 0, 0]) // override 4 bytes long
            .xapic(3, 3, 1)
            .build();
        let l = parse_madt(&t, 0, 64).unwrap();
        assert_eq!(apic_ids(&l), [0, 3]);
        let reasons: Vec<_> = l.rejected.iter().map(|r| r.reason).collect();
        assert_eq!(
            reasons,
            [
                RejectReason::EntryTooShort { length: 6, min: 8 },
                RejectReason::EntryTooShort {
                    length: 12,
                    min: 16
                },
                RejectReason::EntryTooShort { length: 4, min: 12 },
            ]
        );
        assert_eq!(l.lapic_base, 0xFEE0_0000);
    }

    #[test]
    fn longer_entries_are_accepted() {
        // A future revision may append fields: the length is used to step, not the type size.
        let t = MadtBuilder::new(5)
            .raw(&[0, 10, 4, 0, 1, 0, 0, 0, 0xEE, 0xEE])
            .xapic(1, 1, 1)
            .build();
        let l = parse_madt(&t, 0, 64).unwrap();
        assert_eq!(apic_ids(&l), [0, 1]);
        assert_eq!(l.cpus[0].uid, 4);
    }

    #[test]
    fn unknown_entry_types_are_skipped() {
        let t = MadtBuilder::new(5)
            .raw(&[0x80, 4, 0, 0])
            .raw(&[0x11, 3, 0])
            .xapic(0, 0, 1)
            .build();
        let l = parse_madt(&t, 0, 64).unwrap();
        assert_eq!(apic_ids(&l), [0]);
        assert!(l.rejected.is_empty());
    }

    #[test]
    fn log_line_format() {
        let t = MadtBuilder::new(5)
            .xapic(0, 0, 1)
            .x2apic(300, 2, 1)
            .xapic(2, 2, 0)
            .xapic(3, 0, 1)
            .xapic(4, 4, 1)
            .raw(&[0, 0])
            .build();
        let l = parse_madt(&t, 0, 3).unwrap();
        let lines = log_lines(&l);
        let text: Vec<&str> = lines.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(
            text,
            [
                "madt: apic_id=0 uid=0 entry=xapic state=usable",
                "madt: apic_id=300 uid=1 entry=x2apic state=hot-pluggable",
                "madt: apic_id=2 uid=2 entry=xapic state=disabled",
                "madt: apic_id=0 uid=3 entry=xapic state=duplicate",
                "madt: apic_id=4 uid=4 entry=xapic state=usable",
                "madt: bad entry offset=0x5c type=0 state=zero-length reason=\"entry length 0: rest of the MADT ignored\"",
            ]
        );
        assert_eq!(lines[5].0, LineLevel::Warn);
        assert!(lines[..5].iter().all(|(lv, _)| *lv == LineLevel::Info));
        // limit 3 = BSP + the usable AP + the hot-pluggable one.
        assert_eq!(apic_ids(&l), [0, 300, 4]);
        log_processor_list(&l, log::Level::Info, true); // no logger installed: must not panic
        assert_eq!(
            compact_lines(&l),
            [
                "madt: entries apic_ids=0 uids=0 entry=xapic state=usable",
                "madt: entries apic_ids=300 uids=1 entry=x2apic state=hot-pluggable",
                "madt: entries apic_ids=2 uids=2 entry=xapic state=disabled",
                "madt: entries apic_ids=0 uids=3 entry=xapic state=duplicate",
                "madt: entries apic_ids=4 uids=4 entry=xapic state=usable",
            ]
        );
    }

    #[test]
    fn compact_lines_are_runs_of_kind_state_id_and_uid() {
        // QEMU's table beyond 255 CPUs: xAPIC entries 0-254, x2APIC entries from 255; 8 of them disabled.
        let mut b = MadtBuilder::new(5);
        for id in 0..255 {
            b = b.xapic(id as u8, id as u8, 1);
        }
        for id in 255..300 {
            b = b.x2apic(id, if id < 292 { 1 } else { 0 }, id);
        }
        let l = parse_madt(&b.build(), 0, 4096).unwrap();
        assert_eq!(
            compact_lines(&l),
            [
                "madt: entries apic_ids=0-254 uids=0-254 entry=xapic state=usable",
                "madt: entries apic_ids=255-291 uids=255-291 entry=x2apic state=usable",
                "madt: entries apic_ids=292-299 uids=292-299 entry=x2apic state=disabled",
            ]
        );
        // A hole in the ids, or ids and UIDs that stop going up together, start a new run.
        let t = MadtBuilder::new(5)
            .xapic(0, 0, 1)
            .xapic(1, 1, 1)
            .xapic(2, 4, 1)
            .xapic(3, 5, 1)
            .xapic(5, 6, 1)
            .build();
        assert_eq!(
            compact_lines(&parse_madt(&t, 0, 16).unwrap()),
            [
                "madt: entries apic_ids=0-1 uids=0-1 entry=xapic state=usable",
                "madt: entries apic_ids=4-5 uids=2-3 entry=xapic state=usable",
                "madt: entries apic_ids=6 uids=5 entry=xapic state=usable",
            ]
        );
        // Every processor entry is in exactly one run: the runs' sizes add up to the per-entry lines.
        let per_entry = log_lines(&l)
            .iter()
            .filter(|(lv, s)| *lv == LineLevel::Info && s.starts_with("madt: apic_id="))
            .count();
        assert_eq!(per_entry, 300);
    }

    #[test]
    fn display_texts() {
        assert_eq!(
            RejectReason::DuplicateApicId { first_offset: 0x2c }.to_string(),
            "APIC id already listed by the entry at MADT offset 0x2c"
        );
        assert_eq!(
            RejectReason::OverLimit { limit: 4 }.to_string(),
            "more than 4 processors"
        );
        assert_eq!(MadtError::BadChecksum.to_string(), "MADT checksum mismatch");
        assert_eq!(ProcessorState::HotPluggable.to_string(), "hot-pluggable");
        assert_eq!(EntryKind::X2Apic.to_string(), "x2apic");
    }
}
