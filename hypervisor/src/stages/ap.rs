//! Where an AP enters the kernel: its slot (stack, logical index, progress) and [`ap_entry`], which the
//! trampoline (`arch::trampoline`) jumps to. An AP that reaches Rust claims its slot, builds and installs its
//! PCB, and runs the per-core pipeline. The decisions (MADT -> CPU list, INIT/SIPI timing, timeouts) live in
//! the `smp` crate.
#![deny(unsafe_code)]

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

/// Every AP arrives here from the trampoline, on its own stack, with its slot.
#[cfg(target_os = "none")]
pub extern "C" fn ap_entry(slot: &'static ApSlot) -> ! {
    use crate::{arch, exit, interrupts, percpu, time};
    if super::faults::armed_for(slot.index) == Some(crate::config::Fault::ApHang) {
        // Injected: behave like a core that never answers its SIPIs.
        arch::halt_forever();
    }
    slot.started_us.store(time::now_us(), Ordering::Relaxed);
    if !slot.transition(slot_state::WAITING, slot_state::STARTED) {
        // The BSP already counted this AP as not answering: stay out of the run.
        arch::halt_forever();
    }
    // The early window, until the PCB's GDT and TSS are loaded: a 64-bit code segment at the IDT gates' CS
    // and gates without IST stacks, so an exception here is reported, and a mark that names this core.
    interrupts::load_early_on_ap();
    percpu::mark_early_ap(slot.index);
    let stack = (slot.guard_page, slot.stack_bottom, slot.stack_top);
    let x2apic = arch::lapic::enable_on_this_cpu();
    super::faults::inject_early_ap_if_targeted(slot.index);
    let Some(pcb) = percpu::build_and_install(slot.index, slot.apic_id, x2apic, stack) else {
        slot.transition(slot_state::STARTED, slot_state::FAILED);
        arch::halt_forever();
    };
    // The PCB's GDT and TSS are loaded: the IDT with the IST stacks.
    interrupts::load();
    // Online is stamped before the PCB line is printed: under emulation a log line costs more than building
    // the PCB, and the cores queue for the serial port (the BSP waits for every line before its summary).
    slot.online_us.store(time::now_us(), Ordering::Relaxed);
    // Counted online before the slot says so: the BSP, once it sees the slot online, waits for this core's
    // pipeline (a core preempted between the two could otherwise finish after the summary).
    exit::TALLY.online.fetch_add(1, Ordering::AcqRel);
    // The BSP may have given up on this AP meanwhile (it swaps STARTED for FAILED): then stay out.
    if !slot.transition(slot_state::STARTED, slot_state::ONLINE) {
        exit::TALLY.online.fetch_sub(1, Ordering::AcqRel);
        log::warn!(target: "smp", "cpu={} came online after the BSP counted it as failed: halting", slot.index);
        pcb.set_status(percpu::status::FAILED);
        arch::halt_forever();
    }
    super::pipeline::run_core(pcb, None);
    // HLT with interrupts off: only an NMI (teardown) or INIT wakes the core again.
    arch::halt_forever()
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
}
