//! Fuzzing the whole path from hostile firmware tables to the processor list, on stable Rust.
//!
//! RSDP -> RSDT/XSDT -> MADT -> [`smp::ProcessorList`], through both entry points
//! ([`smp::processors_from_phys`] over a [`PhysRead`], [`smp::processors_from_rsdp`] through an
//! [`acpi::AcpiHandler`] and the `acpi` crate), plus [`smp::find_rsdp`] and
//! [`smp::madt::parse_madt`] on raw bytes.
//!
//! Inputs are structure-aware: valid machines (generated ones, and the real QEMU and Bochs tables
//! in `smp/fuzz-corpus/`) are mutated where parsers go wrong: length fields, checksums, entry
//! lengths and types, APIC ids, flags, pointers, revisions, truncation, inserted and removed bytes.
//! The "physical memory" is sparse: only the bytes of the tables exist, every other read is
//! denied and recorded.
//!
//! Properties checked on every input (see `check_machine`):
//! - no panic; the walk terminates within a read budget proportional to the bytes given, and a
//!   watchdog aborts a case that runs for more than a minute;
//! - no read is larger than the parser's own caps, and a table's body is only read after its
//!   header's length was found sane: any read longer than a header at a table's address reads
//!   exactly the length that header declares;
//! - an `Unreadable` error names a read that really was denied; every error and every rejected
//!   MADT entry has a non-empty reason;
//! - a processor list is well-formed (BSP first, distinct ids, limit respected, ...) and, for
//!   unmutated generated machines, equals what a straightforward model of the rules predicts;
//! - when our walk read nothing outside the tables, the `acpi` crate path gives the same result
//!   and maps nothing outside the tables either.
//!
//! `cargo test -p smp --test fuzz` runs a bounded number of cases (a few seconds); set
//! `FUZZ_CASES=<n>` to run n cases per property instead, e.g.
//! `FUZZ_CASES=1000000 cargo test -p smp --release --test fuzz` (docs/reliability.md).

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use acpi::{AcpiHandler, PhysicalMapping};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};
use smp::acpi_tables::MAX_TABLE_LEN;
use smp::madt::{parse_madt, MADT_FIXED_LEN};
use smp::ChecksumPolicy::{Strict, Warn};
use smp::{AcpiError, PhysRead, ProcessorList, ProcessorState};

// ------------------------------------------------------------------------------------------------
// Sparse physical memory that records every access.

#[derive(Default, Debug)]
struct Access {
    /// Every `PhysRead::read`: (address, length, granted).
    reads: Vec<(u64, usize, bool)>,
    /// Every handler mapping: (address, size, inside the given bytes).
    maps: Vec<(usize, usize, bool)>,
    /// Buffers handed out for mappings outside the given bytes (open bus, all 0xFF).
    open_bus: Vec<Box<[u8]>>,
    budget: usize,
}

/// Only the bytes put into it exist; reads are granted only when the whole range lies inside one
/// contiguous run of them.
#[derive(Clone)]
struct SparseMem {
    /// Disjoint, sorted, non-adjacent runs: (base, bytes).
    runs: Rc<Vec<(u64, Vec<u8>)>>,
    access: Rc<RefCell<Access>>,
}

#[derive(Default)]
struct MemBuilder {
    runs: Vec<(u64, Vec<u8>)>,
}

impl MemBuilder {
    /// Writes `data` at `addr`, merging with overlapping or adjacent runs (later writes win).
    fn put(&mut self, addr: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let Some(end) = addr.checked_add(data.len() as u64) else {
            return;
        };
        let mut start = addr;
        let mut stop = end;
        let mut merged: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut keep = Vec::new();
        for run in self.runs.drain(..) {
            let run_end = run.0 + run.1.len() as u64;
            if run_end < start || run.0 > stop {
                keep.push(run);
            } else {
                start = start.min(run.0);
                stop = stop.max(run_end);
                merged.push(run);
            }
        }
        let mut bytes = vec![0u8; (stop - start) as usize];
        for (base, b) in &merged {
            let off = (base - start) as usize;
            bytes[off..off + b.len()].copy_from_slice(b);
        }
        let off = (addr - start) as usize;
        bytes[off..off + data.len()].copy_from_slice(data);
        keep.push((start, bytes));
        keep.sort_by_key(|r| r.0);
        self.runs = keep;
    }

    fn build(self, budget: usize) -> SparseMem {
        SparseMem {
            runs: Rc::new(self.runs),
            access: Rc::new(RefCell::new(Access {
                budget,
                ..Access::default()
            })),
        }
    }
}

impl SparseMem {
    /// The bytes at `[addr, addr + len)` if they all exist.
    fn slice(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let end = addr.checked_add(len as u64)?;
        let i = self.runs.partition_point(|r| r.0 <= addr).checked_sub(1)?;
        let (base, bytes) = &self.runs[i];
        if end > base + bytes.len() as u64 {
            return None;
        }
        let off = (addr - base) as usize;
        Some(&bytes[off..off + len])
    }

    fn u32_at(&self, addr: u64) -> Option<u32> {
        self.slice(addr, 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    }

    fn reads(&self) -> Vec<(u64, usize, bool)> {
        self.access.borrow().reads.clone()
    }

    fn denied(&self) -> Vec<(u64, usize)> {
        self.access
            .borrow()
            .reads
            .iter()
            .filter(|r| !r.2)
            .map(|r| (r.0, r.1))
            .collect()
    }

    fn outside_maps(&self) -> Vec<(usize, usize)> {
        self.access
            .borrow()
            .maps
            .iter()
            .filter(|m| !m.2)
            .map(|m| (m.0, m.1))
            .collect()
    }

    fn reset(&self) {
        let mut a = self.access.borrow_mut();
        a.reads.clear();
        a.maps.clear();
        a.open_bus.clear();
    }
}

impl PhysRead for SparseMem {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        let granted = match self.slice(addr, buf.len()) {
            Some(src) => {
                buf.copy_from_slice(src);
                true
            }
            None => false,
        };
        let mut a = self.access.borrow_mut();
        a.reads.push((addr, buf.len(), granted));
        // Termination: a walk that keeps reading is stopped here (the case then fails).
        assert!(
            a.reads.len() <= a.budget,
            "read budget of {} reads exceeded: the walk does not terminate",
            a.budget
        );
        granted
    }
}

