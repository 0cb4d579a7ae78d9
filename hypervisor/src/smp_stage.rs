//! The SMP stage on the BSP: processors from the MADT, a slot and a guarded stack per AP, the trampoline page,
//! INIT-SIPI-SIPI through the `smp` crate's state machine, then waiting for every AP to build its PCB.

use crate::bringup::{slot_state, ApSlot};
use crate::cmdline::Cmdline;
use crate::exit::{self, TALLY};
use crate::percpu::Pcb;
use crate::{apic, bsp, memory, time};
use alloc::vec::Vec;
use boot::{BootInfo, IdentityMapped, PhysMem};
use core::sync::atomic::{AtomicU32, Ordering};
use smp::bringup::{ApTarget, BringupConfig, Platform};
use smp::LocalApic;

/// Frames one core needs: stack + guard, three IST stacks, PCB, VMXON and VMCS regions, heap share.
const BYTES_PER_CPU: u64 =
    (bsp::STACK_PAGES + 1) * 4096 + 3 * crate::percpu::IST_STACK_BYTES + 4 * 4096;
/// How long an AP that answered may take to build its PCB before it is counted as failed. Generous: the AP is
/// known to be alive, and under emulation on a loaded host hundreds of vCPUs share a few host threads.
const PCB_BUILD_TIMEOUT_US: u64 = 10_000_000;
/// Memory kept back for everything else.
const RESERVE_BYTES: u64 = 4 << 20;

/// What the stage found and did (the counts themselves are in `exit::TALLY`).
pub struct SmpOutcome {
    /// APs that were started but never came online.
    pub failed: usize,
    /// False when no processor list could be read: the run continued on the BSP alone.
    pub acpi_ok: bool,
}

/// The APs' slots, once the stage made them.
static SLOTS: spin::Once<&'static [ApSlot]> = spin::Once::new();

/// Logs per-core phase times (DEBUG), their spread (INFO), the memory footprint and the phase line
/// (docs/serial-log.md, "Phase times").
pub fn report_phases() {
    let slots = SLOTS.get().copied().unwrap_or(&[]);
    let vmx_on = crate::vmx_stage::enabled();
    let since_sipi = |slot: &ApSlot, at: &core::sync::atomic::AtomicU64| {
        let (sipi, t) = (
            slot.sipi_us.load(Ordering::Acquire),
            at.load(Ordering::Acquire),
        );
        (sipi != 0 && t >= sipi).then(|| t - sipi)
    };
    let mut to_pcb = Vec::new();
    let mut to_vmx = Vec::new();
    for slot in slots.iter().filter(|s| s.state() == slot_state::ONLINE) {
        let pcb = since_sipi(slot, &slot.online_us);
        let vmx = since_sipi(slot, &slot.vmx_us).filter(|_| vmx_on);
        log::debug!(
            target: "smp",
            "timing cpu={} apic_id={} sipi_to_pcb_us={} sipi_to_vmx_us={}",
            slot.index,
            slot.apic_id,
            Num(pcb),
            Num(vmx)
        );
        to_pcb.extend(pcb);
        to_vmx.extend(vmx);
    }
    let spread = |v: &mut [u64]| crate::bringup::min_median_max(v);
    let fmt3 = |m: Option<(u64, u64, u64)>| Num3(m);
    log::info!(
        target: "smp",
        "timing aps={} sipi_to_pcb_us {} sipi_to_vmx_us {}",
        to_pcb.len(),
        fmt3(spread(&mut to_pcb)),
        fmt3(spread(&mut to_vmx))
    );

    let (image_start, image_end) = memory::image_range();
    let pcb_bytes = (core::mem::size_of::<Pcb>() as u64).next_multiple_of(memory::PAGE_SIZE);
    let stack_bytes = (bsp::STACK_PAGES + 1) * memory::PAGE_SIZE;
    let ist_bytes = 3 * crate::percpu::IST_STACK_BYTES;
    let vmx_bytes = if vmx_on { 2 * memory::PAGE_SIZE } else { 0 };
    log::info!(
        target: "memory",
        "footprint image_bytes={} per_cpu_bytes={} stack_bytes={stack_bytes} ist_bytes={ist_bytes} pcb_bytes={pcb_bytes} vmx_region_bytes={vmx_bytes} allocated_bytes={}",
        image_end - image_start,
        stack_bytes + ist_bytes + pcb_bytes + vmx_bytes,
        memory::allocated_bytes()
    );
    log::info!(
        target: "hypervisor",
        "phases entry_us=0 acpi_us={} first_sipi_us={} online_us={} vmx_us={} summary_us={}",
        Num(exit::summary_value("t_acpi_us")),
        Num(exit::summary_value("t_first_sipi_us")),
        Num(exit::summary_value("t_online_us")),
        Num(exit::summary_value("t_vmx_us")),
        time::now_us()
    );
}

