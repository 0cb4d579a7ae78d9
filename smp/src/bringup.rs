//! Starting the APs with INIT-SIPI-SIPI (SDM Vol. 3A §9.4.4 "MP Initialization Example"),
//! independent of hardware: the [`Platform`] sends the IPIs, reads the clock and the APs'
//! "alive" flags.
//!
//! Parallel mode (like Linux 6.5's parallel bring-up, where each AP finds its own slot by APIC
//! id): INIT to every target, one INIT delay, SIPI to every target, one SIPI delay, a second
//! SIPI only to the APs that have not answered, one SIPI delay, then poll all of them, each with
//! its own timeout counted from its first SIPI. The total time is about
//! `init_delay + 2 * sipi_delay + slowest AP`, flat in the number of APs.
//!
//! Serial mode does the same sequence one AP at a time (total time grows with the AP count).
//!
//! An AP that already reports started never gets an INIT (that would reset a running CPU) nor a
//! SIPI.

use alloc::vec::Vec;
use core::fmt;

/// What the bring-up needs from the machine.
pub trait Platform {
    /// A monotonic clock in microseconds.
    fn now_us(&self) -> u64;
    /// INIT to `apic_id` (the implementation sends assert, and de-assert if it wants).
    fn send_init(&mut self, apic_id: u32);
    /// STARTUP IPI to `apic_id` with vector `page` (entry at physical `page << 12`).
    fn send_sipi(&mut self, apic_id: u32, page: u8);
    /// Whether the AP with logical index `logical` has set its "alive" flag.
    fn ap_started(&self, logical: usize) -> bool;
    /// Busy-waits `us` microseconds.
    fn delay_us(&mut self, us: u64);
    /// The wait after INIT, at least `us` microseconds. No AP this run targets is running meanwhile, so a
    /// platform may use it for other work (the hypervisor writes out queued log lines) as long as it does not
    /// return early.
    fn init_delay_us(&mut self, us: u64) {
        self.delay_us(us);
    }
    /// The local APIC's errors since the last call: writes the Error Status Register, then reads it (SDM vol. 3A
    /// 11.5.3 "Error Handling"); 0 = none. Called before the first INIT (to clear) and after every INIT and SIPI.
    fn ipi_error(&mut self) -> u32 {
        0
    }
}

/// One AP to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApTarget {
    /// The key passed to [`Platform::ap_started`] for this AP: [`targets`] uses the logical CPU
    /// index (index in [`crate::ProcessorList::cpus`]); a caller may use its own (e.g. a slot
    /// index).
    pub logical: usize,
    pub apic_id: u32,
}

/// The APs of `list` to start: usable, not the BSP, in logical order.
pub fn targets(list: &crate::ProcessorList) -> Vec<ApTarget> {
    list.startable_aps()
        .map(|(logical, p)| ApTarget {
            logical,
            apic_id: p.apic_id,
        })
        .collect()
}

/// Parallel or serial start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartMode {
    Parallel,
    Serial,
}

impl StartMode {
    /// `parallel` or `serial` (the `ap_start=` value).
    pub fn name(self) -> &'static str {
        match self {
            StartMode::Parallel => "parallel",
            StartMode::Serial => "serial",
        }
    }
}

