//! The kernel command line: space-separated `key=value` words (docs/serial-log.md, "Kernel command line").

/// Every key some stage reads; anything else gets a warning.
pub const KNOWN_KEYS: &[&str] = &[
    "log",
    "on_done",
    "fault",
    "fault_cpu",
    "smp",
    "ap_start",
    "init_delay_us",
    "sipi_delay_us",
    "ap_timeout_us",
    "vmx",
    "selftest",
    "log_defer",
    "acpi_checksum",
];

#[derive(Clone, Copy)]
pub struct Cmdline<'a>(pub &'a str);

impl<'a> Cmdline<'a> {
    pub fn words(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.0
            .split_ascii_whitespace()
            .map(|w| w.split_once('=').unwrap_or((w, "")))
    }

    /// The last value given for `key` (a later word overrides an earlier one, as on Linux).
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.words()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .last()
    }

    pub fn unknown_keys(&self) -> impl Iterator<Item = &'a str> {
        self.words()
            .map(|(k, _)| k)
            .filter(|k| !KNOWN_KEYS.contains(k))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnDone {
    Halt,
    Exit,
    Reboot,
}

impl OnDone {
    pub fn parse(value: Option<&str>) -> Result<Self, &str> {
        match value {
            None | Some("halt") => Ok(OnDone::Halt),
            Some("exit") => Ok(OnDone::Exit),
            Some("reboot") => Ok(OnDone::Reboot),
            Some(other) => Err(other),
        }
    }
}

pub fn parse_level(value: Option<&str>) -> Result<log::LevelFilter, &str> {
    match value {
        None | Some("info") => Ok(log::LevelFilter::Info),
        Some("error") => Ok(log::LevelFilter::Error),
        Some("warn") => Ok(log::LevelFilter::Warn),
        Some("debug") => Ok(log::LevelFilter::Debug),
        Some("trace") => Ok(log::LevelFilter::Trace),
        Some(other) => Err(other),
    }
}

/// An `on|off` value; `default` when the key is absent.
pub fn parse_switch(value: Option<&str>, default: bool) -> Result<bool, &str> {
    match value {
        None => Ok(default),
        Some("on") => Ok(true),
        Some("off") => Ok(false),
        Some(other) => Err(other),
    }
}

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
}

/// Where a deliberate fault happens: `fault_cpu=<logical index>` (default 0, the BSP).
pub fn fault_target(args: Cmdline) -> Option<(Fault, u32)> {
    let fault = Fault::parse(args.get("fault")?)?;
    let cpu = args
        .get("fault_cpu")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some((fault, cpu))
}

const FAULT_WORDS: [(&str, Fault); 9] = [
    ("ud", Fault::InvalidOpcode),
    ("pf", Fault::PageFault),
    ("gp", Fault::GeneralProtection),
    ("de", Fault::DivideError),
    ("panic", Fault::Panic),
    ("stack_overflow", Fault::StackOverflow),
    ("ap_hang", Fault::ApHang),
    ("panic_during_bringup", Fault::PanicDuringBringup),
    ("no_memory", Fault::NoMemory),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_are_on_or_off() {
        assert_eq!(parse_switch(None, true), Ok(true));
        assert_eq!(parse_switch(None, false), Ok(false));
        assert_eq!(parse_switch(Some("on"), false), Ok(true));
        assert_eq!(parse_switch(Some("off"), true), Ok(false));
        assert_eq!(parse_switch(Some("yes"), true), Err("yes"));
        assert_eq!(parse_switch(Some(""), true), Err(""));
    }

    #[test]
    fn later_words_override_and_flags_have_empty_values() {
        let c = Cmdline("log=debug  smp=4 quiet log=warn");
        assert_eq!(c.get("log"), Some("warn"));
        assert_eq!(c.get("smp"), Some("4"));
        assert_eq!(c.get("quiet"), Some(""));
        assert_eq!(c.get("vmx"), None);
        assert_eq!(c.unknown_keys().collect::<Vec<_>>(), ["quiet"]);
    }

    #[test]
    fn values_are_validated() {
        assert_eq!(OnDone::parse(None), Ok(OnDone::Halt));
        assert_eq!(OnDone::parse(Some("exit")), Ok(OnDone::Exit));
        assert_eq!(OnDone::parse(Some("explode")), Err("explode"));
        assert_eq!(parse_level(Some("debug")), Ok(log::LevelFilter::Debug));
        assert_eq!(parse_level(Some("loud")), Err("loud"));
        assert_eq!(Fault::parse("pf"), Some(Fault::PageFault));
        assert_eq!(Fault::parse("nope"), None);
        for (word, fault) in FAULT_WORDS {
            assert_eq!(Fault::parse(word).map(Fault::word), Some(word), "{fault:?}");
        }
        assert_eq!(
            fault_target(Cmdline("fault=ap_hang fault_cpu=3")),
            Some((Fault::ApHang, 3))
        );
        assert_eq!(
            fault_target(Cmdline("fault=ud")),
            Some((Fault::InvalidOpcode, 0))
        );
        assert_eq!(
            fault_target(Cmdline("fault=ud fault_cpu=x")),
            Some((Fault::InvalidOpcode, 0))
        );
        assert_eq!(fault_target(Cmdline("fault_cpu=2")), None);
    }
}
