//! What `cargo run -- bench` measures: its command line ([`parse_args`]) and the configurations it boots
//! ([`plan`]).

use std::path::PathBuf;
use std::time::Duration;

use crate::args::{cpu_list, Args};
use crate::{bochs, image};

/// The backends and engines the benchmark drives are the runner's (QEMU and Bochs only).
pub use crate::{Backend, Engine};

/// Default QEMU CPU counts (QEMU 7.2 refuses more than 255 on q35).
pub const QEMU_CPUS: &[u32] = &[1, 2, 4, 8, 16, 32, 64, 128, 255];
/// Default Bochs CPU counts (Bochs 2.7 allows at most 15).
pub const BOCHS_CPUS: &[u32] = &[1, 2, 4, 8, 15];
/// Default number of boots per configuration.
pub const DEFAULT_RUNS: u32 = 3;
/// Default per-boot timeout (a boot that takes longer is a failed run).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// With `--tcg auto` the bench follows the runner's default (multi-threaded TCG up to this many CPUs).
pub use crate::qemu::TCG_SINGLE_ABOVE;

pub const USAGE: &str = "\
Usage: cargo run -- bench [--backend qemu|bochs|all] [--cpus 1,2,4,...] [--runs N]
                          [--mode parallel|serial|both] [--out DIR] [--tcg auto|multi|single|both]
                          [--append \"<kernel cmdline>\"] [--timeout S] [--memory MiB]
                          [-- EXTRA EMULATOR ARGS]

Boots the image at each CPU count N times (QEMU TCG with vmx=off, Bochs with VMX), in parallel and
serial AP start-up (ap_start=), and reports min/median/max of the guest phase times and of the wall
time from emulator start to the summary line. Writes bench-runs.csv, bench-summary.csv, bench.json
and bench.svg into DIR (default target/bench) and prints a table. Exits 1 if any boot did not end
with verdict=ok.

  --backend      which emulators (default all)
  --cpus         CPU counts (default QEMU 1,2,4,8,16,32,64,128,255; Bochs 1,2,4,8,15; with --backend
                 all, Bochs takes the counts up to 15)
  --runs         boots per configuration (default 3)
  --mode         AP start-up (default both)
  --tcg          QEMU TCG threading: multi (one host thread per vCPU), single (thread=single), both,
                 or auto (default: multi up to 8 CPUs, single above)
  --append       more kernel command-line words for every boot (e.g. init_delay_us=1000)
  --timeout      seconds per boot before it counts as failed (default 300)
  --memory       guest MiB (default 512)
  --replot       boot nothing: re-render bench-summary.csv, bench-table.md and bench.svg from
                 DIR/bench-runs.csv (e.g. after a change to the plot)
  --exits N      instead: the VM-exit round trip. Each core's test guest times N CPUID exits
                 (guest_loops=N) under Bochs, and under KVM where the host has nested VT-x; --cpus
                 (default 1,4), --runs, --append and --timeout apply. Writes bench-exits.csv and
                 bench-exits.md
  -- ARGS        appended to the emulator command line (only with a single backend)
";

/// `ap_start=` of the kernel command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ApStart {
    Parallel,
    Serial,
}

impl ApStart {
    pub fn as_str(self) -> &'static str {
        match self {
            ApStart::Parallel => "parallel",
            ApStart::Serial => "serial",
        }
    }
}

/// The `--tcg` policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcgPolicy {
    /// Multi-threaded up to [`TCG_SINGLE_ABOVE`] CPUs, `thread=single` above.
    Auto,
    Multi,
    Single,
    /// Every QEMU configuration both ways.
    Both,
}

/// What `cargo run -- bench` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BenchSpec {
    pub backends: Vec<Backend>,
    /// `None`: each backend's default list.
    pub cpus: Option<Vec<u32>>,
    pub runs: u32,
    pub modes: Vec<ApStart>,
    pub out: PathBuf,
    pub tcg: TcgPolicy,
    /// Extra kernel command-line words for every boot.
    pub append: String,
    pub timeout: Duration,
    pub memory_mib: u32,
    /// Appended to the emulator's command line.
    pub extra_args: Vec<String>,
    /// `--replot`: no boots; re-render the summary, table and plot from `out/bench-runs.csv`.
    pub replot: bool,
    /// `--exits N`: the VM-exit round-trip benchmark with N timed exits per core instead.
    pub exits: Option<u64>,
}