impl AcpiHandler for SparseMem {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        assert!(
            size <= MAX_TABLE_LEN as usize,
            "the acpi crate was asked to map {size:#x} bytes at {physical_address:#x}"
        );
        let inside = self.slice(physical_address as u64, size).is_some();
        let ptr = match self.slice(physical_address as u64, size) {
            Some(s) if size > 0 => s.as_ptr(),
            _ => {
                // Outside the given bytes: an open-bus copy that lives as long as the memory.
                let buf = vec![0xFFu8; size.max(1)].into_boxed_slice();
                let p = buf.as_ptr();
                self.access.borrow_mut().open_bus.push(buf);
                p
            }
        } as *mut T;
        self.access
            .borrow_mut()
            .maps
            .push((physical_address, size, inside));
        // SAFETY: `ptr` is non-null and valid for `size` bytes for as long as the memory (whose
        // `Rc`s the mapping holds) lives: either inside a run, which is never modified, or a
        // boxed slice kept in `open_bus`. The acpi crate only reads through mappings, and the
        // types it maps are `repr(C, packed)` or bytes (alignment 1).
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

// ------------------------------------------------------------------------------------------------
// Table builders.

fn checksum_fix(bytes: &mut [u8], at: usize) {
    if at >= bytes.len() {
        return;
    }
    bytes[at] = 0;
    let sum = bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b));
    bytes[at] = 0u8.wrapping_sub(sum);
}

fn sdt(sig: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(36 + body.len());
    t.extend_from_slice(sig);
    t.extend_from_slice(&((36 + body.len()) as u32).to_le_bytes());
    t.push(revision);
    t.push(0);
    t.extend_from_slice(b"FUZZER");
    t.extend_from_slice(b"FUZZTABL");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(b"PROP");
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(body);
    checksum_fix(&mut t, 9);
    t
}

fn rsdp(revision: u8, rsdt: u32, xsdt: u64) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(b"RSD PTR ");
    r.push(0);
    r.extend_from_slice(b"FUZZER");
    r.push(revision);
    r.extend_from_slice(&rsdt.to_le_bytes());
    if revision >= 2 {
        r.extend_from_slice(&36u32.to_le_bytes());
        r.extend_from_slice(&xsdt.to_le_bytes());
        r.extend_from_slice(&[0; 4]);
    }
    fix_table_checksum(&mut r);
    r
}

/// Repairs the checksum(s) of a table as its header describes it (RSDP: both checksums; other
/// tables: over the header's length, clipped to the bytes there are).
fn fix_table_checksum(t: &mut [u8]) {
    if t.starts_with(b"RSD PTR ") {
        let n = t.len().min(20);
        checksum_fix(&mut t[..n], 8);
        if t.len() >= 36 && t[15] >= 2 {
            let len = u32::from_le_bytes(t[20..24].try_into().unwrap()) as usize;
            let n = len.min(t.len());
            checksum_fix(&mut t[..n], 32);
        }
    } else if t.len() >= 10 {
        let len = u32::from_le_bytes(t[4..8].try_into().unwrap()) as usize;
        let n = len.clamp(10, t.len());
        checksum_fix(&mut t[..n], 9);
    }
}

#[derive(Clone, Debug)]
enum EntrySpec {
    Proc {
        x2: bool,
        id: u32,
        uid: u32,
        flags: u32,
    },
    IoApic,
    Override(u64),
    Other {
        ty: u8,
        body: Vec<u8>,
    },
}

#[derive(Clone, Debug)]
struct MadtSpec {
    revision: u8,
    lapic: u32,
    entries: Vec<EntrySpec>,
}

impl MadtSpec {
    fn build(&self) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&self.lapic.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes());
        for e in &self.entries {
            match e {
                EntrySpec::Proc {
                    x2: false,
                    id,
                    uid,
                    flags,
                } => {
                    body.extend_from_slice(&[0, 8, *uid as u8, *id as u8]);
                    body.extend_from_slice(&flags.to_le_bytes());
                }
                EntrySpec::Proc {
                    x2: true,
                    id,
                    uid,
                    flags,
                } => {
                    body.extend_from_slice(&[9, 16, 0, 0]);
                    body.extend_from_slice(&id.to_le_bytes());
                    body.extend_from_slice(&flags.to_le_bytes());
                    body.extend_from_slice(&uid.to_le_bytes());
                }
                EntrySpec::IoApic => {
                    body.extend_from_slice(&[1, 12, 0, 0, 0, 0, 0xC0, 0xFE, 0, 0, 0, 0]);
                }
                EntrySpec::Override(a) => {
                    body.extend_from_slice(&[5, 12, 0, 0]);
                    body.extend_from_slice(&a.to_le_bytes());
                }
                EntrySpec::Other { ty, body: b } => {
                    body.push(*ty);
                    body.push((b.len() + 2) as u8);
                    body.extend_from_slice(b);
                }
            }
        }
        sdt(b"APIC", self.revision, &body)
    }

    /// The processor list the rules of `smp::madt` give for this MADT (as ids, BSP first), with
    /// the usable count. A plain restatement of the rules in the module documentation.
    fn expected(&self, bsp: u32, limit: usize) -> (Vec<u32>, usize) {
        let oc = self.revision >= 5;
        let mut seen = BTreeSet::new();
        // Accepted APs in MADT order: (id, usable).
        let mut accepted = Vec::new();
        for e in &self.entries {
            let EntrySpec::Proc { x2, id, flags, .. } = *e else {
                continue;
            };
            let id = if x2 { id } else { id & 0xFF };
            let broadcast = if x2 { u32::MAX } else { 0xFF };
            if id == broadcast || seen.contains(&id) {
                continue;
            }
            if id == bsp {
                seen.insert(id);
            } else if flags & 1 != 0 {
                seen.insert(id);
                accepted.push((id, true));
            } else if oc && flags & 2 != 0 {
                seen.insert(id);
                accepted.push((id, false));
            }
        }
        let mut budget = limit.max(1) - 1;
        let mut keep = vec![false; accepted.len()];
        for wanted in [true, false] {
            for (k, a) in keep.iter_mut().zip(&accepted) {
                if a.1 == wanted && budget > 0 {
                    *k = true;
                    budget -= 1;
                }
            }
        }
        let mut ids = vec![bsp];
        let mut usable = 1;
        for (k, a) in keep.into_iter().zip(&accepted) {
            if k {
                ids.push(a.0);
                usable += usize::from(a.1);
            }
        }
        (ids, usable)
    }
}