impl fmt::Display for StartMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Bring-up settings (command-line words in [`BringupConfig::apply_word`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BringupConfig {
    /// `ap_start=parallel|serial`.
    pub mode: StartMode,
    /// `init_delay_us=`: wait after INIT (SDM §9.4.4.1: 10 ms; [`BringupConfig::for_cpu`] drops it where
    /// Linux does).
    pub init_delay_us: u64,
    /// `init_delay_us=` was on the command line: [`BringupConfig::for_cpu`] keeps it.
    pub init_delay_given: bool,
    /// `sipi_delay_us=`: wait after each SIPI (SDM: 200 us).
    pub sipi_delay_us: u64,
    /// `ap_timeout_us=`: how long an AP may take after its first SIPI ([`AP_TIMEOUT_DEFAULT_US`]).
    pub ap_timeout_us: u64,
    /// `smp=<n>`: at most `n` processors, BSP included (`None`: no command-line limit).
    pub max_cpus: Option<usize>,
}

impl Default for BringupConfig {
    fn default() -> Self {
        Self {
            mode: StartMode::Parallel,
            init_delay_us: INIT_DELAY_LEGACY_US,
            init_delay_given: false,
            sipi_delay_us: 200,
            ap_timeout_us: AP_TIMEOUT_DEFAULT_US,
            max_cpus: None,
        }
    }
}

/// How long an AP may take to answer its first SIPI by default: 1 s. Hardware answers in microseconds; under
/// an emulator hundreds of vCPUs share a few host threads, and one of 255 under single-threaded TCG once
/// took over 100 ms (the old default). Linux waits 10 s for an AP's call-in, Xen 5 s.
pub const AP_TIMEOUT_DEFAULT_US: u64 = 1_000_000;

/// The INIT-to-SIPI wait of the MP specification and SDM vol. 3A 9.4.4.1 (10 ms).
pub const INIT_DELAY_LEGACY_US: u64 = 10_000;

/// Whether a CPU of this vendor (CPUID leaf 0 string) and family (with the extended family added, as CPUID
/// leaf 1 reports it) can skip the 10 ms wait after INIT. The rule is Linux's (arch/x86/kernel/smpboot.c,
/// `smp_quirk_init_udelay`): Intel family 6 and later (the Pentium Pro on; newer kernels widened "family 6"
/// to that), AMD family 0xF and later, Hygon family 0x18 and later; any other CPU keeps the legacy wait.
pub fn init_delay_needed(vendor: &[u8; 12], family: u32) -> bool {
    let skip = match vendor {
        b"GenuineIntel" => family >= 6,
        b"AuthenticAMD" => family >= 0xF,
        b"HygonGenuine" => family >= 0x18,
        _ => false,
    };
    !skip
}

/// Upper bound for every delay and timeout value (60 s).
pub const MAX_CONFIG_US: u64 = 60_000_000;
/// Interval between two polls of the APs' flags.
pub const POLL_INTERVAL_US: u64 = 10;

/// A command-line word this module owns but could not accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigError<'a> {
    pub key: &'a str,
    pub value: &'a str,
    /// What is accepted.
    pub expected: &'static str,
}

impl fmt::Display for ConfigError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {}={:?}: expected {}",
            self.key, self.value, self.expected
        )
    }
}

impl BringupConfig {
    /// The settings for the BSP's CPU (`vendor`, `family` from CPUID): the INIT delay is 0 where
    /// [`init_delay_needed`] says the CPU does not need it, [`INIT_DELAY_LEGACY_US`] otherwise, unless
    /// `init_delay_us=` was given.
    pub fn for_cpu(self, vendor: &[u8; 12], family: u32) -> Self {
        if self.init_delay_given {
            return self;
        }
        let init_delay_us = if init_delay_needed(vendor, family) {
            INIT_DELAY_LEGACY_US
        } else {
            0
        };
        Self {
            init_delay_us,
            ..self
        }
    }

    /// Applies one command-line word. Returns `Ok(true)` if the word belongs to this module,
    /// `Ok(false)` if not (the caller handles it), `Err` for one of ours with a bad value (the
    /// setting keeps its previous value).
    pub fn apply_word<'a>(&mut self, word: &'a str) -> Result<bool, ConfigError<'a>> {
        let Some((key, value)) = word.split_once('=') else {
            return Ok(false);
        };
        let err = |expected| ConfigError {
            key,
            value,
            expected,
        };
        let micros = |v: &str| v.parse::<u64>().ok().filter(|&n| n <= MAX_CONFIG_US);
        match key {
            "ap_start" => {
                self.mode = match value {
                    "parallel" => StartMode::Parallel,
                    "serial" => StartMode::Serial,
                    _ => return Err(err("parallel or serial")),
                }
            }
            "init_delay_us" => {
                self.init_delay_us = micros(value).ok_or(err("0..=60000000"))?;
                self.init_delay_given = true;
            }
            "sipi_delay_us" => self.sipi_delay_us = micros(value).ok_or(err("0..=60000000"))?,
            "ap_timeout_us" => {
                self.ap_timeout_us = micros(value)
                    .filter(|&n| n > 0)
                    .ok_or(err("1..=60000000"))?
            }
            "smp" => {
                let n = value
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or(err("a CPU count >= 1"))?;
                self.max_cpus = Some(n);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Parses a whole command line (space-separated words; words of other modules are
    /// ignored). Returns the settings and the rejected words of this module. (The image parses its
    /// command line once, in `hypervisor::config`, and hands each bring-up word to
    /// [`BringupConfig::apply_word`].)
    #[cfg(test)]
    pub fn from_cmdline(cmdline: &str) -> (Self, Vec<ConfigError<'_>>) {
        let mut cfg = Self::default();
        let errors = cmdline
            .split_ascii_whitespace()
            .filter_map(|w| cfg.apply_word(w).err())
            .collect();
        (cfg, errors)
    }

    /// The processor limit to pass to the MADT parser: the smaller of `smp=` and
    /// `memory_limit` (what memory allows), at least 1.
    pub fn cpu_limit(&self, memory_limit: usize) -> usize {
        self.max_cpus
            .map_or(memory_limit, |n| n.min(memory_limit))
            .max(1)
    }
}

/// How one AP ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApOutcome {
    /// The AP set its flag `latency_us` after its first SIPI (0 if it was already running).
    Online { latency_us: u64 },
    /// No flag within `ap_timeout_us` after its first SIPI.
    TimedOut,
}

/// Per-AP result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApReport {
    pub logical: usize,
    pub apic_id: u32,
    pub outcome: ApOutcome,
    /// INITs sent to it (0 if it was already running).
    pub inits: u8,
    /// SIPIs sent to it (0, 1 or 2).
    pub sipis: u8,
    /// The ESR bits read after its INIT and SIPIs, OR-ed (0: every IPI was accepted); see [`crate::apic::Esr`].
    pub esr: u32,
}

