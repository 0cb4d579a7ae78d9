//! One emulator session: spawn the emulator, read its serial port line by line (QEMU: its stdout; Bochs: the
//! file it appends COM1 to), stamp each line with when it arrived, watch for the summary line, the emulator's
//! exit, a triple fault and the timeout, kill it when needed and drain what is still in flight.
//!
//! The runner ([`crate::run`], and so the soak) and the benchmark both boot through [`run_qemu`] and
//! [`run_bochs`]; they differ only in what they make of the [`Ended`] session.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::serial::Summary;
use crate::{bochs, image, qemu, RunError};

/// How long QEMU may take to exit by itself after the summary line before it is killed.
pub const QEMU_GRACE: Duration = Duration::from_secs(3);
/// The same for Bochs, which drains its emulated UART before it shuts down.
pub const BOCHS_GRACE: Duration = Duration::from_secs(5);
/// After the emulator exited: how long its serial output may take to reach its end.
pub const EXIT_DRAIN: Duration = Duration::from_secs(3);
/// After the session killed the emulator: how long lines still in flight are collected.
pub const KILL_DRAIN: Duration = Duration::from_secs(2);
/// Bochs' serial log file is polled this often (the resolution of its line stamps).
pub const FILE_POLL: Duration = Duration::from_millis(5);

/// A serial line and when it arrived, since the emulator was started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timed {
    pub at: Duration,
    pub line: String,
}

/// What a session watches for, besides the emulator's exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Kill the emulator when no summary line came within this time of its start. `None`: wait forever.
    pub timeout: Option<Duration>,
    /// Kill the emulator when it has not exited this long after the summary line.
    pub grace: Duration,
    /// Print every line to stdout as it arrives (terminal escape sequences removed).
    pub echo: bool,
}

/// A finished session.
#[derive(Clone, Debug)]
pub struct Ended {
    /// Every serial line (carriage returns removed), stamped.
    pub lines: Vec<Timed>,
    /// The first summary line.
    pub summary: Option<Summary>,
    /// The emulator's exit status (`None`: the session killed it, or a signal ended it).
    pub exit_code: Option<i32>,
    /// No summary line before the timeout: the session killed the emulator.
    pub timed_out: bool,
    /// The emulator reported a triple fault (QEMU's `-d cpu_reset` log, Bochs' panic message).
    pub triple_fault: bool,
    /// Emulator start until it exited or was killed.
    pub wall: Duration,
    /// The emulator's own output (QEMU: stderr; Bochs: the end of its log file, stdout and stderr).
    pub emulator_output: String,
    /// What the session noticed: a kill after the summary, more than one summary line.
    pub notes: Vec<String>,
}

impl Ended {
    /// The serial lines without their stamps.
    pub fn texts(&self) -> Vec<String> {
        self.lines.iter().map(|t| t.line.clone()).collect()
    }
}

/// A scratch directory for one session (`target/runs/<prefix>-<pid>-<n>`), removed when dropped.
pub struct RunDir(pub PathBuf);

impl RunDir {
    pub fn new(prefix: &str) -> Result<RunDir, RunError> {
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

/// Boots QEMU with `args` (from [`qemu::QemuPlan::args`], whose `reset_log` must be `reset_log`): its stdout
/// is the serial port.
pub fn run_qemu(args: &[String], reset_log: &Path, limits: Limits) -> Result<Ended, RunError> {
    let mut cmd = Command::new(qemu::QEMU_PROGRAM);
    cmd.args(args);
    let mut ended = run_piped(cmd, qemu::QEMU_PROGRAM, limits)?;
    let reset = std::fs::read_to_string(reset_log).unwrap_or_default();
    ended.triple_fault = qemu::triple_fault_in_reset_log(&reset);
    Ok(ended)
}

/// The installed QEMU's version (`qemu-system-x86_64 --version`); `None` if it cannot be read.
pub fn qemu_version() -> Option<qemu::QemuVersion> {
    let out = Command::new(qemu::QEMU_PROGRAM)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    qemu::QemuVersion::parse(&String::from_utf8_lossy(&out.stdout))
}

/// Fails (exit status 5) when `plan` needs a newer QEMU than the installed one (x2APIC, more than 255 CPUs
/// under TCG). An unreadable version passes: a refusal is then reported as QEMU's own message.
pub fn check_qemu_version(plan: &qemu::QemuPlan) -> Result<(), RunError> {
    if plan.needs_new_qemu().is_none() {
        return Ok(());
    }
    match qemu_version() {
        Some(v) => plan.check_version(v).map_err(RunError::ToolMissing),
        None => Ok(()),
    }
}

/// Starts `cmd` with stdin closed and stdout and stderr piped; returns the child and when it started (the
/// origin of every line's time stamp).
fn spawn_piped(mut cmd: Command, program: &str) -> Result<(Child, Instant), RunError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| RunError::Spawn(format!("{program}: {e}")))?;
    Ok((child, start))
}

