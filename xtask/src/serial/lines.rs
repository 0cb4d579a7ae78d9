//! The documented lines of the serial log, typed (docs/serial-log.md). Each kind is recognized by its
//! module and the start of its message ([`Documented`]); a line of that kind whose values do not follow
//! the contract is a [`LineError`], never a silently missing value.

use std::fmt;

use super::{LineError, LogLine};

/// A documented kind of line.
pub trait Documented: Sized {
    /// The module of lines of this kind.
    const MODULE: &'static str;
    /// How their message starts.
    const PREFIX: &'static str;
    /// Parses a line of this kind (its module and prefix already match).
    fn from_line(line: &LogLine) -> Result<Self, LineError>;
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
            // A word without '=' (the scan stopped at the space after it, or at the end).
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

/// `0x1234` or decimal.
pub fn parse_num(v: &str) -> Option<u64> {
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

/// Typed access to the `key=value` words of one line, with errors that name the key and the line.
pub(super) struct Fields<'a> {
    line: &'a LogLine,
    pub(super) pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> Fields<'a> {
    pub(super) fn of(line: &'a LogLine) -> Fields<'a> {
        Fields {
            line,
            pairs: key_values(&line.message),
        }
    }

    pub(super) fn error(&self, why: String) -> LineError {
        LineError::new(why, &format!("{}: {}", self.line.module, self.line.message))
    }

    /// The value of `key`, if the line has it.
    fn get(&self, key: &str) -> Option<&'a str> {
        self.pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    pub(super) fn text(&self, key: &str) -> Result<&'a str, LineError> {
        self.pairs
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .ok_or_else(|| self.error(format!("no {key}=")))
    }

    pub(super) fn num(&self, key: &str) -> Result<u64, LineError> {
        let v = self.text(key)?;
        parse_num(v).ok_or_else(|| self.error(format!("{key}={v} is not a number")))
    }

    pub(super) fn hex(&self, key: &str) -> Result<u64, LineError> {
        let v = self.text(key)?;
        hex(v).ok_or_else(|| self.error(format!("{key}={v} is not 0x<hex>")))
    }

    pub(super) fn small(&self, key: &str) -> Result<u32, LineError> {
        let n = self.num(key)?;
        u32::try_from(n).map_err(|_| self.error(format!("{key}={n} is out of range")))
    }

    /// A number, or `-` (the phase did not happen).
    fn num_or_dash(&self, key: &str) -> Result<Option<u64>, LineError> {
        match self.text(key)? {
            "-" => Ok(None),
            _ => self.num(key).map(Some),
        }
    }

    pub(super) fn one_of(&self, key: &str, allowed: &[&str]) -> Result<&'a str, LineError> {
        let v = self.text(key)?;
        if allowed.contains(&v) {
            Ok(v)
        } else {
            Err(self.error(format!("{key}={v} is not one of {}", allowed.join("|"))))
        }
    }

    /// `0x<a><sep>0x<b>`.
    pub(super) fn hex_pair(&self, key: &str, sep: &str) -> Result<(u64, u64), LineError> {
        let v = self.text(key)?;
        v.split_once(sep)
            .and_then(|(a, b)| Some((hex(a)?, hex(b)?)))
            .ok_or_else(|| self.error(format!("{key}={v} is not 0x<hex>{sep}0x<hex>")))
    }
}

fn hex(v: &str) -> Option<u64> {
    let digits = v.strip_prefix("0x")?;
    u64::from_str_radix(digits, 16).ok()
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

/// The `summary:` line's `key=value` pairs. Keys may be added to the contract, so every pair is kept and
/// unknown keys are not an error.
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

/// `smp: pcb cpu=<index> apic_id=<id> x2apic=<yes|no> stack=0x<bottom>-0x<top> guard=0x<guard page>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pcb {
    /// `cpu=` of the message.
    pub cpu: u32,
    /// The `cpu<N>` column: the core that logged the line.
    pub logged_by: Option<u32>,
    pub apic_id: u32,
    pub x2apic: bool,
    pub stack_bottom: u64,
    pub stack_top: u64,
    pub guard: u64,
}