/// Result of [`run`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BringupReport {
    pub mode: StartMode,
    /// One per target, in the order of the targets.
    pub results: Vec<ApReport>,
    /// INITs sent in total.
    pub inits_sent: usize,
    /// SIPIs sent in total.
    pub sipis_sent: usize,
    /// Clock time from start to end.
    pub elapsed_us: u64,
}

impl BringupReport {
    /// APs that answered.
    pub fn online(&self) -> usize {
        self.results
            .iter()
            .filter(|a| matches!(a.outcome, ApOutcome::Online { .. }))
            .count()
    }

    /// APs that did not answer in time.
    pub fn timed_out(&self) -> usize {
        self.results.len() - self.online()
    }
}

impl fmt::Display for BringupReport {
    /// `mode=<m> aps=<n> online=<n> timed_out=<n> inits=<n> sipis=<n> elapsed_us=<n>`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "mode={} aps={} online={} timed_out={} inits={} sipis={} elapsed_us={}",
            self.mode,
            self.results.len(),
            self.online(),
            self.timed_out(),
            self.inits_sent,
            self.sipis_sent,
            self.elapsed_us
        )
    }
}

/// Waiting helper: tracks both the clock and the sum of requested delays, so a platform whose
/// clock does not advance still times out.
struct Waiter<'p, P: Platform> {
    p: &'p mut P,
    waited_us: u64,
}

/// A point in time: (clock, waited-so-far).
#[derive(Clone, Copy)]
struct Mark {
    clock: u64,
    waited: u64,
}

impl<P: Platform> Waiter<'_, P> {
    fn delay(&mut self, us: u64) {
        self.wait(us, P::delay_us);
    }

    fn init_delay(&mut self, us: u64) {
        self.wait(us, P::init_delay_us);
    }

    /// Waits `us` with the platform's `how` and counts it.
    fn wait(&mut self, us: u64, how: fn(&mut P, u64)) {
        if us > 0 {
            how(self.p, us);
            self.waited_us = self.waited_us.saturating_add(us);
        }
    }

    fn mark(&self) -> Mark {
        Mark {
            clock: self.p.now_us(),
            waited: self.waited_us,
        }
    }

    fn since(&self, m: Mark) -> u64 {
        self.p
            .now_us()
            .saturating_sub(m.clock)
            .max(self.waited_us - m.waited)
    }
}

/// Per-target progress.
struct Slot {
    report: ApReport,
    first_sipi: Option<Mark>,
    done: bool,
}

/// Starts `targets` (see the module documentation); [`Platform::ap_started`] is asked about
/// each target's [`ApTarget::logical`]. `page` is the trampoline's SIPI vector
/// (physical address >> 12, see [`crate::trampoline::sipi_vector`]).
pub fn run<P: Platform>(
    p: &mut P,
    targets: &[ApTarget],
    page: u8,
    cfg: &BringupConfig,
) -> BringupReport {
    let mut slots: Vec<Slot> = targets
        .iter()
        .map(|t| Slot {
            report: ApReport {
                logical: t.logical,
                apic_id: t.apic_id,
                outcome: ApOutcome::TimedOut,
                inits: 0,
                sipis: 0,
                esr: 0,
            },
            first_sipi: None,
            done: false,
        })
        .collect();
    let mut w = Waiter { p, waited_us: 0 };
    let start = w.mark();
    match cfg.mode {
        StartMode::Parallel => {
            let all: Vec<usize> = (0..slots.len()).collect();
            kick_and_wait(&mut w, cfg, page, &mut slots, &all);
        }
        StartMode::Serial => {
            for i in 0..slots.len() {
                kick_and_wait(&mut w, cfg, page, &mut slots, &[i]);
            }
        }
    }
    let results: Vec<ApReport> = slots.into_iter().map(|s| s.report).collect();
    let report = BringupReport {
        mode: cfg.mode,
        inits_sent: results.iter().map(|a| usize::from(a.inits)).sum(),
        sipis_sent: results.iter().map(|a| usize::from(a.sipis)).sum(),
        results,
        elapsed_us: w.since(start),
    };
    for a in report
        .results
        .iter()
        .filter(|a| a.outcome == ApOutcome::TimedOut)
    {
        log::warn!(
            "cpu={} apic_id={} did not answer within {} us of its first SIPI",
            a.logical,
            a.apic_id,
            cfg.ap_timeout_us
        );
    }
    log::info!("{report}");
    report
}

