//! The SMP stage on the BSP: processors from the MADT, a slot and a guarded stack per AP, the trampoline page,
//! INIT-SIPI-SIPI through the `smp` crate's state machine, then waiting for every AP to build its PCB. Each AP
//! then enters through `ap::ap_entry` and runs the per-core pipeline.
#![deny(unsafe_code)]

use super::ap::{self, slot_state, ApSlot};
use crate::arch::{lapic, trampoline};
use crate::exit::{self, SummaryKey, TALLY};
use crate::{arch, memory, percpu, time};
use alloc::vec::Vec;
use boot::{BootInfo, IdentityMapped, PhysMem};
use core::sync::atomic::Ordering;
use smp::bringup::{ApTarget, BringupConfig, Platform};
use smp::LocalApic;
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

/// The APs' slots (empty until the stage made them).
pub fn slots() -> &'static [ApSlot] {
    SLOTS.get().copied().unwrap_or(&[])
}

/// The RSDP found by scanning the EBDA and the BIOS area (when the loader passed none).
pub fn find_rsdp() -> Option<u64> {
    smp::find_rsdp(&Phys)
}

/// Reads physical memory for the ACPI parser through the identity map.
pub struct Phys;

impl smp::PhysRead for Phys {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> bool {
        IdentityMapped.read(paddr, buf)
    }
}

/// The hardware the bring-up state machine drives.
struct Hardware<'a> {
    apic: lapic::Lapic,
    slots: &'a [ApSlot],
}

