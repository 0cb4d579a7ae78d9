//! Monotonic time from the TSC, calibrated once on the BSP (docs/serial-log.md, "Timestamps").

use crate::arch::{self, cpuid::cpuid, port};
use core::sync::atomic::{AtomicU64, Ordering};

static TSC_AT_ENTRY: AtomicU64 = AtomicU64::new(0);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TscSource {
    Cpuid,
    Pit,
    /// Neither worked: a guess, said so in the log.
    Assumed,
}

impl TscSource {
    pub fn name(self) -> &'static str {
        match self {
            TscSource::Cpuid => "cpuid",
            TscSource::Pit => "pit",
            TscSource::Assumed => "assumed",
        }
    }
}

/// Frequency from CPUID leaf 0x15 (SDM vol. 3B 19.7.3): crystal Hz * EBX / EAX, when all three are reported.
pub fn hz_from_leaf_15(eax: u32, ebx: u32, ecx: u32) -> Option<u64> {
    (eax != 0 && ebx != 0 && ecx != 0).then(|| u64::from(ecx) * u64::from(ebx) / u64::from(eax))
}

/// Microseconds between two TSC readings at `hz`, without overflow for any u64 delta.
pub fn ticks_to_us(ticks: u64, hz: u64) -> u64 {
    if hz == 0 {
        return 0;
    }
    (u128::from(ticks) * 1_000_000 / u128::from(hz)) as u64
}

const PIT_HZ: u64 = 1_193_182;
/// The PIT one-shot is loaded with its largest count: 65535 ticks, 54.9 ms until it expires.
const PIT_FULL_COUNT: u16 = 0xFFFF;
/// The calibration spans at least this many PIT ticks (5 ms): one tick is 0.84 us, and reading the counter
/// costs about a microsecond on hardware, so the error stays near 0.05 %.
const MIN_CALIBRATION_TICKS: u64 = PIT_HZ * 5 / 1000;
/// A PIT that never signals (absent on some modern boards) must not hang the boot.
const PIT_POLL_LIMIT: u32 = 50_000_000;
const ASSUMED_HZ: u64 = 1_000_000_000;

/// The TSC reading when the PIT one-shot was armed (0: not armed).
static PIT_ARMED_TSC: AtomicU64 = AtomicU64::new(0);
/// The frequency and where it came from, settled at the first use of the clock.
static CALIBRATION: spin::Once<(u64, TscSource)> = spin::Once::new();

/// Starts the clock. `entry_tsc` is the value the entry code read as its first act.
///
/// The calibration runs in the background: this arms PIT channel 2 as a one-shot, and the first use of the
/// clock (normally the first log line) reads how far the PIT has counted against the TSC, waiting only if
/// fewer than 5 ms have passed. So the boot work before the first log line overlaps the calibration.
pub fn init(entry_tsc: u64) {
    TSC_AT_ENTRY.store(entry_tsc, Ordering::Relaxed);
    PIT_ARMED_TSC.store(arm_pit(), Ordering::Relaxed);
}

/// Loads PIT channel 2 as a one-shot with its full count; returns the TSC at that moment.
fn arm_pit() -> u64 {
    // SAFETY: ports 0x61/0x42/0x43 are the legacy PIT and speaker gate; the sequence only programs channel 2,
    // which drives nothing but the (disabled) speaker.
    unsafe {
        port::outb(0x61, (port::inb(0x61) & !0x02) | 0x01); // gate on, speaker off
        port::outb(0x43, 0xB0); // channel 2, lobyte/hibyte, mode 0 (one-shot), binary
        port::outb(0x42, PIT_FULL_COUNT as u8);
        port::outb(0x42, (PIT_FULL_COUNT >> 8) as u8);
    }
    arch::rdtsc()
}

/// PIT ticks since the one-shot was armed, from a latched count and the channel's output (port 0x61 bit 5)
/// read before and after the latch. In mode 0 the output rises when the count reaches zero, after which the
/// count wraps and means nothing: None then, or if it rose between the two reads.
pub fn pit_ticks_elapsed(latched: u16, out_before: bool, out_after: bool) -> Option<u64> {
    (!out_before && !out_after).then(|| u64::from(PIT_FULL_COUNT - latched))
}

/// TSC frequency from `tsc_ticks` measured over `pit_ticks` of the 1.193182 MHz PIT.
pub fn hz_from_pit(tsc_ticks: u64, pit_ticks: u64) -> Option<u64> {
    (tsc_ticks > 0 && pit_ticks > 0)
        .then(|| (u128::from(tsc_ticks) * u128::from(PIT_HZ) / u128::from(pit_ticks)) as u64)
}

fn calibrate() -> (u64, TscSource) {
    if let Some(hz) = finish_pit_calibration() {
        (hz, TscSource::Pit)
    } else if let Some(hz) = leaf_15_hz() {
        // A measurement against the PIT comes first: emulators report CPUID leaf 0x15 values that need not
        // match the rate their TSC really runs at (Bochs' tigerlake model is off by ~60x). Leaf 0x15 is the
        // fallback for machines without a working PIT.
        (hz, TscSource::Cpuid)
    } else {
        (ASSUMED_HZ, TscSource::Assumed)
    }
}

