//! Runs a GRUB ISO in Bochs 2.7 (the Debian build, which includes the internal debugger),
//! headless and without ever waiting for user input.
//!
//! Display: `rfb` with `timeout=0`. The `term` display of the debugger build draws into a pty
//! it allocates itself and nobody reads, so Bochs blocks for good once the guest has written a
//! few screens of VGA text; it also needs `TERM` set. `rfb` never blocks, but listens (without
//! authentication) on the first free TCP port from 5900 to 5949 while it runs, so Bochs runs in a
//! network namespace of its own where `unshare(1)` allows it ([`Isolation`]): there the port is
//! always free and unreachable from outside. Where it does not, the port is open on all interfaces.
//!
//! Bochs exits with status 1 both after "Shutdown" on port 0x8900 and after a panic, so the
//! verdict has to come from the serial log and from [`triple_fault_in`]/[`shutdown_requested_in`].

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::host::Need;

/// Which system BIOS Bochs runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BochsRom {
    /// `BIOS-bochs-latest` with `fastboot`: ACPI tables (MADT) list every CPU.
    /// IA32_FEATURE_CONTROL arrives locked (0x5).
    Bochs,
    /// SeaBIOS `bios.bin`: IA32_FEATURE_CONTROL arrives unlocked (0), but the MADT lists only
    /// one CPU and the other CPUs spin in SeaBIOS, which makes Bochs roughly N times slower:
    /// use it with `cpus: 1`.
    SeaBios,
}

/// One Bochs run.
#[derive(Clone, Debug)]
pub struct BochsConfig {
    /// Number of CPUs, 1..=[`MAX_CPUS`].
    pub cpus: u32,
    /// A Bochs CPU model, one of [`CPU_MODELS`] (VMX: `corei7_haswell_4770` and newer Intel).
    pub cpu_model: String,
    /// Guest RAM in MiB, [`MIN_MEMORY_MIB`]..=[`MAX_MEMORY_MIB`].
    pub memory_mib: u32,
    /// The ISO to boot from (must exist).
    pub iso: PathBuf,
    /// File that receives COM1 output (created or truncated by Bochs).
    pub serial_log: PathBuf,
    pub rom: BochsRom,
    /// Directory for the generated files ([`BOCHSRC_FILE`], [`DEBUGGER_RC_FILE`], [`LOG_FILE`]);
    /// created if missing. Bochs runs with it as the current directory.
    pub workdir: PathBuf,
}

/// Debian packages needed to run [`command`].
pub const BOCHS_PACKAGES: &[&str] = &["bochs", "bochs-term", "bochsbios", "vgabios", "seabios"];

/// Bochs 2.7 allows at most 15 CPUs (`count=16` panics: too many timers).
pub const MAX_CPUS: u32 = 15;

/// Smallest guest RAM that the BIOS and GRUB are given.
pub const MIN_MEMORY_MIB: u32 = 32;

/// Bochs 2.7 refuses more than 2048 MiB of host memory, and a larger guest is swapped to a file
/// (4 GiB takes seconds, 8 GiB a minute), so this is the limit.
pub const MAX_MEMORY_MIB: u32 = 2048;

/// Emulated instructions per emulated second. With `clock: sync=none` a low value makes timer
/// waits (BIOS, GRUB, the kernel's own delays) cost few instructions; 1M is the minimum Bochs
/// accepts and barely faster (the boot is ~35M instructions, mostly GRUB), 4M leaves timer
/// interrupts 4x more room.
pub const IPS: u32 = 4_000_000;

/// Names of the files [`command`] writes into `workdir`.
pub const BOCHSRC_FILE: &str = "bochsrc";
pub const DEBUGGER_RC_FILE: &str = "debugger.rc";
pub const LOG_FILE: &str = "bochs.log";

/// CPU models the Debian Bochs 2.7 build knows (`cpu: model=`).
pub const CPU_MODELS: &[&str] = &[
    "bx_generic",
    "pentium",
    "pentium_mmx",
    "amd_k6_2_chomper",
    "p2_klamath",
    "p3_katmai",
    "p4_willamette",
    "core_duo_t2400_yonah",
    "atom_n270",
    "p4_prescott_celeron_336",
    "athlon64_clawhammer",
    "athlon64_venice",
    "turion64_tyler",
    "phenom_8650_toliman",
    "core2_penryn_t9600",
    "corei5_lynnfield_750",
    "corei5_arrandale_m520",
    "corei7_sandy_bridge_2600k",
    "zambezi",
    "trinity_apu",
    "ryzen",
    "corei7_ivy_bridge_3770k",
    "corei7_haswell_4770",
    "broadwell_ult",
    "corei7_skylake_x",
    "corei3_cnl",
    "corei7_icelake_u",
    "tigerlake",
];