/// A number, or `-` when there is none.
struct Num(Option<u64>);

impl core::fmt::Display for Num {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(v) => write!(f, "{v}"),
            None => f.write_str("-"),
        }
    }
}

/// `min=<n> median=<n> max=<n>`, or `-` when there are no values.
struct Num3(Option<(u64, u64, u64)>);

impl core::fmt::Display for Num3 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some((lo, mid, hi)) => write!(f, "min={lo} median={mid} max={hi}"),
            None => f.write_str("-"),
        }
    }
}

/// Reads physical memory for the ACPI parser through the identity map.
pub struct Phys;

impl smp::PhysRead for Phys {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> bool {
        IdentityMapped.read(paddr, buf)
    }
}

/// Cores (the BSP included) that finished their per-core work: PCB line, any injected fault, the VMX stage.
static CORES_DONE: AtomicU32 = AtomicU32::new(0);

/// When the last AP finished the VMX stage (0 if none did).
pub fn last_ap_vmx_us() -> u64 {
    let slots = SLOTS.get().copied().unwrap_or(&[]);
    slots
        .iter()
        .map(|s| s.vmx_us.load(Ordering::Acquire))
        .max()
        .unwrap_or(0)
}

/// Called by each core as the last thing before it idles.
pub fn core_done() {
    CORES_DONE.fetch_add(1, Ordering::AcqRel);
}

/// On the BSP before the summary: waits (bounded) until every online core finished its per-core work, so no
/// core's line can come after the summary or be cut off by the exit. A core that faults leaves the online
/// count after printing its report, so `online` is re-read on every check.
pub fn wait_for_cores(timeout_us: u64) {
    let online = || TALLY.online.load(Ordering::Acquire);
    let deadline = time::now_us() + timeout_us;
    while CORES_DONE.load(Ordering::Acquire) < online() && time::now_us() < deadline {
        // Nothing else to do: write out the cores' queued lines meanwhile.
        if !crate::logger::write_one_queued() {
            crate::arch::pause();
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

/// Logs the BSP's or an AP's PCB line (docs/serial-log.md).
pub fn pcb_built(pcb: &Pcb) {
    log::info!(
        target: "smp",
        "pcb cpu={} apic_id={} x2apic={} stack=0x{:x}-0x{:x} guard=0x{:x}",
        pcb.index,
        pcb.apic_id,
        crate::arch::cpuid::YesNo(pcb.x2apic),
        pcb.stack.0,
        pcb.stack.1,
        pcb.guard_page
    );
}

/// The hardware the bring-up state machine drives.
struct Hardware<'a> {
    apic: apic::Lapic,
    slots: &'a [ApSlot],
}

impl Platform for Hardware<'_> {
    fn now_us(&self) -> u64 {
        time::now_us()
    }
    fn delay_us(&mut self, us: u64) {
        time::delay_us(us)
    }
    fn init_delay_us(&mut self, us: u64) {
        // Every AP waits for its SIPI meanwhile: the BSP has the time (and, under emulation, the host CPU) to
        // write out the lines held in the log queue (docs/serial-log.md, "Deferred lines").
        let deadline = time::now_us().saturating_add(us);
        crate::logger::write_queued_until(deadline);
        time::delay_us(deadline.saturating_sub(time::now_us()));
    }
    fn send_init(&mut self, apic_id: u32) {
        if let Err(e) = self
            .apic
            .send_init(apic_id)
            .and_then(|_| self.apic.send_init_deassert(apic_id))
        {
            log::warn!(target: "smp", "INIT to apic_id={apic_id} failed: {e}");
        }
    }
    fn send_sipi(&mut self, apic_id: u32, page: u8) {
        let now = time::now_us();
        if let Some(slot) = self.slots.iter().find(|s| s.apic_id == apic_id) {
            let _ = slot
                .sipi_us
                .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire);
        }
        if exit::summary_value("t_first_sipi_us").is_none() {
            exit::add_summary_value("t_first_sipi_us", now);
        }
        if let Err(e) = self.apic.send_sipi(apic_id, page) {
            log::warn!(target: "smp", "SIPI to apic_id={apic_id} failed: {e}");
        }
    }
    fn ap_started(&self, logical: usize) -> bool {
        // Slots are in logical-index order (indexes may skip unusable entries): a binary search, as the BSP
        // asks about every pending AP on every poll.
        self.slots
            .binary_search_by_key(&logical, |s| s.index as usize)
            .is_ok_and(|i| self.slots[i].state() != slot_state::WAITING)
    }
}

