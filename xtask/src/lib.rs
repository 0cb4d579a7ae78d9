//! The host-side runner: builds the hypervisor image and boots it in QEMU, QEMU+KVM or Bochs,
//! streams the serial log and turns its `summary:` line into a verdict.
//!
//! `cargo run` (the `xtask` binary) is a thin command-line wrapper around [`run`]; the integration
//! tests in `tests/` call [`run`] directly.

pub mod args;
pub mod bench;
pub mod bochs;
pub mod cli;
pub mod elf;
pub mod host;
pub mod image;
pub mod iso;
pub mod mutants;
pub mod qemu;
pub mod runner;
pub mod serial;
pub mod session;
pub mod soak;
pub mod toolchain;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use image::{build_garbled_handoff_image, build_image, image_path};
pub use qemu::{smp_cpu_count, smp_max_cpus};
pub use runner::{kernel_cmdline, resolve_backend, run};
pub use serial::{Level, LogLine, Summary, Verdict};

/// Which emulator boots the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Backend {
    /// `kvm` if nested VT-x really works on this host, otherwise `bochs`.
    #[default]
    Auto,
    /// QEMU with TCG: fast, SMP, no VMX.
    Qemu,
    /// Bochs: slower, emulates VMX; boots the GRUB ISO.
    Bochs,
    /// QEMU with `-accel kvm -cpu host`: needs nested VT-x.
    Kvm,
}

impl Backend {
    pub fn parse(s: &str) -> Option<Backend> {
        match s {
            "auto" => Some(Backend::Auto),
            "qemu" => Some(Backend::Qemu),
            "bochs" => Some(Backend::Bochs),
            "kvm" => Some(Backend::Kvm),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Qemu => "qemu",
            Backend::Bochs => "bochs",
            Backend::Kvm => "kvm",
        }
    }

    /// The name in prose and plot legends.
    pub fn label(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Qemu => "QEMU",
            Backend::Bochs => "Bochs",
            Backend::Kvm => "QEMU+KVM",
        }
    }
}

/// How the soak and the benchmark emulate one boot: QEMU TCG in one of its two threading modes, or Bochs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Engine {
    /// QEMU `-accel tcg,thread=multi` (one host thread per vCPU; QEMU's default).
    TcgMulti,
    /// QEMU `-accel tcg,thread=single` (all vCPUs round-robin on one host thread).
    TcgSingle,
    /// Bochs (one host thread).
    Bochs,
}

impl Engine {
    /// The backend that runs this engine.
    pub fn backend(self) -> Backend {
        match self {
            Engine::TcgMulti | Engine::TcgSingle => Backend::Qemu,
            Engine::Bochs => Backend::Bochs,
        }
    }

    /// The short name of the benchmark's files (`accel` column): `tcg`, `tcg-single`, `bochs`.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::TcgMulti => "tcg",
            Engine::TcgSingle => "tcg-single",
            Engine::Bochs => "bochs",
        }
    }

    /// The soak table's name.
    pub fn describe(self) -> &'static str {
        match self {
            Engine::TcgMulti => "qemu tcg,thread=multi",
            Engine::TcgSingle => "qemu tcg,thread=single",
            Engine::Bochs => "bochs (vmx on)",
        }
    }

    /// QEMU's `-accel` value for this engine (`None` for Bochs).
    pub fn qemu_accel(self) -> Option<&'static str> {
        match self {
            Engine::TcgMulti => Some("tcg,thread=multi"),
            Engine::TcgSingle => Some("tcg,thread=single"),
            Engine::Bochs => None,
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// QEMU machine type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Machine {
    #[default]
    Q35,
    Pc,
}

impl Machine {
    pub fn parse(s: &str) -> Option<Machine> {
        match s {
            "q35" => Some(Machine::Q35),
            "pc" => Some(Machine::Pc),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Machine::Q35 => "q35",
            Machine::Pc => "pc",
        }
    }
}

/// How QEMU loads the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Boot {
    /// `-kernel <elf>` through the PVH ELF note.
    #[default]
    Pvh,
    /// `-cdrom <GRUB ISO>` (multiboot2).
    Iso,
}

impl Boot {
    pub fn parse(s: &str) -> Option<Boot> {
        match s {
            "pvh" => Some(Boot::Pvh),
            "iso" => Some(Boot::Iso),
            _ => None,
        }
    }
}