const BOCHS_BIOS: &str = "/usr/share/bochs/BIOS-bochs-latest";
const SEABIOS: &str = "/usr/share/seabios/bios.bin";
const VGA_BIOS: &str = "/usr/share/bochs/VGABIOS-lgpl-latest";

impl BochsRom {
    fn image(self) -> &'static str {
        match self {
            BochsRom::Bochs => BOCHS_BIOS,
            BochsRom::SeaBios => SEABIOS,
        }
    }

    fn romimage_line(self) -> String {
        match self {
            BochsRom::Bochs => format!("romimage: file={}, options=fastboot", self.image()),
            BochsRom::SeaBios => format!("romimage: file={}", self.image()),
        }
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn missing(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "{what} not found; install the Debian packages: apt-get install {}",
            BOCHS_PACKAGES.join(" ")
        ),
    )
}

/// A path as bochsrc text: absolute, UTF-8, and free of what the bochsrc parser would split on
/// or expand (whitespace, `,`, `"`, `#`, `$`).
fn rc_path(what: &str, path: &Path) -> io::Result<String> {
    let abs = std::path::absolute(path)?;
    let text = abs
        .to_str()
        .ok_or_else(|| invalid(format!("{what} path {} is not UTF-8", abs.display())))?;
    if let Some(c) = text
        .chars()
        .find(|&c| c.is_whitespace() || c.is_control() || matches!(c, ',' | '"' | '#' | '$'))
    {
        return Err(invalid(format!(
            "{what} path {text:?} contains {c:?}, which a bochsrc cannot hold"
        )));
    }
    Ok(text.to_owned())
}

fn validate(cfg: &BochsConfig) -> io::Result<()> {
    if !(1..=MAX_CPUS).contains(&cfg.cpus) {
        return Err(invalid(format!(
            "Bochs supports 1 to {MAX_CPUS} CPUs, {} requested",
            cfg.cpus
        )));
    }
    if !CPU_MODELS.contains(&cfg.cpu_model.as_str()) {
        return Err(invalid(format!(
            "unknown Bochs CPU model {:?}; known models: {}",
            cfg.cpu_model,
            CPU_MODELS.join(", ")
        )));
    }
    if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&cfg.memory_mib) {
        return Err(invalid(format!(
            "Bochs memory must be {MIN_MEMORY_MIB} to {MAX_MEMORY_MIB} MiB, {} requested",
            cfg.memory_mib
        )));
    }
    Ok(())
}

/// The bochsrc text for `cfg` (validated; no file system access besides making paths absolute).
pub fn bochsrc(cfg: &BochsConfig) -> io::Result<String> {
    validate(cfg)?;
    let iso = rc_path("ISO", &cfg.iso)?;
    let serial = rc_path("serial log", &cfg.serial_log)?;
    let log = rc_path("Bochs log", &cfg.workdir.join(LOG_FILE))?;
    Ok(format!(
        "# Generated by xtask: headless, never waits for input.\n\
         display_library: rfb, options=\"timeout=0\"\n\
         sound: driver=dummy\n\
         speaker: enabled=0\n\
         {romimage}\n\
         vgaromimage: file={VGA_BIOS}\n\
         clock: sync=none\n\
         cpu: model={model}, count={cpus}, ips={IPS}, reset_on_triple_fault=0\n\
         memory: guest={mem}, host={mem}\n\
         ata0: enabled=1, ioaddr1=0x1f0, ioaddr2=0x3f0, irq=14\n\
         ata0-master: type=cdrom, path={iso}, status=inserted\n\
         boot: cdrom\n\
         com1: enabled=1, mode=file, dev={serial}\n\
         log: {log}\n\
         panic: action=fatal\n\
         error: action=report\n\
         info: action=report\n\
         debug: action=ignore\n",
        romimage = cfg.rom.romimage_line(),
        model = cfg.cpu_model,
        cpus = cfg.cpus,
        mem = cfg.memory_mib,
    ))
}

fn in_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join(program).is_file()))
        .unwrap_or(false)
}

