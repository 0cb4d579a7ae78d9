//! A log that scales with the core count (docs/serial-log.md, "Per-core lines at scale"): how a line that
//! every core prints (or the BSP prints once per MADT processor entry) is logged.
//!
//! Up to [`DEFAULT_MAX_EACH`] cores (`log_per_core_max=` on the command line) each such line is INFO, as it
//! always was. Above it the lines go to DEBUG and the BSP prints the same facts as compact INFO lines,
//! one per [`Run`] of cores whose facts advance in step, so that 1024 cores take a few lines instead of
//! thousands (at 115200 baud a line costs about 9 ms). A stage asks [`level`] for the level of its per-core
//! line and [`compact`] whether it prints its compact lines:
//!
//! ```ignore
//! log::log!(target: "vmx", log_scale::level(), "root apic_id={apic_id} {report}");
//! ```
//!
//! The decision itself is [`PerCoreLog`], a plain value tested on the host; this module's statics hold the
//! threshold (set once from the command line) and read the core count from `exit::TALLY.cpus` (1 until the
//! MADT is read, then the usable processors).

use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};

/// Per-core lines stay INFO up to this many cores (or MADT processor entries).
pub const DEFAULT_MAX_EACH: u32 = 64;

/// How lines that exist once per core are logged for a given count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PerCoreLog {
    /// The most cores (or entries) whose per-core lines are INFO.
    pub max_each: u32,
}

impl Default for PerCoreLog {
    fn default() -> Self {
        PerCoreLog {
            max_each: DEFAULT_MAX_EACH,
        }
    }
}

impl PerCoreLog {
    /// True when `count` cores (or entries) are too many for a line each at INFO: the per-core lines go to
    /// DEBUG and the compact lines are printed.
    pub fn compact(self, count: u32) -> bool {
        count > self.max_each
    }

    /// The level of one per-core line when there are `count` cores (or entries).
    pub fn level(self, count: u32) -> log::Level {
        if self.compact(count) {
            log::Level::Debug
        } else {
            log::Level::Info
        }
    }
}

static MAX_EACH: AtomicU32 = AtomicU32::new(DEFAULT_MAX_EACH);

/// Sets the threshold (the BSP, from the command line's `log_per_core_max=`, before any AP starts).
pub fn set_max_each(max_each: u32) {
    MAX_EACH.store(max_each, Ordering::Release);
}

/// The policy in force.
pub fn policy() -> PerCoreLog {
    PerCoreLog {
        max_each: MAX_EACH.load(Ordering::Acquire),
    }
}

/// The usable processors as far as the BSP knows them (1 until the MADT is read).
fn cores() -> u32 {
    crate::exit::TALLY.cpus.load(Ordering::Acquire)
}

/// The level of a per-core line now (by the usable processor count).
pub fn level() -> log::Level {
    policy().level(cores())
}

/// Whether the stages print their compact per-core lines (by the usable processor count).
pub fn compact() -> bool {
    policy().compact(cores())
}

/// A run of cores whose logical index and APIC id both go up by one from core to core: `cpus=<a>-<b>
/// apic_ids=<c>-<d>` (a single core prints `cpus=<a> apic_ids=<c>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    pub first_cpu: u32,
    pub first_apic_id: u32,
    /// Cores in the run (at least 1).
    pub count: u32,
}

impl Run {
    pub fn one(cpu: u32, apic_id: u32) -> Self {
        Run {
            first_cpu: cpu,
            first_apic_id: apic_id,
            count: 1,
        }
    }

    /// Whether core (`cpu`, `apic_id`) is the next one of this run.
    pub fn continues_with(&self, cpu: u32, apic_id: u32) -> bool {
        Some(cpu) == self.first_cpu.checked_add(self.count)
            && Some(apic_id) == self.first_apic_id.checked_add(self.count)
    }

