//! Fuzzing the loader hand-off parsers ([`boot::multiboot2::parse`], [`boot::pvh::parse`]) with
//! structure-aware inputs, on stable Rust.
//!
//! Valid hand-offs (GRUB-like multiboot2 information with command line, loader name, memory map
//! and ACPI tags; QEMU-like PVH `hvm_start_info` with command line and memory map) are generated,
//! then mutated: sizes, tag types and sizes, mmap entry sizes, counts, pointers, magic, version,
//! truncation, placement near the end of the address space. The fake physical memory holds only
//! the bytes of the hand-off; every other read is denied and recorded.
//!
//! Properties: no panic; the parse ends within a read budget; every error has a non-empty reason;
//! multiboot2 reads nothing outside `[info, info + total_size)` (after reading `total_size`
//! itself), PVH nothing outside the `start_info` structure, the command line and the memory-map
//! entries it declares; an `Unreadable` error names a read that really was denied; an accepted
//! hand-off has usable memory, at most `MAX_REGIONS` regions, an RSDP that lies inside the
//! structure (multiboot2) and loader data covering the structure.
//!
//! `cargo test -p boot --test fuzz_handoff` runs a bounded number of cases; `FUZZ_CASES=<n>` runs
//! n per property (docs/reliability.md).

use std::cell::RefCell;

use boot::{BootInfo, HandoffError, PhysMem, RegionKind, MAX_REGIONS};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};

/// Memory made of a few runs of bytes; reads inside one run are granted, others denied.
struct FakeMem {
    runs: Vec<(u64, Vec<u8>)>,
    reads: RefCell<Vec<(u64, usize, bool)>>,
    budget: usize,
}

impl FakeMem {
    fn new(runs: Vec<(u64, Vec<u8>)>, budget: usize) -> Self {
        FakeMem {
            runs,
            reads: RefCell::new(Vec::new()),
            budget,
        }
    }

    fn slice(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let end = addr.checked_add(len as u64)?;
        self.runs.iter().find_map(|(base, bytes)| {
            let run_end = base.checked_add(bytes.len() as u64)?;
            (addr >= *base && end <= run_end).then(|| {
                let off = (addr - base) as usize;
                &bytes[off..off + len]
            })
        })
    }

    fn denied(&self) -> Vec<u64> {
        self.reads
            .borrow()
            .iter()
            .filter(|r| !r.2)
            .map(|r| r.0)
            .collect()
    }
}

impl PhysMem for FakeMem {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> bool {
        let granted = match self.slice(paddr, buf.len()) {
            Some(src) => {
                buf.copy_from_slice(src);
                true
            }
            None => false,
        };
        let mut reads = self.reads.borrow_mut();
        reads.push((paddr, buf.len(), granted));
        assert!(
            reads.len() <= self.budget,
            "read budget of {} exceeded: the parse does not terminate",
            self.budget
        );
        granted
    }
}

fn cases(default: u32) -> Config {
    let n = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Config {
        cases: n,
        failure_persistence: None,
        ..Config::default()
    }
}

fn check_reason(e: &HandoffError) -> Result<(), TestCaseError> {
    let text = e.to_string();
    prop_assert!(!text.trim().is_empty(), "empty reason for {e:?}");
    prop_assert!(!text.contains('\n'), "line break in {text:?}");
    Ok(())
}

fn check_unreadable(e: &HandoffError, mem: &FakeMem) -> Result<(), TestCaseError> {
    if let HandoffError::Unreadable { paddr } = e {
        // The error names the field or the 24-byte memory-map entry whose read failed.
        let denied = mem.denied();
        prop_assert!(
            denied.iter().any(|d| (*paddr..paddr.saturating_add(24)).contains(d))
                // or a structure that would run off the end of the address space, refused unread
                || *paddr > u64::MAX - 0x1000,
            "Unreadable {{ paddr: {paddr:#x} }} but the denied reads were {denied:x?}"
        );
    }
    Ok(())
}