/// Runs `cmd` with stdin closed, its stdout as the serial port and its stderr collected as the emulator's
/// output.
pub fn run_piped(cmd: Command, program: &str, limits: Limits) -> Result<Ended, RunError> {
    let (mut child, start) = spawn_piped(cmd, program)?;
    let (tx, rx) = mpsc::channel();
    let reader = spawn_line_reader(child.stdout.take().expect("piped"), start, tx);
    let err = spawn_collector(child.stderr.take().expect("piped"));
    let watched = watch(&mut child, &rx, start, || {}, limits);
    let _ = reader.join();
    let emulator_output = err.join().unwrap_or_default();
    Ok(watched?.ended(emulator_output, false))
}

/// Maps an error of [`bochs::command`] (it validates the configuration and checks its files).
pub fn bochs_error(e: std::io::Error) -> RunError {
    match e.kind() {
        std::io::ErrorKind::InvalidInput => RunError::Usage(e.to_string()),
        std::io::ErrorKind::NotFound => RunError::ToolMissing(e.to_string()),
        _ => RunError::Io(format!("cannot prepare the Bochs run: {e}")),
    }
}

/// Boots Bochs as `cmd` (from [`bochs::command`] with `cfg`): COM1 goes to `cfg.serial_log`, which is
/// followed; Bochs' log file, stdout and stderr are its own output.
pub fn run_bochs(
    cmd: Command,
    cfg: &bochs::BochsConfig,
    limits: Limits,
) -> Result<Ended, RunError> {
    let (mut child, start) = spawn_piped(cmd, "bochs")?;
    let (tx, rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let tail = spawn_file_tail(cfg.serial_log.clone(), start, Arc::clone(&stop), tx);
    let out = spawn_collector(child.stdout.take().expect("piped"));
    let err = spawn_collector(child.stderr.take().expect("piped"));
    let watched = watch(
        &mut child,
        &rx,
        start,
        || stop.store(true, Ordering::SeqCst),
        limits,
    );
    stop.store(true, Ordering::SeqCst);
    let _ = tail.join();
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let bochs_log = std::fs::read_to_string(cfg.workdir.join(bochs::LOG_FILE)).unwrap_or_default();
    let triple = bochs::triple_fault_in(&stdout)
        || bochs::triple_fault_in(&stderr)
        || bochs::triple_fault_in(&bochs_log);
    // The end of Bochs' log file, then its stdout and stderr (where its exit message is).
    let mut output = String::new();
    let log_lines: Vec<&str> = bochs_log.lines().collect();
    if !log_lines.is_empty() {
        output.push_str(&format!("--- {} (last 40 lines)\n", bochs::LOG_FILE));
        for l in &log_lines[log_lines.len().saturating_sub(40)..] {
            output.push_str(l);
            output.push('\n');
        }
        output.push_str("--- stdout and stderr\n");
    }
    output.push_str(&stdout);
    output.push_str(&stderr);
    Ok(watched?.ended(output, triple))
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

enum Event {
    Line(Timed),
    Eof,
}

fn send_line(tx: &Sender<Event>, start: Instant, line: String) {
    let _ = tx.send(Event::Line(Timed {
        at: start.elapsed(),
        line,
    }));
}

/// Reads `r` until end of file, sending every line (an unterminated last line included), then the end.
fn spawn_line_reader<R: Read + Send + 'static>(
    mut r: R,
    start: Instant,
    tx: Sender<Event>,
) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut splitter = LineSplitter::default();
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    for l in splitter.push(&buf[..n]) {
                        send_line(&tx, start, l);
                    }
                }
            }
        }
        if let Some(l) = splitter.finish() {
            send_line(&tx, start, l);
        }
        let _ = tx.send(Event::Eof);
    })
}

