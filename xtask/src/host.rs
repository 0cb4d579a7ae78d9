//! Facts about the host: which backend can run VMX, which tools are installed, and installing the
//! missing ones with apt-get.

use std::fs::OpenOptions;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::RunError;

/// What the host tells us about nested VT-x. Filled from the real files by [`HostProbe::read`];
/// tests build it by hand.
#[derive(Clone, Debug)]
pub struct HostProbe {
    /// `Ok(())` if `/dev/kvm` opened read-write, otherwise why not.
    pub dev_kvm: Result<(), String>,
    /// Contents of `/proc/cpuinfo` (`None` if unreadable).
    pub cpuinfo: Option<String>,
    /// Contents of `/sys/module/kvm_intel/parameters/nested` (`None` if absent).
    pub kvm_intel_nested: Option<String>,
}

impl HostProbe {
    pub fn read() -> HostProbe {
        let dev_kvm = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .map(drop)
            .map_err(|e| e.to_string());
        HostProbe {
            dev_kvm,
            cpuinfo: std::fs::read_to_string("/proc/cpuinfo").ok(),
            kvm_intel_nested: std::fs::read_to_string("/sys/module/kvm_intel/parameters/nested")
                .ok(),
        }
    }

    /// `Ok(reason)` if QEMU+KVM can expose VT-x to the guest, otherwise `Err(reason)`.
    pub fn nested_vtx(&self) -> Result<String, String> {
        if let Err(e) = &self.dev_kvm {
            return Err(format!("/dev/kvm cannot be opened read-write: {e}"));
        }
        match &self.cpuinfo {
            None => return Err("/proc/cpuinfo is unreadable".to_string()),
            Some(info) if !cpuinfo_has_flag(info, "vmx") => {
                return Err("/proc/cpuinfo has no vmx flag".to_string())
            }
            Some(_) => {}
        }
        if let Some(nested) = &self.kvm_intel_nested {
            let v = nested.trim();
            if v != "Y" && v != "1" {
                return Err(format!("kvm_intel parameter nested={v}"));
            }
            return Ok(format!(
                "/dev/kvm usable, vmx flag present, kvm_intel nested={v}"
            ));
        }
        Ok("/dev/kvm usable, vmx flag present".to_string())
    }
}

/// True if any `flags` line of a `/proc/cpuinfo` text lists `flag` as a whole word.
pub fn cpuinfo_has_flag(cpuinfo: &str, flag: &str) -> bool {
    cpuinfo.lines().any(|line| {
        let Some((key, value)) = line.split_once(':') else {
            return false;
        };
        key.trim() == "flags" && value.split_whitespace().any(|w| w == flag)
    })
}

/// Searches `PATH` for an executable.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Something the runner needs on the host, and the Debian package that provides it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Need {
    /// A program looked up in `PATH`.
    Program { name: String, package: String },
    /// A file or directory at a fixed path.
    File { path: PathBuf, package: String },
}

impl Need {
    pub fn program(name: &str, package: &str) -> Need {
        Need::Program {
            name: name.to_string(),
            package: package.to_string(),
        }
    }

    pub fn file(path: impl Into<PathBuf>, package: &str) -> Need {
        Need::File {
            path: path.into(),
            package: package.to_string(),
        }
    }

    pub fn package(&self) -> &str {
        match self {
            Need::Program { package, .. } | Need::File { package, .. } => package,
        }
    }

    pub fn is_met(&self) -> bool {
        match self {
            Need::Program { name, .. } => which(name).is_some(),
            Need::File { path, .. } => path.exists(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Need::Program { name, .. } => name.clone(),
            Need::File { path, .. } => path.display().to_string(),
        }
    }
}

/// The OVMF firmware image used for `--uefi` (Debian package `ovmf`).
pub const OVMF_CANDIDATES: &[&str] = &["/usr/share/ovmf/OVMF.fd", "/usr/share/qemu/OVMF.fd"];

/// The first OVMF image that exists.
pub fn find_ovmf() -> Option<PathBuf> {
    OVMF_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// The effective user id, read from `/proc/self/status` (std has no `geteuid`).
pub fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_effective_uid(&status)
}

/// The second number of the `Uid:` line (real, effective, saved, fs).
pub fn parse_effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line["Uid:".len()..].split_whitespace().nth(1)?.parse().ok()
}

/// Deduplicated package names of the needs, in first-seen order.
pub fn packages_of<'a>(needs: impl IntoIterator<Item = &'a Need>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in needs {
        if !out.iter().any(|p| p == n.package()) {
            out.push(n.package().to_string());
        }
    }
    out
}

