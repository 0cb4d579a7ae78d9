//! Parsing of the serial log (the contract in `docs/serial-log.md`).
//!
//! Every function here is pure: it works on text, so it is unit-tested on the host.

use std::fmt;

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
    /// Parses the (trimmed) level column.
    pub fn parse(word: &str) -> Option<Level> {
        match word.trim() {
            "ERROR" => Some(Level::Error),
            "WARN" => Some(Level::Warn),
            "INFO" => Some(Level::Info),
            "DEBUG" => Some(Level::Debug),
            "TRACE" => Some(Level::Trace),
            _ => None,
        }
    }

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
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    /// Parses one line (without its line ending; a trailing `\r` is ignored).
    ///
    /// Leading noise before the timestamp (firmware output or terminal escape sequences left on the same
    /// line) is skipped. Returns `None` for lines that do not follow the format.
    pub fn parse(line: &str) -> Option<LogLine> {
        let line = line.trim_end_matches(['\r', '\n']);
        let clean = strip_ansi(line);
        let text = clean.as_str();
        // A line may start with noise; try every '[' as the start of the timestamp.
        for (i, _) in text.match_indices('[') {
            if let Some(parsed) = parse_regular(&text[i..]) {
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
}

/// Parses `[SSSSS.UUUUUU] cpuN  LEVEL module: message` starting exactly at `[`.
fn parse_regular(s: &str) -> Option<LogLine> {
    let rest = s.strip_prefix('[')?;
    let close = rest.find(']')?;
    let ts = rest[..close].trim();
    let (secs, micros) = ts.split_once('.')?;
    if micros.len() != 6 || !micros.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = secs.parse().ok()?;
    let micros: u64 = micros.parse().ok()?;
    let rest = rest[close + 1..].trim_start();

    let (cpu_word, rest) = split_word(rest)?;
    let cpu: u32 = cpu_word.strip_prefix("cpu")?.parse().ok()?;
    let (level_word, rest) = split_word(rest)?;
    let level = Level::parse(level_word)?;

    // The module ends at the first ':' that is not part of a "::" path separator.
    let bytes = rest.as_bytes();
    let mut end = None;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b':' {
            if bytes.get(i + 1) == Some(&b':') {
                i += 2;
                continue;
            }
            end = Some(i);
            break;
        }
        if bytes[i] == b' ' {
            return None;
        }
        i += 1;
    }
    let end = end?;
    let module = &rest[..end];
    if module.is_empty() {
        return None;
    }
    let message = rest[end + 1..]
        .strip_prefix(' ')
        .unwrap_or(&rest[end + 1..]);
    Some(LogLine {
        ts_us: Some(secs.checked_mul(1_000_000)?.checked_add(micros)?),
        cpu: Some(cpu),
        level: Some(level),
        module: module.to_string(),
        message: message.trim_end().to_string(),
    })
}

fn split_word(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start();
    if s.is_empty() {
        return None;
    }
    match s.find(' ') {
        Some(i) => Some((&s[..i], s[i..].trim_start())),
        None => Some((s, "")),
    }
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

/// Splits a message into `key=value` words. Values may be double-quoted (`cmdline="a b"`); the quotes
/// are not part of the value. Words without `=` are skipped.
pub fn key_values(message: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let bytes = message.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        let start = i;
        while i < bytes.len() && bytes[i] != b' ' && bytes[i] != b'=' {
            i += 1;
        }
        if i >= bytes.len() || bytes[i] != b'=' {
            // A word without '=': skip to the next space.
            while i < bytes.len() && bytes[i] != b' ' {
                i += 1;
            }
            continue;
        }
        let key = &message[start..i];
        i += 1; // '='
        let value;
        if bytes.get(i) == Some(&b'"') {
            let vstart = i + 1;
            let vend = message[vstart..]
                .find('"')
                .map_or(message.len(), |p| vstart + p);
            value = &message[vstart..vend];
            i = (vend + 1).min(bytes.len());
        } else {
            let vstart = i;
            while i < bytes.len() && bytes[i] != b' ' {
                i += 1;
            }
            value = &message[vstart..i];
        }
        if !key.is_empty() {
            out.push((key, value));
        }
    }
    out
}

/// The verdict of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Fail,
    Degraded,
}

impl Verdict {
    pub fn parse(s: &str) -> Option<Verdict> {
        match s {
            "ok" => Some(Verdict::Ok),
            "fail" => Some(Verdict::Fail),
            "degraded" => Some(Verdict::Degraded),
            _ => None,
        }
    }

