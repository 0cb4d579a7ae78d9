//! Running the benchmark: boots every configuration through the emulator session ([`crate::session`]),
//! then writes the files; `--replot` re-renders them from `bench-runs.csv`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::csv::{parse_runs_csv, runs_csv, summary_csv};
use super::json::{to_json, Json};
use super::plan::{
    bench_append, plan, with_tcg_threading, ApStart, BenchSpec, Config, TcgPolicy, TCG_SINGLE_ABOVE,
};
use super::plot::{bench_svg, plot_subtitle};
use super::sample::{RunStatus, Sample};
use super::stats::{aggregate, check_targets, Aggregate, TargetCheck};
use super::table::{footprint_table, markdown_table, table, targets_text};
use crate::host::{self, Need};
use crate::qemu::{self, Media, QemuPlan};
use crate::runner;
use crate::session::{self, Limits, RunDir};
use crate::{bochs, image, Backend, BochsRom, Engine, Machine, RunError};

/// Everything fixed for the whole benchmark.
struct Env<'a> {
    spec: &'a BenchSpec,
    kernel: PathBuf,
}

/// The session limits of a benchmark boot: the runner's grace after the summary, no echo.
fn limits(env: &Env, grace: Duration) -> Limits {
    Limits {
        timeout: Some(env.spec.timeout),
        grace,
        echo: false,
    }
}

fn boot_qemu(env: &Env, config: Config, run: u32) -> Result<Sample, RunError> {
    let dir = RunDir::new("bench")?;
    let cmdline = runner::kernel_cmdline(&bench_append(&config, &env.spec.append), "exit");
    let reset_log = dir.0.join("qemu-reset.log");
    let plan = QemuPlan {
        kvm: false,
        machine: Machine::Q35,
        memory_mib: env.spec.memory_mib,
        smp: config.cpus.to_string(),
        media: Media::Kernel {
            path: env.kernel.clone(),
            cmdline,
        },
        uefi_firmware: None,
        gdb: false,
        // As the runner does (`cargo run` measures the same command).
        reset_log: Some(reset_log.clone()),
        extra_args: env.spec.extra_args.clone(),
    };
    session::check_qemu_version(&plan)?;
    let args = with_tcg_threading(&plan.args(), config.engine);
    let ended = session::run_qemu(&args, &reset_log, limits(env, session::QEMU_GRACE))?;
    if let Some(message) = runner::qemu_refusal(&ended) {
        return Err(RunError::Refused(runner::refusal_text(&plan, &message)));
    }
    let mut sample = Sample::from_session(config, run, &ended);
    if sample.status != RunStatus::Ok && !ended.emulator_output.trim().is_empty() {
        let _ = write!(
            sample.detail,
            "\n    QEMU stderr: {}",
            ended.emulator_output.trim()
        );
    }
    Ok(sample)
}

