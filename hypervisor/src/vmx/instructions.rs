//! The real processor: `asm!` wrappers for the VMX instructions, and MSR/CR/CPUID access.
//!
//! Status reporting follows SDM vol. 3C 31.2 "Conventions": VMsucceed clears CF and ZF; VMfailInvalid sets CF
//! (no current VMCS to hold an error number); VMfailValid sets ZF and stores an error number in the current
//! VMCS's VM-instruction error field (encoding 0x4400), read here with VMREAD. CF and ZF are captured with
//! SETC/SETZ inside the same `asm!` block as the instruction, so no compiler-generated code can clobber them.
//! Each block first presets CF = ZF = 1, a combination no VMX instruction leaves: an instruction that did not
//! write the flags is then reported as [`VmFail::FlagsUndefined`] (decoded by [`super::status::vmx_result`]).
//!
//! VMXON, VMCLEAR and VMPTRLD take a memory operand that holds the 64-bit physical address; VMPTRST stores to a
//! memory operand. None of the blocks is `nomem` (the instructions read or write memory: the operand, and the
//! regions the processor owns) and none is `preserves_flags`; all are `nostack` (they push nothing).
//!
//! Fault fix-up ([`HardwareCpu::vmxon_probe`]): the probing VMXON registers itself in the kernel's `.ex_table`
//! section as one 16-byte entry `{ fault_rip: u64, resume_rip: u64 }` (fault_rip = the VMXON instruction,
//! resume_rip = the first instruction after the flag capture). The kernel's exception dispatcher, on any vector
//! raised at `fault_rip`, sets the saved RIP to `resume_rip` and the saved RAX to the vector number, then IRETQs.
//! RAX is preloaded with `u64::MAX`, so RAX != `u64::MAX` after the block means "faulted with vector RAX".
//! The same contract covers the self-test's WRMSR and MOV-to-CR0/CR4 probes ([`HardwareCpu::write_msr_probe`],
//! [`HardwareCpu::write_cr0_probe`], [`HardwareCpu::write_cr4_probe`]), whose only expected fault is #GP.

use core::arch::asm;
use core::marker::PhantomData;

use x86_64::registers::control::{Cr0, Cr4};

use super::status::{decode_flags, vmx_result, FlagStatus};
use super::{CpuidResult, Exception, InstrOutcome, VmFail, VmxCpu, VMCS_VM_INSTRUCTION_ERROR};
use crate::arch::{cpuid, msr};

/// RAX before a probing instruction; the fix-up overwrites it with the vector.
#[cfg(target_os = "none")]
const NO_FAULT: u64 = u64::MAX;

/// The processor this code runs on. Not `Send`: it stands for one core's registers.
#[derive(Debug)]
pub struct HardwareCpu {
    catch_faults: bool,
    _this_core_only: PhantomData<*mut ()>,
}

/// Executes a VMX instruction whose operand is a 64-bit physical address in memory (VMXON, VMCLEAR, VMPTRLD)
/// and captures CF (VMfailInvalid) and ZF (VMfailValid) in the same `asm!` block (SDM vol. 3C 31.2).
/// Evaluates to `(cf, zf)`; the caller's `unsafe` block states why the instruction is allowed.
/// Writes CR0 or CR4 (`$cr`) under the kernel's fix-up: evaluates to the fault's vector, or [`NO_FAULT`] when
/// the MOV completed. The caller's `unsafe` block states why the value may be written.
#[cfg(target_os = "none")]
macro_rules! mov_to_cr_probe {
    ($cr:literal, $value:expr) => {{
        let value: u64 = $value;
        let vector: u64;
        // A #GP on the MOV at label 2 is redirected by the kernel's fix-up to label 3 with RAX = vector; RAX is
        // an explicit operand, so `value` is never allocated to it. MOV to CRn leaves the flags undefined, so
        // the block does not preserve them; it is not `nomem` (CR0/CR4 change how memory is accessed).
        asm!(
            "2:",
            concat!("mov ", $cr, ", {value}"),
            "3:",
            ".pushsection .ex_table, \"a\"",
            ".balign 8",
            ".quad 2b, 3b",
            ".popsection",
            value = in(reg) value,
            inout("rax") NO_FAULT => vector,
            options(nostack),
        );
        vector
    }};
}

