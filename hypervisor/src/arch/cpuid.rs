//! CPUID, decoded into the fields the hypervisor needs.

use core::fmt;

/// The one CPUID result type (the four registers), shared with the VMX stage's `VmxCpu::cpuid`.
pub use core::arch::x86_64::CpuidResult;

/// Executes CPUID with the given leaf and subleaf.
#[inline]
pub fn cpuid(leaf: u32, subleaf: u32) -> CpuidResult {
    core::arch::x86_64::__cpuid_count(leaf, subleaf)
}

/// Identification and the feature bits later stages depend on, decoded from raw CPUID answers so the decoding
/// is testable without the instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuInfo {
    pub vendor: [u8; 12],
    pub brand: [u8; 48],
    pub family: u32,
    pub model: u32,
    pub stepping: u32,
    /// CPUID.1:ECX bit 5.
    pub vmx: bool,
    /// CPUID.1:ECX bit 6.
    pub smx: bool,
    /// CPUID.1:ECX bit 21.
    pub x2apic: bool,
    /// CPUID.80000008H:EAX[7:0]; 36 when the leaf is missing (SDM vol. 3A 5.1.4).
    pub maxphyaddr: u8,
    /// Initial APIC id, CPUID.1:EBX[31:24] (8 bits; the x2APIC id comes from leaf 0xB).
    pub initial_apic_id: u32,
    pub max_leaf: u32,
}

impl CpuInfo {
    pub fn read() -> Self {
        Self::decode(cpuid)
    }

    pub fn decode(query: impl Fn(u32, u32) -> CpuidResult) -> Self {
        let l0 = query(0, 0);
        let mut vendor = [0u8; 12];
        vendor[0..4].copy_from_slice(&l0.ebx.to_le_bytes());
        vendor[4..8].copy_from_slice(&l0.edx.to_le_bytes());
        vendor[8..12].copy_from_slice(&l0.ecx.to_le_bytes());
        let l1 = if l0.eax >= 1 {
            query(1, 0)
        } else {
            regs(0, 0, 0, 0)
        };
        let base_family = (l1.eax >> 8) & 0xF;
        let base_model = (l1.eax >> 4) & 0xF;
        // SDM vol. 2A, CPUID leaf 1: the extended fields count only for families 6 and 15.
        let family = if base_family == 0xF {
            base_family + ((l1.eax >> 20) & 0xFF)
        } else {
            base_family
        };
        let model = if base_family == 0x6 || base_family == 0xF {
            base_model | (((l1.eax >> 16) & 0xF) << 4)
        } else {
            base_model
        };
        let ext_max = query(0x8000_0000, 0).eax;
        let maxphyaddr = if ext_max >= 0x8000_0008 {
            (query(0x8000_0008, 0).eax & 0xFF) as u8
        } else {
            36
        };
        let mut brand = [0u8; 48];
        if ext_max >= 0x8000_0004 {
            for (i, leaf) in (0x8000_0002u32..=0x8000_0004).enumerate() {
                let r = query(leaf, 0);
                for (j, reg) in [r.eax, r.ebx, r.ecx, r.edx].into_iter().enumerate() {
                    let at = i * 16 + j * 4;
                    brand[at..at + 4].copy_from_slice(&reg.to_le_bytes());
                }
            }
        }
        CpuInfo {
            vendor,
            brand,
            family,
            model,
            stepping: l1.eax & 0xF,
            vmx: l1.ecx & (1 << 5) != 0,
            smx: l1.ecx & (1 << 6) != 0,
            x2apic: l1.ecx & (1 << 21) != 0,
            maxphyaddr,
            initial_apic_id: l1.ebx >> 24,
            max_leaf: l0.eax,
        }
    }

    pub fn vendor_str(&self) -> &str {
        core::str::from_utf8(&self.vendor).unwrap_or("?")
    }

    /// The brand string without the NUL padding and leading blanks some CPUs put in it.
    pub fn brand_str(&self) -> &str {
        let end = self
            .brand
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.brand.len());
        core::str::from_utf8(&self.brand[..end])
            .unwrap_or("?")
            .trim()
    }
}

const fn regs(eax: u32, ebx: u32, ecx: u32, edx: u32) -> CpuidResult {
    CpuidResult { eax, ebx, ecx, edx }
}

/// `yes`/`no` for the log.
pub struct YesNo(pub bool);

impl fmt::Display for YesNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0 { "yes" } else { "no" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_haswell_like_cpu() {
        let info = CpuInfo::decode(|leaf, _| match leaf {
            0 => regs(
                0xd,
                u32::from_le_bytes(*b"Genu"),
                u32::from_le_bytes(*b"ntel"),
                u32::from_le_bytes(*b"ineI"),
            ),
            // family 6, model 0x3c (ext 3, base c), stepping 3; APIC id 2; VMX + x2APIC, no SMX
            1 => regs(0x0003_06c3, 0x0200_0800, (1 << 5) | (1 << 21), 0),
            0x8000_0000 => regs(0x8000_0008, 0, 0, 0),
            0x8000_0002 => regs(
                u32::from_le_bytes(*b"  In"),
                u32::from_le_bytes(*b"tel "),
                0,
                0,
            ),
            0x8000_0008 => regs(0x3027, 0, 0, 0),
            _ => regs(0, 0, 0, 0),
        });
        assert_eq!(info.vendor_str(), "GenuineIntel");
        assert_eq!((info.family, info.model, info.stepping), (6, 0x3c, 3));
        assert!(info.vmx && info.x2apic && !info.smx);
        assert_eq!(info.maxphyaddr, 39);
        assert_eq!(info.initial_apic_id, 2);
        assert_eq!(info.brand_str(), "Intel");
    }

    #[test]
    fn missing_extended_leaves_fall_back_to_36_bits() {
        let info = CpuInfo::decode(|leaf, _| match leaf {
            0 => regs(1, 0, 0, 0),
            1 => regs(0x0f41, 0, 1 << 6, 0),
            _ => regs(0, 0, 0, 0),
        });
        assert_eq!(info.maxphyaddr, 36);
        assert!(info.smx && !info.vmx);
        assert_eq!(info.family, 15);
        assert_eq!(info.brand_str(), "");
    }
}
