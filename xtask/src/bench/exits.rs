//! `cargo run -- bench --exits N`: the VM-exit round trip (docs/performance.md, "VM-exit round trip").
//!
//! Each boot runs every core's test guest with `guest_loops=N`: the guest times N CPUID exits with its own
//! TSC and the same loop with a NOP in place of the CPUID, and each core reports the difference per round
//! trip (`vmx: guest ... round_trip_cycles=`). Under Bochs the TSC advances by one per emulated instruction
//! (`ips` instructions per emulated second, `clock: sync=none`), so the number is the instructions from the
//! guest's CPUID through the VM exit, the hypervisor's exit path and VMRESUME back: exact and repeatable.
//! Under KVM (where the host has nested VT-x) it is real cycles, nested. This module boots through the runner
//! ([`crate::run`]) and reads the typed `vmx: guest` lines; the numbers are reported, never asserted.

use std::fmt::Write as _;
use std::path::Path;

use super::plan::BenchSpec;
use crate::host::HostProbe;
use crate::serial::{self, VmxGuest};
use crate::{Backend, RunError, RunSpec};

/// CPU counts when `--cpus` is not given.
pub const EXIT_CPUS: &[u32] = &[1, 4];

/// One core's measurement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitSample {
    pub backend: Backend,
    pub cpus: u32,
    pub run: u32,
    pub apic_id: u32,
    pub loops: u64,
    pub cycles: u64,
}

/// The per-core round trips of one boot's log; an error names a core whose guest did not report one.
pub fn samples_of(
    log: &str,
    backend: Backend,
    cpus: u32,
    run: u32,
) -> Result<Vec<ExitSample>, String> {
    let lines = serial::parse_log(log);
    let guests: Vec<VmxGuest> = serial::all_of(&lines).map_err(|e| e.to_string())?;
    if guests.len() != cpus as usize {
        return Err(format!(
            "{} of {cpus} cores logged a `vmx: guest` line",
            guests.len()
        ));
    }
    guests
        .iter()
        .map(|g| match (g.ok, g.round_trip) {
            (true, Some((loops, cycles))) => Ok(ExitSample {
                backend,
                cpus,
                run,
                apic_id: g.apic_id,
                loops,
                cycles,
            }),
            _ => Err(format!(
                "apic_id={}: no round trip ({})",
                g.apic_id,
                g.error
                    .as_deref()
                    .unwrap_or("result=ok without round_trip_cycles")
            )),
        })
        .collect()
}

/// min / median / max of the round trips of one backend and CPU count, over all cores and runs.
pub fn spread(samples: &[ExitSample]) -> Option<(u64, u64, u64)> {
    let mut cycles: Vec<u64> = samples.iter().map(|s| s.cycles).collect();
    cycles.sort_unstable();
    Some((*cycles.first()?, cycles[cycles.len() / 2], *cycles.last()?))
}

/// The Markdown table: one row per backend and CPU count.
pub fn table(samples: &[ExitSample], loops: u64) -> String {
    let mut out = String::from(
        "| backend | cpus | cores x runs | loops | round trip min | median | max |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut keys: Vec<(Backend, u32)> = samples.iter().map(|s| (s.backend, s.cpus)).collect();
    keys.sort_by_key(|(b, c)| (b.as_str(), *c));
    keys.dedup();
    for (backend, cpus) in keys {
        let group: Vec<ExitSample> = samples
            .iter()
            .filter(|s| s.backend == backend && s.cpus == cpus)
            .cloned()
            .collect();
        if let Some((min, median, max)) = spread(&group) {
            let _ = writeln!(
                out,
                "| {} | {cpus} | {} | {loops} | {min} | {median} | {max} |",
                backend.as_str(),
                group.len()
            );
        }
    }
    out
}

/// `backend,cpus,run,apic_id,loops,round_trip_cycles` rows.
pub fn csv(samples: &[ExitSample]) -> String {
    let mut out = String::from("backend,cpus,run,apic_id,loops,round_trip_cycles\n");
    for s in samples {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{}",
            s.backend.as_str(),
            s.cpus,
            s.run,
            s.apic_id,
            s.loops,
            s.cycles
        );
    }
    out
}

