//! `cargo run -- mutants [--package P]... [--filter RE]... [--jobs N] [--budget-minutes N]`: mutation testing
//! of the decision code with cargo-mutants (docs/testing.md, "Mutation testing"). Which files and functions
//! are mutated is in `.cargo/mutants.toml`; this module picks the test command per package, runs one package
//! at a time, niced, and stops when the time budget is spent. Not part of `cargo test` or CI.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::args::Args;

pub const USAGE: &str = "\
Usage: cargo run -- mutants [--package <P>]... [--filter <RE>]... [--jobs <N>] [--budget-minutes <N>] [--list]

Runs cargo-mutants over the decision code (.cargo/mutants.toml lists the files and the functions left out,
with the reasons), one package after the other, niced (one job at a time unless --jobs). Each package is tested with
its own host tests; the root package xtask with `--lib` only (its tests/ boot emulators).

Options:
  --package <P>         boot, smp, hypervisor or xtask; may be repeated (default: all four)
  --filter <RE>         only the mutants whose name (path:line:column: change) matches this regex, e.g.
                        'hypervisor/src/vmx/vmcs/checks/' for one slice; may be repeated (cargo-mutants -F)
  --jobs <N>            builds and tests at a time (default 1; 2 uses both cores of a 2-core machine)
  --budget-minutes <N>  stop after this many minutes in all (default 60); a rerun continues where it
                        stopped (--iterate skips the mutants already caught)
  --list                only list the mutants that would be tested

Results: target/mutants/<P>/mutants.out (caught.txt, missed.txt, timeout.txt, unviable.txt).
Exit status: 0 no mutant missed, 1 a mutant was missed or timed out, 4 the budget ran out first,
5 cargo-mutants is not installed, 64 usage error.
";

/// The exit status when cargo-mutants is missing (as for a missing emulator).
pub const EXIT_TOOL_MISSING: i32 = 5;

/// The packages with decision code, in the order they are run.
pub const PACKAGES: &[&str] = &["boot", "smp", "hypervisor", "xtask"];

/// What `cargo run -- mutants` was asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MutantsSpec {
    pub packages: Vec<String>,
    pub budget: Duration,
    pub list: bool,
    /// Regexes on the mutants' names (cargo-mutants `-F`).
    pub filters: Vec<String>,
    pub jobs: u32,
}

impl Default for MutantsSpec {
    fn default() -> MutantsSpec {
        MutantsSpec {
            packages: PACKAGES.iter().map(|p| p.to_string()).collect(),
            budget: Duration::from_secs(60 * 60),
            list: false,
            filters: Vec::new(),
            jobs: 1,
        }
    }
}