/// A probe's vector as a result: [`NO_FAULT`] is success.
#[cfg(target_os = "none")]
const fn fault_result(vector: u64) -> Result<(), Exception> {
    if vector == NO_FAULT {
        Ok(())
    } else {
        Err(Exception {
            vector: vector as u8,
        })
    }
}

macro_rules! pointer_instruction {
    ($mnemonic:literal, $phys:expr) => {{
        let phys: u64 = $phys;
        let (cf, zf): (u8, u8);
        asm!(
            // Preset CF = ZF = 1 (CMP of a register with itself sets ZF and clears CF; STC sets CF), so an
            // instruction that left the flags alone reads as the undefined status, never as VMsucceed.
            "cmp {ptr}, {ptr}",
            "stc",
            concat!($mnemonic, " qword ptr [{ptr}]"),
            "setc {cf}",
            "setz {zf}",
            ptr = in(reg) &phys,
            cf = out(reg_byte) cf,
            zf = out(reg_byte) zf,
            options(nostack),
        );
        (cf, zf)
    }};
}

impl HardwareCpu {
    /// # Safety
    /// Must be created and used at CPL 0 in 64-bit mode, on the core whose registers it changes (it is not
    /// `Send`, so it stays on the core that created it as long as the kernel does not migrate threads, which
    /// this hypervisor never does).
    pub const unsafe fn new() -> Self {
        Self {
            catch_faults: false,
            _this_core_only: PhantomData,
        }
    }

    /// The processor of the calling core. The image runs every core at CPL 0 in 64-bit mode and never migrates
    /// code between cores, and the value is not `Send`, so `new`'s contract holds by construction.
    #[cfg(target_os = "none")]
    pub const fn this_core() -> Self {
        // SAFETY: see above.
        unsafe { Self::new() }
    }

    /// Declares that the kernel's fix-up table is in place on this core: the loaded IDT sends every exception
    /// whose RIP is listed in `.ex_table` to the entry's resume RIP with RAX = vector (see the module docs).
    /// Makes [`VmxCpu::can_catch_faults`] true. If the claim is false, a fault in the self-test is reported as
    /// an ordinary fatal exception.
    pub const fn with_fault_fixup(mut self) -> Self {
        self.catch_faults = true;
        self
    }

    /// Turns the flags captured after a VMX instruction into a result; on VMfailValid reads the error number.
    ///
    /// # Safety
    /// Must directly follow a VMX instruction executed in VMX operation (VMfailValid implies a current VMCS).
    unsafe fn status(&mut self, cf: u8, zf: u8) -> Result<(), VmFail> {
        vmx_result(cf, zf, || {
            // SAFETY: ZF = 1 alone (VMfailValid) means the instruction ran in VMX root operation with a current
            // VMCS, whose VM-instruction error field VMREAD can read.
            match unsafe { self.vmread_raw(VMCS_VM_INSTRUCTION_ERROR) } {
                Ok(value) => value as u32,
                // Cannot happen per the SDM; report error number 0 ("no error") rather than lose the failure.
                Err(_) => 0,
            }
        })
    }

    /// VMREAD without the VMfailValid error lookup (which would recurse).
    ///
    /// # Safety
    /// In VMX root operation.
    unsafe fn vmread_raw(&mut self, field: u64) -> Result<u64, (u8, u8)> {
        // SAFETY: forwarded to the caller's guarantee.
        unsafe { vmread_flags(field) }
    }
}

