//! The processor side of running a guest: VMREAD/VMWRITE of the current VMCS ([`HardwareVmcs`]), INVEPT,
//! VMLAUNCH/VMRESUME with the assembly VM-exit entry, the host's own state for the host-state area, and the
//! test guest's machine code.
//!
//! VM entry and exit (SDM vol. 3C ch. 27 "VM Entries", ch. 28 "VM Exits", 28.5 "Loading Host State"): a VM
//! exit loads RSP and RIP from HOST_RSP and HOST_RIP and leaves every general-purpose register with the guest's
//! value. `hv_vm_enter` therefore saves the callee-saved registers and the [`GuestRegs`] pointer on the core's
//! own stack, writes HOST_RSP (that stack pointer, when it changed since the last entry; HOST_RIP =
//! `hv_vm_exit` is written with the host state), loads the guest's registers and executes VMLAUNCH or
//! VMRESUME. Success does not return there: the next VM exit lands at `hv_vm_exit` on that
//! same stack, which stores the guest's registers through the saved pointer, restores the host's and returns
//! 0 to the caller of `hv_vm_enter`. VMfailInvalid/VMfailValid fall through and return 4 | CF | ZF << 1. The
//! per-core exit stack is thus the core's kernel stack (with its guard page) at the depth of the call, as in
//! KVM's `__vmx_vcpu_run`; HOST_RSP follows the entry's stack pointer, so any call depth works.
//!
//! Status of VMREAD, VMWRITE and INVEPT: SDM vol. 3C 31.2 "Conventions", CF and ZF captured with SETC/SETZ in
//! the same `asm!` block after presetting both (see `instructions.rs`).

use core::arch::{asm, global_asm};
use core::marker::PhantomData;
use core::mem::offset_of;

use x86_64::instructions::segmentation::{Segment, CS, DS, ES, FS, GS, SS};
use x86_64::instructions::tables::{lgdt, lidt, sgdt, sidt};
use x86_64::registers::control::{Cr0, Cr3, Cr4};
use x86_64::registers::model_specific::Efer;

use super::guest::{GuestProgram, GuestRegs};
use super::status::vmx_result;
use super::vmcs::{AccessError, AccessOp, EntryInstruction, Field, HostView, VmcsAccess};
use super::{VmFail, VMCS_VM_INSTRUCTION_ERROR};
use crate::arch::msr;

const IA32_SYSENTER_CS: u32 = 0x174;
const IA32_SYSENTER_ESP: u32 = 0x175;
const IA32_SYSENTER_EIP: u32 = 0x176;
const IA32_PAT: u32 = 0x277;

global_asm!(
    ".pushsection .text.hv_vm_entry, \"ax\"",
    ".global hv_vm_enter",
    // extern "sysv64" fn hv_vm_enter(regs: *mut GuestRegs /* rdi */, resume: u64 /* rsi */) -> u64
    "hv_vm_enter:",
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "push rdi",
    // HOST_RSP only when this entry's stack pointer differs from the last one written (HOST_RIP is written
    // once, with the rest of the host state).
    "cmp rsp, [rdi + {last_rsp}]",
    "je 5f",
    "mov [rdi + {last_rsp}], rsp",
    "mov rax, {host_rsp}",
    "vmwrite rax, rsp",
    "jbe 3f",
    "5:",
    // The MOVs below leave the flags of this TEST alone.
    "test rsi, rsi",
    "mov rax, [rdi + {rax}]",
    "mov rbx, [rdi + {rbx}]",
    "mov rcx, [rdi + {rcx}]",
    "mov rdx, [rdi + {rdx}]",
    "mov rbp, [rdi + {rbp}]",
    "mov r8, [rdi + {r8}]",
    "mov r9, [rdi + {r9}]",
    "mov r10, [rdi + {r10}]",
    "mov r11, [rdi + {r11}]",
    "mov r12, [rdi + {r12}]",
    "mov r13, [rdi + {r13}]",
    "mov r14, [rdi + {r14}]",
    "mov r15, [rdi + {r15}]",
    "mov rsi, [rdi + {rsi}]",
    "mov rdi, [rdi + {rdi}]",
    "jnz 2f",
    "vmlaunch",
    "jmp 3f",
    "2:",
    "vmresume",
    // VMfailInvalid (CF) or VMfailValid (ZF), from VMLAUNCH, VMRESUME or a VMWRITE above.
    "3:",
    "setc al",
    "setz cl",
    "movzx eax, al",
    "movzx ecx, cl",
    "lea eax, [rax + 2 * rcx + 4]",
    "add rsp, 8",
    "jmp 4f",
    ".global hv_vm_exit",
    // VM exit: RSP = HOST_RSP, so [rsp] is the GuestRegs pointer; every GPR but RSP is the guest's.
    "hv_vm_exit:",
    "xchg rdi, [rsp]",
    "mov [rdi + {rax}], rax",
    "mov [rdi + {rbx}], rbx",
    "mov [rdi + {rcx}], rcx",
    "mov [rdi + {rdx}], rdx",
    "mov [rdi + {rsi}], rsi",
    "mov [rdi + {rbp}], rbp",
    "mov [rdi + {r8}], r8",
    "mov [rdi + {r9}], r9",
    "mov [rdi + {r10}], r10",
    "mov [rdi + {r11}], r11",
    "mov [rdi + {r12}], r12",
    "mov [rdi + {r13}], r13",
    "mov [rdi + {r14}], r14",
    "mov [rdi + {r15}], r15",
    "pop rax",
    "mov [rdi + {rdi}], rax",
    "xor eax, eax",
    "4:",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
    ".popsection",
    host_rsp = const Field::HOST_RSP.encoding(),
    last_rsp = const offset_of!(GuestRegs, host_rsp),
    rax = const offset_of!(GuestRegs, rax),
    rbx = const offset_of!(GuestRegs, rbx),
    rcx = const offset_of!(GuestRegs, rcx),
    rdx = const offset_of!(GuestRegs, rdx),
    rsi = const offset_of!(GuestRegs, rsi),
    rdi = const offset_of!(GuestRegs, rdi),
    rbp = const offset_of!(GuestRegs, rbp),
    r8 = const offset_of!(GuestRegs, r8),
    r9 = const offset_of!(GuestRegs, r9),
    r10 = const offset_of!(GuestRegs, r10),
    r11 = const offset_of!(GuestRegs, r11),
    r12 = const offset_of!(GuestRegs, r12),
    r13 = const offset_of!(GuestRegs, r13),
    r14 = const offset_of!(GuestRegs, r14),
    r15 = const offset_of!(GuestRegs, r15),
);

