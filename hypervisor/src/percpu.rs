//! Per-CPU state: each core's processor control block (PCB), reached through IA32_GS_BASE.
//!
//! The PCB's first word points to itself, so `this_cpu()` is one GS-relative load plus a check that GS was set.

use crate::arch;
use core::sync::atomic::{AtomicU32, Ordering};
use x86_64::structures::gdt::GlobalDescriptorTable;
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

/// Status bits of a PCB's status word.
pub mod status {
    pub const ONLINE: u32 = 1 << 0;
    pub const VMX_CAPABLE: u32 = 1 << 1;
    /// The seed design's CPU_STATUS_VMXON: this core executed VMXON successfully and has not left.
    pub const VMX_ROOT: u32 = 1 << 2;
    pub const FAILED: u32 = 1 << 3;
}

/// A core's VMX state with the regions it was entered with (the same pair must be used for every call).
pub struct VmxCore {
    pub state: crate::vmx::VmxState,
    pub regions: crate::vmx::RegionPair,
}

// SAFETY: the regions' pointers refer to frames reserved for this core for the whole run; the value lives in its
// PCB and is only used by that core (the mutex just makes the ownership explicit).
unsafe impl Send for VmxCore {}

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
    /// This core's VMX state and regions; only this core locks it.
    pub vmx: spin::Mutex<Option<VmxCore>>,
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
    use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
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
    // come from that same GDT. GS base is written last, after the PCB is complete.
    unsafe {
        CS::set_reg(code);
        DS::set_reg(data);
        ES::set_reg(data);
        SS::set_reg(data);
        x86_64::instructions::tables::load_tss(tss_sel);
        arch::write_msr(arch::IA32_GS_BASE, pcb as *const Pcb as u64);
    }
    pcb
}

/// Bytes of each IST stack (double fault, NMI, machine check).
pub const IST_STACK_BYTES: u64 = 16 * 1024;

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
pub fn this_cpu() -> Option<&'static Pcb> {
    // SAFETY: reading IA32_GS_BASE is always allowed at CPL 0 on x86_64.
    let base = unsafe { arch::read_msr(arch::IA32_GS_BASE) };
    if base == 0 {
        return None;
    }
    // SAFETY: a non-zero GS base is only ever set by `install`, to a 'static, never-moved PCB.
    Some(unsafe { &*(base as *const Pcb) })
}

/// This core's logical index; 0 (the BSP) before any PCB exists, which is only true early on the BSP.
pub fn current_index() -> u32 {
    this_cpu().map_or(0, |p| p.index)
}