impl Default for BenchSpec {
    fn default() -> Self {
        BenchSpec {
            backends: vec![Backend::Qemu, Backend::Bochs],
            cpus: None,
            runs: DEFAULT_RUNS,
            modes: vec![ApStart::Parallel, ApStart::Serial],
            out: image::target_dir().join("bench"),
            tcg: TcgPolicy::Auto,
            append: String::new(),
            timeout: DEFAULT_TIMEOUT,
            memory_mib: crate::DEFAULT_MEMORY_MIB,
            extra_args: Vec::new(),
            replot: false,
            exits: None,
        }
    }
}

/// Parses the arguments after `bench`.
pub fn parse_args<I, S>(args: I) -> Result<BenchSpec, String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut spec = BenchSpec::default();
    let mut appends: Vec<String> = Vec::new();
    let mut args = Args::new(args);
    while let Some(opt) = args.next_opt() {
        match opt.name.as_str() {
            "--" if opt.flag().is_ok() => {
                spec.extra_args = args.rest();
                break;
            }
            "--backend" => {
                let v = args.value(&opt)?;
                spec.backends = match v.as_str() {
                    "qemu" => vec![Backend::Qemu],
                    "bochs" => vec![Backend::Bochs],
                    "all" => vec![Backend::Qemu, Backend::Bochs],
                    _ => return Err(format!("--backend {v:?}: expected qemu, bochs or all")),
                };
            }
            "--cpus" => {
                // The configurations are planned in CPU order, each count once.
                let mut list = cpu_list("--cpus", &args.value(&opt)?, u32::MAX)?;
                list.sort_unstable();
                list.dedup();
                spec.cpus = Some(list);
            }
            "--runs" => spec.runs = args.number(&opt, |&n| n > 0, "expected a number > 0")?,
            "--mode" => {
                let v = args.value(&opt)?;
                spec.modes = match v.as_str() {
                    "parallel" => vec![ApStart::Parallel],
                    "serial" => vec![ApStart::Serial],
                    "both" => vec![ApStart::Parallel, ApStart::Serial],
                    _ => return Err(format!("--mode {v:?}: expected parallel, serial or both")),
                };
            }
            "--tcg" => {
                let v = args.value(&opt)?;
                spec.tcg = match v.as_str() {
                    "auto" => TcgPolicy::Auto,
                    "multi" => TcgPolicy::Multi,
                    "single" => TcgPolicy::Single,
                    "both" => TcgPolicy::Both,
                    _ => return Err(format!("--tcg {v:?}: expected auto, multi, single or both")),
                };
            }
            "--out" => {
                let v = args.value(&opt)?;
                if v.is_empty() {
                    return Err("--out needs a directory".into());
                }
                spec.out = PathBuf::from(v);
            }
            "--append" => appends.push(args.value(&opt)?),
            "--replot" => {
                opt.flag()?;
                spec.replot = true;
            }
            "--timeout" => {
                spec.timeout = Duration::from_secs(args.number(
                    &opt,
                    |&s: &u64| s > 0,
                    "expected whole seconds > 0",
                )?)
            }
            "--memory" => spec.memory_mib = args.number(&opt, |&m| m > 0, "expected MiB > 0")?,
            "--exits" => {
                spec.exits = Some(args.number(
                    &opt,
                    |&n: &u64| (1..=1_000_000).contains(&n),
                    "expected 1 to 1000000 timed exits",
                )?)
            }
            other if other.starts_with('-') => {
                return Err(format!("bench: unknown option {other}"))
            }
            other => return Err(format!("bench: unexpected argument {other:?}")),
        }
    }
    spec.append = appends.join(" ");
    if !spec.extra_args.is_empty() && spec.backends.len() > 1 {
        return Err("emulator arguments after `--` need a single --backend".into());
    }
    if let (Some(cpus), [Backend::Bochs]) = (&spec.cpus, spec.backends.as_slice()) {
        if let Some(n) = cpus.iter().find(|&&n| n > bochs::MAX_CPUS) {
            return Err(format!(
                "--cpus {n}: Bochs supports at most {} CPUs",
                bochs::MAX_CPUS
            ));
        }
    }
    for word in spec.append.split_whitespace() {
        if word.starts_with("ap_start=") || word.starts_with("on_done=") {
            return Err(format!(
                "--append {word:?}: the benchmark sets ap_start= (use --mode) and on_done=exit itself"
            ));
        }
    }
    Ok(spec)
}

