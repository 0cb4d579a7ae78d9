//! The bootstrap processor's path from the loader hand-off to the summary line: hand-off, command line, memory,
//! its own stack and PCB, the early report, then the per-core pipeline, whose BSP-only step is the SMP stage
//! (which starts the APs), and last the verdict.
#![deny(unsafe_code)]

use super::{pipeline, report, smp, vmx};
use crate::arch::cpuid::{CpuInfo, YesNo};
use crate::config::{self, Config, Fault, FaultTarget};
use crate::exit::{self, OnDone, Reason};
use crate::{arch, interrupts, log_scale, logger, memory, percpu, time, verdict};
use boot::{BootInfo, IdentityMapped};
use core::sync::atomic::{AtomicBool, Ordering};

/// How long the BSP waits for every core to finish its per-core work (PCB line, VMX stage with self-test).
const CORE_WORK_TIMEOUT_US: u64 = 10_000_000;

static BOOT_INFO: spin::Once<BootInfo> = spin::Once::new();

/// Called by the entry code (boot/src/entry.s) with the loader kind and the loader's info pointer.
pub fn start(loader_kind: u32, info_paddr: u32) -> ! {
    time::init(arch::boot_entry_tsc());
    logger::init(log::LevelFilter::Info);
    // Exceptions are reported from here on (the IST ones once the PCB's TSS is loaded, below).
    interrupts::init();
    interrupts::load();

    let info = match boot::parse_handoff(&IdentityMapped, loader_kind, u64::from(info_paddr)) {
        Ok(info) => BOOT_INFO.call_once(|| info),
        Err(e) => {
            log::error!(target: "boot", "bad loader hand-off: {e}");
            // The command line is unreadable, so on_done is unknown: leave like the 32-bit bad-magic path does.
            exit::set_on_done(OnDone::Exit);
            exit::fatal(Reason::BadHandoff);
        }
    };
    let config = apply_cmdline(info.cmdline());

    let no_memory = FaultTarget {
        fault: Fault::NoMemory,
        cpu: 0,
    };
    let regions = if config.fault == Some(no_memory) {
        super::faults::announce(Fault::NoMemory, 0);
        &[][..]
    } else {
        info.regions()
    };
    let free = memory::init(info, regions);
    log::debug!(target: "memory", "frame allocator: {} MiB free below 4 GiB", free >> 20);
    let Some(stack) = memory::alloc_fresh_stack(percpu::STACK_PAGES) else {
        log::error!(target: "memory", "no memory for the BSP's stack");
        exit::fatal(Reason::NoMemory);
    };
    BSP_STACK.call_once(|| stack.bounds());
    // `bsp_main` never returns, so nothing on this stack is used again (what it needs is in statics).
    stack.switch_to(bsp_main)
}

/// The BSP's guarded stack: (guard page, bottom, top).
static BSP_STACK: spin::Once<(u64, u64, u64)> = spin::Once::new();