fn check_info(info: &BootInfo) -> Result<(), TestCaseError> {
    prop_assert!(info.regions().len() <= MAX_REGIONS);
    prop_assert!(info.usable_bytes() > 0);
    prop_assert!(info.regions().iter().all(|r| r.len > 0));
    prop_assert!(info.cmdline().len() <= boot::MAX_CMDLINE);
    prop_assert!(!info.cmdline().contains('\0'));
    prop_assert!(info.loader_data.0 <= info.loader_data.1);
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Multiboot2.

const TAG_END: u32 = 0;
const TAG_CMDLINE: u32 = 1;
const TAG_LOADER: u32 = 2;
const TAG_MMAP: u32 = 6;
const TAG_ACPI_OLD: u32 = 14;
const TAG_ACPI_NEW: u32 = 15;

#[derive(Clone, Debug)]
enum Tag {
    Cmdline(Vec<u8>),
    Loader(Vec<u8>),
    Mmap {
        entry_size: u32,
        entries: Vec<(u64, u64, u32)>,
    },
    Acpi {
        new: bool,
        len: usize,
    },
    Other {
        kind: u32,
        body: Vec<u8>,
    },
}

fn tag_bytes(kind: u32, body: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&kind.to_le_bytes());
    t.extend_from_slice(&(8 + body.len() as u32).to_le_bytes());
    t.extend_from_slice(body);
    while t.len() % 8 != 0 {
        t.push(0);
    }
    t
}

fn build_mbi(tags: &[Tag], end_tag: bool) -> Vec<u8> {
    let mut b = vec![0u8; 8];
    for tag in tags {
        b.extend(match tag {
            Tag::Cmdline(s) => tag_bytes(TAG_CMDLINE, s),
            Tag::Loader(s) => tag_bytes(TAG_LOADER, s),
            Tag::Mmap {
                entry_size,
                entries,
            } => {
                let mut body = Vec::new();
                body.extend_from_slice(&entry_size.to_le_bytes());
                body.extend_from_slice(&0u32.to_le_bytes());
                for &(start, len, ty) in entries {
                    let mut e = Vec::new();
                    e.extend_from_slice(&start.to_le_bytes());
                    e.extend_from_slice(&len.to_le_bytes());
                    e.extend_from_slice(&ty.to_le_bytes());
                    e.resize((*entry_size as usize).max(20), 0);
                    body.extend_from_slice(&e);
                }
                tag_bytes(TAG_MMAP, &body)
            }
            Tag::Acpi { new, len } => {
                let mut body = b"RSD PTR ".to_vec();
                body.resize((*len).max(8), 0);
                tag_bytes(if *new { TAG_ACPI_NEW } else { TAG_ACPI_OLD }, &body)
            }
            Tag::Other { kind, body } => tag_bytes(*kind, body),
        });
    }
    if end_tag {
        b.extend(tag_bytes(TAG_END, &[]));
    }
    let total = b.len() as u32;
    b[..4].copy_from_slice(&total.to_le_bytes());
    b
}

#[derive(Clone, Debug)]
enum MbMutation {
    Total(u32),
    TotalDelta(i16),
    TagSize {
        tag: usize,
        size: u32,
    },
    TagType {
        tag: usize,
        kind: u32,
    },
    EntrySize(u32),
    Byte {
        at: usize,
        xor: u8,
    },
    /// Only this many bytes of the structure exist in memory.
    Truncate(usize),
}

/// Offsets of the tag headers (walking the sizes as they are now).
fn tag_offsets(b: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut off = 8;
    while off + 8 <= b.len() {
        out.push(off);
        let size = u32::from_le_bytes(b[off + 4..off + 8].try_into().unwrap()) as usize;
        if size < 8 {
            break;
        }
        off += size.next_multiple_of(8);
    }
    out
}

fn apply_mb(b: &mut Vec<u8>, present: &mut usize, m: &MbMutation) {
    let put = |b: &mut Vec<u8>, at: usize, v: u32| {
        if at + 4 <= b.len() {
            b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
    };
    match m {
        MbMutation::Total(v) => put(b, 0, *v),
        MbMutation::TotalDelta(d) => {
            let v = (b.len() as i64 + i64::from(*d)).max(0) as u32;
            put(b, 0, v);
        }
        MbMutation::TagSize { tag, size } => {
            let offs = tag_offsets(b);
            if !offs.is_empty() {
                put(b, offs[tag % offs.len()] + 4, *size);
            }
        }
        MbMutation::TagType { tag, kind } => {
            let offs = tag_offsets(b);
            if !offs.is_empty() {
                put(b, offs[tag % offs.len()], *kind);
            }
        }
        MbMutation::EntrySize(v) => {
            let offs = tag_offsets(b);
            if let Some(&o) = offs
                .iter()
                .find(|&&o| u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) == TAG_MMAP)
            {
                put(b, o + 8, *v);
            }
        }
        MbMutation::Byte { at, xor } => {
            let i = at % b.len();
            b[i] ^= xor;
        }
        MbMutation::Truncate(n) => *present = (*present).min(n % (b.len() + 1)),
    }
}

