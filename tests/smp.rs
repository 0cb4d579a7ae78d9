//! SMP bring-up per core count and topology: every usable processor of the MADT comes online and
//! builds its own PCB on its own guarded stack.
//!
//! QEMU TCG runs use `vmx=off` (TCG has no VMX); the Bochs runs at the end check the same contract
//! on the GRUB ISO path with Bochs' own BIOS tables. The VMX side is in `tests/vmx.rs`.
//!
//! Every test checks (`assert_smp_ok` in `common`): `cpus=N online=N failed=0 verdict=ok`, one
//! `smp: pcb` line per CPU logged by that CPU, distinct APIC ids equal to the usable MADT entries,
//! disjoint stacks with a guard page just below each, and the number of `acpi: madt:` lines. Above the
//! kernel's per-core threshold (64 CPUs, `log_per_core_max=`) those per-core lines are DEBUG and the BSP
//! prints compact runs at INFO (docs/serial-log.md, "Per-core lines at scale"): the 255-CPU boot runs at
//! `log=debug` so that both forms are checked against each other, each core's own line included.

mod common;

use common::*;
use xtask::{Machine, Outcome, RunSpec};

/// QEMU q35, PVH, `vmx=off`, `smp` passed verbatim to `-smp`.
fn qemu_smp(smp: &str) -> RunSpec {
    RunSpec {
        smp: smp.into(),
        ..qemu("")
    }
}

/// Boots `spec`; runs with 16 or more vCPUs get the host to themselves (the kernel's bring-up
/// timeouts follow the host clock under TCG).
fn boot_qemu(spec: &RunSpec, cpus: u32) -> Outcome {
    if cpus >= 16 {
        let _host = exclusive_host();
        boot(spec)
    } else {
        let _host = shared_host();
        boot(spec)
    }
}

/// `n` CPUs, APIC ids 0..n-1, every one online, each with its own pcb line.
fn qemu_contiguous(machine: Machine, n: u32, extra_args: &[&str]) -> Outcome {
    qemu_contiguous_with(machine, n, extra_args, "")
}

/// [`qemu_contiguous`] with more kernel command-line words.
fn qemu_contiguous_with(machine: Machine, n: u32, extra_args: &[&str], append: &str) -> Outcome {
    let mut spec = RunSpec {
        machine: Some(machine),
        extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        ..qemu_smp(&n.to_string())
    };
    spec.append = format!("{} {append}", spec.append);
    let o = boot_qemu(&spec, n);
    let pcbs = assert_smp_ok(&o, n, n as usize);
    assert_own_pcb_lines(&o, &pcbs);
    let ids: Vec<u32> = pcbs.iter().map(|p| p.apic_id).collect();
    assert_eq!(
        ids,
        (0..n).collect::<Vec<_>>(),
        "QEMU numbers the APIC ids of a flat -smp {n} 0..{n}, in MADT order{}",
        context(&o)
    );
    assert_qemu_exit(&o, 33);
    o
}

#[test]
fn qemu_q35_1_cpu() {
    qemu_contiguous(Machine::Q35, 1, &[]);
}

#[test]
fn qemu_q35_2_cpus() {
    qemu_contiguous(Machine::Q35, 2, &[]);
}

#[test]
fn qemu_q35_3_cpus() {
    qemu_contiguous(Machine::Q35, 3, &[]);
}

#[test]
fn qemu_q35_4_cpus() {
    qemu_contiguous(Machine::Q35, 4, &[]);
}

#[test]
fn qemu_q35_8_cpus() {
    qemu_contiguous(Machine::Q35, 8, &[]);
}

#[test]
fn qemu_q35_16_cpus() {
    qemu_contiguous(Machine::Q35, 16, &[]);
}

/// The per-core threshold itself: 64 CPUs still print a line each at INFO, and no compact run.
#[test]
fn qemu_q35_64_cpus() {
    let o = qemu_contiguous(Machine::Q35, 64, &[]);
    assert!(
        !xtask::serial::is_compact(&o.lines()),
        "compact lines at 64 CPUs{}",
        context(&o)
    );
}

/// QEMU 7.2's maximum. Multi-threaded TCG with 255 vCPUs on a 2-core host is too slow; one TCG
/// thread round-robins them (about 8 s when the host is otherwise idle). At `log=debug`: every core's own
/// pcb line and every MADT entry's line (DEBUG above the threshold) must agree with the BSP's compact runs.
#[test]
fn qemu_q35_255_cpus_single_threaded_tcg() {
    let o = qemu_contiguous_with(
        Machine::Q35,
        255,
        &["-accel", "tcg,thread=single"],
        "log=debug",
    );
    assert_compact_runs_with_debug_lines(&o, 255);
}

