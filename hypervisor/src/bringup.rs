//! The hardware side of AP start-up: per-AP slots (stack, logical index), the trampoline page, and the Rust
//! entry every AP reaches. The decisions (MADT -> CPU list, INIT/SIPI timing, timeouts) live in the `smp` crate.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Slot states. The AP moves its slot WAITING -> STARTED -> ONLINE (or STARTED -> FAILED when its PCB cannot be
/// built); the BSP, when it stops waiting, moves WAITING or STARTED -> FAILED. Every move is a compare-and-swap
/// ([`ApSlot::transition`]), so a late AP and the BSP cannot both win: an AP is counted online or failed, never both.
pub mod slot_state {
    pub const WAITING: u32 = 0;
    /// The AP reached Rust: it answered the SIPI.
    pub const STARTED: u32 = 1;
    /// Its PCB is built and installed.
    pub const ONLINE: u32 = 2;
    pub const FAILED: u32 = 3;
}

/// What the trampoline needs to find an AP's stack from its APIC id (stride 128 bytes, see trampoline.s),
/// plus the AP's progress and phase times (microseconds since boot, 0 = not reached).
#[repr(C, align(128))]
pub struct ApSlot {
    pub apic_id: u32,
    pub index: u32,
    pub stack_top: u64,
    pub stack_bottom: u64,
    pub guard_page: u64,
    pub state: AtomicU32,
    /// Microseconds since boot when the AP reached Rust, and when its PCB was built.
    pub started_us: AtomicU64,
    pub online_us: AtomicU64,
    /// When the BSP sent this AP its first SIPI.
    pub sipi_us: AtomicU64,
    /// When this AP finished the VMX stage.
    pub vmx_us: AtomicU64,
}

impl ApSlot {
    pub fn new(apic_id: u32, index: u32, stack: (u64, u64, u64)) -> Self {
        ApSlot {
            apic_id,
            index,
            guard_page: stack.0,
            stack_bottom: stack.1,
            stack_top: stack.2,
            state: AtomicU32::new(slot_state::WAITING),
            started_us: AtomicU64::new(0),
            online_us: AtomicU64::new(0),
            sipi_us: AtomicU64::new(0),
            vmx_us: AtomicU64::new(0),
        }
    }

    pub fn state(&self) -> u32 {
        self.state.load(Ordering::Acquire)
    }