fn tag() -> impl Strategy<Value = Tag> {
    let text = prop::collection::vec(prop_oneof![4 => 0x20u8..0x7F, 1 => any::<u8>()], 0..700);
    let entry = (
        prop_oneof![Just(0u64), Just(0x10_0000), any::<u64>()],
        prop_oneof![Just(0x1000u64), Just(0x1FF0_0000), any::<u64>()],
        prop_oneof![Just(1u32), Just(2), Just(3), Just(4), any::<u32>()],
    );
    prop_oneof![
        2 => text.clone().prop_map(Tag::Cmdline),
        1 => text.prop_map(Tag::Loader),
        3 => (prop_oneof![Just(24u32), Just(20), 24u32..64], prop::collection::vec(entry, 0..160))
            .prop_map(|(entry_size, entries)| Tag::Mmap { entry_size, entries }),
        1 => (any::<bool>(), 0usize..48).prop_map(|(new, len)| Tag::Acpi { new, len }),
        1 => (prop_oneof![Just(4u32), Just(8), Just(21), any::<u32>()], prop::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(kind, body)| Tag::Other { kind, body }),
    ]
}

fn mb_mutation() -> impl Strategy<Value = MbMutation> {
    prop_oneof![
        prop_oneof![
            Just(0u32),
            Just(8),
            Just(15),
            Just(16),
            Just(1 << 20),
            Just((1 << 20) + 1),
            Just(u32::MAX),
            any::<u32>()
        ]
        .prop_map(MbMutation::Total),
        (-64i16..64).prop_map(MbMutation::TotalDelta),
        (
            any::<usize>(),
            prop_oneof![
                Just(0u32),
                Just(7),
                Just(8),
                Just(12),
                Just(16),
                Just(u32::MAX),
                Just(u32::MAX - 7),
                any::<u32>()
            ]
        )
            .prop_map(|(tag, size)| MbMutation::TagSize { tag, size }),
        (
            any::<usize>(),
            prop_oneof![
                Just(0u32),
                Just(1),
                Just(6),
                Just(14),
                Just(15),
                any::<u32>()
            ]
        )
            .prop_map(|(tag, kind)| MbMutation::TagType { tag, kind }),
        prop_oneof![
            Just(0u32),
            Just(1),
            Just(23),
            Just(24),
            Just(u32::MAX),
            any::<u32>()
        ]
        .prop_map(MbMutation::EntrySize),
        (any::<usize>(), 1u8..=255).prop_map(|(at, xor)| MbMutation::Byte { at, xor }),
        any::<usize>().prop_map(MbMutation::Truncate),
    ]
}

fn base_addr() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => (0x1000u64..0x10_0000).prop_map(|a| a & !7),
        1 => Just(0xFFFF_F000u64),
        1 => Just(u64::MAX - 0xFFF),
        1 => Just(u64::MAX - 0x7),
        1 => any::<u64>().prop_map(|a| a & !7),
    ]
}

fn check_multiboot2(b: &[u8], present: usize, base: u64) -> Result<(), TestCaseError> {
    let bytes = b[..present.min(b.len())].to_vec();
    let mem = FakeMem::new(vec![(base, bytes)], 64 + b.len());
    let result = boot::multiboot2::parse(&mem, base);
    let reads = mem.reads.borrow().clone();
    // After `total_size` itself, nothing outside [info, info + total_size).
    if let Some(&(a, 4, true)) = reads.first() {
        prop_assert_eq!(a, base);
        let total = mem
            .slice(base, 4)
            .map(|t| u32::from_le_bytes(t.try_into().unwrap()));
        let total = u64::from(total.unwrap());
        for &(addr, len, _) in &reads[1..] {
            let end = addr.checked_add(len as u64);
            prop_assert!(
                addr >= base && end.is_some_and(|e| e <= base.saturating_add(total)),
                "read [{:#x}, +{}) outside the structure [{:#x}, +{})",
                addr,
                len,
                base,
                total
            );
        }
    }
    match &result {
        Ok(info) => {
            check_info(info)?;
            let total = u64::from(u32::from_le_bytes(b[..4].try_into().unwrap()));
            prop_assert_eq!(info.loader_data, (base, base + total));
            if let Some(r) = info.rsdp {
                prop_assert!(
                    r >= base + 16 && r + 20 <= base + total,
                    "rsdp {:#x} outside the structure",
                    r
                );
            }
        }
        Err(e) => {
            check_reason(e)?;
            check_unreadable(e, &mem)?;
        }
    }
    Ok(())
}

