//! Command-line parsing for `cargo run` (std only).

use std::path::PathBuf;
use std::time::Duration;

use crate::args::Args;
use crate::{Backend, BochsRom, Boot, Machine, RunSpec};

pub const USAGE: &str = "\
Usage: cargo run [-- OPTIONS] [-- EXTRA EMULATOR ARGS]
       cargo run -- iso [--append \"<kernel cmdline>\"]
       cargo run -- bench [--help | OPTIONS]   (bring-up benchmark, docs/performance.md)
       cargo run -- soak [--help | OPTIONS]    (reliability soak, docs/reliability.md)
       cargo run -- mutants [--help | OPTIONS] (mutation testing with cargo-mutants, docs/testing.md)

Builds the hypervisor image, boots it, streams the serial log and exits with the verdict.

Options:
  --backend auto|qemu|bochs|kvm  emulator (default auto: kvm if nested VT-x works, else bochs)
  --smp <spec>                   QEMU -smp spec, verbatim (default 4); Bochs takes the CPU count (max 15)
  --memory <MiB>                 guest memory (default 512)
  --timeout <s>                  kill the emulator after this many seconds (default 60; 0 = never;
                                 with --gdb the default is never)
  --append \"<cmdline>\"           kernel command line (on_done=exit is added unless on_done= is given)
  --quiet                        do not stream the serial log
  --kernel <file>                boot this file instead of building the image (QEMU -kernel, or
                                 put into the GRUB ISO)
QEMU (qemu, kvm):
  --machine q35|pc               machine type (default q35)
  --boot pvh|iso                 direct PVH -kernel boot (default) or the GRUB ISO as -cdrom
  --uefi                         OVMF firmware + GRUB ISO
  --gdb                          start stopped with a gdbstub on localhost:1234 (-s -S)
Bochs:
  --cpu-model <model>            Bochs CPU model (default corei7_haswell_4770)
  --bios bochs|seabios           ROM image (default bochs)

Everything after a second `--` is appended to the emulator's command line.

Subcommand `iso`: builds the GRUB ISO for real hardware into target/hypervisor.iso (command line
default on_done=halt) and prints how to write it to a USB stick.

Exit status: 0 verdict=ok, 1 verdict=fail, 2 verdict=degraded, 3 no summary line (emulator exited,
crashed or triple-faulted), 4 timeout, 5 emulator/tool missing or backend unavailable, 6 image build
failed, 64 usage error.
";

/// What the command line asks for.
#[derive(Clone, Debug)]
pub enum Cli {
    Run(RunSpec),
    Iso { append: String },
    Bench(crate::bench::BenchSpec),
    BenchHelp,
    Soak(crate::soak::SoakSpec),
    SoakHelp,
    Mutants(crate::mutants::MutantsSpec),
    MutantsHelp,
    Help,
}

/// Parses the arguments after the program name.
pub fn parse_args<I, S>(args: I) -> Result<Cli, String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let args: Vec<String> = args.into_iter().map(Into::into).collect();
    if args.first().map(String::as_str) == Some("bench") {
        let own = args[1..].iter().take_while(|a| *a != "--");
        if own.clone().any(|a| a == "-h" || a == "--help") {
            return Ok(Cli::BenchHelp);
        }
        return crate::bench::parse_args(args[1..].iter().cloned())
            .map(Cli::Bench)
            .map_err(|e| format!("{e} (see `cargo run -- bench --help`)"));
    }
    if args.first().map(String::as_str) == Some("soak") {
        return crate::soak::parse_args(&args[1..])
            .map(|spec| spec.map_or(Cli::SoakHelp, Cli::Soak))
            .map_err(|e| format!("{e} (see `cargo run -- soak --help`)"));
    }
    if args.first().map(String::as_str) == Some("mutants") {
        return crate::mutants::parse_args(&args[1..])
            .map(|spec| spec.map_or(Cli::MutantsHelp, Cli::Mutants))
            .map_err(|e| format!("{e} (see `cargo run -- mutants --help`)"));
    }
    let mut args = Args::new(args);
    let iso = args.peek() == Some("iso");
    if iso {
        args.next_opt();
    }
    let mut spec = RunSpec {
        show_build_output: true,
        ..RunSpec::default()
    };
    let mut timeout_given = false;
    let mut appends: Vec<String> = Vec::new();
    let mut run_only: Vec<&'static str> = Vec::new();

    while let Some(opt) = args.next_opt() {
        match opt.name.as_str() {
            "--" if opt.flag().is_ok() => {
                if iso {
                    return Err("`iso` takes no emulator arguments".into());
                }
                spec.extra_args = args.rest();
                break;
            }
            "-h" | "--help" => return Ok(Cli::Help),
            "--append" => appends.push(args.value(&opt)?),
            "--backend" => {
                let v = args.value(&opt)?;
                spec.backend = Backend::parse(&v)
                    .ok_or_else(|| format!("--backend {v:?}: expected auto, qemu, bochs or kvm"))?;
                run_only.push("--backend");
            }
            "--smp" => {
                spec.smp = args.value(&opt)?;
                if spec.smp.trim().is_empty() {
                    return Err("--smp needs a value".into());
                }
                run_only.push("--smp");
            }
            "--machine" => {
                let v = args.value(&opt)?;
                spec.machine = Some(
                    Machine::parse(&v)
                        .ok_or_else(|| format!("--machine {v:?}: expected q35 or pc"))?,
                );
                run_only.push("--machine");
            }
            "--boot" => {
                let v = args.value(&opt)?;
                spec.boot = Some(
                    Boot::parse(&v).ok_or_else(|| format!("--boot {v:?}: expected pvh or iso"))?,
                );
                run_only.push("--boot");
            }
            "--uefi" => {
                opt.flag()?;
                spec.uefi = true;
                run_only.push("--uefi");
            }
            "--timeout" => {
                let secs: u64 = args.number(&opt, |_| true, "expected whole seconds")?;
                spec.timeout = (secs > 0).then(|| Duration::from_secs(secs));
                timeout_given = true;
                run_only.push("--timeout");
            }
            "--memory" => {
                spec.memory_mib = args.number(&opt, |&m| m > 0, "expected MiB > 0")?;
                run_only.push("--memory");
            }
            "--gdb" => {
                opt.flag()?;
                spec.gdb = true;
                run_only.push("--gdb");
            }
            "--cpu-model" => {
                let v = args.value(&opt)?;
                if v.is_empty() {
                    return Err("--cpu-model needs a value".into());
                }
                spec.cpu_model = Some(v);
                run_only.push("--cpu-model");
            }
            "--bios" => {
                let v = args.value(&opt)?;
                spec.bios = Some(match v.as_str() {
                    "bochs" => BochsRom::Bochs,
                    "seabios" => BochsRom::SeaBios,
                    _ => return Err(format!("--bios {v:?}: expected bochs or seabios")),
                });
                run_only.push("--bios");
            }
            "--kernel" => {
                let v = args.value(&opt)?;
                if v.is_empty() {
                    return Err("--kernel needs a file".into());
                }
                spec.kernel = Some(PathBuf::from(v));
                run_only.push("--kernel");
            }
            "--quiet" => {
                opt.flag()?;
                spec.quiet = true;
                run_only.push("--quiet");
            }
            other if other.starts_with('-') => return Err(format!("unknown option {other}")),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    let append = appends.join(" ");
    if iso {
        if let Some(opt) = run_only.first() {
            return Err(format!("`iso` takes only --append, not {opt}"));
        }
        return Ok(Cli::Iso { append });
    }
    spec.append = append;
    // With --quiet, cargo's output is shown only if the build fails.
    spec.show_build_output = !spec.quiet;
    if spec.gdb && !timeout_given {
        spec.timeout = None;
    }
    Ok(Cli::Run(spec))
}

/// The text printed after `cargo run -- iso`.
pub fn usb_instructions(iso: &std::path::Path, cmdline: &str) -> String {
    format!(
        "runner: wrote {iso} (kernel command line: {cmdline:?}; BIOS and UEFI boot)\n\
         runner: to write it to a USB stick (this erases the stick; find its device with `lsblk`):\n\
         \x20   sudo dd if={iso} of=/dev/sdX bs=4M conv=fsync status=progress\n\
         runner: the log is on COM1 (115200 8N1)",
        iso = iso.display()
    )
}

/// Convenience for tests: the `RunSpec` of a command line, or the error.
pub fn parse_run(args: &[&str]) -> Result<RunSpec, String> {
    match parse_args(args.iter().copied())? {
        Cli::Run(spec) => Ok(spec),
        other => Err(format!("not a run: {other:?}")),
    }
}

/// The default path of `cargo run -- iso`.
pub fn hardware_iso_path() -> PathBuf {
    crate::image::target_dir().join("hypervisor.iso")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let s = parse_run(&[]).unwrap();
        assert_eq!(s.backend, Backend::Auto);
        assert_eq!(s.smp, "4");
        assert_eq!(s.memory_mib, 512);
        assert_eq!(s.timeout, Some(Duration::from_secs(60)));
        assert_eq!(s.machine, None);
        assert_eq!(s.boot, None);
        assert!(!s.uefi && !s.gdb && !s.quiet);
        assert!(s.show_build_output);
        assert!(s.extra_args.is_empty());
        assert_eq!(s.append, "");
    }

    #[test]
    fn all_options() {
        let s = parse_run(&[
            "--backend",
            "qemu",
            "--smp=6,sockets=2,cores=3",
            "--machine",
            "pc",
            "--boot",
            "iso",
            "--uefi",
            "--append",
            "log=debug",
            "--append=fault=ud",
            "--timeout",
            "5",
            "--memory",
            "1024",
            "--quiet",
            "--kernel",
            "/tmp/k.bin",
            "--",
            "-d",
            "int",
            "--smp",
        ])
        .unwrap();
        assert_eq!(s.backend, Backend::Qemu);
        assert_eq!(s.smp, "6,sockets=2,cores=3");
        assert_eq!(s.machine, Some(Machine::Pc));
        assert_eq!(s.boot, Some(Boot::Iso));
        assert!(s.uefi && s.quiet);
        assert_eq!(s.append, "log=debug fault=ud");
        assert_eq!(s.timeout, Some(Duration::from_secs(5)));
        assert_eq!(s.memory_mib, 1024);
        assert_eq!(s.extra_args, vec!["-d", "int", "--smp"]);
        assert_eq!(s.kernel, Some(PathBuf::from("/tmp/k.bin")));

        let s = parse_run(&[
            "--backend",
            "bochs",
            "--cpu-model",
            "skylake_x",
            "--bios",
            "seabios",
        ])
        .unwrap();
        assert_eq!(s.backend, Backend::Bochs);
        assert_eq!(s.cpu_model.as_deref(), Some("skylake_x"));
        assert!(matches!(s.bios, Some(BochsRom::SeaBios)));
    }

    #[test]
    fn gdb_disables_default_timeout() {
        assert_eq!(parse_run(&["--gdb"]).unwrap().timeout, None);
        assert_eq!(
            parse_run(&["--gdb", "--timeout", "9"]).unwrap().timeout,
            Some(Duration::from_secs(9))
        );
        assert_eq!(parse_run(&["--timeout", "0"]).unwrap().timeout, None);
    }

    #[test]
    fn errors() {
        for bad in [
            &["--backend", "vbox"][..],
            &["--machine", "isapc"],
            &["--boot", "floppy"],
            &["--timeout", "1.5"],
            &["--memory", "0"],
            &["--bios", "uefi"],
            &["--smp"],
            &["--smp", ""],
            &["--frobnicate"],
            &["stray"],
            &["--uefi=yes"],
        ] {
            assert!(parse_args(bad.iter().copied()).is_err(), "{bad:?}");
        }
        assert!(matches!(parse_args(["--help"]), Ok(Cli::Help)));
        assert!(matches!(parse_args(["--smp", "2", "-h"]), Ok(Cli::Help)));
    }

    #[test]
    fn iso_subcommand() {
        match parse_args(["iso", "--append", "log=debug"]).unwrap() {
            Cli::Iso { append } => assert_eq!(append, "log=debug"),
            other => panic!("{other:?}"),
        }
        match parse_args(["iso"]).unwrap() {
            Cli::Iso { append } => assert_eq!(append, ""),
            other => panic!("{other:?}"),
        }
        assert!(parse_args(["iso", "--smp", "2"]).is_err());
        assert!(parse_args(["iso", "--", "-x"]).is_err());
        // `iso` is a subcommand only in first position.
        assert!(parse_args(["--quiet", "iso"]).is_err());
    }

    #[test]
    fn mutants_subcommand() {
        match parse_args(["mutants", "--package", "smp", "--budget-minutes", "5"]).unwrap() {
            Cli::Mutants(spec) => {
                assert_eq!(spec.packages, ["smp"]);
                assert_eq!(spec.budget, Duration::from_secs(300));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_args(["mutants", "--help"]).unwrap(),
            Cli::MutantsHelp
        ));
        let e = parse_args(["mutants", "--package", "x"]).unwrap_err();
        assert!(e.contains("cargo run -- mutants --help"), "{e}");
        // A subcommand only in first position.
        assert!(parse_args(["--quiet", "mutants"]).is_err());
    }

    #[test]
    fn usb_text() {
        let t = usb_instructions(
            std::path::Path::new("target/hypervisor.iso"),
            "on_done=halt",
        );
        assert!(t.contains("dd if=target/hypervisor.iso of=/dev/sdX"), "{t}");
    }
}
