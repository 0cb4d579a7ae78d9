//! The serial log: COM1 behind the `log` facade, one whole line at a time (docs/serial-log.md).

use crate::{arch, percpu, time};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU32, Ordering};
use uart_16550::SerialPort;

const COM1: u16 = 0x3F8;
const LINE_MAX: usize = 512;

/// Fixed-size line buffer; text past the end is cut and marked with `...`.
pub struct LineBuf {
    bytes: [u8; LINE_MAX],
    len: usize,
    cut: bool,
}

impl LineBuf {
    pub const fn new() -> Self {
        LineBuf {
            bytes: [0; LINE_MAX],
            len: 0,
            cut: false,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    fn finish(&mut self) {
        // Room for "...\r\n" is always kept free by `write_str`.
        if self.cut {
            self.bytes[self.len..self.len + 3].copy_from_slice(b"...");
            self.len += 3;
        }
        self.bytes[self.len..self.len + 2].copy_from_slice(b"\r\n");
        self.len += 2;
    }
}

impl Default for LineBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Keep the line one line: a stray newline in a message would break the format's parsers.
        for &b in s.as_bytes().iter() {
            if self.len >= LINE_MAX - 5 {
                self.cut = true;
                break;
            }
            self.bytes[self.len] = if b == b'\n' || b == b'\r' { b' ' } else { b };
            self.len += 1;
        }
        Ok(())
    }
}

/// Formats one log line exactly as docs/serial-log.md specifies.
pub fn format_line(
    out: &mut LineBuf,
    now_us: u64,
    cpu: u32,
    level: log::Level,
    target: &str,
    args: fmt::Arguments,
) {
    let level = match level {
        log::Level::Error => "ERROR",
        log::Level::Warn => "WARN ",
        log::Level::Info => "INFO ",
        log::Level::Debug => "DEBUG",
        log::Level::Trace => "TRACE",
    };
    let mut cpu_field = LineBuf::new();
    let _ = write!(cpu_field, "cpu{cpu}");
    let cpu_text = core::str::from_utf8(cpu_field.as_bytes()).unwrap_or("cpu?");
    let _ = write!(
        out,
        "[{:5}.{:06}] {:<5} {} {}: {}",
        now_us / 1_000_000,
        now_us % 1_000_000,
        cpu_text,
        level,
        target,
        args
    );
    out.finish();
}

/// Serializes whole lines across CPUs. Re-entrant for the CPU that holds it, so an exception raised while a
/// line is being written can still report itself instead of deadlocking.
struct LineLock {
    owner: AtomicU32,
}

const FREE: u32 = u32::MAX;
/// If a holder never lets go (it died mid-line), the log is worth more than strict ordering.
const STEAL_AFTER_SPINS: u32 = 200_000_000;

impl LineLock {
    fn with<R>(&self, f: impl FnOnce() -> R) -> R {
        let me = percpu::current_index();
        if self.owner.load(Ordering::Acquire) == me {
            return f();
        }
        let mut spins = 0u32;
        while self
            .owner
            .compare_exchange_weak(FREE, me, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            arch::pause();
            spins += 1;
            if spins == STEAL_AFTER_SPINS {
                self.owner.store(me, Ordering::Release);
                break;
            }
        }
        let r = f();
        self.owner.store(FREE, Ordering::Release);
        r
    }
}

static LINE_LOCK: LineLock = LineLock {
    owner: AtomicU32::new(FREE),
};

fn port() -> SerialPort {
    // SAFETY: 0x3F8 is COM1 on every PC and emulator we target; the port object holds only the port numbers,
    // and all writes go through `LINE_LOCK`, so no two CPUs drive the UART at once.
    unsafe { SerialPort::new(COM1) }
}

pub fn init_uart() {
    port().init();
}

/// Writes raw bytes as one unit (used for lines and for the summary).
pub fn write_bytes(bytes: &[u8]) {
    LINE_LOCK.with(|| {
        // `uart_16550::init` enables the 16-byte transmit FIFO: once the holding register reports empty (LSR
        // bit 5), 16 bytes fit. One status read per 16 bytes instead of per byte halves the port I/O, which is
        // most of what a log line costs under emulation.
        for chunk in bytes.chunks(UART_FIFO_BYTES) {
            wait_for_lsr(LSR_THR_EMPTY);
            for &b in chunk {
                // SAFETY: writing the transmit holding register of COM1 only sends the byte; the line lock
                // serializes writers.
                unsafe { arch::port::outb(COM1, b) };
            }
        }
    });
}

const UART_FIFO_BYTES: usize = 16;
const LSR_THR_EMPTY: u8 = 0x20;
const LSR_TRANSMITTER_EMPTY: u8 = 0x40;

/// Polls the line status register until `bit` is set, for a bounded time (a missing UART must not hang us).
fn wait_for_lsr(bit: u8) {
    for _ in 0..10_000_000u32 {
        // SAFETY: reading the UART's line status register has no side effects.
        if unsafe { arch::port::inb(COM1 + 5) } & bit != 0 {
            return;
        }
        arch::pause();
    }
}

/// Waits until the UART has shifted out its last bit (LSR bit 6), so nothing is lost when the emulator exits.
pub fn drain() {
    wait_for_lsr(LSR_TRANSMITTER_EMPTY);
}

struct SerialLogger;

impl log::Log for SerialLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // The timestamp is taken under the lock, so the log reads in time order across cores.
        let cpu = percpu::current_index();
        LINE_LOCK.with(|| {
            let mut line = LineBuf::new();
            format_line(
                &mut line,
                time::now_us(),
                cpu,
                record.level(),
                record.target(),
                *record.args(),
            );
            write_bytes(line.as_bytes());
        });
    }

    fn flush(&self) {
        drain();
    }
}

static LOGGER: SerialLogger = SerialLogger;

pub fn init(level: log::LevelFilter) {
    init_uart();
    // Only fails if a logger is already set, which cannot happen: init runs once on the BSP.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(now: u64, cpu: u32, level: log::Level, target: &str, msg: &str) -> String {
        let mut b = LineBuf::new();
        format_line(&mut b, now, cpu, level, target, format_args!("{msg}"));
        String::from_utf8(b.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn matches_the_documented_format() {
        assert_eq!(
            line(1_234, 0, log::Level::Info, "boot", "loader=pvh"),
            "[    0.001234] cpu0  INFO  boot: loader=pvh\r\n"
        );
        assert_eq!(
            line(12_345_678_901, 14, log::Level::Warn, "smp::bringup", "x"),
            "[12345.678901] cpu14 WARN  smp::bringup: x\r\n"
        );
    }

    #[test]
    fn newlines_are_flattened_and_long_lines_cut() {
        assert_eq!(
            line(0, 1, log::Level::Error, "t", "a\nb"),
            "[    0.000000] cpu1  ERROR t: a b\r\n"
        );
        let long = "x".repeat(2000);
        let l = line(0, 1, log::Level::Debug, "t", &long);
        assert!(l.len() <= LINE_MAX);
        assert!(l.ends_with("...\r\n"));
    }
}