// ------------------------------------------------------------------------------------------------
// A machine: tables at addresses (bytes as they are in memory).

#[derive(Clone, Debug)]
struct Table {
    addr: u64,
    bytes: Vec<u8>,
    /// How many of the bytes exist in memory (the rest of the table is cut off).
    present: usize,
}

#[derive(Clone, Debug)]
struct Machine {
    rsdp_addr: u64,
    /// The RSDP is `tables[0]`.
    tables: Vec<Table>,
}

impl Machine {
    fn memory(&self, budget_extra: usize) -> SparseMem {
        let mut b = MemBuilder::default();
        for t in &self.tables {
            b.put(t.addr, &t.bytes[..t.present.min(t.bytes.len())]);
        }
        let bytes: usize = self.tables.iter().map(|t| t.present).sum();
        b.build(64 + bytes / 2 + budget_extra)
    }

    fn with_sig(&self, sig: &[u8]) -> Vec<usize> {
        (0..self.tables.len())
            .filter(|&i| self.tables[i].bytes.starts_with(sig))
            .collect()
    }
}

#[derive(Clone, Debug)]
struct MachineSpec {
    rsdp_rev: u8,
    rsdt: bool,
    xsdt: bool,
    madt: MadtSpec,
    second_madt: Option<(MadtSpec, bool)>,
    extra_tables: u8,
    rsdp_in_bios: bool,
    rsdp_jitter: u16,
    high_tables: bool,
    jitter: Vec<u16>,
}

impl MachineSpec {
    fn build(&self) -> Machine {
        let rsdp_addr = if self.rsdp_in_bios {
            0xE_0000 + u64::from(self.rsdp_jitter) * 16 % 0x2_0000
        } else {
            0x9_F000 + u64::from(self.rsdp_jitter % 0x100) * 4
        };
        let base: u64 = if self.high_tables && self.xsdt && !self.rsdt {
            0x1_2345_0000
        } else {
            0x7FFE_0000
        };
        let mut next = 0u64;
        let mut slot = |jitter: &[u16]| {
            let j = u64::from(jitter.get(next as usize).copied().unwrap_or(0) % 0x40) * 4;
            let a = base + next * 0x2000 + j;
            next += 1;
            a
        };
        let mut tables = Vec::new();
        let mut listed = Vec::new();
        let facp = sdt(b"FACP", 6, &[0x5A; 80]);
        let a = slot(&self.jitter);
        listed.push(a);
        tables.push(Table {
            addr: a,
            present: facp.len(),
            bytes: facp,
        });
        let mut madts = vec![self.madt.build()];
        if let Some((m, first)) = &self.second_madt {
            if *first {
                madts.insert(0, m.build());
            } else {
                madts.push(m.build());
            }
        }
        for m in madts {
            let a = slot(&self.jitter);
            listed.push(a);
            tables.push(Table {
                addr: a,
                present: m.len(),
                bytes: m,
            });
        }
        for k in 0..self.extra_tables {
            let t = sdt(b"HPET", 1, &[k; 20]);
            let a = slot(&self.jitter);
            listed.push(a);
            tables.push(Table {
                addr: a,
                present: t.len(),
                bytes: t,
            });
        }
        let mut rsdt_addr = 0u32;
        let mut xsdt_addr = 0u64;
        if self.rsdt {
            let body: Vec<u8> = listed
                .iter()
                .flat_map(|&a| (a as u32).to_le_bytes())
                .collect();
            let t = sdt(b"RSDT", 1, &body);
            let a = slot(&self.jitter);
            rsdt_addr = a as u32;
            tables.push(Table {
                addr: a,
                present: t.len(),
                bytes: t,
            });
        }
        if self.xsdt {
            let body: Vec<u8> = listed.iter().flat_map(|&a| a.to_le_bytes()).collect();
            let t = sdt(b"XSDT", 1, &body);
            let a = slot(&self.jitter);
            xsdt_addr = a;
            tables.push(Table {
                addr: a,
                present: t.len(),
                bytes: t,
            });
        }
        let r = rsdp(self.rsdp_rev, rsdt_addr, xsdt_addr);
        tables.insert(
            0,
            Table {
                addr: rsdp_addr,
                present: r.len(),
                bytes: r,
            },
        );
        Machine { rsdp_addr, tables }
    }

    /// The MADT the kernel must use when nothing was mutated: the first listed valid one.
    fn effective_madt(&self) -> Option<&MadtSpec> {
        let reaches = self.rsdt || (self.xsdt && self.rsdp_rev >= 2);
        if !reaches {
            return None;
        }
        Some(match &self.second_madt {
            Some((m, true)) => m,
            _ => &self.madt,
        })
    }
}

// ------------------------------------------------------------------------------------------------
// Mutations.

#[derive(Clone, Debug)]
enum LenV {
    Zero,
    Small(u8),
    HeaderMinus1,
    Header,
    MadtFixedMinus1,
    MadtFixed,
    Delta(i16),
    Huge(u32),
    CapPlus1,
    Max,
}

#[derive(Clone, Debug)]
enum PtrV {
    Raw(u64),
    Null,
    /// Another table's address plus a small offset.
    Table(usize, u8),
    /// So that a header fits in memory but the rest does not.
    NearEnd(usize),
    AllOnes,
    Above4G,
}

#[derive(Clone, Debug)]
enum EntryField {
    Len(u8),
    Type(u8),
    ApicId(u32),
    Flags(u32),
}