/// The Bochs ROM image (re-exported from [`bochs`]).
pub use bochs::BochsRom;

/// Default Bochs CPU model.
pub const DEFAULT_CPU_MODEL: &str = "corei7_haswell_4770";
/// Default `--smp`.
pub const DEFAULT_SMP: &str = "4";
/// Default `--memory` in MiB.
pub const DEFAULT_MEMORY_MIB: u32 = 512;
/// Default `--timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// One boot of the image. `None` in an option field means "not given": the backend's default applies,
/// and giving an option the chosen backend cannot honour is a usage error.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub backend: Backend,
    /// `-smp` for QEMU, verbatim; Bochs takes the CPU count from it.
    pub smp: String,
    /// QEMU only (default q35).
    pub machine: Option<Machine>,
    /// QEMU only (default pvh; `uefi` implies iso).
    pub boot: Option<Boot>,
    /// QEMU only: OVMF firmware + GRUB ISO.
    pub uefi: bool,
    /// Kernel command line; `on_done=exit` is appended unless it has an `on_done=` word.
    pub append: String,
    /// Kill the emulator after this long (from its start). `None`: wait forever.
    pub timeout: Option<Duration>,
    pub memory_mib: u32,
    /// Bochs only (default [`DEFAULT_CPU_MODEL`]).
    pub cpu_model: Option<String>,
    /// Bochs only (default the Bochs BIOS).
    pub bios: Option<BochsRom>,
    /// QEMU only: `-s -S`.
    pub gdb: bool,
    /// Appended to the emulator's command line (QEMU arguments; for Bochs, bochsrc options given on
    /// its command line).
    pub extra_args: Vec<String>,
    /// Do not stream the serial log to stdout.
    pub quiet: bool,
    /// Let cargo's output through while building the image (otherwise shown only on failure).
    pub show_build_output: bool,
    /// Boot this file instead of building the image (QEMU `-kernel`, or put into the GRUB ISO).
    pub kernel: Option<PathBuf>,
}

impl Default for RunSpec {
    fn default() -> Self {
        RunSpec {
            backend: Backend::Auto,
            smp: DEFAULT_SMP.to_string(),
            machine: None,
            boot: None,
            uefi: false,
            append: String::new(),
            timeout: Some(DEFAULT_TIMEOUT),
            memory_mib: DEFAULT_MEMORY_MIB,
            cpu_model: None,
            bios: None,
            gdb: false,
            extra_args: Vec::new(),
            quiet: false,
            show_build_output: false,
            kernel: None,
        }
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// `verdict=ok`.
    Ok,
    /// `verdict=fail` (or an unknown verdict).
    Fail,
    /// `verdict=degraded`.
    Degraded,
    /// The emulator exited without a summary line.
    NoSummary,
    /// No summary line before the timeout; the emulator was killed.
    Timeout,
    /// The emulator reported a triple fault and there is no summary line.
    TripleFault,
}

impl Status {
    /// The runner's exit status for this outcome (see docs/testing.md).
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Ok => 0,
            Status::Fail => 1,
            Status::Degraded => 2,
            Status::NoSummary | Status::TripleFault => 3,
            Status::Timeout => 4,
        }
    }
}

/// Exit status for a usage error.
pub const EXIT_USAGE: i32 = 64;

/// Why a run could not produce an [`Outcome`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunError {
    /// Bad or conflicting options.
    Usage(String),
    /// A tool or firmware file is missing and could not be installed.
    ToolMissing(String),
    /// The requested backend cannot work on this host (e.g. `kvm` without nested VT-x).
    BackendUnavailable(String),
    /// The image (or the ISO around it) could not be built.
    Build(String),
    /// The emulator refused the configuration before it started the guest (its message, and what it needs).
    Refused(String),
    /// The emulator could not be started.
    Spawn(String),
    /// A host I/O error while running.
    Io(String),
}

impl RunError {
    /// The runner's exit status for this error (see docs/testing.md).
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Usage(_) => EXIT_USAGE,
            RunError::ToolMissing(_)
            | RunError::BackendUnavailable(_)
            | RunError::Refused(_)
            | RunError::Spawn(_) => 5,
            RunError::Build(_) => 6,
            RunError::Io(_) => 3,
        }
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Usage(m) => write!(f, "usage error: {m}"),
            RunError::ToolMissing(m) => write!(f, "tool missing: {m}"),
            RunError::BackendUnavailable(m) => write!(f, "backend unavailable: {m}"),
            RunError::Build(m) => write!(f, "image build failed: {m}"),
            RunError::Refused(m) => f.write_str(m),
            RunError::Spawn(m) => write!(f, "cannot start the emulator: {m}"),
            RunError::Io(m) => write!(f, "I/O error: {m}"),
        }
    }
}

