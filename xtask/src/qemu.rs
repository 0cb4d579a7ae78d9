//! QEMU command-line construction (pure, unit-tested).

use std::path::PathBuf;

use crate::Machine;

pub const QEMU_PROGRAM: &str = "qemu-system-x86_64";
pub const QEMU_PACKAGE: &str = "qemu-system-x86";
pub const OVMF_PACKAGE: &str = "ovmf";

/// What QEMU boots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Media {
    /// `-kernel <file> -append <cmdline>`: the PVH ELF (or a multiboot1 file).
    Kernel { path: PathBuf, cmdline: String },
    /// `-cdrom <iso>`: the GRUB ISO (the command line is inside it).
    Cdrom(PathBuf),
}

/// Everything that decides the QEMU command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QemuPlan {
    /// `-accel kvm -cpu host` instead of `-accel tcg`.
    pub kvm: bool,
    pub machine: Machine,
    pub memory_mib: u32,
    /// Passed to `-smp` verbatim.
    pub smp: String,
    pub media: Media,
    /// OVMF firmware image for UEFI boot (`-bios <file>`).
    pub uefi_firmware: Option<PathBuf>,
    /// `-s -S`: gdbstub on TCP port 1234, CPUs stopped until GDB continues.
    pub gdb: bool,
    /// `-d cpu_reset -D <file>`: QEMU logs "Triple fault" there before it resets (TCG).
    pub reset_log: Option<PathBuf>,
    /// Appended last, verbatim.
    pub extra_args: Vec<String>,
}

/// QEMU runs multi-threaded TCG up to this many CPUs and `thread=single` above: on the 2-core machine of
/// docs/performance.md both are equal on an idle host, but under load multi-threaded TCG at 255 CPUs took
/// 10-20 s instead of 5 s, with 255 host threads competing for 2 cores.
pub const TCG_SINGLE_ABOVE: u32 = 8;

/// The most CPUs an xAPIC system can address: 8-bit APIC ids, 0xFF being the broadcast id (SDM vol. 3A
/// 11.6.1). Above it (counting `maxcpus`) the plan runs the CPUs in x2APIC mode (`-cpu qemu64,+x2apic`, q35).
pub const XAPIC_MAX_CPUS: u32 = 255;

/// QEMU emulates x2APIC under TCG, and so more than 255 CPUs, from this version on.
pub const X2APIC_TCG_MIN_VERSION: QemuVersion = QemuVersion {
    major: 9,
    minor: 0,
    micro: 0,
};

/// Where Debian 12 gets a QEMU that new.
pub const NEW_QEMU_HINT: &str = "install qemu-system-x86 from bookworm-backports \
     (apt-get install -y -t bookworm-backports qemu-system-x86)";

/// The CPU model of an x2APIC plan (TCG).
pub const X2APIC_CPU: &str = "qemu64,+x2apic";

/// Guest memory an x2APIC plan gets at least: 512 MiB plus 512 KiB per CPU. The kernel needs about 196 KiB per
/// core (hypervisor/src/stages/pipeline.rs `BYTES_PER_CORE`: stacks, PCB, VMX regions, the test guest, heap share), so this is
/// over twice that, and 1024 CPUs get 1 GiB.
pub fn x2apic_min_memory_mib(cpus: u32) -> u32 {
    512 + cpus.div_ceil(2)
}

/// A QEMU version, from `qemu-system-x86_64 --version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct QemuVersion {
    pub major: u32,
    pub minor: u32,
    pub micro: u32,
}

impl std::fmt::Display for QemuVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)
    }
}

impl QemuVersion {
    /// Reads `QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-1~bpo12+1)`: the first line's word after
    /// `version`. `None` if there is none.
    pub fn parse(text: &str) -> Option<QemuVersion> {
        let first = text.lines().next()?;
        let mut words = first.split_whitespace();
        words.by_ref().find(|w| *w == "version")?;
        let mut parts = words.next()?.split('.').map(|p| {
            let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u32>().ok()
        });
        let major = parts.next()??;
        let minor = parts.next().flatten().unwrap_or(0);
        let micro = parts.next().flatten().unwrap_or(0);
        Some(QemuVersion {
            major,
            minor,
            micro,
        })
    }
}