#[derive(Clone, Debug)]
enum Mutation {
    Length {
        t: usize,
        v: LenV,
        fix: bool,
    },
    Byte {
        t: usize,
        at: usize,
        xor: u8,
        fix: bool,
    },
    Truncate {
        t: usize,
        keep: usize,
    },
    Entry {
        m: usize,
        e: usize,
        f: EntryField,
        fix: bool,
    },
    Pointer {
        t: usize,
        slot: usize,
        p: PtrV,
        fix: bool,
    },
    Revision {
        v: u8,
        fix: bool,
    },
    Insert {
        t: usize,
        at: usize,
        bytes: Vec<u8>,
        fix: bool,
    },
    Cut {
        t: usize,
        at: usize,
        n: usize,
        fix: bool,
    },
    DuplicateEntry {
        m: usize,
        e: usize,
    },
}

fn header_len_field(t: &Table) -> Option<usize> {
    if t.bytes.starts_with(b"RSD PTR ") {
        (t.bytes.len() >= 24).then_some(20)
    } else {
        (t.bytes.len() >= 8).then_some(4)
    }
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    if at + 4 <= b.len() {
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
}

fn madt_entries(b: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut off = MADT_FIXED_LEN;
    while off + 2 <= b.len() {
        out.push(off);
        let len = b[off + 1] as usize;
        if len < 2 {
            break;
        }
        off += len;
    }
    out
}

fn apply(m: &mut Machine, mutation: &Mutation) {
    let n = m.tables.len();
    let fix_if = |t: &mut Table, fix: bool| {
        if fix {
            fix_table_checksum(&mut t.bytes);
        }
    };
    match mutation {
        Mutation::Length { t, v, fix } => {
            let t = &mut m.tables[t % n];
            let Some(at) = header_len_field(t) else {
                return;
            };
            let actual = t.bytes.len() as i64;
            let value: u32 = match v {
                LenV::Zero => 0,
                LenV::Small(s) => u32::from(*s),
                LenV::HeaderMinus1 => 35,
                LenV::Header => 36,
                LenV::MadtFixedMinus1 => 43,
                LenV::MadtFixed => 44,
                LenV::Delta(d) => (actual + i64::from(*d)).clamp(0, u32::MAX as i64) as u32,
                LenV::Huge(h) => *h,
                LenV::CapPlus1 => MAX_TABLE_LEN + 1,
                LenV::Max => u32::MAX,
            };
            put_u32(&mut t.bytes, at, value);
            fix_if(t, *fix);
        }
        Mutation::Byte { t, at, xor, fix } => {
            let t = &mut m.tables[t % n];
            if !t.bytes.is_empty() {
                let i = at % t.bytes.len();
                t.bytes[i] ^= xor;
            }
            fix_if(t, *fix);
        }
        Mutation::Truncate { t, keep } => {
            let t = &mut m.tables[t % n];
            t.present = keep % (t.bytes.len() + 1);
        }
        Mutation::Entry { m: mi, e, f, fix } => {
            let madts = m.with_sig(b"APIC");
            if madts.is_empty() {
                return;
            }
            let t = &mut m.tables[madts[mi % madts.len()]];
            let entries = madt_entries(&t.bytes);
            if entries.is_empty() {
                return;
            }
            let off = entries[e % entries.len()];
            let ty = t.bytes[off];
            match f {
                EntryField::Len(l) => t.bytes[off + 1] = *l,
                EntryField::Type(x) => t.bytes[off] = *x,
                EntryField::ApicId(id) => match ty {
                    0 if off + 4 <= t.bytes.len() => t.bytes[off + 3] = *id as u8,
                    9 => put_u32(&mut t.bytes, off + 4, *id),
                    _ => {}
                },
                EntryField::Flags(fl) => match ty {
                    0 => put_u32(&mut t.bytes, off + 4, *fl),
                    9 => put_u32(&mut t.bytes, off + 8, *fl),
                    _ => {}
                },
            }
            fix_if(t, *fix);
        }
        Mutation::Pointer { t, slot, p, fix } => {
            let target = |m: &Machine, p: &PtrV| -> u64 {
                match p {
                    PtrV::Raw(r) => *r,
                    PtrV::Null => 0,
                    PtrV::Table(k, off) => m.tables[k % n].addr + u64::from(*off),
                    PtrV::NearEnd(k) => {
                        let tb = &m.tables[k % n];
                        tb.addr + tb.present.saturating_sub(36) as u64
                    }
                    PtrV::AllOnes => u64::MAX,
                    PtrV::Above4G => 0x1_0000_0000,
                }
            };
            let value = target(m, p);
            let t = &mut m.tables[t % n];
            if t.bytes.starts_with(b"RSD PTR ") {
                if slot % 2 == 0 {
                    put_u32(&mut t.bytes, 16, value as u32);
                } else if t.bytes.len() >= 32 {
                    t.bytes[24..32].copy_from_slice(&value.to_le_bytes());
                }
            } else if t.bytes.len() > 36 {
                let size = if t.bytes.starts_with(b"XSDT") { 8 } else { 4 };
                let count = (t.bytes.len() - 36) / size;
                if count > 0 {
                    let at = 36 + (slot % count) * size;
                    t.bytes[at..at + size].copy_from_slice(&value.to_le_bytes()[..size]);
                }
            }
            fix_if(t, *fix);
        }
        Mutation::Revision { v, fix } => {
            let t = &mut m.tables[0];
            if t.bytes.len() > 15 {
                t.bytes[15] = *v;
                if *v >= 2 && t.bytes.len() < 36 {
                    // Grow to the 2.0 layout so the extended fields exist.
                    t.bytes.resize(36, 0);
                    put_u32(&mut t.bytes, 20, 36);
                    t.present = t.bytes.len();
                }
            }
            fix_if(t, *fix);
        }
        Mutation::Insert { t, at, bytes, fix } => {
            let t = &mut m.tables[t % n];
            let i = if t.bytes.len() > 36 {
                36 + at % (t.bytes.len() - 36 + 1)
            } else {
                t.bytes.len()
            };
            let whole = t.present >= t.bytes.len();
            t.bytes.splice(i..i, bytes.iter().copied());
            if whole {
                t.present = t.bytes.len();
            }
            if let Some(f) = header_len_field(t) {
                if !t.bytes.starts_with(b"RSD PTR ") {
                    let n = t.bytes.len() as u32;
                    put_u32(&mut t.bytes, f, n);
                }
            }
            fix_if(t, *fix);
        }
        Mutation::Cut {
            t,
            at,
            n: count,
            fix,
        } => {
            let t = &mut m.tables[t % n];
            if t.bytes.len() > 36 {
                let i = 36 + at % (t.bytes.len() - 36);
                let j = (i + count).min(t.bytes.len());
                t.bytes.drain(i..j);
                t.present = t.present.min(t.bytes.len());
                let n = t.bytes.len() as u32;
                put_u32(&mut t.bytes, 4, n);
            }
            fix_if(t, *fix);
        }
        Mutation::DuplicateEntry { m: mi, e } => {
            let madts = m.with_sig(b"APIC");
            if madts.is_empty() {
                return;
            }
            let t = &mut m.tables[madts[mi % madts.len()]];
            let entries = madt_entries(&t.bytes);
            if entries.is_empty() {
                return;
            }
            let off = entries[e % entries.len()];
            let len = (t.bytes[off + 1] as usize).max(2).min(t.bytes.len() - off);
            let copy = t.bytes[off..off + len].to_vec();
            let whole = t.present >= t.bytes.len();
            t.bytes.extend_from_slice(&copy);
            if whole {
                t.present = t.bytes.len();
            }
            let n = t.bytes.len() as u32;
            put_u32(&mut t.bytes, 4, n);
            fix_table_checksum(&mut t.bytes);
        }
    }
}

// ------------------------------------------------------------------------------------------------
// The properties.

/// Runs every entry point over `machine` and checks the properties. `expect`: the processor ids
/// (BSP first) and usable count a correct parser must produce, when known.
fn check_machine(
    machine: &Machine,
    bsp: u32,
    limit: usize,
    expect: Option<(Vec<u32>, usize)>,
) -> Result<(), TestCaseError> {
    let mem = machine.memory(0);
    let result = smp::processors_from_phys(&mem, machine.rsdp_addr, bsp, limit, Strict);
    let reads = mem.reads();
    let denied = mem.denied();
    check_reads(&mem, &reads)?;
    match &result {
        Ok(list) => check_list(list, bsp, limit)?,
        Err(e) => {
            check_reason(&e.to_string())?;
            if let AcpiError::Unreadable { addr, len } = e {
                prop_assert!(
                    denied.contains(&(*addr, *len)),
                    "Unreadable {{ addr: {addr:#x}, len: {len} }} but no such read was denied: {denied:x?}"
                );
            }
            if let AcpiError::Madt(inner) = e {
                check_reason(&inner.to_string())?;
            }
        }
    }
    if let Some((ids, usable)) = expect {
        let list = result
            .as_ref()
            .map_err(|e| TestCaseError::fail(format!("valid tables rejected: {e}")))?;
        let got: Vec<u32> = list.cpus.iter().map(|p| p.apic_id).collect();
        prop_assert_eq!(got, ids, "processor list");
        prop_assert_eq!(list.usable_count(), usable, "usable count");
    }

    // The same walk through an AcpiHandler and the acpi crate.
    mem.reset();
    // SAFETY: SparseMem's handler returns a readable mapping for any range (open bus outside
    // the given bytes), which is what `processors_from_rsdp` requires.
    let via_crate =
        unsafe { smp::processors_from_rsdp(mem.clone(), machine.rsdp_addr, bsp, limit, Strict) };
    if denied.is_empty() {
        prop_assert_eq!(&via_crate, &result, "the handler path disagrees");
        let outside = mem.outside_maps();
        prop_assert!(
            outside.is_empty(),
            "mapped outside the tables: {outside:x?}"
        );
    } else if let Ok(list) = &via_crate {
        check_list(list, bsp, limit)?;
    }

    // The default policy (warn about a bad checksum, use the table) keeps every property, and
    // agrees with the strict walk whenever it had no checksum to forgive.
    mem.reset();
    let lenient = smp::processors_from_phys(&mem, machine.rsdp_addr, bsp, limit, Warn);
    check_reads(&mem, &mem.reads())?;
    match &lenient {
        Ok(list) => {
            check_list(list, bsp, limit)?;
            for m in &list.checksum_mismatches {
                check_reason(&m.to_string())?;
            }
            if list.checksum_mismatches.is_empty() || result.is_ok() {
                prop_assert_eq!(&lenient, &result, "warn policy where strict found a list");
            }
        }
        Err(e) => check_reason(&e.to_string())?,
    }
    if let (Ok(strict), Err(e)) = (&result, &lenient) {
        return Err(TestCaseError::fail(format!(
            "the strict walk found {strict:?} but the warn policy failed: {e}"
        )));
    }
    Ok(())
}

fn check_reason(text: &str) -> Result<(), TestCaseError> {
    prop_assert!(!text.trim().is_empty(), "an empty reason");
    prop_assert!(
        !text.contains('\n') && !text.contains('\r'),
        "a reason with a line break: {text:?}"
    );
    Ok(())
}

/// No read beyond the parser's caps, and a table's body only at the length its header declares.
fn check_reads(mem: &SparseMem, reads: &[(u64, usize, bool)]) -> Result<(), TestCaseError> {
    for &(addr, len, _) in reads {
        prop_assert!(
            len <= MAX_TABLE_LEN as usize,
            "read of {len:#x} bytes at {addr:#x}: above the table cap"
        );
        if len <= 36 {
            continue; // an RSDP or a header: the first look at anything
        }
        let Some(sig) = mem.slice(addr, 8) else {
            // The start is not there either: a header read would have failed first.
            return Err(TestCaseError::fail(format!(
                "read of {len} bytes at {addr:#x}, where not even a header exists"
            )));
        };
        if sig == b"RSD PTR " {
            let declared = mem.u32_at(addr + 20);
            let revision = mem.slice(addr + 15, 1).map(|b| b[0]);
            prop_assert!(
                revision.is_some_and(|r| r >= 2) && declared == Some(len as u32) && len <= 4096,
                "RSDP read of {len} bytes at {addr:#x} (revision {revision:?}, length field {declared:?})"
            );
        } else {
            let declared = mem.u32_at(addr + 4);
            prop_assert_eq!(
                declared,
                Some(len as u32),
                "a read of {} bytes at {:#x} is not the length its header declares",
                len,
                addr
            );
            if &sig[..4] == b"APIC" {
                prop_assert!(
                    len >= MADT_FIXED_LEN,
                    "a MADT body read below its fixed part"
                );
            }
        }
    }
    Ok(())
}

fn check_list(list: &ProcessorList, bsp: u32, limit: usize) -> Result<(), TestCaseError> {
    prop_assert!(!list.cpus.is_empty());
    prop_assert_eq!(list.bsp, Some(0));
    prop_assert_eq!(list.cpus[0].apic_id, bsp, "BSP first");
    prop_assert_eq!(list.cpus[0].state, ProcessorState::Usable);
    prop_assert!(list.cpus.len() <= limit.max(1), "limit {} exceeded", limit);
    let ids: BTreeSet<u32> = list.cpus.iter().map(|p| p.apic_id).collect();
    prop_assert_eq!(
        ids.len(),
        list.cpus.len(),
        "duplicate APIC ids in {:?}",
        list.cpus
    );
    for p in &list.cpus[1..] {
        prop_assert!(matches!(
            p.state,
            ProcessorState::Usable | ProcessorState::HotPluggable
        ));
        prop_assert!(p.madt_offset.is_some_and(|o| o >= MADT_FIXED_LEN));
        let broadcast = match p.kind {
            smp::EntryKind::XApic => 0xFF,
            smp::EntryKind::X2Apic => u32::MAX,
        };
        prop_assert_ne!(p.apic_id, broadcast);
    }
    prop_assert!(list.rejected.windows(2).all(|w| w[0].offset <= w[1].offset));
    for r in &list.rejected {
        check_reason(&r.reason.to_string())?;
        prop_assert!(!r.reason.short_name().is_empty());
    }
    prop_assert_eq!(list.startable_aps().count(), list.usable_count() - 1);
    for (_, line) in smp::madt::log_lines(list) {
        check_reason(&line)?;
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Strategies.

fn entry_spec() -> impl Strategy<Value = EntrySpec> {
    let id = prop_oneof![
        0u32..16,
        0u32..0x100,
        Just(0xFF),
        Just(u32::MAX),
        any::<u32>()
    ];
    let flags = prop_oneof![Just(1u32), Just(0), Just(2), Just(3), any::<u32>()];
    prop_oneof![
        6 => (any::<bool>(), id, any::<u32>(), flags).prop_map(|(x2, id, uid, flags)| EntrySpec::Proc { x2, id, uid, flags }),
        1 => Just(EntrySpec::IoApic),
        1 => any::<u64>().prop_map(EntrySpec::Override),
        1 => ((2u8..0x80).prop_filter("a processor or override type", |t| *t != 5 && *t != 9), prop::collection::vec(any::<u8>(), 0..20)).prop_map(|(ty, body)| EntrySpec::Other { ty, body }),
    ]
}

fn madt_spec() -> impl Strategy<Value = MadtSpec> {
    (
        prop_oneof![Just(1u8), Just(3), Just(4), Just(5), Just(6), any::<u8>()],
        prop_oneof![Just(0xFEE0_0000u32), any::<u32>()],
        prop::collection::vec(entry_spec(), 0..40),
    )
        .prop_map(|(revision, lapic, entries)| MadtSpec {
            revision,
            lapic,
            entries,
        })
}

fn machine_spec() -> impl Strategy<Value = MachineSpec> {
    (
        prop_oneof![Just(0u8), Just(2), Just(1), Just(3)],
        any::<bool>(),
        any::<bool>(),
        madt_spec(),
        prop::option::weighted(0.2, (madt_spec(), any::<bool>())),
        0u8..3,
        any::<bool>(),
        any::<u16>(),
        any::<bool>(),
        prop::collection::vec(any::<u16>(), 8),
    )
        .prop_map(
            |(
                rsdp_rev,
                rsdt,
                xsdt,
                madt,
                second_madt,
                extra_tables,
                rsdp_in_bios,
                rsdp_jitter,
                high_tables,
                jitter,
            )| {
                MachineSpec {
                    rsdp_rev,
                    rsdt: rsdt || !xsdt,
                    xsdt,
                    madt,
                    second_madt,
                    extra_tables,
                    rsdp_in_bios,
                    rsdp_jitter,
                    high_tables,
                    jitter,
                }
            },
        )
}

fn len_v() -> impl Strategy<Value = LenV> {
    prop_oneof![
        Just(LenV::Zero),
        any::<u8>().prop_map(LenV::Small),
        Just(LenV::HeaderMinus1),
        Just(LenV::Header),
        Just(LenV::MadtFixedMinus1),
        Just(LenV::MadtFixed),
        (-40i16..40).prop_map(LenV::Delta),
        any::<u32>().prop_map(LenV::Huge),
        Just(LenV::CapPlus1),
        Just(LenV::Max),
    ]
}

fn ptr_v() -> impl Strategy<Value = PtrV> {
    prop_oneof![
        any::<u64>().prop_map(PtrV::Raw),
        Just(PtrV::Null),
        (any::<usize>(), prop_oneof![Just(0u8), any::<u8>()]).prop_map(|(k, o)| PtrV::Table(k, o)),
        any::<usize>().prop_map(PtrV::NearEnd),
        Just(PtrV::AllOnes),
        Just(PtrV::Above4G),
    ]
}

fn entry_field() -> impl Strategy<Value = EntryField> {
    prop_oneof![
        prop_oneof![
            Just(0u8),
            Just(1),
            Just(2),
            Just(7),
            Just(8),
            Just(15),
            Just(16),
            Just(255),
            any::<u8>()
        ]
        .prop_map(EntryField::Len),
        prop_oneof![Just(0u8), Just(9), Just(5), any::<u8>()].prop_map(EntryField::Type),
        prop_oneof![
            Just(0u32),
            Just(1),
            Just(0xFF),
            Just(u32::MAX),
            any::<u32>()
        ]
        .prop_map(EntryField::ApicId),
        prop_oneof![Just(0u32), Just(1), Just(2), any::<u32>()].prop_map(EntryField::Flags),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let t = any::<usize>();
    let fix = prop::bool::weighted(0.75);
    prop_oneof![
        3 => (t, len_v(), fix).prop_map(|(t, v, fix)| Mutation::Length { t, v, fix }),
        2 => (t, any::<usize>(), 1u8..=255, fix).prop_map(|(t, at, xor, fix)| Mutation::Byte { t, at, xor, fix }),
        1 => (t, any::<usize>()).prop_map(|(t, keep)| Mutation::Truncate { t, keep }),
        4 => (t, any::<usize>(), entry_field(), fix).prop_map(|(m, e, f, fix)| Mutation::Entry { m, e, f, fix }),
        3 => (t, any::<usize>(), ptr_v(), fix).prop_map(|(t, slot, p, fix)| Mutation::Pointer { t, slot, p, fix }),
        1 => (prop_oneof![Just(0u8), Just(1), Just(2), Just(3), any::<u8>()], fix).prop_map(|(v, fix)| Mutation::Revision { v, fix }),
        1 => (t, any::<usize>(), prop::collection::vec(any::<u8>(), 1..24), fix).prop_map(|(t, at, bytes, fix)| Mutation::Insert { t, at, bytes, fix }),
        1 => (t, any::<usize>(), 1usize..24, fix).prop_map(|(t, at, n, fix)| Mutation::Cut { t, at, n, fix }),
        1 => (t, any::<usize>()).prop_map(|(m, e)| Mutation::DuplicateEntry { m, e }),
    ]
}

fn bsp_and_limit() -> impl Strategy<Value = (u32, usize)> {
    (
        prop_oneof![4 => Just(0u32), 2 => 0u32..8, 1 => Just(0xFF), 1 => any::<u32>()],
        prop_oneof![4 => Just(usize::MAX), 2 => 0usize..10, 1 => 0usize..300],
    )
}

// ------------------------------------------------------------------------------------------------
// Harness plumbing: case counts, the watchdog, the corpus.

/// Cases per property: `FUZZ_CASES` if set, else `default`.
fn cases(default: u32) -> Config {
    let n = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Config {
        cases: n,
        failure_persistence: None,
        // Shrinking is cheap here and gives minimal reproducers.
        max_shrink_iters: 10_000,
        ..Config::default()
    }
}

static WATCHDOG: Mutex<Option<(Instant, String)>> = Mutex::new(None);

/// Marks the start of a case; a case that runs for more than a minute aborts the test process
/// with its description (a hang is a failure, not a stuck CI job).
fn watch(what: impl FnOnce() -> String) {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        std::thread::spawn(|| loop {
            std::thread::sleep(Duration::from_secs(1));
            let w = WATCHDOG.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((t, what)) = w.as_ref() {
                if t.elapsed() > Duration::from_secs(60) {
                    eprintln!("fuzz: a case ran for more than 60 s (a hang): {what}");
                    std::process::abort();
                }
            }
        });
    });
    *WATCHDOG.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), what()));
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz-corpus")
}

