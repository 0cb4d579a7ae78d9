//! Per-CPU state: each core's processor control block (PCB), reached through IA32_GS_BASE.
//!
//! The PCB's first word points to itself, so [`this_cpu`] is one GS-relative load (`mov reg, gs:[0]`) after a
//! check that this core installed its PCB. The check is the GS *selector*: it is 0 on every core until
//! [`install`] (reset and INIT clear it, boot/src/entry.s loads 0 on the BSP, the AP trampoline never loads
//! it), and [`install`] loads the data selector into GS before it writes IA32_GS_BASE (in 64-bit mode a
//! selector load sets the base from the descriptor, so the MSR write comes after; SDM vol. 3A 3.4.4). Reading
//! the selector is a plain register move, so no RDMSR runs on every log line.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use x86_64::structures::gdt::GlobalDescriptorTable;
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

/// Status bits of a PCB's status word, readable by any core (and by an NMI handler) without a lock.
pub mod status {
    pub const ONLINE: u32 = 1 << 0;
    /// The core is in VMX root operation. Set by the core only after its `vmx` state is recorded, cleared
    /// after VMXOFF; the teardown reads it instead of locking another core's `vmx`.
    pub const VMX_ROOT: u32 = 1 << 1;
    /// The core is in its VMX stage (it may be between VMXON and recording its state).
    pub const VMX_STAGE: u32 = 1 << 2;
    pub const FAILED: u32 = 1 << 3;
    /// The core's test guest ran to the end and passed (the compact `vmx: guest cpus=` lines).
    pub const GUEST_OK: u32 = 1 << 4;
}

/// Pages of each core's kernel stack (a guard page sits below).
pub const STACK_PAGES: u64 = 16;
/// Bytes of each IST stack (double fault, NMI, machine check).
pub const IST_STACK_BYTES: u64 = 16 * 1024;
/// Bytes of the frames that hold a PCB (which holds the GDT and TSS).
pub const PCB_BYTES: u64 = (core::mem::size_of::<Pcb>() as u64).next_multiple_of(4096);
/// What each core's PCB costs in frames: the stack with its guard page, three IST stacks and the PCB.
pub const BYTES_PER_CORE: u64 = (STACK_PAGES + 1) * 4096 + 3 * IST_STACK_BYTES + PCB_BYTES;

/// IST slots (1-based in the IDT, 0-based in the TSS).
pub const IST_DOUBLE_FAULT: u16 = 1;
pub const IST_NMI: u16 = 2;
pub const IST_MACHINE_CHECK: u16 = 3;

/// One core's processor control block.
#[repr(C)]
pub struct Pcb {
    /// Must stay first: `gs:[0]` (see `this_cpu`).
    self_ptr: *const Pcb,
    /// Must stay second: `gs:[8]` (see `current_index`).
    pub index: u32,
    pub apic_id: u32,
    pub x2apic: bool,
    /// CPUID.1 ECX and EDX, and MAXPHYADDR, as this core reports them.
    pub cpuid1_ecx: u32,
    pub cpuid1_edx: u32,
    pub maxphyaddr: u8,
    /// [bottom, top) of the kernel stack; the page below `bottom` is an unmapped guard page (0 if none).
    pub stack: (u64, u64),
    pub guard_page: u64,
    pub status: AtomicU32,
    /// This core's VMX state and regions (None until the VMX stage made them); only this core locks it (other
    /// cores read `status::VMX_ROOT`).
    pub vmx: spin::Mutex<Option<crate::vmx::VmxCore>>,
    /// When this core finished the VMX stage (microseconds since boot, 0 = not reached).
    pub vmx_done_us: AtomicU64,
    pub tss: TaskStateSegment,
    pub gdt: GlobalDescriptorTable,
}

// SAFETY: `self_ptr` is only ever the PCB's own address; all state mutated after construction is atomic.
unsafe impl Sync for Pcb {}
// SAFETY: as above; a PCB is built by its core and then only shared.
unsafe impl Send for Pcb {}

pub struct PcbInit {
    pub index: u32,
    pub apic_id: u32,
    pub x2apic: bool,
    pub cpuid1_ecx: u32,
    pub cpuid1_edx: u32,
    pub maxphyaddr: u8,
    pub stack: (u64, u64),
    pub guard_page: u64,
    /// Tops of the double-fault, NMI and machine-check stacks.
    pub ist_tops: [u64; 3],
}

