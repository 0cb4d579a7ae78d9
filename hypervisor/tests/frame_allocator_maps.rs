//! The frame allocator against the real memory maps QEMU and Bochs hand over.
//!
//! `tests/data/memory-maps/*.log` are the `boot:` lines of `log=debug` boots (`cargo run --
//! --backend qemu --smp 1 --append "vmx=off log=debug"` with `--machine q35|pc`, `--boot iso`,
//! `--uefi`, `--memory 5120`, and `--backend bochs`): the loader, the `boot: region` lines and the
//! RSDP the loader passed. For each map the allocator is built as the kernel builds it
//! (`FrameAllocator::new(regions, &[image, loader data])`) and then drained completely with a mix
//! of sizes and alignments (the kernel's stacks, IST stacks, PCBs, VMXON/VMCS regions, page
//! tables, heap chunks). Every allocation must be aligned, inside one usable region, at or above
//! 1 MiB (the first MiB is firmware's and the AP trampoline's), below 4 GiB (the identity map),
//! and must not touch the image, the loader's data, any ACPI/reserved/NVS region, the trampoline
//! page or another allocation; and once exhausted, everything that was free was handed out.
//!
//! The loader's data is placed where the recorded boot had it (multiboot2: the information
//! structure around the RSDP copy GRUB put in it; PVH: QEMU's `start_info` below 1 MiB) and also
//! swept over every region boundary and the image's edges, since a different loader or firmware
//! puts it elsewhere.

use std::path::Path;

use boot::{Region, RegionKind};
use hypervisor::memory::{FrameAllocator, ALLOC_CEILING, ALLOC_FLOOR, PAGE_SIZE};

/// The image's physical range (`__image_start`..`__image_end` of the release image is
/// 0x200000..0x23e000 today; one more MiB of headroom for growth).
const IMAGE: (u64, u64) = (0x20_0000, 0x34_0000);

struct Map {
    name: String,
    regions: Vec<Region>,
    rsdp: Option<u64>,
    multiboot2: bool,
}

fn kind(word: &str) -> RegionKind {
    match word {
        "Usable" => RegionKind::Usable,
        "Reserved" => RegionKind::Reserved,
        "AcpiReclaimable" => RegionKind::AcpiReclaimable,
        "AcpiNvs" => RegionKind::AcpiNvs,
        "Defective" => RegionKind::Defective,
        other => panic!("unknown region kind {other}"),
    }
}

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
}

fn load_maps() -> Vec<Map> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/memory-maps");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let mut regions = Vec::new();
            let mut rsdp = None;
            let mut multiboot2 = false;
            for line in text.lines() {
                if let Some(rest) = line.split("boot: region ").nth(1) {
                    let (range, k) = rest.split_once(' ').unwrap();
                    let (s, e) = range.split_once('-').unwrap();
                    let (s, e) = (hex(s), hex(e));
                    regions.push(Region {
                        start: s,
                        len: e - s,
                        kind: kind(k.trim()),
                    });
                } else if let Some(rest) = line.split("boot: rsdp=").nth(1) {
                    rsdp = Some(hex(rest.split_whitespace().next().unwrap()));
                } else if line.contains("boot: loader=multiboot2") {
                    multiboot2 = true;
                }
            }
            assert!(!regions.is_empty(), "{}: no regions", path.display());
            Map {
                name: path.file_stem().unwrap().to_string_lossy().into_owned(),
                regions,
                rsdp,
                multiboot2,
            }
        })
        .collect()
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// Where the loader's data may be: the recorded place, then a sweep over region boundaries and
/// the image's edges.
fn loader_placements(map: &Map) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    match (map.multiboot2, map.rsdp) {
        // GRUB's information structure (~1.5 KiB here) holds the RSDP copy near its end.
        (true, Some(r)) => out.push((r.saturating_sub(0x600), r + 0x100)),
        // QEMU's PVH start_info and memory map, below 1 MiB.
        _ => out.push((0x6000, 0x6100)),
    }
    for r in map.regions.iter().filter(|r| r.kind == RegionKind::Usable) {
        for edge in [r.start, r.end()] {
            if (ALLOC_FLOOR..=ALLOC_CEILING).contains(&edge) {
                out.push((edge.saturating_sub(0x800), edge + 0x2_0800));
            }
        }
    }
    out.push((IMAGE.1, IMAGE.1 + 0x1800));
    out.push((IMAGE.0 - 0x1000, IMAGE.0 + 0x10));
    out.push((0x10_0000, 0x10_0001));
    out
}

/// The kernel's allocation shapes (pages, alignment): AP stack + guard, IST stack, PCB, VMXON and
/// VMCS regions, a page table, a 64 KiB heap chunk.
const KERNEL_PATTERN: &[(u64, u64)] = &[
    (17, PAGE_SIZE),
    (4, PAGE_SIZE),
    (1, PAGE_SIZE),
    (1, PAGE_SIZE),
    (1, PAGE_SIZE),
    (16, PAGE_SIZE),
];

/// Shapes with large alignments, which split free ranges and fragment the free list until the
/// allocator's range table is full (it then drops ranges: memory lost, never handed out twice).
const FRAGMENTING_PATTERN: &[(u64, u64)] = &[
    (17, PAGE_SIZE),
    (1, PAGE_SIZE),
    (3, 0x1_0000),
    (5, 0x8000),
    (512, 0x20_0000),
];