fn boot_bochs(env: &Env, config: Config, run: u32, iso: &Path) -> Result<Sample, RunError> {
    let dir = RunDir::new("bench")?;
    let cfg = bochs::BochsConfig {
        cpus: config.cpus,
        cpu_model: crate::DEFAULT_CPU_MODEL.to_string(),
        memory_mib: env.spec.memory_mib,
        iso: iso.to_path_buf(),
        serial_log: dir.0.join("serial.log"),
        rom: BochsRom::Bochs,
        workdir: dir.0.clone(),
    };
    let mut cmd = bochs::command(&cfg).map_err(session::bochs_error)?;
    cmd.args(&env.spec.extra_args);
    let ended = session::run_bochs(cmd, &cfg, limits(env, session::BOCHS_GRACE))?;
    let mut sample = Sample::from_session(config, run, &ended);
    if sample.status != RunStatus::Ok {
        let tail: Vec<&str> = ended.emulator_output.lines().rev().take(6).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        let _ = write!(sample.detail, "\n    Bochs output: {}", tail.join(" / "));
    }
    Ok(sample)
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn host_meta(spec: &BenchSpec, kernel: &Path, kernel_bytes: &[u8]) -> Vec<(String, Json)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let root = image::repo_root();
    let root_s = root.display().to_string();
    let git = |args: &[&str]| {
        let mut a = vec!["-C", root_s.as_str()];
        a.extend_from_slice(args);
        command_output("git", &a).unwrap_or_default()
    };
    let dirty = !git(&["status", "--porcelain", "--", "boot", "smp", "hypervisor"]).is_empty();
    let args: Vec<String> = std::env::args().skip(1).collect();
    vec![
        (
            "date_utc".into(),
            Json::str(command_output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]).unwrap_or_default()),
        ),
        (
            "command".into(),
            Json::str(format!("cargo run -- {}", qemu::shell_quote(&args))),
        ),
        ("host_cpu".into(), Json::str(model)),
        (
            "host_cpus".into(),
            Json::Int(
                thread::available_parallelism()
                    .map(|n| n.get() as i64)
                    .unwrap_or(0),
            ),
        ),
        ("loadavg_start".into(), Json::str(loadavg())),
        (
            "qemu".into(),
            Json::str(
                command_output(qemu::QEMU_PROGRAM, &["--version"])
                    .and_then(|s| s.lines().next().map(str::to_string))
                    .unwrap_or_default(),
            ),
        ),
        (
            "bochs".into(),
            Json::str(
                command_output("dpkg-query", &["-W", "-f", "${Version}", "bochs"])
                    .unwrap_or_default(),
            ),
        ),
        (
            "git_commit".into(),
            Json::str(git(&["rev-parse", "--short", "HEAD"])),
        ),
        ("kernel_sources_dirty".into(), Json::Bool(dirty)),
        ("image".into(), Json::str(kernel.display().to_string())),
        ("image_bytes".into(), Json::Int(kernel_bytes.len() as i64)),
        ("runs_per_config".into(), Json::Int(i64::from(spec.runs))),
        ("append".into(), Json::str(spec.append.clone())),
        ("memory_mib".into(), Json::Int(i64::from(spec.memory_mib))),
        (
            "tcg_policy".into(),
            Json::str(match spec.tcg {
                TcgPolicy::Auto => format!("auto (thread=single above {TCG_SINGLE_ABOVE} CPUs)"),
                TcgPolicy::Multi => "multi".into(),
                TcgPolicy::Single => "single".into(),
                TcgPolicy::Both => "both".into(),
            }),
        ),
        (
            "qemu_machine".into(),
            Json::str(format!(
                "q35, pic=off above {TCG_SINGLE_ABOVE} CPUs (xtask::qemu::QemuPlan::machine_arg)"
            )),
        ),
    ]
}

/// Runs the benchmark and writes its files; returns the process exit status (0: every boot ended
/// `verdict=ok`; 1: some did not; otherwise the [`RunError`] status).
pub fn run_bench(spec: &BenchSpec) -> i32 {
    let result = if let Some(loops) = spec.exits {
        super::exits::run_exits(spec, loops).map(|status| status == 0)
    } else if spec.replot {
        replot(&spec.out)
    } else {
        run_bench_inner(spec)
    };
    match result {
        Ok(all_ok) => i32::from(!all_ok),
        Err(e) => {
            eprintln!("bench: {e}");
            e.exit_code()
        }
    }
}