/// One corpus entry: a directory of `<hex address>-<signature>.bin` files (the RSDP is the file
/// named `-RSDP`), and `expect.txt` with `cpus=<ids BSP first> usable=<n>`.
#[derive(Clone, Debug)]
struct CorpusEntry {
    name: String,
    machine: Machine,
    expect: Option<(Vec<u32>, usize)>,
}

fn load_corpus() -> Vec<CorpusEntry> {
    let mut out = Vec::new();
    let Ok(dirs) = std::fs::read_dir(corpus_dir()) else {
        return out;
    };
    let mut dirs: Vec<PathBuf> = dirs
        .filter_map(|d| d.ok().map(|d| d.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let mut tables = Vec::new();
        let mut rsdp_addr = None;
        let mut expect = None;
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|f| f.ok().map(|f| f.path()))
            .collect();
        files.sort();
        for f in files {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            if name == "expect.txt" {
                expect = Some(parse_expect(&std::fs::read_to_string(&f).unwrap()));
                continue;
            }
            let Some(stem) = name.strip_suffix(".bin") else {
                continue;
            };
            let (addr, sig) = stem.split_once('-').expect("<hex address>-<signature>.bin");
            let addr = u64::from_str_radix(addr, 16).expect("hex address");
            let bytes = std::fs::read(&f).unwrap();
            let table = Table {
                addr,
                present: bytes.len(),
                bytes,
            };
            if sig == "RSDP" {
                rsdp_addr = Some(addr);
                tables.insert(0, table);
            } else {
                tables.push(table);
            }
        }
        out.push(CorpusEntry {
            name: dir.file_name().unwrap().to_string_lossy().into_owned(),
            machine: Machine {
                rsdp_addr: rsdp_addr.unwrap_or_else(|| panic!("{}: no RSDP file", dir.display())),
                tables,
            },
            expect,
        });
    }
    out
}