/// VMREAD of `field` from the current VMCS: the value on VMsucceed, else the CF and ZF it left (SDM vol. 3C
/// 31.2), captured in the same `asm!` block after presetting both. Shared by [`HardwareCpu`] and
/// `vm_entry::HardwareVmcs`.
///
/// # Safety
/// In VMX root operation (else #UD).
#[inline(always)]
pub(super) unsafe fn vmread_flags(field: u64) -> Result<u64, (u8, u8)> {
    let value: u64;
    let (cf, zf): (u8, u8);
    // SAFETY: the caller guarantees VMX root operation, so VMREAD cannot #UD; with a register destination it
    // only reads the current VMCS, which the processor owns.
    unsafe {
        asm!(
            "cmp {field}, {field}",
            "stc",
            "vmread {value}, {field}",
            "setc {cf}",
            "setz {zf}",
            field = in(reg) field,
            value = out(reg) value,
            cf = out(reg_byte) cf,
            zf = out(reg_byte) zf,
            options(nostack),
        );
    }
    match decode_flags(cf, zf) {
        FlagStatus::Succeed => Ok(value),
        _ => Err((cf, zf)),
    }
}

impl VmxCpu for HardwareCpu {
    fn cpuid(&self, leaf: u32, subleaf: u32) -> CpuidResult {
        cpuid::cpuid(leaf, subleaf)
    }

    fn read_msr(&self, index: u32) -> u64 {
        // SAFETY: RDMSR has no side effect on the MSRs this module reads (feature control and the VMX capability
        // MSRs, read only after CPUID reports VMX). A missing MSR raises #GP, which is fatal but touches no memory.
        unsafe { msr::read(index) }
    }

    unsafe fn write_msr(&mut self, index: u32, value: u64) {
        // SAFETY: forwarded to the caller's guarantee (trait documentation).
        unsafe { msr::write(index, value) }
    }

    fn read_cr0(&self) -> u64 {
        Cr0::read_raw()
    }

    fn read_cr4(&self) -> u64 {
        Cr4::read_raw()
    }

    unsafe fn write_cr0(&mut self, value: u64) {
        // SAFETY: forwarded to the caller's guarantee (trait documentation).
        unsafe { Cr0::write_raw(value) }
    }

    unsafe fn write_cr4(&mut self, value: u64) {
        // SAFETY: forwarded to the caller's guarantee (trait documentation).
        unsafe { Cr4::write_raw(value) }
    }

    unsafe fn vmxon(&mut self, phys: u64) -> Result<(), VmFail> {
        // SAFETY: the caller guarantees CPL 0 and that the region at `phys` is reserved for the processor; the
        // memory operand is a live local holding the physical address. VMfailValid from VMXON means we were
        // already in VMX root operation with a current VMCS, so reading the error field is allowed.
        let (cf, zf) = unsafe { pointer_instruction!("vmxon", phys) };
        // SAFETY: directly after the instruction, as `status` requires.
        unsafe { self.status(cf, zf) }
    }

    unsafe fn vmclear(&mut self, phys: u64) -> Result<(), VmFail> {
        // SAFETY: the caller guarantees VMX root operation and that `phys`, if valid, is a reserved VMX region.
        let (cf, zf) = unsafe { pointer_instruction!("vmclear", phys) };
        // SAFETY: directly after a VMX instruction in VMX root operation.
        unsafe { self.status(cf, zf) }
    }

    unsafe fn vmptrld(&mut self, phys: u64) -> Result<(), VmFail> {
        // SAFETY: the caller guarantees VMX root operation and that `phys`, if valid, is a reserved VMX region.
        let (cf, zf) = unsafe { pointer_instruction!("vmptrld", phys) };
        // SAFETY: directly after a VMX instruction in VMX root operation.
        unsafe { self.status(cf, zf) }
    }

    unsafe fn vmptrst(&mut self) -> Result<u64, VmFail> {
        let mut pointer: u64 = 0;
        let (cf, zf): (u8, u8);
        // SAFETY: the caller guarantees VMX root operation; VMPTRST writes 8 bytes to the local `pointer`.
        unsafe {
            asm!(
                "cmp {ptr}, {ptr}",
                "stc",
                "vmptrst qword ptr [{ptr}]",
                "setc {cf}",
                "setz {zf}",
                ptr = in(reg) &mut pointer,
                cf = out(reg_byte) cf,
                zf = out(reg_byte) zf,
                options(nostack),
            );
        }
        // SAFETY: directly after a VMX instruction in VMX root operation.
        unsafe { self.status(cf, zf) }.map(|()| pointer)
    }