    /// The value the kernel writes to the isa-debug-exit port for this verdict.
    pub fn debug_exit_value(self) -> u8 {
        match self {
            Verdict::Ok => 0x10,
            Verdict::Fail => 0x11,
            Verdict::Degraded => 0x12,
        }
    }

    /// QEMU's exit status after the kernel wrote [`Verdict::debug_exit_value`]: `(v << 1) | 1`.
    pub fn qemu_exit_status(self) -> i32 {
        (i32::from(self.debug_exit_value()) << 1) | 1
    }

    /// The verdict a QEMU exit status stands for, if it is one of 33/35/37.
    pub fn from_qemu_exit_status(code: i32) -> Option<Verdict> {
        [Verdict::Ok, Verdict::Fail, Verdict::Degraded]
            .into_iter()
            .find(|v| v.qemu_exit_status() == code)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Ok => "ok",
            Verdict::Fail => "fail",
            Verdict::Degraded => "degraded",
        })
    }
}

/// The `summary:` line's `key=value` pairs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub pairs: Vec<(String, String)>,
    /// The whole serial line it was parsed from.
    pub line: String,
}

impl Summary {
    /// Parses a serial line whose message starts with `summary: ` (any module), or whose module is
    /// `summary`.
    pub fn parse_line(line: &str) -> Option<Summary> {
        let parsed = LogLine::parse(line)?;
        let body = if parsed.module == "summary" {
            parsed.message.as_str()
        } else {
            parsed.message.strip_prefix("summary:")?
        };
        let pairs = key_values(body)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Some(Summary {
            pairs,
            line: line.trim_end_matches(['\r', '\n']).to_string(),
        })
    }

    /// Finds the first summary line in a whole log.
    pub fn find_in(log: &str) -> Option<Summary> {
        log.lines().find_map(Summary::parse_line)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A numeric value.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key)?.parse().ok()
    }

    /// The parsed `verdict=`; `None` if absent or not one of ok/fail/degraded.
    pub fn verdict(&self) -> Option<Verdict> {
        Verdict::parse(self.get("verdict")?)
    }
}

/// Parses every line of a log that follows the format.
pub fn parse_log(log: &str) -> Vec<LogLine> {
    log.lines().filter_map(LogLine::parse).collect()
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

    #[test]
    fn summary_parsing() {
        let log = "noise\n[    0.5] cpu0 INFO boot: x\n\
                   [    0.001834] cpu0  INFO  hypervisor: summary: cpus=1 online=1 failed=0 vmx_root=0 verdict=ok boot_us=1834 reason=none new_key=7\r\n\
                   [    0.001900] cpu0  INFO  hypervisor: summary: verdict=fail\r\n";
        let s = Summary::find_in(log).unwrap();
        assert_eq!(s.get("verdict"), Some("ok"));
        assert_eq!(s.verdict(), Some(Verdict::Ok));
        assert_eq!(s.get_u64("boot_us"), Some(1834));
        assert_eq!(s.get("new_key"), Some("7"));
        assert_eq!(s.get("missing"), None);
        assert!(s.line.ends_with("new_key=7"));
        assert_eq!(
            Summary::find_in("[    0.000001] cpu0  INFO  boot: summary? no"),
            None
        );
        assert_eq!(
            Summary::find_in("[    0.000001] cpu0  INFO  boot: a summary: no"),
            None
        );
        let s = Summary::parse_line("[    0.000001] cpu0  INFO  summary: verdict=bogus").unwrap();
        assert_eq!(s.verdict(), None);
        assert_eq!(s.get("verdict"), Some("bogus"));
    }

    #[test]
    fn key_value_splitting() {
        assert_eq!(
            key_values("a=1 word b=\"x y\" c= d=4"),
            vec![("a", "1"), ("b", "x y"), ("c", ""), ("d", "4")]
        );
        assert_eq!(key_values("k=\"unterminated"), vec![("k", "unterminated")]);
        assert_eq!(key_values(""), vec![]);
    }

    #[test]
    fn verdict_exit_codes() {
        assert_eq!(Verdict::Ok.qemu_exit_status(), 33);
        assert_eq!(Verdict::Fail.qemu_exit_status(), 35);
        assert_eq!(Verdict::Degraded.qemu_exit_status(), 37);
        assert_eq!(Verdict::from_qemu_exit_status(35), Some(Verdict::Fail));
        assert_eq!(Verdict::from_qemu_exit_status(0), None);
    }

    #[test]
    fn strips_escapes() {
        assert_eq!(strip_ansi("\u{1b}[0;37;40mA\u{1b}cB\u{7}C"), "ABC");
    }
}