fn parse_expect(text: &str) -> (Vec<u32>, usize) {
    let mut ids = Vec::new();
    let mut usable = 0;
    for word in text.split_whitespace() {
        if let Some(v) = word.strip_prefix("cpus=") {
            ids = v.split(',').map(|x| x.parse().unwrap()).collect();
        } else if let Some(v) = word.strip_prefix("usable=") {
            usable = v.parse().unwrap();
        }
    }
    (ids, usable)
}

// ------------------------------------------------------------------------------------------------
// The tests.

/// Every corpus entry (real firmware tables) parses to exactly the processors recorded for it,
/// through both entry points, reading nothing outside its tables.
#[test]
fn corpus_replays() {
    let corpus = load_corpus();
    assert!(
        corpus.len() >= 4,
        "the seed corpus in {} is missing",
        corpus_dir().display()
    );
    for entry in &corpus {
        let expect = entry.expect.clone();
        assert!(expect.is_some(), "{}: no expect.txt", entry.name);
        check_machine(&entry.machine, 0, usize::MAX, expect)
            .unwrap_or_else(|e| panic!("corpus entry {}: {e}", entry.name));
        let mem = entry.machine.memory(0);
        let list = smp::processors_from_phys(&mem, entry.machine.rsdp_addr, 0, usize::MAX, Strict)
            .unwrap();
        assert!(
            mem.denied().is_empty(),
            "{}: a read outside the tables: {:x?}",
            entry.name,
            mem.denied()
        );
        assert!(
            list.rejected.is_empty() || entry.name.contains("maxcpus"),
            "{}: {:?}",
            entry.name,
            list.rejected
        );
        // Where the RSDP is in the BIOS area, the scan finds it too.
        if (0xE_0000..0x10_0000).contains(&entry.machine.rsdp_addr) {
            let mut b = MemBuilder::default();
            b.put(0xE_0000, &[0u8; 0x2_0000]);
            for t in &entry.machine.tables {
                b.put(t.addr, &t.bytes);
            }
            let mem = b.build(10_000);
            assert_eq!(
                smp::find_rsdp(&mem),
                Some(entry.machine.rsdp_addr),
                "{}",
                entry.name
            );
        }
    }
}

