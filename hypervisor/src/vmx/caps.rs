//! What CPUID says about VMX: the VMX and SMX feature flags and the physical-address width.
//!
//! SDM vol. 3C 24.6 "Discovering support for VMX" (CPUID.1:ECX.VMX[bit 5]); vol. 2A CPUID: leaf 1 ECX bit 6 is
//! SMX, leaf 0x80000008 EAX[7:0] is MAXPHYADDR (vol. 3A 5.1.4: when the leaf is not supported, MAXPHYADDR is 36
//! on processors that support PAE, which every 64-bit processor does).

use super::VmxCpu;

/// CPUID.1:ECX bit 5.
pub const CPUID1_ECX_VMX: u32 = 1 << 5;
/// CPUID.1:ECX bit 6.
pub const CPUID1_ECX_SMX: u32 = 1 << 6;
/// MAXPHYADDR assumed when CPUID leaf 0x80000008 does not exist.
pub const DEFAULT_MAXPHYADDR: u8 = 36;

/// The processor's VMX-relevant capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub vmx: bool,
    pub smx: bool,
    /// Physical-address width in bits (MAXPHYADDR).
    pub maxphyaddr: u8,
}

impl Caps {
    pub fn read(cpu: &impl VmxCpu) -> Self {
        let leaf1 = cpu.cpuid(1, 0);
        let max_extended = cpu.cpuid(0x8000_0000, 0).eax;
        let maxphyaddr = if max_extended >= 0x8000_0008 {
            match (cpu.cpuid(0x8000_0008, 0).eax & 0xFF) as u8 {
                // A zero width is nonsense (a broken or absent leaf): fall back like a missing leaf.
                0 => DEFAULT_MAXPHYADDR,
                width => width.min(52),
            }
        } else {
            DEFAULT_MAXPHYADDR
        };
        Self {
            vmx: leaf1.ecx & CPUID1_ECX_VMX != 0,
            smx: leaf1.ecx & CPUID1_ECX_SMX != 0,
            maxphyaddr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmx::fake::FakeCpu;

    #[test]
    fn flags_and_width_come_from_cpuid() {
        let mut cpu = FakeCpu::bochs_haswell();
        cpu.vmx = true;
        cpu.smx = false;
        cpu.maxphyaddr = 40;
        assert_eq!(
            Caps::read(&cpu),
            Caps {
                vmx: true,
                smx: false,
                maxphyaddr: 40
            }
        );
        cpu.vmx = false;
        cpu.smx = true;
        cpu.maxphyaddr = 46;
        assert_eq!(
            Caps::read(&cpu),
            Caps {
                vmx: false,
                smx: true,
                maxphyaddr: 46
            }
        );
    }

    #[test]
    fn maxphyaddr_falls_back_to_36_without_leaf_0x80000008() {
        let mut cpu = FakeCpu::bochs_haswell();
        cpu.maxphyaddr = 40;
        cpu.max_extended_leaf = 0x8000_0004;
        assert_eq!(Caps::read(&cpu).maxphyaddr, 36);
        cpu.max_extended_leaf = 0x8000_0008;
        assert_eq!(Caps::read(&cpu).maxphyaddr, 40);
        cpu.maxphyaddr = 0;
        assert_eq!(Caps::read(&cpu).maxphyaddr, 36);
    }
}