fn run_bench_inner(spec: &BenchSpec) -> Result<bool, RunError> {
    let (configs, notes) = plan(spec);
    for n in &notes {
        eprintln!("bench: note: {n}");
    }
    if configs.is_empty() {
        return Err(RunError::Usage("nothing to measure".into()));
    }
    let mut needs = Vec::new();
    if spec.backends.contains(&Backend::Qemu) {
        needs.push(Need::program(qemu::QEMU_PROGRAM, qemu::QEMU_PACKAGE));
    }
    if spec.backends.contains(&Backend::Bochs) {
        needs.extend(bochs::needs(BochsRom::Bochs));
    }
    host::ensure(&needs)?;
    // A private copy of the image: others may rebuild target/image while the benchmark runs.
    let built = image::build_image(false)?;
    let bytes = std::fs::read(&built)
        .map_err(|e| RunError::Build(format!("cannot read {}: {e}", built.display())))?;
    let bench_dir = image::target_dir().join("bench-images");
    std::fs::create_dir_all(&bench_dir)
        .map_err(|e| RunError::Io(format!("cannot create {}: {e}", bench_dir.display())))?;
    let kernel = bench_dir.join(format!("hypervisor-{:016x}", image::fnv1a64(&[&bytes])));
    if !kernel.is_file() {
        std::fs::write(&kernel, &bytes)
            .map_err(|e| RunError::Io(format!("cannot write {}: {e}", kernel.display())))?;
    }
    let mut meta = host_meta(spec, &kernel, &bytes);
    let env = Env {
        spec,
        kernel: kernel.clone(),
    };
    // Bochs boots the GRUB ISO with the command line inside: one per mode.
    let mut isos: BTreeMap<ApStart, PathBuf> = BTreeMap::new();
    for c in configs.iter().filter(|c| c.backend == Backend::Bochs) {
        if let std::collections::btree_map::Entry::Vacant(e) = isos.entry(c.mode) {
            let cmdline = runner::kernel_cmdline(&bench_append(c, &spec.append), "exit");
            e.insert(image::cached_iso(&kernel, &cmdline)?);
        }
    }
    let total = configs.len() * spec.runs as usize;
    eprintln!(
        "bench: {} configurations x {} runs = {total} boots, one at a time (image {}, {} bytes)",
        configs.len(),
        spec.runs,
        kernel.display(),
        bytes.len()
    );
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut n = 0;
    // Runs interleaved (round r of every configuration, then round r+1) so that a burst of host
    // load hits one run of many configurations rather than every run of one.
    for run in 1..=spec.runs {
        for &config in &configs {
            n += 1;
            let result = match config.engine {
                Engine::TcgMulti | Engine::TcgSingle => boot_qemu(&env, config, run),
                Engine::Bochs => boot_bochs(&env, config, run, &isos[&config.mode]),
            };
            let sample = result.unwrap_or_else(|e| Sample::error(config, run, e.to_string()));
            eprintln!(
                "bench: [{n}/{total}] {} run {run}: {}",
                config.label(),
                sample.progress()
            );
            if sample.status != RunStatus::Ok {
                eprintln!("bench:   FAILED: {}", sample.detail);
            }
            samples.push(sample);
        }
    }
    meta.push(("loadavg_end".into(), Json::str(loadavg())));
    meta.push((
        "duration_s".into(),
        Json::Num((started.elapsed().as_secs_f64() * 10.0).round() / 10.0),
    ));
    let aggs = aggregate(&samples);
    let targets = check_targets(&aggs);
    let failed: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.status != RunStatus::Ok)
        .collect();

    let meta_str = |key: &str| match meta.iter().find(|(k, _)| k == key) {
        Some((_, Json::Str(v))) => v.clone(),
        _ => String::new(),
    };
    let subtitle = plot_subtitle(
        spec,
        &meta_str("qemu"),
        &meta_str("bochs"),
        thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let mut files = vec![
        ("bench-runs.csv", runs_csv(&samples)),
        (
            "bench.json",
            to_json(&meta, &samples, &aggs, &targets).render(),
        ),
    ];
    files.extend(rendered_files(
        &aggs,
        spec.tcg == TcgPolicy::Both,
        &subtitle,
    ));
    let written = write_files(&spec.out, &files)?;
    print_report(&aggs, &targets);
    println!(
        "wrote {} ({:.0} s, load average {} -> {})",
        written.join(", "),
        started.elapsed().as_secs_f64(),
        meta_str("loadavg_start"),
        loadavg()
    );
    if !failed.is_empty() {
        println!(
            "\n{} of {} boots did not end with verdict=ok:",
            failed.len(),
            samples.len()
        );
        for s in &failed {
            println!("  {} run {}: {}", s.config.label(), s.run, s.detail);
        }
    }
    Ok(failed.is_empty())
}