/// Whether Bochs gets a network namespace of its own (`unshare(1)`, util-linux). Its `rfb` display listens on
/// the first free port from 5900 to 5949 on all interfaces and gives up when all 50 are taken, which happened
/// on a shared machine (`RFB could not bind any port between 5900 and 5949`, the run ending with an empty log);
/// in a namespace of its own every Bochs finds 5900 free, and the unauthenticated VNC port is reachable from
/// nowhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// `unshare --net` (needs root).
    NetNamespace,
    /// `unshare --user --map-root-user --net` (unprivileged user namespaces).
    UserAndNetNamespace,
    /// Neither works here: Bochs runs in the host's network namespace.
    None,
}

impl Isolation {
    /// The `unshare` arguments before the program, empty for [`Isolation::None`].
    pub fn unshare_args(self) -> &'static [&'static str] {
        match self {
            Isolation::NetNamespace => &["--net", "--"],
            Isolation::UserAndNetNamespace => &["--user", "--map-root-user", "--net", "--"],
            Isolation::None => &[],
        }
    }

    /// The first that works on this machine (probed once with `unshare ... true`).
    pub fn probe() -> Isolation {
        static PROBED: std::sync::OnceLock<Isolation> = std::sync::OnceLock::new();
        *PROBED.get_or_init(|| {
            [Isolation::NetNamespace, Isolation::UserAndNetNamespace]
                .into_iter()
                .find(|i| {
                    Command::new("unshare")
                        .args(i.unshare_args())
                        .arg("true")
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .is_ok_and(|s| s.success())
                })
                .unwrap_or(Isolation::None)
        })
    }
}

/// `program args...`, run through `unshare` when `isolation` asks for it: (program, arguments).
pub fn isolated(isolation: Isolation, program: &str, args: Vec<String>) -> (String, Vec<String>) {
    if isolation == Isolation::None {
        return (program.to_string(), args);
    }
    let mut all: Vec<String> = isolation
        .unshare_args()
        .iter()
        .map(|a| a.to_string())
        .collect();
    all.push(program.to_string());
    all.extend(args);
    ("unshare".to_string(), all)
}

/// Writes the bochsrc and the debugger rc file (the single command `c`) into `workdir` and
/// returns a ready-to-spawn `bochs -q -f bochsrc -rc debugger.rc` with stdin null and the
/// current directory set to `workdir`; stdout and stderr are left for the caller to capture.
///
/// Bochs exits by itself on "Shutdown" written to port 0x8900, on ACPI power-off and on a
/// panic (a triple fault is one); otherwise the caller must enforce a timeout (`Child::kill`,
/// i.e. SIGKILL, works).
pub fn command(cfg: &BochsConfig) -> io::Result<Command> {
    let rc = bochsrc(cfg)?;
    if !cfg.iso.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("ISO {} not found", cfg.iso.display()),
        ));
    }
    for file in [cfg.rom.image(), VGA_BIOS] {
        if !Path::new(file).is_file() {
            return Err(missing(file));
        }
    }
    if !in_path("bochs") {
        return Err(missing("bochs"));
    }
    fs::create_dir_all(&cfg.workdir)?;
    if let Some(parent) = cfg.serial_log.parent() {
        if !parent.as_os_str().is_empty() {
            fs::create_dir_all(parent)?;
        }
    }
    let bochsrc_path = cfg.workdir.join(BOCHSRC_FILE);
    let debugger_rc = cfg.workdir.join(DEBUGGER_RC_FILE);
    fs::write(&bochsrc_path, rc)?;
    fs::write(&debugger_rc, "c\n")?;
    let args = vec![
        "-q".to_string(),
        "-f".to_string(),
        std::path::absolute(&bochsrc_path)?.display().to_string(),
        "-rc".to_string(),
        std::path::absolute(&debugger_rc)?.display().to_string(),
    ];
    let (program, args) = isolated(Isolation::probe(), "bochs", args);
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(&cfg.workdir)
        .stdin(Stdio::null());
    Ok(cmd)
}

/// Programs and files Bochs needs (mirrors what [`command`] uses), with their packages.
pub fn needs(rom: BochsRom) -> Vec<Need> {
    let mut needs = vec![
        Need::program("bochs", "bochs"),
        Need::file(
            "/usr/lib/x86_64-linux-gnu/bochs/plugins/libbx_rfb_gui.so",
            "bochs",
        ),
        // A symlink into the vgabios package.
        Need::file("/usr/share/bochs/VGABIOS-lgpl-latest", "vgabios"),
    ];
    match rom {
        BochsRom::Bochs => needs.push(Need::file(
            "/usr/share/bochs/BIOS-bochs-latest",
            "bochsbios",
        )),
        BochsRom::SeaBios => needs.push(Need::file("/usr/share/seabios/bios.bin", "seabios")),
    }
    needs
}

