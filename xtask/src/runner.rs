//! Running one boot: backend choice, option checks, spawning the emulator, streaming the serial log,
//! deciding the outcome.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::host::{self, HostProbe, Need};
use crate::qemu::{self, smp_cpu_count, smp_max_cpus, Media, QemuPlan};
use crate::serial::{Summary, Verdict};
use crate::session::{self, Ended, Limits, RunDir};
use crate::{bochs, image, Backend, BochsRom, Boot, Outcome, RunError, RunSpec, Status};

/// The kernel command line: `append` plus `on_done=<default_on_done>` unless it already has an
/// `on_done=` word.
pub fn kernel_cmdline(append: &str, default_on_done: &str) -> String {
    let words: Vec<&str> = append.split_whitespace().collect();
    let mut line = words.join(" ");
    if !words.iter().any(|w| w.starts_with("on_done=")) {
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str("on_done=");
        line.push_str(default_on_done);
    }
    line
}

/// QEMU exited by itself, with an error status, before writing anything to the serial port, and said why on
/// its stderr: it refused the configuration (e.g. "Invalid CPU topology", "requires kernel irqchip and X2APIC
/// API support"). Returns QEMU's message (its non-empty stderr lines).
pub fn qemu_refusal(ended: &Ended) -> Option<String> {
    let silent = ended.lines.iter().all(|t| t.line.trim().is_empty());
    let failed = matches!(ended.exit_code, Some(c) if c != 0);
    let message: Vec<&str> = ended
        .emulator_output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    (silent && failed && ended.summary.is_none() && !message.is_empty()).then(|| message.join("; "))
}

/// Picks the backend: `Ok((backend, explanation line))`, or why the requested one cannot work.
pub fn resolve_backend(
    requested: Backend,
    probe: &HostProbe,
) -> Result<(Backend, String), RunError> {
    match requested {
        Backend::Auto => Ok(match probe.nested_vtx() {
            Ok(why) => (
                Backend::Kvm,
                format!("runner: backend=kvm (nested VT-x works: {why})"),
            ),
            Err(why) => (
                Backend::Bochs,
                format!("runner: backend=bochs (no nested VT-x: {why}; Bochs emulates VMX)"),
            ),
        }),
        Backend::Kvm => match probe.nested_vtx() {
            Ok(why) => Ok((
                Backend::Kvm,
                format!("runner: backend=kvm (requested; nested VT-x works: {why})"),
            )),
            Err(why) => Err(RunError::BackendUnavailable(format!(
                "--backend kvm needs nested VT-x, but {why}; use --backend bochs (emulates VMX) \
                 or --backend qemu (TCG, no VMX)"
            ))),
        },
        Backend::Qemu => Ok((
            Backend::Qemu,
            "runner: backend=qemu (requested; QEMU TCG does not emulate VMX)".to_string(),
        )),
        Backend::Bochs => Ok((
            Backend::Bochs,
            "runner: backend=bochs (requested; Bochs emulates VMX)".to_string(),
        )),
    }
}

