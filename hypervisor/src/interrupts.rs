//! Exceptions: one IDT shared by every core, assembly entry stubs that save a [`TrapFrame`], and a dispatcher
//! that either applies a registered fix-up (an expected fault, e.g. in the VMX self-test) or reports the fault
//! and ends the run with `verdict=fail`.

/// Register state saved by the entry stubs, lowest address first.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    // Pushed by the CPU (SDM vol. 3A 7.14.2, 64-bit mode stack frame).
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// One entry of the fix-up table: a fault at `fault_rip` resumes at `resume_rip` with RAX = the vector.
/// Entries are emitted by `asm!` blocks into the `.ex_table` section.
#[repr(C)]
pub struct FixupEntry {
    pub fault_rip: u64,
    pub resume_rip: u64,
}

/// Whether an exception with `vector` may be a fault of a fixed-up instruction: the VMX instructions under
/// fix-up raise only #UD (6) and #GP (13) (SDM 31.3), the self-test's WRMSR and MOV-to-CR0/CR4 probes only #GP. An NMI (2), a machine check (18) or any other vector whose
/// saved RIP happens to be such an instruction (an NMI is taken before it executes) is not that instruction's
/// fault and is handled as usual.
pub const fn fixup_applies(vector: u64) -> bool {
    matches!(vector, 6 | 13)
}

pub fn find_fixup(table: &[FixupEntry], rip: u64) -> Option<u64> {
    table
        .iter()
        .find(|e| e.fault_rip == rip)
        .map(|e| e.resume_rip)
}

/// What a stage wants done on an NMI (the VMX stage's teardown); true if the NMI was its own. Core services
/// never call a stage: the stage registers itself here.
static NMI_HOOK: spin::Once<fn() -> bool> = spin::Once::new();

/// Registers the NMI hook (the first registration counts).
pub fn set_nmi_hook(hook: fn() -> bool) {
    NMI_HOOK.call_once(|| hook);
}

#[cfg(target_os = "none")]
mod hw {
    use super::*;
    use crate::{exit, percpu};
    use core::cell::UnsafeCell;
    use x86_64::instructions::tables::lidt;
    use x86_64::structures::DescriptorTablePointer;
    use x86_64::VirtAddr;

    // Stubs for vectors 0..31: push a zero error code where the CPU does not, push the vector, save the
    // general-purpose registers, call `exception_dispatch(&mut TrapFrame)`, restore and IRETQ.
    // The CPU aligns RSP to 16 before pushing its 40-byte frame; 2 + 15 pushes keep it 16-aligned at the call.
    core::arch::global_asm!(
        r#"
        .section .text.isr, "ax"
        .altmacro
        .macro ISR vec, err
        isr_\vec:
            .if \err == 0
            push $0
            .endif
            push $\vec
            jmp isr_common
        .endm
        ISR 0,0
        ISR 1,0
        ISR 2,0
        ISR 3,0
        ISR 4,0
        ISR 5,0
        ISR 6,0
        ISR 7,0
        ISR 8,1
        ISR 9,0
        ISR 10,1
        ISR 11,1
        ISR 12,1
        ISR 13,1
        ISR 14,1
        ISR 15,0
        ISR 16,0
        ISR 17,1
        ISR 18,0
        ISR 19,0
        ISR 20,0
        ISR 21,1
        ISR 22,0
        ISR 23,0
        ISR 24,0
        ISR 25,0
        ISR 26,0
        ISR 27,0
        ISR 28,0
        ISR 29,1
        ISR 30,1
        ISR 31,0
        isr_common:
            push %rax
            push %rbx
            push %rcx
            push %rdx
            push %rsi
            push %rdi
            push %rbp
            push %r8
            push %r9
            push %r10
            push %r11
            push %r12
            push %r13
            push %r14
            push %r15
            mov %rsp, %rdi
            cld
            call exception_dispatch
            pop %r15
            pop %r14
            pop %r13
            pop %r12
            pop %r11
            pop %r10
            pop %r9
            pop %r8
            pop %rbp
            pop %rdi
            pop %rsi
            pop %rdx
            pop %rcx
            pop %rbx
            pop %rax
            add $16, %rsp
            iretq

        .section .rodata.isr, "a"
        .balign 8
        .global isr_stub_table
        isr_stub_table:
        .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
            .quad isr_\n
        .endr
        .text
        "#,
        options(att_syntax)
    );

