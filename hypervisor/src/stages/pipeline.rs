//! The per-core pipeline: the steps every core runs once its PCB is installed, the BSP and each AP alike, in
//! this order. A new per-core step (a guest on every core, say) is one more line in [`run_core`].
#![deny(unsafe_code)]

use super::{faults, guest, vmx};
use crate::percpu::{self, Pcb};
use crate::{arch, log_scale, logger, time};
use core::sync::atomic::{AtomicU32, Ordering};

/// A share of the bump heap per core (boot-time data sized by the core count).
const HEAP_BYTES_PER_CORE: u64 = 4096;

/// What each core needs from the frame allocator: its PCB with stacks ([`percpu::BYTES_PER_CORE`]) and what
/// every step of the pipeline asks for. The SMP stage sizes the core count by it.
pub const BYTES_PER_CORE: u64 = percpu::BYTES_PER_CORE + vmx::BYTES_PER_CORE + HEAP_BYTES_PER_CORE;

/// Cores (the BSP included) that finished the pipeline.
static CORES_DONE: AtomicU32 = AtomicU32::new(0);

/// Runs the per-core steps on the calling core. `start_others` is the BSP's own step, run after its fault
/// injection and before its VMX stage: the SMP stage, which starts the APs (each runs this pipeline too).
pub fn run_core(pcb: &'static Pcb, start_others: Option<&mut dyn FnMut()>) {
    pcb_line(pcb);
    faults::inject_if_targeted(pcb.index);
    if let Some(start) = start_others {
        if vmx::enabled() {
            guest::prepare_on_bsp(pcb);
        }
        start();
    }
    if let Some(done_us) = vmx::run_on_this_cpu(pcb) {
        pcb.vmx_done_us.store(done_us, Ordering::Release);
    }
    faults::inject_after_vmx_if_targeted(pcb.index);
    CORES_DONE.fetch_add(1, Ordering::AcqRel);
}

/// The core's PCB line (docs/serial-log.md, "SMP lines"); DEBUG above the per-core threshold, where the BSP
/// prints the compact lines instead (`report`).
fn pcb_line(pcb: &Pcb) {
    log::log!(
        target: "smp",
        log_scale::level(),
        "pcb cpu={} apic_id={} x2apic={} stack=0x{:x}-0x{:x} guard=0x{:x}",
        pcb.index,
        pcb.apic_id,
        arch::cpuid::YesNo(pcb.x2apic),
        pcb.stack.0,
        pcb.stack.1,
        pcb.guard_page
    );
}

/// On the BSP before the summary: waits (bounded) until every online core finished the pipeline, so no
/// core's line can come after the summary or be cut off by the exit. A core that faults leaves the online
/// count after printing its report, so `online` is re-read on every check.
pub fn wait_for_cores(timeout_us: u64) {
    let online = || crate::exit::TALLY.online.load(Ordering::Acquire);
    let deadline = time::now_us() + timeout_us;
    while CORES_DONE.load(Ordering::Acquire) < online() && time::now_us() < deadline {
        // Nothing else to do: write out the cores' queued lines meanwhile.
        if !logger::write_one_queued() {
            arch::pause();
        }
    }
    let done = CORES_DONE.load(Ordering::Acquire);
    if done < online() {
        log::error!(
            target: "smp",
            "only {done} of {} online cores finished their per-core work within {timeout_us} us",
            online()
        );
    }
}

/// When the last core finished the VMX stage (0 if none did).
pub fn last_vmx_done_us() -> u64 {
    percpu::ALL
        .lock()
        .iter()
        .map(|p| p.vmx_done_us.load(Ordering::Acquire))
        .max()
        .unwrap_or(0)
}