/// Rejects options the chosen backend cannot honour.
pub fn check_options(spec: &RunSpec, backend: Backend) -> Result<(), RunError> {
    let chosen = if spec.backend == Backend::Auto {
        format!("--backend auto chose {backend}")
    } else {
        format!("the backend is {backend}")
    };
    let usage =
        |what: &str, fix: &str| Err(RunError::Usage(format!("{what}, but {chosen}; {fix}")));
    if spec.smp.trim().is_empty() {
        return Err(RunError::Usage("--smp needs a value".into()));
    }
    if spec.memory_mib == 0 {
        return Err(RunError::Usage("--memory must be > 0".into()));
    }
    match backend {
        Backend::Bochs => {
            if spec.machine.is_some() {
                return usage("--machine is a QEMU option", "add --backend qemu");
            }
            if spec.boot == Some(Boot::Pvh) {
                return usage(
                    "--boot pvh is QEMU's direct kernel boot (Bochs boots the GRUB ISO)",
                    "add --backend qemu",
                );
            }
            if spec.uefi {
                return usage("--uefi uses QEMU with OVMF", "add --backend qemu");
            }
            if spec.gdb {
                return usage("--gdb uses QEMU's gdbstub", "add --backend qemu");
            }
            if !(bochs::MIN_MEMORY_MIB..=bochs::MAX_MEMORY_MIB).contains(&spec.memory_mib) {
                return Err(RunError::Usage(format!(
                    "Bochs takes {} to {} MiB of memory (--memory {})",
                    bochs::MIN_MEMORY_MIB,
                    bochs::MAX_MEMORY_MIB,
                    spec.memory_mib
                )));
            }
            if let Some(model) = &spec.cpu_model {
                if !bochs::CPU_MODELS.contains(&model.as_str()) {
                    return Err(RunError::Usage(format!(
                        "unknown Bochs CPU model {model:?}; known models: {}",
                        bochs::CPU_MODELS.join(", ")
                    )));
                }
            }
            let n = smp_cpu_count(&spec.smp).map_err(RunError::Usage)?;
            if n > bochs::MAX_CPUS {
                return Err(RunError::Usage(format!(
                    "Bochs supports at most {} CPUs (--smp {} asks for {n}); use --smp {} or less, \
                     or --backend qemu",
                    bochs::MAX_CPUS,
                    spec.smp,
                    bochs::MAX_CPUS
                )));
            }
        }
        Backend::Qemu | Backend::Kvm => {
            let max = smp_max_cpus(&spec.smp).map_err(RunError::Usage)?;
            if max > qemu::XAPIC_MAX_CPUS && spec.machine == Some(crate::Machine::Pc) {
                return Err(RunError::Usage(format!(
                    "--machine pc holds at most {} CPUs (--smp {} asks for {max}); use --machine q35",
                    qemu::XAPIC_MAX_CPUS,
                    spec.smp
                )));
            }
            if spec.cpu_model.is_some() {
                return usage("--cpu-model is a Bochs option", "add --backend bochs");
            }
            if spec.bios.is_some() {
                return usage("--bios is a Bochs option", "add --backend bochs");
            }
            if spec.uefi && spec.boot == Some(Boot::Pvh) {
                return Err(RunError::Usage(
                    "--uefi boots the GRUB ISO; it cannot be combined with --boot pvh".into(),
                ));
            }
        }
        Backend::Auto => unreachable!("resolved before"),
    }
    Ok(())
}

/// The status of a finished run. `summaries` is how many summary lines the log has: the contract says
/// exactly one, so a second one fails the run whatever the first says.
pub fn decide_status(
    summary: Option<&Summary>,
    summaries: usize,
    timed_out: bool,
    triple_fault: bool,
) -> Status {
    match summary {
        Some(_) if summaries > 1 => Status::Fail,
        Some(s) => match s.verdict() {
            Some(Verdict::Ok) => Status::Ok,
            Some(Verdict::Degraded) => Status::Degraded,
            Some(Verdict::Fail) | None => Status::Fail,
        },
        None if timed_out => Status::Timeout,
        None if triple_fault => Status::TripleFault,
        None => Status::NoSummary,
    }
}

/// A run that ended without a summary may also be missing its last log lines: the kernel holds routine lines
/// until the BSP waits (docs/serial-log.md, "Deferred lines"). Says so, and how to see them, unless the command
/// line already has `log_defer=off`.
pub fn deferred_lines_note(status: Status, cmdline: &str) -> Option<String> {
    let ended_early = matches!(
        status,
        Status::Timeout | Status::TripleFault | Status::NoSummary
    );
    let live = cmdline
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("log_defer="))
        .next_back()
        == Some("off");
    (ended_early && !live).then(|| {
        "the kernel holds INFO and DEBUG lines until its next wait, so lines logged just before the end may be \
         missing; --append log_defer=off writes every line at once"
            .to_string()
    })
}

/// Cross-checks QEMU's exit status against the summary's verdict. `None` when they agree or when
/// there is nothing to compare (the runner killed QEMU, or the command line asked for no exit).
pub fn qemu_exit_note(
    summary: Option<&Summary>,
    exit: Option<i32>,
    cmdline: &str,
) -> Option<String> {
    let exit = exit?;
    let exits_via_port = cmdline.split_whitespace().any(|w| w == "on_done=exit");
    match summary {
        Some(s) => {
            let Some(verdict) = s.verdict() else {
                return Some(format!(
                    "unknown verdict {:?} in the summary line (counted as fail)",
                    s.get("verdict").unwrap_or("")
                ));
            };
            if !exits_via_port {
                return None;
            }
            let expected = verdict.qemu_exit_status();
            (exit != expected).then(|| {
                format!(
                    "mismatch: QEMU exited with status {exit} but the summary says verdict={verdict} \
                     (expected exit status {expected})"
                )
            })
        }
        None => Verdict::from_qemu_exit_status(exit).map(|v| {
            format!(
                "QEMU exit status {exit} means the kernel wrote verdict={v} to port 0xf4, \
                 but no summary line appeared"
            )
        }),
    }
}