    /// The runs of `cores` ((cpu, apic_id) pairs in the order given), each as long as it can be.
    pub fn split(cores: impl IntoIterator<Item = (u32, u32)>) -> alloc::vec::Vec<Run> {
        let mut runs: alloc::vec::Vec<Run> = alloc::vec::Vec::new();
        for (cpu, apic_id) in cores {
            match runs.last_mut() {
                Some(run) if run.continues_with(cpu, apic_id) => run.count += 1,
                _ => runs.push(Run::one(cpu, apic_id)),
            }
        }
        runs
    }
}

/// `<first>` or `<first>-<last>`.
pub struct Span {
    pub first: u32,
    pub count: u32,
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count <= 1 {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.first + (self.count - 1))
        }
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cpus={} apic_ids={}",
            Span {
                first: self.first_cpu,
                count: self.count
            },
            Span {
                first: self.first_apic_id,
                count: self.count
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_core_lines_are_info_up_to_the_threshold_and_debug_above() {
        let p = PerCoreLog::default();
        assert_eq!(p.max_each, 64);
        assert_eq!(p.level(1), log::Level::Info);
        assert_eq!(p.level(64), log::Level::Info);
        assert!(!p.compact(64));
        assert_eq!(p.level(65), log::Level::Debug);
        assert!(p.compact(65));
        assert!(p.compact(1024));
        let zero = PerCoreLog { max_each: 0 };
        assert!(zero.compact(1), "log_per_core_max=0: always compact");
        let all = PerCoreLog { max_each: u32::MAX };
        assert!(!all.compact(u32::MAX));
    }

    /// The only test that sets the threshold or the processor count (both global).
    #[test]
    fn the_policy_in_force_follows_the_threshold_and_the_processor_count() {
        assert_eq!(policy(), PerCoreLog::default());
        let cpus_before = crate::exit::TALLY.cpus.load(Ordering::Acquire);
        set_max_each(2);
        assert_eq!(policy(), PerCoreLog { max_each: 2 });
        crate::exit::TALLY.cpus.store(3, Ordering::Release);
        assert_eq!(cores(), 3);
        assert!(compact());
        assert_eq!(level(), log::Level::Debug);
        crate::exit::TALLY.cpus.store(2, Ordering::Release);
        assert!(!compact());
        assert_eq!(level(), log::Level::Info);
        set_max_each(DEFAULT_MAX_EACH);
        crate::exit::TALLY
            .cpus
            .store(cpus_before, Ordering::Release);
    }

    fn text(runs: &[Run]) -> Vec<String> {
        runs.iter().map(|r| r.to_string()).collect()
    }

    #[test]
    fn runs_break_where_an_index_or_an_id_skips() {
        // The BSP, then 1-149 and a second socket from APIC id 256 (QEMU's 2 sockets of 150).
        let cores = (0..300).map(|i| (i, if i < 150 { i } else { i + 106 }));
        assert_eq!(
            text(&Run::split(cores)),
            ["cpus=0-149 apic_ids=0-149", "cpus=150-299 apic_ids=256-405"]
        );
        assert_eq!(
            text(&Run::split([(0, 5), (1, 6), (3, 7), (4, 8), (5, 10)])),
            [
                "cpus=0-1 apic_ids=5-6",
                "cpus=3-4 apic_ids=7-8",
                "cpus=5 apic_ids=10"
            ]
        );
        assert!(Run::split([]).is_empty());
        // Going down is never a run; nor is wrapping past u32::MAX.
        assert_eq!(Run::split([(2, 2), (1, 1)]).len(), 2);
        assert!(!Run::one(u32::MAX, 0).continues_with(0, 1));
        assert!(!Run::one(0, u32::MAX).continues_with(1, 0));
    }

    #[test]
    fn spans_print_one_number_for_one_core() {
        assert_eq!(Span { first: 7, count: 1 }.to_string(), "7");
        assert_eq!(Span { first: 7, count: 2 }.to_string(), "7-8");
        assert_eq!(
            Span {
                first: 255,
                count: 769
            }
            .to_string(),
            "255-1023"
        );
    }
}
