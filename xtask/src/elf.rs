//! The one ELF reader of the runner: the file header and the program headers of a little-endian ELF32 or
//! ELF64 file, with every offset checked against the file. Used to lay out the garbled hand-off image
//! ([`crate::image::garbled_handoff_bytes`]) and to strip the kernel for GRUB ([`crate::iso::kernel_for_grub`]).

use std::fmt;

pub const PT_LOAD: u32 = 1;

/// Why a file is not a readable ELF file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfError(pub String);

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ElfError {}

fn err(what: impl Into<String>) -> ElfError {
    ElfError(what.into())
}

/// A little-endian field of `len` (1 to 8) bytes at `off`.
pub fn read(b: &[u8], off: usize, len: usize) -> Result<u64, ElfError> {
    let bytes = b
        .get(off..off.checked_add(len).ok_or_else(|| err("offset overflow"))?)
        .ok_or_else(|| err("header beyond the end of the file"))?;
    let mut v = [0u8; 8];
    v[..len].copy_from_slice(bytes);
    Ok(u64::from_le_bytes(v))
}

/// Writes a little-endian field of `len` bytes at `off` (in bounds: the caller read it before).
pub fn write(b: &mut [u8], off: usize, len: usize, value: u64) {
    b[off..off + len].copy_from_slice(&value.to_le_bytes()[..len]);
}

/// A file offset or size as `usize`.
pub fn to_usize(v: u64) -> Result<usize, ElfError> {
    usize::try_from(v).map_err(|_| err("offset does not fit in memory"))
}

/// Offsets of the section header fields the GRUB stripper rewrites.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SectionFields {
    pub flags: usize,
    pub offset: usize,
    pub size: usize,
    pub link: usize,
    pub addralign: usize,
}

/// One program header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgramHeader {
    pub p_type: u32,
    pub offset: u64,
    pub paddr: u64,
    pub filesz: u64,
    pub memsz: u64,
}

/// The file header of an ELF file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elf<'a> {
    pub bytes: &'a [u8],
    /// ELFCLASS64 (otherwise ELFCLASS32).
    pub is64: bool,
    pub entry: u64,
    pub phoff: usize,
    pub shoff: usize,
    pub phentsize: usize,
    pub phnum: usize,
    pub shentsize: usize,
    pub shnum: usize,
    pub shstrndx: usize,
}

