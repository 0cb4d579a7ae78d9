//! The kernel command line (docs/serial-log.md, "Kernel command line"), parsed once, on the BSP before any AP
//! starts, into a typed [`Config`] that the stages read. [`KEYS`] is the one table of known keys: a word whose
//! key is not in it, or whose value its key does not accept, becomes a [`Warning`] (a WARN line).
#![deny(unsafe_code)]

use crate::exit::OnDone;
use core::fmt;
use smp::bringup::{BringupConfig, ConfigError};
use smp::ChecksumPolicy;

/// How a known key's value is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// The last word with this key counts (a later word overrides an earlier one, as on Linux); its value is
    /// checked once, after the whole line is read.
    Last(Key),
    /// Applied word by word by the `smp` crate's [`BringupConfig::apply_word`]; each bad word is reported.
    Bringup,
}

/// The keys read by their last value, in the order their warnings are reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    Log,
    OnDone,
    LogDefer,
    LogPerCoreMax,
    Fault,
    FaultCpu,
    Vmx,
    Selftest,
    AcpiChecksum,
    Guest,
    GuestLoops,
}

const LAST_KEYS: usize = 11;

/// Every key some stage reads.
const KEYS: [(&str, Kind); 16] = [
    ("log", Kind::Last(Key::Log)),
    ("on_done", Kind::Last(Key::OnDone)),
    ("log_defer", Kind::Last(Key::LogDefer)),
    ("log_per_core_max", Kind::Last(Key::LogPerCoreMax)),
    ("fault", Kind::Last(Key::Fault)),
    ("fault_cpu", Kind::Last(Key::FaultCpu)),
    ("vmx", Kind::Last(Key::Vmx)),
    ("selftest", Kind::Last(Key::Selftest)),
    ("acpi_checksum", Kind::Last(Key::AcpiChecksum)),
    ("guest", Kind::Last(Key::Guest)),
    ("guest_loops", Kind::Last(Key::GuestLoops)),
    ("smp", Kind::Bringup),
    ("ap_start", Kind::Bringup),
    ("init_delay_us", Kind::Bringup),
    ("sipi_delay_us", Kind::Bringup),
    ("ap_timeout_us", Kind::Bringup),
];

/// The most timed round trips `guest_loops=` asks for (a benchmark, not a soak).
pub const MAX_GUEST_LOOPS: u64 = 1_000_000;

/// Deliberate failures, so tests can prove that every failure path is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    InvalidOpcode,
    PageFault,
    GeneralProtection,
    DivideError,
    Panic,
    StackOverflow,
    /// An AP that never answers its SIPIs (it halts before reporting that it started).
    ApHang,
    /// The BSP panics right after sending the SIPIs, while APs are starting.
    PanicDuringBringup,
    /// The frame allocator starts empty, as if the loader's memory map listed no usable RAM above 1 MiB
    /// (BSP only: the BSP's own stack is the first allocation).
    NoMemory,
    /// Before its VMX stage the core locks IA32_FEATURE_CONTROL with "enable VMX outside SMX" clear, as a
    /// firmware that disables VMX would (only where the MSR arrives unlocked, e.g. under SeaBIOS).
    VmxLockedOff,
    /// A #UD on the target core right after its VMX stage (in VMX root under Bochs): the fatal paths must take
    /// every core out of VMX root before the run ends.
    InvalidOpcodeAfterVmx,
    /// A #UD on the target AP in its early window: in Rust, before its PCB's GDT and TSS are loaded.
    EarlyApInvalidOpcode,
    /// The target core's test guest executes an I/O instruction (an exit the program never makes).
    GuestIo,
    /// The target core's test guest loads CR3 with a guest-physical address outside its EPT map (an EPT
    /// violation where the core uses EPT).
    GuestEpt,
    /// The target AP reads its VMX capabilities with one bit of IA32_VMX_VMCS_ENUM flipped, as a processor
    /// that differs from the BSP would: it must be reported with the MSR and both values and not launch.
    VmxCapsMismatch,
}

