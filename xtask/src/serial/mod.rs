//! The one parser of the serial log (the contract in `docs/serial-log.md`).
//!
//! This module reads a line's frame (`[SSSSS.UUUUUU] cpu<N> <LEVEL> <module>: <message>`, or a `boot32: `
//! line) into a [`LogLine`]; [`lines`] reads the documented messages (summary, `smp: pcb`, `acpi: madt:`,
//! `vmx: root`, `vmx: guest`, `hypervisor: phases`, `smp: timing`, `memory: footprint`) into typed values. The runner, the
//! soak, the benchmark and the integration tests all read the log through these two, so a change to a line's
//! format changes this module and its tests.
//!
//! Everything here is pure: it works on text, so it is unit-tested on the host.

pub mod lines;
pub mod per_core;

use std::fmt;

pub use lines::{
    key_values, Documented, Footprint, MadtEntry, Pcb, Phases, Spread, Summary, Timing, Verdict,
    VmxGuest, VmxRoot, MADT_STATES,
};
pub use per_core::{
    budget_problems, core_pcbs, guest_ok_apic_ids, is_compact, madt_entries, vmx_root_apic_ids,
    LogSize, MadtRun, PcbRun, VmxGuestRun, VmxRootRun, LOG_BYTES_MAX, LOG_LINES_MAX,
};

/// A `log` crate level as printed in the level column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl Level {
    pub const ALL: [Level; 5] = [
        Level::Error,
        Level::Warn,
        Level::Info,
        Level::Debug,
        Level::Trace,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        }
    }
}

impl fmt::Display for Level {
    /// The level's name; a width pads it (`{:<5}` is the level column).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Why a line does not follow the contract: what is wrong, and the line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    pub why: String,
    pub line: String,
}

impl LineError {
    pub fn new(why: impl Into<String>, line: &str) -> LineError {
        LineError {
            why: why.into(),
            line: line.to_string(),
        }
    }
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {:?}", self.why, self.line)
    }
}

impl std::error::Error for LineError {}

/// One parsed serial line.
///
/// Regular lines have every field. Lines printed by the 32-bit entry code before the logger exists
/// (`boot32: ...`) have no timestamp, CPU or level: they parse with `module == "boot32"` and the
/// `Option` fields set to `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// Microseconds since the BSP's entry.
    pub ts_us: Option<u64>,
    pub cpu: Option<u32>,
    pub level: Option<Level>,
    /// Module path without the trailing `:` (`boot`, `smp::bringup`, `boot32`, ...).
    pub module: String,
    pub message: String,
}

impl LogLine {
    /// Parses one line (without its line ending; a trailing `\r` is ignored) as it reached the port.
    ///
    /// Leading noise before the timestamp (firmware output or terminal escape sequences left on the same
    /// line) is skipped; from the timestamp on the line must follow the contract (see [`LogLine::parse_strict`]).
    /// Returns `None` for lines that do not follow the format.
    pub fn parse(line: &str) -> Option<LogLine> {
        let line = line.trim_end_matches(['\r', '\n']);
        let clean = strip_ansi(line);
        let text = clean.as_str();
        // A line may start with noise; try every '[' as the start of the timestamp.
        for (i, _) in text.match_indices('[') {
            if let Ok(parsed) = frame(&text[i..]) {
                return Some(parsed);
            }
        }
        if let Some(i) = text.find("boot32: ") {
            return Some(LogLine {
                ts_us: None,
                cpu: None,
                level: None,
                module: "boot32".to_string(),
                message: text[i + "boot32: ".len()..].trim_end().to_string(),
            });
        }
        None
    }