/// One configuration: backend, emulation, AP start-up and CPU count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Config {
    pub backend: Backend,
    pub engine: Engine,
    pub cpus: u32,
    pub mode: ApStart,
}

impl Config {
    pub fn label(&self) -> String {
        format!(
            "{} {} cpus={} {}",
            self.backend.as_str(),
            self.engine.as_str(),
            self.cpus,
            self.mode.as_str()
        )
    }
}

/// The configurations to boot, in table order (backend, accel, CPU count, mode), and notes about
/// counts a backend cannot run.
pub fn plan(spec: &BenchSpec) -> (Vec<Config>, Vec<String>) {
    let mut configs = Vec::new();
    let mut notes = Vec::new();
    for &backend in &spec.backends {
        let counts: Vec<u32> = match (&spec.cpus, backend) {
            (None, Backend::Qemu) => QEMU_CPUS.to_vec(),
            (None, Backend::Bochs) => BOCHS_CPUS.to_vec(),
            (Some(list), Backend::Qemu) => list.clone(),
            (_, Backend::Auto | Backend::Kvm) => {
                notes.push(format!(
                    "the benchmark drives QEMU TCG and Bochs, not {backend}"
                ));
                continue;
            }
            (Some(list), Backend::Bochs) => {
                let (ok, skipped): (Vec<u32>, Vec<u32>) =
                    list.iter().partition(|&&n| n <= bochs::MAX_CPUS);
                if !skipped.is_empty() {
                    notes.push(format!(
                        "Bochs skips {skipped:?} (it supports at most {} CPUs)",
                        bochs::MAX_CPUS
                    ));
                }
                ok
            }
        };
        for &cpus in &counts {
            let accels: Vec<Engine> = match (backend, spec.tcg) {
                (Backend::Bochs, _) => vec![Engine::Bochs],
                (_, TcgPolicy::Multi) => vec![Engine::TcgMulti],
                (_, TcgPolicy::Single) => vec![Engine::TcgSingle],
                (_, TcgPolicy::Both) => vec![Engine::TcgMulti, Engine::TcgSingle],
                (_, TcgPolicy::Auto) => vec![if cpus > TCG_SINGLE_ABOVE {
                    Engine::TcgSingle
                } else {
                    Engine::TcgMulti
                }],
            };
            for accel in accels {
                for &mode in &spec.modes {
                    configs.push(Config {
                        backend,
                        engine: accel,
                        mode,
                        cpus,
                    });
                }
            }
        }
    }
    configs.sort();
    (configs, notes)
}

/// The kernel command line of a configuration (before the runner's `on_done=exit`).
pub fn bench_append(config: &Config, extra: &str) -> String {
    let mut words = vec![format!("ap_start={}", config.mode.as_str())];
    if config.backend == Backend::Qemu {
        // QEMU TCG has no VMX: the VMX stage would end the run degraded.
        words.push("vmx=off".to_string());
    }
    words.extend(extra.split_whitespace().map(str::to_string));
    words.join(" ")
}

/// The runner's QEMU arguments with its `-accel tcg...` set to `engine`'s threading: `tcg` (QEMU's default,
/// multi-threaded) or `tcg,thread=single`. The runner picks single-threaded TCG above [`TCG_SINGLE_ABOVE`]
/// CPUs, so a multi-threaded configuration above that count must undo it.
pub fn with_tcg_threading(args: &[String], engine: Engine) -> Vec<String> {
    let mut out = args.to_vec();
    if let Some(i) = out
        .windows(2)
        .position(|w| w[0] == "-accel" && (w[1] == "tcg" || w[1] == "tcg,thread=single"))
    {
        out[i + 1] = match engine {
            Engine::TcgSingle => "tcg,thread=single".to_string(),
            Engine::TcgMulti | Engine::Bochs => "tcg".to_string(),
        };
    }
    out
}