    unsafe fn vmread(&mut self, field: u64) -> Result<u64, VmFail> {
        // SAFETY: the caller guarantees VMX root operation.
        match unsafe { self.vmread_raw(field) } {
            Ok(value) => Ok(value),
            // SAFETY: directly after VMREAD in VMX root operation; the flags are those it produced.
            Err((cf, zf)) => unsafe { self.status(cf, zf) }.map(|()| 0),
        }
    }

    unsafe fn vmxoff(&mut self) -> Result<(), VmFail> {
        let (cf, zf): (u8, u8);
        // SAFETY: the caller guarantees VMX root operation; VMXOFF takes no operand.
        unsafe {
            asm!(
                "xor {scratch:e}, {scratch:e}",
                "stc",
                "vmxoff",
                "setc {cf}",
                "setz {zf}",
                scratch = out(reg) _,
                cf = out(reg_byte) cf,
                zf = out(reg_byte) zf,
                options(nostack),
            );
        }
        // SAFETY: directly after a VMX instruction in VMX root operation.
        unsafe { self.status(cf, zf) }
    }

    fn can_catch_faults(&self) -> bool {
        self.catch_faults && cfg!(target_os = "none")
    }

    unsafe fn vmxon_probe(&mut self, phys: u64) -> InstrOutcome {
        #[cfg(target_os = "none")]
        {
            let vector: u64;
            let (cf, zf): (u8, u8);
            // SAFETY: as `vmxon` (the caller's guarantee). A fault on the VMXON at label 2 is redirected by the
            // kernel's fix-up to label 3 with RAX = vector; RAX is an explicit operand, so no other operand is
            // allocated to it. The `.ex_table` entry is read-only data the linker script keeps.
            unsafe {
                asm!(
                    "cmp {ptr}, {ptr}",
                    "stc",
                    "2:",
                    "vmxon qword ptr [{ptr}]",
                    "setc {cf}",
                    "setz {zf}",
                    "3:",
                    ".pushsection .ex_table, \"a\"",
                    ".balign 8",
                    ".quad 2b, 3b",
                    ".popsection",
                    ptr = in(reg) &phys,
                    cf = out(reg_byte) cf,
                    zf = out(reg_byte) zf,
                    inout("rax") NO_FAULT => vector,
                    options(nostack),
                );
            }
            if vector != NO_FAULT {
                return InstrOutcome::Fault(super::Exception {
                    vector: vector as u8,
                });
            }
            // SAFETY: VMfailValid from VMXON means VMX root operation with a current VMCS.
            unsafe { self.status(cf, zf) }.into()
        }
        #[cfg(not(target_os = "none"))]
        {
            // Host builds have no kernel fix-up table (and `can_catch_faults` is false): a plain VMXON.
            // SAFETY: forwarded to the caller's guarantee.
            unsafe { self.vmxon(phys) }.into()
        }
    }

    unsafe fn vmxoff_probe(&mut self) -> InstrOutcome {
        #[cfg(target_os = "none")]
        {
            let vector: u64;
            let (cf, zf): (u8, u8);
            // SAFETY: the caller's guarantee: in VMX root operation this is VMXOFF, outside it the #UD raised at
            // label 2 is redirected by the kernel's fix-up to label 3 with RAX = vector, as for `vmxon_probe`.
            unsafe {
                asm!(
                    "cmp rax, rax",
                    "stc",
                    "2:",
                    "vmxoff",
                    "setc {cf}",
                    "setz {zf}",
                    "3:",
                    ".pushsection .ex_table, \"a\"",
                    ".balign 8",
                    ".quad 2b, 3b",
                    ".popsection",
                    cf = out(reg_byte) cf,
                    zf = out(reg_byte) zf,
                    inout("rax") NO_FAULT => vector,
                    options(nostack),
                );
            }
            if vector != NO_FAULT {
                return InstrOutcome::Fault(super::Exception {
                    vector: vector as u8,
                });
            }
            // SAFETY: directly after a VMX instruction that did not fault, so it ran in VMX root operation.
            unsafe { self.status(cf, zf) }.into()
        }
        #[cfg(not(target_os = "none"))]
        {
            // SAFETY: forwarded to the caller's guarantee (no fix-up on the host: a plain VMXOFF).
            unsafe { self.vmxoff() }.into()
        }
    }