/// Parses the arguments after `mutants`; `Ok(None)` for `--help`.
pub fn parse_args(args: &[String]) -> Result<Option<MutantsSpec>, String> {
    let mut spec = MutantsSpec::default();
    let mut packages = Vec::new();
    let mut args = Args::new(args.to_vec());
    while let Some(opt) = args.next_opt() {
        match opt.name.as_str() {
            "-h" | "--help" => return Ok(None),
            "--list" => {
                opt.flag()?;
                spec.list = true;
            }
            "--package" | "-p" => {
                let p = args.value(&opt)?;
                if !PACKAGES.contains(&p.as_str()) {
                    return Err(format!("--package {p}: not one of {}", PACKAGES.join(", ")));
                }
                if !packages.contains(&p) {
                    packages.push(p);
                }
            }
            "--filter" | "-F" => spec.filters.push(args.value(&opt)?),
            "--jobs" | "-j" => {
                let v = args.value(&opt)?;
                spec.jobs = v
                    .parse()
                    .ok()
                    .filter(|j| (1..=64).contains(j))
                    .ok_or_else(|| format!("--jobs {v}: expected a whole number from 1 to 64"))?;
            }
            "--budget-minutes" => {
                let v = args.value(&opt)?;
                let minutes: u64 =
                    v.parse().ok().filter(|m| *m > 0).ok_or_else(|| {
                        format!("--budget-minutes {v}: expected a whole number >= 1")
                    })?;
                spec.budget = Duration::from_secs(minutes * 60);
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    if !packages.is_empty() {
        spec.packages = packages;
    }
    Ok(Some(spec))
}

/// The output directory of one package's results (cargo-mutants puts `mutants.out/` inside).
pub fn output_dir(root: &Path, package: &str) -> PathBuf {
    root.join("target").join("mutants").join(package)
}

/// The `cargo mutants` arguments for one package: the filters, the jobs, the package's own tests, `--iterate`
/// so that a run stopped by the budget continues where it stopped. The root package is tested with `--lib`
/// only.
pub fn cargo_mutants_args(package: &str, output: &Path, spec: &MutantsSpec) -> Vec<String> {
    let mut a: Vec<String> = vec!["mutants".into(), "--package".into(), package.into()];
    for filter in &spec.filters {
        a.extend(["-F".into(), filter.clone()]);
    }
    if spec.list {
        a.push("--list".into());
        return a;
    }
    a.extend([
        "-j".into(),
        spec.jobs.to_string(),
        "--iterate".into(),
        "--output".into(),
        output.display().to_string(),
    ]);
    if package == "xtask" {
        a.extend(["--".into(), "--lib".into()]);
    }
    a
}

/// The counts of one package's run, read from its `mutants.out/`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub caught: usize,
    pub missed: usize,
    pub timeout: usize,
    pub unviable: usize,
}

impl Counts {
    /// Counts the non-empty lines of each outcome file's text (`None`: the file does not exist).
    pub fn from_texts(
        caught: Option<&str>,
        missed: Option<&str>,
        timeout: Option<&str>,
        unviable: Option<&str>,
    ) -> Counts {
        let n =
            |t: Option<&str>| t.map_or(0, |t| t.lines().filter(|l| !l.trim().is_empty()).count());
        Counts {
            caught: n(caught),
            missed: n(missed),
            timeout: n(timeout),
            unviable: n(unviable),
        }
    }

    pub fn read(out: &Path) -> Counts {
        let read = |f: &str| std::fs::read_to_string(out.join("mutants.out").join(f)).ok();
        Counts::from_texts(
            read("caught.txt").as_deref(),
            read("missed.txt").as_deref(),
            read("timeout.txt").as_deref(),
            read("unviable.txt").as_deref(),
        )
    }

    /// One row of the results table in docs/testing.md.
    pub fn row(&self, package: &str) -> String {
        format!(
            "| {package} | {} | {} | {} | {} |",
            self.caught, self.missed, self.timeout, self.unviable
        )
    }
}

/// The message when `cargo mutants` cannot be run.
pub const NOT_INSTALLED: &str =
    "cargo-mutants is not installed: install it with `cargo install --locked cargo-mutants`";

/// The exit status of a finished command: 4 if the budget ran out, 1 if a mutant was missed or timed out,
/// else 0.
pub fn exit_status(results: &[Counts], budget_spent: bool) -> i32 {
    if budget_spent {
        4
    } else if results.iter().any(|c| c.missed > 0 || c.timeout > 0) {
        1
    } else {
        0
    }
}

fn installed() -> bool {
    Command::new(crate::image::cargo_program())
        .args(["mutants", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `cargo mutants` for each package of `spec` until the budget is spent; returns the exit status.
pub fn run_mutants(spec: &MutantsSpec) -> i32 {
    if !installed() {
        eprintln!("runner: {NOT_INSTALLED}");
        return EXIT_TOOL_MISSING;
    }
    let root = crate::image::repo_root();
    let start = Instant::now();
    let mut results = Vec::new();
    let mut budget_spent = false;
    for package in &spec.packages {
        let out = output_dir(&root, package);
        let Some(left) = spec.budget.checked_sub(start.elapsed()) else {
            budget_spent = true;
            break;
        };
        let args = cargo_mutants_args(package, &out, spec);
        eprintln!(
            "runner: mutants: {package}: nice cargo {} ({} min of the budget left)",
            args.join(" "),
            left.as_secs() / 60
        );
        let mut cmd = Command::new("nice");
        cmd.arg("-n")
            .arg("10")
            .arg(crate::image::cargo_program())
            .args(&args)
            .current_dir(&root);
        if !spec.list {
            if let Err(e) = std::fs::create_dir_all(&out) {
                eprintln!("runner: mutants: {}: {e}", out.display());
                return 1;
            }
        }
        // Its own process group, so that the budget's end stops cargo-mutants and the builds it started.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("runner: mutants: starting nice cargo mutants: {e}");
                return EXIT_TOOL_MISSING;
            }
        };
        let deadline = Instant::now() + left;
        let finished = loop {
            match child.try_wait() {
                Ok(Some(_)) => break true,
                Ok(None) if Instant::now() >= deadline => break false,
                Ok(None) => thread::sleep(Duration::from_millis(500)),
                Err(e) => {
                    eprintln!("runner: mutants: waiting for cargo mutants: {e}");
                    break false;
                }
            }
        };
        if !finished {
            // SIGINT first: cargo-mutants then removes its scratch copies; SIGKILL if it does not end.
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-INT", "--", &group]).status();
            let stop_by = Instant::now() + Duration::from_secs(30);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < stop_by {
                thread::sleep(Duration::from_millis(200));
            }
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = child.wait();
            budget_spent = true;
        }
        if spec.list {
            continue;
        }
        let counts = Counts::read(&out);
        results.push(counts);
        eprintln!(
            "runner: mutants: {package}: caught={} missed={} timeout={} unviable={}{}",
            counts.caught,
            counts.missed,
            counts.timeout,
            counts.unviable,
            if finished {
                ""
            } else {
                " (stopped by the budget)"
            }
        );
        if counts.missed > 0 {
            eprintln!(
                "runner: mutants: {package}: the missed mutants are in {}",
                out.join("mutants.out").join("missed.txt").display()
            );
        }
        if !finished {
            break;
        }
    }
    if spec.list {
        return 0;
    }
    eprintln!("| package | caught | missed | timeout | unviable |\n|---|---|---|---|---|");
    for (package, c) in spec.packages.iter().zip(&results) {
        eprintln!("{}", c.row(package));
    }
    if budget_spent {
        eprintln!(
            "runner: mutants: the budget of {} min ran out; run the same command again to continue",
            spec.budget.as_secs() / 60
        );
    }
    exit_status(&results, budget_spent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options() {
        let d = parse_args(&[]).unwrap().unwrap();
        assert_eq!(d, MutantsSpec::default());
        assert_eq!(d.packages, ["boot", "smp", "hypervisor", "xtask"]);
        assert_eq!(d.budget, Duration::from_secs(3600));
        let s = parse_args(&args(&[
            "--package",
            "xtask",
            "-p",
            "smp",
            "--package",
            "xtask",
            "--budget-minutes",
            "15",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(s.packages, ["xtask", "smp"]);
        assert_eq!(s.budget, Duration::from_secs(15 * 60));
        assert!(!s.list);
        assert!(parse_args(&args(&["--list"])).unwrap().unwrap().list);
        let f = parse_args(&args(&["--filter", "a/b", "-F", "c", "--jobs", "2"]))
            .unwrap()
            .unwrap();
        assert_eq!(
            (f.filters, f.jobs),
            (vec!["a/b".to_string(), "c".to_string()], 2)
        );
        assert_eq!(d.jobs, 1);
        assert_eq!(parse_args(&args(&["--help"])).unwrap(), None);
        for bad in [
            &["--package", "nope"][..],
            &["--package"],
            &["--budget-minutes", "0"],
            &["--budget-minutes", "x"],
            &["--jobs", "0"],
            &["--jobs", "65"],
            &["--filter"],
            &["--frobnicate"],
        ] {
            assert!(parse_args(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn test_command_per_package() {
        let one_job = MutantsSpec::default();
        let out = Path::new("/r/target/mutants/xtask");
        assert_eq!(
            cargo_mutants_args("xtask", out, &one_job),
            args(&[
                "mutants",
                "--package",
                "xtask",
                "-j",
                "1",
                "--iterate",
                "--output",
                "/r/target/mutants/xtask",
                "--",
                "--lib"
            ])
        );
        let out = Path::new("/r/target/mutants/smp");
        assert_eq!(
            cargo_mutants_args("smp", out, &one_job),
            args(&[
                "mutants",
                "--package",
                "smp",
                "-j",
                "1",
                "--iterate",
                "--output",
                "/r/target/mutants/smp"
            ])
        );
        let listed = MutantsSpec {
            list: true,
            filters: vec!["boot/src/info".into()],
            ..MutantsSpec::default()
        };
        assert_eq!(
            cargo_mutants_args("boot", out, &listed),
            args(&[
                "mutants",
                "--package",
                "boot",
                "-F",
                "boot/src/info",
                "--list"
            ])
        );
        let slice = MutantsSpec {
            filters: vec!["hypervisor/src/vmx/vmcs/checks/".into()],
            jobs: 2,
            ..MutantsSpec::default()
        };
        let out = Path::new("/r/target/mutants/hypervisor");
        assert_eq!(
            cargo_mutants_args("hypervisor", out, &slice),
            args(&[
                "mutants",
                "--package",
                "hypervisor",
                "-F",
                "hypervisor/src/vmx/vmcs/checks/",
                "-j",
                "2",
                "--iterate",
                "--output",
                "/r/target/mutants/hypervisor"
            ])
        );
        assert_eq!(
            output_dir(Path::new("/r"), "boot"),
            PathBuf::from("/r/target/mutants/boot")
        );
    }

    #[test]
    fn counts_and_exit_status() {
        let c = Counts::from_texts(Some("a\nb\n\n"), Some("m\n"), None, Some(""));
        assert_eq!(
            c,
            Counts {
                caught: 2,
                missed: 1,
                timeout: 0,
                unviable: 0
            }
        );
        assert_eq!(c.row("smp"), "| smp | 2 | 1 | 0 | 0 |");
        let clean = Counts {
            caught: 5,
            unviable: 2,
            ..Counts::default()
        };
        let timeout = Counts {
            timeout: 1,
            ..clean
        };
        assert_eq!(exit_status(&[clean], false), 0);
        assert_eq!(exit_status(&[], false), 0);
        assert_eq!(exit_status(&[clean, c], false), 1);
        assert_eq!(exit_status(&[timeout], false), 1);
        assert_eq!(exit_status(&[clean], true), 4);
        assert!(NOT_INSTALLED.contains("cargo install --locked cargo-mutants"));
    }
}
