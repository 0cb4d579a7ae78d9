//! Makes the ACPI seed corpus in `smp/fuzz-corpus/` from real firmware: QEMU (SeaBIOS, q35 and pc)
//! and Bochs (BIOS-bochs-latest). Not part of `cargo test` (it rewrites committed files):
//!
//! ```text
//! cargo test --test acpi_corpus -- --ignored --nocapture
//! ```
//!
//! QEMU: the image boots (`-kernel`, PVH) with `on_done=halt`; once its summary line is on the
//! serial port, the monitor's `pmemsave` writes guest RAM to a file. Bochs: the internal debugger
//! stops at the kernel's 32-bit entry (`pb <ELF entry>`, after the BIOS built its tables and GRUB
//! loaded the kernel) and `writemem` writes guest RAM to a file. Either way the RSDP is found by
//! scanning 0xE0000..0x100000 in the dump, and the RSDP, the RSDT/XSDT and every table they list
//! are written as `<hex address>-<signature>.bin`. `expect.txt` records the processors the kernel
//! itself logged (`acpi: madt: ... state=usable` lines of a normal boot of the same machine):
//! `cpus=<APIC ids, BSP first> usable=<n>`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use xtask::{Backend, RunSpec};

const MEMORY_MIB: u64 = 128;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("smp/fuzz-corpus")
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn sum_ok(b: &[u8]) -> bool {
    b.iter().fold(0u8, |s, &x| s.wrapping_add(x)) == 0
}

/// The tables reachable from the RSDP in a RAM dump: (address, signature, bytes).
fn extract(mem: &[u8]) -> Vec<(u64, String, Vec<u8>)> {
    let rsdp = (0xE_0000..0x10_0000)
        .step_by(16)
        .find(|&a| &mem[a..a + 8] == b"RSD PTR " && sum_ok(&mem[a..a + 20]))
        .expect("no RSDP in 0xE0000..0x100000");
    let rev = mem[rsdp + 15];
    let len = if rev >= 2 {
        u32_at(mem, rsdp + 20) as usize
    } else {
        20
    };
    let mut out = vec![(
        rsdp as u64,
        "RSDP".to_string(),
        mem[rsdp..rsdp + len].to_vec(),
    )];
    let mut roots = vec![(u32_at(mem, rsdp + 16) as usize, 4)];
    if rev >= 2 {
        let x = u64::from_le_bytes(mem[rsdp + 24..rsdp + 32].try_into().unwrap()) as usize;
        if x != 0 {
            roots.push((x, 8));
        }
    }
    let table = |a: usize| -> (String, Vec<u8>) {
        let sig = String::from_utf8_lossy(&mem[a..a + 4]).into_owned();
        let n = u32_at(mem, a + 4) as usize;
        (sig, mem[a..a + n].to_vec())
    };
    for (root, size) in roots {
        if root == 0 {
            continue;
        }
        let (sig, bytes) = table(root);
        for chunk in bytes[36..].chunks_exact(size) {
            let a = if size == 4 {
                u32_at(chunk, 0) as usize
            } else {
                u64::from_le_bytes(chunk.try_into().unwrap()) as usize
            };
            if !out.iter().any(|t| t.0 == a as u64) {
                let (s, b) = table(a);
                out.push((a as u64, s, b));
            }
        }
        out.push((root as u64, sig, bytes));
    }
    out
}

fn write_entry(name: &str, tables: &[(u64, String, Vec<u8>)], expect: &str) {
    let dir = corpus_dir().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (addr, sig, bytes) in tables {
        std::fs::write(dir.join(format!("{addr:08x}-{sig}.bin")), bytes).unwrap();
    }
    std::fs::write(dir.join("expect.txt"), format!("{expect}\n")).unwrap();
    eprintln!("acpi_corpus: {name}: {} tables, {expect}", tables.len());
}

/// `cpus=<ids, BSP first> usable=<n>` from the kernel's `acpi: madt:` lines.
fn expect_from_log(log: &str) -> String {
    let ids: Vec<String> = xtask::serial::parse_log(log)
        .into_iter()
        .filter(|l| l.module == "acpi" && l.message.starts_with("madt: apic_id="))
        .filter(|l| l.field("state") == Some("usable"))
        .map(|l| l.field("apic_id").unwrap().to_string())
        .collect();
    assert!(!ids.is_empty(), "no usable madt lines in:\n{log}");
    format!("cpus={} usable={}", ids.join(","), ids.len())
}

