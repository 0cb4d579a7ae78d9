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

impl QemuPlan {
    /// The default TCG accelerator for this plan's CPU count (see [`TCG_SINGLE_ABOVE`]).
    pub fn tcg_accel(&self) -> &'static str {
        match crate::smp_cpu_count(&self.smp) {
            Ok(cpus) if cpus > TCG_SINGLE_ABOVE => "tcg,thread=single",
            _ => "tcg",
        }
    }

    /// The `-machine` value. A PVH boot under TCG above [`TCG_SINGLE_ABOVE`] CPUs runs without the legacy
    /// 8259 PIC (`pic=off`): the kernel never uses it (its only interrupts are IPIs through the local APICs),
    /// and QEMU 7.2 walks every vCPU from the PIC (`pic_irq_request`) on each UART register write, so at 255
    /// CPUs a log line took 0.9 ms instead of 0.16 ms and SeaBIOS was slower too (docs/performance.md).
    /// GRUB ISO boots keep the PIC: SeaBIOS's timer tick, which GRUB's menu timeout counts, comes through it.
    pub fn machine_arg(&self) -> String {
        let pvh = matches!(self.media, Media::Kernel { .. });
        let many = matches!(crate::smp_cpu_count(&self.smp), Ok(n) if n > TCG_SINGLE_ABOVE);
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
        } else if !self.extra_args.iter().any(|a| a == "-accel") {
            // QEMU uses the first -accel that works, so an -accel among the extra arguments (e.g.
            // `tcg,thread=multi`) replaces this default instead of being ignored.
            push("-accel");
            push(self.tcg_accel());
        }
        push("-m");
        push(&self.memory_mib.to_string());
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

#[cfg(test)]
mod tests {
    use super::*;

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