    /// Moves the slot from `from` to `to` if it is in `from`; false if another core moved it first. The AP and
    /// the BSP both change a slot's state only this way, so they cannot both win (see `slot_state`).
    pub fn transition(&self, from: u32, to: u32) -> bool {
        self.state
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// Offsets inside the trampoline, exported by trampoline.s (in this order).
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct TrampolineOffsets {
    pub gdt: u64,
    pub gdtr: u64,
    pub far32: u64,
    pub pm32: u64,
    pub far64: u64,
    pub lm64: u64,
    pub cr3: u64,
    pub entry: u64,
    pub table: u64,
    pub count: u64,
}

/// The patches the BSP applies to the copied trampoline at `page`: (offset, bytes) pairs.
pub fn trampoline_patches(
    page: u64,
    off: &TrampolineOffsets,
    cr3: u64,
    entry: u64,
    table: u64,
    count: u64,
) -> [(u64, u64, usize); 7] {
    [
        (off.gdtr + 2, page + off.gdt, 4),
        (off.far32, page + off.pm32, 4),
        (off.far64, page + off.lm64, 4),
        (off.cr3, cr3, 8),
        (off.entry, entry, 8),
        (off.table, table, 8),
        (off.count, count, 8),
    ]
}

/// (min, median, max) of `values` (sorted in place); the median of an even count is the lower middle.
pub fn min_median_max(values: &mut [u64]) -> Option<(u64, u64, u64)> {
    values.sort_unstable();
    Some((
        *values.first()?,
        values[(values.len() - 1) / 2],
        *values.last()?,
    ))
}

#[cfg(target_os = "none")]
pub use hw::*;

#[cfg(target_os = "none")]
mod hw {
    use super::*;
    use crate::{exit, interrupts, memory, percpu, time};

    core::arch::global_asm!(include_str!("trampoline.s"), options(att_syntax));

    extern "C" {
        static trampoline_start: u8;
        static trampoline_end: u8;
        static trampoline_offsets: TrampolineOffsets;
    }

    /// Copies the trampoline to `page` (below 1 MiB, free) and points it at `slots`.
    ///
    /// # Safety
    /// `page` must be a free, identity-mapped 4 KiB page below 1 MiB that nothing else uses while APs start;
    /// `slots` must outlive the bring-up.
    pub unsafe fn install_trampoline(page: u64, slots: &'static [ApSlot]) {
        let start = core::ptr::addr_of!(trampoline_start);
        let len = core::ptr::addr_of!(trampoline_end) as usize - start as usize;
        assert!(
            len <= memory::PAGE_SIZE as usize,
            "trampoline larger than a page"
        );
        // SAFETY: the exported offsets table is a plain array of u64 in .rodata.
        let off = unsafe { core::ptr::addr_of!(trampoline_offsets).read() };
        let (cr3, _) = x86_64::registers::control::Cr3::read_raw();
        let cr3 = cr3.start_address().as_u64();
        assert!(cr3 < 1 << 32, "the APs' 32-bit code loads CR3 from 32 bits");
        let patches = trampoline_patches(
            page,
            &off,
            cr3,
            ap_entry as *const () as u64,
            slots.as_ptr() as u64,
            slots.len() as u64,
        );
        // SAFETY: per the caller's guarantee the page is free and identity-mapped; the copy and the patches
        // stay inside the `len` bytes copied (the offsets come from the same assembly).
        unsafe {
            core::ptr::copy_nonoverlapping(start, page as *mut u8, len);
            for (at, value, width) in patches {
                let dst = (page + at) as *mut u8;
                core::ptr::copy_nonoverlapping(value.to_le_bytes().as_ptr(), dst, width);
            }
        }
    }

    /// Every AP arrives here from the trampoline, on its own stack, with its slot.
    extern "C" fn ap_entry(slot: &'static ApSlot) -> ! {
        if crate::faults::armed_for(slot.index) == Some(crate::cmdline::Fault::ApHang) {
            // Injected: behave like a core that never answers its SIPIs.
            crate::arch::halt_forever();
        }
        slot.started_us.store(time::now_us(), Ordering::Relaxed);
        if !slot.transition(slot_state::WAITING, slot_state::STARTED) {
            // The BSP already counted this AP as not answering: stay out of the run.
            crate::arch::halt_forever();
        }
        interrupts::load();
        let stack = (slot.guard_page, slot.stack_bottom, slot.stack_top);
        let x2apic = crate::apic::enable_on_this_cpu();
        let Some(pcb) = percpu::build_and_install(slot.index, slot.apic_id, x2apic, stack) else {
            slot.transition(slot_state::STARTED, slot_state::FAILED);
            crate::arch::halt_forever();
        };
        // Online is stamped before the PCB line is printed: under emulation a log line costs more than building
        // the PCB, and the cores queue for the serial port (the BSP waits for every line before its summary).
        slot.online_us.store(time::now_us(), Ordering::Relaxed);
        // The BSP may have given up on this AP meanwhile (it swaps STARTED for FAILED): then stay out.
        if !slot.transition(slot_state::STARTED, slot_state::ONLINE) {
            log::warn!(target: "smp", "cpu={} came online after the BSP counted it as failed: halting", slot.index);
            pcb.set_status(percpu::status::FAILED);
            crate::arch::halt_forever();
        }
        exit::TALLY.online.fetch_add(1, Ordering::AcqRel);
        crate::smp_stage::pcb_built(pcb);
        crate::faults::inject_if_targeted(slot.index);
        if let Some(done_us) = crate::vmx_stage::run_on_this_cpu(pcb) {
            slot.vmx_us.store(done_us, Ordering::Release);
        }
        crate::smp_stage::core_done();
        // HLT with interrupts off: only an NMI (teardown) or INIT wakes the core again.
        crate::arch::halt_forever()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_layout_matches_the_trampoline() {
        // trampoline.s compares the APIC id at offset 0, loads the stack top from offset 8, strides 128 bytes.
        assert_eq!(core::mem::size_of::<ApSlot>(), 128);
        assert_eq!(core::mem::offset_of!(ApSlot, apic_id), 0);
        assert_eq!(core::mem::offset_of!(ApSlot, stack_top), 8);
    }

    #[test]
    fn a_late_ap_and_the_bsp_cannot_both_win_a_slot() {
        // The BSP gives up before the AP reaches Rust: the AP must stay out.
        let slot = ApSlot::new(3, 1, (0x1000, 0x2000, 0x3000));
        assert!(slot.transition(slot_state::WAITING, slot_state::FAILED));
        assert!(!slot.transition(slot_state::WAITING, slot_state::STARTED));
        // The AP answered but the BSP gives up before its PCB is built: it must not come online.
        let slot = ApSlot::new(3, 1, (0x1000, 0x2000, 0x3000));
        assert!(slot.transition(slot_state::WAITING, slot_state::STARTED));
        assert!(!slot.transition(slot_state::WAITING, slot_state::FAILED));
        assert!(slot.transition(slot_state::STARTED, slot_state::FAILED));
        assert!(!slot.transition(slot_state::STARTED, slot_state::ONLINE));
        // The AP comes online first: the BSP's swaps both fail and it counts the AP online.
        let slot = ApSlot::new(3, 1, (0x1000, 0x2000, 0x3000));
        assert!(slot.transition(slot_state::WAITING, slot_state::STARTED));
        assert!(slot.transition(slot_state::STARTED, slot_state::ONLINE));
        assert!(!slot.transition(slot_state::WAITING, slot_state::FAILED));
        assert!(!slot.transition(slot_state::STARTED, slot_state::FAILED));
        assert_eq!(slot.state(), slot_state::ONLINE);
    }

    #[test]
    fn statistics_of_phase_times() {
        assert_eq!(min_median_max(&mut []), None);
        assert_eq!(min_median_max(&mut [7]), Some((7, 7, 7)));
        assert_eq!(min_median_max(&mut [9, 1, 5, 3]), Some((1, 3, 9)));
        assert_eq!(min_median_max(&mut [9, 1, 5]), Some((1, 5, 9)));
    }

    #[test]
    fn patches_point_into_the_copied_page() {
        let off = TrampolineOffsets {
            gdt: 0x100,
            gdtr: 0x120,
            far32: 0x128,
            pm32: 0x20,
            far64: 0x130,
            lm64: 0x60,
            cr3: 0x138,
            entry: 0x140,
            table: 0x148,
            count: 0x150,
        };
        let p = trampoline_patches(0x8000, &off, 0x1000, 0x20_1234, 0x30_0000, 7);
        assert_eq!(p[0], (0x122, 0x8100, 4));
        assert_eq!(p[1], (0x128, 0x8020, 4));
        assert_eq!(p[2], (0x130, 0x8060, 4));
        assert_eq!(p[6], (0x150, 7, 8));
        // Every patch stays inside the page.
        assert!(p.iter().all(|&(at, _, w)| at + w as u64 <= 4096));
    }
}
