//! Building the hypervisor image, the GRUB ISO cache, and the deliberately wrong "garbled hand-off"
//! image used by the loader test.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crate::elf::{Elf, PT_LOAD};
use crate::RunError;

pub use crate::toolchain::{cargo_program, IMAGE_TARGET};

/// The repository root (the runner package's manifest directory).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The repository's `target/` directory. Runner artifacts (the image in `target/image`, ISOs, run
/// directories) always go here, whatever `CARGO_TARGET_DIR` says, so they are at documented paths.
pub fn target_dir() -> PathBuf {
    repo_root().join("target")
}

/// Where the image lands: `target/image/x86_64-unknown-none/release/hypervisor`.
pub fn image_path() -> PathBuf {
    target_dir()
        .join("image")
        .join(IMAGE_TARGET)
        .join("release")
        .join("hypervisor")
}

/// The arguments of the image build (after the cargo program).
pub fn build_args() -> Vec<String> {
    [
        "build",
        "-p",
        "hypervisor",
        "--release",
        "--target",
        IMAGE_TARGET,
        "--target-dir",
        "target/image",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

static BUILT: Mutex<Option<Result<PathBuf, RunError>>> = Mutex::new(None);

/// Builds the image once per process (later calls return the first result) and returns its path.
///
/// `show_output` lets cargo's progress go to stderr; otherwise it is captured and only shown when the
/// build fails.
pub fn build_image(show_output: bool) -> Result<PathBuf, RunError> {
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(result) = built.as_ref() {
        return result.clone();
    }
    // A toolchain without the image's target fails with "can't find crate for `core`": add it first.
    let result = crate::toolchain::ensure_image_target(&repo_root())
        .and_then(|()| build_image_uncached(show_output).map_err(RunError::Build));
    *built = Some(result.clone());
    result
}

fn build_image_uncached(show_output: bool) -> Result<PathBuf, String> {
    let cargo = cargo_program();
    let args = build_args();
    let shown = format!("{cargo} {}", args.join(" "));
    eprintln!("runner: building the image: {shown}");
    let started = Instant::now();
    let mut cmd = Command::new(&cargo);
    cmd.args(&args)
        .current_dir(repo_root())
        // The image's code model and relocation model come from .cargo/config.toml; RUSTFLAGS from the
        // environment would replace them.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .stdin(Stdio::null());
    let output = if show_output {
        // Everything to stderr: stdout is reserved for the serial log.
        use std::os::fd::AsFd;
        let to_stderr = std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::inherit());
        cmd.stdout(to_stderr).stderr(Stdio::inherit());
        let status = cmd
            .status()
            .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
        (status, String::new())
    } else {
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status, text)
    };
    let (status, text) = output;
    if !status.success() {
        let tail: Vec<&str> = text.lines().rev().take(80).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!(
            "`{shown}` failed ({status}){}{}",
            if tail.is_empty() { "" } else { ":\n" },
            tail.join("\n")
        ));
    }
    let path = image_path();
    if !path.is_file() {
        return Err(format!(
            "`{shown}` succeeded but {} does not exist",
            path.display()
        ));
    }
    eprintln!(
        "runner: image {} ready in {:.1} s",
        path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(path)
}