// The test guest's program (docs/vmx.md, "The test guest"), copied into the guest's code page. Position
// independent; RCX at entry = the number of timed CPUID round trips.
global_asm!(
    ".pushsection .rodata.hv_test_guest, \"a\"",
    ".global hv_test_guest_start",
    ".global hv_test_guest_end",
    ".global hv_test_guest_io",
    ".global hv_test_guest_ept",
    "hv_test_guest_start:",
    // R8 = loops; RDI = TSC cycles of `loops` CPUID exits, R11 = of the same loop without the CPUID (the
    // loop's own cost, which the host subtracts).
    "mov r8, rcx",
    "mov r9, rcx",
    "rdtsc",
    "shl rdx, 32",
    "or rax, rdx",
    "mov r10, rax",
    "2:",
    "test r9, r9",
    "jz 3f",
    "mov eax, {leaf_signature}",
    "xor ecx, ecx",
    "cpuid",
    "dec r9",
    "jmp 2b",
    "3:",
    "rdtsc",
    "shl rdx, 32",
    "or rax, rdx",
    "sub rax, r10",
    "mov rdi, rax",
    "mov r9, r8",
    "rdtsc",
    "shl rdx, 32",
    "or rax, rdx",
    "mov r10, rax",
    "4:",
    "test r9, r9",
    "jz 5f",
    "mov eax, {leaf_signature}",
    "xor ecx, ecx",
    "nop",
    "dec r9",
    "jmp 4b",
    "5:",
    "rdtsc",
    "shl rdx, 32",
    "or rax, rdx",
    "sub rax, r10",
    "mov r11, rax",
    "mov eax, {leaf_apic_id}",
    "xor ecx, ecx",
    "cpuid",
    "mov esi, eax",
    "mov eax, {leaf_signature}",
    "xor ecx, ecx",
    "cpuid",
    "mov eax, {report}",
    "vmcall",
    "hlt",
    "mov eax, {done}",
    "vmcall",
    // Never reached: the host ends the guest at the final VMCALL. A #UD here would be a triple fault exit.
    "ud2",
    // `fault=guest_io`: an I/O instruction (unconditional I/O exiting: exit reason 30).
    "hv_test_guest_io:",
    "mov dx, 0x80",
    "out dx, al",
    "ud2",
    // `fault=guest_ept`: CR3 = guest-physical 0, which the EPT does not map: the next page walk is an EPT
    // violation (without EPT, CR3-load exiting or a walk of host page 0 ends it some other way: reported too).
    "hv_test_guest_ept:",
    "xor eax, eax",
    "mov cr3, rax",
    "ud2",
    "hv_test_guest_end:",
    ".popsection",
    leaf_signature = const super::guest::LEAF_SIGNATURE,
    leaf_apic_id = const super::guest::LEAF_APIC_ID,
    report = const super::guest::VMCALL_REPORT,
    done = const super::guest::VMCALL_DONE,
);