/// INIT, SIPI, SIPI to the slots `group`, then poll them until each is online or timed out.
/// The delay after a SIPI round is skipped when the round sent nothing.
fn kick_and_wait<P: Platform>(
    w: &mut Waiter<'_, P>,
    cfg: &BringupConfig,
    page: u8,
    slots: &mut [Slot],
    group: &[usize],
) {
    // Already running (e.g. started earlier): never INIT it.
    for &i in group {
        let s = &mut slots[i];
        if w.p.ap_started(s.report.logical) {
            s.report.outcome = ApOutcome::Online { latency_us: 0 };
            s.done = true;
        }
    }
    let pending = |slots: &[Slot]| {
        group
            .iter()
            .copied()
            .filter(|&i| !slots[i].done)
            .collect::<Vec<_>>()
    };

    let todo = pending(slots);
    if todo.is_empty() {
        return;
    }
    // Stale errors (from before this round) are not any AP's.
    w.p.ipi_error();
    for &i in &todo {
        w.p.send_init(slots[i].report.apic_id);
        slots[i].report.inits += 1;
        slots[i].report.esr |= w.p.ipi_error();
    }
    // Fallback start of the timeout for an AP that got no SIPI (it reported started between
    // INIT and SIPI), so that the poll loop below always ends.
    let init_mark = w.mark();
    w.init_delay(cfg.init_delay_us);

    for _round in 0..2 {
        let mut sent = false;
        for &i in &pending(slots) {
            let s = &mut slots[i];
            // An AP that answered the first SIPI gets no second one.
            if w.p.ap_started(s.report.logical) {
                continue;
            }
            w.p.send_sipi(s.report.apic_id, page);
            s.report.sipis += 1;
            s.report.esr |= w.p.ipi_error();
            s.first_sipi.get_or_insert(w.mark());
            sent = true;
        }
        if sent {
            w.delay(cfg.sipi_delay_us);
        }
    }

    loop {
        let mut waiting = false;
        for &i in group {
            let s = &mut slots[i];
            if s.done {
                continue;
            }
            let since = w.since(s.first_sipi.unwrap_or(init_mark));
            if w.p.ap_started(s.report.logical) {
                s.report.outcome = ApOutcome::Online { latency_us: since };
                s.done = true;
            } else if since >= cfg.ap_timeout_us {
                s.report.outcome = ApOutcome::TimedOut;
                s.done = true;
            } else {
                waiting = true;
            }
        }
        if !waiting {
            break;
        }
        w.delay(POLL_INTERVAL_US);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::vec;

    /// How a fake AP behaves.
    #[derive(Clone, Copy)]
    enum Ap {
        /// Sets its flag `delay` us after the first SIPI.
        AfterFirstSipi(u64),
        /// Ignores the first SIPI; answers `delay` us after the second.
        AfterSecondSipi(u64),
        /// Never answers.
        Dead,
        /// Already running before we start.
        Running,
        /// Reports started only while the fake clock is in `[from, to)`.
        Flicker(u64, u64),
    }

    #[derive(Debug, PartialEq, Eq, Clone, Copy)]
    enum Ev {
        Init(u32),
        Sipi(u32, u8),
    }

    struct Fake {
        now: u64,
        aps: BTreeMap<usize, (u32, Ap)>,
        sipi_times: BTreeMap<u32, Vec<u64>>,
        events: Vec<(u64, Ev)>,
        frozen_clock: bool,
        /// (when, how long) of each INIT delay.
        init_delays: Vec<(u64, u64)>,
        /// ESR bits the local APIC latches for an IPI to this APIC id (SDM 11.5.3).
        refuse: BTreeMap<u32, u32>,
        /// Errors latched since the last ESR write.
        esr: u32,
    }

    impl Fake {
        fn new(aps: &[Ap]) -> Self {
            Self {
                now: 1_000,
                aps: aps
                    .iter()
                    .enumerate()
                    .map(|(i, &a)| (i + 1, (10 + i as u32, a)))
                    .collect(),
                sipi_times: BTreeMap::new(),
                events: vec![],
                frozen_clock: false,
                init_delays: vec![],
                refuse: BTreeMap::new(),
                esr: 0,
            }
        }
        fn targets(&self) -> Vec<ApTarget> {
            self.aps
                .iter()
                .map(|(&logical, &(apic_id, _))| ApTarget { logical, apic_id })
                .collect()
        }
        fn count(&self, f: impl Fn(&Ev) -> bool) -> usize {
            self.events.iter().filter(|(_, e)| f(e)).count()
        }
    }

    impl Platform for Fake {
        fn now_us(&self) -> u64 {
            self.now
        }
        fn send_init(&mut self, apic_id: u32) {
            self.events.push((self.now, Ev::Init(apic_id)));
            self.esr |= self.refuse.get(&apic_id).copied().unwrap_or(0);
        }
        fn ipi_error(&mut self) -> u32 {
            core::mem::take(&mut self.esr)
        }
        fn send_sipi(&mut self, apic_id: u32, page: u8) {
            self.esr |= self.refuse.get(&apic_id).copied().unwrap_or(0);
            self.events.push((self.now, Ev::Sipi(apic_id, page)));
            self.sipi_times.entry(apic_id).or_default().push(self.now);
        }
        fn ap_started(&self, logical: usize) -> bool {
            let (apic_id, ap) = self.aps[&logical];
            let sipis = self
                .sipi_times
                .get(&apic_id)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            match ap {
                Ap::Running => true,
                Ap::Dead => false,
                Ap::Flicker(from, to) => (from..to).contains(&self.now),
                Ap::AfterFirstSipi(d) => sipis.first().is_some_and(|&t| self.now >= t + d),
                Ap::AfterSecondSipi(d) => sipis.get(1).is_some_and(|&t| self.now >= t + d),
            }
        }
        fn delay_us(&mut self, us: u64) {
            if !self.frozen_clock {
                self.now += us;
            }
        }
        fn init_delay_us(&mut self, us: u64) {
            self.init_delays.push((self.now, us));
            self.delay_us(us);
        }
    }

    #[test]
    fn an_ipi_the_apic_did_not_accept_is_reported_for_its_ap_only() {
        let mut fake = Fake::new(&[Ap::AfterFirstSipi(5), Ap::Dead, Ap::AfterFirstSipi(5)]);
        // A stale error from before bring-up is no AP's; AP apic_id 11's IPIs are not accepted (send accept).
        fake.esr = 0x80;
        fake.refuse.insert(11, 0x04);
        let targets = fake.targets();
        let report = run(&mut fake, &targets, 8, &BringupConfig::default());
        let esr: Vec<(u32, u32)> = report.results.iter().map(|r| (r.apic_id, r.esr)).collect();
        assert_eq!(esr, [(10, 0), (11, 0x04), (12, 0)]);
        assert_eq!(
            format!("{}", crate::apic::Esr(0x04)),
            "esr=0x4 (send accept)"
        );
        assert_eq!(
            format!("{}", crate::apic::Esr(0x1FF)),
            "esr=0x1ff (send checksum, receive checksum, send accept, receive accept, redirectable IPI, \
             send illegal vector, receive illegal vector, illegal register address, bit 8)"
        );
    }

    #[test]
    fn the_init_delay_is_one_platform_wait_per_init_round_before_any_sipi() {
        let aps = [Ap::AfterFirstSipi(50), Ap::AfterFirstSipi(80)];
        let mut f = Fake::new(&aps);
        let t = f.targets();
        run(&mut f, &t, 0x08, &cfg(StartMode::Parallel));
        assert_eq!(f.init_delays, [(1_000, 10_000)]);
        let first_sipi = f.events.iter().find(|(_, e)| matches!(e, Ev::Sipi(..)));
        assert_eq!(first_sipi.map(|(t, _)| *t), Some(11_000));

        // Serial: one INIT delay per AP, each after that AP's INIT.
        let mut f = Fake::new(&aps);
        let t = f.targets();
        run(&mut f, &t, 0x08, &cfg(StartMode::Serial));
        assert_eq!(f.init_delays.len(), 2);
        assert!(f.init_delays.iter().all(|&(_, us)| us == 10_000));
        let inits: Vec<u64> = f
            .events
            .iter()
            .filter(|(_, e)| matches!(e, Ev::Init(_)))
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(
            inits,
            f.init_delays.iter().map(|&(t, _)| t).collect::<Vec<_>>()
        );
    }

    #[test]
    fn zero_waits_are_not_platform_waits() {
        // init_delay_us=0 (the Linux-style default on modern CPUs) and no SIPI delay: the platform is never
        // asked to wait 0 us.
        let mut f = Fake::new(&[Ap::AfterFirstSipi(0)]);
        let t = f.targets();
        let c = BringupConfig {
            init_delay_us: 0,
            sipi_delay_us: 0,
            ..cfg(StartMode::Parallel)
        };
        run(&mut f, &t, 0x08, &c);
        assert_eq!(f.init_delays, []);
    }

    #[test]
    fn the_default_init_delay_is_a_plain_delay() {
        struct Plain(Vec<u64>);
        impl Platform for Plain {
            fn now_us(&self) -> u64 {
                0
            }
            fn send_init(&mut self, _: u32) {}
            fn send_sipi(&mut self, _: u32, _: u8) {}
            fn ap_started(&self, _: usize) -> bool {
                true
            }
            fn delay_us(&mut self, us: u64) {
                self.0.push(us);
            }
        }
        let mut p = Plain(vec![]);
        p.init_delay_us(10_000);
        assert_eq!(p.0, [10_000]);
    }

    fn cfg(mode: StartMode) -> BringupConfig {
        BringupConfig {
            mode,
            ..BringupConfig::default()
        }
    }

    fn outcomes(r: &BringupReport) -> Vec<bool> {
        r.results
            .iter()
            .map(|a| matches!(a.outcome, ApOutcome::Online { .. }))
            .collect()
    }

    #[test]
    fn parallel_all_answer() {
        let mut f = Fake::new(&[
            Ap::AfterFirstSipi(50),
            Ap::AfterFirstSipi(120),
            Ap::AfterFirstSipi(1_000),
        ]);
        let t = f.targets();
        let r = run(&mut f, &t, 0x08, &cfg(StartMode::Parallel));
        assert_eq!(outcomes(&r), [true, true, true]);
        assert_eq!(r.inits_sent, 3);
        // Fast APs answered before the second SIPI; the slow one got two.
        assert_eq!(
            r.results.iter().map(|a| a.sipis).collect::<Vec<_>>(),
            [1, 1, 2]
        );
        // All INITs before the INIT delay, all first SIPIs together after it.
        let inits: Vec<u64> = f
            .events
            .iter()
            .filter(|(_, e)| matches!(e, Ev::Init(_)))
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(inits, [1_000; 3]);
        assert!(f
            .events
            .iter()
            .all(|(t, e)| !matches!(e, Ev::Sipi(..)) || *t >= 11_000));
        assert!(f.events.iter().all(|(_, e)| match e {
            Ev::Sipi(_, p) => *p == 0x08,
            Ev::Init(_) => true,
        }));
        assert_eq!(
            r.results[2].outcome,
            ApOutcome::Online { latency_us: 1_000 }
        );
        // 10 ms INIT + 2 x 200 us + the slowest AP's remaining time.
        assert_eq!(r.elapsed_us, 10_000 + 1_000);
        assert_eq!(
            r.to_string(),
            "mode=parallel aps=3 online=3 timed_out=0 inits=3 sipis=4 elapsed_us=11000"
        );
    }

    #[test]
    fn parallel_one_never_answers() {
        let mut f = Fake::new(&[Ap::AfterFirstSipi(30), Ap::Dead, Ap::AfterFirstSipi(40)]);
        let t = f.targets();
        let c = BringupConfig {
            ap_timeout_us: 5_000,
            ..cfg(StartMode::Parallel)
        };
        let r = run(&mut f, &t, 0x08, &c);
        assert_eq!(outcomes(&r), [true, false, true]);
        assert_eq!(r.results[1].outcome, ApOutcome::TimedOut);
        assert_eq!(r.results[1].sipis, 2);
        assert_eq!(r.timed_out(), 1);
        // Stops at the dead AP's timeout, counted from its first SIPI.
        assert_eq!(r.elapsed_us, 10_000 + 5_000);
    }

    #[test]
    fn answers_only_after_second_sipi() {
        let mut f = Fake::new(&[Ap::AfterSecondSipi(10)]);
        let t = f.targets();
        let r = run(&mut f, &t, 0x9A, &cfg(StartMode::Parallel));
        assert_eq!(r.results[0].sipis, 2);
        // First SIPI at +0, second at +200, answer at +210, seen at the first poll (+400).
        assert_eq!(r.results[0].outcome, ApOutcome::Online { latency_us: 400 });
        assert_eq!(f.count(|e| *e == Ev::Sipi(10, 0x9A)), 2);
    }

    #[test]
    fn serial_vs_parallel_counts_and_time() {
        let aps = [Ap::AfterFirstSipi(100); 4];
        let mut fp = Fake::new(&aps);
        let t = fp.targets();
        let rp = run(&mut fp, &t, 8, &cfg(StartMode::Parallel));
        let mut fs = Fake::new(&aps);
        let rs = run(&mut fs, &t, 8, &cfg(StartMode::Serial));
        assert_eq!(outcomes(&rp), [true; 4]);
        assert_eq!(outcomes(&rs), [true; 4]);
        // Same IPI counts: one INIT and one SIPI each (they answer before the second SIPI).
        assert_eq!((rp.inits_sent, rp.sipis_sent), (4, 4));
        assert_eq!((rs.inits_sent, rs.sipis_sent), (4, 4));
        // Parallel: one INIT delay + one SIPI delay (no second SIPI was needed). Serial: that
        // much per AP.
        assert_eq!(rp.elapsed_us, 10_200);
        assert_eq!(rs.elapsed_us, 4 * 10_200);
        // Serial order: INIT(a), SIPI(a), INIT(b), ...
        let kinds: Vec<Ev> = fs.events.iter().map(|(_, e)| *e).collect();
        assert_eq!(
            &kinds[..4],
            &[Ev::Init(10), Ev::Sipi(10, 8), Ev::Init(11), Ev::Sipi(11, 8)]
        );
        // Parallel order: all INITs, then all SIPIs.
        let kinds: Vec<Ev> = fp.events.iter().map(|(_, e)| *e).collect();
        assert_eq!(
            &kinds[..4],
            &[Ev::Init(10), Ev::Init(11), Ev::Init(12), Ev::Init(13)]
        );
    }

    #[test]
    fn parallel_time_is_flat_in_ap_count() {
        let time = |n: usize| {
            let mut f = Fake::new(&vec![Ap::AfterFirstSipi(300); n]);
            let t = f.targets();
            run(&mut f, &t, 8, &cfg(StartMode::Parallel)).elapsed_us
        };
        assert_eq!(time(1), time(64));
    }

    #[test]
    fn flag_seen_only_around_sipis_still_ends() {
        // The first AP's flag reads set during both SIPI rounds (so it never gets a SIPI) and
        // clear afterwards: it must time out, counted from its INIT, not hang the poll loop.
        let mut f = Fake::new(&[Ap::Flicker(11_000, 11_201), Ap::AfterFirstSipi(300)]);
        let t = f.targets();
        let c = BringupConfig {
            ap_timeout_us: 20_000,
            ..cfg(StartMode::Parallel)
        };
        let r = run(&mut f, &t, 8, &c);
        assert_eq!((r.results[0].inits, r.results[0].sipis), (1, 0));
        assert_eq!(r.results[0].outcome, ApOutcome::TimedOut);
        assert!(matches!(r.results[1].outcome, ApOutcome::Online { .. }));
        assert_eq!(r.elapsed_us, 20_000);
    }

    #[test]
    fn already_started_ap_gets_no_init() {
        for mode in [StartMode::Parallel, StartMode::Serial] {
            let mut f = Fake::new(&[Ap::Running, Ap::AfterFirstSipi(10)]);
            let t = f.targets();
            let r = run(&mut f, &t, 8, &cfg(mode));
            assert_eq!(r.results[0].outcome, ApOutcome::Online { latency_us: 0 });
            assert_eq!((r.results[0].inits, r.results[0].sipis), (0, 0));
            assert_eq!(f.count(|e| matches!(e, Ev::Init(10) | Ev::Sipi(10, _))), 0);
            assert_eq!(f.count(|e| *e == Ev::Init(11)), 1);
        }
        // Nothing to do at all: no IPI, no delay.
        let mut f = Fake::new(&[Ap::Running]);
        let t = f.targets();
        let r = run(&mut f, &t, 8, &cfg(StartMode::Parallel));
        assert!(f.events.is_empty());
        assert_eq!(r.elapsed_us, 0);
    }

    #[test]
    fn frozen_clock_still_times_out() {
        let mut f = Fake::new(&[Ap::Dead]);
        f.frozen_clock = true;
        let t = f.targets();
        let c = BringupConfig {
            ap_timeout_us: 1_000,
            ..cfg(StartMode::Parallel)
        };
        let r = run(&mut f, &t, 8, &c);
        assert_eq!(r.results[0].outcome, ApOutcome::TimedOut);
    }

    #[test]
    fn no_targets() {
        let mut f = Fake::new(&[]);
        let r = run(&mut f, &[], 8, &cfg(StartMode::Parallel));
        assert!(r.results.is_empty());
        assert!(f.events.is_empty());
    }

    #[test]
    fn targets_from_processor_list() {
        use crate::testutil::MadtBuilder;
        let t = MadtBuilder::new(5)
            .xapic(0, 0, 1)
            .xapic(1, 1, 2)
            .xapic(2, 4, 1)
            .xapic(3, 2, 1)
            .build();
        let l = crate::madt::parse_madt(&t, 2, 16).unwrap();
        assert_eq!(
            targets(&l),
            [
                ApTarget {
                    logical: 1,
                    apic_id: 0
                },
                ApTarget {
                    logical: 3,
                    apic_id: 4
                }
            ]
        );
    }

    #[test]
    fn init_delay_as_linux_decides_it() {
        let needed = |v: &[u8; 12], f| init_delay_needed(v, f);
        assert!(!needed(b"GenuineIntel", 6));
        assert!(!needed(b"GenuineIntel", 0xF));
        assert!(!needed(b"GenuineIntel", 0x13));
        assert!(needed(b"GenuineIntel", 5));
        assert!(!needed(b"AuthenticAMD", 0xF));
        assert!(!needed(b"AuthenticAMD", 0x19));
        assert!(needed(b"AuthenticAMD", 0xE));
        assert!(needed(b"AuthenticAMD", 6));
        assert!(!needed(b"HygonGenuine", 0x18));
        assert!(needed(b"HygonGenuine", 0x17));
        assert!(needed(b"CentaurHauls", 6));
        assert!(needed(b"            ", 0x19));

        let d = BringupConfig::default();
        assert_eq!(d.init_delay_us, INIT_DELAY_LEGACY_US);
        assert_eq!(d.for_cpu(b"GenuineIntel", 6).init_delay_us, 0);
        assert_eq!(d.for_cpu(b"AuthenticAMD", 0xF).init_delay_us, 0);
        assert_eq!(d.for_cpu(b"AuthenticAMD", 6).init_delay_us, 10_000);
        assert_eq!(d.for_cpu(b"GenuineIntel", 5).init_delay_us, 10_000);
        // init_delay_us= overrides the rule, both ways.
        let (c, _) = BringupConfig::from_cmdline("init_delay_us=10000");
        assert_eq!(c.for_cpu(b"GenuineIntel", 6).init_delay_us, 10_000);
        let (c, _) = BringupConfig::from_cmdline("init_delay_us=0");
        assert_eq!(c.for_cpu(b"GenuineIntel", 5).init_delay_us, 0);
        // Everything else is kept.
        let (c, _) = BringupConfig::from_cmdline("ap_start=serial smp=3 sipi_delay_us=7");
        let q = c.for_cpu(b"GenuineIntel", 6);
        assert_eq!(
            (q.mode, q.max_cpus, q.sipi_delay_us),
            (StartMode::Serial, Some(3), 7)
        );
    }

    #[test]
    fn cmdline_parsing() {
        let (c, errs) = BringupConfig::from_cmdline(
            "log=debug ap_start=serial init_delay_us=500 sipi_delay_us=0 ap_timeout_us=2000 smp=4 on_done=exit",
        );
        assert!(errs.is_empty());
        assert_eq!(
            c,
            BringupConfig {
                mode: StartMode::Serial,
                init_delay_us: 500,
                init_delay_given: true,
                sipi_delay_us: 0,
                ap_timeout_us: 2000,
                max_cpus: Some(4)
            }
        );
        assert_eq!(c.cpu_limit(64), 4);
        assert_eq!(c.cpu_limit(2), 2);
        assert_eq!(BringupConfig::default().cpu_limit(0), 1);

        let (c, errs) = BringupConfig::from_cmdline(
            "ap_start=fast smp=0 init_delay_us=-1 ap_timeout_us=0 sipi_delay_us=99999999999 nosmp",
        );
        assert_eq!(c, BringupConfig::default());
        let keys: Vec<&str> = errs.iter().map(|e| e.key).collect();
        assert_eq!(
            keys,
            [
                "ap_start",
                "smp",
                "init_delay_us",
                "ap_timeout_us",
                "sipi_delay_us"
            ]
        );
        assert_eq!(
            errs[0].to_string(),
            "invalid ap_start=\"fast\": expected parallel or serial"
        );

        let mut c = BringupConfig::default();
        assert_eq!(c.apply_word("ap_start=parallel"), Ok(true));
        assert_eq!(c.apply_word("console=ttyS0"), Ok(false));
        assert_eq!(c.apply_word("quiet"), Ok(false));
    }
}
