//! How a run ends: exactly one summary line, then the action `on_done` asks for (docs/serial-log.md).

use crate::{arch, logger, time};
use core::fmt::Write;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Degraded,
    Fail,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Degraded => "degraded",
            Verdict::Fail => "fail",
        }
    }

    /// The value written to QEMU's isa-debug-exit port (QEMU exits with `(value << 1) | 1`).
    pub fn debug_exit_code(self) -> u8 {
        match self {
            Verdict::Ok => 0x10,
            Verdict::Fail => 0x11,
            Verdict::Degraded => 0x12,
        }
    }
}

/// Why the verdict is not `ok`: one word in the summary's `reason=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    None,
    Exception,
    StackOverflow,
    Panic,
    BadHandoff,
    ApTimeout,
    NoMemory,
    AcpiError,
    VmxUnsupported,
    VmxDisabledByFirmware,
    VmxFailed,
    SelftestFailed,
    GuestFailed,
}

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Reason::None => "none",
            Reason::Exception => "exception",
            Reason::StackOverflow => "stack_overflow",
            Reason::Panic => "panic",
            Reason::BadHandoff => "bad_handoff",
            Reason::ApTimeout => "ap_timeout",
            Reason::NoMemory => "no_memory",
            Reason::AcpiError => "acpi_error",
            Reason::VmxUnsupported => "vmx_unsupported",
            Reason::VmxDisabledByFirmware => "vmx_disabled_by_firmware",
            Reason::VmxFailed => "vmx_failed",
            Reason::SelftestFailed => "selftest_failed",
            Reason::GuestFailed => "guest_failed",
        }
    }
}

/// The counts the summary reports; updated by the SMP and VMX stages.
pub struct Tally {
    pub cpus: AtomicU32,
    pub online: AtomicU32,
    pub failed: AtomicU32,
    pub vmx_root: AtomicU32,
}

pub static TALLY: Tally = Tally {
    cpus: AtomicU32::new(1),
    online: AtomicU32::new(0),
    failed: AtomicU32::new(0),
    vmx_root: AtomicU32::new(0),
};

/// The optional `key=value` pairs of the summary, in the order they are printed (docs/serial-log.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SummaryKey {
    AcpiUs,
    FirstSipiUs,
    OnlineUs,
    VmxUs,
    SelftestPass,
    SelftestFail,
    Guests,
}

impl SummaryKey {
    pub const ALL: [SummaryKey; 7] = [
        SummaryKey::AcpiUs,
        SummaryKey::FirstSipiUs,
        SummaryKey::OnlineUs,
        SummaryKey::VmxUs,
        SummaryKey::SelftestPass,
        SummaryKey::SelftestFail,
        SummaryKey::Guests,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SummaryKey::AcpiUs => "t_acpi_us",
            SummaryKey::FirstSipiUs => "t_first_sipi_us",
            SummaryKey::OnlineUs => "t_online_us",
            SummaryKey::VmxUs => "t_vmx_us",
            SummaryKey::SelftestPass => "selftest_pass",
            SummaryKey::SelftestFail => "selftest_fail",
            SummaryKey::Guests => "guests",
        }
    }
}

/// The values of the optional pairs, one per [`SummaryKey`] (so none can be dropped); [`UNSET`] = not reported.
static EXTRA: [AtomicU64; SummaryKey::ALL.len()] =
    [const { AtomicU64::new(UNSET) }; SummaryKey::ALL.len()];
const UNSET: u64 = u64::MAX;

pub fn summary_value(key: SummaryKey) -> Option<u64> {
    Some(EXTRA[key as usize].load(Ordering::Acquire)).filter(|&v| v != UNSET)
}

/// Sets (or replaces) the value of `key`.
pub fn set_summary_value(key: SummaryKey, value: u64) {
    EXTRA[key as usize].store(value, Ordering::Release);
}

/// Sets the value of `key` unless it already has one.
pub fn set_summary_value_once(key: SummaryKey, value: u64) {
    let _ = EXTRA[key as usize].compare_exchange(UNSET, value, Ordering::AcqRel, Ordering::Acquire);
}