/// A low `log_per_core_max=`: 8 CPUs in the compact form at INFO, every core checked through the BSP's
/// runs (the same contract as the per-core lines), and no per-core INFO line but the BSP's own pcb line.
#[test]
fn qemu_q35_8_cpus_compact_log() {
    let spec = RunSpec {
        append: "vmx=off log_per_core_max=4".into(),
        ..qemu_smp("8")
    };
    let o = boot_qemu(&spec, 8);
    let pcbs = assert_smp_ok(&o, 8, 8);
    assert_compact_log(&o);
    assert_eq!(
        pcbs[0].logged_by,
        Some(0),
        "the BSP's own line{}",
        context(&o)
    );
    assert!(
        pcbs[1..].iter().all(|p| p.logged_by.is_none()),
        "{}",
        context(&o)
    );
    let ids: Vec<u32> = pcbs.iter().map(|p| p.apic_id).collect();
    assert_eq!(ids, (0..8).collect::<Vec<_>>(), "{}", context(&o));
    assert_eq!(
        o.lines_with("acpi", "madt: entries ").len(),
        1,
        "QEMU's 8 entries are one run{}",
        context(&o)
    );
    assert_qemu_exit(&o, 33);
}

#[test]
fn qemu_pc_2_cpus() {
    qemu_contiguous(Machine::Pc, 2, &[]);
}

#[test]
fn qemu_pc_8_cpus() {
    qemu_contiguous(Machine::Pc, 8, &[]);
}

#[test]
fn qemu_pc_16_cpus() {
    qemu_contiguous(Machine::Pc, 16, &[]);
}

/// A `sockets x cores x threads` topology: the APIC ids have holes where a level's count is not a
/// power of two; the CPUs are found by their MADT entries, not assumed to be 0..n-1.
fn qemu_topology(smp: &str, sockets: u32, cores: u32, threads: u32) {
    let n = sockets * cores * threads;
    let o = boot_qemu(&qemu_smp(smp), n);
    let pcbs = assert_smp_ok(&o, n, n as usize);
    let want: Vec<u32> = (0..n)
        .map(|i| topology_apic_id(i, cores, threads))
        .collect();
    let madt: Vec<u32> = madt_lines(&o).iter().map(|m| m.apic_id).collect();
    assert_eq!(madt, want, "MADT APIC ids for -smp {smp}{}", context(&o));
    // APs are numbered in MADT order after the BSP.
    let ids: Vec<u32> = pcbs.iter().map(|p| p.apic_id).collect();
    assert_eq!(ids, want, "APIC id of each CPU index{}", context(&o));
    assert_qemu_exit(&o, 33);
}

#[test]
fn qemu_2_sockets_3_cores_non_contiguous_apic_ids() {
    // Cores take 2 bits: ids 0, 1, 2, 4, 5, 6.
    qemu_topology("6,sockets=2,cores=3", 2, 3, 1);
}

#[test]
fn qemu_2_sockets_2_cores_2_threads() {
    qemu_topology("8,sockets=2,cores=2,threads=2", 2, 2, 2);
}

/// `maxcpus` above the CPU count: QEMU lists the absent CPUs in the MADT without the Enabled flag
/// (and its MADT revision predates the Online Capable flag), so the kernel logs them
/// `state=disabled` and starts only the 4 present ones.
#[test]
fn qemu_maxcpus_above_smp_starts_only_enabled_cpus() {
    let o = boot_qemu(&qemu_smp("4,maxcpus=8"), 4);
    let pcbs = assert_smp_ok(&o, 4, 8);
    let ids: Vec<u32> = pcbs.iter().map(|p| p.apic_id).collect();
    assert_eq!(ids, [0, 1, 2, 3], "{}", context(&o));
    assert_eq!(
        madt_ids_with_state(&o, "disabled"),
        [4, 5, 6, 7],
        "the 4 CPUs that are not plugged in{}",
        context(&o)
    );
    let starting = line(&o, "smp", "starting ");
    assert!(
        starting.message.starts_with("starting 3 APs "),
        "only the 3 enabled APs are started{}",
        context(&o)
    );
    assert_qemu_exit(&o, 33);
}

/// `smp=2` on an 8-CPU machine: the MADT parser's limit keeps the BSP and the first AP; the other 6
/// entries are logged `state=over-limit` (smp/src/madt.rs, `RejectReason::OverLimit`) and never
/// sent INIT. `cpus=` counts only the processors kept.
#[test]
fn smp_limit_2_of_8() {
    let spec = RunSpec {
        append: "vmx=off smp=2".into(),
        ..qemu_smp("8")
    };
    let o = boot_qemu(&spec, 8);
    let pcbs = assert_smp_ok(&o, 2, 8);
    let ids: Vec<u32> = pcbs.iter().map(|p| p.apic_id).collect();
    assert_eq!(ids, [0, 1], "{}", context(&o));
    assert_eq!(
        madt_ids_with_state(&o, "over-limit"),
        [2, 3, 4, 5, 6, 7],
        "the entries beyond smp=2{}",
        context(&o)
    );
    let bringup = line(&o, "smp::bringup", "mode=");
    assert_eq!(
        num_field(&o, &bringup, "inits"),
        1,
        "INIT goes to the one AP kept only{}",
        context(&o)
    );
    assert_qemu_exit(&o, 33);
}

