//! Running one boot: backend choice, option checks, spawning the emulator, streaming the serial log,
//! deciding the outcome.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::host::{self, HostProbe, Need};
use crate::qemu::{self, Media, QemuPlan};
use crate::serial::{Summary, Verdict};
use crate::{bochs, image, stream, Backend, BochsRom, Boot, Outcome, RunError, RunSpec, Status};

/// How long the runner waits for the emulator to exit by itself after the summary line.
pub const QEMU_GRACE: Duration = Duration::from_secs(3);
pub const BOCHS_GRACE: Duration = Duration::from_secs(5);

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

/// The number of CPUs a QEMU `-smp` spec starts: its leading number or `cpus=`, else the product of
/// the topology (`sockets`, `dies`, `clusters`, `cores`, `threads`).
pub fn smp_cpu_count(spec: &str) -> Result<u32, String> {
    let bad = || format!("cannot read a CPU count from --smp {spec:?}");
    let mut cpus: Option<u32> = None;
    let mut topology: Option<u32> = None;
    for (i, item) in spec.split(',').enumerate() {
        let item = item.trim();
        let (key, value) = match item.split_once('=') {
            Some((k, v)) => (k, v),
            None if i == 0 => ("cpus", item),
            None => return Err(bad()),
        };
        let n: u32 = value.parse().map_err(|_| bad())?;
        match key {
            "cpus" => cpus = Some(n),
            "sockets" | "dies" | "clusters" | "cores" | "threads" => {
                topology = Some(topology.unwrap_or(1).checked_mul(n).ok_or_else(bad)?)
            }
            "maxcpus" | "books" | "drawers" => {}
            _ => return Err(bad()),
        }
    }
    match cpus.or(topology) {
        Some(0) | None => Err(bad()),
        Some(n) => Ok(n),
    }
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

/// The status of a finished run.
pub fn decide_status(summary: Option<&Summary>, timed_out: bool, triple_fault: bool) -> Status {
    match summary {
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

/// A scratch directory for one run (`target/runs/<prefix>-<pid>-<n>`), removed when dropped.
pub(crate) struct RunDir(pub(crate) PathBuf);

impl RunDir {
    /// A fresh `target/runs/<prefix>-...` directory (the runner's and the bench's scratch space).
    pub(crate) fn new(prefix: &str) -> Result<RunDir, RunError> {
        let dir = image::target_dir()
            .join("runs")
            .join(image::unique_name(prefix));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| RunError::Io(format!("cannot create {}: {e}", dir.display())))?;
        Ok(RunDir(dir))
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
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
    let mut child = qemu::spawn(&args)?;
    let (tx, rx) = mpsc::channel();
    let out_reader = line_reader(child.stdout.take().expect("piped"), tx);
    let err_reader = stream::spawn_collector(child.stderr.take().expect("piped"));
    let watch = watch(&mut child, rx, || {}, spec.timeout, QEMU_GRACE, spec.quiet)?;
    let _ = out_reader.join();
    let emulator_output = err_reader.join().unwrap_or_default();
    let reset = std::fs::read_to_string(&reset_log).unwrap_or_default();
    let triple = qemu::triple_fault_in_reset_log(&reset);
    let mut notes = watch.notes.clone();
    if let Some(n) = qemu_exit_note(watch.summary.as_ref(), watch.exit_code, &cmdline) {
        notes.push(n);
    }
    Ok(finish(
        backend,
        watch,
        triple,
        emulator_output,
        cmdline,
        command,
        spec.timeout,
        notes,
    ))
}

/// Programs and files Bochs needs (mirrors what `bochs::command` uses), with their packages.
pub fn bochs_needs(rom: BochsRom) -> Vec<Need> {
    let mut needs = vec![
        Need::program("bochs", "bochs"),
        Need::file(
            "/usr/lib/x86_64-linux-gnu/bochs/plugins/libbx_rfb_gui.so",
            "bochs",
        ),
        // A symlink into the vgabios package.
        Need::file("/usr/share/bochs/VGABIOS-lgpl-latest", "vgabios"),
    ];
    match rom {
        BochsRom::Bochs => needs.push(Need::file(
            "/usr/share/bochs/BIOS-bochs-latest",
            "bochsbios",
        )),
        BochsRom::SeaBios => needs.push(Need::file("/usr/share/seabios/bios.bin", "seabios")),
    }
    needs
}

/// Maps an error of `bochs::command` (it validates the configuration and checks its files).
fn bochs_error(e: std::io::Error) -> RunError {
    match e.kind() {
        std::io::ErrorKind::InvalidInput => RunError::Usage(e.to_string()),
        std::io::ErrorKind::NotFound => RunError::ToolMissing(e.to_string()),
        _ => RunError::Io(format!("cannot prepare the Bochs run: {e}")),
    }
}

fn run_bochs(spec: &RunSpec) -> Result<Outcome, RunError> {
    let rom = spec.bios.unwrap_or(BochsRom::Bochs);
    host::ensure(&bochs_needs(rom))?;
    let cpus = smp_cpu_count(&spec.smp).map_err(RunError::Usage)?;
    let kernel = kernel_for(spec)?;
    let cmdline = kernel_cmdline(&spec.append, "exit");
    let iso = image::cached_iso(&kernel, &cmdline)?;
    let dir = RunDir::new("run")?;
    let serial_log = dir.0.join("serial.log");
    let cfg = bochs::BochsConfig {
        cpus,
        cpu_model: spec
            .cpu_model
            .clone()
            .unwrap_or_else(|| crate::DEFAULT_CPU_MODEL.to_string()),
        memory_mib: spec.memory_mib,
        iso,
        serial_log: serial_log.clone(),
        rom,
        workdir: dir.0.clone(),
    };
    let mut cmd = bochs::command(&cfg).map_err(bochs_error)?;
    cmd.args(&spec.extra_args);
    let mut shown = vec![cmd.get_program().to_string_lossy().into_owned()];
    shown.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    let command = qemu::shell_quote(&shown);
    eprintln!("runner: {command}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| RunError::Spawn(format!("bochs: {e}")))?;
    let (tx, rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let tail = file_tail(serial_log, Arc::clone(&stop), tx);
    let out = stream::spawn_collector(child.stdout.take().expect("piped"));
    let err = stream::spawn_collector(child.stderr.take().expect("piped"));
    let stop_tail = || stop.store(true, Ordering::SeqCst);
    let watch = watch(
        &mut child,
        rx,
        stop_tail,
        spec.timeout,
        BOCHS_GRACE,
        spec.quiet,
    )?;
    stop.store(true, Ordering::SeqCst);
    let _ = tail.join();
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let bochs_log = std::fs::read_to_string(dir.0.join(bochs::LOG_FILE)).unwrap_or_default();
    let triple = bochs::triple_fault_in(&stdout)
        || bochs::triple_fault_in(&stderr)
        || bochs::triple_fault_in(&bochs_log);
    // The end of Bochs' log file, then its stdout and stderr (where its exit message is).
    let mut emulator_output = String::new();
    let log_lines: Vec<&str> = bochs_log.lines().collect();
    if !log_lines.is_empty() {
        emulator_output.push_str(&format!("--- {} (last 40 lines)\n", bochs::LOG_FILE));
        for l in &log_lines[log_lines.len().saturating_sub(40)..] {
            emulator_output.push_str(l);
            emulator_output.push('\n');
        }
        emulator_output.push_str("--- stdout and stderr\n");
    }
    emulator_output.push_str(&stdout);
    emulator_output.push_str(&stderr);
    let notes = watch.notes.clone();
    Ok(finish(
        Backend::Bochs,
        watch,
        triple,
        emulator_output,
        cmdline,
        command,
        spec.timeout,
        notes,
    ))
}

#[allow(clippy::too_many_arguments)]
fn finish(
    backend: Backend,
    watch: Watch,
    triple: bool,
    emulator_output: String,
    cmdline: String,
    command: String,
    timeout: Option<Duration>,
    mut notes: Vec<String>,
) -> Outcome {
    let status = decide_status(watch.summary.as_ref(), watch.timed_out, triple);
    if watch
        .lines
        .iter()
        .any(|l| l.contains(crate::iso::BOOT_FAILED_MARKER))
    {
        notes.push("GRUB could not load or start the kernel (see its message in the log)".into());
    }
    if triple && watch.summary.is_some() {
        notes.push("the emulator reported a triple fault after the summary line".into());
    }
    notes.extend(deferred_lines_note(status, &cmdline));
    Outcome {
        status,
        backend,
        log: watch.lines.join("\n"),
        summary: watch.summary,
        emulator_exit: watch.exit_code,
        emulator_output,
        wall: watch.wall,
        timeout,
        cmdline,
        command,
        notes,
    }
}

enum Event {
    Line(String),
    Eof,
}

/// Splits a byte stream into lines (`\n`; a trailing `\r` is dropped; invalid UTF-8 is replaced).
#[derive(Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
}

impl LineSplitter {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            out.push(clean_line(&line[..line.len() - 1]));
        }
        out
    }

    /// The unterminated rest, if any.
    pub fn finish(&mut self) -> Option<String> {
        if self.buf.is_empty() {
            return None;
        }
        let rest = std::mem::take(&mut self.buf);
        Some(clean_line(&rest))
    }
}

fn clean_line(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    s.trim_end_matches('\r').replace('\r', "")
}

/// The serial stream's lines, then its end, as runner events.
fn line_reader<R: Read + Send + 'static>(r: R, tx: Sender<Event>) -> JoinHandle<()> {
    let end = tx.clone();
    stream::spawn_line_reader(
        r,
        move |line| {
            let _ = tx.send(Event::Line(line));
        },
        move || {
            let _ = end.send(Event::Eof);
        },
    )
}

/// Follows the serial log file Bochs appends to, as runner events.
fn file_tail(path: PathBuf, stop: Arc<AtomicBool>, tx: Sender<Event>) -> JoinHandle<()> {
    let end = tx.clone();
    stream::spawn_file_tail(
        path,
        Duration::from_millis(25),
        stop,
        move |line| {
            let _ = tx.send(Event::Line(line));
        },
        move || {
            let _ = end.send(Event::Eof);
        },
    )
}

struct Watch {
    lines: Vec<String>,
    summary: Option<Summary>,
    exit_code: Option<i32>,
    timed_out: bool,
    wall: Duration,
    notes: Vec<String>,
}

/// Streams lines until the emulator is done: it exited (and its output is drained), or it did not
/// exit within `grace` after the summary line, or the timeout passed without a summary line.
/// `on_exit` is called once the emulator has exited (the file tail uses it to do a last read).
fn watch(
    child: &mut Child,
    rx: Receiver<Event>,
    on_exit: impl Fn(),
    timeout: Option<Duration>,
    grace: Duration,
    quiet: bool,
) -> Result<Watch, RunError> {
    let start = Instant::now();
    let mut lines: Vec<String> = Vec::new();
    let mut summary: Option<Summary> = None;
    let mut extra_summaries = 0usize;
    let mut summary_at: Option<Instant> = None;
    let mut eof = false;
    let mut exited: Option<(ExitStatus, Instant)> = None;
    let mut killed = false;
    let mut timed_out = false;
    let mut notes = Vec::new();
    let stdout = std::io::stdout();

    let mut take = |line: String,
                    lines: &mut Vec<String>,
                    summary: &mut Option<Summary>,
                    summary_at: &mut Option<Instant>| {
        if !quiet {
            // Firmware and GRUB write terminal escape sequences (clear screen, colours) to the serial
            // port; they are kept in the log but not replayed on the user's terminal.
            let mut out = stdout.lock();
            let _ = writeln!(out, "{}", crate::serial::strip_ansi(&line));
            let _ = out.flush();
        }
        if let Some(s) = Summary::parse_line(&line) {
            if summary.is_none() {
                *summary = Some(s);
                *summary_at = Some(Instant::now());
            } else {
                extra_summaries += 1;
            }
        }
        lines.push(line);
    };

    loop {
        if eof {
            thread::sleep(Duration::from_millis(20));
        } else {
            match rx.recv_timeout(Duration::from_millis(20)) {
                Ok(Event::Line(l)) => take(l, &mut lines, &mut summary, &mut summary_at),
                Ok(Event::Eof) | Err(RecvTimeoutError::Disconnected) => eof = true,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        if exited.is_none() {
            if let Some(st) = child
                .try_wait()
                .map_err(|e| RunError::Io(format!("waiting for the emulator: {e}")))?
            {
                exited = Some((st, Instant::now()));
                on_exit();
            }
        }
        if let Some((_, at)) = exited {
            // Wait for the output to drain, but not forever.
            if eof || at.elapsed() > Duration::from_secs(3) {
                break;
            }
            continue;
        }
        if let Some(at) = summary_at {
            if at.elapsed() > grace {
                notes.push(format!(
                    "the emulator did not exit within {} s after the summary line; killed it",
                    grace.as_secs()
                ));
                killed = true;
                break;
            }
            continue;
        }
        if timeout.is_some_and(|t| start.elapsed() >= t) {
            timed_out = true;
            killed = true;
            break;
        }
    }
    let wall = start.elapsed();
    let exit_code = if killed {
        let _ = child.kill();
        let _ = child.wait();
        on_exit();
        None
    } else {
        exited.and_then(|(st, _)| st.code())
    };
    // Whatever is still in flight.
    let drain_until = Instant::now() + Duration::from_secs(2);
    while !eof && Instant::now() < drain_until {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(Event::Line(l)) => take(l, &mut lines, &mut summary, &mut summary_at),
            Ok(Event::Eof) | Err(RecvTimeoutError::Disconnected) => eof = true,
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
    if timed_out && summary.is_some() {
        // The summary arrived while the emulator was being killed: the verdict stands.
        timed_out = false;
    }
    if extra_summaries > 0 {
        notes.push(format!(
            "{extra_summaries} more summary line(s) after the first (the contract says exactly one)"
        ));
    }
    Ok(Watch {
        lines,
        summary,
        exit_code,
        timed_out,
        wall,
        notes,
    })
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
    use std::process::Command;

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

    #[test]
    fn smp_counts() {
        assert_eq!(smp_cpu_count("4"), Ok(4));
        assert_eq!(smp_cpu_count("6,sockets=2,cores=3"), Ok(6));
        assert_eq!(smp_cpu_count("sockets=2,cores=3,threads=2"), Ok(12));
        assert_eq!(smp_cpu_count("cpus=3,maxcpus=8"), Ok(3));
        assert_eq!(smp_cpu_count("2,maxcpus=4"), Ok(2));
        assert!(smp_cpu_count("").is_err());
        assert!(smp_cpu_count("0").is_err());
        assert!(smp_cpu_count("x").is_err());
        assert!(smp_cpu_count("maxcpus=4").is_err());
        assert!(smp_cpu_count("2,bogus=1").is_err());
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

    fn summary(verdict: &str) -> Summary {
        Summary::parse_line(&format!(
            "[    0.000100] cpu0  INFO  hypervisor: summary: cpus=1 verdict={verdict} reason=none"
        ))
        .unwrap()
    }

    #[test]
    fn bochs_needs_are_bochs_packages() {
        for rom in [BochsRom::Bochs, BochsRom::SeaBios] {
            for need in bochs_needs(rom) {
                assert!(
                    bochs::BOCHS_PACKAGES.contains(&need.package()),
                    "{} not in bochs::BOCHS_PACKAGES",
                    need.package()
                );
            }
        }
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
            decide_status(Some(&summary("ok")), false, false),
            Status::Ok
        );
        assert_eq!(
            decide_status(Some(&summary("fail")), false, true),
            Status::Fail
        );
        assert_eq!(
            decide_status(Some(&summary("degraded")), true, false),
            Status::Degraded
        );
        assert_eq!(
            decide_status(Some(&summary("what")), false, false),
            Status::Fail
        );
        assert_eq!(decide_status(None, true, false), Status::Timeout);
        assert_eq!(decide_status(None, false, true), Status::TripleFault);
        assert_eq!(decide_status(None, false, false), Status::NoSummary);
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
    fn line_splitting() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"ab"), Vec::<String>::new());
        assert_eq!(s.push(b"c\r\nde\n\nf"), vec!["abc", "de", ""]);
        assert_eq!(s.push(b"\xff\n"), vec!["f\u{fffd}"]);
        assert_eq!(s.finish(), None);
        s.push(b"tail\r");
        assert_eq!(s.finish().as_deref(), Some("tail"));
    }

    const SUMMARY_OK: &str =
        "[    0.000100] cpu0  INFO  hypervisor: summary: cpus=1 verdict=ok reason=none";

    /// Runs `script` under `sh` as a stand-in emulator whose stdout is the serial port.
    fn watch_sh(script: &str, timeout: Option<Duration>, grace: Duration) -> Watch {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = line_reader(child.stdout.take().unwrap(), tx);
        let w = watch(&mut child, rx, || {}, timeout, grace, true).unwrap();
        reader.join().unwrap();
        w
    }

    #[test]
    fn watch_summary_then_exit() {
        let w = watch_sh(
            &format!("echo boot; printf '%s\\r\\n' '{SUMMARY_OK}'; printf 'last'; exit 33"),
            Some(Duration::from_secs(20)),
            Duration::from_secs(20),
        );
        assert_eq!(w.lines, vec!["boot", SUMMARY_OK, "last"]);
        assert_eq!(w.summary.unwrap().verdict(), Some(Verdict::Ok));
        assert_eq!(w.exit_code, Some(33));
        assert!(!w.timed_out);
        assert!(w.notes.is_empty(), "{:?}", w.notes);
    }

    #[test]
    fn watch_kills_after_grace() {
        let w = watch_sh(
            &format!("echo '{SUMMARY_OK}'; echo '{SUMMARY_OK}'; exec sleep 30"),
            Some(Duration::from_secs(20)),
            Duration::from_millis(300),
        );
        assert!(w.summary.is_some());
        assert_eq!(w.exit_code, None);
        assert!(!w.timed_out);
        assert!(w.wall < Duration::from_secs(10));
        assert_eq!(w.notes.len(), 2, "{:?}", w.notes);
    }

    #[test]
    fn watch_times_out_without_summary() {
        let w = watch_sh(
            "echo one; exec sleep 30",
            Some(Duration::from_millis(400)),
            Duration::from_secs(1),
        );
        assert!(w.timed_out);
        assert!(w.summary.is_none());
        assert_eq!(w.lines, vec!["one"]);
        assert!(w.wall < Duration::from_secs(10));
    }

    #[test]
    fn watch_exit_without_summary() {
        let w = watch_sh("echo one; exit 0", None, Duration::from_secs(1));
        assert!(!w.timed_out);
        assert!(w.summary.is_none());
        assert_eq!(w.exit_code, Some(0));
        assert_eq!(
            decide_status(w.summary.as_ref(), w.timed_out, false),
            Status::NoSummary
        );
    }

    #[test]
    fn file_tail_follows_and_finishes() {
        let dir = std::env::temp_dir().join(image::unique_name("xtask-tail-test"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("serial.log");
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        // The file does not exist yet when the tail starts.
        let tail = file_tail(path.clone(), Arc::clone(&stop), tx);
        thread::sleep(Duration::from_millis(60));
        std::fs::write(&path, "a\r\nb").unwrap();
        thread::sleep(Duration::from_millis(100));
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"c\nd").unwrap();
        drop(f);
        stop.store(true, Ordering::SeqCst);
        tail.join().unwrap();
        let mut got = Vec::new();
        while let Ok(ev) = rx.try_recv() {
            match ev {
                Event::Line(l) => got.push(l),
                Event::Eof => got.push("<eof>".into()),
            }
        }
        assert_eq!(got, vec!["a", "bc", "d", "<eof>"]);
        let _ = std::fs::remove_dir_all(&dir);
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