/// Follows `path`, which the emulator appends to (it may not exist yet), every [`FILE_POLL`], until `stop`
/// is set; then reads the rest once more and sends what is left and the end.
fn spawn_file_tail(
    path: PathBuf,
    start: Instant,
    stop: Arc<AtomicBool>,
    tx: Sender<Event>,
) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut splitter = LineSplitter::default();
        let mut file: Option<std::fs::File> = None;
        let mut buf = vec![0u8; 16384];
        loop {
            let stopping = stop.load(Ordering::SeqCst);
            if file.is_none() {
                file = std::fs::File::open(&path).ok();
            }
            if let Some(f) = file.as_mut() {
                while let Ok(n) = f.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    for l in splitter.push(&buf[..n]) {
                        send_line(&tx, start, l);
                    }
                }
            }
            if stopping {
                break;
            }
            thread::sleep(FILE_POLL);
        }
        if let Some(l) = splitter.finish() {
            send_line(&tx, start, l);
        }
        let _ = tx.send(Event::Eof);
    })
}

/// Reads `r` to the end into a string (lossy UTF-8): an emulator's own messages.
fn spawn_collector<R: Read + Send + 'static>(mut r: R) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = r.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// What [`watch`] saw.
struct Watched {
    lines: Vec<Timed>,
    summary: Option<Summary>,
    exit_code: Option<i32>,
    timed_out: bool,
    wall: Duration,
    notes: Vec<String>,
}

impl Watched {
    fn ended(self, emulator_output: String, triple_fault: bool) -> Ended {
        Ended {
            lines: self.lines,
            summary: self.summary,
            exit_code: self.exit_code,
            timed_out: self.timed_out,
            triple_fault,
            wall: self.wall,
            emulator_output,
            notes: self.notes,
        }
    }
}