/// True when Bochs' own output (stderr, or the log file) says a CPU triple-faulted. With
/// `reset_on_triple_fault=0` Bochs panics with
/// `[CPU0  ] exception(): 3rd (13) exception with no resolution` (the number is the vector of
/// the third exception, the CPU the one that faulted) and exits.
pub fn triple_fault_in(bochs_output: &str) -> bool {
    bochs_output
        .lines()
        .any(|l| l.contains("exception(): 3rd (") && l.contains("exception with no resolution"))
}

/// True when Bochs' output says the guest asked to power off: "Shutdown" on port 0x8900
/// (`Shutdown port: shutdown requested`) or ACPI S5 (`ACPI control: soft power off`).
pub fn shutdown_requested_in(bochs_output: &str) -> bool {
    bochs_output.contains("Shutdown port: shutdown requested")
        || bochs_output.contains("ACPI control: soft power off")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BochsConfig {
        BochsConfig {
            cpus: 4,
            cpu_model: "corei7_haswell_4770".into(),
            memory_mib: 256,
            iso: "/tmp/x/hv.iso".into(),
            serial_log: "/tmp/x/serial.log".into(),
            rom: BochsRom::Bochs,
            workdir: "/tmp/x/bochs".into(),
        }
    }

    fn lines(rc: &str) -> Vec<&str> {
        rc.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn bochsrc_has_everything_needed() {
        let rc = bochsrc(&cfg()).unwrap();
        let l = lines(&rc);
        for want in [
            "display_library: rfb, options=\"timeout=0\"",
            "sound: driver=dummy",
            "speaker: enabled=0",
            "romimage: file=/usr/share/bochs/BIOS-bochs-latest, options=fastboot",
            "vgaromimage: file=/usr/share/bochs/VGABIOS-lgpl-latest",
            "clock: sync=none",
            "cpu: model=corei7_haswell_4770, count=4, ips=4000000, reset_on_triple_fault=0",
            "memory: guest=256, host=256",
            "ata0-master: type=cdrom, path=/tmp/x/hv.iso, status=inserted",
            "boot: cdrom",
            "com1: enabled=1, mode=file, dev=/tmp/x/serial.log",
            "log: /tmp/x/bochs/bochs.log",
            "panic: action=fatal",
            "error: action=report",
        ] {
            assert!(l.contains(&want), "missing {want:?} in\n{rc}");
        }
        assert!(!rc.contains("action=ask"));
    }

    #[test]
    fn seabios_rom() {
        let rc = bochsrc(&BochsConfig {
            rom: BochsRom::SeaBios,
            cpus: 1,
            ..cfg()
        })
        .unwrap();
        assert!(lines(&rc).contains(&"romimage: file=/usr/share/seabios/bios.bin"));
        assert!(rc.contains("count=1,"));
    }

    #[test]
    fn cpu_count_is_validated() {
        for cpus in [0, MAX_CPUS + 1, 255] {
            let err = bochsrc(&BochsConfig { cpus, ..cfg() }).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(err.to_string().contains("1 to 15 CPUs"), "{err}");
        }
        for cpus in [1, MAX_CPUS] {
            assert!(bochsrc(&BochsConfig { cpus, ..cfg() })
                .unwrap()
                .contains(&format!("count={cpus},")));
        }
    }

    #[test]
    fn cpu_model_is_validated() {
        for model in ["haswell", "", "corei7_haswell_4770, count=2", "help"] {
            let err = bochsrc(&BochsConfig {
                cpu_model: model.into(),
                ..cfg()
            })
            .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(err.to_string().contains("unknown Bochs CPU model"), "{err}");
        }
        for model in CPU_MODELS {
            bochsrc(&BochsConfig {
                cpu_model: model.to_string(),
                ..cfg()
            })
            .unwrap();
        }
    }

    #[test]
    fn memory_is_validated() {
        for memory_mib in [0, MIN_MEMORY_MIB - 1, MAX_MEMORY_MIB + 1] {
            let err = bochsrc(&BochsConfig {
                memory_mib,
                ..cfg()
            })
            .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        }
    }

    #[test]
    fn paths_are_absolute_and_safe() {
        let rc = bochsrc(&BochsConfig {
            iso: "rel/hv.iso".into(),
            ..cfg()
        })
        .unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert!(rc.contains(&format!("path={}/rel/hv.iso,", cwd.display())));
        for bad in [
            "/tmp/a b.iso",
            "/tmp/a,b.iso",
            "/tmp/$HOME.iso",
            "/tmp/a#b.iso",
        ] {
            let err = bochsrc(&BochsConfig {
                iso: bad.into(),
                ..cfg()
            })
            .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn command_writes_files() {
        let dir = std::env::temp_dir().join(format!("xtask-bochs-test-{}", std::process::id()));
        let iso = dir.join("hv.iso");
        fs::create_dir_all(&dir).unwrap();
        fs::write(&iso, b"").unwrap();
        let cfg = BochsConfig {
            iso,
            serial_log: dir.join("serial.log"),
            workdir: dir.join("work"),
            ..cfg()
        };
        match command(&cfg) {
            Ok(cmd) => {
                let skip = Isolation::probe().unshare_args().len();
                let program = if skip == 0 { "bochs" } else { "unshare" };
                assert_eq!(cmd.get_program(), program);
                let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy()).collect();
                let args = &args[skip..];
                if skip > 0 {
                    assert_eq!(args[0], "bochs");
                }
                let args = &args[usize::from(skip > 0)..];
                assert_eq!(args[0], "-q");
                assert_eq!(args[1], "-f");
                assert!(args[2].ends_with("/work/bochsrc"));
                assert_eq!(args[3], "-rc");
                assert_eq!(
                    fs::read_to_string(dir.join("work").join(DEBUGGER_RC_FILE)).unwrap(),
                    "c\n"
                );
                assert_eq!(
                    fs::read_to_string(dir.join("work").join(BOCHSRC_FILE)).unwrap(),
                    bochsrc(&cfg).unwrap()
                );
            }
            // Bochs or its ROMs are not installed on this machine.
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}"),
        }
        let missing_iso = BochsConfig {
            iso: dir.join("missing.iso"),
            ..cfg.clone()
        };
        assert_eq!(
            command(&missing_iso).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn bochs_runs_in_a_network_namespace_of_its_own_when_it_can() {
        let args = vec!["-q".to_string(), "-f".to_string(), "rc".to_string()];
        assert_eq!(
            isolated(Isolation::NetNamespace, "bochs", args.clone()),
            (
                "unshare".to_string(),
                ["--net", "--", "bochs", "-q", "-f", "rc"]
                    .map(String::from)
                    .to_vec()
            )
        );
        let (program, all) = isolated(Isolation::UserAndNetNamespace, "bochs", args.clone());
        assert_eq!(program, "unshare");
        assert_eq!(
            all[..5],
            ["--user", "--map-root-user", "--net", "--", "bochs"].map(String::from)
        );
        assert_eq!(
            isolated(Isolation::None, "bochs", args.clone()),
            ("bochs".to_string(), args)
        );
    }

    #[test]
    fn bochs_needs_are_bochs_packages() {
        for rom in [BochsRom::Bochs, BochsRom::SeaBios] {
            for need in needs(rom) {
                assert!(
                    BOCHS_PACKAGES.contains(&need.package()),
                    "{} not in bochs::BOCHS_PACKAGES",
                    need.package()
                );
            }
        }
    }

    #[test]
    fn triple_fault_message() {
        let out = "========================================================================\n\
                   Bochs is exiting with the following message:\n\
                   [CPU0  ] exception(): 3rd (13) exception with no resolution\n\
                   ========================================================================\n";
        assert!(triple_fault_in(out));
        assert!(triple_fault_in(
            "00035731850p[CPU3  ] >>PANIC<< exception(): 3rd (14) exception with no resolution"
        ));
        assert!(!triple_fault_in(
            "Bochs is exiting with the following message:\n\
             [UNMAP ] Shutdown port: shutdown requested\n"
        ));
        assert!(!triple_fault_in(""));
    }

    #[test]
    fn shutdown_message() {
        assert!(shutdown_requested_in(
            "[UNMAP ] Shutdown port: shutdown requested\n"
        ));
        assert!(!shutdown_requested_in(
            "[CPU0  ] exception(): 3rd (13) exception with no resolution"
        ));
    }
}