    extern "C" {
        static isr_stub_table: [u64; 32];
        static __ex_table_start: FixupEntry;
        static __ex_table_end: FixupEntry;
    }

    #[repr(C, align(16))]
    struct Idt(UnsafeCell<[u64; 512]>);

    // SAFETY: written only by `init` on the BSP before any AP exists, read-only afterwards.
    unsafe impl Sync for Idt {}

    static IDT: Idt = Idt(UnsafeCell::new([0; 512]));
    /// The same gates without IST stacks, for an AP before its PCB (whose TSS holds the IST stacks) exists.
    static EARLY_IDT: Idt = Idt(UnsafeCell::new([0; 512]));

    /// The GDT an AP runs on from [`load_early_on_ap`] until its PCB's GDT: null, 64-bit code at 0x08 (the IDT
    /// gates' CS, as in the BSP's boot GDT and every PCB's GDT), flat data at 0x10. The accessed bits are preset,
    /// so the CPU never writes to it (SDM vol. 3A 3.4.5 "Segment Descriptors").
    static EARLY_GDT: [u64; 3] = [0, 0x00AF_9B00_0000_FFFF, 0x00CF_9300_0000_FFFF];
    const EARLY_CODE: u16 = 0x08;
    const EARLY_DATA: u16 = 0x10;

    /// Fills the shared IDT. Runs once, on the BSP, before anything can fault.
    pub fn init() {
        // SAFETY: `isr_stub_table` is a 32-entry table of code addresses defined in the assembly above.
        let stubs = unsafe { &*core::ptr::addr_of!(isr_stub_table) };
        let cs = {
            use x86_64::instructions::segmentation::{Segment, CS};
            CS::get_reg().0
        };
        // The APs' early GDT has its 64-bit code segment at the same selector.
        assert_eq!(
            cs, EARLY_CODE,
            "the IDT gates' CS is the early GDT's code selector"
        );
        // SAFETY: single-threaded early boot on the BSP; nothing has loaded either IDT yet.
        let (idt, early) = unsafe { (&mut *IDT.0.get(), &mut *EARLY_IDT.0.get()) };
        for (vector, &handler) in stubs.iter().enumerate() {
            let ist = match vector {
                8 => percpu::IST_DOUBLE_FAULT,
                2 => percpu::IST_NMI,
                18 => percpu::IST_MACHINE_CHECK,
                _ => 0,
            };
            // 64-bit interrupt gate (SDM vol. 3A 7.14.1): offset 15:0, selector, IST, type 0xE, present.
            let low = (handler & 0xFFFF)
                | (u64::from(cs) << 16)
                | (0x8E << 40)
                | ((handler >> 16) & 0xFFFF) << 48;
            idt[vector * 2] = low | (u64::from(ist) << 32);
            idt[vector * 2 + 1] = handler >> 32;
            early[vector * 2] = low;
            early[vector * 2 + 1] = handler >> 32;
        }
    }

    /// On an AP straight from the trampoline (whose GDT has a 32-bit code segment at 0x08 and whose TR is the
    /// null TSS): loads the early GDT, reloads CS, SS, DS and ES from it, and loads the IDT without IST stacks,
    /// so an exception before the AP's PCB is installed is reported instead of triple-faulting (SDM vol. 3A
    /// 7.14.1 "64-Bit Mode IDT": the gate's selector must name a 64-bit code segment; 7.14.5 "Interrupt Stack
    /// Table": an IST index reads the TSS). Exceptions then run on the AP's own (guarded) stack; `load` replaces
    /// this IDT once the PCB's GDT and TSS are loaded.
    pub fn load_early_on_ap() {
        use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
        use x86_64::structures::gdt::SegmentSelector;
        use x86_64::PrivilegeLevel::Ring0;
        let gdt = DescriptorTablePointer {
            limit: (3 * 8 - 1) as u16,
            base: VirtAddr::new(EARLY_GDT.as_ptr() as u64),
        };
        let idt = DescriptorTablePointer {
            limit: (512 * 8 - 1) as u16,
            base: VirtAddr::new(EARLY_IDT.0.get() as u64),
        };
        // SAFETY: the early GDT is 'static with a flat 64-bit code and a flat data descriptor (accessed bits set,
        // so never written); the selectors name them; the early IDT was filled by `init` (the BSP ran it before
        // any AP was started) with gates to valid handlers through CS 0x08.
        unsafe {
            x86_64::instructions::tables::lgdt(&gdt);
            CS::set_reg(SegmentSelector::new(EARLY_CODE / 8, Ring0));
            SS::set_reg(SegmentSelector::new(EARLY_DATA / 8, Ring0));
            DS::set_reg(SegmentSelector::new(EARLY_DATA / 8, Ring0));
            ES::set_reg(SegmentSelector::new(EARLY_DATA / 8, Ring0));
            lidt(&idt);
        }
    }