fn summary_values() -> [Option<u64>; SummaryKey::ALL.len()] {
    SummaryKey::ALL.map(summary_value)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OnDone {
    Halt = 0,
    Exit = 1,
    Reboot = 2,
}

static ON_DONE: AtomicU8 = AtomicU8::new(OnDone::Halt as u8);

pub fn on_done() -> OnDone {
    match ON_DONE.load(Ordering::Relaxed) {
        1 => OnDone::Exit,
        2 => OnDone::Reboot,
        _ => OnDone::Halt,
    }
}

pub fn set_on_done(action: OnDone) {
    ON_DONE.store(action as u8, Ordering::Relaxed);
}

/// Formats the summary message (without the log prefix).
pub fn format_summary(
    out: &mut impl Write,
    tally: [u32; 4],
    verdict: Verdict,
    boot_us: u64,
    reason: Reason,
    extra: &[Option<u64>; SummaryKey::ALL.len()],
) {
    let [cpus, online, failed, vmx_root] = tally;
    let _ = write!(
        out,
        "summary: cpus={cpus} online={online} failed={failed} vmx_root={vmx_root} verdict={} boot_us={boot_us} reason={}",
        verdict.name(),
        reason.name()
    );
    for (key, value) in SummaryKey::ALL.iter().zip(extra) {
        if let Some(v) = value {
            let _ = write!(out, " {}={v}", key.name());
        }
    }
}

/// What a stage must do on every way out of the run, before the summary (the VMX stage: every core leaves VMX
/// root operation, in which INIT is blocked, so a reset could hang; SDM vol. 3C 24.8 "Restrictions on VMX
/// operation"). Core services never call a stage: the stage registers itself here.
static TEARDOWN_HOOK: spin::Once<fn()> = spin::Once::new();

/// Registers the teardown hook (the first registration counts).
pub fn set_teardown_hook(hook: fn()) {
    TEARDOWN_HOOK.call_once(|| hook);
}

/// Where the end of the run stands: [`RUNNING`], [`TEARING_DOWN`] (the hook runs), [`SUMMARY`] (printed).
static ENDING: AtomicU8 = AtomicU8::new(RUNNING);
const RUNNING: u8 = 0;
const TEARING_DOWN: u8 = 1;
const SUMMARY: u8 = 2;

/// Ends the run: the teardown hook, then the summary. Only the first caller does it; any other core that gets
/// here just stops. The BSP may get here from an exception handler: if the teardown itself faults (the caller
/// is then the same core, nested), the summary is printed without finishing the teardown.
pub fn finish(verdict: Verdict, reason: Reason) -> ! {
    match ENDING.compare_exchange(RUNNING, TEARING_DOWN, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            if let Some(hook) = TEARDOWN_HOOK.get() {
                hook();
            }
        }
        Err(TEARING_DOWN) => {
            log::error!(target: "hypervisor", "the teardown did not complete (a fault during it)")
        }
        Err(_) => arch::halt_forever(),
    }
    if ENDING.swap(SUMMARY, Ordering::AcqRel) == SUMMARY {
        arch::halt_forever();
    }
    let tally = [
        TALLY.cpus.load(Ordering::Acquire),
        TALLY.online.load(Ordering::Acquire),
        TALLY.failed.load(Ordering::Acquire),
        TALLY.vmx_root.load(Ordering::Acquire),
    ];
    let extra = summary_values();
    let mut msg = logger::LineBuf::new();
    format_summary(&mut msg, tally, verdict, time::now_us(), reason, &extra);
    let text =
        core::str::from_utf8(msg.as_bytes()).unwrap_or("summary: verdict=fail reason=format");
    // The summary is printed whatever the log level: it is the run's verdict.
    if log::max_level() < log::LevelFilter::Info {
        log::set_max_level(log::LevelFilter::Info);
    }
    log::info!(target: "hypervisor", "{text}");
    leave(verdict)
}

/// The first fatal reason reported by an AP (0 = none), as `Reason as u8 + 1`.
static AP_FATAL: AtomicU8 = AtomicU8::new(0);
const REASONS: [Reason; 13] = [
    Reason::None,
    Reason::Exception,
    Reason::StackOverflow,
    Reason::Panic,
    Reason::BadHandoff,
    Reason::ApTimeout,
    Reason::NoMemory,
    Reason::AcpiError,
    Reason::VmxUnsupported,
    Reason::VmxDisabledByFirmware,
    Reason::VmxFailed,
    Reason::SelftestFailed,
    Reason::GuestFailed,
];

