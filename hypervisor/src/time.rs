//! Monotonic time from the TSC, calibrated once on the BSP (docs/serial-log.md, "Timestamps").

use crate::arch::{self, cpuid::cpuid, port};
use core::sync::atomic::{AtomicU64, Ordering};

static TSC_AT_ENTRY: AtomicU64 = AtomicU64::new(0);
static TSC_HZ: AtomicU64 = AtomicU64::new(0);

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

/// Frequency from CPUID leaf 0x15 (SDM vol. 3B 18.7.3): crystal Hz * EBX / EAX, when all three are reported.
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
const CALIBRATION_MS: u64 = 10;
/// A PIT that never signals (absent on some modern boards) must not hang the boot.
const PIT_POLL_LIMIT: u32 = 50_000_000;
const ASSUMED_HZ: u64 = 1_000_000_000;

/// Calibrates the TSC. `entry_tsc` is the value the entry code read as its first act.
///
/// A measurement against the PIT comes first: emulators report CPUID leaf 0x15 values that need not match
/// the rate their TSC really runs at (Bochs' tigerlake model is off by ~60x). Leaf 0x15 is the fallback for
/// machines without a working PIT.
pub fn init(entry_tsc: u64) -> TscSource {
    TSC_AT_ENTRY.store(entry_tsc, Ordering::Relaxed);
    let (hz, source) = if let Some(hz) = calibrate_with_pit() {
        (hz, TscSource::Pit)
    } else if let Some(hz) = leaf_15_hz() {
        (hz, TscSource::Cpuid)
    } else {
        (ASSUMED_HZ, TscSource::Assumed)
    };
    TSC_HZ.store(hz, Ordering::Relaxed);
    source
}

fn leaf_15_hz() -> Option<u64> {
    if cpuid(0, 0).eax < 0x15 {
        return None;
    }
    let r = cpuid(0x15, 0);
    hz_from_leaf_15(r.eax, r.ebx, r.ecx)
}

/// PIT channel 2 as a one-shot (mode 0) gated through port 0x61: count down 10 ms, measure TSC ticks.
fn calibrate_with_pit() -> Option<u64> {
    let latch = (PIT_HZ * CALIBRATION_MS / 1000) as u16;
    // SAFETY: ports 0x61/0x42/0x43 are the legacy PIT and speaker gate; the sequence only programs channel 2,
    // which drives nothing but the (disabled) speaker.
    let ticks = unsafe {
        port::outb(0x61, (port::inb(0x61) & !0x02) | 0x01); // gate on, speaker off
        port::outb(0x43, 0xB0); // channel 2, lobyte/hibyte, mode 0, binary
        port::outb(0x42, latch as u8);
        port::outb(0x42, (latch >> 8) as u8);
        let start = arch::rdtsc();
        let mut polls = 0u32;
        while port::inb(0x61) & 0x20 == 0 {
            polls += 1;
            if polls == PIT_POLL_LIMIT {
                return None;
            }
        }
        arch::rdtsc().wrapping_sub(start)
    };
    (ticks > 0).then(|| ticks * 1000 / CALIBRATION_MS)
}

pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
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
    fn tick_conversion_is_exact_and_does_not_overflow() {
        assert_eq!(ticks_to_us(3_000_000_000, 3_000_000_000), 1_000_000);
        assert_eq!(ticks_to_us(u64::MAX, 1_000_000), u64::MAX);
        assert_eq!(ticks_to_us(5, 0), 0);
    }
}