impl std::error::Error for RunError {}

/// The result of one boot.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub status: Status,
    /// The backend that actually ran (never `Auto`).
    pub backend: Backend,
    /// The serial log, one line per `\n` (carriage returns removed).
    pub log: String,
    /// The first `summary:` line.
    pub summary: Option<Summary>,
    /// The emulator's exit status (`None` if the runner killed it or a signal ended it).
    pub emulator_exit: Option<i32>,
    /// The emulator's own output (QEMU: stderr; Bochs: stdout and stderr).
    pub emulator_output: String,
    /// Wall time from the emulator's start to its end.
    pub wall: Duration,
    /// The timeout that applied.
    pub timeout: Option<Duration>,
    /// The kernel command line that was booted.
    pub cmdline: String,
    /// The emulator command line, shell-quoted.
    pub command: String,
    /// Things the runner noticed: exit status mismatches, a kill after the summary, several summary
    /// lines, ...
    pub notes: Vec<String>,
}

impl Outcome {
    /// Every parsable serial line.
    pub fn lines(&self) -> Vec<LogLine> {
        serial::parse_log(&self.log)
    }

    /// Lines of `module` (exact match) whose message contains `needle`.
    pub fn lines_with(&self, module: &str, needle: &str) -> Vec<LogLine> {
        self.lines()
            .into_iter()
            .filter(|l| l.module == module && l.message.contains(needle))
            .collect()
    }

    /// Parsed lines whose `module: message` text contains `needle` (whatever the module), e.g.
    /// `lines_containing("fault: exception=")`.
    pub fn lines_containing(&self, needle: &str) -> Vec<LogLine> {
        self.lines()
            .into_iter()
            .filter(|l| format!("{}: {}", l.module, l.message).contains(needle))
            .collect()
    }

    /// The first line of `module` whose message contains `needle`.
    pub fn line_with(&self, module: &str, needle: &str) -> Option<LogLine> {
        self.lines_with(module, needle).into_iter().next()
    }

    /// Lines at `level`.
    pub fn lines_at(&self, level: Level) -> Vec<LogLine> {
        self.lines()
            .into_iter()
            .filter(|l| l.level == Some(level))
            .collect()
    }

    /// Every line of kind `T` (`serial::Pcb`, `serial::VmxRoot`, ...), typed, in log order; the first line of
    /// that kind that does not follow the contract is the error.
    pub fn all_of<T: serial::Documented>(&self) -> Result<Vec<T>, serial::LineError> {
        serial::all_of(&self.lines())
    }

    /// `summary.get(key)`.
    pub fn summary_value(&self, key: &str) -> Option<&str> {
        self.summary.as_ref()?.get(key)
    }

    pub fn verdict(&self) -> Option<Verdict> {
        self.summary.as_ref()?.verdict()
    }

    pub fn exit_code(&self) -> i32 {
        self.status.exit_code()
    }

    /// The last `n` lines of the serial log.
    pub fn tail(&self, n: usize) -> Vec<&str> {
        let lines: Vec<&str> = self.log.lines().collect();
        lines[lines.len().saturating_sub(n)..].to_vec()
    }

    /// A human-readable account of the run (what `cargo run` prints at the end).
    pub fn report(&self) -> String {
        runner::report(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_name_their_backend_and_accelerator() {
        let all = [Engine::TcgMulti, Engine::TcgSingle, Engine::Bochs];
        assert_eq!(
            all.map(Engine::backend),
            [Backend::Qemu, Backend::Qemu, Backend::Bochs]
        );
        assert_eq!(all.map(Engine::as_str), ["tcg", "tcg-single", "bochs"]);
        assert_eq!(
            all.map(Engine::qemu_accel),
            [Some("tcg,thread=multi"), Some("tcg,thread=single"), None]
        );
        assert_eq!(Engine::Bochs.describe(), "bochs (vmx on)");
        assert_eq!(Backend::Bochs.label(), "Bochs");
        assert!(Backend::Qemu < Backend::Bochs);
    }
}
