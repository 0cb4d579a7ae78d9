//! `cargo run -- bench`: the bring-up benchmark (issue 6).
//!
//! Boots the image at a list of CPU counts on QEMU TCG (`vmx=off`) and Bochs (VMX on), several times
//! each, in parallel and serial AP start-up, and reports min/median/max of the guest's phase times
//! (from the `summary:`, `hypervisor: phases`, `smp: timing` and `memory: footprint` lines, see
//! docs/serial-log.md) and of the wall time from the emulator's start to the summary line. Writes
//! `bench-runs.csv` (one row per boot), `bench-summary.csv` (one row per configuration),
//! `bench.json` (both, plus the machine and versions) and `bench.svg` (bring-up time against core
//! count), and prints a table. See docs/performance.md.
//!
//! The emulator is driven here rather than through [`crate::run`] because the runner's
//! [`crate::Outcome::wall`] ends when the emulator has exited (or was killed after the summary):
//! the benchmark timestamps every serial line as it arrives, so it knows when the first line and the
//! summary line came. The command lines are the runner's ([`crate::qemu::QemuPlan`],
//! [`crate::bochs::command`]); only `-accel tcg,thread=single` is added for QEMU when chosen.
//!
//! Everything except [`run_bench`] and the emulator driving is pure and unit-tested; nothing here
//! asserts timings.

mod csv;
pub mod exits;
mod json;
mod plan;
mod plot;
mod run;
mod sample;
mod stats;
mod table;

pub use csv::*;
pub use json::*;
pub use plan::*;
pub use plot::*;
pub use run::*;
pub use sample::*;
pub use stats::*;
pub use table::*;

pub use crate::serial::Spread;

#[cfg(test)]
mod tests;