    unsafe fn vmclear_probe(&mut self, phys: u64) -> InstrOutcome {
        #[cfg(target_os = "none")]
        {
            let vector: u64;
            let (cf, zf): (u8, u8);
            // SAFETY: the caller's guarantee: in VMX root operation this is VMCLEAR of a region reserved for VMX
            // (or an address it rejects); outside it the #UD at label 2 is redirected to label 3 with RAX = vector.
            unsafe {
                asm!(
                    "cmp {ptr}, {ptr}",
                    "stc",
                    "2:",
                    "vmclear qword ptr [{ptr}]",
                    "setc {cf}",
                    "setz {zf}",
                    "3:",
                    ".pushsection .ex_table, \"a\"",
                    ".balign 8",
                    ".quad 2b, 3b",
                    ".popsection",
                    ptr = in(reg) &phys,
                    cf = out(reg_byte) cf,
                    zf = out(reg_byte) zf,
                    inout("rax") NO_FAULT => vector,
                    options(nostack),
                );
            }
            if vector != NO_FAULT {
                return InstrOutcome::Fault(super::Exception {
                    vector: vector as u8,
                });
            }
            // SAFETY: directly after a VMX instruction that did not fault, so it ran in VMX root operation.
            unsafe { self.status(cf, zf) }.into()
        }
        #[cfg(not(target_os = "none"))]
        {
            // SAFETY: forwarded to the caller's guarantee (no fix-up on the host: a plain VMCLEAR).
            unsafe { self.vmclear(phys) }.into()
        }
    }

    unsafe fn write_msr_probe(&mut self, index: u32, value: u64) -> Result<(), Exception> {
        #[cfg(target_os = "none")]
        {
            let vector: u64;
            // WRMSR takes ECX (the MSR) and EDX:EAX (the value) and leaves the flags alone (the fix-up's IRETQ
            // restores them too); not `nomem`, since an MSR write may change how memory is accessed.
            // SAFETY: the caller's guarantee covers the write should it be accepted. A #GP on the WRMSR at label
            // 2 goes through the fix-up to label 3 with RAX = vector; without a fault RAX becomes NO_FAULT.
            unsafe {
                asm!(
                    "2:",
                    "wrmsr",
                    "mov rax, -1",
                    "3:",
                    ".pushsection .ex_table, \"a\"",
                    ".balign 8",
                    ".quad 2b, 3b",
                    ".popsection",
                    in("ecx") index,
                    in("edx") (value >> 32) as u32,
                    inout("rax") value & 0xFFFF_FFFF => vector,
                    options(nostack, preserves_flags),
                );
            }
            fault_result(vector)
        }
        #[cfg(not(target_os = "none"))]
        {
            // SAFETY: forwarded to the caller's guarantee (no fix-up on the host: a plain WRMSR).
            unsafe { self.write_msr(index, value) };
            Ok(())
        }
    }

    unsafe fn write_cr0_probe(&mut self, value: u64) -> Result<(), Exception> {
        #[cfg(target_os = "none")]
        {
            // SAFETY: the caller's guarantee covers `value` should the processor accept it; a refusal (#GP) is
            // returned by the fix-up and changes nothing.
            fault_result(unsafe { mov_to_cr_probe!("cr0", value) })
        }
        #[cfg(not(target_os = "none"))]
        {
            // SAFETY: forwarded to the caller's guarantee (no fix-up on the host: a plain MOV).
            unsafe { self.write_cr0(value) };
            Ok(())
        }
    }

    unsafe fn write_cr4_probe(&mut self, value: u64) -> Result<(), Exception> {
        #[cfg(target_os = "none")]
        {
            // SAFETY: as `write_cr0_probe`.
            fault_result(unsafe { mov_to_cr_probe!("cr4", value) })
        }
        #[cfg(not(target_os = "none"))]
        {
            // SAFETY: forwarded to the caller's guarantee (no fix-up on the host: a plain MOV).
            unsafe { self.write_cr4(value) };
            Ok(())
        }
    }
}