pub fn run(info: &BootInfo, rsdp: Option<u64>, args: Cmdline) -> SmpOutcome {
    let bsp_id = smp::apic::cpuid_apic_id();
    let (config, errors) = BringupConfig::from_cmdline(args.0);
    for e in errors {
        log::warn!(target: "smp", "{e}; using the default for it");
    }
    let free = memory::FRAMES.lock().as_ref().map_or(0, |f| f.free_bytes());
    let by_memory = (free.saturating_sub(RESERVE_BYTES) / BYTES_PER_CPU).max(1) as usize;
    let limit = config.max_cpus.unwrap_or(usize::MAX).min(by_memory);

    let Some(rsdp) = rsdp else {
        log::error!(target: "acpi", "no RSDP from the loader or in the BIOS areas: running on the BSP only");
        return SmpOutcome {
            failed: 0,
            acpi_ok: false,
        };
    };
    let checksum = match args.get("acpi_checksum") {
        None => smp::ChecksumPolicy::default(),
        Some(word) => smp::ChecksumPolicy::parse(word).unwrap_or_else(|| {
            log::warn!(target: "acpi", "acpi_checksum={word} is not warn|strict; using warn");
            smp::ChecksumPolicy::default()
        }),
    };
    let list = smp::processors_from_phys(&Phys, rsdp, bsp_id, limit, checksum);
    exit::add_summary_value("t_acpi_us", time::now_us());
    let list = match list {
        Ok(list) => list,
        Err(e) => {
            log::error!(target: "acpi", "cannot read the processor list: {e}; running on the BSP only");
            return SmpOutcome {
                failed: 0,
                acpi_ok: false,
            };
        }
    };
    // The per-entry lines come after the bring-up: at 115200 baud they would delay the first SIPI by about a
    // line per processor. The count is printed now.
    let listed = list.cpus.len() + list.rejected.len();
    log::info!(
        target: "acpi",
        "madt: {listed} processor entries, {} usable, lapic_base=0x{:x} (one line each after the bring-up)",
        list.usable_count(),
        list.lapic_base
    );
    log::debug!(target: "smp", "memory allows at most {by_memory} CPUs; limit={limit}");
    TALLY
        .cpus
        .store(list.usable_count() as u32, Ordering::Release);
    let outcome = start_aps(info, &list, &config, bsp_id);
    smp::madt::log_processor_list(&list);
    outcome
}