fn drain(map: &Map, loader: (u64, u64), pattern: &[(u64, u64)]) {
    let ctx = format!("{} with loader data {loader:#x?}", map.name);
    let mut fa = FrameAllocator::new(&map.regions, &[IMAGE, loader]);
    let free = fa.free_bytes();
    assert!(free > 16 << 20, "{ctx}: only {free} bytes free");
    let trampoline = smp::trampoline::pick_trampoline_page(
        map.regions
            .iter()
            .map(|r| (r.start, r.len, r.kind == RegionKind::Usable)),
        &[loader],
    );
    let forbidden: Vec<(u64, u64, String)> = map
        .regions
        .iter()
        .filter(|r| r.kind != RegionKind::Usable)
        .map(|r| (r.start, r.end(), format!("{:?} region", r.kind)))
        .chain([
            (IMAGE.0, IMAGE.1, "the image".to_string()),
            (loader.0, loader.1, "the loader's data".to_string()),
            (0, ALLOC_FLOOR, "the first MiB".to_string()),
        ])
        .chain(trampoline.map(|t| (t, t + PAGE_SIZE, "the trampoline page".to_string())))
        .collect();

    let mut got: Vec<(u64, u64)> = Vec::new();
    let mut take = |fa: &mut FrameAllocator, pages: u64, align: u64| -> bool {
        let Some(a) = fa.alloc(pages, align) else {
            return false;
        };
        let range = (a, a + pages * PAGE_SIZE);
        assert_eq!(a % align, 0, "{ctx}: {range:#x?} not aligned to {align:#x}");
        assert!(
            range.1 <= ALLOC_CEILING,
            "{ctx}: {range:#x?} above the 4 GiB identity map"
        );
        assert!(
            map.regions
                .iter()
                .any(|r| r.kind == RegionKind::Usable && r.start <= range.0 && range.1 <= r.end()),
            "{ctx}: {range:#x?} is not inside one usable region"
        );
        for (s, e, what) in &forbidden {
            assert!(
                !overlaps(range, (*s, *e)),
                "{ctx}: {range:#x?} overlaps {what} {s:#x}-{e:#x}"
            );
        }
        got.push(range);
        true
    };
    // The kernel's shapes until one no longer fits, then whatever is left in big and small pieces.
    'pattern: loop {
        for &(pages, align) in pattern {
            if !take(&mut fa, pages, align) {
                break 'pattern;
            }
        }
    }
    while take(&mut fa, 4096, PAGE_SIZE) {}
    while take(&mut fa, 64, PAGE_SIZE) {}
    while take(&mut fa, 1, PAGE_SIZE) {}
    if pattern == KERNEL_PATTERN {
        assert_eq!(
            fa.free_bytes(),
            0,
            "{ctx}: free memory left after exhaustion"
        );
    }
    got.sort_unstable();
    for w in got.windows(2) {
        assert!(
            w[0].1 <= w[1].0,
            "{ctx}: allocations {:#x?} and {:#x?} overlap",
            w[0],
            w[1]
        );
    }
    let total: u64 = got.iter().map(|r| r.1 - r.0).sum();
    assert_eq!(fa.allocated_bytes, total);
    if pattern == KERNEL_PATTERN {
        // Page-aligned allocations never split a range: every free byte is handed out.
        assert_eq!(
            total, free,
            "{ctx}: handed out {total:#x} of {free:#x} free bytes"
        );
    } else {
        assert!(total <= free, "{ctx}: handed out more than was free");
    }
}

#[test]
fn real_memory_maps_never_hand_out_reserved_memory() {
    let maps = load_maps();
    let names: Vec<&str> = maps.iter().map(|m| m.name.as_str()).collect();
    for want in [
        "bochs-grub",
        "pc-grub",
        "pc-pvh",
        "q35-grub",
        "q35-pvh",
        "q35-uefi",
    ] {
        assert!(names.contains(&want), "no memory map {want} in {names:?}");
    }
    for map in &maps {
        let placements = loader_placements(map);
        drain(map, placements[0], FRAGMENTING_PATTERN);
        for loader in placements {
            drain(map, loader, KERNEL_PATTERN);
        }
    }
}

/// The 5 GiB QEMU map has usable RAM above 4 GiB: none of it is handed out, all of it below is.
#[test]
fn memory_above_4_gib_is_never_handed_out() {
    let maps = load_maps();
    let map = maps
        .iter()
        .find(|m| m.name == "q35-pvh-5g")
        .expect("the 5 GiB map");
    assert!(map
        .regions
        .iter()
        .any(|r| r.kind == RegionKind::Usable && r.end() > ALLOC_CEILING));
    let fa = FrameAllocator::new(&map.regions, &[IMAGE]);
    assert!(fa.ranges().iter().all(|&(_, e)| e <= ALLOC_CEILING));
    let below: u64 = map
        .regions
        .iter()
        .filter(|r| r.kind == RegionKind::Usable)
        .map(|r| {
            let s = r.start.max(ALLOC_FLOOR);
            let e = r.end().min(ALLOC_CEILING);
            e.saturating_sub(s)
        })
        .sum();
    assert_eq!(fa.free_bytes(), below - (IMAGE.1 - IMAGE.0));
}