/// Runs one boot as described by `spec`.
pub fn run(spec: &RunSpec) -> Result<Outcome, RunError> {
    let (backend, why) = resolve_backend(spec.backend, &HostProbe::read())?;
    eprintln!("{why}");
    check_options(spec, backend)?;
    match backend {
        Backend::Qemu | Backend::Kvm => run_qemu(spec, backend),
        Backend::Bochs => run_bochs(spec),
        Backend::Auto => unreachable!(),
    }
}

fn kernel_for(spec: &RunSpec) -> Result<PathBuf, RunError> {
    match &spec.kernel {
        Some(k) if k.is_file() => Ok(k.clone()),
        Some(k) => Err(RunError::Build(format!(
            "kernel file {} does not exist",
            k.display()
        ))),
        None => image::build_image(spec.show_build_output),
    }
}

fn run_qemu(spec: &RunSpec, backend: Backend) -> Result<Outcome, RunError> {
    let mut needs = vec![Need::program(qemu::QEMU_PROGRAM, qemu::QEMU_PACKAGE)];
    if spec.uefi {
        needs.push(Need::file(host::OVMF_CANDIDATES[0], qemu::OVMF_PACKAGE));
    }
    host::ensure(&needs)?;
    let uefi_firmware = if spec.uefi {
        Some(host::find_ovmf().ok_or_else(|| {
            RunError::ToolMissing(format!(
                "no OVMF firmware at {}; install with: sudo apt-get install -y ovmf",
                host::OVMF_CANDIDATES.join(" or ")
            ))
        })?)
    } else {
        None
    };
    let kernel = kernel_for(spec)?;
    let cmdline = kernel_cmdline(&spec.append, "exit");
    let use_iso = spec.uefi || spec.boot == Some(Boot::Iso);
    let media = if use_iso {
        Media::Cdrom(image::cached_iso(&kernel, &cmdline)?)
    } else {
        Media::Kernel {
            path: kernel.clone(),
            cmdline: cmdline.clone(),
        }
    };
    let dir = RunDir::new("run")?;
    let reset_log = dir.0.join("qemu-reset.log");
    let plan = QemuPlan {
        kvm: backend == Backend::Kvm,
        machine: spec.machine.unwrap_or_default(),
        memory_mib: spec.memory_mib,
        smp: spec.smp.clone(),
        media,
        uefi_firmware,
        gdb: spec.gdb,
        reset_log: Some(reset_log.clone()),
        extra_args: spec.extra_args.clone(),
    };
    session::check_qemu_version(&plan)?;
    let args = plan.args();
    let mut shown = vec![qemu::QEMU_PROGRAM.to_string()];
    shown.extend(args.iter().cloned());
    let command = qemu::shell_quote(&shown);
    eprintln!("runner: {command}");
    if spec.gdb {
        eprintln!(
            "runner: QEMU waits for GDB on localhost:1234; attach with: gdb {} -ex 'target remote localhost:1234'",
            kernel.display()
        );
    }
    let ended = session::run_qemu(&args, &reset_log, limits(spec, session::QEMU_GRACE))?;
    if let Some(message) = qemu_refusal(&ended) {
        return Err(RunError::Refused(refusal_text(&plan, &message)));
    }
    let mut notes = ended.notes.clone();
    if let Some(n) = qemu_exit_note(ended.summary.as_ref(), ended.exit_code, &cmdline) {
        notes.push(n);
    }
    Ok(finish(
        backend,
        ended,
        cmdline,
        command,
        spec.timeout,
        notes,
    ))
}

/// What the runner says about a configuration QEMU refused: its message, and the version this plan needs
/// when it needs a newer QEMU than 7.2.
pub fn refusal_text(plan: &QemuPlan, message: &str) -> String {
    let mut text = format!("QEMU refused the configuration: {message}");
    if let Some(why) = plan.needs_new_qemu() {
        text.push_str(&format!(
            " ({why} needs QEMU {} or later: {})",
            qemu::X2APIC_TCG_MIN_VERSION,
            qemu::NEW_QEMU_HINT
        ));
    }
    text
}

fn limits(spec: &RunSpec, grace: Duration) -> Limits {
    Limits {
        timeout: spec.timeout,
        grace,
        echo: !spec.quiet,
    }
}