extern "sysv64" {
    fn hv_vm_enter(regs: *mut GuestRegs, resume: u64) -> u64;
    fn hv_vm_exit();
    static hv_test_guest_start: u8;
    static hv_test_guest_io: u8;
    static hv_test_guest_ept: u8;
    static hv_test_guest_end: u8;
}

/// Where in [`test_guest_program`] the guest starts: the program, or one of the deliberate faults.
pub fn test_guest_entry(program: GuestProgram) -> u64 {
    let start = core::ptr::addr_of!(hv_test_guest_start) as u64;
    match program {
        GuestProgram::Normal => 0,
        GuestProgram::IoExit => core::ptr::addr_of!(hv_test_guest_io) as u64 - start,
        GuestProgram::EptViolation => core::ptr::addr_of!(hv_test_guest_ept) as u64 - start,
    }
}

/// The test guest's machine code.
pub fn test_guest_program() -> &'static [u8] {
    let start = core::ptr::addr_of!(hv_test_guest_start);
    let end = core::ptr::addr_of!(hv_test_guest_end) as usize;
    // SAFETY: both symbols delimit one block of bytes in the image's read-only data (the global_asm above),
    // start before end; the image is never unmapped or written.
    unsafe { core::slice::from_raw_parts(start, end - start as usize) }
}

/// The address VM exits land at (HOST_RIP).
pub fn vm_exit_entry() -> u64 {
    hv_vm_exit as *const () as u64
}

/// The current VMCS of this core, read and written with VMREAD/VMWRITE, entered with VMLAUNCH/VMRESUME.
#[derive(Debug)]
pub struct HardwareVmcs {
    _this_core_only: PhantomData<*mut ()>,
}

impl HardwareVmcs {
    /// # Safety
    /// The caller is in VMX root operation at CPL 0 with a current VMCS that only this handle changes until it
    /// is dropped, on this core (the value is not `Send`). [`HardwareVmcs::enter`] relies on the caller having
    /// written, through this handle, a host-state area that is this core's own state (from [`host_view`]) and a
    /// guest whose memory is reserved for it: then a VM entry and the VM exits back cannot break the host.
    pub unsafe fn current() -> Self {
        Self {
            _this_core_only: PhantomData,
        }
    }

    fn error_number(&self) -> u32 {
        // VMfailValid means a current VMCS, whose error field VMREAD reads; a failure here cannot happen per
        // the SDM and reads as error 0.
        self.raw_read(VMCS_VM_INSTRUCTION_ERROR)
            .map_or(0, |v| v as u32)
    }

    #[inline(always)]
    fn raw_read(&self, encoding: u64) -> Result<u64, (u8, u8)> {
        // SAFETY: VMX root operation (constructor's contract).
        unsafe { super::instructions::vmread_flags(encoding) }
    }

    /// VMLAUNCH (`Vmlaunch`) or VMRESUME with the guest's registers `regs`; returns at the next VM exit with
    /// `regs` holding the guest's registers then, or with the VM-instruction failure. The host state must
    /// have HOST_RIP = [`vm_exit_entry`] (as [`host_view`] gives it).
    #[inline]
    pub fn enter(&mut self, regs: &mut GuestRegs, instr: EntryInstruction) -> Result<(), VmFail> {
        let resume = u64::from(instr == EntryInstruction::Vmresume);
        // SAFETY: the constructor's contract: VMX root, a current VMCS whose host state is this core's own and
        // whose HOST_RIP/HOST_RSP `hv_vm_enter` writes itself; the guest's memory is reserved for it. The
        // assembly saves and restores every callee-saved register and returns normally on a VM exit and on
        // a failure; `regs` is a live, exclusive GuestRegs for the whole call.
        let status = unsafe { hv_vm_enter(regs, resume) };
        if status == 0 {
            return Ok(());
        }
        let (cf, zf) = ((status & 1) as u8, ((status >> 1) & 1) as u8);
        match vmx_result(cf, zf, || self.error_number()) {
            Ok(()) => Err(VmFail::FlagsUndefined),
            Err(fail) => Err(fail),
        }
    }

    /// INVEPT of `kind` (1: single-context, for `eptp`; 2: all-context), SDM vol. 3C 31.3 "INVEPT".
    pub fn invept(&mut self, kind: u64, eptp: u64) -> Result<(), VmFail> {
        let descriptor: [u64; 2] = [eptp, 0];
        let (cf, zf): (u8, u8);
        // SAFETY: VMX root operation (constructor's contract); the caller checked that IA32_VMX_EPT_VPID_CAP
        // allows INVEPT of this type, else it fails (VMfailValid 28) rather than faulting in VMX root. The
        // descriptor is a live 16-byte local; INVEPT only reads it and the processor's own caches.
        unsafe {
            asm!(
                "cmp {kind}, {kind}",
                "stc",
                "invept {kind}, [{desc}]",
                "setc {cf}",
                "setz {zf}",
                kind = in(reg) kind,
                desc = in(reg) &descriptor,
                cf = out(reg_byte) cf,
                zf = out(reg_byte) zf,
                options(nostack),
            );
        }
        vmx_result(cf, zf, || self.error_number())
    }
}