/// 64-bit FNV-1a, used for cache keys (stable across Rust versions, unlike `DefaultHasher`).
pub fn fnv1a64(chunks: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for chunk in chunks {
        for &b in *chunk {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Separate chunks so that ("ab","c") and ("a","bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The source of the ISO builder is part of the cache key, so a changed `iso.rs` (or the ELF reader its
/// kernel stripping uses) rebuilds the ISOs.
const ISO_BUILDER_SOURCE: &str = concat!(include_str!("iso.rs"), include_str!("elf.rs"));

/// The cache file for a kernel + command line: `target/iso-cache/<hash>.iso`.
pub fn iso_cache_path(kernel_bytes: &[u8], cmdline: &str) -> PathBuf {
    let key = fnv1a64(&[
        kernel_bytes,
        cmdline.as_bytes(),
        ISO_BUILDER_SOURCE.as_bytes(),
    ]);
    target_dir()
        .join("iso-cache")
        .join(format!("{key:016x}.iso"))
}

/// What building a GRUB ISO needs on the host (program or directory, Debian package).
pub fn iso_needs() -> Vec<crate::host::Need> {
    use crate::host::Need;
    vec![
        Need::program("grub-mkrescue", "grub-common"),
        Need::program("xorriso", "xorriso"),
        Need::program("mformat", "mtools"),
        Need::program("mcopy", "mtools"),
        Need::file("/usr/lib/grub/i386-pc", "grub-pc-bin"),
        Need::file("/usr/lib/grub/x86_64-efi", "grub-efi-amd64-bin"),
    ]
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A path unique to this process and call, for temporary files and run directories.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Returns a GRUB ISO booting `kernel` with `cmdline`, building it into the cache if needed.
pub fn cached_iso(kernel: &Path, cmdline: &str) -> Result<PathBuf, RunError> {
    let bytes = std::fs::read(kernel)
        .map_err(|e| RunError::Build(format!("cannot read {}: {e}", kernel.display())))?;
    let path = iso_cache_path(&bytes, cmdline);
    if path.is_file() {
        // Mark it as recently used for the pruning.
        if let Ok(f) = std::fs::File::options().append(true).open(&path) {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
        return Ok(path);
    }
    crate::host::ensure(&iso_needs())?;
    let dir = path.parent().expect("cache path has a parent");
    std::fs::create_dir_all(dir)
        .map_err(|e| RunError::Io(format!("cannot create {}: {e}", dir.display())))?;
    // Build under a unique name, then rename: parallel runs never see a half-written ISO.
    let tmp = dir.join(format!("{}.iso", unique_name("tmp")));
    let spec = crate::iso::IsoSpec {
        kernel,
        cmdline,
        out: &tmp,
    };
    let result = crate::iso::build_grub_iso(&spec);
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(RunError::Build(format!(
            "building the GRUB ISO for {} failed: {e}",
            kernel.display()
        )));
    }
    std::fs::rename(&tmp, &path).map_err(|e| {
        RunError::Io(format!(
            "cannot move {} to {}: {e}",
            tmp.display(),
            path.display()
        ))
    })?;
    prune_iso_cache(dir, ISO_CACHE_KEEP);
    Ok(path)
}

/// How many ISOs `target/iso-cache` keeps (every kernel build and command line makes a new one).
pub const ISO_CACHE_KEEP: usize = 16;

/// Removes all but the `keep` most recently modified `*.iso` files of the cache directory
/// (temporary files being written are left alone).
fn prune_iso_cache(dir: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut isos: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.ends_with(".iso") && !name.starts_with("tmp-")
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    isos.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    for (_, old) in isos.into_iter().skip(keep) {
        let _ = std::fs::remove_file(old);
    }
}

/// One `PT_LOAD` program header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadSegment {
    pub offset: u64,
    pub paddr: u64,
    pub filesz: u64,
    pub memsz: u64,
}

/// The parts of an ELF64 file the garbled image needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Elf64 {
    pub entry: u64,
    pub loads: Vec<LoadSegment>,
}

/// The entry point and the non-empty `PT_LOAD` segments of a little-endian ELF64 file (read by
/// [`crate::elf::Elf`]), each with its data inside the file.
pub fn parse_elf64(bytes: &[u8]) -> Result<Elf64, String> {
    let elf = Elf::parse(bytes).map_err(|e| e.to_string())?;
    if !elf.is64 {
        return Err("not a little-endian ELF64 file".into());
    }
    let mut loads = Vec::new();
    for (i, ph) in elf
        .program_headers()
        .map_err(|e| e.to_string())?
        .into_iter()
        .enumerate()
    {
        if ph.p_type != PT_LOAD {
            continue;
        }
        let seg = LoadSegment {
            offset: ph.offset,
            paddr: ph.paddr,
            filesz: ph.filesz,
            memsz: ph.memsz,
        };
        if seg.filesz > seg.memsz {
            return Err(format!("PT_LOAD {i} has p_filesz > p_memsz"));
        }
        if seg
            .offset
            .checked_add(seg.filesz)
            .is_none_or(|end| end > bytes.len() as u64)
        {
            return Err(format!("PT_LOAD {i} data is outside the file"));
        }
        if seg.memsz > 0 {
            loads.push(seg);
        }
    }
    if loads.is_empty() {
        return Err("no PT_LOAD segments".into());
    }
    Ok(Elf64 {
        entry: elf.entry,
        loads,
    })
}

pub const MULTIBOOT1_MAGIC: u32 = 0x1BAD_B002;
/// Flags: bit 1 (memory information) and bit 16 (the a.out kludge address fields are valid).
pub const MULTIBOOT1_FLAGS: u32 = (1 << 1) | (1 << 16);
pub const MULTIBOOT1_HEADER_LEN: usize = 32;

/// Lays the ELF's `PT_LOAD` segments out as one flat binary starting at the lowest physical address
/// and puts a multiboot1 header with the a.out kludge in front of it. Pure: returns the file bytes.
pub fn garbled_handoff_bytes(elf_bytes: &[u8]) -> Result<Vec<u8>, String> {
    let elf = parse_elf64(elf_bytes)?;
    let low = elf.loads.iter().map(|s| s.paddr).min().expect("non-empty");
    let data_end = elf
        .loads
        .iter()
        .map(|s| s.paddr + s.filesz)
        .max()
        .expect("non-empty");
    let mem_end = elf
        .loads
        .iter()
        .map(|s| s.paddr + s.memsz)
        .max()
        .expect("non-empty");
    let header_addr = low
        .checked_sub(MULTIBOOT1_HEADER_LEN as u64)
        .ok_or("lowest p_paddr is below 32")?;
    let to32 = |v: u64, what: &str| {
        u32::try_from(v).map_err(|_| format!("{what} 0x{v:x} does not fit in 32 bits"))
    };
    let header_addr32 = to32(header_addr, "load address")?;
    let load_end32 = to32(data_end, "load end address")?;
    let bss_end32 = to32(mem_end, "bss end address")?;
    let entry32 = to32(elf.entry, "entry point")?;

    let data_len = usize::try_from(data_end - low).map_err(|_| "image too large")?;
    let mut out = vec![0u8; MULTIBOOT1_HEADER_LEN + data_len];
    let checksum = 0u32
        .wrapping_sub(MULTIBOOT1_MAGIC)
        .wrapping_sub(MULTIBOOT1_FLAGS);
    let header = [
        MULTIBOOT1_MAGIC,
        MULTIBOOT1_FLAGS,
        checksum,
        header_addr32, // header_addr
        header_addr32, // load_addr: the file is loaded from its first byte
        load_end32,
        bss_end32,
        entry32,
    ];
    for (i, word) in header.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&word.to_le_bytes());
    }
    for seg in &elf.loads {
        let dst = MULTIBOOT1_HEADER_LEN + (seg.paddr - low) as usize;
        let src = seg.offset as usize;
        let len = seg.filesz as usize;
        out[dst..dst + len].copy_from_slice(&elf_bytes[src..src + len]);
    }
    Ok(out)
}

/// Writes the garbled hand-off image for `elf` to `out` (see [`garbled_handoff_bytes`]). Booted with
/// QEMU `-kernel`, it is loaded as multiboot1, so the image's multiboot2 entry sees EAX=0x2BADB002.
pub fn build_garbled_handoff_image(elf: &Path, out: &Path) -> std::io::Result<()> {
    let bytes = std::fs::read(elf)?;
    let flat = garbled_handoff_bytes(&bytes).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {e}", elf.display()),
        )
    })?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, flat)
}

