//! The image's Rust target on the build machine: `cargo run` and `cargo test` build the image for
//! `x86_64-unknown-none`, which a toolchain installed earlier (or by a rustup that did not read
//! `rust-toolchain.toml`) may lack; cargo then stops with "can't find crate for `core`". Before the
//! image build the runner checks that the target's standard library is there and adds it with rustup
//! when it is not, or stops with the exact command when there is no rustup (exit 5, "tool missing").

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::RunError;

/// The image's target triple.
pub const IMAGE_TARGET: &str = "x86_64-unknown-none";

/// The cargo program: `$CARGO` if set (it is under `cargo run` and `cargo test`), else `cargo`.
pub fn cargo_program() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// What the build machine has of the image's target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// The compiler's sysroot (`rustc --print sysroot`).
    pub sysroot: PathBuf,
    /// The target's `core` library is in the sysroot.
    pub target_installed: bool,
    /// Where `rustup` is, if it is on `PATH`.
    pub rustup: Option<PathBuf>,
}

/// What to do before building the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Setup {
    /// The target is there.
    Ready,
    /// Run this rustup command line (program, arguments), then check again.
    AddTarget(PathBuf, Vec<String>),
    /// Nothing can add it: stop with this message.
    Missing(String),
}

/// The rustup toolchain a sysroot belongs to: its directory name under `<RUSTUP_HOME>/toolchains/`
/// (e.g. `1.95.0-x86_64-unknown-linux-gnu`), or None for a toolchain rustup does not manage.
pub fn toolchain_name(sysroot: &Path) -> Option<String> {
    let parent = sysroot.parent()?;
    (parent.file_name()? == "toolchains")
        .then(|| sysroot.file_name()?.to_str().map(str::to_string))
        .flatten()
}

/// The command that adds the image's target to the toolchain of `sysroot`.
pub fn add_target_args(sysroot: &Path) -> Vec<String> {
    let mut args = vec![
        "target".to_string(),
        "add".to_string(),
        IMAGE_TARGET.to_string(),
    ];
    if let Some(name) = toolchain_name(sysroot) {
        args.push("--toolchain".to_string());
        args.push(name);
    }
    args
}

/// The decision, from what was probed.
pub fn plan(probe: &Probe) -> Setup {
    if probe.target_installed {
        return Setup::Ready;
    }
    let args = add_target_args(&probe.sysroot);
    match &probe.rustup {
        Some(rustup) => Setup::AddTarget(rustup.clone(), args),
        None => Setup::Missing(format!(
            "the Rust toolchain at {} has no {IMAGE_TARGET} target and rustup is not on PATH; \
             add the target with `rustup {}` (or install rustup: the toolchain is pinned in \
             rust-toolchain.toml) and run again",
            probe.sysroot.display(),
            args.join(" ")
        )),
    }
}

/// The compiler cargo will use for the image: `$RUSTC`, else the `rustc` beside `$CARGO`, else
/// `rustc` from `PATH`.
pub fn rustc_program() -> PathBuf {
    if let Some(rustc) = std::env::var_os("RUSTC") {
        return PathBuf::from(rustc);
    }
    let beside = Path::new(&cargo_program()).with_file_name("rustc");
    if beside.is_file() {
        return beside;
    }
    PathBuf::from("rustc")
}