/// Generated machines, unmutated: the result equals the model of the rules.
#[test]
fn fuzz_generated_valid_tables() {
    proptest!(cases(5000), |(spec in machine_spec(), (bsp, limit) in bsp_and_limit())| {
        watch(|| format!("{spec:?} bsp={bsp} limit={limit}"));
        let machine = spec.build();
        let expect = spec.effective_madt().map(|m| m.expected(bsp, limit));
        check_machine(&machine, bsp, limit, expect)?;
    });
}

/// Generated machines with up to 6 mutations each.
#[test]
fn fuzz_mutated_generated_tables() {
    proptest!(cases(20000), |(spec in machine_spec(), muts in prop::collection::vec(mutation(), 1..7), (bsp, limit) in bsp_and_limit())| {
        watch(|| format!("{spec:?} {muts:?} bsp={bsp} limit={limit}"));
        let mut machine = spec.build();
        for m in &muts {
            apply(&mut machine, m);
        }
        check_machine(&machine, bsp, limit, None)?;
    });
}

/// The real QEMU and Bochs tables with up to 6 mutations each.
#[test]
fn fuzz_mutated_corpus() {
    let corpus = load_corpus();
    assert!(!corpus.is_empty(), "no seed corpus");
    proptest!(cases(20000), |(k in any::<usize>(), muts in prop::collection::vec(mutation(), 1..7), (bsp, limit) in bsp_and_limit())| {
        let entry = &corpus[k % corpus.len()];
        watch(|| format!("{} {muts:?} bsp={bsp} limit={limit}", entry.name));
        let mut machine = entry.machine.clone();
        for m in &muts {
            apply(&mut machine, m);
        }
        check_machine(&machine, bsp, limit, None)?;
    });
}