impl Platform for Hardware<'_> {
    fn now_us(&self) -> u64 {
        time::now_us()
    }
    fn delay_us(&mut self, us: u64) {
        // The waits after a SIPI and between polls: the BSP writes queued log lines meanwhile too (a wait may
        // end later by at most one line, which the SDM's minimum waits allow). Without it nothing would be
        // written while the BSP waits for an AP that never answers when the INIT delay is 0.
        let deadline = time::now_us().saturating_add(us);
        crate::logger::write_queued_until(deadline);
        time::delay_us(deadline.saturating_sub(time::now_us()))
    }
    fn init_delay_us(&mut self, us: u64) {
        // Every AP waits for its SIPI meanwhile: the BSP has the time (and, under emulation, the host CPU) to
        // write out the lines held in the log queue (docs/serial-log.md, "Deferred lines").
        let deadline = time::now_us().saturating_add(us);
        crate::logger::write_queued_until(deadline);
        time::delay_us(deadline.saturating_sub(time::now_us()));
    }
    fn ipi_error(&mut self) -> u32 {
        self.apic.error_status()
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
        exit::set_summary_value_once(SummaryKey::FirstSipiUs, now);
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

/// Runs the stage. `checksum` is what an ACPI table with a bad checksum gets; `bytes_per_core` is what each core needs from the frame allocator (the per-core
/// pipeline's needs), which bounds how many cores are started.
pub fn run(
    info: &BootInfo,
    rsdp: Option<u64>,
    config: &BringupConfig,
    checksum: smp::ChecksumPolicy,
    bytes_per_core: u64,
) -> SmpOutcome {
    let bsp_id = lapic::cpuid_apic_id();
    let free = memory::FRAMES.lock().as_ref().map_or(0, |f| f.free_bytes());
    let by_memory = (free.saturating_sub(RESERVE_BYTES) / bytes_per_core).max(1) as usize;
    let limit = config.max_cpus.unwrap_or(usize::MAX).min(by_memory);

    let Some(rsdp) = rsdp else {
        log::error!(target: "acpi", "no RSDP from the loader or in the BIOS areas: running on the BSP only");
        return SmpOutcome {
            failed: 0,
            acpi_ok: false,
        };
    };
    let list = smp::processors_from_phys(&Phys, rsdp, bsp_id, limit, checksum);
    exit::set_summary_value(SummaryKey::AcpiUs, time::now_us());
    let mut list = match list {
        Ok(list) => list,
        Err(e) => {
            log::error!(target: "acpi", "cannot read the processor list: {e}; running on the BSP only");
            return SmpOutcome {
                failed: 0,
                acpi_ok: false,
            };
        }
    };
    if !lapic::x2apic_mode() {
        let moved = list.restrict_to_xapic();
        if moved > 0 {
            log::warn!(
                target: "acpi",
                "{moved} processor entries have APIC ids of 255 or more, which xAPIC mode cannot address \
                 (the CPU has no x2APIC): not started (state=invalid-id)"
            );
        }
    }
    // The per-entry lines come after the bring-up: at 115200 baud they would delay the first SIPI by about a
    // line per processor. The count is printed now.
    let listed = list.cpus.len() + list.rejected.len();
    let after = if crate::log_scale::policy().compact(listed as u32) {
        "in runs after the bring-up, one line each at log=debug"
    } else {
        "one line each after the bring-up"
    };
    log::info!(
        target: "acpi",
        "madt: {listed} processor entries, {} usable, lapic_base=0x{:x} ({after})",
        list.usable_count(),
        list.lapic_base
    );
    log::debug!(target: "smp", "memory allows at most {by_memory} CPUs; limit={limit}");
    TALLY
        .cpus
        .store(list.usable_count() as u32, Ordering::Release);
    let outcome = start_aps(info, &list, config, bsp_id);
    // Above the per-core threshold (by entries: that is what the lines count) the per-entry lines are DEBUG
    // and runs of entries are printed instead (docs/serial-log.md, "Per-core lines at scale").
    let per_entry = crate::log_scale::policy();
    smp::madt::log_processor_list(
        &list,
        per_entry.level(listed as u32),
        per_entry.compact(listed as u32),
    );
    outcome
}

/// Starts the usable APs of `list` and waits for them (the part of [`run`] after the processor list).
fn start_aps(
    info: &BootInfo,
    list: &smp::ProcessorList,
    config: &BringupConfig,
    bsp_id: u32,
) -> SmpOutcome {
    let x2apic = lapic::init_bsp(list.lapic_base);
    log::info!(
        target: "smp",
        "local apic mode={} base=0x{:x} bsp_apic_id={bsp_id}",
        if x2apic { "x2apic" } else { "xapic" },
        list.lapic_base
    );

    // One slot per AP to start, each with its own guarded stack, in logical-index order.
    let mut slots = Vec::new();
    for (index, cpu) in list.startable_aps() {
        let Some(stack) = memory::alloc_guarded_stack(percpu::STACK_PAGES) else {
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
    exit::set_early_ap_failure_hook(early_ap_failed);

    let page = match trampoline::install(info, ap::ap_entry, slots, x2apic) {
        Ok(installed) => installed,
        Err(e) => {
            log::error!(target: "smp", "{e}: running on the BSP only");
            return SmpOutcome {
                failed: slots.len(),
                acpi_ok: true,
            };
        }
    };
    let installed = page;
    let (page, vector) = (page.page, page.vector);
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
        apic: lapic::local(),
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
    super::faults::panic_during_bringup_if_armed();
    // An IPI the local APIC did not accept (ESR after its INIT or SIPIs, SDM vol. 3A 11.5.3).
    for r in report.results.iter().filter(|r| r.esr != 0) {
        log::warn!(
            target: "smp",
            "cpu={} apic_id={} IPI not accepted: {}",
            r.logical,
            r.apic_id,
            smp::apic::Esr(r.esr)
        );
    }
    // Started APs still have to build their PCB; under emulation many cores share a few host threads.
    let deadline = time::now_us() + PCB_BUILD_TIMEOUT_US.max(config.ap_timeout_us);
    while slots.iter().any(|s| s.state() == slot_state::STARTED) && time::now_us() < deadline {
        arch::pause();
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
    // A CPU that answered the SIPI with an APIC id no slot has halted in the trampoline, on no stack.
    let strays = installed.strays();
    if strays.count > 0 {
        log::error!(
            target: "smp",
            "{} CPU(s) answered the SIPI with an APIC id that matches no slot (last apic_id={}): halted in the \
             trampoline without a stack, not counted",
            strays.count,
            strays.last_apic_id
        );
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
    exit::set_summary_value(SummaryKey::OnlineUs, all_online_us);
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

/// An AP that failed before its PCB existed (`exit`'s early-AP hook): its slot is failed at once, so the BSP
/// stops waiting for it and counts it as failed.
fn early_ap_failed(index: u32) {
    if let Some(slot) = slots().iter().find(|s| s.index == index) {
        slot.transition(slot_state::STARTED, slot_state::FAILED);
    }
}