/// Boots every configuration and writes `bench-exits.csv` and `bench-exits.md` into `spec.out`; exit status 1
/// if a boot did not give every core's round trip.
pub fn run_exits(spec: &BenchSpec, loops: u64) -> Result<i32, RunError> {
    let cpus = spec.cpus.clone().unwrap_or_else(|| EXIT_CPUS.to_vec());
    let mut backends = vec![Backend::Bochs];
    match HostProbe::read().nested_vtx() {
        Ok(_) => backends.push(Backend::Kvm),
        Err(why) => println!("bench: KVM not measured: {why}"),
    }
    let mut samples = Vec::new();
    let mut failed = 0;
    for &backend in &backends {
        for &n in &cpus {
            for run in 1..=spec.runs {
                let run_spec = RunSpec {
                    backend,
                    smp: n.to_string(),
                    append: format!("guest_loops={loops} {}", spec.append)
                        .trim()
                        .to_string(),
                    timeout: Some(spec.timeout),
                    quiet: true,
                    ..RunSpec::default()
                };
                let outcome = crate::run(&run_spec)?;
                match samples_of(&outcome.log, backend, n, run) {
                    Ok(found) => {
                        let (min, _, max) = spread(&found).unwrap_or_default();
                        println!(
                            "bench: {} cpus={n} run {run}: round trip {min}..{max} over {} cores",
                            backend.as_str(),
                            found.len()
                        );
                        samples.extend(found);
                    }
                    Err(e) => {
                        failed += 1;
                        println!("bench: {} cpus={n} run {run}: {e}", backend.as_str());
                    }
                }
            }
        }
    }
    write_files(&spec.out, &samples, loops)?;
    print!("{}", table(&samples, loops));
    Ok(if failed > 0 { 1 } else { 0 })
}

fn write_files(out: &Path, samples: &[ExitSample], loops: u64) -> Result<(), RunError> {
    let io = |e: std::io::Error| RunError::Io(format!("{}: {e}", out.display()));
    std::fs::create_dir_all(out).map_err(io)?;
    std::fs::write(out.join("bench-exits.csv"), csv(samples)).map_err(io)?;
    std::fs::write(out.join("bench-exits.md"), table(samples, loops)).map_err(io)?;
    println!(
        "bench: wrote {}/bench-exits.csv and bench-exits.md",
        out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
[    0.041938] cpu1  INFO  vmx: guest apic_id=1 result=ok exits=1005 cpuid=1002 hlt=1 vmcall=2 other=0 loops=1000 round_trip_cycles=145 ept=yes bytes=40960
[    0.051445] cpu0  INFO  vmx: guest apic_id=0 result=ok exits=1005 cpuid=1002 hlt=1 vmcall=2 other=0 loops=1000 round_trip_cycles=147 ept=yes bytes=40960
";

    #[test]
    fn each_core_gives_one_sample() {
        let s = samples_of(LOG, Backend::Bochs, 2, 1).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].apic_id, s[0].cycles, s[0].loops), (1, 145, 1000));
        assert_eq!(spread(&s), Some((145, 147, 147)));
        let t = table(&s, 1000);
        assert!(
            t.contains("| bochs | 2 | 2 | 1000 | 145 | 147 | 147 |"),
            "{t}"
        );
        assert!(csv(&s).ends_with("bochs,2,1,0,1000,147\n"));
    }

    #[test]
    fn a_missing_or_failed_core_is_an_error() {
        assert!(samples_of(LOG, Backend::Bochs, 3, 1)
            .unwrap_err()
            .contains("2 of 3 cores"));
        let failed = LOG.replace(
            "result=ok exits=1005 cpuid=1002 hlt=1 vmcall=2 other=0 loops=1000 round_trip_cycles=147 ept=yes bytes=40960",
            "result=fail exits=1 cpuid=0 hlt=0 vmcall=0 other=1 ept=yes bytes=40960 error=\"triple fault\"",
        );
        assert!(samples_of(&failed, Backend::Bochs, 2, 1)
            .unwrap_err()
            .contains("apic_id=0: no round trip (triple fault)"));
        let no_loops = LOG.replace(" loops=1000 round_trip_cycles=145", "");
        assert!(samples_of(&no_loops, Backend::Bochs, 2, 1).is_err());
    }
}
