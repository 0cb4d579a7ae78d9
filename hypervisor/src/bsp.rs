//! The bootstrap processor's path from the loader hand-off to the summary line.

use crate::arch::cpuid::{CpuInfo, YesNo};
use crate::cmdline::{self, Cmdline, Fault};
use crate::exit::{self, Reason, Verdict};
use crate::{faults, interrupts, logger, memory, percpu, smp_stage, time, vmx_stage};
use boot::{BootInfo, IdentityMapped};
use core::sync::atomic::{AtomicBool, Ordering};

extern "C" {
    static boot_entry_tsc: u64;
}

/// How long the BSP waits for every core to finish its per-core work (PCB line, VMX stage with self-test).
const CORE_WORK_TIMEOUT_US: u64 = 10_000_000;
/// How long the BSP waits for the cores to leave VMX operation.
const TEARDOWN_TIMEOUT_US: u64 = 1_000_000;

/// Pages of each core's kernel stack (a guard page sits below).
pub const STACK_PAGES: u64 = 16;

static BOOT_INFO: spin::Once<BootInfo> = spin::Once::new();

/// Called by the entry code (boot/src/entry.s) with the loader kind and the loader's info pointer.
pub fn start(loader_kind: u32, info_paddr: u32) -> ! {
    // SAFETY: entry.s wrote the TSC into this variable before jumping to long mode; nothing writes it after.
    let entry_tsc = unsafe { core::ptr::read_volatile(core::ptr::addr_of!(boot_entry_tsc)) };
    time::init(entry_tsc);
    logger::init(log::LevelFilter::Info);
    // Exceptions are reported from here on (the IST ones once the PCB's TSS is loaded, below).
    interrupts::init();
    interrupts::load();

    let info = match boot::parse_handoff(&IdentityMapped, loader_kind, u64::from(info_paddr)) {
        Ok(info) => BOOT_INFO.call_once(|| info),
        Err(e) => {
            log::error!(target: "boot", "bad loader hand-off: {e}");
            // The command line is unreadable, so on_done is unknown: leave like the 32-bit bad-magic path does.
            exit::set_on_done(cmdline::OnDone::Exit);
            exit::fatal(Reason::BadHandoff);
        }
    };
    apply_cmdline(Cmdline(info.cmdline()));

    let regions = if cmdline::fault_target(Cmdline(info.cmdline())) == Some((Fault::NoMemory, 0)) {
        faults::announce(Fault::NoMemory, 0);
        &[][..]
    } else {
        info.regions()
    };
    let free = memory::init(info, regions);
    log::debug!(target: "memory", "frame allocator: {} MiB free below 4 GiB", free >> 20);
    let Some(stack) = memory::alloc_guarded_stack(STACK_PAGES) else {
        log::error!(target: "memory", "no memory for the BSP's stack");
        exit::fatal(Reason::NoMemory);
    };
    let stack = *BSP_STACK.call_once(|| stack);
    // SAFETY: the new stack is fresh, mapped and owned by the BSP; `bsp_main` never returns, so nothing on the
    // old stack is used again (what it needs is in statics).
    unsafe { switch_stack(stack.2, bsp_main) }
}

/// The BSP's guarded stack: (guard page, bottom, top).
static BSP_STACK: spin::Once<(u64, u64, u64)> = spin::Once::new();

/// Continues on `top`, calling `entry`.
///
/// # Safety
/// `top` must be the top of a mapped stack not otherwise in use.
unsafe fn switch_stack(top: u64, entry: extern "C" fn() -> !) -> ! {
    // SAFETY: per the caller's guarantee; RBP is cleared to end the frame-pointer chain.
    unsafe {
        core::arch::asm!(
            "mov rsp, {top}",
            "xor ebp, ebp",
            "call {entry}",
            top = in(reg) top,
            entry = in(reg) entry,
            options(noreturn)
        )
    }
}

extern "C" fn bsp_main() -> ! {
    let stack = *BSP_STACK.get().expect("set by start");
    let info = BOOT_INFO.get().expect("set by start");
    let cpu = CpuInfo::read();
    let args = Cmdline(info.cmdline());
    let Some(pcb) = percpu::build_and_install(0, smp::apic::cpuid_apic_id(), false, stack) else {
        log::error!(target: "memory", "no memory for the BSP's PCB");
        exit::fatal(Reason::NoMemory);
    };
    exit::TALLY.online.store(1, Ordering::Release);
    let rsdp = match info.rsdp {
        Some(addr) => Some((addr, "loader")),
        None => smp::find_rsdp(&smp_stage::Phys).map(|addr| (addr, "scan")),
    };
    early_report(info, &cpu, rsdp);
    smp_stage::pcb_built(pcb);

    if let Some(value) = args.get("fault") {
        match cmdline::fault_target(args) {
            Some((Fault::NoMemory, cpu)) => {
                log::warn!(target: "boot", "fault=no_memory acts on the BSP only; fault_cpu={cpu} ignored")
            }
            Some(target) => faults::arm(target),
            None => {
                log::warn!(target: "boot", "fault={value} is not a known fault (docs/serial-log.md); ignored")
            }
        }
    }
    faults::inject_if_targeted(0);
    vmx_stage::configure(args.get("vmx"), args.get("selftest"));
    let smp = smp_stage::run(info, rsdp.map(|(a, _)| a), args);
    let bsp_vmx_us = vmx_stage::run_on_this_cpu(pcb).unwrap_or(0);
    smp_stage::core_done();
    smp_stage::wait_for_cores(CORE_WORK_TIMEOUT_US);
    // Routine lines waited in the log queue until now (docs/serial-log.md, "Deferred lines").
    logger::defer_routine_lines(false);
    let vmx = vmx_stage::judge(bsp_vmx_us.max(smp_stage::last_ap_vmx_us()));
    smp_stage::report_phases();
    let (verdict, reason) = if !smp.acpi_ok {
        (Verdict::Degraded, Reason::AcpiError)
    } else if smp.failed > 0 {
        (Verdict::Degraded, Reason::ApTimeout)
    } else {
        (Verdict::Ok, Reason::None)
    };
    // The worse of the SMP and VMX outcomes decides; a core that faulted makes the run fail.
    let (verdict, reason) = match vmx {
        Some((v, r)) if v == Verdict::Fail || verdict == Verdict::Ok => (v, r),
        _ => (verdict, reason),
    };
    let (verdict, reason) = match exit::ap_fatal() {
        Some(r) => (Verdict::Fail, r),
        None => (verdict, reason),
    };
    if exit::on_done() == exit::OnDone::Exit && vmx_stage::enabled() {
        vmx_stage::teardown_all(TEARDOWN_TIMEOUT_US);
    }
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

fn apply_cmdline(args: Cmdline) {
    match cmdline::parse_level(args.get("log")) {
        Ok(level) => log::set_max_level(level),
        Err(bad) => {
            log::warn!(target: "boot", "log={bad} is not a level (error|warn|info|debug|trace); using info")
        }
    }
    match cmdline::OnDone::parse(args.get("on_done")) {
        Ok(action) => exit::set_on_done(action),
        Err(bad) => {
            log::warn!(target: "boot", "on_done={bad} is not one of halt|exit|reboot; using halt")
        }
    }
    match cmdline::parse_switch(args.get("log_defer"), true) {
        Ok(on) => logger::defer_routine_lines(on),
        Err(bad) => {
            log::warn!(target: "boot", "log_defer={bad} is not on|off; lines stay deferred")
        }
    }
    for key in args.unknown_keys() {
        log::warn!(target: "boot", "unknown command-line key '{key}' ignored");
    }
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