const FAULT_WORDS: [(&str, Fault); 15] = [
    ("ud", Fault::InvalidOpcode),
    ("pf", Fault::PageFault),
    ("gp", Fault::GeneralProtection),
    ("de", Fault::DivideError),
    ("panic", Fault::Panic),
    ("stack_overflow", Fault::StackOverflow),
    ("ap_hang", Fault::ApHang),
    ("panic_during_bringup", Fault::PanicDuringBringup),
    ("no_memory", Fault::NoMemory),
    ("vmx_locked_off", Fault::VmxLockedOff),
    ("ud_after_vmx", Fault::InvalidOpcodeAfterVmx),
    ("early_ap_ud", Fault::EarlyApInvalidOpcode),
    ("guest_io", Fault::GuestIo),
    ("guest_ept", Fault::GuestEpt),
    ("vmx_caps_mismatch", Fault::VmxCapsMismatch),
];

impl Fault {
    pub fn parse(value: &str) -> Option<Self> {
        FAULT_WORDS
            .iter()
            .find(|(w, _)| *w == value)
            .map(|(_, f)| *f)
    }

    /// The command-line word for this fault.
    pub fn word(self) -> &'static str {
        FAULT_WORDS
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("?", |(w, _)| w)
    }
}

/// A deliberate fault and the logical CPU it happens on (`fault_cpu=`, default 0, the BSP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultTarget {
    pub fault: Fault,
    pub cpu: u32,
}

/// Everything the command line sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// `log=error|warn|info|debug|trace` (default info).
    pub log_level: log::LevelFilter,
    /// `on_done=halt|exit|reboot` (default halt).
    pub on_done: OnDone,
    /// `log_defer=on|off` (default on): hold routine lines until the BSP waits.
    pub log_defer: bool,
    /// `log_per_core_max=<n>` (default [`crate::log_scale::DEFAULT_MAX_EACH`]): up to this many cores (or MADT
    /// processor entries) each per-core line is INFO; above it they are DEBUG and the BSP prints compact
    /// lines (docs/serial-log.md, "Per-core lines at scale").
    pub log_per_core_max: u32,
    /// `fault=` with `fault_cpu=`; None when absent, unknown, `no_memory` aimed at an AP or `early_ap_ud` aimed at
    /// the BSP.
    pub fault: Option<FaultTarget>,
    /// `vmx=on|off` (default on).
    pub vmx: bool,
    /// `selftest=vmx`.
    pub selftest: bool,
    /// `acpi_checksum=warn|strict` (default warn): what an ACPI table with a bad checksum gets.
    pub acpi_checksum: ChecksumPolicy,
    /// `guest=on|off` (default on): each core in VMX root launches the test guest.
    pub guest: bool,
    /// `guest_loops=<n>` (default 0, at most [`MAX_GUEST_LOOPS`]): timed CPUID round trips in the test guest.
    pub guest_loops: u64,
    /// `smp=`, `ap_start=`, `init_delay_us=`, `sipi_delay_us=`, `ap_timeout_us=`.
    pub bringup: BringupConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            log_level: log::LevelFilter::Info,
            on_done: OnDone::Halt,
            log_defer: true,
            log_per_core_max: crate::log_scale::DEFAULT_MAX_EACH,
            fault: None,
            vmx: true,
            selftest: false,
            acpi_checksum: ChecksumPolicy::Warn,
            guest: true,
            guest_loops: 0,
            bringup: BringupConfig::default(),
        }
    }
}