/// The files derived from the aggregates (not the raw runs).
fn rendered_files(
    aggs: &[Aggregate],
    by_accel: bool,
    subtitle: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("bench-summary.csv", summary_csv(aggs)),
        ("bench.svg", bench_svg(aggs, by_accel, subtitle)),
        ("bench-table.md", markdown_table(aggs)),
    ]
}

fn write_files(out: &Path, files: &[(&str, String)]) -> Result<Vec<String>, RunError> {
    std::fs::create_dir_all(out)
        .map_err(|e| RunError::Io(format!("cannot create {}: {e}", out.display())))?;
    let mut written = Vec::new();
    for (name, text) in files {
        let path = out.join(name);
        std::fs::write(&path, text)
            .map_err(|e| RunError::Io(format!("cannot write {}: {e}", path.display())))?;
        written.push(path.display().to_string());
    }
    Ok(written)
}

fn print_report(aggs: &[Aggregate], targets: &[TargetCheck]) {
    println!("{}", table(aggs));
    println!(
        "guest ms: median (min-max) over ok runs; bring-up = processor list read to all online"
    );
    println!("wall s: emulator start to the first kernel line / to the summary line\n");
    let fp = footprint_table(aggs);
    if !fp.is_empty() {
        println!("footprint (memory: footprint line):\n{fp}");
    }
    println!(
        "targets (medians, parallel start-up):\n{}",
        targets_text(targets)
    );
}

/// The spec a set of samples was measured with, as far as the plot needs it.
pub(super) fn spec_of(samples: &[Sample]) -> BenchSpec {
    let mut backends: Vec<Backend> = samples.iter().map(|s| s.config.backend).collect();
    backends.sort();
    backends.dedup();
    let accels: std::collections::BTreeSet<(u32, Engine)> = samples
        .iter()
        .filter(|s| s.config.backend == Backend::Qemu)
        .map(|s| (s.config.cpus, s.config.engine))
        .collect();
    let both = accels
        .iter()
        .any(|(c, a)| *a == Engine::TcgMulti && accels.contains(&(*c, Engine::TcgSingle)));
    let tcg = if both {
        TcgPolicy::Both
    } else if accels.iter().all(|(_, a)| *a == Engine::TcgSingle) {
        TcgPolicy::Single
    } else if accels.iter().all(|(_, a)| *a == Engine::TcgMulti) {
        TcgPolicy::Multi
    } else {
        TcgPolicy::Auto
    };
    BenchSpec {
        backends,
        runs: samples.iter().map(|s| s.run).max().unwrap_or(0),
        tcg,
        ..BenchSpec::default()
    }
}

fn replot(out: &Path) -> Result<bool, RunError> {
    let path = out.join("bench-runs.csv");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| RunError::Io(format!("cannot read {}: {e}", path.display())))?;
    let samples = parse_runs_csv(&text).map_err(RunError::Usage)?;
    let aggs = aggregate(&samples);
    let targets = check_targets(&aggs);
    let spec = spec_of(&samples);
    let version = |program: &str, args: &[&str]| command_output(program, args).unwrap_or_default();
    let subtitle = plot_subtitle(
        &spec,
        &version(qemu::QEMU_PROGRAM, &["--version"]),
        &version("dpkg-query", &["-W", "-f", "${Version}", "bochs"]),
        thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let files = rendered_files(&aggs, spec.tcg == TcgPolicy::Both, &subtitle);
    let written = write_files(out, &files)?;
    print_report(&aggs, &targets);
    println!("re-rendered {} from {}", written.join(", "), path.display());
    Ok(samples.iter().all(|s| s.status == RunStatus::Ok))
}