fn run_bochs(spec: &RunSpec) -> Result<Outcome, RunError> {
    let rom = spec.bios.unwrap_or(BochsRom::Bochs);
    host::ensure(&bochs::needs(rom))?;
    let cpus = smp_cpu_count(&spec.smp).map_err(RunError::Usage)?;
    let kernel = kernel_for(spec)?;
    let cmdline = kernel_cmdline(&spec.append, "exit");
    let iso = image::cached_iso(&kernel, &cmdline)?;
    let dir = RunDir::new("run")?;
    let cfg = bochs::BochsConfig {
        cpus,
        cpu_model: spec
            .cpu_model
            .clone()
            .unwrap_or_else(|| crate::DEFAULT_CPU_MODEL.to_string()),
        memory_mib: spec.memory_mib,
        iso,
        serial_log: dir.0.join("serial.log"),
        rom,
        workdir: dir.0.clone(),
    };
    let mut cmd = bochs::command(&cfg).map_err(session::bochs_error)?;
    cmd.args(&spec.extra_args);
    let mut shown = vec![cmd.get_program().to_string_lossy().into_owned()];
    shown.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    let command = qemu::shell_quote(&shown);
    eprintln!("runner: {command}");
    let ended = session::run_bochs(cmd, &cfg, limits(spec, session::BOCHS_GRACE))?;
    let notes = ended.notes.clone();
    Ok(finish(
        Backend::Bochs,
        ended,
        cmdline,
        command,
        spec.timeout,
        notes,
    ))
}

fn finish(
    backend: Backend,
    ended: Ended,
    cmdline: String,
    command: String,
    timeout: Option<Duration>,
    mut notes: Vec<String>,
) -> Outcome {
    let triple = ended.triple_fault;
    let lines = ended.texts();
    let summaries = lines
        .iter()
        .filter(|l| Summary::parse_line(l).is_some())
        .count();
    let status = decide_status(ended.summary.as_ref(), summaries, ended.timed_out, triple);
    if lines
        .iter()
        .any(|l| l.contains(crate::iso::BOOT_FAILED_MARKER))
    {
        notes.push("GRUB could not load or start the kernel (see its message in the log)".into());
    }
    if triple && ended.summary.is_some() {
        notes.push("the emulator reported a triple fault after the summary line".into());
    }
    notes.extend(deferred_lines_note(status, &cmdline));
    Outcome {
        status,
        backend,
        log: lines.join("\n"),
        summary: ended.summary,
        emulator_exit: ended.exit_code,
        emulator_output: ended.emulator_output,
        wall: ended.wall,
        timeout,
        cmdline,
        command,
        notes,
    }
}

/// The text `cargo run` prints after a run.
pub fn report(o: &Outcome) -> String {
    let mut r = String::new();
    let exit = match o.emulator_exit {
        Some(c) => format!("exited with status {c}"),
        None => "was killed by the runner or a signal".to_string(),
    };
    let tail = |r: &mut String, n: usize| {
        let lines = o.tail(n);
        if lines.is_empty() {
            r.push_str("runner: the serial log is empty\n");
        } else {
            r.push_str(&format!("runner: last {} serial log lines:\n", lines.len()));
            for l in lines {
                r.push_str("  | ");
                r.push_str(l);
                r.push('\n');
            }
        }
    };
    for n in &o.notes {
        r.push_str(&format!("runner: note: {n}\n"));
    }
    match o.status {
        Status::Ok | Status::Fail | Status::Degraded => {
            if let Some(s) = &o.summary {
                if let Some(msg) = crate::LogLine::parse(&s.line) {
                    r.push_str(&format!("runner: {}\n", msg.message));
                }
            }
        }
        Status::Timeout => {
            r.push_str(&format!(
                "runner: timeout after {} s without a summary line; killed {}\n",
                o.timeout.map_or(0, |t| t.as_secs()),
                o.backend
            ));
            tail(&mut r, 20);
        }
        Status::TripleFault => {
            r.push_str(&format!(
                "runner: triple fault detected: no summary line; {} {exit}\n",
                o.backend
            ));
            tail(&mut r, 20);
            emulator_tail(&mut r, o, 10);
        }
        Status::NoSummary => {
            r.push_str(&format!(
                "runner: no summary line (triple fault or reset?); {} {exit}\n",
                o.backend
            ));
            tail(&mut r, 20);
            emulator_tail(&mut r, o, 20);
        }
    }
    let verdict = o
        .summary
        .as_ref()
        .and_then(|s| s.get("verdict"))
        .unwrap_or("none");
    r.push_str(&format!(
        "runner: verdict={verdict} status={:?} exit={} ({}, {:.2} s)\n",
        o.status,
        o.exit_code(),
        o.backend,
        o.wall.as_secs_f64()
    ));
    r
}