/// Unmutated GRUB-like information is accepted, with every region and the command line.
#[test]
fn fuzz_multiboot2_valid() {
    proptest!(cases(2000), |(tags in prop::collection::vec(tag(), 0..8), base in (0x1000u64..0x10_0000).prop_map(|a| a & !7))| {
        let b = build_mbi(&tags, true);
        check_multiboot2(&b, b.len(), base)?;
        let mem = FakeMem::new(vec![(base, b.clone())], 64 + b.len());
        let has_mmap = tags.iter().any(|t| matches!(t, Tag::Mmap { .. }));
        let ok_entry_sizes = tags.iter().all(|t| !matches!(t, Tag::Mmap { entry_size, .. } if *entry_size < 24));
        let result = boot::multiboot2::parse(&mem, base);
        if !has_mmap {
            prop_assert_eq!(result.unwrap_err(), HandoffError::NoMemoryMap);
        } else if ok_entry_sizes {
            let usable: u64 = tags.iter().filter_map(|t| match t { Tag::Mmap { entries, .. } => Some(entries), _ => None })
                .flatten().filter(|e| e.2 == 1).fold(0u64, |s, e| s.wrapping_add(e.1));
            match result {
                Ok(info) => {
                    if let Some(Tag::Cmdline(c)) = tags.iter().rev().find(|t| matches!(t, Tag::Cmdline(_))) {
                        let text = c.split(|&x| x == 0).next().unwrap();
                        prop_assert!(text.starts_with(info.cmdline().as_bytes()));
                    }
                    prop_assert!(info.regions().iter().all(|r| r.kind != RegionKind::Usable || r.len > 0));
                }
                Err(HandoffError::NoUsableMemory) => {
                    prop_assert!(info_without_usable(&tags) || usable == 0);
                }
                Err(e) => prop_assert!(false, "valid information rejected: {e}"),
            }
        }
    });
}

/// True when every usable region is empty or beyond the 128 regions kept.
fn info_without_usable(tags: &[Tag]) -> bool {
    let all: Vec<&(u64, u64, u32)> = tags
        .iter()
        .filter_map(|t| match t {
            Tag::Mmap { entries, .. } => Some(entries),
            _ => None,
        })
        .flatten()
        .filter(|e| e.1 != 0)
        .collect();
    all.iter().take(MAX_REGIONS).all(|e| e.2 != 1)
        || all
            .iter()
            .take(MAX_REGIONS)
            .filter(|e| e.2 == 1)
            .fold(0u64, |s, e| s.wrapping_add(e.1))
            == 0
}

#[test]
fn fuzz_multiboot2_mutated() {
    proptest!(cases(8000), |(tags in prop::collection::vec(tag(), 0..8), end in prop::bool::weighted(0.9), muts in prop::collection::vec(mb_mutation(), 1..5), base in base_addr())| {
        let mut b = build_mbi(&tags, end);
        let mut present = b.len();
        for m in &muts {
            apply_mb(&mut b, &mut present, m);
        }
        check_multiboot2(&b, present, base)?;
    });
}

// ------------------------------------------------------------------------------------------------
// PVH.

const START_INFO_MAGIC: u32 = 0x336E_C578;

#[derive(Clone, Debug)]
struct Pvh {
    magic: u32,
    version: u32,
    info: u64,
    cmdline: Option<(u64, Vec<u8>)>,
    rsdp: u64,
    map: u64,
    entries: Vec<(u64, u64, u32)>,
    /// The `memmap_entries` field (normally `entries.len()`).
    count: Option<u32>,
    /// Bytes of the memory map that exist.
    map_present: Option<usize>,
    info_present: usize,
}