fn dump_qemu(name: &str, machine: &str, smp: &str) {
    let kernel = xtask::build_image(false).unwrap();
    let dir = xtask::image::target_dir().join("acpi-dump").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let serial = dir.join("serial.log");
    let ram = dir.join("ram.bin");
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-machine", machine, "-accel", "tcg", "-m"])
        .arg(MEMORY_MIB.to_string())
        .args([
            "-smp",
            smp,
            "-display",
            "none",
            "-no-reboot",
            "-monitor",
            "stdio",
        ])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-kernel")
        .arg(&kernel)
        .args(["-append", "vmx=off on_done=halt"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("qemu-system-x86_64");
    let start = Instant::now();
    let log = loop {
        let log = std::fs::read_to_string(&serial).unwrap_or_default();
        if log.contains("summary:") {
            break log;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{name}: no summary:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stdin = child.stdin.take().unwrap();
    writeln!(
        stdin,
        "pmemsave 0 {:#x} \"{}\"",
        MEMORY_MIB << 20,
        ram.display()
    )
    .unwrap();
    writeln!(stdin, "quit").unwrap();
    drop(stdin);
    child.wait().unwrap();
    let mem = std::fs::read(&ram).unwrap();
    write_entry(name, &extract(&mem), &expect_from_log(&log));
    let _ = std::fs::remove_dir_all(&dir);
}

fn dump_bochs(name: &str, cpus: u32) {
    // The kernel's own view of the machine, from a normal boot.
    let spec = RunSpec {
        backend: Backend::Bochs,
        smp: cpus.to_string(),
        append: "vmx=off".into(),
        memory_mib: MEMORY_MIB as u32,
        quiet: true,
        timeout: Some(Duration::from_secs(180)),
        ..RunSpec::default()
    };
    let o = xtask::run(&spec).unwrap();
    let expect = expect_from_log(&o.log);

    let kernel = xtask::build_image(false).unwrap();
    let entry = xtask::image::parse_elf64(&std::fs::read(&kernel).unwrap())
        .unwrap()
        .entry;
    let iso = xtask::image::cached_iso(&kernel, "vmx=off on_done=halt").unwrap();
    let dir = xtask::image::target_dir().join("acpi-dump").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = xtask::bochs::BochsConfig {
        cpus,
        cpu_model: xtask::DEFAULT_CPU_MODEL.into(),
        memory_mib: MEMORY_MIB as u32,
        iso,
        serial_log: dir.join("serial.log"),
        rom: xtask::BochsRom::Bochs,
        workdir: dir.clone(),
    };
    let mut cmd = xtask::bochs::command(&cfg).unwrap();
    let ram = dir.join("ram.bin");
    // Replace the debugger script `command` wrote ("c") with: stop at the kernel's entry, dump RAM.
    let rc = dir.join(xtask::bochs::DEBUGGER_RC_FILE);
    std::fs::write(
        &rc,
        format!(
            "pb {entry:#x}\nc\nwritemem \"{}\" 0 {:#x}\nquit\n",
            ram.display(),
            MEMORY_MIB << 20
        ),
    )
    .unwrap();
    let out = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status();
    assert!(out.is_ok());
    let mem = std::fs::read(&ram).unwrap_or_else(|e| panic!("{name}: no RAM dump ({e})"));
    write_entry(name, &extract(&mem), &expect);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "rewrites smp/fuzz-corpus from live emulators; run by hand"]
fn make_acpi_corpus() {
    for (name, machine, smp) in [
        ("qemu-q35-smp1", "q35", "1"),
        ("qemu-q35-smp4", "q35", "4"),
        (
            "qemu-q35-smp6-sockets2-cores3",
            "q35",
            "6,sockets=2,cores=3",
        ),
        ("qemu-q35-smp8-maxcpus12", "q35", "8,maxcpus=12"),
        ("qemu-q35-smp64", "q35", "64"),
        ("qemu-pc-smp1", "pc", "1"),
        ("qemu-pc-smp2", "pc", "2"),
        ("qemu-pc-smp16", "pc", "16"),
    ] {
        dump_qemu(name, machine, smp);
    }
    for cpus in [1, 4, 15] {
        dump_bochs(&format!("bochs-smp{cpus}"), cpus);
    }
}