impl Pcb {
    pub fn new(init: PcbInit) -> Self {
        let mut tss = TaskStateSegment::new();
        for (slot, top) in init.ist_tops.iter().enumerate() {
            tss.interrupt_stack_table[slot] = VirtAddr::new(*top);
        }
        Pcb {
            self_ptr: core::ptr::null(),
            index: init.index,
            apic_id: init.apic_id,
            x2apic: init.x2apic,
            cpuid1_ecx: init.cpuid1_ecx,
            cpuid1_edx: init.cpuid1_edx,
            maxphyaddr: init.maxphyaddr,
            stack: init.stack,
            guard_page: init.guard_page,
            status: AtomicU32::new(0),
            vmx: spin::Mutex::new(None),
            vmx_done_us: AtomicU64::new(0),
            tss,
            gdt: GlobalDescriptorTable::new(),
        }
    }

    pub fn has_status(&self, bit: u32) -> bool {
        self.status.load(Ordering::Acquire) & bit != 0
    }

    pub fn set_status(&self, bit: u32) {
        self.status.fetch_or(bit, Ordering::AcqRel);
    }

    pub fn clear_status(&self, bit: u32) {
        self.status.fetch_and(!bit, Ordering::AcqRel);
    }
}

/// Installs `pcb` as this core's PCB: builds and loads its GDT and TSS, and points IA32_GS_BASE at it.
///
/// # Safety
/// Must run once per core, on that core, before anything reads `this_cpu()`; `pcb` must point to an initialized
/// PCB that is never moved or freed and that nothing else references yet.
#[cfg(target_os = "none")]
pub unsafe fn install(pcb: core::ptr::NonNull<Pcb>) -> &'static Pcb {
    use x86_64::instructions::segmentation::{Segment, CS, DS, ES, GS, SS};
    use x86_64::structures::gdt::Descriptor;
    // SAFETY: per the caller's guarantee the PCB lives forever and is not referenced elsewhere yet.
    let pcb = unsafe { &mut *pcb.as_ptr() };
    pcb.self_ptr = pcb as *const Pcb;
    let tss: &'static TaskStateSegment =
        // SAFETY: the TSS lives inside the 'static PCB, which is never moved (caller's guarantee).
        unsafe { &*(&pcb.tss as *const TaskStateSegment) };
    let code = pcb.gdt.append(Descriptor::kernel_code_segment());
    let data = pcb.gdt.append(Descriptor::kernel_data_segment());
    let tss_sel = pcb.gdt.append(Descriptor::tss_segment(tss));
    let pcb: &'static Pcb = pcb;
    pcb.gdt.load();
    // SAFETY: the GDT is 'static and holds valid flat code/data descriptors and this core's TSS; the selectors
    // come from that same GDT. GS gets the data selector (the "installed" mark `this_cpu` checks) and then its
    // base, last, after the PCB is complete: from here `gs:[0]` is the PCB's self pointer.
    unsafe {
        CS::set_reg(code);
        DS::set_reg(data);
        ES::set_reg(data);
        SS::set_reg(data);
        x86_64::instructions::tables::load_tss(tss_sel);
        GS::set_reg(data);
    }
    crate::arch::msr::GsBase::write(VirtAddr::new(pcb as *const Pcb as u64));
    pcb
}

/// Builds this core's PCB in fresh frames (the PCB itself and its three IST stacks) and installs it.
/// `stack` is (guard page, bottom, top) of the stack this core runs on. None when memory is exhausted.
#[cfg(target_os = "none")]
pub fn build_and_install(
    index: u32,
    apic_id: u32,
    x2apic: bool,
    stack: (u64, u64, u64),
) -> Option<&'static Pcb> {
    use crate::memory::{alloc_zeroed, PAGE_SIZE};
    let ist_pages = IST_STACK_BYTES / PAGE_SIZE;
    // Stacks are written before they are read: no need to zero them.
    let ist = crate::memory::alloc(3 * ist_pages, PAGE_SIZE)?;
    let pcb_pages = (core::mem::size_of::<Pcb>() as u64).div_ceil(PAGE_SIZE);
    let frame = alloc_zeroed(pcb_pages, PAGE_SIZE)? as *mut Pcb;
    let leaf1 = crate::arch::cpuid::cpuid(1, 0);
    let pcb = Pcb::new(PcbInit {
        index,
        apic_id,
        x2apic,
        cpuid1_ecx: leaf1.ecx,
        cpuid1_edx: leaf1.edx,
        maxphyaddr: crate::arch::cpuid::CpuInfo::read().maxphyaddr,
        stack: (stack.1, stack.2),
        guard_page: stack.0,
        ist_tops: [1, 2, 3].map(|i| ist + i * IST_STACK_BYTES),
    });
    // SAFETY: `frame` is freshly allocated, page-aligned (so aligned for Pcb), large enough, and owned by this
    // core alone; it is never freed, so the reference is 'static.
    let pcb = unsafe {
        frame.write(pcb);
        core::ptr::NonNull::new_unchecked(frame)
    };
    // SAFETY: each core calls this once, on itself, before using `this_cpu()`; the PCB is never moved.
    let pcb = unsafe { install(pcb) };
    pcb.set_status(status::ONLINE);
    ALL.lock().push(pcb);
    Some(pcb)
}