/// Starts the usable APs of `list` and waits for them (the part of [`run`] after the processor list).
fn start_aps(
    info: &BootInfo,
    list: &smp::ProcessorList,
    config: &BringupConfig,
    bsp_id: u32,
) -> SmpOutcome {
    let x2apic = apic::init_bsp(list.lapic_base);
    log::info!(
        target: "smp",
        "local apic mode={} base=0x{:x} bsp_apic_id={bsp_id}",
        if x2apic { "x2apic" } else { "xapic" },
        list.lapic_base
    );

    // One slot per AP to start, each with its own guarded stack, in logical-index order.
    let mut slots = Vec::new();
    for (index, cpu) in list.startable_aps() {
        let Some(stack) = memory::alloc_guarded_stack(bsp::STACK_PAGES) else {
            log::error!(target: "smp", "out of memory for the stack of cpu={index}: not starting it or later CPUs");
            break;
        };
        slots.push(ApSlot::new(cpu.apic_id, index as u32, stack));
    }
    if slots.is_empty() {
        return SmpOutcome {
            failed: 0,
            acpi_ok: true,
        };
    }
    let slots: &'static [ApSlot] = SLOTS.call_once(|| slots.leak());

    let exclude = [info.loader_data];
    let regions = info
        .regions()
        .iter()
        .map(|r| (r.start, r.len, r.kind == boot::RegionKind::Usable));
    let Some(page) = smp::trampoline::pick_trampoline_page(regions, &exclude) else {
        log::error!(target: "smp", "no free page below 1 MiB for the AP trampoline: running on the BSP only");
        return SmpOutcome {
            failed: slots.len(),
            acpi_ok: true,
        };
    };
    let Some(vector) = smp::trampoline::sipi_vector(page) else {
        log::error!(target: "smp", "trampoline page 0x{page:x} cannot be named by a SIPI vector: running on the BSP only");
        return SmpOutcome {
            failed: slots.len(),
            acpi_ok: true,
        };
    };
    // SAFETY: the page is usable RAM below 1 MiB that the frame allocator never hands out (its floor is
    // 1 MiB) and that holds no loader data; `slots` is leaked, so it outlives the bring-up.
    unsafe { crate::bringup::install_trampoline(page, slots) };
    log::info!(
        target: "smp",
        "starting {} APs mode={} trampoline=0x{page:x} init_delay_us={} sipi_delay_us={} ap_timeout_us={}",
        slots.len(),
        config.mode.name(),
        config.init_delay_us,
        config.sipi_delay_us,
        config.ap_timeout_us
    );

    let t0 = time::now_us();
    let mut hw = Hardware {
        apic: apic::local(),
        slots,
    };
    let targets: Vec<ApTarget> = slots
        .iter()
        .map(|s| ApTarget {
            logical: s.index as usize,
            apic_id: s.apic_id,
        })
        .collect();
    let report = smp::bringup::run(&mut hw, &targets, vector, config);
    crate::faults::panic_during_bringup_if_armed();
    // Started APs still have to build their PCB; under emulation many cores share a few host threads.
    let deadline = time::now_us() + PCB_BUILD_TIMEOUT_US.max(config.ap_timeout_us);
    while slots.iter().any(|s| s.state() == slot_state::STARTED) && time::now_us() < deadline {
        crate::arch::pause();
    }
    let elapsed = time::now_us() - t0;

    // Close every slot. The AP moves WAITING -> STARTED -> ONLINE and the BSP WAITING|STARTED -> FAILED, each by
    // compare-and-swap, so an AP that answers late either made it before this point or finds its slot failed
    // and stays out (bringup.rs): it can never be counted both online and failed.
    let mut online = 1;
    let mut failed = 0;
    for slot in slots {
        if slot.transition(slot_state::WAITING, slot_state::FAILED) {
            failed += 1;
            log::error!(
                target: "smp",
                "cpu={} apic_id={} did not answer INIT-SIPI-SIPI within {} us: counted as failed",
                slot.index,
                slot.apic_id,
                config.ap_timeout_us
            );
        } else if slot.transition(slot_state::STARTED, slot_state::FAILED)
            || slot.state() == slot_state::FAILED
        {
            failed += 1;
            log::error!(
                target: "smp",
                "cpu={} apic_id={} answered but did not come online: counted as failed",
                slot.index,
                slot.apic_id
            );
        } else {
            online += 1;
        }
    }
    // Added, not stored: an AP that already faulted has counted itself.
    TALLY.failed.fetch_add(failed as u32, Ordering::AcqRel);
    // When the last AP actually came online (each stamps its slot), not when the BSP got round to noticing:
    // the BSP's own report lines queue behind the APs' lines at the serial port.
    let all_online_us = slots
        .iter()
        .filter(|s| s.state() == slot_state::ONLINE)
        .map(|s| s.online_us.load(Ordering::Acquire))
        .max()
        .unwrap_or_else(time::now_us);
    exit::add_summary_value("t_online_us", all_online_us);
    log::info!(
        target: "smp",
        "bring-up done online={online} failed={failed} elapsed_us={elapsed} inits={} sipis={}",
        report.inits_sent,
        report.sipis_sent
    );
    SmpOutcome {
        failed,
        acpi_ok: true,
    }
}