/// Appends the last `n` non-empty lines of the emulator's own output.
fn emulator_tail(r: &mut String, o: &Outcome, n: usize) {
    let out: Vec<&str> = o
        .emulator_output
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    if !out.is_empty() {
        r.push_str(&format!(
            "runner: last lines of {}'s own output:\n",
            o.backend
        ));
        for l in &out[out.len().saturating_sub(n)..] {
            r.push_str("  ! ");
            r.push_str(l);
            r.push('\n');
        }
    }
}

/// Builds the GRUB ISO for real hardware into `out` (default `target/hypervisor.iso`); the command
/// line defaults to `on_done=halt`. Returns the ISO path and the command line.
pub fn build_hardware_iso(
    append: &str,
    out: Option<&Path>,
    show_build_output: bool,
) -> Result<(PathBuf, String), RunError> {
    host::ensure(&image::iso_needs())?;
    let kernel = image::build_image(show_build_output)?;
    let cmdline = kernel_cmdline(append, "halt");
    let out = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| image::target_dir().join("hypervisor.iso"));
    let cached = image::cached_iso(&kernel, &cmdline)?;
    std::fs::copy(&cached, &out).map_err(|e| {
        RunError::Io(format!(
            "cannot copy {} to {}: {e}",
            cached.display(),
            out.display()
        ))
    })?;
    Ok((out, cmdline))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Machine;

    #[test]
    fn cmdline_gets_on_done() {
        assert_eq!(kernel_cmdline("", "exit"), "on_done=exit");
        assert_eq!(
            kernel_cmdline("  log=debug  ", "exit"),
            "log=debug on_done=exit"
        );
        assert_eq!(
            kernel_cmdline("on_done=halt log=debug", "exit"),
            "on_done=halt log=debug"
        );
        assert_eq!(
            kernel_cmdline("xon_done=halt", "halt"),
            "xon_done=halt on_done=halt"
        );
    }

    fn ended(lines: &[&str], exit: Option<i32>, stderr: &str) -> Ended {
        Ended {
            lines: lines
                .iter()
                .map(|l| session::Timed {
                    at: Duration::ZERO,
                    line: l.to_string(),
                })
                .collect(),
            summary: None,
            exit_code: exit,
            timed_out: false,
            triple_fault: false,
            wall: Duration::ZERO,
            emulator_output: stderr.into(),
            notes: vec![],
        }
    }

    #[test]
    fn a_refusal_is_qemu_exiting_silently_with_a_message() {
        let msg = "qemu-system-x86_64: current -smp configuration requires kernel irqchip and X2APIC API support.\n";
        assert_eq!(
            qemu_refusal(&ended(&[], Some(1), msg)).as_deref(),
            Some(msg.trim())
        );
        assert!(qemu_refusal(&ended(&[""], Some(1), msg)).is_some());
        // Serial output, a clean exit, a kill or no message: not a refusal.
        assert_eq!(qemu_refusal(&ended(&["[ 0.1] boot"], Some(1), msg)), None);
        assert_eq!(qemu_refusal(&ended(&[], Some(0), msg)), None);
        assert_eq!(qemu_refusal(&ended(&[], None, msg)), None);
        assert_eq!(qemu_refusal(&ended(&[], Some(1), " \n")), None);
        let mut plan = QemuPlan {
            kvm: false,
            machine: crate::Machine::Q35,
            memory_mib: 512,
            smp: "288".into(),
            media: Media::Cdrom("/x.iso".into()),
            uefi_firmware: None,
            gdb: false,
            reset_log: None,
            extra_args: vec![],
        };
        let t = refusal_text(&plan, "no");
        assert!(t.starts_with("QEMU refused the configuration: no ("), "{t}");
        assert!(t.contains("needs QEMU 9.0.0 or later"), "{t}");
        plan.smp = "4".into();
        assert_eq!(
            refusal_text(&plan, "no"),
            "QEMU refused the configuration: no"
        );
        assert_eq!(RunError::Refused(t).exit_code(), 5);
    }

    fn probe(vmx: bool) -> HostProbe {
        HostProbe {
            dev_kvm: Ok(()),
            cpuinfo: Some(format!(
                "flags\t\t: fpu {}\n",
                if vmx { "vmx" } else { "svm" }
            )),
            kvm_intel_nested: None,
        }
    }

    #[test]
    fn backend_choice() {
        let (b, why) = resolve_backend(Backend::Auto, &probe(false)).unwrap();
        assert_eq!(b, Backend::Bochs);
        assert_eq!(
            why,
            "runner: backend=bochs (no nested VT-x: /proc/cpuinfo has no vmx flag; Bochs emulates VMX)"
        );
        let (b, why) = resolve_backend(Backend::Auto, &probe(true)).unwrap();
        assert_eq!(b, Backend::Kvm);
        assert!(why.starts_with("runner: backend=kvm"), "{why}");
        let e = resolve_backend(Backend::Kvm, &probe(false)).unwrap_err();
        assert_eq!(e.exit_code(), 5);
        assert!(e.to_string().contains("no vmx flag"), "{e}");
        assert_eq!(
            resolve_backend(Backend::Kvm, &probe(true)).unwrap().0,
            Backend::Kvm
        );
        assert_eq!(
            resolve_backend(Backend::Qemu, &probe(false)).unwrap().0,
            Backend::Qemu
        );
        assert_eq!(
            resolve_backend(Backend::Bochs, &probe(true)).unwrap().0,
            Backend::Bochs
        );
        let mut p = probe(true);
        p.kvm_intel_nested = Some("N\n".into());
        assert_eq!(
            resolve_backend(Backend::Auto, &p).unwrap().0,
            Backend::Bochs
        );
    }

    #[test]
    fn option_conflicts() {
        let ok = RunSpec::default();
        assert!(check_options(&ok, Backend::Bochs).is_ok());
        assert!(check_options(&ok, Backend::Qemu).is_ok());
        let spec = RunSpec {
            smp: "16".into(),
            ..RunSpec::default()
        };
        let e = check_options(&spec, Backend::Bochs).unwrap_err();
        assert_eq!(e.exit_code(), 64);
        assert!(e.to_string().contains("at most 15"), "{e}");
        assert!(check_options(&spec, Backend::Qemu).is_ok());
        let spec = RunSpec {
            machine: Some(Machine::Pc),
            ..RunSpec::default()
        };
        let e = check_options(&spec, Backend::Bochs).unwrap_err();
        assert!(e.to_string().contains("--backend auto chose bochs"), "{e}");
        let spec = RunSpec {
            uefi: true,
            boot: Some(Boot::Pvh),
            ..RunSpec::default()
        };
        assert!(check_options(&spec, Backend::Qemu).is_err());
        let spec = RunSpec {
            cpu_model: Some("skylake_x".into()),
            backend: Backend::Qemu,
            ..RunSpec::default()
        };
        let e = check_options(&spec, Backend::Qemu).unwrap_err();
        assert!(e.to_string().contains("the backend is qemu"), "{e}");
        for spec in [
            RunSpec {
                gdb: true,
                ..RunSpec::default()
            },
            RunSpec {
                boot: Some(Boot::Pvh),
                ..RunSpec::default()
            },
        ] {
            assert!(check_options(&spec, Backend::Bochs).is_err());
            assert!(check_options(&spec, Backend::Qemu).is_ok());
        }
    }

    /// A finished session: its lines (the first summary among them), whether the emulator reported a triple
    /// fault, and its own output.
    fn session_end(lines: &[&str], triple_fault: bool, emulator_output: &str) -> Ended {
        Ended {
            summary: lines.iter().find_map(|l| Summary::parse_line(l)),
            triple_fault,
            ..ended(lines, Some(0), emulator_output)
        }
    }

    /// A triple fault after the summary is noted; a triple fault without one, or a summary without one, is not
    /// that note.
    #[test]
    fn a_triple_fault_after_the_summary_is_noted() {
        const NOTE: &str = "the emulator reported a triple fault after the summary line";
        let one = "[    0.000100] cpu0  INFO  hypervisor: summary: cpus=1 verdict=ok reason=none";
        let notes = |lines: &[&str], triple| {
            finish(
                Backend::Qemu,
                session_end(lines, triple, ""),
                String::new(),
                String::new(),
                None,
                vec![],
            )
            .notes
        };
        assert!(notes(&[one], true).iter().any(|n| n == NOTE));
        assert!(!notes(&[one], false).iter().any(|n| n == NOTE));
        assert!(!notes(&["boot: starting"], true).iter().any(|n| n == NOTE));
    }

    /// A run without a summary shows the last 20 non-empty lines of the emulator's own output, and no such
    /// header when it printed nothing.
    #[test]
    fn the_report_shows_the_end_of_the_emulators_output() {
        let output: String = (0..30).map(|i| format!("qemu line {i}\n\n")).collect();
        let report = |output: &str| {
            finish(
                Backend::Qemu,
                session_end(&["boot: starting"], false, output),
                String::new(),
                String::new(),
                None,
                vec![],
            )
            .report()
        };
        let r = report(&output);
        assert!(
            r.contains("runner: last lines of qemu's own output:\n"),
            "{r}"
        );
        let shown: Vec<&str> = r.lines().filter(|l| l.starts_with("  ! ")).collect();
        let expected: Vec<String> = (10..30).map(|i| format!("  ! qemu line {i}")).collect();
        assert_eq!(shown, expected);
        assert!(!report("\n  \n").contains("own output"));
    }

    #[test]
    fn quiet_turns_the_echo_off() {
        let grace = Duration::from_secs(3);
        let quiet = RunSpec {
            quiet: true,
            ..RunSpec::default()
        };
        assert!(!limits(&quiet, grace).echo);
        let l = limits(&RunSpec::default(), grace);
        assert!(l.echo);
        assert_eq!(l.grace, grace);
    }

    /// The CPU limits at their edges: 15 CPUs on Bochs, 255 on `--machine pc` (xAPIC), more only on q35.
    #[test]
    fn cpu_limits_at_their_edges() {
        let smp = |n: &str, machine: Option<Machine>| RunSpec {
            smp: n.into(),
            machine,
            ..RunSpec::default()
        };
        assert!(check_options(&smp("15", None), Backend::Bochs).is_ok());
        assert!(check_options(&smp("16", None), Backend::Bochs).is_err());
        assert!(check_options(&smp("255", Some(Machine::Pc)), Backend::Qemu).is_ok());
        let e = check_options(&smp("256", Some(Machine::Pc)), Backend::Qemu).unwrap_err();
        assert!(e.to_string().contains("holds at most 255"), "{e}");
        assert!(check_options(&smp("256", Some(Machine::Q35)), Backend::Qemu).is_ok());
        assert!(check_options(&smp("256", None), Backend::Qemu).is_ok());
    }

    fn summary(verdict: &str) -> Summary {
        Summary::parse_line(&format!(
            "[    0.000100] cpu0  INFO  hypervisor: summary: cpus=1 verdict={verdict} reason=none"
        ))
        .unwrap()
    }

    #[test]
    fn bochs_memory_and_model_checks() {
        let spec = RunSpec {
            memory_mib: 4096,
            ..RunSpec::default()
        };
        assert_eq!(
            check_options(&spec, Backend::Bochs)
                .unwrap_err()
                .exit_code(),
            64
        );
        assert!(check_options(&spec, Backend::Qemu).is_ok());
        let spec = RunSpec {
            cpu_model: Some("pentium_pro_max".into()),
            ..RunSpec::default()
        };
        let e = check_options(&spec, Backend::Bochs).unwrap_err();
        assert!(e.to_string().contains("unknown Bochs CPU model"), "{e}");
        let spec = RunSpec {
            cpu_model: Some("corei7_skylake_x".into()),
            ..RunSpec::default()
        };
        assert!(check_options(&spec, Backend::Bochs).is_ok());
    }

    #[test]
    fn status_decision_and_exit_codes() {
        assert_eq!(
            decide_status(Some(&summary("ok")), 1, false, false),
            Status::Ok
        );
        assert_eq!(
            decide_status(Some(&summary("fail")), 1, false, true),
            Status::Fail
        );
        assert_eq!(
            decide_status(Some(&summary("degraded")), 1, true, false),
            Status::Degraded
        );
        assert_eq!(
            decide_status(Some(&summary("what")), 1, false, false),
            Status::Fail
        );
        // A second summary line fails the run, whatever the first says.
        for v in ["ok", "degraded"] {
            assert_eq!(
                decide_status(Some(&summary(v)), 2, false, false),
                Status::Fail,
                "{v}"
            );
        }
        assert_eq!(
            decide_status(Some(&summary("ok")), 0, false, false),
            Status::Ok
        );
        assert_eq!(decide_status(None, 0, true, false), Status::Timeout);
        assert_eq!(decide_status(None, 0, false, true), Status::TripleFault);
        assert_eq!(decide_status(None, 0, false, false), Status::NoSummary);
        // A run that ended without a summary points at log_defer=off, unless it is already on the command line.
        for status in [Status::Timeout, Status::TripleFault, Status::NoSummary] {
            let note = deferred_lines_note(status, "vmx=off on_done=exit").unwrap();
            assert!(note.contains("log_defer=off"), "{note}");
            assert_eq!(deferred_lines_note(status, "log_defer=off vmx=off"), None);
            assert!(deferred_lines_note(status, "log_defer=off log_defer=on").is_some());
        }
        for status in [Status::Ok, Status::Fail, Status::Degraded] {
            assert_eq!(deferred_lines_note(status, ""), None);
        }
        let codes: Vec<i32> = [
            Status::Ok,
            Status::Fail,
            Status::Degraded,
            Status::NoSummary,
            Status::Timeout,
            Status::TripleFault,
        ]
        .iter()
        .map(|s| s.exit_code())
        .collect();
        assert_eq!(codes, vec![0, 1, 2, 3, 4, 3]);
        assert_eq!(RunError::Build("x".into()).exit_code(), 6);
        assert_eq!(RunError::ToolMissing("x".into()).exit_code(), 5);
        assert_eq!(RunError::Usage("x".into()).exit_code(), 64);
    }

    #[test]
    fn exit_cross_check() {
        let exit = "on_done=exit";
        assert_eq!(qemu_exit_note(Some(&summary("ok")), Some(33), exit), None);
        assert_eq!(qemu_exit_note(Some(&summary("fail")), Some(35), exit), None);
        let n = qemu_exit_note(Some(&summary("ok")), Some(35), exit).unwrap();
        assert!(n.starts_with("mismatch"), "{n}");
        let n = qemu_exit_note(Some(&summary("ok")), Some(0), exit).unwrap();
        assert!(n.contains("expected exit status 33"), "{n}");
        assert_eq!(qemu_exit_note(Some(&summary("ok")), None, exit), None);
        assert_eq!(
            qemu_exit_note(Some(&summary("ok")), Some(0), "on_done=halt"),
            None
        );
        let n = qemu_exit_note(None, Some(35), exit).unwrap();
        assert!(n.contains("verdict=fail"), "{n}");
        assert_eq!(qemu_exit_note(None, Some(0), exit), None);
    }

    #[test]
    fn an_emulator_that_exits_without_a_summary_is_no_summary() {
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c").arg("echo one; exit 0");
        let limits = Limits {
            timeout: None,
            grace: Duration::from_secs(1),
            echo: false,
        };
        let w = session::run_piped(cmd, "sh", limits).unwrap();
        assert!(!w.timed_out);
        assert!(w.summary.is_none());
        assert_eq!(w.exit_code, Some(0));
        assert_eq!(
            decide_status(w.summary.as_ref(), 0, w.timed_out, false),
            Status::NoSummary
        );
    }

    #[test]
    fn a_second_summary_line_fails_the_run() {
        let one = "[    0.000100] cpu0  INFO  hypervisor: summary: cpus=1 verdict=ok reason=none";
        let run = |script: String| {
            let mut cmd = std::process::Command::new("sh");
            cmd.arg("-c").arg(script);
            let limits = Limits {
                timeout: None,
                grace: Duration::from_secs(5),
                echo: false,
            };
            let ended = session::run_piped(cmd, "sh", limits).unwrap();
            finish(
                Backend::Qemu,
                ended,
                String::new(),
                String::new(),
                None,
                vec![],
            )
        };
        let o = run(format!("echo '{one}'; exit 0"));
        assert_eq!(o.status, Status::Ok, "{}", o.report());
        let o = run(format!("echo '{one}'; echo '{one}'; exit 0"));
        assert_eq!(o.status, Status::Fail, "{}", o.report());
        assert_eq!(o.summary.and_then(|s| s.verdict()), Some(Verdict::Ok));
    }

    #[test]
    fn report_mentions_timeout_and_tail() {
        let log: Vec<String> = (0..30).map(|i| format!("line {i}")).collect();
        let o = Outcome {
            status: Status::Timeout,
            backend: Backend::Qemu,
            log: log.join("\n"),
            summary: None,
            emulator_exit: None,
            emulator_output: String::new(),
            wall: Duration::from_secs(7),
            timeout: Some(Duration::from_secs(7)),
            cmdline: "on_done=exit".into(),
            command: String::new(),
            notes: vec![],
        };
        let r = o.report();
        assert!(r.contains("timeout after 7 s"), "{r}");
        assert!(r.contains("line 10\n") && r.contains("line 29\n"), "{r}");
        assert!(!r.contains("line 9\n"), "{r}");
        assert!(r.contains("exit=4"), "{r}");
    }
}