/// A tiny multiboot1 kernel (for QEMU `-kernel`) that triple-faults at once: it loads an empty IDT
/// and executes `int3`. The runner's own tests use it to check triple-fault detection without relying
/// on the hypervisor image misbehaving.
pub fn triple_fault_image_bytes() -> Vec<u8> {
    const LOAD: u32 = 0x0010_0000;
    const IDTR: u32 = LOAD + 0x40;
    let checksum = 0u32
        .wrapping_sub(MULTIBOOT1_MAGIC)
        .wrapping_sub(MULTIBOOT1_FLAGS);
    let end = IDTR + 8;
    let header = [
        MULTIBOOT1_MAGIC,
        MULTIBOOT1_FLAGS,
        checksum,
        LOAD,
        LOAD,
        end,
        end,
        LOAD + MULTIBOOT1_HEADER_LEN as u32,
    ];
    let mut out = vec![0u8; (end - LOAD) as usize];
    for (i, word) in header.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&word.to_le_bytes());
    }
    let mut code = vec![0x0f, 0x01, 0x1d]; // lidt [disp32]
    code.extend_from_slice(&IDTR.to_le_bytes());
    code.extend_from_slice(&[0xcc, 0xf4, 0xeb, 0xfd]); // int3; hlt; jmp -3
    out[MULTIBOOT1_HEADER_LEN..MULTIBOOT1_HEADER_LEN + code.len()].copy_from_slice(&code);
    // The IDT descriptor at IDTR stays zero: limit 0, base 0.
    out
}