    /// Parses a kernel line that must follow docs/serial-log.md exactly, from its first byte:
    /// `[SSSSS.UUUUUU] cpu<N> <LEVEL> <module>: <message>` with the seconds right-aligned in 5 columns,
    /// `cpu<N>` padded to 5, the level padded to 5, a short lowercase module name, no control character,
    /// and no second line run into it (a lost line break).
    pub fn parse_strict(line: &str) -> Result<LogLine, LineError> {
        let parsed = frame(line)?;
        if line.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err(LineError::new("control character in the line", line));
        }
        // Another line's start inside this one: two lines ran together.
        if line
            .match_indices('[')
            .skip(1)
            .any(|(i, _)| frame(&line[i..]).is_ok())
        {
            return Err(LineError::new("two lines run together", line));
        }
        Ok(parsed)
    }

    /// `key=value` words of the message, in order.
    pub fn fields(&self) -> Vec<(&str, &str)> {
        key_values(&self.message)
    }

    /// The value of `key=` in the message (quotes around the value are removed).
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields()
            .into_iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// True if this is a line of kind `T` (its module, and its message starts with `T`'s prefix).
    pub fn is<T: Documented>(&self) -> bool {
        self.module == T::MODULE && self.message.starts_with(T::PREFIX)
    }

    /// `Some` if this is a line of kind `T`: its typed value, or why it does not follow the contract.
    pub fn parse_as<T: Documented>(&self) -> Option<Result<T, LineError>> {
        self.is::<T>().then(|| T::from_line(self))
    }
}

/// The frame of a regular line, starting exactly at `[` (docs/serial-log.md, "Line format").
fn frame(line: &str) -> Result<LogLine, LineError> {
    let bad = |why: &str| Err(LineError::new(why, line));
    let Some(rest) = line.strip_prefix('[') else {
        return bad("does not start with '['");
    };
    let Some(close) = rest.find(']') else {
        return bad("no ']'");
    };
    let ts = &rest[..close];
    let Some((secs, micros)) = ts.split_once('.') else {
        return bad("timestamp without '.'");
    };
    if secs.len() < 5 || micros.len() != 6 {
        return bad("timestamp not [SSSSS.UUUUUU]");
    }
    let secs_t = secs.trim_start_matches(' ');
    if secs_t.is_empty()
        || !secs_t.bytes().all(|b| b.is_ascii_digit())
        || !micros.bytes().all(|b| b.is_ascii_digit())
    {
        return bad("timestamp not numeric");
    }
    let Some(ts_us) = secs_t
        .parse::<u64>()
        .ok()
        .and_then(|s| s.checked_mul(1_000_000))
        .and_then(|s| s.checked_add(micros.parse::<u64>().ok()?))
    else {
        return bad("timestamp not numeric");
    };
    let Some(rest) = rest[close + 1..].strip_prefix(' ') else {
        return bad("no space after the timestamp");
    };
    let Some(after_cpu) = rest.strip_prefix("cpu") else {
        return bad("no cpu<N> field");
    };
    let digits = after_cpu.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return bad("cpu field without a number");
    }
    let Ok(cpu) = after_cpu[..digits].parse::<u32>() else {
        return bad("cpu number");
    };
    let pad = 5usize.saturating_sub(3 + digits) + 1;
    let after = &after_cpu[digits..];
    if after.len() < pad || !after[..pad].bytes().all(|b| b == b' ') {
        return bad("cpu field not padded to 5");
    }
    let after = &after[pad..];
    let Some(level) = after
        .get(..6)
        .and_then(|w| w.strip_suffix(' '))
        .and_then(|w| Level::ALL.into_iter().find(|l| format!("{l:<5}") == w))
    else {
        return bad("level not one of ERROR/WARN /INFO /DEBUG/TRACE padded to 5");
    };
    let rest = &after[6..];
    let Some(colon) = rest
        .find(": ")
        .or_else(|| rest.strip_suffix(':').map(|r| r.len()))
    else {
        return bad("no 'module: '");
    };
    let module = &rest[..colon];
    if module.is_empty()
        || !module
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b':')
    {
        return bad("module is not a short lowercase name");
    }
    let message = rest[colon + 1..]
        .strip_prefix(' ')
        .unwrap_or(&rest[colon + 1..]);
    Ok(LogLine {
        ts_us: Some(ts_us),
        cpu: Some(cpu),
        level: Some(level),
        module: module.to_string(),
        message: message.trim_end().to_string(),
    })
}