/// `smp=1`: the BSP alone; no AP is started at all.
#[test]
fn smp_limit_1_runs_on_the_bsp_only() {
    let spec = RunSpec {
        append: "vmx=off smp=1".into(),
        ..qemu_smp("4")
    };
    let o = boot_qemu(&spec, 4);
    let pcbs = assert_smp_ok(&o, 1, 4);
    assert_eq!(pcbs[0].apic_id, 0, "{}", context(&o));
    assert_eq!(
        madt_ids_with_state(&o, "over-limit"),
        [1, 2, 3],
        "{}",
        context(&o)
    );
    assert!(
        o.line_with("smp", "starting ").is_none() && o.line_with("smp::bringup", "mode=").is_none(),
        "no AP may be started with smp=1{}",
        context(&o)
    );
    assert_qemu_exit(&o, 33);
}

/// The `smp::bringup:` line's counters.
struct Bringup {
    mode: String,
    aps: u64,
    inits: u64,
    sipis: u64,
    elapsed_us: u64,
}

fn bringup_line(o: &Outcome) -> Bringup {
    let l = line(o, "smp::bringup", "mode=");
    let done = line(o, "smp", "bring-up done");
    let b = Bringup {
        mode: l.field("mode").unwrap_or("").to_string(),
        aps: num_field(o, &l, "aps"),
        inits: num_field(o, &l, "inits"),
        sipis: num_field(o, &l, "sipis"),
        elapsed_us: num_field(o, &l, "elapsed_us"),
    };
    assert_eq!(
        (num_field(o, &done, "inits"), num_field(o, &done, "sipis")),
        (b.inits, b.sipis),
        "`smp: bring-up done` and `smp::bringup:` disagree on the counts{}",
        context(o)
    );
    b
}

/// `ap_start=serial` starts one AP at a time and still brings all of them up. Both modes send exactly one
/// INIT per AP, and a second SIPI only to an AP that has not answered the first within `sipi_delay_us`
/// (smp/src/bringup.rs): with a delay of 100 ms every AP answers the first, so both modes send exactly one
/// SIPI per AP. Serial waits the INIT and SIPI delays once per AP, parallel once in all. (The two-SIPI
/// path is covered by the bring-up state machine's host tests, where the fake AP decides when it answers.)
#[test]
fn ap_start_serial_brings_all_up_like_parallel() {
    const SIPI_DELAY_US: u64 = 100_000;
    for mode in ["serial", "parallel"] {
        // An explicit INIT delay: the default is 0 on QEMU's CPU (see init_delay_follows_the_cpu).
        let spec = RunSpec {
            append: format!(
                "vmx=off ap_start={mode} init_delay_us=2000 sipi_delay_us={SIPI_DELAY_US}"
            ),
            ..qemu_smp("8")
        };
        let o = boot_qemu(&spec, 8);
        assert_smp_ok(&o, 8, 8);
        assert_qemu_exit(&o, 33);
        let b = bringup_line(&o);
        assert_eq!(b.mode, mode, "{}", context(&o));
        let starting = line(&o, "smp", "starting ");
        assert_eq!(starting.field("mode"), Some(mode), "{}", context(&o));
        let init_delay = num_field(&o, &starting, "init_delay_us");
        assert_eq!(init_delay, 2000, "init_delay_us= is kept{}", context(&o));
        assert_eq!(
            num_field(&o, &starting, "sipi_delay_us"),
            SIPI_DELAY_US,
            "{}",
            context(&o)
        );
        assert_eq!(b.aps, 7, "{}", context(&o));
        assert_eq!(b.inits, 7, "one INIT per AP ({mode}){}", context(&o));
        assert_eq!(
            b.sipis,
            7,
            "one SIPI per AP when every AP answers within sipi_delay_us ({mode}){}",
            context(&o)
        );
        let waits = if mode == "serial" { 7 } else { 1 };
        let least = waits * (init_delay + SIPI_DELAY_US);
        assert!(
            b.elapsed_us >= least,
            "{mode} start waits the INIT and SIPI delays {waits} time(s): elapsed_us={} < {least}{}",
            b.elapsed_us,
            context(&o)
        );
    }
}