fn rustc_print(rustc: &Path, args: &[&str], dir: &Path) -> Result<String, RunError> {
    let out = Command::new(rustc)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| RunError::ToolMissing(format!("cannot run {}: {e}", rustc.display())))?;
    if !out.status.success() {
        return Err(RunError::Build(format!(
            "`{} {}` failed: {}",
            rustc.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// True if `libdir` holds the target's `core` (what "can't find crate for `core`" misses).
pub fn has_core(libdir: &Path) -> bool {
    std::fs::read_dir(libdir)
        .map(|entries| {
            entries.flatten().any(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with("libcore-") && name.ends_with(".rlib")
            })
        })
        .unwrap_or(false)
}

/// Looks at the toolchain cargo will build the image with, from `dir` (where `rust-toolchain.toml` applies).
pub fn probe(dir: &Path) -> Result<Probe, RunError> {
    let rustc = rustc_program();
    let sysroot = PathBuf::from(rustc_print(&rustc, &["--print", "sysroot"], dir)?);
    let libdir = sysroot
        .join("lib")
        .join("rustlib")
        .join(IMAGE_TARGET)
        .join("lib");
    Ok(Probe {
        target_installed: has_core(&libdir),
        sysroot,
        rustup: crate::host::which("rustup"),
    })
}

/// Makes sure the image's target is installed, adding it with rustup when it is missing; `dir` is the
/// repository root, so that rustup and rustc see its `rust-toolchain.toml`.
pub fn ensure_image_target(dir: &Path) -> Result<(), RunError> {
    let first = probe(dir)?;
    match plan(&first) {
        Setup::Ready => Ok(()),
        Setup::Missing(message) => Err(RunError::ToolMissing(message)),
        Setup::AddTarget(rustup, args) => {
            let shown = format!("{} {}", rustup.display(), args.join(" "));
            eprintln!(
                "runner: the toolchain at {} has no {IMAGE_TARGET} target: {shown}",
                first.sysroot.display()
            );
            let status = Command::new(&rustup)
                .args(&args)
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(Stdio::inherit())
                .stderr(Stdio::inherit())
                .status()
                .map_err(|e| RunError::ToolMissing(format!("cannot run `{shown}`: {e}")))?;
            if !status.success() {
                return Err(RunError::ToolMissing(format!(
                    "`{shown}` failed ({status}); add the {IMAGE_TARGET} target to the toolchain at {} and run again",
                    first.sysroot.display()
                )));
            }
            if probe(dir)?.target_installed {
                Ok(())
            } else {
                Err(RunError::ToolMissing(format!(
                    "`{shown}` succeeded but the toolchain at {} still has no {IMAGE_TARGET} target",
                    first.sysroot.display()
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(sysroot: &str, installed: bool, rustup: Option<&str>) -> Probe {
        Probe {
            sysroot: PathBuf::from(sysroot),
            target_installed: installed,
            rustup: rustup.map(PathBuf::from),
        }
    }

    const MANAGED: &str = "/home/u/.rustup/toolchains/1.95.0-x86_64-unknown-linux-gnu";

    #[test]
    fn an_installed_target_needs_nothing() {
        assert_eq!(
            plan(&probe(MANAGED, true, Some("/bin/rustup"))),
            Setup::Ready
        );
        assert_eq!(plan(&probe(MANAGED, true, None)), Setup::Ready);
    }

    #[test]
    fn a_missing_target_is_added_to_the_same_toolchain() {
        assert_eq!(
            plan(&probe(MANAGED, false, Some("/bin/rustup"))),
            Setup::AddTarget(
                PathBuf::from("/bin/rustup"),
                [
                    "target",
                    "add",
                    "x86_64-unknown-none",
                    "--toolchain",
                    "1.95.0-x86_64-unknown-linux-gnu"
                ]
                .map(String::from)
                .to_vec()
            )
        );
        // A toolchain rustup does not manage by name: the toolchain file decides.
        assert_eq!(
            plan(&probe("/opt/rust", false, Some("/bin/rustup"))),
            Setup::AddTarget(
                PathBuf::from("/bin/rustup"),
                ["target", "add", "x86_64-unknown-none"]
                    .map(String::from)
                    .to_vec()
            )
        );
    }

    #[test]
    fn without_rustup_the_message_names_the_command() {
        let Setup::Missing(m) = plan(&probe(MANAGED, false, None)) else {
            panic!("expected Missing");
        };
        assert!(
            m.contains(
                "rustup target add x86_64-unknown-none --toolchain 1.95.0-x86_64-unknown-linux-gnu"
            ),
            "{m}"
        );
        assert!(m.contains(MANAGED), "{m}");
        assert_eq!(RunError::ToolMissing(m).exit_code(), 5);
    }

    #[test]
    fn toolchain_names() {
        assert_eq!(
            toolchain_name(Path::new(MANAGED)).as_deref(),
            Some("1.95.0-x86_64-unknown-linux-gnu")
        );
        assert_eq!(toolchain_name(Path::new("/opt/rust")), None);
        assert_eq!(toolchain_name(Path::new("/")), None);
    }

    #[test]
    fn core_is_looked_for_in_the_target_libdir() {
        let dir = std::env::temp_dir().join(format!("toolchain-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(!has_core(&dir));
        std::fs::write(dir.join("liballoc-0123.rlib"), b"").unwrap();
        assert!(!has_core(&dir));
        std::fs::write(dir.join("libcore-4567.rlib"), b"").unwrap();
        assert!(has_core(&dir));
        assert!(!has_core(&dir.join("missing")));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
