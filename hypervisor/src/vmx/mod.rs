//! The VMX stage: bring every core into VMX root operation (SDM vol. 3C ch. 24 "Introduction to VMX operation").
//!
//! Per core, [`enter_vmx_root`] runs: capability check ([`caps`]) → IA32_FEATURE_CONTROL enabled and locked
//! ([`feature_control`]) → IA32_VMX_BASIC decoded ([`basic`]) → VMXON and VMCS regions validated and prepared →
//! CR0/CR4 fixed bits and CR4.VMXE ([`fixed_bits`]) → VMXON → VMCLEAR + VMPTRLD of the VMCS → VMPTRST confirms it
//! is current. [`leave_vmx_root`] undoes it. [`selftest`] runs negative cases in the style of kvm-unit-tests.
//!
//! All decisions run against the [`VmxCpu`] trait, so host unit tests drive them with a fake processor
//! (`fake.rs`); [`HardwareCpu`] is the real one. See docs/vmx.md.

pub mod basic;
pub mod caps;
pub mod errors;
pub mod feature_control;
pub mod fixed_bits;
pub mod guest;
pub mod instructions;
#[cfg(target_os = "none")]
pub mod launch;
pub mod per_core;
pub mod root;
pub mod selftest;
pub mod status;
#[cfg(target_os = "none")]
pub mod vm_entry;
pub mod vmcs;

#[cfg(test)]
pub(crate) mod fake;

pub use crate::arch::cpuid::CpuidResult;

pub use basic::{validate_region, Region, RegionPair, VmxBasic};
pub use caps::Caps;
pub use errors::{
    Exception, InstrOutcome, InstructionError, RegionError, RegionKind, VmFail, VmxError,
    VmxInstruction,
};
pub use feature_control::{decide, enable_feature_control, Decision, FeatureControlReport};
pub use fixed_bits::{ControlRegister, FixedBitViolation, FixedBitViolations};
pub use instructions::HardwareCpu;
pub use per_core::VmxCore;
pub use root::{enter_vmx_root, leave_vmx_root, RootReport, VmxState};
pub use selftest::{run_selftest, SelftestReport};

/// IA32_FEATURE_CONTROL.
pub const IA32_FEATURE_CONTROL: u32 = 0x3A;
/// IA32_VMX_BASIC.
pub const IA32_VMX_BASIC: u32 = 0x480;
/// IA32_VMX_CR0_FIXED0.
pub const IA32_VMX_CR0_FIXED0: u32 = 0x486;
/// IA32_VMX_CR0_FIXED1.
pub const IA32_VMX_CR0_FIXED1: u32 = 0x487;
/// IA32_VMX_CR4_FIXED0.
pub const IA32_VMX_CR4_FIXED0: u32 = 0x488;
/// IA32_VMX_CR4_FIXED1.
pub const IA32_VMX_CR4_FIXED1: u32 = 0x489;

// The other capability MSRs (SDM vol. 3D appendix A; which exist depends on IA32_VMX_BASIC and the controls,
// see `vmcs::caps`).
pub const IA32_VMX_PINBASED_CTLS: u32 = 0x481;
pub const IA32_VMX_PROCBASED_CTLS: u32 = 0x482;
pub const IA32_VMX_EXIT_CTLS: u32 = 0x483;
pub const IA32_VMX_ENTRY_CTLS: u32 = 0x484;
pub const IA32_VMX_MISC: u32 = 0x485;
pub const IA32_VMX_VMCS_ENUM: u32 = 0x48A;
pub const IA32_VMX_PROCBASED_CTLS2: u32 = 0x48B;
pub const IA32_VMX_EPT_VPID_CAP: u32 = 0x48C;
pub const IA32_VMX_TRUE_PINBASED_CTLS: u32 = 0x48D;
pub const IA32_VMX_TRUE_PROCBASED_CTLS: u32 = 0x48E;
pub const IA32_VMX_TRUE_EXIT_CTLS: u32 = 0x48F;
pub const IA32_VMX_TRUE_ENTRY_CTLS: u32 = 0x490;
/// VMCS field encoding of the VM-instruction error field (SDM vol. 3D appendix B.3.3, 32-bit read-only data).
pub const VMCS_VM_INSTRUCTION_ERROR: u64 = 0x4400;

/// The processor as the VMX stage sees it. [`HardwareCpu`] executes the real instructions; host tests use a fake.
///
/// Reads are safe: reading a register or an MSR has no side effect (an MSR that does not exist raises #GP, a
/// fatal exception, not undefined behaviour; this module only reads VMX MSRs after CPUID reports VMX). Writes
/// and VMX instructions are `unsafe`: each says what the caller must guarantee.
pub trait VmxCpu {
    /// CPUID with EAX = `leaf`, ECX = `subleaf`.
    fn cpuid(&self, leaf: u32, subleaf: u32) -> CpuidResult;

    /// RDMSR.
    fn read_msr(&self, msr: u32) -> u64;

    /// WRMSR.
    ///
    /// # Safety
    /// The MSR must exist and accept `value` (otherwise #GP, e.g. IA32_FEATURE_CONTROL once locked), and the new
    /// value must not break anything the rest of the kernel relies on (memory types, paging, GS base, ...).
    unsafe fn write_msr(&mut self, msr: u32, value: u64);

    /// MOV from CR0.
    fn read_cr0(&self) -> u64;

    /// MOV from CR4.
    fn read_cr4(&self) -> u64;

    /// MOV to CR0.
    ///
    /// # Safety
    /// `value` must keep the paging mode (PE, PG) and the protections the kernel relies on (WP, CD/NW); in VMX
    /// operation it must also satisfy IA32_VMX_CR0_FIXED0/1, or the write raises #GP.
    unsafe fn write_cr0(&mut self, value: u64);