/// A fatal failure. On the BSP it ends the run at once. On an AP it takes only that core out: the core is
/// counted as failed instead of online and stops, and the BSP ends the run with `verdict=fail` and this reason
/// once the other cores are done, so their log lines are not cut off.
pub fn fatal(reason: Reason) -> ! {
    match crate::percpu::this_cpu() {
        Some(pcb) if pcb.index != 0 => {
            pcb.set_status(crate::percpu::status::FAILED);
            record_ap_fatal(reason);
            if pcb.has_status(crate::percpu::status::ONLINE) {
                TALLY.online.fetch_sub(1, Ordering::AcqRel);
            }
            TALLY.failed.fetch_add(1, Ordering::AcqRel);
            log::error!(target: "hypervisor", "cpu={} stopped: {} (the run will end with verdict=fail)", pcb.index, reason.name());
            arch::halt_forever()
        }
        Some(_) => finish(Verdict::Fail, reason),
        None => match crate::percpu::early_ap_index() {
            Some(index) => early_ap_fatal(index, reason),
            None => finish(Verdict::Fail, reason),
        },
    }
}

/// What the SMP stage does when an AP fails before its PCB exists (marks the AP's slot failed, so the BSP
/// does not wait for its PCB); registered by the stage.
static EARLY_AP_HOOK: spin::Once<fn(u32)> = spin::Once::new();

/// Registers the early-AP failure hook (the first registration counts).
pub fn set_early_ap_failure_hook(hook: fn(u32)) {
    EARLY_AP_HOOK.call_once(|| hook);
}

/// A fatal failure on AP `index` before its PCB was installed: the core stops, the SMP stage counts it as
/// failed (not online), and the BSP ends the run with `verdict=fail` and this reason.
fn early_ap_fatal(index: u32, reason: Reason) -> ! {
    record_ap_fatal(reason);
    log::error!(target: "hypervisor", "cpu={index} stopped before its PCB was installed: {} (the run will end with verdict=fail)", reason.name());
    if let Some(hook) = EARLY_AP_HOOK.get() {
        hook(index);
    }
    arch::halt_forever()
}

/// How [`AP_FATAL`] stores a reason: its index in [`REASONS`] plus one (0 = none yet).
fn ap_fatal_code(reason: Reason) -> u8 {
    REASONS.iter().position(|r| *r == reason).unwrap_or(0) as u8 + 1
}

fn ap_fatal_reason(code: u8) -> Option<Reason> {
    match code {
        0 => None,
        code => REASONS.get(usize::from(code - 1)).copied(),
    }
}

/// Keeps `reason` as the APs' fatal failure unless one was kept already (the first counts).
fn record_ap_fatal(reason: Reason) {
    let code = ap_fatal_code(reason);
    let _ = AP_FATAL.compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire);
}

/// The first fatal failure an AP reported, if any.
pub fn ap_fatal() -> Option<Reason> {
    ap_fatal_reason(AP_FATAL.load(Ordering::Acquire))
}

/// How long a reset method may take before the next one is tried.
const RESET_WAIT_US: u64 = 100_000;