impl Documented for Pcb {
    const MODULE: &'static str = "smp";
    const PREFIX: &'static str = "pcb cpu=";

    fn from_line(line: &LogLine) -> Result<Pcb, LineError> {
        let f = Fields::of(line);
        let (stack_bottom, stack_top) = f.hex_pair("stack", "-")?;
        Ok(Pcb {
            cpu: f.small("cpu")?,
            logged_by: line.cpu,
            apic_id: f.small("apic_id")?,
            x2apic: f.one_of("x2apic", &["yes", "no"])? == "yes",
            stack_bottom,
            stack_top,
            guard: f.hex("guard")?,
        })
    }
}

/// The states of an `acpi: madt: apic_id=` line.
pub const MADT_STATES: &[&str] = &[
    "usable",
    "hot-pluggable",
    "disabled",
    "duplicate",
    "over-limit",
    "invalid-id",
];

/// `acpi: madt: apic_id=<id> uid=<uid> entry=<xapic|x2apic> state=<state>`: one MADT processor entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MadtEntry {
    pub apic_id: u32,
    pub uid: u32,
    /// `xapic` or `x2apic`.
    pub entry: String,
    /// One of [`MADT_STATES`].
    pub state: String,
}

impl Documented for MadtEntry {
    const MODULE: &'static str = "acpi";
    const PREFIX: &'static str = "madt: apic_id=";

    fn from_line(line: &LogLine) -> Result<MadtEntry, LineError> {
        let f = Fields::of(line);
        Ok(MadtEntry {
            apic_id: f.small("apic_id")?,
            uid: f.small("uid")?,
            entry: f.one_of("entry", &["xapic", "x2apic"])?.to_string(),
            state: f.one_of("state", MADT_STATES)?.to_string(),
        })
    }
}

/// `vmx: root apic_id=<id> feature_control=0x<before>->0x<after> cr0=0x<hex> cr4=0x<hex> revision=0x<hex>
/// vmxon=0x<addr> vmcs=0x<addr>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmxRoot {
    /// The `cpu<N>` column: the core that logged the line.
    pub logged_by: Option<u32>,
    pub apic_id: u32,
    pub fc_before: u64,
    pub fc_after: u64,
    pub cr0: u64,
    pub cr4: u64,
    /// As printed (`0x2b`).
    pub revision: String,
    pub vmxon: u64,
    pub vmcs: u64,
}

impl Documented for VmxRoot {
    const MODULE: &'static str = "vmx";
    const PREFIX: &'static str = "root apic_id=";

    fn from_line(line: &LogLine) -> Result<VmxRoot, LineError> {
        let f = Fields::of(line);
        let (fc_before, fc_after) = f.hex_pair("feature_control", "->")?;
        f.hex("revision")?;
        Ok(VmxRoot {
            logged_by: line.cpu,
            apic_id: f.small("apic_id")?,
            fc_before,
            fc_after,
            cr0: f.hex("cr0")?,
            cr4: f.hex("cr4")?,
            revision: f.text("revision")?.to_string(),
            vmxon: f.hex("vmxon")?,
            vmcs: f.hex("vmcs")?,
        })
    }
}

/// `vmx: guest apic_id=<id> result=ok|fail exits=<n> cpuid=<n> hlt=<n> vmcall=<n> other=<n>
/// [loops=<n> round_trip_cycles=<n>] [ept=yes|no vpid=yes|no ...] bytes=<n> [error="<cause>"]`: one core's test
/// guest. The feature words are absent when the controls could not be chosen; `error` only with `fail`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmxGuest {
    /// The `cpu<N>` column: the core that logged the line.
    pub logged_by: Option<u32>,
    pub apic_id: u32,
    pub ok: bool,
    pub exits: u64,
    pub cpuid: u64,
    pub hlt: u64,
    pub vmcall: u64,
    pub other: u64,
    /// `round_trip_cycles=` with its `loops=`.
    pub round_trip: Option<(u64, u64)>,
    /// `ept=`, when the features are printed.
    pub ept: Option<bool>,
    pub bytes: u64,
    pub error: Option<String>,
}

impl Documented for VmxGuest {
    const MODULE: &'static str = "vmx";
    const PREFIX: &'static str = "guest apic_id=";