/// `parse_madt` on arbitrary bytes (mostly with a valid signature and checksum, so that the
/// entry walk is reached).
#[test]
fn fuzz_parse_madt_raw_bytes() {
    proptest!(cases(20000), |(mut bytes in prop::collection::vec(any::<u8>(), 0..400), sig in any::<bool>(), fix_len in any::<bool>(), fix_sum in any::<bool>(), (bsp, limit) in bsp_and_limit())| {
        watch(|| format!("{bytes:x?}"));
        if sig && bytes.len() >= 4 {
            bytes[..4].copy_from_slice(b"APIC");
        }
        if fix_len && bytes.len() >= 8 {
            let n = bytes.len() as u32;
            bytes[4..8].copy_from_slice(&n.to_le_bytes());
        }
        if fix_sum {
            fix_table_checksum(&mut bytes);
        }
        match parse_madt(&bytes, bsp, limit) {
            Ok(list) => check_list(&list, bsp, limit)?,
            Err(e) => check_reason(&e.to_string())?,
        }
    });
}

/// `find_rsdp` over BIOS areas holding valid, corrupted and misplaced RSDPs, with holes.
#[test]
fn fuzz_find_rsdp() {
    let candidate = (
        0u64..0x2_0000,
        prop_oneof![Just(0u8), Just(2), any::<u8>()],
        prop::option::of((any::<usize>(), 1u8..=255)),
        any::<bool>(),
    );
    proptest!(cases(1000), |(ebda_seg in prop_oneof![Just(0x9FC0u16), any::<u16>()], cands in prop::collection::vec(candidate, 0..6), holes in prop::collection::vec((0u64..0x2_0000, 1u64..0x800), 0..3), len in prop_oneof![Just(36u32), any::<u32>()])| {
        watch(|| format!("{ebda_seg:x} {cands:?} {holes:?}"));
        let mut b = MemBuilder::default();
        b.put(0, &vec![0u8; 0x1000]);
        b.put(0x40E, &ebda_seg.to_le_bytes());
        b.put(0x8_0000, &vec![0u8; 0x2_0000]);
        // The BIOS area, with holes (unreadable chunks are skipped by the scan).
        let mut start = 0xE_0000u64;
        let mut holes = holes.clone();
        holes.sort();
        for (h, n) in holes {
            let h = 0xE_0000 + h;
            if h > start {
                b.put(start, &vec![0u8; (h - start) as usize]);
            }
            start = start.max(h + n);
        }
        if start < 0x10_0000 {
            b.put(start, &vec![0u8; (0x10_0000 - start) as usize]);
        }
        for (off, rev, corrupt, aligned) in &cands {
            let addr = if *aligned { 0xE_0000 + (off & !15) } else { 0x9_FC00 + off % 0x800 };
            let mut r = rsdp(*rev, 0x1000, 0x2000);
            if *rev >= 2 {
                r[20..24].copy_from_slice(&len.to_le_bytes());
                fix_table_checksum(&mut r);
            }
            if let Some((at, x)) = corrupt {
                let i = at % r.len();
                r[i] ^= x;
            }
            b.put(addr, &r);
        }
        let mem = b.build(200 + 3 * (0x2_0000 / 16 + 0x400 / 16) * 2);
        if let Some(a) = smp::find_rsdp(&mem) {
            prop_assert_eq!(a % 16, 0);
            let ebda = u64::from(ebda_seg) << 4;
            prop_assert!((0xE_0000..0x10_0000).contains(&a) || (ebda..ebda + 1024).contains(&a), "found at {:#x}", a);
            prop_assert!(smp::acpi_tables::validate_rsdp(&mem, a).is_ok());
        }
        check_reads_find(&mem)?;
    });
}

fn check_reads_find(mem: &SparseMem) -> Result<(), TestCaseError> {
    for (addr, len, _) in mem.reads() {
        prop_assert!(
            len <= 4096,
            "read of {len} bytes at {addr:#x} while searching for the RSDP"
        );
    }
    Ok(())
}