/// Makes sure every need is met: installs the missing packages with apt-get when running as root,
/// otherwise fails with the command to run.
pub fn ensure(needs: &[Need]) -> Result<(), RunError> {
    // Tests run in parallel threads: one apt-get at a time (dpkg has a lock of its own, but a second
    // apt-get would fail on it instead of waiting).
    static APT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = APT.lock().unwrap_or_else(|e| e.into_inner());
    let missing: Vec<&Need> = needs.iter().filter(|n| !n.is_met()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let what: Vec<String> = missing.iter().map(|n| n.describe()).collect();
    let packages = packages_of(missing.iter().copied());
    let command = format!("sudo apt-get install -y {}", packages.join(" "));
    let can_install = effective_uid() == Some(0) && which("apt-get").is_some();
    if !can_install {
        return Err(RunError::ToolMissing(format!(
            "missing {}; install with: {command}",
            what.join(", ")
        )));
    }
    eprintln!("runner: installing {} with apt-get", packages.join(" "));
    let mut ok = apt_get_install(&packages);
    if !ok {
        // A fresh machine may have no package lists yet.
        eprintln!("runner: apt-get install failed; running apt-get update and retrying");
        let _ = apt_get(&["update"]);
        ok = apt_get_install(&packages);
    }
    let still: Vec<String> = needs
        .iter()
        .filter(|n| !n.is_met())
        .map(|n| n.describe())
        .collect();
    if !ok || !still.is_empty() {
        return Err(RunError::ToolMissing(format!(
            "missing {} and `apt-get install -y {}` did not provide it; install with: {command}",
            if still.is_empty() {
                what.join(", ")
            } else {
                still.join(", ")
            },
            packages.join(" ")
        )));
    }
    Ok(())
}

fn apt_get_install(packages: &[String]) -> bool {
    let mut args = vec!["install", "-y"];
    args.extend(packages.iter().map(String::as_str));
    apt_get(&args)
}

fn apt_get(args: &[&str]) -> bool {
    // apt-get's progress goes to stderr so that stdout stays the serial log.
    let stdout = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::inherit());
    Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::inherit())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTEL: &str =
        "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu vme de pse vmx sse\n\n";
    const AMD: &str =
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu vme svm sse vmxx\n";

    fn probe(kvm: bool, cpuinfo: &str, nested: Option<&str>) -> HostProbe {
        HostProbe {
            dev_kvm: if kvm {
                Ok(())
            } else {
                Err("Permission denied (os error 13)".into())
            },
            cpuinfo: Some(cpuinfo.to_string()),
            kvm_intel_nested: nested.map(str::to_string),
        }
    }

    #[test]
    fn flag_detection() {
        assert!(cpuinfo_has_flag(INTEL, "vmx"));
        assert!(!cpuinfo_has_flag(AMD, "vmx"));
        assert!(cpuinfo_has_flag(AMD, "svm"));
        assert!(!cpuinfo_has_flag("vmx_flags\t: vmx\n", "vmx"));
    }

    #[test]
    fn nested_vtx_decision() {
        assert!(probe(true, INTEL, None).nested_vtx().is_ok());
        assert!(probe(true, INTEL, Some("Y\n")).nested_vtx().is_ok());
        assert!(probe(true, INTEL, Some("1\n")).nested_vtx().is_ok());
        let e = probe(true, INTEL, Some("N\n")).nested_vtx().unwrap_err();
        assert!(e.contains("nested=N"), "{e}");
        let e = probe(true, AMD, None).nested_vtx().unwrap_err();
        assert_eq!(e, "/proc/cpuinfo has no vmx flag");
        let e = probe(false, INTEL, Some("Y")).nested_vtx().unwrap_err();
        assert!(e.starts_with("/dev/kvm cannot be opened read-write"), "{e}");
        let mut p = probe(true, INTEL, None);
        p.cpuinfo = None;
        assert!(p.nested_vtx().is_err());
    }

    #[test]
    fn uid_parsing() {
        let status = "Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t0\t0\t0\t0\n";
        assert_eq!(parse_effective_uid(status), Some(0));
        assert_eq!(parse_effective_uid("Name: x\n"), None);
    }

    #[test]
    fn package_dedup() {
        let needs = [
            Need::program("grub-mkrescue", "grub-common"),
            Need::program("xorriso", "xorriso"),
            Need::file("/usr/lib/grub/i386-pc", "grub-pc-bin"),
            Need::program("grub-file", "grub-common"),
        ];
        assert_eq!(
            packages_of(&needs),
            vec!["grub-common", "xorriso", "grub-pc-bin"]
        );
    }

    #[test]
    fn which_finds_sh() {
        assert!(which("sh").is_some());
        assert!(which("definitely-not-a-program-xyz").is_none());
    }
}