/// A word that was not taken, with the log line it gets: `Display` is the message, [`Warning::target`] the
/// module (docs/serial-log.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Warning<'a> {
    Level(&'a str),
    OnDone(&'a str),
    LogDefer(&'a str),
    LogPerCoreMax(&'a str),
    UnknownKey(&'a str),
    NoMemoryOnAp(u32),
    /// An AP-only fault (`early_ap_ud`: the BSP has no early AP window; `vmx_caps_mismatch`: the BSP is the
    /// reference) aimed at the BSP (`fault_cpu=0` or no `fault_cpu=`); holds the fault's word.
    ApOnlyFaultOnBsp(&'static str),
    UnknownFault(&'a str),
    Vmx(&'a str),
    Selftest(&'a str),
    AcpiChecksum(&'a str),
    Guest(&'a str),
    GuestLoops(&'a str),
    Bringup(ConfigError<'a>),
}

impl Warning<'_> {
    /// The log target of the warning's line.
    pub fn target(&self) -> &'static str {
        match self {
            Self::Vmx(_) | Self::Selftest(_) | Self::Guest(_) | Self::GuestLoops(_) => "vmx",
            Self::AcpiChecksum(_) => "acpi",
            Self::Bringup(_) => "smp",
            _ => "boot",
        }
    }
}

impl fmt::Display for Warning<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Level(v) => {
                write!(
                    f,
                    "log={v} is not a level (error|warn|info|debug|trace); using info"
                )
            }
            Self::OnDone(v) => write!(f, "on_done={v} is not one of halt|exit|reboot; using halt"),
            Self::LogDefer(v) => write!(f, "log_defer={v} is not on|off; lines stay deferred"),
            Self::LogPerCoreMax(v) => write!(
                f,
                "log_per_core_max={v} is not a core count; using {}",
                crate::log_scale::DEFAULT_MAX_EACH
            ),
            Self::UnknownKey(k) => write!(f, "unknown command-line key '{k}' ignored"),
            Self::NoMemoryOnAp(cpu) => {
                write!(
                    f,
                    "fault=no_memory acts on the BSP only; fault_cpu={cpu} ignored"
                )
            }
            Self::ApOnlyFaultOnBsp(word) => write!(
                f,
                "fault={word} acts on an AP only (fault_cpu=1 or higher); ignored on cpu 0"
            ),
            Self::UnknownFault(v) => {
                write!(
                    f,
                    "fault={v} is not a known fault (docs/serial-log.md); ignored"
                )
            }
            Self::Vmx(v) => write!(f, "vmx={v} is not on|off; VMX stays on"),
            Self::Selftest(v) => write!(f, "selftest={v} is unknown (only selftest=vmx exists)"),
            Self::AcpiChecksum(v) => write!(f, "acpi_checksum={v} is not warn|strict; using warn"),
            Self::Guest(v) => write!(f, "guest={v} is not on|off; the guest stays on"),
            Self::GuestLoops(v) => {
                write!(
                    f,
                    "guest_loops={v} is not a number up to {MAX_GUEST_LOOPS}; using 0"
                )
            }
            Self::Bringup(e) => write!(f, "{e}; using the default for it"),
        }
    }
}

/// Splits a word into key and value; a word without `=` is a key with an empty value.
fn split(word: &str) -> (&str, &str) {
    word.split_once('=').unwrap_or((word, ""))
}

fn parse_level(value: &str) -> Option<log::LevelFilter> {
    Some(match value {
        "error" => log::LevelFilter::Error,
        "warn" => log::LevelFilter::Warn,
        "info" => log::LevelFilter::Info,
        "debug" => log::LevelFilter::Debug,
        "trace" => log::LevelFilter::Trace,
        _ => return None,
    })
}

fn parse_on_done(value: &str) -> Option<OnDone> {
    Some(match value {
        "halt" => OnDone::Halt,
        "exit" => OnDone::Exit,
        "reboot" => OnDone::Reboot,
        _ => return None,
    })
}

fn parse_switch(value: &str) -> Option<bool> {
    match value {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    }
}

impl Config {
    /// Parses a whole command line into the settings, handing each word not taken to `warn`, in a fixed order:
    /// log, on_done, log_defer, log_per_core_max, unknown keys in line order, fault, vmx, selftest, acpi_checksum,
    /// guest, guest_loops, bad bring-up
    /// words in line order. Allocates nothing (it runs before the heap exists), so the line is read in three passes.
    pub fn parse<'a>(cmdline: &'a str, mut warn: impl FnMut(Warning<'a>)) -> Self {
        let mut cfg = Config::default();
        let kind_of = |key: &str| KEYS.iter().find(|(k, _)| *k == key).map(|(_, kind)| *kind);
        let mut last: [Option<&str>; LAST_KEYS] = [None; LAST_KEYS];
        for word in cmdline.split_ascii_whitespace() {
            let (key, value) = split(word);
            match kind_of(key) {
                Some(Kind::Last(k)) => last[k as usize] = Some(value),
                // Errors are reported in the third pass.
                Some(Kind::Bringup) => drop(cfg.bringup.apply_word(word)),
                None => {}
            }
        }
        let get = |k: Key| last[k as usize];
        if let Some(v) = get(Key::Log) {
            match parse_level(v) {
                Some(level) => cfg.log_level = level,
                None => warn(Warning::Level(v)),
            }
        }
        if let Some(v) = get(Key::OnDone) {
            match parse_on_done(v) {
                Some(action) => cfg.on_done = action,
                None => warn(Warning::OnDone(v)),
            }
        }
        if let Some(v) = get(Key::LogDefer) {
            match parse_switch(v) {
                Some(on) => cfg.log_defer = on,
                None => warn(Warning::LogDefer(v)),
            }
        }
        if let Some(v) = get(Key::LogPerCoreMax) {
            match v.parse() {
                Ok(n) => cfg.log_per_core_max = n,
                Err(_) => warn(Warning::LogPerCoreMax(v)),
            }
        }
        for word in cmdline.split_ascii_whitespace() {
            let (key, _) = split(word);
            if kind_of(key).is_none() {
                warn(Warning::UnknownKey(key));
            }
        }
        if let Some(v) = get(Key::Fault) {
            // A malformed fault_cpu means the BSP, as an absent one does.
            let cpu = get(Key::FaultCpu).and_then(|c| c.parse().ok()).unwrap_or(0);
            match Fault::parse(v) {
                Some(Fault::NoMemory) if cpu != 0 => warn(Warning::NoMemoryOnAp(cpu)),
                Some(fault @ (Fault::EarlyApInvalidOpcode | Fault::VmxCapsMismatch))
                    if cpu == 0 =>
                {
                    warn(Warning::ApOnlyFaultOnBsp(fault.word()))
                }
                Some(fault) => cfg.fault = Some(FaultTarget { fault, cpu }),
                None => warn(Warning::UnknownFault(v)),
            }
        }
        match get(Key::Vmx) {
            None | Some("on") => {}
            Some("off") => cfg.vmx = false,
            Some(other) => warn(Warning::Vmx(other)),
        }
        match get(Key::Selftest) {
            None => {}
            Some("vmx") => cfg.selftest = true,
            Some(other) => warn(Warning::Selftest(other)),
        }
        if let Some(v) = get(Key::AcpiChecksum) {
            match ChecksumPolicy::parse(v) {
                Some(policy) => cfg.acpi_checksum = policy,
                None => warn(Warning::AcpiChecksum(v)),
            }
        }
        if let Some(v) = get(Key::Guest) {
            match parse_switch(v) {
                Some(on) => cfg.guest = on,
                None => warn(Warning::Guest(v)),
            }
        }
        if let Some(v) = get(Key::GuestLoops) {
            match v.parse::<u64>() {
                Ok(n) if n <= MAX_GUEST_LOOPS => cfg.guest_loops = n,
                _ => warn(Warning::GuestLoops(v)),
            }
        }
        let mut scratch = BringupConfig::default();
        for word in cmdline.split_ascii_whitespace() {
            if kind_of(split(word).0) == Some(Kind::Bringup) {
                if let Err(e) = scratch.apply_word(word) {
                    warn(Warning::Bringup(e));
                }
            }
        }
        cfg
    }

    /// [`Config::parse`] with the warnings collected (host tests).
    #[cfg(test)]
    fn parse_all(cmdline: &str) -> (Self, Vec<Warning<'_>>) {
        let mut warnings = Vec::new();
        let cfg = Self::parse(cmdline, |w| warnings.push(w));
        (cfg, warnings)
    }

    /// The fault aimed at logical CPU `cpu`, if any.
    pub fn fault_on(&self, cpu: u32) -> Option<Fault> {
        self.fault.filter(|t| t.cpu == cpu).map(|t| t.fault)
    }
}

/// The configuration, once the BSP parsed the command line ([`set`]); the defaults before that.
static CONFIG: spin::Once<Config> = spin::Once::new();
static DEFAULT: spin::Lazy<Config> = spin::Lazy::new(Config::default);

/// Records the configuration (on the BSP, before any AP starts; a second call is ignored).
pub fn set(config: Config) -> &'static Config {
    CONFIG.call_once(|| config)
}

/// The configuration the stages read.
pub fn get() -> &'static Config {
    CONFIG.get().unwrap_or(&DEFAULT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use smp::bringup::StartMode;

    fn messages(cmdline: &str) -> Vec<String> {
        Config::parse_all(cmdline)
            .1
            .iter()
            .map(|w| format!("{}: {w}", w.target()))
            .collect()
    }

    #[test]
    fn switches_are_on_or_off() {
        assert!(Config::parse_all("").0.log_defer);
        assert!(Config::parse_all("log_defer=on").0.log_defer);
        assert!(!Config::parse_all("log_defer=off").0.log_defer);
        assert!(!Config::parse_all("vmx=off").0.vmx);
        assert!(Config::parse_all("vmx=on").0.vmx);
        assert_eq!(
            messages("log_defer=yes"),
            ["boot: log_defer=yes is not on|off; lines stay deferred"]
        );
        assert_eq!(
            messages("log_defer"),
            ["boot: log_defer= is not on|off; lines stay deferred"]
        );
    }

    #[test]
    fn every_accepted_value_of_log_on_done_and_the_switches() {
        use log::LevelFilter as L;
        for (value, level) in [
            ("error", L::Error),
            ("warn", L::Warn),
            ("info", L::Info),
            ("debug", L::Debug),
            ("trace", L::Trace),
        ] {
            let line = format!("log=debug log={value}");
            let (c, w) = Config::parse_all(&line);
            assert_eq!((c.log_level, w.len()), (level, 0), "log={value}");
        }
        for (value, action) in [
            ("halt", OnDone::Halt),
            ("exit", OnDone::Exit),
            ("reboot", OnDone::Reboot),
        ] {
            let line = format!("on_done=exit on_done={value}");
            let (c, w) = Config::parse_all(&line);
            assert_eq!((c.on_done, w.len()), (action, 0), "on_done={value}");
        }
        assert_eq!(parse_switch("on"), Some(true));
        assert_eq!(parse_switch("off"), Some(false));
        assert_eq!(parse_switch("On"), None);
        assert!(Config::parse_all("guest=off guest=on").0.guest);
    }

    #[test]
    fn later_words_override_and_flags_have_empty_values() {
        let (c, w) = Config::parse_all("log=debug  smp=4 quiet log=warn");
        assert_eq!(c.log_level, log::LevelFilter::Warn);
        assert_eq!(c.bringup.max_cpus, Some(4));
        assert_eq!(w, [Warning::UnknownKey("quiet")]);
        // A bad value overridden by a good one is not reported; the last value counts.
        assert!(Config::parse_all("log=loud log=debug").1.is_empty());
        assert_eq!(
            messages("log=debug log"),
            ["boot: log= is not a level (error|warn|info|debug|trace); using info"]
        );
    }

    #[test]
    fn values_are_validated() {
        assert_eq!(Config::parse_all("").0.on_done, OnDone::Halt);
        assert_eq!(Config::parse_all("on_done=exit").0.on_done, OnDone::Exit);
        assert_eq!(
            Config::parse_all("on_done=reboot").0.on_done,
            OnDone::Reboot
        );
        assert_eq!(
            messages("on_done=explode"),
            ["boot: on_done=explode is not one of halt|exit|reboot; using halt"]
        );
        assert_eq!(
            Config::parse_all("log=debug").0.log_level,
            log::LevelFilter::Debug
        );
        assert_eq!(
            messages("log=loud"),
            ["boot: log=loud is not a level (error|warn|info|debug|trace); using info"]
        );
        assert_eq!(Fault::parse("pf"), Some(Fault::PageFault));
        assert_eq!(Fault::parse("nope"), None);
        assert_eq!(Fault::parse("vmx_locked_off"), Some(Fault::VmxLockedOff));
        assert_eq!(Fault::VmxLockedOff.word(), "vmx_locked_off");
        for (word, fault) in FAULT_WORDS {
            assert_eq!(Fault::parse(word).map(Fault::word), Some(word), "{fault:?}");
        }
        let target = |c: &str| Config::parse_all(c).0.fault;
        assert_eq!(
            target("fault=ap_hang fault_cpu=3"),
            Some(FaultTarget {
                fault: Fault::ApHang,
                cpu: 3
            })
        );
        assert_eq!(
            target("fault=ud"),
            Some(FaultTarget {
                fault: Fault::InvalidOpcode,
                cpu: 0
            })
        );
        assert_eq!(
            target("fault=ud fault_cpu=x"),
            Some(FaultTarget {
                fault: Fault::InvalidOpcode,
                cpu: 0
            })
        );
        assert_eq!(target("fault_cpu=2"), None);
        assert_eq!(
            target("fault=ud_after_vmx fault_cpu=2"),
            Some(FaultTarget {
                fault: Fault::InvalidOpcodeAfterVmx,
                cpu: 2
            })
        );
        assert_eq!(
            Config::parse_all("fault=pf fault_cpu=2").0.fault_on(2),
            Some(Fault::PageFault)
        );
        assert_eq!(
            Config::parse_all("fault=pf fault_cpu=2").0.fault_on(0),
            None
        );
    }

    #[test]
    fn faults_that_cannot_be_armed_are_reported() {
        assert_eq!(
            messages("fault=no_memory fault_cpu=1"),
            ["boot: fault=no_memory acts on the BSP only; fault_cpu=1 ignored"]
        );
        assert_eq!(
            Config::parse_all("fault=no_memory fault_cpu=1").0.fault,
            None
        );
        assert_eq!(
            Config::parse_all("fault=no_memory").0.fault,
            Some(FaultTarget {
                fault: Fault::NoMemory,
                cpu: 0
            })
        );
        // The BSP has no early AP window: aimed at it (explicitly, by default or by a malformed fault_cpu),
        // early_ap_ud would do nothing, so it is refused with a warning instead of silently.
        for cmdline in [
            "fault=early_ap_ud",
            "fault=early_ap_ud fault_cpu=0",
            "fault=early_ap_ud fault_cpu=x",
        ] {
            assert_eq!(
                messages(cmdline),
                ["boot: fault=early_ap_ud acts on an AP only (fault_cpu=1 or higher); ignored on cpu 0"],
                "{cmdline}"
            );
            assert_eq!(Config::parse_all(cmdline).0.fault, None, "{cmdline}");
        }
        // vmx_caps_mismatch compares an AP with the BSP: aimed at the BSP it is refused the same way.
        assert_eq!(
            messages("fault=vmx_caps_mismatch fault_cpu=0"),
            ["boot: fault=vmx_caps_mismatch acts on an AP only (fault_cpu=1 or higher); ignored on cpu 0"]
        );
        assert_eq!(Config::parse_all("fault=vmx_caps_mismatch").0.fault, None);
        assert_eq!(
            Config::parse_all("fault=early_ap_ud fault_cpu=1"),
            (
                Config {
                    fault: Some(FaultTarget {
                        fault: Fault::EarlyApInvalidOpcode,
                        cpu: 1
                    }),
                    ..Config::default()
                },
                vec![]
            )
        );
        assert_eq!(
            messages("fault=explode"),
            ["boot: fault=explode is not a known fault (docs/serial-log.md); ignored"]
        );
    }

    #[test]
    fn guest_words() {
        let c = Config::default();
        assert!(c.guest && c.guest_loops == 0);
        let (c, w) = Config::parse_all("guest=off guest_loops=1000");
        assert!(!c.guest && c.guest_loops == 1000 && w.is_empty());
        let (c, w) = Config::parse_all("guest=maybe guest_loops=1000001");
        assert!(c.guest && c.guest_loops == 0);
        assert_eq!(w, [Warning::Guest("maybe"), Warning::GuestLoops("1000001")]);
        assert_eq!(
            messages("guest=no guest_loops=-1"),
            [
                "vmx: guest=no is not on|off; the guest stays on",
                "vmx: guest_loops=-1 is not a number up to 1000000; using 0"
            ]
        );
        let (c, _) = Config::parse_all("fault=guest_ept fault_cpu=2");
        assert_eq!(
            c.fault,
            Some(FaultTarget {
                fault: Fault::GuestEpt,
                cpu: 2
            })
        );
    }

    #[test]
    fn log_per_core_max_is_a_count() {
        assert_eq!(Config::default().log_per_core_max, 64);
        let (c, w) = Config::parse_all("log_per_core_max=0");
        assert_eq!(c.log_per_core_max, 0);
        assert!(w.is_empty());
        assert_eq!(
            Config::parse_all("log_per_core_max=2 log_per_core_max=4096")
                .0
                .log_per_core_max,
            4096
        );
        for bad in [
            "log_per_core_max=-1",
            "log_per_core_max=many",
            "log_per_core_max",
        ] {
            let (c, w) = Config::parse_all(bad);
            assert_eq!(c.log_per_core_max, 64, "{bad}");
            assert_eq!(w.len(), 1, "{bad}");
        }
        assert_eq!(
            messages("log_per_core_max=x"),
            ["boot: log_per_core_max=x is not a core count; using 64"]
        );
    }

    #[test]
    fn acpi_checksum_words() {
        assert_eq!(Config::default().acpi_checksum, ChecksumPolicy::Warn);
        let (c, w) = Config::parse_all("acpi_checksum=strict");
        assert_eq!(c.acpi_checksum, ChecksumPolicy::Strict);
        assert!(w.is_empty());
        let (c, w) = Config::parse_all("acpi_checksum=strict acpi_checksum=warn");
        assert_eq!(c.acpi_checksum, ChecksumPolicy::Warn);
        assert!(w.is_empty());
        let (c, w) = Config::parse_all("acpi_checksum=off");
        assert_eq!(c.acpi_checksum, ChecksumPolicy::Warn);
        assert_eq!(w, [Warning::AcpiChecksum("off")]);
        assert_eq!(w[0].target(), "acpi");
        assert_eq!(
            messages("acpi_checksum=off"),
            ["acpi: acpi_checksum=off is not warn|strict; using warn"]
        );
    }

    #[test]
    fn vmx_words() {
        let (c, w) = Config::parse_all("selftest=vmx");
        assert!(c.selftest && c.vmx && w.is_empty());
        assert_eq!(
            messages("vmx=maybe selftest=all"),
            [
                "vmx: vmx=maybe is not on|off; VMX stays on",
                "vmx: selftest=all is unknown (only selftest=vmx exists)"
            ]
        );
    }

    #[test]
    fn bringup_words_go_to_the_smp_crate_and_each_bad_one_is_reported() {
        let (c, w) =
            Config::parse_all("ap_start=serial init_delay_us=500 smp=0 smp=2 on_done=exit");
        assert_eq!(c.bringup.mode, StartMode::Serial);
        assert_eq!(c.bringup.init_delay_us, 500);
        assert_eq!(c.bringup.max_cpus, Some(2));
        assert_eq!(c.on_done, OnDone::Exit);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].target(), "smp");
        assert_eq!(
            w[0].to_string(),
            "invalid smp=\"0\": expected a CPU count >= 1; using the default for it"
        );
        // A known key without a value is neither unknown nor a bad bring-up word.
        assert!(Config::parse_all("smp").1.is_empty());
    }

    #[test]
    fn warnings_come_in_the_documented_order() {
        assert_eq!(
            messages(
                "smp=0 selftest=x vmx=x fault=x b log_defer=x a on_done=x log_per_core_max=x log=x"
            ),
            [
                "boot: log=x is not a level (error|warn|info|debug|trace); using info",
                "boot: on_done=x is not one of halt|exit|reboot; using halt",
                "boot: log_defer=x is not on|off; lines stay deferred",
                "boot: log_per_core_max=x is not a core count; using 64",
                "boot: unknown command-line key 'b' ignored",
                "boot: unknown command-line key 'a' ignored",
                "boot: fault=x is not a known fault (docs/serial-log.md); ignored",
                "vmx: vmx=x is not on|off; VMX stays on",
                "vmx: selftest=x is unknown (only selftest=vmx exists)",
                "smp: invalid smp=\"0\": expected a CPU count >= 1; using the default for it",
            ]
        );
    }

    #[test]
    fn every_key_is_listed_once() {
        let mut keys: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), KEYS.len());
        let last = KEYS
            .iter()
            .filter(|(_, kind)| matches!(kind, Kind::Last(_)))
            .count();
        assert_eq!(last, LAST_KEYS);
    }
}
