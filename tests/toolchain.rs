//! The front door sets up its own Rust target: `cargo run` on a toolchain that lacks
//! `x86_64-unknown-none` adds it with rustup and boots, and without rustup it stops with the exact
//! command and exit status 5.
//!
//! The toolchain without the target is a hard-linked copy of the one running this test, minus
//! `lib/rustlib/x86_64-unknown-none`; the `rustup` on its `PATH` is a stand-in that logs its arguments
//! and links the real target back in (a real `rustup target add` would download it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TARGET: &str = "x86_64-unknown-none";

fn show(o: &Output) -> String {
    format!(
        "\n--- status {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run(cmd: &mut Command) {
    let o = cmd.output().expect("run a setup command");
    assert!(o.status.success(), "{cmd:?} failed{}", show(&o));
}

/// A copy of the running toolchain (hard links, so it costs no space) without the image's target.
struct Toolchain {
    dir: PathBuf,
    real: PathBuf,
    sysroot: PathBuf,
}

impl Toolchain {
    fn without_the_target(name: &str) -> Toolchain {
        let out = Command::new(xtask::toolchain::rustc_program())
            .args(["--print", "sysroot"])
            .output()
            .expect("rustc --print sysroot");
        assert!(
            out.status.success(),
            "rustc --print sysroot failed{}",
            show(&out)
        );
        let real = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        assert!(
            real.join("lib/rustlib").join(TARGET).is_dir(),
            "the toolchain running the tests ({}) has no {TARGET} target itself",
            real.display()
        );
        let dir = xtask::image::target_dir()
            .join("toolchain-test")
            .join(xtask::image::unique_name(name));
        let sysroot = dir.join("sysroot");
        let rustlib = sysroot.join("lib/rustlib");
        std::fs::create_dir_all(&rustlib).unwrap();
        run(Command::new("cp")
            .arg("-al")
            .arg(real.join("bin"))
            .arg(&sysroot));
        for entry in std::fs::read_dir(real.join("lib")).unwrap().flatten() {
            if entry.file_name() != "rustlib" {
                run(Command::new("cp")
                    .arg("-al")
                    .arg(entry.path())
                    .arg(sysroot.join("lib")));
            }
        }
        for entry in std::fs::read_dir(real.join("lib/rustlib"))
            .unwrap()
            .flatten()
        {
            if entry.file_name() != TARGET {
                run(Command::new("cp")
                    .arg("-al")
                    .arg(entry.path())
                    .arg(&rustlib));
            }
        }
        Toolchain { dir, real, sysroot }
    }

    fn has_target(&self) -> bool {
        self.sysroot.join("lib/rustlib").join(TARGET).exists()
    }

    /// A `rustup` stand-in in `<dir>/fakebin` that logs its arguments to `<dir>/rustup.log`.
    fn fake_rustup(&self) -> PathBuf {
        let bin = self.dir.join("fakebin");
        std::fs::create_dir_all(&bin).unwrap();
        let script = format!(
            "#!/bin/sh\necho \"$@\" >> '{log}'\n\
             if [ \"$1 $2 $3\" = \"target add {TARGET}\" ]; then\n  \
             exec cp -al '{real}' '{dst}'\nfi\nexit 1\n",
            log = self.dir.join("rustup.log").display(),
            real = self.real.join("lib/rustlib").join(TARGET).display(),
            dst = self.sysroot.join("lib/rustlib").display(),
        );
        let path = bin.join("rustup");
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        bin
    }

    /// The runner with this toolchain's cargo and rustc, and `PATH` = `extra` + the toolchain's bin +
    /// the system directories (no rustup proxies).
    fn runner(&self, extra: Option<&Path>, args: &[&str]) -> Output {
        let mut path = Vec::new();
        path.extend(extra.map(Path::to_path_buf));
        path.push(self.sysroot.join("bin"));
        path.extend(
            ["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"].map(PathBuf::from),
        );
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("CARGO", self.sysroot.join("bin/cargo"))
            .env("PATH", std::env::join_paths(path).unwrap())
            .env_remove("RUSTC")
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("RUSTC_WRAPPER")
            // cargo test points the loader at the real toolchain's libraries, which would make the copied
            // rustc report the real sysroot.
            .env_remove("LD_LIBRARY_PATH")
            .output()
            .expect("run the xtask binary")
    }
}

impl Drop for Toolchain {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const BOOT: [&str; 6] = ["--backend", "qemu", "--smp", "1", "--append", "vmx=off"];

#[test]
fn a_toolchain_without_the_target_gets_it_from_rustup_and_boots() {
    let tc = Toolchain::without_the_target("with-rustup");
    assert!(!tc.has_target());
    let fakebin = tc.fake_rustup();
    let o = tc.runner(Some(&fakebin), &BOOT);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!("has no {TARGET} target")),
        "the runner did not say why it calls rustup{}",
        show(&o)
    );
    let log = std::fs::read_to_string(tc.dir.join("rustup.log")).unwrap_or_default();
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        [format!("target add {TARGET}")],
        "rustup was not asked for exactly the target{}",
        show(&o)
    );
    assert!(tc.has_target());
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("summary: ") && l.contains(" verdict=ok ")),
        "{}",
        show(&o)
    );
}

#[test]
fn without_rustup_the_runner_names_the_command_and_exits_5() {
    let tc = Toolchain::without_the_target("no-rustup");
    let o = tc.runner(None, &BOOT);
    assert_eq!(o.status.code(), Some(5), "{}", show(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!("rustup target add {TARGET}")),
        "the exact command is missing{}",
        show(&o)
    );
    assert!(!stderr.contains("can't find crate"), "{}", show(&o));
    assert!(!tc.has_target());
}