    fn from_line(line: &LogLine) -> Result<VmxGuest, LineError> {
        let f = Fields::of(line);
        let ok = f.one_of("result", &["ok", "fail"])? == "ok";
        let counts = ["exits", "cpuid", "hlt", "vmcall", "other"]
            .map(|k| f.num(k))
            .into_iter()
            .collect::<Result<Vec<u64>, _>>()?;
        if counts[0] != counts[1..].iter().sum::<u64>() {
            return Err(f.error(format!(
                "exits={} is not the sum of the per-reason counts",
                counts[0]
            )));
        }
        let round_trip = match f.get("round_trip_cycles") {
            Some(_) => Some((f.num("loops")?, f.num("round_trip_cycles")?)),
            None => None,
        };
        let ept = match f.get("ept") {
            Some(_) => Some(f.one_of("ept", &["yes", "no"])? == "yes"),
            None => None,
        };
        let error = f.get("error").map(str::to_string);
        if ok == error.is_some() {
            return Err(f.error("error= goes with result=fail, and only there".to_string()));
        }
        Ok(VmxGuest {
            logged_by: line.cpu,
            apic_id: f.small("apic_id")?,
            ok,
            exits: counts[0],
            cpuid: counts[1],
            hlt: counts[2],
            vmcall: counts[3],
            other: counts[4],
            round_trip,
            ept,
            bytes: f.num("bytes")?,
            error,
        })
    }
}

/// `hypervisor: phases entry_us=0 acpi_us=<n> first_sipi_us=<n> online_us=<n> vmx_us=<n|-> summary_us=<n>`:
/// microseconds since the BSP's entry; `None` where the line says `-` (the phase did not happen).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Phases {
    pub acpi_us: Option<u64>,
    pub first_sipi_us: Option<u64>,
    pub online_us: Option<u64>,
    pub vmx_us: Option<u64>,
    pub summary_us: Option<u64>,
}

impl Documented for Phases {
    const MODULE: &'static str = "hypervisor";
    const PREFIX: &'static str = "phases ";

    fn from_line(line: &LogLine) -> Result<Phases, LineError> {
        let f = Fields::of(line);
        f.num_or_dash("entry_us")?;
        Ok(Phases {
            acpi_us: f.num_or_dash("acpi_us")?,
            first_sipi_us: f.num_or_dash("first_sipi_us")?,
            online_us: f.num_or_dash("online_us")?,
            vmx_us: f.num_or_dash("vmx_us")?,
            summary_us: f.num_or_dash("summary_us")?,
        })
    }
}

/// min/median/max of a per-core distribution as printed by the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spread {
    pub min: u64,
    pub median: u64,
    pub max: u64,
}

/// `smp: timing aps=<n> sipi_to_pcb_us min=<n> median=<n> max=<n> sipi_to_vmx_us min=<n> median=<n> max=<n>`
/// (a spread with no values prints `-` alone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub aps: u64,
    pub sipi_to_pcb_us: Option<Spread>,
    pub sipi_to_vmx_us: Option<Spread>,
}

impl Documented for Timing {
    const MODULE: &'static str = "smp";
    const PREFIX: &'static str = "timing aps=";

    fn from_line(line: &LogLine) -> Result<Timing, LineError> {
        let f = Fields::of(line);
        let groups = spreads(&line.message).map_err(|why| f.error(why))?;
        let spread = |name: &str| {
            groups
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, s)| *s)
                .ok_or_else(|| f.error(format!("no {name} spread")))
        };
        Ok(Timing {
            aps: f.num("aps")?,
            sipi_to_pcb_us: spread("sipi_to_pcb_us")?,
            sipi_to_vmx_us: spread("sipi_to_vmx_us")?,
        })
    }
}