fn pvh() -> impl Strategy<Value = Pvh> {
    let entry = (
        prop_oneof![Just(0u64), Just(0x10_0000), any::<u64>()],
        prop_oneof![Just(0x1000u64), Just(0x1FF0_0000), any::<u64>()],
        prop_oneof![4 => Just(1u32), 1 => Just(2), 1 => any::<u32>()],
    );
    (
        prop_oneof![8 => Just(START_INFO_MAGIC), 1 => any::<u32>()],
        prop_oneof![6 => Just(1u32), 1 => Just(0), 1 => any::<u32>()],
        prop_oneof![4 => Just(0x6000u64), 1 => Just(0xFFFF_FFC8), 1 => Just(u64::MAX - 55), 1 => any::<u64>()],
        prop::option::of((
            prop_oneof![Just(0x7000u64), Just(u64::MAX - 10), Just(0xFFFF_FFFF), any::<u64>()],
            prop::collection::vec(any::<u8>(), 0..700),
        )),
        any::<u64>(),
        prop_oneof![4 => Just(0x8000u64), 1 => Just(0), 1 => Just(u64::MAX - 23), 1 => any::<u64>()],
        prop::collection::vec(entry, 0..200),
        prop::option::weighted(0.3, prop_oneof![Just(0u32), Just(4096), Just(4097), Just(u32::MAX), any::<u32>()]),
        prop::option::weighted(0.2, any::<usize>()),
        prop_oneof![6 => Just(56usize), 1 => 0usize..56],
    )
        .prop_map(
            |(magic, version, info, cmdline, rsdp, map, entries, count, map_present, info_present)| Pvh {
                magic,
                version,
                info,
                cmdline,
                rsdp,
                map,
                entries,
                count,
                map_present,
                info_present,
            },
        )
}

#[test]
fn fuzz_pvh() {
    proptest!(cases(8000), |(p in pvh())| {
        let mut si = Vec::new();
        si.extend_from_slice(&p.magic.to_le_bytes());
        si.extend_from_slice(&p.version.to_le_bytes());
        si.extend_from_slice(&[0; 16]); // flags, nr_modules, modlist_paddr
        si.extend_from_slice(&p.cmdline.as_ref().map_or(0, |c| c.0).to_le_bytes());
        si.extend_from_slice(&p.rsdp.to_le_bytes());
        si.extend_from_slice(&p.map.to_le_bytes());
        let count = p.count.unwrap_or(p.entries.len() as u32);
        si.extend_from_slice(&count.to_le_bytes());
        si.extend_from_slice(&0u32.to_le_bytes());
        si.truncate(p.info_present);
        let mut map = Vec::new();
        for &(s, l, t) in &p.entries {
            map.extend_from_slice(&s.to_le_bytes());
            map.extend_from_slice(&l.to_le_bytes());
            map.extend_from_slice(&t.to_le_bytes());
            map.extend_from_slice(&0u32.to_le_bytes());
        }
        if let Some(n) = p.map_present {
            map.truncate(n % (map.len() + 1));
        }
        let mut runs = vec![(p.info, si)];
        if let Some((addr, text)) = &p.cmdline {
            runs.push((*addr, text.clone()));
        }
        runs.push((p.map, map));
        let mem = FakeMem::new(runs, 64 + 3 * 4096 + 64);
        let result = boot::pvh::parse(&mem, p.info);
        // Reads stay inside start_info, the command line buffer and the declared memory map.
        let cmdline_at = p.cmdline.as_ref().map(|c| c.0);
        let map_len = 24 * u64::from(count.min(4096));
        for &(addr, len, _) in mem.reads.borrow().iter() {
            let within = |start: u64, n: u64| {
                addr >= start && u128::from(addr) + len as u128 <= u128::from(start) + u128::from(n)
            };
            prop_assert!(
                within(p.info, 56)
                    || cmdline_at.is_some_and(|c| within(c, boot::MAX_CMDLINE as u64 + 1))
                    || within(p.map, map_len),
                "read [{:#x}, +{}) outside start_info, the command line and the map", addr, len
            );
        }
        match &result {
            Ok(info) => {
                check_info(info)?;
                prop_assert_eq!(info.rsdp, (p.rsdp != 0).then_some(p.rsdp));
                prop_assert_eq!(info.loader_data.0, p.info);
            }
            Err(e) => {
                check_reason(e)?;
                check_unreadable(e, &mem)?;
            }
        }
    });
}