impl VmcsAccess for HardwareVmcs {
    #[inline]
    fn vmread(&self, field: Field) -> Result<u64, AccessError> {
        self.raw_read(u64::from(field.encoding()))
            .map_err(|(cf, zf)| AccessError {
                op: AccessOp::Read,
                field,
                fail: match vmx_result(cf, zf, || self.error_number()) {
                    Err(fail) => fail,
                    Ok(()) => VmFail::FlagsUndefined,
                },
            })
    }

    #[inline]
    fn vmwrite(&mut self, field: Field, value: u64) -> Result<(), AccessError> {
        let (cf, zf): (u8, u8);
        // SAFETY: VMX root operation with a current VMCS (constructor's contract): VMWRITE cannot #UD and only
        // changes the current VMCS, which nothing runs on until `enter`.
        unsafe {
            asm!(
                "cmp {field}, {field}",
                "stc",
                "vmwrite {field}, {value}",
                "setc {cf}",
                "setz {zf}",
                field = in(reg) u64::from(field.encoding()),
                value = in(reg) value,
                cf = out(reg_byte) cf,
                zf = out(reg_byte) zf,
                options(nostack),
            );
        }
        if cf == 0 && zf == 0 {
            return Ok(());
        }
        vmx_result(cf, zf, || self.error_number()).map_err(|fail| AccessError {
            op: AccessOp::Write,
            field,
            fail,
        })
    }
}

/// What the host-state area needs that only the processor knows: the control registers, the selectors in
/// use, the descriptor-table bases, FS/GS bases and the SYSENTER, EFER and PAT MSRs. `tr_base` is the core's
/// TSS (from its PCB: the GDT holds it in a 16-byte descriptor the processor does not report); `rsp` is a
/// placeholder that `hv_vm_enter` replaces with the stack pointer of each entry.
pub fn host_view(tr_base: u64, rsp: u64) -> HostView {
    let tr: u16;
    // SAFETY: STR only reads the task register into a general-purpose register.
    unsafe { asm!("str {0:x}", out(reg) tr, options(nomem, nostack, preserves_flags)) };
    // SAFETY: RDMSR of architectural MSRs every 64-bit processor with VMX has (the SYSENTER MSRs since the
    // Pentium II, IA32_PAT since the Pentium III; VMX requires both). No side effects.
    let read = |index: u32| unsafe { msr::read(index) };
    HostView {
        cr0: Cr0::read_raw(),
        cr3: Cr3::read_raw().0.start_address().as_u64() | u64::from(Cr3::read_raw().1),
        cr4: Cr4::read_raw(),
        cs: CS::get_reg().0,
        ss: SS::get_reg().0,
        ds: DS::get_reg().0,
        es: ES::get_reg().0,
        fs: FS::get_reg().0,
        gs: GS::get_reg().0,
        tr,
        fs_base: msr::FsBase::read().as_u64(),
        gs_base: msr::GsBase::read().as_u64(),
        tr_base,
        gdtr_base: sgdt().base.as_u64(),
        idtr_base: sidt().base.as_u64(),
        sysenter_cs: read(IA32_SYSENTER_CS) as u32,
        sysenter_esp: read(IA32_SYSENTER_ESP),
        sysenter_eip: read(IA32_SYSENTER_EIP),
        efer: Efer::read_raw(),
        pat: read(IA32_PAT),
        rip: vm_exit_entry(),
        rsp,
    }
}

/// The GDTR and IDTR limits, which every VM exit sets to 0xFFFF (SDM vol. 3C 28.5.2): saved before a guest
/// runs and restored after it, so the host's descriptor tables are exactly as before.
pub struct DescriptorTables {
    gdt: x86_64::structures::DescriptorTablePointer,
    idt: x86_64::structures::DescriptorTablePointer,
}

impl DescriptorTables {
    pub fn save() -> Self {
        Self {
            gdt: sgdt(),
            idt: sidt(),
        }
    }

    pub fn restore(&self) {
        // SAFETY: the pointers are the ones this core had loaded (`save`), to 'static tables that stay valid;
        // only the limits the VM exit widened change back.
        unsafe {
            lgdt(&self.gdt);
            lidt(&self.idt);
        }
    }
}