impl<'a> Elf<'a> {
    /// Reads the file header.
    pub fn parse(bytes: &'a [u8]) -> Result<Elf<'a>, ElfError> {
        if bytes.get(0..4) != Some(b"\x7fELF") {
            return Err(err("not an ELF file"));
        }
        let is64 = match bytes.get(4) {
            Some(1) => false,
            Some(2) => true,
            _ => return Err(err("unknown ELF class")),
        };
        if bytes.get(5) != Some(&1) {
            return Err(err("not little-endian"));
        }
        if bytes.len() < Elf::header_size(is64) {
            return Err(err("truncated ELF header"));
        }
        let w = if is64 { 8 } else { 4 };
        // (e_entry, e_phoff, e_shoff, e_phentsize); e_phnum, e_shentsize, e_shnum and e_shstrndx follow.
        let (e_entry, e_phoff, e_shoff, e_phentsize) = if is64 {
            (24, 32, 40, 54)
        } else {
            (24, 28, 32, 42)
        };
        let half = |i: usize| read(bytes, e_phentsize + 2 * i, 2).and_then(to_usize);
        Ok(Elf {
            bytes,
            is64,
            entry: read(bytes, e_entry, w)?,
            phoff: to_usize(read(bytes, e_phoff, w)?)?,
            shoff: to_usize(read(bytes, e_shoff, w)?)?,
            phentsize: half(0)?,
            phnum: half(1)?,
            shentsize: half(2)?,
            shnum: half(3)?,
            shstrndx: half(4)?,
        })
    }

    fn header_size(is64: bool) -> usize {
        if is64 {
            64
        } else {
            52
        }
    }

    /// The size of the file header.
    pub fn ehsize(&self) -> usize {
        Elf::header_size(self.is64)
    }

    /// The size of an address or offset field: 4 or 8.
    pub fn word(&self) -> usize {
        if self.is64 {
            8
        } else {
            4
        }
    }

    /// Where `e_shoff` is in the file header.
    pub fn e_shoff_at(&self) -> usize {
        if self.is64 {
            40
        } else {
            32
        }
    }

    /// Section header field offsets for this class.
    pub fn section_fields(&self) -> SectionFields {
        if self.is64 {
            SectionFields {
                flags: 8,
                offset: 24,
                size: 32,
                link: 40,
                addralign: 48,
            }
        } else {
            SectionFields {
                flags: 8,
                offset: 16,
                size: 20,
                link: 24,
                addralign: 32,
            }
        }
    }

    /// Every program header, in order.
    pub fn program_headers(&self) -> Result<Vec<ProgramHeader>, ElfError> {
        let min = if self.is64 { 56 } else { 32 };
        if self.phnum > 0 && self.phentsize < min {
            return Err(err(format!("bad e_phentsize {}", self.phentsize)));
        }
        // (p_offset, p_paddr, p_filesz, p_memsz)
        let (o, p, f, m) = if self.is64 {
            (8, 24, 32, 40)
        } else {
            (4, 12, 16, 20)
        };
        let w = self.word();
        (0..self.phnum)
            .map(|i| {
                let at = i
                    .checked_mul(self.phentsize)
                    .and_then(|d| self.phoff.checked_add(d))
                    .ok_or_else(|| err("bad e_phoff"))?;
                let bad = |_| err(format!("program header {i} is outside the file"));
                Ok(ProgramHeader {
                    p_type: read(self.bytes, at, 4).map_err(bad)? as u32,
                    offset: read(self.bytes, at + o, w).map_err(bad)?,
                    paddr: read(self.bytes, at + p, w).map_err(bad)?,
                    filesz: read(self.bytes, at + f, w).map_err(bad)?,
                    memsz: read(self.bytes, at + m, w).map_err(bad)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ELF header of `class` with one program header right after it.
    fn file(is64: bool) -> Vec<u8> {
        let (eh, ph) = if is64 { (64, 56) } else { (52, 32) };
        let mut f = vec![0u8; eh + ph + 16];
        f[0..4].copy_from_slice(b"\x7fELF");
        f[4] = if is64 { 2 } else { 1 };
        f[5] = 1;
        let w = if is64 { 8 } else { 4 };
        let (e_phoff, e_phentsize) = if is64 { (32, 54) } else { (28, 42) };
        write(&mut f, 24, w, 0x100_0040);
        write(&mut f, e_phoff, w, eh as u64);
        write(&mut f, e_phentsize, 2, ph as u64);
        write(&mut f, e_phentsize + 2, 2, 1);
        let (o, p, fs, m) = if is64 {
            (8, 24, 32, 40)
        } else {
            (4, 12, 16, 20)
        };
        write(&mut f, eh, 4, u64::from(PT_LOAD));
        write(&mut f, eh + o, w, (eh + ph) as u64);
        write(&mut f, eh + p, w, 0x100_0000);
        write(&mut f, eh + fs, w, 16);
        write(&mut f, eh + m, w, 0x100);
        f
    }

    #[test]
    fn reads_both_classes() {
        for is64 in [false, true] {
            let f = file(is64);
            let e = Elf::parse(&f).unwrap();
            assert_eq!((e.is64, e.entry, e.phnum), (is64, 0x100_0040, 1));
            assert_eq!(e.word(), if is64 { 8 } else { 4 });
            let ph = e.program_headers().unwrap();
            assert_eq!(
                ph,
                [ProgramHeader {
                    p_type: PT_LOAD,
                    offset: e.ehsize() as u64 + if is64 { 56 } else { 32 },
                    paddr: 0x100_0000,
                    filesz: 16,
                    memsz: 0x100,
                }]
            );
        }
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        assert_eq!(Elf::parse(b"MZ").unwrap_err().0, "not an ELF file");
        assert_eq!(
            Elf::parse(b"\x7fELF\x03\x01").unwrap_err().0,
            "unknown ELF class"
        );
        assert_eq!(
            Elf::parse(b"\x7fELF\x02\x02").unwrap_err().0,
            "not little-endian"
        );
        assert_eq!(
            Elf::parse(&file(true)[..60]).unwrap_err().0,
            "truncated ELF header"
        );
        // A program header table that runs past the end.
        let mut f = file(true);
        write(&mut f, 56, 2, 3);
        let e = Elf::parse(&f).unwrap();
        assert_eq!(
            e.program_headers().unwrap_err().0,
            "program header 1 is outside the file"
        );
        write(&mut f, 54, 2, 20);
        assert_eq!(
            Elf::parse(&f).unwrap().program_headers().unwrap_err().0,
            "bad e_phentsize 20"
        );
        assert!(read(&f, usize::MAX, 2).is_err());
    }
}