impl QemuPlan {
    /// The default TCG accelerator for this plan's CPU count (see [`TCG_SINGLE_ABOVE`]).
    pub fn tcg_accel(&self) -> &'static str {
        match smp_cpu_count(&self.smp) {
            Ok(cpus) if cpus > TCG_SINGLE_ABOVE => "tcg,thread=single",
            _ => "tcg",
        }
    }

    /// The most CPUs the plan's `-smp` can hold (`maxcpus=`, else the CPUs it starts).
    pub fn max_cpus(&self) -> Option<u32> {
        smp_max_cpus(&self.smp).ok()
    }

    /// True when the CPUs run in x2APIC mode: TCG with more than [`XAPIC_MAX_CPUS`] CPUs.
    pub fn x2apic(&self) -> bool {
        !self.kvm && self.max_cpus().is_some_and(|n| n > XAPIC_MAX_CPUS)
    }

    /// The `-m` value: as asked, raised to [`x2apic_min_memory_mib`] for an x2APIC plan.
    pub fn memory_arg(&self) -> u32 {
        match self.max_cpus() {
            Some(n) if self.x2apic() => self.memory_mib.max(x2apic_min_memory_mib(n)),
            _ => self.memory_mib,
        }
    }

    /// Why this plan needs QEMU [`X2APIC_TCG_MIN_VERSION`] or later, if it does: more than 255 CPUs, or an
    /// x2APIC CPU flag among the extra arguments, under TCG.
    pub fn needs_new_qemu(&self) -> Option<String> {
        if self.kvm {
            return None;
        }
        if let Some(n) = self.max_cpus().filter(|&n| n > XAPIC_MAX_CPUS) {
            return Some(format!(
                "more than {XAPIC_MAX_CPUS} CPUs ({n}, with x2APIC) under TCG"
            ));
        }
        let x2apic_flag = self
            .extra_args
            .windows(2)
            .any(|w| w[0] == "-cpu" && w[1].contains("+x2apic"));
        x2apic_flag.then(|| "x2APIC under TCG (-cpu ...,+x2apic)".to_string())
    }

    /// `Err(message)` when QEMU `version` is too old for this plan (see [`Self::needs_new_qemu`]).
    pub fn check_version(&self, version: QemuVersion) -> Result<(), String> {
        match self.needs_new_qemu() {
            Some(why) if version < X2APIC_TCG_MIN_VERSION => Err(format!(
                "{why} needs QEMU {X2APIC_TCG_MIN_VERSION} or later, and {QEMU_PROGRAM} is {version}: \
                 {NEW_QEMU_HINT}"
            )),
            _ => Ok(()),
        }
    }

    /// The `-machine` value. A PVH boot under TCG above [`TCG_SINGLE_ABOVE`] CPUs runs without the legacy
    /// 8259 PIC (`pic=off`): the kernel never uses it (its only interrupts are IPIs through the local APICs),
    /// and QEMU 7.2 walks every vCPU from the PIC (`pic_irq_request`) on each UART register write, so at 255
    /// CPUs a log line took 0.9 ms instead of 0.16 ms and SeaBIOS was slower too (docs/performance.md).
    /// GRUB ISO boots keep the PIC: SeaBIOS's timer tick, which GRUB's menu timeout counts, comes through it.
    pub fn machine_arg(&self) -> String {
        let pvh = matches!(self.media, Media::Kernel { .. });
        let many = matches!(smp_cpu_count(&self.smp), Ok(n) if n > TCG_SINGLE_ABOVE);
        if pvh && many && !self.kvm {
            format!("{},pic=off", self.machine.as_str())
        } else {
            self.machine.as_str().to_string()
        }
    }

    /// The arguments after the program name. The serial port is `-serial stdio`: the runner reads
    /// QEMU's stdout as the serial log.
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |s: &str| a.push(s.to_string());
        push("-machine");
        push(&self.machine_arg());
        if self.kvm {
            push("-accel");
            push("kvm");
            push("-cpu");
            push("host");
        } else {
            if !self.extra_args.iter().any(|a| a == "-accel") {
                // QEMU uses the first -accel that works, so an -accel among the extra arguments (e.g.
                // `tcg,thread=multi`) replaces this default instead of being ignored.
                push("-accel");
                push(self.tcg_accel());
            }
            if self.x2apic() && !self.extra_args.iter().any(|a| a == "-cpu") {
                // Above 255 CPUs the APIC ids need x2APIC (QEMU lists ids >= 255 as x2APIC MADT entries).
                push("-cpu");
                push(X2APIC_CPU);
            }
        }
        push("-m");
        push(&self.memory_arg().to_string());
        push("-smp");
        push(&self.smp);
        push("-display");
        push("none");
        push("-serial");
        push("stdio");
        push("-monitor");
        push("none");
        push("-no-reboot");
        push("-device");
        push("isa-debug-exit,iobase=0xf4,iosize=0x04");
        if let Some(fw) = &self.uefi_firmware {
            push("-bios");
            push(&fw.display().to_string());
        }
        match &self.media {
            Media::Kernel { path, cmdline } => {
                push("-kernel");
                push(&path.display().to_string());
                push("-append");
                push(cmdline);
            }
            Media::Cdrom(iso) => {
                push("-cdrom");
                push(&iso.display().to_string());
                push("-boot");
                push("d");
            }
        }
        if let Some(log) = &self.reset_log {
            push("-d");
            push("cpu_reset");
            push("-D");
            push(&log.display().to_string());
        }
        if self.gdb {
            push("-s");
            push("-S");
        }
        a.extend(self.extra_args.iter().cloned());
        a
    }
}