/// Reads the `name min=<n> median=<n> max=<n>` groups of a message: each bare word followed by `min=`,
/// `median=`, `max=` words (or by `-` alone, or with `-` as all three values: no values) is a group; bare
/// words without them (`timing`) and other keys (`aps=`) are not part of a group. A group with some but not all
/// of its values, or a value that is not a number, is an error.
pub fn spreads(message: &str) -> Result<Vec<(String, Option<Spread>)>, String> {
    // Per group: its name, each of min/median/max as given (`Some(None)` for `-`), and a `-` alone.
    type Group = (String, [Option<Option<u64>>; 3], bool);
    let mut groups: Vec<Group> = Vec::new();
    for word in message.split_whitespace() {
        match word.split_once('=') {
            None if word == "-" => {
                if let Some(g) = groups.last_mut() {
                    g.2 = true;
                }
            }
            None => groups.push((word.to_string(), [None; 3], false)),
            Some((k, v)) => {
                let Some((name, vals, _)) = groups.last_mut() else {
                    continue;
                };
                let idx = match k {
                    "min" => 0,
                    "median" => 1,
                    "max" => 2,
                    _ => continue,
                };
                vals[idx] = Some(match v {
                    "-" => None,
                    _ => Some(
                        v.parse()
                            .map_err(|_| format!("{name}: {k}={v} is not a number"))?,
                    ),
                });
            }
        }
    }
    groups
        .into_iter()
        .filter(|(_, vals, dash)| *dash || vals.iter().any(Option::is_some))
        .map(|(name, vals, dash)| match (vals, dash) {
            ([Some(Some(min)), Some(Some(median)), Some(Some(max))], false) => {
                Ok((name, Some(Spread { min, median, max })))
            }
            ([None, None, None], true) | ([Some(None), Some(None), Some(None)], false) => {
                Ok((name, None))
            }
            _ => Err(format!("{name}: expected min= median= max= or -")),
        })
        .collect()
}

/// The keys of the `memory: footprint` line, in order.
pub const FOOTPRINT_KEYS: &[&str] = &[
    "image_bytes",
    "per_cpu_bytes",
    "stack_bytes",
    "ist_bytes",
    "pcb_bytes",
    "vmx_region_bytes",
    "allocated_bytes",
];

/// `memory: footprint image_bytes=<n> per_cpu_bytes=<n> ...`: its `key=value` pairs in order, every value a
/// number, every key of [`FOOTPRINT_KEYS`] present.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Footprint(pub Vec<(String, u64)>);

impl Documented for Footprint {
    const MODULE: &'static str = "memory";
    const PREFIX: &'static str = "footprint ";