/// Removes ANSI/VT100 escape sequences (`ESC [ ... final`, `ESC c`, ...) and other control characters
/// except tab, which firmware consoles sometimes leave on the serial line.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            match chars.peek() {
                Some('[') => {
                    chars.next();
                    // Parameters and intermediates, then one final byte in 0x40..=0x7e.
                    for c in chars.by_ref() {
                        if ('\u{40}'..='\u{7e}').contains(&c) {
                            break;
                        }
                    }
                }
                Some(_) => {
                    chars.next();
                }
                None => {}
            }
        } else if c == '\t' || !c.is_control() {
            out.push(c);
        }
    }
    out
}

/// Parses every line of a log that follows the format.
pub fn parse_log(log: &str) -> Vec<LogLine> {
    log.lines().filter_map(LogLine::parse).collect()
}

/// Every line of kind `T` among `lines`, typed, in log order; the first that does not follow the contract
/// is the error.
pub fn all_of<T: Documented>(lines: &[LogLine]) -> Result<Vec<T>, LineError> {
    lines.iter().filter_map(LogLine::parse_as::<T>).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_regular_line() {
        let l = LogLine::parse(
            "[    0.001234] cpu0  INFO  boot: loader=pvh cmdline=\"log=debug on_done=exit\"\r",
        )
        .unwrap();
        assert_eq!(l.ts_us, Some(1234));
        assert_eq!(l.cpu, Some(0));
        assert_eq!(l.level, Some(Level::Info));
        assert_eq!(l.module, "boot");
        assert_eq!(l.message, "loader=pvh cmdline=\"log=debug on_done=exit\"");
        assert_eq!(l.field("loader"), Some("pvh"));
        assert_eq!(l.field("cmdline"), Some("log=debug on_done=exit"));
    }

    #[test]
    fn parses_module_paths_levels_and_big_timestamps() {
        let l = LogLine::parse("[12345.000007] cpu13 WARN  smp::bringup: ap 3 late").unwrap();
        assert_eq!(l.ts_us, Some(12_345_000_007));
        assert_eq!(l.cpu, Some(13));
        assert_eq!(l.level, Some(Level::Warn));
        assert_eq!(l.module, "smp::bringup");
        assert_eq!(l.message, "ap 3 late");
        let l = LogLine::parse("[    1.000000] cpu2  DEBUG hypervisor::vmx:").unwrap();
        assert_eq!(l.module, "hypervisor::vmx");
        assert_eq!(l.message, "");
        let l = LogLine::parse("[    1.000000] cpu2  TRACE a: x: y").unwrap();
        assert_eq!(l.module, "a");
        assert_eq!(l.message, "x: y");
        let l = LogLine::parse("[    0.000001] cpu127 ERROR fault: x").unwrap();
        assert_eq!((l.cpu, l.level), (Some(127), Some(Level::Error)));
    }

    #[test]
    fn skips_leading_noise() {
        let l =
            LogLine::parse("\u{1b}[2J\u{1b}[01;01H[    0.000001] cpu0  ERROR fault: exception=#UD")
                .unwrap();
        assert_eq!(l.module, "fault");
        assert_eq!(l.level, Some(Level::Error));
        let l = LogLine::parse("GRUB junk [x] [    0.000001] cpu0  INFO  boot: ok").unwrap();
        assert_eq!(l.message, "ok");
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "hello",
            "[0.1] cpu0  INFO  boot: x",
            "[    0.000001] cp0  INFO  boot: x",
            "[    0.000001] cpu0  LOUD  boot: x",
            "[    0.000001] cpu0  INFO  no colon here",
            "[    0.000001] cpu0  INFO  : empty module",
            "[    0.000001] cpu0  INFO  my module: a space in the module name",
            "[    0.000001] cpu0  INFO   boot: a space before the module name",
            "[    0.000001] cpu0  INFO  boot : a space after the module name",
            "[    0.000001] cpu0 INFO  boot: x",
            "[    0.000001] cpu0  INFO boot: x",
            "[99999999999999999999.000001] cpu0  INFO  boot: x",
        ] {
            assert_eq!(LogLine::parse(s), None, "{s:?}");
        }
    }

    #[test]
    fn parses_boot32_lines() {
        let l = LogLine::parse("boot32: bad loader magic eax=0x2badb002\r").unwrap();
        assert_eq!(l.module, "boot32");
        assert_eq!(l.ts_us, None);
        assert_eq!(l.cpu, None);
        assert_eq!(l.level, None);
        assert_eq!(l.field("eax"), Some("0x2badb002"));
    }

    /// Noise before `boot32: ` (a firmware's escape sequences, a half line) is dropped, not kept in the message.
    #[test]
    fn parses_boot32_lines_after_noise() {
        let l = LogLine::parse("\u{1b}[2J\u{1b}[0mSeaBIOS boot32: no multiboot2 info").unwrap();
        assert_eq!(l.module, "boot32");
        assert_eq!(l.message, "no multiboot2 info");
    }

    #[test]
    fn strips_escapes() {
        assert_eq!(strip_ansi("\u{1b}[0;37;40mA\u{1b}cB\u{7}C"), "ABC");
    }

    #[test]
    fn strict_line_format() {
        for good in [
            "[    0.013243] cpu0  DEBUG memory: frame allocator: 510 MiB free",
            "[    1.000000] cpu13 WARN  smp::bringup: late",
            "[12345.000007] cpu127 INFO  smp: pcb cpu=127",
            "[    0.000001] cpu2  INFO  hypervisor:",
            // Digits and underscores are part of a module name.
            "[    0.000001] cpu0  INFO  acpi_tables2: x",
        ] {
            assert!(LogLine::parse_strict(good).is_ok(), "{good}");
        }
        let l = LogLine::parse_strict("[    1.000002] cpu3  INFO  a: b").unwrap();
        assert_eq!((l.ts_us, l.cpu), (Some(1_000_002), Some(3)));
        for (bad, why) in [
            (
                "x[    0.013243] cpu0  INFO  boot: x",
                "does not start with '['",
            ),
            ("[ 0.013243] cpu0  INFO  boot: x", "timestamp not"),
            ("[    0.01324] cpu0  INFO  boot: x", "timestamp not"),
            ("[    0.013243] cpu0 INFO  boot: x", "cpu field not padded"),
            ("[    0.013243] cpu0  INFO boot: x", "level not one of"),
            ("[    0.013243] cpu0  LOUD  boot: x", "level not one of"),
            ("[    0.013243] cpu0  INFO  Boot: x", "module is not"),
            ("[    0.013243] cpu0  INFO  my module: x", "module is not"),
            ("[    0.013243] cpu0  INFO  boot-x: x", "module is not"),
            ("[    0.013243] cpu0  INFO  no colon", "no 'module: '"),
            (
                "[    0.013243] cpu0  INFO  boot: x\u{7}",
                "control character",
            ),
            (
                "[    0.013243] cpu0  INFO  boot: x[    0.013244] cpu1  INFO  smp: y",
                "two lines run together",
            ),
            ("[    0.013243]cpu0  INFO  boot: x", "no space after"),
            // A sign parses as a number (`"+1".parse::<u64>()`), but the contract has digits only.
            (
                "[ +123.013243] cpu0  INFO  boot: x",
                "timestamp not numeric",
            ),
            (
                "[    0.+13243] cpu0  INFO  boot: x",
                "timestamp not numeric",
            ),
            (
                "[     .013243] cpu0  INFO  boot: x",
                "timestamp not numeric",
            ),
            ("[    0.013243] cpux  INFO  boot: x", "cpu field without"),
            // The line ends inside the cpu column's padding, or right after it.
            ("[    0.013243] cpu0 ", "cpu field not padded"),
            ("[    0.013243] cpu0  ", "level not one of"),
        ] {
            let e = LogLine::parse_strict(bad).unwrap_err();
            assert!(e.why.starts_with(why), "{bad:?}: {e}");
            assert_eq!(e.to_string(), format!("{}: {bad:?}", e.why));
        }
    }
}