/// A tiny ELF64 kernel with a multiboot2 header (for the GRUB ISO, so also for Bochs) that
/// triple-faults at once, like [`triple_fault_image_bytes`]: it loads an empty IDT and executes
/// `int3`. One `PT_LOAD` maps the whole file at 1 MiB.
pub fn triple_fault_multiboot2_elf_bytes() -> Vec<u8> {
    const LOAD: u64 = 0x0010_0000;
    const MB2_AT: usize = 0x80;
    const CODE_AT: usize = 0xc0;
    const IDTR_AT: usize = 0xe0;
    const LEN: usize = 0xf0;
    let mut f = vec![0u8; LEN];
    let put16 =
        |f: &mut Vec<u8>, at: usize, v: u16| f[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let put32 =
        |f: &mut Vec<u8>, at: usize, v: u32| f[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let put64 =
        |f: &mut Vec<u8>, at: usize, v: u64| f[at..at + 8].copy_from_slice(&v.to_le_bytes());
    // ELF header.
    f[0..4].copy_from_slice(b"\x7fELF");
    f[4] = 2; // ELFCLASS64
    f[5] = 1; // little endian
    f[6] = 1; // EV_CURRENT
    put16(&mut f, 16, 2); // ET_EXEC
    put16(&mut f, 18, 0x3e); // EM_X86_64
    put32(&mut f, 20, 1);
    put64(&mut f, 24, LOAD + CODE_AT as u64); // e_entry
    put64(&mut f, 32, 64); // e_phoff
    put16(&mut f, 52, 64); // e_ehsize
    put16(&mut f, 54, 56); // e_phentsize
    put16(&mut f, 56, 1); // e_phnum
                          // The one PT_LOAD (R+X), the whole file at LOAD.
    put32(&mut f, 64, PT_LOAD);
    put32(&mut f, 68, 5);
    put64(&mut f, 64 + 8, 0); // p_offset
    put64(&mut f, 64 + 16, LOAD); // p_vaddr
    put64(&mut f, 64 + 24, LOAD); // p_paddr
    put64(&mut f, 64 + 32, LEN as u64); // p_filesz
    put64(&mut f, 64 + 40, LEN as u64); // p_memsz
    put64(&mut f, 64 + 48, 0x1000); // p_align
                                    // Multiboot2 header: magic, architecture 0 (i386), length, checksum, end tag.
    const MB2_MAGIC: u32 = 0xe852_50d6;
    let len = 24u32;
    put32(&mut f, MB2_AT, MB2_MAGIC);
    put32(&mut f, MB2_AT + 4, 0);
    put32(&mut f, MB2_AT + 8, len);
    put32(
        &mut f,
        MB2_AT + 12,
        0u32.wrapping_sub(MB2_MAGIC).wrapping_sub(len),
    );
    put32(&mut f, MB2_AT + 16, 0); // end tag: type 0, flags 0
    put32(&mut f, MB2_AT + 20, 8); // size 8
                                   // lidt [IDTR]; int3; hlt; jmp -3. The IDTR (limit 0, base 0) stays zero.
    let mut code = vec![0x0f, 0x01, 0x1d];
    code.extend_from_slice(&((LOAD as u32) + IDTR_AT as u32).to_le_bytes());
    code.extend_from_slice(&[0xcc, 0xf4, 0xeb, 0xfd]);
    f[CODE_AT..CODE_AT + code.len()].copy_from_slice(&code);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 with the given (paddr, data, memsz) PT_LOAD segments plus one PT_NOTE.
    fn fake_elf(entry: u64, segs: &[(u64, &[u8], u64)]) -> Vec<u8> {
        let phoff = 64usize;
        let phnum = segs.len() + 1;
        let mut data_off = phoff + phnum * 56;
        let mut out = vec![0u8; data_off];
        out[0..4].copy_from_slice(b"\x7fELF");
        out[4] = 2;
        out[5] = 1;
        out[6] = 1;
        out[0x18..0x20].copy_from_slice(&entry.to_le_bytes());
        out[0x20..0x28].copy_from_slice(&(phoff as u64).to_le_bytes());
        out[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        out[0x38..0x3a].copy_from_slice(&(phnum as u16).to_le_bytes());
        // PT_NOTE first: must be ignored.
        out[phoff..phoff + 4].copy_from_slice(&4u32.to_le_bytes());
        for (i, (paddr, data, memsz)) in segs.iter().enumerate() {
            let ph = phoff + (i + 1) * 56;
            out[ph..ph + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
            out[ph + 8..ph + 16].copy_from_slice(&(data_off as u64).to_le_bytes());
            out[ph + 16..ph + 24].copy_from_slice(&(0xffff_8000_0000_0000 + paddr).to_le_bytes());
            out[ph + 24..ph + 32].copy_from_slice(&paddr.to_le_bytes());
            out[ph + 32..ph + 40].copy_from_slice(&(data.len() as u64).to_le_bytes());
            out[ph + 40..ph + 48].copy_from_slice(&memsz.to_le_bytes());
            data_off += data.len();
        }
        for (_, data, _) in segs {
            out.extend_from_slice(data);
        }
        out
    }

    fn word(b: &[u8], i: usize) -> u32 {
        u32::from_le_bytes(b[i * 4..i * 4 + 4].try_into().unwrap())
    }

    #[test]
    fn parses_loads() {
        let elf = fake_elf(
            0x200010,
            &[(0x200000, b"abcd", 4), (0x201000, b"xy", 0x100)],
        );
        let parsed = parse_elf64(&elf).unwrap();
        assert_eq!(parsed.entry, 0x200010);
        assert_eq!(parsed.loads.len(), 2);
        assert_eq!(parsed.loads[1].paddr, 0x201000);
        assert_eq!(parsed.loads[1].filesz, 2);
        assert_eq!(parsed.loads[1].memsz, 0x100);
        assert!(parse_elf64(b"\x7fELF\x01\x01").is_err());
        assert!(parse_elf64(b"MZ").is_err());
    }

    #[test]
    fn garbled_layout() {
        // Segments out of order, with a gap and bss.
        let elf = fake_elf(
            0x200004,
            &[(0x202000, b"second", 0x3000), (0x200000, b"first!", 6)],
        );
        let flat = garbled_handoff_bytes(&elf).unwrap();
        assert_eq!(word(&flat, 0), 0x1BADB002);
        assert_eq!(word(&flat, 1), 0x0001_0002);
        assert_eq!(
            word(&flat, 0)
                .wrapping_add(word(&flat, 1))
                .wrapping_add(word(&flat, 2)),
            0
        );
        assert_eq!(word(&flat, 3), 0x200000 - 32); // header_addr
        assert_eq!(word(&flat, 4), 0x200000 - 32); // load_addr
        assert_eq!(word(&flat, 5), 0x202006); // load_end_addr
        assert_eq!(word(&flat, 6), 0x205000); // bss_end_addr
        assert_eq!(word(&flat, 7), 0x200004); // entry
        assert_eq!(flat.len(), 32 + 0x2006);
        assert_eq!(&flat[32..38], b"first!");
        assert!(flat[38..32 + 0x2000].iter().all(|&b| b == 0));
        assert_eq!(&flat[32 + 0x2000..], b"second");
    }

    #[test]
    fn garbled_rejects_high_addresses() {
        let elf = fake_elf(0x1_0000_0000, &[(0x1_0000_0000, b"x", 1)]);
        assert!(garbled_handoff_bytes(&elf).is_err());
    }

    #[test]
    fn triple_fault_kernels_are_well_formed() {
        let elf = triple_fault_multiboot2_elf_bytes();
        let parsed = parse_elf64(&elf).unwrap();
        assert_eq!(parsed.entry, 0x1000c0);
        assert_eq!(parsed.loads.len(), 1);
        assert_eq!(parsed.loads[0].paddr, 0x100000);
        let mb2: Vec<u32> = (0..4).map(|i| word(&elf[0x80..], i)).collect();
        assert_eq!(mb2[0], 0xe85250d6);
        assert_eq!(mb2.iter().fold(0u32, |a, w| a.wrapping_add(*w)), 0);
        let mb1 = triple_fault_image_bytes();
        assert_eq!(word(&mb1, 0), MULTIBOOT1_MAGIC);
        assert_eq!((0..3).fold(0u32, |a, i| a.wrapping_add(word(&mb1, i))), 0);
        assert_eq!(word(&mb1, 5) as usize - word(&mb1, 4) as usize, mb1.len());
    }

    #[test]
    fn hash_is_stable_and_chunked() {
        assert_eq!(fnv1a64(&[]), 0xcbf2_9ce4_8422_2325);
        assert_ne!(fnv1a64(&[b"ab", b"c"]), fnv1a64(&[b"a", b"bc"]));
        assert_eq!(fnv1a64(&[b"abc"]), fnv1a64(&[b"abc"]));
        assert_ne!(iso_cache_path(b"k", "a"), iso_cache_path(b"k", "b"));
    }

    #[test]
    fn iso_needs_are_iso_packages() {
        for need in iso_needs() {
            assert!(
                crate::iso::ISO_PACKAGES.contains(&need.package()),
                "{} not in iso::ISO_PACKAGES",
                need.package()
            );
        }
    }
}
