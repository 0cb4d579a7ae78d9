//! The serial log: COM1 behind the `log` facade, one whole line at a time (docs/serial-log.md).

use crate::{arch, percpu, time};
use core::cell::UnsafeCell;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
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

/// Lines logged but not yet written to the UART, oldest first: a byte ring holding whole lines, each ending
/// in `\n` (a [`LineBuf`] never contains one elsewhere).
pub struct LineQueue<const N: usize> {
    bytes: [u8; N],
    head: usize,
    len: usize,
}

impl<const N: usize> LineQueue<N> {
    pub const fn new() -> Self {
        LineQueue {
            bytes: [0; N],
            head: 0,
            len: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `line` whole; false (nothing appended) when it does not fit.
    pub fn push(&mut self, line: &[u8]) -> bool {
        if line.len() > N - self.len {
            return false;
        }
        let tail = (self.head + self.len) % N;
        let first = line.len().min(N - tail);
        self.bytes[tail..tail + first].copy_from_slice(&line[..first]);
        self.bytes[..line.len() - first].copy_from_slice(&line[first..]);
        self.len += line.len();
        true
    }

    /// Moves the oldest line (through its `\n`, or as much as fits in `out`) into `out`; returns its length,
    /// 0 when the queue is empty.
    pub fn pop_line(&mut self, out: &mut [u8]) -> usize {
        let mut n = 0;
        while n < self.len && n < out.len() {
            let b = self.bytes[(self.head + n) % N];
            out[n] = b;
            n += 1;
            if b == b'\n' {
                break;
            }
        }
        self.head = (self.head + n) % N;
        self.len -= n;
        n
    }
}

impl<const N: usize> Default for LineQueue<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// A lock owned by one CPU at a time, which tells a CPU that already holds it (an exception or NMI raised
/// while it logs) instead of deadlocking.
struct CpuLock {
    owner: AtomicU32,
}

const FREE: u32 = u32::MAX;
/// If a holder never lets go (it died mid-line), the log is worth more than strict ordering.
const STEAL_AFTER_SPINS: u32 = 200_000_000;

impl CpuLock {
    const fn new() -> Self {
        CpuLock {
            owner: AtomicU32::new(FREE),
        }
    }

    /// Runs `f(nested)`: `nested` is true when this CPU already held the lock (then `f` runs inside the outer
    /// holder's critical section, and the lock stays held when it returns).
    fn with<R>(&self, f: impl FnOnce(bool) -> R) -> R {
        let me = percpu::current_index();
        if self.owner.load(Ordering::Acquire) == me {
            return f(true);
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
        let r = f(false);
        self.owner.store(FREE, Ordering::Release);
        r
    }
}

/// Bytes of log lines that can wait for the UART: about 1,000 lines, enough for every line of a 255-CPU
/// bring-up; when it is full, the CPU that logs writes lines out until its own fits.
const QUEUE_BYTES: usize = 128 * 1024;

/// The queue and the lock that guards it. Lock order: [`UART`] before [`QUEUE`].
struct SharedQueue {
    lock: CpuLock,
    queue: UnsafeCell<LineQueue<QUEUE_BYTES>>,
}

// SAFETY: the queue is only reached through `SharedQueue::with`, which hands it out to the single CPU that
// holds `lock`, and never to a nested caller on that CPU (which would alias the outer `&mut`).
unsafe impl Sync for SharedQueue {}

impl SharedQueue {
    /// Runs `f` with the queue, or with `None` when this CPU is already inside (see [`CpuLock::with`]).
    fn with<R>(&self, f: impl FnOnce(Option<&mut LineQueue<QUEUE_BYTES>>) -> R) -> R {
        self.lock.with(|nested| {
            if nested {
                return f(None);
            }
            // SAFETY: this CPU holds the lock and is not nested, so no other reference to the queue exists.
            f(Some(unsafe { &mut *self.queue.get() }))
        })
    }
}

static QUEUE: SharedQueue = SharedQueue {
    lock: CpuLock::new(),
    queue: UnsafeCell::new(LineQueue::new()),
};
/// Serializes the UART: a line is taken from the queue and written under it, so lines come out in queue order.
static UART: CpuLock = CpuLock::new();
/// While set, INFO and lower lines wait in the queue (see [`defer_routine_lines`]). Set from the start.
static DEFER: AtomicBool = AtomicBool::new(true);

fn port() -> SerialPort {
    // SAFETY: 0x3F8 is COM1 on every PC and emulator we target; the port object holds only the port numbers,
    // and all writes go through `UART`, so no two CPUs drive the UART at once.
    unsafe { SerialPort::new(COM1) }
}

/// 115200 baud: the UART's 1.8432 MHz clock / 16 / divisor 1.
const DIVISOR_115200: u8 = 1;
const LCR_DLAB: u8 = 0x80;
const LCR_8N1: u8 = 0x03;

pub fn init_uart() {
    port().init();
    // `uart_16550::init` programs divisor 3 (38400 baud); the log contract and the 32-bit entry code use
    // 115200 (docs/serial-log.md). At 38400 a line takes three times as long, and a terminal set to 115200
    // shows garbage.
    // SAFETY: COM1's line control and divisor latch registers; the UART is idle (nothing has been written
    // since `init`) and only this core runs.
    unsafe {
        arch::port::outb(COM1 + 3, LCR_DLAB | LCR_8N1);
        arch::port::outb(COM1, DIVISOR_115200);
        arch::port::outb(COM1 + 1, 0);
        arch::port::outb(COM1 + 3, LCR_8N1);
    }
}

/// Writes raw bytes to the UART as one unit, under the UART lock.
fn write_bytes(bytes: &[u8]) {
    UART.with(|_| write_port(bytes));
}

fn write_port(bytes: &[u8]) {
    // `uart_16550::init` enables the 16-byte transmit FIFO: once the holding register reports empty (LSR bit
    // 5), 16 bytes fit. One status read per 16 bytes instead of per byte halves the port I/O, which is most of
    // what a log line costs under emulation.
    for chunk in bytes.chunks(UART_FIFO_BYTES) {
        wait_for_lsr(LSR_THR_EMPTY);
        for &b in chunk {
            // SAFETY: writing the transmit holding register of COM1 only sends the byte; callers hold `UART`.
            unsafe { arch::port::outb(COM1, b) };
        }
    }
}

/// Writes the oldest queued line; false when the queue was empty.
pub fn write_one_queued() -> bool {
    UART.with(|_| {
        let mut line = [0u8; LINE_MAX];
        let n = QUEUE.with(|q| q.map_or(0, |q| q.pop_line(&mut line)));
        write_port(&line[..n]);
        n > 0
    })
}

/// Writes every queued line to the UART.
pub fn flush() {
    while write_one_queued() {}
}

/// Writes queued lines while the time allows: stops before a line that, at the pace of the previous one,
/// would end after `deadline_us` (the first line is always tried). Used in waits that must not get much
/// longer, such as the INIT delay of AP start-up. Returns whether the queue was emptied.
pub fn write_queued_until(deadline_us: u64) -> bool {
    let mut line_cost = 0;
    loop {
        let t0 = time::now_us();
        if t0.saturating_add(line_cost) >= deadline_us {
            return false;
        }
        if !write_one_queued() {
            return true;
        }
        line_cost = time::now_us() - t0;
    }
}

/// Deferred output, on from the logger's start until every core has finished its per-core work (or from the
/// command line's `log_defer=off`): INFO, DEBUG and TRACE lines only go into the queue (stamped when logged, so
/// the log stays in time order) and are written when the BSP calls [`flush`] or [`write_queued_until`] in its
/// waits. So neither the boot nor cores that start in parallel wait for a UART that takes 0.2-9 ms per line.
/// WARN and ERROR lines, and every line while off, are written at once (after the queued ones).
pub fn defer_routine_lines(on: bool) {
    DEFER.store(on, Ordering::Release);
    if !on {
        flush();
    }
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

/// Writes out the queue and waits until the UART has shifted out its last bit (LSR bit 6), so nothing is lost
/// when the emulator exits.
pub fn drain() {
    flush();
    wait_for_lsr(LSR_TRANSMITTER_EMPTY);
}

/// What became of a line offered to the queue.
enum Queued {
    Yes,
    Full,
    /// This CPU was already inside the queue (an exception or NMI while it logged): write the line directly.
    Nested,
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
        let cpu = percpu::current_index();
        let mut line = LineBuf::new();
        loop {
            // The timestamp is taken under the queue lock, so the queue, and the log, read in time order.
            let offered = QUEUE.with(|q| {
                line = LineBuf::new();
                format_line(
                    &mut line,
                    time::now_us(),
                    cpu,
                    record.level(),
                    record.target(),
                    *record.args(),
                );
                match q.map(|q| q.push(line.as_bytes())) {
                    Some(true) => Queued::Yes,
                    Some(false) => Queued::Full,
                    None => Queued::Nested,
                }
            });
            match offered {
                Queued::Yes => break,
                Queued::Full => flush(),
                Queued::Nested => {
                    write_bytes(line.as_bytes());
                    return;
                }
            }
        }
        if record.level() <= log::Level::Warn || !DEFER.load(Ordering::Acquire) {
            flush();
        }
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
        assert_eq!(l.len(), LINE_MAX, "cut to fill the line exactly");
        assert!(l.ends_with("x...\r\n"));
        // A line that fits (with its "\r\n") is not cut, however long.
        let prefix = line(0, 1, log::Level::Debug, "t", "").len() - 2;
        let fits = "y".repeat(LINE_MAX - 5 - prefix);
        let l = line(0, 1, log::Level::Debug, "t", &fits);
        assert_eq!(l.len(), LINE_MAX - 3);
        assert!(l.ends_with("y\r\n"));
    }

    fn pop(q: &mut LineQueue<16>) -> String {
        let mut out = [0u8; 32];
        let n = q.pop_line(&mut out);
        String::from_utf8(out[..n].to_vec()).unwrap()
    }

    #[test]
    fn the_queue_gives_whole_lines_back_in_order_across_the_wrap() {
        let mut q = LineQueue::<16>::new();
        assert!(q.is_empty());
        assert_eq!(pop(&mut q), "");
        assert!(q.push(b"one\r\n"));
        assert!(!q.is_empty());
        assert!(q.push(b"two\r\n"));
        assert_eq!(pop(&mut q), "one\r\n");
        // 5 bytes used from offset 5: this line wraps past the end of the 16-byte ring.
        assert!(q.push(b"three33\r\n"));
        assert_eq!(pop(&mut q), "two\r\n");
        assert_eq!(pop(&mut q), "three33\r\n");
        assert!(q.is_empty());
        assert_eq!(q.head, 19 % 16, "the read position stays inside the ring");
    }

    /// The shared queue holds the lines of a 255-CPU bring-up: about 1,000 lines of up to 128 bytes.
    #[test]
    fn the_shared_queue_holds_a_thousand_lines() {
        let mut q = Box::new(LineQueue::<QUEUE_BYTES>::new());
        let line = [b'x'; 128];
        for i in 0..1000 {
            assert!(q.push(&line), "line {i}");
        }
    }

    #[test]
    fn a_full_queue_refuses_a_line_whole() {
        let mut q = LineQueue::<16>::new();
        assert!(q.push(b"0123456789\n"));
        assert!(!q.push(b"abcdef\n"), "7 bytes do not fit in the 5 left");
        assert!(q.push(b"abcd\n"), "exactly the 5 left");
        assert!(!q.push(b"\n"));
        assert_eq!(pop(&mut q), "0123456789\n");
        assert_eq!(pop(&mut q), "abcd\n");
        assert!(q.is_empty());
    }

    #[test]
    fn a_line_longer_than_the_reader_buffer_comes_out_in_pieces() {
        let mut q = LineQueue::<16>::new();
        assert!(q.push(b"abcdefgh\n"));
        let mut out = [0u8; 4];
        assert_eq!(q.pop_line(&mut out), 4);
        assert_eq!(&out, b"abcd");
        assert_eq!(pop(&mut q), "efgh\n");
    }
}