fn leaf_15_hz() -> Option<u64> {
    if cpuid(0, 0).eax < 0x15 {
        return None;
    }
    let r = cpuid(0x15, 0);
    hz_from_leaf_15(r.eax, r.ebx, r.ecx)
}

/// The armed PIT's measurement; if it expired before the first look (over 54.9 ms of boot work), it is
/// armed once more and measured in the foreground.
fn finish_pit_calibration() -> Option<u64> {
    match PIT_ARMED_TSC.load(Ordering::Relaxed) {
        0 => None,
        armed => measure_pit(armed).unwrap_or_else(|Expired| measure_pit(arm_pit()).ok().flatten()),
    }
}

/// The one-shot's output was already high: its count has wrapped and says nothing.
struct Expired;

/// Polls the PIT armed at TSC `armed` until at least [`MIN_CALIBRATION_TICKS`] have passed since, then
/// derives the TSC rate. Ok(None): a PIT that never counts.
fn measure_pit(armed: u64) -> Result<Option<u64>, Expired> {
    for _ in 0..PIT_POLL_LIMIT {
        // SAFETY: reads of the gate/status port and of channel 2, and the counter-latch command: none of them
        // changes what the PIT does.
        let (ticks, tsc) = unsafe {
            let out_before = port::inb(0x61) & 0x20 != 0;
            let before = arch::rdtsc();
            port::outb(0x43, 0x80); // latch channel 2's count
            let after = arch::rdtsc();
            let lo = port::inb(0x42);
            let hi = port::inb(0x42);
            let out_after = port::inb(0x61) & 0x20 != 0;
            let latched = u16::from_le_bytes([lo, hi]);
            (
                pit_ticks_elapsed(latched, out_before, out_after),
                before / 2 + after / 2,
            )
        };
        match ticks {
            None => return Err(Expired),
            Some(t) if t >= MIN_CALIBRATION_TICKS => return Ok(hz_from_pit(tsc - armed, t)),
            Some(_) => arch::pause(),
        }
    }
    Ok(None)
}

/// The calibrated TSC frequency (calibrating now if nothing has used the clock yet).
pub fn tsc_hz() -> u64 {
    CALIBRATION.call_once(calibrate).0
}

/// Where the frequency came from.
pub fn tsc_source() -> TscSource {
    CALIBRATION.call_once(calibrate).1
}

/// Microseconds since the BSP's first instruction.
pub fn now_us() -> u64 {
    ticks_to_us(
        arch::rdtsc().saturating_sub(TSC_AT_ENTRY.load(Ordering::Relaxed)),
        tsc_hz(),
    )
}

/// Busy-waits for `us` microseconds with PAUSE (used only for the short SDM delays of AP start-up).
pub fn delay_us(us: u64) {
    let end = now_us().saturating_add(us);
    while now_us() < end {
        arch::pause();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_15_needs_all_three_values() {
        assert_eq!(hz_from_leaf_15(2, 176, 24_000_000), Some(2_112_000_000));
        assert_eq!(hz_from_leaf_15(2, 176, 0), None);
        assert_eq!(hz_from_leaf_15(0, 176, 24_000_000), None);
    }

    #[test]
    fn pit_ticks_count_only_before_the_one_shot_expires() {
        assert_eq!(pit_ticks_elapsed(0xFFFF, false, false), Some(0));
        assert_eq!(pit_ticks_elapsed(0xFFFF - 5966, false, false), Some(5966));
        assert_eq!(pit_ticks_elapsed(0, false, false), Some(0xFFFF));
        // Expired before the look, or during it: the wrapped count is meaningless.
        assert_eq!(pit_ticks_elapsed(0xFF00, true, true), None);
        assert_eq!(pit_ticks_elapsed(0x0010, false, true), None);
    }

    #[test]
    fn pit_measurement_gives_the_tsc_rate() {
        // 5 ms of PIT ticks (5966) against 12.5 M TSC ticks: 2.5 GHz, to within the tick rounding.
        let hz = hz_from_pit(12_500_000, 5966).unwrap();
        assert!(hz.abs_diff(2_500_000_000) < 2_500_000_000 / 5000, "{hz}");
        assert_eq!(hz_from_pit(1_193_182, 1_193_182), Some(1_193_182));
        assert_eq!(hz_from_pit(0, 100), None);
        assert_eq!(hz_from_pit(100, 0), None);
        // No overflow for a fast TSC over the whole 54.9 ms window.
        assert!(hz_from_pit(u64::MAX / 2, 0xFFFF).is_some());
    }

    #[test]
    fn tick_conversion_is_exact_and_does_not_overflow() {
        assert_eq!(ticks_to_us(3_000_000_000, 3_000_000_000), 1_000_000);
        assert_eq!(ticks_to_us(u64::MAX, 1_000_000), u64::MAX);
        assert_eq!(ticks_to_us(5, 0), 0);
    }
}