extern "C" fn bsp_main() -> ! {
    let stack = *BSP_STACK.get().expect("set by start");
    let info = BOOT_INFO.get().expect("set by start");
    let config = config::get();
    let cpu = CpuInfo::read();
    let x2apic = arch::lapic::choose_mode_on_bsp();
    let Some(pcb) = percpu::build_and_install(0, arch::lapic::cpuid_apic_id(), x2apic, stack)
    else {
        log::error!(target: "memory", "no memory for the BSP's PCB");
        exit::fatal(Reason::NoMemory);
    };
    exit::TALLY.online.store(1, Ordering::Release);
    let rsdp = match info.rsdp {
        Some(addr) => Some((addr, "loader")),
        None => smp::find_rsdp().map(|addr| (addr, "scan")),
    };
    early_report(info, &cpu, rsdp);

    // The INIT delay as Linux decides it for this CPU (smp::bringup::init_delay_needed).
    let bringup = config.bringup.for_cpu(&cpu.vendor, cpu.family);
    let mut outcome = None;
    pipeline::run_core(
        pcb,
        Some(&mut || {
            outcome = Some(smp::run(
                info,
                rsdp.map(|(a, _)| a),
                &bringup,
                config.acpi_checksum,
                pipeline::BYTES_PER_CORE,
            ))
        }),
    );
    let smp = outcome.expect("the BSP's pipeline runs the SMP stage");
    pipeline::wait_for_cores(CORE_WORK_TIMEOUT_US);
    // Routine lines waited in the log queue until now (docs/serial-log.md, "Deferred lines").
    logger::defer_routine_lines(false);
    let vmx = vmx::judge(pipeline::last_vmx_done_us());
    report::report_phases();
    // The worse of the SMP and VMX outcomes decides; a core that faulted makes the run fail.
    let (verdict, reason) = verdict::combine(smp.acpi_ok, smp.failed, vmx, exit::ap_fatal());
    // `exit::finish` runs the VMX teardown (every core leaves VMX root) before the summary.
    exit::finish(verdict, reason)
}

fn early_report(info: &BootInfo, cpu: &CpuInfo, rsdp: Option<(u64, &str)>) {
    log::info!(target: "boot", "loader={} cmdline=\"{}\"", info.loader.name(), info.cmdline());
    if !info.loader_name().is_empty() {
        log::debug!(target: "boot", "bootloader=\"{}\"", info.loader_name());
    }
    log::info!(
        target: "boot",
        "memory usable_mib={} regions={} highest=0x{:x}",
        info.usable_bytes() >> 20,
        info.regions().len(),
        info.highest_address()
    );
    for r in info.regions() {
        log::debug!(target: "boot", "region 0x{:012x}-0x{:012x} {:?}", r.start, r.end(), r.kind);
    }
    match rsdp {
        Some((addr, source)) => log::info!(target: "boot", "rsdp=0x{addr:x} source={source}"),
        None => log::info!(target: "boot", "rsdp=none source=none"),
    }
    log::info!(
        target: "cpu",
        "vendor={} family={} model={} stepping={} brand=\"{}\"",
        cpu.vendor_str(),
        cpu.family,
        cpu.model,
        cpu.stepping,
        cpu.brand_str()
    );
    log::info!(
        target: "cpu",
        "features vmx={} smx={} x2apic={} maxphyaddr={} tsc_hz={} tsc_source={}",
        YesNo(cpu.vmx),
        YesNo(cpu.smx),
        YesNo(cpu.x2apic),
        cpu.maxphyaddr,
        time::tsc_hz(),
        time::tsc_source().name()
    );
}

/// Parses the command line once, applies what the core services read, and reports every word not taken.
fn apply_cmdline(cmdline: &str) -> &'static Config {
    // The settings first (the level decides which warnings print), then the warnings.
    let parsed = Config::parse(cmdline, |_| {});
    log::set_max_level(parsed.log_level);
    exit::set_on_done(parsed.on_done);
    logger::defer_routine_lines(parsed.log_defer);
    log_scale::set_max_each(parsed.log_per_core_max);
    Config::parse(cmdline, |w| log::warn!(target: w.target(), "{w}"));
    config::set(parsed)
}

static PANICKING: AtomicBool = AtomicBool::new(false);

/// The panic handler's body: report, then end the run with `verdict=fail`.
pub fn report_panic(info: &core::panic::PanicInfo) -> ! {
    if PANICKING.swap(true, Ordering::AcqRel) {
        exit::fatal(Reason::Panic);
    }
    let cpu = percpu::current_index();
    match info.location() {
        Some(loc) => {
            log::error!(target: "panic", "{} at {}:{} cpu={cpu}", info.message(), loc.file(), loc.line())
        }
        None => log::error!(target: "panic", "{} cpu={cpu}", info.message()),
    }
    exit::fatal(Reason::Panic)
}