/// Collects lines until the emulator is done: it exited (and its output drained, at most [`EXIT_DRAIN`]), or
/// it did not exit within `limits.grace` after the summary line, or the timeout passed without a summary
/// line; then kills it if needed and collects what is still in flight (at most [`KILL_DRAIN`]). `on_exit` is
/// called once the emulator has exited or was killed (the file tail uses it to do a last read).
fn watch(
    child: &mut Child,
    rx: &Receiver<Event>,
    start: Instant,
    on_exit: impl Fn(),
    limits: Limits,
) -> Result<Watched, RunError> {
    let mut w = Watched {
        lines: Vec::new(),
        summary: None,
        exit_code: None,
        timed_out: false,
        wall: Duration::ZERO,
        notes: Vec::new(),
    };
    let mut extra_summaries = 0usize;
    let mut summary_at: Option<Instant> = None;
    let mut eof = false;
    let mut exited: Option<(ExitStatus, Instant)> = None;
    let mut killed = false;
    let stdout = std::io::stdout();

    let mut take = |t: Timed, w: &mut Watched, summary_at: &mut Option<Instant>| {
        if limits.echo {
            // Firmware and GRUB write terminal escape sequences (clear screen, colours) to the serial
            // port; they are kept in the log but not replayed on the user's terminal.
            let mut out = stdout.lock();
            let _ = writeln!(out, "{}", crate::serial::strip_ansi(&t.line));
            let _ = out.flush();
        }
        if let Some(s) = Summary::parse_line(&t.line) {
            if w.summary.is_none() {
                w.summary = Some(s);
                *summary_at = Some(Instant::now());
            } else {
                extra_summaries += 1;
            }
        }
        w.lines.push(t);
    };

    loop {
        if eof {
            thread::sleep(Duration::from_millis(10));
        } else {
            match rx.recv_timeout(Duration::from_millis(10)) {
                Ok(Event::Line(t)) => take(t, &mut w, &mut summary_at),
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
                w.wall = start.elapsed();
                on_exit();
            }
        }
        if let Some((_, at)) = exited {
            // Wait for the output to drain, but not forever.
            if eof || at.elapsed() > EXIT_DRAIN {
                break;
            }
            continue;
        }
        if let Some(at) = summary_at {
            if at.elapsed() > limits.grace {
                w.notes.push(format!(
                    "the emulator did not exit within {} s after the summary line; killed it",
                    limits.grace.as_secs()
                ));
                killed = true;
                break;
            }
            continue;
        }
        if limits.timeout.is_some_and(|t| start.elapsed() >= t) {
            w.timed_out = true;
            killed = true;
            break;
        }
    }
    if killed {
        w.wall = start.elapsed();
        let _ = child.kill();
        let _ = child.wait();
        on_exit();
    } else {
        w.exit_code = exited.and_then(|(st, _)| st.code());
    }
    // Whatever is still in flight.
    let drain_until = Instant::now() + KILL_DRAIN;
    while !eof && Instant::now() < drain_until {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(Event::Line(t)) => take(t, &mut w, &mut summary_at),
            Ok(Event::Eof) | Err(RecvTimeoutError::Disconnected) => eof = true,
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
    if w.timed_out && w.summary.is_some() {
        // The summary arrived while the emulator was being killed: the verdict stands.
        w.timed_out = false;
    }
    if extra_summaries > 0 {
        w.notes.push(format!(
            "{extra_summaries} more summary line(s) after the first (the contract says exactly one)"
        ));
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serial::Verdict;

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
    fn watch_sh(script: &str, timeout: Option<Duration>, grace: Duration) -> Ended {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script);
        run_piped(
            cmd,
            "sh",
            Limits {
                timeout,
                grace,
                echo: false,
            },
        )
        .unwrap()
    }

    #[test]
    fn watch_summary_then_exit() {
        let w = watch_sh(
            &format!("echo boot; printf '%s\\r\\n' '{SUMMARY_OK}'; printf 'last'; exit 33"),
            Some(Duration::from_secs(20)),
            Duration::from_secs(20),
        );
        assert_eq!(w.texts(), vec!["boot", SUMMARY_OK, "last"]);
        assert!(w.lines.windows(2).all(|p| p[0].at <= p[1].at));
        assert!(w.lines.iter().all(|t| t.at <= w.wall + KILL_DRAIN));
        assert_eq!(w.summary.unwrap().verdict(), Some(Verdict::Ok));
        assert_eq!(w.exit_code, Some(33));
        assert!(!w.timed_out && !w.triple_fault);
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
        assert_eq!(w.texts(), vec!["one"]);
        assert!(w.wall < Duration::from_secs(10));
        assert!(w.wall >= Duration::from_millis(400));
    }

    #[test]
    fn watch_exit_without_summary() {
        let w = watch_sh(
            "echo one; echo oops >&2; exit 0",
            None,
            Duration::from_secs(1),
        );
        assert!(!w.timed_out);
        assert!(w.summary.is_none());
        assert_eq!(w.exit_code, Some(0));
        assert_eq!(w.emulator_output, "oops\n");
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let e = run_piped(
            Command::new("/nonexistent/emulator"),
            "emulator",
            Limits {
                timeout: None,
                grace: QEMU_GRACE,
                echo: false,
            },
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), 5);
        assert!(e.to_string().contains("emulator"), "{e}");
    }

    #[test]
    fn bochs_errors_map_to_usage_missing_and_io() {
        use std::io::{Error, ErrorKind};
        assert_eq!(
            bochs_error(Error::new(ErrorKind::InvalidInput, "x")).exit_code(),
            64
        );
        assert_eq!(
            bochs_error(Error::new(ErrorKind::NotFound, "x")).exit_code(),
            5
        );
        assert!(matches!(bochs_error(Error::other("x")), RunError::Io(_)));
    }

    #[test]
    fn file_tail_follows_and_finishes() {
        let dir = std::env::temp_dir().join(image::unique_name("xtask-tail-test"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("serial.log");
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        // The file does not exist yet when the tail starts.
        let tail = spawn_file_tail(path.clone(), Instant::now(), Arc::clone(&stop), tx);
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
                Event::Line(t) => got.push(t.line),
                Event::Eof => got.push("<eof>".into()),
            }
        }
        assert_eq!(got, vec!["a", "bc", "d", "<eof>"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