    /// Loads the shared IDT on the calling core.
    pub fn load() {
        let ptr = DescriptorTablePointer {
            limit: (512 * 8 - 1) as u16,
            base: VirtAddr::new(IDT.0.get() as u64),
        };
        // SAFETY: the IDT is 'static and was filled by `init` with gates to valid handlers.
        unsafe { lidt(&ptr) };
    }

    fn fixup_table() -> &'static [FixupEntry] {
        // SAFETY: the linker script brackets the `.ex_table` section with these two symbols.
        unsafe {
            let start = core::ptr::addr_of!(__ex_table_start);
            let end = core::ptr::addr_of!(__ex_table_end);
            core::slice::from_raw_parts(start, end.offset_from(start) as usize)
        }
    }

    #[no_mangle]
    extern "C" fn exception_dispatch(frame: &mut TrapFrame) {
        if let Some(resume) =
            find_fixup(fixup_table(), frame.rip).filter(|_| fixup_applies(frame.vector))
        {
            frame.rip = resume;
            frame.rax = frame.vector;
            return;
        }
        if frame.vector == 2 && NMI_HOOK.get().is_some_and(|hook| hook()) {
            return;
        }
        let cr2 = x86_64::registers::control::Cr2::read_raw();
        let cpu = percpu::current_index();
        let overflow =
            percpu::this_cpu().filter(|p| p.guard_page != 0 && cr2 & !0xFFF == p.guard_page);
        if frame.vector == 8 && overflow.is_some() {
            log::error!(
                target: "fault",
                "stack overflow: guard page 0x{:x} hit (double fault) rip=0x{:x} rsp=0x{:x} cpu={}",
                cr2 & !0xFFF,
                frame.rip,
                frame.rsp,
                cpu
            );
            exit::fatal(exit::Reason::StackOverflow);
        }
        log::error!(
            target: "fault",
            "exception={} vector={} error_code=0x{:x} rip=0x{:x} cr2=0x{:x} rsp=0x{:x} cpu={}",
            crate::arch::exception::name(frame.vector),
            frame.vector,
            frame.error_code,
            frame.rip,
            cr2,
            frame.rsp,
            cpu
        );
        exit::fatal(exit::Reason::Exception);
    }
}

#[cfg(target_os = "none")]
pub use hw::{init, load, load_early_on_ap};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trap_frame_matches_the_stub_layout() {
        // 15 saved registers, vector, error code, then the CPU's 5-word frame.
        assert_eq!(core::mem::size_of::<TrapFrame>(), 22 * 8);
        assert_eq!(core::mem::offset_of!(TrapFrame, vector), 15 * 8);
        assert_eq!(core::mem::offset_of!(TrapFrame, rip), 17 * 8);
    }

    #[test]
    fn only_ud_and_gp_are_fixed_up() {
        assert!(fixup_applies(6) && fixup_applies(13));
        // NMI, #DF, #MC, #PF and the rest are never a VMX instruction's expected fault.
        for vector in (0..32).filter(|v| *v != 6 && *v != 13) {
            assert!(!fixup_applies(vector), "vector {vector}");
        }
    }

    #[test]
    fn fixups_are_found_by_exact_rip() {
        let table = [
            FixupEntry {
                fault_rip: 0x1000,
                resume_rip: 0x2000,
            },
            FixupEntry {
                fault_rip: 0x1010,
                resume_rip: 0x2010,
            },
        ];
        assert_eq!(find_fixup(&table, 0x1010), Some(0x2010));
        assert_eq!(find_fixup(&table, 0x1011), None);
    }
}