/// True if a QEMU `-d cpu_reset` log records a triple fault.
pub fn triple_fault_in_reset_log(log: &str) -> bool {
    log.lines().any(|l| l.trim() == "Triple fault")
}

/// Quotes a command line for display (a shell could paste it back).
pub fn shell_quote(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_=,./:+@%".contains(&b))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The number of CPUs a QEMU `-smp` spec starts: its leading number or `cpus=`, else the product of
/// the topology (`sockets`, `dies`, `clusters`, `cores`, `threads`).
pub fn smp_cpu_count(spec: &str) -> Result<u32, String> {
    let bad = || format!("cannot read a CPU count from --smp {spec:?}");
    let mut cpus: Option<u32> = None;
    let mut topology: Option<u32> = None;
    for (i, item) in spec.split(',').enumerate() {
        let item = item.trim();
        let (key, value) = match item.split_once('=') {
            Some((k, v)) => (k, v),
            None if i == 0 => ("cpus", item),
            None => return Err(bad()),
        };
        let n: u32 = value.parse().map_err(|_| bad())?;
        match key {
            "cpus" => cpus = Some(n),
            "sockets" | "dies" | "clusters" | "cores" | "threads" => {
                topology = Some(topology.unwrap_or(1).checked_mul(n).ok_or_else(bad)?)
            }
            "maxcpus" | "books" | "drawers" => {}
            _ => return Err(bad()),
        }
    }
    match cpus.or(topology) {
        Some(0) | None => Err(bad()),
        Some(n) => Ok(n),
    }
}

/// The most CPUs a QEMU `-smp` spec can hold: its `maxcpus=`, else the CPUs it starts ([`smp_cpu_count`]).
pub fn smp_max_cpus(spec: &str) -> Result<u32, String> {
    let started = smp_cpu_count(spec)?;
    let max = spec
        .split(',')
        .filter_map(|item| item.trim().strip_prefix("maxcpus="))
        .next_back()
        .map(|v| {
            v.parse::<u32>()
                .map_err(|_| format!("cannot read maxcpus from --smp {spec:?}"))
        })
        .transpose()?;
    Ok(max.unwrap_or(started).max(started))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smp_counts() {
        assert_eq!(smp_cpu_count("4"), Ok(4));
        assert_eq!(smp_cpu_count("6,sockets=2,cores=3"), Ok(6));
        assert_eq!(smp_cpu_count("sockets=2,cores=3,threads=2"), Ok(12));
        assert_eq!(smp_cpu_count("cpus=3,maxcpus=8"), Ok(3));
        assert_eq!(smp_cpu_count("2,maxcpus=4"), Ok(2));
        assert!(smp_cpu_count("").is_err());
        assert!(smp_cpu_count("0").is_err());
        assert!(smp_cpu_count("x").is_err());
        assert!(smp_cpu_count("maxcpus=4").is_err());
        assert!(smp_cpu_count("2,bogus=1").is_err());
    }

    #[test]
    fn smp_max_counts() {
        assert_eq!(smp_max_cpus("4"), Ok(4));
        assert_eq!(smp_max_cpus("4,maxcpus=300"), Ok(300));
        assert_eq!(smp_max_cpus("cpus=3,maxcpus=2"), Ok(3));
        assert_eq!(smp_max_cpus("300,sockets=2,cores=150"), Ok(300));
        assert!(smp_max_cpus("4,maxcpus=x").is_err());
        assert!(smp_max_cpus("x").is_err());
    }

    fn plan() -> QemuPlan {
        QemuPlan {
            kvm: false,
            machine: Machine::Q35,
            memory_mib: 512,
            smp: "6,sockets=2,cores=3".into(),
            media: Media::Kernel {
                path: "/k/hypervisor".into(),
                cmdline: "log=debug on_done=exit".into(),
            },
            uefi_firmware: None,
            gdb: false,
            reset_log: None,
            extra_args: vec![],
        }
    }

    #[test]
    fn pvh_command() {
        assert_eq!(
            shell_quote(&plan().args()),
            "-machine q35 -accel tcg -m 512 -smp 6,sockets=2,cores=3 -display none -serial stdio \
             -monitor none -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
             -kernel /k/hypervisor -append 'log=debug on_done=exit'"
        );
    }

    #[test]
    fn many_cpus_run_single_threaded_tcg() {
        let mut p = plan();
        p.smp = "8".into();
        assert_eq!(p.tcg_accel(), "tcg");
        p.smp = "16,sockets=2,cores=8".into();
        assert_eq!(p.tcg_accel(), "tcg,thread=single");
        assert!(p
            .args()
            .windows(2)
            .any(|w| w == ["-accel", "tcg,thread=single"]));
    }

    #[test]
    fn many_cpus_under_pvh_run_without_the_legacy_pic() {
        let mut p = plan();
        p.smp = "8".into();
        assert_eq!(p.machine_arg(), "q35");
        p.smp = "16".into();
        assert_eq!(p.machine_arg(), "q35,pic=off");
        assert!(p
            .args()
            .windows(2)
            .any(|w| w == ["-machine", "q35,pic=off"]));
        p.machine = Machine::Pc;
        assert_eq!(p.machine_arg(), "pc,pic=off");
        // GRUB needs the PIC's timer tick; KVM does not go through QEMU's PIC model.
        p.media = Media::Cdrom("/t/x.iso".into());
        assert_eq!(p.machine_arg(), "pc");
        let mut p = plan();
        p.smp = "255".into();
        p.kvm = true;
        assert_eq!(p.machine_arg(), "q35");
    }

    #[test]
    fn extra_accel_replaces_the_default() {
        let mut p = plan();
        p.extra_args = vec!["-accel".into(), "tcg,thread=single".into()];
        let args = p.args();
        assert_eq!(args.iter().filter(|a| *a == "-accel").count(), 1);
        assert_eq!(args[args.len() - 1], "tcg,thread=single");
    }

    #[test]
    fn kvm_uefi_cdrom_gdb_extra() {
        let mut p = plan();
        p.kvm = true;
        p.machine = Machine::Pc;
        p.media = Media::Cdrom("/t/x.iso".into());
        p.uefi_firmware = Some("/usr/share/ovmf/OVMF.fd".into());
        p.gdb = true;
        p.reset_log = Some("/t/reset.log".into());
        p.extra_args = vec!["-d".into(), "int".into()];
        let a = p.args().join(" ");
        assert!(
            a.starts_with("-machine pc -accel kvm -cpu host -m 512 "),
            "{a}"
        );
        assert!(
            a.contains("-bios /usr/share/ovmf/OVMF.fd -cdrom /t/x.iso -boot d"),
            "{a}"
        );
        assert!(!a.contains("-kernel") && !a.contains("-append"), "{a}");
        assert!(
            a.ends_with("-d cpu_reset -D /t/reset.log -s -S -d int"),
            "{a}"
        );
    }

    #[test]
    fn versions() {
        let v = |t: &str| QemuVersion::parse(t).map(|v| v.to_string());
        assert_eq!(
            v("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-1~bpo12+1)\nCopyright (c) 2003-2025"),
            Some("10.0.2".into())
        );
        assert_eq!(
            v("QEMU emulator version 7.2.15 (Debian 1:7.2+dfsg-7+deb12u13)"),
            Some("7.2.15".into())
        );
        assert_eq!(v("QEMU emulator version 9.0"), Some("9.0.0".into()));
        assert_eq!(v("QEMU emulator version 8.2.90"), Some("8.2.90".into()));
        assert_eq!(v("garbage"), None);
        assert_eq!(v(""), None);
        assert_eq!(v("QEMU emulator version x.1"), None);
        let old = QemuVersion::parse("QEMU emulator version 8.2.90").unwrap();
        assert!(old < X2APIC_TCG_MIN_VERSION);
        assert!(QemuVersion::parse("version 9.0.0").unwrap() >= X2APIC_TCG_MIN_VERSION);
    }

    #[test]
    fn above_255_cpus_the_plan_is_x2apic_with_memory_for_every_core() {
        let mut p = plan();
        p.smp = "255".into();
        assert!(!p.x2apic());
        assert!(!p.args().contains(&"-cpu".to_string()));
        assert_eq!(p.memory_arg(), 512);
        assert_eq!(p.needs_new_qemu(), None);
        p.smp = "256".into();
        assert!(p.x2apic());
        let a = shell_quote(&p.args());
        assert!(
            a.starts_with(
                "-machine q35,pic=off -accel tcg,thread=single -cpu qemu64,+x2apic -m 640 -smp 256 "
            ),
            "{a}"
        );
        // maxcpus counts: QEMU gives the disabled CPUs APIC ids too.
        p.smp = "4,maxcpus=300".into();
        assert!(p.x2apic());
        assert_eq!(p.memory_arg(), 662);
        p.smp = "1024".into();
        assert_eq!(p.memory_arg(), 1024);
        p.memory_mib = 4096;
        assert_eq!(p.memory_arg(), 4096, "more memory than the rule is kept");
        // Every core's kernel needs (~132 KiB) fit with margin.
        for n in [256, 512, 1024, 4096] {
            assert!(u64::from(x2apic_min_memory_mib(n)) << 20 >= 3 * u64::from(n) * 132 * 1024);
        }
        // A -cpu among the extra arguments replaces the x2APIC model.
        p.extra_args = vec!["-cpu".into(), "max".into()];
        assert_eq!(p.args().iter().filter(|a| *a == "-cpu").count(), 1);
        // KVM: the host CPU, no x2APIC plan of the runner's own.
        let mut k = plan();
        k.kvm = true;
        k.smp = "300".into();
        assert!(!k.x2apic());
        assert_eq!(k.needs_new_qemu(), None);
    }

    #[test]
    fn old_qemu_is_refused_for_x2apic_plans_with_the_version_and_the_package() {
        let v7 = QemuVersion::parse("QEMU emulator version 7.2.15").unwrap();
        let v10 = QemuVersion::parse("QEMU emulator version 10.0.2").unwrap();
        let mut p = plan();
        assert_eq!(p.check_version(v7), Ok(()));
        p.smp = "288".into();
        let e = p.check_version(v7).unwrap_err();
        assert!(e.contains("more than 255 CPUs (288"), "{e}");
        assert!(e.contains("needs QEMU 9.0.0 or later"), "{e}");
        assert!(e.contains("is 7.2.15"), "{e}");
        assert!(e.contains("bookworm-backports"), "{e}");
        assert_eq!(p.check_version(v10), Ok(()));
        let mut p = plan();
        p.extra_args = vec!["-cpu".into(), "qemu64,+x2apic".into()];
        assert!(p
            .check_version(v7)
            .unwrap_err()
            .contains("x2APIC under TCG"));
    }

    #[test]
    fn triple_fault_detection() {
        assert!(triple_fault_in_reset_log(
            "CPU Reset (CPU 0)\nEAX=0\nTriple fault\nCPU Reset (CPU 0)\n"
        ));
        assert!(!triple_fault_in_reset_log("CPU Reset (CPU 0)\nEAX=0\n"));
    }

    #[test]
    fn quoting() {
        assert_eq!(
            shell_quote(&["a".into(), "b c".into(), "it's".into(), "".into()]),
            "a 'b c' 'it'\\''s' ''"
        );
    }
}