fn leave(verdict: Verdict) -> ! {
    logger::drain();
    match ON_DONE.load(Ordering::Relaxed) {
        x if x == OnDone::Exit as u8 => {
            // SAFETY: port 0xF4 is QEMU's isa-debug-exit when present and unused otherwise; port 0x8900 is
            // Bochs' shutdown port. Neither write touches memory.
            unsafe {
                arch::port::outb(0xF4, verdict.debug_exit_code());
                for &b in b"Shutdown" {
                    arch::port::outb(0x8900, b);
                }
            }
            arch::halt_forever()
        }
        x if x == OnDone::Reboot as u8 => {
            // Each method gets time to act (resets are asynchronous, in emulators too) before the next is tried:
            // the chipset's reset control register (0xCF9: system reset, then full reset, as Linux does), the
            // keyboard controller's reset line, and last a triple fault (empty IDT plus an exception).
            // SAFETY: every write requests a reset; nothing after them relies on memory state, and the final
            // triple fault resets the machine, so nothing runs afterwards.
            unsafe {
                arch::port::outb(0xCF9, 0x02);
                time::delay_us(50);
                arch::port::outb(0xCF9, 0x06);
                time::delay_us(RESET_WAIT_US);
                arch::port::outb(0x64, 0xFE);
                time::delay_us(RESET_WAIT_US);
                let null = x86_64::structures::DescriptorTablePointer {
                    limit: 0,
                    base: x86_64::VirtAddr::new(0),
                };
                x86_64::instructions::tables::lidt(&null);
                core::arch::asm!("int3", options(nomem, nostack));
            }
            arch::halt_forever()
        }
        _ => arch::halt_forever(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_has_the_documented_keys_in_order() {
        let mut s = String::new();
        format_summary(
            &mut s,
            [4, 4, 0, 4],
            Verdict::Ok,
            1834,
            Reason::None,
            &[None, None, None, None, Some(9), None, None],
        );
        assert_eq!(
            s,
            "summary: cpus=4 online=4 failed=0 vmx_root=4 verdict=ok boot_us=1834 reason=none selftest_pass=9"
        );
    }

    #[test]
    fn every_summary_key_is_printed_in_the_documented_order() {
        let mut s = String::new();
        format_summary(
            &mut s,
            [1, 1, 0, 0],
            Verdict::Ok,
            7,
            Reason::None,
            &[
                Some(1),
                Some(2),
                Some(3),
                Some(4),
                Some(5),
                Some(6),
                Some(7),
            ],
        );
        assert_eq!(
            s,
            "summary: cpus=1 online=1 failed=0 vmx_root=0 verdict=ok boot_us=7 reason=none \
             t_acpi_us=1 t_first_sipi_us=2 t_online_us=3 t_vmx_us=4 selftest_pass=5 selftest_fail=6 guests=7"
        );
        for (i, key) in SummaryKey::ALL.iter().enumerate() {
            assert_eq!(*key as usize, i, "{key:?}");
        }
    }

    #[test]
    fn every_reason_survives_the_ap_fatal_code() {
        // `fatal` on an AP stores a reason as its index in REASONS; each must map back to itself.
        let names: Vec<&str> = REASONS.iter().map(|r| r.name()).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            unique.len(),
            names.len(),
            "a reason is listed twice: {names:?}"
        );
        for (i, &r) in REASONS.iter().enumerate() {
            assert_eq!(ap_fatal_code(r), i as u8 + 1, "{}", r.name());
            assert_eq!(ap_fatal_reason(ap_fatal_code(r)), Some(r));
        }
        assert_eq!(ap_fatal_reason(0), None);
        assert_eq!(ap_fatal_reason(REASONS.len() as u8 + 1), None);
    }

    /// The only test that records an AP failure or sets a summary value or the end action (they are
    /// global, like the machine's state they stand for).
    #[test]
    fn globals_keep_the_first_ap_failure_the_summary_values_and_the_end_action() {
        assert_eq!(ap_fatal(), None);
        record_ap_fatal(REASONS[2]);
        record_ap_fatal(REASONS[1]);
        assert_eq!(ap_fatal(), Some(REASONS[2]), "the first failure counts");

        let key = SummaryKey::Guests;
        assert_eq!(summary_value(key), None);
        set_summary_value_once(key, 3);
        set_summary_value_once(key, 4);
        assert_eq!(summary_value(key), Some(3), "set once");
        set_summary_value(key, 5);
        assert_eq!(summary_value(key), Some(5), "replaced");
        let values = summary_values();
        assert_eq!(values[key as usize], Some(5));
        assert_eq!(values.iter().flatten().count(), 1);

        assert_eq!(on_done(), OnDone::Halt);
        for action in [OnDone::Exit, OnDone::Reboot, OnDone::Halt] {
            set_on_done(action);
            assert_eq!(on_done(), action);
        }
    }

    /// The hooks a stage registers are the ones called.
    #[test]
    fn registered_hooks_are_kept() {
        use core::sync::atomic::AtomicU32;
        static CALLS: AtomicU32 = AtomicU32::new(0);
        fn teardown() {
            CALLS.fetch_add(1, Ordering::Relaxed);
        }
        fn early_ap(index: u32) {
            CALLS.fetch_add(index, Ordering::Relaxed);
        }
        set_teardown_hook(teardown);
        set_early_ap_failure_hook(early_ap);
        TEARDOWN_HOOK.get().expect("registered")();
        EARLY_AP_HOOK.get().expect("registered")(10);
        assert_eq!(CALLS.load(Ordering::Relaxed), 11);
    }

    #[test]
    fn exit_codes_are_distinct() {
        let codes = [Verdict::Ok, Verdict::Fail, Verdict::Degraded].map(Verdict::debug_exit_code);
        assert_eq!(codes, [0x10, 0x11, 0x12]);
    }
}