/// Every installed PCB, in the order the cores came online.
#[cfg(target_os = "none")]
pub static ALL: spin::Mutex<alloc::vec::Vec<&'static Pcb>> =
    spin::Mutex::new(alloc::vec::Vec::new());

/// This core's PCB, or None before `install` ran on it.
#[cfg(target_os = "none")]
#[inline]
pub fn this_cpu() -> Option<&'static Pcb> {
    let selector: u16;
    // SAFETY: reading a segment register has no side effect.
    unsafe {
        core::arch::asm!("mov {0:x}, gs", out(reg) selector, options(nomem, nostack, preserves_flags))
    };
    if selector == 0 {
        return None;
    }
    let pcb: *const Pcb;
    // SAFETY: a non-null GS selector means `install` ran on this core, so GS base points to this core's
    // 'static, never-moved PCB, whose first word (`self_ptr`) holds its own address.
    unsafe {
        core::arch::asm!("mov {0}, gs:[0]", out(reg) pcb, options(readonly, nostack, preserves_flags));
        Some(&*pcb)
    }
}

/// Host builds have no PCB.
#[cfg(not(target_os = "none"))]
pub fn this_cpu() -> Option<&'static Pcb> {
    None
}

/// IA32_GS_BASE of an AP between its arrival in Rust and [`install`]: this mark (canonical, and never a
/// PCB address, which is below 4 GiB) plus the AP's logical index in the low 32 bits. The GS selector is 0
/// meanwhile, so [`this_cpu`] still says "no PCB".
#[cfg(any(target_os = "none", test))]
const EARLY_AP_MARK: u64 = 0xFFFF_A9A0_0000_0000;

/// Marks the calling AP as "started, PCB not installed yet, logical index `index`" (see [`early_ap_index`]).
#[cfg(target_os = "none")]
pub fn mark_early_ap(index: u32) {
    crate::arch::msr::GsBase::write(VirtAddr::new(EARLY_AP_MARK | u64::from(index)));
}

/// The logical index of the calling core if it is an AP that has not installed its PCB yet ([`mark_early_ap`]);
/// None on a core with a PCB and on the BSP. Reads IA32_GS_BASE, so it is for the rare paths (before a PCB).
#[cfg(target_os = "none")]
pub fn early_ap_index() -> Option<u32> {
    if this_cpu().is_some() {
        return None;
    }
    early_index_from_gs_base(crate::arch::msr::GsBase::read().as_u64())
}

/// The AP index an IA32_GS_BASE value marks, if it is an early-AP mark.
#[cfg(any(target_os = "none", test))]
fn early_index_from_gs_base(base: u64) -> Option<u32> {
    (base & !0xFFFF_FFFF == EARLY_AP_MARK).then_some(base as u32)
}

/// Host builds have no APs.
#[cfg(not(target_os = "none"))]
pub fn early_ap_index() -> Option<u32> {
    None
}

/// This core's logical index; before a PCB exists, an AP's early mark or 0 (early on the BSP).
pub fn current_index() -> u32 {
    this_cpu().map_or_else(|| early_ap_index().unwrap_or(0), |p| p.index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_early_ap_mark_names_only_marked_aps() {
        assert_eq!(early_index_from_gs_base(EARLY_AP_MARK | 7), Some(7));
        assert_eq!(
            early_index_from_gs_base(EARLY_AP_MARK | 0xFFFF_FFFF),
            Some(u32::MAX)
        );
        // The reset value, a PCB address below 4 GiB and a stray kernel-half address are no mark.
        for base in [0, 0x0012_3000, 0xFFFF_8000_0000_1000] {
            assert_eq!(early_index_from_gs_base(base), None, "{base:#x}");
        }
        // The mark is canonical (bits 63:47 equal), or WRMSR to IA32_GS_BASE would #GP (SDM vol. 4).
        assert_eq!(EARLY_AP_MARK >> 47, 0x1_FFFF);
    }
}