    fn from_line(line: &LogLine) -> Result<Footprint, LineError> {
        let f = Fields::of(line);
        for key in FOOTPRINT_KEYS {
            f.num(key)?;
        }
        f.pairs
            .iter()
            .map(|(k, _)| Ok((k.to_string(), f.num(k)?)))
            .collect::<Result<_, _>>()
            .map(Footprint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serial::all_of;

    fn line(text: &str) -> LogLine {
        LogLine::parse_strict(text).unwrap()
    }

    fn parse<T: Documented>(text: &str) -> Result<T, LineError> {
        line(text).parse_as::<T>().expect("a line of this kind")
    }

    #[test]
    fn guest_lines() {
        let ok: VmxGuest = parse(
            "[    0.041938] cpu1  INFO  vmx: guest apic_id=1 result=ok exits=1005 cpuid=1002 hlt=1 vmcall=2 \
             other=0 loops=1000 round_trip_cycles=268 ept=yes vpid=yes unrestricted=no msr_bitmaps=no efer=yes \
             pat=yes ack_intr=no true_ctls=yes bytes=40960",
        )
        .unwrap();
        assert_eq!(ok.logged_by, Some(1));
        assert_eq!(
            (ok.apic_id, ok.ok, ok.exits, ok.cpuid),
            (1, true, 1005, 1002)
        );
        assert_eq!(
            (ok.round_trip, ok.ept, ok.bytes),
            (Some((1000, 268)), Some(true), 40960)
        );
        let fail: VmxGuest = parse(
            "[    0.303809] cpu1  ERROR vmx: guest apic_id=1 result=fail exits=1 cpuid=0 hlt=0 vmcall=0 other=1 \
             ept=no vpid=no bytes=40960 error=\"unexpected VM exit: reason 30 (I/O instruction) rip=0x1c005f\"",
        )
        .unwrap();
        assert!(!fail.ok);
        assert_eq!(fail.ept, Some(false));
        assert!(fail
            .error
            .unwrap()
            .starts_with("unexpected VM exit: reason 30"));
        for bad in [
            // The total is not the sum.
            "cpu0  INFO  vmx: guest apic_id=0 result=ok exits=4 cpuid=2 hlt=1 vmcall=2 other=0 bytes=1",
            "cpu0  INFO  vmx: guest apic_id=0 result=maybe exits=0 cpuid=0 hlt=0 vmcall=0 other=0 bytes=1",
            "cpu0  INFO  vmx: guest apic_id=0 result=fail exits=0 cpuid=0 hlt=0 vmcall=0 other=0 bytes=1",
            "cpu0  INFO  vmx: guest apic_id=0 result=ok exits=0 cpuid=0 hlt=0 vmcall=0 other=0 bytes=1 error=\"x\"",
            "cpu0  INFO  vmx: guest apic_id=0 result=ok exits=5 cpuid=2 hlt=1 vmcall=2 other=0",
        ] {
            assert!(parse::<VmxGuest>(&format!("[    0.000001] {bad}")).is_err(), "{bad}");
        }
        // The same frame with a line that keeps the contract parses.
        let good = "cpu0  INFO  vmx: guest apic_id=0 result=ok exits=5 cpuid=2 hlt=1 vmcall=2 other=0 bytes=1";
        assert!(parse::<VmxGuest>(&format!("[    0.000001] {good}")).is_ok());
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
    fn verdicts_are_parsed_exactly() {
        for (text, want) in [
            ("ok", Some(Verdict::Ok)),
            ("fail", Some(Verdict::Fail)),
            ("degraded", Some(Verdict::Degraded)),
            ("okay", None),
            ("ok,", None),
            ("OK", None),
            ("o", None),
            ("", None),
            ("failed", None),
            ("degraded2", None),
        ] {
            assert_eq!(Verdict::parse(text), want, "{text:?}");
            let s = Summary::parse_line(&format!(
                "[    0.000001] cpu0  INFO  hypervisor: summary: cpus=1 verdict={text} reason=none"
            ))
            .unwrap();
            assert_eq!(s.verdict(), want, "{text:?}");
        }
        for v in [Verdict::Ok, Verdict::Fail, Verdict::Degraded] {
            assert_eq!(Verdict::parse(&v.to_string()), Some(v));
        }
    }

    #[test]
    fn key_value_splitting() {
        assert_eq!(
            key_values("a=1 word b=\"x y\" c= d=4"),
            vec![("a", "1"), ("b", "x y"), ("c", ""), ("d", "4")]
        );
        assert_eq!(key_values("k=\"unterminated"), vec![("k", "unterminated")]);
        assert_eq!(key_values(""), vec![]);
        assert_eq!(
            key_values("  a=1   "),
            vec![("a", "1")],
            "leading and trailing spaces"
        );
        assert_eq!(key_values("   "), vec![]);
        // After a quoted value the scan goes on past its closing quote, whatever follows it.
        assert_eq!(key_values("k=\"a=\" c=1"), vec![("k", "a="), ("c", "1")]);
        assert_eq!(key_values("k=\"x\"=y"), vec![("k", "x")]);
    }

    #[test]
    fn verdict_exit_codes() {
        assert_eq!(Verdict::Ok.qemu_exit_status(), 33);
        assert_eq!(Verdict::Fail.qemu_exit_status(), 35);
        assert_eq!(Verdict::Degraded.qemu_exit_status(), 37);
        assert_eq!(Verdict::from_qemu_exit_status(35), Some(Verdict::Fail));
        assert_eq!(Verdict::from_qemu_exit_status(0), None);
    }

    const PCB: &str = "[    0.064515] cpu1  INFO  smp: pcb cpu=1 apic_id=1 x2apic=no stack=0x130000-0x140000 guard=0x12f000";

    #[test]
    fn pcb_lines() {
        assert_eq!(
            parse::<Pcb>(PCB).unwrap(),
            Pcb {
                cpu: 1,
                logged_by: Some(1),
                apic_id: 1,
                x2apic: false,
                stack_bottom: 0x130000,
                stack_top: 0x140000,
                guard: 0x12f000,
            }
        );
        for (from, to, why) in [
            ("stack=0x130000-0x140000", "stack=0x130000", "stack="),
            (
                "x2apic=no",
                "x2apic=maybe",
                "x2apic=maybe is not one of yes|no",
            ),
            (
                "guard=0x12f000",
                "guard=12f000",
                "guard=12f000 is not 0x<hex>",
            ),
            ("apic_id=1 ", "apic_id=x ", "apic_id=x is not a number"),
            (
                "apic_id=1 ",
                "apic_id=4294967296 ",
                "apic_id=4294967296 is out of range",
            ),
            ("apic_id=1 ", "", "no apic_id="),
        ] {
            let e = parse::<Pcb>(&PCB.replace(from, to)).unwrap_err();
            assert!(e.why.starts_with(why), "{to}: {e}");
            assert!(e.line.starts_with("smp: pcb cpu=1"), "{e}");
        }
        // Not a pcb line at all.
        assert!(line("[    0.000001] cpu0  INFO  smp: pcbs")
            .parse_as::<Pcb>()
            .is_none());
        assert!(line("[    0.000001] cpu0  INFO  boot: pcb cpu=1")
            .parse_as::<Pcb>()
            .is_none());
    }

    #[test]
    fn madt_lines() {
        let l = "[    0.038809] cpu0  INFO  acpi: madt: apic_id=300 uid=1 entry=x2apic state=hot-pluggable";
        assert_eq!(
            parse::<MadtEntry>(l).unwrap(),
            MadtEntry {
                apic_id: 300,
                uid: 1,
                entry: "x2apic".into(),
                state: "hot-pluggable".into(),
            }
        );
        for state in MADT_STATES {
            let s = parse::<MadtEntry>(&l.replace("hot-pluggable", state)).unwrap();
            assert_eq!(s.state, *state);
        }
        for (from, to) in [
            ("state=hot-pluggable", "state=gone"),
            ("entry=x2apic", "entry=apic"),
            ("uid=1", "uid=-1"),
            ("uid=1 ", ""),
        ] {
            assert!(parse::<MadtEntry>(&l.replace(from, to)).is_err(), "{to}");
        }
        // The count line and the bad-entry line are other kinds.
        let count = line("[    0.038000] cpu0  INFO  acpi: madt: 4 processor entries, 4 usable, lapic_base=0xfee00000");
        assert!(count.parse_as::<MadtEntry>().is_none());
    }

    const ROOT: &str = "[    0.389609] cpu1  INFO  vmx: root apic_id=1 feature_control=0x5->0x5 cr0=0x80010033 cr4=0x2020 revision=0x2b vmxon=0x189000 vmcs=0x18a000";

    #[test]
    fn vmx_root_lines() {
        assert_eq!(
            parse::<VmxRoot>(ROOT).unwrap(),
            VmxRoot {
                logged_by: Some(1),
                apic_id: 1,
                fc_before: 5,
                fc_after: 5,
                cr0: 0x80010033,
                cr4: 0x2020,
                revision: "0x2b".into(),
                vmxon: 0x189000,
                vmcs: 0x18a000,
            }
        );
        for (from, to) in [
            ("0x5->0x5", "0x5"),
            ("0x5->0x5", "0x5->5"),
            ("revision=0x2b", "revision=43"),
            ("vmcs=0x18a000", ""),
            ("cr4=0x2020", "cr4=0xzz"),
        ] {
            assert!(parse::<VmxRoot>(&ROOT.replace(from, to)).is_err(), "{to}");
        }
    }

    #[test]
    fn phases_lines() {
        let l = "[    0.071000] cpu0  INFO  hypervisor: phases entry_us=0 acpi_us=15210 first_sipi_us=25000 online_us=54000 vmx_us=- summary_us=70900";
        assert_eq!(
            parse::<Phases>(l).unwrap(),
            Phases {
                acpi_us: Some(15210),
                first_sipi_us: Some(25000),
                online_us: Some(54000),
                vmx_us: None,
                summary_us: Some(70900),
            }
        );
        assert!(parse::<Phases>(&l.replace("online_us=54000", "online_us=soon")).is_err());
        assert!(parse::<Phases>(&l.replace(" summary_us=70900", "")).is_err());
    }

    #[test]
    fn timing_lines() {
        let l = "[    0.070000] cpu0  INFO  smp: timing aps=3 sipi_to_pcb_us min=10 median=20 max=30 sipi_to_vmx_us -";
        assert_eq!(
            parse::<Timing>(l).unwrap(),
            Timing {
                aps: 3,
                sipi_to_pcb_us: Some(Spread {
                    min: 10,
                    median: 20,
                    max: 30
                }),
                sipi_to_vmx_us: None,
            }
        );
        for (from, to) in [
            (" median=20", ""),
            ("max=30", "max=x"),
            (" sipi_to_vmx_us -", ""),
            ("aps=3", "aps=three"),
        ] {
            assert!(parse::<Timing>(&l.replace(from, to)).is_err(), "{to}");
        }
        assert_eq!(
            spreads("a min=1 median=2 max=3 b -"),
            Ok(vec![
                (
                    "a".into(),
                    Some(Spread {
                        min: 1,
                        median: 2,
                        max: 3
                    })
                ),
                ("b".into(), None)
            ])
        );
    }

    #[test]
    fn spreads_with_values_dashes_and_unknown_words() {
        let map = |m: &str| -> std::collections::BTreeMap<String, Option<Spread>> {
            spreads(m).unwrap().into_iter().collect()
        };
        let m = map(
            "timing aps=14 sipi_to_pcb_us min=1 median=2 max=3 sipi_to_vmx_us min=4 median=5 max=6 extra=1",
        );
        assert_eq!(
            m["sipi_to_vmx_us"],
            Some(Spread {
                min: 4,
                median: 5,
                max: 6
            })
        );
        assert_eq!(
            m["sipi_to_pcb_us"],
            Some(Spread {
                min: 1,
                median: 2,
                max: 3
            })
        );
        assert!(!m.contains_key("timing"));
        let m = map("timing aps=3 sipi_to_pcb_us min=1 median=2 max=3 sipi_to_vmx_us -");
        assert_eq!(m["sipi_to_vmx_us"], None);
        assert!(m["sipi_to_pcb_us"].is_some());
        let m = map("timing aps=0 sipi_to_pcb_us min=- median=- max=-");
        assert_eq!(m["sipi_to_pcb_us"], None);
        // Half a spread, or a value that is not a number, is not silently dropped.
        assert!(spreads("a min=1 max=3").is_err());
        assert!(spreads("a min=1 median=- max=3").is_err());
        assert!(spreads("a min=1 median=x max=3").is_err());
    }

    #[test]
    fn footprint_lines() {
        let l = "[    0.070500] cpu0  INFO  memory: footprint image_bytes=700000 per_cpu_bytes=110592 stack_bytes=69632 ist_bytes=36864 pcb_bytes=4096 vmx_region_bytes=0 allocated_bytes=900000";
        let f = parse::<Footprint>(l).unwrap();
        assert_eq!(f.0.len(), FOOTPRINT_KEYS.len());
        assert_eq!(f.0[0], ("image_bytes".to_string(), 700000));
        assert!(parse::<Footprint>(&l.replace("pcb_bytes=4096", "pcb_bytes=4k")).is_err());
        assert!(parse::<Footprint>(&l.replace(" ist_bytes=36864", "")).is_err());
    }

    #[test]
    fn all_of_a_kind_in_order() {
        let lines: Vec<LogLine> = [
            "[    0.023956] cpu0  INFO  smp: pcb cpu=0 apic_id=0 x2apic=no stack=0x101000-0x111000 guard=0x100000",
            ROOT,
            PCB,
        ]
        .iter()
        .map(|l| line(l))
        .collect();
        let pcbs = all_of::<Pcb>(&lines).unwrap();
        assert_eq!(pcbs.iter().map(|p| p.cpu).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(all_of::<VmxRoot>(&lines).unwrap().len(), 1);
        let mut broken = lines.clone();
        broken[2].message = broken[2].message.replace("guard=0x12f000", "guard=?");
        assert!(all_of::<Pcb>(&broken).is_err());
    }
}