    /// MOV to CR4.
    ///
    /// # Safety
    /// `value` must keep the paging mode (PAE, LA57, PCIDE as set up) and the features the kernel uses
    /// (OSFXSR, OSXSAVE, ...); in VMX operation it must satisfy IA32_VMX_CR4_FIXED0/1 (so VMXE stays set).
    unsafe fn write_cr4(&mut self, value: u64);

    /// VMXON with the 64-bit physical address `phys` as its memory operand.
    ///
    /// # Safety
    /// CPL 0 in 64-bit mode. If it succeeds, the page at `phys` is the VMXON region until VMXOFF: it must be
    /// memory reserved for the processor (never accessed by software, never freed) for at least that long.
    /// Outside VMX operation, CR4.VMXE clear raises #UD, and CR0/CR4 fixed-bit violations or an unlocked or
    /// disabling IA32_FEATURE_CONTROL raise #GP; such a fault is fatal (see [`VmxCpu::vmxon_probe`]).
    unsafe fn vmxon(&mut self, phys: u64) -> Result<(), VmFail>;

    /// VMCLEAR of the VMCS at `phys`.
    ///
    /// # Safety
    /// In VMX root operation (else #UD). When `phys` is a valid, aligned address other than the VMXON pointer,
    /// the processor writes VMCS data to that page: it must be a region reserved for VMX use.
    unsafe fn vmclear(&mut self, phys: u64) -> Result<(), VmFail>;

    /// VMPTRLD of the VMCS at `phys`.
    ///
    /// # Safety
    /// In VMX root operation (else #UD). If it succeeds the page becomes the current VMCS and belongs to the
    /// processor until a VMCLEAR: it must be a region reserved for VMX use.
    unsafe fn vmptrld(&mut self, phys: u64) -> Result<(), VmFail>;

    /// VMPTRST: the current-VMCS pointer (`u64::MAX` when there is none).
    ///
    /// # Safety
    /// In VMX root operation (else #UD).
    unsafe fn vmptrst(&mut self) -> Result<u64, VmFail>;

    /// VMREAD of a field of the current VMCS (e.g. [`VMCS_VM_INSTRUCTION_ERROR`]).
    ///
    /// # Safety
    /// In VMX root operation (else #UD).
    unsafe fn vmread(&mut self, field: u64) -> Result<u64, VmFail>;

    /// VMXOFF.
    ///
    /// # Safety
    /// In VMX root operation (else #UD). The data of an active VMCS is not written back: VMCLEAR it first if
    /// its contents matter. After VMXOFF the regions are ordinary memory again.
    unsafe fn vmxoff(&mut self) -> Result<(), VmFail>;

    /// Whether [`VmxCpu::vmxon_probe`] catches #UD and #GP (the kernel's fix-up table is in place).
    fn can_catch_faults(&self) -> bool;

    /// VMXON that reports #UD/#GP as [`InstrOutcome::Fault`] instead of dying, for the self-test.
    ///
    /// # Safety
    /// As [`VmxCpu::vmxon`], except that faults are returned when [`VmxCpu::can_catch_faults`] is true (when it
    /// is false a fault is fatal, as for `vmxon`).
    unsafe fn vmxon_probe(&mut self, phys: u64) -> InstrOutcome;

    /// VMXOFF that reports #UD as [`InstrOutcome::Fault`] (the self-test runs it outside VMX operation).
    ///
    /// # Safety
    /// As [`VmxCpu::vmxoff`] when in VMX root operation; outside it, only when [`VmxCpu::can_catch_faults`] is
    /// true (the #UD is then returned).
    unsafe fn vmxoff_probe(&mut self) -> InstrOutcome;

    /// VMCLEAR that reports #UD as [`InstrOutcome::Fault`] (the self-test runs it outside VMX operation).
    ///
    /// # Safety
    /// As [`VmxCpu::vmclear`] when in VMX root operation; outside it, only when [`VmxCpu::can_catch_faults`]
    /// is true (the #UD is then returned).
    unsafe fn vmclear_probe(&mut self, phys: u64) -> InstrOutcome;

    /// WRMSR that reports a #GP as `Err` instead of dying (the self-test writes IA32_FEATURE_CONTROL after it
    /// is locked, which must raise #GP: SDM vol. 3C 24.7).
    ///
    /// # Safety
    /// As [`VmxCpu::write_msr`] should the processor accept the write; a #GP is returned only when
    /// [`VmxCpu::can_catch_faults`] is true (otherwise it is fatal, as for `write_msr`).
    unsafe fn write_msr_probe(&mut self, msr: u32, value: u64) -> Result<(), Exception>;

    /// MOV to CR0 that reports a #GP as `Err` (a value the processor refuses: a reserved bit set, SDM vol. 3A
    /// 2.5), for the self-test's fixed-bit sweeps.
    ///
    /// # Safety
    /// As [`VmxCpu::write_cr0`] should the processor accept `value`; a #GP is returned only when
    /// [`VmxCpu::can_catch_faults`] is true.
    unsafe fn write_cr0_probe(&mut self, value: u64) -> Result<(), Exception>;

    /// MOV to CR4 that reports a #GP as `Err` (a reserved or unsupported bit set, SDM vol. 3A 2.5), for the
    /// self-test's fixed-bit sweeps.
    ///
    /// # Safety
    /// As [`VmxCpu::write_cr4`] should the processor accept `value`; a #GP is returned only when
    /// [`VmxCpu::can_catch_faults`] is true.
    unsafe fn write_cr4_probe(&mut self, value: u64) -> Result<(), Exception>;
}