/// Without `init_delay_us=` the INIT wait is Linux's choice for the BSP's CPU: 0 for QEMU's `qemu64` (AMD
/// family 0xF), 10 ms for an AMD family 0xE; the override wins on both.
#[test]
fn init_delay_follows_the_cpu() {
    let cases = [
        ("", None, 0),
        ("", Some("qemu64,family=14"), 10_000),
        ("init_delay_us=300", None, 300),
        ("init_delay_us=0", Some("qemu64,family=14"), 0),
    ];
    for (append, cpu, expected) in cases {
        let spec = RunSpec {
            append: format!("vmx=off {append}"),
            extra_args: cpu
                .map(|c| vec!["-cpu".to_string(), c.to_string()])
                .unwrap_or_default(),
            ..qemu_smp("2")
        };
        let o = boot_qemu(&spec, 2);
        assert_smp_ok(&o, 2, 2);
        let family = line(&o, "cpu", "vendor=");
        let starting = line(&o, "smp", "starting ");
        assert_eq!(
            num_field(&o, &starting, "init_delay_us"),
            expected,
            "append={append:?} cpu={cpu:?} ({}){}",
            family.message,
            context(&o)
        );
    }
}

/// Bochs (GRUB ISO, Bochs BIOS tables), SMP only.
fn bochs_smp_only(n: u32) {
    let spec = RunSpec {
        smp: n.to_string(),
        ..bochs("vmx=off")
    };
    let o = {
        let _host = shared_host();
        boot(&spec)
    };
    let pcbs = assert_smp_ok(&o, n, n as usize);
    let ids: Vec<u32> = pcbs.iter().map(|p| p.apic_id).collect();
    assert_eq!(ids, (0..n).collect::<Vec<_>>(), "{}", context(&o));
    assert_eq!(
        o.summary_value("vmx_root"),
        Some("0"),
        "vmx=off skips the VMX stage{}",
        context(&o)
    );
    assert!(
        o.lines().iter().all(|l| l.module != "vmx"),
        "no `vmx:` line with vmx=off{}",
        context(&o)
    );
}

#[test]
fn bochs_smp_only_1_cpu() {
    bochs_smp_only(1);
}

#[test]
fn bochs_smp_only_2_cpus() {
    bochs_smp_only(2);
}

#[test]
fn bochs_smp_only_4_cpus() {
    bochs_smp_only(4);
}

/// Bochs' maximum (16 CPUs make it panic: too many timers).
#[test]
fn bochs_smp_only_15_cpus() {
    bochs_smp_only(15);
}

/// The compact form with the VMX stage on (Bochs, 4 CPUs, `log_per_core_max=2`): the BSP's `vmx: root cpus=`
/// runs list every core in VMX root, the per-core `vmx: root apic_id=` lines are not at INFO, and at
/// `log=debug` both are there and agree (`xtask::serial::vmx_root_apic_ids`).
#[test]
fn bochs_4_cpus_compact_log_with_vmx() {
    for level in ["info", "debug"] {
        let spec = RunSpec {
            smp: "4".into(),
            ..bochs(&format!("log_per_core_max=2 log={level}"))
        };
        let o = {
            let _host = shared_host();
            boot(&spec)
        };
        let pcbs = assert_smp_ok(&o, 4, 4);
        assert_compact_log(&o);
        assert_eq!(o.summary_value("vmx_root"), Some("4"), "{}", context(&o));
        let roots = xtask::serial::vmx_root_apic_ids(&o.lines())
            .unwrap_or_else(|e| panic!("{e}{}", context(&o)));
        let mut ids: Vec<u32> = pcbs.iter().map(|p| p.apic_id).collect();
        ids.sort_unstable();
        assert_eq!(roots, ids, "every core in VMX root, once{}", context(&o));
        // Every core's guest passed, read from the `vmx: guest cpus=` runs (and, at debug, the per-core
        // lines, each of which must be in a run).
        let guests = xtask::serial::guest_ok_apic_ids(&o.lines())
            .unwrap_or_else(|e| panic!("{e}{}", context(&o)));
        assert_eq!(
            guests,
            ids,
            "every core's guest passed, once{}",
            context(&o)
        );
        assert_eq!(summary_num(&o, "guests"), 4, "{}", context(&o));
        let each = root_lines(&o);
        match level {
            "info" => {
                assert!(each.is_empty(), "{}", context(&o));
                assert!(guest_lines(&o).is_empty(), "{}", context(&o));
                line(&o, "vmx", "guest cpus=0-3 apic_ids=0-3 result=ok");
            }
            _ => {
                assert_compact_runs_with_debug_lines(&o, 4);
                assert_own_pcb_lines(&o, &pcbs);
                assert_eq!(each.len(), 4, "{}", context(&o));
                assert_guest_ok_everywhere(&o, &pcbs, Some(true));
            }
        }
    }
}
