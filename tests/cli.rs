//! The `cargo run` command line end to end: exit statuses and messages of the runner binary.

use std::process::{Command, Output};

fn runner(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run the xtask binary")
}

fn show(o: &Output) -> String {
    format!(
        "\n--- status {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn ok_run_exits_0_and_streams_the_log() {
    let o = runner(&["--backend", "qemu", "--smp", "1", "--append", "vmx=off"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("boot: loader=pvh"), "{}", show(&o));
    // Exactly one streamed line is the summary, and its parsed verdict is ok.
    let summaries: Vec<xtask::Summary> = stdout
        .lines()
        .filter_map(xtask::Summary::parse_line)
        .collect();
    assert_eq!(summaries.len(), 1, "summary lines{}", show(&o));
    assert_eq!(
        summaries[0].verdict(),
        Some(xtask::Verdict::Ok),
        "{}",
        show(&o)
    );
    assert_eq!(summaries[0].get("reason"), Some("none"), "{}", show(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("runner: backend=qemu"), "{}", show(&o));
}

#[test]
fn failing_run_exits_1() {
    let o = runner(&[
        "--backend",
        "qemu",
        "--smp",
        "1",
        "--quiet",
        "--append",
        "fault=ud",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(o.stdout.is_empty(), "--quiet streamed the log{}", show(&o));
}

#[test]
fn degraded_run_exits_2() {
    // QEMU TCG has no VMX: with the VMX stage on, the verdict is degraded.
    let o = runner(&["--backend", "qemu", "--smp", "1", "--quiet"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
}

#[test]
fn timeout_exits_4_and_says_so() {
    // `-S` keeps the CPUs stopped: no serial output, ever.
    let o = runner(&[
        "--backend",
        "qemu",
        "--smp",
        "1",
        "--timeout",
        "1",
        "--",
        "-S",
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("timeout after 1 s"),
        "{}",
        show(&o)
    );
}

/// Boots `bytes` (a tiny kernel that loads an empty IDT and executes int3) with `backend` and checks that the
/// runner names the triple fault and exits 3.
fn assert_triple_fault_reported(backend: &str, file_name: &str, bytes: &[u8]) {
    let kernel = xtask::image::target_dir()
        .join("test-images")
        .join(format!("{file_name}-{}", std::process::id()));
    std::fs::create_dir_all(kernel.parent().unwrap()).unwrap();
    std::fs::write(&kernel, bytes).unwrap();
    let o = runner(&[
        "--backend",
        backend,
        "--smp",
        "1",
        "--kernel",
        kernel.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_file(&kernel);
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("triple fault detected"),
        "{}",
        show(&o)
    );
}

#[test]
fn triple_fault_exits_3_and_says_so() {
    // A multiboot1 flat image, booted by QEMU's own loader (-no-reboot, -d cpu_reset).
    assert_triple_fault_reported(
        "qemu",
        "triple-fault.bin",
        &xtask::image::triple_fault_image_bytes(),
    );
}

#[test]
fn bochs_triple_fault_exits_3_and_says_so() {
    // The same, as a multiboot2 ELF booted by GRUB in Bochs (which panics on a triple fault).
    assert_triple_fault_reported(
        "bochs",
        "triple-fault-mb2.elf",
        &xtask::image::triple_fault_multiboot2_elf_bytes(),
    );
}

#[test]
fn usage_errors_exit_64() {
    for args in [
        &["--frobnicate"][..],
        &["--backend", "bochs", "--smp", "16"],
        &["--backend", "bochs", "--machine", "pc"],
        &["--backend", "qemu", "--uefi", "--boot", "pvh"],
    ] {
        let o = runner(args);
        assert_eq!(o.status.code(), Some(64), "{args:?}{}", show(&o));
    }
    let o = runner(&["--backend", "bochs", "--smp", "16"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("at most 15"),
        "{}",
        show(&o)
    );
}

#[test]
fn help_exits_0() {
    let o = runner(&["--help"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("--backend"),
        "{}",
        show(&o)
    );
}
